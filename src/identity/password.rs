//! Password checks that cannot exhaust the machine. Each Argon2id check
//! needs `m_cost` KiB of working memory (19 MiB with the parameters we hash
//! with: OWASP's m=19 MiB, t=2, p=1). Run on the blocking pool, every
//! concurrent login allocated its own 19 MiB, and the allocator kept what
//! the threads had touched: 128 concurrent logins left 9.5 GiB resident.
//! Here a fixed set of checker threads (one per core) each owns one buffer,
//! allocated once and reused for every check, so memory is the same after
//! a flood as before it. Logins wait in a bounded queue; when it is full a
//! new one is refused at once instead of queueing without bound.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use std::sync::mpsc;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Hashes a new password with the default parameters (Argon2id, m=19 MiB,
/// t=2, p=1) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `password` against a PHC string using `blocks` as working memory
/// (grown if the hash asks for more). False for a wrong password and for a
/// hash that does not parse.
pub fn verify_with(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => Version::default(),
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..need])
        .is_err()
    {
        return false;
    }
    bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Checks `password` against `phc` with freshly allocated memory (for the
/// command line, which checks once).
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_with(password, phc, &mut Vec::new())
}

struct Job {
    password: String,
    hash: String,
    reply: oneshot::Sender<bool>,
    _slot: OwnedSemaphorePermit,
}

/// The login checker: `threads` dedicated threads, each with its own reused
/// Argon2 buffer, and room for `capacity` checks in flight (running or
/// queued).
#[derive(Clone)]
pub struct Checker {
    jobs: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("capacity", &self.capacity)
            .field("free", &self.slots.available_permits())
            .finish()
    }
}

/// The checker's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Busy;

impl Checker {
    pub fn new(threads: usize, capacity: usize) -> Checker {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    let mut blocks: Vec<Block> = Vec::new();
                    loop {
                        let job = {
                            let Ok(guard) = rx.lock() else { return };
                            match guard.recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            }
                        };
                        let ok = verify_with(&job.password, &job.hash, &mut blocks);
                        let _ = job.reply.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-check thread");
            }
        }
        Checker {
            jobs: tx,
            slots: Arc::new(Semaphore::new(capacity.max(1))),
            capacity: capacity.max(1),
        }
    }

    /// Checks a password, waiting for a free checker; `Err(Busy)` at once
    /// when `capacity` checks are already in flight.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Busy> {
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| Busy)?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                password,
                hash,
                reply,
                _slot: slot,
            })
            .map_err(|_| Busy)?;
        answer.await.map_err(|_| Busy)
    }
}

/// A real Argon2id hash of a random password, checked against when the
/// user name is unknown, so both paths cost the same.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut p = [0u8; 12];
        let _ = getrandom::getrandom(&mut p);
        hash_password(&crate::domain::hex(&p)).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_memory_checks_like_the_library() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let mut blocks = Vec::new();
        assert!(verify_with("s3cret", &h, &mut blocks));
        assert_eq!(blocks.len(), 19456, "one buffer of m_cost blocks");
        assert!(!verify_with("s3cret!", &h, &mut blocks));
        assert!(!verify_with("s3cret", "not a hash", &mut blocks));
        // A hash made by the library's own verifier path agrees.
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        // Other parameters (a cheaper hash from an import, say) work too.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let h2 = cheap.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_with("pw", &h2, &mut blocks));
        assert!(!verify_with("pW", &h2, &mut blocks));
        assert_eq!(blocks.len(), 19456, "the buffer is reused, not shrunk");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let h = hash_password("pw").unwrap();
        let checker = Checker::new(1, 2);
        let a = tokio::spawn({
            let c = checker.clone();
            let h = h.clone();
            async move { c.verify("pw".into(), h).await }
        });
        let b = tokio::spawn({
            let c = checker.clone();
            let h = h.clone();
            async move { c.verify("no".into(), h).await }
        });
        // Give both time to take their slots.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(checker.verify("pw".into(), h.clone()).await, Err(Busy));
        assert_eq!(a.await.unwrap(), Ok(true));
        assert_eq!(b.await.unwrap(), Ok(false));
        assert_eq!(
            checker.verify("pw".into(), h).await,
            Ok(true),
            "slots come back"
        );
    }
}
