//! Operational metrics in the Prometheus text format: requests by route and
//! status with latency, login refusals, open and refused connections,
//! scheduler ticks and moves, and (read at scrape time) tasks by state,
//! workers live and lost, and the database pool. One registry per process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LoginRefusal {
    WrongCredentials,
    Throttled,
    Busy,
}

impl LoginRefusal {
    fn as_str(self) -> &'static str {
        match self {
            LoginRefusal::WrongCredentials => "wrong_credentials",
            LoginRefusal::Throttled => "throttled",
            LoginRefusal::Busy => "busy",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub login_refusals: Family<LoginLabels, Counter>,
    pub open_connections: Gauge,
    pub refused_connections: Counter,
    pub tick_seconds: Histogram,
    pub tick_failures: Counter,
    pub moves: Family<EventLabels, Counter>,
    pub tasks: Family<StateLabels, Gauge>,
    pub workers: Family<WorkerLabels, Gauge>,
    pub db_pool: Family<PoolLabels, Gauge>,
    pub db_errors: Counter,
    pub scrape_seconds: F64Gauge,
}

/// Registers `m` under `name` and hands it back (metrics are handles).
fn reg<M>(r: &mut Registry, name: &str, help: &str, m: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    r.register(name, help, m.clone());
    m
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("taskcenter");
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        Metrics {
            requests: reg(
                &mut r,
                "http_request_duration_seconds",
                "HTTP requests by method, matched route and status, with their latency",
                requests,
            ),
            login_refusals: reg(
                &mut r,
                "login_refusals",
                "Logins refused, by reason",
                Family::default(),
            ),
            open_connections: reg(
                &mut r,
                "open_connections",
                "HTTP connections open now",
                Gauge::default(),
            ),
            refused_connections: reg(
                &mut r,
                "refused_connections",
                "HTTP connections refused at the connection cap",
                Counter::default(),
            ),
            tick_seconds: reg(
                &mut r,
                "scheduler_tick_duration_seconds",
                "Scheduler ticks and their duration",
                Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            ),
            tick_failures: reg(
                &mut r,
                "scheduler_tick_failures",
                "Scheduler ticks that failed",
                Counter::default(),
            ),
            moves: reg(
                &mut r,
                "scheduler_moves",
                "Task moves made by scheduler ticks, by event",
                Family::default(),
            ),
            tasks: reg(&mut r, "tasks", "Tasks by state", Family::default()),
            workers: reg(
                &mut r,
                "workers",
                "Workers, live or lost",
                Family::default(),
            ),
            db_pool: reg(
                &mut r,
                "db_pool_connections",
                "Database pool connections, idle or in use",
                Family::default(),
            ),
            db_errors: reg(
                &mut r,
                "db_errors",
                "Requests that failed on a database error",
                Counter::default(),
            ),
            scrape_seconds: reg(
                &mut r,
                "scrape_duration_seconds",
                "How long reading the scrape-time figures took",
                F64Gauge::default(),
            ),
            registry: r,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn login_refused(&self, reason: LoginRefusal) {
        self.login_refusals
            .get_or_create(&LoginLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
