//! SQLite backend: the embedded default, one file, no setup. WAL mode so
//! readers never wait for the writer; writes take the lock up front
//! (`BEGIN IMMEDIATE`) so two writers never deadlock on a lock upgrade.

use super::common::impl_sql_store;
use super::lifecycle::impl_lifecycle;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::time::Duration;

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_change_feed",
        include_str!("../../migrations/sqlite/0002_change_feed.sql"),
    ),
    (
        "0003_lifecycle",
        include_str!("../../migrations/sqlite/0003_lifecycle.sql"),
    ),
    (
        "0004_task_ids",
        include_str!("../../migrations/sqlite/0004_task_ids.sql"),
    ),
];

/// How often the change feed is polled for other processes' writes.
const POLL: Duration = Duration::from_millis(200);
/// Change-log rows older than this are pruned; a process that falls this far
/// behind sees the gap and reloads its views.
const KEEP_CHANGES_MS: i64 = 120_000;

pub struct SqliteStore {
    pool: SqlitePool,
    model: Arc<ReadModel>,
    tokens: std::sync::RwLock<std::collections::HashMap<String, super::TokenRow>>,
    /// Tags this process's changes so its feed skips what it applied already.
    origin: i64,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    /// Placeholder style for built statements (see `sql::Query`).
    const POSITIONAL: bool = true;

    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &str) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Writers queue on SQLite's one write lock; a command run next
            // to a busy server waits its turn rather than failing.
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(SqliteStore {
            pool,
            model: Arc::new(ReadModel::default()),
            tokens: Default::default(),
            origin: super::new_origin(),
        })
    }

    /// A bulk load touches far more pages than the default cache holds; a
    /// large cache keeps them from spilling to the WAL and being read back.
    async fn tune_for_import(tx: &mut Transaction<'static, Sqlite>) -> super::StoreResult<()> {
        sqlx::query("pragma cache_size = -1048576")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn record_change(
        conn: &mut sqlx::SqliteConnection,
        origin: i64,
        project_pk: i64,
        batch_pk: i64,
    ) -> super::StoreResult<()> {
        sqlx::query("insert into change_log (origin, project_pk, batch_pk, created_at) values ($1, $2, $3, $4)")
            .bind(origin)
            .bind(project_pk)
            .bind(batch_pk)
            .bind(crate::domain::now_millis())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Polls the change log for other processes' writes and applies them to
    /// the loaded views; ends when the store is dropped.
    fn spawn_change_feed(&self) {
        let pool = self.pool.clone();
        let model = Arc::downgrade(&self.model);
        let origin = self.origin;
        tokio::spawn(async move {
            let mut cursor: i64 = match sqlx::query_scalar::<Sqlite, i64>(
                "select coalesce(max(seq), 0) from change_log",
            )
            .fetch_one(&pool)
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "change feed could not start; views of other processes' writes may lag");
                    return;
                }
            };
            let mut last_prune = std::time::Instant::now();
            loop {
                tokio::time::sleep(POLL).await;
                let Some(model) = model.upgrade() else { return };
                let rows = sqlx::query_as::<Sqlite, (i64, i64, i64, i64)>(
                    "select seq, origin, project_pk, batch_pk from change_log where seq > $1 order by seq limit 5000",
                )
                .bind(cursor)
                .fetch_all(&pool)
                .await;
                match rows {
                    Ok(rows) => {
                        if rows.first().is_some_and(|r| r.0 != cursor + 1) {
                            tracing::warn!("change feed gap; reloading every view");
                            model.forget_all();
                        }
                        let mut work: std::collections::BTreeMap<i64, Vec<i64>> =
                            Default::default();
                        for (seq, o, p, b) in rows {
                            cursor = seq;
                            if o == origin {
                                continue;
                            }
                            if b == 0 {
                                model.forget(p);
                            } else {
                                let v = work.entry(p).or_default();
                                if !v.contains(&b) {
                                    v.push(b);
                                }
                            }
                        }
                        for (p, pks) in work {
                            if let Err(e) = refresh_batches(&pool, &model, p, &pks).await {
                                tracing::warn!(error = %e, "change feed refresh failed; project will be reloaded");
                                model.forget(p);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "change feed poll failed"),
                }
                if last_prune.elapsed() > Duration::from_secs(30) {
                    last_prune = std::time::Instant::now();
                    let cutoff = crate::domain::now_millis() - KEEP_CHANGES_MS;
                    if let Err(e) = sqlx::query("delete from change_log where created_at < $1")
                        .bind(cutoff)
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %e, "change log prune failed");
                    }
                }
            }
        });
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
        apply_migrations(&mut tx, MIGRATIONS).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl_sql_store!(SqliteStore, Sqlite, SqliteImporter);
impl_lifecycle!(SqliteStore, Sqlite);

impl SqliteStore {
    /// Opens the file and applies migrations.
    pub async fn start(path: &str) -> super::StoreResult<Self> {
        let s = Self::open(path).await?;
        s.run_migrations().await?;
        Ok(s)
    }
}
