//! The lifecycle half of the store: every task move goes through
//! `domain::transition` and is written with a conditional update from the
//! state that was read, in the same transaction as the batch counters and
//! the task's history. Workers, their leases and the scheduler's tick live
//! here too, since they are SQL.

mod moves;
mod tasks;
mod tick;
mod worker;

use crate::domain::transition::Outcome;
use crate::domain::TaskState;

/// A task as ListTasks and ShowTaskInfo return it. A batch's task takes
/// its name, description, settings and service from the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDetail {
    pub id: String,
    pub project_id: String,
    pub batch_id: Option<String>,
    pub name: String,
    pub description: String,
    pub video_source_id: Option<String>,
    pub video_source_name: Option<String>,
    /// The batch's group names, comma-joined.
    pub group_names: Option<String>,
    pub service_id: String,
    pub service_name: String,
    pub service_version: String,
    pub alg_name: String,
    pub company: String,
    pub task_type: crate::domain::DeployType,
    pub state: TaskState,
    pub worker_id: Option<String>,
    pub worker_name: Option<String>,
    pub attempt: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The input as CreateTask gave it (`None` for a batch's task).
    pub input: Option<serde_json::Value>,
    pub output: Option<serde_json::Value>,
    pub config: Option<serde_json::Value>,
    pub schedule: Option<serde_json::Value>,
    /// Its schedule holds it stopped until a window opens.
    pub schedule_held: bool,
    pub resource_order_id: Option<String>,
    pub creator: Option<String>,
    /// A batch source's region of interest (JSON text).
    pub target_roi: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// CreateTask: one task per input entry.
#[derive(Debug, Clone)]
pub struct NewTasks {
    pub service_name: String,
    pub service_version: String,
    pub name: String,
    pub description: String,
    /// The whole input, as given; each task keeps it with its own data
    /// item only.
    pub input: serde_json::Value,
    pub entries: Vec<TaskInputEntry>,
    pub output: serde_json::Value,
    pub config: Option<serde_json::Value>,
    pub schedule: Option<serde_json::Value>,
    pub resource_order_id: Option<String>,
    pub creator: Option<String>,
    pub created_at: i64,
}

/// What one task reads: a video source, or a stream address of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInputEntry {
    Source(String),
    Url(String),
}

/// UpdateTask (`None`: unchanged). A changed input or configuration
/// reaches the task when it next starts.
#[derive(Debug, Clone, Default)]
pub struct TaskUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub input: Option<(serde_json::Value, TaskInputEntry)>,
    pub output: Option<serde_json::Value>,
    pub config: Option<serde_json::Value>,
    pub schedule: Option<serde_json::Value>,
    pub resource_order_id: Option<String>,
}

/// One line of a task's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    pub at: i64,
    pub from: TaskState,
    pub event: String,
    /// `None`: the task was deleted.
    pub to: Option<TaskState>,
    /// The worker a placement went to: its id and name.
    pub worker_id: Option<String>,
    pub worker_name: Option<String>,
}

/// A worker's report on a task it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub held: Held,
    pub event: crate::domain::transition::Event,
    /// Error code and message.
    pub error: Option<(String, String)>,
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
    /// Case-insensitive substring of the task's name.
    pub name_like: Option<String>,
    /// Case-insensitive substring of its video source's name.
    pub source_name_like: Option<String>,
    /// Its algorithm's display name, one of these.
    pub titles: Vec<String>,
    /// Its vendor, one of these.
    pub companies: Vec<String>,
    /// Its batch covers one of these groups, or its source is in one.
    pub group_ids: Vec<String>,
    /// Its service id, one of these.
    pub service_ids: Vec<String>,
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
    pub schedule: Option<serde_json::Value>,
    pub resource_order_id: Option<String>,
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
    /// The edge pool it registered in, if any.
    pub pool: Option<String>,
}

impl WorkerRow {
    /// Not marked lost, and its lease still holds at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        !self.lost && self.lease_expires_at >= now
    }
}
