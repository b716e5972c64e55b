//! Batch tasks and their tasks: creation, the list (from the read model or
//! from SQL), counters.

use super::catalogue::{group_pk, source_pk};
use super::sql_store::{bound, SqlStore};
use super::{
    sql, stored_state, BatchCreated, BatchGroupInput, BatchTaskPage, BatchTaskRow, CounterCheck,
    DeployType, NewBatchTask, SourceFailure, SourceProblem, StoreError, StoreResult, TaskRow,
};
use crate::domain::state::COUNTER_COLUMNS;
use crate::domain::{field, now_millis, ordered_ids, random_hex, ListBatchTasksParams, TaskState};
use crate::store::prelude::*;
use crate::store::{conflict_if_unique, Entity};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashSet;
use std::sync::Arc;

/// A batch-list row from columns named as `sql::batch_row_columns` names
/// them (`id` … `created_at`, then the counters by their column names);
/// the group and source names are passed in, as the two queries that read
/// these rows compute them differently.
pub(super) fn batch_row_named(
    row: &AnyRow,
    video_group_name: Option<String>,
    video_source_name: Option<String>,
) -> StoreResult<BatchTaskRow> {
    let mut counters = [0i64; 18];
    for (c, name) in counters.iter_mut().zip(COUNTER_COLUMNS) {
        *c = row.try_get(name)?;
    }
    Ok(BatchTaskRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        alg_name: row.try_get("alg_name")?,
        company: row.try_get("company")?,
        service_name: row.try_get("service_name")?,
        service_version: row.try_get("service_version")?,
        task_type: row.try_get("task_type")?,
        priority: row.try_get("priority")?,
        num_task: row.try_get("num_task")?,
        created_at: row.try_get("created_at")?,
        counters,
        video_group_name,
        video_source_name,
        rendered: Default::default(),
    })
}

/// A row of `sql::select_batch_tasks`.
fn batch_row_from(row: &AnyRow) -> StoreResult<BatchTaskRow> {
    batch_row_named(
        row,
        row.try_get("group_names")?,
        row.try_get("source_name")?,
    )
}

/// The fields of a new batch row.
#[derive(Clone, Copy)]
struct BatchRow<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    service_name: &'a str,
    service_version: &'a str,
    priority: &'a str,
    config: &'a serde_json::Value,
    output: &'a serde_json::Value,
    created_at: i64,
    group_pks: &'a [i64],
}

/// Inserts a batch row with zero counters and its ordered groups; returns
/// its pk. Checks name and id uniqueness and the service.
async fn insert_batch_row(
    conn: &mut AnyConnection,
    project_pk: i64,
    b: &BatchRow<'_>,
) -> StoreResult<i64> {
    let BatchRow {
        id,
        name,
        description,
        service_name,
        service_version,
        priority,
        config,
        output,
        created_at,
        group_pks,
    } = *b;
    let clash: Option<String> = sqlx::query_scalar(
        "select id from batch_tasks where project_pk = $1 and id = $2 \
         union all select id from batch_tasks where project_pk = $1 and name = $3 limit 1",
    )
    .bind(project_pk)
    .bind(id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(other) = clash {
        return Err(if other == id {
            StoreError::conflict(Entity::BatchTask, "id")
        } else {
            StoreError::conflict(Entity::BatchTask, "name")
        });
    }
    let svc = sqlx::query(
        "select pk, alg_name, company, deploy_type, deployed from services \
         where project_pk = $1 and service_name = $2 and service_version = $3",
    )
    .bind(project_pk)
    .bind(service_name)
    .bind(service_version)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found(Entity::Service, "service_name"))?;
    let service_pk: i64 = svc.try_get("pk")?;
    let alg_name: String = svc.try_get("alg_name")?;
    let company: String = svc.try_get("company")?;
    let deploy: String = svc.try_get("deploy_type")?;
    let task_type = DeployType::parse(&deploy)
        .unwrap_or(DeployType::Cloud)
        .task_type();
    let pk: i64 = sqlx::query_scalar(
        "insert into batch_tasks (project_pk, id, name, name_lc, description, service_pk, service_name, \
         service_name_lc, service_version, alg_name, company, task_type, priority, config, output, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning pk",
    )
    .bind(project_pk)
    .bind(id)
    .bind(name)
    .bind(name.to_lowercase())
    .bind(description)
    .bind(service_pk)
    .bind(service_name)
    .bind(service_name.to_lowercase())
    .bind(service_version)
    .bind(alg_name)
    .bind(company)
    .bind(task_type)
    .bind(priority)
    .bind(config.to_string())
    .bind(output.to_string())
    .bind(created_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| conflict_if_unique(e, Entity::BatchTask, "name"))?;
    insert_batch_groups(conn, pk, group_pks).await?;
    Ok(pk)
}

/// Writes a batch's groups, in order (the caller removed any old ones).
pub(super) async fn insert_batch_groups(
    conn: &mut AnyConnection,
    batch_pk: i64,
    group_pks: &[i64],
) -> StoreResult<()> {
    for (pos, gpk) in group_pks.iter().enumerate() {
        sqlx::query(
            "insert into batch_task_groups (batch_pk, position, group_pk) values ($1, $2, $3)",
        )
        .bind(batch_pk)
        .bind(pos as i64)
        .bind(*gpk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// What each task of a batch carries for the scheduler's pick order: its
/// batch's priority rank and worker type.
async fn pick_fields(conn: &mut AnyConnection, batch_pk: i64) -> StoreResult<(i64, String)> {
    let b = sqlx::query("select priority, task_type from batch_tasks where pk = $1")
        .bind(batch_pk)
        .fetch_one(&mut *conn)
        .await?;
    Ok((
        sql::prio_rank(&b.try_get::<String, _>("priority")?),
        b.try_get("task_type")?,
    ))
}

/// Inserts one task; the caller adjusts the batch's counters.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_task(
    conn: &mut AnyConnection,
    project_pk: i64,
    id: &str,
    batch_pk: i64,
    source_pk: i64,
    state: TaskState,
    target_roi: Option<String>,
    created_at: i64,
    updated_at: i64,
) -> StoreResult<()> {
    let (prio, task_type) = pick_fields(conn, batch_pk).await?;
    sqlx::query(
        "insert into tasks (project_pk, id, batch_pk, video_source_pk, state, target_roi, created_at, updated_at, \
         prio, task_type) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(project_pk)
    .bind(id)
    .bind(batch_pk)
    .bind(source_pk)
    .bind(state.index() as i64)
    .bind(target_roi)
    .bind(created_at)
    .bind(updated_at)
    .bind(prio)
    .bind(task_type)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_if_unique(e, Entity::Task, "id"))?;
    Ok(())
}

/// Inserts a batch's new pending tasks, one per `(source pk, target_roi)`,
/// 500 rows per statement (one statement per task made a batch over 100
/// groups of 1,000 sources take 10 s), their ids in ascending order (see
/// `ordered_ids`: side by side in the index on ids).
pub(super) async fn insert_pending_tasks(
    conn: &mut AnyConnection,
    positional: bool,
    project_pk: i64,
    batch_pk: i64,
    sources: &[(i64, Option<String>)],
    at: i64,
) -> StoreResult<()> {
    const CHUNK: usize = 500;
    if sources.is_empty() {
        return Ok(());
    }
    let (prio, task_type) = pick_fields(conn, batch_pk).await?;
    let ids = ordered_ids(sources.len())?;
    for (chunk, ids) in sources.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
        let mut q = sql::Query::new(positional);
        q.push(
            "insert into tasks (project_pk, id, batch_pk, video_source_pk, state, target_roi, \
             created_at, updated_at, prio, task_type) values ",
        );
        for (i, ((spk, roi), id)) in chunk.iter().zip(ids).enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind_row([
                sql::Arg::Int(project_pk),
                sql::Arg::Text(id.clone()),
                sql::Arg::Int(batch_pk),
                sql::Arg::Int(*spk),
                sql::Arg::Int(TaskState::Pending.index() as i64),
                roi.clone().map_or(sql::Arg::Null, sql::Arg::Text),
                sql::Arg::Int(at),
                sql::Arg::Int(at),
                sql::Arg::Int(prio),
                sql::Arg::Text(task_type.clone()),
            ]);
        }
        bound(&q)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_if_unique(e, Entity::Task, "id"))?;
    }
    Ok(())
}

/// Adds `by` to a batch's counter of `state` and to its task count.
pub(super) async fn bump(
    conn: &mut AnyConnection,
    batch_pk: i64,
    state: TaskState,
    by: i64,
) -> StoreResult<()> {
    if by != 0 {
        sqlx::query(&sql::bump_counter(state))
            .bind(by)
            .bind(batch_pk)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn batch_pk(
    conn: &mut AnyConnection,
    project_pk: i64,
    id: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar("select pk from batch_tasks where project_pk = $1 and id = $2")
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::BatchTask, "batch_id"))
}

/// What a batch's group list (CreateBatchTask, UpdateBatchTask) resolves to.
pub(super) struct ResolvedSources {
    /// The groups' pks, in the order listed.
    pub group_pks: Vec<i64>,
    /// The sources the batch gets, each once, in order: (source pk, target roi).
    pub wanted: Vec<(i64, Option<String>)>,
    /// Sources listed but not taken, in order.
    pub failures: Vec<SourceFailure>,
}

/// Resolves a batch's groups and the sources wanted of each (every live
/// member when a group lists none). A group that does not exist or is
/// listed twice fails the whole request; a source that is not in its group
/// (`NotInGroup`), does not exist (`Unknown`) or is already taken
/// (`AlreadyInBatch`) fails alone.
pub(super) async fn resolve_sources(
    conn: &mut AnyConnection,
    project_pk: i64,
    groups: &[BatchGroupInput],
) -> StoreResult<ResolvedSources> {
    let mut group_pks = Vec::with_capacity(groups.len());
    for g in groups {
        let gpk = group_pk(conn, project_pk, &g.group_id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoGroup, "video_source_group_id"))?;
        if group_pks.contains(&gpk) {
            return Err(field::FieldError::new(
                "video_source_group_id",
                format!("video group {:?} is listed twice", g.group_id),
            )
            .into());
        }
        group_pks.push(gpk);
    }
    let mut wanted: Vec<(i64, Option<String>)> = Vec::new();
    let mut taken: HashSet<i64> = HashSet::new();
    let mut failures = Vec::new();
    for (g, gpk) in groups.iter().zip(&group_pks) {
        let members: Vec<(String, i64)> = sqlx::query(
            "select s.id as id, s.pk as pk from video_source_groups vsg \
             join video_sources s on s.pk = vsg.source_pk \
             where vsg.group_pk = $1 and s.deleted = 0 order by s.pk",
        )
        .bind(*gpk)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("pk")?)))
        .collect::<StoreResult<_>>()?;
        let member_pk: std::collections::HashMap<&str, i64> =
            members.iter().map(|(id, pk)| (id.as_str(), *pk)).collect();
        let listed: Vec<(String, Option<String>)> = match &g.sources {
            None => members.iter().map(|(id, _)| (id.clone(), None)).collect(),
            Some(list) => list
                .iter()
                .map(|s| (s.source_id.clone(), s.target_roi.clone()))
                .collect(),
        };
        for (sid, roi) in listed {
            let fail = |problem: SourceProblem| SourceFailure {
                video_source_id: sid.clone(),
                problem,
            };
            match member_pk.get(sid.as_str()) {
                None => failures.push(if source_pk(conn, project_pk, &sid).await?.is_some() {
                    fail(SourceProblem::NotInGroup {
                        group_id: g.group_id.clone(),
                    })
                } else {
                    fail(SourceProblem::Unknown)
                }),
                Some(spk) if !taken.insert(*spk) => {
                    failures.push(fail(SourceProblem::AlreadyInBatch))
                }
                Some(spk) => wanted.push((*spk, roi)),
            }
        }
    }
    Ok(ResolvedSources {
        group_pks,
        wanted,
        failures,
    })
}

#[async_trait]
impl BatchStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = %b.id))]
    async fn create_batch_task(
        &self,
        project_pk: i64,
        b: &NewBatchTask,
    ) -> StoreResult<BatchCreated> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let conn: &mut AnyConnection = &mut tx;
        let svc_deployed: Option<i64> = sqlx::query_scalar(
            "select deployed from services where project_pk = $1 and service_name = $2 and service_version = $3",
        )
        .bind(project_pk)
        .bind(&b.service_name)
        .bind(&b.service_version)
        .fetch_optional(&mut *conn)
        .await?;
        match svc_deployed {
            None => return Err(StoreError::not_found(Entity::Service, "service_name")),
            Some(0) => {
                return Err(StoreError::NotAllowed(
                    "the algorithm service is not deployed".into(),
                ))
            }
            Some(_) => {}
        }
        let resolved = resolve_sources(conn, project_pk, &b.groups).await?;
        let pk = insert_batch_row(
            conn,
            project_pk,
            &BatchRow {
                id: &b.id,
                name: &b.name,
                description: &b.description,
                service_name: &b.service_name,
                service_version: &b.service_version,
                priority: &b.priority,
                config: &b.config,
                output: &b.output,
                created_at: b.created_at,
                group_pks: &resolved.group_pks,
            },
        )
        .await?;
        if b.schedule.is_some() || b.resource_order_id.is_some() || b.saved_as_template {
            sqlx::query(
                "update batch_tasks set schedule = $1, resource_order_id = $2, \
                 saved_as_template = $3 where pk = $4",
            )
            .bind(b.schedule.as_ref().map(|v| v.to_string()))
            .bind(&b.resource_order_id)
            .bind(i64::from(b.saved_as_template))
            .bind(pk)
            .execute(&mut *conn)
            .await?;
        }
        insert_pending_tasks(
            conn,
            self.backend.positional(),
            project_pk,
            pk,
            &resolved.wanted,
            b.created_at,
        )
        .await?;
        let added = resolved.wanted.len();
        if b.schedule.is_some() {
            arm_windows(conn, pk, true).await?;
        }
        bump(conn, pk, TaskState::Pending, added as i64).await?;
        self.record_change(conn, project_pk, pk).await?;
        tx.commit().await?;
        self.after_write(project_pk, pk).await;
        Ok(BatchCreated {
            id: b.id.clone(),
            succeed_count: added as u64,
            failures: resolved.failures,
        })
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_batch_tasks(
        &self,
        project_pk: i64,
        q: &ListBatchTasksParams,
    ) -> StoreResult<BatchTaskPage> {
        let view = self.project_view(project_pk).await?;
        let page = view
            .read()
            .map_err(|_| StoreError::Internal("read model lock poisoned".into()))?
            .query(q);
        Ok(page)
    }

    fn list_changes(&self, project_pk: i64) -> Option<Arc<tokio::sync::Notify>> {
        self.model.changes(project_pk)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_batch_tasks_from_db(
        &self,
        project_pk: i64,
        q: &ListBatchTasksParams,
    ) -> StoreResult<BatchTaskPage> {
        let positional = self.backend.positional();
        let mut tx = self.begin_read().await?;
        let cq = sql::count_batch_tasks(positional, project_pk, q);
        let count: i64 = bound(&cq).fetch_one(&mut *tx).await?.try_get("n")?;
        let sq = sql::select_batch_tasks(positional, project_pk, q);
        let rows = if q
            .paging
            .map(|p| p.offset() >= count as u64)
            .unwrap_or(false)
        {
            Vec::new()
        } else {
            bound(&sq)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| batch_row_from(r).map(Arc::new))
                .collect::<StoreResult<_>>()?
        };
        tx.commit().await?;
        Ok(BatchTaskPage {
            generation: 0,
            count: count as u64,
            rows,
        })
    }
}

/// Checks for tests and diagnosis, off the production traits.
impl SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id))]
    pub async fn add_task(
        &self,
        project_pk: i64,
        batch_id: &str,
        source_id: &str,
    ) -> StoreResult<TaskRow> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let conn: &mut AnyConnection = &mut tx;
        let bpk = batch_pk(conn, project_pk, batch_id).await?;
        let spk = source_pk(conn, project_pk, source_id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "video_source_id"))?;
        let dup: Option<i64> =
            sqlx::query_scalar("select pk from tasks where batch_pk = $1 and video_source_pk = $2")
                .bind(bpk)
                .bind(spk)
                .fetch_optional(&mut *conn)
                .await?;
        if dup.is_some() {
            return Err(StoreError::conflict(Entity::Task, "video_source_id"));
        }
        let id = random_hex(16)?;
        let now = now_millis();
        insert_task(
            conn,
            project_pk,
            &id,
            bpk,
            spk,
            TaskState::Pending,
            None,
            now,
            now,
        )
        .await?;
        bump(conn, bpk, TaskState::Pending, 1).await?;
        self.record_change(conn, project_pk, bpk).await?;
        tx.commit().await?;
        self.after_write(project_pk, bpk).await;
        Ok(TaskRow {
            id,
            batch_id: Some(batch_id.to_owned()),
            video_source_id: source_id.to_owned(),
            state: TaskState::Pending,
            created_at: now,
            updated_at: now,
        })
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id))]
    pub async fn check_counters(
        &self,
        project_pk: i64,
        batch_id: &str,
    ) -> StoreResult<CounterCheck> {
        let mut tx = self.begin_read().await?;
        let bpk = batch_pk(&mut tx, project_pk, batch_id).await?;
        let cols = COUNTER_COLUMNS.join(", ");
        let row = sqlx::query(&format!(
            "select num_task, {cols} from batch_tasks where pk = $1"
        ))
        .bind(bpk)
        .fetch_one(&mut *tx)
        .await?;
        let mut stored = [0i64; 18];
        for (c, name) in stored.iter_mut().zip(COUNTER_COLUMNS) {
            *c = row.try_get(name)?;
        }
        let stored_num_task: i64 = row.try_get("num_task")?;
        let mut counted = [0i64; 18];
        for r in
            sqlx::query("select state, count(*) as n from tasks where batch_pk = $1 group by state")
                .bind(bpk)
                .fetch_all(&mut *tx)
                .await?
        {
            let st = stored_state(r.try_get("state")?)?;
            counted[st.index()] = r.try_get("n")?;
        }
        tx.commit().await?;
        Ok(CounterCheck {
            stored,
            stored_num_task,
            counted,
        })
    }
}

/// Has the next scheduler pass look at the schedule windows of a batch's
/// tasks, when the batch has a schedule: every task's (`all`, after the
/// schedule changed or the batch was created) or only those never looked at
/// (tasks just added).
pub(crate) async fn arm_windows(
    conn: &mut AnyConnection,
    batch_pk: i64,
    all: bool,
) -> StoreResult<()> {
    sqlx::query(
        "update tasks set window_due = 0 where batch_pk = $1 and ($2 = 1 or window_due is null) \
         and exists (select 1 from batch_tasks b where b.pk = $1 and b.schedule is not null)",
    )
    .bind(batch_pk)
    .bind(i64::from(all))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
