//! The one error type of the HTTP edge and its table to (status, error_code).
//! Every failure answers with the contract's six-field body; 5xx bodies carry
//! a generic message and the request id, the cause goes to the log once.

use crate::domain::FieldError;
use crate::store::{write_health, DbFault, Entity, StoreError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid parameter: {detail}")]
    Invalid {
        param: Option<String>,
        detail: String,
    },
    #[error("not found: {detail}")]
    NotFound {
        param: Option<String>,
        detail: String,
    },
    #[error("already exists: {detail}")]
    Exists {
        param: Option<String>,
        detail: String,
    },
    #[error("batch task name already exists")]
    BatchNameExists,
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A signed request refused: `param` names the header at fault.
    #[error("bad signature ({param}): {detail}")]
    BadSignature { param: &'static str, detail: String },
    #[error("worker unauthenticated: {0}")]
    WorkerUnauthenticated(String),
    #[error("forbidden")]
    Forbidden,
    /// A signed `X-Project-Id` naming another project than the path's.
    #[error("X-Project-Id names another project than the path")]
    ProjectHeaderMismatch,
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("body too large")]
    TooLarge,
    #[error("request timed out: {0}")]
    RequestTimeout(String),
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The database has no space left for the write.
    #[error("storage full: {0}")]
    StorageFull(String),
    #[error("too many requests: {detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// A request the HTTP layer could not read (answered by the server
    /// loop, before any route).
    #[error("unreadable request: {0:?}")]
    Unreadable(HttpFault),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the HTTP layer refused a request before routing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFault {
    /// A malformed request line or header, bytes that are not text, or
    /// conflicting framing (400).
    Malformed,
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge,
}

/// The contract's error body; all six fields are always present.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error_code: &'static str,
    pub error_msg: String,
    pub detail: String,
    pub params: Vec<String>,
    pub reason: String,
    pub advice: String,
}

impl ApiError {
    pub fn invalid(e: FieldError) -> Self {
        ApiError::Invalid {
            param: Some(e.param),
            detail: e.detail,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Invalid { .. } => (
                StatusCode::BAD_REQUEST,
                "VIAS.00010001",
                "Invalid parameter.",
                "Correct the parameter named in params and send the request again.",
            ),
            NotFound { .. } => (
                StatusCode::BAD_REQUEST,
                "VIAS.00010002",
                "The object does not exist.",
                "Check the id; objects are visible only inside their own project.",
            ),
            Exists { .. } => (
                StatusCode::BAD_REQUEST,
                "VIAS.00010003",
                "The object already exists.",
                "Use another id or name, or update the existing object.",
            ),
            BatchNameExists => (
                StatusCode::BAD_REQUEST,
                "VIAS.00010011",
                "A batch task with the same name already exists.",
                "Choose another batch task name.",
            ),
            NotAllowed(_) => (
                StatusCode::BAD_REQUEST,
                "VIAS.00010012",
                "The operation is not allowed in the current state.",
                "Wait for the object to reach a state that allows the operation.",
            ),
            Unauthenticated(_) | BadSignature { .. } => (
                StatusCode::UNAUTHORIZED,
                "VIAS.00010005",
                "Authentication failed.",
                "Send a token from POST /v3/auth/tokens in X-Auth-Token, or sign the request with \
                 an access key from `taskcenter access-key create` (SDK-HMAC-SHA256, as Huawei \
                 Cloud's SDKs sign).",
            ),
            WorkerUnauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "VIAS.00010005",
                "Authentication failed.",
                "Send the worker credential from `taskcenter workers add` as Authorization: Bearer tcw1.…",
            ),
            Forbidden | ProjectHeaderMismatch => (
                StatusCode::FORBIDDEN,
                "VIAS.00010005",
                "Authorization failed.",
                "Use a token scoped to the project in the path, or an access key of a user who is \
                 a member of that project.",
            ),
            NoRoute => (
                StatusCode::NOT_FOUND,
                "VIAS.00010002",
                "The requested route does not exist.",
                "Check the method and path against GET /openapi.json.",
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "VIAS.00010001",
                "The method is not allowed on this route.",
                "Check the method against GET /openapi.json.",
            ),
            TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "VIAS.00010001",
                "The request body is too large.",
                "Send a body of at most 1 MiB.",
            ),
            RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "VIAS.TC.TIMEOUT",
                "The request was not received in time.",
                "Send the whole request without pausing; the server closes stalled requests.",
            ),
            Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "VIAS.TC.UNAVAILABLE",
                "The service is temporarily unavailable.",
                "Retry after the time in Retry-After, with backoff.",
            ),
            StorageFull(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "VIAS.TC.STORAGE_FULL",
                "The service has no storage space left for this change.",
                "Nothing of this request was stored. Retry once the operator has freed space.",
            ),
            TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "VIAS.TC.TOO_MANY_REQUESTS",
                "Too many attempts.",
                "Wait for the time in Retry-After before trying again.",
            ),
            Unreadable(HttpFault::Malformed) => (
                StatusCode::BAD_REQUEST,
                "VIAS.TC.BAD_REQUEST",
                "The request is not well-formed HTTP.",
                "Send a valid HTTP/1.1 request line and ASCII header lines, with one of Content-Length or Transfer-Encoding.",
            ),
            Unreadable(HttpFault::UriTooLong) => (
                StatusCode::URI_TOO_LONG,
                "VIAS.TC.URI_TOO_LONG",
                "The request URI is too long.",
                "Shorten the query: send fewer filter values per request.",
            ),
            Unreadable(HttpFault::HeadersTooLarge) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "VIAS.TC.HEADERS_TOO_LARGE",
                "The request headers are too large.",
                "Send fewer or shorter headers.",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "VIAS.00010006",
                "Internal error.",
                "Try again later; if it persists, report the request id to the operator.",
            ),
        }
    }

    pub fn body(&self) -> (StatusCode, ErrorBody) {
        let (status, code, msg, advice) = self.parts();
        let (detail, params, reason) = match self {
            ApiError::Invalid { param, detail }
            | ApiError::NotFound { param, detail }
            | ApiError::Exists { param, detail } => (
                detail.clone(),
                param.iter().cloned().collect(),
                detail.clone(),
            ),
            ApiError::BatchNameExists => (
                "a batch task with this name already exists in the project".into(),
                vec!["name".into()],
                "batch task names are unique in a project".into(),
            ),
            ApiError::NotAllowed(d)
            | ApiError::RequestTimeout(d)
            | ApiError::Overloaded(d)
            | ApiError::StorageFull(d) => (d.clone(), vec![], d.clone()),
            ApiError::TooManyRequests { detail, .. } => (detail.clone(), vec![], detail.clone()),
            ApiError::Unauthenticated(d) => (d.clone(), vec!["X-Auth-Token".into()], d.clone()),
            ApiError::BadSignature { param, detail } => {
                (detail.clone(), vec![(*param).to_owned()], detail.clone())
            }
            ApiError::WorkerUnauthenticated(d) => {
                (d.clone(), vec!["Authorization".into()], d.clone())
            }
            ApiError::Forbidden => (
                "the credentials do not grant access to this project".into(),
                vec!["project_id".into()],
                "the token is scoped to another project, or the access key's user is not a member of it"
                    .into(),
            ),
            ApiError::ProjectHeaderMismatch => (
                "X-Project-Id names another project than the path".into(),
                vec!["X-Project-Id".into()],
                "the signed X-Project-Id header must name the project in the path".into(),
            ),
            ApiError::NoRoute => (
                "no route matches this path".into(),
                vec![],
                "unknown path".into(),
            ),
            ApiError::MethodNotAllowed => (
                "this route does not accept the method".into(),
                vec![],
                "method not allowed".into(),
            ),
            ApiError::TooLarge => (
                "the request body exceeds 1 MiB".into(),
                vec![],
                "body too large".into(),
            ),
            ApiError::Unreadable(_) => (
                "the server could not read the request".into(),
                vec![],
                "unreadable request".into(),
            ),
            ApiError::Internal(_) => (
                format!("request id {}", current_request_id()),
                vec![],
                "an internal error occurred".into(),
            ),
        };
        (
            status,
            ErrorBody {
                error_code: code,
                error_msg: msg.to_owned(),
                detail,
                params,
                reason,
                advice: advice.to_owned(),
            },
        )
    }
}

/// Why a request failed, carried in the response's extensions to the
/// request middleware, which logs it once (a 5xx body never shows it).
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let cause = ErrorCause(self.to_string());
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Overloaded(_) => Some(1),
            _ => None,
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp.extensions_mut().insert(cause);
        resp
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, param } => ApiError::NotFound {
                detail: format!("{what} does not exist"),
                param: Some(param),
            },
            StoreError::Conflict {
                what: Entity::BatchTask,
                param,
            } if param == "name" => ApiError::BatchNameExists,
            StoreError::Conflict { what, param } => ApiError::Exists {
                detail: format!("{what} with this {param} already exists"),
                param: Some(param),
            },
            StoreError::NotAllowed(d) => ApiError::NotAllowed(d),
            StoreError::Invalid(f) => ApiError::invalid(f),
            StoreError::Db(e) => {
                crate::metrics::metrics().db_errors.inc();
                let fault = DbFault::of(&e);
                write_health::note(fault);
                match fault {
                    DbFault::StorageFull => {
                        tracing::error!(error = %e, "a write failed: the database's storage is full");
                        ApiError::StorageFull("the database's storage is full".into())
                    }
                    DbFault::ReadOnly => {
                        tracing::error!(error = %e, "a write failed: the database is read-only");
                        ApiError::Overloaded(
                            "the database is read-only at the moment: nothing of this request was stored"
                                .into(),
                        )
                    }
                    DbFault::Unreachable => {
                        tracing::warn!(error = %e, "the database cannot be reached");
                        ApiError::Overloaded("the database cannot be reached at the moment".into())
                    }
                    DbFault::BadText => ApiError::Invalid {
                        param: None,
                        detail: "the request holds a character that cannot be stored (NUL)".into(),
                    },
                    // Races the catalogue lock does not cover (a batch's
                    // change against a group's removal, say): the same
                    // answers the checks give when the other request won
                    // before they looked.
                    DbFault::Duplicate => {
                        tracing::info!(error = %e, "a concurrent request created the object first");
                        ApiError::Exists {
                            detail: "the object was created by a concurrent request".into(),
                            param: None,
                        }
                    }
                    DbFault::Dangling => {
                        tracing::info!(error = %e, "a concurrent request changed an object this one names");
                        ApiError::NotAllowed(
                            "a concurrent request changed or removed an object this request names; \
                             read it again and retry"
                                .into(),
                        )
                    }
                    DbFault::Other => ApiError::Internal(e.to_string()),
                }
            }
            StoreError::Internal(e) => ApiError::Internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
