//! Bulk load of a dump in one transaction.

mod records;

use super::backend::{Backend, Lifted};
use super::catalogue::{group_pk, insert_group, insert_service, source_pk};
use super::identity::{insert_project, insert_user, project_pk};
use super::read_model::ReadModel;
use super::sql::{self, Arg};
use super::sql_store::{bound, is_unique_violation, SqlStore, Tx};
use super::{
    DeployType, ImportError, ImportedCount, Importer, NewService, StoreError, StoreResult,
};
use crate::domain::dump::{BatchTaskRecord, DumpRecord, VideoSourceRecord};
use crate::domain::{field, now_millis, random_hex, TaskState};
use crate::store::{Entity, NewVideoGroup};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Rows per multi-row statement. One statement per row costs a round
/// trip each (a thread handoff on SQLite), which dominated bulk
/// loads; these keep every statement well under both backends'
/// parameter limits.
const TASK_CHUNK: usize = 500;
const SOURCE_CHUNK: usize = 500;
const BATCH_CHUNK: usize = 80;
/// Pending work that triggers a flush.
const FLUSH_SOURCES: usize = 2_000;
const FLUSH_TASKS: usize = 20_000;
const FLUSH_BATCHES: usize = 800;

#[derive(Clone)]
struct ServiceInfo {
    pk: i64,
    alg_name: String,
    company: String,
    task_type: &'static str,
}

struct PendingSource {
    line: u64,
    ppk: i64,
    id: String,
    name: String,
    url: String,
    created_at: i64,
    updated_at: i64,
    group_pks: Vec<i64>,
    deleted: bool,
    access_type: &'static str,
    source_type: String,
    type_config: String,
    latitude: Option<String>,
    longitude: Option<String>,
    tags: String,
}

struct PendingTask {
    id: String,
    source_pk: i64,
    state: TaskState,
    created_at: i64,
    updated_at: i64,
    target_roi: Option<String>,
}

struct PendingBatch {
    line: u64,
    ppk: i64,
    id: String,
    name: String,
    description: String,
    service_name: String,
    service_version: String,
    service: ServiceInfo,
    priority: &'static str,
    config: String,
    output: String,
    created_at: i64,
    group_pks: Vec<i64>,
    tasks: Vec<PendingTask>,
    schedule: Option<String>,
    resource_order_id: Option<String>,
    saved_as_template: bool,
}

/// A bulk load in one transaction. Records are checked as they come
/// (so an error names its line), buffered, and written many rows per
/// statement; uniqueness against rows already in the database is
/// checked in bulk before each write, so those errors name their
/// line too.
pub(super) struct SqlImporter {
    /// The load's transaction; `None` while `busy` writes on it.
    tx: Option<Tx>,
    /// A write of tasks running in the background on the transaction, so
    /// the next records are checked while the database writes (on
    /// PostgreSQL the two took turns); it hands the transaction back.
    busy: Option<tokio::task::JoinHandle<Result<Tx, ImportError>>>,
    /// What the background write failed with, reported in place of
    /// whatever error the load meets next.
    failed: Option<ImportError>,
    projects: HashMap<String, i64>,
    /// Source pks by project pk, then id (looked up once per task, so
    /// without building a key).
    sources: HashMap<i64, HashMap<String, i64>>,
    groups: HashMap<(i64, String), i64>,
    services: HashMap<(i64, String, String), ServiceInfo>,
    pending_sources: Vec<PendingSource>,
    pending_source_ids: HashSet<(i64, String)>,
    pending_batches: Vec<PendingBatch>,
    pending_tasks: usize,
    /// Batch ids ("i" + id) and names ("n" + name) seen in this load.
    batch_keys: HashSet<(i64, String)>,
    /// Projects that gained batches; their views are reloaded after commit.
    touched: HashSet<i64>,
    model: Arc<ReadModel>,
    backend: Arc<dyn Backend>,
    positional: bool,
    bulk: sql::Bulk,
    origin: i64,
    /// The tasks' secondary indexes were dropped for this load (the table
    /// was empty) and are built once at commit.
    rebuild_indexes: bool,
    /// Tables that held no rows when the load began. A clash with a row
    /// this load wrote is caught in memory, so these are never asked: on
    /// PostgreSQL the planner, still holding the empty table's statistics,
    /// answered each bulk check by reading every row of the project
    /// (50 ms per 500 ids, two thirds of a restore's time).
    empty_at_start: HashSet<&'static str>,
    /// The checks lifted for this load, put back at commit.
    lifted: Vec<Lifted>,
    /// Batches with a schedule (line, pk): their windows are armed at
    /// commit, once the tasks' indexes are back.
    scheduled: Vec<(u64, i64)>,
}

/// The tasks' secondary indexes that no insert of a load checks, as the
/// migrations define them (name, definition): kept up row by row they cost a
/// restore a large part of its speed; built once over the loaded rows each
/// costs a sort. `tasks_by_pick` is the backend's own
/// (`Backend::pick_index`).
const REBUILT_INDEXES: [(&str, &str); 2] = [
    (
        "tasks_by_source",
        "create index tasks_by_source on tasks (video_source_pk) where video_source_pk is not null",
    ),
    (
        "tasks_by_state",
        "create index tasks_by_state on tasks (state, pk)",
    ),
];

/// The tables a load writes in bulk (each has a `pk`), with those whose
/// checks it may lift when the first is empty (the others hang off it).
const LIFTED_TABLES: [(&str, &[&str]); 3] = [
    ("video_sources", &["video_sources", "video_source_groups"]),
    ("batch_tasks", &["batch_tasks", "batch_task_groups"]),
    ("tasks", &["tasks"]),
];

/// How long opening an import keeps trying to take the locks it needs
/// while other transactions hold them.
const IMPORT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the import transaction. Lifting constraints and dropping indexes
/// lock whole tables, while a running `serve` reads and writes the same
/// tables. Taken one statement at a time, the import would hold one table
/// while waiting for another that a `serve` transaction holds, and the
/// database would end that as a deadlock, failing either side. So the
/// opening takes every table lock it needs in one statement that waits
/// only briefly (`Backend::lock_for_import`); if that fails it rolls back,
/// holding nothing, and starts again. Nothing has been read from the dump
/// yet, so starting again loses nothing.
#[tracing::instrument(skip_all, level = "debug")]
pub(super) async fn begin_import(s: &SqlStore) -> StoreResult<Box<dyn Importer>> {
    let began = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    let (mut tx, empty_at_start) = loop {
        let mut tx = s.begin_write().await?;
        // The dump's input sets the pace (a pipe may pause).
        s.backend.allow_idle(&mut tx).await?;
        match open_import(s, &mut tx).await {
            Ok(empty) => break (tx, empty),
            Err(e) => {
                // Now, not when the connection is next used: the next
                // attempt must not find this one's locks still held.
                let _ = tx.rollback().await;
                if !(s.backend.lock_conflict(&e) && began.elapsed() < IMPORT_LOCK_WAIT) {
                    return Err(e);
                }
                tracing::info!(error = %e, "the import waits for other transactions' table locks");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
        }
    };
    // A restore into an empty database (the bulk case) builds the indexes
    // at the end instead; a load next to existing tasks keeps them, so
    // other processes reading those tasks are never without them.
    let rebuild_indexes = empty_at_start.contains("tasks");
    // Only tables no other transaction has rows in: their rows are all this
    // load's, whose keys it resolved itself.
    let empty: Vec<&str> = lifted_of(&empty_at_start);
    let lifted = s.backend.lift_checks(&mut tx, &empty).await?;
    if rebuild_indexes {
        for name in REBUILT_INDEXES
            .iter()
            .map(|(name, _)| *name)
            .chain(["tasks_by_pick"])
        {
            sqlx::query(&format!("drop index if exists {name}"))
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(Box::new(SqlImporter {
        tx: Some(tx),
        busy: None,
        failed: None,
        projects: HashMap::new(),
        sources: HashMap::new(),
        groups: HashMap::new(),
        services: HashMap::new(),
        pending_sources: Vec::new(),
        pending_source_ids: HashSet::new(),
        pending_batches: Vec::new(),
        pending_tasks: 0,
        batch_keys: HashSet::new(),
        touched: HashSet::new(),
        model: s.model.clone(),
        backend: s.backend.clone(),
        positional: s.backend.positional(),
        bulk: s.backend.bulk(),
        origin: s.origin,
        rebuild_indexes,
        empty_at_start,
        lifted,
        scheduled: Vec::new(),
    }))
}

/// The tables whose checks a load lifts, given the empty ones.
fn lifted_of(empty_at_start: &HashSet<&'static str>) -> Vec<&'static str> {
    LIFTED_TABLES
        .into_iter()
        .filter(|(t, _)| empty_at_start.contains(t))
        .flat_map(|(_, lifted)| lifted.iter().copied())
        .collect()
}

/// Which first tables of `LIFTED_TABLES` hold no row now.
async fn empty_tables(tx: &mut Tx) -> StoreResult<HashSet<&'static str>> {
    let mut empty = HashSet::new();
    for (table, _) in LIFTED_TABLES {
        let any: Option<i64> = sqlx::query_scalar(&format!("select pk from {table} limit 1"))
            .fetch_optional(&mut **tx)
            .await?;
        if any.is_none() {
            empty.insert(table);
        }
    }
    Ok(empty)
}

/// Tunes the load's transaction, finds the tables it will lift checks on
/// (`tasks` among them when it has no row, whose indexes are then dropped
/// too), locks them, and looks again under the locks: a row committed in
/// between keeps its table's checks. The tables empty under the locks.
async fn open_import(s: &SqlStore, tx: &mut Tx) -> StoreResult<HashSet<&'static str>> {
    s.backend.tune_for_import(tx).await?;
    let first = empty_tables(tx).await?;
    s.backend.lock_for_import(tx, &lifted_of(&first)).await?;
    let now = empty_tables(tx).await?;
    Ok(first.intersection(&now).copied().collect())
}

/// The columns a batch's task rows fill, in order.
const TASK_COLUMNS: &str = "tasks (project_pk, id, batch_pk, video_source_pk, state, created_at, \
     updated_at, prio, task_type, target_roi)";

/// Columns `inserted_key` decodes, after a multi-row insert.
const INSERTED_COLS: &str = " returning pk, project_pk, id";

/// A row inserted in bulk: its pk, and its (project pk, id).
fn inserted_key(r: &sqlx::any::AnyRow) -> StoreResult<(i64, (i64, String))> {
    Ok((
        r.try_get("pk")?,
        (r.try_get("project_pk")?, r.try_get("id")?),
    ))
}

fn at(line: u64) -> impl Fn(StoreError) -> ImportError {
    move |error| ImportError { line, error }
}

impl SqlImporter {
    /// The transaction, once any background write on it has finished.
    async fn conn(&mut self) -> StoreResult<&mut Tx> {
        if let Some(busy) = self.busy.take() {
            match busy.await {
                Ok(Ok(tx)) => self.tx = Some(tx),
                Ok(Err(e)) => self.failed = Some(e),
                Err(e) => {
                    self.failed = Some(ImportError {
                        line: 0,
                        error: StoreError::Internal(format!("the background write ended: {e}")),
                    })
                }
            }
        }
        self.tx
            .as_mut()
            .ok_or_else(|| StoreError::Internal("an earlier write of this load failed".into()))
    }

    /// `error`, or what the background write failed with (the cause).
    fn first_error(&mut self, error: ImportError) -> ImportError {
        self.failed.take().unwrap_or(error)
    }

    async fn project(&mut self, id: &str) -> StoreResult<i64> {
        if let Some(pk) = self.projects.get(id) {
            return Ok(*pk);
        }
        let pk = project_pk(self.conn().await?, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::Project, "project_id"))?;
        self.projects.insert(id.to_owned(), pk);
        Ok(pk)
    }

    async fn group(&mut self, ppk: i64, gid: &str, param: &str) -> StoreResult<i64> {
        let key = (ppk, gid.to_owned());
        if let Some(pk) = self.groups.get(&key) {
            return Ok(*pk);
        }
        let pk = group_pk(self.conn().await?, ppk, gid)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: Entity::VideoGroup,
                param: param.into(),
            })?;
        self.groups.insert(key, pk);
        Ok(pk)
    }

    async fn service(&mut self, ppk: i64, name: &str, version: &str) -> StoreResult<ServiceInfo> {
        let key = (ppk, name.to_owned(), version.to_owned());
        if let Some(s) = self.services.get(&key) {
            return Ok(s.clone());
        }
        let r = sqlx::query(
            "select pk, alg_name, company, deploy_type from services \
             where project_pk = $1 and service_name = $2 and service_version = $3",
        )
        .bind(ppk)
        .bind(name)
        .bind(version)
        .fetch_optional(&mut **self.conn().await?)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::Service, "service_name"))?;
        let deploy: String = r.try_get("deploy_type")?;
        let info = ServiceInfo {
            pk: r.try_get("pk")?,
            alg_name: r.try_get("alg_name")?,
            company: r.try_get("company")?,
            task_type: DeployType::parse(&deploy)
                .unwrap_or(DeployType::Cloud)
                .task_type(),
        };
        self.services.insert(key, info.clone());
        Ok(info)
    }

    async fn source(&mut self, ppk: i64, sid: &str) -> StoreResult<i64> {
        if let Some(pk) = self.sources.get(&ppk).and_then(|m| m.get(sid)) {
            return Ok(*pk);
        }
        let pk = source_pk(self.conn().await?, ppk, sid)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "tasks.video_source_id"))?;
        self.sources
            .entry(ppk)
            .or_default()
            .insert(sid.to_owned(), pk);
        Ok(pk)
    }

    /// Ids among `ids` that already exist in `table` for the project,
    /// checked in bulk.
    async fn existing(
        &mut self,
        table: &str,
        column: &str,
        ppk: i64,
        ids: &[&str],
    ) -> StoreResult<HashSet<String>> {
        let mut found = HashSet::new();
        if self.empty_at_start.contains(table) {
            return Ok(found);
        }
        for chunk in ids.chunks(500) {
            let mut q = sql::Query::new(self.positional);
            q.push("select ")
                .push(column)
                .push(" as found from ")
                .push(table)
                .push(" where project_pk = ")
                .bind(Arg::Int(ppk));
            q.push(" and ").push(column).push(" in ");
            q.bind_list(&chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            for r in bound(&q).fetch_all(&mut **self.conn().await?).await? {
                found.insert(r.try_get::<String, _>("found")?);
            }
        }
        Ok(found)
    }

    /// Writes `rows` into `into` (`table (columns)`) in the background,
    /// after any write already there: nothing the load reads later depends
    /// on them, and the next records are checked meanwhile. `lines` holds
    /// each row's line, for errors; a task id used twice is named as such.
    async fn write_behind(
        &mut self,
        into: &'static str,
        rows: Vec<Vec<Arg>>,
        lines: Vec<u64>,
        values_rows: usize,
    ) -> Result<(), ImportError> {
        let first = lines.first().copied().unwrap_or(0);
        self.conn().await.map_err(at(first))?;
        let bulk = self.bulk;
        let Some(mut tx) = self.tx.take() else {
            return Ok(());
        };
        self.busy = Some(tokio::spawn(async move {
            for (range, q) in sql::bulk_insert(bulk, into, &rows, values_rows, "") {
                let (from, to) = (lines[range.start], lines[range.end - 1]);
                bound(&q).execute(&mut *tx).await.map_err(|e| {
                    if into.starts_with("tasks ") && is_unique_violation(&e) {
                        ImportError {
                            line: from,
                            error: StoreError::Invalid(field::FieldError::new(
                                "tasks.id",
                                format!(
                                    "a task id in lines {from} to {to} is used twice or exists already"
                                ),
                            )),
                        }
                    } else {
                        at(from)(e.into())
                    }
                })?;
            }
            Ok(tx)
        }));
        Ok(())
    }

    /// Integer triples into `into` (`table (a, b, c)`), in the background.
    async fn insert_triples(
        &mut self,
        into: &'static str,
        rows: &[(i64, i64, i64)],
        line: u64,
    ) -> Result<(), ImportError> {
        let rows: Vec<Vec<Arg>> = rows
            .iter()
            .map(|(a, b, c)| vec![Arg::Int(*a), Arg::Int(*b), Arg::Int(*c)])
            .collect();
        let lines = vec![line; rows.len()];
        self.write_behind(into, rows, lines, TASK_CHUNK).await
    }

    async fn flush_sources(&mut self) -> Result<(), ImportError> {
        if self.pending_sources.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_sources);
        self.pending_source_ids.clear();
        let first_line = pending[0].line;
        let mut by_project: HashMap<i64, Vec<&str>> = HashMap::new();
        for s in &pending {
            by_project.entry(s.ppk).or_default().push(&s.id);
        }
        for (ppk, ids) in by_project {
            let clash = self
                .existing("video_sources", "id", ppk, &ids)
                .await
                .map_err(at(first_line))?;
            if let Some(s) = pending
                .iter()
                .find(|s| s.ppk == ppk && clash.contains(&s.id))
            {
                return Err(ImportError {
                    line: s.line,
                    error: StoreError::conflict(Entity::VideoSource, "id"),
                });
            }
        }
        let text = |v: &Option<String>| v.clone().map_or(Arg::Null, Arg::Text);
        let rows: Vec<Vec<Arg>> = pending
            .iter()
            .map(|s| {
                vec![
                    Arg::Int(s.ppk),
                    Arg::Text(s.id.clone()),
                    Arg::Text(s.name.clone()),
                    Arg::Text(s.url.clone()),
                    Arg::Int(s.created_at),
                    Arg::Int(i64::from(s.deleted)),
                    Arg::Int(s.updated_at),
                    Arg::Text(s.access_type.to_owned()),
                    Arg::Text(s.source_type.clone()),
                    Arg::Text(s.type_config.clone()),
                    text(&s.latitude),
                    text(&s.longitude),
                    Arg::Text(s.tags.clone()),
                ]
            })
            .collect();
        for (range, q) in sql::bulk_insert(
            self.bulk,
            "video_sources (project_pk, id, name, url, created_at, deleted, updated_at, \
             access_type, source_type, type_config, latitude, longitude, tags)",
            &rows,
            SOURCE_CHUNK,
            INSERTED_COLS,
        ) {
            let line = pending[range.start].line;
            let tx = self.conn().await.map_err(at(line))?;
            for r in bound(&q)
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| at(line)(e.into()))?
            {
                let (pk, (ppk, id)) = inserted_key(&r).map_err(at(line))?;
                self.sources.entry(ppk).or_default().insert(id, pk);
            }
        }
        let mut links: Vec<(i64, i64, i64)> = Vec::new();
        for s in &pending {
            let spk = self
                .sources
                .get(&s.ppk)
                .and_then(|m| m.get(&s.id))
                .copied()
                .unwrap_or(0);
            for (pos, g) in s.group_pks.iter().enumerate() {
                links.push((spk, pos as i64, *g));
            }
        }
        self.insert_triples(
            "video_source_groups (source_pk, position, group_pk)",
            &links,
            first_line,
        )
        .await?;
        Ok(())
    }

    async fn flush_batches(&mut self) -> Result<(), ImportError> {
        if self.pending_batches.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_batches);
        self.pending_tasks = 0;
        let first_line = pending[0].line;
        // Clashes with batches and tasks already in the database.
        let mut by_project: HashMap<i64, Vec<&PendingBatch>> = HashMap::new();
        for b in &pending {
            by_project.entry(b.ppk).or_default().push(b);
        }
        for (ppk, list) in &by_project {
            let ids: Vec<&str> = list.iter().map(|b| b.id.as_str()).collect();
            let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
            let id_clash = self
                .existing("batch_tasks", "id", *ppk, &ids)
                .await
                .map_err(at(first_line))?;
            let name_clash = self
                .existing("batch_tasks", "name", *ppk, &names)
                .await
                .map_err(at(first_line))?;
            for b in list {
                if id_clash.contains(&b.id) {
                    return Err(ImportError {
                        line: b.line,
                        error: StoreError::conflict(Entity::BatchTask, "id"),
                    });
                }
                if name_clash.contains(&b.name) {
                    return Err(ImportError {
                        line: b.line,
                        error: StoreError::conflict(Entity::BatchTask, "name"),
                    });
                }
            }
            // Task ids are not checked ahead: a clash fails the insert
            // below and is reported with the range of lines it spans.
        }
        let mut pks: HashMap<(i64, String), i64> = HashMap::new();
        let mut into = String::from(
            "batch_tasks (project_pk, id, name, name_lc, description, service_pk, service_name, \
             service_name_lc, service_version, alg_name, company, task_type, priority, config, output, created_at, num_task",
        );
        for c in crate::domain::state::COUNTER_COLUMNS {
            into.push_str(", ");
            into.push_str(c);
        }
        into.push(')');
        let rows: Vec<Vec<Arg>> = pending
            .iter()
            .map(|b| {
                let mut counts = [0i64; 18];
                for t in &b.tasks {
                    counts[t.state.index()] += 1;
                }
                [
                    Arg::Int(b.ppk),
                    Arg::Text(b.id.clone()),
                    Arg::Text(b.name.clone()),
                    Arg::Text(b.name.to_lowercase()),
                    Arg::Text(b.description.clone()),
                    Arg::Int(b.service.pk),
                    Arg::Text(b.service_name.clone()),
                    Arg::Text(b.service_name.to_lowercase()),
                    Arg::Text(b.service_version.clone()),
                    Arg::Text(b.service.alg_name.clone()),
                    Arg::Text(b.service.company.clone()),
                    Arg::Text(b.service.task_type.to_owned()),
                    Arg::Text(b.priority.to_owned()),
                    Arg::Text(b.config.clone()),
                    Arg::Text(b.output.clone()),
                    Arg::Int(b.created_at),
                    Arg::Int(b.tasks.len() as i64),
                ]
                .into_iter()
                .chain(counts.into_iter().map(Arg::Int))
                .collect()
            })
            .collect();
        for (range, q) in sql::bulk_insert(self.bulk, &into, &rows, BATCH_CHUNK, INSERTED_COLS) {
            let line = pending[range.start].line;
            let tx = self.conn().await.map_err(at(line))?;
            for r in bound(&q).fetch_all(&mut **tx).await.map_err(|e| {
                at(line)(if is_unique_violation(&e) {
                    StoreError::conflict(Entity::BatchTask, "name")
                } else {
                    e.into()
                })
            })? {
                let (pk, key) = inserted_key(&r).map_err(at(line))?;
                pks.insert(key, pk);
            }
        }
        let mut group_rows: Vec<(i64, i64, i64)> = Vec::new();
        let mut task_rows: Vec<(u64, i64, i64, &PendingTask, &PendingBatch)> = Vec::new();
        for b in &pending {
            let bpk = pks.get(&(b.ppk, b.id.clone())).copied().unwrap_or(0);
            for (pos, g) in b.group_pks.iter().enumerate() {
                group_rows.push((bpk, pos as i64, *g));
            }
            for t in &b.tasks {
                task_rows.push((b.line, b.ppk, bpk, t, b));
            }
            self.touched.insert(b.ppk);
        }
        self.insert_triples(
            "batch_task_groups (batch_pk, position, group_pk)",
            &group_rows,
            first_line,
        )
        .await?;
        // Rare fields, written one by one where set.
        for b in &pending {
            if b.schedule.is_some() || b.resource_order_id.is_some() || b.saved_as_template {
                let bpk = pks.get(&(b.ppk, b.id.clone())).copied().unwrap_or(0);
                sqlx::query(
                    "update batch_tasks set schedule = $1, resource_order_id = $2, \
                     saved_as_template = $3 where pk = $4",
                )
                .bind(&b.schedule)
                .bind(&b.resource_order_id)
                .bind(i64::from(b.saved_as_template))
                .bind(bpk)
                .execute(&mut **self.conn().await.map_err(at(b.line))?)
                .await
                .map_err(|e| at(b.line)(e.into()))?;
            }
        }
        let lines: Vec<u64> = task_rows.iter().map(|r| r.0).collect();
        let rows: Vec<Vec<Arg>> = task_rows
            .iter()
            .map(|(_, ppk, bpk, t, b)| {
                vec![
                    Arg::Int(*ppk),
                    Arg::Text(t.id.clone()),
                    Arg::Int(*bpk),
                    Arg::Int(t.source_pk),
                    Arg::Int(t.state.index() as i64),
                    Arg::Int(t.created_at),
                    Arg::Int(t.updated_at),
                    Arg::Int(sql::prio_rank(b.priority)),
                    Arg::Text(b.service.task_type.to_owned()),
                    t.target_roi.clone().map_or(Arg::Null, Arg::Text),
                ]
            })
            .collect();
        self.write_behind(TASK_COLUMNS, rows, lines, TASK_CHUNK)
            .await?;
        for b in pending.iter().filter(|b| b.schedule.is_some()) {
            let bpk = pks.get(&(b.ppk, b.id.clone())).copied().unwrap_or(0);
            self.scheduled.push((b.line, bpk));
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), ImportError> {
        self.flush_sources().await?;
        self.flush_batches().await
    }

    async fn put_source(&mut self, line: u64, s: VideoSourceRecord, now: i64) -> StoreResult<()> {
        let ppk = self.project(&s.project_id).await?;
        field::check_id("id", &s.id)?;
        field::check_display_name("name", &s.name, 1, 64)?;
        field::check_text("url", &s.url, 2048)?;
        if s.url.trim().is_empty() {
            return Err(field::FieldError::new("url", "url must not be empty").into());
        }
        let key = (ppk, s.id.clone());
        let known = self
            .sources
            .get(&ppk)
            .is_some_and(|m| m.contains_key(&s.id));
        if known || self.pending_source_ids.contains(&key) {
            return Err(StoreError::conflict(Entity::VideoSource, "id"));
        }
        let mut group_pks = Vec::with_capacity(s.group_ids.len());
        for gid in &s.group_ids {
            let gpk = self.group(ppk, gid, "group_ids").await?;
            if group_pks.contains(&gpk) {
                return Err(field::FieldError::new(
                    "group_ids",
                    format!("group {gid:?} is listed twice"),
                )
                .into());
            }
            group_pks.push(gpk);
        }
        let access_type = match s.access_type.as_deref() {
            None => DeployType::Cloud,
            Some(a) => DeployType::parse(a).ok_or_else(|| {
                field::FieldError::new("access_type", "access_type must be cloud or edge")
            })?,
        };
        let type_config = s
            .type_config
            .unwrap_or_else(|| crate::domain::vias::url_type_config(&s.url));
        field::check_text("type_config", &type_config, 4096)?;
        for t in &s.tags {
            field::check_text("tags", t, 64)?;
        }
        self.pending_source_ids.insert(key);
        let created_at = s.created_at.unwrap_or(now);
        self.pending_sources.push(PendingSource {
            line,
            ppk,
            id: s.id,
            name: s.name,
            url: s.url,
            created_at,
            updated_at: s.updated_at.unwrap_or(created_at),
            group_pks,
            deleted: s.deleted,
            access_type: access_type.as_str(),
            source_type: s.source_type.unwrap_or_else(|| "url".into()),
            type_config,
            latitude: s.latitude,
            longitude: s.longitude,
            tags: serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into()),
        });
        Ok(())
    }

    async fn put_batch(&mut self, line: u64, b: BatchTaskRecord) -> StoreResult<u64> {
        let ppk = self.project(&b.project_id).await?;
        field::check_batch_id("id", &b.id)?;
        field::check_batch_name("name", &b.name)?;
        let description = b.description.unwrap_or_default();
        field::check_text("description", &description, 500)?;
        let priority = field::parse_priority("priority", &b.priority)?;
        if self.batch_keys.contains(&(ppk, format!("i{}", b.id))) {
            return Err(StoreError::conflict(Entity::BatchTask, "id"));
        }
        if self.batch_keys.contains(&(ppk, format!("n{}", b.name))) {
            return Err(StoreError::conflict(Entity::BatchTask, "name"));
        }
        let service = self
            .service(ppk, &b.service_name, &b.service_version)
            .await?;
        let mut group_pks = Vec::with_capacity(b.group_ids.len());
        for gid in &b.group_ids {
            let gpk = self.group(ppk, gid, "group_ids").await?;
            if group_pks.contains(&gpk) {
                return Err(field::FieldError::new(
                    "group_ids",
                    format!("group {gid:?} is listed twice"),
                )
                .into());
            }
            group_pks.push(gpk);
        }
        let mut tasks = Vec::with_capacity(b.tasks.len());
        let mut seen_sources = HashSet::new();
        for t in b.tasks {
            field::check_id("tasks.id", &t.id)?;
            let state = t.state.parse::<TaskState>().map_err(|_| {
                field::FieldError::new("tasks.state", format!("{:?} is not a task state", t.state))
            })?;
            let source_pk = self.source(ppk, &t.video_source_id).await?;
            if !seen_sources.insert(source_pk) {
                return Err(field::FieldError::new(
                    "tasks.video_source_id",
                    format!(
                        "video source {:?} has two tasks in this batch",
                        t.video_source_id
                    ),
                )
                .into());
            }
            let created_at = t.created_at.unwrap_or(b.created_at);
            tasks.push(PendingTask {
                id: t.id,
                source_pk,
                state,
                created_at,
                updated_at: t.updated_at.unwrap_or(created_at),
                target_roi: t.target_roi,
            });
        }
        let n = tasks.len() as u64;
        self.batch_keys.insert((ppk, format!("i{}", b.id)));
        self.batch_keys.insert((ppk, format!("n{}", b.name)));
        self.pending_tasks += tasks.len();
        self.pending_batches.push(PendingBatch {
            line,
            ppk,
            id: b.id,
            name: b.name,
            description,
            service_name: b.service_name,
            service_version: b.service_version,
            service,
            priority,
            config: b
                .config
                .unwrap_or_else(|| serde_json::json!({}))
                .to_string(),
            output: b
                .output
                .unwrap_or_else(|| serde_json::json!({}))
                .to_string(),
            created_at: b.created_at,
            group_pks,
            tasks,
            schedule: b.schedule.map(|v| v.to_string()),
            resource_order_id: b.resource_order_id,
            saved_as_template: b.saved_as_template,
        });
        Ok(n)
    }
}

#[async_trait]
impl Importer for SqlImporter {
    #[tracing::instrument(skip_all, level = "debug", fields(line = line))]
    async fn put(&mut self, line: u64, record: DumpRecord) -> Result<ImportedCount, ImportError> {
        let put = self.put_record(line, record).await;
        put.map_err(|e| self.first_error(e))
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn commit(self: Box<Self>) -> Result<(), ImportError> {
        let mut this = *self;
        let done = this.finish().await;
        match done {
            Ok(tx) => tx.commit().await.map_err(|e| ImportError {
                line: 0,
                error: e.into(),
            })?,
            Err(e) => return Err(this.first_error(e)),
        }
        for p in &this.touched {
            this.model.forget(*p);
        }
        Ok(())
    }
}

impl SqlImporter {
    async fn put_record(
        &mut self,
        line: u64,
        record: DumpRecord,
    ) -> Result<ImportedCount, ImportError> {
        let now = now_millis();
        match record {
            DumpRecord::VideoSource(s) => {
                self.put_source(line, s, now).await.map_err(at(line))?;
                if self.pending_sources.len() >= FLUSH_SOURCES {
                    self.flush_sources().await?;
                }
                Ok(ImportedCount::default())
            }
            DumpRecord::BatchTask(b) => {
                // Tasks name sources: those must be written first.
                self.flush_sources().await?;
                let tasks = self.put_batch(line, b).await.map_err(at(line))?;
                if self.pending_tasks >= FLUSH_TASKS || self.pending_batches.len() >= FLUSH_BATCHES
                {
                    self.flush_batches().await?;
                }
                Ok(ImportedCount { tasks })
            }
            other => {
                self.flush_all().await?;
                self.put_parent(other, now).await.map_err(at(line))?;
                Ok(ImportedCount::default())
            }
        }
    }

    /// Writes what is left, puts the lifted checks and indexes back, and
    /// hands over the transaction, ready to commit.
    async fn finish(&mut self) -> Result<Tx, ImportError> {
        self.flush_all().await?;
        let last = |e: StoreError| ImportError { line: 0, error: e };
        self.conn().await.map_err(last)?;
        let Some(mut tx) = self.tx.take() else {
            return Err(last(StoreError::Internal(
                "the load has no transaction".into(),
            )));
        };
        if self.rebuild_indexes {
            let pick = self.backend.pick_index();
            for create in REBUILT_INDEXES.iter().map(|(_, c)| *c).chain([pick]) {
                sqlx::query(create)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| last(e.into()))?;
            }
        }
        self.backend
            .restore_checks(&mut tx, &self.lifted)
            .await
            .map_err(last)?;
        for (line, bpk) in &self.scheduled {
            crate::store::batch::arm_windows(&mut tx, *bpk, true)
                .await
                .map_err(at(*line))?;
        }
        self.backend.after_import(&mut tx).await.map_err(last)?;
        let changes: Vec<(i64, i64)> = self.touched.iter().map(|p| (*p, 0)).collect();
        self.backend
            .record_change(&mut tx, self.origin, &changes)
            .await
            .map_err(last)?;
        Ok(tx)
    }
}
