//! The `Store` trait: every read and write of taskcenter's data. One SQL
//! implementation (`SqlStore`, on `sqlx::Any`) serves both databases; what
//! differs between them is the small `Backend` contract that `sqlite` and
//! `postgres` implement. Nothing outside this module speaks SQL.

mod backend;
mod batch;
mod catalogue;
mod export;
mod identity;
mod import;
pub mod lifecycle;
pub mod postgres;
pub mod read_model;
mod sql;
mod sql_store;
pub mod sqlite;
pub mod tick_tx;
mod traits;

pub use traits::{
    BatchStore, CatalogueStore, DumpStore, IdentityStore, SchedulerStore, Store, TaskStore,
    WorkerStore,
};

/// The store's traits, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::traits::*;
}

pub use sql_store::SqlStore;

use crate::domain::dump::DumpRecord;
use crate::domain::{FieldError, TaskState};
use async_trait::async_trait;
use std::sync::Arc;

/// Cached token rows above this many are dropped wholesale and re-read.
pub(crate) const TOKEN_CACHE_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object; `param` is the field that named it.
    #[error("{what} not found")]
    NotFound { what: Entity, param: String },
    /// An object with the same `param` (id, name, …) exists already.
    #[error("{what} with this {param} already exists")]
    Conflict { what: Entity, param: String },
    /// The object's state does not allow the change.
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    pub fn conflict(what: Entity, param: &str) -> StoreError {
        StoreError::Conflict {
            what,
            param: param.to_owned(),
        }
    }

    pub fn not_found(what: Entity, param: &str) -> StoreError {
        StoreError::NotFound {
            what,
            param: param.to_owned(),
        }
    }
}

/// A unique-constraint violation is a conflict on `param` (a racing writer
/// got there between our check and our insert); anything else stays a
/// database error.
pub(crate) fn conflict_if_unique(e: sqlx::Error, what: Entity, param: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::conflict(what, param),
        _ => e.into(),
    }
}

/// The kinds of stored object an error can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Project,
    User,
    Service,
    VideoGroup,
    VideoSource,
    BatchTask,
    Task,
    Worker,
    AccessKey,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Project => "project",
            Entity::User => "user",
            Entity::Service => "algorithm service",
            Entity::VideoGroup => "video group",
            Entity::VideoSource => "video source",
            Entity::BatchTask => "batch task",
            Entity::Task => "task",
            Entity::Worker => "worker",
            Entity::AccessKey => "access key",
        })
    }
}

impl From<crate::domain::RandomError> for StoreError {
    fn from(e: crate::domain::RandomError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A task state as stored (its index); anything else is a corrupt row.
pub(crate) fn stored_state(v: i64) -> StoreResult<TaskState> {
    TaskState::from_index(v)
        .ok_or_else(|| StoreError::Internal(format!("stored task state {v} is unknown")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub pk: i64,
    pub id: String,
    pub name: String,
}

/// How a token names the project it wants: by id or by name.
#[derive(Debug, Clone)]
pub enum ProjectRef {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub pk: i64,
    pub name: String,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub project_pk: i64,
    pub user_pk: Option<i64>,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub secret_hash: Vec<u8>,
    pub project: Project,
    pub expires_at: i64,
}

/// A new access key: the AK and its secret key as sealed by `identity`
/// (the store never sees the secret itself).
#[derive(Debug, Clone)]
pub struct NewAccessKey {
    pub id: String,
    pub user_pk: i64,
    pub secret_sealed: Vec<u8>,
    /// Names the master key that sealed it (a digest, not the key).
    pub sealed_with: String,
    pub created_at: i64,
}

/// What verifying a signature needs of an access key.
#[derive(Clone)]
pub struct AccessKeyRow {
    pub pk: i64,
    pub id: String,
    pub user_pk: i64,
    pub secret_sealed: Vec<u8>,
    pub sealed_with: String,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

impl std::fmt::Debug for AccessKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRow")
            .field("id", &self.id)
            .field("user_pk", &self.user_pk)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// An access key as the operator's list shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub id: String,
    pub user_name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployType {
    Cloud,
    Edge,
}

impl DeployType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployType::Cloud => "cloud",
            DeployType::Edge => "edge",
        }
    }
    pub fn parse(s: &str) -> Option<DeployType> {
        if s.eq_ignore_ascii_case("cloud") {
            Some(DeployType::Cloud)
        } else if s.eq_ignore_ascii_case("edge") {
            Some(DeployType::Edge)
        } else {
            None
        }
    }
    /// The batch `type` on the wire: "0" cloud, "1" edge.
    pub fn task_type(self) -> &'static str {
        match self {
            DeployType::Cloud => "0",
            DeployType::Edge => "1",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewService {
    pub id: String,
    pub service_name: String,
    pub service_version: String,
    pub alg_name: String,
    pub company: String,
    pub deploy_type: DeployType,
    pub deployed: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub service_name: String,
    pub service_version: String,
    pub alg_name: String,
    pub company: String,
    pub deploy_type: String,
    pub deployed: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoGroup {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSource {
    pub id: String,
    pub name: String,
    pub url: String,
    pub group_ids: Vec<String>,
    pub created_at: i64,
}

/// One page request for the simple list routes (groups, sources, services).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone)]
pub struct BatchGroupInput {
    pub group_id: String,
    /// `None`: every source in the group when the batch is created.
    pub sources: Option<Vec<BatchSourceInput>>,
}

#[derive(Debug, Clone)]
pub struct BatchSourceInput {
    pub source_id: String,
    pub target_roi: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct NewBatchTask {
    pub id: String,
    pub name: String,
    pub description: String,
    pub service_name: String,
    pub service_version: String,
    pub priority: String,
    pub groups: Vec<BatchGroupInput>,
    pub config: serde_json::Value,
    pub output: serde_json::Value,
    pub created_at: i64,
}

/// Why one source of a batch got no task; the batch is made with the
/// others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceProblem {
    /// The source exists but is not a member of the group it was listed in.
    NotInGroup { group_id: String },
    /// No such source.
    Unknown,
    /// Listed twice (in one or several groups).
    AlreadyInBatch,
    /// Its previous task in this batch is still being deleted.
    StillDeleting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    pub video_source_id: String,
    pub problem: SourceProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCreated {
    pub id: String,
    pub succeed_count: u64,
    pub failures: Vec<SourceFailure>,
}

/// One row of the batch-task list, with its counters in `TaskState::ALL` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTaskRow {
    pub id: String,
    pub name: String,
    pub video_source_name: Option<String>,
    pub video_group_name: Option<String>,
    pub alg_name: String,
    pub company: String,
    pub task_type: String,
    pub priority: String,
    pub num_task: i64,
    pub created_at: i64,
    pub counters: [i64; 18],
    /// The row as the API last rendered it. Rows are immutable once shared
    /// (a change replaces the row), so a rendering stays valid for the row's
    /// life and a list answer is a concatenation of renderings.
    pub rendered: RenderCache,
}

/// A once-filled rendering of a row; ignored by equality, emptied by clone.
#[derive(Default)]
pub struct RenderCache(std::sync::OnceLock<Box<[u8]>>);

impl RenderCache {
    pub fn get_or_render(&self, render: impl FnOnce() -> Vec<u8>) -> &[u8] {
        self.0.get_or_init(|| render().into_boxed_slice())
    }
}

impl Clone for RenderCache {
    fn clone(&self) -> Self {
        RenderCache::default()
    }
}

impl PartialEq for RenderCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RenderCache {}

impl std::fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "rendered"
        } else {
            "not rendered"
        })
    }
}

/// One list answer: `count` batches match; `rows` are the requested page,
/// or every match when the query is not paged. Rows are shared, not copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchTaskPage {
    pub count: u64,
    pub rows: Vec<Arc<BatchTaskRow>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub batch_id: Option<String>,
    pub video_source_id: String,
    pub state: TaskState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Counters as stored beside a batch, and as freshly counted from its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCheck {
    pub stored: [i64; 18],
    pub stored_num_task: i64,
    pub counted: [i64; 18],
}

/// A bulk load in one transaction: nothing is visible until `commit`, and
/// dropping the importer without committing discards everything.
#[async_trait]
pub trait Importer: Send {
    /// Takes the record read from `line` (1-based) of the input.
    async fn put(&mut self, line: u64, record: DumpRecord) -> Result<ImportedCount, ImportError>;
    async fn commit(self: Box<Self>) -> Result<(), ImportError>;
}

/// Why an import failed, and the input line it failed at (0 when no line is
/// to blame, as when the final commit fails).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ImportError {
    pub line: u64,
    pub error: StoreError,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportedCount {
    pub tasks: u64,
}

/// Opens the store a URL names (`postgres://` or `postgresql://` for
/// PostgreSQL, `sqlite:PATH`, `sqlite://PATH` or a bare file path for
/// SQLite) and applies migrations.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    Ok(open_sql(url).await?)
}

/// [`open`], as the concrete store: with the checks tests and diagnosis use
/// ([`SqlStore::check_counters`], [`SqlStore::add_task`]).
pub async fn open_sql(url: &str) -> StoreResult<Arc<SqlStore>> {
    let (pool, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::connect(url).await?
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        sqlite::connect(path).await?
    };
    Ok(Arc::new(SqlStore::start(pool, backend).await?))
}

/// A random tag for this store instance's entries in the change feed.
fn new_origin() -> i64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    i64::from_le_bytes(b) & i64::MAX
}
