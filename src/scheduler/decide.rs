//! The scheduler's decisions, as pure functions over plain data: which
//! maintenance steps a tick runs and what they record, which worker gets a
//! task, how many waiting tasks a tick may start, when a wait has lasted too
//! long, and what a worker's sync reply tells it. Nothing here touches a
//! database, so every rule is tested on its own below.

use crate::domain::schedule::{Schedule, PARKED};
use crate::domain::transition::{self, Event, Outcome};
use crate::domain::{DeployType, TaskState};
use crate::protocol::Held;
use std::collections::HashSet;
use std::time::Duration;

/// An error a scheduler decision records on a task (`VIAS.TC.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskError {
    pub code: &'static str,
    pub message: &'static str,
}

pub const WORKER_LOST: TaskError = TaskError {
    code: "VIAS.TC.WORKER_LOST",
    message: "the worker missed its heartbeats",
};
pub const TASK_LOST: TaskError = TaskError {
    code: "VIAS.TC.TASK_LOST",
    message: "the worker no longer runs the task",
};
pub const NO_WORKER: TaskError = TaskError {
    code: "VIAS.TC.NO_WORKER",
    message: "no live worker can run this task (none of its deploy type, or none in its edge pool)",
};
pub const WAIT_LIMIT: TaskError = TaskError {
    code: "VIAS.TC.WAIT_LIMIT",
    message: "no worker slot freed up within the wait limit",
};
pub const NO_SERVICE: TaskError = TaskError {
    code: "VIAS.TC.NO_SERVICE",
    message: "the algorithm service is not deployed",
};
pub const SOURCE_GONE: TaskError = TaskError {
    code: "VIAS.TC.SOURCE_GONE",
    message: "the video source was deleted",
};

/// The tasks a maintenance step acts on; the store turns each into a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// `recovering` tasks.
    Recovering,
    /// `abnormal` tasks.
    Abnormal,
    /// Tasks in a held state whose worker is lost, or that no worker holds.
    HeldByLostWorker,
    /// Waiting tasks (pending, scheduling, lack_of_resources) whose source
    /// was deleted.
    SourceGone,
    /// Live tasks (waiting or on a worker) of frozen projects.
    FrozenProject,
    /// `frozen` tasks of projects no longer frozen.
    UnfrozenProject,
    /// Live tasks whose service version is not deployed.
    Undeployed,
    /// `running` tasks whose batch moved to another service version.
    VersionBehind,
}

/// One maintenance step of a tick: the tasks, the event, the error recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub which: Selector,
    pub event: Event,
    pub error: Option<TaskError>,
}

/// The maintenance steps, in the order a tick runs them, before placement.
/// A task moves at most once per tick, so a task recovered by the second
/// step is requeued by the first step of the next tick, and every stage is
/// visible for at least one tick.
pub const MAINTENANCE: [Step; 8] = [
    Step {
        which: Selector::Recovering,
        event: Event::Requeued,
        error: None,
    },
    Step {
        which: Selector::Abnormal,
        event: Event::Recover,
        error: None,
    },
    Step {
        which: Selector::HeldByLostWorker,
        event: Event::LeaseExpired,
        error: Some(WORKER_LOST),
    },
    Step {
        which: Selector::SourceGone,
        event: Event::SourceGone,
        error: Some(SOURCE_GONE),
    },
    Step {
        which: Selector::FrozenProject,
        event: Event::Freeze,
        error: None,
    },
    Step {
        which: Selector::UnfrozenProject,
        event: Event::Unfreeze,
        error: None,
    },
    Step {
        which: Selector::Undeployed,
        event: Event::Undeploy,
        error: Some(NO_SERVICE),
    },
    Step {
        which: Selector::VersionBehind,
        event: Event::Upgrade,
        error: None,
    },
];

/// A live worker's free slots, as read at the start of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSlots {
    pub worker_pk: i64,
    pub kind: DeployType,
    /// The edge pools it belongs to.
    pub pools: Vec<i64>,
    /// Slots less the tasks it holds (may be negative after a re-register
    /// with fewer slots).
    pub free: i64,
}

/// Free capacity by worker type, spent as a tick places tasks.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    workers: Vec<WorkerSlots>,
}

impl Capacity {
    pub fn new(workers: Vec<WorkerSlots>) -> Capacity {
        Capacity { workers }
    }

    /// Whether any live worker takes tasks of `kind` (and, for a service
    /// deployed onto a pool, belongs to that pool).
    pub fn serves(&self, kind: DeployType, pool: Option<i64>) -> bool {
        self.workers.iter().any(|w| fits(w, kind, pool))
    }

    /// Free slots those workers have, counting none below zero.
    pub fn free(&self, kind: DeployType, pool: Option<i64>) -> i64 {
        self.workers
            .iter()
            .filter(|w| fits(w, kind, pool))
            .map(|w| w.free.max(0))
            .sum()
    }

    /// Reserves a slot on the fitting worker with the most free slots (the
    /// last such worker on a tie), spreading load.
    pub fn reserve(&mut self, kind: DeployType, pool: Option<i64>) -> Option<i64> {
        let w = self
            .workers
            .iter_mut()
            .filter(|w| fits(w, kind, pool) && w.free > 0)
            .max_by_key(|w| w.free)?;
        w.free -= 1;
        Some(w.worker_pk)
    }
}

/// A worker runs a task of `kind` whose service is deployed onto `pool` (if
/// any) when it is of that kind and, for a pool, one of its members.
fn fits(w: &WorkerSlots, kind: DeployType, pool: Option<i64>) -> bool {
    w.kind == kind && pool.is_none_or(|p| w.pools.contains(&p))
}

/// What happens to a `scheduling` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A slot on this worker was reserved.
    On(i64),
    /// No slot is free now: back to `pending`.
    Requeue,
    /// No live worker of its type exists.
    Never(TaskError),
}

impl Placement {
    pub fn event(self) -> Event {
        match self {
            Placement::On(_) => Event::Place,
            Placement::Requeue => Event::Requeue,
            Placement::Never(_) => Event::NoCapacity,
        }
    }

    /// Why a task cannot be placed at all.
    pub fn error(self) -> Option<TaskError> {
        match self {
            Placement::Never(e) => Some(e),
            _ => None,
        }
    }
}

pub fn place(cap: &mut Capacity, kind: DeployType, pool: Option<i64>) -> Placement {
    if !cap.serves(kind, pool) {
        return Placement::Never(NO_WORKER);
    }
    match cap.reserve(kind, pool) {
        Some(w) => Placement::On(w),
        None => Placement::Requeue,
    }
}

/// What happens to a `pending` task that has waited `waited_ms` since it
/// last moved, given the slots of its type a tick may still start
/// (`budget`, spent by this call) and whether any worker of its type lives.
/// `None`: it stays pending.
pub fn pending(
    serves: bool,
    budget: &mut i64,
    waited_ms: i64,
    wait_limit_ms: i64,
) -> Option<(Event, Option<TaskError>)> {
    if !serves {
        Some((Event::NoCapacity, Some(NO_WORKER)))
    } else if *budget > 0 {
        *budget -= 1;
        Some((Event::Schedule, None))
    } else if waited_ms > wait_limit_ms {
        Some((Event::NoCapacity, Some(WAIT_LIMIT)))
    } else {
        None
    }
}

/// What the scheduler does with a task whose schedule windows are due at
/// `now`: the move to make, if any, and when to look again (`None`: the
/// task has no schedule; [`PARKED`]: not until something moves it). Outside
/// a window a live task is stopped and held; inside one a held task is
/// started. A task at rest that its schedule does not hold (a user stopped
/// it, or it ended) is left alone.
pub fn window(
    schedule: Option<&Schedule>,
    state: TaskState,
    held: bool,
    now: i64,
) -> (Option<Event>, Option<i64>) {
    let open = held && state == TaskState::Stopped;
    let Some(s) = schedule else {
        return (open.then_some(Event::WindowOpened), None);
    };
    let event = if s.contains(now) {
        open.then_some(Event::WindowOpened)
    } else {
        transition::next(state, Event::WindowClosed).map(|_| Event::WindowClosed)
    };
    let (state, held) = match event.and_then(|e| transition::next(state, e).map(|o| (e, o))) {
        Some((e, Outcome::To(to))) => (to, e == Event::WindowClosed),
        _ => (state, held),
    };
    let due = if state.at_rest() && !held {
        PARKED
    } else {
        s.next_change(now).unwrap_or(PARKED)
    };
    (event, Some(due))
}

/// What a worker's sync settles, task by task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Start these: placed on the worker, which does not run them yet.
    pub assign: Vec<Held>,
    /// Restart these on their new version.
    pub upgrade: Vec<Held>,
    /// Stop these: the worker runs them but should not.
    pub stop: Vec<Held>,
    /// Move these: the worker let go of them, or lost them.
    pub moves: Vec<(Held, Event, Option<TaskError>)>,
}

/// Compares what the server says a worker holds (`held`, with each task's
/// state) with what the worker says it runs (`running`).
pub fn reconcile(held: &[(Held, TaskState)], running: &[Held]) -> Reconciled {
    let reported: HashSet<Held> = running.iter().copied().collect();
    let mut out = Reconciled::default();
    for (h, state) in held {
        let runs = reported.contains(h);
        match state {
            TaskState::Starting if !runs => out.assign.push(*h),
            TaskState::Upgrading if runs => out.upgrade.push(*h),
            TaskState::Running | TaskState::Upgrading if !runs => {
                out.moves.push((*h, Event::LeaseExpired, Some(TASK_LOST)))
            }
            TaskState::Stopping | TaskState::Deleting | TaskState::Freezing => {
                if runs {
                    out.stop.push(*h)
                } else {
                    out.moves.push((*h, Event::Released, None))
                }
            }
            _ => {}
        }
    }
    let mine: HashSet<Held> = held.iter().map(|(h, _)| *h).collect();
    out.stop
        .extend(running.iter().filter(|h| !mine.contains(h)).copied());
    out
}

/// How long the loop waits before the next tick. A step that moved a full
/// batch means more is waiting: go again, after a pause as long as the tick
/// took (at least 10 ms, at most `interval`), so the scheduler holds the
/// database's write lock at most about half the time and other writers (API
/// calls, workers, one-shot commands) always get their turn.
pub fn pause_after(full_step: bool, took: Duration, interval: Duration) -> Duration {
    if full_step {
        took.max(Duration::from_millis(10)).min(interval)
    } else {
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::transition;
    use DeployType::{Cloud, Edge};

    fn w(worker_pk: i64, kind: DeployType, free: i64) -> WorkerSlots {
        WorkerSlots {
            worker_pk,
            kind,
            pools: Vec::new(),
            free,
        }
    }

    fn h(task: i64) -> Held {
        Held { task, attempt: 1 }
    }

    #[test]
    fn placement_prefers_the_worker_with_most_free_slots() {
        let mut cap = Capacity::new(vec![w(1, Cloud, 1), w(2, Cloud, 3), w(3, Edge, 5)]);
        assert_eq!(place(&mut cap, Cloud, None), Placement::On(2));
        assert_eq!(place(&mut cap, Cloud, None), Placement::On(2));
        // 1 and 2 both have one free slot now: the last of them wins.
        assert_eq!(place(&mut cap, Cloud, None), Placement::On(2));
        assert_eq!(place(&mut cap, Cloud, None), Placement::On(1));
        assert_eq!(place(&mut cap, Cloud, None), Placement::Requeue);
        assert_eq!(cap.free(Cloud, None), 0);
        assert_eq!(
            cap.free(Edge, None),
            5,
            "edge slots are never spent on cloud tasks"
        );
    }

    #[test]
    fn placement_without_a_worker_of_the_type_never_fits() {
        let mut cap = Capacity::new(vec![w(1, Edge, 2)]);
        assert_eq!(place(&mut cap, Cloud, None), Placement::Never(NO_WORKER));
        assert_eq!(Placement::Never(NO_WORKER).event(), Event::NoCapacity);
        assert_eq!(Placement::On(1).event(), Event::Place);
        assert_eq!(Placement::Requeue.event(), Event::Requeue);
        let mut none = Capacity::default();
        assert_eq!(place(&mut none, Edge, None), Placement::Never(NO_WORKER));
    }

    #[test]
    fn a_service_on_a_pool_runs_only_on_the_pool_s_workers() {
        let mut in_pool = w(1, Edge, 1);
        in_pool.pools = vec![7];
        let mut cap = Capacity::new(vec![in_pool, w(2, Edge, 5)]);
        assert_eq!(cap.free(Edge, Some(7)), 1);
        assert_eq!(cap.free(Edge, None), 6, "without a pool, every edge worker");
        assert_eq!(place(&mut cap, Edge, Some(7)), Placement::On(1));
        assert_eq!(
            place(&mut cap, Edge, Some(7)),
            Placement::Requeue,
            "the pool is full"
        );
        assert_eq!(
            place(&mut cap, Edge, Some(8)),
            Placement::Never(NO_WORKER),
            "no member at all"
        );
        assert_eq!(place(&mut cap, Edge, None), Placement::On(2));
    }

    #[test]
    fn overcommitted_workers_count_as_full_not_as_negative() {
        // A worker re-registered with fewer slots than it holds.
        let mut cap = Capacity::new(vec![w(1, Cloud, -3), w(2, Cloud, 2)]);
        assert_eq!(cap.free(Cloud, None), 2);
        assert!(cap.serves(Cloud, None));
        assert_eq!(cap.reserve(Cloud, None), Some(2));
        assert_eq!(cap.reserve(Cloud, None), Some(2));
        assert_eq!(cap.reserve(Cloud, None), None);
    }

    #[test]
    fn pending_tasks_start_up_to_the_budget_then_wait_until_the_limit() {
        let limit = 600_000;
        let mut budget = 2;
        assert_eq!(
            pending(true, &mut budget, 5, limit),
            Some((Event::Schedule, None))
        );
        assert_eq!(
            pending(true, &mut budget, 5, limit),
            Some((Event::Schedule, None))
        );
        assert_eq!(budget, 0);
        assert_eq!(
            pending(true, &mut budget, limit, limit),
            None,
            "at the limit it still waits"
        );
        assert_eq!(
            pending(true, &mut budget, limit + 1, limit),
            Some((Event::NoCapacity, Some(WAIT_LIMIT)))
        );
        // No worker of the type: at once, whatever the budget.
        let mut budget = 10;
        assert_eq!(
            pending(false, &mut budget, 0, limit),
            Some((Event::NoCapacity, Some(NO_WORKER)))
        );
        assert_eq!(budget, 10);
    }

    #[test]
    fn every_decision_is_a_move_the_table_allows() {
        use TaskState::*;
        for step in MAINTENANCE {
            let from = match step.which {
                Selector::Recovering => vec![Recovering],
                Selector::Abnormal => vec![Abnormal],
                Selector::HeldByLostWorker => transition::HELD.to_vec(),
                Selector::SourceGone => vec![Pending, Scheduling, LackOfResources],
                Selector::FrozenProject | Selector::Undeployed => {
                    vec![
                        Pending,
                        Scheduling,
                        LackOfResources,
                        Starting,
                        Running,
                        Upgrading,
                    ]
                }
                Selector::UnfrozenProject => vec![Frozen],
                Selector::VersionBehind => vec![Running],
            };
            for s in from {
                assert!(
                    transition::next(s, step.event).is_some(),
                    "{:?}: {s} + {}",
                    step.which,
                    step.event
                );
            }
        }
        for p in [
            Placement::On(1),
            Placement::Requeue,
            Placement::Never(NO_WORKER),
        ] {
            assert!(transition::next(Scheduling, p.event()).is_some());
        }
        assert!(transition::next(Pending, Event::Schedule).is_some());
        assert!(transition::next(Pending, Event::NoCapacity).is_some());
        assert!(transition::next(LackOfResources, Event::CapacityBack).is_some());
    }

    #[test]
    fn maintenance_records_an_error_exactly_where_a_task_is_taken_from_its_work() {
        let with_error: Vec<Selector> = MAINTENANCE
            .iter()
            .filter(|s| s.error.is_some())
            .map(|s| s.which)
            .collect();
        assert_eq!(
            with_error,
            [
                Selector::HeldByLostWorker,
                Selector::SourceGone,
                Selector::Undeployed
            ]
        );
        assert_eq!(
            MAINTENANCE[0].which,
            Selector::Recovering,
            "requeue before recover"
        );
        assert_eq!(MAINTENANCE[1].which, Selector::Abnormal);
    }

    #[test]
    fn reconcile_resends_unstarted_and_upgrades_what_runs() {
        use TaskState::*;
        let held = [
            (h(1), Starting),
            (h(2), Starting),
            (h(3), Upgrading),
            (h(4), Running),
        ];
        let r = reconcile(&held, &[h(2), h(3), h(4)]);
        assert_eq!(
            r.assign,
            [h(1)],
            "a placement the worker has not started is sent again"
        );
        assert_eq!(r.upgrade, [h(3)]);
        assert!(r.stop.is_empty());
        assert!(
            r.moves.is_empty(),
            "running tasks the worker reports stay as they are"
        );
    }

    #[test]
    fn reconcile_loses_what_the_worker_no_longer_runs() {
        use TaskState::*;
        let r = reconcile(&[(h(1), Running), (h(2), Upgrading)], &[]);
        assert_eq!(
            r.moves,
            [
                (h(1), Event::LeaseExpired, Some(TASK_LOST)),
                (h(2), Event::LeaseExpired, Some(TASK_LOST))
            ]
        );
        assert!(r.assign.is_empty() && r.upgrade.is_empty() && r.stop.is_empty());
    }

    #[test]
    fn reconcile_stops_or_releases_tasks_on_their_way_out() {
        use TaskState::*;
        let held = [
            (h(1), Stopping),
            (h(2), Deleting),
            (h(3), Freezing),
            (h(4), Stopping),
        ];
        let r = reconcile(&held, &[h(1), h(2), h(3)]);
        assert_eq!(r.stop, [h(1), h(2), h(3)]);
        assert_eq!(r.moves, [(h(4), Event::Released, None)]);
    }

    #[test]
    fn reconcile_stops_what_the_worker_runs_but_does_not_hold() {
        use TaskState::*;
        let stale = Held {
            task: 1,
            attempt: 2,
        };
        let r = reconcile(&[(h(1), Running)], &[h(1), stale, h(9)]);
        assert_eq!(
            r.stop,
            [stale, h(9)],
            "an old attempt or another worker's task"
        );
        assert!(r.moves.is_empty());
    }

    #[test]
    fn the_loop_pauses_as_long_as_a_full_tick_took() {
        let i = Duration::from_millis(500);
        assert_eq!(pause_after(false, Duration::from_millis(80), i), i);
        assert_eq!(
            pause_after(true, Duration::from_millis(80), i),
            Duration::from_millis(80)
        );
        assert_eq!(
            pause_after(true, Duration::from_millis(1), i),
            Duration::from_millis(10)
        );
        assert_eq!(pause_after(true, Duration::from_secs(3), i), i);
    }
}
