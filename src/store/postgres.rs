//! PostgreSQL backend: production, and several `serve` processes sharing one
//! database. Reads run in repeatable-read snapshots so a list's `count` and
//! rows agree; migrations hold an advisory lock so replicas starting together
//! apply each migration once.

use super::common::impl_sql_store;
use super::lifecycle::impl_lifecycle;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_change_feed",
        include_str!("../../migrations/postgres/0002_change_feed.sql"),
    ),
    (
        "0003_lifecycle",
        include_str!("../../migrations/postgres/0003_lifecycle.sql"),
    ),
    (
        "0004_task_ids",
        include_str!("../../migrations/postgres/0004_task_ids.sql"),
    ),
];

/// The NOTIFY channel of the change feed.
const CHANNEL: &str = "taskcenter_changes";

/// Arbitrary constant naming taskcenter's migration lock.
const MIGRATION_LOCK: i64 = 0x7461_736b_6365_6e74;

pub struct PgStore {
    pool: PgPool,
    model: Arc<ReadModel>,
    tokens: std::sync::RwLock<std::collections::HashMap<String, super::TokenRow>>,
    /// Tags this process's changes so its feed skips what it applied already.
    origin: i64,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";
    /// Placeholder style for built statements (see `sql::Query`).
    const POSITIONAL: bool = false;

    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(PgStore {
            pool,
            model: Arc::new(ReadModel::default()),
            tokens: Default::default(),
            origin: super::new_origin(),
        })
    }

    /// A bulk load is one transaction. Tables grow inside it without new
    /// statistics, and the planner, still seeing them as small, scans them
    /// whole for each bulk uniqueness check: quadratic. Index lookups are
    /// always right here, so scans are switched off for this transaction.
    async fn tune_for_import(tx: &mut Transaction<'static, Postgres>) -> super::StoreResult<()> {
        sqlx::query("set local enable_seqscan = off")
            .execute(&mut **tx)
            .await?;
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn record_change(
        conn: &mut sqlx::PgConnection,
        origin: i64,
        project_pk: i64,
        batch_pk: i64,
    ) -> super::StoreResult<()> {
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{origin}:{project_pk}:{batch_pk}"))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Listens for other processes' writes and applies them to the loaded
    /// views; a lost connection may have lost notifications, so every view
    /// is dropped and reloaded on demand. Ends when the store is dropped.
    fn spawn_change_feed(&self) {
        let pool = self.pool.clone();
        let model = Arc::downgrade(&self.model);
        let origin = self.origin;
        tokio::spawn(async move {
            let mut listener = loop {
                match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l.listen(CHANNEL).await {
                        Ok(()) => break l,
                        Err(e) => tracing::warn!(error = %e, "change feed listen failed"),
                    },
                    Err(e) => tracing::warn!(error = %e, "change feed connect failed"),
                }
                if model.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await;
                let Some(model) = model.upgrade() else { return };
                match next {
                    Err(_) => continue,
                    Ok(Ok(Some(n))) => {
                        let mut it = n
                            .payload()
                            .split(':')
                            .map(|x| x.parse::<i64>().unwrap_or(-1));
                        let (Some(o), Some(p), Some(b)) = (it.next(), it.next(), it.next()) else {
                            continue;
                        };
                        if o == origin {
                            continue;
                        }
                        if b == 0 {
                            model.forget(p);
                        } else if let Err(e) = refresh_batches(&pool, &model, p, &[b]).await {
                            tracing::warn!(error = %e, "change feed refresh failed; project will be reloaded");
                            model.forget(p);
                        }
                    }
                    Ok(Ok(None)) => {
                        tracing::warn!("change feed connection lost; reloading every view");
                        model.forget_all();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "change feed receive failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
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
        apply_migrations(&mut tx, MIGRATIONS).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl_sql_store!(PgStore, Postgres, PgImporter);
impl_lifecycle!(PgStore, Postgres);

impl PgStore {
    /// Connects and applies migrations.
    pub async fn start(url: &str) -> super::StoreResult<Self> {
        let s = Self::connect(url).await?;
        s.run_migrations().await?;
        Ok(s)
    }
}
