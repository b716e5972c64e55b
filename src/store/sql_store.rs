//! The one SQL implementation of `Store`, on `sqlx::Any`. The SQL is shared
//! text (see `sql`); what differs between databases is behind `Backend`.
//! The work of each method lives in a module by concern (`identity`,
//! `catalogue`, `batch`, `export`, `import`, `lifecycle`); this file holds
//! the struct, the helpers they share, and the read-model refresh.

use super::backend::{Backend, Migration};
use super::read_model::{BatchEntry, ProjectView, ReadModel};
use super::sql::{self, Arg};
use super::{batch, Store, StoreResult, TokenRow};
use crate::domain::{now_millis, TaskState};
use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A transaction on the store's pool; it derefs to its connection. A write
/// transaction on SQLite also holds this process's write gate until it ends.
pub(crate) struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    _gate: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    /// Ends the transaction now (a dropped one is rolled back only when
    /// its connection is next used, holding SQLite's lock until then).
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

/// A statement with its arguments bound, ready to run.
pub(crate) type BoundQuery<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) model: Arc<ReadModel>,
    /// Tokens read recently, with when their row was last read.
    pub(super) tokens: RwLock<HashMap<String, (TokenRow, std::time::Instant)>>,
    /// Tags this process's changes so its feed skips what it applied already.
    pub(super) origin: i64,
    /// One write transaction at a time in this process, queued in order
    /// (SQLite: see `Backend::gate_writes`).
    write_gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend.name())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// A store on `pool`, migrated.
    pub(crate) async fn start(pool: AnyPool, backend: Arc<dyn Backend>) -> StoreResult<Self> {
        let write_gate = backend
            .gate_writes()
            .then(|| Arc::new(tokio::sync::Semaphore::new(1)));
        let s = SqlStore {
            pool,
            backend,
            model: Arc::new(ReadModel::default()),
            tokens: Default::default(),
            origin: super::new_origin(),
            write_gate,
        };
        s.run_migrations().await?;
        Ok(s)
    }

    /// Drops every cached token (after a change that revokes several).
    pub(super) fn forget_tokens(&self) {
        if let Ok(mut m) = self.tokens.write() {
            m.clear();
        }
    }

    pub(super) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        let gate = match &self.write_gate {
            Some(g) => Some(
                g.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| sqlx::Error::PoolClosed)?,
            ),
            None => None,
        };
        let inner = match self.backend.begin_write() {
            Some(stmt) => self.pool.begin_with(stmt).await?,
            None => self.pool.begin().await?,
        };
        Ok(Tx { inner, _gate: gate })
    }

    /// A write transaction that reads project `project_pk`'s catalogue and
    /// changes it on what it read (`Backend::lock_catalogue`).
    pub(super) async fn begin_catalogue(&self, project_pk: i64) -> StoreResult<Tx> {
        let mut tx = self.begin_write().await?;
        self.backend.lock_catalogue(&mut tx, project_pk).await?;
        Ok(tx)
    }

    pub(super) async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        let inner = match self.backend.begin_read() {
            Some(stmt) => self.pool.begin_with(stmt).await?,
            None => self.pool.begin().await?,
        };
        Ok(Tx { inner, _gate: None })
    }

    /// Records a change of `batch_pk` (0: the whole project) for the feed.
    pub(super) async fn record_change(
        &self,
        conn: &mut AnyConnection,
        project_pk: i64,
        batch_pk: i64,
    ) -> StoreResult<()> {
        self.backend
            .record_change(conn, self.origin, &[(project_pk, batch_pk)])
            .await
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn run_migrations(&self) -> StoreResult<()> {
        // Up to date already: nothing to write, so a read-only database (a
        // standby, a read-only file) still opens for export and reads, and
        // replicas starting together do not queue on the migrations' lock.
        if self.migrations_applied().await.unwrap_or(false) {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        self.backend.lock_migrations(&mut tx).await?;
        sqlx::Executor::execute(&mut *tx, self.backend.create_migrations_table()).await?;
        apply_migrations(&mut tx, self.backend.migrations()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether every migration is recorded as applied (an error where the
    /// table does not exist yet).
    async fn migrations_applied(&self) -> StoreResult<bool> {
        let names: Vec<String> = sqlx::query_scalar("select name from schema_migrations")
            .fetch_all(&self.pool)
            .await?;
        Ok(self
            .backend
            .migrations()
            .iter()
            .all(|(name, _)| names.iter().any(|n| n == name)))
    }

    /// Brings the read model up to date with a write this process just
    /// committed, before the write returns to its caller.
    pub(super) async fn after_write(&self, project_pk: i64, batch_pk: i64) {
        self.writer().after_write(project_pk, batch_pk).await
    }

    /// What a write needs after its work: the change feed and the read
    /// model, as an owned handle (a tick's transaction outlives `&self`).
    pub(super) fn writer(&self) -> Writer {
        Writer {
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            model: self.model.clone(),
            origin: self.origin,
        }
    }

    pub(super) async fn project_view(
        &self,
        project_pk: i64,
    ) -> StoreResult<Arc<RwLock<ProjectView>>> {
        if let Some(v) = self.model.view(project_pk) {
            return Ok(v);
        }
        let _serial = self.model.refresh.lock().await;
        if let Some(v) = self.model.view(project_pk) {
            return Ok(v);
        }
        let mut tx = self.begin_read().await?;
        let entries = load_entries(&mut tx, self.backend.positional(), project_pk, None).await?;
        tx.commit().await?;
        Ok(self.model.install(project_pk, ProjectView::new(entries)))
    }
}

/// The change feed and the read model, as every write finishes with them.
#[derive(Clone)]
pub(crate) struct Writer {
    pool: AnyPool,
    backend: Arc<dyn Backend>,
    model: Arc<ReadModel>,
    origin: i64,
}

impl Writer {
    /// Placeholder style for built statements (see `sql::Query`).
    pub(super) fn positional(&self) -> bool {
        self.backend.positional()
    }

    /// Records changes of batches (`(project_pk, batch_pk)`, 0: the whole
    /// project) for the feed, in one statement.
    pub(super) async fn record_changes(
        &self,
        conn: &mut AnyConnection,
        changes: &[(i64, i64)],
    ) -> StoreResult<()> {
        self.backend.record_change(conn, self.origin, changes).await
    }

    /// Brings the read model up to date with a write this process just
    /// committed, before the write returns to its caller.
    pub(super) async fn after_write(&self, project_pk: i64, batch_pk: i64) {
        self.after_writes(project_pk, &[batch_pk]).await
    }

    /// `after_write` for several batches of one project, read in one query.
    pub(super) async fn after_writes(&self, project_pk: i64, batch_pks: &[i64]) {
        if let Err(e) = refresh_batches(
            &self.pool,
            self.backend.positional(),
            &self.model,
            project_pk,
            batch_pks,
        )
        .await
        {
            tracing::warn!(error = %e, project_pk, "read model refresh failed; project will be reloaded");
            self.model.forget(project_pk);
        }
    }
}

/// Applies, in order, the migrations not yet recorded in
/// `schema_migrations` (which the caller has created).
async fn apply_migrations(conn: &mut AnyConnection, migrations: &[Migration]) -> StoreResult<()> {
    for (name, body) in migrations {
        let done = sqlx::query("select name from schema_migrations where name = $1")
            .bind(*name)
            .fetch_optional(&mut *conn)
            .await?;
        if done.is_none() {
            sqlx::Executor::execute(&mut *conn, *body).await?;
            sqlx::query("insert into schema_migrations (name, applied_at) values ($1, $2)")
                .bind(*name)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Binds a built statement's arguments.
pub(crate) fn bound(q: &sql::Query) -> BoundQuery<'_> {
    let mut out = sqlx::query::<Any>(&q.sql);
    for a in &q.args {
        out = match a {
            Arg::Int(v) => out.bind(*v),
            Arg::Text(s) => out.bind(s.as_str()),
            Arg::Null => out.bind(None::<String>),
            Arg::NullInt => out.bind(None::<i64>),
        };
    }
    out
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Columns of a read-model entry: the batch-list row (see
/// `batch::batch_row_named`), then what the view indexes. Groups travel as
/// `pk\tid\tname` lines (ids and names hold neither tabs nor newlines).
fn entry_sql() -> String {
    let mut s = format!("select b.pk as pk, {}, ", sql::batch_fields());
    s.push_str(
        "b.name_lc as name_lc, b.service_name_lc as service_name_lc, \
         (select string_agg(cast(g.pk as text) || '\t' || g.id || '\t' || g.name, '\n' \
         order by bg.position) from batch_task_groups bg join video_groups g on g.pk = bg.group_pk \
         where bg.batch_pk = b.pk) as group_lines, \
         case when b.num_task = 1 then (select s.name from tasks t join video_sources s \
         on s.pk = t.video_source_pk where t.batch_pk = b.pk limit 1) end as source_name \
         from batch_tasks b where b.project_pk = ",
    );
    s
}

fn entry_from(row: &AnyRow) -> StoreResult<BatchEntry> {
    let group_lines: Option<String> = row.try_get("group_lines")?;
    let mut groups = Vec::new();
    for line in group_lines
        .as_deref()
        .unwrap_or("")
        .split('\n')
        .filter(|l| !l.is_empty())
    {
        let mut it = line.splitn(3, '\t');
        let (Some(pk), Some(id), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        groups.push((pk.parse().unwrap_or(0), id.to_owned(), name.to_owned()));
    }
    let names: Vec<&str> = groups.iter().map(|g| g.2.as_str()).collect();
    let group_names = (!names.is_empty()).then(|| names.join(","));
    Ok(BatchEntry {
        pk: row.try_get("pk")?,
        name_lc: row.try_get("name_lc")?,
        service_name_lc: row.try_get("service_name_lc")?,
        row: Arc::new(batch::batch_row_named(
            row,
            group_names,
            row.try_get("source_name")?,
        )?),
        groups,
    })
}

/// The read-model entries of a project's batches (`pks`: only those).
async fn load_entries(
    conn: &mut AnyConnection,
    positional: bool,
    project_pk: i64,
    pks: Option<&[i64]>,
) -> StoreResult<Vec<BatchEntry>> {
    let mut q = sql::Query::new(positional);
    q.push(&entry_sql());
    q.bind(Arg::Int(project_pk));
    if let Some(pks) = pks {
        q.push(" and b.pk in (");
        for (i, pk) in pks.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(Arg::Int(*pk));
        }
        q.push(")");
    }
    bound(&q)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(entry_from)
        .collect()
}

/// Re-reads the given batches of a loaded project and applies them (a
/// batch no longer in the database leaves the view).
pub(crate) async fn refresh_batches(
    pool: &AnyPool,
    positional: bool,
    model: &ReadModel,
    project_pk: i64,
    pks: &[i64],
) -> StoreResult<()> {
    let _serial = model.refresh.lock().await;
    if !model.is_loaded(project_pk) || pks.is_empty() {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    let mut changes: Vec<(i64, Option<BatchEntry>)> = Vec::with_capacity(pks.len());
    for chunk in pks.chunks(500) {
        let found = load_entries(&mut conn, positional, project_pk, Some(chunk)).await?;
        for pk in chunk {
            changes.push((*pk, found.iter().find(|e| e.pk == *pk).cloned()));
        }
    }
    model.apply(project_pk, changes);
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.run_migrations().await
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn probe_write(&self) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Rewrites one row with its own value: a page (or tuple) written and
        // committed, no data changed.
        sqlx::query(
            "update schema_migrations set applied_at = applied_at \
             where name = (select min(name) from schema_migrations)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn count_tasks_by_state(&self) -> StoreResult<Vec<(TaskState, i64)>> {
        let sums: Vec<String> = TaskState::ALL
            .iter()
            .map(|s| {
                let c = s.counter_column();
                format!("cast(coalesce(sum({c}), 0) as bigint) as {c}")
            })
            .collect();
        let mut tx = self.begin_read().await?;
        let row = sqlx::query(&format!("select {} from batch_tasks", sums.join(", ")))
            .fetch_one(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(TaskState::ALL.len());
        for s in TaskState::ALL {
            out.push((s, row.try_get::<i64, _>(s.counter_column())?));
        }
        let single = sqlx::query(
            "select state, count(*) as n from tasks where batch_pk is null group by state",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for r in single {
            let state = super::stored_state(r.try_get("state")?)?;
            let n: i64 = r.try_get("n")?;
            if let Some(e) = out.iter_mut().find(|(s, _)| *s == state) {
                e.1 += n;
            }
        }
        Ok(out)
    }

    fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    fn start_change_feed(&self) {
        self.backend
            .spawn_change_feed(self.pool.clone(), Arc::downgrade(&self.model), self.origin);
    }
}
