//! Task moves: the one place a task changes state (`move_task`), the
//! lifecycle transaction every move runs in, and the API's events on tasks
//! and batches, including UpdateBatchTask.

use super::{Applied, BatchUpdate};
use crate::domain::transition::{self, Event, Outcome};
use crate::domain::{now_millis, random_hex, FieldError, TaskState};
use crate::store::batch::{bump, insert_batch_groups, insert_task, resolve_sources};
use crate::store::sql_store::{SqlStore, Tx, Writer};
use crate::store::{sql, stored_state, BatchCreated, SourceFailure, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeSet, HashSet};

pub(crate) use crate::store::tick_tx::TaskKey;

/// Columns `key_from` decodes, from `tasks t`.
pub(super) const KEY_COLS: &str = "t.pk as pk, t.project_pk as project_pk, \
     t.batch_pk as batch_pk, t.state as state, t.worker_pk as worker_pk, t.attempt as attempt";

pub(super) fn key_from(r: &AnyRow) -> StoreResult<TaskKey> {
    Ok(TaskKey {
        pk: r.try_get("pk")?,
        project_pk: r.try_get("project_pk")?,
        batch_pk: r.try_get("batch_pk")?,
        state: stored_state(r.try_get("state")?)?,
        worker_pk: r.try_get("worker_pk")?,
        attempt: r.try_get("attempt")?,
    })
}

/// `1, 2, 3`: the states' stored numbers, for `in (...)`.
pub(super) fn in_list(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| s.index().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Batches whose counters a transaction changed: (project pk, batch pk).
pub(super) type Touched = BTreeSet<(i64, i64)>;

/// Moves one task by `event` if the table allows it from the state it was
/// read in; `None` if not (or if another writer moved it).
pub(super) async fn move_task(
    conn: &mut AnyConnection,
    t: &TaskKey,
    event: Event,
    worker: Option<i64>,
    error: Option<(&str, &str)>,
    now: i64,
    touched: &mut Touched,
) -> StoreResult<Option<Outcome>> {
    let Some(outcome) = transition::next(t.state, event) else {
        return Ok(None);
    };
    match outcome {
        Outcome::Gone => {
            let n = sqlx::query("delete from tasks where pk = $1 and state = $2")
                .bind(t.pk)
                .bind(t.state.index() as i64)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(None);
            }
            if let Some(b) = t.batch_pk {
                sqlx::query(&sql::bump_counter(t.state))
                    .bind(-1i64)
                    .bind(b)
                    .execute(&mut *conn)
                    .await?;
                touched.insert((t.project_pk, b));
            }
            // Its history goes with it.
            sqlx::query("delete from task_events where task_pk = $1")
                .bind(t.pk)
                .execute(&mut *conn)
                .await?;
            return Ok(Some(outcome));
        }
        Outcome::To(to) => {
            let (worker_pk, attempt) = if event == Event::Place {
                (worker, t.attempt + 1)
            } else if transition::is_held(to) {
                (t.worker_pk, t.attempt)
            } else {
                (None, t.attempt)
            };
            let clear = i64::from(matches!(event, Event::Start | Event::Place));
            let (code, msg) = match error {
                Some((c, m)) => (Some(c), Some(m)),
                None => (None, None),
            };
            let n = sqlx::query(
                "update tasks set state = $1, updated_at = $2, worker_pk = $3, attempt = $4, \
                 error_code = case when $5 = 1 then null else coalesce($6, error_code) end, \
                 error_message = case when $5 = 1 then null else coalesce($7, error_message) end \
                 where pk = $8 and state = $9",
            )
            .bind(to.index() as i64)
            .bind(now)
            .bind(worker_pk)
            .bind(attempt)
            .bind(clear)
            .bind(code)
            .bind(msg)
            .bind(t.pk)
            .bind(t.state.index() as i64)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(None);
            }
            if matches!(event, Event::Place | Event::Upgraded) {
                sqlx::query(
                    "update tasks set service_version = \
                     (select b.service_version from batch_tasks b where b.pk = tasks.batch_pk) \
                     where pk = $1",
                )
                .bind(t.pk)
                .execute(&mut *conn)
                .await?;
            }
            if let (Some(b), true) = (t.batch_pk, t.state != to) {
                sqlx::query(&sql::move_counter(t.state, to))
                    .bind(b)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    sqlx::query(
        "insert into task_events (task_pk, project_pk, at, from_state, event, to_state) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.pk)
    .bind(t.project_pk)
    .bind(now)
    .bind(t.state.index() as i64)
    .bind(event.to_string())
    .bind(match outcome {
        Outcome::To(s) => Some(s.index() as i64),
        Outcome::Gone => None,
    })
    .execute(&mut *conn)
    .await?;
    if let Some(b) = t.batch_pk {
        touched.insert((t.project_pk, b));
    }
    Ok(Some(outcome))
}

/// Placing and worker reports need a worker: they come only through the
/// scheduler tick and `worker_report`.
fn refuse_worker_events(event: Event) -> StoreResult<()> {
    if event.needs_worker() {
        return Err(StoreError::NotAllowed(format!(
            "{event} is reported by a worker, not applied directly"
        )));
    }
    Ok(())
}

impl SqlStore {
    /// A write transaction that first takes the one lifecycle lock row, so
    /// task moves, worker syncs and ticks of every process run one at a
    /// time: no two can lock tasks and batch counters in opposite orders
    /// (deadlock), and capacity read inside a tick stays true until it
    /// commits.
    pub(super) async fn begin_lifecycle(&self) -> StoreResult<Tx> {
        let mut tx = self.begin_write().await?;
        sqlx::query("update scheduler_lock set ticks = ticks + 1 where id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Before commit: see [`finish`].
    pub(super) async fn finish(
        &self,
        conn: &mut AnyConnection,
        touched: &Touched,
    ) -> StoreResult<()> {
        finish(&self.writer(), conn, touched).await
    }

    /// Moves one task in `tx` and commits: what an API intent and a worker
    /// report both are.
    pub(super) async fn move_one(
        &self,
        mut tx: Tx,
        t: &TaskKey,
        event: Event,
        error: Option<(&str, &str)>,
    ) -> StoreResult<Applied> {
        let mut touched = Touched::new();
        let now = now_millis();
        let applied = match move_task(&mut tx, t, event, None, error, now, &mut touched).await? {
            Some(to) => Applied::Moved { from: t.state, to },
            None => Applied::Refused { state: t.state },
        };
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(applied)
    }

    /// After commit: see [`publish`].
    pub(super) async fn publish(&self, touched: &Touched) {
        publish(&self.writer(), touched).await
    }
}

/// Before commit: drops batches being deleted whose last task went, and
/// records every changed batch for the change feed.
pub(super) async fn finish(
    w: &Writer,
    conn: &mut AnyConnection,
    touched: &Touched,
) -> StoreResult<()> {
    for (project_pk, batch_pk) in touched {
        sqlx::query(
            "delete from batch_task_groups where batch_pk = $1 and exists \
             (select 1 from batch_tasks where pk = $1 and deleting = 1 and num_task = 0)",
        )
        .bind(*batch_pk)
        .execute(&mut *conn)
        .await?;
        sqlx::query("delete from batch_tasks where pk = $1 and deleting = 1 and num_task = 0")
            .bind(*batch_pk)
            .execute(&mut *conn)
            .await?;
        w.record_change(conn, *project_pk, *batch_pk).await?;
    }
    Ok(())
}

/// After commit: the read model follows, before the write returns.
pub(super) async fn publish(w: &Writer, touched: &Touched) {
    for (project_pk, batch_pk) in touched {
        w.after_write(*project_pk, *batch_pk).await;
    }
}

/// The task `task_id` of a project.
pub(super) async fn task_key(
    conn: &mut AnyConnection,
    project_pk: i64,
    task_id: &str,
) -> StoreResult<TaskKey> {
    let r = sqlx::query(&format!(
        "select {KEY_COLS} from tasks t where t.project_pk = $1 and t.id = $2"
    ))
    .bind(project_pk)
    .bind(task_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound {
        what: "task",
        param: "task_id".into(),
    })?;
    key_from(&r)
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id, %event))]
pub(super) async fn apply_event(
    s: &SqlStore,
    project_pk: i64,
    task_id: &str,
    event: Event,
) -> StoreResult<Applied> {
    refuse_worker_events(event)?;
    let mut tx = s.begin_lifecycle().await?;
    let t = task_key(&mut tx, project_pk, task_id).await?;
    s.move_one(tx, &t, event, None).await
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id, %event))]
pub(super) async fn apply_batch_event(
    s: &SqlStore,
    project_pk: i64,
    batch_id: &str,
    event: Event,
) -> StoreResult<Vec<(String, Applied)>> {
    refuse_worker_events(event)?;
    let mut tx = s.begin_lifecycle().await?;
    let bpk: i64 =
        sqlx::query_scalar("select pk from batch_tasks where project_pk = $1 and id = $2")
            .bind(project_pk)
            .bind(batch_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "batch task",
                param: "task_id".into(),
            })?;
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
        let applied = match move_task(&mut tx, &t, event, None, None, now, &mut touched).await? {
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
    s.finish(&mut tx, &touched).await?;
    tx.commit().await?;
    s.publish(&touched).await;
    Ok(out)
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, batch_id = batch_id))]
pub(super) async fn update_batch_task(
    s: &SqlStore,
    project_pk: i64,
    batch_id: &str,
    u: &BatchUpdate,
) -> StoreResult<BatchCreated> {
    let mut tx = s.begin_lifecycle().await?;
    let row = sqlx::query(
        "select pk, deleting, service_name, service_version from batch_tasks \
         where project_pk = $1 and id = $2",
    )
    .bind(project_pk)
    .bind(batch_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound {
        what: "batch task",
        param: "task_id".into(),
    })?;
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
            return Err(StoreError::BatchNameTaken);
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
                        error_code: "VIAS.00010012",
                        error_msg: "the source's previous task is still being deleted; \
                                    add it again once it is gone"
                            .into(),
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
    s.finish(&mut tx, &touched).await?;
    tx.commit().await?;
    s.publish(&touched).await;
    Ok(BatchCreated {
        id: batch_id.to_string(),
        succeed_count: kept,
        failures,
    })
}
