//! Task moves: the one place a task changes state (`move_task`), the
//! lifecycle transaction every move runs in, and the API's events on tasks
//! and batches, including UpdateBatchTask.

use super::Applied;
use crate::domain::schedule::PARKED;
use crate::domain::transition::{self, Cause, Event, Outcome};
use crate::domain::{now_millis, TaskState};
use crate::store::sql::Arg;
use crate::store::sql_store::bound;
use crate::store::sql_store::{SqlStore, Tx, Writer};
use crate::store::Entity;
use crate::store::{sql, stored_state, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use crate::store::tick_tx::TaskKey;

/// Columns `key_from` decodes, from `tasks t`.
pub(super) const KEY_COLS: &str = "t.pk as pk, t.project_pk as project_pk, \
     t.batch_pk as batch_pk, t.state as state, t.worker_pk as worker_pk, t.attempt as attempt";

pub(super) fn key_from(r: &AnyRow) -> StoreResult<TaskKey> {
    Ok(TaskKey {
        pk: r.try_get("pk")?,
        project_pk: r.try_get("project_pk")?,
        batch_pk: r.try_get("batch_pk")?,
        state: stored_state(r.try_get("state")?)?,
        worker_pk: r.try_get("worker_pk")?,
        attempt: r.try_get("attempt")?,
    })
}

/// `1, 2, 3`: the states' stored numbers, for `in (...)`.
pub(super) fn in_list(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| s.index().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a transaction's moves changed, written by [`finish`] before it
/// commits: the batches touched (project pk, batch pk), their counter
/// changes, and the moves' history rows. Gathering them makes a pass that
/// moves hundreds of tasks write each batch's counters once and the history
/// in a few statements, instead of three statements per move; both are
/// still written in the moves' own transaction.
#[derive(Debug, Default)]
pub(super) struct Touched {
    batches: BTreeSet<(i64, i64)>,
    /// Per batch, the change of each state's counter (`num_task` changes
    /// by their sum).
    counters: BTreeMap<i64, [i64; 18]>,
    history: Vec<HistoryRow>,
    /// Workers holding (or given) a task that moved: their waiting syncs
    /// have something to say.
    workers: BTreeSet<i64>,
    /// Batches that lost a task or are being deleted: only these can have
    /// become a deleted batch's last trace (most passes have none, and skip
    /// the two statements per batch that look).
    emptied: BTreeSet<i64>,
}

#[derive(Debug)]
struct HistoryRow {
    task_pk: i64,
    project_pk: i64,
    at: i64,
    from: TaskState,
    event: Event,
    to: Option<TaskState>,
    worker_pk: Option<i64>,
}

impl Touched {
    pub(super) fn new() -> Touched {
        Touched::default()
    }

    pub(super) fn insert(&mut self, batch: (i64, i64)) {
        self.batches.insert(batch);
    }

    /// `batch_pk` may be a deleted batch whose last task went.
    pub(super) fn emptied(&mut self, batch_pk: i64) {
        self.emptied.insert(batch_pk);
    }

    fn count(&mut self, batch_pk: i64, state: TaskState, by: i64) {
        self.counters.entry(batch_pk).or_insert([0; 18])[state.index()] += by;
    }
}

impl FromIterator<(i64, i64)> for Touched {
    fn from_iter<I: IntoIterator<Item = (i64, i64)>>(iter: I) -> Touched {
        Touched {
            batches: iter.into_iter().collect(),
            ..Touched::default()
        }
    }
}

impl<'a> IntoIterator for &'a Touched {
    type Item = &'a (i64, i64);
    type IntoIter = std::collections::btree_set::Iter<'a, (i64, i64)>;
    fn into_iter(self) -> Self::IntoIter {
        self.batches.iter()
    }
}

/// Moves one task by `event` if the table allows it from the state it was
/// read in; `None` if not (or if another writer moved it).
pub(super) async fn move_task(
    conn: &mut AnyConnection,
    t: &TaskKey,
    event: Event,
    worker: Option<i64>,
    error: Option<(&str, &str)>,
    now: i64,
    touched: &mut Touched,
) -> StoreResult<Option<Outcome>> {
    let Some(outcome) = transition::next(t.state, event) else {
        if (t.state, event) == (TaskState::Stopped, Event::Stop) {
            return release_hold(conn, t, now, touched).await;
        }
        return Ok(None);
    };
    match outcome {
        Outcome::Gone => {
            let n = sqlx::query("delete from tasks where pk = $1 and +state = $2")
                .bind(t.pk)
                .bind(t.state.index() as i64)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(None);
            }
            if let Some(b) = t.batch_pk {
                touched.count(b, t.state, -1);
                touched.insert((t.project_pk, b));
                touched.emptied(b);
            }
            // Its history goes with it, written or not yet.
            touched.history.retain(|h| h.task_pk != t.pk);
            sqlx::query("delete from task_events where task_pk = $1")
                .bind(t.pk)
                .execute(&mut *conn)
                .await?;
            return Ok(Some(outcome));
        }
        Outcome::To(to) => {
            let (worker_pk, attempt) = if event == Event::Place {
                (worker, t.attempt + 1)
            } else if transition::is_held(to) {
                (t.worker_pk, t.attempt)
            } else {
                (None, t.attempt)
            };
            // A task that starts again, is placed, or waits again once
            // capacity is back no longer shows why it failed or waited.
            let clear = i64::from(matches!(
                event,
                Event::Start | Event::Place | Event::CapacityBack
            ));
            // The schedule's hold: a closing window sets it, a user's
            // intent or an opening window clears it (-1: kept).
            let hold: i64 = match event {
                Event::WindowClosed => 1,
                Event::Start | Event::Stop | Event::WindowOpened => 0,
                _ => -1,
            };
            // A scheduled task that comes to rest or waits again has its
            // windows looked at by the next pass.
            let recheck = i64::from(matches!(to, TaskState::Pending | TaskState::Stopped));
            // A placement or an upgrade runs the batch's (or service's)
            // version now.
            let version = i64::from(matches!(event, Event::Place | Event::Upgraded));
            let (code, msg) = match error {
                Some((c, m)) => (Some(c), Some(m)),
                None => (None, None),
            };
            let n = sqlx::query(
                "update tasks set state = $1, updated_at = $2, worker_pk = $3, attempt = $4, \
                 last_worker_pk = coalesce($3, last_worker_pk), error_code = case when $5 = 1 then null else coalesce($6, error_code) end, \
                 error_message = case when $5 = 1 then null else coalesce($7, error_message) end, \
                 schedule_hold = case when $10 < 0 then schedule_hold else $10 end, \
                 window_due = case when window_due is null or $11 = 0 then window_due else $2 end, \
                 service_version = case when $12 = 0 then service_version else coalesce( \
                 (select b.service_version from batch_tasks b where b.pk = tasks.batch_pk), \
                 (select v.service_version from services v where v.pk = tasks.service_pk)) end \
                 where pk = $8 and +state = $9",
            )
            .bind(to.index() as i64)
            .bind(now)
            .bind(worker_pk)
            .bind(attempt)
            .bind(clear)
            .bind(code)
            .bind(msg)
            .bind(t.pk)
            .bind(t.state.index() as i64)
            .bind(hold)
            .bind(recheck)
            .bind(version)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(None);
            }
            if let (Some(b), true) = (t.batch_pk, t.state != to) {
                touched.count(b, t.state, -1);
                touched.count(b, to, 1);
            }
        }
    }
    record(t, event, outcome, worker, now, touched);
    Ok(Some(outcome))
}

/// The events of `path` (no error), one after the other, on several tasks
/// all in the state `from`, written as one conditional update instead of
/// one per task and event: the same moves as [`move_task`] for each, each
/// with its own history row. For a worker's reports and the scheduler's
/// `Schedule`, for `Place` onto `onto`, and for `Schedule` then `Place`
/// (a task picked and placed in one pass is written once, not twice); an
/// event that clears errors or changes a schedule's hold (a user's intent,
/// a window) goes task by task. The tasks it moved the whole path, by pk;
/// the others had left `from` meanwhile.
pub(super) async fn move_alike(
    conn: &mut AnyConnection,
    from: TaskState,
    tasks: &[&TaskKey],
    path: &[Event],
    onto: Option<i64>,
    now: i64,
    touched: &mut Touched,
) -> StoreResult<BTreeSet<i64>> {
    let place = path.contains(&Event::Place);
    let one_by_one = path.iter().any(|e| {
        matches!(
            e,
            Event::Start | Event::Stop | Event::WindowClosed | Event::WindowOpened
        )
    }) || (place && onto.is_none());
    // The states the path passes through, if every step is a plain move.
    let mut steps = Vec::with_capacity(path.len());
    let mut at = from;
    for e in path {
        match transition::next(at, *e) {
            Some(Outcome::To(to)) => {
                steps.push((at, *e, to));
                at = to;
            }
            _ => {
                steps.clear();
                break;
            }
        }
    }
    if one_by_one || steps.is_empty() {
        // No move, one that deletes, or one with more to it: task by task,
        // event by event.
        // A task deleted on the way moved as far as it can.
        let mut moved = BTreeSet::new();
        for t in tasks {
            let mut k = (*t).clone();
            let mut all = true;
            for e in path {
                match move_task(conn, &k, *e, onto, None, now, touched).await? {
                    Some(Outcome::To(s)) => k.state = s,
                    Some(Outcome::Gone) => break,
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                moved.insert(t.pk);
            }
        }
        return Ok(moved);
    }
    let to = at;
    let keep_worker = i64::from(transition::is_held(to));
    // A worker that held the task at any step is the last it ran on, as
    // the steps one by one would record.
    let held_on_way = i64::from(steps.iter().any(|(_, _, s)| transition::is_held(*s)));
    let recheck = i64::from(matches!(to, TaskState::Pending | TaskState::Stopped));
    let version = i64::from(
        path.iter()
            .any(|e| matches!(e, Event::Place | Event::Upgraded)),
    );
    // The rows are found by key. The unary `+` keeps the state out of the
    // index choice: a planner whose statistics predate a batch's bulk
    // insert otherwise reads every waiting task through the pick index to
    // filter out the few named (PostgreSQL did, 3.7 ms a placement at
    // 20,000 pending); it changes no value.
    let mut q = sql::Query::new(false);
    q.push("update tasks set state = ")
        .bind(Arg::Int(to.index() as i64))
        .push(", updated_at = ")
        .bind(Arg::Int(now));
    match onto.filter(|_| place) {
        // A placement: onto the worker, a new attempt, errors cleared.
        Some(w) => {
            q.push(", worker_pk = ")
                .bind(Arg::Int(w))
                .push(", last_worker_pk = ")
                .bind(Arg::Int(w))
                .push(", attempt = attempt + 1, error_code = null, error_message = null");
        }
        None => {
            q.push(", worker_pk = case when ")
                .bind(Arg::Int(keep_worker))
                .push(" = 1 then worker_pk else null end, last_worker_pk = case when ")
                .bind(Arg::Int(held_on_way))
                .push(" = 1 then coalesce(worker_pk, last_worker_pk) else last_worker_pk end");
        }
    }
    q.push(", window_due = case when window_due is null or ")
        .bind(Arg::Int(recheck))
        .push(" = 0 then window_due else ")
        .bind(Arg::Int(now))
        .push(" end, service_version = case when ")
        .bind(Arg::Int(version))
        .push(
            " = 0 then service_version else coalesce( \
             (select b.service_version from batch_tasks b where b.pk = tasks.batch_pk), \
             (select v.service_version from services v where v.pk = tasks.service_pk)) end \
             where +state = ",
        )
        .bind(Arg::Int(from.index() as i64))
        .push(" and pk in ")
        .bind_row(tasks.iter().map(|t| Arg::Int(t.pk)))
        .push(" returning pk");
    let mut moved = BTreeSet::new();
    for r in bound(&q).fetch_all(&mut *conn).await? {
        moved.insert(r.try_get::<i64, _>("pk")?);
    }
    for t in tasks.iter().filter(|t| moved.contains(&t.pk)) {
        if let (Some(b), true) = (t.batch_pk, from != to) {
            touched.count(b, from, -1);
            touched.count(b, to, 1);
        }
        let mut k = (*t).clone();
        for (was, event, next) in &steps {
            k.state = *was;
            record(
                &k,
                *event,
                Outcome::To(*next),
                onto.filter(|_| *event == Event::Place),
                now,
                touched,
            );
        }
    }
    Ok(moved)
}

/// A move's history entry, written at [`finish`]; its batch is touched.
fn record(
    t: &TaskKey,
    event: Event,
    outcome: Outcome,
    worker: Option<i64>,
    now: i64,
    touched: &mut Touched,
) {
    touched.history.push(HistoryRow {
        task_pk: t.pk,
        project_pk: t.project_pk,
        at: now,
        from: t.state,
        event,
        to: match outcome {
            Outcome::To(s) => Some(s),
            Outcome::Gone => None,
        },
        worker_pk: if event == Event::Place { worker } else { None },
    });
    // A worker's own report tells it nothing new (and waking its sync then
    // would answer with the running list it sent before the report).
    if event.cause() != Cause::Worker {
        touched.workers.extend(t.worker_pk);
        if event == Event::Place {
            touched.workers.extend(worker);
        }
    }
    if let Some(b) = t.batch_pk {
        touched.insert((t.project_pk, b));
    }
}

/// A user's stop on a task its schedule holds stopped: the state stays
/// `stopped`, the hold goes, so no window starts it again (its schedule
/// becomes INACTIVATED). The table has no (stopped, Stop) move; this is the
/// one intent on a stopped task that changes something.
async fn release_hold(
    conn: &mut AnyConnection,
    t: &TaskKey,
    now: i64,
    touched: &mut Touched,
) -> StoreResult<Option<Outcome>> {
    let n = sqlx::query(
        "update tasks set schedule_hold = 0, window_due = $1 \
         where pk = $2 and +state = $3 and schedule_hold = 1",
    )
    .bind(PARKED)
    .bind(t.pk)
    .bind(t.state.index() as i64)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    let outcome = Outcome::To(t.state);
    record(t, Event::Stop, outcome, None, now, touched);
    Ok(Some(outcome))
}

/// Placing and worker reports need a worker: they come only through the
/// scheduler tick and `worker_report`.
pub(super) fn refuse_worker_events(event: Event) -> StoreResult<()> {
    if event.needs_worker() {
        return Err(StoreError::NotAllowed(format!(
            "{event} is reported by a worker, not applied directly"
        )));
    }
    Ok(())
}

impl SqlStore {
    /// A write transaction that first takes the one lifecycle lock row, so
    /// task moves, worker syncs and ticks of every process run one at a
    /// time: no two can lock tasks and batch counters in opposite orders
    /// (deadlock), and capacity read inside a tick stays true until it
    /// commits.
    pub(super) async fn begin_lifecycle(&self) -> StoreResult<Tx> {
        let tx = self.begin_write().await?;
        Self::take_lifecycle_lock(tx).await
    }

    /// `begin_lifecycle` for a change that also reads project
    /// `project_pk`'s catalogue and acts on what it read (an update naming
    /// groups, sources or a new name): the catalogue lock first, as every
    /// catalogue write takes it, then the lifecycle lock. No transaction
    /// takes them the other way round.
    pub(super) async fn begin_lifecycle_in(&self, project_pk: i64) -> StoreResult<Tx> {
        let tx = self.begin_catalogue(project_pk).await?;
        Self::take_lifecycle_lock(tx).await
    }

    async fn take_lifecycle_lock(mut tx: Tx) -> StoreResult<Tx> {
        sqlx::query("update scheduler_lock set ticks = ticks + 1 where id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Before commit: see [`finish`].
    pub(super) async fn finish(
        &self,
        conn: &mut AnyConnection,
        touched: &Touched,
    ) -> StoreResult<()> {
        finish(&self.writer(), conn, touched).await
    }

    /// Moves one task in `tx` and commits: what an API intent and a worker
    /// report both are.
    pub(super) async fn move_one(
        &self,
        mut tx: Tx,
        t: &TaskKey,
        event: Event,
        error: Option<(&str, &str)>,
    ) -> StoreResult<Applied> {
        let mut touched = Touched::new();
        let now = now_millis();
        let applied = match move_task(&mut tx, t, event, None, error, now, &mut touched).await? {
            Some(to) => Applied::Moved { from: t.state, to },
            None => Applied::Refused { state: t.state },
        };
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(applied)
    }

    /// After commit: see [`publish`].
    pub(super) async fn publish(&self, touched: &Touched) {
        publish(&self.writer(), touched).await
    }
}

/// Before commit: writes the gathered counter changes and history, drops
/// batches being deleted whose last task went, and records every changed
/// batch for the change feed.
pub(super) async fn finish(
    w: &Writer,
    conn: &mut AnyConnection,
    touched: &Touched,
) -> StoreResult<()> {
    for (batch_pk, delta) in &touched.counters {
        // The statement's text depends only on which counters changed, so
        // the few shapes a workload has stay prepared.
        let total: i64 = delta.iter().sum();
        let changes = TaskState::ALL
            .iter()
            .map(|s| (s.counter_column(), delta[s.index()]))
            .chain([("num_task", total)])
            .filter(|(_, d)| *d != 0);
        let mut q = sql::Query::new(w.positional());
        q.push("update batch_tasks set ");
        for (i, (col, d)) in changes.enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push(col)
                .push(" = ")
                .push(col)
                .push(" + ")
                .bind(Arg::Int(d));
        }
        if !q.args.is_empty() {
            q.push(" where pk = ").bind(Arg::Int(*batch_pk));
            bound(&q).execute(&mut *conn).await?;
        }
    }
    // 7 parameters a row: 500 rows stay far below every backend's limit.
    for chunk in touched.history.chunks(500) {
        let mut q = sql::Query::new(w.positional());
        q.push(
            "insert into task_events (task_pk, project_pk, at, from_state, event, to_state, worker_pk) values ",
        );
        for (i, h) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind_row([
                Arg::Int(h.task_pk),
                Arg::Int(h.project_pk),
                Arg::Int(h.at),
                Arg::Int(h.from.index() as i64),
                Arg::Text(h.event.name().to_owned()),
                h.to.map_or(Arg::NullInt, |s| Arg::Int(s.index() as i64)),
                h.worker_pk.map_or(Arg::NullInt, Arg::Int),
            ]);
        }
        bound(&q).execute(&mut *conn).await?;
    }
    for batch_pk in &touched.emptied {
        sqlx::query(
            "delete from batch_task_groups where batch_pk = $1 and exists \
             (select 1 from batch_tasks where pk = $1 and deleting = 1 and num_task = 0)",
        )
        .bind(*batch_pk)
        .execute(&mut *conn)
        .await?;
        sqlx::query("delete from batch_tasks where pk = $1 and deleting = 1 and num_task = 0")
            .bind(*batch_pk)
            .execute(&mut *conn)
            .await?;
    }
    let changes: Vec<(i64, i64)> = touched.batches.iter().copied().collect();
    w.record_changes(conn, &changes).await?;
    Ok(())
}

/// After commit: the read model follows, before the write returns, and
/// the waiting syncs of the workers whose tasks moved answer.
pub(super) async fn publish(w: &Writer, touched: &Touched) {
    // One read of the changed batches per project, not one per batch.
    let mut by_project: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(project_pk, batch_pk) in &touched.batches {
        by_project.entry(project_pk).or_default().push(batch_pk);
    }
    for (project_pk, pks) in &by_project {
        w.after_writes(*project_pk, pks).await;
    }
    crate::scheduler::wake::workers_changed(touched.workers.iter().copied());
}

/// The task `task_id` of a project.
pub(super) async fn task_key(
    conn: &mut AnyConnection,
    project_pk: i64,
    task_id: &str,
) -> StoreResult<TaskKey> {
    let r = sqlx::query(&format!(
        "select {KEY_COLS} from tasks t where t.project_pk = $1 and t.id = $2"
    ))
    .bind(project_pk)
    .bind(task_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found(Entity::Task, "task_id"))?;
    key_from(&r)
}
