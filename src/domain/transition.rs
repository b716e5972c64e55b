//! The task lifecycle as one table: every allowed (state, event) → outcome.
//! API calls, the scheduler, worker reports, lease timeouts and operator
//! actions all move tasks only through [`next`]; the store applies the
//! outcome with a conditional update from the state it read, so a racing
//! writer can never make a move the table does not declare.

use super::TaskState::{self, *};
use std::fmt;

/// Why a task moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    // API intents.
    /// StartStopTask / BatchStartStopTask `start`.
    Start,
    /// StartStopTask / BatchStartStopTask `stop`.
    Stop,
    /// DeleteTask / DeleteBatchTask.
    Delete,
    // Scheduler decisions.
    /// The scheduler picked the task to place it.
    Schedule,
    /// A worker slot was reserved for it.
    Place,
    /// No slot is free now, but a registered worker could run it.
    Requeue,
    /// No registered worker can ever run it, or its wait limit passed.
    NoCapacity,
    /// A worker that can run it registered again.
    CapacityBack,
    /// Its video source no longer exists.
    SourceGone,
    /// A task found `abnormal` is taken back for rescheduling.
    Recover,
    /// A `recovering` task is queued again.
    Requeued,
    /// Its schedule's window ended (or it was started outside one): the
    /// scheduler stops it and holds it for the next window.
    WindowClosed,
    /// A window of its schedule began: the scheduler starts a task it held.
    WindowOpened,
    // Worker reports.
    /// The command was spawned.
    Started,
    /// The command could not be spawned.
    SpawnFailed,
    /// The command exited with status 0.
    Exited,
    /// The command exited with another status or a signal.
    Crashed,
    /// The worker let go of a task it was told to stop, delete or freeze.
    Released,
    // Timeout.
    /// The worker holding it missed its heartbeats past the lease.
    LeaseExpired,
    // Operator actions.
    Freeze,
    Unfreeze,
    Undeploy,
    Upgrade,
    /// The worker runs the new version.
    Upgraded,
}

impl Event {
    pub const ALL: [Event; 24] = [
        Event::Start,
        Event::Stop,
        Event::Delete,
        Event::Schedule,
        Event::Place,
        Event::Requeue,
        Event::NoCapacity,
        Event::CapacityBack,
        Event::SourceGone,
        Event::Recover,
        Event::Requeued,
        Event::WindowClosed,
        Event::WindowOpened,
        Event::Started,
        Event::SpawnFailed,
        Event::Exited,
        Event::Crashed,
        Event::Released,
        Event::LeaseExpired,
        Event::Freeze,
        Event::Unfreeze,
        Event::Undeploy,
        Event::Upgrade,
        Event::Upgraded,
    ];

    /// The event's name, as history and metrics show it.
    pub fn name(self) -> &'static str {
        match self {
            Event::Start => "Start",
            Event::Stop => "Stop",
            Event::Delete => "Delete",
            Event::Schedule => "Schedule",
            Event::Place => "Place",
            Event::Requeue => "Requeue",
            Event::NoCapacity => "NoCapacity",
            Event::CapacityBack => "CapacityBack",
            Event::SourceGone => "SourceGone",
            Event::Recover => "Recover",
            Event::Requeued => "Requeued",
            Event::WindowClosed => "WindowClosed",
            Event::WindowOpened => "WindowOpened",
            Event::Started => "Started",
            Event::SpawnFailed => "SpawnFailed",
            Event::Exited => "Exited",
            Event::Crashed => "Crashed",
            Event::Released => "Released",
            Event::LeaseExpired => "LeaseExpired",
            Event::Freeze => "Freeze",
            Event::Unfreeze => "Unfreeze",
            Event::Undeploy => "Undeploy",
            Event::Upgrade => "Upgrade",
            Event::Upgraded => "Upgraded",
        }
    }

    /// Who causes the event.
    pub fn cause(self) -> Cause {
        match self {
            Event::Start | Event::Stop | Event::Delete => Cause::Api,
            Event::Schedule
            | Event::Place
            | Event::Requeue
            | Event::NoCapacity
            | Event::CapacityBack
            | Event::SourceGone
            | Event::Recover
            | Event::Requeued
            | Event::WindowClosed
            | Event::WindowOpened => Cause::Scheduler,
            Event::Started
            | Event::SpawnFailed
            | Event::Exited
            | Event::Crashed
            | Event::Released
            | Event::Upgraded => Cause::Worker,
            Event::LeaseExpired => Cause::Timeout,
            Event::Freeze | Event::Unfreeze | Event::Undeploy | Event::Upgrade => Cause::Operator,
        }
    }

    /// Events only the scheduler's placement or a worker's report may
    /// apply: they need a worker, so no API call or operator applies them.
    pub fn needs_worker(self) -> bool {
        self == Event::Place || self.cause() == Cause::Worker
    }
}

/// Who causes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    Api,
    Scheduler,
    Worker,
    Timeout,
    Operator,
}

impl Cause {
    /// As the docs' table shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Api => "API",
            Cause::Scheduler => "scheduler",
            Cause::Worker => "worker",
            Cause::Timeout => "timeout",
            Cause::Operator => "operator",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    To(TaskState),
    /// The task row is deleted.
    Gone,
}

/// States in which a worker holds the task (a slot is taken).
pub const HELD: [TaskState; 6] = [Starting, Running, Upgrading, Stopping, Deleting, Freezing];

pub fn is_held(s: TaskState) -> bool {
    HELD.contains(&s)
}

use Outcome::{Gone, To};

/// The whole table. A (state, event) pair not listed is not allowed.
pub const TRANSITIONS: &[(TaskState, Event, Outcome)] = &[
    // Waiting for capacity.
    (Pending, Event::Schedule, To(Scheduling)),
    (Pending, Event::NoCapacity, To(LackOfResources)),
    (Pending, Event::SourceGone, To(CreateFailed)),
    (Pending, Event::Stop, To(Stopped)),
    (Pending, Event::Delete, Gone),
    (Pending, Event::Freeze, To(Frozen)),
    (Pending, Event::Undeploy, To(StoppedNoService)),
    (Pending, Event::WindowClosed, To(Stopped)),
    (Scheduling, Event::Place, To(Starting)),
    (Scheduling, Event::Requeue, To(Pending)),
    (Scheduling, Event::NoCapacity, To(LackOfResources)),
    (Scheduling, Event::SourceGone, To(CreateFailed)),
    (Scheduling, Event::Stop, To(Stopped)),
    (Scheduling, Event::Delete, Gone),
    (Scheduling, Event::Freeze, To(Frozen)),
    (Scheduling, Event::Undeploy, To(StoppedNoService)),
    (Scheduling, Event::WindowClosed, To(Stopped)),
    (LackOfResources, Event::CapacityBack, To(Pending)),
    (LackOfResources, Event::SourceGone, To(CreateFailed)),
    (LackOfResources, Event::Start, To(Pending)),
    (LackOfResources, Event::Stop, To(Stopped)),
    (LackOfResources, Event::Delete, Gone),
    (LackOfResources, Event::Freeze, To(Frozen)),
    (LackOfResources, Event::Undeploy, To(StoppedNoService)),
    (LackOfResources, Event::WindowClosed, To(Stopped)),
    // On a worker.
    (Starting, Event::Started, To(Running)),
    (Starting, Event::SpawnFailed, To(StartFailed)),
    (Starting, Event::Exited, To(Succeeded)),
    (Starting, Event::Crashed, To(Failed)),
    (Starting, Event::Stop, To(Stopping)),
    (Starting, Event::Delete, To(Deleting)),
    (Starting, Event::LeaseExpired, To(Abnormal)),
    (Starting, Event::Freeze, To(Freezing)),
    (Starting, Event::Undeploy, To(StoppedNoService)),
    (Starting, Event::WindowClosed, To(Stopping)),
    (Running, Event::Exited, To(Succeeded)),
    (Running, Event::Crashed, To(Failed)),
    (Running, Event::Stop, To(Stopping)),
    (Running, Event::Delete, To(Deleting)),
    (Running, Event::LeaseExpired, To(Abnormal)),
    (Running, Event::Freeze, To(Freezing)),
    (Running, Event::Undeploy, To(StoppedNoService)),
    (Running, Event::Upgrade, To(Upgrading)),
    (Running, Event::WindowClosed, To(Stopping)),
    (Upgrading, Event::Upgraded, To(Running)),
    (Upgrading, Event::SpawnFailed, To(StartFailed)),
    (Upgrading, Event::Exited, To(Succeeded)),
    (Upgrading, Event::Crashed, To(Failed)),
    (Upgrading, Event::Stop, To(Stopping)),
    (Upgrading, Event::Delete, To(Deleting)),
    (Upgrading, Event::LeaseExpired, To(Abnormal)),
    (Upgrading, Event::Freeze, To(Freezing)),
    (Upgrading, Event::Undeploy, To(StoppedNoService)),
    (Upgrading, Event::WindowClosed, To(Stopping)),
    (Stopping, Event::Released, To(Stopped)),
    (Stopping, Event::Exited, To(Stopped)),
    (Stopping, Event::Crashed, To(Stopped)),
    (Stopping, Event::LeaseExpired, To(Stopped)),
    (Stopping, Event::Delete, To(Deleting)),
    (Deleting, Event::Released, Gone),
    (Deleting, Event::Exited, Gone),
    (Deleting, Event::Crashed, Gone),
    (Deleting, Event::LeaseExpired, Gone),
    (Freezing, Event::Released, To(Frozen)),
    (Freezing, Event::Exited, To(Frozen)),
    (Freezing, Event::Crashed, To(Frozen)),
    (Freezing, Event::LeaseExpired, To(Frozen)),
    (Freezing, Event::Delete, To(Deleting)),
    // Lost workers.
    (Abnormal, Event::Recover, To(Recovering)),
    (Abnormal, Event::Stop, To(Stopped)),
    (Abnormal, Event::Delete, Gone),
    (Abnormal, Event::WindowClosed, To(Stopped)),
    (Recovering, Event::Requeued, To(Pending)),
    (Recovering, Event::Stop, To(Stopped)),
    (Recovering, Event::Delete, Gone),
    (Recovering, Event::WindowClosed, To(Stopped)),
    // Frozen projects.
    (Frozen, Event::Unfreeze, To(Recovering)),
    (Frozen, Event::Delete, Gone),
    // At rest: start again or delete.
    (Stopped, Event::Start, To(Pending)),
    (Stopped, Event::Delete, Gone),
    (Stopped, Event::WindowOpened, To(Pending)),
    (Succeeded, Event::Start, To(Pending)),
    (Succeeded, Event::Delete, Gone),
    (Failed, Event::Start, To(Pending)),
    (Failed, Event::Delete, Gone),
    (StartFailed, Event::Start, To(Pending)),
    (StartFailed, Event::Delete, Gone),
    (CreateFailed, Event::Start, To(Pending)),
    (CreateFailed, Event::Delete, Gone),
    (StoppedNoService, Event::Start, To(Pending)),
    (StoppedNoService, Event::Delete, Gone),
];

/// Where `event` takes a task in `from`; `None` when the table forbids it.
pub fn next(from: TaskState, event: Event) -> Option<Outcome> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, o)| *o)
}

/// Whether some event takes `from` to `to` (the store's guard for writes
/// that name the target state).
pub fn allowed(from: TaskState, to: TaskState) -> bool {
    TRANSITIONS
        .iter()
        .any(|(f, _, o)| *f == from && *o == To(to))
}

/// The table as a Markdown table, for the docs (a test keeps the docs'
/// copy equal to this).
pub fn markdown() -> String {
    let mut s = String::from("| from | event | cause | to |\n|---|---|---|---|\n");
    for (f, e, o) in TRANSITIONS {
        let to = match o {
            To(t) => format!("`{t}`"),
            Gone => "(deleted)".into(),
        };
        s.push_str(&format!(
            "| `{f}` | {e} | {} | {to} |\n",
            e.cause().as_str()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    #[test]
    fn every_state_is_reachable_from_creation() {
        let mut seen = HashSet::from([Pending]);
        let mut queue = VecDeque::from([Pending]);
        while let Some(s) = queue.pop_front() {
            for (f, _, o) in TRANSITIONS {
                if let (true, To(t)) = (*f == s, o) {
                    if seen.insert(*t) {
                        queue.push_back(*t);
                    }
                }
            }
        }
        let missing: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| !seen.contains(s))
            .collect();
        assert!(missing.is_empty(), "unreachable: {missing:?}");
    }

    #[test]
    fn every_state_can_be_left_or_deleted() {
        for s in TaskState::ALL {
            assert!(
                TRANSITIONS.iter().any(|(f, _, o)| *f == s && *o == Gone)
                    || next(s, Event::Delete) == Some(To(Deleting)),
                "{s} cannot be deleted"
            );
        }
    }

    #[test]
    fn each_pair_is_declared_once_and_every_event_is_used() {
        let mut pairs = HashSet::new();
        for (f, e, _) in TRANSITIONS {
            assert!(pairs.insert((*f, *e)), "({f}, {e}) declared twice");
        }
        for e in Event::ALL {
            assert!(TRANSITIONS.iter().any(|(_, x, _)| *x == e), "{e} unused");
            assert_eq!(e.name(), format!("{e:?}"), "the name is the variant's");
        }
    }

    #[test]
    fn held_states_are_exactly_those_a_lost_worker_releases() {
        for s in TaskState::ALL {
            assert_eq!(
                next(s, Event::LeaseExpired).is_some(),
                is_held(s),
                "{s}: a lease can expire only on a task a worker holds"
            );
        }
    }

    #[test]
    fn the_docs_show_this_table() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/LIFECYCLE.md"))
            .unwrap_or_default();
        assert!(
            doc.contains(&markdown()),
            "LIFECYCLE.md's table differs from TRANSITIONS; paste markdown() into it:\n{}",
            markdown()
        );
    }

    #[test]
    fn start_and_stop_follow_the_contract_outline() {
        assert_eq!(next(Running, Event::Stop), Some(To(Stopping)));
        assert_eq!(next(Stopping, Event::Released), Some(To(Stopped)));
        assert_eq!(next(Stopped, Event::Start), Some(To(Pending)));
        assert_eq!(next(Failed, Event::Start), Some(To(Pending)));
        assert_eq!(next(Running, Event::Start), None);
        assert_eq!(next(Stopped, Event::Stop), None);
        assert!(allowed(Pending, Scheduling));
        assert!(!allowed(Pending, Running));
    }

    #[test]
    fn a_closing_window_stops_what_a_user_stop_stops() {
        for s in TaskState::ALL {
            assert_eq!(next(s, Event::WindowClosed), next(s, Event::Stop), "{s}");
        }
        assert_eq!(
            next(Stopped, Event::WindowOpened),
            next(Stopped, Event::Start)
        );
    }
}
