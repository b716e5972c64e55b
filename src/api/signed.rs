//! Requests signed with an access key (`Authorization: SDK-HMAC-SHA256 …`),
//! as Huawei Cloud's SDKs sign them. In order: the header parses and signs
//! `host` and `x-sdk-date`; the date is within 15 minutes of the server's
//! clock; the AK exists and is not revoked (all 401 before the body is
//! read); the body is read (413 past 1 MiB) and the signature checked over
//! method, raw path, raw query, the signed headers and the body (401); then
//! `X-Project-Id`, if sent, must name the path's project and the key's user
//! must be a member of it (403). The body goes back into the request for
//! the handler. Nothing here logs a header, a signature or a secret.

use super::error::ApiError;
use super::extract::is_timeout;
use super::{AppState, Authed, MAX_BODY_BYTES};
use crate::domain::now_millis;
use crate::identity::access_key::{AccessKeyError, MAX_SKEW_MS};
use crate::identity::signature::{self, Authorization, SignatureError, SignedRequest};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

fn refused(param: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::BadSignature {
        param,
        detail: detail.into(),
    }
}

/// A header's first value as UTF-8 (the SDKs send UTF-8 bytes as they are).
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .map(str::to_owned)
}

/// Checks a signed request; on success returns it, body restored and the
/// project in its extensions (none for `/v2` alone, which is 404 anyway).
pub(super) async fn verify(
    st: &AppState,
    req: Request,
    path_project: Option<&str>,
) -> Result<Request, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let auth = Authorization::parse(value).map_err(|e| refused("Authorization", e.to_string()))?;
    if !auth
        .signed_headers
        .iter()
        .any(|h| h == signature::DATE_HEADER)
    {
        return Err(refused(
            "Authorization",
            SignatureError::DateNotSigned.to_string(),
        ));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(refused(
            "Authorization",
            "the signed headers must include host",
        ));
    }
    let at = header_value(req.headers(), signature::DATE_HEADER)
        .and_then(|d| signature::parse_sdk_date(d.trim()))
        .ok_or_else(|| refused("X-Sdk-Date", SignatureError::BadDate.to_string()))?;
    if now_millis().abs_diff(at) > MAX_SKEW_MS.unsigned_abs() {
        return Err(refused(
            "X-Sdk-Date",
            "X-Sdk-Date is more than 15 minutes away from the server's clock",
        ));
    }
    let key = st
        .access_keys
        .resolve(&st.store, &auth.access_key)
        .await
        .map_err(|e| match e {
            AccessKeyError::Unknown | AccessKeyError::Revoked => {
                refused("Authorization", e.to_string())
            }
            AccessKeyError::Store(e) => ApiError::from(e),
            AccessKeyError::Key(e) => ApiError::Internal(e.to_string()),
        })?;
    let (mut parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    let header = |name: &str| header_value(&parts.headers, name);
    // A header these checks read must be readable: one that is present but
    // not UTF-8 would otherwise skip its check.
    let unreadable = |name: &str| parts.headers.contains_key(name) && header(name).is_none();
    if !bytes.is_empty() && unreadable(signature::CONTENT_HASH_HEADER) {
        return Err(refused(
            "X-Sdk-Content-Sha256",
            "X-Sdk-Content-Sha256 is not valid UTF-8",
        ));
    }
    if let Some(claimed) = header(signature::CONTENT_HASH_HEADER) {
        // The signature covers this header instead of the body, so it must
        // be the body's hash: otherwise a captured request could carry
        // another body. Unsigned payloads are refused for the same reason.
        let actual = crate::domain::hex(&Sha256::digest(&bytes));
        if !bytes.is_empty() && !claimed.trim().eq_ignore_ascii_case(&actual) {
            return Err(refused(
                "X-Sdk-Content-Sha256",
                "X-Sdk-Content-Sha256 must be the SHA-256 of the body (unsigned payloads are not accepted)",
            ));
        }
    }
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        body: &bytes,
    };
    signature::verify(&signed, &auth, &header, key.secret.as_slice())
        .map_err(|e| refused("Authorization", e.to_string()))?;
    if let Some(project_id) = path_project {
        if unreadable("x-project-id")
            || header("x-project-id").is_some_and(|p| p.trim() != project_id)
        {
            return Err(ApiError::ProjectHeaderMismatch);
        }
        let project = st
            .access_keys
            .project(&*st.store, &key, project_id)
            .await?
            .ok_or(ApiError::Forbidden)?;
        parts.extensions.insert(Authed(project));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The whole body, at most `MAX_BODY_BYTES` (413 beyond).
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = cur {
                if err.is::<http_body_util::LengthLimitError>() {
                    return ApiError::TooLarge;
                }
                cur = err.source();
            }
            if is_timeout(&e) {
                ApiError::RequestTimeout("the request body stalled past the body timeout".into())
            } else {
                ApiError::Invalid {
                    param: None,
                    detail: format!("the request body could not be read: {e}"),
                }
            }
        })
}
