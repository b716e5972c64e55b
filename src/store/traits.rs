//! What the store offers, split by concern. `Store` is all of them plus the
//! backend's own operations; callers hold `Arc<dyn Store>` and bring the
//! traits into scope with `use crate::store::prelude::*`. Names are
//! verb-noun: `create_*`, `find_*` (an `Option`), `list_*`, `count_*`,
//! `delete_*`, `apply_*`.

use super::lifecycle::{
    Applied, BatchUpdate, ListTasksQuery, NewTasks, TaskDetail, TaskHistory, TaskUpdate,
    WorkerCredential, WorkerReport, WorkerRow,
};
use super::tick_tx::TickTx;
use super::{
    AccessKeyInfo, AccessKeyRow, BatchCreated, BatchTaskPage, Deployment, EdgePool, GroupFilter,
    GroupSort, GroupUpdate, Importer, Listed, Listing, NewAccessKey, NewBatchTask, NewEdgePool,
    NewService, NewToken, NewVideoGroup, NewVideoSource, PoolFilter, PoolSort, Project, ProjectRef,
    Service, ServiceFilter, ServiceSort, SourceFilter, SourceList, SourceSort, SourceUpdate,
    StoreError, StoreResult, TokenInfo, TokenRow, UserRow, VideoGroup, VideoSource,
};
use crate::domain::dump::DumpRecord;
use crate::domain::transition::Event;
use crate::domain::{DeployType, ListBatchTasksParams, TaskState};
use crate::protocol::{Held, SyncReply};
use async_trait::async_trait;
use tokio::sync::mpsc;

/// Projects, users and their API tokens.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn create_project(&self, id: &str, name: &str, created_at: i64) -> StoreResult<Project>;
    async fn find_project(&self, r: &ProjectRef) -> StoreResult<Option<Project>>;
    async fn count_projects(&self) -> StoreResult<u64>;
    /// On a database without projects, in one transaction: project
    /// `project` and user `user` with access to it. `false` (and nothing
    /// written) when a project exists, also when another process on the same
    /// database got there first.
    async fn bootstrap(&self, project: &str, user: &str, password_hash: &str) -> StoreResult<bool>;
    async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        project_ids: &[String],
    ) -> StoreResult<()>;
    async fn find_user(&self, name: &str) -> StoreResult<Option<UserRow>>;
    async fn user_has_project(&self, user_pk: i64, project_pk: i64) -> StoreResult<bool>;
    async fn create_token(&self, token: &NewToken) -> StoreResult<()>;
    /// A token's row; a cached row is read again after at most 500 ms, so
    /// revocations by other processes hold within a second.
    async fn find_token(&self, id: &str) -> StoreResult<Option<TokenRow>>;
    /// Unexpired tokens, oldest first.
    async fn list_tokens(&self) -> StoreResult<Vec<TokenInfo>>;
    /// Revokes a token. An unknown id is `NotFound`.
    async fn delete_token(&self, id: &str) -> StoreResult<()>;
    /// Deletes a user with its tokens, access keys and memberships.
    async fn delete_user(&self, name: &str) -> StoreResult<()>;
    /// Sets a user's password hash and revokes the user's tokens.
    async fn set_user_password(&self, name: &str, password_hash: &str) -> StoreResult<()>;
    /// Stores a new access key (its secret already sealed).
    async fn create_access_key(&self, key: &NewAccessKey) -> StoreResult<()>;
    /// The access key with this AK, revoked or not; never cached.
    async fn find_access_key(&self, id: &str) -> StoreResult<Option<AccessKeyRow>>;
    /// The access keys of the user named `user_name` (every key with
    /// `None`), oldest first; a user that does not exist is `NotFound`.
    async fn list_access_keys(&self, user_name: Option<&str>) -> StoreResult<Vec<AccessKeyInfo>>;
    /// Revokes an access key (the row stays, with `revoked_at`); revoking a
    /// revoked key changes nothing. An unknown AK is `NotFound`.
    async fn delete_access_key(&self, id: &str, at: i64) -> StoreResult<()>;
    /// Records a use of the key at `at`, unless one at or after `since` is
    /// recorded already (so processes sharing a database write about once
    /// per period, not once per request).
    async fn touch_access_key(&self, pk: i64, at: i64, since: i64) -> StoreResult<()>;
}

/// Algorithm services: what tasks run.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    async fn create_service(&self, project_pk: i64, s: &NewService) -> StoreResult<Service>;
    async fn list_services(
        &self,
        project_pk: i64,
        filter: &ServiceFilter,
        listing: Listing<ServiceSort>,
    ) -> StoreResult<Listed<Service>>;
    /// By service id or algorithm id.
    async fn find_service(&self, project_pk: i64, key: &str) -> StoreResult<Option<Service>>;
    /// DeployAlgorithm: deployed, optionally onto an edge pool.
    async fn deploy_service(
        &self,
        project_pk: i64,
        key: &str,
        d: &Deployment,
    ) -> StoreResult<Service>;
    /// StopDeployAlgorithm: not deployed (ticks stop its live tasks).
    async fn undeploy_service(&self, project_pk: i64, key: &str) -> StoreResult<Service>;
}

/// Video groups and video sources.
#[async_trait]
pub trait VideoStore: Send + Sync {
    async fn create_video_group(
        &self,
        project_pk: i64,
        g: &NewVideoGroup,
    ) -> StoreResult<VideoGroup>;
    async fn list_video_groups(
        &self,
        project_pk: i64,
        filter: &GroupFilter,
        listing: Listing<GroupSort>,
    ) -> StoreResult<Listed<VideoGroup>>;
    async fn find_video_group(&self, project_pk: i64, id: &str) -> StoreResult<Option<VideoGroup>>;
    async fn update_video_group(
        &self,
        project_pk: i64,
        id: &str,
        u: &GroupUpdate,
    ) -> StoreResult<VideoGroup>;
    /// Refused while a batch task uses the group.
    async fn delete_video_group(&self, project_pk: i64, id: &str) -> StoreResult<()>;
    async fn create_video_source(
        &self,
        project_pk: i64,
        s: &NewVideoSource,
    ) -> StoreResult<VideoSource>;
    async fn list_video_sources(
        &self,
        project_pk: i64,
        filter: &SourceFilter,
        listing: Listing<SourceSort>,
    ) -> StoreResult<SourceList>;
    /// The source and its groups.
    async fn find_video_source(
        &self,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<(VideoSource, Vec<VideoGroup>)>>;
    async fn update_video_source(
        &self,
        project_pk: i64,
        id: &str,
        u: &SourceUpdate,
    ) -> StoreResult<VideoSource>;
    /// Deletes a source. While tasks still name it, it stays hidden and
    /// marked (its id reserved); the scheduler fails their creation.
    async fn delete_video_source(&self, project_pk: i64, id: &str) -> StoreResult<()>;
}

/// Edge pools: named sets of edge workers that services deploy onto.
#[async_trait]
pub trait PoolStore: Send + Sync {
    async fn create_edge_pool(&self, project_pk: i64, p: &NewEdgePool) -> StoreResult<EdgePool>;
    async fn list_edge_pools(
        &self,
        project_pk: i64,
        filter: &PoolFilter,
        listing: Listing<PoolSort>,
    ) -> StoreResult<Listed<EdgePool>>;
    async fn find_edge_pool(&self, project_pk: i64, id: &str) -> StoreResult<Option<EdgePool>>;
    /// Refused while a service is deployed onto the pool.
    async fn delete_edge_pool(&self, project_pk: i64, id: &str) -> StoreResult<()>;
}

/// Batch tasks: creation (one task per source) and the list.
#[async_trait]
pub trait BatchStore: Send + Sync {
    async fn create_batch_task(
        &self,
        project_pk: i64,
        b: &NewBatchTask,
    ) -> StoreResult<BatchCreated>;
    /// The list, from the in-memory read model (loaded on first use).
    async fn list_batch_tasks(
        &self,
        project_pk: i64,
        q: &ListBatchTasksParams,
    ) -> StoreResult<BatchTaskPage>;
    /// Notified after every change to the project's list in this process
    /// (for long polls); `None` where the list has no in-memory view.
    fn list_changes(&self, _project_pk: i64) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// The same answer computed by SQL from the tables: `serve
    /// --list-source database`, and the reference the read model is
    /// checked against.
    async fn list_batch_tasks_from_db(
        &self,
        project_pk: i64,
        q: &ListBatchTasksParams,
    ) -> StoreResult<BatchTaskPage>;
}

/// Tasks, and the operations that move them through the transition table
/// on a client's behalf.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Applies an API intent or operator event to one task.
    async fn apply_task_event(
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
    ) -> StoreResult<BatchCreated>;
    /// CreateTask: one task per input entry, with no batch.
    async fn create_tasks(&self, project_pk: i64, t: &NewTasks) -> StoreResult<Vec<String>>;
    /// UpdateTask (tasks of CreateTask only).
    async fn update_task(
        &self,
        project_pk: i64,
        task_id: &str,
        u: &TaskUpdate,
    ) -> StoreResult<TaskDetail>;
    async fn find_task(&self, project_pk: i64, task_id: &str) -> StoreResult<Option<TaskDetail>>;
    async fn list_tasks(&self, project_pk: i64, q: &ListTasksQuery)
        -> StoreResult<Vec<TaskDetail>>;
    async fn list_task_history(
        &self,
        project_pk: i64,
        task_id: &str,
    ) -> StoreResult<Vec<TaskHistory>>;
}

/// Workers: their credentials, registration, heartbeats and reports.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    async fn create_worker(&self, id: &str, name: &str, secret_hash: &[u8]) -> StoreResult<()>;
    async fn find_worker_credential(&self, id: &str) -> StoreResult<Option<WorkerCredential>>;
    async fn list_workers(&self) -> StoreResult<Vec<WorkerRow>>;
    /// Revokes a worker's credential (by worker id or name): its next
    /// request is refused, and its lease ends so the next tick handles its
    /// tasks as a lost worker's. An unknown worker is `NotFound`.
    async fn revoke_worker(&self, key: &str) -> StoreResult<()>;
    /// A worker (re)starts: its kind and slots, and a fresh lease.
    async fn register_worker(
        &self,
        worker_pk: i64,
        kind: DeployType,
        slots: i64,
        pool: Option<&str>,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<()>;
    /// Heartbeat and reconciliation: renews the lease, compares what the
    /// worker runs with what it holds (the scheduler's rules decide), and
    /// says what to start and stop.
    async fn sync_worker(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
    ) -> StoreResult<SyncReply> {
        self.sync_worker_listed(worker_pk, now, lease_ms, running, i64::MAX)
            .await
    }
    /// A sync whose running list may predate moves made since `listed`: a
    /// task that went running (or upgrading) at or after `listed` counts as
    /// run by the worker though the list does not name it, so it is never
    /// taken for lost on a list older than its start. (The agent starts the
    /// tasks a report's answer brings while its sync waits on the server.)
    async fn sync_worker_listed(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
        listed: i64,
    ) -> StoreResult<SyncReply>;
    /// Per worker holding tasks, a summary of them (how many, their states,
    /// their last move), in one read without the lifecycle lock: a waiting
    /// sync looks at its whole picture again only when its summary changed
    /// (another process moved one of its tasks).
    async fn held_fingerprints(&self) -> StoreResult<Vec<(i64, [i64; 3])>>;
    /// A worker's reports on tasks it holds, applied in order in one
    /// transaction; `None` for a task that is gone.
    async fn report_tasks(
        &self,
        worker_pk: i64,
        reports: &[WorkerReport],
    ) -> StoreResult<Vec<Option<Applied>>>;
    /// One report; a task that is gone is `NotFound`.
    async fn report_task(
        &self,
        worker_pk: i64,
        held: Held,
        event: Event,
        error: Option<(String, String)>,
    ) -> StoreResult<Applied> {
        let report = WorkerReport { held, event, error };
        self.report_tasks(worker_pk, std::slice::from_ref(&report))
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| StoreError::not_found(super::Entity::Task, "task"))
    }
}

/// What the scheduler and operators change: ticks, leases, frozen
/// projects, deployed and upgraded services.
#[async_trait]
pub trait SchedulerStore: Send + Sync {
    /// A scheduler tick's transaction: it takes the lifecycle lock, so ticks
    /// of all processes serialize with each other and with every task move.
    async fn begin_tick(&self) -> StoreResult<Box<dyn TickTx>>;
    /// Extends every live worker's lease to `now + lease_ms` (a starting
    /// server could not hear heartbeats while it was down).
    async fn extend_leases(&self, now: i64, lease_ms: i64) -> StoreResult<()>;
    /// Freezes or unfreezes a project; ticks move its tasks.
    async fn set_project_frozen(&self, project_pk: i64, frozen: bool) -> StoreResult<()>;
    /// Marks a service version deployed or not; ticks move its tasks.
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

/// The dump: every project out, or a file in as one transaction.
#[async_trait]
pub trait DumpStore: Send + Sync {
    async fn export(&self, out: mpsc::Sender<DumpRecord>) -> StoreResult<()>;
    async fn begin_import(&self) -> StoreResult<Box<dyn Importer>>;
}

/// Everything taskcenter reads and writes.
#[async_trait]
pub trait Store:
    IdentityStore
    + CatalogueStore
    + VideoStore
    + PoolStore
    + BatchStore
    + TaskStore
    + WorkerStore
    + SchedulerStore
    + DumpStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    /// A small committed write, to learn whether writes go through (after a
    /// full disk, say). It changes no data.
    async fn probe_write(&self) -> StoreResult<()>;
    /// Tasks by state, over every project: the batches' counters plus the
    /// tasks without a batch (cheap at millions of tasks: one row per batch).
    async fn count_tasks_by_state(&self) -> StoreResult<Vec<(TaskState, i64)>>;
    /// Database pool connections: (open, idle).
    fn pool_connections(&self) -> (u32, usize);
    /// Starts following other processes' writes (for `serve`; one-shot
    /// commands do not need it).
    fn start_change_feed(&self);
}
