//! The scheduler's tick and the operator actions whose effects ticks apply
//! (freeze, deploy, upgrade).

use super::moves::{in_list, key_from, move_task, TaskKey, Touched, KEY_COLS};
use super::{TickConfig, TickReport};
use crate::domain::transition::{Event, HELD};
use crate::domain::TaskState;
use crate::store::sql_store::SqlStore;
use crate::store::{StoreError, StoreResult};
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// Batch priority first (high, medium, low), then age.
const BY_PRIORITY: &str =
    "case b.priority when 'high' then 0 when 'medium' then 1 else 2 end, t.created_at, t.pk";

/// The tasks a statement selects (`KEY_COLS` first), binding `binds` in order.
async fn keys(conn: &mut AnyConnection, sql: &str, binds: &[i64]) -> StoreResult<Vec<TaskKey>> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(key_from)
        .collect()
}

/// Tasks in `state` needing workers of `kind`, by batch priority then age,
/// with when they last moved. `frozen_too`: include tasks of frozen
/// projects.
async fn by_priority(
    conn: &mut AnyConnection,
    state: TaskState,
    frozen_too: bool,
    kind: &str,
    n: i64,
) -> StoreResult<Vec<(TaskKey, i64)>> {
    if n <= 0 {
        return Ok(Vec::new());
    }
    let frozen = if frozen_too { "" } else { " and p.frozen = 0" };
    let rows = sqlx::query(&format!(
        "select {KEY_COLS}, t.updated_at as updated_at from tasks t \
         left join batch_tasks b on b.pk = t.batch_pk join projects p on p.pk = t.project_pk \
         where t.state = {} and coalesce(b.task_type, '0') = $2{frozen} order by {BY_PRIORITY} limit $1",
        state.index()
    ))
    .bind(n)
    .bind(if kind == "edge" { "1" } else { "0" })
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((key_from(r)?, r.try_get("updated_at")?)))
        .collect()
}

/// Moves each task by `event`, counting the moves.
async fn apply_all(
    conn: &mut AnyConnection,
    tasks: Vec<TaskKey>,
    event: Event,
    error: Option<(&str, &str)>,
    now: i64,
    touched: &mut Touched,
    report: &mut TickReport,
) -> StoreResult<()> {
    for t in tasks {
        if report.moved_tasks.contains(&t.pk) {
            continue;
        }
        if move_task(conn, &t, event, None, error, now, touched)
            .await?
            .is_some()
        {
            report.add(event);
            report.moved_tasks.insert(t.pk);
        }
    }
    Ok(())
}

/// An error a move records: (code, message).
type TaskError = (&'static str, &'static str);

/// The tick's fixed steps: (which tasks, the event, the error it records).
/// Each step moves a task one stage, and a task moves once per tick, so
/// every stage is visible for at least one tick.
fn steps() -> [(String, Event, Option<TaskError>); 8] {
    let live = in_list(&[
        TaskState::Pending,
        TaskState::Scheduling,
        TaskState::LackOfResources,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Upgrading,
    ]);
    let waiting = in_list(&[
        TaskState::Pending,
        TaskState::Scheduling,
        TaskState::LackOfResources,
    ]);
    [
        (
            format!("where t.state = {}", TaskState::Recovering.index()),
            Event::Requeued,
            None,
        ),
        (
            format!("where t.state = {}", TaskState::Abnormal.index()),
            Event::Recover,
            None,
        ),
        (
            format!(
                "left join workers w on w.pk = t.worker_pk \
                 where (w.lost = 1 or t.worker_pk is null) and t.state in ({})",
                in_list(&HELD)
            ),
            Event::LeaseExpired,
            Some(("VIAS.TC.WORKER_LOST", "the worker missed its heartbeats")),
        ),
        (
            format!(
                "join video_sources s on s.pk = t.video_source_pk \
                 where s.deleted = 1 and t.state in ({waiting})"
            ),
            Event::SourceGone,
            Some(("VIAS.TC.SOURCE_GONE", "the video source was deleted")),
        ),
        (
            format!(
                "join projects p on p.pk = t.project_pk where p.frozen = 1 and t.state in ({live})"
            ),
            Event::Freeze,
            None,
        ),
        (
            format!(
                "join projects p on p.pk = t.project_pk where p.frozen = 0 and t.state = {}",
                TaskState::Frozen.index()
            ),
            Event::Unfreeze,
            None,
        ),
        (
            format!(
                "join batch_tasks b on b.pk = t.batch_pk join services v on v.pk = b.service_pk \
                 where v.deployed = 0 and t.state in ({live})"
            ),
            Event::Undeploy,
            Some((
                "VIAS.TC.NO_SERVICE",
                "the algorithm service is not deployed",
            )),
        ),
        (
            format!(
                "join batch_tasks b on b.pk = t.batch_pk \
                 where t.state = {} and t.service_version <> b.service_version",
                TaskState::Running.index()
            ),
            Event::Upgrade,
            None,
        ),
    ]
}

/// Free slots by worker kind: (worker pk, free slots) of live workers.
async fn free_slots(conn: &mut AnyConnection) -> StoreResult<HashMap<String, Vec<(i64, i64)>>> {
    let rows = sqlx::query(&format!(
        "select w.pk as pk, w.kind as kind, w.slots - (select count(*) from tasks t \
         where t.worker_pk = w.pk and t.state in ({})) as free \
         from workers w where w.lost = 0 order by w.pk",
        in_list(&HELD)
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut free: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for r in &rows {
        let kind: String = r.try_get("kind")?;
        free.entry(kind)
            .or_default()
            .push((r.try_get("pk")?, r.try_get("free")?));
    }
    Ok(free)
}

/// Places, requeues and schedules the tasks of one worker kind.
#[allow(clippy::too_many_arguments)]
async fn schedule_kind(
    conn: &mut AnyConnection,
    kind: &str,
    free: &mut HashMap<String, Vec<(i64, i64)>>,
    now: i64,
    cfg: &TickConfig,
    touched: &mut Touched,
    report: &mut TickReport,
) -> StoreResult<()> {
    let n = cfg.batch;
    // Place what the last tick picked.
    for t in by_priority(conn, TaskState::Scheduling, true, kind, n).await? {
        if report.moved_tasks.contains(&t.0.pk) {
            continue;
        }
        let (event, worker, error) = match free.get_mut(kind) {
            None => (
                Event::NoCapacity,
                None,
                Some((
                    "VIAS.TC.NO_WORKER",
                    "no registered worker runs this task type",
                )),
            ),
            Some(ws) => match ws
                .iter_mut()
                .filter(|(_, f)| *f > 0)
                .max_by_key(|(_, f)| *f)
            {
                Some((w, f)) => {
                    *f -= 1;
                    (Event::Place, Some(*w), None)
                }
                None => (Event::Requeue, None, None),
            },
        };
        if move_task(conn, &t.0, event, worker, error, now, touched)
            .await?
            .is_some()
        {
            report.add(event);
            report.moved_tasks.insert(t.0.pk);
        }
    }

    // As many tasks back from lack_of_resources as there are free slots of
    // the type, then pending ones up to what is left; with no live worker of
    // the type, or past the wait limit without a slot, they lack resources.
    let mut budget: i64 = free
        .get(kind)
        .map_or(0, |ws| ws.iter().map(|(_, f)| (*f).max(0)).sum());
    let back = by_priority(conn, TaskState::LackOfResources, true, kind, budget.min(n)).await?;
    for (t, _) in back {
        if budget > 0
            && !report.moved_tasks.contains(&t.pk)
            && move_task(conn, &t, Event::CapacityBack, None, None, now, touched)
                .await?
                .is_some()
        {
            budget -= 1;
            report.add(Event::CapacityBack);
            report.moved_tasks.insert(t.pk);
        }
    }
    for (t, updated_at) in by_priority(conn, TaskState::Pending, false, kind, n).await? {
        if report.moved_tasks.contains(&t.pk) {
            continue;
        }
        let (event, error) = if !free.contains_key(kind) {
            (
                Event::NoCapacity,
                Some((
                    "VIAS.TC.NO_WORKER",
                    "no registered worker runs this task type",
                )),
            )
        } else if budget > 0 {
            budget -= 1;
            (Event::Schedule, None)
        } else if now - updated_at > cfg.wait_limit_ms {
            (
                Event::NoCapacity,
                Some((
                    "VIAS.TC.WAIT_LIMIT",
                    "no worker slot freed up within the wait limit",
                )),
            )
        } else {
            continue;
        };
        if move_task(conn, &t, event, None, error, now, touched)
            .await?
            .is_some()
        {
            report.add(event);
            report.moved_tasks.insert(t.pk);
        }
    }
    Ok(())
}

#[tracing::instrument(skip_all, level = "debug")]
pub(super) async fn scheduler_tick(
    s: &SqlStore,
    now: i64,
    cfg: &TickConfig,
) -> StoreResult<TickReport> {
    let mut tx = s.begin_lifecycle().await?;
    // begin_lifecycle took the lock row: ticks never overlap each other or
    // any task move, so capacity read here stays true.
    let mut report = TickReport::default();
    let mut touched = Touched::new();
    // Workers silent past their lease.
    sqlx::query("update workers set lost = 1 where lost = 0 and lease_expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    for (which, event, error) in &steps() {
        let sql = format!("select {KEY_COLS} from tasks t {which} order by t.pk limit $1");
        let tasks = keys(&mut tx, &sql, &[cfg.batch]).await?;
        apply_all(
            &mut tx,
            tasks,
            *event,
            *error,
            now,
            &mut touched,
            &mut report,
        )
        .await?;
    }
    let mut free = free_slots(&mut tx).await?;
    // Each worker type on its own, so a backlog of one type never hides the
    // other's tasks from the pick.
    for kind in ["cloud", "edge"] {
        schedule_kind(
            &mut tx,
            kind,
            &mut free,
            now,
            cfg,
            &mut touched,
            &mut report,
        )
        .await?;
    }
    s.finish(&mut tx, &touched).await?;
    tx.commit().await?;
    s.publish(&touched).await;
    Ok(report)
}

#[tracing::instrument(skip_all, level = "debug")]
pub(super) async fn grace_leases(s: &SqlStore, now: i64, lease_ms: i64) -> StoreResult<()> {
    let mut tx = s.begin_write().await?;
    sqlx::query(
        "update workers set lease_expires_at = $1 where lost = 0 and lease_expires_at < $1",
    )
    .bind(now + lease_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, frozen = frozen))]
pub(super) async fn set_project_frozen(
    s: &SqlStore,
    project_pk: i64,
    frozen: bool,
) -> StoreResult<()> {
    let mut tx = s.begin_write().await?;
    sqlx::query("update projects set frozen = $1 where pk = $2")
        .bind(i64::from(frozen))
        .bind(project_pk)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, service_name = service_name, service_version = service_version, deployed = deployed))]
pub(super) async fn set_service_deployed(
    s: &SqlStore,
    project_pk: i64,
    service_name: &str,
    service_version: &str,
    deployed: bool,
) -> StoreResult<()> {
    let mut tx = s.begin_write().await?;
    let n = sqlx::query(
        "update services set deployed = $1 where project_pk = $2 and service_name = $3 \
         and service_version = $4",
    )
    .bind(i64::from(deployed))
    .bind(project_pk)
    .bind(service_name)
    .bind(service_version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "service",
            param: "service_version".into(),
        });
    }
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, service_name = service_name, from = from, to = to))]
pub(super) async fn upgrade_service(
    s: &SqlStore,
    project_pk: i64,
    service_name: &str,
    from: &str,
    to: &str,
) -> StoreResult<u64> {
    let mut tx = s.begin_lifecycle().await?;
    let to_pk: i64 = sqlx::query_scalar(
        "select pk from services where project_pk = $1 and service_name = $2 and service_version = $3",
    )
    .bind(project_pk)
    .bind(service_name)
    .bind(to)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound {
        what: "service",
        param: "service_version".into(),
    })?;
    let pks: Vec<i64> = sqlx::query_scalar(
        "update batch_tasks set service_version = $1, service_pk = $2 \
         where project_pk = $3 and service_name = $4 and service_version = $5 returning pk",
    )
    .bind(to)
    .bind(to_pk)
    .bind(project_pk)
    .bind(service_name)
    .bind(from)
    .fetch_all(&mut *tx)
    .await?;
    let touched: Touched = pks.iter().map(|b| (project_pk, *b)).collect();
    s.finish(&mut tx, &touched).await?;
    tx.commit().await?;
    s.publish(&touched).await;
    Ok(pks.len() as u64)
}
