//! PostgreSQL backend: production, and several `serve` processes sharing one
//! database. Reads run in repeatable-read snapshots so a list's `count` and
//! rows agree; migrations hold an advisory lock so replicas starting together
//! apply each migration once.

use super::common::impl_sql_store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

/// Arbitrary constant naming taskcenter's migration lock.
const MIGRATION_LOCK: i64 = 0x7461_736b_6365_6e74;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";

    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(PgStore { pool })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn begin_read(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool
            .begin_with("begin isolation level repeatable read, read only")
            .await
    }

    async fn run_migrations(&self) -> super::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::Executor::execute(
            &mut *tx,
            "create table if not exists schema_migrations (name text primary key, applied_at bigint not null)",
        )
        .await?;
        for (name, body) in MIGRATIONS {
            let done = sqlx::query_scalar::<Postgres, String>(
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

impl_sql_store!(PgStore, Postgres, PgImporter);
