//! The component schemas: VIAS's models with the JSON names and types the
//! handlers read and write, the constraints they check, and taskcenter's
//! additions marked `x-taskcenter-extension`. A reply field the handler
//! leaves out when empty (`skip_serializing_if`) is not `required`.

use crate::domain::vias::{ALG_STATUSES, SOURCE_TYPES};
use crate::domain::TaskState;
use serde_json::{json, Map, Value};

/// Ids of projects, groups, sources, tasks and pools (`field::check_id`).
pub(super) const ID_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";
/// `field::check_service_name`.
pub(super) const SERVICE_NAME: &str = "^[\\u4e00-\\u9fa5a-zA-Z0-9_-]{1,100}$";
/// Batch and task names (`field::check_batch_name`).
const NAME: &str = "^[a-zA-Z0-9\\u4e00-\\u9fa5_-]{1,100}$";
const VERSION: &str = "^[a-z0-9.]{3,32}$";
/// VIAS's `^[a-z0-9-_]{4,36}$`, `-` and `_` as characters.
const ORDER_ID: &str = "^[a-z0-9_-]{4,36}$";
/// `vias::check_coordinate`: up to three integer digits (leading zeros
/// allowed), up to five decimals, within ±90 (latitude) or ±180 (longitude).
const LATITUDE: &str = "^-?(0?[0-8]?[0-9](\\.[0-9]{1,5})?|0?90(\\.0{1,5})?)$";
const LONGITUDE: &str = "^-?((1[0-7][0-9]|0?[0-9]?[0-9])(\\.[0-9]{1,5})?|180(\\.0{1,5})?)$";
const INPUT_TYPES: [&str; 6] = ["video_source", "obs", "url", "edgecamera", "restful", "vcn"];

pub(super) fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub(super) fn arr(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// An enumeration the handler matches case-insensitively.
pub(super) fn choice(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values, "x-case-insensitive": true})
}

/// An enumeration of exactly these spellings.
fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

pub(super) fn int(min: u32, max: u32, default: Option<u32>) -> Value {
    let mut v = json!({"type": "integer", "format": "int32", "minimum": min, "maximum": max});
    if let Some(d) = default {
        v["default"] = json!(d);
    }
    v
}

pub(super) fn str_pat(pattern: &str) -> Value {
    json!({"type": "string", "pattern": pattern})
}

/// Free text: at most `max` characters, no control characters (the
/// handlers refuse them).
pub(super) fn str_max(max: u32) -> Value {
    json!({"type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
}

/// An object schema with its required properties named in `required`
/// (space-separated; OpenAPI 3.0 forbids an empty list).
fn obj(required: &str, props: Value) -> Value {
    let mut v = json!({"type": "object", "properties": props});
    let names: Vec<&str> = required.split_whitespace().collect();
    if !names.is_empty() {
        v["required"] = json!(names);
    }
    v
}

/// Marks a field as taskcenter's, not VIAS's.
fn ext(mut v: Value, why: &str) -> Value {
    v["x-taskcenter-extension"] = json!(true);
    v["description"] = json!(why);
    v
}

fn desc(mut v: Value, d: &str) -> Value {
    v["description"] = json!(d);
    v
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(m), Value::Object(extra)) = (a.as_object_mut(), b) {
        m.extend(extra);
    }
    a
}

/// An object alternative: `field` is present and not `null`.
fn given(field: &str) -> Value {
    json!({"required": [field], "properties": {field: {"type": "string"}}})
}

/// An optional field the handler also takes as `null`.
fn nullable(mut v: Value) -> Value {
    v["nullable"] = json!(true);
    v
}

fn s() -> Value {
    json!({"type": "string"})
}

fn i32_() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn i64_() -> Value {
    json!({"type": "integer", "format": "int64"})
}

fn millis() -> Value {
    desc(i64_(), "epoch milliseconds")
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

/// Free text of at most `max` characters, no control characters but
/// newlines and tabs (`field::check_text`).
fn text(max: u32) -> Value {
    desc(
        json!({"type": "string", "maxLength": max,
               "pattern": "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"}),
        "no control characters other than newline and tab",
    )
}

/// Task times: ISO 8601 text in UTC, never a JSON number (the SDK declares
/// a string).
fn time_text() -> Value {
    json!({"type": "string", "format": "date-time", "example": "2020-09-22T07:37:03Z"})
}

fn upper_state() -> Value {
    let upper: Vec<String> = TaskState::ALL.iter().map(|s| s.as_upper()).collect();
    json!({"type": "string", "enum": upper})
}

fn data_category() -> Value {
    desc(
        arr(s()),
        "which result kinds go to this output (service-specific)",
    )
}

/// The shared request models: schedule, output, config, batch input.
fn shared() -> Value {
    json!({
        "Error": obj("error_code error_msg detail params reason advice", json!({
            "error_code": desc(s(), "VIAS.000100xx, or VIAS.TC.* for taskcenter's own conditions"),
            "error_msg": s(), "detail": s(),
            "params": {"type": "array", "maxItems": 1, "items": s(), "description": "the offending parameter, if one"},
            "reason": s(), "advice": s()})),
        "TaskSchedule": obj("type timezone days_of_week", json!({
            "type": choice(&["weekly"]),
            "timezone": desc(str_pat("^[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)$"),
                "a fixed offset from UTC, -14:00 to +14:00 (e.g. +08:00): days and windows are read on its clock, with no daylight saving"),
            "days_of_week": {"type": "array", "minItems": 1, "description": "1 Monday … 7 Sunday",
                             "items": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 7}},
            "days_of_month": desc(arr(i32_()), "stored as given (VIAS: monthly plans are not supported)"),
            "periods": desc(arr(json!({"type": "array", "minItems": 1, "items": obj("begin_at end_at", json!({
                    "begin_at": str_pat("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"),
                    "end_at": desc(str_pat("^(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]|24:00:00)$"), "after begin_at; the window ends just before it")}))})),
                "daily windows: one list for every listed day, or one list per entry of days_of_week in its order; \
                 absent or empty, the whole day. Outside its windows the scheduler stops the task, and starts it at the next window's beginning")})),
        "TaskOutput": merge(obj("", json!({
            "obs": obj("bucket path", json!({
                "bucket": str_pat("^[a-z0-9.-]{3,63}$"),
                "path": {"type": "string", "minLength": 1, "maxLength": 1023, "pattern": "^[^/]",
                         "description": "object prefix; must not start with /"},
                "data_category": data_category()})),
            "dis": obj("stream_name", json!({"stream_name": str_pat("^[-A-Za-z0-9_]{1,64}$"), "data_category": data_category()})),
            "webhook": obj("url", json!({
                "url": {"type": "string", "format": "uri", "maxLength": 2048, "pattern": "^https?://\\S*$"},
                "headers": {"type": "object", "maxProperties": 10, "additionalProperties": s(),
                            "description": "sent with each callback"},
                "data_category": data_category()})),
            "event_center": {"type": "boolean", "default": false}})), json!({
            "description": "at least one of webhook, obs, dis, or event_center: true",
            "anyOf": [{"required": ["webhook"]}, {"required": ["obs"]}, {"required": ["dis"]},
                      {"required": ["event_center"], "properties": {"event_center": {"enum": [true]}}}]})),
        "TaskServiceConfig": {"type": "object", "additionalProperties": true, "properties": {"common": {"type": "object"}},
                              "description": "algorithm settings: a free JSON object passed to the service"},
        "BatchTaskInputDto": obj("video_source_group", json!({
            "video_source_group": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj("video_source_group_id", json!({
                "video_source_group_id": str_pat(ID_PATTERN),
                "video_source_list": {"type": "array", "maxItems": 1000, "description": "absent or empty: every source of the group",
                    "items": obj("video_source_id", json!({
                        "video_source_id": str_pat(ID_PATTERN),
                        "target_roi": desc(s(), "JSON text in a string, as the SDK sends it (taskcenter also takes a JSON value and keeps its text)")}))}}))}}))
    })
}

/// A request body: the fields every task and batch-task body shares, and
/// `own`.
fn body(required: &str, own: Value) -> Value {
    obj(
        required,
        merge(
            json!({
        "name": str_pat(NAME), "description": text(500), "schedule": r("TaskSchedule"), "output": r("TaskOutput"),
        "config": r("TaskServiceConfig"),
        "is_saved_as_template": {"type": "boolean", "default": false, "description": "accepted; taskcenter keeps no templates"},
        "resource_order_id": desc(str_pat(ORDER_ID), "lowercase letters, digits, - and _")}),
            own,
        ),
    )
}

fn batch_tasks() -> Value {
    let priority = |d| {
        ext(
            merge(
                choice(&["low", "medium", "high"]),
                json!({"default": "low"}),
            ),
            d,
        )
    };
    let fixed = "if given, with service_version, must be the batch's own (VIAS has no such field: the service cannot change)";
    let counters: Map<String, Value> = TaskState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                json!({"type": "integer", "format": "int32", "minimum": 1}),
            )
        })
        .collect();
    json!({
        "CreateBatchTasksRequestBody": body("name service_name service_version batch_input output", json!({
            "service_name": str_pat(SERVICE_NAME), "service_version": str_pat(VERSION),
            "priority": priority("the batch's priority (VIAS's console shows it; the SDK cannot send it)"),
            "batch_input": r("BatchTaskInputDto")})),
        "UpdateBatchTaskRequestBody": merge(desc(body("", json!({
            "service_name": ext(str_pat(SERVICE_NAME), fixed), "service_version": ext(str_pat(VERSION), fixed),
            "priority": priority("the batch's new priority"),
            "batch_input": desc(r("BatchTaskInputDto"), "replaces the groups and sources")})),
            "every field optional; service_name and service_version come together"),
            json!({"anyOf": [{"required": ["service_name", "service_version"]},
                {"not": {"anyOf": [{"required": ["service_name"]}, {"required": ["service_version"]}]}}]})),
        "BatchOpResult": obj("id total_count succeed_count failed_count error_list", json!({
            "id": desc(s(), "the batch task's id"), "total_count": i32_(), "succeed_count": i32_(), "failed_count": i32_(),
            "error_list": desc(arr(s()), "one string per failure, `<video_source_id or task_id>: <error_code> <message>`")})),
        "BatchTaskStatusInfoDto": desc(obj("", Value::Object(counters)), "tasks per state; states with none are omitted"),
        "BatchTaskDto": obj("id batch_task_name alg_name company service_name service_version type priority num_task created_at batch_task_status_info", json!({
            "id": s(), "batch_task_name": s(),
            "video_source_name": desc(s(), "present when the tasks cover exactly one source"),
            "video_group_name": desc(s(), "group names, comma-joined in batch order; absent when none"),
            "alg_name": s(), "company": s(),
            "service_name": ext(s(), "the service the batch runs"),
            "service_version": ext(s(), "its version"),
            "type": desc(one_of(&["0", "1"]), "0 cloud, 1 edge"),
            "priority": ext(one_of(&["low", "medium", "high"]), "the batch's priority"),
            "num_task": i32_(), "created_at": millis(), "batch_task_status_info": r("BatchTaskStatusInfoDto")})),
        "WorkerList": ext(obj("count workers", json!({"count": i32_(), "workers": arr(r("Worker"))})), "every worker"),
        "Worker": ext(obj("id name type slots held state lease_expires_at", json!({
            "id": s(), "name": s(), "type": one_of(&["cloud", "edge"]), "slots": i32_(), "held": i32_(),
            "state": one_of(&["live", "lost"]), "pool": s(), "lease_expires_at": millis()})), "a worker"),
        "ListBatchTasksResponse": obj("count batch_task_list", json!({
            "count": desc(i32_(), "the number of matching batches"), "batch_task_list": arr(r("BatchTaskDto"))}))
    })
}

/// What taskcenter adds to a task object (`task::TaskExtras`).
fn task_extras() -> Value {
    json!({
        "batch_id": ext(s(), "the batch the task belongs to; absent for CreateTask's tasks"),
        "video_source_id": ext(s(), "the video source it reads, if one"),
        "worker_id": ext(s(), "the worker it runs on or, once it let its slot go, last ran on; absent if it never ran"),
        "worker_name": ext(s(), "that worker's name"),
        "attempt": ext(i64_(), "how many times it was placed on a worker"),
        "error": r("TaskInfoDtoError")})
}

fn tasks() -> Value {
    let type_text = desc(one_of(&["0", "1"]), "0 cloud, 1 edge");
    let mut list_item = merge(
        json!({"id": s(), "name": s(), "service_id": s(), "created_at": time_text(),
        "state": upper_state(), "video_source_name": s(), "title": desc(s(), "the algorithm's display name"),
        "type": type_text, "algorithm_publish_id": desc(s(), "the algorithm's id (alg_id)")}),
        task_extras(),
    );
    list_item["error"] = ext(r("TaskInfoDtoError"), "the last error");
    json!({
        "TaskInput": merge(obj("type data", json!({
            "type": choice(&INPUT_TYPES),
            "data": {"type": "array", "minItems": 1, "maxItems": 100, "items": r("TaskInputData"),
                     "description": "1–100 entries on CreateTask (one task each), exactly one on UpdateTask"},
            "vcn": desc(obj("", json!({"ip": s(), "port": i32_(), "username": s(), "password": s()})),
                        "the VCN server's login, stored as given (not checked)")})),
            json!({"anyOf": input_needs()})),
        "TaskInputData": desc(obj("", json!({
            "video_source_id": str_pat(ID_PATTERN), "stream_name": s(), "bucket": s(), "path": s(),
            "url": {"type": "string", "format": "uri", "minLength": 1, "maxLength": 1000, "pattern": "^[a-zA-Z0-9+.-]+://\\S*$"},
            "headers": {"type": "object", "maxProperties": 10}, "rtsp_path_in_response": str_max(1024),
            "device_id": s(), "stream_type": int(1, 3, None), "id": s(), "certificate_check": boolean(),
            "target_roi": ext(s(), "reply only: a batch task's region of interest for its source")})),
            "by input type: video_source needs video_source_id; url needs url; restful needs url, rtsp_path_in_response \
             and certificate_check; obs needs bucket and path; vcn needs device_id; edgecamera needs id"),
        "CreateTasksRequestBody": body("name input output service_version",
            json!({"input": r("TaskInput"), "service_version": str_pat(VERSION)})),
        "UpdateTasksRequestBody": body("", json!({
            "input": {"allOf": [r("TaskInput"), {"properties": {"data": {"maxItems": 1}}}]}})),
        "CreateTaskResponse": obj("tasks", json!({"tasks": arr(obj("id", json!({"id": s()})))})),
        "TaskOpReply": obj("id", json!({"id": s(), "state": desc(upper_state(), "the task's state now; absent once it is gone")})),
        "TaskInfoDtoError": obj("code message", json!({"code": s(), "message": s()})),
        "TaskHistory": obj("at from event", json!({"at": millis(), "from": upper_state(), "event": s(),
            "to": desc(upper_state(), "absent: the task was deleted"),
            "worker_id": desc(s(), "a placement's worker"),
            "worker_name": desc(s(), "that worker's name")})),
        "TaskInfo": obj("id name service_id created_at state title type algorithm_publish_id attempt", list_item),
        "ListTasksResponse": obj("count tasks page page_size", json!({
            "count": desc(i32_(), "the number of entries on this page"), "tasks": arr(r("TaskInfo")),
            "page": desc(i32_(), "1-based"), "page_size": i32_()})),
        "ShowTaskInfoResponse": obj("id name project_id release_id service_id created_at updated_at state input title company type \
                                     package_id algorithm_publish_id attempt service_name service_version history",
            merge(json!({"id": s(), "name": s(), "creator": s(), "project_id": s(), "description": s(),
                "release_id": s(), "service_id": s(), "created_at": time_text(),
                "updated_at": desc(time_text(), "time of the last change"), "state": upper_state(),
                "schedule_status": desc(one_of(&["ACTIVATED", "INACTIVATED"]),
                    "with a schedule only: ACTIVATED while the scheduler runs the task in its windows, INACTIVATED once a user stopped it or it ended"),
                "schedule": r("TaskSchedule"), "input": r("TaskInput"), "output": r("TaskOutput"), "config": r("TaskServiceConfig"),
                "video_source_name": s(), "title": s(), "group_name": desc(s(), "comma-joined"), "company": s(),
                "task_config": desc(s(), "config as JSON text"), "type": one_of(&["cloud", "edge"]),
                "resource_order_id": s(), "package_id": s(), "algorithm_publish_id": s(),
                "service_name": ext(s(), "the task's service"), "service_version": ext(s(), "the service's version"),
                "history": ext(arr(r("TaskHistory")), "every transition, oldest first")}), task_extras()))
    })
}

fn video_groups() -> Value {
    let group = |extra: Value| {
        obj(
            "video_group_id video_group_name access_type create_at modify_at num_video_source \
                                    group_status num_batch_task",
            merge(
                json!({
        "video_group_id": s(), "video_group_name": s(), "access_type": one_of(&["cloud", "edge"]),
        "create_at": millis(), "modify_at": millis(), "num_video_source": i32_(), "group_status": r("GroupStatusDto"),
        "num_batch_task": i32_()}),
                extra,
            ),
        )
    };
    let ids = |d: &str| {
        desc(
            merge(arr(str_pat(ID_PATTERN)), json!({"maxItems": 1000})),
            d,
        )
    };
    json!({
        "GroupStatusDto": desc(obj("num_online num_exception num_offline",
            json!({"num_online": i32_(), "num_exception": i32_(), "num_offline": i32_()})), "every source reports online"),
        "VideoGroupInfoDto": group(json!({"description": desc(s(), "absent when empty")})),
        "VideoGroupListInfoDto": group(json!({"type": desc(s(), "the types of its sources, comma-joined; absent when none")})),
        "CreateVideoGroupDto": obj("video_group_name access_type", json!({
            "video_group_name": str_pat("^[a-zA-Z0-9\\u4e00-\\u9fa5]{1,20}$"), "description": nullable(text(100)),
            "access_type": choice(&["cloud", "edge"]), "video_source_ids": nullable(ids("initial members")),
            "id": nullable(ext(str_pat(ID_PATTERN), "a client-chosen id (VIAS generates ids)"))})),
        "CreateVideoGroupResponse": obj("video_group_id", json!({"video_group_id": s()})),
        "UpdateVideoGroupDto": desc(obj("", json!({
            "video_group_name": nullable(str_pat("^[a-zA-Z0-9\\u4e00-\\u9fa5_-]{1,20}$")), "description": nullable(text(100)),
            "video_source_ids": nullable(ids("the full member set"))})),
            "the body may be absent; absent (or null) fields stay as they are"),
        "ListVideoGroupsResponse": obj("video_group_number total_number quota_number video_group_list", json!({
            "video_group_number": desc(i32_(), "matching groups"), "total_number": desc(i32_(), "all the project's groups"),
            "quota_number": desc(i32_(), "taskcenter sets no quota: 1000000"),
            "video_group_list": arr(r("VideoGroupListInfoDto"))})),
        "IdReply": obj("id", json!({"id": s()}))
    })
}

fn video_sources() -> Value {
    let source = |required: &str, extra: Value| {
        obj(
            &format!(
                "video_source_name status access_type type create_at \
        type_config video_packages tag scene_recommend video_source_quality {required}"
            ),
            merge(
                json!({
        "video_source_name": s(), "status": r("VideoSourceStatusInfoDto"), "access_type": one_of(&["cloud", "edge"]),
        "type": one_of(&SOURCE_TYPES), "latitude": desc(s(), "numeric text"), "longitude": desc(s(), "numeric text"),
        "create_at": millis(), "type_config": desc(s(), "XML"),
        "video_packages": desc(arr(r("VideoGroupInfoDto")), "the groups it belongs to"), "tag": arr(s()),
        "stream_path": desc(s(), "the stream address; absent when the type_config names none"),
        "scene_recommend": desc(arr(s()), "always empty"), "video_source_quality": desc(arr(s()), "always empty")}),
                extra,
            ),
        )
    };
    let name = str_pat("^(?! )(?!.* $)[a-zA-Z0-9\\u4e00-\\u9fa5 .()（）_-]{1,100}$");
    let coordinate = |limit| {
        desc(
            str_pat(if limit == 90 { LATITUDE } else { LONGITUDE }),
            &format!("numeric text from -{limit} to {limit}, at most 5 decimals"),
        )
    };
    let type_config = desc(json!({"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^\\s*<"}),
        "XML, e.g. <type>URL</type><config><URL_ADDRESS>rtsp://…</URL_ADDRESS></config>; the stream URL is the \
         first non-empty URL_ADDRESS, RTSP_URL or URL (at most 2048 characters)");
    let tags = json!({"type": "array", "maxItems": 4, "items": str_pat("^[a-zA-Z0-9\\u4e00-\\u9fa5_-]{1,10}$")});
    json!({
        "VideoSourceStatusInfoDto": desc(obj("status name level",
            json!({"status": s(), "name": s(), "level": desc(s(), "numeric text, e.g. \"1\"")})),
            "taskcenter does not probe streams: always ONLINE, level 1"),
        "ListVideoSourceInfoDto": source("video_source_id num_tasks num_service_config_templates", json!({
            "video_source_id": s(), "num_tasks": i32_(), "num_service_config_templates": desc(i32_(), "always 0")})),
        "VideoSourceDetail": desc(source("service_config_templates", json!({
            "service_config_templates": desc(arr(json!({"type": "object"})), "always empty")})), "it carries no id, as VIAS's"),
        "CreateVideoSourceDto": merge(obj("video_source_name access_type", json!({
            "video_source_name": name.clone(), "access_type": choice(&["cloud", "edge"]),
            "type": nullable(desc(choice(&SOURCE_TYPES), "required unless a stream URL is given (by url, or in type_config): then url")),
            "latitude": nullable(coordinate(90)), "longitude": nullable(coordinate(180)),
            "video_group_ids": nullable(json!({"type": "array", "maxItems": 100, "items": str_pat(ID_PATTERN)})),
            "type_config": nullable(desc(type_config.clone(), "required unless url is given")), "tag": nullable(tags.clone()),
            "id": nullable(ext(str_pat(ID_PATTERN), "a client-chosen id (VIAS generates ids)")),
            "url": nullable(ext(json!({"type": "string", "minLength": 1, "maxLength": 2048,
                    "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"}),
                "shorthand for type url with a URL type_config; ignored when type_config is given"))})),
            // type_config or url; type unless url stands for the type_config
            // (a URL inside a given type_config also spares it, which a
            // schema cannot see).
            json!({"allOf": [{"anyOf": [given("type_config"), given("url")]},
                             {"anyOf": [given("type"), {"allOf": [given("url"), {"not": given("type_config")}]}]}]})),
        "CreateVideoSourceResponse": obj("video_source_id", json!({"video_source_id": s()})),
        "UpdateVideoSourceDto": desc(obj("", json!({"video_source_name": nullable(name), "latitude": nullable(coordinate(90)),
            "longitude": nullable(coordinate(180)), "type_config": nullable(type_config), "tag": nullable(tags)})),
            "absent (or null) fields stay as they are"),
        "ListVideoSourcesResponse": obj("video_source_number total_number quota_number video_source_list", json!({
            "video_source_number": desc(i32_(), "matching sources"), "total_number": desc(i32_(), "all the project's sources"),
            "quota_number": desc(i32_(), "taskcenter sets no quota: 1000000"),
            "video_source_list": arr(r("ListVideoSourceInfoDto"))}))
    })
}

fn algorithms() -> Value {
    let common = json!({"alg_id": desc(s(), "UUID form, derived from the service id"), "service_id": s(),
        "service_name": s(), "package_id": s(), "package_name": s(), "company": s(), "alg_version": s(),
        "function_version": s(), "tags": arr(s()), "created_at": millis(),
        "alg_status": desc(one_of(&ALG_STATUSES), "service_running when deployed (service_concerning on a pool \
            without a live worker), else not_deployed"),
        "deploy_type": one_of(&["cloud", "edge"]), "alg_class": one_of(&["self", "partner"]),
        "request_mode": one_of(&["sync", "async"]), "description": desc(s(), "absent when empty")});
    let required = "alg_id service_id service_name package_id package_name company alg_version function_version tags \
                    created_at alg_status deploy_type alg_class request_mode alg_name";
    json!({
        "ServicesListInfoDto": obj(required, merge(common.clone(),
            json!({"alg_name": ext(s(), "the algorithm's display name (VIAS's title)")}))),
        "ListUserServicesResponse": obj("count service_list total", json!({
            "count": desc(i32_(), "services after filtering"), "service_list": arr(r("ServicesListInfoDto")),
            "total": desc(i32_(), "all the project's services")})),
        "ShowServiceDetailResponse": obj(&format!("{required} release_flag updated_at release_at api alg_versions \
                                                   service_api_list deployment_constraints"), merge(common, json!({
            "release_flag": boolean(), "updated_at": millis(), "release_at": millis(),
            "api": desc(s(), "the CreateTask path of this service"),
            "pool_id": desc(s(), "the edge pool it is deployed onto, if any"), "alg_name": s(), "alg_versions": arr(s()),
            "service_api_list": desc(arr(r("ServiceApiDto")), "always empty"),
            "deployment_constraints": r("DeploymentConstraintsDto")}))),
        "ServiceApiDto": obj("", json!({"request_type": one_of(&["get", "post"]), "zh": s(), "en": s(), "request_url": s()})),
        "DeploymentConstraintsDto": obj("request_mode input_types output_types", json!({
            "request_mode": one_of(&["sync", "async"]),
            "input_types": arr(one_of(&["OBS", "URL", "Restful", "VCN", "EdgeCamera"])),
            "output_types": arr(one_of(&["OBS", "DIS", "Webhook"]))})),
        "DeployServiceReq": obj("stream_count", json!({
            "pool_id": desc(str_pat(ID_PATTERN), "an edge pool; only for edge services"),
            "stream_count": int(1, 10_000, None), "deploy_config": {"type": "object"},
            "envs": {"type": "object", "additionalProperties": s(), "description": "names to string values"}})),
        "DeployAlgorithmResponse": obj("alg_name", json!({"alg_name": s()})),
        "StopDeployAlgorithmResponse": obj("alg_id", json!({"alg_id": s()}))
    })
}

fn edge_pools() -> Value {
    let state = one_of(&["Running", "Abnormal"]);
    json!({
        "CreateEdgePoolRequestDto": obj("name nodes", json!({
            "name": desc(str_pat("^[a-z][a-z0-9-]{2,30}[a-z0-9]$"), "4–32 lowercase letters, digits and -"),
            "description": text(255), "ief_service_instance_id": text(255),
            "nodes": {"type": "array", "minItems": 1, "maxItems": 10, "uniqueItems": true,
                "description": "the names of the workers that make up the pool (VIAS: IEF node ids), each once",
                "items": {"type": "string", "minLength": 1, "maxLength": 64,
                          "pattern": "^(?!\\s)(?!.*\\s$)[^,\\u0000-\\u001f\\u007f-\\u009f]*$"}}})),
        "CreateEdgePoolResponse": obj("id", json!({"id": s()})),
        "EdgePoolListItemDto": obj("id name state project_id workspace_id created_at updated_at", json!({
            "id": s(), "name": s(), "state": desc(state.clone(), "Running while a worker of the pool is live"),
            "project_id": s(), "workspace_id": desc(s(), "the project id"), "created_at": millis(),
            "updated_at": millis(), "description": desc(s(), "absent when empty")})),
        "ListEdgePoolsResponse": obj("count edge_pools", json!({
            "count": desc(i32_(), "matching pools"), "edge_pools": arr(r("EdgePoolListItemDto"))})),
        "ShowEdgePoolInfoResponse": {"allOf": [r("EdgePoolListItemDto"), obj("nodes", json!({"nodes": arr(r("EdgeNodeInfoDto"))}))]},
        "EdgeNodeInfoDto": obj("id name state enable_gpu enable_npu gpu_info npu_info slots", json!({
            "id": desc(s(), "the worker's id, or its name until it registers"), "name": s(), "state": state,
            "enable_gpu": boolean(), "enable_npu": boolean(), "gpu_info": arr(json!({"type": "object"})),
            "npu_info": arr(json!({"type": "object"})), "slots": ext(i64_(), "the worker's task slots")}))
    })
}

/// The routes outside VIAS: the login, the probes and the worker protocol.
fn own() -> Value {
    let named = || obj("id name", json!({"id": s(), "name": s()}));
    let strict =
        |required: &str, props| merge(obj(required, props), json!({"additionalProperties": false}));
    let clipped = || desc(s(), "clipped to 500 characters");
    let slots = || json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 10000});
    json!({
        "TokenRequest": obj("auth", json!({"auth": obj("identity scope", json!({
            "identity": obj("methods password", json!({
                "methods": desc(json!({"type": "array", "minItems": 1, "items": one_of(&["password"])}),
                    "must include \"password\""),
                "password": obj("user", json!({"user": obj("name password", json!({
                    "name": s(), "password": s(), "domain": desc(json!({}), "accepted; taskcenter has one domain")}))}))})),
            "scope": obj("project", json!({"project": desc(merge(obj("", json!({"id": s(), "name": s()})),
                json!({"anyOf": [{"required": ["id"]}, {"required": ["name"]}]})), "id or name")}))}))})),
        "TokenReply": obj("token", json!({"token": obj("expires_at issued_at methods project user", json!({
            "expires_at": {"type": "string", "format": "date-time"}, "issued_at": {"type": "string", "format": "date-time"},
            "methods": arr(s()), "project": named(), "user": named()}))})),
        "Probe": obj("status", json!({"status": one_of(&["ok", "unavailable"]), "backend": desc(s(), "the store's backend (Readyz)")})),
        "OpenApi": {"type": "object", "description": "an OpenAPI 3.0 document"},
        "Held": obj("task attempt", json!({"task": i64_(), "attempt": i64_()})),
        "Assignment": obj("task attempt project_id task_id batch_id source_url config service_name service_version", json!({
            "task": i64_(), "attempt": i64_(), "project_id": s(), "task_id": s(),
            "batch_id": {"type": "string", "nullable": true}, "source_url": s(),
            "source_config": desc(s(), "the source's type_config"), "input": desc(s(), "CreateTask's input as JSON text"),
            "config": s(), "service_name": s(), "service_version": s()})),
        // Only an edge worker names a pool.
        "RegisterRequest": {"oneOf": [
            strict("kind slots", json!({"kind": one_of(&["cloud"]), "slots": slots(),
                "pool": {"nullable": true, "enum": [null], "description": "a cloud worker serves no edge pool"}})),
            strict("kind slots", json!({"kind": one_of(&["edge"]), "slots": slots(),
                "pool": nullable(desc(str_pat("^[a-z][a-z0-9-]{2,30}[a-z0-9]$"), "the edge pool this worker serves, by name"))})),
        ]},
        "RegisterReply": obj("lease_ms max_wait_ms", json!({"lease_ms": i64_(), "max_wait_ms": i64_()})),
        "SyncRequest": strict("running", json!({
            "running": {"type": "array", "maxItems": 100_000, "items": r("Held")},
            "wait_ms": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 0,
                        "description": "long-poll; capped at 20000 and at half the lease"}})),
        "SyncReply": obj("assign stop upgrade", json!({"assign": arr(r("Assignment")), "stop": arr(r("Held")),
            "upgrade": arr(r("Assignment"))})),
        "ReportRequest": strict("task attempt event", json!({"task": i64_(), "attempt": i64_(),
            "event": one_of(&["started", "spawn_failed", "exited", "crashed", "released", "upgraded"]),
            "error_code": nullable(clipped()), "error_message": nullable(clipped())})),
        "ReportReply": obj("applied state", json!({"applied": boolean(),
            "state": {"type": "string", "nullable": true, "description": "the task's state; null once it is gone"}})),
        "ReportBatch": strict("reports", json!({"reports": {"type": "array", "items": r("ReportRequest"), "minItems": 1, "maxItems": 1000}})),
        "ReportBatchReply": obj("replies", json!({"replies": arr(r("ReportReply"))}))
    })
}

/// What each task input type needs in its data entries (the handler's
/// check), as the alternatives of `TaskInput`.
fn input_needs() -> Vec<Value> {
    [
        ("video_source", &["video_source_id"][..]),
        ("url", &["url"]),
        (
            "restful",
            &["url", "rtsp_path_in_response", "certificate_check"],
        ),
        ("obs", &["bucket", "path"]),
        ("vcn", &["device_id"]),
        ("edgecamera", &["id"]),
    ]
    .into_iter()
    .map(|(t, needs)| {
        let present: Map<String, Value> = needs
            .iter()
            .filter(|n| **n != "certificate_check")
            .map(|n| ((*n).to_owned(), json!({"minLength": 1, "pattern": "\\S"})))
            .collect();
        json!({"properties": {
            "type": {"type": "string", "pattern": format!("^(?i:{t})$")},
            "data": {"type": "array", "items": {"required": needs, "properties": present}}}})
    })
    .collect()
}

pub(super) fn schemas() -> Value {
    [
        shared(),
        batch_tasks(),
        tasks(),
        video_groups(),
        video_sources(),
        algorithms(),
        edge_pools(),
        own(),
    ]
    .into_iter()
    .fold(json!({}), merge)
}
