//! Concurrent catalogue writes, as several clients (or several `serve`
//! processes) send them: each request is answered as if the others had
//! come before or after it, never with an internal error. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use futures_util::future::join_all;
use serde_json::json;

fn source(id: &str) -> serde_json::Value {
    json!({"id": id, "video_source_name": id, "access_type": "cloud", "url": format!("rtsp://{id}/live")})
}

async fn service_group_and_source(ctx: &Ctx) {
    ctx.add_helmet_service(taskcenter::store::DeployType::Cloud)
        .await;
    assert_eq!(ctx.post("/v2/p1/source", source("cam9")).await.status, 200);
    let r = ctx
        .post(
            "/v2/p1/video-group",
            json!({"id": "gate", "video_group_name": "gate",
        "access_type": "cloud", "video_source_ids": ["cam9"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn batch(name: &str) -> serde_json::Value {
    json!({"name": name, "service_name": "helmet", "service_version": "1.0.0",
           "batch_input": {"video_source_group": [{"video_source_group_id": "gate"}]},
           "output": {"event_center": true}})
}

both_backends! {
    async fn groups_naming_one_source_at_once_are_all_created(ctx: Ctx) {
        assert_eq!(ctx.post("/v2/p1/source", source("cam1")).await.status, 200);
        let creates = (0..8).map(|i| {
            ctx.post("/v2/p1/video-group", json!({"id": format!("grp{i}"), "video_group_name": format!("group{i}"),
                "access_type": "cloud", "video_source_ids": ["cam1"]}))
        });
        for r in join_all(creates).await {
            assert_eq!(r.status, 200, "{}", r.body);
        }
        for i in 0..8 {
            let r = ctx.get(&format!("/v2/p1/video-group/grp{i}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        let r = ctx.get("/v2/p1/source/sources/cam1").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut groups: Vec<String> = r.body["video_packages"].as_array().unwrap().iter()
            .map(|g| g["video_group_id"].as_str().unwrap().to_owned()).collect();
        groups.sort();
        assert_eq!(groups, (0..8).map(|i| format!("grp{i}")).collect::<Vec<_>>());
    }

    async fn one_of_many_creates_of_one_id_wins_and_the_rest_are_told_it_exists(ctx: Ctx) {
        for path in ["/v2/p1/source", "/v2/p1/video-group"] {
            let body = if path.ends_with("source") {
                source("dupe")
            } else {
                json!({"id": "dupe", "video_group_name": "dupe", "access_type": "cloud"})
            };
            let replies = join_all((0..8).map(|_| ctx.post(path, body.clone()))).await;
            let created = replies.iter().filter(|r| r.status == 200).count();
            assert_eq!(created, 1, "{path}: {:?}", replies.iter().map(|r| &r.body).collect::<Vec<_>>());
            for r in replies.iter().filter(|r| r.status != 200) {
                assert_eq!(r.status, 400, "{path}: {}", r.body);
                assert_eq!(r.body["error_code"], "VIAS.00010003", "{path}: {}", r.body);
            }
        }
    }

    async fn renaming_groups_to_one_name_at_once_renames_one(ctx: Ctx) {
        for i in 0..6 {
            let r = ctx.post("/v2/p1/video-group", json!({"id": format!("ren{i}"), "video_group_name": format!("ren{i}"),
                "access_type": "cloud"})).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        let renames = (0..6).map(|i| {
            ctx.send(
                axum::http::Request::put(format!("/v2/p1/video-group/ren{i}"))
                    .header("x-auth-token", &ctx.token)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(json!({"video_group_name": "same"}).to_string()))
                    .unwrap(),
            )
        });
        let replies = join_all(renames).await;
        assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1,
            "{:?}", replies.iter().map(|r| &r.body).collect::<Vec<_>>());
        for r in replies.iter().filter(|r| r.status != 200) {
            assert_eq!(r.status, 400, "{}", r.body);
            assert!(r.body["error_code"].as_str().unwrap().starts_with("VIAS.0001000"), "{}", r.body);
        }
    }

    async fn deleting_a_source_while_groups_take_it_loses_nothing(ctx: Ctx) {
        for round in 0..5 {
            let cam = format!("cam-{round}");
            assert_eq!(ctx.post("/v2/p1/source", source(&cam)).await.status, 200);
            let group = ctx.post("/v2/p1/video-group", json!({"id": format!("del{round}"),
                "video_group_name": format!("del{round}"), "access_type": "cloud", "video_source_ids": [cam]}));
            let delete = ctx.send(
                axum::http::Request::delete(format!("/v2/p1/source/{cam}"))
                    .header("x-auth-token", &ctx.token)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            );
            let (g, d) = tokio::join!(group, delete);
            assert!(g.status == 200 || g.status == 400, "group: {} {}", g.status, g.body);
            assert!(d.status == 200 || d.status == 400, "delete: {} {}", d.status, d.body);
            // Whatever the order, the group and the source agree.
            let src = ctx.get(&format!("/v2/p1/source/sources/{cam}")).await;
            let grp = ctx.get(&format!("/v2/p1/video-group/del{round}")).await;
            if g.status == 200 && src.status == 200 {
                assert_eq!(src.body["video_packages"][0]["video_group_id"], format!("del{round}"), "{}", src.body);
            }
            if src.status != 200 {
                assert_eq!(d.status, 200, "the source is gone only if its delete said so");
            }
            assert!(grp.status == 200 || g.status == 400, "{}", grp.body);
        }
    }

    async fn a_rename_and_a_create_racing_for_one_batch_name_get_one_200_and_one_name_taken(ctx: Ctx) {
        service_group_and_source(&ctx).await;
        for round in 0..10 {
            let r = ctx.post("/v2/p1/batch-tasks", batch(&format!("old{round}"))).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let id = r.body["id"].as_str().unwrap().to_owned();
            let wanted = format!("new{round}");
            let rename = ctx.send(
                axum::http::Request::put(format!("/v2/p1/batch-tasks/{id}"))
                    .header("x-auth-token", &ctx.token)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(json!({"name": wanted}).to_string()))
                    .unwrap(),
            );
            let create = ctx.post("/v2/p1/batch-tasks", batch(&wanted));
            let (a, b) = tokio::join!(rename, create);
            let replies = [&a, &b];
            assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1, "{} / {}", a.body, b.body);
            for r in replies.iter().filter(|r| r.status != 200) {
                assert_eq!(r.status, 400, "{}", r.body);
                assert_eq!(r.body["error_code"], "VIAS.00010011", "{}", r.body);
            }
        }
    }
}
