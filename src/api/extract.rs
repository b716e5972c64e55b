//! Extractors that turn every rejection into the contract's error body:
//! the authenticated project, JSON bodies and path parameters.

use super::error::ApiError;
use crate::store::Project;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The project the request's token grants; set by the auth middleware.
#[derive(Debug, Clone)]
pub struct Authed(pub Project);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authed>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated("X-Auth-Token is missing".into()))
    }
}

/// A JSON body. Wrong types, missing fields and fields given twice are 400s
/// naming the field; a body over the limit is 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body the client may leave out (the SDK sends UpdateVideoGroup
/// without one when no field is set): `None` for an empty body.
#[derive(Debug)]
pub(super) struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else if is_timeout(&e) {
            ApiError::RequestTimeout("the request body stalled past the body timeout".into())
        } else {
            ApiError::Invalid {
                param: None,
                detail: format!("the request body could not be read: {e}"),
            }
        }
    })
}

/// Whether a body error comes from the body read timeout.
pub(super) fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Parses a request body that the contract says is a JSON object; serde
/// would otherwise also fill a struct from a JSON array, by position.
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::Invalid {
            param: None,
            detail: "the request body must be a JSON object".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // A segment serde could not name (the body ended inside an object,
        // say) is `?`: the path stops before it.
        let path = e.path().to_string();
        let path = match path.split('.').position(|seg| seg == "?") {
            Some(0) => ".".to_owned(),
            Some(at) => path.split('.').take(at).collect::<Vec<_>>().join("."),
            None => path,
        };
        let inner = e.into_inner();
        let msg = plain_json_error(&inner.to_string());
        // serde names the field for missing and duplicate fields in the
        // message, at the parent's path; otherwise the path names it.
        let named = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field") || msg.starts_with("duplicate field"));
        let param = match named {
            Some(f) if path == "." => f.to_owned(),
            Some(f) => format!("{path}.{f}"),
            None if path == "." => String::new(),
            None => path,
        };
        let detail = if param.is_empty() {
            format!("invalid JSON body: {msg}")
        } else {
            format!("{param}: {msg}")
        };
        ApiError::Invalid {
            param: (!param.is_empty()).then_some(param),
            detail,
        }
    })?;
    de.end().map_err(|e| ApiError::Invalid {
        param: None,
        detail: format!("invalid JSON body: {e}"),
    })?;
    Ok(value)
}

/// serde's message in JSON's words: `array` and `object` for its
/// `sequence` and `map`, and no Rust type names (`expected struct
/// TaskSchedule with 5 elements` is `expected an object`).
fn plain_json_error(msg: &str) -> String {
    let msg = msg
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: object");
    match msg.find("expected struct ") {
        Some(at) => {
            let tail = msg[at..].find(" at line ").map_or("", |i| &msg[at + i..]);
            // An array where an object goes: serde tried it by position.
            let head = if msg.starts_with("invalid length") {
                "invalid type: array, "
            } else {
                &msg[..at]
            };
            format!("{head}expected an object{tail}")
        }
        None => msg,
    }
}

/// One path parameter as a string.
pub(super) struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Invalid {
                param: None,
                detail: format!("invalid path: {e}"),
            })?;
        let (name, id) = params
            .into_iter()
            .rfind(|(k, _)| k != "project_id")
            .ok_or_else(|| ApiError::Internal("route has no id parameter".into()))?;
        // Every id has the id pattern: anything else names nothing, and must
        // not reach the database (PostgreSQL refuses a NUL in text).
        crate::domain::field::check_id(&name, &id).map_err(ApiError::invalid)?;
        Ok(ApiPath(id))
    }
}

/// The client's address, when the request came over a socket (the server
/// loop records it; requests built in tests have none).
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `…/{task_id}/action/{command}` (a task) or `…/{id}/action/{command}`
/// (a batch, as VIAS names it): the object and the event `start` or `stop`
/// (any case) asks for.
#[derive(Debug)]
pub(super) struct ActionPath {
    pub id: String,
    pub event: crate::domain::transition::Event,
}

impl<S: Send + Sync> FromRequestParts<S> for ActionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (name, id) = params
            .iter()
            .find(|(n, _)| n != "project_id" && n != "command")
            .cloned()
            .unwrap_or_default();
        crate::domain::field::check_id(&name, &id).map_err(ApiError::invalid)?;
        let command = get("command").unwrap_or_default();
        let event = if command.eq_ignore_ascii_case("start") {
            crate::domain::transition::Event::Start
        } else if command.eq_ignore_ascii_case("stop") {
            crate::domain::transition::Event::Stop
        } else {
            return Err(ApiError::Invalid {
                param: Some("command".into()),
                detail: "command must be start or stop".into(),
            });
        };
        Ok(ActionPath { id, event })
    }
}

/// `/services/{service_name}/tasks`: a service name as VIAS has them
/// (CJK characters arrive percent-encoded and are decoded).
#[derive(Debug)]
pub(super) struct ServicePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let name = params
            .into_iter()
            .find(|(n, _)| n == "service_name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        crate::domain::field::check_service_ref("service_name", &name)
            .map_err(ApiError::invalid)?;
        Ok(ServicePath(name))
    }
}

async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, ApiError> {
    let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::Invalid {
            param: None,
            detail: format!("invalid path: {e}"),
        })?;
    Ok(params)
}
