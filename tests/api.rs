//! Identity, errors on every path, create routes and the OpenAPI document,
//! through the router, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use axum::body::Body;
use axum::http::Request;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use taskcenter::identity;
#[allow(unused_imports)]
use taskcenter::store::prelude::*;

fn req(method: &str, uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("x-auth-token", t);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn password_body(user: &str, password: &str, project: Value) -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "any"}}}},
                    "scope": {"project": project}}})
}

async fn seed_catalogue(ctx: &Ctx) {
    ctx.add_helmet_service(taskcenter::store::DeployType::Edge)
        .await;
    assert_eq!(
        ctx.post(
            "/v2/p1/video-group",
            json!({"id": "g1", "video_group_name": "gate", "access_type": "edge"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        ctx.post(
            "/v2/p1/video-group",
            json!({"id": "g2", "video_group_name": "dock", "access_type": "edge"})
        )
        .await
        .status,
        200
    );
    for (id, g) in [("s1", "g1"), ("s2", "g1"), ("s3", "g2")] {
        let r = ctx.post("/v2/p1/source", json!({"id": id, "video_source_name": format!("cam {id}"), "access_type": "edge", "url": format!("rtsp://{id}"), "video_group_ids": [g]})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

fn create_body(name: &str) -> Value {
    json!({"name": name, "service_name": "helmet", "service_version": "1.0.0",
           "batch_input": {"video_source_group": [{"video_source_group_id": "g1"}]},
           "output": {"event_center": true}})
}

both_backends! {
    async fn missing_malformed_forged_and_expired_tokens_are_401(ctx: Ctx) {
        let uri = "/v2/p1/batch-tasks";
        assert_error(&ctx.send(req("GET", uri, None, "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        assert_error(&ctx.send(req("GET", uri, Some(""), "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        assert_error(&ctx.send(req("GET", uri, Some("garbage"), "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        let forged = format!("tc1.{}.{}", "0".repeat(32), "1".repeat(64));
        assert_error(&ctx.send(req("GET", uri, Some(&forged), "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        // Right id, wrong secret.
        let (id, _) = ctx.token.trim_start_matches("tc1.").split_once('.').unwrap();
        let wrong = format!("tc1.{id}.{}", "f".repeat(64));
        assert_error(&ctx.send(req("GET", uri, Some(&wrong), "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        let short = identity::issue_token(&*ctx.store, ctx.project_pk, None, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = ctx.send(req("GET", uri, Some(&short.token), "")).await;
        assert_error(&r, 401, "VIAS.00010005", Some("X-Auth-Token"));
        assert!(r.body["detail"].as_str().unwrap().contains("expired"));
        assert_eq!(ctx.send(req("GET", uri, Some(&ctx.token), "")).await.status, 200);
    }

    async fn a_token_for_another_project_is_403_and_leaks_nothing(ctx: Ctx) {
        let p2 = ctx.store.create_project("p2", "two", 1).await.unwrap();
        let t2 = identity::issue_token(&*ctx.store, p2.pk, None, Duration::from_secs(60)).await.unwrap().token;
        let exists = ctx.send(req("GET", "/v2/p1/batch-tasks", Some(&t2), "")).await;
        let missing = ctx.send(req("GET", "/v2/nope/batch-tasks", Some(&t2), "")).await;
        assert_error(&exists, 403, "VIAS.00010005", Some("project_id"));
        assert_eq!(exists.body, missing.body, "an existing and a missing project look the same");
        assert_eq!(ctx.send(req("GET", "/v2/p2/batch-tasks", Some(&t2), "")).await.status, 200);
        assert_error(&ctx.send(req("GET", "//v2//batch-tasks", Some(&t2), "")).await, 404, "VIAS.00010002", None);
        assert_error(&ctx.send(req("GET", "/v2//batch-tasks", Some(&t2), "")).await, 403, "VIAS.00010005", Some("project_id"));
        assert_error(&ctx.send(req("GET", "/v2/P2/batch-tasks", Some(&t2), "")).await, 403, "VIAS.00010005", Some("project_id"));
        assert_error(&ctx.send(req("GET", "/v2/", Some(&t2), "")).await, 404, "VIAS.00010002", None);
    }

    async fn authentication_comes_before_everything_else(ctx: Ctx) {
        let p2 = ctx.store.create_project("p2", "two", 1).await.unwrap();
        let t2 = identity::issue_token(&*ctx.store, p2.pk, None, Duration::from_secs(60)).await.unwrap().token;
        // Invalid query, unknown route, wrong method, oversized body: still 401 / 403 first.
        for (m, uri) in [("GET", "/v2/p1/batch-tasks?page_size=1"), ("GET", "/v2/p1/nowhere"), ("DELETE", "/v2/p1/batch-tasks"), ("GET", "/v2")] {
            assert_error(&ctx.send(req(m, uri, None, "")).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        }
        assert_error(&ctx.send(req("GET", "/v2/p1/batch-tasks?page_size=1", Some(&t2), "")).await, 403, "VIAS.00010005", Some("project_id"));
        let big = "x".repeat(2 * 1024 * 1024);
        assert_error(&ctx.send(req("POST", "/v2/p1/batch-tasks", None, &big)).await, 401, "VIAS.00010005", Some("X-Auth-Token"));
        assert_error(&ctx.send(req("POST", "/v2/p1/batch-tasks", Some(&ctx.token), &big)).await, 413, "VIAS.00010001", None);
    }

    async fn password_tokens_per_iam_body(ctx: Ctx) {
        let hash = identity::hash_password("correct horse").unwrap();
        ctx.store.create_user("alice", &hash, &["p1".to_owned()]).await.unwrap();
        ctx.store.create_project("p3", "three", 1).await.unwrap();
        let r = ctx.send(req("POST", "/v3/auth/tokens", None, &password_body("alice", "correct horse", json!({"id": "p1"})).to_string())).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let token = r.headers["x-subject-token"].to_str().unwrap().to_owned();
        assert_eq!(r.body["token"]["project"], json!({"id": "p1", "name": "project one"}));
        assert_eq!(r.body["token"]["user"]["name"], "alice");
        assert_eq!(r.body["token"]["methods"], json!(["password"]));
        assert!(r.body["token"]["expires_at"].as_str().unwrap() > r.body["token"]["issued_at"].as_str().unwrap());
        assert!(!String::from_utf8_lossy(&r.raw).contains(&token), "the token travels only in the header");
        assert_eq!(ctx.send(req("GET", "/v2/p1/batch-tasks", Some(&token), "")).await.status, 200);
        // By project name too.
        let r = ctx.send(req("POST", "/v3/auth/tokens", None, &password_body("alice", "correct horse", json!({"name": "project one"})).to_string())).await;
        assert_eq!(r.status, 201);
        for body in [
            password_body("alice", "wrong", json!({"id": "p1"})),
            password_body("bob", "correct horse", json!({"id": "p1"})),
            password_body("alice", "correct horse", json!({"id": "p3"})),
            password_body("alice", "correct horse", json!({"id": "nope"})),
        ] {
            assert_error(&ctx.send(req("POST", "/v3/auth/tokens", None, &body.to_string())).await, 401, "VIAS.00010005", None);
        }
        let mut no_methods = password_body("alice", "correct horse", json!({"id": "p1"}));
        no_methods["auth"]["identity"]["methods"] = json!(["token"]);
        assert_error(&ctx.send(req("POST", "/v3/auth/tokens", None, &no_methods.to_string())).await, 400, "VIAS.00010001", Some("auth.identity.methods"));
        assert_error(&ctx.send(req("POST", "/v3/auth/tokens", None, "{}")).await, 400, "VIAS.00010001", Some("auth"));
        assert_error(&ctx.send(req("POST", "/v3/auth/tokens", None, "not json")).await, 400, "VIAS.00010001", None);
    }

    async fn revoked_credentials_are_refused_everywhere_within_a_second(ctx: Ctx) {
        use tower::ServiceExt;
        // A second server process on the same database.
        let other_store = taskcenter::store::open_sql(&ctx.db.url).await.unwrap();
        let other = taskcenter::api::app(taskcenter::api::AppState::new(
            other_store.clone(), Duration::from_secs(3600), Duration::from_secs(15)));
        let on_other = |token: String| {
            let router = other.router.clone();
            async move { router.oneshot(req("GET", "/v2/p1/batch-tasks", Some(&token), "")).await.unwrap().status().as_u16() }
        };
        let refused_within_a_second = |token: String| {
            let on_other = &on_other;
            async move {
                let start = std::time::Instant::now();
                while on_other(token.clone()).await != 401 {
                    assert!(start.elapsed() < Duration::from_secs(1), "the other server still takes the revoked credential");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let hash = identity::hash_password("correct horse").unwrap();
        ctx.store.create_user("alice", &hash, &["p1".to_owned()]).await.unwrap();
        let login = |pw: &'static str| {
            let ctx = &ctx;
            async move {
                let r = ctx.send(req("POST", "/v3/auth/tokens", None, &password_body("alice", pw, json!({"id": "p1"})).to_string())).await;
                (r.status.as_u16(), r.headers.get("x-subject-token").map(|h| h.to_str().unwrap().to_owned()))
            }
        };
        let revoke = |caller: Option<&str>, subject: Option<&str>| {
            let mut b = Request::builder().method("DELETE").uri("/v3/auth/tokens");
            if let Some(c) = caller { b = b.header("x-auth-token", c); }
            if let Some(s) = subject { b = b.header("x-subject-token", s); }
            ctx.send(b.body(Body::empty()).unwrap())
        };
        let a = login("correct horse").await.1.unwrap();
        let b = login("correct horse").await.1.unwrap();
        assert_eq!(on_other(a.clone()).await, 200, "the other server has seen the token");
        // Revoke a with b; then b logs itself out.
        let r = revoke(Some(&b), Some(&a)).await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert_eq!(ctx.send(req("GET", "/v2/p1/batch-tasks", Some(&a), "")).await.status, 401);
        refused_within_a_second(a.clone()).await;
        assert_error(&revoke(Some(&b), Some(&a)).await, 400, "VIAS.00010002", Some("X-Subject-Token"));
        assert_error(&revoke(Some(&b), Some("tc1.nonsense")).await, 400, "VIAS.00010002", Some("X-Subject-Token"));
        assert_error(&revoke(Some(&b), None).await, 400, "VIAS.00010001", Some("X-Subject-Token"));
        assert_error(&revoke(None, Some(&b)).await, 401, "VIAS.00010005", None);
        assert_error(&revoke(Some(&a), Some(&b)).await, 401, "VIAS.00010005", None);
        assert_eq!(revoke(Some(&b), Some(&b)).await.status, 204);
        refused_within_a_second(b.clone()).await;
        // A new password revokes the user's tokens; deleting the user, the rest.
        let c = login("correct horse").await.1.unwrap();
        assert_eq!(on_other(c.clone()).await, 200);
        ctx.store.set_user_password("alice", &identity::hash_password("battery staple").unwrap()).await.unwrap();
        refused_within_a_second(c).await;
        assert_eq!(login("correct horse").await.0, 401);
        let d = login("battery staple").await.1.unwrap();
        assert_eq!(on_other(d.clone()).await, 200);
        ctx.store.delete_user("alice").await.unwrap();
        refused_within_a_second(d).await;
        assert_eq!(login("battery staple").await.0, 401);
        assert!(matches!(ctx.store.delete_user("alice").await, Err(taskcenter::store::StoreError::NotFound { .. })));
        // A revoked worker credential is refused at once.
        let w = identity::create_worker(&*ctx.store, "w1").await.unwrap();
        let register = |cred: String| {
            let ctx = &ctx;
            async move {
                ctx.send(Request::post("/worker/v1/register").header("authorization", format!("Bearer {cred}"))
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"kind":"cloud","slots":1}"#)).unwrap()).await.status.as_u16()
            }
        };
        assert_eq!(register(w.credential.clone()).await, 200);
        ctx.store.revoke_worker("w1").await.unwrap();
        assert_eq!(register(w.credential.clone()).await, 401);
        assert!(ctx.store.list_workers().await.unwrap()[0].lease_expires_at <= taskcenter::domain::now_millis());
    }

    async fn unknown_routes_wrong_methods_and_bad_bodies(ctx: Ctx) {
        assert_error(&ctx.get("/v2/p1/nowhere").await, 404, "VIAS.00010002", None);
        assert_error(&ctx.send(req("GET", "/nowhere", None, "")).await, 404, "VIAS.00010002", None);
        assert_error(&ctx.send(req("PATCH", "/v2/p1/batch-tasks", Some(&ctx.token), "")).await, 405, "VIAS.00010001", None);
        assert_error(&ctx.send(req("DELETE", "/healthz", None, "")).await, 405, "VIAS.00010001", None);
        assert_error(&ctx.post_raw("/v2/p1/batch-tasks", b"{".to_vec()).await, 400, "VIAS.00010001", None);
        assert_error(&ctx.post_raw("/v2/p1/batch-tasks", vec![]).await, 400, "VIAS.00010001", None);
        assert_error(&ctx.post_raw("/v2/p1/batch-tasks", b"{} x".to_vec()).await, 400, "VIAS.00010001", None);
        // An array is not an object, even where its items would fill the fields.
        assert_error(&ctx.post_raw("/v2/p1/video-group", br#"["gx","name-x"]"#.to_vec()).await, 400, "VIAS.00010001", None);
        assert_error(&ctx.get("/v2/p1/video-group/gx").await, 400, "VIAS.00010002", Some("video_group_id"));
        assert_error(&ctx.post_raw("/v2/p1/video-group", b"{\"video_group_name\":\"a\",\"video_group_name\":\"b\"}".to_vec()).await, 400, "VIAS.00010001", Some("video_group_name"));
        assert_error(&ctx.post("/v2/p1/video-group", json!({"video_group_name": 5})).await, 400, "VIAS.00010001", Some("video_group_name"));
        assert_error(&ctx.post("/v2/p1/video-group", json!({})).await, 400, "VIAS.00010001", Some("video_group_name"));
        // A body cut short names no field; a wrong type speaks JSON, not Rust.
        let r = ctx.post_raw("/v2/p1/video-group", br#"{"video_group_name": "a", "#.to_vec()).await;
        assert_error(&r, 400, "VIAS.00010001", None);
        assert_eq!(r.body["params"], json!([]), "{}", r.body);
        let r = ctx.post("/v2/p1/batch-tasks", json!({"name": "b1", "schedule": []})).await;
        assert_error(&r, 400, "VIAS.00010001", Some("schedule"));
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains("invalid type: array, expected an object") && !detail.contains("struct"), "{detail}");
        // Ids that the list routes take: such objects could never be
        // shown, changed or deleted.
        assert_error(&ctx.post("/v2/p1/video-group", json!({"id": "groups", "video_group_name": "g", "access_type": "cloud"})).await,
            400, "VIAS.00010001", Some("id"));
        assert_error(&ctx.post("/v2/p1/source", json!({"id": "sources", "video_source_name": "s", "access_type": "cloud", "type": "url",
            "type_config": "<type>URL</type><config><URL_ADDRESS>rtsp://x/y</URL_ADDRESS></config>"})).await, 400, "VIAS.00010001", Some("id"));
        let r = ctx.post("/v2/p1/video-group", json!({"id": "Groups", "video_group_name": "g", "access_type": "cloud"})).await;
        assert_eq!(r.status, 200, "ids are case-sensitive, as the routes are: {}", r.body);
        assert_error(&ctx.get("/v2/p1/video-group/groups?page_size=0").await, 400, "VIAS.00010001", Some("page_size"));
        assert_error(&ctx.get("/v2/p1/video-group/nope").await, 400, "VIAS.00010002", Some("video_group_id"));
        assert_error(&ctx.get("/v2/p1/source/sources/nope").await, 400, "VIAS.00010002", Some("video_source_id"));
        assert_error(&ctx.get("/v2/p1/algorithm/services/nope").await, 400, "VIAS.00010002", Some("service_id"));
        // A batch's routes name their path parameter `id`, as VIAS does; a
        // task's, `task_id`.
        assert_error(&ctx.send(req("PUT", "/v2/p1/batch-tasks/nope", Some(&ctx.token), r#"{"name": "x"}"#)).await, 400, "VIAS.00010002", Some("id"));
        assert_error(&ctx.send(req("PUT", "/v2/p1/batch-tasks/nope/action/stop", Some(&ctx.token), "")).await, 400, "VIAS.00010002", Some("id"));
        assert_error(&ctx.send(req("PUT", "/v2/p1/batch-tasks/no%20pe/action/stop", Some(&ctx.token), "")).await, 400, "VIAS.00010001", Some("id"));
        assert_error(&ctx.send(req("DELETE", "/v2/p1/batch-tasks/nope", Some(&ctx.token), "")).await, 400, "VIAS.00010002", Some("id"));
        assert_error(&ctx.send(req("DELETE", "/v2/p1/batch-tasks/no%20pe", Some(&ctx.token), "")).await, 400, "VIAS.00010001", Some("id"));
        assert_error(&ctx.send(req("PUT", "/v2/p1/tasks/nope/action/stop", Some(&ctx.token), "")).await, 400, "VIAS.00010002", Some("task_id"));
        assert_error(&ctx.send(req("PUT", "/v2/p1/tasks/no%20pe/action/stop", Some(&ctx.token), "")).await, 400, "VIAS.00010001", Some("task_id"));
        // A pool lists each of its nodes once.
        assert_error(&ctx.post("/v2/p1/edge-pools", json!({"name": "pool-one", "nodes": ["node-a", "node-b", "node-a"]})).await,
            400, "VIAS.00010001", Some("nodes"));
        assert_eq!(ctx.post("/v2/p1/edge-pools", json!({"name": "pool-one", "nodes": ["node-a", "node-b"]})).await.status, 201);
        let r = ctx.send(req("GET", "/readyz", None, "")).await;
        assert_eq!(r.status, 200);
        assert_eq!(ctx.send(req("GET", "/healthz", None, "")).await.body["status"], "ok");
    }

    async fn catalogue_create_and_list(ctx: Ctx) {
        seed_catalogue(&ctx).await;
        let group = |id: Option<&str>, name: &str| {
            let mut b = json!({"video_group_name": name, "access_type": "cloud"});
            if let Some(id) = id {
                b["id"] = json!(id);
            }
            b
        };
        assert_error(&ctx.post("/v2/p1/video-group", group(Some("g1"), "other")).await, 400, "VIAS.00010003", Some("id"));
        assert_error(&ctx.post("/v2/p1/video-group", group(Some("g9"), "gate")).await, 400, "VIAS.00010003", Some("video_group_name"));
        assert_error(&ctx.post("/v2/p1/video-group", group(Some("bad id"), "x")).await, 400, "VIAS.00010001", Some("id"));
        assert_error(&ctx.post("/v2/p1/video-group", group(None, "a,b")).await, 400, "VIAS.00010001", Some("video_group_name"));
        assert_error(&ctx.post("/v2/p1/video-group", json!({"video_group_name": "x"})).await, 400, "VIAS.00010001", Some("access_type"));
        let gen = ctx.post("/v2/p1/video-group", group(None, "generated")).await;
        assert_eq!(gen.body["video_group_id"].as_str().unwrap().len(), 32, "{}", gen.body);
        // VIAS lists every row unless is_paged=true.
        let r = ctx.get("/v2/p1/video-group/groups?is_paged=true&page_size=5&page_num=1&sort_name=create_at&order_by=asc").await;
        assert_eq!((r.body["video_group_number"].clone(), r.body["total_number"].clone()), (json!(3), json!(3)), "{}", r.body);
        assert_eq!(r.body["video_group_list"][0]["video_group_id"], "g1");
        assert_eq!(r.body["video_group_list"][0]["num_video_source"], 2);
        assert_eq!(ctx.get("/v2/p1/video-group/groups?page_size=4").await.status, 400, "page_size is 5 to 200");
        assert_eq!(ctx.get("/v2/p1/video-group/groups?name=doc").await.body["video_group_list"][0]["video_group_name"], "dock");
        assert_eq!(ctx.get("/v2/p1/video-group/g2").await.body["video_group_name"], "dock");
        let source = |id: &str, groups: Value| json!({"id": id, "video_source_name": "x", "access_type": "cloud", "url": "rtsp://x", "video_group_ids": groups});
        assert_error(&ctx.post("/v2/p1/source", source("s9", json!(["nope"]))).await, 400, "VIAS.00010002", Some("video_group_ids"));
        assert_error(&ctx.post("/v2/p1/source", source("s1", json!([]))).await, 400, "VIAS.00010003", Some("id"));
        assert_error(&ctx.post("/v2/p1/source", json!({"video_source_name": "x", "access_type": "cloud"})).await, 400, "VIAS.00010001", Some("type_config"));
        assert_error(&ctx.post("/v2/p1/source", json!({"video_source_name": "x", "access_type": "cloud", "url": "rtsp://x", "latitude": 12.5})).await, 400, "VIAS.00010001", Some("latitude"));
        let r = ctx.get("/v2/p1/source/sources").await;
        assert_eq!(r.body["video_source_number"], 3);
        let first = &r.body["video_source_list"][2];
        assert_eq!(first["video_source_id"], "s1", "newest first: {}", r.body);
        assert_eq!(first["video_packages"][0]["video_group_id"], "g1");
        assert_eq!(first["type"], "url");
        let s3 = ctx.get("/v2/p1/source/sources/s3").await.body;
        assert_eq!(s3["stream_path"], "rtsp://s3");
        assert_eq!(s3["type_config"], "<type>URL</type><config><URL_ADDRESS>rtsp://s3</URL_ADDRESS></config>");
        assert!(s3.get("video_source_id").is_none(), "VideoSourceDetail has no id");
        let r = ctx.get("/v2/p1/source/sources?video_group_id=g2&video_group_id=g1&type=url").await;
        assert_eq!(r.body["video_source_number"], 3, "repeated list keys: {}", r.body);
        let r = ctx.get("/v2/p1/algorithm/services/user").await;
        assert_eq!((r.body["count"].clone(), r.body["total"].clone()), (json!(1), json!(1)));
        assert_eq!(r.body["service_list"][0]["alg_status"], "service_running");
        assert_eq!(r.body["service_list"][0]["function_version"], "1.0.0");
        assert_eq!(ctx.get("/v2/p1/algorithm/services/svc1").await.body["service_name"], "helmet");
    }

    async fn service_status_filter_counts_every_match_then_pages(ctx: Ctx) {
        ctx.import(fixture()).await;
        let all = ctx.get("/v2/p1/algorithm/services/user").await;
        assert_eq!(all.body["count"], 3, "{}", all.body);
        let fire = all.body["service_list"].as_array().unwrap().iter()
            .find(|s| s["service_name"] == "fire.x").unwrap()["alg_id"].as_str().unwrap().to_owned();
        let r = ctx.call("PUT", &format!("/v2/p1/algorithm/{fire}/deploy/stop"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let names = |r: &Reply| -> Vec<String> {
            r.body["service_list"].as_array().unwrap().iter().map(|s| s["service_name"].as_str().unwrap().to_owned()).collect()
        };
        let r = ctx.get("/v2/p1/algorithm/services/user?alg_status=not_deployed").await;
        assert_eq!((r.body["count"].clone(), names(&r)), (json!(1), vec!["fire.x".to_owned()]), "{}", r.body);
        let r = ctx.get("/v2/p1/algorithm/services/user?alg_status=service_running&is_paged=true&page_size=5&page_num=1").await;
        assert_eq!(r.body["count"], 2, "{}", r.body);
        assert_eq!(names(&r).len(), 2);
        // Past the last page: no rows, but the count still says how many match.
        let r = ctx.get("/v2/p1/algorithm/services/user?alg_status=service_running&is_paged=true&page_size=5&page_num=2").await;
        assert_eq!((r.body["count"].clone(), names(&r).len()), (json!(2), 0), "{}", r.body);
        assert_error(&ctx.get("/v2/p1/algorithm/services/user?alg_status=running").await, 400, "VIAS.00010001", Some("alg_status"));
    }

    async fn create_batch_task_fans_out_into_pending_tasks(ctx: Ctx) {
        seed_catalogue(&ctx).await;
        let r = ctx.post("/v2/p1/batch-tasks", create_body("gate-helmet")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["total_count"], 2);
        assert_eq!(r.body["succeed_count"], 2);
        assert_eq!(r.body["failed_count"], 0);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let l = ctx.list("").await;
        let row = &l.body["batch_task_list"][0];
        assert_eq!(row["id"], id.as_str());
        assert_eq!(row["type"], "1");
        assert_eq!(row["priority"], "low");
        assert_eq!(row["batch_task_status_info"], json!({"pending": 2}));
        assert_eq!(row["video_group_name"], "gate");

        // Explicit sources: unknown, not in group, listed twice.
        let body = json!({"name": "explicit", "service_name": "helmet", "service_version": "1.0.0", "priority": "HIGH",
            "batch_input": {"video_source_group": [
                {"video_source_group_id": "g2", "video_source_list": [{"video_source_id": "s3", "target_roi": {"x": 1}}, {"video_source_id": "s1"}, {"video_source_id": "ghost"}]},
                {"video_source_group_id": "g1", "video_source_list": [{"video_source_id": "s1"}, {"video_source_id": "s1"}]}]},
            "config": {"threshold": 0.5}, "output": {"webhook": {"url": "https://hooks.example/x"}}});
        let r = ctx.post("/v2/p1/batch-tasks", body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!((r.body["total_count"].as_u64(), r.body["succeed_count"].as_u64(), r.body["failed_count"].as_u64()), (Some(5), Some(2), Some(3)));
        let codes: Vec<(String, String)> = r.body["error_list"].as_array().unwrap().iter().map(error_entry).collect();
        let codes: Vec<(&str, &str)> = codes.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(codes, vec![("s1", "VIAS.00010001"), ("ghost", "VIAS.00010002"), ("s1", "VIAS.00010003")]);
        let l = ctx.list("").await;
        assert_eq!(l.body["batch_task_list"][0]["priority"], "high");
        assert_eq!(l.body["batch_task_list"][0]["video_group_name"], "dock,gate");
        assert_eq!(l.body["batch_task_list"][0]["num_task"], 2);
    }

    async fn create_batch_task_rejections(ctx: Ctx) {
        seed_catalogue(&ctx).await;
        assert_eq!(ctx.post("/v2/p1/batch-tasks", create_body("dup")).await.status, 200);
        assert_error(&ctx.post("/v2/p1/batch-tasks", create_body("dup")).await, 400, "VIAS.00010011", Some("name"));
        let with = |f: &dyn Fn(&mut Value)| { let mut b = create_body("x1"); f(&mut b); b };
        for (body, code, param) in [
            (with(&|b| { b["service_version"] = json!("9.9.9"); }), "VIAS.00010002", "service_name"),
            (with(&|b| { b["batch_input"]["video_source_group"][0]["video_source_group_id"] = json!("nope"); }), "VIAS.00010002", "video_source_group_id"),
            (with(&|b| { b["name"] = json!("has space"); }), "VIAS.00010001", "name"),
            (with(&|b| { b["name"] = json!("n".repeat(101)); }), "VIAS.00010001", "name"),
            (with(&|b| { b["description"] = json!("d".repeat(501)); }), "VIAS.00010001", "description"),
            (with(&|b| { b["priority"] = json!("urgent"); }), "VIAS.00010001", "priority"),
            (with(&|b| { b["service_name"] = json!("Has.Dot"); }), "VIAS.00010001", "service_name"),
            (with(&|b| { b.as_object_mut().unwrap().remove("output"); }), "VIAS.00010001", "output"),
            (with(&|b| { b["output"] = json!({}); }), "VIAS.00010001", "output"),
            (with(&|b| { b["output"] = json!({"webhook": {"url": "ftp://x"}}); }), "VIAS.00010001", "output.webhook.url"),
            (with(&|b| { b["batch_input"]["video_source_group"] = json!([]); }), "VIAS.00010001", "batch_input.video_source_group"),
            (with(&|b| { b.as_object_mut().unwrap().remove("batch_input"); }), "VIAS.00010001", "batch_input"),
            (with(&|b| { b["batch_input"]["video_source_group"] = json!([{"video_source_group_id": "g1"}, {"video_source_group_id": "g1"}]); }), "VIAS.00010001", "video_source_group_id"),
            (with(&|b| { b["priority"] = json!(3); }), "VIAS.00010001", "priority"),
        ] {
            assert_error(&ctx.post("/v2/p1/batch-tasks", body).await, 400, code, Some(param));
        }
        assert_eq!(ctx.list("").await.body["count"], 1, "no rejected request left a batch behind");
    }
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_router_serves() {
    let ctx = Ctx::sqlite().await;
    let doc = ctx.send(req("GET", "/openapi.json", None, "")).await.body;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.push((method.to_uppercase(), path.clone()));
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has an operationId"
            );
            assert!(["200", "201", "204"]
                .iter()
                .any(|s| op["responses"].as_object().unwrap().contains_key(*s)));
            if path.starts_with("/v2/") {
                for code in ["400", "401", "403", "500"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} documents {code}"
                    );
                }
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    assert!(
                        declared.contains(&seg.trim_matches(|c| c == '{' || c == '}')),
                        "{path} declares {seg}"
                    );
                }
            }
        }
    }
    let mut served: Vec<(String, String)> = ctx
        .app
        .routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    // Every documented route really answers (not the 404/405 fallbacks).
    for (m, p) in &served {
        let uri = p.replace("{project_id}", "p1").replace(['{', '}'], "");
        let r = ctx.send(req(m, &uri, Some(&ctx.token), "{}")).await;
        assert!(
            r.status != 404 && r.status != 405,
            "{m} {uri} answered {}",
            r.status
        );
    }
    let list = &doc["paths"]["/v2/{project_id}/batch-tasks"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in taskcenter::domain::list::LIST_BATCH_TASKS_PARAMS {
        assert!(names.contains(&p), "ListBatchTasks documents {p}");
    }
}

mod no_500 {
    use super::*;
    use proptest::prelude::*;

    fn any_query() -> impl Strategy<Value = String> {
        let mut keys = taskcenter::domain::list::LIST_BATCH_TASKS_PARAMS.to_vec();
        keys.push("x");
        let key = prop::sample::select(keys);
        let val = prop_oneof![
            "[a-zA-Z0-9_,.%\\\\-]{0,12}",
            "(%[0-9A-Fa-f]{2}){0,6}",
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("5".to_owned()),
            Just("running,stopped".to_owned()),
            Just("batch_task_name".to_owned()),
            Just("%FF".to_owned()),
            Just("%".to_owned()),
        ];
        prop::collection::vec((key, val), 0..6).prop_map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn no_query_yields_a_server_error(queries in prop::collection::vec(any_query(), 1..8)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let ctx = Ctx::sqlite().await;
                ctx.import(fixture()).await;
                for q in &queries {
                    let r = ctx.list(q).await;
                    assert!(r.status == 200 || r.status == 400, "{q} → {}", r.status);
                    if r.status == 400 {
                        assert_error(&r, 400, "VIAS.00010001", None);
                    } else {
                        assert!(r.body["count"].is_u64());
                    }
                }
            });
        }

        #[test]
        fn no_task_operation_yields_a_server_error(ops in prop::collection::vec((
            prop::sample::select(vec![
                ("GET", "/v2/p1/tasks?{q}"), ("GET", "/v2/p1/tasks/{id}"), ("PUT", "/v2/p1/tasks/{id}/action/start"),
                ("PUT", "/v2/p1/tasks/{id}/action/stop"), ("DELETE", "/v2/p1/tasks/{id}"),
                ("PUT", "/v2/p1/batch-tasks/{b}/action/start"), ("PUT", "/v2/p1/batch-tasks/{b}/action/stop"),
                ("DELETE", "/v2/p1/batch-tasks/{b}"), ("PUT", "/v2/p1/batch-tasks/{b}"), ("DELETE", "/v2/p1/source/{s}"),
            ]),
            prop::sample::select(vec!["t11", "t12", "t21", "t41", "t44", "nope", "%FF", "a%20b"]),
            prop::sample::select(vec![bid(1), bid(2), bid(4), bid(6), "zz".to_owned()]),
            prop::sample::select(vec!["s1", "s4", "s6", "zz"]),
            "[a-z_=&0-9,%-]{0,24}",
            prop_oneof![
                Just("{}".to_owned()),
                Just(r#"{"name":"n2","batch_input":{"video_source_group":[{"video_source_group_id":"g1"}]}}"#.to_owned()),
                Just(r#"{"batch_input":{"video_source_group":[]},"service_name":"x"}"#.to_owned()),
                "\\PC{0,32}",
            ],
        ), 1..12)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let ctx = Ctx::sqlite().await;
                ctx.import(fixture()).await;
                for ((method, path), id, b, src, q, body) in &ops {
                    let path = path.replace("{id}", id).replace("{b}", b).replace("{s}", src).replace("{q}", q);
                    let body = (*method == "PUT" && path.matches('/').count() == 4).then(|| body.clone());
                    let r = ctx.send(
                        Request::builder()
                            .method(*method)
                            .uri(&path)
                            .header("x-auth-token", &ctx.token)
                            .body(body.clone().map_or_else(Body::empty, Body::from))
                            .unwrap(),
                    ).await;
                    assert!(r.status.as_u16() < 500, "{method} {path} {body:?} → {} {}", r.status, r.body);
                    if r.status != 200 {
                        assert_error(&r, r.status.as_u16(), r.body["error_code"].as_str().unwrap(), None);
                    }
                }
                // Whatever happened, the counters still equal a fresh count.
                for n in [1, 2, 4, 5, 6] {
                    if let Ok(c) = ctx.store.check_counters(ctx.project_pk, &bid(n)).await {
                        assert_eq!(c.stored, c.counted, "batch {n} after {ops:?}");
                    }
                }
            });
        }

        #[test]
        fn no_body_yields_a_server_error(body in prop_oneof![
            "\\PC{0,64}",
            Just(r#"{"name":"a","service_name":"helmet","service_version":"1.0.0","batch_input":{"video_source_group":[{"video_source_group_id":"g1","video_source_list":[{"video_source_id":null}]}]},"output":{"event_center":true}}"#.to_owned()),
            Just(r#"{"name":["x"],"batch_input":7}"#.to_owned()),
            Just(r#"{"name":"a","output":{"webhook":{}}}"#.to_owned()),
            Just("[]".to_owned()), Just("null".to_owned()), Just("{\"config\":1e999}".to_owned()),
        ], path in prop::sample::select(vec!["/v2/p1/batch-tasks", "/v2/p1/video-group", "/v2/p1/source", "/v3/auth/tokens"])) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let ctx = Ctx::sqlite().await;
                let r = ctx.post_raw(path, body.clone().into_bytes()).await;
                assert!(r.status.as_u16() < 500, "{path} {body:?} → {}", r.status);
                if r.status != 200 && r.status != 201 {
                    assert_error(&r, r.status.as_u16(), r.body["error_code"].as_str().unwrap(), None);
                }
            });
        }
    }
}

/// The worker routes open only with a worker credential, and a worker
/// credential opens no project route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_routes_take_only_a_worker_credential() {
    let ctx = Ctx::sqlite().await;
    let w = identity::create_worker(&*ctx.store, "w1").await.unwrap();
    let send = |auth: Option<String>, path: &'static str, body: Value| {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        ctx.send(req.body(Body::from(body.to_string())).unwrap())
    };
    let reg = json!({"kind": "cloud", "slots": 2});
    let r = send(None, "/worker/v1/register", reg.clone()).await;
    assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
    assert!(
        r.body["advice"]
            .as_str()
            .unwrap()
            .contains("worker credential")
            && !r.body["detail"].as_str().unwrap().contains("X-Auth-Token"),
        "a worker is told about its own credential: {}",
        r.body
    );
    let user = format!("Bearer {}", ctx.token);
    assert_error(
        &send(Some(user), "/worker/v1/register", reg.clone()).await,
        401,
        "VIAS.00010005",
        None,
    );
    let last = if w.credential.ends_with('0') {
        '1'
    } else {
        '0'
    };
    let forged = format!("Bearer {}{last}", &w.credential[..w.credential.len() - 1]);
    assert_error(
        &send(Some(forged), "/worker/v1/register", reg.clone()).await,
        401,
        "VIAS.00010005",
        None,
    );
    let r = ctx
        .send(
            Request::get("/v2/p1/batch-tasks")
                .header("x-auth-token", &w.credential)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, 401, "VIAS.00010005", None);

    let me = || Some(format!("Bearer {}", w.credential));
    assert_error(
        &send(
            me(),
            "/worker/v1/register",
            json!({"kind": "gpu", "slots": 2}),
        )
        .await,
        400,
        "VIAS.00010001",
        Some("kind"),
    );
    assert_error(
        &send(
            me(),
            "/worker/v1/register",
            json!({"kind": "edge", "slots": 0}),
        )
        .await,
        400,
        "VIAS.00010001",
        Some("slots"),
    );
    // Only edge workers serve edge pools.
    assert_error(
        &send(
            me(),
            "/worker/v1/register",
            json!({"kind": "cloud", "slots": 2, "pool": "north-pool"}),
        )
        .await,
        400,
        "VIAS.00010001",
        Some("pool"),
    );
    let r = send(me(), "/worker/v1/register", reg).await;
    assert_eq!(
        (r.status.as_u16(), r.body["lease_ms"].clone()),
        (200, json!(15_000)),
        "{}",
        r.body
    );
    let r = send(me(), "/worker/v1/sync", json!({"running": []})).await;
    assert_eq!(r.body, json!({"assign": [], "stop": [], "upgrade": []}));
    // A task it does not hold is one to stop.
    let r = send(
        me(),
        "/worker/v1/sync",
        json!({"running": [{"task": 999, "attempt": 1}]}),
    )
    .await;
    assert_eq!(r.body["stop"], json!([{"task": 999, "attempt": 1}]));
    assert_error(
        &send(me(), "/worker/v1/sync", json!({"running": [], "extra": 1})).await,
        400,
        "VIAS.00010001",
        None,
    );
    let r = send(
        me(),
        "/worker/v1/report",
        json!({"task": 1, "attempt": 1, "event": "exploded"}),
    )
    .await;
    assert_error(&r, 400, "VIAS.00010001", Some("event"));
    let r = send(
        me(),
        "/worker/v1/report",
        json!({"task": 424242, "attempt": 1, "event": "started"}),
    )
    .await;
    assert_eq!(r.body, json!({"applied": false, "state": null}));
}
