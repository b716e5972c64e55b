//! PostgreSQL backend: production, and several `serve` processes sharing one
//! database. Reads run in repeatable-read snapshots so a list's `count` and
//! rows agree; migrations hold an advisory lock so replicas starting together
//! apply each migration once.

use super::backend::{Backend, Lifted, Migration};
use super::read_model::ReadModel;
use super::sql::Bulk;
use super::sql_store::is_unique_violation;
use super::sql_store::refresh_batches;
use super::StoreError;
use super::StoreResult;
use crate::domain::field::FieldError;
use async_trait::async_trait;
use sqlx::any::AnyConnectOptions;
use sqlx::postgres::PgDatabaseError;
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
    (
        "0010_pick_waiting_only",
        include_str!("../../migrations/postgres/0010_pick_waiting_only.sql"),
    ),
    (
        "0011_held_by_worker",
        include_str!("../../migrations/postgres/0011_held_by_worker.sql"),
    ),
];

/// The NOTIFY channel of the change feed.
const CHANNEL: &str = "taskcenter_changes";

/// Arbitrary constant naming taskcenter's migration lock.
const MIGRATION_LOCK: i64 = 0x7461_736b_6365_6e74;
/// Project `pk`'s catalogue lock is `CATALOGUE_LOCK + pk`, an advisory
/// lock held to the end of the transaction (`Backend::lock_catalogue`).
const CATALOGUE_LOCK: i64 = 0x7463_6361_0000_0000;

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Every session ends a transaction left idle this long: a process frozen
/// (SIGSTOP, a paused VM) while it holds the lifecycle lock would otherwise
/// stall every other process sharing the database until it woke. Ours
/// never idle this long between statements; exports and imports, which
/// wait on their reader or input, lift it (`Backend::allow_idle`).
pub(crate) const IDLE_IN_TRANSACTION: &str = "10s";

/// Connects to the database `url` names.
pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Arc<dyn Backend>), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let opts = AnyConnectOptions::from_str(url)?;
    // A short acquire timeout: when the server is unreachable a request
    // waits this long for a connection and is answered 503, rather than
    // hanging for the length of an outage.
    let pool = super::backend::pool_options(16, ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                let set =
                    format!("set idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'");
                sqlx::query(&set).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(opts.clone())
        .await;
    let pool = match pool {
        Ok(pool) => pool,
        // The pool says only that it timed out; one connection of our own
        // says why (refused, no such database, authentication).
        Err(sqlx::Error::PoolTimedOut) => {
            let direct = sqlx::ConnectOptions::connect(&opts);
            return Err(match tokio::time::timeout(ACQUIRE_TIMEOUT, direct).await {
                Ok(Err(why)) => why,
                _ => sqlx::Error::PoolTimedOut,
            });
        }
        Err(e) => return Err(e),
    };
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

    fn bulk(&self) -> Bulk {
        Bulk::Arrays
    }

    fn pick_index(&self) -> &'static str {
        "create index tasks_by_pick on tasks (state, task_type, prio, created_at, pk) \
         where state in (0, 16, 17)"
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

    async fn allow_idle(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        sqlx::query("set local idle_in_transaction_session_timeout = 0")
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn prefer_indexes(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        // Until autovacuum analyses a table that just took many rows, the
        // planner guesses that `worker_pk is not null` holds for half of
        // it and reads the whole table.
        sqlx::query("set local enable_seqscan = off")
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn lock_catalogue(&self, conn: &mut AnyConnection, project_pk: i64) -> StoreResult<()> {
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(CATALOGUE_LOCK.wrapping_add(project_pk))
            .execute(conn)
            .await?;
        Ok(())
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
        changes: &[(i64, i64)],
    ) -> StoreResult<()> {
        for chunk in changes.chunks(super::backend::CHANGES_PER_STATEMENT) {
            let calls: Vec<String> = (0..chunk.len())
                .map(|i| format!("pg_notify($1, ${})", i + 2))
                .collect();
            let sql = format!("select {}", calls.join(", "));
            let mut q = sqlx::query(&sql).bind(CHANNEL);
            for (project_pk, batch_pk) in chunk {
                q = q.bind(format!("{origin}:{project_pk}:{batch_pk}"));
            }
            q.execute(&mut *conn).await?;
        }
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
        // The opening looks at its tables again once it holds their locks
        // (`begin_import`): that look must see what committed meanwhile,
        // whatever default isolation the server or role sets.
        sqlx::query("set transaction isolation level read committed")
            .execute(&mut *conn)
            .await?;
        for setting in [
            "enable_seqscan = off",
            "jit = off",
            "synchronous_commit = off",
            // The indexes built and the constraints checked at the end sort
            // or hash every task: room for that in memory rather than
            // spilling at the default 64 MB.
            "maintenance_work_mem = '1GB'",
            "work_mem = '256MB'",
        ] {
            sqlx::query(&format!("set local {setting}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn lock_for_import(&self, conn: &mut AnyConnection, tables: &[&str]) -> StoreResult<()> {
        if tables.is_empty() {
            return Ok(());
        }
        // Dropping a foreign key locks the table it names as well.
        let listed = tables
            .iter()
            .map(|t| format!("cast('{t}' as regclass)"))
            .collect::<Vec<_>>()
            .join(", ");
        let named: Vec<String> = sqlx::query_scalar(&format!(
            "select distinct confrelid::regclass::text from pg_constraint \
             where contype = 'f' and conrelid in ({listed})"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut all: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        all.extend(named);
        all.sort();
        all.dedup();
        // The whole statement, every wait in it, ends within a quarter of
        // the server's deadlock_timeout (250 ms at its default of 1 s): a
        // `serve` transaction that queued behind a lock taken here never
        // waits long enough for the deadlock check to end it, and this load
        // is the side that gives up and starts again.
        sqlx::query(
            "select set_config('statement_timeout', cast(greatest(1, cast(extract(epoch from \
             cast(current_setting('deadlock_timeout') as interval)) * 250 as int)) as text), true)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "lock table {} in access exclusive mode",
            all.join(", ")
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query("set local statement_timeout to default")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    fn lock_conflict(&self, e: &StoreError) -> bool {
        // query_canceled (the statement_timeout of `lock_for_import`),
        // lock_not_available, deadlock_detected.
        matches!(e, StoreError::Db(sqlx::Error::Database(d))
            if matches!(d.code().as_deref(), Some("57014" | "55P03" | "40P01")))
    }

    async fn lift_checks(
        &self,
        conn: &mut AnyConnection,
        tables: &[&str],
    ) -> StoreResult<Vec<Lifted>> {
        // Unique constraints and unique indexes of their own go back first,
        // then the foreign keys; they are dropped the other way round.
        let mut uniques = Vec::new();
        let mut foreign = Vec::new();
        for table in tables {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "select contype::text, conname::text, pg_get_constraintdef(oid) from pg_constraint \
                 where contype in ('f', 'u') and conrelid = cast($1 as regclass) order by conname",
            )
            .bind(*table)
            .fetch_all(&mut *conn)
            .await?;
            for (kind, name, def) in rows {
                let drop = format!("alter table {table} drop constraint {name}");
                let restore = format!("alter table {table} add constraint {name} {def}");
                let list = if kind == "f" {
                    &mut foreign
                } else {
                    &mut uniques
                };
                list.push((
                    drop,
                    Lifted {
                        table: table.to_string(),
                        restore,
                    },
                ));
            }
            let rows: Vec<(String, String)> = sqlx::query_as(
                "select c.relname::text, pg_get_indexdef(i.indexrelid) from pg_index i \
                 join pg_class c on c.oid = i.indexrelid \
                 where i.indrelid = cast($1 as regclass) and i.indisunique and not i.indisprimary \
                 and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid) \
                 order by c.relname",
            )
            .bind(*table)
            .fetch_all(&mut *conn)
            .await?;
            for (name, def) in rows {
                let drop = format!("drop index {name}");
                uniques.push((
                    drop,
                    Lifted {
                        table: table.to_string(),
                        restore: def,
                    },
                ));
            }
        }
        for (drop, _) in foreign.iter().chain(uniques.iter()) {
            sqlx::query(drop).execute(&mut *conn).await?;
        }
        Ok(uniques.into_iter().chain(foreign).map(|(_, l)| l).collect())
    }

    async fn restore_checks(&self, conn: &mut AnyConnection, lifted: &[Lifted]) -> StoreResult<()> {
        for l in lifted {
            if let Err(e) = sqlx::query(&l.restore).execute(&mut *conn).await {
                if !is_unique_violation(&e) {
                    return Err(e.into());
                }
                let detail = e
                    .as_database_error()
                    .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
                    .and_then(|d| d.detail())
                    .unwrap_or("")
                    .to_owned();
                let (field, what) = if l.table == "tasks" {
                    ("tasks.id".to_owned(), "a task id")
                } else {
                    (l.table.clone(), "a key")
                };
                return Err(StoreError::Invalid(FieldError::new(
                    field,
                    format!("{what} is used twice in this load ({detail})"),
                )));
            }
        }
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
