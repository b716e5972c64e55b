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

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("taskcenter");
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by method, matched route and status, with their latency",
            requests.clone(),
        );
        let login_refusals = Family::<LoginLabels, Counter>::default();
        registry.register(
            "login_refusals",
            "Logins refused, by reason",
            login_refusals.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "HTTP connections open now",
            open_connections.clone(),
        );
        let refused_connections = Counter::default();
        registry.register(
            "refused_connections",
            "HTTP connections refused at the connection cap",
            refused_connections.clone(),
        );
        let tick_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "scheduler_tick_duration_seconds",
            "Scheduler ticks and their duration",
            tick_seconds.clone(),
        );
        let tick_failures = Counter::default();
        registry.register(
            "scheduler_tick_failures",
            "Scheduler ticks that failed",
            tick_failures.clone(),
        );
        let moves = Family::<EventLabels, Counter>::default();
        registry.register(
            "scheduler_moves",
            "Task moves made by scheduler ticks, by event",
            moves.clone(),
        );
        let tasks = Family::<StateLabels, Gauge>::default();
        registry.register("tasks", "Tasks by state", tasks.clone());
        let workers = Family::<WorkerLabels, Gauge>::default();
        registry.register("workers", "Workers, live or lost", workers.clone());
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, idle or in use",
            db_pool.clone(),
        );
        let db_errors = Counter::default();
        registry.register(
            "db_errors",
            "Requests that failed on a database error",
            db_errors.clone(),
        );
        let scrape_seconds = F64Gauge::default();
        registry.register(
            "scrape_duration_seconds",
            "How long reading the scrape-time figures took",
            scrape_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            login_refusals,
            open_connections,
            refused_connections,
            tick_seconds,
            tick_failures,
            moves,
            tasks,
            workers,
            db_pool,
            db_errors,
            scrape_seconds,
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
