//! Where a task runs: the deploy type of its service, and the type of worker
//! that takes it.

use serde::{Deserialize, Serialize};

/// `cloud` or `edge`: a service's deploy type, and the kind of worker that
/// runs its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployType {
    Cloud,
    Edge,
}

impl DeployType {
    pub const ALL: [DeployType; 2] = [DeployType::Cloud, DeployType::Edge];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployType::Cloud => "cloud",
            DeployType::Edge => "edge",
        }
    }

    /// Case-insensitive, as enum values on the wire are.
    pub fn parse(s: &str) -> Option<DeployType> {
        DeployType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// The batch and task `type` on the wire: "0" cloud, "1" edge.
    pub fn task_type(self) -> &'static str {
        match self {
            DeployType::Cloud => "0",
            DeployType::Edge => "1",
        }
    }

    /// The inverse of [`DeployType::task_type`].
    pub fn from_task_type(t: &str) -> Option<DeployType> {
        DeployType::ALL.into_iter().find(|k| k.task_type() == t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(DeployType::parse("EDGE"), Some(DeployType::Edge));
        assert_eq!(DeployType::parse("gpu"), None);
        for k in DeployType::ALL {
            assert_eq!(DeployType::from_task_type(k.task_type()), Some(k));
            assert_eq!(DeployType::parse(k.as_str()), Some(k));
        }
    }
}
