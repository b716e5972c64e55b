//! The task operations through the router: ListTasks, ShowTask,
//! StartStopTask, DeleteTask, BatchStartStopTask, DeleteBatchTask and
//! UpdateBatchTask, with the contract's error bodies. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;
use taskcenter::store::SchedulerStore;

both_backends! {
    async fn list_and_show_tasks(ctx: Ctx) {
        ctx.import(fixture()).await;
        let r = ctx.get(&format!("/v2/p1/tasks?batch_id={}&page_size=5&sort_dir=asc", bid(1))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["count"], 3);
        let states: Vec<&str> = r.body["tasks"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["RUNNING", "RUNNING", "STOPPED"]);
        let r = ctx.get("/v2/p1/tasks?task_state=running,frozen&page_size=5").await;
        assert_eq!(r.body["count"], 4, "t11, t12, t61 running and t44 frozen: {}", r.body);
        let r = ctx.get("/v2/p1/tasks?page=1&page_size=5").await;
        assert_eq!((r.body["count"].clone(), r.body["page"].clone()), (json!(5), json!(1)));
        for (bad, param) in [("page_size=4", "page_size"), ("page_size=1001", "page_size"), ("sort_dir=up", "sort_dir"),
                             ("task_state=runnin", "task_state"), ("page=-1", "page"), ("batch_id=a%20b", "batch_id")] {
            assert_error(&ctx.get(&format!("/v2/p1/tasks?{bad}")).await, 400, "VIAS.00010001", Some(param));
        }
        // p2 has a t11 too; p1's token sees p1's.
        let t = ctx.get("/v2/p1/tasks/t11").await;
        assert_eq!((t.body["state"].clone(), t.body["batch_id"].clone()), (json!("RUNNING"), json!(bid(1))));
        assert_error(&ctx.get("/v2/p1/tasks/nope").await, 400, "VIAS.00010002", Some("task_id"));
        assert_error(&ctx.get("/v2/p2/tasks/t11").await, 403, "VIAS.00010005", None);
        // No worker: the pending t21 lacks resources, and says why, once.
        let now = taskcenter::domain::now_millis();
        taskcenter::scheduler::tick(&*ctx.store, now, &Default::default()).await.unwrap();
        let t = ctx.get("/v2/p1/tasks/t21").await;
        assert_eq!(t.body["state"], "LACK_OF_RESOURCES", "{}", t.body);
        assert_eq!(t.body["error"]["code"], "VIAS.TC.NO_WORKER", "{}", t.body);
        let raw = String::from_utf8(t.raw.clone()).unwrap();
        assert_eq!(raw.matches("\"error\":").count(), 1, "one error key: {raw}");
    }

    async fn start_stop_and_delete_follow_the_table(ctx: Ctx) {
        ctx.import(fixture()).await;
        let r = ctx.call("PUT", "/v2/p1/tasks/t13/action/start", None).await;
        assert_eq!((r.status.as_u16(), r.body["state"].clone()), (200, json!("PENDING")), "{}", r.body);
        let r = ctx.call("PUT", "/v2/p1/tasks/t13/action/start", None).await;
        assert_error(&r, 400, "VIAS.00010012", None);
        assert!(r.body["error_msg"].as_str().unwrap().contains("PENDING") || r.body["detail"].as_str().unwrap().contains("PENDING"), "{}", r.body);
        let r = ctx.call("PUT", "/v2/p1/tasks/t11/action/stop", None).await;
        assert_eq!(r.body["state"], "STOPPING");
        let r = ctx.call("DELETE", "/v2/p1/tasks/t41", None).await;
        assert_eq!((r.status.as_u16(), r.body["state"].clone()), (200, json!(null)));
        assert_error(&ctx.get("/v2/p1/tasks/t41").await, 400, "VIAS.00010002", Some("task_id"));
        let r = ctx.call("DELETE", "/v2/p1/tasks/t12", None).await;
        assert_eq!(r.body["state"], "DELETING", "a running task waits for its worker");
        // VIAS's path is /action/{command}: another command is a bad parameter.
        assert_error(&ctx.call("PUT", "/v2/p1/tasks/t12/action/pause", None).await, 400, "VIAS.00010001", Some("command"));
        // The list follows at once.
        let rows = ctx.list("order_by=asc").await.body["batch_task_list"].clone();
        assert_eq!(rows[0]["batch_task_status_info"], json!({"pending": 1, "stopping": 1, "deleting": 1}));
        assert_eq!(rows[3]["num_task"], 3, "batch 4 lost t41");
    }

    async fn batch_operations_report_each_refusal(ctx: Ctx) {
        ctx.import(fixture()).await;
        let r = ctx.call("PUT", &format!("/v2/p1/batch-tasks/{}/action/stop", bid(1)), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!((r.body["total_count"].clone(), r.body["succeed_count"].clone(), r.body["failed_count"].clone()), (json!(3), json!(2), json!(1)));
        assert_eq!(error_entry(&r.body["error_list"][0]), ("t13".to_owned(), "VIAS.00010012".to_owned()));
        // Deleting a batch whose tasks no worker holds removes it at once.
        let r = ctx.call("DELETE", &format!("/v2/p1/batch-tasks/{}", bid(5)), None).await;
        assert_eq!(r.body["succeed_count"], 2, "{}", r.body);
        assert_eq!(ctx.list_ids("is_paged=false").await, (5, vec![6, 4, 3, 2, 1]));
        assert_error(&ctx.call("DELETE", &format!("/v2/p1/batch-tasks/{}", bid(5)), None).await, 400, "VIAS.00010002", None);
        // A batch with a running task stays, deleting, until its worker lets go.
        let r = ctx.call("DELETE", &format!("/v2/p1/batch-tasks/{}", bid(6)), None).await;
        assert_eq!(r.body["succeed_count"], 1);
        let row = ctx.list("is_paged=false").await.body["batch_task_list"][0].clone();
        assert_eq!(row["batch_task_status_info"], json!({"deleting": 1}));
        assert_error(&ctx.call("PUT", &format!("/v2/p1/batch-tasks/{}", bid(6)), Some(json!({"name": "x1"}))).await, 400, "VIAS.00010012", None);
        // A start while the batch's service is undeployed is refused, as a
        // create is: its tasks would only stop again for want of it.
        ctx.store.set_service_deployed(ctx.project_pk, "helmet", "1.0.0", false).await.unwrap();
        let start = format!("/v2/p1/batch-tasks/{}/action/start", bid(1));
        let r = ctx.call("PUT", &start, None).await;
        assert_error(&r, 400, "VIAS.00010012", None);
        assert!(r.body["detail"].as_str().unwrap().contains("not deployed"), "{}", r.body);
        assert_error(&ctx.call("PUT", "/v2/p1/tasks/t13/action/start", None).await, 400, "VIAS.00010012", None);
        assert_eq!(ctx.get("/v2/p1/tasks/t13").await.body["state"], "STOPPED");
        ctx.store.set_service_deployed(ctx.project_pk, "helmet", "1.0.0", true).await.unwrap();
        let r = ctx.call("PUT", &start, None).await;
        assert_eq!((r.status.as_u16(), r.body["succeed_count"].clone()), (200, json!(1)), "{}", r.body);
    }

    async fn update_batch_task_adds_and_removes_sources(ctx: Ctx) {
        ctx.import(fixture()).await;
        // Batch 2 ("Beta_1", smoke.det 2.0.0, groups g2,g1) has t21 on s4.
        let uri = format!("/v2/p1/batch-tasks/{}", bid(2));
        let r = ctx.call("PUT", &uri, Some(json!({
            "name": "Beta_2", "description": "north side", "priority": "medium", "config": {"threshold": 0.7},
            "batch_input": {"video_source_group": [{"video_source_group_id": "g1", "video_source_list": [
                {"video_source_id": "s1"}, {"video_source_id": "s2"}, {"video_source_id": "s4"}, {"video_source_id": "zz"}]}]}
        }))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!((r.body["succeed_count"].clone(), r.body["failed_count"].clone()), (json!(2), json!(2)), "{}", r.body);
        let codes: Vec<String> = r.body["error_list"].as_array().unwrap().iter().map(|e| error_entry(e).1).collect();
        assert_eq!(codes, ["VIAS.00010001", "VIAS.00010002"], "s4 is not in g1; zz does not exist");
        assert_error(&ctx.get("/v2/p1/tasks/t21").await, 400, "VIAS.00010002", Some("task_id"));
        let row = ctx.list("name_like=beta_2&type_like=batch_task_name").await.body["batch_task_list"][0].clone();
        assert_eq!((row["num_task"].clone(), row["priority"].clone(), row["video_group_name"].clone()), (json!(2), json!("medium"), json!("gate")));
        assert_eq!(row["batch_task_status_info"], json!({"pending": 2}));
        assert_eq!(ctx.list_ids("video_group=北门").await.0, 1, "batch 2 left group g2");
        // Fields alone leave the tasks.
        let r = ctx.call("PUT", &uri, Some(json!({"description": "only this"}))).await;
        assert_eq!(r.body["succeed_count"], 2);
        assert_error(&ctx.call("PUT", &uri, Some(json!({"name": "alpha"}))).await, 400, "VIAS.00010011", None);
        assert_error(&ctx.call("PUT", &uri, Some(json!({"service_name": "helmet", "service_version": "1.0.0"}))).await, 400, "VIAS.00010001", Some("service_name"));
        assert_error(&ctx.call("PUT", &uri, Some(json!({"service_name": "smoke.det"}))).await, 400, "VIAS.00010001", Some("service_version"));
        assert_error(&ctx.call("PUT", &uri, Some(json!({"name": "bad name!"}))).await, 400, "VIAS.00010001", Some("name"));
        assert_error(&ctx.call("PUT", &uri, Some(json!({"priority": "urgent"}))).await, 400, "VIAS.00010001", Some("priority"));
        assert_error(&ctx.call("PUT", &format!("/v2/p1/batch-tasks/{}", bid(99)), Some(json!({}))).await, 400, "VIAS.00010002", None);
        let r = ctx.call("PUT", &uri, Some(json!({"batch_input": {"video_source_group": [{"video_source_group_id": "g1"}, {"video_source_group_id": "g1"}]}}))).await;
        assert_error(&r, 400, "VIAS.00010001", Some("video_source_group_id"));
    }

    async fn each_task_of_a_create_task_keeps_its_own_input_item(ctx: Ctx) {
        ctx.add_helmet_service(taskcenter::store::DeployType::Cloud).await;
        let r = ctx.call("POST", "/v2/p1/services/helmet/tasks", Some(json!({"name": "two_cameras",
            "service_version": "1.0.0", "input": {"type": "url", "data": [{"url": "rtsp://a/one"}, {"url": "rtsp://b/two"}]},
            "output": {"event_center": true}}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut seen = Vec::new();
        for t in r.body["tasks"].as_array().unwrap() {
            let shown = ctx.get(&format!("/v2/p1/tasks/{}", t["id"].as_str().unwrap())).await.body;
            assert_eq!(shown["input"]["type"], "url", "{shown}");
            let data = shown["input"]["data"].as_array().unwrap();
            assert_eq!(data.len(), 1, "one item per task: {shown}");
            seen.push(data[0]["url"].as_str().unwrap().to_owned());
        }
        seen.sort();
        assert_eq!(seen, ["rtsp://a/one", "rtsp://b/two"]);
    }

    async fn schedules_are_checked_and_show_their_status(ctx: Ctx) {
        ctx.import(fixture()).await;
        // Batch 1 has t11 and t12 running and t13 stopped.
        let uri = format!("/v2/p1/batch-tasks/{}", bid(1));
        let plan = json!({"type": "weekly", "timezone": "+08:00", "days_of_week": [1, 5],
            "periods": [[{"begin_at": "09:00:00", "end_at": "12:00:00"}, {"begin_at": "14:00:00", "end_at": "24:00:00"}]]});
        let r = ctx.call("PUT", &uri, Some(json!({"schedule": plan}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let c = &ctx;
        let show = |id: &'static str| async move { c.get(&format!("/v2/p1/tasks/{id}")).await.body };
        let t11 = show("t11").await;
        assert_eq!((t11["schedule"].clone(), t11["schedule_status"].clone()), (plan.clone(), json!("ACTIVATED")), "{t11}");
        assert_eq!(show("t13").await["schedule_status"], "INACTIVATED", "a stopped task's schedule waits for a start");
        let t21 = show("t21").await;
        assert!(t21.get("schedule_status").is_none() && t21.get("schedule").is_none(), "no schedule, no status: {t21}");
        // Windows and zones that cannot be read are refused, naming the field.
        for (bad, param) in [
            (json!({"periods": [[{"begin_at": "12:00:00", "end_at": "09:00:00"}]]}), "schedule.periods"),
            (json!({"periods": [[{"begin_at": "9:00", "end_at": "10:00:00"}]]}), "schedule.periods"),
            (json!({"periods": [[], []]}), "schedule.periods"),
            (json!({"periods": [[{"begin_at": "09:00:00", "end_at": "10:00:00"}], [], []]}), "schedule.periods"),
            (json!({"timezone": "+15:00"}), "schedule.timezone"),
            (json!({"days_of_week": [0]}), "schedule.days_of_week"),
        ] {
            let mut body = plan.clone();
            for (k, v) in bad.as_object().unwrap() {
                body[k] = v.clone();
            }
            let r = ctx.call("PUT", &uri, Some(json!({"schedule": body}))).await;
            assert_error(&r, 400, "VIAS.00010001", Some(param));
        }
        assert_eq!(show("t11").await["schedule"], plan, "a refused update changes nothing");
    }
}
