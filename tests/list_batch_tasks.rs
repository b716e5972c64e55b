//! `GET /v2/{project_id}/batch-tasks`, every row of the contract's table, on
//! both backends. Batch numbers refer to the fixture in `common`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;
#[allow(unused_imports)]
use taskcenter::store::prelude::*;

both_backends! {
    async fn defaults_sort_by_created_at_desc_with_id_tie_break(ctx: Ctx) {
        ctx.import(fixture()).await;
        // 5 and 6 share created_at: the larger id comes first in desc order.
        assert_eq!(ctx.list_ids("").await, (6, vec![6, 5, 4, 3, 2, 1]));
        assert_eq!(ctx.list_ids("order_by=asc&page_size=10").await, (6, vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(ctx.list_ids("order_by=DESC&sort_name=Created_At").await, (6, vec![6, 5, 4, 3, 2, 1]));
    }

    async fn sort_by_task_count_both_directions(ctx: Ctx) {
        ctx.import(fixture()).await;
        // num_task: 1→3, 2→1, 3→0, 4→4, 5→2, 6→1; ties (2, 6) by id.
        assert_eq!(ctx.list_ids("sort_name=task_count&order_by=asc").await, (6, vec![3, 2, 6, 5, 1, 4]));
        assert_eq!(ctx.list_ids("sort_name=TASK_COUNT").await, (6, vec![4, 1, 5, 6, 2, 3]));
    }

    async fn response_fields_and_omission_rules(ctx: Ctx) {
        ctx.import(fixture()).await;
        let r = ctx.list("order_by=asc").await;
        let rows = r.body["batch_task_list"].as_array().unwrap();
        assert_eq!(rows[0], json!({
            "id": bid(1), "batch_task_name": "alpha", "video_group_name": "gate",
            "alg_name": "Helmet", "company": "Acme", "type": "0", "priority": "low",
            "service_name": "helmet", "service_version": "1.0.0",
            "num_task": 3, "created_at": 1000,
            "batch_task_status_info": {"running": 2, "stopped": 1}
        }));
        // One source: its name is given; groups in batch order.
        assert_eq!(rows[1], json!({
            "id": bid(2), "batch_task_name": "Beta_1", "video_source_name": "cam-4",
            "video_group_name": "北门,gate", "alg_name": "烟火检测", "company": "华为云",
            "service_name": "smoke.det", "service_version": "2.0.0",
            "type": "0", "priority": "high", "num_task": 1, "created_at": 2000,
            "batch_task_status_info": {"pending": 1}
        }));
        // No tasks: empty counters, no source name; edge service → type "1".
        assert_eq!(rows[2]["batch_task_status_info"], json!({}));
        assert_eq!(rows[2]["type"], "1");
        assert!(rows[2].get("video_source_name").is_none());
        for row in rows {
            let sum: i64 = row["batch_task_status_info"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
            assert_eq!(row["num_task"].as_i64().unwrap(), sum);
            assert!(row.as_object().unwrap().values().all(|v| !v.is_null()), "no nulls: {row}");
        }
        let b4 = &rows[3];
        assert_eq!(b4["batch_task_status_info"], json!({"failed": 1, "succeeded": 1, "frozen": 1, "lack_of_resources": 1}));
        assert_eq!(b4["video_group_name"], "gate,dock.[east]");
    }

    async fn paging_and_pages_past_the_end(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("page_size=5").await, (6, vec![6, 5, 4, 3, 2]));
        assert_eq!(ctx.list_ids("page_size=5&page_num=2").await, (6, vec![1]));
        assert_eq!(ctx.list_ids("page_size=5&page_num=3").await, (6, vec![]));
        assert_eq!(ctx.list_ids("page_num=10000").await, (6, vec![]));
        assert_eq!(ctx.list_ids("is_paged=true&page_size=200").await, (6, vec![6, 5, 4, 3, 2, 1]));
    }

    async fn is_paged_false_returns_everything_but_still_validates_paging(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("is_paged=false&page_size=5&page_num=2").await, (6, vec![6, 5, 4, 3, 2, 1]));
        assert_eq!(ctx.list_ids("is_paged=FALSE&task_state=running").await, (2, vec![6, 1]));
        assert_eq!(ctx.list_ids("is_paged=false&video_group=nothing").await, (0, vec![]));
        let r = ctx.list("is_paged=false").await;
        assert_eq!(r.headers["content-type"], "application/json");
        assert_error(&ctx.list("is_paged=false&page_size=4").await, 400, "VIAS.00010001", Some("page_size"));
        assert_error(&ctx.list("is_paged=false&page_num=10001").await, 400, "VIAS.00010001", Some("page_num"));
    }

    async fn is_paged_false_streams_many_rows_as_valid_json(ctx: Ctx) {
        ctx.import(fixture()).await;
        let mut recs = Vec::new();
        for n in 0..1500u32 {
            recs.push(taskcenter::domain::dump::DumpRecord::BatchTask(taskcenter::domain::dump::BatchTaskRecord {
                project_id: "p1".into(), id: bid(1000 + n), name: format!("bulk{n}"), description: None,
                service_name: "helmet".into(), service_version: "1.0.0".into(), priority: "low".into(),
                created_at: 10_000 + i64::from(n), group_ids: vec!["g1".into()], config: None, output: None, tasks: vec![],
                ..Default::default()
            }));
        }
        ctx.import(recs).await;
        let (count, ids) = ctx.list_ids("is_paged=false&order_by=asc").await;
        assert_eq!(count, 1506);
        assert_eq!(ids.len(), 1506);
        assert_eq!(ids[..6], [1, 2, 3, 4, 5, 6]);
        assert_eq!(*ids.last().unwrap(), 1000 + 1499);
    }

    async fn task_state_filter(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("task_state=running").await, (2, vec![6, 1]));
        assert_eq!(ctx.list_ids("task_state=RUNNING").await, (2, vec![6, 1]));
        assert_eq!(ctx.list_ids("task_state=stopped,frozen").await, (3, vec![5, 4, 1]));
        assert_eq!(ctx.list_ids("task_state=Lack_Of_Resources").await, (1, vec![4]));
        assert_eq!(ctx.list_ids("task_state=stopping").await, (0, vec![]));
        assert_eq!(ctx.list_ids("task_state=running,,").await, (2, vec![6, 1]));
        assert_error(&ctx.list("task_state=runing").await, 400, "VIAS.00010001", Some("task_state"));
        assert_error(&ctx.list("task_state=").await, 400, "VIAS.00010001", Some("task_state"));
        assert_error(&ctx.list("task_state=,").await, 400, "VIAS.00010001", Some("task_state"));
    }

    async fn video_group_filter_by_id_or_name(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("video_group=gate").await, (3, vec![4, 2, 1]));
        assert_eq!(ctx.list_ids("video_group=g1").await, (3, vec![4, 2, 1]));
        assert_eq!(ctx.list_ids("video_group=g3").await, (3, vec![5, 4, 3]));
        assert_eq!(ctx.list_ids("video_group=%E5%8C%97%E9%97%A8,dock.[east]").await, (5, vec![6, 5, 4, 3, 2]));
        assert_eq!(ctx.list_ids("video_group=g2,,gate").await, (4, vec![6, 4, 2, 1]));
        assert_eq!(ctx.list_ids("video_group=,,").await, (6, vec![6, 5, 4, 3, 2, 1]));
        assert_eq!(ctx.list_ids("video_group=GATE").await, (0, vec![]));
        assert_eq!(ctx.list_ids("video_group=zeta").await, (0, vec![]));
    }

    async fn manufacturer_and_title_are_exact_comma_lists(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("manufacturer=Acme").await, (4, vec![6, 4, 3, 1]));
        assert_eq!(ctx.list_ids("manufacturer=%E5%8D%8E%E4%B8%BA%E4%BA%91").await, (2, vec![5, 2]));
        assert_eq!(ctx.list_ids("manufacturer=acme").await, (0, vec![]));
        assert_eq!(ctx.list_ids("manufacturer=Acm").await, (0, vec![]));
        assert_eq!(ctx.list_ids("title=Fire").await, (2, vec![6, 3]));
        assert_eq!(ctx.list_ids("title=Helmet,Fire").await, (4, vec![6, 4, 3, 1]));
        assert_eq!(ctx.list_ids("title=%E7%83%9F%E7%81%AB%E6%A3%80%E6%B5%8B").await, (2, vec![5, 2]));
    }

    async fn filters_combine_with_and(ctx: Ctx) {
        ctx.import(fixture()).await;
        assert_eq!(ctx.list_ids("manufacturer=Acme&title=Fire").await, (2, vec![6, 3]));
        assert_eq!(ctx.list_ids("manufacturer=Acme&title=Fire&task_state=running").await, (1, vec![6]));
        assert_eq!(ctx.list_ids("video_group=gate&task_state=running,pending&order_by=asc").await, (2, vec![1, 2]));
        assert_eq!(
            ctx.list_ids("video_group=g1&type_like=batch_task_name&name_like=A&sort_name=task_count&page_size=5").await,
            (2, vec![1, 2])
        );
        assert_eq!(ctx.list_ids("manufacturer=Acme&title=%E7%83%9F%E7%81%AB%E6%A3%80%E6%B5%8B").await, (0, vec![]));
    }

    async fn name_like_is_a_literal_case_insensitive_substring(ctx: Ctx) {
        ctx.import(fixture()).await;
        let q = |v: &str| format!("type_like=batch_task_name&name_like={v}");
        assert_eq!(ctx.list_ids(&q("ALPHA")).await, (1, vec![1]));
        assert_eq!(ctx.list_ids(&q("a_")).await, (2, vec![3, 2]), "_ is literal, not a wildcard");
        assert_eq!(ctx.list_ids(&q("%25")).await, (0, vec![]), "% is literal");
        assert_eq!(ctx.list_ids(&q("%5C")).await, (0, vec![]), "\\ is literal");
        assert_eq!(ctx.list_ids(&q("%E5%B7%A1%E6%A3%80")).await, (1, vec![4]));
        assert_eq!(ctx.list_ids(&q("")).await, (6, vec![6, 5, 4, 3, 2, 1]));
        assert_eq!(ctx.list_ids("name_like=").await, (6, vec![6, 5, 4, 3, 2, 1]));
        let s = |v: &str| format!("type_like=Publish_Service_Name&name_like={v}");
        assert_eq!(ctx.list_ids(&s(".")).await, (4, vec![6, 5, 3, 2]));
        assert_eq!(ctx.list_ids(&s("KE.D")).await, (2, vec![5, 2]));
        assert_eq!(ctx.list_ids(&s("helmet")).await, (2, vec![4, 1]));
        assert_eq!(ctx.list_ids("type_like=batch_task_name").await.0, 6, "type_like alone filters nothing");
    }

    async fn projects_are_isolated(ctx: Ctx) {
        ctx.import(fixture()).await;
        // p2 has a batch with id 1 and one with id 7 created later: neither shows.
        assert_eq!(ctx.list_ids("is_paged=false").await, (6, vec![6, 5, 4, 3, 2, 1]));
        let r = ctx.list("order_by=asc").await;
        assert_eq!(r.body["batch_task_list"][0]["num_task"], 3);
    }

    async fn counts_follow_task_writes_immediately(ctx: Ctx) {
        ctx.import(fixture()).await;
        use taskcenter::domain::TaskState::*;
        use taskcenter::domain::transition::{Event, Outcome};
        use taskcenter::store::lifecycle::Applied;
        assert_eq!(
            ctx.store.apply_task_event(ctx.project_pk, "t21", Event::Schedule).await.unwrap(),
            Applied::Moved { from: Pending, to: Outcome::To(Scheduling) }
        );
        assert_eq!(
            ctx.store.apply_task_event(ctx.project_pk, "t21", Event::Schedule).await.unwrap(),
            Applied::Refused { state: Scheduling },
            "the table has no Schedule from scheduling"
        );
        // t13 is stopped: delete removes it at once.
        assert_eq!(
            ctx.store.apply_task_event(ctx.project_pk, "t13", Event::Delete).await.unwrap(),
            Applied::Moved { from: Stopped, to: Outcome::Gone }
        );
        ctx.store.add_task(ctx.project_pk, &bid(3), "s6").await.unwrap();
        let r = ctx.list("order_by=asc").await;
        let rows = r.body["batch_task_list"].as_array().unwrap();
        assert_eq!(rows[0]["batch_task_status_info"], json!({"running": 2}));
        assert_eq!(rows[0]["num_task"], 2);
        assert_eq!(rows[1]["batch_task_status_info"], json!({"scheduling": 1}));
        assert_eq!(rows[2]["batch_task_status_info"], json!({"pending": 1}));
        assert_eq!(rows[2]["video_source_name"], "cam-6");
        assert_eq!(ctx.list_ids("task_state=running").await, (2, vec![6, 1]));
        assert_eq!(ctx.list_ids("task_state=scheduling").await, (1, vec![2]));
        assert_eq!(ctx.list_ids("sort_name=task_count&order_by=asc").await, (6, vec![2, 3, 6, 1, 5, 4]));
    }

    async fn page_size_and_page_num_boundaries(ctx: Ctx) {
        ctx.import(fixture()).await;
        for ok in ["page_size=5", "page_size=200", "page_num=1", "page_num=10000", "page_size=005"] {
            assert_eq!(ctx.list(ok).await.status, 200, "{ok}");
        }
        for (bad, p) in [
            ("page_size=4", "page_size"), ("page_size=201", "page_size"), ("page_size=0", "page_size"),
            ("page_num=0", "page_num"), ("page_num=10001", "page_num"),
            ("page_size=abc", "page_size"), ("page_size=5.5", "page_size"), ("page_size=-5", "page_size"),
            ("page_size=+5", "page_size"), ("page_size=", "page_size"), ("page_num=", "page_num"),
            ("page_num=1e3", "page_num"), ("page_num=99999999999999999999", "page_num"),
            ("page_size=%205", "page_size"),
        ] {
            assert_error(&ctx.list(bad).await, 400, "VIAS.00010001", Some(p));
        }
    }

    async fn enum_parameters_reject_other_values(ctx: Ctx) {
        for (bad, p) in [
            ("is_paged=yes", "is_paged"), ("is_paged=", "is_paged"), ("is_paged=1", "is_paged"),
            ("order_by=up", "order_by"), ("order_by=", "order_by"),
            ("sort_name=name", "sort_name"), ("sort_name=", "sort_name"),
            ("type_like=name", "type_like"), ("type_like=", "type_like"),
        ] {
            assert_error(&ctx.list(bad).await, 400, "VIAS.00010001", Some(p));
        }
        for ok in ["is_paged=True", "order_by=Asc", "sort_name=CREATED_AT", "type_like=BATCH_TASK_NAME"] {
            assert_eq!(ctx.list(ok).await.status, 200, "{ok}");
        }
    }

    async fn pattern_parameters_apply_the_literal_range(ctx: Ctx) {
        ctx.import(fixture()).await;
        // `,-_` is U+002C..U+005F: these pass.
        for v in ["a.b", "a/b", "a:b", "a@b", "[a]", "a%5Cb", "a^b", "0-9", "%E4%B8%AD%E6%96%87"] {
            for p in ["video_group", "manufacturer", "title"] {
                assert_eq!(ctx.list(&format!("{p}={v}")).await.status, 200, "{p}={v}");
            }
        }
        // Outside the class: space, ~, !, `, {, é, +.
        for v in ["a%20b", "a+b", "a~b", "a!b", "a%60b", "a%7Bb", "caf%C3%A9"] {
            for p in ["video_group", "manufacturer", "title"] {
                assert_error(&ctx.list(&format!("{p}={v}")).await, 400, "VIAS.00010001", Some(p));
            }
        }
        // Lengths in characters.
        let cjk = |n: usize| "%E4%B8%AD".repeat(n);
        assert_eq!(ctx.list(&format!("video_group={}", cjk(1000))).await.status, 200);
        assert_error(&ctx.list(&format!("video_group={}", cjk(1001))).await, 400, "VIAS.00010001", Some("video_group"));
        assert_error(&ctx.list("video_group=").await, 400, "VIAS.00010001", Some("video_group"));
        assert_eq!(ctx.list("video_group=a").await.status, 200);
        for p in ["manufacturer", "title"] {
            assert_eq!(ctx.list(&format!("{p}={}", cjk(2))).await.status, 200);
            assert_eq!(ctx.list(&format!("{p}={}", cjk(64))).await.status, 200);
            assert_error(&ctx.list(&format!("{p}={}", cjk(1))).await, 400, "VIAS.00010001", Some(p));
            assert_error(&ctx.list(&format!("{p}={}", cjk(65))).await, 400, "VIAS.00010001", Some(p));
            assert_error(&ctx.list(&format!("{p}=")).await, 400, "VIAS.00010001", Some(p));
        }
        let nl = |n: usize| format!("type_like=batch_task_name&name_like={}", cjk(n));
        assert_eq!(ctx.list(&nl(100)).await.status, 200);
        assert_error(&ctx.list(&nl(101)).await, 400, "VIAS.00010001", Some("name_like"));
        assert_error(&ctx.list("name_like=x").await, 400, "VIAS.00010001", Some("name_like"));
        assert_error(&ctx.list("video_group=%FF%FE").await, 400, "VIAS.00010001", Some("video_group"));
    }

    async fn a_parameter_given_twice_is_rejected(ctx: Ctx) {
        for (q, p) in [
            ("is_paged=true&is_paged=true", "is_paged"), ("page_size=10&page_size=20", "page_size"),
            ("page_num=1&page_num=1", "page_num"), ("order_by=asc&order_by=desc", "order_by"),
            ("sort_name=task_count&sort_name=task_count", "sort_name"), ("video_group=a&video_group=b", "video_group"),
            ("task_state=running&task_state=stopped", "task_state"), ("type_like=batch_task_name&type_like=batch_task_name", "type_like"),
            ("name_like=&name_like=", "name_like"), ("manufacturer=ab&manufacturer=cd", "manufacturer"),
            ("title=ab&title=ab", "title"),
        ] {
            assert_error(&ctx.list(q).await, 400, "VIAS.00010001", Some(p));
        }
        assert_eq!(ctx.list("foo=1&foo=2&bar").await.status, 200, "unknown parameters are ignored");
    }
}
