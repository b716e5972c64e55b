//! Tasks and the batch operations that act on them: ListTasks, ShowTask,
//! StartStopTask, DeleteTask, BatchStartStopTask and DeleteBatchTask. They
//! express intent only; the transition table decides, and the scheduler and
//! workers carry it out.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Authed};
use super::AppState;
use crate::domain::query::QueryParams;
use crate::domain::transition::{Event, Outcome};
use crate::domain::{FieldError, TaskState};
use crate::store::lifecycle::{Applied, ListTasksQuery, TaskDetail};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub(super) struct TaskDto {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_id: Option<String>,
    video_source_id: String,
    /// UPPERCASE in task objects, as the contract says.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<String>,
    attempt: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<TaskErrorDto>,
    created_at: i64,
    updated_at: i64,
    /// ShowTask only.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<HistoryDto>>,
}

#[derive(Serialize)]
struct HistoryDto {
    at: i64,
    from: String,
    event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
}

#[derive(Serialize)]
struct TaskErrorDto {
    code: String,
    message: String,
}

impl From<TaskDetail> for TaskDto {
    fn from(t: TaskDetail) -> Self {
        TaskDto {
            id: t.id,
            batch_id: t.batch_id,
            video_source_id: t.video_source_id,
            state: t.state.as_upper(),
            worker_id: t.worker_id,
            attempt: t.attempt,
            error: t.error_code.map(|code| TaskErrorDto {
                code,
                message: t.error_message.unwrap_or_default(),
            }),
            created_at: t.created_at,
            updated_at: t.updated_at,
            history: None,
        }
    }
}

#[derive(Serialize)]
pub(super) struct TaskList {
    /// VIAS: the number of entries on this page.
    count: u64,
    tasks: Vec<TaskDto>,
    page: u32,
    page_size: u32,
}

/// `batch_id`, `task_state` (one state or a comma list), `page` (from 0,
/// default 0), `page_size` (5–1000, default 10), `sort_dir` (`asc`|`desc`,
/// default `desc`: newest first).
fn list_query(raw: Option<&str>) -> Result<ListTasksQuery, FieldError> {
    let q = QueryParams::parse(
        raw,
        &["batch_id", "task_state", "page", "page_size", "sort_dir"],
    )?;
    let batch_id = match q.get("batch_id") {
        Some(b) => {
            crate::domain::field::check_id("batch_id", b)?;
            Some(b.to_owned())
        }
        None => None,
    };
    let mut states = Vec::new();
    if let Some(s) = q.get("task_state") {
        for item in s.split(',') {
            states.push(
                item.parse::<TaskState>()
                    .map_err(|_| FieldError::new("task_state", "unknown task state"))?,
            );
        }
    }
    let page = q.int("page", 0, 1_000_000, 0)?;
    let page_size = q.int("page_size", 5, 1000, 10)?;
    let descending = match q.get("sort_dir") {
        None => true,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(_) => return Err(FieldError::new("sort_dir", "sort_dir is asc or desc")),
    };
    Ok(ListTasksQuery {
        batch_id,
        states,
        page,
        page_size,
        descending,
    })
}

pub(super) async fn list_tasks(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<TaskList>> {
    let q = list_query(raw.as_deref())?;
    let tasks = st.store.list_tasks(p.pk, &q).await?;
    Ok(Json(TaskList {
        count: tasks.len() as u64,
        tasks: tasks.into_iter().map(Into::into).collect(),
        page: q.page,
        page_size: q.page_size,
    }))
}

fn task_not_found() -> ApiError {
    ApiError::NotFound {
        param: Some("task_id".into()),
        detail: "task does not exist".into(),
    }
}

pub(super) async fn show_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskDto>> {
    let t = st
        .store
        .find_task(p.pk, &id)
        .await?
        .ok_or_else(task_not_found)?;
    let history = st.store.list_task_history(p.pk, &id).await?;
    let mut dto = TaskDto::from(t);
    dto.history = Some(
        history
            .into_iter()
            .map(|h| HistoryDto {
                at: h.at,
                from: h.from.as_upper(),
                event: h.event,
                to: h.to.map(|s| s.as_upper()),
            })
            .collect(),
    );
    Ok(Json(dto))
}

/// The reply of an operation on one task: the task as it is now (or its id
/// when the operation deleted it).
#[derive(Serialize)]
pub(super) struct TaskOpReply {
    id: String,
    state: Option<String>,
}

async fn task_op(st: &AppState, project_pk: i64, id: &str, event: Event) -> ApiResult<TaskOpReply> {
    match st.store.apply_task_event(project_pk, id, event).await? {
        Applied::Moved { to, .. } => Ok(TaskOpReply {
            id: id.to_owned(),
            state: match to {
                Outcome::To(s) => Some(s.as_upper()),
                Outcome::Gone => None,
            },
        }),
        Applied::Refused { state } => Err(ApiError::NotAllowed(format!(
            "{} is not allowed on a task in state {}",
            verb(event),
            state.as_upper()
        ))),
    }
}

fn verb(e: Event) -> &'static str {
    match e {
        Event::Start => "start",
        Event::Stop => "stop",
        _ => "delete",
    }
}

pub(super) async fn start_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskOpReply>> {
    Ok(Json(task_op(&st, p.pk, &id, Event::Start).await?))
}

pub(super) async fn stop_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskOpReply>> {
    Ok(Json(task_op(&st, p.pk, &id, Event::Stop).await?))
}

pub(super) async fn delete_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskOpReply>> {
    Ok(Json(task_op(&st, p.pk, &id, Event::Delete).await?))
}

/// The contract's batch reply, with one error_list entry per task the
/// operation could not apply to.
#[derive(Serialize)]
pub(super) struct BatchOpReply {
    id: String,
    total_count: u64,
    succeed_count: u64,
    failed_count: u64,
    error_list: Vec<TaskOpError>,
}

#[derive(Serialize)]
struct TaskOpError {
    task_id: String,
    error_code: &'static str,
    error_msg: String,
}

async fn batch_op(
    st: &AppState,
    project_pk: i64,
    id: &str,
    event: Event,
) -> ApiResult<BatchOpReply> {
    let results = st.store.apply_batch_event(project_pk, id, event).await?;
    let error_list: Vec<TaskOpError> = results
        .iter()
        .filter_map(|(task_id, a)| match a {
            Applied::Moved { .. } => None,
            Applied::Refused { state } => Some(TaskOpError {
                task_id: task_id.clone(),
                error_code: "VIAS.00010012",
                error_msg: format!(
                    "{} is not allowed on a task in state {}",
                    verb(event),
                    state.as_upper()
                ),
            }),
        })
        .collect();
    Ok(BatchOpReply {
        id: id.to_owned(),
        total_count: results.len() as u64,
        succeed_count: (results.len() - error_list.len()) as u64,
        failed_count: error_list.len() as u64,
        error_list,
    })
}

pub(super) async fn start_batch(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<BatchOpReply>> {
    Ok(Json(batch_op(&st, p.pk, &id, Event::Start).await?))
}

pub(super) async fn stop_batch(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<BatchOpReply>> {
    Ok(Json(batch_op(&st, p.pk, &id, Event::Stop).await?))
}

pub(super) async fn delete_batch(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<BatchOpReply>> {
    Ok(Json(batch_op(&st, p.pk, &id, Event::Delete).await?))
}
