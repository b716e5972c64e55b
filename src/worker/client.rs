//! A small HTTP/1.1 JSON client for the worker routes, on the hyper the
//! server already links (plain `http://`; put a TLS proxy in front for
//! anything else).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

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

#[derive(Clone)]
pub struct Client {
    /// `host:port`
    authority: String,
    credential: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(server: &str, credential: &str) -> Result<Client, String> {
        let rest = server
            .strip_prefix("http://")
            .ok_or_else(|| format!("server must be an http:// URL, got {server}"))?;
        let authority = rest.trim_end_matches('/').to_owned();
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("server must be http://HOST:PORT, got {server}"));
        }
        Ok(Client {
            authority,
            credential: credential.to_owned(),
        })
    }

    /// POSTs `body` as JSON to `path`; the whole exchange must finish within
    /// `timeout`.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        tokio::time::timeout(timeout, self.exchange(path, body))
            .await
            .map_err(|_| ClientError::Unreachable("timed out".into()))?
    }

    async fn exchange<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable(e.to_string());
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.credential))
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
