//! The data the store takes and gives: plain types, no SQL.

pub use crate::domain::DeployType;
use crate::domain::TaskState;
use std::sync::Arc;

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

/// A token as `token list` shows it (never its secret).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: String,
    pub project_id: String,
    /// `None`: issued by the CLI, not by a login.
    pub user_name: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
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
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub service_name: String,
    pub service_version: String,
    pub alg_name: String,
    pub company: String,
    pub deploy_type: DeployType,
    pub deployed: bool,
    pub description: String,
    /// The edge pool it is deployed onto, and whether a worker of the pool
    /// is live.
    pub pool: Option<(String, bool)>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// DeployAlgorithm's settings: stored, and the pool restricts placement.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub pool_id: Option<String>,
    pub stream_count: i64,
    pub deploy_config: Option<serde_json::Value>,
    pub envs: Option<serde_json::Value>,
}

/// The order a catalogue list is sorted in, and the page it returns
/// (`None`: every matching row).
#[derive(Debug, Clone, Copy)]
pub struct Listing<S> {
    pub sort: S,
    pub descending: bool,
    pub page: Option<Page>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSort {
    CreatedAt,
    FunctionVersion,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    /// Case-insensitive substring of the service name.
    pub name_like: Option<String>,
    /// Deployed or not; `None`: both.
    pub deployed: Option<bool>,
}

/// A list answer: `total` rows in the project, `count` matching, `items`
/// the requested page of them.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub total: u64,
    pub count: u64,
    pub items: Vec<T>,
}

#[derive(Debug, Clone)]
pub struct NewVideoGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub access_type: DeployType,
    pub source_ids: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub access_type: DeployType,
    pub created_at: i64,
    pub updated_at: i64,
    pub num_sources: i64,
    pub num_batch_tasks: i64,
    pub num_tasks: i64,
    /// The types of its sources, each once.
    pub source_types: Vec<String>,
}

/// UpdateVideoGroup (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// The whole member set.
    pub source_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSort {
    CreateAt,
    ModifyAt,
    NumVideoSource,
    NumTask,
}

#[derive(Debug, Clone, Default)]
pub struct GroupFilter {
    /// Case-insensitive substring of the group name.
    pub name_like: Option<String>,
    pub access_types: Vec<DeployType>,
    /// Only groups some batch task uses.
    pub has_task: bool,
    /// Only groups with a source of one of these types.
    pub source_types: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewVideoSource {
    pub id: String,
    pub name: String,
    pub access_type: DeployType,
    pub source_type: String,
    pub type_config: String,
    /// Where the worker reads the stream (from `type_config`).
    pub url: String,
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub tags: Vec<String>,
    pub group_ids: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSource {
    pub id: String,
    pub name: String,
    pub access_type: DeployType,
    pub source_type: String,
    pub type_config: String,
    pub url: String,
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub tags: Vec<String>,
    /// Its groups, in the order they were given.
    pub group_ids: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub num_tasks: i64,
}

/// UpdateVideoSource (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct SourceUpdate {
    pub name: Option<String>,
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    /// The new configuration and the URL read from it.
    pub type_config: Option<(String, String)>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSort {
    CreateAt,
    NumTask,
    NumTemplate,
}

#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// Case-insensitive substring of the source name…
    pub name_like: Option<String>,
    /// …or of the name of one of its groups.
    pub group_name_like: Option<String>,
    pub types: Vec<String>,
    pub group_ids: Vec<String>,
    pub access_types: Vec<DeployType>,
    /// A tag the source carries.
    pub tag: Option<String>,
}

/// A list of sources with the groups they name.
#[derive(Debug, Clone)]
pub struct SourceList {
    pub sources: Listed<VideoSource>,
    pub groups: Vec<VideoGroup>,
}

#[derive(Debug, Clone)]
pub struct NewEdgePool {
    pub id: String,
    pub name: String,
    pub description: String,
    pub ief_service_instance_id: Option<String>,
    /// Worker names.
    pub nodes: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePool {
    pub id: String,
    pub name: String,
    pub description: String,
    pub ief_service_instance_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Its members: the nodes listed at creation and the workers that
    /// joined with `--pool NAME`.
    pub nodes: Vec<PoolNode>,
}

impl EdgePool {
    /// `Running` while one of its workers is live, else `Abnormal`.
    pub fn running(&self) -> bool {
        self.nodes.iter().any(|n| n.live)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNode {
    pub name: String,
    /// The worker of that name, once one exists.
    pub worker_id: Option<String>,
    pub kind: Option<DeployType>,
    pub live: bool,
    pub slots: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSort {
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Default)]
pub struct PoolFilter {
    pub name_like: Option<String>,
    /// Running (`Some(true)`) or Abnormal (`Some(false)`).
    pub running: Option<bool>,
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
    /// JSON text.
    pub target_roi: Option<String>,
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
    pub schedule: Option<serde_json::Value>,
    pub resource_order_id: Option<String>,
    pub saved_as_template: bool,
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
    pub service_name: String,
    pub service_version: String,
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
#[derive(Debug, Clone, Default)]
pub struct BatchTaskPage {
    pub count: u64,
    pub rows: Vec<Arc<BatchTaskRow>>,
    /// The version of the project's batches this page was read from: it
    /// changes with every change to them in this process (0: not known,
    /// when the page comes straight from the database).
    pub generation: u64,
}

/// Two pages are equal when they answer the same: the view's version they
/// were read from does not matter.
impl PartialEq for BatchTaskPage {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.rows == other.rows
    }
}

impl Eq for BatchTaskPage {}

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
