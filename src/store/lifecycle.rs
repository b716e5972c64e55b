//! The lifecycle half of the store: every task move goes through
//! `domain::transition` and is written with a conditional update from the
//! state that was read, in the same transaction as the batch counters and
//! the task's history. Workers, their leases and the scheduler's tick live
//! here too, since they are SQL.

use super::StoreResult;
use crate::domain::transition::{Event, Outcome};
use crate::domain::TaskState;
use async_trait::async_trait;

/// A task as ListTasks and ShowTask return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDetail {
    pub id: String,
    pub batch_id: Option<String>,
    pub video_source_id: String,
    pub state: TaskState,
    pub worker_id: Option<String>,
    pub attempt: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One line of a task's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    pub at: i64,
    pub from: TaskState,
    pub event: String,
    /// `None`: the task was deleted.
    pub to: Option<TaskState>,
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Moved {
        from: TaskState,
        to: Outcome,
    },
    /// The table does not allow the event in the task's state (or another
    /// writer moved the task first, or the reporter does not hold it).
    Refused {
        state: TaskState,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ListTasksQuery {
    pub batch_id: Option<String>,
    pub states: Vec<TaskState>,
    /// Zero-based page index.
    pub page: u32,
    pub page_size: u32,
    pub descending: bool,
}

pub use crate::protocol::{Assignment, Held, SyncReply};

#[derive(Debug, Clone, Copy)]
pub struct TickConfig {
    /// At most this many tasks per step of one tick.
    pub batch: i64,
    /// A task pending longer than this goes `lack_of_resources`.
    pub wait_limit_ms: i64,
}

impl Default for TickConfig {
    fn default() -> Self {
        TickConfig {
            batch: 256,
            wait_limit_ms: 10 * 60 * 1000,
        }
    }
}

/// How many tasks one tick moved, by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub moved: Vec<(Event, u64)>,
    /// Tasks this tick moved already: each task moves one stage per tick,
    /// so every stage is visible for at least one tick.
    pub moved_tasks: std::collections::HashSet<i64>,
}

impl TickReport {
    pub fn add(&mut self, e: Event) {
        match self.moved.iter_mut().find(|(x, _)| *x == e) {
            Some((_, n)) => *n += 1,
            None => self.moved.push((e, 1)),
        }
    }

    pub fn total(&self) -> u64 {
        self.moved.iter().map(|(_, n)| n).sum()
    }

    pub fn count(&self, e: Event) -> u64 {
        self.moved
            .iter()
            .find(|(x, _)| *x == e)
            .map_or(0, |(_, n)| *n)
    }
}

/// UpdateBatchTask: what changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct BatchUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// When given, must be the batch's own service (name, version).
    pub service: Option<(String, String)>,
    pub priority: Option<String>,
    /// The new source list: sources added get new tasks, sources removed
    /// have their tasks deleted.
    pub groups: Option<Vec<super::BatchGroupInput>>,
    pub config: Option<serde_json::Value>,
    pub output: Option<serde_json::Value>,
}

/// A worker's stored credential.
#[derive(Debug, Clone)]
pub struct WorkerCredential {
    pub pk: i64,
    pub id: String,
    pub secret_hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub slots: i64,
    pub lost: bool,
    pub lease_expires_at: i64,
    pub held: i64,
}

#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Applies an API intent or operator event to one task.
    async fn apply_event(
        &self,
        project_pk: i64,
        task_id: &str,
        event: Event,
    ) -> StoreResult<Applied>;
    /// Applies an event to every task of a batch; Delete also marks the
    /// batch, which goes when its last task does.
    async fn apply_batch_event(
        &self,
        project_pk: i64,
        batch_id: &str,
        event: Event,
    ) -> StoreResult<Vec<(String, Applied)>>;
    /// UpdateBatchTask.
    async fn update_batch_task(
        &self,
        project_pk: i64,
        batch_id: &str,
        u: &BatchUpdate,
    ) -> StoreResult<super::BatchCreated>;
    async fn task(&self, project_pk: i64, task_id: &str) -> StoreResult<Option<TaskDetail>>;
    async fn list_tasks(&self, project_pk: i64, q: &ListTasksQuery)
        -> StoreResult<Vec<TaskDetail>>;
    async fn task_history(&self, project_pk: i64, task_id: &str) -> StoreResult<Vec<TaskHistory>>;

    // Workers.
    async fn create_worker(&self, id: &str, name: &str, secret_hash: &[u8]) -> StoreResult<()>;
    async fn worker_credential(&self, id: &str) -> StoreResult<Option<WorkerCredential>>;
    async fn workers(&self) -> StoreResult<Vec<WorkerRow>>;
    /// A worker (re)starts: its kind and slots, and a fresh lease.
    async fn register_worker(
        &self,
        worker_pk: i64,
        kind: &str,
        slots: i64,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<()>;
    /// Heartbeat and reconciliation: renews the lease, compares what the
    /// worker runs with what it holds, and says what to start and stop.
    async fn worker_sync(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
    ) -> StoreResult<SyncReply>;
    /// A worker's report on a task it holds.
    async fn worker_report(
        &self,
        worker_pk: i64,
        held: Held,
        event: Event,
        error: Option<(String, String)>,
    ) -> StoreResult<Applied>;

    /// One bounded scheduler step; ticks of all processes serialize.
    async fn scheduler_tick(&self, now: i64, cfg: &TickConfig) -> StoreResult<TickReport>;
    /// Extends every live worker's lease to `now + lease_ms` (a starting
    /// server could not hear heartbeats while it was down).
    async fn grace_leases(&self, now: i64, lease_ms: i64) -> StoreResult<()>;

    // Operator actions; their effects on tasks are applied by ticks.
    async fn set_project_frozen(&self, project_pk: i64, frozen: bool) -> StoreResult<()>;
    async fn set_service_deployed(
        &self,
        project_pk: i64,
        service_name: &str,
        service_version: &str,
        deployed: bool,
    ) -> StoreResult<()>;
    /// Moves every batch on `service_name` `from` to `to` (a registered
    /// service); their running tasks upgrade on the next ticks.
    async fn upgrade_service(
        &self,
        project_pk: i64,
        service_name: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<u64>;
}

/// Expands to `impl Lifecycle for $store`, in the module where
/// `impl_sql_store!` expanded (it uses that expansion's helpers).
macro_rules! impl_lifecycle {
    ($store:ident, $db:ty) => {
        mod lifecycle_impl {
            use super::*;
            use crate::domain::transition::{self, Event, Outcome, HELD};
            use crate::domain::TaskState;
            use crate::store::lifecycle::{
                Applied, Assignment, BatchUpdate, Held, Lifecycle, ListTasksQuery, SyncReply, TaskDetail,
                TaskHistory, TickConfig, TickReport, WorkerCredential, WorkerRow,
            };
            use crate::store::{StoreError, StoreResult};
            use async_trait::async_trait;
            use sqlx::Row;
            use std::collections::{BTreeSet, HashMap, HashSet};

            type Conn = <$db as sqlx::Database>::Connection;
            type DbRow = <$db as sqlx::Database>::Row;

            /// What a move needs to know about a task.
            #[derive(Debug, Clone)]
            struct TaskKey {
                pk: i64,
                project_pk: i64,
                batch_pk: Option<i64>,
                state: TaskState,
                worker_pk: Option<i64>,
                attempt: i64,
            }

            const KEY_COLS: &str = "t.pk, t.project_pk, t.batch_pk, t.state, t.worker_pk, t.attempt";

            fn key_from(r: &DbRow) -> StoreResult<TaskKey> {
                Ok(TaskKey {
                    pk: r.try_get(0)?,
                    project_pk: r.try_get(1)?,
                    batch_pk: r.try_get(2)?,
                    state: crate::store::stored_state(r.try_get(3)?)?,
                    worker_pk: r.try_get(4)?,
                    attempt: r.try_get(5)?,
                })
            }

            fn in_list(states: &[TaskState]) -> String {
                states.iter().map(|s| s.index().to_string()).collect::<Vec<_>>().join(", ")
            }

            async fn keys(conn: &mut Conn, sql: &str, binds: &[i64]) -> StoreResult<Vec<TaskKey>> {
                let mut q = sqlx::query::<$db>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_all(&mut *conn).await?.iter().map(key_from).collect()
            }

            /// Batches whose counters a transaction changed.
            type Touched = BTreeSet<(i64, i64)>;

            /// Moves one task by `event` if the table allows it from the state
            /// it was read in; `None` if not (or if another writer moved it).
            async fn move_task(
                conn: &mut Conn,
                t: &TaskKey,
                event: Event,
                worker: Option<i64>,
                error: Option<(&str, &str)>,
                now: i64,
                touched: &mut Touched,
            ) -> StoreResult<Option<Outcome>> {
                let Some(outcome) = transition::next(t.state, event) else { return Ok(None) };
                match outcome {
                    Outcome::Gone => {
                        let n = sqlx::query::<$db>("delete from tasks where pk = $1 and state = $2")
                            .bind(t.pk)
                            .bind(t.state.index() as i64)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        if n == 0 {
                            return Ok(None);
                        }
                        if let Some(b) = t.batch_pk {
                            sqlx::query::<$db>(&crate::store::sql::bump_counter(t.state))
                                .bind(-1i64)
                                .bind(b)
                                .execute(&mut *conn)
                                .await?;
                            touched.insert((t.project_pk, b));
                        }
                        // Its history goes with it.
                        sqlx::query::<$db>("delete from task_events where task_pk = $1")
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
                        let n = sqlx::query::<$db>(
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
                            sqlx::query::<$db>(
                                "update tasks set service_version = \
                                 (select b.service_version from batch_tasks b where b.pk = tasks.batch_pk) where pk = $1",
                            )
                            .bind(t.pk)
                            .execute(&mut *conn)
                            .await?;
                        }
                        if let (Some(b), true) = (t.batch_pk, t.state != to) {
                            sqlx::query::<$db>(&crate::store::sql::move_counter(t.state, to))
                                .bind(b)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                }
                sqlx::query::<$db>(
                    "insert into task_events (task_pk, project_pk, at, from_state, event, to_state) values ($1, $2, $3, $4, $5, $6)",
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

            /// Tasks in `state` needing workers of `kind`, by batch priority
            /// then age, with when they last moved. `frozen_too`: include tasks
            /// of frozen projects.
            async fn by_priority(
                conn: &mut Conn,
                state: TaskState,
                frozen_too: bool,
                kind: &str,
                n: i64,
            ) -> StoreResult<Vec<(TaskKey, i64)>> {
                if n <= 0 {
                    return Ok(Vec::new());
                }
                let frozen = if frozen_too { "" } else { " and p.frozen = 0" };
                let rows = sqlx::query::<$db>(&format!(
                    "select {KEY_COLS}, t.updated_at from tasks t \
                     left join batch_tasks b on b.pk = t.batch_pk join projects p on p.pk = t.project_pk \
                     where t.state = {} and coalesce(b.task_type, '0') = $2{frozen} order by {BY_PRIORITY} limit $1",
                    state.index()
                ))
                .bind(n)
                .bind(if kind == "edge" { "1" } else { "0" })
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(|r| Ok((key_from(r)?, r.try_get(6)?))).collect()
            }

            /// Placing and worker reports need a worker: they come only
            /// through the scheduler tick and `worker_report`.
            fn refuse_worker_events(event: Event) -> StoreResult<()> {
                if event == Event::Place || event.cause() == "worker" {
                    return Err(StoreError::NotAllowed(format!("{event} is reported by a worker, not applied directly")));
                }
                Ok(())
            }

            /// Moves each task by `event`, counting the moves.
            async fn apply_all(
                conn: &mut Conn,
                tasks: Vec<TaskKey>,
                event: Event,
                error: Option<(&str, &str)>,
                now: i64,
                touched: &mut Touched,
                report: &mut TickReport,
            ) -> StoreResult<()> {
                for t in tasks {
                    if report.moved_tasks.contains(&t.pk) {
                        continue;
                    }
                    if move_task(conn, &t, event, None, error, now, touched).await?.is_some() {
                        report.add(event);
                        report.moved_tasks.insert(t.pk);
                    }
                }
                Ok(())
            }

            impl $store {
                /// A write transaction that first takes the one lifecycle lock
                /// row, so task moves, worker syncs and ticks of every process
                /// run one at a time: no two can lock tasks and batch counters
                /// in opposite orders (deadlock), and capacity read inside a
                /// tick stays true until it commits.
                async fn begin_lifecycle(&self) -> StoreResult<sqlx::Transaction<'static, $db>> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query::<$db>("update scheduler_lock set ticks = ticks + 1 where id = 1")
                        .execute(&mut *tx)
                        .await?;
                    Ok(tx)
                }

                /// Before commit: drops batches being deleted whose last task
                /// went, and records every changed batch for the change feed.
                async fn finish(&self, conn: &mut Conn, touched: &Touched) -> StoreResult<()> {
                    for (project_pk, batch_pk) in touched {
                        sqlx::query::<$db>("delete from batch_task_groups where batch_pk = $1 and exists \
                             (select 1 from batch_tasks where pk = $1 and deleting = 1 and num_task = 0)")
                            .bind(*batch_pk)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query::<$db>("delete from batch_tasks where pk = $1 and deleting = 1 and num_task = 0")
                            .bind(*batch_pk)
                            .execute(&mut *conn)
                            .await?;
                        Self::record_change(conn, self.origin, *project_pk, *batch_pk).await?;
                    }
                    Ok(())
                }

                /// Moves one task in `tx` and commits: what an API intent and a
                /// worker report both are.
                async fn move_one(
                    &self,
                    mut tx: sqlx::Transaction<'static, $db>,
                    t: &TaskKey,
                    event: Event,
                    error: Option<(&str, &str)>,
                ) -> StoreResult<Applied> {
                    let mut touched = Touched::new();
                    let now = crate::domain::now_millis();
                    let applied = match move_task(&mut tx, t, event, None, error, now, &mut touched).await? {
                        Some(to) => Applied::Moved { from: t.state, to },
                        None => Applied::Refused { state: t.state },
                    };
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(applied)
                }

                /// After commit: the read model follows.
                async fn publish(&self, touched: &Touched) {
                    for (project_pk, batch_pk) in touched {
                        self.after_write(*project_pk, *batch_pk).await;
                    }
                }

                async fn task_key(conn: &mut Conn, project_pk: i64, task_id: &str) -> StoreResult<TaskKey> {
                    let r = sqlx::query::<$db>(&format!(
                        "select {KEY_COLS} from tasks t where t.project_pk = $1 and t.id = $2"
                    ))
                    .bind(project_pk)
                    .bind(task_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "task", param: "task_id".into() })?;
                    key_from(&r)
                }
            }

            fn detail_from(r: &DbRow) -> StoreResult<TaskDetail> {
                Ok(TaskDetail {
                    id: r.try_get(0)?,
                    batch_id: r.try_get(1)?,
                    video_source_id: r.try_get(2)?,
                    state: crate::store::stored_state(r.try_get(3)?)?,
                    worker_id: r.try_get(4)?,
                    attempt: r.try_get(5)?,
                    error_code: r.try_get(6)?,
                    error_message: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                    updated_at: r.try_get(9)?,
                })
            }

            const DETAIL_COLS: &str = "t.id, b.id, s.id, t.state, w.id, t.attempt, t.error_code, t.error_message, \
                 t.created_at, t.updated_at from tasks t left join batch_tasks b on b.pk = t.batch_pk \
                 join video_sources s on s.pk = t.video_source_pk left join workers w on w.pk = t.worker_pk";

            const ASSIGN_COLS: &str = "t.pk, t.attempt, p.id, t.id, b.id, s.url, coalesce(b.config, '{}'), \
                 coalesce(b.service_name, ''), coalesce(b.service_version, ''), t.state, t.project_pk, t.batch_pk from tasks t \
                 join projects p on p.pk = t.project_pk join video_sources s on s.pk = t.video_source_pk \
                 left join batch_tasks b on b.pk = t.batch_pk";

            fn assignment_from(r: &DbRow) -> StoreResult<(Assignment, TaskState)> {
                Ok((
                    Assignment {
                        task: r.try_get(0)?,
                        attempt: r.try_get(1)?,
                        project_id: r.try_get(2)?,
                        task_id: r.try_get(3)?,
                        batch_id: r.try_get(4)?,
                        source_url: r.try_get(5)?,
                        config: r.try_get(6)?,
                        service_name: r.try_get(7)?,
                        service_version: r.try_get(8)?,
                    },
                    crate::store::stored_state(r.try_get(9)?)?,
                ))
            }

            /// Batch priority first (high, medium, low), then age.
            const BY_PRIORITY: &str = "case b.priority when 'high' then 0 when 'medium' then 1 else 2 end, t.created_at, t.pk";

            #[async_trait]
            impl Lifecycle for $store {
                async fn apply_event(&self, project_pk: i64, task_id: &str, event: Event) -> StoreResult<Applied> {
                    refuse_worker_events(event)?;
                    let mut tx = self.begin_lifecycle().await?;
                    let t = Self::task_key(&mut tx, project_pk, task_id).await?;
                    self.move_one(tx, &t, event, None).await
                }

                async fn apply_batch_event(&self, project_pk: i64, batch_id: &str, event: Event) -> StoreResult<Vec<(String, Applied)>> {
                    refuse_worker_events(event)?;
                    let mut tx = self.begin_lifecycle().await?;
                    let bpk: i64 = sqlx::query_scalar::<$db, i64>("select pk from batch_tasks where project_pk = $1 and id = $2")
                        .bind(project_pk)
                        .bind(batch_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::NotFound { what: "batch task", param: "task_id".into() })?;
                    let rows = sqlx::query::<$db>(&format!(
                        "select {KEY_COLS}, t.id from tasks t where t.batch_pk = $1 order by t.pk"
                    ))
                    .bind(bpk)
                    .fetch_all(&mut *tx)
                    .await?;
                    let now = crate::domain::now_millis();
                    let mut touched = Touched::new();
                    touched.insert((project_pk, bpk));
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let t = key_from(r)?;
                        let id: String = r.try_get(6)?;
                        let applied = match move_task(&mut tx, &t, event, None, None, now, &mut touched).await? {
                            Some(to) => Applied::Moved { from: t.state, to },
                            None => Applied::Refused { state: t.state },
                        };
                        out.push((id, applied));
                    }
                    if event == Event::Delete {
                        sqlx::query::<$db>("update batch_tasks set deleting = 1 where pk = $1")
                            .bind(bpk)
                            .execute(&mut *tx)
                            .await?;
                    }
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(out)
                }

                async fn update_batch_task(&self, project_pk: i64, batch_id: &str, u: &BatchUpdate) -> StoreResult<crate::store::BatchCreated> {
                    let mut tx = self.begin_lifecycle().await?;
                    let row = sqlx::query::<$db>(
                        "select pk, deleting, service_name, service_version from batch_tasks where project_pk = $1 and id = $2",
                    )
                    .bind(project_pk)
                    .bind(batch_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "batch task", param: "task_id".into() })?;
                    let bpk: i64 = row.try_get(0)?;
                    if row.try_get::<i64, _>(1)? != 0 {
                        return Err(StoreError::NotAllowed("the batch task is being deleted".into()));
                    }
                    if let Some((name, version)) = &u.service {
                        if *name != row.try_get::<String, _>(2)? || *version != row.try_get::<String, _>(3)? {
                            return Err(crate::domain::FieldError::new("service_name", "the service of a batch task cannot change").into());
                        }
                    }
                    if let Some(name) = &u.name {
                        let clash = sqlx::query_scalar::<$db, i64>("select pk from batch_tasks where project_pk = $1 and name = $2 and pk <> $3")
                            .bind(project_pk)
                            .bind(name)
                            .bind(bpk)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if clash.is_some() {
                            return Err(StoreError::BatchNameTaken);
                        }
                        sqlx::query::<$db>("update batch_tasks set name = $1, name_lc = $2 where pk = $3")
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
                            sqlx::query::<$db>(&format!("update batch_tasks set {col} = $1 where pk = $2"))
                                .bind(v)
                                .bind(bpk)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    let mut touched = Touched::new();
                    touched.insert((project_pk, bpk));
                    let existing = sqlx::query::<$db>(&format!("select {KEY_COLS}, t.video_source_pk from tasks t where t.batch_pk = $1 order by t.pk"))
                        .bind(bpk)
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut kept = existing.len() as u64;
                    let mut failures = Vec::new();
                    if let Some(groups) = &u.groups {
                        let now = crate::domain::now_millis();
                        let mut group_pks = Vec::with_capacity(groups.len());
                        for g in groups {
                            let gpk = group_pk(&mut tx, project_pk, &g.group_id).await?.ok_or_else(|| StoreError::NotFound {
                                what: "video group",
                                param: "video_source_group_id".into(),
                            })?;
                            if group_pks.contains(&gpk) {
                                return Err(crate::domain::FieldError::new(
                                    "video_source_group_id",
                                    format!("video group {:?} is listed twice", g.group_id),
                                )
                                .into());
                            }
                            group_pks.push(gpk);
                        }
                        // The wanted sources, as CreateBatchTask resolves them.
                        let mut wanted: Vec<(i64, Option<String>)> = Vec::new();
                        let mut wanted_pks: HashSet<i64> = HashSet::new();
                        for (g, gpk) in groups.iter().zip(&group_pks) {
                            let members: Vec<(String, i64)> = sqlx::query::<$db>(
                                "select s.id, s.pk from video_source_groups vsg join video_sources s on s.pk = vsg.source_pk \
                                 where vsg.group_pk = $1 and s.deleted = 0 order by s.pk",
                            )
                            .bind(*gpk)
                            .fetch_all(&mut *tx)
                            .await?
                            .iter()
                            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                            .collect::<StoreResult<_>>()?;
                            let listed: Vec<(String, Option<String>)> = match &g.sources {
                                None => members.iter().map(|(id, _)| (id.clone(), None)).collect(),
                                Some(list) => list
                                    .iter()
                                    .map(|s| (s.source_id.clone(), s.target_roi.as_ref().map(|v| v.to_string())))
                                    .collect(),
                            };
                            for (sid, roi) in listed {
                                let fail = |code: &'static str, msg: String| crate::store::SourceFailure {
                                    video_source_id: sid.clone(),
                                    error_code: code,
                                    error_msg: msg,
                                };
                                match members.iter().find(|(id, _)| *id == sid) {
                                    None => failures.push(if source_pk(&mut tx, project_pk, &sid).await?.is_some() {
                                        fail("VIAS.00010001", format!("video source is not in video group {:?}", g.group_id))
                                    } else {
                                        fail("VIAS.00010002", "video source does not exist".into())
                                    }),
                                    Some((_, spk)) if !wanted_pks.insert(*spk) => {
                                        failures.push(fail("VIAS.00010003", "video source is already in this batch task".into()))
                                    }
                                    Some((_, spk)) => wanted.push((*spk, roi)),
                                }
                            }
                        }
                        // Tasks of sources no longer wanted go (through the table).
                        let mut have = HashSet::new();
                        kept = 0;
                        for r in &existing {
                            let t = key_from(r)?;
                            let spk: i64 = r.try_get(6)?;
                            // A task still being deleted keeps its source's place
                            // in the batch until its worker lets go.
                            have.insert(spk);
                            if wanted_pks.contains(&spk) {
                                if t.state == TaskState::Deleting {
                                    let sid: String = sqlx::query_scalar::<$db, String>("select id from video_sources where pk = $1")
                                        .bind(spk)
                                        .fetch_one(&mut *tx)
                                        .await?;
                                    failures.push(crate::store::SourceFailure {
                                        video_source_id: sid,
                                        error_code: "VIAS.00010012",
                                        error_msg: "the source's previous task is still being deleted; add it again once it is gone".into(),
                                    });
                                } else {
                                    kept += 1;
                                }
                            } else {
                                move_task(&mut tx, &t, Event::Delete, None, None, now, &mut touched).await?;
                            }
                        }
                        let mut added = 0;
                        for (spk, roi) in &wanted {
                            if have.contains(spk) {
                                continue;
                            }
                            let tid = crate::domain::random_hex(16)?;
                            insert_task(&mut tx, project_pk, &tid, bpk, *spk, TaskState::Pending, roi.clone(), now, now).await?;
                            added += 1;
                        }
                        bump(&mut tx, bpk, TaskState::Pending, added).await?;
                        kept += added as u64;
                        sqlx::query::<$db>("delete from batch_task_groups where batch_pk = $1")
                            .bind(bpk)
                            .execute(&mut *tx)
                            .await?;
                        for (pos, gpk) in group_pks.iter().enumerate() {
                            sqlx::query::<$db>("insert into batch_task_groups (batch_pk, position, group_pk) values ($1, $2, $3)")
                                .bind(bpk)
                                .bind(pos as i64)
                                .bind(*gpk)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(crate::store::BatchCreated { id: batch_id.to_string(), succeed_count: kept, failures })
                }

                async fn task(&self, project_pk: i64, task_id: &str) -> StoreResult<Option<TaskDetail>> {
                    let mut tx = self.begin_read().await?;
                    let r = sqlx::query::<$db>(&format!("select {DETAIL_COLS} where t.project_pk = $1 and t.id = $2"))
                        .bind(project_pk)
                        .bind(task_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    r.as_ref().map(detail_from).transpose()
                }

                async fn list_tasks(&self, project_pk: i64, q: &ListTasksQuery) -> StoreResult<Vec<TaskDetail>> {
                    let mut tx = self.begin_read().await?;
                    let mut sql = format!("select {DETAIL_COLS} where t.project_pk = $1");
                    if q.batch_id.is_some() {
                        sql.push_str(" and b.id = $4");
                    }
                    if !q.states.is_empty() {
                        sql.push_str(&format!(" and t.state in ({})", in_list(&q.states)));
                    }
                    let dir = if q.descending { "desc" } else { "asc" };
                    sql.push_str(&format!(" order by t.created_at {dir}, t.id {dir} limit $2 offset $3"));
                    let mut query = sqlx::query::<$db>(&sql)
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

                async fn task_history(&self, project_pk: i64, task_id: &str) -> StoreResult<Vec<TaskHistory>> {
                    let mut tx = self.begin_read().await?;
                    let t = Self::task_key(&mut tx, project_pk, task_id).await?;
                    let rows = sqlx::query::<$db>(
                        "select at, from_state, event, to_state from task_events where task_pk = $1 order by pk",
                    )
                    .bind(t.pk)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    rows.iter()
                        .map(|r| {
                            Ok(TaskHistory {
                                at: r.try_get(0)?,
                                from: crate::store::stored_state(r.try_get(1)?)?,
                                event: r.try_get(2)?,
                                to: r.try_get::<Option<i64>, _>(3)?.map(crate::store::stored_state).transpose()?,
                            })
                        })
                        .collect()
                }

                async fn create_worker(&self, id: &str, name: &str, secret_hash: &[u8]) -> StoreResult<()> {
                    crate::domain::field::check_id("id", id)?;
                    crate::domain::field::check_display_name("name", name, 1, 64)?;
                    let mut tx = self.begin_write().await?;
                    let exists = sqlx::query_scalar::<$db, i64>("select pk from workers where id = $1 or name = $2")
                        .bind(id)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_some() {
                        return Err(StoreError::Conflict { what: "worker", param: "name".into() });
                    }
                    sqlx::query::<$db>("insert into workers (id, name, secret_hash, created_at) values ($1, $2, $3, $4)")
                        .bind(id)
                        .bind(name)
                        .bind(secret_hash)
                        .bind(crate::domain::now_millis())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn worker_credential(&self, id: &str) -> StoreResult<Option<WorkerCredential>> {
                    let mut tx = self.begin_read().await?;
                    let r = sqlx::query::<$db>("select pk, id, secret_hash from workers where id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    r.map(|r| Ok(WorkerCredential { pk: r.try_get(0)?, id: r.try_get(1)?, secret_hash: r.try_get(2)? }))
                        .transpose()
                }

                async fn workers(&self) -> StoreResult<Vec<WorkerRow>> {
                    let mut tx = self.begin_read().await?;
                    let rows = sqlx::query::<$db>(&format!(
                        "select w.id, w.name, w.kind, w.slots, w.lost, w.lease_expires_at, \
                         (select count(*) from tasks t where t.worker_pk = w.pk and t.state in ({})) from workers w order by w.id",
                        in_list(&HELD)
                    ))
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    rows.iter()
                        .map(|r| {
                            Ok(WorkerRow {
                                id: r.try_get(0)?,
                                name: r.try_get(1)?,
                                kind: r.try_get(2)?,
                                slots: r.try_get(3)?,
                                lost: r.try_get::<i64, _>(4)? != 0,
                                lease_expires_at: r.try_get(5)?,
                                held: r.try_get(6)?,
                            })
                        })
                        .collect()
                }

                async fn register_worker(&self, worker_pk: i64, kind: &str, slots: i64, now: i64, lease_ms: i64) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query::<$db>(
                        "update workers set kind = $1, slots = $2, registered_at = $3, lease_expires_at = $4, lost = 0 where pk = $5",
                    )
                    .bind(kind)
                    .bind(slots)
                    .bind(now)
                    .bind(now + lease_ms)
                    .bind(worker_pk)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn worker_sync(&self, worker_pk: i64, now: i64, lease_ms: i64, running: &[Held]) -> StoreResult<SyncReply> {
                    let mut tx = self.begin_lifecycle().await?;
                    let renewed = sqlx::query::<$db>("update workers set lease_expires_at = $1, lost = 0 where pk = $2")
                        .bind(now + lease_ms)
                        .bind(worker_pk)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if renewed == 0 {
                        return Err(StoreError::NotFound { what: "worker", param: "worker".into() });
                    }
                    let held_rows = sqlx::query::<$db>(&format!(
                        "select {ASSIGN_COLS} where t.worker_pk = $1 and t.state in ({}) order by t.pk",
                        in_list(&HELD)
                    ))
                    .bind(worker_pk)
                    .fetch_all(&mut *tx)
                    .await?;
                    let reported: HashSet<Held> = running.iter().copied().collect();
                    let mut mine = HashSet::new();
                    let mut reply = SyncReply::default();
                    let mut touched = Touched::new();
                    for r in &held_rows {
                        let (a, state) = assignment_from(r)?;
                        let h = Held { task: a.task, attempt: a.attempt };
                        mine.insert(h);
                        let runs = reported.contains(&h);
                        let lost_or_released = match state {
                            TaskState::Starting if !runs => {
                                reply.assign.push(a);
                                None
                            }
                            TaskState::Upgrading if runs => {
                                reply.upgrade.push(a);
                                None
                            }
                            TaskState::Running | TaskState::Upgrading if !runs => Some((
                                Event::LeaseExpired,
                                Some(("VIAS.TC.TASK_LOST", "the worker no longer runs the task")),
                            )),
                            TaskState::Stopping | TaskState::Deleting | TaskState::Freezing => {
                                if runs {
                                    reply.stop.push(h);
                                    None
                                } else {
                                    Some((Event::Released, None))
                                }
                            }
                            _ => None,
                        };
                        if let Some((event, error)) = lost_or_released {
                            let key = TaskKey {
                                pk: h.task,
                                project_pk: r.try_get(10)?,
                                batch_pk: r.try_get(11)?,
                                state,
                                worker_pk: Some(worker_pk),
                                attempt: h.attempt,
                            };
                            move_task(&mut tx, &key, event, None, error, now, &mut touched).await?;
                        }
                    }
                    for h in running {
                        if !mine.contains(h) {
                            reply.stop.push(*h);
                        }
                    }
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(reply)
                }

                async fn worker_report(&self, worker_pk: i64, held: Held, event: Event, error: Option<(String, String)>) -> StoreResult<Applied> {
                    if event.cause() != "worker" {
                        return Err(StoreError::NotAllowed(format!("{event} is not a worker report")));
                    }
                    let mut tx = self.begin_lifecycle().await?;
                    let r = sqlx::query::<$db>(&format!("select {KEY_COLS} from tasks t where t.pk = $1"))
                        .bind(held.task)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::NotFound { what: "task", param: "task".into() })?;
                    let t = key_from(&r)?;
                    if t.worker_pk != Some(worker_pk) || t.attempt != held.attempt {
                        return Ok(Applied::Refused { state: t.state });
                    }
                    let err = error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
                    self.move_one(tx, &t, event, err).await
                }

                async fn scheduler_tick(&self, now: i64, cfg: &TickConfig) -> StoreResult<TickReport> {
                    let mut tx = self.begin_lifecycle().await?;
                    // begin_lifecycle took the lock row: ticks never overlap
                    // each other or any task move, so capacity read here stays true.
                    let mut report = TickReport::default();
                    let mut touched = Touched::new();
                    let n = cfg.batch;
                    // Workers silent past their lease.
                    sqlx::query::<$db>("update workers set lost = 1 where lost = 0 and lease_expires_at < $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let live = in_list(&[
                        TaskState::Pending,
                        TaskState::Scheduling,
                        TaskState::LackOfResources,
                        TaskState::Starting,
                        TaskState::Running,
                        TaskState::Upgrading,
                    ]);
                    let waiting = in_list(&[TaskState::Pending, TaskState::Scheduling, TaskState::LackOfResources]);
                    // (which tasks, the event, the error it records). Each step
                    // moves a task one stage, and a task moves once per tick, so
                    // every stage is visible for at least one tick.
                    let steps: [(String, Event, Option<(&str, &str)>); 8] = [
                        (format!("where t.state = {}", TaskState::Recovering.index()), Event::Requeued, None),
                        (format!("where t.state = {}", TaskState::Abnormal.index()), Event::Recover, None),
                        (
                            format!("left join workers w on w.pk = t.worker_pk \
                                     where (w.lost = 1 or t.worker_pk is null) and t.state in ({})", in_list(&HELD)),
                            Event::LeaseExpired,
                            Some(("VIAS.TC.WORKER_LOST", "the worker missed its heartbeats")),
                        ),
                        (
                            format!("join video_sources s on s.pk = t.video_source_pk where s.deleted = 1 and t.state in ({waiting})"),
                            Event::SourceGone,
                            Some(("VIAS.TC.SOURCE_GONE", "the video source was deleted")),
                        ),
                        (
                            format!("join projects p on p.pk = t.project_pk where p.frozen = 1 and t.state in ({live})"),
                            Event::Freeze,
                            None,
                        ),
                        (
                            format!("join projects p on p.pk = t.project_pk where p.frozen = 0 and t.state = {}", TaskState::Frozen.index()),
                            Event::Unfreeze,
                            None,
                        ),
                        (
                            format!("join batch_tasks b on b.pk = t.batch_pk join services v on v.pk = b.service_pk \
                                     where v.deployed = 0 and t.state in ({live})"),
                            Event::Undeploy,
                            Some(("VIAS.TC.NO_SERVICE", "the algorithm service is not deployed")),
                        ),
                        (
                            format!("join batch_tasks b on b.pk = t.batch_pk \
                                     where t.state = {} and t.service_version <> b.service_version", TaskState::Running.index()),
                            Event::Upgrade,
                            None,
                        ),
                    ];
                    for (which, event, error) in &steps {
                        let sql = format!("select {KEY_COLS} from tasks t {which} order by t.pk limit $1");
                        let tasks = keys(&mut tx, &sql, &[n]).await?;
                        apply_all(&mut tx, tasks, *event, *error, now, &mut touched, &mut report).await?;
                    }

                    // Capacity by kind: (worker pk, free slots) of live workers.
                    let rows = sqlx::query::<$db>(&format!(
                        "select w.pk, w.kind, w.slots - (select count(*) from tasks t where t.worker_pk = w.pk and t.state in ({})) \
                         from workers w where w.lost = 0 order by w.pk",
                        in_list(&HELD)
                    ))
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut free: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
                    for r in &rows {
                        let kind: String = r.try_get(1)?;
                        free.entry(kind).or_default().push((r.try_get(0)?, r.try_get(2)?));
                    }

                    // Each worker type on its own, so a backlog of one type never
                    // hides the other's tasks from the pick.
                    for kind in ["cloud", "edge"] {
                        let free_slots = |free: &HashMap<String, Vec<(i64, i64)>>| -> i64 {
                            free.get(kind).map_or(0, |ws| ws.iter().map(|(_, f)| (*f).max(0)).sum())
                        };

                        // Place what the last tick picked.
                        for t in by_priority(&mut tx, TaskState::Scheduling, true, kind, n).await? {
                            if report.moved_tasks.contains(&t.0.pk) {
                                continue;
                            }
                            let (event, worker, error) = match free.get_mut(kind) {
                                None => (
                                    Event::NoCapacity,
                                    None,
                                    Some(("VIAS.TC.NO_WORKER", "no registered worker runs this task type")),
                                ),
                                Some(ws) => match ws.iter_mut().filter(|(_, f)| *f > 0).max_by_key(|(_, f)| *f) {
                                    Some((w, f)) => {
                                        *f -= 1;
                                        (Event::Place, Some(*w), None)
                                    }
                                    None => (Event::Requeue, None, None),
                                },
                            };
                            if move_task(&mut tx, &t.0, event, worker, error, now, &mut touched).await?.is_some() {
                                report.add(event);
                                report.moved_tasks.insert(t.0.pk);
                            }
                        }

                        // As many tasks back from lack_of_resources as there are
                        // free slots of the type, then pending ones up to what is
                        // left; with no live worker of the type, or past the wait
                        // limit without a slot, they lack resources.
                        let mut budget = free_slots(&free);
                        let back = by_priority(&mut tx, TaskState::LackOfResources, true, kind, budget.min(n)).await?;
                        for (t, _) in back {
                            if budget > 0
                                && !report.moved_tasks.contains(&t.pk)
                                && move_task(&mut tx, &t, Event::CapacityBack, None, None, now, &mut touched).await?.is_some()
                            {
                                budget -= 1;
                                report.add(Event::CapacityBack);
                                report.moved_tasks.insert(t.pk);
                            }
                        }
                        for (t, updated_at) in by_priority(&mut tx, TaskState::Pending, false, kind, n).await? {
                            if report.moved_tasks.contains(&t.pk) {
                                continue;
                            }
                            let (event, error) = if !free.contains_key(kind) {
                                (Event::NoCapacity, Some(("VIAS.TC.NO_WORKER", "no registered worker runs this task type")))
                            } else if budget > 0 {
                                budget -= 1;
                                (Event::Schedule, None)
                            } else if now - updated_at > cfg.wait_limit_ms {
                                (Event::NoCapacity, Some(("VIAS.TC.WAIT_LIMIT", "no worker slot freed up within the wait limit")))
                            } else {
                                continue;
                            };
                            if move_task(&mut tx, &t, event, None, error, now, &mut touched).await?.is_some() {
                                report.add(event);
                                report.moved_tasks.insert(t.pk);
                            }
                        }
                    }

                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(report)
                }

                async fn grace_leases(&self, now: i64, lease_ms: i64) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query::<$db>("update workers set lease_expires_at = $1 where lost = 0 and lease_expires_at < $1")
                        .bind(now + lease_ms)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_project_frozen(&self, project_pk: i64, frozen: bool) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query::<$db>("update projects set frozen = $1 where pk = $2")
                        .bind(i64::from(frozen))
                        .bind(project_pk)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_service_deployed(&self, project_pk: i64, service_name: &str, service_version: &str, deployed: bool) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let n = sqlx::query::<$db>(
                        "update services set deployed = $1 where project_pk = $2 and service_name = $3 and service_version = $4",
                    )
                    .bind(i64::from(deployed))
                    .bind(project_pk)
                    .bind(service_name)
                    .bind(service_version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Err(StoreError::NotFound { what: "service", param: "service_version".into() });
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn upgrade_service(&self, project_pk: i64, service_name: &str, from: &str, to: &str) -> StoreResult<u64> {
                    let mut tx = self.begin_lifecycle().await?;
                    let to_pk = sqlx::query_scalar::<$db, i64>(
                        "select pk from services where project_pk = $1 and service_name = $2 and service_version = $3",
                    )
                    .bind(project_pk)
                    .bind(service_name)
                    .bind(to)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "service", param: "service_version".into() })?;
                    let pks = sqlx::query_scalar::<$db, i64>(
                        "update batch_tasks set service_version = $1, service_pk = $2 \
                         where project_pk = $3 and service_name = $4 and service_version = $5 returning pk",
                    )
                    .bind(to)
                    .bind(to_pk)
                    .bind(project_pk)
                    .bind(service_name)
                    .bind(from)
                    .fetch_all(&mut *tx)
                    .await?;
                    let touched: Touched = pks.iter().map(|b| (project_pk, *b)).collect();
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(pks.len() as u64)
                }
            }

        }
    };
}
pub(crate) use impl_lifecycle;
