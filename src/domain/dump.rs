//! The dump format (newline-delimited JSON, one object per line, each with a
//! `kind`, parents before children) used by `export` and `import`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DumpRecord {
    Project(ProjectRecord),
    User(UserRecord),
    EdgePool(EdgePoolRecord),
    Service(ServiceRecord),
    VideoGroup(VideoGroupRecord),
    VideoSource(VideoSourceRecord),
    BatchTask(BatchTaskRecord),
    /// A task of CreateTask (no batch).
    Task(SingleTaskRecord),
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// Users travel with their Argon2id hash so that a restore keeps logins; the
/// plain password is never known to the dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    #[serde(default)]
    pub project_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub project_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub service_name: String,
    pub service_version: String,
    pub alg_name: String,
    pub company: String,
    pub deploy_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The edge pool it is deployed onto (DeployAlgorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<serde_json::Value>,
}

/// An edge pool: nodes are worker names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EdgePoolRecord {
    pub project_id: String,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ief_service_instance_id: Option<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoGroupRecord {
    pub project_id: String,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `cloud` (the default) or `edge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoSourceRecord {
    pub project_id: String,
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Deleted while tasks still named it (they end `create_failed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// `cloud` (the default) or `edge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<String>,
    /// The VIAS source type (`url` when absent).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// The XML configuration (made from `url` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchTaskRecord {
    pub project_id: String,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub service_name: String,
    pub service_version: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    pub created_at: i64,
    #[serde(default)]
    pub group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub saved_as_template: bool,
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
}

fn default_priority() -> String {
    "low".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub video_source_id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// The source's region of interest, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_roi: Option<String>,
}

/// A task of CreateTask: it names its service and carries its own input,
/// output and settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SingleTaskRecord {
    pub project_id: String,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub service_name: String,
    pub service_version: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    pub input: serde_json::Value,
    pub output: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example() {
        let lines = [
            r#"{"kind":"project","id":"p1","name":"demo"}"#,
            r#"{"kind":"service","project_id":"p1","service_name":"helmet","service_version":"1.0.0","alg_name":"Helmet detection","company":"Acme","deploy_type":"cloud"}"#,
            r#"{"kind":"video_group","project_id":"p1","id":"g1","name":"gate"}"#,
            r#"{"kind":"video_source","project_id":"p1","id":"s1","name":"cam-1","url":"rtsp://x","group_ids":["g1"]}"#,
            r#"{"kind":"batch_task","project_id":"p1","id":"0123456789abcdef0123456789abcdef","name":"helmet-gate","service_name":"helmet","service_version":"1.0.0","priority":"low","created_at":1685667905165,"group_ids":["g1"],"tasks":[{"id":"t1","video_source_id":"s1","state":"running"}]}"#,
        ];
        for l in lines {
            let r: DumpRecord = serde_json::from_str(l).unwrap();
            let back = serde_json::to_string(&r).unwrap();
            assert_eq!(back, l, "round trip of {l}");
        }
    }
}
