//! The `Store` trait: every read and write of taskcenter's data. One SQL
//! implementation (`SqlStore`, on `sqlx::Any`) serves both databases; what
//! differs between them is the small `Backend` contract that `sqlite` and
//! `postgres` implement. Nothing outside this module speaks SQL.

mod backend;
mod batch;
mod catalogue;
mod export;
mod identity;
mod import;
pub mod lifecycle;
mod model;
mod pool;
pub mod postgres;
pub mod read_model;
mod sql;
mod sql_store;
pub mod sqlite;
pub mod tick_tx;
mod traits;
mod video;

pub use model::*;

pub use traits::{
    BatchStore, CatalogueStore, DumpStore, IdentityStore, PoolStore, SchedulerStore, Store,
    TaskStore, VideoStore, WorkerStore,
};

/// The store's traits, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::traits::*;
}

pub use sql_store::SqlStore;

use crate::domain::dump::DumpRecord;
use crate::domain::{FieldError, TaskState};
use async_trait::async_trait;
use std::sync::Arc;

/// Cached token rows above this many are dropped wholesale and re-read.
pub(crate) const TOKEN_CACHE_MAX: usize = 100_000;
/// How long a cached token is trusted before its row is read again, so a
/// revocation reaches every process sharing the database within a second.
pub(crate) const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object; `param` is the field that named it.
    #[error("{what} not found")]
    NotFound { what: Entity, param: String },
    /// An object with the same `param` (id, name, …) exists already.
    #[error("{what} with this {param} already exists")]
    Conflict { what: Entity, param: String },
    /// The object's state does not allow the change.
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    pub fn conflict(what: Entity, param: &str) -> StoreError {
        StoreError::Conflict {
            what,
            param: param.to_owned(),
        }
    }

    pub fn not_found(what: Entity, param: &str) -> StoreError {
        StoreError::NotFound {
            what,
            param: param.to_owned(),
        }
    }
}

/// What a database failure means to the one who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// The disk (or the database's quota) is full: SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full` (53100). Nothing of the write was kept.
    StorageFull,
    /// The database takes no writes: SQLite's `SQLITE_READONLY` (a file or
    /// file system it may not write), PostgreSQL's
    /// `read_only_sql_transaction` (25006: a standby, or a database set
    /// read-only). Nothing of the write was kept; reads still work.
    ReadOnly,
    /// The database cannot be reached now: no connection within the pool's
    /// wait, the connection broke, or the server is shutting down or
    /// starting (PostgreSQL's classes 08 and 57P).
    Unreachable,
    /// Text the database cannot store: PostgreSQL refuses a NUL character
    /// in text (22021, 22P05). The client sent it.
    BadText,
    /// A unique key another transaction took between this one's check and
    /// its write: the object exists now.
    Duplicate,
    /// A reference to a row another transaction removed (or a removal of a
    /// row another transaction now refers to) between this one's check and
    /// its write.
    Dangling,
    Other,
}

impl DbFault {
    pub fn of(e: &sqlx::Error) -> DbFault {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbFault::Unreachable,
            sqlx::Error::Database(d) => {
                if d.is_unique_violation() {
                    DbFault::Duplicate
                } else if d.is_foreign_key_violation() {
                    DbFault::Dangling
                } else {
                    DbFault::of_code(&d.code().unwrap_or_default())
                }
            }
            _ => DbFault::Other,
        }
    }

    /// A database error's code: PostgreSQL's five-character SQLSTATE, or
    /// SQLite's (extended) result code in decimal, whose low byte is the
    /// primary code.
    pub fn of_code(code: &str) -> DbFault {
        let sqlite = sqlite_primary(code);
        if code == "53100" || sqlite == Some(13) {
            DbFault::StorageFull
        } else if code == "25006" || sqlite == Some(8) {
            DbFault::ReadOnly
        } else if code.starts_with("08") || code.starts_with("57P") {
            DbFault::Unreachable
        } else if code == "22021" || code == "22P05" {
            DbFault::BadText
        } else {
            DbFault::Other
        }
    }

    /// A fault that refuses every write until the operator acts, which
    /// `/readyz` reports until a write goes through again.
    pub fn refuses_writes(self) -> bool {
        matches!(self, DbFault::StorageFull | DbFault::ReadOnly)
    }
}

/// The write path's health as the last writes found it, for `/readyz`: the
/// time and kind of the last write refused for lack of space or because the
/// database is read-only, cleared by a write that went through (a
/// request's, or a probe `/readyz` makes).
pub mod write_health {
    use super::DbFault;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    /// Milliseconds since the epoch of the last refused write; 0 when the
    /// last write went through.
    static REFUSED_AT: AtomicI64 = AtomicI64::new(0);
    /// Whether that refusal was the database being read-only (else: full).
    static READ_ONLY: AtomicBool = AtomicBool::new(false);

    pub fn note(fault: DbFault) {
        if fault.refuses_writes() {
            READ_ONLY.store(fault == DbFault::ReadOnly, Ordering::Relaxed);
            REFUSED_AT.store(crate::domain::now_millis().max(1), Ordering::Relaxed);
        }
    }

    /// When the last write was refused, and why, if it was.
    pub fn refused() -> Option<(DbFault, i64)> {
        let at = REFUSED_AT.load(Ordering::Relaxed);
        (at != 0).then(|| {
            let fault = if READ_ONLY.load(Ordering::Relaxed) {
                DbFault::ReadOnly
            } else {
                DbFault::StorageFull
            };
            (fault, at)
        })
    }

    pub fn recovered() {
        if REFUSED_AT.load(Ordering::Relaxed) != 0 {
            REFUSED_AT.store(0, Ordering::Relaxed);
        }
    }
}

/// A unique-constraint violation is a conflict on `param` (a racing writer
/// got there between our check and our insert); anything else stays a
/// database error.
pub(crate) fn conflict_if_unique(e: sqlx::Error, what: Entity, param: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::conflict(what, param),
        _ => e.into(),
    }
}

/// The kinds of stored object an error can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Project,
    User,
    Service,
    VideoGroup,
    VideoSource,
    BatchTask,
    Task,
    Worker,
    EdgePool,
    AccessKey,
    Token,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Project => "project",
            Entity::User => "user",
            Entity::Service => "algorithm service",
            Entity::VideoGroup => "video group",
            Entity::VideoSource => "video source",
            Entity::BatchTask => "batch task",
            Entity::Task => "task",
            Entity::Worker => "worker",
            Entity::EdgePool => "edge pool",
            Entity::AccessKey => "access key",
            Entity::Token => "token",
        })
    }
}

impl From<crate::domain::RandomError> for StoreError {
    fn from(e: crate::domain::RandomError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A task state as stored (its index); anything else is a corrupt row.
pub(crate) fn stored_state(v: i64) -> StoreResult<TaskState> {
    TaskState::from_index(v)
        .ok_or_else(|| StoreError::Internal(format!("stored task state {v} is unknown")))
}

/// A bulk load in one transaction: nothing is visible until `commit`, and
/// dropping the importer without committing discards everything.
#[async_trait]
pub trait Importer: Send {
    /// Takes the record read from `line` (1-based) of the input.
    async fn put(&mut self, line: u64, record: DumpRecord) -> Result<ImportedCount, ImportError>;
    async fn commit(self: Box<Self>) -> Result<(), ImportError>;
}

/// Why an import failed, and the input line it failed at (0 when no line is
/// to blame, as when the final commit fails).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ImportError {
    pub line: u64,
    pub error: StoreError,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportedCount {
    pub tasks: u64,
}

/// Opens the store a URL names (`postgres://` or `postgresql://` for
/// PostgreSQL, `sqlite:PATH`, `sqlite://PATH` or a bare file path for
/// SQLite) and applies migrations.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    Ok(open_sql(url).await?)
}

/// [`open`], as the concrete store: with the checks tests and diagnosis use
/// ([`SqlStore::check_counters`], [`SqlStore::add_task`]).
pub async fn open_sql(url: &str) -> StoreResult<Arc<SqlStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (pool, backend) = postgres::connect(url).await?;
        return Ok(Arc::new(SqlStore::start(pool, backend).await?));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    // A process opening a SQLite file that a busy server writes can be
    // refused with SQLITE_BUSY while it sets itself up (seen once under the
    // stress test, past the busy timeout). Opening is idempotent: try again
    // for a while rather than fail a CLI command or a second server.
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let (pool, backend) = sqlite::connect(path).await?;
            SqlStore::start(pool, backend).await
        };
        match attempt.await {
            Ok(s) => return Ok(Arc::new(s)),
            Err(e) if sqlite_busy(&e) && started.elapsed() < OPEN_BUSY_WAIT => {
                tracing::warn!(error = %e, "the database is busy; opening it again");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long opening a busy SQLite database is retried.
const OPEN_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// SQLITE_BUSY or SQLITE_LOCKED, extended codes included.
fn sqlite_busy(e: &StoreError) -> bool {
    matches!(sqlite_primary_of(e), Some(5 | 6))
}

/// SQLite's primary result code in a database error's code (its extended
/// code in decimal, whose low byte is the primary one); `None` for anything
/// else, PostgreSQL's five-character SQLSTATEs included.
pub fn sqlite_primary(code: &str) -> Option<i32> {
    (code.len() < 5)
        .then(|| code.parse::<i32>().ok())
        .flatten()
        .map(|c| c & 0xff)
}

/// [`sqlite_primary`] of a store error from the database.
pub fn sqlite_primary_of(e: &StoreError) -> Option<i32> {
    match e {
        StoreError::Db(sqlx::Error::Database(d)) => sqlite_primary(&d.code()?),
        _ => None,
    }
}

/// A random tag for this store instance's entries in the change feed.
fn new_origin() -> i64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    i64::from_le_bytes(b) & i64::MAX
}

#[cfg(test)]
mod tests {
    use super::DbFault;

    #[test]
    fn database_codes_map_to_what_they_mean_to_a_client() {
        // SQLite: primary codes and extended ones (low byte = primary).
        assert_eq!(DbFault::of_code("13"), DbFault::StorageFull);
        assert_eq!(DbFault::of_code("8"), DbFault::ReadOnly);
        assert_eq!(DbFault::of_code("776"), DbFault::ReadOnly); // READONLY_ROLLBACK
        assert_eq!(DbFault::of_code("1032"), DbFault::ReadOnly); // READONLY_DBMOVED
        assert_eq!(DbFault::of_code("5"), DbFault::Other); // BUSY
                                                           // PostgreSQL's SQLSTATEs are never read as SQLite numbers.
        assert_eq!(DbFault::of_code("53100"), DbFault::StorageFull);
        assert_eq!(DbFault::of_code("25006"), DbFault::ReadOnly);
        assert_eq!(DbFault::of_code("08006"), DbFault::Unreachable);
        assert_eq!(DbFault::of_code("57P01"), DbFault::Unreachable);
        assert_eq!(DbFault::of_code("22021"), DbFault::BadText);
        assert_eq!(DbFault::of_code("22008"), DbFault::Other);
        assert_eq!(DbFault::of_code("40001"), DbFault::Other);
        assert_eq!(DbFault::of_code(""), DbFault::Other);
        assert!(DbFault::ReadOnly.refuses_writes() && DbFault::StorageFull.refuses_writes());
        assert!(!DbFault::Unreachable.refuses_writes());
    }
}
