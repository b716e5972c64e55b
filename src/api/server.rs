//! The HTTP server loop under the router: HTTP/1.1 on hyper with the limits a
//! public port needs. A request head must arrive within `header_timeout` of
//! the connection opening or of its previous response (hyper starts that
//! clock whenever it waits for a head, so it also closes idle keep-alive
//! connections and slowloris trickles); a request body within
//! `body_timeout`; and at most `max_connections` connections are open at
//! once, below the process's open-file limit. Past the cap a new connection
//! is answered at once with a 503 and the contract's error body, then
//! closed: a prompt refusal, never a hang.

use super::error::ApiError;
use super::http_fault::WithErrorBodies;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection limits of `serve`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// How long a graceful shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Raises the soft open-file limit to the hard one (where the system
/// allows), and returns the connection cap that fits under it: `wanted`, or
/// the limit less a reserve for the database pool, log files and the
/// refusals themselves.
pub fn fit_connection_cap(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const RESERVE: u64 = 128;
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => return wanted,
    };
    let room = usize::try_from(soft.saturating_sub(RESERVE)).unwrap_or(usize::MAX);
    wanted.min(room.max(1))
}

/// Set once a server starts draining; long polls answer at once from then on.
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn drain_signal() -> &'static tokio::sync::Notify {
    static N: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    N.get_or_init(tokio::sync::Notify::new)
}

/// Resolves when this process's server starts its graceful shutdown, so a
/// request that waits (a long poll) can answer instead of holding the drain.
pub(crate) async fn draining() {
    let n = drain_signal().notified();
    tokio::pin!(n);
    n.as_mut().enable();
    if DRAINING.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    n.await;
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (up to `limits.drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_cap_log: Option<Instant> = None;
    let mut refused_since_log = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused_since_log += 1;
            crate::metrics::metrics().refused_connections.inc();
            if last_cap_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = refused_since_log,
                    "connection cap reached; refusing new connections with 503"
                );
                last_cap_log = Some(Instant::now());
                refused_since_log = 0;
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let service =
            tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
                // A body that stalls longer than the timeout between two of its
                // frames fails to read; the extractors answer 408.
                let mut req = req.map(|b| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, b))
                });
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req)
            });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(WithErrorBodies::new(stream)),
                TowerToHyperService::new(service),
            );
        let conn = graceful.watch(conn);
        let open = &crate::metrics::metrics().open_connections;
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            crate::metrics::metrics().open_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    DRAINING.store(true, std::sync::atomic::Ordering::Release);
    drain_signal().notify_waiters();
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain timeout; stopping anyway");
    }
    Ok(())
}

/// Answers a connection over the cap with 503 and the error body, then
/// closes it; gives up after a second so refusals cannot pile up.
async fn refuse(mut stream: TcpStream) {
    let (_, body) = ApiError::Overloaded("the server has too many open connections".into()).body();
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        json.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&json).await?;
        stream.shutdown().await
    })
    .await;
}

/// The address a request came from, for throttling.
pub fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
