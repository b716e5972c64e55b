//! The lifecycle engine inside `serve`: one bounded `tick(now)` at a time
//! (the store does the work in one transaction, serialized across every
//! process on the database), on an interval, sooner while there is a
//! backlog. Tests call `tick` with their own clock.

use crate::domain::now_millis;
use crate::store::lifecycle::{TickConfig, TickReport};
use crate::store::{Store, StoreResult};
use std::sync::Arc;
use std::time::Duration;

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

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, cfg: SchedulerConfig) -> Scheduler {
        Scheduler { store, cfg }
    }

    pub async fn tick(&self, now: i64) -> StoreResult<TickReport> {
        self.store.scheduler_tick(now, &self.cfg.tick).await
    }

    /// Runs ticks until the process ends. Workers could not reach a server
    /// that was down, so their leases restart from now first.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let lease_ms = i64::try_from(self.cfg.lease.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = self.store.grace_leases(now_millis(), lease_ms).await {
                tracing::warn!(error = %e, "could not extend worker leases at start");
            }
            loop {
                let started = std::time::Instant::now();
                let pause = match self.tick(now_millis()).await {
                    Ok(r) => {
                        if r.total() > 0 {
                            tracing::debug!(moved = ?r.moved, "scheduler tick");
                        }
                        // A full step means more is waiting: go again, but after
                        // a pause as long as the tick took, so the scheduler
                        // holds the database's write lock at most half the time
                        // and other writers (API calls, workers, one-shot
                        // commands) always get their turn.
                        if r.moved
                            .iter()
                            .any(|(_, n)| *n >= self.cfg.tick.batch as u64)
                        {
                            started
                                .elapsed()
                                .max(Duration::from_millis(10))
                                .min(self.cfg.interval)
                        } else {
                            self.cfg.interval
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler tick failed");
                        self.cfg.interval
                    }
                };
                tokio::time::sleep(pause).await;
            }
        })
    }
}
