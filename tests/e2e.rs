//! The lifecycle end to end: `serve` with its scheduler, real `taskcenter
//! worker` processes running real executors, and every one of the 18 task
//! states reached by something a user or operator does. SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::process::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use taskcenter::domain::TaskState;

fn every_state_is_reached(db: &str) {
    let env = Env::start(
        db,
        &["--lease", "2s", "--tick", "100ms", "--wait-limit", "1h"],
    );
    let svc = |name: &str, version: &str, kind: &str| {
        env.cli(&[
            "service",
            "add",
            "--project",
            "default",
            "--name",
            name,
            "--version",
            version,
            "--alg-name",
            "Algo",
            "--company",
            "Acme",
            "--deploy-type",
            kind,
        ]);
    };
    svc("helmet", "1.0.0", "cloud");
    svc("helmet", "2.0.0", "cloud");
    svc("fire", "1.0.0", "edge");
    env.call(
        "POST",
        "/v2/default/video-group",
        Some(json!({"id": "g", "video_group_name": "gate", "access_type": "cloud"})),
    );
    for i in 1..=6 {
        env.call(
            "POST",
            "/v2/default/source",
            Some(json!({"id": format!("c{i}"), "video_source_name": format!("cam-{i}"), "access_type": "cloud", "url": format!("file:///videos/{i}.mp4"), "video_group_ids": ["g"]})),
        );
    }
    let helmet = ("helmet", "1.0.0");
    let mut all: Vec<String> = Vec::new();

    // No worker yet: nothing can run. Deleting the source of a waiting
    // task fails its creation.
    let gone = env.tasks_of(&env.batch("gone", helmet, "g", &["c6"], "sleep"));
    let edge = env.tasks_of(&env.batch("edge", ("fire", "1.0.0"), "g", &["c5"], "ok"));
    env.wait(&gone, Some("LACK_OF_RESOURCES"));
    env.wait(&edge, Some("LACK_OF_RESOURCES"));
    env.call("DELETE", "/v2/default/source/c6", None);
    env.wait(&gone, Some("CREATE_FAILED"));
    all.extend(gone.iter().cloned());
    all.extend(edge.iter().cloned());

    // A cloud worker: tasks run to success, to failure, or keep running.
    let exec = env.exec();
    let mut w1 = env.worker("w1", "cloud", &exec);
    let ok = env.tasks_of(&env.batch("ok", helmet, "g", &["c1"], "ok"));
    let bad = env.tasks_of(&env.batch("bad", helmet, "g", &["c2"], "fail"));
    let run_batch = env.batch("run", helmet, "g", &["c3", "c4"], "sleep");
    let run = env.tasks_of(&run_batch);
    let del_batch = env.batch("del", helmet, "g", &["c5"], "sleep");
    let del = env.tasks_of(&del_batch);
    env.wait(&ok, Some("SUCCEEDED"));
    env.wait(&bad, Some("FAILED"));
    assert_eq!(env.task(&bad[0])["error"]["code"], "VIAS.TC.EXIT");
    env.wait(&run, Some("RUNNING"));
    env.wait(&del, Some("RUNNING"));
    all.extend(ok.iter().chain(&bad).chain(&run).cloned());

    // Stop and start again; a second stop of a stopped task is refused.
    env.call(
        "PUT",
        &format!("/v2/default/batch-tasks/{run_batch}/action/stop"),
        None,
    );
    env.wait(&run, Some("STOPPED"));
    let r = env.call(
        "PUT",
        &format!("/v2/default/batch-tasks/{run_batch}/action/stop"),
        None,
    );
    assert_eq!(
        (
            r["failed_count"].clone(),
            json!(error_entry(&r["error_list"][0]).1)
        ),
        (json!(2), json!("VIAS.00010012"))
    );
    env.call(
        "PUT",
        &format!("/v2/default/batch-tasks/{run_batch}/action/start"),
        None,
    );
    env.wait(&run, Some("RUNNING"));

    // Delete a running batch: its task passes through deleting, then goes,
    // and the batch with it.
    let history_of_deleted = {
        env.call(
            "DELETE",
            &format!("/v2/default/batch-tasks/{del_batch}"),
            None,
        );
        let h = env.task(&del[0]);
        env.wait(&del, None);
        h
    };

    // An edge worker whose executor does not exist: start_failed.
    let mut w_edge = env.worker("edge-1", "edge", "/nonexistent/analyzer --fast");
    env.wait(&edge, Some("START_FAILED"));
    assert_eq!(env.task(&edge[0])["error"]["code"], "VIAS.TC.SPAWN");

    // Roll the service to 2.0.0: running tasks restart on the new version.
    env.cli(&[
        "service",
        "upgrade",
        "--project",
        "default",
        "--name",
        "helmet",
        "--from",
        "1.0.0",
        "--to",
        "2.0.0",
    ]);
    let upgraded = |id: &String| {
        env.task(id)["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["event"] == "Upgraded")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run.iter().all(upgraded) {
        assert!(Instant::now() < deadline, "upgrade did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.wait(&run, Some("RUNNING"));
    // The upgrade restarted each executor once (same attempt, new version).
    std::thread::sleep(Duration::from_millis(1000));
    let starts = env.starts();
    for id in &run {
        let attempt = env.task(id)["attempt"].as_i64().unwrap();
        let n = starts
            .iter()
            .filter(|(t, a)| t == id && *a == attempt)
            .count();
        assert_eq!(n, 2, "{id} attempt {attempt}: {starts:?}");
    }
    // Each start has its own run id, so output keyed by it is never
    // overwritten by the restart.
    let runs = env.runs();
    for id in &run {
        let ids: std::collections::HashSet<&str> = runs
            .iter()
            .filter(|(t, _, _)| t == id)
            .map(|(_, _, r)| r.as_str())
            .collect();
        let starts = runs.iter().filter(|(t, _, _)| t == id).count();
        assert_eq!(ids.len(), starts, "{id}: {runs:?}");
        assert!(ids.iter().all(|r| r.len() == 16), "{runs:?}");
    }

    // Kill the worker: its tasks are abnormal, recover, wait for capacity,
    // and run on a new worker.
    let before: Vec<Value> = run
        .iter()
        .map(|id| env.task(id)["worker_id"].clone())
        .collect();
    w1.kill();
    env.wait(&run, Some("LACK_OF_RESOURCES"));
    let mut w2 = env.worker("w2", "cloud", &exec);
    env.wait(&run, Some("RUNNING"));
    for (id, old) in run.iter().zip(&before) {
        let t = env.task(id);
        assert_ne!(&t["worker_id"], old, "{t}");
    }

    // Freeze the project, then unfreeze it.
    env.cli(&["project", "freeze", "default"]);
    env.wait(&run, Some("FROZEN"));
    env.cli(&["project", "unfreeze", "default"]);
    env.wait(&run, Some("RUNNING"));

    // Undeploy the service they run on.
    env.cli(&[
        "service",
        "undeploy",
        "--project",
        "default",
        "--name",
        "helmet",
        "--version",
        "2.0.0",
    ]);
    env.wait(&run, Some("STOPPED_NO_SERVICE"));

    // Every state appears in some task's history.
    let mut seen = BTreeSet::new();
    let mut note = |h: &Value| {
        for e in h["history"].as_array().unwrap() {
            for k in ["from", "to"] {
                if let Some(s) = e[k].as_str() {
                    seen.insert(s.parse::<TaskState>().unwrap());
                }
            }
        }
    };
    for id in &all {
        note(&env.task(id));
    }
    note(&history_of_deleted);
    let missing: Vec<_> = TaskState::ALL
        .iter()
        .filter(|s| !seen.contains(s))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");

    // The list's counters agree with the tasks.
    let list = env.call("GET", "/v2/default/batch-tasks?is_paged=false", None);
    let names: Vec<&str> = list["batch_task_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_task_name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"del"),
        "the deleted batch is gone: {names:?}"
    );
    let run_row = list["batch_task_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["batch_task_name"] == "run")
        .unwrap();
    assert_eq!(
        run_row["batch_task_status_info"],
        json!({"stopped_no_service": 2})
    );
    for w in [&mut w2, &mut w_edge] {
        w.kill();
    }
}

#[test]
fn every_state_is_reached_on_sqlite() {
    let db = TestDb::sqlite();
    every_state_is_reached(&db.url);
}

#[test]
fn every_state_is_reached_on_postgres() {
    on_postgres(every_state_is_reached);
}
