//! PostgreSQL backend: production, and several `serve` processes sharing one
//! database. Reads run in repeatable-read snapshots so a list's `count` and
//! rows agree; migrations hold an advisory lock so replicas starting together
//! apply each migration once.

use super::backend::{Backend, Migration};
use super::read_model::ReadModel;
use super::sql_store::refresh_batches;
use super::StoreResult;
use async_trait::async_trait;
use sqlx::any::AnyConnectOptions;
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, AnyPool};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

const MIGRATIONS: &[Migration] = &[
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
    (
        "0005_vias_wire",
        include_str!("../../migrations/postgres/0005_vias_wire.sql"),
    ),
    (
        "0006_access_keys",
        include_str!("../../migrations/postgres/0006_access_keys.sql"),
    ),
    (
        "0007_last_worker",
        include_str!("../../migrations/postgres/0007_last_worker.sql"),
    ),
    (
        "0008_schedule_windows",
        include_str!("../../migrations/postgres/0008_schedule_windows.sql"),
    ),
    (
        "0009_pick_order",
        include_str!("../../migrations/postgres/0009_pick_order.sql"),
    ),
];

/// The NOTIFY channel of the change feed.
const CHANNEL: &str = "taskcenter_changes";

/// Arbitrary constant naming taskcenter's migration lock.
const MIGRATION_LOCK: i64 = 0x7461_736b_6365_6e74;

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to the database `url` names.
pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Arc<dyn Backend>), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let opts = AnyConnectOptions::from_str(url)?;
    // A short acquire timeout: when the server is unreachable a request
    // waits this long for a connection and is answered 503, rather than
    // hanging for the length of an outage.
    let pool = super::backend::pool_options(16, ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await?;
    Ok((
        pool,
        Arc::new(Postgres {
            url: url.to_owned(),
        }),
    ))
}

pub(crate) struct Postgres {
    /// For the change feed's listener, which holds a connection of its own.
    url: String,
}

#[async_trait]
impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn positional(&self) -> bool {
        false
    }

    fn begin_write(&self) -> Option<&'static str> {
        None
    }

    fn begin_read(&self) -> Option<&'static str> {
        Some("begin isolation level repeatable read, read only")
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn create_migrations_table(&self) -> &'static str {
        "create table if not exists schema_migrations (name text primary key, applied_at bigint not null)"
    }

    async fn lock_migrations(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn record_change(
        &self,
        conn: &mut AnyConnection,
        origin: i64,
        project_pk: i64,
        batch_pk: i64,
    ) -> StoreResult<()> {
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{origin}:{project_pk}:{batch_pk}"))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// A bulk load is one transaction. Tables grow inside it without new
    /// statistics, and the planner, still seeing them as small, scans them
    /// whole for each bulk uniqueness check: quadratic. Index lookups are
    /// always right here, so scans are switched off for this transaction.
    /// That makes any plan that still has a scan (a tiny table without an
    /// index) look costly enough for the JIT compiler, which then spends
    /// tens of milliseconds on every such statement: JIT is switched off too.
    async fn tune_for_import(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        sqlx::query("set local enable_seqscan = off")
            .execute(&mut *conn)
            .await?;
        sqlx::query("set local jit = off")
            .execute(&mut *conn)
            .await?;
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn after_import(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        sqlx::query("analyze tasks, batch_tasks")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Listens for other processes' writes and applies them to the loaded
    /// views; a lost connection may have lost notifications, so every view
    /// is dropped and reloaded on demand. Ends when the store is dropped.
    fn spawn_change_feed(&self, pool: AnyPool, model: Weak<ReadModel>, origin: i64) {
        tokio::spawn(listen(
            self.url.clone(),
            pool,
            self.positional(),
            model,
            origin,
        ));
    }
}

async fn listen(url: String, pool: AnyPool, positional: bool, model: Weak<ReadModel>, origin: i64) {
    let mut listener = loop {
        match PgListener::connect(&url).await {
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
            Err(_) => {}
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
                } else if let Err(e) = refresh_batches(&pool, positional, &model, p, &[b]).await {
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
}
