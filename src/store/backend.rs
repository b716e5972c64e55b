//! The contract a backend must meet. The store's SQL is shared text (see
//! `sql`) run through `sqlx::Any`; a backend supplies only what that text
//! cannot say the same way on both databases: how transactions begin, how
//! migrations are serialized, how other processes hear of a write, and how
//! a bulk load is tuned.

use super::read_model::ReadModel;
use super::{StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use std::sync::Weak;
use std::time::Duration;

/// Most changes `Backend::record_change` writes in one statement (a few
/// parameters each: far below every backend's limit).
pub(crate) const CHANGES_PER_STATEMENT: usize = 500;

/// Pool settings both backends share. A connection whose transaction could
/// not be closed is never handed out again: when a commit fails (a full
/// disk, say) the database may have rolled the transaction back itself, the
/// driver's own rollback then fails, and the driver goes on counting the
/// connection as inside a transaction, refusing every later `BEGIN` on it.
/// Such a connection is closed at acquire and replaced by a fresh one.
pub(crate) fn pool_options(max: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .before_acquire(|conn, _meta| {
            Box::pin(async move {
                let stuck = sqlx::Connection::is_in_transaction(conn);
                if stuck {
                    tracing::warn!("closing a pooled connection left inside a failed transaction");
                }
                Ok(!stuck)
            })
        })
}

/// A check lifted for a bulk load: its table, and the statement that puts
/// it back.
#[derive(Debug, Clone)]
pub(crate) struct Lifted {
    pub table: String,
    pub restore: String,
}

/// One migration: its name (recorded in `schema_migrations`) and its SQL.
pub(crate) type Migration = (&'static str, &'static str);

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// The name `Store::backend` reports.
    fn name(&self) -> &'static str;

    /// Placeholder style for built statements (see `sql::Query`).
    fn positional(&self) -> bool;

    /// Whether this process queues its write transactions itself, one at a
    /// time, before the database's lock. SQLite's lock has no queue: a
    /// writer that finds it taken sleeps and retries with growing pauses
    /// (1, 2, 5, 10 ms and on), so under contention the lock sat free while
    /// the next writer slept. PostgreSQL queues lock waiters itself.
    fn gate_writes(&self) -> bool {
        false
    }

    /// `create index tasks_by_pick ...` as this backend's migrations leave
    /// it (a bulk load into an empty table builds it once at the end).
    fn pick_index(&self) -> &'static str {
        "create index tasks_by_pick on tasks (state, task_type, prio, created_at, pk)"
    }

    /// How a bulk load writes many rows per statement.
    fn bulk(&self) -> super::sql::Bulk {
        super::sql::Bulk::Values {
            positional: self.positional(),
        }
    }

    /// The statement that opens a write transaction (`None`: plain `BEGIN`).
    fn begin_write(&self) -> Option<&'static str>;

    /// The statement that opens a read transaction, which must see one
    /// snapshot throughout (`None`: plain `BEGIN`).
    fn begin_read(&self) -> Option<&'static str>;

    /// The migrations, in order.
    fn migrations(&self) -> &'static [Migration];

    /// `create table if not exists schema_migrations ...` in this dialect.
    fn create_migrations_table(&self) -> &'static str;

    /// Called first in a transaction that may wait on something outside the
    /// database between statements (an export's reader, an import's input):
    /// lifts the limit on idling inside a transaction for it alone. The
    /// default has no such limit.
    async fn allow_idle(&self, _conn: &mut AnyConnection) -> StoreResult<()> {
        Ok(())
    }

    /// Called first in a transaction whose reads find a few rows through a
    /// partial index: keeps the planner on that index while its statistics
    /// still describe the table before a bulk insert. The default planner
    /// needs no such help.
    async fn prefer_indexes(&self, _conn: &mut AnyConnection) -> StoreResult<()> {
        Ok(())
    }

    /// Called first in the migration transaction: keeps processes starting
    /// together from applying a migration twice.
    async fn lock_migrations(&self, conn: &mut AnyConnection) -> StoreResult<()>;

    /// Called first in a write transaction that looks at project
    /// `project_pk`'s catalogue (its groups, sources, services, pools and
    /// batches) and then changes it on what it saw: such transactions of one
    /// project, in any process, run one at a time, so two of them never both
    /// pass a check that only one of them should. The default takes nothing
    /// (SQLite's write transaction already excludes every other writer).
    async fn lock_catalogue(&self, _conn: &mut AnyConnection, _project_pk: i64) -> StoreResult<()> {
        Ok(())
    }

    /// Tells other processes, once the transaction on `conn` commits, that
    /// batches changed: each `(project_pk, batch_pk)`, where a `batch_pk`
    /// of 0 stands for every batch of the project. One statement for up to
    /// `CHANGES_PER_STATEMENT` of them.
    async fn record_change(
        &self,
        conn: &mut AnyConnection,
        origin: i64,
        changes: &[(i64, i64)],
    ) -> StoreResult<()>;

    /// Settings for the one transaction a bulk load runs in.
    async fn tune_for_import(&self, conn: &mut AnyConnection) -> StoreResult<()>;

    /// Before a bulk load lifts the checks of `tables` or drops their
    /// indexes: takes, at once, every lock that will need (those tables and
    /// the tables their foreign keys name), waiting only briefly; failing
    /// that, an error `lock_conflict` recognises. The default takes nothing
    /// (SQLite's write transaction already excludes every other writer).
    async fn lock_for_import(
        &self,
        _conn: &mut AnyConnection,
        _tables: &[&str],
    ) -> StoreResult<()> {
        Ok(())
    }

    /// `e` says a lock could not be had (waited too long, or a deadlock):
    /// the transaction is worth starting again.
    fn lock_conflict(&self, _e: &StoreError) -> bool {
        false
    }

    /// A bulk load into `tables`, all empty when it began, lifts their
    /// foreign keys and unique constraints (not primary keys) for the
    /// transaction and returns what `restore_checks` puts back before commit:
    /// checked row by row they cost PostgreSQL most of a restore's time, put
    /// back each is checked once over all the rows. The load itself catches
    /// everything but a task id used twice, which the restore reports. The
    /// default lifts nothing (SQLite cannot drop a constraint).
    async fn lift_checks(
        &self,
        _conn: &mut AnyConnection,
        _tables: &[&str],
    ) -> StoreResult<Vec<Lifted>> {
        Ok(Vec::new())
    }

    /// Puts back what `lift_checks` lifted, in order; fails the load if any
    /// row breaks one (a task id used twice: `Invalid` on `tasks.id`, naming
    /// it).
    async fn restore_checks(
        &self,
        _conn: &mut AnyConnection,
        _lifted: &[Lifted],
    ) -> StoreResult<()> {
        Ok(())
    }

    /// After a bulk load, before its commit: whatever the planner needs to
    /// see the new rows (PostgreSQL: fresh statistics, or it plans for an
    /// empty table until autovacuum comes by).
    async fn after_import(&self, _conn: &mut AnyConnection) -> StoreResult<()> {
        Ok(())
    }

    /// Starts following other processes' changes and applying them to
    /// `model` (skipping those tagged `origin`); ends once `model` is gone.
    fn spawn_change_feed(&self, pool: AnyPool, model: Weak<ReadModel>, origin: i64);
}
