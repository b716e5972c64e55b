//! A small HTTP/1.1 JSON client for the worker routes, on the hyper the
//! server already links (plain `http://`; put a TLS proxy in front for
//! anything else). Given several servers (the `serve` processes sharing one
//! PostgreSQL database), it talks to one and moves on to the next when that
//! one cannot be reached or does not answer in time.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How long an idle connection is kept for the next request: well under
/// the server's idle close (its header timeout, 10 s by default).
const IDLE_KEEP: Duration = Duration::from_secs(4);
/// Idle connections kept at most (the sync's and the reports').
const MAX_IDLE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error("server answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("bad reply: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server refused the credential: retrying cannot help.
    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED)
    }
}

/// Reuses its connections (HTTP/1.1 keep-alive): a worker's reports and
/// syncs follow each other closely, and a new connection for each cost a
/// connect and an accept on both sides every time.
#[derive(Clone)]
pub struct Client {
    /// Each server's `host:port`, in the order given.
    servers: Arc<Vec<String>>,
    /// The server requests go to now (an index into `servers`).
    current: Arc<AtomicUsize>,
    credential: String,
    /// Idle connections, the server each goes to, and when each went idle,
    /// newest last.
    idle: Arc<Mutex<Vec<(Instant, usize, Conn)>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `server`: one `http://HOST:PORT`, or several separated by commas.
    pub fn new(server: &str, credential: &str) -> Result<Client, String> {
        let mut servers = Vec::new();
        for one in server.split(',').map(str::trim) {
            let rest = one
                .strip_prefix("http://")
                .ok_or_else(|| format!("server must be an http:// URL, got {one:?}"))?;
            let authority = rest.trim_end_matches('/').to_owned();
            // HOST:PORT and nothing else (no path, query, user or bad port):
            // a mistake here is refused at start, not retried as an outage.
            let port_ok = authority
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_some_and(|p| p > 0);
            if !port_ok || authority.contains(['/', '?', '#', '@', ' ']) {
                return Err(format!("server must be http://HOST:PORT, got {one:?}"));
            }
            if !servers.contains(&authority) {
                servers.push(authority);
            }
        }
        Ok(Client {
            servers: Arc::new(servers),
            current: Arc::default(),
            credential: credential.to_owned(),
            idle: Arc::default(),
        })
    }

    /// The server requests go to now, `host:port`.
    pub fn server(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// POSTs `body` as JSON to `path`; the whole exchange must finish within
    /// `timeout`. A server that cannot be reached or does not answer in
    /// time is left for the next one, which the following request tries.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let at = self.current.load(Ordering::Relaxed);
        let result = tokio::time::timeout(timeout, self.exchange(path, body))
            .await
            .map_err(|_| ClientError::Unreachable("timed out".into()))
            .and_then(|r| r);
        if matches!(result, Err(ClientError::Unreachable(_))) && self.servers.len() > 1 {
            // Unless another request moved on already.
            let next = (at + 1) % self.servers.len();
            if self
                .current
                .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(
                    from = %self.servers[at % self.servers.len()],
                    to = %self.servers[next],
                    "server unreachable; trying the next one"
                );
            }
        }
        result
    }

    /// An idle connection to the current server still open, if one was kept.
    fn take_idle(&self, server: usize) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Newest first: when it is too old, the older ones are too.
        while let Some((since, to, conn)) = idle.pop() {
            if since.elapsed() < IDLE_KEEP && to == server && conn.is_ready() {
                return Some(conn);
            }
        }
        None
    }

    fn keep_idle(&self, server: usize, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((Instant::now(), server, conn));
    }

    async fn connect(&self, server: usize) -> Result<Conn, ClientError> {
        let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable(e.to_string());
        let stream = tokio::net::TcpStream::connect(&self.servers[server])
            .await
            .map_err(|e| unreachable(&e))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn exchange<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable(e.to_string());
        let server = self.current.load(Ordering::Relaxed) % self.servers.len();
        let json =
            Bytes::from(serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?);
        let request = || {
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("host", &self.servers[server])
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", self.credential))
                .body(Full::new(json.clone()))
                .map_err(|e| ClientError::Decode(e.to_string()))
        };
        // A kept connection the server closed meanwhile fails before any
        // answer: the request goes again on a new one. (Every worker route
        // takes a repeat: a repeated report is refused as already applied.)
        let kept = self.take_idle(server);
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(c) => c,
            None => self.connect(server).await?,
        };
        let resp = match sender.send_request(request()?).await {
            Ok(resp) => resp,
            Err(_) if reused => {
                sender = self.connect(server).await?;
                sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| unreachable(&e))?
            }
            Err(e) => return Err(unreachable(&e)),
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        // The whole answer read: the connection is free for the next request.
        self.keep_idle(server, sender);
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::server::{serve, Limits};
    use axum::extract::ConnectInfo;
    use axum::routing::post;
    use axum::{Json, Router};
    use std::net::SocketAddr;

    /// A server whose one route answers with the port the request came
    /// from: one port per connection. It closes a connection left idle for
    /// `idle`.
    async fn server(idle: Duration) -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/port",
            post(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                Json(serde_json::json!({ "port": peer.port() }))
            }),
        );
        let limits = Limits {
            header_timeout: idle,
            ..Limits::default()
        };
        tokio::spawn(serve(listener, router, limits, std::future::pending()));
        Client::new(&format!("http://{addr}"), "secret").unwrap()
    }

    async fn port(c: &Client) -> u64 {
        let v: serde_json::Value = c
            .post("/port", &serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap();
        v["port"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn requests_in_a_row_share_one_connection() {
        let c = server(Duration::from_secs(10)).await;
        let first = port(&c).await;
        for _ in 0..3 {
            assert_eq!(port(&c).await, first);
        }
        // Two at once need two connections; both are kept after.
        let (a, b) = tokio::join!(port(&c), port(&c));
        assert_ne!(a, b);
        assert!([a, b].contains(&first));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_left_for_the_next() {
        let live = server(Duration::from_secs(10)).await;
        // A port nothing listens on, then the live server.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let c = Client::new(
            &format!("http://{dead_addr}, http://{}", live.server()),
            "secret",
        )
        .unwrap();
        assert_eq!(c.server(), dead_addr.to_string());
        let first: Result<serde_json::Value, _> = c
            .post("/port", &serde_json::json!({}), Duration::from_secs(5))
            .await;
        assert!(
            matches!(first, Err(ClientError::Unreachable(_))),
            "{first:?}"
        );
        assert_eq!(
            c.server(),
            live.server(),
            "the next request goes to the next server"
        );
        port(&c).await;
        // An error answer is an answer: it stays.
        let refused: Result<serde_json::Value, _> = c
            .post("/nowhere", &serde_json::json!({}), Duration::from_secs(5))
            .await;
        assert!(
            matches!(refused, Err(ClientError::Status { .. })),
            "{refused:?}"
        );
        assert_eq!(c.server(), live.server());
        assert!(Client::new("http://a:1,ftp://b:2", "s").is_err());
        for bad in [
            "http://a",
            "http://a:0",
            "http://a:99999",
            "http://a:1?x",
            "http://u@a:1",
            "http://:1",
            "http://a:1/p",
        ] {
            assert!(Client::new(bad, "s").is_err(), "{bad}");
        }
        assert!(Client::new("http://[::1]:8080,http://host.example:80/", "s").is_ok());
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let c = server(Duration::from_millis(200)).await;
        let first = port(&c).await;
        // The server closes the idle connection; the next request still
        // gets its answer, on a new one.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let second = port(&c).await;
        assert_ne!(second, first);
        assert_eq!(port(&c).await, second);
    }
}
