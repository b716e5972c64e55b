//! Reading tasks: ShowTask, ListTasks and a task's history.

use super::moves::{in_list, task_key};
use super::{ListTasksQuery, TaskDetail, TaskHistory};
use crate::store::sql_store::SqlStore;
use crate::store::{stored_state, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Columns `detail_from` decodes, with the joins they need.
const DETAIL_COLS: &str = "t.id as task_id, b.id as batch_id, s.id as source_id, \
     t.state as state, w.id as worker_id, t.attempt as attempt, t.error_code as error_code, \
     t.error_message as error_message, t.created_at as created_at, t.updated_at as updated_at \
     from tasks t left join batch_tasks b on b.pk = t.batch_pk \
     join video_sources s on s.pk = t.video_source_pk left join workers w on w.pk = t.worker_pk";

fn detail_from(r: &AnyRow) -> StoreResult<TaskDetail> {
    Ok(TaskDetail {
        id: r.try_get("task_id")?,
        batch_id: r.try_get("batch_id")?,
        video_source_id: r.try_get("source_id")?,
        state: stored_state(r.try_get("state")?)?,
        worker_id: r.try_get("worker_id")?,
        attempt: r.try_get("attempt")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Columns `history_from` decodes.
const HISTORY_COLS: &str = "at, from_state, event, to_state";

fn history_from(r: &AnyRow) -> StoreResult<TaskHistory> {
    Ok(TaskHistory {
        at: r.try_get("at")?,
        from: stored_state(r.try_get("from_state")?)?,
        event: r.try_get("event")?,
        to: r
            .try_get::<Option<i64>, _>("to_state")?
            .map(stored_state)
            .transpose()?,
    })
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id))]
pub(super) async fn task(
    s: &SqlStore,
    project_pk: i64,
    task_id: &str,
) -> StoreResult<Option<TaskDetail>> {
    let mut tx = s.begin_read().await?;
    let r = sqlx::query(&format!(
        "select {DETAIL_COLS} where t.project_pk = $1 and t.id = $2"
    ))
    .bind(project_pk)
    .bind(task_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    r.as_ref().map(detail_from).transpose()
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
pub(super) async fn list_tasks(
    s: &SqlStore,
    project_pk: i64,
    q: &ListTasksQuery,
) -> StoreResult<Vec<TaskDetail>> {
    let mut tx = s.begin_read().await?;
    let mut sql = format!("select {DETAIL_COLS} where t.project_pk = $1");
    if q.batch_id.is_some() {
        sql.push_str(" and b.id = $4");
    }
    if !q.states.is_empty() {
        sql.push_str(&format!(" and t.state in ({})", in_list(&q.states)));
    }
    let dir = if q.descending { "desc" } else { "asc" };
    sql.push_str(&format!(
        " order by t.created_at {dir}, t.id {dir} limit $2 offset $3"
    ));
    let mut query = sqlx::query(&sql)
        .bind(project_pk)
        .bind(i64::from(q.page_size))
        .bind(i64::from(q.page) * i64::from(q.page_size));
    if let Some(b) = &q.batch_id {
        query = query.bind(b.as_str());
    }
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    rows.iter().map(detail_from).collect()
}

#[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk, task_id = task_id))]
pub(super) async fn task_history(
    s: &SqlStore,
    project_pk: i64,
    task_id: &str,
) -> StoreResult<Vec<TaskHistory>> {
    let mut tx = s.begin_read().await?;
    let t = task_key(&mut tx, project_pk, task_id).await?;
    let rows = sqlx::query(&format!(
        "select {HISTORY_COLS} from task_events where task_pk = $1 order by pk"
    ))
    .bind(t.pk)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(history_from).collect()
}
