//! Workers: their credentials, registration, the heartbeat that reconciles
//! what a worker runs with what it holds, and its reports on tasks.

use super::moves::{in_list, key_from, move_alike, move_task, TaskKey, Touched, KEY_COLS};
use super::{Applied, Assignment, Held, SyncReply, WorkerCredential, WorkerReport, WorkerRow};
use crate::domain::transition::{self, Cause, Event, Outcome, HELD};
use crate::domain::{field, now_millis, DeployType, TaskState};
use crate::scheduler::decide;
use crate::store::prelude::*;
use crate::store::sql::{self, Arg};
use crate::store::sql_store::{bound, SqlStore};
use crate::store::Entity;
use crate::store::{stored_state, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{HashMap, VecDeque};

/// Columns `assignment_from` decodes, with the joins they need.
const ASSIGN_COLS: &str = "t.pk as pk, t.attempt as attempt, p.id as project_id, \
     t.id as task_id, b.id as batch_id, coalesce(s.url, t.source_url, '') as source_url, \
     coalesce(s.type_config, '') as source_config, coalesce(t.input, '') as input, \
     coalesce(b.config, t.config, '{}') as config, \
     coalesce(b.service_name, v.service_name, '') as service_name, \
     coalesce(b.service_version, t.service_version, '') as service_version, t.state as state, \
     t.project_pk as project_pk, t.batch_pk as batch_pk, t.updated_at as updated_at from tasks t \
     join projects p on p.pk = t.project_pk left join video_sources s on s.pk = t.video_source_pk \
     left join batch_tasks b on b.pk = t.batch_pk left join services v on v.pk = t.service_pk";

fn assignment_from(r: &AnyRow) -> StoreResult<(Assignment, TaskState)> {
    Ok((
        Assignment {
            task: r.try_get("pk")?,
            attempt: r.try_get("attempt")?,
            project_id: r.try_get("project_id")?,
            task_id: r.try_get("task_id")?,
            batch_id: r.try_get("batch_id")?,
            source_url: r.try_get("source_url")?,
            source_config: r.try_get("source_config")?,
            input: r.try_get("input")?,
            config: r.try_get("config")?,
            service_name: r.try_get("service_name")?,
            service_version: r.try_get("service_version")?,
        },
        stored_state(r.try_get("state")?)?,
    ))
}

/// Columns `worker_from` decodes.
/// What a worker holds as the server sees it: each task with its state,
/// what the worker needs to run it, and the key to move it.
struct HeldView {
    held: Vec<(Held, TaskState)>,
    assignments: HashMap<Held, Assignment>,
    keys: HashMap<Held, TaskKey>,
    /// Each task's last move.
    moved_at: HashMap<Held, i64>,
}

impl HeldView {
    /// What the worker runs, as far as the sync can tell: its list, and the
    /// tasks that went running or upgrading at or after `listed` (the
    /// list may be older than they are).
    fn running(&self, running: &[Held], listed: i64) -> Vec<Held> {
        let mut all = running.to_vec();
        all.extend(self.held.iter().filter_map(|(h, state)| {
            let since = self.moved_at.get(h).is_some_and(|at| *at >= listed);
            (since && matches!(state, TaskState::Running | TaskState::Upgrading)).then_some(*h)
        }));
        all
    }
}

/// The worker's tasks in `states` (a subset of [`HELD`]).
async fn read_held(
    conn: &mut sqlx::AnyConnection,
    worker_pk: i64,
    states: &[TaskState],
) -> StoreResult<HeldView> {
    let held_rows = sqlx::query(&format!(
        "select {ASSIGN_COLS} where t.worker_pk = $1 and t.state in ({}) order by t.pk",
        in_list(states)
    ))
    .bind(worker_pk)
    .fetch_all(&mut *conn)
    .await?;
    let mut view = HeldView {
        held: Vec::with_capacity(held_rows.len()),
        assignments: HashMap::with_capacity(held_rows.len()),
        keys: HashMap::with_capacity(held_rows.len()),
        moved_at: HashMap::with_capacity(held_rows.len()),
    };
    for r in &held_rows {
        let (a, state) = assignment_from(r)?;
        let h = a.held();
        view.held.push((h, state));
        view.keys.insert(
            h,
            TaskKey {
                pk: h.task,
                project_pk: r.try_get("project_pk")?,
                batch_pk: r.try_get("batch_pk")?,
                state,
                worker_pk: Some(worker_pk),
                attempt: h.attempt,
            },
        );
        view.moved_at.insert(h, r.try_get("updated_at")?);
        view.assignments.insert(h, a);
    }
    Ok(view)
}

/// What a report did to `t`, and its key after (a later report on the same
/// task reads that).
fn after_report(keys: &mut HashMap<i64, TaskKey>, t: &TaskKey, moved: Option<Outcome>) -> Applied {
    match moved {
        Some(Outcome::To(to)) => {
            let k = TaskKey {
                state: to,
                worker_pk: t.worker_pk.filter(|_| transition::is_held(to)),
                ..t.clone()
            };
            keys.insert(t.pk, k);
        }
        Some(Outcome::Gone) => {
            keys.remove(&t.pk);
        }
        None => {}
    }
    match moved {
        Some(to) => Applied::Moved { from: t.state, to },
        None => Applied::Refused { state: t.state },
    }
}

/// The sync's reply: the assignments and upgrades `decided` names.
fn sync_reply(
    decided: &decide::Reconciled,
    assignments: &mut HashMap<Held, Assignment>,
) -> SyncReply {
    SyncReply {
        assign: decided
            .assign
            .iter()
            .filter_map(|h| assignments.remove(h))
            .collect(),
        stop: decided.stop.clone(),
        upgrade: decided
            .upgrade
            .iter()
            .filter_map(|h| assignments.remove(h))
            .collect(),
    }
}

impl SqlStore {
    /// A sync that moves nothing, answered without the lifecycle lock: the
    /// lease renewed and what the worker holds read in one short write
    /// transaction. `None` when the worker was lost or a task would move;
    /// the caller then takes the locked path.
    async fn sync_without_moves(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
        listed: i64,
    ) -> StoreResult<Option<SyncReply>> {
        let mut tx = self.begin_write().await?;
        let renewed =
            renew_and_reconcile(&mut tx, worker_pk, now + lease_ms, false, running, listed).await?;
        match renewed {
            Some((mut view, decided)) if decided.moves.is_empty() => {
                tx.commit().await?;
                Ok(Some(sync_reply(&decided, &mut view.assignments)))
            }
            _ => {
                tx.rollback().await?;
                Ok(None)
            }
        }
    }
}

/// Renews a worker's lease until `until` (a lost worker's only with
/// `revive`, a revoked one's never: a sync authenticated before the revoke
/// must not bring it back) and compares what it holds with what it runs;
/// `None` when no lease was renewed.
async fn renew_and_reconcile(
    conn: &mut sqlx::AnyConnection,
    worker_pk: i64,
    until: i64,
    revive: bool,
    running: &[Held],
    listed: i64,
) -> StoreResult<Option<(HeldView, decide::Reconciled)>> {
    let renewed = sqlx::query(
        "update workers set lease_expires_at = $1, lost = 0 \
         where pk = $2 and (lost = 0 or $3 = 1) and length(secret_hash) > 0",
    )
    .bind(until)
    .bind(worker_pk)
    .bind(i64::from(revive))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if renewed == 0 {
        return Ok(None);
    }
    let view = read_held(conn, worker_pk, &HELD).await?;
    let decided = decide::reconcile(&view.held, &view.running(running, listed));
    Ok(Some((view, decided)))
}

fn worker_cols() -> String {
    format!(
        "w.id as id, w.name as name, w.kind as kind, w.slots as slots, w.lost as lost, \
         w.lease_expires_at as lease_expires_at, w.pool as pool, (select count(*) from tasks t \
         where t.worker_pk = w.pk and t.state in ({})) as held",
        in_list(&HELD)
    )
}

fn worker_from(r: &AnyRow) -> StoreResult<WorkerRow> {
    Ok(WorkerRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        slots: r.try_get("slots")?,
        lost: r.try_get::<i64, _>("lost")? != 0,
        lease_expires_at: r.try_get("lease_expires_at")?,
        held: r.try_get("held")?,
        pool: r.try_get("pool")?,
    })
}

#[async_trait]
impl WorkerStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug")]
    async fn create_worker(&self, id: &str, name: &str, secret_hash: &[u8]) -> StoreResult<()> {
        field::check_id("id", id)?;
        field::check_display_name("name", name, 1, 64)?;
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("select pk from workers where id = $1 or name = $2")
                .bind(id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            return Err(StoreError::conflict(Entity::Worker, "name"));
        }
        sqlx::query(
            "insert into workers (id, name, secret_hash, created_at) values ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(secret_hash)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn find_worker_credential(&self, id: &str) -> StoreResult<Option<WorkerCredential>> {
        // Every request of every worker asks this: one statement on its
        // own, not a read transaction's three round trips.
        let r = sqlx::query("select pk, id, secret_hash from workers where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| {
            Ok(WorkerCredential {
                pk: r.try_get("pk")?,
                id: r.try_get("id")?,
                secret_hash: r.try_get("secret_hash")?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn revoke_worker(&self, key: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // An empty hash matches no credential; the lease ends now, and the
        // worker is lost at once, so no pass places a task on it meanwhile
        // (the next full pass reschedules what it holds).
        let n = sqlx::query(
            "update workers set secret_hash = $1, lease_expires_at = 0, lost = 1 \
             where id = $2 or name = $2",
        )
        .bind(Vec::<u8>::new())
        .bind(key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::not_found(Entity::Worker, "worker"));
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn list_workers(&self) -> StoreResult<Vec<WorkerRow>> {
        let mut tx = self.begin_read().await?;
        let rows = sqlx::query(&format!(
            "select {} from workers w order by w.id",
            worker_cols()
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(worker_from).collect()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(worker_pk = worker_pk))]
    async fn register_worker(
        &self,
        worker_pk: i64,
        kind: DeployType,
        slots: i64,
        pool: Option<&str>,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // A revoked worker (empty credential) stays out of service.
        let n = sqlx::query(
            "update workers set kind = $1, slots = $2, pool = $3, registered_at = $4, \
             lease_expires_at = $5, lost = 0 where pk = $6 and length(secret_hash) > 0",
        )
        .bind(kind.as_str())
        .bind(slots)
        .bind(pool)
        .bind(now)
        .bind(now + lease_ms)
        .bind(worker_pk)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::not_found(Entity::Worker, "worker"));
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(worker_pk = worker_pk))]
    async fn sync_worker_listed(
        &self,
        worker_pk: i64,
        now: i64,
        lease_ms: i64,
        running: &[Held],
        listed: i64,
    ) -> StoreResult<SyncReply> {
        // Most syncs move nothing: an idle worker's, and those that hand out
        // placements and confirm what runs. Those are answered from what the
        // worker holds, read without the lifecycle lock, so they never queue
        // behind the scheduler and the reports; a sync that would move a
        // task takes the full path.
        if let Some(reply) = self
            .sync_without_moves(worker_pk, now, lease_ms, running, listed)
            .await?
        {
            return Ok(reply);
        }
        let mut tx = self.begin_lifecycle().await?;
        let (view, decided) =
            renew_and_reconcile(&mut tx, worker_pk, now + lease_ms, true, running, listed)
                .await?
                .ok_or_else(|| StoreError::not_found(Entity::Worker, "worker"))?;
        let HeldView {
            mut assignments,
            keys,
            ..
        } = view;
        let mut touched = Touched::new();
        for (h, event, error) in &decided.moves {
            if let Some(key) = keys.get(h) {
                let error = error.map(|e| (e.code, e.message));
                move_task(&mut tx, key, *event, None, error, now, &mut touched).await?;
            }
        }
        let reply = sync_reply(&decided, &mut assignments);
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(reply)
    }

    async fn held_fingerprints(&self) -> StoreResult<Vec<(i64, [i64; 3])>> {
        // Five times a second, whatever the table's size: through the
        // worker index, which holds only the tasks with a worker.
        let mut tx = self.begin_read().await?;
        self.backend.prefer_indexes(&mut tx).await?;
        let rows = sqlx::query(
            "select worker_pk, count(*) as n, cast(sum(state) as bigint) as states, \
             max(updated_at) as last from tasks where worker_pk is not null group by worker_pk",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("worker_pk")?,
                    [r.try_get("n")?, r.try_get("states")?, r.try_get("last")?],
                ))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(worker_pk = worker_pk, reports = reports.len()))]
    async fn report_tasks(
        &self,
        worker_pk: i64,
        reports: &[WorkerReport],
    ) -> StoreResult<Vec<Option<Applied>>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        // Every report in one transaction, in order: one commit for many
        // moves. Under the lifecycle lock like every move: without it a
        // report (tasks, then batch counters) and an API call that locks a
        // batch before its tasks (UpdateBatchTask) could deadlock. Measured
        // on PostgreSQL, the lock cost reports about 5% of throughput.
        let mut tx = self.begin_lifecycle().await?;
        let mut touched = Touched::new();
        let positional = self.backend.positional();
        let out = apply_reports(
            &mut tx,
            positional,
            worker_pk,
            reports,
            now_millis(),
            &mut touched,
        )
        .await?;
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(out)
    }
}

/// The tasks placed on `worker_pk` and not yet started, with what their
/// executors need.
pub(super) async fn placed_on(
    conn: &mut sqlx::AnyConnection,
    worker_pk: i64,
) -> StoreResult<Vec<Assignment>> {
    // Only those: a report batch's reply reads this, and the worker's
    // running tasks are most of what it holds.
    let mut view = read_held(conn, worker_pk, &[TaskState::Starting]).await?;
    Ok(view
        .held
        .iter()
        .filter_map(|(h, _)| view.assignments.remove(h))
        .collect())
}

/// Only a worker's own events can be reported.
fn check_reports(reports: &[WorkerReport]) -> StoreResult<()> {
    match reports.iter().find(|r| r.event.cause() != Cause::Worker) {
        Some(r) => Err(StoreError::NotAllowed(format!(
            "{} is not a worker report",
            r.event
        ))),
        None => Ok(()),
    }
}

/// A worker's reports applied in `conn`, a transaction holding the
/// lifecycle lock, in order; what each did (`None`: the task is gone). A
/// report of an event that is not a worker's is refused, and so are all.
pub(super) async fn apply_reports(
    conn: &mut sqlx::AnyConnection,
    positional: bool,
    worker_pk: i64,
    reports: &[WorkerReport],
    now: i64,
    touched: &mut Touched,
) -> StoreResult<Vec<Option<Applied>>> {
    check_reports(reports)?;
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    // The reported tasks, read at once; each move then updates its key
    // here, so a later report on the same task sees the state the
    // earlier one left.
    let mut q = sql::Query::new(positional);
    q.push(&format!("select {KEY_COLS} from tasks t where t.pk in "))
        .bind_row(reports.iter().map(|r| Arg::Int(r.held.task)));
    let mut keys: HashMap<i64, TaskKey> = HashMap::with_capacity(reports.len());
    for row in bound(&q).fetch_all(&mut *conn).await? {
        let k = key_from(&row)?;
        keys.insert(k.pk, k);
    }
    // Each task's reports, in order, and the tasks in the order first
    // reported.
    let mut queues: HashMap<i64, VecDeque<usize>> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        queues
            .entry(r.held.task)
            .or_insert_with(|| {
                order.push(r.held.task);
                VecDeque::new()
            })
            .push_back(i);
    }
    // In waves: each takes, for every task, its next report, or the run of
    // reports that move it on while this worker holds it (a `started` and
    // an `exited` sent together). A run is one move through every state it
    // names: one row update, a history row per step. Within a wave, runs
    // of the same events from the same state are one update (a worker's
    // reports come many at a time); a report with an error is written
    // alone.
    let mut out: Vec<Option<Applied>> = vec![None; reports.len()];
    /// Runs of the same events from one state: (the reports' indexes in the
    /// batch, the task).
    type Alike = ((Vec<Event>, TaskState), Vec<(Vec<usize>, TaskKey)>);
    loop {
        let mut alike: Vec<Alike> = Vec::new();
        let mut any = false;
        for task in &order {
            let Some(queue) = queues.get_mut(task).filter(|q| !q.is_empty()) else {
                continue;
            };
            any = true;
            let i = queue[0];
            let r = &reports[i];
            let Some(t) = keys.get(task).cloned() else {
                queue.pop_front();
                continue;
            };
            if t.worker_pk != Some(worker_pk) || t.attempt != r.held.attempt {
                out[i] = Some(Applied::Refused { state: t.state });
                queue.pop_front();
                continue;
            }
            if let Some((code, message)) = &r.error {
                queue.pop_front();
                let err = Some((code.as_str(), message.as_str()));
                let moved = move_task(conn, &t, r.event, None, err, now, touched).await?;
                out[i] = Some(after_report(&mut keys, &t, moved));
                continue;
            }
            let run = run_of(reports, queue, t.state);
            let events: Vec<Event> = run.iter().map(|i| reports[*i].event).collect();
            let key = (events, t.state);
            match alike.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push((run, t)),
                None => alike.push((key, vec![(run, t)])),
            }
        }
        if !any {
            break;
        }
        for ((path, from), group) in alike {
            let tasks: Vec<&TaskKey> = group.iter().map(|(_, t)| t).collect();
            let moved = move_alike(conn, from, &tasks, &path, None, now, touched).await?;
            for (run, t) in group {
                let Some(queue) = queues.get_mut(&t.pk) else {
                    continue;
                };
                if !moved.contains(&t.pk) {
                    // Refused: the run's later reports are read again,
                    // against the state this one left.
                    out[run[0]] = Some(after_report(&mut keys, &t, None));
                    queue.pop_front();
                    continue;
                }
                let mut k = t;
                for (i, event) in run.iter().zip(&path) {
                    let outcome = transition::next(k.state, *event);
                    out[*i] = Some(after_report(&mut keys, &k, outcome));
                    queue.pop_front();
                    match keys.get(&k.pk) {
                        Some(next) => k = next.clone(),
                        None => break,
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The reports at the head of `queue` (one task's, none with an error)
/// that one move can apply from `from`: the first, and each next one while
/// the step before left the task held by the worker (so the report is
/// still its to make).
fn run_of(reports: &[WorkerReport], queue: &VecDeque<usize>, from: TaskState) -> Vec<usize> {
    let mut run = vec![queue[0]];
    let mut at = transition::next(from, reports[queue[0]].event);
    while let Some(Outcome::To(state)) = at {
        let held = transition::is_held(state);
        let Some(&i) = queue.get(run.len()).filter(|_| held) else {
            break;
        };
        let r = &reports[i];
        at = transition::next(state, r.event);
        if r.error.is_some()
            || r.held.attempt != reports[run[0]].held.attempt
            || !matches!(at, Some(Outcome::To(_)))
        {
            break;
        }
        run.push(i);
    }
    run
}
