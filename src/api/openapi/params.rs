//! The query parameters of the list operations, as the handlers parse them
//! (`domain/list.rs`, `api/catalogue.rs` `listing()`, and each list handler).
//! Only the parameters the handler reads with `parse_with_lists` as lists
//! are repeatable arrays; every other known parameter given twice is a 400.

use super::schemas::{choice, int, str_max, str_pat, ALG_STATUSES, ID_PATTERN};
use super::{order_by, paged, query, query_list, sort_name, with_default};
use crate::domain::vias::{SOURCE_TYPES, SOURCE_TYPE_FILTERS};
use crate::domain::TaskState;
use serde_json::{json, Value};

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
    query(
        "task_state",
        json!({"type": "string", "minLength": 1, "x-case-insensitive": true}),
        &format!(
            "one task state, or several comma-separated (any case): {}",
            names.join(", ")
        ),
    )
}

fn access_types() -> Value {
    query_list("access_type", choice(&["cloud", "edge"]), "access types")
}

pub(super) fn list_batch_tasks_params() -> Vec<Value> {
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

pub(super) fn list_tasks_params() -> Vec<Value> {
    vec![
        query(
            "source_data_type",
            choice(&["async_task", "sync_task"]),
            "every taskcenter task is async_task: sync_task lists none",
        ),
        query(
            "title",
            json!({"type": "string", "minLength": 2, "maxLength": 64}),
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
            json!({"type": "string", "minLength": 4, "maxLength": 2048}),
            "comma-joined group ids",
        ),
        query("company", json!({"type": "string"}), "comma-joined vendors"),
        query(
            "alg_id",
            json!({"type": "string"}),
            "an algorithm's alg_id (or its service_id); not checked against VIAS's UUID pattern",
        ),
    ]
}

pub(super) fn list_sources_params() -> Vec<Value> {
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

pub(super) fn list_groups_params() -> Vec<Value> {
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

pub(super) fn list_services_params() -> Vec<Value> {
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

pub(super) fn list_pools_params() -> Vec<Value> {
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
