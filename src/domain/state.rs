//! The 18 task states of the VIAS lifecycle and their wire spellings.

use std::fmt;
use std::str::FromStr;

/// A task's state. The order is the contract's order; `index()` is the stable
/// number stored in the database and the position of the state's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    Pending,
    Recovering,
    Starting,
    Upgrading,
    CreateFailed,
    StartFailed,
    Running,
    Stopping,
    Stopped,
    Abnormal,
    Succeeded,
    Failed,
    Deleting,
    Freezing,
    Frozen,
    StoppedNoService,
    Scheduling,
    LackOfResources,
}

impl TaskState {
    pub const ALL: [TaskState; 18] = [
        TaskState::Pending,
        TaskState::Recovering,
        TaskState::Starting,
        TaskState::Upgrading,
        TaskState::CreateFailed,
        TaskState::StartFailed,
        TaskState::Running,
        TaskState::Stopping,
        TaskState::Stopped,
        TaskState::Abnormal,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Deleting,
        TaskState::Freezing,
        TaskState::Frozen,
        TaskState::StoppedNoService,
        TaskState::Scheduling,
        TaskState::LackOfResources,
    ];

    /// Lowercase wire name, as used in batch counters and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Recovering => "recovering",
            TaskState::Starting => "starting",
            TaskState::Upgrading => "upgrading",
            TaskState::CreateFailed => "create_failed",
            TaskState::StartFailed => "start_failed",
            TaskState::Running => "running",
            TaskState::Stopping => "stopping",
            TaskState::Stopped => "stopped",
            TaskState::Abnormal => "abnormal",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Deleting => "deleting",
            TaskState::Freezing => "freezing",
            TaskState::Frozen => "frozen",
            TaskState::StoppedNoService => "stopped_no_service",
            TaskState::Scheduling => "scheduling",
            TaskState::LackOfResources => "lack_of_resources",
        }
    }

    /// At rest: no worker holds it and nothing moves it until a user
    /// starts it again (or deletes it).
    pub fn at_rest(self) -> bool {
        matches!(
            self,
            TaskState::Stopped
                | TaskState::Succeeded
                | TaskState::Failed
                | TaskState::StartFailed
                | TaskState::CreateFailed
                | TaskState::StoppedNoService
        )
    }

    /// Uppercase wire name, as used in task objects.
    pub fn as_upper(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: i64) -> Option<TaskState> {
        usize::try_from(i)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// Name of the per-batch counter column that counts tasks in this state.
    pub fn counter_column(self) -> &'static str {
        COUNTER_COLUMNS[self.index()]
    }
}

/// Counter columns of `batch_tasks`, in `TaskState::ALL` order. Fixed in code so
/// that SQL built from them never contains client input.
pub const COUNTER_COLUMNS: [&str; 18] = [
    "c_pending",
    "c_recovering",
    "c_starting",
    "c_upgrading",
    "c_create_failed",
    "c_start_failed",
    "c_running",
    "c_stopping",
    "c_stopped",
    "c_abnormal",
    "c_succeeded",
    "c_failed",
    "c_deleting",
    "c_freezing",
    "c_frozen",
    "c_stopped_no_service",
    "c_scheduling",
    "c_lack_of_resources",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state")]
pub struct UnknownState;

impl FromStr for TaskState {
    type Err = UnknownState;

    /// Case-insensitive, as the contract requires for enum values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownState)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_state_in_any_case() {
        for st in TaskState::ALL {
            assert_eq!(st.as_str().parse::<TaskState>(), Ok(st));
            assert_eq!(st.as_upper().parse::<TaskState>(), Ok(st));
            assert_eq!(TaskState::from_index(st.index() as i64), Some(st));
            assert!(st.counter_column().ends_with(st.as_str()));
        }
        assert_eq!("Running".parse::<TaskState>(), Ok(TaskState::Running));
        assert!("runnin".parse::<TaskState>().is_err());
        assert!("".parse::<TaskState>().is_err());
        assert_eq!(TaskState::from_index(18), None);
        assert_eq!(TaskState::from_index(-1), None);
    }
}
