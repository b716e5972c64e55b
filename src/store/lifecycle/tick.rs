//! A scheduler tick's transaction (`TickTx`: the scheduler decides, this
//! reads and moves) and the operator actions whose effects ticks apply
//! (freeze, deploy, upgrade).

use super::moves::{
    finish, in_list, key_from, move_alike, move_task, publish, TaskKey, Touched, KEY_COLS,
};
use super::worker::{apply_reports, placed_on};
use super::{Applied, Assignment, WorkerReport};
use crate::domain::transition::{Event, HELD};
use crate::domain::{DeployType, TaskState};
use crate::scheduler::decide::{Selector, TaskError, WorkerSlots};
use crate::store::prelude::*;
use crate::store::sql_store::{SqlStore, Tx, Writer};
use crate::store::tick_tx::{DueWindow, TickTx, Waiting};
use crate::store::Entity;
use crate::store::{StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

/// Batch priority first (high, medium, low), then age: the order of the
/// `tasks_by_pick` index after its state and worker type.
const BY_PRIORITY: &str = "t.prio, t.created_at, t.pk";

/// For the steps that start from rare rows: the query for those rows'
/// keys. No rows, nothing to select.
fn rare_rows(which: Selector) -> Option<&'static str> {
    match which {
        Selector::SourceGone => Some("select pk from video_sources where deleted = 1"),
        Selector::FrozenProject => Some("select pk from projects where frozen = 1"),
        Selector::Undeployed => Some("select pk from services where deployed = 0"),
        _ => None,
    }
}

/// The tasks each maintenance step selects, after `from tasks t`, with
/// their order where one helps; `rare` lists the keys [`rare_rows`] found.
fn selector_sql(which: Selector, rare: &str) -> String {
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
    match which {
        Selector::Recovering => format!(
            "where t.state = {} order by t.pk",
            TaskState::Recovering.index()
        ),
        Selector::Abnormal => format!(
            "where t.state = {} order by t.pk",
            TaskState::Abnormal.index()
        ),
        Selector::HeldByLostWorker => format!(
            "left join workers w on w.pk = t.worker_pk \
             where (w.lost = 1 or t.worker_pk is null) and t.state in ({}) order by t.pk",
            in_list(&HELD)
        ),
        // The steps that usually find nothing start from the rare rows
        // (deleted sources, frozen projects, undeployed services), found
        // first and written into the query as literal keys: none, and the
        // step costs one small query; some, and the tasks are read through
        // the index on that key. The unary `+` keeps a planner without
        // statistics (SQLite's, until it analyzes) from reading every
        // waiting task through the state index instead; it changes no value.
        // No order: `order by pk limit n` tempts a planner into walking the
        // whole table in key order.
        Selector::SourceGone => {
            format!("where t.video_source_pk in ({rare}) and +t.state in ({waiting})")
        }
        Selector::FrozenProject => {
            format!("where t.project_pk in ({rare}) and +t.state in ({live})")
        }
        Selector::UnfrozenProject => format!(
            "where t.state = {} and t.project_pk in (select pk from projects where frozen = 0) \
             order by t.pk",
            TaskState::Frozen.index()
        ),
        Selector::Undeployed => format!(
            "where +t.state in ({live}) and t.pk in ( \
             select t2.pk from tasks t2 where t2.batch_pk in \
             (select b.pk from batch_tasks b where b.service_pk in ({rare})) \
             union all select t3.pk from tasks t3 where t3.service_pk is not null \
             and t3.service_pk in ({rare}))"
        ),
        Selector::VersionBehind => format!(
            "join batch_tasks b on b.pk = t.batch_pk \
             where t.state = {} and t.service_version <> b.service_version order by t.pk",
            TaskState::Running.index()
        ),
    }
}

/// A tick's transaction: it holds the lifecycle lock row from `begin_tick`
/// until commit, so ticks never overlap each other or any task move, and
/// capacity read in it stays true.
pub(super) struct SqlTickTx {
    tx: Tx,
    writer: Writer,
    touched: Touched,
}

#[async_trait]
impl TickTx for SqlTickTx {
    async fn mark_lost_workers(&mut self, now: i64) -> StoreResult<()> {
        sqlx::query("update workers set lost = 1 where lost = 0 and lease_expires_at < $1")
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn select(&mut self, which: Selector, limit: i64) -> StoreResult<Vec<TaskKey>> {
        let mut rare = String::new();
        if let Some(q) = rare_rows(which) {
            let pks: Vec<i64> = sqlx::query_scalar(q).fetch_all(&mut *self.tx).await?;
            if pks.is_empty() {
                return Ok(Vec::new());
            }
            // Keys this query just read: integers, written as literals.
            rare = pks
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
        }
        let sql = format!(
            "select {KEY_COLS} from tasks t {} limit $1",
            selector_sql(which, &rare)
        );
        sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn waiting(
        &mut self,
        state: TaskState,
        kind: DeployType,
        frozen_too: bool,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<Waiting>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let frozen = if frozen_too {
            ""
        } else {
            " and t.project_pk not in (select pk from projects where frozen = 1)"
        };
        // Read through `tasks_by_pick`: only what this pick returns (joins by
        // key, not as the outer loop, so the index order holds).
        let rows = sqlx::query(&format!(
            "select {KEY_COLS}, t.updated_at as updated_at, \
             cast(t.prio as bigint) as prio, t.created_at as created_at, \
             (select v.pool_pk from services v where v.pk = coalesce( \
             (select b.service_pk from batch_tasks b where b.pk = t.batch_pk), t.service_pk)) as pool_pk \
             from tasks t where t.state = {} and t.task_type = $2{frozen} \
             and (t.window_due is null or t.window_due > $3) \
             order by {BY_PRIORITY} limit $1",
            state.index()
        ))
        .bind(limit)
        .bind(kind.task_type())
        .bind(now)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Waiting {
                    key: key_from(r)?,
                    updated_at: r.try_get("updated_at")?,
                    pool: r.try_get("pool_pk")?,
                    order: (r.try_get("prio")?, r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn due_windows(&mut self, now: i64, limit: i64) -> StoreResult<Vec<DueWindow>> {
        let rows = sqlx::query(&format!(
            "select {KEY_COLS}, coalesce(t.schedule, b.schedule) as schedule, \
             t.schedule_hold as hold from tasks t left join batch_tasks b on b.pk = t.batch_pk \
             where t.window_due <= $1 order by t.window_due limit $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let schedule: Option<String> = r.try_get("schedule")?;
                Ok(DueWindow {
                    key: key_from(r)?,
                    schedule: schedule.and_then(|s| serde_json::from_str(&s).ok()),
                    held: r.try_get::<i64, _>("hold")? != 0,
                })
            })
            .collect()
    }

    async fn set_window_due(&mut self, task_pk: i64, due: Option<i64>) -> StoreResult<()> {
        sqlx::query("update tasks set window_due = $1 where pk = $2")
            .bind(due)
            .bind(task_pk)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn capacity(&mut self) -> StoreResult<Vec<WorkerSlots>> {
        let rows = sqlx::query(&format!(
            "select w.pk as pk, w.kind as kind, w.slots - (select count(*) from tasks t \
             where t.worker_pk = w.pk and t.state in ({})) as free, \
             (select string_agg(cast(ep.pk as text), ',') from edge_pools ep where ep.name = w.pool \
             or ep.pk in (select n.pool_pk from edge_pool_nodes n where n.node = w.name)) as pools \
             from workers w where w.lost = 0 order by w.pk",
            in_list(&HELD)
        ))
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            // A worker row that never registered has no kind yet.
            if let Some(kind) = DeployType::parse(&kind) {
                let pools: Option<String> = r.try_get("pools")?;
                out.push(WorkerSlots {
                    worker_pk: r.try_get("pk")?,
                    kind,
                    pools: pools
                        .iter()
                        .flat_map(|p| p.split(','))
                        .filter_map(|p| p.parse().ok())
                        .collect(),
                    free: r.try_get("free")?,
                });
            }
        }
        Ok(out)
    }

    async fn apply(
        &mut self,
        task: &TaskKey,
        event: Event,
        worker: Option<i64>,
        error: Option<TaskError>,
        now: i64,
    ) -> StoreResult<bool> {
        let error = error.map(|e| (e.code, e.message));
        Ok(move_task(
            &mut self.tx,
            task,
            event,
            worker,
            error,
            now,
            &mut self.touched,
        )
        .await?
        .is_some())
    }

    async fn apply_alike(
        &mut self,
        tasks: &[TaskKey],
        path: &[Event],
        worker: Option<i64>,
        now: i64,
    ) -> StoreResult<Vec<i64>> {
        // One statement per state the tasks were read in (one, in a pass).
        let mut moved = Vec::new();
        let mut states: Vec<TaskState> = tasks.iter().map(|t| t.state).collect();
        states.sort();
        states.dedup();
        for from in states {
            let group: Vec<&TaskKey> = tasks.iter().filter(|t| t.state == from).collect();
            let done = move_alike(
                &mut self.tx,
                from,
                &group,
                path,
                worker,
                now,
                &mut self.touched,
            )
            .await?;
            moved.extend(group.iter().map(|t| t.pk).filter(|pk| done.contains(pk)));
        }
        Ok(moved)
    }

    async fn report(
        &mut self,
        worker_pk: i64,
        reports: &[WorkerReport],
    ) -> StoreResult<Vec<Option<Applied>>> {
        let positional = self.writer.positional();
        let now = crate::domain::now_millis();
        apply_reports(
            &mut self.tx,
            positional,
            worker_pk,
            reports,
            now,
            &mut self.touched,
        )
        .await
    }

    async fn placed_on(&mut self, worker_pk: i64) -> StoreResult<Vec<Assignment>> {
        placed_on(&mut self.tx, worker_pk).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let SqlTickTx {
            mut tx,
            writer,
            touched,
        } = *self;
        finish(&writer, &mut tx, &touched).await?;
        tx.commit().await?;
        publish(&writer, &touched).await;
        Ok(())
    }
}

#[async_trait]
impl SchedulerStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug")]
    async fn begin_tick(&self) -> StoreResult<Box<dyn TickTx>> {
        Ok(Box::new(SqlTickTx {
            tx: self.begin_lifecycle().await?,
            writer: self.writer(),
            touched: Touched::new(),
        }))
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn extend_leases(&self, now: i64, lease_ms: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update workers set lease_expires_at = $1 \
             where lost = 0 and lease_expires_at < $1 and length(secret_hash) > 0",
        )
        .bind(now + lease_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, frozen = frozen))]
    async fn set_project_frozen(&self, project_pk: i64, frozen: bool) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("update projects set frozen = $1 where pk = $2")
            .bind(i64::from(frozen))
            .bind(project_pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, service_name = service_name, service_version = service_version, deployed = deployed))]
    async fn set_service_deployed(
        &self,
        project_pk: i64,
        service_name: &str,
        service_version: &str,
        deployed: bool,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
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
            return Err(StoreError::not_found(Entity::Service, "service_version"));
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, service_name = service_name, from = from, to = to))]
    async fn upgrade_service(
        &self,
        project_pk: i64,
        service_name: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_lifecycle().await?;
        let svc = sqlx::query(
            "select pk, alg_name, company, deploy_type from services \
             where project_pk = $1 and service_name = $2 and service_version = $3",
        )
        .bind(project_pk)
        .bind(service_name)
        .bind(to)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(Entity::Service, "service_version"))?;
        let to_pk: i64 = svc.try_get("pk")?;
        let task_type = DeployType::parse(&svc.try_get::<String, _>("deploy_type")?)
            .unwrap_or(DeployType::Cloud)
            .task_type();
        // The batches' tasks run where their type says (cloud workers or an
        // edge pool): a new version of another type would strand them.
        let other_type: Option<String> = sqlx::query_scalar(
            "select task_type from batch_tasks where project_pk = $1 and service_name = $2 \
             and service_version = $3 and task_type <> $4 limit 1",
        )
        .bind(project_pk)
        .bind(service_name)
        .bind(from)
        .bind(task_type)
        .fetch_optional(&mut *tx)
        .await?;
        if other_type.is_some() {
            return Err(StoreError::NotAllowed(format!(
                "{service_name} {to} deploys to another type (cloud or edge) than {from}: \
                 an upgrade keeps where the tasks run"
            )));
        }
        // The batches show the new version's algorithm and vendor, as a
        // batch created on it would.
        let pks: Vec<i64> = sqlx::query_scalar(
            "update batch_tasks set service_version = $1, service_pk = $2, alg_name = $6, company = $7 \
             where project_pk = $3 and service_name = $4 and service_version = $5 returning pk",
        )
        .bind(to)
        .bind(to_pk)
        .bind(project_pk)
        .bind(service_name)
        .bind(from)
        .bind(svc.try_get::<String, _>("alg_name")?)
        .bind(svc.try_get::<String, _>("company")?)
        .fetch_all(&mut *tx)
        .await?;
        let touched: Touched = pks.iter().map(|b| (project_pk, *b)).collect();
        self.finish(&mut tx, &touched).await?;
        tx.commit().await?;
        self.publish(&touched).await;
        Ok(pks.len() as u64)
    }
}
