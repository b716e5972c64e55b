//! The lifecycle half of the store: every task move goes through
//! `domain::transition` and is written with a conditional update from the
//! state that was read, in the same transaction as the batch counters and
//! the task's history. Workers, their leases and the scheduler's tick live
//! here too, since they are SQL.

mod moves;
mod read;
mod tick;
mod worker;

use super::sql_store::SqlStore;
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
    async fn begin_tick(&self) -> StoreResult<Box<dyn crate::store::tick_tx::TickTx>>;
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

#[async_trait]
impl Lifecycle for SqlStore {
    async fn apply_event(
        &self,
        project_pk: i64,
        task_id: &str,
        event: Event,
    ) -> StoreResult<Applied> {
        moves::apply_event(self, project_pk, task_id, event).await
    }

    async fn apply_batch_event(
        &self,
        project_pk: i64,
        batch_id: &str,
        event: Event,
    ) -> StoreResult<Vec<(String, Applied)>> {
        moves::apply_batch_event(self, project_pk, batch_id, event).await
    }

    async fn update_batch_task(
        &self,
        project_pk: i64,
        batch_id: &str,
        u: &BatchUpdate,
    ) -> StoreResult<super::BatchCreated> {
        moves::update_batch_task(self, project_pk, batch_id, u).await
    }

    async fn task(&self, project_pk: i64, task_id: &str) -> StoreResult<Option<TaskDetail>> {
        read::task(self, project_pk, task_id).await
    }

    async fn list_tasks(
        &self,
        project_pk: i64,
        q: &ListTasksQuery,
    ) -> StoreResult<Vec<TaskDetail>> {
        read::list_tasks(self, project_pk, q).await
    }

    async fn task_history(&self, project_pk: i64, task_id: &str) -> StoreResult<Vec<TaskHistory>> {
        read::task_history(self, project_pk, task_id).await
    }

    async fn create_worker(&self, id: &str, name: &str, secret_hash: &[u8]) -> StoreResult<()> {
        worker::create_worker(self, id, name, secret_hash).await
    }

    async fn worker_credential(&self, id: &str) -> StoreResult<Option<WorkerCredential>> {
        worker::worker_credential(self, id).await
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerRow>> {
        worker::workers(self).await
    }

    async fn register_worker(
        &self,
        worker_pk: i64,
        kind: &str,
        slots: i64,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<()> {
        worker::register_worker(self, worker_pk, kind, slots, now, lease_ms).await
    }

    async fn worker_sync(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
    ) -> StoreResult<SyncReply> {
        worker::worker_sync(self, worker_pk, now, lease_ms, running).await
    }

    async fn worker_report(
        &self,
        worker_pk: i64,
        held: Held,
        event: Event,
        error: Option<(String, String)>,
    ) -> StoreResult<Applied> {
        worker::worker_report(self, worker_pk, held, event, error).await
    }

    async fn begin_tick(&self) -> StoreResult<Box<dyn crate::store::tick_tx::TickTx>> {
        tick::begin_tick(self).await
    }

    async fn grace_leases(&self, now: i64, lease_ms: i64) -> StoreResult<()> {
        tick::grace_leases(self, now, lease_ms).await
    }

    async fn set_project_frozen(&self, project_pk: i64, frozen: bool) -> StoreResult<()> {
        tick::set_project_frozen(self, project_pk, frozen).await
    }

    async fn set_service_deployed(
        &self,
        project_pk: i64,
        service_name: &str,
        service_version: &str,
        deployed: bool,
    ) -> StoreResult<()> {
        tick::set_service_deployed(self, project_pk, service_name, service_version, deployed).await
    }

    async fn upgrade_service(
        &self,
        project_pk: i64,
        service_name: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<u64> {
        tick::upgrade_service(self, project_pk, service_name, from, to).await
    }
}
