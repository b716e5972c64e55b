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

    /// A scheduler tick's transaction: it takes the lifecycle lock, so ticks
    /// of all processes serialize with each other and with every task move.
    async fn begin_tick(&self) -> StoreResult<Box<dyn super::tick_tx::TickTx>>;
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
            use crate::domain::transition::{self, Cause, Event, Outcome, HELD};
            use crate::domain::TaskState;
            use crate::store::lifecycle::{
                Applied, Assignment, BatchUpdate, Held, Lifecycle, ListTasksQuery, SyncReply, TaskDetail,
                TaskHistory, WorkerCredential, WorkerRow,
            };
            use crate::store::{StoreError, StoreResult};
            use async_trait::async_trait;
            use sqlx::Row;
            use std::collections::{BTreeSet, HashMap};

            type Conn = <$db as sqlx::Database>::Connection;
            type DbRow = <$db as sqlx::Database>::Row;

            use crate::store::tick_tx::{TaskKey, TickTx, Waiting};
            use crate::scheduler::decide::{self, Selector, TaskError, WorkerSlots};
            use crate::domain::DeployType;

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
                kind: DeployType,
                n: i64,
            ) -> StoreResult<Vec<Waiting>> {
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
                .bind(kind.task_type())
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(|r| Ok(Waiting { key: key_from(r)?, updated_at: r.try_get(6)? })).collect()
            }

            /// Placing and worker reports need a worker: they come only
            /// through the scheduler tick and `worker_report`.
            fn refuse_worker_events(event: Event) -> StoreResult<()> {
                if event.needs_worker() {
                    return Err(StoreError::NotAllowed(format!("{event} is reported by a worker, not applied directly")));
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

                async fn finish(&self, conn: &mut Conn, touched: &Touched) -> StoreResult<()> {
                    finish_touched(conn, self.origin, touched).await
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

                async fn publish(&self, touched: &Touched) {
                    publish_touched(&self.pool, &self.model, touched).await
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
                    let mut held = Vec::with_capacity(held_rows.len());
                    let mut assignments = HashMap::with_capacity(held_rows.len());
                    let mut keys = HashMap::with_capacity(held_rows.len());
                    for r in &held_rows {
                        let (a, state) = assignment_from(r)?;
                        let h = a.held();
                        held.push((h, state));
                        keys.insert(
                            h,
                            TaskKey {
                                pk: h.task,
                                project_pk: r.try_get(10)?,
                                batch_pk: r.try_get(11)?,
                                state,
                                worker_pk: Some(worker_pk),
                                attempt: h.attempt,
                            },
                        );
                        assignments.insert(h, a);
                    }
                    let decided = decide::reconcile(&held, running);
                    let mut touched = Touched::new();
                    for (h, event, error) in &decided.moves {
                        if let Some(key) = keys.get(h) {
                            move_task(&mut tx, key, *event, None, error.map(|e| (e.code, e.message)), now, &mut touched).await?;
                        }
                    }
                    let reply = SyncReply {
                        assign: decided.assign.iter().filter_map(|h| assignments.remove(h)).collect(),
                        stop: decided.stop,
                        upgrade: decided.upgrade.iter().filter_map(|h| assignments.remove(h)).collect(),
                    };
                    self.finish(&mut tx, &touched).await?;
                    tx.commit().await?;
                    self.publish(&touched).await;
                    Ok(reply)
                }

                async fn worker_report(&self, worker_pk: i64, held: Held, event: Event, error: Option<(String, String)>) -> StoreResult<Applied> {
                    if event.cause() != Cause::Worker {
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

                async fn begin_tick(&self) -> StoreResult<Box<dyn TickTx>> {
                    let tx = self.begin_lifecycle().await?;
                    Ok(Box::new(SqlTickTx {
                        tx,
                        pool: self.pool.clone(),
                        model: self.model.clone(),
                        origin: self.origin,
                        touched: Touched::new(),
                    }))
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

            /// A tick's transaction on this backend (see `TickTx`).
            struct SqlTickTx {
                tx: sqlx::Transaction<'static, $db>,
                pool: sqlx::Pool<$db>,
                model: Arc<ReadModel>,
                origin: i64,
                touched: Touched,
            }

            /// The tasks each maintenance step selects.
            fn selector_sql(which: Selector) -> String {
                let live = in_list(&[
                    TaskState::Pending,
                    TaskState::Scheduling,
                    TaskState::LackOfResources,
                    TaskState::Starting,
                    TaskState::Running,
                    TaskState::Upgrading,
                ]);
                let waiting = in_list(&[TaskState::Pending, TaskState::Scheduling, TaskState::LackOfResources]);
                match which {
                    Selector::Recovering => format!("where t.state = {}", TaskState::Recovering.index()),
                    Selector::Abnormal => format!("where t.state = {}", TaskState::Abnormal.index()),
                    Selector::HeldByLostWorker => format!(
                        "left join workers w on w.pk = t.worker_pk where (w.lost = 1 or t.worker_pk is null) and t.state in ({})",
                        in_list(&HELD)
                    ),
                    Selector::SourceGone => format!(
                        "join video_sources s on s.pk = t.video_source_pk where s.deleted = 1 and t.state in ({waiting})"
                    ),
                    Selector::FrozenProject => {
                        format!("join projects p on p.pk = t.project_pk where p.frozen = 1 and t.state in ({live})")
                    }
                    Selector::UnfrozenProject => format!(
                        "join projects p on p.pk = t.project_pk where p.frozen = 0 and t.state = {}",
                        TaskState::Frozen.index()
                    ),
                    Selector::Undeployed => format!(
                        "join batch_tasks b on b.pk = t.batch_pk join services v on v.pk = b.service_pk \
                         where v.deployed = 0 and t.state in ({live})"
                    ),
                    Selector::VersionBehind => format!(
                        "join batch_tasks b on b.pk = t.batch_pk where t.state = {} and t.service_version <> b.service_version",
                        TaskState::Running.index()
                    ),
                }
            }

            #[async_trait]
            impl TickTx for SqlTickTx {
                async fn mark_lost_workers(&mut self, now: i64) -> StoreResult<()> {
                    sqlx::query::<$db>("update workers set lost = 1 where lost = 0 and lease_expires_at < $1")
                        .bind(now)
                        .execute(&mut *self.tx)
                        .await?;
                    Ok(())
                }

                async fn select(&mut self, which: Selector, limit: i64) -> StoreResult<Vec<TaskKey>> {
                    let sql = format!("select {KEY_COLS} from tasks t {} order by t.pk limit $1", selector_sql(which));
                    keys(&mut self.tx, &sql, &[limit]).await
                }

                async fn waiting(&mut self, state: TaskState, kind: DeployType, frozen_too: bool, limit: i64) -> StoreResult<Vec<Waiting>> {
                    by_priority(&mut self.tx, state, frozen_too, kind, limit).await
                }

                async fn capacity(&mut self) -> StoreResult<Vec<WorkerSlots>> {
                    let rows = sqlx::query::<$db>(&format!(
                        "select w.pk, w.kind, w.slots - (select count(*) from tasks t where t.worker_pk = w.pk and t.state in ({})) \
                         from workers w where w.lost = 0 order by w.pk",
                        in_list(&HELD)
                    ))
                    .fetch_all(&mut *self.tx)
                    .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let kind: String = r.try_get(1)?;
                        if let Some(kind) = DeployType::parse(&kind) {
                            out.push(WorkerSlots { worker_pk: r.try_get(0)?, kind, free: r.try_get(2)? });
                        }
                    }
                    Ok(out)
                }

                async fn apply(&mut self, task: &TaskKey, event: Event, worker: Option<i64>, error: Option<TaskError>, now: i64) -> StoreResult<bool> {
                    let error = error.map(|e| (e.code, e.message));
                    Ok(move_task(&mut self.tx, task, event, worker, error, now, &mut self.touched).await?.is_some())
                }

                async fn commit(self: Box<Self>) -> StoreResult<()> {
                    let SqlTickTx { mut tx, pool, model, origin, touched } = *self;
                    finish_touched(&mut tx, origin, &touched).await?;
                    tx.commit().await?;
                    publish_touched(&pool, &model, &touched).await;
                    Ok(())
                }
            }

            /// Before commit: drops batches being deleted whose last task
            /// went, and records every changed batch for the change feed.
            async fn finish_touched(conn: &mut Conn, origin: i64, touched: &Touched) -> StoreResult<()> {
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
                    $store::record_change(conn, origin, *project_pk, *batch_pk).await?;
                }
                Ok(())
            }

            /// After commit: the read model follows, before the write returns.
            async fn publish_touched(pool: &sqlx::Pool<$db>, model: &ReadModel, touched: &Touched) {
                for (project_pk, batch_pk) in touched {
                    if let Err(e) = refresh_batches(pool, model, *project_pk, &[*batch_pk]).await {
                        tracing::warn!(error = %e, project_pk, "read model refresh failed; project will be reloaded");
                        model.forget(*project_pk);
                    }
                }
            }

        }
    };
}
pub(crate) use impl_lifecycle;
