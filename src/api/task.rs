//! Tasks and the operations that act on them: CreateTask, ListTasks,
//! ShowTaskInfo, UpdateTask, StartStopTask, DeleteTask, and the batch
//! operations BatchStartStopTask and DeleteBatchTask. Operations express
//! intent only; the transition table decides, and the scheduler and
//! workers carry it out.

use super::batch_task::{check_order_id, parse_output, parse_schedule, TaskOutput, TaskSchedule};
use super::catalogue::{required, text};
use super::error::{ApiError, ApiResult};
use super::extract::{ActionPath, ApiJson, ApiPath, Authed, ServicePath};
use super::AppState;
use crate::domain::query::{comma_items, QueryParams};
use crate::domain::transition::{Event, Outcome};
use crate::domain::{
    alg_id_of, field, now_millis, rfc3339_millis, DeployType, FieldError, TaskState,
};
use crate::store::lifecycle::{
    Applied, ListTasksQuery, NewTasks, TaskDetail, TaskInputEntry, TaskUpdate,
};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Task times as VIAS's SDK reads them: text (ISO 8601, UTC), never a
/// number.
fn iso(ms: i64) -> String {
    let full = rfc3339_millis(ms);
    format!("{}Z", &full[..19])
}

/// TaskInfo: an item of ListTasks. VIAS's fields, then ours (extra fields
/// are ignored by the SDK).
#[derive(Serialize)]
pub(super) struct TaskInfoDto {
    id: String,
    name: String,
    service_id: String,
    created_at: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_source_name: Option<String>,
    title: String,
    #[serde(rename = "type")]
    task_type: &'static str,
    algorithm_publish_id: String,
    #[serde(flatten)]
    ours: TaskExtras,
}

/// What taskcenter adds to a task object: where it runs and how it went.
#[derive(Serialize)]
pub(super) struct TaskExtras {
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_source_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_name: Option<String>,
    attempt: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<TaskErrorDto>,
}

#[derive(Serialize)]
struct TaskErrorDto {
    code: String,
    message: String,
}

fn extras(t: &TaskDetail) -> TaskExtras {
    TaskExtras {
        batch_id: t.batch_id.clone(),
        video_source_id: t.video_source_id.clone(),
        worker_id: t.worker_id.clone(),
        worker_name: t.worker_name.clone(),
        attempt: t.attempt,
        error: t.error_code.clone().map(|code| TaskErrorDto {
            code,
            message: t.error_message.clone().unwrap_or_default(),
        }),
    }
}

impl From<TaskDetail> for TaskInfoDto {
    fn from(t: TaskDetail) -> Self {
        TaskInfoDto {
            ours: extras(&t),
            algorithm_publish_id: alg_id_of(&t.service_id),
            id: t.id,
            name: t.name,
            service_id: t.service_id,
            created_at: iso(t.created_at),
            state: t.state.as_upper(),
            video_source_name: t.video_source_name,
            title: t.alg_name,
            task_type: t.task_type.task_type(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct TaskList {
    /// VIAS: the number of entries on this page.
    count: u64,
    tasks: Vec<TaskInfoDto>,
    page: u32,
    page_size: u32,
}

fn list_query(raw: Option<&str>) -> Result<(ListTasksQuery, bool), FieldError> {
    let q = QueryParams::parse(
        raw,
        &[
            "source_data_type",
            "title",
            "camera_name",
            "task_state",
            "task_name",
            "page_size",
            "page",
            "sort_dir",
            "batch_id",
            "video_group_id",
            "company",
            "alg_id",
        ],
    )?;
    // Every task of taskcenter is asynchronous.
    let sync_only = q.choice("source_data_type", &["async_task", "sync_task"])? == Some(1);
    let batch_id = match q.get("batch_id") {
        Some(b) => {
            field::check_id("batch_id", b)?;
            Some(b.to_owned())
        }
        None => None,
    };
    let mut states = Vec::new();
    if let Some(s) = q.get("task_state") {
        for item in comma_items(s) {
            states
                .push(item.parse::<TaskState>().map_err(|_| {
                    FieldError::new("task_state", "task_state is not a task state")
                })?);
        }
        if states.is_empty() {
            return Err(FieldError::new(
                "task_state",
                "task_state names no task state",
            ));
        }
    }
    // Free-text filters take no control characters (a NUL cannot even be
    // compared by PostgreSQL).
    for param in ["title", "company", "video_group_id", "alg_id"] {
        if q.get(param)
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(FieldError::new(
                param,
                format!("{param} must not contain control characters"),
            ));
        }
    }
    let titles = match q.get("title") {
        Some(t) => {
            field::check_length("title", t, 2, 64)?;
            comma_items(t)
        }
        None => Vec::new(),
    };
    let companies = q.get("company").map(comma_items).unwrap_or_default();
    let group_ids = match q.get("video_group_id") {
        Some(g) => {
            // VIAS says 4 to 2048 characters; taskcenter's group ids (chosen
            // by clients) may be shorter than VIAS's, and must be findable.
            field::check_length("video_group_id", g, 1, 2048)?;
            comma_items(g)
        }
        None => Vec::new(),
    };
    let like = |name: &str, max: usize| -> Result<Option<String>, FieldError> {
        Ok(text(name, q.get(name).map(str::to_owned), max)?.filter(|v| !v.is_empty()))
    };
    // VIAS counts pages from 1.
    let page = q.int("page", 1, 1_000_000, 1)? - 1;
    let page_size = q.int("page_size", 5, 1000, 10)?;
    let descending = match q.get("sort_dir") {
        None => true,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(_) => return Err(FieldError::new("sort_dir", "sort_dir is asc or desc")),
    };
    let alg_id = q.get("alg_id").map(str::to_owned);
    Ok((
        ListTasksQuery {
            batch_id,
            states,
            page,
            page_size,
            descending,
            name_like: like("task_name", 1024)?,
            source_name_like: like("camera_name", 255)?,
            titles,
            companies,
            group_ids,
            service_ids: alg_id.into_iter().collect(),
        },
        sync_only,
    ))
}

pub(super) async fn list_tasks(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<TaskList>> {
    let (mut q, sync_only) = list_query(raw.as_deref())?;
    // `alg_id` names an algorithm: find its service.
    if let Some(alg) = q.service_ids.pop() {
        if let Some(s) = st.store.find_service(p.pk, &alg).await? {
            q.service_ids.push(s.id);
        } else {
            q.service_ids.push(String::new());
        }
    }
    let tasks = if sync_only {
        Vec::new()
    } else {
        st.store.list_tasks(p.pk, &q).await?
    };
    Ok(Json(TaskList {
        count: tasks.len() as u64,
        tasks: tasks.into_iter().map(Into::into).collect(),
        page: q.page + 1,
        page_size: q.page_size,
    }))
}

fn task_not_found() -> ApiError {
    ApiError::NotFound {
        param: Some("task_id".into()),
        detail: "task does not exist".into(),
    }
}

/// ShowTaskInfoResponse, plus our history of every move.
#[derive(Serialize)]
pub(super) struct TaskShowDto {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    creator: Option<String>,
    project_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    release_id: String,
    service_id: String,
    created_at: String,
    updated_at: String,
    state: String,
    // `error` is VIAS's too; it comes once, with `ours`.
    /// `ACTIVATED` while the schedule runs the task in its windows (it is
    /// live, or held stopped until the next window); `INACTIVATED` once a
    /// user stopped it or it ended. Absent without a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<Value>,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_source_name: Option<String>,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name: Option<String>,
    company: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_config: Option<String>,
    #[serde(rename = "type")]
    task_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_order_id: Option<String>,
    package_id: String,
    algorithm_publish_id: String,
    #[serde(flatten)]
    ours: TaskExtras,
    service_name: String,
    service_version: String,
    history: Vec<HistoryDto>,
}

#[derive(Serialize)]
struct HistoryDto {
    at: i64,
    from: String,
    event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    /// A placement's worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_name: Option<String>,
}

pub(super) async fn show_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskShowDto>> {
    let t = st
        .store
        .find_task(p.pk, &id)
        .await?
        .ok_or_else(task_not_found)?;
    let history = st.store.list_task_history(p.pk, &id).await?;
    Ok(Json(show_dto(t, history)))
}

fn show_dto(t: TaskDetail, history: Vec<crate::store::lifecycle::TaskHistory>) -> TaskShowDto {
    // A batch's task reads one video source.
    let input = t.input.clone().unwrap_or_else(|| {
        let mut data = json!({"video_source_id": t.video_source_id});
        if let Some(roi) = &t.target_roi {
            data["target_roi"] = Value::String(roi.clone());
        }
        json!({"type": "video_source", "data": [data]})
    });
    TaskShowDto {
        ours: extras(&t),
        algorithm_publish_id: alg_id_of(&t.service_id),
        id: t.id,
        name: t.name,
        creator: t.creator,
        project_id: t.project_id,
        description: t.description,
        release_id: t.service_id.clone(),
        package_id: t.service_id.clone(),
        service_id: t.service_id,
        created_at: iso(t.created_at),
        updated_at: iso(t.updated_at),
        state: t.state.as_upper(),
        schedule_status: t.schedule.as_ref().map(|_| {
            if t.schedule_held || !t.state.at_rest() {
                "ACTIVATED"
            } else {
                "INACTIVATED"
            }
        }),
        schedule: t.schedule,
        input,
        task_config: t.config.as_ref().map(Value::to_string),
        output: t.output,
        config: t.config,
        video_source_name: t.video_source_name,
        title: t.alg_name,
        group_name: t.group_names,
        company: t.company,
        task_type: t.task_type.as_str(),
        resource_order_id: t.resource_order_id,
        service_name: t.service_name,
        service_version: t.service_version,
        history: history
            .into_iter()
            .map(|h| HistoryDto {
                at: h.at,
                from: h.from.as_upper(),
                event: h.event,
                to: h.to.map(|s| s.as_upper()),
                worker_id: h.worker_id,
                worker_name: h.worker_name,
            })
            .collect(),
    }
}

/// TaskInput as CreateTask and UpdateTask send it.
#[derive(Deserialize, Serialize)]
pub(super) struct TaskInput {
    #[serde(rename = "type")]
    input_type: Option<String>,
    data: Option<Vec<TaskInputData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vcn: Option<Value>,
}

#[derive(Deserialize, Serialize)]
struct TaskInputData {
    #[serde(skip_serializing_if = "Option::is_none")]
    video_source_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtsp_path_in_response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_type: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_check: Option<bool>,
}

/// Input types VIAS lists, and whether each is for cloud or edge services.
const INPUT_TYPES: [(&str, Option<DeployType>); 6] = [
    ("video_source", None),
    ("obs", Some(DeployType::Cloud)),
    ("url", Some(DeployType::Cloud)),
    ("edgecamera", Some(DeployType::Edge)),
    ("restful", None),
    ("vcn", Some(DeployType::Edge)),
];

/// A URL the SDK can parse as a `java.net.URI`: no white space or control
/// characters, a scheme.
fn check_uri(param: &str, u: &str, max: usize) -> Result<(), FieldError> {
    field::check_length(param, u, 1, max)?;
    let scheme_ok = u.split_once("://").is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !scheme_ok || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::new(
            param,
            format!("{param} must be a URI such as rtsp://host/path"),
        ));
    }
    Ok(())
}

/// Checks a TaskInput and says where each entry reads from.
fn parse_input(
    input: TaskInput,
    single: bool,
) -> Result<(Value, String, Vec<TaskInputEntry>), FieldError> {
    let kind = required(input.input_type.clone(), "input.type")?;
    let kind = INPUT_TYPES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&kind))
        .map(|(k, _)| *k)
        .ok_or_else(|| {
            FieldError::new(
                "input.type",
                "input.type must be video_source, obs, url, edgecamera, restful or vcn",
            )
        })?;
    let data = required(input.data.as_ref(), "input.data")?;
    let max = if single { 1 } else { 100 };
    if data.is_empty() || data.len() > max {
        return Err(FieldError::new(
            "input.data",
            format!("input.data must hold 1 to {max} entries"),
        ));
    }
    let mut entries = Vec::with_capacity(data.len());
    for d in data {
        let need = |v: &Option<String>, name: &str| -> Result<String, FieldError> {
            v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
                FieldError::new(
                    format!("input.data.{name}"),
                    format!("input.data.{name} is required for {kind} inputs"),
                )
            })
        };
        let entry = match kind {
            "video_source" => {
                let id = need(&d.video_source_id, "video_source_id")?;
                field::check_id("input.data.video_source_id", &id)?;
                TaskInputEntry::Source(id)
            }
            "url" => {
                let u = need(&d.url, "url")?;
                check_uri("input.data.url", &u, 1000)?;
                TaskInputEntry::Url(u)
            }
            "restful" => {
                let u = need(&d.url, "url")?;
                check_uri("input.data.url", &u, 1000)?;
                let path = need(&d.rtsp_path_in_response, "rtsp_path_in_response")?;
                field::check_text("input.data.rtsp_path_in_response", &path, 1024)?;
                if d.certificate_check.is_none() {
                    return Err(FieldError::new(
                        "input.data.certificate_check",
                        "input.data.certificate_check is required for restful inputs",
                    ));
                }
                if d.headers.as_ref().is_some_and(|h| h.len() > 10) {
                    return Err(FieldError::new(
                        "input.data.headers",
                        "input.data.headers holds at most 10 pairs",
                    ));
                }
                TaskInputEntry::Url(u)
            }
            "obs" => {
                let bucket = need(&d.bucket, "bucket")?;
                let path = need(&d.path, "path")?;
                TaskInputEntry::Url(format!("obs://{bucket}/{path}"))
            }
            "vcn" => {
                let device = need(&d.device_id, "device_id")?;
                if d.stream_type.is_some_and(|t| !(1..=3).contains(&t)) {
                    return Err(FieldError::new(
                        "input.data.stream_type",
                        "input.data.stream_type is 1, 2 or 3",
                    ));
                }
                TaskInputEntry::Url(format!("vcn://{device}"))
            }
            _ => TaskInputEntry::Url(format!("edgecamera://{}", need(&d.id, "id")?)),
        };
        entries.push(entry);
    }
    let whole =
        serde_json::to_value(&input).map_err(|e| FieldError::new("input", e.to_string()))?;
    Ok((whole, kind.to_owned(), entries))
}

#[derive(Deserialize)]
pub(super) struct CreateTaskBody {
    name: Option<String>,
    description: Option<String>,
    schedule: Option<TaskSchedule>,
    input: Option<TaskInput>,
    output: Option<TaskOutput>,
    config: Option<serde_json::Map<String, Value>>,
    service_version: Option<String>,
    is_saved_as_template: Option<bool>,
    resource_order_id: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CreateTaskReply {
    tasks: Vec<CreatedTask>,
}

#[derive(Serialize)]
struct CreatedTask {
    id: String,
}

pub(super) async fn create_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ServicePath(service_name): ServicePath,
    ApiJson(b): ApiJson<CreateTaskBody>,
) -> ApiResult<Json<CreateTaskReply>> {
    let name = required(b.name, "name")?;
    field::check_batch_name("name", &name)?;
    let version = required(b.service_version, "service_version")?;
    field::check_service_token("service_version", &version)?;
    let (input, kind, entries) = parse_input(required(b.input, "input")?, false)?;
    let svc = st
        .store
        .list_services(
            p.pk,
            &crate::store::ServiceFilter::default(),
            crate::store::Listing {
                sort: crate::store::ServiceSort::CreatedAt,
                descending: false,
                page: None,
            },
        )
        .await?
        .items
        .into_iter()
        .find(|s| s.service_name == service_name && s.service_version == version)
        .ok_or_else(|| ApiError::NotFound {
            param: Some("service_version".into()),
            detail: "no algorithm service of this name and version".into(),
        })?;
    if let Some((_, Some(only))) = INPUT_TYPES.iter().find(|(k, _)| *k == kind) {
        if *only != svc.deploy_type {
            return Err(FieldError::new(
                "input.type",
                format!("{kind} inputs are for {} services only", only.as_str()),
            )
            .into());
        }
    }
    check_order_id(&b.resource_order_id)?;
    let _ = b.is_saved_as_template;
    let t = NewTasks {
        service_name,
        service_version: version,
        name,
        description: text("description", b.description, 500)?.unwrap_or_default(),
        input,
        entries,
        output: parse_output(required(b.output, "output")?)?,
        config: b.config.map(Value::Object),
        schedule: b.schedule.map(parse_schedule).transpose()?,
        resource_order_id: b.resource_order_id,
        creator: None,
        created_at: now_millis(),
    };
    let ids = st.store.create_tasks(p.pk, &t).await?;
    Ok(Json(CreateTaskReply {
        tasks: ids.into_iter().map(|id| CreatedTask { id }).collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct UpdateTaskBody {
    name: Option<String>,
    description: Option<String>,
    schedule: Option<TaskSchedule>,
    input: Option<TaskInput>,
    output: Option<TaskOutput>,
    config: Option<serde_json::Map<String, Value>>,
    is_saved_as_template: Option<bool>,
    resource_order_id: Option<String>,
}

pub(super) async fn update_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
    ApiJson(b): ApiJson<UpdateTaskBody>,
) -> ApiResult<Json<TaskOpReply>> {
    if let Some(n) = &b.name {
        field::check_batch_name("name", n)?;
    }
    check_order_id(&b.resource_order_id)?;
    let _ = b.is_saved_as_template;
    let input = match b.input {
        Some(i) => {
            let (whole, _, mut entries) = parse_input(i, true)?;
            entries.pop().map(|e| (whole, e))
        }
        None => None,
    };
    let u = TaskUpdate {
        name: b.name,
        description: text("description", b.description, 500)?,
        input,
        output: b.output.map(parse_output).transpose()?,
        config: b.config.map(Value::Object),
        schedule: b.schedule.map(parse_schedule).transpose()?,
        resource_order_id: b.resource_order_id,
    };
    let t = st.store.update_task(p.pk, &id, &u).await?;
    Ok(Json(TaskOpReply {
        id: t.id,
        state: Some(t.state.as_upper()),
    }))
}

/// The reply of an operation on one task: the task as it is now (no
/// `state` once it is gone). VIAS declares this body as any JSON.
#[derive(Serialize)]
pub(super) struct TaskOpReply {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
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
        Applied::Refused { state } => Err(ApiError::NotAllowed(refusal(event, state))),
    }
}

fn refusal(event: Event, state: TaskState) -> String {
    let verb = match event {
        Event::Start => "start",
        Event::Stop => "stop",
        _ => "delete",
    };
    format!(
        "{verb} is not allowed on a task in state {}",
        state.as_upper()
    )
}

pub(super) async fn task_action(
    State(st): State<AppState>,
    Authed(p): Authed,
    ActionPath { id, event }: ActionPath,
) -> ApiResult<Json<TaskOpReply>> {
    Ok(Json(task_op(&st, p.pk, &id, event).await?))
}

pub(super) async fn delete_task(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<TaskOpReply>> {
    Ok(Json(task_op(&st, p.pk, &id, Event::Delete).await?))
}

/// BatchOpResult, with one error_list entry per task the operation could
/// not apply to: a string, as the SDK reads it, `<task id>: <code> <why>`.
#[derive(Serialize)]
pub(super) struct BatchOpReply {
    id: String,
    total_count: u64,
    succeed_count: u64,
    failed_count: u64,
    error_list: Vec<String>,
}

async fn batch_op(
    st: &AppState,
    project_pk: i64,
    id: &str,
    event: Event,
) -> ApiResult<BatchOpReply> {
    let results = st.store.apply_batch_event(project_pk, id, event).await?;
    let error_list: Vec<String> = results
        .iter()
        .filter_map(|(task_id, a)| match a {
            Applied::Moved { .. } => None,
            Applied::Refused { state } => Some(format!(
                "{task_id}: VIAS.00010012 {}",
                refusal(event, *state)
            )),
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

pub(super) async fn batch_action(
    State(st): State<AppState>,
    Authed(p): Authed,
    ActionPath { id, event }: ActionPath,
) -> ApiResult<Json<BatchOpReply>> {
    Ok(Json(batch_op(&st, p.pk, &id, event).await?))
}

pub(super) async fn delete_batch(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<BatchOpReply>> {
    Ok(Json(batch_op(&st, p.pk, &id, Event::Delete).await?))
}
