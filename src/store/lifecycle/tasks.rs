//! The task operations clients ask for: ShowTask, ListTasks and a task's
//! history; start, stop and delete on a task or a whole batch; and
//! UpdateBatchTask. Every move goes through `moves::move_task`.

use super::moves::{
    in_list, key_from, move_task, refuse_worker_events, task_key, Touched, KEY_COLS,
};
use super::{Applied, BatchUpdate, ListTasksQuery, TaskDetail, TaskHistory};
use crate::domain::transition::Event;
use crate::domain::{now_millis, random_hex, FieldError, TaskState};
use crate::store::batch::{bump, insert_batch_groups, insert_task, resolve_sources};
use crate::store::prelude::*;
use crate::store::sql_store::SqlStore;
use crate::store::Entity;
use crate::store::{
    stored_state, BatchCreated, SourceFailure, SourceProblem, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashSet;

/// Columns `detail_from` decodes, with the joins they need.
const DETAIL_COLS: &str = "t.id as task_id, b.id as batch_id, s.id as source_id, \
     t.state as state, w.id as worker_id, t.attempt as attempt, t.error_code as error_code, \
     t.error_message as error_message, t.created_at as created_at, t.updated_at as updated_at \
     from tasks t left join batch_tasks b on b.pk = t.batch_pk \
     join video_sources s on s.pk = t.video_source_pk left join workers w on w.pk = t.worker_pk";

fn detail_from(r: &AnyRow) -> StoreResult<TaskDetail> {
    Ok(TaskDetail {
        id: r.try_get("task_id")?,
        batch_id: r.try_get("batch_id")?,
        video_source_id: r.try_get("source_id")?,
        state: stored_state(r.try_get("state")?)?,
        worker_id: r.try_get("worker_id")?,
        attempt: r.try_get("attempt")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Columns `history_from` decodes.
const HISTORY_COLS: &str = "at, from_state, event, to_state";

fn history_from(r: &AnyRow) -> StoreResult<TaskHistory> {
    Ok(TaskHistory {
        at: r.try_get("at")?,
        from: stored_state(r.try_get("from_state")?)?,
        event: r.try_get("event")?,
        to: r
            .try_get::<Option<i64>, _>("to_state")?
            .map(stored_state)
            .transpose()?,
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
                .ok_or_else(|| StoreError::not_found(Entity::BatchTask, "task_id"))?;
        let rows = sqlx::query(&format!(
            "select {KEY_COLS}, t.id as id from tasks t where t.batch_pk = $1 order by t.pk"
        ))
        .bind(bpk)
        .fetch_all(&mut *tx)
        .await?;
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
        let mut tx = self.begin_lifecycle().await?;
        let row = sqlx::query(
            "select pk, deleting, service_name, service_version from batch_tasks \
             where project_pk = $1 and id = $2",
        )
        .bind(project_pk)
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::BatchTask, "task_id"))?;
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
            let mut added = 0;
            for (spk, roi) in &resolved.wanted {
                if have.contains(spk) {
                    continue;
                }
                let tid = random_hex(16)?;
                insert_task(
                    &mut tx,
                    project_pk,
                    &tid,
                    bpk,
                    *spk,
                    TaskState::Pending,
                    roi.clone(),
                    now,
                    now,
                )
                .await?;
                added += 1;
            }
            bump(&mut tx, bpk, TaskState::Pending, added).await?;
            kept += added as u64;
            sqlx::query("delete from batch_task_groups where batch_pk = $1")
                .bind(bpk)
                .execute(&mut *tx)
                .await?;
            insert_batch_groups(&mut tx, bpk, &resolved.group_pks).await?;
        }
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(BatchCreated {
            id: batch_id.to_owned(),
            succeed_count: kept,
            failures,
        })
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
        let mut tx = self.begin_read().await?;
        let mut sql = format!("select {DETAIL_COLS} where t.project_pk = $1");
        if q.batch_id.is_some() {
            sql.push_str(" and b.id = $4");
        }
        if !q.states.is_empty() {
            sql.push_str(&format!(" and t.state in ({})", in_list(&q.states)));
        }
        let dir = if q.descending { "desc" } else { "asc" };
        sql.push_str(&format!(
            " order by t.created_at {dir}, t.id {dir} limit $2 offset $3"
        ));
        let mut query = sqlx::query(&sql)
            .bind(project_pk)
            .bind(i64::from(q.page_size))
            .bind(i64::from(q.page) * i64::from(q.page_size));
        if let Some(b) = &q.batch_id {
            query = query.bind(b.as_str());
        }
        let rows = query.fetch_all(&mut *tx).await?;
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
            "select {HISTORY_COLS} from task_events where task_pk = $1 order by pk"
        ))
        .bind(t.pk)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(history_from).collect()
    }
}
