//! SQLite backend: the embedded default, one file, no setup. WAL mode so
//! readers never wait for the writer; writes take the lock up front
//! (`BEGIN IMMEDIATE`) so two writers never deadlock on a lock upgrade.

use super::backend::{Backend, Migration};
use super::read_model::ReadModel;
use super::sql_store::refresh_batches;
use super::StoreResult;
use async_trait::async_trait;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

const MIGRATIONS: &[Migration] = &[
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
    (
        "0005_vias_wire",
        include_str!("../../migrations/sqlite/0005_vias_wire.sql"),
    ),
    (
        "0006_access_keys",
        include_str!("../../migrations/sqlite/0006_access_keys.sql"),
    ),
    (
        "0007_last_worker",
        include_str!("../../migrations/sqlite/0007_last_worker.sql"),
    ),
    (
        "0008_schedule_windows",
        include_str!("../../migrations/sqlite/0008_schedule_windows.sql"),
    ),
    (
        "0009_pick_order",
        include_str!("../../migrations/sqlite/0009_pick_order.sql"),
    ),
    (
        "0010_pick_waiting_only",
        include_str!("../../migrations/sqlite/0010_pick_waiting_only.sql"),
    ),
    (
        "0011_held_by_worker",
        include_str!("../../migrations/sqlite/0011_held_by_worker.sql"),
    ),
];

/// How often the change feed is polled for other processes' writes.
const POLL: Duration = Duration::from_millis(200);
/// Change-log rows older than this are pruned; a process that falls this far
/// behind sees the gap and reloads its views.
const KEEP_CHANGES_MS: i64 = 120_000;

/// Set on every new connection. Writers queue on SQLite's one write lock; a
/// command run next to a busy server waits its turn (30 s) rather than
/// failing. The busy timeout comes first so the others wait for locks too.
const PRAGMAS: [&str; 4] = [
    "pragma busy_timeout = 30000",
    "pragma journal_mode = wal",
    "pragma foreign_keys = on",
    "pragma synchronous = normal",
];

/// The `sqlite:` URL naming the file at `path`, created if missing. Every
/// byte but letters and digits is escaped, so the path comes back exactly
/// (no dot segments resolved, no `?` or `#` misread).
fn url_of(path: &str) -> String {
    let escaped = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
    format!("sqlite:{escaped}?mode=rwc")
}

/// Creates the database file, if missing, readable by its owner only: it
/// holds password hashes and sealed secrets. SQLite gives the `-wal` and
/// `-shm` files it makes the database file's mode.
fn create_private(path: &str) -> std::io::Result<()> {
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists() {
        return Ok(());
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        // Made meanwhile by another process: its mode stands.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens (creating if missing, mode 0600) the database file at `path`.
pub(crate) async fn connect(path: &str) -> Result<(AnyPool, Arc<dyn Backend>), sqlx::Error> {
    sqlx::any::install_default_drivers();
    create_private(path)?;
    let opts = AnyConnectOptions::from_str(&url_of(path))?;
    // One connection first, outside the pool: a file that cannot be opened
    // (no permission, a read-only directory or file system where WAL's
    // files cannot be made) is named at once, where the pool would retry
    // for its whole wait and then say only that it timed out.
    let mut first = sqlx::ConnectOptions::connect(&opts).await?;
    for p in PRAGMAS {
        first.execute(p).await?;
    }
    sqlx::Connection::close(first).await?;
    let pool = super::backend::pool_options(8, Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                for p in PRAGMAS {
                    conn.execute(p).await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await?;
    Ok((pool, Arc::new(Sqlite)))
}

pub(crate) struct Sqlite;

#[async_trait]
impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn positional(&self) -> bool {
        true
    }

    fn gate_writes(&self) -> bool {
        true
    }

    fn begin_write(&self) -> Option<&'static str> {
        Some("begin immediate")
    }

    /// In WAL mode a read transaction sees one snapshot from its first read on.
    fn begin_read(&self) -> Option<&'static str> {
        None
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn create_migrations_table(&self) -> &'static str {
        "create table if not exists schema_migrations (name text primary key, applied_at integer not null)"
    }

    /// `begin immediate` holds the write lock already.
    async fn lock_migrations(&self, _conn: &mut AnyConnection) -> StoreResult<()> {
        Ok(())
    }

    async fn record_change(
        &self,
        conn: &mut AnyConnection,
        origin: i64,
        changes: &[(i64, i64)],
    ) -> StoreResult<()> {
        let now = crate::domain::now_millis();
        for chunk in changes.chunks(super::backend::CHANGES_PER_STATEMENT) {
            let mut sql = String::from(
                "insert into change_log (origin, project_pk, batch_pk, created_at) values ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${}, ${}, $2)", 3 + 2 * i, 4 + 2 * i));
            }
            let mut q = sqlx::query(&sql).bind(origin).bind(now);
            for (project_pk, batch_pk) in chunk {
                q = q.bind(*project_pk).bind(*batch_pk);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// A bulk load touches far more pages than the default cache holds; a
    /// large cache keeps them from spilling to the WAL and being read back.
    async fn tune_for_import(&self, conn: &mut AnyConnection) -> StoreResult<()> {
        sqlx::query("pragma cache_size = -1048576")
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Polls the change log for other processes' writes and applies them to
    /// the loaded views; ends when the store is dropped.
    fn spawn_change_feed(&self, pool: AnyPool, model: Weak<ReadModel>, origin: i64) {
        tokio::spawn(poll_changes(pool, self.positional(), model, origin));
    }
}

/// One row of `change_log`.
struct Change {
    seq: i64,
    origin: i64,
    project_pk: i64,
    batch_pk: i64,
}

const CHANGE_COLS: &str = "seq, origin, project_pk, batch_pk";

fn change_from(r: &sqlx::any::AnyRow) -> Result<Change, sqlx::Error> {
    Ok(Change {
        seq: r.try_get("seq")?,
        origin: r.try_get("origin")?,
        project_pk: r.try_get("project_pk")?,
        batch_pk: r.try_get("batch_pk")?,
    })
}

async fn poll_changes(pool: AnyPool, positional: bool, model: Weak<ReadModel>, origin: i64) {
    let mut cursor: i64 = match sqlx::query("select coalesce(max(seq), 0) as seq from change_log")
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get("seq"))
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
        let rows = sqlx::query(&format!(
            "select {CHANGE_COLS} from change_log where seq > $1 order by seq limit 5000"
        ))
        .bind(cursor)
        .fetch_all(&pool)
        .await
        .and_then(|rows| rows.iter().map(change_from).collect::<Result<Vec<_>, _>>());
        match rows {
            Ok(rows) => {
                if rows.first().is_some_and(|r| r.seq != cursor + 1) {
                    tracing::warn!("change feed gap; reloading every view");
                    model.forget_all();
                }
                let mut work: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
                for c in rows {
                    cursor = c.seq;
                    if c.origin == origin {
                        continue;
                    }
                    if c.batch_pk == 0 {
                        model.forget(c.project_pk);
                    } else {
                        let v = work.entry(c.project_pk).or_default();
                        if !v.contains(&c.batch_pk) {
                            v.push(c.batch_pk);
                        }
                    }
                }
                for (p, pks) in work {
                    if let Err(e) = refresh_batches(&pool, positional, &model, p, &pks).await {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions;

    #[test]
    fn a_path_comes_back_from_its_url_unchanged() {
        for path in [
            "/tmp/a b/c?d#e%f.db",
            "data/../x.db",
            "./rel.db",
            "user@host:5/x.db",
            ":memory:",
            "/tmp/é.db",
        ] {
            let any = AnyConnectOptions::from_str(&url_of(path)).unwrap();
            let opts = SqliteConnectOptions::from_url(&any.database_url).unwrap();
            assert_eq!(opts.get_filename(), std::path::Path::new(path), "{path}");
        }
    }
}
