//! The task operations clients ask for: ShowTask, ListTasks and a task's
//! history; start, stop and delete on a task or a whole batch; and
//! UpdateBatchTask. Every move goes through `moves::move_task`.

use super::moves::{
    in_list, key_from, move_task, refuse_worker_events, task_key, Touched, KEY_COLS,
};
use super::{
    Applied, BatchUpdate, ListTasksQuery, NewTasks, TaskDetail, TaskHistory, TaskInputEntry,
    TaskUpdate,
};
use crate::domain::transition::Event;
use crate::domain::{now_millis, random_hex, DeployType, FieldError, TaskState};
use crate::store::batch::{
    arm_windows, bump, insert_batch_groups, insert_pending_tasks, resolve_sources,
};
use crate::store::catalogue::source_pk;
use crate::store::prelude::*;
use crate::store::sql::{like_contains, Arg, Query};
use crate::store::sql_store::bound;
use crate::store::sql_store::SqlStore;
use crate::store::Entity;
use crate::store::{
    stored_state, BatchCreated, SourceFailure, SourceProblem, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;
use std::collections::HashSet;

/// Columns `detail_from` decodes, with the joins they need. A batch's task
/// takes its name, settings and service from the batch.
const DETAIL_COLS: &str = "t.id as task_id, p.id as project_id, b.id as batch_id, \
     coalesce(t.name, b.name) as name, coalesce(t.description, b.description, '') as description, \
     s.id as source_id, s.name as source_name, \
     (select string_agg(g.name, ',' order by bg.position) from batch_task_groups bg \
     join video_groups g on g.pk = bg.group_pk where bg.batch_pk = t.batch_pk) as group_names, \
     v.id as service_id, v.service_name as service_name, \
     coalesce(b.service_version, t.service_version, v.service_version) as service_version, \
     v.alg_name as alg_name, v.company as company, \
     coalesce(b.task_type, t.task_type, '0') as task_type, \
     t.state as state, w.id as worker_id, w.name as worker_name, t.attempt as attempt, \
     t.error_code as error_code, t.error_message as error_message, t.input as input, \
     coalesce(t.output, b.output) as output, coalesce(t.config, b.config) as config, \
     coalesce(t.schedule, b.schedule) as schedule, t.schedule_hold as schedule_hold, \
     coalesce(t.resource_order_id, b.resource_order_id) as resource_order_id, \
     t.creator as creator, t.target_roi as target_roi, \
     t.created_at as created_at, t.updated_at as updated_at \
     from tasks t join projects p on p.pk = t.project_pk \
     left join batch_tasks b on b.pk = t.batch_pk \
     join services v on v.pk = coalesce(b.service_pk, t.service_pk) \
     left join video_sources s on s.pk = t.video_source_pk \
     left join workers w on w.pk = coalesce(t.worker_pk, t.last_worker_pk)";

fn json_col(r: &AnyRow, col: &str) -> StoreResult<Option<serde_json::Value>> {
    let text: Option<String> = r.try_get(col)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

fn detail_from(r: &AnyRow) -> StoreResult<TaskDetail> {
    let task_type: String = r.try_get("task_type")?;
    Ok(TaskDetail {
        id: r.try_get("task_id")?,
        project_id: r.try_get("project_id")?,
        batch_id: r.try_get("batch_id")?,
        name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
        description: r.try_get("description")?,
        video_source_id: r.try_get("source_id")?,
        video_source_name: r.try_get("source_name")?,
        group_names: r.try_get("group_names")?,
        service_id: r.try_get("service_id")?,
        service_name: r.try_get("service_name")?,
        service_version: r.try_get("service_version")?,
        alg_name: r.try_get("alg_name")?,
        company: r.try_get("company")?,
        task_type: DeployType::from_task_type(&task_type).unwrap_or(DeployType::Cloud),
        state: stored_state(r.try_get("state")?)?,
        worker_id: r.try_get("worker_id")?,
        worker_name: r.try_get("worker_name")?,
        attempt: r.try_get("attempt")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        input: json_col(r, "input")?,
        output: json_col(r, "output")?,
        config: json_col(r, "config")?,
        schedule: json_col(r, "schedule")?,
        schedule_held: r.try_get::<i64, _>("schedule_hold")? != 0,
        resource_order_id: r.try_get("resource_order_id")?,
        creator: r.try_get("creator")?,
        target_roi: r.try_get("target_roi")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The filters of ListTasks, after `where t.project_pk = …`.
fn task_filters(sql: &mut Query, q: &ListTasksQuery) {
    if let Some(b) = &q.batch_id {
        sql.push(" and b.id = ").bind(Arg::Text(b.clone()));
    }
    if !q.states.is_empty() {
        sql.push(" and t.state in (")
            .push(&in_list(&q.states))
            .push(")");
    }
    for (col, needle) in [
        ("coalesce(t.name, b.name)", &q.name_like),
        ("s.name", &q.source_name_like),
    ] {
        if let Some(n) = needle {
            sql.push(" and lower(")
                .push(col)
                .push(") like ")
                .bind(Arg::Text(like_contains(&n.to_lowercase())))
                .push(" escape '\\'");
        }
    }
    for (col, items) in [
        ("v.alg_name", &q.titles),
        ("v.company", &q.companies),
        ("v.id", &q.service_ids),
    ] {
        if !items.is_empty() {
            sql.push(" and ").push(col).push(" in ").bind_list(items);
        }
    }
    if !q.group_ids.is_empty() {
        sql.push(
            " and (exists (select 1 from batch_task_groups bg join video_groups g \
             on g.pk = bg.group_pk where bg.batch_pk = t.batch_pk and g.id in ",
        )
        .bind_list(&q.group_ids)
        .push(
            ") or exists (select 1 from video_source_groups vsg join video_groups g \
             on g.pk = vsg.group_pk where vsg.source_pk = t.video_source_pk and g.id in ",
        )
        .bind_list(&q.group_ids)
        .push("))");
    }
}

/// Where a task's input points: its source's pk, or a stream address.
async fn resolve_entry(
    conn: &mut AnyConnection,
    project_pk: i64,
    e: &TaskInputEntry,
) -> StoreResult<(Option<i64>, Option<String>)> {
    match e {
        TaskInputEntry::Source(id) => {
            let pk = source_pk(conn, project_pk, id).await?.ok_or_else(|| {
                StoreError::not_found(Entity::VideoSource, "input.data.video_source_id")
            })?;
            Ok((Some(pk), None))
        }
        TaskInputEntry::Url(u) => Ok((None, Some(u.clone()))),
    }
}

/// Columns `history_from` decodes.
const HISTORY_COLS: &str = "e.at as at, e.from_state as from_state, e.event as event, \
     e.to_state as to_state, w.id as worker_id, w.name as worker_name";

/// A start of a task whose algorithm service is not deployed is refused as
/// CreateBatchTask and CreateTask refuse one: the task would only go
/// `stopped_no_service` again.
async fn refuse_undeployed(conn: &mut AnyConnection, task_pk: i64) -> StoreResult<()> {
    let deployed: Option<i64> = sqlx::query_scalar(
        "select s.deployed from tasks t join services s on s.pk = coalesce( \
         (select b.service_pk from batch_tasks b where b.pk = t.batch_pk), t.service_pk) \
         where t.pk = $1",
    )
    .bind(task_pk)
    .fetch_optional(&mut *conn)
    .await?;
    if deployed == Some(0) {
        return Err(StoreError::NotAllowed(
            "the algorithm service is not deployed: deploy it before starting its tasks".into(),
        ));
    }
    Ok(())
}

/// CreateTask's input as its `i`th task keeps it: the whole input with
/// only that task's own data item.
fn input_of_entry(input: &serde_json::Value, i: usize) -> serde_json::Value {
    let mut own = input.clone();
    if let Some(item) = input.get("data").and_then(|d| d.get(i)) {
        own["data"] = serde_json::Value::Array(vec![item.clone()]);
    }
    own
}

fn history_from(r: &AnyRow) -> StoreResult<TaskHistory> {
    Ok(TaskHistory {
        at: r.try_get("at")?,
        from: stored_state(r.try_get("from_state")?)?,
        event: r.try_get("event")?,
        to: r
            .try_get::<Option<i64>, _>("to_state")?
            .map(stored_state)
            .transpose()?,
        worker_id: r.try_get("worker_id")?,
        worker_name: r.try_get("worker_name")?,
    })
}

#[async_trait]
impl TaskStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id, %event))]
    async fn apply_task_event(
        &self,
        project_pk: i64,
        task_id: &str,
        event: Event,
    ) -> StoreResult<Applied> {
        refuse_worker_events(event)?;
        let mut tx = self.begin_lifecycle().await?;
        let t = task_key(&mut tx, project_pk, task_id).await?;
        if event == Event::Start {
            refuse_undeployed(&mut tx, t.pk).await?;
        }
        self.move_one(tx, &t, event, None).await
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id, %event))]
    async fn apply_batch_event(
        &self,
        project_pk: i64,
        batch_id: &str,
        event: Event,
    ) -> StoreResult<Vec<(String, Applied)>> {
        refuse_worker_events(event)?;
        let mut tx = self.begin_lifecycle().await?;
        let bpk: i64 =
            sqlx::query_scalar("select pk from batch_tasks where project_pk = $1 and id = $2")
                .bind(project_pk)
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found(Entity::BatchTask, "id"))?;
        let rows = sqlx::query(&format!(
            "select {KEY_COLS}, t.id as id from tasks t where t.batch_pk = $1 order by t.pk"
        ))
        .bind(bpk)
        .fetch_all(&mut *tx)
        .await?;
        if event == Event::Start {
            if let Some(r) = rows.first() {
                refuse_undeployed(&mut tx, key_from(r)?.pk).await?;
            }
        }
        let now = now_millis();
        let mut touched = Touched::new();
        touched.insert((project_pk, bpk));
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = key_from(r)?;
            let id: String = r.try_get("id")?;
            let applied = match move_task(&mut tx, &t, event, None, None, now, &mut touched).await?
            {
                Some(to) => Applied::Moved { from: t.state, to },
                None => Applied::Refused { state: t.state },
            };
            out.push((id, applied));
        }
        if event == Event::Delete {
            touched.emptied(bpk);
            sqlx::query("update batch_tasks set deleting = 1 where pk = $1")
                .bind(bpk)
                .execute(&mut *tx)
                .await?;
        }
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id))]
    async fn update_batch_task(
        &self,
        project_pk: i64,
        batch_id: &str,
        u: &BatchUpdate,
    ) -> StoreResult<BatchCreated> {
        let mut tx = self.begin_lifecycle_in(project_pk).await?;
        let row = sqlx::query(
            "select pk, deleting, service_name, service_version from batch_tasks \
             where project_pk = $1 and id = $2",
        )
        .bind(project_pk)
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::BatchTask, "id"))?;
        let bpk: i64 = row.try_get("pk")?;
        if row.try_get::<i64, _>("deleting")? != 0 {
            return Err(StoreError::NotAllowed(
                "the batch task is being deleted".into(),
            ));
        }
        if let Some((name, version)) = &u.service {
            if *name != row.try_get::<String, _>("service_name")?
                || *version != row.try_get::<String, _>("service_version")?
            {
                return Err(FieldError::new(
                    "service_name",
                    "the service of a batch task cannot change",
                )
                .into());
            }
        }
        if let Some(name) = &u.name {
            let clash: Option<i64> = sqlx::query_scalar(
                "select pk from batch_tasks where project_pk = $1 and name = $2 and pk <> $3",
            )
            .bind(project_pk)
            .bind(name)
            .bind(bpk)
            .fetch_optional(&mut *tx)
            .await?;
            if clash.is_some() {
                return Err(StoreError::conflict(Entity::BatchTask, "name"));
            }
            sqlx::query("update batch_tasks set name = $1, name_lc = $2 where pk = $3")
                .bind(name)
                .bind(name.to_lowercase())
                .bind(bpk)
                .execute(&mut *tx)
                .await?;
        }
        for (col, v) in [
            ("description", u.description.clone()),
            ("priority", u.priority.clone()),
            ("config", u.config.as_ref().map(|c| c.to_string())),
            ("output", u.output.as_ref().map(|c| c.to_string())),
            ("schedule", u.schedule.as_ref().map(|c| c.to_string())),
            ("resource_order_id", u.resource_order_id.clone()),
        ] {
            if let Some(v) = v {
                // `col` comes from the fixed list above.
                sqlx::query(&format!("update batch_tasks set {col} = $1 where pk = $2"))
                    .bind(v)
                    .bind(bpk)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(p) = &u.priority {
            sqlx::query("update tasks set prio = $1 where batch_pk = $2")
                .bind(crate::store::sql::prio_rank(p))
                .bind(bpk)
                .execute(&mut *tx)
                .await?;
        }
        let mut touched = Touched::new();
        touched.insert((project_pk, bpk));
        let existing = sqlx::query(&format!(
            "select {KEY_COLS}, t.video_source_pk as video_source_pk from tasks t \
             where t.batch_pk = $1 order by t.pk"
        ))
        .bind(bpk)
        .fetch_all(&mut *tx)
        .await?;
        let mut kept = existing.len() as u64;
        let mut failures = Vec::new();
        if let Some(groups) = &u.groups {
            let now = now_millis();
            // The wanted sources, as CreateBatchTask resolves them.
            let resolved = resolve_sources(&mut tx, project_pk, groups).await?;
            failures = resolved.failures;
            let wanted_pks: HashSet<i64> = resolved.wanted.iter().map(|(spk, _)| *spk).collect();
            // Tasks of sources no longer wanted go (through the table).
            let mut have = HashSet::new();
            kept = 0;
            for r in &existing {
                let t = key_from(r)?;
                let spk: i64 = r.try_get("video_source_pk")?;
                // A task still being deleted keeps its source's place in the
                // batch until its worker lets go.
                have.insert(spk);
                if wanted_pks.contains(&spk) {
                    if t.state == TaskState::Deleting {
                        let sid: String =
                            sqlx::query_scalar("select id from video_sources where pk = $1")
                                .bind(spk)
                                .fetch_one(&mut *tx)
                                .await?;
                        failures.push(SourceFailure {
                            video_source_id: sid,
                            problem: SourceProblem::StillDeleting,
                        });
                    } else {
                        kept += 1;
                    }
                } else {
                    move_task(&mut tx, &t, Event::Delete, None, None, now, &mut touched).await?;
                }
            }
            let new: Vec<(i64, Option<String>)> = resolved
                .wanted
                .iter()
                .filter(|(spk, _)| !have.contains(spk))
                .cloned()
                .collect();
            insert_pending_tasks(
                &mut tx,
                self.backend.positional(),
                project_pk,
                bpk,
                &new,
                now,
            )
            .await?;
            let added = new.len() as i64;
            bump(&mut tx, bpk, TaskState::Pending, added).await?;
            kept += added as u64;
            sqlx::query("delete from batch_task_groups where batch_pk = $1")
                .bind(bpk)
                .execute(&mut *tx)
                .await?;
            insert_batch_groups(&mut tx, bpk, &resolved.group_pks).await?;
        }
        arm_windows(&mut tx, bpk, u.schedule.is_some()).await?;
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(BatchCreated {
            id: batch_id.to_owned(),
            succeed_count: kept,
            failures,
        })
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_tasks(&self, project_pk: i64, t: &NewTasks) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let svc = sqlx::query(
            "select pk, deploy_type, deployed from services \
             where project_pk = $1 and service_name = $2 and service_version = $3",
        )
        .bind(project_pk)
        .bind(&t.service_name)
        .bind(&t.service_version)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::Service, "service_version"))?;
        if svc.try_get::<i64, _>("deployed")? == 0 {
            return Err(StoreError::NotAllowed(
                "the algorithm service is not deployed".into(),
            ));
        }
        let service_pk: i64 = svc.try_get("pk")?;
        let deploy: String = svc.try_get("deploy_type")?;
        let task_type = DeployType::parse(&deploy)
            .unwrap_or(DeployType::Cloud)
            .task_type();
        let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        let mut ids = Vec::with_capacity(t.entries.len());
        for (i, e) in t.entries.iter().enumerate() {
            let (source, url) = resolve_entry(&mut tx, project_pk, e).await?;
            let id = random_hex(16)?;
            sqlx::query(
                "insert into tasks (project_pk, id, video_source_pk, state, created_at, updated_at, \
                 name, description, service_pk, task_type, service_version, input, output, config, \
                 schedule, resource_order_id, creator, source_url, window_due) \
                 values ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(project_pk)
            .bind(&id)
            .bind(source)
            .bind(TaskState::Pending.index() as i64)
            .bind(t.created_at)
            .bind(&t.name)
            .bind(&t.description)
            .bind(service_pk)
            .bind(task_type)
            .bind(&t.service_version)
            .bind(input_of_entry(&t.input, i).to_string())
            .bind(t.output.to_string())
            .bind(text(&t.config))
            .bind(text(&t.schedule))
            .bind(&t.resource_order_id)
            .bind(&t.creator)
            .bind(url)
            .bind(t.schedule.as_ref().map(|_| 0i64))
            .execute(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id))]
    async fn update_task(
        &self,
        project_pk: i64,
        task_id: &str,
        u: &TaskUpdate,
    ) -> StoreResult<TaskDetail> {
        let mut tx = self.begin_lifecycle_in(project_pk).await?;
        let row = sqlx::query(
            "select pk, batch_pk, video_source_pk from tasks where project_pk = $1 and id = $2",
        )
        .bind(project_pk)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::Task, "task_id"))?;
        let pk: i64 = row.try_get("pk")?;
        if row.try_get::<Option<i64>, _>("batch_pk")?.is_some() {
            return Err(StoreError::NotAllowed(
                "a batch task's task is changed through UpdateBatchTask".into(),
            ));
        }
        let had_source = row.try_get::<Option<i64>, _>("video_source_pk")?.is_some();
        if let Some((input, entry)) = &u.input {
            if had_source && !matches!(entry, TaskInputEntry::Source(_)) {
                return Err(FieldError::new(
                    "input.type",
                    "a video_source input cannot be switched to another type",
                )
                .into());
            }
            let (source, url) = resolve_entry(&mut tx, project_pk, entry).await?;
            sqlx::query(
                "update tasks set input = $1, video_source_pk = $2, source_url = $3 where pk = $4",
            )
            .bind(input.to_string())
            .bind(source)
            .bind(url)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        }
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        for (col, v) in [
            ("name", u.name.clone()),
            ("description", u.description.clone()),
            ("output", json(&u.output)),
            ("config", json(&u.config)),
            ("schedule", json(&u.schedule)),
            ("resource_order_id", u.resource_order_id.clone()),
        ] {
            if let Some(v) = v {
                // `col` comes from the fixed list above.
                sqlx::query(&format!("update tasks set {col} = $1 where pk = $2"))
                    .bind(v)
                    .bind(pk)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if u.schedule.is_some() {
            sqlx::query("update tasks set window_due = 0 where pk = $1")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
        }
        let r = sqlx::query(&format!("select {DETAIL_COLS} where t.pk = $1"))
            .bind(pk)
            .fetch_one(&mut *tx)
            .await?;
        let out = detail_from(&r)?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id))]
    async fn find_task(&self, project_pk: i64, task_id: &str) -> StoreResult<Option<TaskDetail>> {
        let mut tx = self.begin_read().await?;
        let r = sqlx::query(&format!(
            "select {DETAIL_COLS} where t.project_pk = $1 and t.id = $2"
        ))
        .bind(project_pk)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        r.as_ref().map(detail_from).transpose()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_tasks(
        &self,
        project_pk: i64,
        q: &ListTasksQuery,
    ) -> StoreResult<Vec<TaskDetail>> {
        let mut sql = Query::new(self.backend.positional());
        sql.push("select ")
            .push(DETAIL_COLS)
            .push(" where t.project_pk = ")
            .bind(Arg::Int(project_pk));
        task_filters(&mut sql, q);
        let dir = if q.descending { "desc" } else { "asc" };
        sql.push(" order by t.created_at ")
            .push(dir)
            .push(", t.id ")
            .push(dir)
            .push(" limit ")
            .bind(Arg::Int(i64::from(q.page_size)))
            .push(" offset ")
            .bind(Arg::Int(i64::from(q.page) * i64::from(q.page_size)));
        let mut tx = self.begin_read().await?;
        let rows = bound(&sql).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(detail_from).collect()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id))]
    async fn list_task_history(
        &self,
        project_pk: i64,
        task_id: &str,
    ) -> StoreResult<Vec<TaskHistory>> {
        let mut tx = self.begin_read().await?;
        let t = task_key(&mut tx, project_pk, task_id).await?;
        let rows = sqlx::query(&format!(
            "select {HISTORY_COLS} from task_events e left join workers w on w.pk = e.worker_pk \
             where e.task_pk = $1 order by e.pk"
        ))
        .bind(t.pk)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(history_from).collect()
    }
}
