//! Passwords (Argon2id) and tokens. A token is `tc1.<id>.<secret>`: the id
//! finds the stored row, the secret is kept only as a SHA-256 digest and
//! compared in constant time. Tokens live in the database, so they survive
//! restarts and work across every `serve` process sharing it.

use crate::domain::{now_millis, random_hex};
use crate::store::{NewToken, Project, Store, StoreError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub mod access_key;
pub mod password;
pub mod signature;
pub mod throttle;

const PREFIX: &str = "tc1.";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("X-Auth-Token is missing")]
    Missing,
    #[error("X-Auth-Token is malformed")]
    Malformed,
    #[error("X-Auth-Token is not valid")]
    Unknown,
    #[error("X-Auth-Token has expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use password::{dummy_hash, verify_password, Busy, Checker};

/// Hashes a new password (Argon2id, m=19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    password::hash_password(password).map_err(StoreError::Internal)
}

/// A password for generated accounts: 24 hex characters, 96 bits.
pub fn generate_password() -> Result<String, StoreError> {
    Ok(random_hex(12)?)
}

/// A new token; its `Debug` never shows the secret.
pub struct IssuedToken {
    pub token: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub async fn issue_token(
    store: &dyn Store,
    project_pk: i64,
    user_pk: Option<i64>,
    ttl: std::time::Duration,
) -> Result<IssuedToken, StoreError> {
    let id = random_hex(16)?;
    let secret = random_hex(32)?;
    let issued_at = now_millis();
    let expires_at = issued_at.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    store
        .create_token(&NewToken {
            id: id.clone(),
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            project_pk,
            user_pk,
            issued_at,
            expires_at,
        })
        .await?;
    Ok(IssuedToken {
        token: format!("{PREFIX}{id}.{secret}"),
        issued_at,
        expires_at,
    })
}

/// Worker credentials: `tcw1.<32 hex id>.<64 hex secret>`, the secret
/// stored as a SHA-256 like a token's. A worker credential is not a user
/// token: it opens only the worker routes, and never a project's API.
const WORKER_PREFIX: &str = "tcw1.";

pub struct IssuedWorker {
    pub id: String,
    pub credential: String,
}

impl std::fmt::Debug for IssuedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedWorker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub async fn create_worker(store: &dyn Store, name: &str) -> Result<IssuedWorker, StoreError> {
    let id = random_hex(16)?;
    let secret = random_hex(32)?;
    store
        .create_worker(&id, name, &Sha256::digest(secret.as_bytes()))
        .await?;
    Ok(IssuedWorker {
        credential: format!("{WORKER_PREFIX}{id}.{secret}"),
        id,
    })
}

/// The worker (its internal key) a credential belongs to.
pub async fn authenticate_worker(store: &dyn Store, credential: &str) -> Result<i64, AuthError> {
    if credential.is_empty() {
        return Err(AuthError::Missing);
    }
    let (id, secret) = split_with(WORKER_PREFIX, credential).ok_or(AuthError::Malformed)?;
    let w = store
        .find_worker_credential(id)
        .await?
        .ok_or(AuthError::Unknown)?;
    let digest = Sha256::digest(secret.as_bytes());
    if !bool::from(digest.as_slice().ct_eq(w.secret_hash.as_slice())) {
        return Err(AuthError::Unknown);
    }
    Ok(w.pk)
}

fn split(token: &str) -> Option<(&str, &str)> {
    split_with(PREFIX, token)
}

fn split_with<'a>(prefix: &str, token: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = token.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('.')?;
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (hex(id, 32) && hex(secret, 64)).then_some((id, secret))
}

/// The project a token grants, or why it grants none.
pub async fn authenticate(store: &dyn Store, token: &str) -> Result<Project, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let (id, secret) = split(token).ok_or(AuthError::Malformed)?;
    let row = store.find_token(id).await?.ok_or(AuthError::Unknown)?;
    let digest = Sha256::digest(secret.as_bytes());
    if !bool::from(digest.as_slice().ct_eq(row.secret_hash.as_slice())) {
        return Err(AuthError::Unknown);
    }
    if row.expires_at <= now_millis() {
        return Err(AuthError::Expired);
    }
    Ok(row.project)
}

/// Revokes `token` if it is one (its secret checked, expired or not).
/// `Unknown`/`Malformed` when it is not.
pub async fn revoke_token(store: &dyn Store, token: &str) -> Result<(), AuthError> {
    match authenticate(store, token).await {
        Ok(_) | Err(AuthError::Expired) => {}
        Err(e) => return Err(e),
    }
    let (id, _) = split(token).ok_or(AuthError::Malformed)?;
    match store.delete_token(id).await {
        Ok(()) => Ok(()),
        // Revoked meanwhile by someone else: the same outcome.
        Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret!", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn token_shape() {
        let good = format!("tc1.{}.{}", "a".repeat(32), "b".repeat(64));
        assert!(split(&good).is_some());
        assert!(split(&good.replace("tc1.", "tc2.")).is_none());
        assert!(split(&format!("tc1.{}.{}", "a".repeat(32), "B".repeat(64))).is_none());
        assert!(split("tc1.").is_none());
        assert!(split("").is_none());
    }
}
