//! Wake-ups inside one `serve`: the scheduler runs a pass as soon as
//! something that can change a placement happened (a write through the API:
//! a task created, started or stopped, a worker registering or reporting),
//! instead of waiting for its interval; a worker's waiting sync answers as
//! soon as a pass placed a task on it. Other `serve` processes sharing the
//! database still find the change on their next interval or sync step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

fn scheduler_signal() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Asks for a scheduler pass; wake-ups while a pass runs coalesce into one
/// more pass after it.
pub fn scheduler() {
    scheduler_signal().notify_one();
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

/// Wakes the waiting syncs of these workers (a pass placed tasks on them).
pub fn workers_placed(worker_pks: impl IntoIterator<Item = i64>) {
    let m = workers().lock().unwrap_or_else(|e| e.into_inner());
    for pk in worker_pks {
        if let Some(n) = m.get(&pk) {
            n.notify_waiters();
        }
    }
}
