//! The worker protocol: the JSON that `taskcenter worker` and the server's
//! `/worker/v1/*` routes exchange. Not part of VIAS. Both sides use these
//! types, so the agent needs nothing from the store or the API.

use serde::{Deserialize, Serialize};

/// A task a worker says it runs: the task's internal handle and attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Held {
    pub task: i64,
    pub attempt: i64,
}

/// What a worker needs to run a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task: i64,
    pub attempt: i64,
    pub project_id: String,
    pub task_id: String,
    pub batch_id: Option<String>,
    pub source_url: String,
    /// The source's whole `type_config` (XML), when the task reads a video
    /// source.
    #[serde(default)]
    pub source_config: String,
    /// The task's input as CreateTask gave it (JSON), for tasks with no
    /// batch.
    #[serde(default)]
    pub input: String,
    pub config: String,
    pub service_name: String,
    pub service_version: String,
}

impl Assignment {
    pub fn held(&self) -> Held {
        Held {
            task: self.task,
            attempt: self.attempt,
        }
    }
}

/// A worker's instructions after a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    /// Start these (new placements, or ones the worker does not report).
    pub assign: Vec<Assignment>,
    /// Stop these (stop, delete, freeze, or no longer the worker's).
    pub stop: Vec<Held>,
    /// Restart these on the new service version.
    pub upgrade: Vec<Assignment>,
}

impl SyncReply {
    pub fn is_empty(&self) -> bool {
        self.assign.is_empty() && self.stop.is_empty() && self.upgrade.is_empty()
    }
}

/// The type of tasks a worker takes: the deploy type of their service.
pub use crate::domain::DeployType as WorkerKind;

/// `POST /worker/v1/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub kind: WorkerKind,
    pub slots: i64,
    /// The edge pool it serves by name (`taskcenter worker --pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterReply {
    pub lease_ms: i64,
    pub max_wait_ms: i64,
}

/// `POST /worker/v1/sync`: heartbeat and long-poll in one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub running: Vec<Held>,
    #[serde(default)]
    pub wait_ms: u64,
}

/// What a worker reports about a task it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Started,
    SpawnFailed,
    Exited,
    Crashed,
    Released,
    Upgraded,
}

/// `POST /worker/v1/report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub task: i64,
    pub attempt: i64,
    pub event: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportReply {
    pub applied: bool,
    pub state: Option<String>,
}

/// `POST /worker/v1/reports`: several reports, applied in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub reports: Vec<ReportRequest>,
}

/// One reply per report, in order; and, when the reports freed slots and
/// this server runs the scheduler, the tasks placed on the worker in their
/// place (what its next sync would hand out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportBatchReply {
    pub replies: Vec<ReportReply>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assign: Vec<Assignment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_use_snake_case_names() {
        let r: ReportRequest =
            serde_json::from_str(r#"{"task":1,"attempt":2,"event":"spawn_failed"}"#).unwrap();
        assert_eq!(r.event, Report::SpawnFailed);
        assert!(serde_json::from_str::<ReportRequest>(
            r#"{"task":1,"attempt":2,"event":"finished"}"#
        )
        .is_err());
        let k: RegisterRequest = serde_json::from_str(r#"{"kind":"edge","slots":3}"#).unwrap();
        assert_eq!(k.kind, WorkerKind::Edge);
        assert!(serde_json::from_str::<RegisterRequest>(r#"{"kind":"gpu","slots":3}"#).is_err());
    }
}
