//! `GET /openapi.json`: the API description. Its paths are compared with the
//! router's route table in the tests, so a route cannot exist undocumented.

use crate::domain::TaskState;
use axum::Json;
use serde_json::{json, Value};

fn error_responses(extra: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    let err = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    for (code, desc) in [
        ("400", "Invalid parameter (VIAS.00010001), object not found (VIAS.00010002), already exists (VIAS.00010003), batch name taken (VIAS.00010011), not allowed in the current state (VIAS.00010012)"),
        ("401", "Missing, malformed, forged or expired token, or a signature that is bad, stale (X-Sdk-Date more than 15 minutes off) or made with an unknown or revoked access key (VIAS.00010005)"),
        ("403", "Token scoped to another project, or an access key whose user is not a member of it (VIAS.00010005)"),
        ("405", "Method not allowed (VIAS.00010001)"),
        ("413", "Body larger than 1 MiB (VIAS.00010001)"),
        ("500", "Internal error (VIAS.00010006); detail carries the request id"),
    ]
    .iter()
    .chain(extra)
    {
        let mut e = err.clone();
        e["description"] = json!(desc);
        m.insert(code.to_string(), e);
    }
    Value::Object(m)
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn op(
    id: &str,
    summary: &str,
    params: Vec<Value>,
    body: Option<Value>,
    success: Value,
    authed: bool,
) -> Value {
    let mut responses = if authed {
        error_responses(&[])
    } else {
        json!({})
    };
    responses["200"] = success;
    let mut o = json!({"operationId": id, "summary": summary, "parameters": params, "responses": responses});
    if authed {
        if let Some(a) = o["parameters"].as_array_mut() {
            a.insert(0, json!({"$ref": "#/components/parameters/XAuthToken"}));
        }
    }
    if let Some(b) = body {
        o["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": b}}});
    }
    o
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query(name: &str, schema: Value, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": desc})
}

fn paging() -> Vec<Value> {
    vec![
        path_param("project_id"),
        query(
            "page_num",
            json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}),
            "1-based page number",
        ),
        query(
            "page_size",
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
            "entries per page",
        ),
    ]
}

fn document() -> Value {
    let states: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let filter = |min: u32, max: u32| json!({"type": "string", "pattern": format!("^[a-zA-Z0-9\\u4e00-\\u9fa5,-_]{{{min},{max}}}$")});
    let list_params = vec![
        path_param("project_id"),
        query(
            "is_paged",
            json!({"type": "boolean", "default": true}),
            "false returns every matching batch",
        ),
        query(
            "page_size",
            json!({"type": "integer", "minimum": 5, "maximum": 200, "default": 10}),
            "batches per page",
        ),
        query(
            "page_num",
            json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}),
            "1-based page number",
        ),
        query(
            "order_by",
            json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
            "sort direction (case-insensitive)",
        ),
        query(
            "sort_name",
            json!({"type": "string", "enum": ["task_count", "created_at"], "default": "created_at"}),
            "sort field; ties broken by id in the same direction",
        ),
        query(
            "video_group",
            filter(1, 1000),
            "comma-separated group ids or names; matches if any group matches any item",
        ),
        query(
            "task_state",
            json!({"type": "string", "description": format!("one of {} or a comma-separated list", states.join(", "))}),
            "matches batches with at least one task in any of the states",
        ),
        query(
            "type_like",
            json!({"type": "string", "enum": ["batch_task_name", "publish_service_name"]}),
            "the field name_like searches",
        ),
        query(
            "name_like",
            json!({"type": "string", "minLength": 0, "maxLength": 100}),
            "case-insensitive literal substring",
        ),
        query(
            "manufacturer",
            filter(2, 64),
            "comma-separated vendors, exact match",
        ),
        query(
            "title",
            filter(2, 64),
            "comma-separated algorithm names, exact match",
        ),
    ];
    let status_info: serde_json::Map<String, Value> = states
        .iter()
        .map(|s| (s.to_string(), json!({"type": "integer", "minimum": 1})))
        .collect();
    let reply = json!({"$ref": "#/components/schemas/BatchReply"});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "taskcenter", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Self-hosted task center for video analytics, wire-compatible with the VIAS task-center API (v2)."},
        "paths": {
            "/healthz": {"get": op("Healthz", "The process is alive", vec![], None, ok(json!({"type": "object"})), false)},
            "/metrics": {"get": {"operationId": "Metrics", "summary": "Metrics in the Prometheus text format; on this port only with the metrics token (Authorization: Bearer), refused to everyone when none is configured", "parameters": [],
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": {"description": "Missing or wrong metrics token, or none configured (VIAS.00010005)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
            "/readyz": {"get": {"operationId": "Readyz", "summary": "The database is reachable", "parameters": [],
                "responses": {"200": ok(json!({"type": "object"})), "503": {"description": "database unreachable"}}}},
            "/openapi.json": {"get": op("OpenApi", "This document", vec![], None, ok(json!({"type": "object"})), false)},
            "/v3/auth/tokens": {"post": {
                "operationId": "KeystoneCreateUserTokenByPassword", "summary": "Obtain a project-scoped token",
                "parameters": [],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
                "responses": {
                    "201": {"description": "Token in the X-Subject-Token header",
                            "headers": {"X-Subject-Token": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "Invalid body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "401": {"description": "Wrong credentials or project", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "413": {"description": "Body too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                }}},
            "/v2/{project_id}/batch-tasks": {
                "get": op("ListBatchTasks", "List batch tasks with per-state task counts", list_params, None,
                          ok(json!({"$ref": "#/components/schemas/BatchTaskList"})), true),
                "post": op("CreateBatchTask", "Create a batch task; one task per listed source", vec![path_param("project_id")],
                           Some(json!({"$ref": "#/components/schemas/CreateBatchTask"})), ok(reply.clone()), true)
            },
            "/v2/{project_id}/video-group": {
                "post": op("CreateVideoGroup", "Create a video group", vec![path_param("project_id")],
                           Some(json!({"type": "object", "required": ["name"], "properties": {
                               "id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                               "name": {"type": "string", "minLength": 1, "maxLength": 64}}})),
                           ok(json!({"$ref": "#/components/schemas/VideoGroup"})), true)
            },
            "/v2/{project_id}/video-group/groups": {
                "get": op("ListVideoGroups", "List video groups", paging(), None,
                          ok(json!({"type": "object", "properties": {"count": {"type": "integer"},
                              "groups": {"type": "array", "items": {"$ref": "#/components/schemas/VideoGroup"}}}})), true)
            },
            "/v2/{project_id}/video-group/{group_id}": {
                "get": op("ShowVideoGroup", "Show a video group", vec![path_param("project_id"), path_param("group_id")], None,
                          ok(json!({"$ref": "#/components/schemas/VideoGroup"})), true)
            },
            "/v2/{project_id}/source": {
                "post": op("CreateVideoSource", "Create a video source", vec![path_param("project_id")],
                           Some(json!({"type": "object", "required": ["name", "url"], "properties": {
                               "id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                               "name": {"type": "string", "minLength": 1, "maxLength": 64},
                               "url": {"type": "string", "maxLength": 2048},
                               "group_ids": {"type": "array", "maxItems": 100, "items": {"type": "string"}}}})),
                           ok(json!({"$ref": "#/components/schemas/VideoSource"})), true)
            },
            "/v2/{project_id}/source/sources": {
                "get": op("ListVideoSources", "List video sources", paging(), None,
                          ok(json!({"type": "object", "properties": {"count": {"type": "integer"},
                              "sources": {"type": "array", "items": {"$ref": "#/components/schemas/VideoSource"}}}})), true)
            },
            "/v2/{project_id}/source/sources/{source_id}": {
                "get": op("ShowVideoSource", "Show a video source", vec![path_param("project_id"), path_param("source_id")], None,
                          ok(json!({"$ref": "#/components/schemas/VideoSource"})), true)
            },
            "/v2/{project_id}/algorithm/services/user": {
                "get": op("ListServices", "List the project's algorithm services", paging(), None,
                          ok(json!({"type": "object", "properties": {"count": {"type": "integer"},
                              "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}}}})), true)
            },
            "/v2/{project_id}/algorithm/services/{service_id}": {
                "get": op("ShowService", "Show an algorithm service", vec![path_param("project_id"), path_param("service_id")], None,
                          ok(json!({"$ref": "#/components/schemas/Service"})), true)
            }
        },
        "components": {
            "parameters": {"XAuthToken": {"name": "X-Auth-Token", "in": "header", "required": false, "schema": {"type": "string"},
                "description": "a token from POST /v3/auth/tokens; required unless the request is signed with an access key (AccessKeySignature)"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error_code", "error_msg", "detail", "params", "reason", "advice"], "properties": {
                    "error_code": {"type": "string"}, "error_msg": {"type": "string"}, "detail": {"type": "string"},
                    "params": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                    "reason": {"type": "string"}, "advice": {"type": "string"}}},
                "BatchTaskList": {"type": "object", "properties": {
                    "count": {"type": "integer"},
                    "batch_task_list": {"type": "array", "items": {"$ref": "#/components/schemas/BatchTask"}}}},
                "BatchTask": {"type": "object", "properties": {
                    "id": {"type": "string"}, "batch_task_name": {"type": "string"},
                    "video_source_name": {"type": "string", "description": "present when the tasks cover exactly one source"},
                    "video_group_name": {"type": "string", "description": "group names joined by commas, in batch order"},
                    "alg_name": {"type": "string"}, "company": {"type": "string"},
                    "type": {"type": "string", "enum": ["0", "1"]},
                    "priority": {"type": "string", "enum": ["low", "medium", "high"]},
                    "num_task": {"type": "integer"}, "created_at": {"type": "integer", "format": "int64"},
                    "batch_task_status_info": {"type": "object", "properties": status_info}}},
                "CreateBatchTask": {"type": "object", "required": ["name", "service_name", "service_version", "batch_input", "output"], "properties": {
                    "name": {"type": "string", "maxLength": 100}, "description": {"type": "string", "maxLength": 500},
                    "service_name": {"type": "string", "pattern": "^[a-z0-9.]{3,32}$"},
                    "service_version": {"type": "string", "pattern": "^[a-z0-9.]{3,32}$"},
                    "priority": {"type": "string", "enum": ["low", "medium", "high"], "default": "low"},
                    "batch_input": {"type": "object", "required": ["video_source_group"], "properties": {
                        "video_source_group": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object",
                            "required": ["video_source_group_id"], "properties": {
                                "video_source_group_id": {"type": "string"},
                                "video_source_list": {"type": "array", "maxItems": 1000, "description": "absent or empty: every source in the group",
                                    "items": {"type": "object", "required": ["video_source_id"], "properties": {
                                        "video_source_id": {"type": "string"}, "target_roi": {}}}}}}}}},
                    "config": {"description": "free JSON passed to the algorithm"},
                    "output": {"type": "object", "properties": {
                        "webhook": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
                        "event_center": {"type": "boolean"}}}}},
                "BatchReply": {"type": "object", "properties": {
                    "id": {"type": "string"}, "total_count": {"type": "integer"}, "succeed_count": {"type": "integer"},
                    "failed_count": {"type": "integer"},
                    "error_list": {"type": "array", "items": {"type": "object", "properties": {
                        "video_source_id": {"type": "string"}, "error_code": {"type": "string"}, "error_msg": {"type": "string"}}}}}},
                "VideoGroup": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "created_at": {"type": "integer"}}},
                "VideoSource": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "url": {"type": "string"},
                    "group_ids": {"type": "array", "items": {"type": "string"}}, "created_at": {"type": "integer"}}},
                "Service": {"type": "object", "properties": {"id": {"type": "string"}, "service_name": {"type": "string"},
                    "service_version": {"type": "string"}, "alg_name": {"type": "string"}, "company": {"type": "string"},
                    "deploy_type": {"type": "string", "enum": ["cloud", "edge"]}, "status": {"type": "string", "enum": ["deployed", "undeployed"]},
                    "created_at": {"type": "integer"}}},
                "TokenRequest": {"type": "object", "description": "IAM password body: auth.identity.methods [\"password\"], auth.identity.password.user {name, password, domain}, auth.scope.project {id | name}"}
            }
        }
    })
}

/// The lifecycle routes: task operations and the worker protocol.
fn lifecycle_paths(paths: &mut serde_json::Map<String, Value>) {
    let states: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let pp = |extra: &str| vec![path_param("project_id"), path_param(extra)];
    let batch_op = json!({"$ref": "#/components/schemas/BatchOpReply"});
    let task_op = json!({"$ref": "#/components/schemas/TaskOpReply"});
    let mut add = |path: &str, method: &str, v: Value| {
        let e = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        e[method] = v;
    };
    add(
        "/v2/{project_id}/batch-tasks/{task_id}",
        "delete",
        op(
            "DeleteBatchTask",
            "Delete a batch task and its tasks (held tasks pass through deleting)",
            pp("task_id"),
            None,
            ok(batch_op.clone()),
            true,
        ),
    );
    add(
        "/v2/{project_id}/batch-tasks/{task_id}/action/start",
        "put",
        op(
            "BatchStartTask",
            "Start every task of a batch; per-task refusals in error_list",
            pp("task_id"),
            None,
            ok(batch_op.clone()),
            true,
        ),
    );
    add(
        "/v2/{project_id}/batch-tasks/{task_id}/action/stop",
        "put",
        op(
            "BatchStopTask",
            "Stop every task of a batch; per-task refusals in error_list",
            pp("task_id"),
            None,
            ok(batch_op),
            true,
        ),
    );
    add(
        "/v2/{project_id}/batch-tasks/{task_id}",
        "put",
        op(
            "UpdateBatchTask",
            "Update a batch task: name, description, priority, config, output, batch_input (sources added get tasks; removed lose theirs)",
            pp("task_id"),
            Some(json!({"type": "object", "description": "CreateBatchTask's fields, all optional; service_name and service_version, if given, must be the batch's own"})),
            ok(json!({"$ref": "#/components/schemas/BatchReply"})),
            true,
        ),
    );
    add(
        "/v2/{project_id}/source/{source_id}",
        "delete",
        op(
            "DeleteVideoSource",
            "Delete a video source; tasks that have not started on it end create_failed",
            pp("source_id"),
            None,
            ok(json!({"type": "object", "properties": {"id": {"type": "string"}}})),
            true,
        ),
    );
    add(
        "/v2/{project_id}/tasks",
        "get",
        op(
            "ListTasks",
            "List tasks (count = entries on this page, as VIAS)",
            vec![
                path_param("project_id"),
                query(
                    "batch_id",
                    json!({"type": "string"}),
                    "only this batch's tasks",
                ),
                query(
                    "task_state",
                    json!({"type": "string", "description": format!("one of {} or a comma list", states.join(", "))}),
                    "only tasks in these states",
                ),
                query(
                    "page",
                    json!({"type": "integer", "minimum": 0, "default": 0}),
                    "0-based page",
                ),
                query(
                    "page_size",
                    json!({"type": "integer", "minimum": 5, "maximum": 1000, "default": 10}),
                    "tasks per page",
                ),
                query(
                    "sort_dir",
                    json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
                    "by creation time",
                ),
            ],
            None,
            ok(
                json!({"type": "object", "properties": {"count": {"type": "integer"},
        "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        "page": {"type": "integer"}, "page_size": {"type": "integer"}}}),
            ),
            true,
        ),
    );
    add(
        "/v2/{project_id}/tasks/{task_id}",
        "get",
        op(
            "ShowTask",
            "Show a task with its history",
            pp("task_id"),
            None,
            ok(json!({"$ref": "#/components/schemas/Task"})),
            true,
        ),
    );
    add(
        "/v2/{project_id}/tasks/{task_id}",
        "delete",
        op(
            "DeleteTask",
            "Delete a task (a held task passes through deleting)",
            pp("task_id"),
            None,
            ok(task_op.clone()),
            true,
        ),
    );
    add(
        "/v2/{project_id}/tasks/{task_id}/action/start",
        "put",
        op(
            "StartTask",
            "Start a stopped, finished or failed task again",
            pp("task_id"),
            None,
            ok(task_op.clone()),
            true,
        ),
    );
    add(
        "/v2/{project_id}/tasks/{task_id}/action/stop",
        "put",
        op(
            "StopTask",
            "Stop a task",
            pp("task_id"),
            None,
            ok(task_op),
            true,
        ),
    );
    let worker = |id: &str, summary: &str, body: Value| {
        let mut o = op(
            id,
            summary,
            vec![],
            Some(body),
            ok(json!({"type": "object"})),
            false,
        );
        o["security"] = json!([{"WorkerCredential": []}]);
        o
    };
    add(
        "/worker/v1/register",
        "post",
        worker(
            "WorkerRegister",
            "A worker starts: its type and slots",
            json!({"type": "object", "required": ["kind", "slots"], "properties": {"kind": {"type": "string", "enum": ["cloud", "edge"]}, "slots": {"type": "integer", "minimum": 1, "maximum": 10000}}}),
        ),
    );
    add(
        "/worker/v1/sync",
        "post",
        worker(
            "WorkerSync",
            "Heartbeat and long-poll: what the worker runs in, what to start, stop and upgrade out",
            json!({"type": "object", "required": ["running"], "properties": {"running": {"type": "array", "items": {"$ref": "#/components/schemas/Held"}}, "wait_ms": {"type": "integer", "minimum": 0}}}),
        ),
    );
    add(
        "/worker/v1/report",
        "post",
        worker(
            "WorkerReport",
            "A worker's report on a task it holds",
            json!({"type": "object", "required": ["task", "attempt", "event"], "properties": {"task": {"type": "integer"}, "attempt": {"type": "integer"},
            "event": {"type": "string", "enum": ["started", "spawn_failed", "exited", "crashed", "released", "upgraded"]},
            "error_code": {"type": "string"}, "error_message": {"type": "string"}}}),
        ),
    );
}

fn lifecycle_schemas(schemas: &mut serde_json::Map<String, Value>) {
    let upper: Vec<String> = TaskState::ALL.iter().map(|s| s.as_upper()).collect();
    schemas.insert("Task".into(), json!({"type": "object", "properties": {
        "id": {"type": "string"}, "batch_id": {"type": "string"}, "video_source_id": {"type": "string"},
        "state": {"type": "string", "enum": upper}, "worker_id": {"type": "string"}, "attempt": {"type": "integer"},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        "history": {"type": "array", "description": "ShowTask only: every transition, oldest first", "items": {"type": "object", "properties": {
            "at": {"type": "integer"}, "from": {"type": "string"}, "event": {"type": "string"}, "to": {"type": "string", "description": "absent: deleted"}}}},
        "created_at": {"type": "integer"}, "updated_at": {"type": "integer"}}}));
    schemas.insert("TaskOpReply".into(), json!({"type": "object", "properties": {
        "id": {"type": "string"}, "state": {"type": "string", "description": "the task's state now; null when it was deleted"}}}));
    schemas.insert("BatchOpReply".into(), json!({"type": "object", "properties": {
        "id": {"type": "string"}, "total_count": {"type": "integer"}, "succeed_count": {"type": "integer"}, "failed_count": {"type": "integer"},
        "error_list": {"type": "array", "items": {"type": "object", "properties": {
            "task_id": {"type": "string"}, "error_code": {"type": "string"}, "error_msg": {"type": "string"}}}}}}));
    schemas.insert("Held".into(), json!({"type": "object", "properties": {"task": {"type": "integer"}, "attempt": {"type": "integer"}}}));
}

/// The whole document: the VIAS routes, then the lifecycle's.
pub fn full_document() -> Value {
    let mut doc = document();
    if let Some(paths) = doc["paths"].as_object_mut() {
        lifecycle_paths(paths);
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        lifecycle_schemas(schemas);
    }
    doc["components"]["securitySchemes"] = json!({"WorkerCredential": {"type": "http", "scheme": "bearer",
        "description": "a worker credential from `taskcenter workers add` (not a user token)"},
        "AccessKeySignature": {"type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`SDK-HMAC-SHA256 Access=AK, SignedHeaders=…, Signature=…` with X-Sdk-Date, as Huawei Cloud's SDKs sign, with an access key from `taskcenter access-key create`; the alternative to X-Auth-Token on /v2 routes"}});
    doc
}

pub async fn serve() -> Json<Value> {
    Json(full_document())
}
