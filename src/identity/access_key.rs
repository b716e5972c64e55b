//! Access keys (AK/SK) for requests signed as Huawei's SDKs sign them. An
//! access key belongs to a user: the AK (20 uppercase letters and digits)
//! names it, the SK (40 letters and digits) keys the HMAC of each request
//! (`signature.rs`).
//!
//! HMAC verification needs the SK itself, so unlike a password or a token it
//! cannot be kept as a hash. It is sealed with XChaCha20-Poly1305 under a
//! 32-byte master key that is not in the database (`TASKCENTER_MASTER_KEY`,
//! or the file `taskcenter.key` in the working directory), with a random
//! 24-byte nonce per key and the AK as associated data (a sealed secret
//! copied onto another AK's row does not open). A database dump or backup
//! alone therefore reveals no usable secret.
//!
//! Verifying requests (`AccessKeys`) keeps unsealed secrets in memory for
//! at most a minute, and re-reads each key's row (revoked or not) at most
//! every half second, so a revocation takes effect within a second on every
//! process sharing the database while a busy client costs about one indexed
//! read per key per half second.

use crate::domain::{now_millis, random_string, RandomError};
use crate::store::{AccessKeyRow, Entity, NewAccessKey, Project, ProjectRef, Store, StoreError};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "TASKCENTER_MASTER_KEY";
/// The key file, in the working directory, used when the variable is unset.
pub const MASTER_KEY_FILE: &str = "taskcenter.key";

/// A signed request's `X-Sdk-Date` may be this far from the server's clock,
/// either way.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;
/// How long an unsealed secret stays in memory.
pub const SECRET_TTL: Duration = Duration::from_secs(60);
/// How long a key's row (revoked or not, its user's projects) is trusted
/// before it is read again.
pub const RECHECK: Duration = Duration::from_millis(500);
/// `last_used_at` is written at most this often per key.
pub const TOUCH_EVERY_MS: i64 = 60_000;
/// Cached keys at most; past this, expired entries go, then all.
const CACHE_MAX: usize = 10_000;

const AK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const AK_LEN: usize = 20;
pub const SK_LEN: usize = 40;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{MASTER_KEY_ENV} must be 32 bytes written as 64 hex digits or in base64")]
    BadEnv,
    #[error("{} must hold a 32-byte key written as 64 hex digits or in base64", .0.display())]
    BadFile(PathBuf),
    #[error(
        "no master key to unseal access keys: set {MASTER_KEY_ENV} or put the {MASTER_KEY_FILE} \
         that sealed them in the working directory"
    )]
    Missing,
    #[error("could not read or create {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "access key {ak} was sealed with master key {sealed_with}, but this process has {have}: \
         every process sharing the database needs the same master key"
    )]
    WrongKey {
        ak: String,
        sealed_with: String,
        have: String,
    },
    #[error("access key {0} could not be unsealed (its stored secret is damaged)")]
    Damaged(String),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// The key that seals secret keys at rest. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"taskcenter master key id\0");
        h.update(bytes);
        let digest = h.finalize();
        MasterKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
            id: crate::domain::hex(digest.get(..8).unwrap_or_default()),
        }
    }

    /// A key written as 64 hex digits or as base64 (standard alphabet,
    /// padded or not), surrounding whitespace ignored.
    pub fn parse(text: &str) -> Option<MasterKey> {
        let t = text.trim();
        let bytes: Zeroizing<Vec<u8>> = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
        {
            Zeroizing::new(
                (0..32)
                    .map(|i| {
                        t.get(i * 2..i * 2 + 2)
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()?,
            )
        } else {
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            Zeroizing::new(engine.decode(t).ok()?)
        };
        let arr: &[u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(MasterKey::from_bytes(arr))
    }

    /// A new random key.
    pub fn generate() -> Result<(MasterKey, Zeroizing<String>), KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::domain::random_bytes(&mut bytes[..])?;
        Ok((
            MasterKey::from_bytes(&bytes),
            Zeroizing::new(crate::domain::hex(&bytes[..])),
        ))
    }

    /// The process's master key: `TASKCENTER_MASTER_KEY` if set, else
    /// `taskcenter.key` in the working directory; `None` if neither exists
    /// and `create` is false. With `create`, a missing file is made (mode
    /// 0600, 32 random bytes as hex).
    pub fn load(create: bool) -> Result<Option<MasterKey>, KeyError> {
        let env = std::env::var(MASTER_KEY_ENV).ok().filter(|v| !v.is_empty());
        MasterKey::load_from(env.as_deref(), Path::new(MASTER_KEY_FILE), create)
    }

    pub fn load_from(
        env: Option<&str>,
        file: &Path,
        create: bool,
    ) -> Result<Option<MasterKey>, KeyError> {
        if let Some(v) = env {
            return MasterKey::parse(v).map(Some).ok_or(KeyError::BadEnv);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                return MasterKey::parse(&text)
                    .map(Some)
                    .ok_or_else(|| KeyError::BadFile(file.to_owned()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(KeyError::Io {
                    path: file.to_owned(),
                    source: e,
                })
            }
        }
        if !create {
            return Ok(None);
        }
        let (key, text) = MasterKey::generate()?;
        match write_new_private(file, &format!("{}\n", text.as_str())) {
            Ok(()) => Ok(Some(key)),
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                MasterKey::load_from(None, file, false)
            }
            Err(e) => Err(KeyError::Io {
                path: file.to_owned(),
                source: e,
            }),
        }
    }

    /// Names this key (a digest of it) in the database and in messages.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `nonce ‖ ciphertext ‖ tag`, with the AK as associated data.
    pub fn seal(&self, ak: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::domain::random_bytes(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: ak.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Damaged(ak.to_owned()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, ak: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Damaged(ak.to_owned()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: ak.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Damaged(ak.to_owned()))
    }
}

/// Creates `path` (which must not exist) with mode 0600 holding `text`,
/// atomically: it is written beside under a temporary name, then linked
/// into place, so no reader ever sees it half written.
fn write_new_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        path.file_name()
            .map_or_else(|| "key".into(), |n| n.to_string_lossy()),
        crate::domain::random_hex(8).map_err(std::io::Error::other)?
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// A new access key: the SK is shown once, here, and never again. `Debug`
/// shows only the AK.
pub struct IssuedAccessKey {
    pub access_key: String,
    pub secret_key: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAccessKey")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RandomError> for CreateError {
    fn from(e: RandomError) -> Self {
        CreateError::Key(e.into())
    }
}

/// Creates an access key for the user named `user_name`.
pub async fn create_access_key(
    store: &dyn Store,
    key: &MasterKey,
    user_name: &str,
) -> Result<IssuedAccessKey, CreateError> {
    let user = store
        .find_user(user_name)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::User, "user"))?;
    let access_key = random_string(AK_LEN, AK_ALPHABET)?;
    let secret_key = Zeroizing::new(random_string(SK_LEN, SK_ALPHABET)?);
    store
        .create_access_key(&NewAccessKey {
            secret_sealed: key.seal(&access_key, secret_key.as_bytes())?,
            sealed_with: key.id().to_owned(),
            id: access_key.clone(),
            user_pk: user.pk,
            created_at: now_millis(),
        })
        .await?;
    Ok(IssuedAccessKey {
        access_key,
        secret_key,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AccessKeyError {
    #[error("the access key is unknown")]
    Unknown,
    #[error("the access key has been revoked")]
    Revoked,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key that may sign requests: its user and its secret.
#[derive(Clone)]
pub struct ResolvedKey {
    pub id: String,
    pub user_pk: i64,
    pub secret: Arc<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for ResolvedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKey")
            .field("id", &self.id)
            .field("user_pk", &self.user_pk)
            .finish_non_exhaustive()
    }
}

struct Entry {
    pk: i64,
    user_pk: i64,
    secret: Arc<Zeroizing<Vec<u8>>>,
    unsealed_at: Instant,
    checked_at: Instant,
    /// The latest use recorded (or being recorded) in the database.
    touched_at: i64,
    /// Project id → the project, if the key's user is a member of it
    /// (`None`: not a member, or no such project); as of `checked_at`.
    projects: HashMap<String, Option<Project>>,
}

/// Resolves AKs for the authentication middleware: the master key (read
/// when first needed, never created by a server: a key made up now could
/// not open secrets sealed before) and the cache.
pub struct AccessKeys {
    master: RwLock<Option<MasterKey>>,
    cache: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeys").finish_non_exhaustive()
    }
}

impl Default for AccessKeys {
    /// The master key is looked for (environment, then key file) when a
    /// signed request first needs it.
    fn default() -> Self {
        AccessKeys::new(None)
    }
}

impl AccessKeys {
    pub fn new(master: Option<MasterKey>) -> AccessKeys {
        AccessKeys {
            master: RwLock::new(master),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn master(&self) -> Result<MasterKey, KeyError> {
        if let Some(k) = self.master.read().ok().and_then(|m| m.clone()) {
            return Ok(k);
        }
        let k = MasterKey::load(false)?.ok_or(KeyError::Missing)?;
        if let Ok(mut m) = self.master.write() {
            *m = Some(k.clone());
        }
        Ok(k)
    }

    /// The key named `ak`, if it exists and is not revoked.
    pub async fn resolve(
        &self,
        store: &Arc<dyn Store>,
        ak: &str,
    ) -> Result<ResolvedKey, AccessKeyError> {
        let now = Instant::now();
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(ak).map(|e| {
                (
                    now.saturating_duration_since(e.checked_at) < RECHECK,
                    now.saturating_duration_since(e.unsealed_at) < SECRET_TTL,
                    e.pk,
                    e.user_pk,
                    e.secret.clone(),
                )
            })
        });
        let resolved = match cached {
            Some((true, true, pk, user_pk, secret)) => {
                self.touch(store, ak, pk);
                return Ok(ResolvedKey {
                    id: ak.to_owned(),
                    user_pk,
                    secret,
                });
            }
            other => {
                let row = match store.find_access_key(ak).await? {
                    Some(r) if !r.revoked => r,
                    found => {
                        if let Ok(mut c) = self.cache.lock() {
                            c.remove(ak);
                        }
                        return Err(if found.is_some() {
                            AccessKeyError::Revoked
                        } else {
                            AccessKeyError::Unknown
                        });
                    }
                };
                let secret = match other {
                    Some((_, true, pk, user_pk, secret))
                        if pk == row.pk && user_pk == row.user_pk =>
                    {
                        Some(secret)
                    }
                    _ => None,
                };
                self.refresh(row, secret, now)?
            }
        };
        self.touch(store, ak, resolved.1);
        Ok(resolved.0)
    }

    /// Caches a freshly read row (unsealing its secret unless `secret` is
    /// still fresh); returns the key and its pk.
    fn refresh(
        &self,
        row: AccessKeyRow,
        secret: Option<Arc<Zeroizing<Vec<u8>>>>,
        now: Instant,
    ) -> Result<(ResolvedKey, i64), KeyError> {
        let reused = secret.is_some();
        let secret = match secret {
            Some(s) => s,
            None => {
                let master = self.master()?;
                if master.id() != row.sealed_with {
                    return Err(KeyError::WrongKey {
                        ak: row.id.clone(),
                        sealed_with: row.sealed_with.clone(),
                        have: master.id().to_owned(),
                    });
                }
                Arc::new(master.open(&row.id, &row.secret_sealed)?)
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_MAX && !c.contains_key(&row.id) {
                c.retain(|_, e| now.saturating_duration_since(e.unsealed_at) < SECRET_TTL);
                if c.len() >= CACHE_MAX {
                    c.clear();
                }
            }
            let recorded = row.last_used_at.unwrap_or(i64::MIN);
            match c.get_mut(&row.id) {
                Some(e) if reused => {
                    e.checked_at = now;
                    e.touched_at = e.touched_at.max(recorded);
                    e.projects.clear();
                }
                _ => {
                    c.insert(
                        row.id.clone(),
                        Entry {
                            pk: row.pk,
                            user_pk: row.user_pk,
                            secret: secret.clone(),
                            unsealed_at: now,
                            checked_at: now,
                            touched_at: recorded,
                            projects: HashMap::new(),
                        },
                    );
                }
            }
        }
        Ok((
            ResolvedKey {
                id: row.id,
                user_pk: row.user_pk,
                secret,
            },
            row.pk,
        ))
    }

    /// Records a use in the database if none was recorded within the last
    /// minute; the write runs beside the request, which never waits on it.
    fn touch(&self, store: &Arc<dyn Store>, ak: &str, pk: i64) {
        let now = now_millis();
        let due = self
            .cache
            .lock()
            .ok()
            .is_some_and(|mut c| match c.get_mut(ak) {
                Some(e) if now.saturating_sub(e.touched_at) >= TOUCH_EVERY_MS => {
                    e.touched_at = now;
                    true
                }
                _ => false,
            });
        if due {
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_access_key(pk, now, now - TOUCH_EVERY_MS).await {
                    tracing::warn!(error = %e, "could not record an access key's last use");
                }
            });
        }
    }

    /// The project `project_id` if the key's user is a member of it.
    pub async fn project(
        &self,
        store: &dyn Store,
        key: &ResolvedKey,
        project_id: &str,
    ) -> Result<Option<Project>, StoreError> {
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(&key.id)
                .and_then(|e| e.projects.get(project_id).cloned())
        });
        if let Some(p) = cached {
            return Ok(p);
        }
        let project = match store
            .find_project(&ProjectRef::Id(project_id.to_owned()))
            .await?
        {
            Some(p) if store.user_has_project(key.user_pk, p.pk).await? => Some(p),
            _ => None,
        };
        if let Ok(mut c) = self.cache.lock() {
            if let Some(e) = c.get_mut(&key.id) {
                if e.projects.len() < 1024 {
                    e.projects.insert(project_id.to_owned(), project.clone());
                }
            }
        }
        Ok(project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_seal_and_open_only_under_their_key_and_ak() {
        let (k, _) = MasterKey::generate().unwrap();
        let sealed = k.seal("AK1", b"secret").unwrap();
        assert_eq!(sealed.len(), 24 + 6 + 16);
        assert_eq!(k.open("AK1", &sealed).unwrap().as_slice(), b"secret");
        assert!(k.open("AK2", &sealed).is_err(), "the AK is bound in");
        let (other, _) = MasterKey::generate().unwrap();
        assert!(other.open("AK1", &sealed).is_err());
        assert_ne!(k.id(), other.id());
        let again = k.seal("AK1", b"secret").unwrap();
        assert_ne!(sealed, again, "a fresh nonce per seal");
        let mut bad = sealed.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(k.open("AK1", &bad).is_err());
        assert!(k.open("AK1", &sealed[..10]).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex_or_base64() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        let hex = crate::domain::hex(&bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let id = MasterKey::from_bytes(&bytes).id().to_owned();
        assert_eq!(MasterKey::parse(&hex).unwrap().id(), id);
        assert_eq!(MasterKey::parse(&hex.to_uppercase()).unwrap().id(), id);
        assert_eq!(MasterKey::parse(&format!(" {b64}\n")).unwrap().id(), id);
        assert_eq!(
            MasterKey::parse(b64.trim_end_matches('=')).unwrap().id(),
            id
        );
        for bad in ["", "00", &hex[..62], &format!("{hex}00"), "not base64!"] {
            assert!(MasterKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("tc-key-{}", crate::domain::random_hex(8).unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(MASTER_KEY_FILE);
        assert!(MasterKey::load_from(None, &file, false).unwrap().is_none());
        let made = MasterKey::load_from(None, &file, true).unwrap().unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = MasterKey::load_from(None, &file, true).unwrap().unwrap();
        assert_eq!(made.id(), read.id());
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.trim().len(), 64);
        // The variable wins over the file, and a bad one is an error.
        let env = "11".repeat(32);
        let from_env = MasterKey::load_from(Some(&env), &file, true)
            .unwrap()
            .unwrap();
        assert_ne!(from_env.id(), made.id());
        assert!(matches!(
            MasterKey::load_from(Some("short"), &file, true),
            Err(KeyError::BadEnv)
        ));
        std::fs::write(&file, "junk").unwrap();
        assert!(matches!(
            MasterKey::load_from(None, &file, true),
            Err(KeyError::BadFile(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_keys_have_the_sdk_shapes() {
        for _ in 0..50 {
            let ak = random_string(AK_LEN, AK_ALPHABET).unwrap();
            assert_eq!(ak.len(), 20);
            assert!(ak
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            let sk = random_string(SK_LEN, SK_ALPHABET).unwrap();
            assert_eq!(sk.len(), 40);
            assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
