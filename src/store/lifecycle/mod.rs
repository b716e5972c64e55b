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
