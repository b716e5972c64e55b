//! Wake-ups inside one `serve`: the scheduler runs a pass as soon as
//! something that can change a placement happened (a write through the API:
//! a task created, started or stopped, a worker registering or reporting),
//! instead of waiting for its interval; a worker's waiting sync answers as
//! soon as a committed move touched a task it holds or was given (a
//! placement, a stop, a freeze, an upgrade). Other `serve` processes sharing
//! the database still find the change on their next interval or sync step.

use crate::store::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};

fn scheduler_signal() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

fn full_wanted_flag() -> &'static std::sync::atomic::AtomicBool {
    static F: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    &F
}

/// Asks for a scheduler pass; wake-ups while a pass runs coalesce into one
/// more pass after it.
pub fn scheduler() {
    full_wanted_flag().store(true, std::sync::atomic::Ordering::SeqCst);
    scheduler_signal().notify_one();
}

/// Asks for a pass that only places (a worker's report may have freed a
/// slot): the maintenance steps, which no report makes due, wait for the
/// next full pass.
pub fn placement() {
    scheduler_signal().notify_one();
}

/// Whether a full pass was asked for since the last call (and clears it).
pub fn full_wanted() -> bool {
    full_wanted_flag().swap(false, std::sync::atomic::Ordering::SeqCst)
}

/// Resolves at the next [`scheduler`] call (at once if one came since the
/// last wait).
pub async fn scheduler_woken() {
    scheduler_signal().notified().await;
}

fn workers() -> &'static Mutex<HashMap<i64, Arc<Notify>>> {
    static W: OnceLock<Mutex<HashMap<i64, Arc<Notify>>>> = OnceLock::new();
    W.get_or_init(Default::default)
}

/// What worker `worker_pk`'s waiting sync waits on.
pub fn worker(worker_pk: i64) -> Arc<Notify> {
    let mut m = workers().lock().unwrap_or_else(|e| e.into_inner());
    m.entry(worker_pk).or_default().clone()
}

/// Wakes the waiting syncs of these workers (tasks they hold or were given
/// moved).
pub fn workers_changed(worker_pks: impl IntoIterator<Item = i64>) {
    let m = workers().lock().unwrap_or_else(|e| e.into_inner());
    for pk in worker_pks {
        if let Some(n) = m.get(&pk) {
            n.notify_waiters();
        }
    }
}

/// How often [`watch_held`] looks for other processes' moves.
pub const WATCH_STEP: Duration = Duration::from_millis(200);

/// Until `stop`: every [`WATCH_STEP`], one lock-free read of what every
/// worker holds (`held_fingerprints`), waking the syncs of the workers
/// whose tasks changed since the last look. Moves made by this process
/// wake them at once already; this catches the moves of other `serve`
/// processes on the database, at one query per step however many workers
/// wait.
pub async fn watch_held(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let mut last: HashMap<i64, [i64; 3]> = HashMap::new();
    while !*stop.borrow() {
        match store.held_fingerprints().await {
            Ok(now) => {
                let now: HashMap<i64, [i64; 3]> = now.into_iter().collect();
                let changed: Vec<i64> = now
                    .iter()
                    .filter(|(w, f)| last.get(w) != Some(f))
                    .map(|(w, _)| *w)
                    .chain(last.keys().filter(|w| !now.contains_key(w)).copied())
                    .collect();
                workers_changed(changed);
                last = now;
            }
            Err(e) => tracing::warn!(error = %e, "held tasks watch failed"),
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(WATCH_STEP) => {}
        }
    }
}
