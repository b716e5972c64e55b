//! Batch-task routes: the list (the heart of the contract) and create.

use super::catalogue::required;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Authed};
use super::AppState;
use crate::domain::schedule::Schedule;
use crate::domain::{field, now_millis, random_hex, FieldError, ListBatchTasksParams, TaskState};
use crate::store::lifecycle::BatchUpdate;
use crate::store::{
    BatchCreated, BatchGroupInput, BatchSourceInput, BatchTaskPage, BatchTaskRow, NewBatchTask,
    SourceProblem,
};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// Counters of the states with at least one task, in contract order.
pub(super) struct StatusInfo<'a>(&'a [i64; 18]);

impl Serialize for StatusInfo<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for st in TaskState::ALL {
            let n = self.0[st.index()];
            if n > 0 {
                m.serialize_entry(st.as_str(), &n)?;
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
pub(super) struct BatchTaskDto<'a> {
    id: &'a str,
    batch_task_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_source_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_group_name: Option<&'a str>,
    alg_name: &'a str,
    company: &'a str,
    /// Ours: the service the batch runs (BatchTaskDto names only the
    /// algorithm).
    service_name: &'a str,
    service_version: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    priority: &'a str,
    num_task: i64,
    created_at: i64,
    batch_task_status_info: StatusInfo<'a>,
}

impl<'a> From<&'a BatchTaskRow> for BatchTaskDto<'a> {
    fn from(r: &'a BatchTaskRow) -> Self {
        BatchTaskDto {
            id: &r.id,
            batch_task_name: &r.name,
            video_source_name: r.video_source_name.as_deref(),
            video_group_name: r.video_group_name.as_deref().filter(|s| !s.is_empty()),
            alg_name: &r.alg_name,
            company: &r.company,
            service_name: &r.service_name,
            service_version: &r.service_version,
            task_type: &r.task_type,
            priority: &r.priority,
            num_task: r.num_task,
            created_at: r.created_at,
            batch_task_status_info: StatusInfo(&r.counters),
        }
    }
}

/// If-None-Match's weak comparison (RFC 9110 §13.1.2): `*` matches any
/// current page, and `W/` is ignored on either side.
fn etag_matches(sent: &str, ours: &str) -> bool {
    fn opaque(t: &str) -> &str {
        t.strip_prefix("W/").unwrap_or(t)
    }
    sent == "*" || opaque(sent) == opaque(ours)
}

pub(super) async fn list_batch_tasks(
    State(st): State<AppState>,
    Authed(project): Authed,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let params = ListBatchTasksParams::parse(raw.as_deref())?;
    let page = if st.list_from_db {
        st.store
            .list_batch_tasks_from_db(project.pk, &params)
            .await?
    } else {
        st.store.list_batch_tasks(project.pk, &params).await?
    };
    if params.paging.is_some() {
        // Conditional requests (our extension): a page of the in-memory view
        // carries an ETag naming the view's version and the query; a client
        // that sends it back in If-None-Match gets 304 until either changes.
        // With `Prefer: wait=N` it is a long poll: the answer comes when the
        // page's content changes, or as 304 after N seconds.
        let mut page = page;
        let mut etag = (page.generation != 0).then(|| list_etag(page.generation, raw.as_deref()));
        if let Some(tag) = &etag {
            let seen = headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| etag_matches(t.trim(), tag));
            if seen {
                let waited = match preferred_wait(&headers) {
                    Some(wait) => wait_for_change(&st, project.pk, &params, page, wait).await?,
                    None => Waited::Same(page.generation),
                };
                match waited {
                    Waited::Same(generation) => {
                        let tag = list_etag(generation, raw.as_deref());
                        return Ok(
                            (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response()
                        );
                    }
                    Waited::Changed(newer) => {
                        etag = Some(list_etag(newer.generation, raw.as_deref()));
                        page = newer;
                    }
                }
            }
        }
        let mut body = head(page.count);
        for (i, r) in page.rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(render(r));
        }
        body.extend_from_slice(b"]}");
        let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(tag) = etag.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
            resp.headers_mut().insert(header::ETAG, tag);
        }
        return Ok(resp);
    }
    Ok(stream_reply(page))
}

/// The longest a list long poll waits (`Prefer: wait=N` asks for N seconds).
const MAX_LIST_WAIT: Duration = Duration::from_secs(20);
/// A long poll looks again at most this often, so a burst of changes costs
/// one recomputation per waiter.
const LIST_WAIT_STEP: Duration = Duration::from_millis(100);

/// `Prefer: wait=N` (RFC 7240), N whole seconds from 1, at most 20.
fn preferred_wait(headers: &axum::http::HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim().eq_ignore_ascii_case("wait"))
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s).min(MAX_LIST_WAIT))
}

enum Waited {
    /// Nothing on the page changed; the view's version now.
    Same(u64),
    Changed(BatchTaskPage),
}

/// Waits until the page `seen` (which the client holds) differs, up to
/// `wait`, or until the server drains.
async fn wait_for_change(
    st: &AppState,
    project_pk: i64,
    params: &ListBatchTasksParams,
    mut seen: BatchTaskPage,
    wait: Duration,
) -> ApiResult<Waited> {
    let Some(changes) = st.store.list_changes(project_pk) else {
        return Ok(Waited::Same(seen.generation));
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut next_look = tokio::time::Instant::now();
    loop {
        let notified = changes.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A look at once after a quiet spell, at most one per step in a burst.
        tokio::time::sleep_until(next_look.min(deadline)).await;
        next_look = tokio::time::Instant::now() + LIST_WAIT_STEP;
        // Read after enabling, so no change between the two is missed.
        let now = st.store.list_batch_tasks(project_pk, params).await?;
        if now != seen {
            return Ok(Waited::Changed(now));
        }
        seen = now;
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Waited::Same(seen.generation)),
            _ = super::server::draining() => return Ok(Waited::Same(seen.generation)),
        }
    }
}

/// A weak ETag for a list page: this process, the view's version, the query.
fn list_etag(generation: u64, query: Option<&str>) -> String {
    use std::hash::{Hash, Hasher};
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(|| random_hex(4).unwrap_or_default());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    query.unwrap_or("").hash(&mut h);
    format!("W/\"{process}.{generation:x}.{:x}\"", h.finish())
}

fn head(count: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(4096);
    v.extend_from_slice(b"{\"count\":");
    v.extend_from_slice(count.to_string().as_bytes());
    v.extend_from_slice(b",\"batch_task_list\":[");
    v
}

/// A row's JSON, rendered once per row version and reused by every reply.
fn render(r: &BatchTaskRow) -> &[u8] {
    r.rendered.get_or_render(|| {
        serde_json::to_vec(&BatchTaskDto::from(r)).unwrap_or_else(|_| b"{}".to_vec())
    })
}

/// Writes `{"count":N,"batch_task_list":[...]}` in chunks of about 32 KiB as
/// the client reads, so the reply is never held in memory whole: what a
/// request holds is one pointer per matching batch (the rows are shared with
/// the read model) and one chunk.
fn stream_reply(page: BatchTaskPage) -> Response {
    const CHUNK: usize = 32 * 1024;
    let start = head(page.count);
    let body = futures_util::stream::unfold(
        (page.rows, 0usize, Some(start)),
        |(rows, next, buf)| async move {
            let mut buf = buf?;
            let mut i = next;
            while i < rows.len() && buf.len() < CHUNK {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(render(&rows[i]));
                i += 1;
            }
            let more = if i == rows.len() {
                buf.extend_from_slice(b"]}");
                None
            } else {
                Some(Vec::with_capacity(CHUNK + 1024))
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (rows, i, more)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct CreateBatchTaskBody {
    name: Option<String>,
    description: Option<String>,
    schedule: Option<TaskSchedule>,
    service_name: Option<String>,
    service_version: Option<String>,
    /// Our extension: VIAS's console shows a priority the SDK cannot send.
    priority: Option<String>,
    batch_input: Option<BatchInput>,
    config: Option<serde_json::Map<String, serde_json::Value>>,
    output: Option<TaskOutput>,
    is_saved_as_template: Option<bool>,
    resource_order_id: Option<String>,
}

#[derive(Deserialize)]
struct BatchInput {
    video_source_group: Option<Vec<GroupInput>>,
}

#[derive(Deserialize)]
struct GroupInput {
    video_source_group_id: Option<String>,
    video_source_list: Option<Vec<SourceInput>>,
}

#[derive(Deserialize)]
struct SourceInput {
    video_source_id: Option<String>,
    /// JSON text in a string, as the SDK sends it (an object is accepted
    /// too, and kept as its text).
    target_roi: Option<serde_json::Value>,
}

/// TaskOutput: where results go. At least one mode.
#[derive(Deserialize, Serialize)]
pub(super) struct TaskOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    obs: Option<OutputObs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dis: Option<OutputDis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<Webhook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_center: Option<bool>,
}

#[derive(Deserialize, Serialize)]
struct OutputObs {
    bucket: Option<String>,
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_category: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize)]
struct OutputDis {
    stream_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_category: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize)]
struct Webhook {
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_category: Option<Vec<String>>,
}

/// TaskSchedule: a weekly plan, stored and echoed.
#[derive(Deserialize, Serialize)]
pub(super) struct TaskSchedule {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_of_week: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_of_month: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    periods: Option<Vec<Vec<serde_json::Value>>>,
}

/// Checks a schedule as [`Schedule::parse`] reads it (weekly, a `±HH:MM`
/// time zone, days 1–7, windows `hh:mm:ss`) and keeps it as sent.
pub(super) fn parse_schedule(s: TaskSchedule) -> Result<serde_json::Value, FieldError> {
    let v = serde_json::to_value(&s).map_err(|e| FieldError::new("schedule", e.to_string()))?;
    Schedule::parse(&v)?;
    Ok(v)
}

/// Limits where VIAS documents none: at most this many groups per batch and
/// sources per group.
pub(super) const MAX_GROUPS: usize = 100;
pub(super) const MAX_SOURCES_PER_GROUP: usize = 1000;

pub(super) fn check_order_id(v: &Option<String>) -> Result<(), FieldError> {
    if let Some(o) = v {
        let ok = (4..=36).contains(&o.len())
            && o.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(FieldError::new(
                "resource_order_id",
                "resource_order_id must match ^[a-z0-9-_]{4,36}$",
            ));
        }
    }
    Ok(())
}

fn validate(b: CreateBatchTaskBody) -> Result<NewBatchTask, FieldError> {
    let name = required(b.name, "name")?;
    field::check_batch_name("name", &name)?;
    let description = b.description.unwrap_or_default();
    field::check_text("description", &description, 500)?;
    let service_name = required(b.service_name, "service_name")?;
    field::check_service_ref("service_name", &service_name)?;
    let service_version = required(b.service_version, "service_version")?;
    field::check_service_token("service_version", &service_version)?;
    let priority = match b.priority {
        Some(p) => field::parse_priority("priority", &p)?,
        None => "low",
    };
    let groups = parse_groups(required(b.batch_input, "batch_input")?)?;
    let output = parse_output(required(b.output, "output")?)?;
    check_order_id(&b.resource_order_id)?;
    Ok(NewBatchTask {
        id: String::new(),
        name,
        description,
        service_name,
        service_version,
        priority: priority.to_owned(),
        groups,
        config: serde_json::Value::Object(b.config.unwrap_or_default()),
        output,
        schedule: b.schedule.map(parse_schedule).transpose()?,
        resource_order_id: b.resource_order_id,
        saved_as_template: b.is_saved_as_template.unwrap_or(false),
        created_at: now_millis(),
    })
}

fn parse_groups(input: BatchInput) -> Result<Vec<BatchGroupInput>, FieldError> {
    let groups_in = required(input.video_source_group, "batch_input.video_source_group")?;
    if groups_in.is_empty() || groups_in.len() > MAX_GROUPS {
        return Err(FieldError::new(
            "batch_input.video_source_group",
            format!("batch_input.video_source_group must list 1 to {MAX_GROUPS} groups"),
        ));
    }
    let mut groups = Vec::with_capacity(groups_in.len());
    for g in groups_in {
        let group_id = required(g.video_source_group_id, "video_source_group_id")?;
        field::check_id("video_source_group_id", &group_id)?;
        let sources = match g.video_source_list {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => {
                if list.len() > MAX_SOURCES_PER_GROUP {
                    return Err(FieldError::new(
                        "video_source_list",
                        format!(
                            "video_source_list must list at most {MAX_SOURCES_PER_GROUP} sources"
                        ),
                    ));
                }
                let mut out = Vec::with_capacity(list.len());
                for s in list {
                    let source_id = required(s.video_source_id, "video_source_id")?;
                    field::check_id("video_source_id", &source_id)?;
                    let target_roi = match s.target_roi {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::String(t)) => Some(t),
                        Some(other) => Some(other.to_string()),
                    };
                    out.push(BatchSourceInput {
                        source_id,
                        target_roi,
                    });
                }
                Some(out)
            }
        };
        groups.push(BatchGroupInput { group_id, sources });
    }
    Ok(groups)
}

/// Checks a TaskOutput: at least one mode, each complete.
pub(super) fn parse_output(output: TaskOutput) -> Result<serde_json::Value, FieldError> {
    if let Some(w) = &output.webhook {
        let url = w.url.as_deref().unwrap_or("");
        let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() <= 2048;
        if !ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError::new(
                "output.webhook.url",
                "output.webhook.url must be an http(s) URL of at most 2048 characters",
            ));
        }
        if let Some(h) = &w.headers {
            if h.len() > 10 || h.values().any(|v| !v.is_string()) {
                return Err(FieldError::new(
                    "output.webhook.headers",
                    "output.webhook.headers maps at most 10 header names to strings",
                ));
            }
        }
    }
    if let Some(o) = &output.obs {
        let bucket = o.bucket.as_deref().unwrap_or("");
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(FieldError::new(
                "output.obs.bucket",
                "output.obs.bucket must be an OBS bucket name",
            ));
        }
        let path = o.path.as_deref().unwrap_or("");
        if path.is_empty() || path.chars().count() > 1023 || path.starts_with('/') {
            return Err(FieldError::new(
                "output.obs.path",
                "output.obs.path must be an object path",
            ));
        }
    }
    if let Some(d) = &output.dis {
        let name = d.stream_name.as_deref().unwrap_or("");
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(FieldError::new(
                "output.dis.stream_name",
                "output.dis.stream_name must match ^[-A-Za-z0-9_]{1,64}$",
            ));
        }
    }
    if output.webhook.is_none()
        && output.obs.is_none()
        && output.dis.is_none()
        && output.event_center != Some(true)
    {
        return Err(FieldError::new(
            "output",
            "output needs webhook, obs, dis or event_center: true",
        ));
    }
    serde_json::to_value(&output).map_err(|e| FieldError::new("output", e.to_string()))
}

/// UpdateBatchTask's body: every field optional; the service cannot change.
fn validate_update(b: CreateBatchTaskBody) -> Result<BatchUpdate, FieldError> {
    if let Some(n) = &b.name {
        field::check_batch_name("name", n)?;
    }
    if let Some(d) = &b.description {
        field::check_text("description", d, 500)?;
    }
    let priority = match &b.priority {
        Some(p) => Some(field::parse_priority("priority", p)?.to_owned()),
        None => None,
    };
    check_order_id(&b.resource_order_id)?;
    // Not VIAS's (a batch's algorithm cannot change): accepted when they
    // name the batch's own service, and only as a pair.
    let service = match (b.service_name, b.service_version) {
        (Some(n), Some(v)) => {
            field::check_service_ref("service_name", &n)?;
            field::check_service_token("service_version", &v)?;
            Some((n, v))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(FieldError::new(
                "service_version",
                "service_name and service_version come together",
            ))
        }
        (None, Some(_)) => {
            return Err(FieldError::new(
                "service_name",
                "service_name and service_version come together",
            ))
        }
    };
    Ok(BatchUpdate {
        name: b.name,
        description: b.description,
        service,
        priority,
        groups: b.batch_input.map(parse_groups).transpose()?,
        config: b.config.map(serde_json::Value::Object),
        output: b.output.map(parse_output).transpose()?,
        schedule: b.schedule.map(parse_schedule).transpose()?,
        resource_order_id: b.resource_order_id,
    })
}

pub(super) async fn update_batch_task(
    State(st): State<AppState>,
    Authed(project): Authed,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<CreateBatchTaskBody>,
) -> ApiResult<Json<BatchReply>> {
    let update = validate_update(body)?;
    let updated = st.store.update_batch_task(project.pk, &id, &update).await?;
    Ok(Json(updated.into()))
}

/// BatchOpResult: `error_list` holds one string per source that got no
/// task, `<video_source_id>: <code> <why>`, as the SDK reads it.
#[derive(Serialize)]
pub(super) struct BatchReply {
    id: String,
    total_count: u64,
    succeed_count: u64,
    failed_count: u64,
    error_list: Vec<String>,
}

/// The error code and message of a source that got no task.
fn source_problem(p: &SourceProblem) -> (&'static str, String) {
    match p {
        SourceProblem::NotInGroup { group_id } => (
            "VIAS.00010001",
            format!("video source is not in video group {group_id:?}"),
        ),
        SourceProblem::Unknown => ("VIAS.00010002", "video source does not exist".into()),
        SourceProblem::AlreadyInBatch => (
            "VIAS.00010003",
            "video source is already in this batch task".into(),
        ),
        SourceProblem::StillDeleting => (
            "VIAS.00010012",
            "the source's previous task is still being deleted; add it again once it is gone"
                .into(),
        ),
    }
}

impl From<BatchCreated> for BatchReply {
    fn from(c: BatchCreated) -> Self {
        let failed = c.failures.len() as u64;
        BatchReply {
            id: c.id,
            total_count: c.succeed_count + failed,
            succeed_count: c.succeed_count,
            failed_count: failed,
            error_list: c
                .failures
                .into_iter()
                .map(|f| {
                    let (code, msg) = source_problem(&f.problem);
                    format!("{}: {code} {msg}", f.video_source_id)
                })
                .collect(),
        }
    }
}

pub(super) async fn create_batch_task(
    State(st): State<AppState>,
    Authed(project): Authed,
    ApiJson(body): ApiJson<CreateBatchTaskBody>,
) -> ApiResult<Json<BatchReply>> {
    let mut new = validate(body)?;
    new.id = random_hex(16).map_err(|e| ApiError::Internal(e.to_string()))?;
    let created = st.store.create_batch_task(project.pk, &new).await?;
    Ok(Json(created.into()))
}

#[cfg(test)]
mod tests {
    use super::{etag_matches, list_etag};

    #[test]
    fn if_none_match_compares_weakly_and_takes_a_star() {
        let ours = list_etag(7, Some("offset=0&limit=10"));
        assert!(ours.starts_with("W/\""));
        assert!(etag_matches(&ours, &ours));
        // The same opaque tag without W/ (some proxies strip it), and `*`.
        assert!(etag_matches(&ours[2..], &ours));
        assert!(etag_matches("*", &ours));
        // Another version of the view, or another query, is another page.
        assert!(!etag_matches(
            &list_etag(8, Some("offset=0&limit=10")),
            &ours
        ));
        assert!(!etag_matches(
            &list_etag(7, Some("offset=10&limit=10")),
            &ours
        ));
        assert!(!etag_matches("W/*", &ours));
    }
}
