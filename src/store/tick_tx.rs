//! The narrow interface a scheduler tick works through: one transaction that
//! holds the lifecycle lock, reads waiting tasks and capacity, and moves
//! tasks through the transition table. The scheduler decides; this only
//! reads and writes.

use super::lifecycle::{Applied, Assignment, WorkerReport};
use super::StoreResult;
use crate::domain::transition::Event;
use crate::domain::{DeployType, TaskState};
use crate::scheduler::decide::{Selector, TaskError, WorkerSlots};
use async_trait::async_trait;

/// A task as a move needs it: its handles and the state it was read in
/// (a move is a conditional update from that state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKey {
    pub pk: i64,
    pub project_pk: i64,
    pub batch_pk: Option<i64>,
    pub state: TaskState,
    pub worker_pk: Option<i64>,
    pub attempt: i64,
}

/// A waiting task, when it last moved, the edge pool its service is
/// deployed onto, and its place in pick order (priority, creation time;
/// then pk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub key: TaskKey,
    pub updated_at: i64,
    pub pool: Option<i64>,
    pub order: (i64, i64),
}

/// A task whose schedule windows are due for a look: its schedule (`None`
/// when it has none, or none that parses) and whether the schedule holds it
/// stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct DueWindow {
    pub key: TaskKey,
    pub schedule: Option<serde_json::Value>,
    pub held: bool,
}

/// One tick's transaction. It holds the lifecycle lock from
/// [`Lifecycle::begin_tick`](super::lifecycle::Lifecycle::begin_tick) until
/// `commit` (or until dropped, which rolls back), so capacity read in it
/// stays true while the tick places tasks, on every process sharing the
/// database.
#[async_trait]
pub trait TickTx: Send {
    /// Marks workers whose lease expired before `now` as lost.
    async fn mark_lost_workers(&mut self, now: i64) -> StoreResult<()>;
    /// Up to `limit` tasks a maintenance step acts on (oldest key first for
    /// the steps on one state; the rest next pass).
    async fn select(&mut self, which: Selector, limit: i64) -> StoreResult<Vec<TaskKey>>;
    /// Up to `limit` tasks in `state` needing a worker of `kind`, by batch
    /// priority then age, leaving out those whose schedule windows are due
    /// at `now` (they are looked at first). `frozen_too`: include tasks of
    /// frozen projects.
    async fn waiting(
        &mut self,
        state: TaskState,
        kind: DeployType,
        frozen_too: bool,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<Waiting>>;
    /// Up to `limit` tasks whose schedule windows are due at `now`, the
    /// longest due first.
    async fn due_windows(&mut self, now: i64, limit: i64) -> StoreResult<Vec<DueWindow>>;
    /// When the scheduler next looks at a task's windows (`None`: never, it
    /// has no schedule).
    async fn set_window_due(&mut self, task_pk: i64, due: Option<i64>) -> StoreResult<()>;
    /// Every live worker's free slots.
    async fn capacity(&mut self) -> StoreResult<Vec<WorkerSlots>>;
    /// Moves `task` by `event` if the table allows it from the state it was
    /// read in (`worker`: where a `Place` puts it); whether it moved.
    async fn apply(
        &mut self,
        task: &TaskKey,
        event: Event,
        worker: Option<i64>,
        error: Option<TaskError>,
        now: i64,
    ) -> StoreResult<bool>;
    /// [`apply`](TickTx::apply) of the events of `path` in turn (no error)
    /// on many tasks (`worker`: where a `Place` puts them), written as one
    /// statement per state they were read in, with a history row per event;
    /// the pks of those that moved the whole path.
    async fn apply_alike(
        &mut self,
        tasks: &[TaskKey],
        path: &[Event],
        worker: Option<i64>,
        now: i64,
    ) -> StoreResult<Vec<i64>>;
    /// A worker's reports on tasks it holds, applied in order in this
    /// transaction as [`WorkerStore::report_tasks`](super::WorkerStore::report_tasks)
    /// applies them in its own; `None` for a task that is gone.
    async fn report(
        &mut self,
        worker_pk: i64,
        reports: &[WorkerReport],
    ) -> StoreResult<Vec<Option<Applied>>>;
    /// The tasks placed on `worker_pk` and not yet started, with what their
    /// executors need, as this transaction sees them.
    async fn placed_on(&mut self, worker_pk: i64) -> StoreResult<Vec<Assignment>>;
    /// Drops batches being deleted whose last task went, records the change
    /// feed, commits, and refreshes the read model before returning.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}
