//! `GET /openapi.json`: the API description. Its paths are compared with the
//! router's route table in the tests, so a route cannot exist undocumented.
//! The operations are VIAS's (names, JSON names and JSON types as the
//! official SDK reads them, constraints as the handlers check them); what
//! taskcenter adds is marked `x-taskcenter-extension`. The component schemas
//! live in [`schemas`].

mod schemas;

use crate::domain::vias::ALG_STATUSES;
use crate::domain::vias::{SOURCE_TYPES, SOURCE_TYPE_FILTERS};
use crate::domain::TaskState;
use axum::Json;
use schemas::{arr, choice, int, r, str_max, str_pat, ID_PATTERN};
use serde_json::{json, Map, Value};

/// Text without control characters.
const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// Tokens as `POST /v3/auth/tokens` issues them.
const TOKEN_PATTERN: &str = "^tc1\\.[0-9a-f]{1,64}\\.[0-9a-f]{1,128}$";

/// VIAS's path prefix: every VIAS operation names its project.
const V2: &str = "/v2/{project_id}";

/// The error statuses a route can answer, each a shared response.
const ERRORS_V2: [&str; 6] = ["400", "401", "403", "500", "503", "507"];
const ERRORS_BODY: [&str; 2] = ["408", "413"];

fn error_response(desc: &str) -> Value {
    json!({"description": desc,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {"application/json": {"schema": r("Error")}}})
}

/// The shared error responses, one per status, with the codes each carries.
fn responses() -> Value {
    let mut m = Map::new();
    for (code, desc) in [
        ("400", "VIAS.00010001 invalid parameter (params names it), VIAS.00010002 object not found, \
                 VIAS.00010003 already exists, VIAS.00010011 batch task name taken, VIAS.00010012 \
                 not allowed in the object's current state. VIAS answers 400, not 404, for a missing object."),
        ("401", "VIAS.00010005: no credential, or a malformed, unknown or expired token, or a bad \
                 signature (on the worker routes: the worker credential)."),
        ("403", "VIAS.00010005: the credential is scoped to another project than the path's."),
        ("404", "VIAS.00010002: no route has this path (any path not in this document)."),
        ("405", "VIAS.00010001: the path exists, but not with this method."),
        ("408", "VIAS.TC.TIMEOUT: the request body stalled past the body timeout."),
        ("413", "VIAS.00010001: the request body is larger than 1 MiB."),
        ("429", "VIAS.TC.TOO_MANY_REQUESTS: too many failed logins for this user or address; see Retry-After."),
        ("500", "VIAS.00010006: internal error; detail carries the request id, the cause is only logged."),
        ("503", "VIAS.TC.UNAVAILABLE: connection cap reached, password checkers busy, or the database \
                 unreachable; see Retry-After."),
        ("507", "VIAS.TC.STORAGE_FULL: the database has no space left for the change; nothing of it was stored."),
    ] {
        let mut e = error_response(desc);
        if ["429", "503"].contains(&code) {
            e["headers"]["Retry-After"] = json!({"schema": {"type": "integer"}, "description": "seconds"});
        }
        m.insert(format!("E{code}"), e);
    }
    Value::Object(m)
}

fn errors(codes: &[&str]) -> Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({"$ref": format!("#/components/responses/E{c}")}),
            )
        })
        .collect()
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, schema: Value, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema, "description": desc})
}

fn id_param(name: &str, desc: &str) -> Value {
    path_param(name, str_pat(ID_PATTERN), desc)
}

fn query(name: &str, schema: Value, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": desc})
}

/// A list-typed query parameter: the SDK repeats the key (`type=obs&type=url`);
/// items may also be comma-joined.
fn query_list(name: &str, items: Value, desc: &str) -> Value {
    let mut q = query(name, arr(items), desc);
    q["style"] = json!("form");
    q["explode"] = json!(true);
    q
}

/// VIAS's paging parameters: `is_paged` (default as given), `page_size`
/// 5–200 (default 10), `page_num` 1–`max_page` (default 1).
fn paged(default: bool, max_page: u32) -> Vec<Value> {
    vec![
        query(
            "is_paged",
            json!({"type": "boolean", "default": default}),
            "false returns every matching row (page_size and page_num are still validated)",
        ),
        query("page_size", int(5, 200, Some(10)), "rows per page"),
        query("page_num", int(1, max_page, Some(1)), "1-based page number"),
    ]
}

fn order_by() -> Value {
    query(
        "order_by",
        with_default(choice(&["asc", "desc"]), "desc"),
        "sort direction",
    )
}

fn sort_name(values: &[&str]) -> Value {
    query(
        "sort_name",
        with_default(choice(values), values[0]),
        "sort field",
    )
}

fn with_default(mut v: Value, d: &str) -> Value {
    v["default"] = json!(d);
    v
}

// The query parameters of the list operations, as the handlers parse them
// (`domain/list.rs`, `api/catalogue.rs` `listing()`, each list handler).
// Only what a handler reads with `parse_with_lists` is a repeatable array;
// any other known parameter given twice is a 400.

/// `^[a-zA-Z0-9\u4e00-\u9fa5,-_]{min,max}$` as VIAS writes it: `,-_` is the
/// range U+002C–U+005F, in ECMA regexes as in the handler.
fn filter(min: u32, max: u32) -> Value {
    str_pat(&format!("^[a-zA-Z0-9\\u4e00-\\u9fa5,-_]{{{min},{max}}}$"))
}

fn states_param(upper: bool) -> Value {
    let names: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| {
            if upper {
                s.as_upper()
            } else {
                s.as_str().to_owned()
            }
        })
        .collect();
    // Comma-separated states, any case; empty items and repeats are
    // ignored, but at least one state must be there.
    let one = format!("(?i:{})", names.join("|"));
    query(
        "task_state",
        json!({"type": "string", "pattern": format!("^,*{one}(,+{one})*,*$"), "x-case-insensitive": true}),
        &format!(
            "one task state, or several comma-separated (any case): {}",
            names.join(", ")
        ),
    )
}

fn access_types() -> Value {
    query_list("access_type", choice(&["cloud", "edge"]), "access types")
}

fn list_batch_tasks_params() -> Vec<Value> {
    let mut v = paged(true, 10_000);
    v.extend([
        order_by(),
        sort_name(&["created_at", "task_count"]),
        query("video_group", filter(1, 1000), "comma-separated group ids or names; a batch matches if any of its groups matches any item"),
        states_param(false),
        query("type_like", choice(&["batch_task_name", "publish_service_name"]), "the field name_like searches; required with a non-empty name_like"),
        query("name_like", str_max(100), "case-insensitive literal substring of the type_like field; empty: no filter"),
        query("manufacturer", filter(2, 64), "comma-separated vendors, exact match"),
        query("title", filter(2, 64), "comma-separated algorithm names, exact match"),
    ]);
    v
}

fn list_tasks_params() -> Vec<Value> {
    vec![
        query(
            "source_data_type",
            choice(&["async_task", "sync_task"]),
            "every taskcenter task is async_task: sync_task lists none",
        ),
        query(
            "title",
            json!({"type": "string", "minLength": 2, "maxLength": 64, "pattern": NO_CONTROL}),
            "comma-separated algorithm names (VIAS's pattern is not checked)",
        ),
        query(
            "camera_name",
            str_max(255),
            "substring of the video source's name",
        ),
        states_param(true),
        query("task_name", str_max(1024), "substring of the task's name"),
        query("page_size", int(5, 1000, Some(10)), "tasks per page"),
        query("page", int(1, 1_000_000, Some(1)), "1-based page number"),
        query(
            "sort_dir",
            with_default(choice(&["asc", "desc"]), "desc"),
            "by creation time",
        ),
        query("batch_id", str_pat(ID_PATTERN), "only this batch's tasks"),
        query(
            "video_group_id",
            json!({"type": "string", "minLength": 1, "maxLength": 2048, "pattern": NO_CONTROL}),
            "comma-joined group ids (VIAS: at least 4 characters; taskcenter's ids may be shorter)",
        ),
        query(
            "company",
            json!({"type": "string", "pattern": NO_CONTROL}),
            "comma-joined vendors",
        ),
        query(
            "alg_id",
            json!({"type": "string", "pattern": NO_CONTROL}),
            "an algorithm's alg_id (or its service_id); not checked against VIAS's UUID pattern",
        ),
    ]
}

fn list_sources_params() -> Vec<Value> {
    let mut v = vec![
        query(
            "scope",
            str_max(255),
            "substring of the field scope_name names",
        ),
        query(
            "scope_name",
            with_default(choice(&["source_name", "group_name"]), "source_name"),
            "the field scope searches",
        ),
        query_list(
            "status",
            json!({"type": "string", "enum": ["1", "2", "9"]}),
            "1 online, 2 offline, 9 abnormal; every source reports online",
        ),
        query_list("type", choice(&SOURCE_TYPE_FILTERS), "source types"),
        query_list(
            "video_group_id",
            str_pat(ID_PATTERN),
            "only sources in these groups",
        ),
        sort_name(&["create_at", "num_task", "num_template"]),
        order_by(),
    ];
    v.extend(paged(false, 100_000));
    v.extend([
        access_types(),
        query(
            "platform_name",
            str_max(100),
            "accepted and checked, not applied",
        ),
        query("tag", str_max(255), "only sources with this tag"),
    ]);
    v
}

fn list_groups_params() -> Vec<Value> {
    let mut v = vec![
        sort_name(&["create_at", "modify_at", "num_video_source", "num_task"]),
        order_by(),
    ];
    v.extend(paged(false, 100_000));
    v.extend([
        query("name", str_max(20), "substring of the group's name"),
        query(
            "status",
            json!({"type": "string", "enum": ["1", "2", "9"]}),
            "state level, one value: every source reports online (1)",
        ),
        access_types(),
        query(
            "has_task",
            json!({"type": "boolean", "default": false}),
            "only groups a batch task uses",
        ),
        query_list(
            "type",
            choice(&SOURCE_TYPES),
            "only groups holding sources of these types",
        ),
    ]);
    v
}

fn list_services_params() -> Vec<Value> {
    let mut v = vec![query(
        "name_like",
        str_max(100),
        "substring of the service's name",
    )];
    v.extend(paged(false, 10_000));
    v.extend([
        order_by(),
        sort_name(&["created_at", "function_version"]),
        query_list("alg_status", choice(&ALG_STATUSES), "filters the page the paging selects: with it, ask for every row (is_paged=false) to count exactly"),
    ]);
    v
}

fn list_pools_params() -> Vec<Value> {
    vec![
        query(
            "is_paged",
            json!({"type": "boolean", "default": false}),
            "false returns every matching pool",
        ),
        query(
            "page_size",
            int(1, 1000, Some(10)),
            "pools per page (VIAS's range for this list)",
        ),
        query("page_num", int(1, 10_000, Some(1)), "1-based page number"),
        query(
            "name_like",
            str_pat("^[a-z0-9-]{1,30}$"),
            "substring of the pool's name",
        ),
        order_by(),
        sort_name(&["created_at", "updated_at"]),
        query(
            "state",
            json!({"type": "string", "enum": ["Running", "Abnormal"]}),
            "one value, exact case",
        ),
    ]
}

/// VIAS's 29 operations, one a line: method, path after `/v2/{project_id}`,
/// operationId, request body schema (`-` none, a trailing `?` optional),
/// success status and reply schema, then `|` and the summary.
const VIAS_OPS: &str = "
post   /batch-tasks                            CreateBatchTask       CreateBatchTasksRequestBody 200 BatchOpResult | Create a batch task: one task per listed source (every source of a group whose video_source_list is absent or empty)
get    /batch-tasks                            ListBatchTasks        -                           200 ListBatchTasksResponse | List batch tasks with per-state task counts; count is the number of matching batches
put    /batch-tasks/{id}                       UpdateBatchTask       UpdateBatchTaskRequestBody  200 BatchOpResult | Update a batch task; sources added get tasks, sources removed lose theirs
put    /batch-tasks/{id}/action/{command}      BatchStartStopTask    -                           200 BatchOpResult | Start or stop every task of a batch; per-task refusals in error_list
delete /batch-tasks/{id}                       DeleteBatchTask       -                           200 BatchOpResult | Delete a batch task and its tasks (a task on a worker passes through DELETING)
post   /services/{service_name}/tasks          CreateTask            CreateTasksRequestBody      200 CreateTaskResponse | Create tasks on a service, one per input.data entry
get    /tasks                                  ListTasks             -                           200 ListTasksResponse | List tasks; count is the number of entries on this page, as VIAS
get    /tasks/{task_id}                        ShowTaskInfo          -                           200 ShowTaskInfoResponse | Show a task, with its history of transitions
put    /tasks/{task_id}                        UpdateTask            UpdateTasksRequestBody      200 TaskOpReply | Update a task (input holds exactly one data entry); VIAS's reply is any JSON
put    /tasks/{task_id}/action/{command}       StartStopTask         -                           200 TaskOpReply | Start (a stopped, finished or failed task) or stop a task; VIAS's reply is any JSON
delete /tasks/{task_id}                        DeleteTask            -                           200 TaskOpReply | Delete a task (a task on a worker passes through DELETING); VIAS's reply is any JSON
post   /source                                 CreateVideoSource     CreateVideoSourceDto        200 CreateVideoSourceResponse | Create a video source
get    /source/sources                         ListVideoSources      -                           200 ListVideoSourcesResponse | List video sources
get    /source/sources/{video_source_id}       ShowVideoSourceDetail -                           200 VideoSourceDetail | Show a video source (the reply carries no id, as VIAS's)
put    /source/{video_source_id}               UpdateVideoSource     UpdateVideoSourceDto        200 VideoSourceDetail | Update a video source (its type and access type cannot change)
delete /source/{video_source_id}               DeleteVideoSource     -                           200 IdReply | Delete a video source; its tasks that have not started end CREATE_FAILED (the SDK keeps the reply as raw text)
post   /video-group                            CreateVideoGroup      CreateVideoGroupDto         200 CreateVideoGroupResponse | Create a video group
get    /video-group/groups                     ListVideoGroups       -                           200 ListVideoGroupsResponse | List video groups
get    /video-group/{video_group_id}           ShowVideoGroupDetail  -                           200 VideoGroupInfoDto | Show a video group
put    /video-group/{video_group_id}           UpdateVideoGroup      UpdateVideoGroupDto?        200 IdReply | Update a video group; the SDK may send no body (the SDK keeps the reply as raw text)
delete /video-group/{video_group_id}           DeleteVideoGroup      -                           200 IdReply | Delete a video group (the SDK keeps the reply as raw text)
get    /algorithm/services/user                ListUserServices      -                           200 ListUserServicesResponse | List the project's algorithm services
get    /algorithm/services/{service_id}        ShowServiceDetail     -                           200 ShowServiceDetailResponse | Show an algorithm service
post   /algorithm/{alg_id}/deploy              DeployAlgorithm       DeployServiceReq            200 DeployAlgorithmResponse | Deploy a service (an edge service optionally onto an edge pool)
put    /algorithm/{alg_id}/deploy/stop         StopDeployAlgorithm   -                           200 StopDeployAlgorithmResponse | Undeploy a service; its live tasks stop
post   /edge-pools                             CreateEdgePool        CreateEdgePoolRequestDto    201 CreateEdgePoolResponse | Create an edge pool of workers (201, as VIAS documents)
get    /edge-pools                             ListEdgePools         -                           200 ListEdgePoolsResponse | List edge pools
get    /edge-pools/{id}                        ShowEdgePoolInfo      -                           200 ShowEdgePoolInfoResponse | Show an edge pool and its nodes (workers)
delete /edge-pools/{id}                        DeleteEdgePool        -                           200 IdReply | Delete an edge pool (the SDK keeps the reply as raw text)
";

/// A path parameter by name (`id` names the batch on `/batch-tasks`).
fn path_segment_param(name: &str, path: &str) -> Value {
    match name {
        "project_id" => path_param(
            name,
            json!({"type": "string"}),
            "the project; must be the credential's",
        ),
        "command" => path_param(name, choice(&["start", "stop"]), "start or stop"),
        "service_name" => path_param(
            name,
            str_pat(schemas::SERVICE_NAME),
            "the service's name (percent-encoded)",
        ),
        "id" if path.starts_with("/batch-tasks") => id_param(name, "the batch task's id"),
        "alg_id" | "service_id" => id_param(name, "the service's alg_id or service_id"),
        _ => id_param(name, "the object's id"),
    }
}

fn query_params(operation: &str) -> Vec<Value> {
    match operation {
        "ListBatchTasks" => list_batch_tasks_params(),
        "ListTasks" => list_tasks_params(),
        "ListVideoSources" => list_sources_params(),
        "ListVideoGroups" => list_groups_params(),
        "ListUserServices" => list_services_params(),
        "ListEdgePools" => list_pools_params(),
        _ => Vec::new(),
    }
}

fn request_body(schema: &str) -> Value {
    let (name, optional) = match schema.strip_suffix('?') {
        Some(n) => (n, true),
        None => (schema, false),
    };
    json!({"required": !optional, "content": {"application/json": {"schema": r(name)}}})
}

/// One VIAS operation from a line of [`VIAS_OPS`]: authenticated by token
/// or signature, project-scoped, with every error the route can answer.
fn vias_op(line: &str) -> Option<(String, String, Value)> {
    let (head, summary) = line.split_once(" | ")?;
    let f: Vec<&str> = head.split_whitespace().collect();
    let [method, tail, id, body, status, reply] = f.as_slice() else {
        return None;
    };
    let path = format!("{V2}{tail}");
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| path_segment_param(name, tail))
        .collect();
    params.insert(1, json!({"$ref": "#/components/parameters/XAuthToken"}));
    params.extend(query_params(id));
    let mut responses = errors(&ERRORS_V2);
    if *body != "-" {
        responses.extend(errors(&ERRORS_BODY));
    }
    responses.insert(status.to_string(), ok("OK", r(reply)));
    let mut o = json!({"operationId": id, "summary": summary, "parameters": params, "responses": responses,
        "security": [{"XAuthToken": []}, {"SdkSignature": [], "SdkDate": []},
                     {"SdkSignature": [], "SdkDate": [], "SdkProjectId": []}]});
    if *body != "-" {
        o["requestBody"] = request_body(body);
    }
    Some((path, method.to_string(), o))
}

type Paths = Map<String, Value>;

fn add(paths: &mut Paths, method: &str, path: &str, op: Value) {
    let e = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
    e[method] = op;
}

fn vias_paths(p: &mut Paths) {
    for (path, method, op) in VIAS_OPS.lines().filter_map(vias_op) {
        add(p, &method, &path, op);
    }
}

/// The routes that are not VIAS's, in [`VIAS_OPS`]'s format with two more
/// columns before the `|`: the error statuses and the security scheme.
const OWN_OPS: &str = "
get  /healthz            Healthz        -               200 Probe         503                         -                | The process is alive
get  /readyz             Readyz         -               200 Probe         503                         -                | The database is reachable and the last write did not find the storage full
get  /metrics            Metrics        -               200 -             401,503                     MetricsToken     | Metrics in the Prometheus text format; on the API port only with the metrics token, refused to everyone when none is configured
get  /openapi.json       OpenApi        -               200 OpenApi       503                         -                | This document
get  /                   ConsoleRoot    -               200 -             -                           -                | The web console's page, as at /console/
get  /console/           Console        -               200 -             -                           -                | The web console's page
get  /console/app.js     ConsoleScript  -               200 -             -                           -                | The web console's script
get  /console/app.css    ConsoleStyle   -               200 -             -                           -                | The web console's style sheet
post /v3/auth/tokens     IssueToken     TokenRequest    201 TokenReply    400,401,408,413,429,500,503,507 -                | Obtain a project-scoped token (IAM's password flow); it comes in the X-Subject-Token header
delete /v3/auth/tokens   RevokeToken    -               204 -             400,401,500,503,507         XAuthToken       | Revoke the token in X-Subject-Token (send the caller's own to log out); every server sharing the database refuses it within a second
get  /v2/{project_id}/workers ListWorkers -        200 WorkerList    400,401,403,500,503         XAuthToken       | Every worker (shared by all projects): slots held of total, live or lost, type, pool
post /worker/v1/register WorkerRegister RegisterRequest 200 RegisterReply 400,401,408,413,500,503,507 WorkerCredential | A worker starts: its type and task slots
post /worker/v1/sync     WorkerSync     SyncRequest     200 SyncReply     400,401,408,413,500,503,507 WorkerCredential | Heartbeat and long-poll: the tasks the worker runs; what to start, stop and upgrade
post /worker/v1/report   WorkerReport   ReportRequest   200 ReportReply   400,401,408,413,500,503,507 WorkerCredential | A worker's report on a task it holds
post /worker/v1/reports  WorkerReports  ReportBatch     200 ReportBatchReply 400,401,408,413,500,503,507 WorkerCredential | A worker's reports (1 to 1000), applied in order in one transaction; one reply each
";

fn own_op(line: &str) -> Option<(String, String, Value)> {
    let (head, summary) = line.split_once(" | ")?;
    let f: Vec<&str> = head.split_whitespace().collect();
    let [method, path, id, body, status, reply, codes, scheme] = f.as_slice() else {
        return None;
    };
    let codes: Vec<&str> = codes.split(',').filter(|c| *c != "-").collect();
    let mut responses = errors(&codes);
    let reply = match *reply {
        "-" => {
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        name => ok("OK", r(name)),
    };
    responses.insert(status.to_string(), reply);
    let security = match *scheme {
        "-" => json!([]),
        name => json!([{ name: [] }]),
    };
    let mut o = json!({"operationId": id, "summary": summary, "parameters": [], "responses": responses,
        "security": security, "x-taskcenter-extension": true});
    if *body != "-" {
        o["requestBody"] = request_body(body);
    }
    Some((path.to_string(), method.to_string(), o))
}

fn own_paths(p: &mut Paths) {
    for (path, method, op) in OWN_OPS.lines().filter_map(own_op) {
        add(p, &method, &path, op);
    }
    p["/readyz"]["get"]["responses"]["503"] = ok(
        "Not ready: the database does not answer, or the last write found its storage full",
        r("Error"),
    );
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        p[path]["get"]["responses"]["200"]["content"] =
            json!({kind: {"schema": {"type": "string"}}});
    }
    // Conditional list requests (our extension): the ETag of a page, and 304
    // while neither the project's batches nor the query changed.
    let list = &mut p["/v2/{project_id}/batch-tasks"]["get"];
    if let Some(params) = list["parameters"].as_array_mut() {
        params.push(json!({"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"},
            "description": "an ETag of an earlier page of this list (our extension)", "x-taskcenter-extension": true}));
        params.push(json!({"name": "Prefer", "in": "header", "required": false,
            "schema": {"type": "string"},
            "description": "with If-None-Match, `wait=N` (RFC 7240; N seconds, at most 20) makes the request a long poll: \
                the answer comes as soon as the page's content changes (200 with the new page), or as 304 after N seconds \
                (our extension). Other preferences are ignored, as RFC 7240 asks", "x-taskcenter-extension": true}));
    }
    list["responses"]["200"]["headers"] = json!({"ETag": {"schema": {"type": "string"},
        "description": "names this page's content (paged requests): send it back in If-None-Match"}});
    list["responses"]["304"] = json!({"description": "Not modified: the page named by If-None-Match is still current (our extension)",
        "headers": {"ETag": {"schema": {"type": "string"}}}});
    p["/v3/auth/tokens"]["post"]["responses"]["201"]["headers"] = json!({"X-Subject-Token":
        {"schema": {"type": "string"}, "description": "the token: send it as X-Auth-Token"}});
    p["/v2/{project_id}/workers"]["get"]["parameters"] = json!([
        path_segment_param("project_id", "/workers"),
        {"$ref": "#/components/parameters/XAuthToken"}]);
    let revoke = &mut p["/v3/auth/tokens"]["delete"];
    revoke["responses"]["204"] = json!({"description": "Revoked"});
    revoke["parameters"] = json!([{"name": "X-Subject-Token", "in": "header", "required": true,
        "schema": str_pat(TOKEN_PATTERN), "description": "the token to revoke"}]);
}

fn security_schemes() -> Value {
    let header = |name: &str, desc: &str| json!({"type": "apiKey", "in": "header", "name": name, "description": desc});
    json!({
        "XAuthToken": header("X-Auth-Token", "A token from POST /v3/auth/tokens (the X-Subject-Token header), scoped to the path's project."),
        "SdkSignature": header("Authorization", "An access-key signature as Huawei Cloud's SDKs make it: \
            `SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2;…>, Signature=<hex>`, the hex HMAC-SHA256 (keyed with \
            the secret key) of `SDK-HMAC-SHA256\\n<X-Sdk-Date>\\n<hex SHA-256 of the canonical request>`. The signed \
            headers include host and x-sdk-date. Used when X-Auth-Token is absent; the AK's user must be a member of the path's project."),
        "SdkDate": header("X-Sdk-Date", "The signing time, `YYYYMMDDTHHMMSSZ` (UTC), within 15 minutes of the server's clock; signed."),
        "SdkProjectId": header("X-Project-Id", "Sent by the SDK when its credentials carry a project id; must then be the path's project."),
        "WorkerCredential": {"type": "http", "scheme": "bearer", "x-taskcenter-extension": true,
            "description": "A worker credential from `taskcenter workers add` (tcw1.…), not a user token."},
        "MetricsToken": {"type": "http", "scheme": "bearer", "x-taskcenter-extension": true,
            "description": "The metrics token configured with --metrics-token."}
    })
}

/// The whole document.
pub fn full_document() -> Value {
    let mut paths = Paths::new();
    vias_paths(&mut paths);
    own_paths(&mut paths);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "taskcenter", "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted task center for video analytics, wire-compatible with Huawei Cloud VIAS's \
                API v2 as its official SDK reads it: VIAS's operation names, JSON names and JSON types (numeric-looking \
                values that VIAS declares as strings stay strings). Every `/v2/{project_id}/…` operation is \
                authenticated by X-Auth-Token or an SDK-HMAC-SHA256 signature. Enumerated values are matched \
                case-insensitively where marked `x-case-insensitive`. Any path not listed here answers 404, and a \
                listed path with another method 405, both with the Error body.",
            "x-taskcenter-extensions": "Operations, parameters and fields that VIAS does not have carry \
                `x-taskcenter-extension: true` (for example batch `priority`, client-chosen `id`s, the `url` shorthand \
                of CreateVideoSource, task `history`, `worker_id`, `attempt`); the SDK ignores extra reply fields and \
                never sends the extra request fields."},
        "paths": paths,
        "x-taskcenter-fallback-responses": {"404": {"$ref": "#/components/responses/E404"},
                                            "405": {"$ref": "#/components/responses/E405"}},
        "components": {
            "schemas": schemas::schemas(),
            "responses": responses(),
            "parameters": {"XAuthToken": {"name": "X-Auth-Token", "in": "header", "required": false,
                "schema": {"type": "string"},
                "description": "The token from POST /v3/auth/tokens; required unless the request is signed (VIAS's docs declare it on every operation)."}},
            "headers": {"X-Request-Id": {"schema": {"type": "string"}, "description": "This request's id, also in logs and 500 bodies"}},
            "securitySchemes": security_schemes()
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(full_document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_line_is_an_operation() {
        let lines = |t: &str| t.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(
            super::VIAS_OPS.lines().filter_map(super::vias_op).count(),
            29
        );
        assert_eq!(lines(super::VIAS_OPS), 29);
        let own = super::OWN_OPS.lines().filter_map(super::own_op).count();
        assert_eq!(own, lines(super::OWN_OPS));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = super::full_document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/").skip(1) {
            let path = part.split('"').next().unwrap_or_default();
            let target = path.split('/').fold(&doc, |v, k| &v[k]);
            assert!(!target.is_null(), "#/{path} resolves");
        }
    }
}
