//! `POST /v3/auth/tokens`: the IAM password flow, scoped to one project.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, PeerAddr};
use super::AppState;
use crate::domain::{now_millis, rfc3339_millis};
use crate::identity;
use crate::metrics::LoginRefusal;
use crate::store::ProjectRef;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub(super) struct TokenBody {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: Identity,
    scope: Scope,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Password,
}

#[derive(Deserialize)]
struct Password {
    user: User,
}

#[derive(Deserialize)]
struct User {
    name: String,
    password: String,
    // Accepted for compatibility; taskcenter has a single domain.
    #[allow(dead_code)]
    domain: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Scope {
    project: ScopeProject,
}

#[derive(Deserialize)]
struct ScopeProject {
    id: Option<String>,
    name: Option<String>,
}

fn denied() -> ApiError {
    ApiError::Unauthenticated("the user name, password or project is wrong".into())
}

pub(super) async fn issue(
    State(st): State<AppState>,
    PeerAddr(addr): PeerAddr,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<Response> {
    let a = body.auth;
    if !a.identity.methods.iter().any(|m| m == "password") {
        return Err(ApiError::Invalid {
            param: Some("auth.identity.methods".into()),
            detail: "auth.identity.methods must include \"password\"".into(),
        });
    }
    let project_ref = match (a.scope.project.id, a.scope.project.name) {
        (Some(id), _) => ProjectRef::Id(id),
        (None, Some(name)) => ProjectRef::Name(name),
        (None, None) => {
            return Err(ApiError::Invalid {
                param: Some("auth.scope.project".into()),
                detail: "auth.scope.project needs id or name".into(),
            })
        }
    };
    let u = a.identity.password.user;
    let wait = st.logins.throttle.wait_ms(&u.name, addr, now_millis());
    let m = crate::metrics::metrics();
    if wait > 0 {
        m.login_refused(LoginRefusal::Throttled);
        return Err(ApiError::TooManyRequests {
            detail: "too many failed logins; wait before trying again".into(),
            retry_after_secs: u64::try_from((wait + 999) / 1000).unwrap_or(1),
        });
    }
    // No user name holds a NUL (PostgreSQL cannot even compare one): such a
    // name is an unknown user, checked against the dummy hash like any other.
    let user = if u.name.contains('\0') {
        None
    } else {
        st.store.find_user(&u.name).await?
    };
    // Verify against a real hash even for an unknown user, so timing does not
    // tell which user names exist.
    let hash = user
        .as_ref()
        .map(|r| r.password_hash.clone())
        .unwrap_or_else(|| identity::dummy_hash().to_owned());
    let ok = st
        .logins
        .checker
        .verify(u.password, hash)
        .await
        .map_err(|_| {
            m.login_refused(LoginRefusal::Busy);
            ApiError::Overloaded("too many logins are being checked; retry shortly".into())
        })?;
    let Some(user) = user.filter(|_| ok) else {
        st.logins.throttle.failed(&u.name, addr, now_millis());
        m.login_refused(LoginRefusal::WrongCredentials);
        return Err(denied());
    };
    st.logins.throttle.succeeded(&user.name);
    let project = st
        .store
        .find_project(&project_ref)
        .await?
        .ok_or_else(denied)?;
    if !st.store.user_has_project(user.pk, project.pk).await? {
        return Err(denied());
    }
    let issued = identity::issue_token(&*st.store, project.pk, Some(user.pk), st.token_ttl).await?;
    let body = json!({"token": {
        "expires_at": rfc3339_millis(issued.expires_at),
        "issued_at": rfc3339_millis(issued.issued_at),
        "methods": ["password"],
        "project": {"id": project.id, "name": project.name},
        "user": {"id": user.pk.to_string(), "name": user.name},
    }});
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    let v = HeaderValue::from_str(&issued.token).map_err(|e| ApiError::Internal(e.to_string()))?;
    resp.headers_mut().insert("x-subject-token", v);
    Ok(resp)
}

/// `DELETE /v3/auth/tokens`, the IAM way: the caller's token in
/// `X-Auth-Token`, the token to revoke in `X-Subject-Token` (the same one
/// to log out). 204; every `serve` sharing the database refuses the revoked
/// token within a second.
pub(super) async fn revoke(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<StatusCode> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let caller = header("x-auth-token");
    if caller.is_empty() {
        return Err(ApiError::Unauthenticated("X-Auth-Token is missing".into()));
    }
    match identity::authenticate(&*st.store, &caller).await {
        Ok(_) => {}
        Err(identity::AuthError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::Unauthenticated(e.to_string())),
    }
    let subject = header("x-subject-token");
    if subject.is_empty() {
        return Err(ApiError::Invalid {
            param: Some("X-Subject-Token".into()),
            detail: "X-Subject-Token names the token to revoke".into(),
        });
    }
    match identity::revoke_token(&*st.store, &subject).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(identity::AuthError::Store(e)) => Err(e.into()),
        Err(_) => Err(ApiError::NotFound {
            param: Some("X-Subject-Token".into()),
            detail: "X-Subject-Token is not a valid token".into(),
        }),
    }
}
