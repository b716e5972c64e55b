//! The wire contract as the official Huawei Java SDK sees it
//! (the field-by-field VIAS wire contract, machine-readable in
//! `tests/wire/vias_fields.tsv`), checked against the real binary.
//!
//! The suite is written from the contract, not from the implementation:
//!
//! - **the table** (`Table`): `tests/wire/vias_fields.tsv`, read at test
//!   time. It gives each operation's method and path, its request fields and
//!   query parameters (used to lint the requests this test sends, so they
//!   carry only the SDK's names with the SDK's types), and its reply fields;
//! - **the checker** (`check_reply`): every reply field the table lists must,
//!   when present, have exactly the JSON type the SDK parses; `null` is never
//!   acceptable; arrays are walked element by element;
//! - **presence** (`required`): the few reply fields a client relies on (ids
//!   for the next call, counts, list items' ids and names, states, times);
//! - **the flow** (`all_29_operations_*`): every one of the 29 VIAS operations,
//!   called as the SDK calls it (`Content-Type: application/json` on every
//!   method, unset fields omitted, non-ASCII escaped as `\uXXXX`, list-typed
//!   query parameters as repeated keys, CJK path segments percent-encoded), in
//!   the order a client would, with ids fed forward, on SQLite and PostgreSQL;
//! - **the type traps** (`type_traps_*`): the fields whose JSON type an
//!   implementer gets wrong most easily (numbers the SDK declares as text, and
//!   the reverse), each checked on its own.
//!
//! Each flow collects every violation and fails once at the end with a report
//! that names the operation, the request and what came back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::process::*;
use common::*;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// One row of `vias_fields.tsv`.
#[derive(Debug, Clone)]
struct Row {
    op: String,
    method: String,
    path: String,
    location: String,
    field: String,
    ty: String,
    required: String,
}

#[derive(Debug)]
struct Table {
    rows: Vec<Row>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wire/vias_fields.tsv");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let mut lines = text.lines();
        assert_eq!(
            lines.next().map(|h| h.split('\t').collect::<Vec<_>>()),
            Some(vec![
                "operation",
                "method",
                "path",
                "location",
                "field",
                "type",
                "required",
                "constraint"
            ]),
            "the table's header"
        );
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                assert!(c.len() >= 7, "a short row in the table: {l:?}");
                Row {
                    op: c[0].to_owned(),
                    method: c[1].to_owned(),
                    path: c[2].to_owned(),
                    location: c[3].to_owned(),
                    field: c[4].to_owned(),
                    ty: c[5].to_owned(),
                    required: c[6].to_owned(),
                }
            })
            .collect();
        Table { rows }
    })
}

impl Table {
    fn ops(&self) -> BTreeSet<&str> {
        self.rows.iter().map(|r| r.op.as_str()).collect()
    }

    fn rows<'a>(&'a self, op: &'a str, location: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.rows
            .iter()
            .filter(move |r| r.op == op && r.location == location)
    }

    /// Method and path template (after `/v2/{project_id}`) of an operation.
    fn route(&self, op: &str) -> (&str, &str) {
        let r = self
            .rows
            .iter()
            .find(|r| r.op == op)
            .unwrap_or_else(|| panic!("{op} is not in the table"));
        (&r.method, &r.path)
    }

    /// How the SDK reads the reply: `json` (a model), `any` (free JSON) or
    /// `text` (the raw body).
    fn reply_kind(&self, op: &str) -> &str {
        match self
            .rows
            .iter()
            .find(|r| r.op == op && r.location == "response" && r.field == ".")
        {
            Some(r) => &r.ty,
            None => "json",
        }
    }
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "fractional number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `s` parses as a `java.net.URI`, closely enough: no whitespace,
/// control characters or the characters the URI grammar excludes, `%` only
/// as an escape, and a well-formed scheme if there is one.
fn uri_ok(s: &str) -> bool {
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"<>\\^`{|}".contains(c))
    {
        return false;
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return false;
        }
    }
    let head = s.split(['/', '?', '#']).next().unwrap_or("");
    match head.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => true,
    }
}

/// The problems of `v` as a value of table type `ty`, each with the sub-path
/// it concerns ("" for `v` itself).
fn type_problems(ty: &str, v: &Value) -> Vec<(String, String)> {
    let bad = |what: &str| {
        vec![(
            String::new(),
            format!("expected {what}, got {} {}", kind(v), short(v)),
        )]
    };
    if v.is_null() {
        return vec![(
            String::new(),
            format!("null (expected {ty}; the contract omits unset fields)"),
        )];
    }
    match ty {
        "string" if v.is_string() => vec![],
        "string" => bad("a JSON string"),
        "string(URI)" => match v.as_str() {
            Some(s) if uri_ok(s) => vec![],
            Some(_) => bad("a string that parses as a URI"),
            None => bad("a JSON string (URI)"),
        },
        "int32" => match v.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => vec![],
            Some(_) => bad("an integer within int32"),
            None => bad("a JSON integer (int32)"),
        },
        "int64" if v.is_i64() => vec![],
        "int64" => bad("a JSON integer (int64)"),
        "bool" if v.is_boolean() => vec![],
        "bool" => bad("true or false"),
        "object" if v.is_object() => vec![],
        "object" => bad("a JSON object"),
        "array" if v.is_array() => vec![],
        "array" => bad("a JSON array"),
        "any" | "text" => vec![],
        t if t.starts_with("array<") && t.ends_with('>') => {
            let Some(items) = v.as_array() else {
                return bad(&format!("a JSON array ({t})"));
            };
            let inner = &t["array<".len()..t.len() - 1];
            items
                .iter()
                .enumerate()
                .flat_map(|(i, e)| {
                    type_problems(inner, e)
                        .into_iter()
                        .map(move |(p, m)| (format!("[{i}]{p}"), m))
                })
                .collect()
        }
        t => panic!("unknown type {t:?} in the table"),
    }
}

/// Walks `segs` (a dotted path split at `.`, `[]` marking arrays) from `v`;
/// calls `leaf` with the concrete path and value of every match. Where the
/// walk cannot go on (a parent missing, null, or of the wrong type), it stops
/// silently: the parent's own row reports that.
fn walk(v: &Value, segs: &[&str], at: &str, leaf: &mut dyn FnMut(&str, &Value)) {
    let Some((seg, rest)) = segs.split_first() else {
        return;
    };
    let (key, is_array) = match seg.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (*seg, false),
    };
    let here = if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    };
    let Some(x) = v.as_object().and_then(|o| o.get(key)) else {
        return;
    };
    if !is_array {
        if rest.is_empty() {
            leaf(&here, x);
        } else {
            walk(x, rest, &here, leaf);
        }
        return;
    }
    for (i, e) in x.as_array().into_iter().flatten().enumerate() {
        let p = format!("{here}[{i}]");
        if rest.is_empty() {
            leaf(&p, e);
        } else if !e.is_object() {
            // An element of a model array must itself be a model.
            leaf(&p, &json!({"__not_an_object__": e}));
        } else {
            walk(e, rest, &p, leaf);
        }
    }
}

/// Every violation of the table's reply types in `body`, a reply of `op`.
fn check_reply(op: &str, body: &Value) -> Vec<String> {
    let t = table();
    let rows: Vec<&Row> = t.rows(op, "response").collect();
    assert!(!rows.is_empty(), "{op} has no reply rows in the table");
    if rows.iter().any(|r| r.field == ".") {
        return vec![]; // raw text or free JSON: any body
    }
    if !body.is_object() {
        return vec![format!("the reply is not a JSON object: {}", short(body))];
    }
    let mut out = BTreeSet::new();
    for r in rows {
        let segs: Vec<&str> = r.field.split('.').collect();
        walk(body, &segs, "", &mut |path, v| {
            if let Some(inner) = v.get("__not_an_object__") {
                out.insert(format!(
                    "{path}: expected an object (array element), got {}",
                    short(inner)
                ));
                return;
            }
            for (sub, problem) in type_problems(&r.ty, v) {
                out.insert(format!(
                    "{path}{sub}: {problem}  [table: {} {}]",
                    r.field, r.ty
                ));
            }
        });
    }
    out.into_iter().collect()
}

/// `path` (dotted, `[]` for arrays) is present, in every element of every
/// array it goes through.
fn check_present(body: &Value, path: &str) -> Vec<String> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    // Walk to each parent, then look for the last key.
    let (last, parents) = segs.split_last().unwrap();
    let last_key = last.trim_end_matches("[]");
    let mut visit = |at: &str, parent: &Value| {
        if parent.get(last_key).is_none() {
            let p = if at.is_empty() {
                last_key.to_owned()
            } else {
                format!("{at}.{last_key}")
            };
            out.push(format!("{p}: missing (a client relies on it)"));
        }
    };
    if parents.is_empty() {
        visit("", body);
    } else {
        // The walk hands over each parent: the object, or each element of
        // the array, that should hold the last key.
        walk(body, parents, "", &mut |at, v| {
            if v.is_object() && v.get("__not_an_object__").is_none() {
                visit(at, v);
            }
        });
    }
    out
}

/// Lints a request body this test is about to send: only the SDK's JSON
/// names, with the SDK's types. A failure here is a bug in the test.
fn lint_request(op: &str, body: &Value) -> Vec<String> {
    let t = table();
    let rows: BTreeMap<&str, &Row> = t
        .rows(op, "request")
        .map(|r| (r.field.as_str(), r))
        .collect();
    let mut out = Vec::new();
    fn go(v: &Value, norm: &str, at: &str, rows: &BTreeMap<&str, &Row>, out: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        for (k, x) in obj {
            let n = if norm.is_empty() {
                k.clone()
            } else {
                format!("{norm}.{k}")
            };
            let p = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            let Some(row) = rows.get(n.as_str()) else {
                out.push(format!("{p}: not a field of the SDK's request model"));
                continue;
            };
            for (sub, m) in type_problems(&row.ty, x) {
                out.push(format!("{p}{sub}: {m}"));
            }
            let prefix = format!("{n}.");
            let prefix_arr = format!("{n}[].");
            let has_children = rows
                .keys()
                .any(|f| f.starts_with(&prefix) || f.starts_with(&prefix_arr));
            if !has_children {
                continue; // a scalar, or free JSON (`object` of the SDK)
            }
            match x {
                Value::Object(_) => go(x, &n, &p, rows, out),
                Value::Array(items) => {
                    for (i, e) in items.iter().enumerate() {
                        go(e, &format!("{n}[]"), &format!("{p}[{i}]"), rows, out);
                    }
                }
                _ => {}
            }
        }
    }
    go(body, "", "", &rows, &mut out);
    for r in rows.values() {
        if r.required == "Y" && !r.field.contains('.') && body.get(&r.field).is_none() {
            out.push(format!("{}: required by the docs, not sent", r.field));
        }
    }
    out
}

/// Lints query parameters: known names, SDK types, repetition only for the
/// list-typed ones.
fn lint_query(op: &str, query: &[(&str, String)]) -> Vec<String> {
    let t = table();
    let rows: BTreeMap<&str, &Row> = t.rows(op, "query").map(|r| (r.field.as_str(), r)).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, v) in query {
        let Some(row) = rows.get(k) else {
            out.push(format!("query {k}: not a parameter of {op}"));
            continue;
        };
        let scalar = row
            .ty
            .strip_prefix("array<")
            .map_or(row.ty.as_str(), |s| s.trim_end_matches('>'));
        if !row.ty.starts_with("array") && !seen.insert(*k) {
            out.push(format!("query {k}: repeated, but it is not list-typed"));
        }
        let ok = match scalar {
            "bool" => v == "true" || v == "false",
            "int32" => v.parse::<i32>().is_ok(),
            _ => true,
        };
        if !ok {
            out.push(format!("query {k}={v}: not a {scalar}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Presence: what a client relies on
// ---------------------------------------------------------------------------

/// The reply fields a client needs, per operation. The SDK declares every
/// reply field optional, but a client cannot do without these.
fn required(op: &str) -> &'static [&'static str] {
    match op {
        // The batch id is what every later batch call takes.
        "CreateBatchTask" => &["id", "total_count", "succeed_count", "failed_count"],
        // The counts say whether the operation did what was asked.
        "UpdateBatchTask" | "BatchStartStopTask" | "DeleteBatchTask" => {
            &["total_count", "succeed_count", "failed_count"]
        }
        // `count` pages; each row needs its id (for the next call), its name
        // (what a user picks), its time (sort) and its state counters.
        "ListBatchTasks" => &[
            "count",
            "batch_task_list",
            "batch_task_list[].id",
            "batch_task_list[].batch_task_name",
            "batch_task_list[].created_at",
            "batch_task_list[].num_task",
            "batch_task_list[].batch_task_status_info",
        ],
        // The ids of the created tasks: the only handle on them.
        "CreateTask" => &["tasks", "tasks[].id"],
        // Each task's id (Show/Update/Start/Stop/Delete), state and time.
        "ListTasks" => &[
            "count",
            "tasks",
            "tasks[].id",
            "tasks[].state",
            "tasks[].created_at",
        ],
        // A client polls state; `type` tells cloud from edge.
        "ShowTaskInfo" => &["id", "state", "created_at", "type"],
        // The id: every later call on the source/group takes it.
        "CreateVideoSource" => &["video_source_id"],
        "CreateVideoGroup" => &["video_group_id"],
        // Lists: the total for paging, the items' ids and names.
        "ListVideoSources" => &[
            "total_number",
            "video_source_list",
            "video_source_list[].video_source_id",
            "video_source_list[].video_source_name",
            "video_source_list[].status",
        ],
        "ListVideoGroups" => &[
            "total_number",
            "video_group_list",
            "video_group_list[].video_group_id",
            "video_group_list[].video_group_name",
        ],
        // What a client edits: the name, the configuration it analyses, the
        // state.
        "ShowVideoSourceDetail" | "UpdateVideoSource" => &[
            "video_source_name",
            "access_type",
            "type",
            "type_config",
            "status",
        ],
        "ShowVideoGroupDetail" => &["video_group_id", "video_group_name", "access_type"],
        // service_name is CreateTask's path, function_version its
        // service_version, alg_id DeployAlgorithm's path, deploy_type and
        // alg_status say where and whether it can run.
        "ListUserServices" => &[
            "count",
            "service_list",
            "service_list[].service_id",
            "service_list[].service_name",
            "service_list[].alg_id",
            "service_list[].function_version",
            "service_list[].deploy_type",
            "service_list[].alg_status",
        ],
        "ShowServiceDetail" => &[
            "service_id",
            "service_name",
            "alg_id",
            "function_version",
            "deploy_type",
            "alg_status",
        ],
        // The pool id: DeployAlgorithm and the pool calls take it.
        "CreateEdgePool" => &["id"],
        "ListEdgePools" => &[
            "count",
            "edge_pools",
            "edge_pools[].id",
            "edge_pools[].name",
            "edge_pools[].state",
        ],
        // Which nodes serve the pool, and their state.
        "ShowEdgePoolInfo" => &[
            "id",
            "name",
            "state",
            "nodes",
            "nodes[].id",
            "nodes[].name",
            "nodes[].state",
        ],
        // DeployAlgorithm, StopDeployAlgorithm: the status is what matters.
        // UpdateTask, StartStopTask, DeleteTask, DeleteVideoSource,
        // UpdateVideoGroup, DeleteVideoGroup, DeleteEdgePool: free bodies.
        _ => &[],
    }
}

// ---------------------------------------------------------------------------
// Requests as the SDK sends them
// ---------------------------------------------------------------------------

/// What OkHttp leaves alone in a path segment or query value.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// Jackson's output: compact, non-ASCII escaped as `\uXXXX`.
fn sdk_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    out
}

struct Raw {
    status: u16,
    head: String,
    raw: String,
}

impl Raw {
    fn content_type(&self) -> String {
        self.head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    }
}

fn send(addr: &str, method: &str, target: &str, token: &str, body: Option<&str>) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The SDK's headers, with X-Auth-Token added by hand as an SDK
    // user must today. GET and DELETE carry Content-Type too; a PUT or POST
    // without a body model sends an empty body.
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: huaweicloud-usdk-java/3.0\r\nX-Sdk-Date: 20240704T000000Z\r\nX-Project-Id: default\r\nContent-Type: application/json\r\nX-Auth-Token: {token}\r\n"
    );
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        let _ = write!(req, "Content-Length: {}\r\n", body.len());
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let raw = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Raw {
        status,
        head: head.to_owned(),
        raw,
    }
}

/// One call and what became of it.
struct Exchange {
    op: String,
    note: String,
    request: String,
    outcome: String,
    violations: Vec<String>,
    /// Not sent: an earlier call did not give what it needs.
    skipped: bool,
}

/// A client session on a live `serve`: sends, checks, and records.
struct Client {
    backend: &'static str,
    addr: String,
    token: String,
    log: Vec<Exchange>,
    replies: BTreeMap<String, Value>,
}

impl Client {
    fn new(backend: &'static str, env: &Env) -> Client {
        assert!(!env.token.is_empty(), "taskcenter token issue gave a token");
        Client {
            backend,
            addr: env.server.addr.clone(),
            token: env.token.clone(),
            log: Vec::new(),
            replies: BTreeMap::new(),
        }
    }

    /// Calls `op` with its path parameters, query and body; checks status,
    /// content type, the reply's types and the fields a client needs.
    /// Returns the reply (JSON, or the raw text as a string) on success.
    fn call(
        &mut self,
        op: &str,
        note: &str,
        params: &[(&str, &str)],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Option<Value> {
        let t = table();
        let (method, template) = t.route(op);
        let mut path = template.to_owned();
        for (k, v) in params {
            let ph = format!("{{{k}}}");
            assert!(path.contains(&ph), "{op}: no path parameter {k}");
            path = path.replace(&ph, &enc(v));
        }
        assert!(
            !path.contains('{'),
            "{op}: unfilled path parameter in {path}"
        );
        let mut lint = lint_query(op, query);
        if let Some(b) = &body {
            lint.extend(lint_request(op, b));
        }
        assert!(
            lint.is_empty(),
            "the test's own {op} request is not SDK-shaped: {lint:#?}"
        );
        let mut target = format!("/v2/default{path}");
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", enc(v)))
                .collect();
            let _ = write!(target, "?{}", q.join("&"));
        }
        let text = body.as_ref().map(sdk_json);
        let reply = send(&self.addr, method, &target, &self.token, text.as_deref());
        let request = match &body {
            Some(b) => format!("{method} {target}\n        {b}"),
            None => format!("{method} {target}"),
        };
        let mut violations = Vec::new();
        let mut parsed = None;
        let ct = reply.content_type();
        let reply_kind = t.reply_kind(op);
        if reply.status == 0 || reply.status >= 400 {
            violations.push(format!(
                "status {}: the SDK raises an exception (any status < 400 is a success)",
                reply.status
            ));
        } else {
            match reply_kind {
                "text" => parsed = Some(Value::String(reply.raw.clone())),
                "any" => {
                    if reply.raw.trim().is_empty() {
                        parsed = Some(Value::Null);
                    } else {
                        match serde_json::from_str::<Value>(&reply.raw) {
                            Ok(v) => parsed = Some(v),
                            Err(e) => violations.push(format!(
                                "the SDK parses this body as free JSON (or empty): {e}"
                            )),
                        }
                    }
                }
                _ => {
                    if !ct.starts_with("application/json") {
                        violations.push(format!(
                            "Content-Type {ct:?}: the SDK parses only application/json, so the reply would stay empty"
                        ));
                    }
                    match serde_json::from_str::<Value>(&reply.raw) {
                        Ok(v) => {
                            violations.extend(check_reply(op, &v));
                            for f in required(op) {
                                violations.extend(check_present(&v, f));
                            }
                            parsed = Some(v);
                        }
                        Err(e) => violations.push(format!("the reply is not JSON: {e}")),
                    }
                }
            }
        }
        if let Some(v) = &parsed {
            self.replies.insert(format!("{op}{note}"), v.clone());
        }
        let mut body_text = reply.raw.clone();
        if body_text.chars().count() > 1500 {
            body_text = format!("{}…", body_text.chars().take(1500).collect::<String>());
        }
        self.log.push(Exchange {
            op: op.to_owned(),
            note: note.to_owned(),
            request,
            outcome: format!("{} ({ct}) {body_text}", reply.status),
            violations,
            skipped: false,
        });
        parsed
    }

    /// Polls ListBatchTasks (unrecorded) for up to 15 s until `batch` is no
    /// longer listed.
    fn wait_until_unlisted(&self, batch: &str) {
        for _ in 0..75 {
            let r = send(
                &self.addr,
                "GET",
                "/v2/default/batch-tasks?is_paged=true&page_size=200&page_num=1",
                &self.token,
                None,
            );
            let listed = serde_json::from_str::<Value>(&r.raw)
                .ok()
                .and_then(|v| v.get("batch_task_list").cloned())
                .and_then(|l| l.as_array().cloned())
                .is_some_and(|l| l.iter().any(|b| b.get("id") == Some(&json!(batch))));
            if r.status >= 400 || !listed {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Records that `op` could not be called, and why.
    fn skip(&mut self, op: &str, note: &str, why: &str) {
        self.log.push(Exchange {
            op: op.to_owned(),
            note: note.to_owned(),
            request: "(not sent)".to_owned(),
            outcome: String::new(),
            violations: vec![format!("not run: {why}")],
            skipped: true,
        });
    }

    /// The last call may be refused as a whole (a 4xx): drop that
    /// violation.
    fn forgive_refusal(&mut self) {
        if let Some(last) = self.log.last_mut() {
            let before = last.violations.len();
            last.violations
                .retain(|v| !(v.starts_with("status 4") && v.contains("the SDK raises")));
            if last.violations.len() < before {
                last.note.push_str(" (refused as a whole: allowed)");
            }
        }
    }

    /// Adds a violation to the last exchange unless `ok`.
    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            if let Some(last) = self.log.last_mut() {
                last.violations.push(what.into());
            }
        }
    }

    /// A setup step outside the wire (the operator CLI).
    fn setup(&mut self, env: &Env, what: &str, args: &[&str]) -> Option<String> {
        let out = cli(&env.dir.0, &env.db, args, None);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let ok = out.status.success();
        self.log.push(Exchange {
            op: format!("(setup) {what}"),
            note: String::new(),
            request: format!("taskcenter {}", args.join(" ")),
            outcome: format!("{stdout} {}", String::from_utf8_lossy(&out.stderr).trim()),
            violations: if ok {
                vec![]
            } else {
                vec!["the CLI refused it".to_owned()]
            },
            skipped: false,
        });
        ok.then_some(stdout)
    }

    /// Prints the whole session and fails if anything was violated.
    fn finish(self, title: &str, expect_all_ops: bool) {
        let mut report = String::new();
        let mut failed = Vec::new();
        let mut skipped = Vec::new();
        let _ = writeln!(report, "==== {title} on {} ====", self.backend);
        for e in &self.log {
            let mark = match (e.skipped, e.violations.is_empty()) {
                (true, _) => "SKIP",
                (false, true) => "ok  ",
                (false, false) => "FAIL",
            };
            let _ = writeln!(report, "[{mark}] {}{}", e.op, e.note);
            let _ = writeln!(report, "    request: {}", e.request);
            if !e.outcome.is_empty() {
                let _ = writeln!(report, "    reply:   {}", e.outcome);
            }
            for v in &e.violations {
                let _ = writeln!(report, "    - {v}");
            }
            if e.skipped {
                skipped.push(format!("{}{}", e.op, e.note));
            } else if !e.violations.is_empty() {
                failed.push(format!("{}{}", e.op, e.note));
            }
        }
        if expect_all_ops {
            // The flow must at least try every operation of the table.
            let tried: BTreeSet<&str> = self.log.iter().map(|e| e.op.as_str()).collect();
            for op in table().ops() {
                if !tried.contains(op) {
                    let _ = writeln!(report, "[FAIL] {op}: missing from the flow");
                    failed.push(format!("{op} (missing from the flow)"));
                }
            }
        }
        let n: usize = self
            .log
            .iter()
            .filter(|e| !e.skipped)
            .map(|e| e.violations.len())
            .sum();
        let _ = writeln!(
            report,
            "==== {n} violation(s) in {} exchange(s); {} not sent; {} exchange(s) in all ====",
            failed.len(),
            skipped.len(),
            self.log.len()
        );
        eprintln!("{report}");
        assert!(
            failed.is_empty() && skipped.is_empty(),
            "{title} on {}: the report above has the requests and replies.\n  violated by: {}\n  not sent (an earlier call failed): {}",
            self.backend,
            failed.join(", "),
            skipped.join(", ")
        );
    }
}

fn id_at(v: &Option<Value>, key: &str) -> Option<String> {
    v.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

fn q(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn items<'a>(v: &'a Option<Value>, key: &str) -> Vec<&'a Value> {
    v.as_ref()
        .and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn contains(v: &Option<Value>, list: &str, key: &str, id: &str) -> bool {
    items(v, list)
        .iter()
        .any(|x| x.get(key).and_then(Value::as_str) == Some(id))
}

// ---------------------------------------------------------------------------
// The catalogue a client sets up first
// ---------------------------------------------------------------------------

/// The cloud service CreateTask runs on: a CJK name, percent-encoded in the
/// path.
const CJK_SERVICE: &str = "烟火演示算法";
/// A second cloud service with a plain name, for the batch flow.
const BATCH_SERVICE: &str = "helmet";
const EDGE_SERVICE: &str = "umbrella";
const WORKER: &str = "edge-node-01";

#[derive(Debug, Default)]
struct Ids {
    group: Option<String>,
    sources: Vec<String>,
    /// By service_name, as ListUserServices has them.
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Clone)]
struct Service {
    id: Option<String>,
    alg_id: Option<String>,
}

fn register(c: &mut Client, env: &Env) {
    for (name, alg, company, deploy) in [
        (CJK_SERVICE, "烟火检测", "华为云", "cloud"),
        (BATCH_SERVICE, "安全帽检测", "Acme", "cloud"),
        (EDGE_SERVICE, "Umbrella", "Acme", "edge"),
    ] {
        c.setup(
            env,
            &format!("service add {name}"),
            &[
                "service",
                "add",
                "--project",
                "default",
                "--name",
                name,
                "--version",
                "1.0.0",
                "--alg-name",
                alg,
                "--company",
                company,
                "--deploy-type",
                deploy,
            ],
        );
    }
    c.setup(env, "workers add", &["workers", "add", WORKER]);
}

/// ListUserServices, ShowServiceDetail, CreateVideoGroup,
/// CreateVideoSource ×2: what every later call needs.
fn catalogue(c: &mut Client) -> Ids {
    let mut ids = Ids::default();
    // Every alg_status value, as repeated keys, so the filter keeps all.
    let mut query = q(&[
        ("is_paged", "true"),
        ("page_size", "10"),
        ("page_num", "1"),
        ("sort_name", "created_at"),
        ("order_by", "desc"),
    ]);
    for s in [
        "service_running",
        "service_deploying",
        "service_failed",
        "service_stopping",
        "service_stopped",
        "service_upgrading",
        "service_finished",
        "service_concerning",
        "not_deployed",
    ] {
        query.push(("alg_status", s.to_owned()));
    }
    let list = c.call("ListUserServices", "", &[], &query, None);
    for name in [CJK_SERVICE, BATCH_SERVICE, EDGE_SERVICE] {
        let row = items(&list, "service_list")
            .into_iter()
            .find(|s| s.get("service_name").and_then(Value::as_str) == Some(name));
        c.expect(
            row.is_some(),
            format!("service_list has no service_name {name:?} (registered with the CLI)"),
        );
        let get = |k: &str| {
            row.and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        ids.services.insert(
            name.to_owned(),
            Service {
                id: get("service_id"),
                alg_id: get("alg_id"),
            },
        );
    }
    match ids.services[CJK_SERVICE].id.clone() {
        Some(sid) => {
            c.call("ShowServiceDetail", "", &[("service_id", &sid)], &[], None);
        }
        None => c.skip(
            "ShowServiceDetail",
            "",
            "no service_id from ListUserServices",
        ),
    }

    let group = c.call(
        "CreateVideoGroup",
        "",
        &[],
        &[],
        Some(json!({"video_group_name": "北门演示", "access_type": "cloud", "description": "北门的摄像机"})),
    );
    ids.group = id_at(&group, "video_group_id");
    let Some(gid) = ids.group.clone() else {
        c.skip(
            "CreateVideoSource",
            "",
            "no video_group_id from CreateVideoGroup",
        );
        return ids;
    };
    // One source with every field, one with only the required ones.
    for body in [
        json!({
            "video_source_name": "北门 摄像机(1)",
            "access_type": "cloud",
            "type": "url",
            "type_config": "<type>URL</type><config><URL_ADDRESS>rtsp://cam.example/live</URL_ADDRESS></config>",
            "latitude": "31.23000",
            "longitude": "121.47000",
            "video_group_ids": [gid],
            "tag": ["演示", "gate-1"],
        }),
        json!({
            "video_source_name": "gate-2",
            "access_type": "cloud",
            "type": "url",
            "type_config": "<type>URL</type><config><URL_ADDRESS>rtsp://cam.example/gate2</URL_ADDRESS></config>",
            "video_group_ids": [gid],
        }),
    ] {
        let r = c.call("CreateVideoSource", "", &[], &[], Some(body));
        if let Some(id) = id_at(&r, "video_source_id") {
            ids.sources.push(id);
        }
    }
    ids
}

fn batch_body(name: &str, service: &str, gid: &str, sources: &[String]) -> Value {
    let list: Vec<Value> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                json!({"video_source_id": s, "target_roi": "{\"polygons\":[[[0,0],[1920,0],[1920,1080],[0,1080]]]}"})
            } else {
                json!({"video_source_id": s})
            }
        })
        .collect();
    json!({
        "name": name,
        "description": "SDK-shaped batch",
        "schedule": {"type": "weekly", "timezone": "+08:00", "days_of_week": [1, 2, 3, 4, 5],
                     "periods": [[{"begin_at": "08:00:00", "end_at": "18:00:00"}]]},
        "batch_input": {"video_source_group": [{"video_source_group_id": gid, "video_source_list": list}]},
        "output": {"event_center": true},
        "config": {"common": {"threshold": 0.6, "alarm_interval": 30}},
        "service_name": service,
        "service_version": "1.0.0",
    })
}

fn task_body(sid: &str, with_version: bool) -> Value {
    let mut b = json!({
        "name": "北门烟火检测",
        "description": "SDK-shaped task",
        "input": {"type": "video_source", "data": [{"video_source_id": sid}]},
        "output": {"event_center": true,
                   "webhook": {"url": "http://hooks.example/vias?from=sdk", "headers": {"X-Hook-Token": "abc"}}},
        "config": {"common": {"threshold": 0.5}},
        // Every day, all day: the schedule never holds the task.
        "schedule": {"type": "weekly", "timezone": "+08:00", "days_of_week": [1, 2, 3, 4, 5, 6, 7],
                     "periods": [[{"begin_at": "00:00:00", "end_at": "24:00:00"}]]},
    });
    if with_version {
        b["service_version"] = json!("1.0.0");
    }
    b
}

// ---------------------------------------------------------------------------
// The flow: all 29 operations
// ---------------------------------------------------------------------------

fn all_operations(backend: &'static str, db: &str) {
    let env = Env::start(db, &[]);
    let mut c = Client::new(backend, &env);
    register(&mut c, &env);
    let ids = catalogue(&mut c);

    // --- Video center ---
    // The lists need no id: they run whatever happened before.
    let mut query = q(&[
        ("is_paged", "true"),
        ("page_size", "10"),
        ("page_num", "1"),
        ("sort_name", "create_at"),
        ("order_by", "desc"),
        ("name", "北门"),
        ("access_type", "cloud"),
        ("access_type", "edge"),
        ("type", "url"),
        ("type", "restful"),
    ]);
    query.push(("has_task", "false".to_owned()));
    let r = c.call("ListVideoGroups", "", &[], &query, None);
    if let Some(gid) = &ids.group {
        c.expect(
            contains(&r, "video_group_list", "video_group_id", gid),
            format!("video_group_list lacks the group {gid} just created (filters: name 北门, its access type, its sources' type)"),
        );
    }
    if let Some(gid) = ids.group.clone() {
        c.call(
            "ShowVideoGroupDetail",
            "",
            &[("video_group_id", &gid)],
            &[],
            None,
        );
        if ids.sources.is_empty() {
            c.skip(
                "UpdateVideoGroup",
                "",
                "no video_source_id from CreateVideoSource",
            );
        } else {
            c.call(
                "UpdateVideoGroup",
                "",
                &[("video_group_id", &gid)],
                &[],
                Some(json!({"video_group_name": "北门-演示_2", "description": "改名", "video_source_ids": ids.sources})),
            );
        }
    } else {
        for op in ["ShowVideoGroupDetail", "UpdateVideoGroup"] {
            c.skip(op, "", "no video_group_id from CreateVideoGroup");
        }
    }
    let source = ids.sources.first().cloned();
    let mut query = q(&[
        ("is_paged", "true"),
        ("page_size", "10"),
        ("page_num", "1"),
        ("sort_name", "create_at"),
        ("order_by", "desc"),
        ("status", "1"),
        ("status", "2"),
        ("status", "9"),
        ("type", "url"),
        ("type", "restful"),
        ("access_type", "cloud"),
        ("access_type", "edge"),
    ]);
    if let Some(gid) = &ids.group {
        query.push(("video_group_id", gid.clone()));
        query.push(("video_group_id", "no-such-group".to_owned()));
    }
    let r = c.call("ListVideoSources", "", &[], &query, None);
    if let Some(sid) = &source {
        c.expect(
            contains(&r, "video_source_list", "video_source_id", sid),
            format!("video_source_list lacks the source {sid} just created (filters: all statuses, its type, its access type, its group or another)"),
        );
    }
    if let Some(sid) = source.clone() {
        let r = c.call(
            "ShowVideoSourceDetail",
            "",
            &[("video_source_id", &sid)],
            &[],
            None,
        );
        c.expect(
            r.as_ref()
                .and_then(|v| v.get("type_config"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains("rtsp://cam.example/live")),
            "type_config does not carry the URL_ADDRESS sent on create",
        );
        let r = c.call(
            "UpdateVideoSource",
            "",
            &[("video_source_id", &sid)],
            &[],
            Some(json!({
                "video_source_name": "北门 摄像机(改)",
                "latitude": "31.23100",
                "longitude": "121.47100",
                "type_config": "<type>URL</type><config><URL_ADDRESS>rtsp://cam.example/live2</URL_ADDRESS></config>",
                "tag": ["演示"],
            })),
        );
        c.expect(
            r.as_ref()
                .is_none_or(|v| v.get("video_source_name") == Some(&json!("北门 摄像机(改)"))),
            "the reply (VideoSourceDetail) does not carry the new video_source_name",
        );
    } else {
        for op in ["ShowVideoSourceDetail", "UpdateVideoSource"] {
            c.skip(op, "", "no video_source_id from CreateVideoSource");
        }
    }

    // --- Task center: batches ---
    let mut batch = None;
    let mut cjk_batch = None;
    if let (Some(gid), false) = (ids.group.clone(), ids.sources.is_empty()) {
        // A valid VIAS service_name in CJK.
        let r = c.call(
            "CreateBatchTask",
            " (service_name 烟火演示算法)",
            &[],
            &[],
            Some(batch_body("烟火巡检", CJK_SERVICE, &gid, &ids.sources[..1])),
        );
        cjk_batch = id_at(&r, "id");
        let r = c.call(
            "CreateBatchTask",
            "",
            &[],
            &[],
            Some(batch_body("夜间巡检-1", BATCH_SERVICE, &gid, &ids.sources)),
        );
        c.expect(
            r.as_ref()
                .and_then(|v| v.get("succeed_count"))
                .and_then(Value::as_i64)
                == Some(ids.sources.len() as i64),
            format!(
                "succeed_count is not {} (one task per source)",
                ids.sources.len()
            ),
        );
        batch = id_at(&r, "id");
    } else {
        c.skip("CreateBatchTask", "", "no group or source");
    }
    let query = q(&[
        ("is_paged", "true"),
        ("page_size", "10"),
        ("page_num", "1"),
        ("order_by", "desc"),
        ("sort_name", "created_at"),
        ("type_like", "batch_task_name"),
        ("name_like", "夜间"),
    ]);
    let r = c.call("ListBatchTasks", "", &[], &query, None);
    if let Some(bid) = &batch {
        c.expect(
            contains(&r, "batch_task_list", "id", bid),
            format!("batch_task_list lacks the batch {bid} (name_like 夜间)"),
        );
    }
    if let Some(bid) = batch.clone() {
        c.call(
            "UpdateBatchTask",
            "",
            &[("id", &bid)],
            &[],
            Some(json!({"name": "夜间巡检-2", "description": "改过", "config": {"common": {"threshold": 0.7}}})),
        );
        c.call(
            "BatchStartStopTask",
            " stop",
            &[("id", &bid), ("command", "stop")],
            &[],
            None,
        );
        c.call(
            "BatchStartStopTask",
            " start",
            &[("id", &bid), ("command", "start")],
            &[],
            None,
        );
    } else {
        for op in ["UpdateBatchTask", "BatchStartStopTask"] {
            c.skip(op, "", "no batch id from CreateBatchTask");
        }
    }

    // --- Task center: single tasks ---
    let mut task = None;
    if let Some(sid) = source.clone() {
        let r = c.call(
            "CreateTask",
            "",
            &[("service_name", CJK_SERVICE)],
            &[],
            Some(task_body(&sid, true)),
        );
        c.expect(
            items(&r, "tasks").len() == 1,
            "one task per input.data entry",
        );
        task = items(&r, "tasks")
            .first()
            .and_then(|t| t.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    } else {
        c.skip(
            "CreateTask",
            "",
            "no video_source_id from CreateVideoSource",
        );
    }
    let mut batch_tasks = Vec::new();
    if let Some(bid) = batch.clone() {
        // page counts from 1: page 1 is the first page.
        let query = q(&[
            ("page", "1"),
            ("page_size", "10"),
            ("sort_dir", "desc"),
            ("batch_id", &bid),
        ]);
        let r = c.call("ListTasks", " (batch_id)", &[], &query, None);
        c.expect(
            items(&r, "tasks").len() == ids.sources.len(),
            format!(
                "page 1 of the batch's tasks holds {} tasks, not {}",
                items(&r, "tasks").len(),
                ids.sources.len()
            ),
        );
        batch_tasks = items(&r, "tasks")
            .iter()
            .filter_map(|t| t.get("id")?.as_str().map(str::to_owned))
            .collect();
    }
    let mut query = q(&[
        ("page", "1"),
        ("page_size", "10"),
        ("sort_dir", "desc"),
        ("task_name", "北门烟火检测"),
        ("source_data_type", "async_task"),
        ("company", "华为云"),
    ]);
    if let Some(alg) = ids.services[CJK_SERVICE].alg_id.clone() {
        query.push(("alg_id", alg));
    }
    let r = c.call(
        "ListTasks",
        " (task_name, company, alg_id)",
        &[],
        &query,
        None,
    );
    if let Some(tid) = &task {
        c.expect(
            contains(&r, "tasks", "id", tid),
            format!("tasks lacks the task {tid} created by CreateTask (the filters match it)"),
        );
    }
    // The single task, or failing that a task of the batch.
    let (target, note) = match (task.clone(), batch_tasks.first()) {
        (Some(t), _) => (Some(t), ""),
        (None, Some(t)) => (Some(t.clone()), " (a task of the batch: CreateTask failed)"),
        (None, None) => (None, ""),
    };
    if let Some(tid) = target.clone() {
        let r = c.call("ShowTaskInfo", note, &[("task_id", &tid)], &[], None);
        if task.is_some() {
            c.expect(
                r.as_ref().and_then(|v| v.get("name")) == Some(&json!("北门烟火检测")),
                "name is not the one sent on CreateTask",
            );
            c.expect(
                r.as_ref().and_then(|v| v.get("schedule_status")) == Some(&json!("ACTIVATED")),
                "schedule_status of a live scheduled task is not ACTIVATED",
            );
        }
        c.call(
            "UpdateTask",
            note,
            &[("task_id", &tid)],
            &[],
            Some({
                let mut b = task_body(source.as_deref().unwrap_or_default(), false);
                b["name"] = json!("北门烟火检测-2");
                b
            }),
        );
        c.call(
            "StartStopTask",
            &format!(" stop{note}"),
            &[("task_id", &tid), ("command", "stop")],
            &[],
            None,
        );
        c.call(
            "StartStopTask",
            &format!(" start{note}"),
            &[("task_id", &tid), ("command", "start")],
            &[],
            None,
        );
    } else {
        for op in ["ShowTaskInfo", "UpdateTask", "StartStopTask"] {
            c.skip(op, "", "no task id from CreateTask or ListTasks");
        }
    }

    // --- O&M: edge pools and deployment ---
    let r = c.call(
        "CreateEdgePool",
        "",
        &[],
        &[],
        Some(json!({"name": "edge-pool-01", "description": "北门边缘", "nodes": [WORKER]})),
    );
    let pool = id_at(&r, "id");
    let query = q(&[
        ("is_paged", "true"),
        ("page_size", "10"),
        ("page_num", "1"),
        ("name_like", "edge-pool"),
        ("sort_name", "created_at"),
        ("order_by", "desc"),
    ]);
    let r = c.call("ListEdgePools", "", &[], &query, None);
    if let Some(pid) = &pool {
        c.expect(
            contains(&r, "edge_pools", "id", pid),
            format!("edge_pools lacks the pool {pid} (name_like edge-pool)"),
        );
    }
    if let Some(pid) = pool.clone() {
        let r = c.call("ShowEdgePoolInfo", "", &[("id", &pid)], &[], None);
        let nodes = items(&r, "nodes");
        c.expect(
            nodes.iter().any(|n| {
                n.get("name") == Some(&json!(WORKER)) || n.get("id") == Some(&json!(WORKER))
            }),
            format!("nodes does not list the worker {WORKER} the pool was created with"),
        );
    } else {
        c.skip("ShowEdgePoolInfo", "", "no pool id from CreateEdgePool");
    }
    match (ids.services[EDGE_SERVICE].alg_id.clone(), pool.clone()) {
        (Some(alg), Some(pid)) => {
            c.call(
                "DeployAlgorithm",
                "",
                &[("alg_id", &alg)],
                &[],
                Some(json!({"pool_id": pid, "stream_count": 4})),
            );
            let r = c.call("StopDeployAlgorithm", "", &[("alg_id", &alg)], &[], None);
            c.expect(
                r.as_ref()
                    .and_then(|v| v.get("alg_id"))
                    .is_none_or(|v| v == &json!(alg)),
                "alg_id is not the algorithm stopped",
            );
        }
        (alg, _) => {
            let why = if alg.is_none() {
                "no alg_id for the edge service from ListUserServices"
            } else {
                "no pool id from CreateEdgePool"
            };
            c.skip("DeployAlgorithm", "", why);
            c.skip("StopDeployAlgorithm", "", why);
        }
    }

    // --- The deletes, in a client's order ---
    match target {
        Some(tid) => {
            c.call("DeleteTask", note, &[("task_id", &tid)], &[], None);
        }
        None => c.skip("DeleteTask", "", "no task id"),
    }
    if let Some(bid) = cjk_batch {
        c.call(
            "DeleteBatchTask",
            " (service_name 烟火演示算法)",
            &[("id", &bid)],
            &[],
            None,
        );
    }
    match batch {
        Some(bid) => {
            if c.call("DeleteBatchTask", "", &[("id", &bid)], &[], None)
                .is_some()
            {
                // Deleting may finish asynchronously (tasks go `deleting`);
                // a client waits for the batch to leave the list before it
                // removes the sources and the group under it.
                c.wait_until_unlisted(&bid);
            }
        }
        None => c.skip("DeleteBatchTask", "", "no batch id"),
    }
    if ids.sources.is_empty() {
        c.skip("DeleteVideoSource", "", "no video_source_id");
    }
    for sid in &ids.sources {
        c.call(
            "DeleteVideoSource",
            "",
            &[("video_source_id", sid)],
            &[],
            None,
        );
    }
    match ids.group {
        Some(gid) => {
            c.call(
                "DeleteVideoGroup",
                "",
                &[("video_group_id", &gid)],
                &[],
                None,
            );
        }
        None => c.skip("DeleteVideoGroup", "", "no video_group_id"),
    }
    match pool {
        Some(pid) => {
            c.call("DeleteEdgePool", "", &[("id", &pid)], &[], None);
        }
        None => c.skip("DeleteEdgePool", "", "no pool id"),
    }
    c.finish("all 29 operations as the SDK sends them", true);
}

#[test]
fn all_29_operations_as_the_sdk_sends_them_on_sqlite() {
    all_operations("SQLite", "wire.db");
}

#[test]
fn all_29_operations_as_the_sdk_sends_them_on_postgres() {
    on_postgres(|url| all_operations("PostgreSQL", url));
}

// ---------------------------------------------------------------------------
// The type traps: fields whose JSON type is easy to get wrong
// ---------------------------------------------------------------------------

/// Asserts that `path` (concrete, `a.b[0].c`) of the reply recorded as `key`
/// is present and of JSON type `ty` (and, if given, one of `values`).
fn trap(c: &mut Client, key: &str, path: &str, ty: &str, values: &[&str], why: &str) {
    let Some(reply) = c.replies.get(key).cloned() else {
        c.skip(
            &format!("trap {key}"),
            &format!(" {path}"),
            "no reply to look at",
        );
        return;
    };
    let mut v = Some(&reply);
    for seg in path.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        v = v.and_then(|x| x.get(name));
        if let Some(i) = index {
            v = v.and_then(|x| x.get(i));
        }
    }
    let mut violations = Vec::new();
    match v {
        None => violations.push(format!("{path}: missing")),
        Some(x) => {
            for (sub, m) in type_problems(ty, x) {
                violations.push(format!("{path}{sub}: {m}"));
            }
            if !values.is_empty() && !x.as_str().is_some_and(|s| values.contains(&s)) {
                violations.push(format!(
                    "{path}: expected one of {values:?}, got {}",
                    short(x)
                ));
            }
        }
    }
    c.log.push(Exchange {
        op: format!("trap {key}"),
        note: format!(" {path} is {ty}"),
        request: why.to_owned(),
        outcome: v.map(short).unwrap_or_default(),
        violations,
        skipped: false,
    });
}

fn type_traps(backend: &'static str, db: &str) {
    let env = Env::start(db, &[]);
    let mut c = Client::new(backend, &env);
    register(&mut c, &env);
    let ids = catalogue(&mut c);
    trap(
        &mut c,
        "ListUserServices",
        "service_list[0].created_at",
        "int64",
        &[],
        "ServicesListInfoDto.created_at is int64",
    );
    trap(
        &mut c,
        "ListUserServices",
        "service_list[0].function_version",
        "string",
        &[],
        "versions are text, \"1.0.0\"",
    );
    let (Some(gid), false) = (ids.group.clone(), ids.sources.len() < 2) else {
        c.skip("type traps", "", "no group or sources");
        c.finish("type traps", false);
        return;
    };
    let sid = ids.sources[0].clone();
    c.call(
        "ShowVideoSourceDetail",
        "",
        &[("video_source_id", &sid)],
        &[],
        None,
    );
    trap(
        &mut c,
        "ShowVideoSourceDetail",
        "latitude",
        "string",
        &[],
        "latitude is numeric text, sent as \"31.23000\"",
    );
    trap(
        &mut c,
        "ShowVideoSourceDetail",
        "longitude",
        "string",
        &[],
        "longitude is numeric text",
    );
    trap(
        &mut c,
        "ShowVideoSourceDetail",
        "create_at",
        "int64",
        &[],
        "create_at of sources is int64",
    );
    trap(
        &mut c,
        "ShowVideoSourceDetail",
        "status.level",
        "string",
        &[],
        "VideoSourceStatusInfoDto.level is text, e.g. \"1\"",
    );
    c.call(
        "ShowVideoGroupDetail",
        "",
        &[("video_group_id", &gid)],
        &[],
        None,
    );
    trap(
        &mut c,
        "ShowVideoGroupDetail",
        "create_at",
        "int64",
        &[],
        "create_at of groups is int64",
    );

    // A batch of two; one task stopped by hand, so that stopping the batch
    // fails for it (or, if the server counts that as done, stopping again
    // fails for both).
    let r = c.call(
        "CreateBatchTask",
        "",
        &[],
        &[],
        Some(batch_body("类型陷阱", BATCH_SERVICE, &gid, &ids.sources)),
    );
    let Some(bid) = id_at(&r, "id") else {
        c.finish("type traps", false);
        return;
    };

    // A batch with one unknown source: refusing it as a whole is fine; if
    // the server creates it with a failure for that source, error_list says
    // so in plain strings.
    let r = c.call(
        "CreateBatchTask",
        " (one unknown source)",
        &[],
        &[],
        Some(batch_body(
            "部分失败",
            BATCH_SERVICE,
            &gid,
            &[ids.sources[0].clone(), "no-such-source".to_owned()],
        )),
    );
    c.forgive_refusal();
    if r.as_ref()
        .and_then(|v| v.get("failed_count"))
        .and_then(Value::as_i64)
        .is_some_and(|n| n > 0)
    {
        let key = "CreateBatchTask (one unknown source)";
        let n = c.replies[key]["error_list"].as_array().map_or(0, Vec::len);
        c.expect(n > 0, "failed_count > 0 but error_list is empty or missing");
        for i in 0..n {
            trap(
                &mut c,
                key,
                &format!("error_list[{i}]"),
                "string",
                &[],
                "BatchOpResult.error_list entries are plain strings",
            );
        }
    }
    if let Some(other) = id_at(&r, "id") {
        c.call(
            "DeleteBatchTask",
            " (one unknown source)",
            &[("id", &other)],
            &[],
            None,
        );
        c.wait_until_unlisted(&other);
    }

    let query = q(&[("page", "1"), ("page_size", "10"), ("batch_id", &bid)]);
    c.call("ListTasks", "", &[], &query, None);
    trap(
        &mut c,
        "ListTasks",
        "tasks[0].created_at",
        "string",
        &[],
        "TaskInfo.created_at is declared string: a number breaks the call",
    );
    trap(
        &mut c,
        "ListTasks",
        "tasks[0].type",
        "string",
        &["0", "1"],
        "TaskInfo.type is \"0\" (cloud) or \"1\" (edge), digits in a string",
    );
    let tasks: Vec<String> = c
        .replies
        .get("ListTasks")
        .and_then(|v| v.get("tasks"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("id")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    c.call(
        "ListBatchTasks",
        "",
        &[],
        &q(&[("is_paged", "true"), ("page_num", "1"), ("page_size", "10")]),
        None,
    );
    trap(
        &mut c,
        "ListBatchTasks",
        "batch_task_list[0].created_at",
        "int64",
        &[],
        "BatchTaskDto.created_at is int64 (epoch ms)",
    );
    trap(
        &mut c,
        "ListBatchTasks",
        "batch_task_list[0].type",
        "string",
        &[],
        "BatchTaskDto.type is text (\"0\")",
    );
    let Some(t0) = tasks.first().cloned() else {
        c.skip("ShowTaskInfo", "", "ListTasks gave no task of the batch");
        c.finish("type traps", false);
        return;
    };
    c.call("ShowTaskInfo", "", &[("task_id", &t0)], &[], None);
    trap(
        &mut c,
        "ShowTaskInfo",
        "created_at",
        "string",
        &[],
        "ShowTaskInfo.created_at is declared string",
    );
    trap(
        &mut c,
        "ShowTaskInfo",
        "updated_at",
        "string",
        &[],
        "ShowTaskInfo.updated_at is declared string",
    );
    trap(
        &mut c,
        "ShowTaskInfo",
        "type",
        "string",
        &["cloud", "edge"],
        "ShowTaskInfo.type is cloud/edge, not \"0\"/\"1\"",
    );

    c.call(
        "StartStopTask",
        " stop",
        &[("task_id", &t0), ("command", "stop")],
        &[],
        None,
    );
    let mut failed = 0;
    for round in [" stop", " stop again"] {
        let r = c.call(
            "BatchStartStopTask",
            round,
            &[("id", &bid), ("command", "stop")],
            &[],
            None,
        );
        failed = r
            .as_ref()
            .and_then(|v| v.get("failed_count"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if failed > 0 {
            let key = format!("BatchStartStopTask{round}");
            let n = c.replies[&key]["error_list"].as_array().map_or(0, Vec::len);
            c.expect(n > 0, "failed_count > 0 but error_list is empty or missing");
            for i in 0..n {
                trap(
                    &mut c,
                    &key,
                    &format!("error_list[{i}]"),
                    "string",
                    &[],
                    "BatchOpResult.error_list entries are plain strings; an object breaks the call",
                );
            }
            break;
        }
    }
    c.expect(
        failed > 0,
        "stopping a batch whose tasks are stopped failed for none of them: the error_list trap was not exercised",
    );
    c.finish("type traps", false);
}

#[test]
fn type_traps_on_sqlite() {
    type_traps("SQLite", "traps.db");
}

#[test]
fn type_traps_on_postgres() {
    on_postgres(|url| type_traps("PostgreSQL", url));
}

// ---------------------------------------------------------------------------
// The checker's own tests (no server)
// ---------------------------------------------------------------------------

#[test]
fn the_table_covers_the_29_operations_with_their_routes() {
    let t = table();
    let ops = t.ops();
    assert_eq!(ops.len(), 29, "{ops:?}");
    for op in &ops {
        let routes: BTreeSet<(&str, &str)> = t
            .rows
            .iter()
            .filter(|r| r.op == *op)
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(routes.len(), 1, "{op}: one method and path: {routes:?}");
        assert!(
            t.rows(op, "response").next().is_some(),
            "{op} has reply rows"
        );
        for r in t.rows(op, "response") {
            if r.field != "." {
                // Must not panic on any type in the table.
                let _ = type_problems(&r.ty, &json!(null));
            }
        }
    }
}

#[test]
fn the_checker_reports_wrong_types_nulls_and_walks_arrays() {
    let body = json!({
        "count": 1,
        "page": 1,
        "tasks": [
            {"id": "t1", "created_at": "2020-09-22T07:37:03Z", "type": "0", "state": "RUNNING"},
            {"id": 7, "created_at": 1685667905165_i64, "type": null, "extension": [1]},
            "not-an-object"
        ],
        "page_size": 3_000_000_000_i64,
    });
    let v = check_reply("ListTasks", &body);
    let joined = v.join("\n");
    assert!(
        joined.contains("tasks[1].id: expected a JSON string"),
        "{joined}"
    );
    assert!(
        joined.contains("tasks[1].created_at: expected a JSON string, got integer 1685667905165"),
        "{joined}"
    );
    assert!(joined.contains("tasks[1].type: null"), "{joined}");
    assert!(joined.contains("tasks[2]: expected an object"), "{joined}");
    assert!(
        joined.contains("page_size: expected an integer within int32"),
        "{joined}"
    );
    assert!(!joined.contains("tasks[0]"), "{joined}");
    assert!(
        !joined.contains("extension"),
        "extensions are allowed: {joined}"
    );
    assert_eq!(v.len(), 5, "{joined}");

    let v = check_reply(
        "BatchStartStopTask",
        &json!({"total_count": 2, "failed_count": 1, "succeed_count": 1, "id": "b",
                "error_list": ["ok", {"task_id": "t", "error_code": "x"}]}),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("error_list[1]: expected a JSON string"),
        "{v:?}"
    );

    let v = check_reply(
        "ShowTaskInfo",
        &json!({"output": {"webhook": {"url": "http://a b/"}}, "input": {"data": [{"url": "rtsp://ok/x", "stream_type": "1"}]},
                "schedule": {"days_of_week": [1, "2"], "periods": [[{"begin_at": "08:00:00"}]]}, "error": null}),
    );
    let joined = v.join("\n");
    assert!(
        joined.contains("output.webhook.url: expected a string that parses as a URI"),
        "{joined}"
    );
    assert!(
        joined.contains("input.data[0].stream_type: expected a JSON integer"),
        "{joined}"
    );
    assert!(
        joined.contains("schedule.days_of_week[1]: expected a JSON integer"),
        "{joined}"
    );
    assert!(joined.contains("error: null"), "{joined}");
    assert_eq!(v.len(), 4, "{joined}");

    assert!(check_reply("DeleteVideoSource", &json!("anything")).is_empty());
    assert!(check_reply("UpdateTask", &json!({"id": 1})).is_empty());
    assert_eq!(check_reply("CreateVideoGroup", &json!([])).len(), 1);
}

#[test]
fn presence_is_checked_in_every_item() {
    let body = json!({"count": 2, "tasks": [{"id": "a", "state": "RUNNING", "created_at": "x"}, {"id": "b"}]});
    let mut v = Vec::new();
    for f in required("ListTasks") {
        v.extend(check_present(&body, f));
    }
    assert_eq!(
        v,
        vec![
            "tasks[1].state: missing (a client relies on it)",
            "tasks[1].created_at: missing (a client relies on it)"
        ]
    );
    assert_eq!(
        check_present(&json!({}), "video_group_id"),
        vec!["video_group_id: missing (a client relies on it)"]
    );
}

#[test]
fn requests_are_linted_against_the_sdk_models() {
    assert!(lint_request("CreateTask", &task_body("s1", true)).is_empty());
    assert!(lint_request(
        "CreateBatchTask",
        &batch_body("n", "svc", "g", &["s".to_owned()])
    )
    .is_empty());
    let v = lint_request(
        "CreateVideoSource",
        &json!({"name": "x", "video_source_name": "x", "access_type": "cloud", "type": "url", "type_config": "", "latitude": 31.2}),
    );
    assert_eq!(v.len(), 2, "{v:?}");
    let v = lint_query(
        "ListVideoSources",
        &q(&[
            ("status", "1"),
            ("status", "2"),
            ("is_paged", "yes"),
            ("page_num", "1"),
            ("page_num", "2"),
        ]),
    );
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(sdk_json(&json!({"n": "北门"})), r#"{"n":"\u5317\u95e8"}"#);
    assert_eq!(
        enc(CJK_SERVICE),
        "%E7%83%9F%E7%81%AB%E6%BC%94%E7%A4%BA%E7%AE%97%E6%B3%95"
    );
    assert!(uri_ok("http://hooks.example/vias?from=sdk"));
    assert!(uri_ok("rtsp://cam.example/live%20x"));
    assert!(!uri_ok("http://a b"));
    assert!(!uri_ok("http://a/%zz"));
    assert!(!uri_ok("1http://a"));
}
