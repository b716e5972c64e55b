//! SQLite backend: the embedded default, one file, no setup. WAL mode so
//! readers never wait for the writer; writes take the lock up front
//! (`BEGIN IMMEDIATE`) so two writers never deadlock on a lock upgrade.

use super::common::impl_sql_store;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::time::Duration;

const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";

    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &str) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(SqliteStore { pool })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("begin immediate").await
    }

    /// In WAL mode a read transaction sees one snapshot from its first read on.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn run_migrations(&self) -> super::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::Executor::execute(
            &mut *tx,
            "create table if not exists schema_migrations (name text primary key, applied_at integer not null)",
        )
        .await?;
        for (name, body) in MIGRATIONS {
            let done = sqlx::query_scalar::<Sqlite, String>(
                "select name from schema_migrations where name = $1",
            )
            .bind(*name)
            .fetch_optional(&mut *tx)
            .await?;
            if done.is_none() {
                sqlx::Executor::execute(&mut *tx, *body).await?;
                sqlx::query("insert into schema_migrations (name, applied_at) values ($1, $2)")
                    .bind(*name)
                    .bind(crate::domain::now_millis())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl_sql_store!(SqliteStore, Sqlite, SqliteImporter);
