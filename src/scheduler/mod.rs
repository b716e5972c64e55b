//! The lifecycle engine inside `serve`. [`tick`] is one bounded pass: a plain
//! function that asks the store for one transaction ([`TickTx`]) and makes
//! every decision itself, through the pure functions of [`decide`]. The
//! [`Scheduler`] loop runs ticks on an interval (sooner while a backlog
//! remains) until serve's graceful shutdown, and serve waits for it. Tests
//! call [`tick`] with their own clock.

pub mod decide;
pub mod wake;

use crate::domain::schedule::Schedule;
use crate::domain::transition::{self, Event, Outcome};
use crate::domain::{now_millis, DeployType, TaskState};
use crate::store::lifecycle::{Applied, Assignment, WorkerReport};
use crate::store::prelude::*;
use crate::store::tick_tx::{TaskKey, TickTx, Waiting};
use crate::store::{StoreError, StoreResult};
use decide::{Capacity, Placement, MAINTENANCE};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy)]
pub struct TickConfig {
    /// At most this many tasks per step of one tick.
    pub batch: i64,
    /// A task pending longer than this goes `lack_of_resources`.
    pub wait_limit_ms: i64,
}

impl Default for TickConfig {
    fn default() -> Self {
        TickConfig {
            batch: 256,
            wait_limit_ms: 10 * 60 * 1000,
        }
    }
}

/// How many tasks one tick moved, by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub moved: Vec<(Event, u64)>,
    /// Tasks this tick moved already (a task moves once per maintenance
    /// step and once per placement stage).
    pub moved_tasks: HashSet<i64>,
}

impl TickReport {
    fn add(&mut self, e: Event, task: i64) {
        self.moved_tasks.insert(task);
        match self.moved.iter_mut().find(|(x, _)| *x == e) {
            Some((_, n)) => *n += 1,
            None => self.moved.push((e, 1)),
        }
    }

    pub fn total(&self) -> u64 {
        self.moved.iter().map(|(_, n)| n).sum()
    }

    pub fn count(&self, e: Event) -> u64 {
        self.moved
            .iter()
            .find(|(x, _)| *x == e)
            .map_or(0, |(_, n)| *n)
    }
}

/// One bounded scheduler pass at time `now`; ticks of every process on the
/// database serialize on the lifecycle lock.
pub async fn tick(
    store: &dyn SchedulerStore,
    now: i64,
    cfg: &TickConfig,
) -> StoreResult<TickReport> {
    let mut tx = store.begin_tick().await?;
    let report = tick_in(&mut *tx, now, cfg).await?;
    tx.commit().await?;
    Ok(report)
}

/// A pass that only places waiting tasks on free slots: what a worker's
/// report can make possible. [`tick`] does this and the maintenance steps.
pub async fn place(
    store: &dyn SchedulerStore,
    now: i64,
    cfg: &TickConfig,
) -> StoreResult<TickReport> {
    let mut tx = store.begin_tick().await?;
    let mut report = TickReport::default();
    place_waiting(&mut *tx, now, cfg, true, &mut report).await?;
    tx.commit().await?;
    Ok(report)
}

/// Counts a pass's moves in the metrics.
fn count_moves(r: &TickReport) {
    let m = crate::metrics::metrics();
    for (event, n) in &r.moved {
        m.moves
            .get_or_create(&crate::metrics::EventLabels {
                event: event.name(),
            })
            .inc_by(*n);
    }
}

/// Whether reports moved a task off its worker's slots.
pub fn frees_slot(applied: &[Option<Applied>]) -> bool {
    applied.iter().any(|a| {
        matches!(a, Some(Applied::Moved { to, .. })
            if !matches!(to, Outcome::To(s) if transition::is_held(*s)))
    })
}

/// What [`report_and_place`] did.
#[derive(Debug)]
pub enum ReportedAndPlaced {
    /// The reports' replies, and the tasks now placed on the worker.
    Done(Vec<Option<Applied>>, Vec<Assignment>),
    /// The reports applied, but the placing pass or the commit after it
    /// failed: nothing of it was kept.
    PlacingFailed(StoreError),
}

/// A worker's reports and, where they freed slots, a placing pass, in one
/// transaction: one lock and one commit for both, and the tasks placed on
/// this worker go back in the reports' answer. What the pass moved is
/// counted as the scheduler's own passes are. Nothing is kept if any of it
/// fails; a failure of the reports themselves is the error, one after them
/// is [`ReportedAndPlaced::PlacingFailed`], so the caller can send the
/// reports alone.
pub async fn report_and_place(
    store: &dyn SchedulerStore,
    worker_pk: i64,
    reports: &[WorkerReport],
    cfg: &TickConfig,
) -> StoreResult<ReportedAndPlaced> {
    let mut tx = store.begin_tick().await?;
    let applied = tx.report(worker_pk, reports).await?;
    let mut placed = TickReport::default();
    let placing = async {
        let mut assign = Vec::new();
        if frees_slot(&applied) {
            place_waiting(&mut *tx, now_millis(), cfg, true, &mut placed).await?;
            assign = tx.placed_on(worker_pk).await?;
        }
        tx.commit().await?;
        StoreResult::Ok(assign)
    };
    match placing.await {
        Ok(assign) => {
            count_moves(&placed);
            Ok(ReportedAndPlaced::Done(applied, assign))
        }
        Err(e) => Ok(ReportedAndPlaced::PlacingFailed(e)),
    }
}

async fn tick_in(tx: &mut dyn TickTx, now: i64, cfg: &TickConfig) -> StoreResult<TickReport> {
    let mut report = TickReport::default();
    let n = cfg.batch;
    tx.mark_lost_workers(now).await?;
    for step in MAINTENANCE {
        for t in tx.select(step.which, n).await? {
            if !report.moved_tasks.contains(&t.pk)
                && tx.apply(&t, step.event, None, step.error, now).await?
            {
                report.add(step.event, t.pk);
            }
        }
    }

    windows(tx, now, n, &mut report).await?;
    place_waiting(tx, now, cfg, false, &mut report).await?;
    Ok(report)
}

/// How many waiting tasks beyond its free slots a placing pass reads.
const PICK_SLACK: i64 = 16;

/// The first `n` waiting tasks in pick order; a whole batch instead when
/// those `n` fill the read and some are bound to an edge pool: they may all
/// wait for a pool without a free slot while tasks after them could take
/// the free slots, and a placing pass must not leave those to the full pass.
async fn pick(
    tx: &mut dyn TickTx,
    (state, kind, frozen_too): (TaskState, DeployType, bool),
    now: i64,
    n: i64,
    batch: i64,
) -> StoreResult<Vec<Waiting>> {
    let first = tx.waiting(state, kind, frozen_too, now, n).await?;
    if n < batch && first.len() as i64 >= n && first.iter().any(|w| w.pool.is_some()) {
        return tx.waiting(state, kind, frozen_too, now, batch).await;
    }
    Ok(first)
}

/// Lack-of-resources tasks back, pending ones scheduled, scheduling ones
/// placed, per worker type; tasks `report` moved already wait. With
/// `only_place`, a worker type without a free slot is not looked at: its
/// waiting tasks can only wait, and what waiting too long does to them is
/// the full pass's. So a placing pass also reads only about as many waiting
/// tasks as there are free slots (a report that frees five slots reads a
/// handful of rows, not a batch's worth); the full pass reads a batch, to
/// find the tasks that waited too long or that no worker can take.
async fn place_waiting(
    tx: &mut dyn TickTx,
    now: i64,
    cfg: &TickConfig,
    only_place: bool,
    report: &mut TickReport,
) -> StoreResult<()> {
    let mut cap = Capacity::new(tx.capacity().await?);
    // Each worker type on its own, so a backlog of one type never hides the
    // other's tasks from the pick.
    for kind in DeployType::ALL {
        if only_place && cap.free(kind, None) == 0 {
            continue;
        }
        let n = if only_place {
            cfg.batch.min(cap.free(kind, None) + PICK_SLACK)
        } else {
            cfg.batch
        };
        // As many tasks back from lack_of_resources as there are free slots
        // for them (by pool, for services deployed onto one), then pending
        // ones up to what is left.
        let mut budgets: HashMap<Option<i64>, i64> = HashMap::new();
        if cap.free(kind, None) > 0 {
            let back = (TaskState::LackOfResources, kind, true);
            for w in pick(tx, back, now, n, cfg.batch).await? {
                let budget = budgets
                    .entry(w.pool)
                    .or_insert_with(|| cap.free(kind, w.pool));
                if *budget > 0
                    && !report.moved_tasks.contains(&w.key.pk)
                    && tx
                        .apply(&w.key, Event::CapacityBack, None, None, now)
                        .await?
                {
                    *budget -= 1;
                    report.add(Event::CapacityBack, w.key.pk);
                }
            }
        }
        // The tasks to schedule are written after the pick, together, and
        // those placed in this pass together with their placement.
        let mut to_schedule: Vec<Waiting> = Vec::new();
        for w in pick(tx, (TaskState::Pending, kind, false), now, n, cfg.batch).await? {
            if report.moved_tasks.contains(&w.key.pk) {
                continue;
            }
            let waited = now - w.updated_at;
            let serves = cap.serves(kind, w.pool);
            let budget = budgets
                .entry(w.pool)
                .or_insert_with(|| cap.free(kind, w.pool));
            let Some((event, error)) = decide::pending(serves, budget, waited, cfg.wait_limit_ms)
            else {
                continue;
            };
            if event == Event::Schedule && error.is_none() {
                to_schedule.push(w);
            } else if tx.apply(&w.key, event, None, error, now).await? {
                report.add(event, w.key.pk);
            }
        }

        // Place what is scheduling, this pass's picks included, in pick
        // order: a task passes pending → scheduling → starting in one pass
        // when a slot is free (history records both moves; the row is
        // written once).
        let earlier = tx
            .waiting(TaskState::Scheduling, kind, true, now, n)
            .await?;
        let mut queue: Vec<(Waiting, bool)> = earlier
            .into_iter()
            .filter(|w| !report.moved_tasks.contains(&w.key.pk))
            .map(|w| (w, false))
            .chain(to_schedule.into_iter().map(|w| (w, true)))
            .collect();
        queue.sort_by_key(|(w, _)| (w.order, w.key.pk));
        let mut placed: Vec<(i64, bool, Vec<TaskKey>)> = Vec::new();
        // Picked now and not placed: scheduled, then what placing said
        // (nothing, for those beyond what a pass places).
        let mut unplaced: Vec<(TaskKey, Option<Placement>)> = Vec::new();
        for (i, (w, new)) in queue.into_iter().enumerate() {
            if i as i64 >= n {
                // Beyond what a pass places: scheduled, placed by a later pass.
                if new {
                    unplaced.push((w.key, None));
                }
                continue;
            }
            let placement = decide::place(&mut cap, kind, w.pool);
            match placement {
                Placement::On(worker) => {
                    // Written together per worker and path, after the loop.
                    match placed
                        .iter_mut()
                        .find(|(p, fresh, _)| *p == worker && *fresh == new)
                    {
                        Some((_, _, keys)) => keys.push(w.key),
                        None => placed.push((worker, new, vec![w.key])),
                    }
                }
                _ if new => unplaced.push((w.key, Some(placement))),
                _ => {
                    let event = placement.event();
                    if tx
                        .apply(&w.key, event, None, placement.error(), now)
                        .await?
                    {
                        report.add(event, w.key.pk);
                    }
                }
            }
        }
        let keys: Vec<_> = unplaced.iter().map(|(k, _)| k.clone()).collect();
        let scheduled = tx.apply_alike(&keys, &[Event::Schedule], None, now).await?;
        for (key, placement) in unplaced {
            if !scheduled.contains(&key.pk) {
                continue;
            }
            report.add(Event::Schedule, key.pk);
            let Some(placement) = placement else {
                continue;
            };
            let event = placement.event();
            let key = TaskKey {
                state: TaskState::Scheduling,
                ..key
            };
            if tx.apply(&key, event, None, placement.error(), now).await? {
                report.add(event, key.pk);
            }
        }
        for (worker, new, keys) in placed {
            let path: &[Event] = if new {
                &[Event::Schedule, Event::Place]
            } else {
                &[Event::Place]
            };
            for pk in tx.apply_alike(&keys, path, Some(worker), now).await? {
                for e in path {
                    report.add(*e, pk);
                }
            }
        }
    }
    Ok(())
}

/// Tasks whose schedule windows are due: stopped when a window closed,
/// started when one opened, and given the time of their next look. A task
/// this pass moved already waits for the next pass (and is not placed
/// before then).
async fn windows(
    tx: &mut dyn TickTx,
    now: i64,
    n: i64,
    report: &mut TickReport,
) -> StoreResult<()> {
    for d in tx.due_windows(now, n).await? {
        if report.moved_tasks.contains(&d.key.pk) {
            continue;
        }
        let schedule = d.schedule.as_ref().and_then(|v| Schedule::parse(v).ok());
        let (event, due) = decide::window(schedule.as_ref(), d.key.state, d.held, now);
        if let Some(e) = event {
            if tx.apply(&d.key, e, None, None, now).await? {
                report.add(e, d.key.pk);
            }
        }
        tx.set_window_due(d.key.pk, due).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub interval: Duration,
    pub lease: Duration,
    pub tick: TickConfig,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    cfg: SchedulerConfig,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("cfg", &self.cfg).finish()
    }
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, cfg: SchedulerConfig) -> Scheduler {
        Scheduler { store, cfg }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Runs ticks until `stop` turns true (or its sender goes away); a tick
    /// in progress finishes first, so no transaction is cut short. Workers
    /// could not reach a server that was down, so their leases restart from
    /// now first.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let lease_ms = i64::try_from(self.cfg.lease.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = self.store.extend_leases(now_millis(), lease_ms).await {
                tracing::warn!(error = %e, "could not extend worker leases at start");
            }
            // A pass woken only by worker reports places and skips the
            // maintenance steps; at least one full pass runs per interval.
            let mut only_place = false;
            let mut last_full = Instant::now();
            let mut last_ok = Instant::now();
            while !*stop.borrow() {
                let started = Instant::now();
                // Passes that could not write (the database down or
                // read-only) or a process that stood still (frozen) kept
                // the workers from renewing their leases too: live workers
                // get a fresh lease, as at a start, before a pass could
                // expire them. Until that write goes through, no pass runs.
                let gap = started.duration_since(last_ok);
                if gap > self.cfg.lease / 3 {
                    match self.store.extend_leases(now_millis(), lease_ms).await {
                        Ok(()) => tracing::info!(
                            gap_ms = gap.as_millis() as u64,
                            "no pass went through for a while: worker leases restart from now"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not restart worker leases; no pass yet");
                            tokio::select! {
                                _ = tokio::time::sleep(self.cfg.interval) => {}
                                changed = stop.changed() => if changed.is_err() { break },
                            }
                            continue;
                        }
                    }
                }
                let full = !only_place || last_full.elapsed() >= self.cfg.interval;
                let result = if full {
                    last_full = started;
                    tick(&*self.store, now_millis(), &self.cfg.tick).await
                } else {
                    place(&*self.store, now_millis(), &self.cfg.tick).await
                };
                let m = crate::metrics::metrics();
                m.tick_seconds.observe(started.elapsed().as_secs_f64());
                let pause = match result {
                    Ok(r) => {
                        last_ok = Instant::now();
                        count_moves(&r);
                        if r.total() > 0 {
                            crate::store::write_health::recovered();
                            tracing::debug!(moved = ?r.moved, "scheduler tick");
                        }
                        let full = r
                            .moved
                            .iter()
                            .any(|(_, n)| *n >= self.cfg.tick.batch as u64);
                        decide::pause_after(full, started.elapsed(), self.cfg.interval)
                    }
                    Err(e) => {
                        m.tick_failures.inc();
                        if let StoreError::Db(d) = &e {
                            crate::store::write_health::note(crate::store::DbFault::of(d));
                        }
                        tracing::warn!(error = %e, "scheduler tick failed");
                        self.cfg.interval
                    }
                };
                // A wake-up cuts the pause short, but after a full pass not
                // below the time it took: its maintenance steps hold the
                // write lock at most about half the time, whatever the rate
                // of wake-ups. A placing pass answers the next report at
                // once: it is short, and each one only places what the
                // reports before it freed.
                let gap = if full {
                    started.elapsed().min(pause)
                } else {
                    Duration::ZERO
                };
                let woken = async {
                    tokio::time::sleep(gap).await;
                    wake::scheduler_woken().await;
                };
                only_place = tokio::select! {
                    _ = tokio::time::sleep(pause) => false,
                    _ = woken => !wake::full_wanted(),
                    changed = stop.changed() => if changed.is_err() { break } else { false },
                };
            }
            tracing::info!("scheduler stopped");
        })
    }
}
