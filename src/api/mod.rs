//! The HTTP edge: router, middleware (request ids, authentication, panics,
//! body limit), and the route table that `openapi.json` is checked against.

mod algorithm;
mod batch_task;
mod catalogue;
mod console;
pub mod error;
mod extract;
mod http_fault;
pub mod openapi;
pub mod server;
mod signed;
mod task;
mod token;
mod video;
pub mod worker;

use crate::domain::random_hex;
use crate::identity::{self, AuthError};
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use error::{ApiError, REQUEST_ID};
pub use extract::Authed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub token_ttl: Duration,
    /// Answer the batch-task list by SQL instead of the read model (for
    /// comparison and diagnosis; the default is the read model).
    pub list_from_db: bool,
    /// A worker silent this long loses its tasks.
    pub lease: Duration,
    /// Password checks and login throttling.
    pub logins: Arc<Logins>,
    /// The bearer token that opens `GET /metrics` on the API's own port
    /// (`None`: metrics only on the operator's metrics address, if any).
    pub metrics_token: Option<Arc<str>>,
    /// The master key and the cache that signed requests are checked with.
    pub access_keys: Arc<identity::access_key::AccessKeys>,
    /// When this process runs the scheduler: its pass settings, for the
    /// placing pass a worker's reports run when they free slots (`None`:
    /// reports only wake the scheduler, wherever it runs).
    pub placing: Option<crate::scheduler::TickConfig>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("token_ttl", &self.token_ttl)
            .field("list_from_db", &self.list_from_db)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state with the list answered from the read model and the default
    /// login limits.
    pub fn new(store: Arc<dyn Store>, token_ttl: Duration, lease: Duration) -> AppState {
        AppState {
            store,
            token_ttl,
            list_from_db: false,
            lease,
            logins: Arc::new(Logins::default()),
            metrics_token: None,
            access_keys: Default::default(),
            placing: None,
        }
    }
}

/// What guards the login route: a bounded pool of password checkers and
/// the guessing throttle.
#[derive(Debug)]
pub struct Logins {
    pub checker: identity::Checker,
    pub throttle: identity::throttle::Throttle,
}

/// Password checks in flight (running or waiting) before new logins are
/// refused with 503.
pub const LOGIN_QUEUE: usize = 64;

impl Default for Logins {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Logins {
            checker: identity::Checker::new(threads, LOGIN_QUEUE),
            throttle: Default::default(),
        }
    }
}

/// The router plus the list of (method, path) it serves, which the OpenAPI
/// test compares with the document so the two cannot drift.
#[derive(Debug)]
pub struct App {
    pub router: Router,
    pub routes: Vec<(Method, &'static str)>,
}

struct RouteTable {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl RouteTable {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::DELETE => MethodFilter::DELETE,
            _ => MethodFilter::GET,
        };
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push((method, path));
        self
    }
}

pub fn app(state: AppState) -> App {
    let t = RouteTable {
        router: Router::new(),
        routes: Vec::new(),
    }
    .add(Method::GET, "/healthz", healthz)
    .add(Method::GET, "/metrics", metrics_on_api_port)
    .add(Method::GET, "/readyz", readyz)
    .add(Method::GET, "/", console::root)
    .add(Method::GET, "/console/", console::index)
    .add(Method::GET, "/console/app.js", console::script)
    .add(Method::GET, "/console/app.css", console::style)
    .add(Method::GET, "/openapi.json", openapi::serve)
    .add(Method::POST, "/v3/auth/tokens", token::issue)
    .add(Method::DELETE, "/v3/auth/tokens", token::revoke)
    .add(
        Method::GET,
        "/v2/{project_id}/batch-tasks",
        batch_task::list_batch_tasks,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/batch-tasks",
        batch_task::create_batch_task,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/batch-tasks/{id}",
        batch_task::update_batch_task,
    )
    .add(
        Method::DELETE,
        "/v2/{project_id}/batch-tasks/{id}",
        task::delete_batch,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/batch-tasks/{id}/action/{command}",
        task::batch_action,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/services/{service_name}/tasks",
        task::create_task,
    )
    .add(Method::GET, "/v2/{project_id}/tasks", task::list_tasks)
    .add(
        Method::GET,
        "/v2/{project_id}/tasks/{task_id}",
        task::show_task,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/tasks/{task_id}",
        task::update_task,
    )
    .add(
        Method::DELETE,
        "/v2/{project_id}/tasks/{task_id}",
        task::delete_task,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/tasks/{task_id}/action/{command}",
        task::task_action,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/source",
        video::create_video_source,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/source/sources",
        video::list_video_sources,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/source/sources/{video_source_id}",
        video::show_video_source,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/source/{video_source_id}",
        video::update_video_source,
    )
    .add(
        Method::DELETE,
        "/v2/{project_id}/source/{video_source_id}",
        video::delete_video_source,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/video-group",
        video::create_video_group,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/video-group/groups",
        video::list_video_groups,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/video-group/{video_group_id}",
        video::show_video_group,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/video-group/{video_group_id}",
        video::update_video_group,
    )
    .add(
        Method::DELETE,
        "/v2/{project_id}/video-group/{video_group_id}",
        video::delete_video_group,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/algorithm/services/user",
        algorithm::list_services,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/algorithm/services/{service_id}",
        algorithm::show_service,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/algorithm/{alg_id}/deploy",
        algorithm::deploy_algorithm,
    )
    .add(
        Method::PUT,
        "/v2/{project_id}/algorithm/{alg_id}/deploy/stop",
        algorithm::stop_deploy_algorithm,
    )
    .add(
        Method::POST,
        "/v2/{project_id}/edge-pools",
        algorithm::create_edge_pool,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/edge-pools",
        algorithm::list_edge_pools,
    )
    .add(
        Method::GET,
        "/v2/{project_id}/edge-pools/{id}",
        algorithm::show_edge_pool,
    )
    .add(
        Method::DELETE,
        "/v2/{project_id}/edge-pools/{id}",
        algorithm::delete_edge_pool,
    )
    .add(Method::GET, "/v2/{project_id}/workers", worker::list)
    .add(Method::POST, "/worker/v1/register", worker::register)
    .add(Method::POST, "/worker/v1/sync", worker::sync)
    .add(Method::POST, "/worker/v1/report", worker::report)
    .add(Method::POST, "/worker/v1/reports", worker::reports);
    let _ = ROUTES.set(t.routes.iter().map(|(_, p)| *p).collect());
    App {
        router: with_edge(t.router, state),
        routes: t.routes,
    }
}

/// Fallbacks and the middleware every request passes, outermost last.
fn with_edge(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// Gives every request an id (in the `x-request-id` header, error bodies and
/// logs), runs it in a span that names its matched route, and logs its
/// outcome once: a failure with its cause (which only the log sees), and at
/// debug every request. Never logs headers: they hold tokens.
async fn request_context(req: Request, next: Next) -> Response {
    let id = next_request_id();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "-".to_owned(), |m| m.as_str().to_owned());
    // A debug span: at the default level it costs nothing on the list path.
    let span = tracing::debug_span!("request", request_id = %id, %method, %route);
    let start = Instant::now();
    let mut resp = REQUEST_ID
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let _in = span.enter();
    let status = resp.status().as_u16();
    if method != Method::GET && resp.status().is_success() {
        // A change went through: the write path works, and the scheduler
        // looks at once (a heartbeat changes no placement).
        crate::store::write_health::recovered();
        match route.as_str() {
            "/worker/v1/sync" => {}
            // A report can free a slot; nothing it does makes a
            // maintenance step due.
            "/worker/v1/report" => crate::scheduler::wake::placement(),
            // Places itself, or wakes the scheduler (see `worker::reports`).
            "/worker/v1/reports" => {}
            _ => crate::scheduler::wake::scheduler(),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    crate::metrics::metrics()
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            method: static_method(&method),
            route: static_route(&route),
            status,
        })
        .observe(elapsed);
    let elapsed_ms = elapsed * 1000.0;
    match resp.extensions_mut().remove::<error::ErrorCause>() {
        Some(cause) if resp.status().is_server_error() => {
            tracing::error!(request_id = %id, %method, %route, status, cause = %cause.0, "request failed")
        }
        Some(cause) => tracing::debug!(status, elapsed_ms, cause = %cause.0, "request refused"),
        None => tracing::debug!(status, elapsed_ms, "request"),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The routes the router serves, so metrics label requests with a fixed
/// set of route names.
static ROUTES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

fn static_route(route: &str) -> &'static str {
    ROUTES
        .get()
        .and_then(|r| r.iter().find(|p| **p == route).copied())
        .unwrap_or("-")
}

fn static_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Request ids: a random per-process prefix and a counter, unique without
/// a system call per request.
fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| random_hex(4).unwrap_or_else(|_| "00000000".into()));
    format!("{prefix}{:08x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = cause
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::Internal(format!("panic: {msg}")).into_response()
}

/// Every `/v2/...` request must carry a valid `X-Auth-Token` for the project
/// in its path, or be signed with an access key of a member of that project
/// (`Authorization: SDK-HMAC-SHA256 …`); checked before routing, validation
/// or anything else. With both, the token decides.
async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/worker/") {
        let credential = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        return match identity::authenticate_worker(&*st.store, credential.trim()).await {
            Ok(pk) => {
                req.extensions_mut().insert(worker::WorkerAuthed(pk));
                next.run(req).await
            }
            Err(AuthError::Store(e)) => ApiError::from(e).into_response(),
            Err(e) => ApiError::WorkerUnauthenticated(
                match e {
                    AuthError::Missing => "the worker credential is missing",
                    AuthError::Malformed => "the worker credential is malformed",
                    _ => "the worker credential is not valid",
                }
                .into(),
            )
            .into_response(),
        };
    }
    if path != "/v2" && !path.starts_with("/v2/") {
        return next.run(req).await;
    }
    // `None` only for `/v2` and `/v2/`, which name no project (and are 404).
    let path_project = path
        .split('/')
        .nth(2)
        .filter(|p| !(p.is_empty() && path.len() <= 4))
        .map(str::to_owned);
    let token = req
        .headers()
        .get("x-auth-token")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if token.is_none() && req.headers().contains_key(header::AUTHORIZATION) {
        return match signed::verify(&st, req, path_project.as_deref()).await {
            Ok(req) => next.run(req).await,
            Err(e) => e.into_response(),
        };
    }
    let result = match token {
        None => {
            return ApiError::Unauthenticated(
                "the request has neither X-Auth-Token nor an SDK-HMAC-SHA256 signature".into(),
            )
            .into_response()
        }
        Some(t) => identity::authenticate(&*st.store, t.trim()).await,
    };
    let project = match result {
        Ok(p) => p,
        Err(AuthError::Store(e)) => return ApiError::from(e).into_response(),
        Err(e) => return ApiError::Unauthenticated(e.to_string()).into_response(),
    };
    if path_project.is_some_and(|p| p != project.id) {
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Authed(project));
    next.run(req).await
}

/// `GET /metrics` on the API port: open only with the configured metrics
/// token (`Authorization: Bearer …`); without one configured, to nobody.
async fn metrics_on_api_port(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    use subtle::ConstantTimeEq;
    let Some(expected) = st.metrics_token.as_deref() else {
        return ApiError::Unauthenticated(
            "metrics are served on this port only with --metrics-token configured".into(),
        )
        .into_response();
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return ApiError::Unauthenticated(
            "GET /metrics needs the metrics token as a bearer token".into(),
        )
        .into_response();
    }
    metrics_reply(&st).await
}

/// The exposition, with the figures read at scrape time refreshed first.
pub async fn metrics_reply(st: &AppState) -> Response {
    let m = crate::metrics::metrics();
    let started = Instant::now();
    if let Ok(workers) = st.store.list_workers().await {
        let now = crate::domain::now_millis();
        let lost = workers.iter().filter(|w| !w.is_live(now)).count();
        let status = |s: &'static str| crate::metrics::WorkerLabels { status: s };
        m.workers.get_or_create(&status("lost")).set(lost as i64);
        m.workers
            .get_or_create(&status("live"))
            .set((workers.len() - lost) as i64);
    }
    if let Ok(counts) = st.store.count_tasks_by_state().await {
        for (state, n) in counts {
            m.tasks
                .get_or_create(&crate::metrics::StateLabels {
                    state: state.as_str(),
                })
                .set(n);
        }
    }
    let (open, idle) = st.store.pool_connections();
    let pool = |s: &'static str| crate::metrics::PoolLabels { state: s };
    m.db_pool.get_or_create(&pool("idle")).set(idle as i64);
    m.db_pool
        .get_or_create(&pool("in_use"))
        .set(i64::from(open).saturating_sub(idle as i64));
    m.scrape_seconds.set(started.elapsed().as_secs_f64());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database before answering 503: a load
/// balancer wants a prompt answer during an outage, not the pool's wait.
const READY_WAIT: Duration = Duration::from_secs(1);

/// After a write was refused (no space, or a read-only database), how long
/// `/readyz` reports it before it tries a probe write of its own (writes
/// that go through clear it sooner).
const REFUSED_PROBE_AFTER_MS: i64 = 5_000;

/// Ready when the database answers and the last write was not refused for
/// lack of space or a read-only database (or a probe write since went
/// through).
async fn readyz(State(st): State<AppState>) -> Response {
    use crate::store::{write_health, StoreError};
    let check = async {
        st.store.ping().await?;
        if let Some((_, at)) = write_health::refused() {
            if crate::domain::now_millis() - at < REFUSED_PROBE_AFTER_MS {
                return Err(StoreError::Internal("the last write was refused".into()));
            }
            if let Err(e) = st.store.probe_write().await {
                if let StoreError::Db(d) = &e {
                    write_health::note(crate::store::DbFault::of(d));
                }
                return Err(e);
            }
            write_health::recovered();
        }
        Ok::<(), StoreError>(())
    };
    let outcome = match tokio::time::timeout(READY_WAIT, check).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the database within {READY_WAIT:?}")),
    };
    match outcome {
        Ok(()) => {
            Json(serde_json::json!({"status": "ok", "backend": st.store.backend()})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let why = match write_health::refused() {
                Some((crate::store::DbFault::ReadOnly, _)) => {
                    "not ready: the database is read-only"
                }
                Some(_) => "not ready: the last write found the database's storage full",
                None => "not ready: the database does not answer",
            };
            ApiError::Overloaded(why.into()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_error_body_and_request_id() {
        let dir = std::env::temp_dir().join(format!("tc-panic-{}", random_hex(8).unwrap()));
        let store = crate::store::open(dir.to_str().unwrap()).await.unwrap();
        let state = AppState::new(store, Duration::from_secs(60), Duration::from_secs(15));
        let router = Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                let v: Vec<u8> = Vec::new();
                #[allow(clippy::indexing_slicing)]
                let _ = v[1];
                "unreachable"
            }),
        );
        let resp = with_edge(router, state)
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let rid = resp
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error_code"], "VIAS.00010006");
        assert_eq!(v["error_msg"], "Internal error.");
        assert_eq!(v["detail"], format!("request id {rid}"));
        assert!(
            !body.windows(5).any(|w| w == b"index"),
            "no internals in the body"
        );
        let _ = std::fs::remove_file(&dir);
    }
}
