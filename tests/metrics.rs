//! `/metrics` as an operator's Prometheus sees it: parsed by a Prometheus
//! text-format parser, unauthenticated only on the operator's metrics
//! address or with the metrics token, and moving as requests and ticks
//! happen. Both backends, against the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::process::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

fn raw_get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// One sample: metric name, labels, value.
type Sample = (String, std::collections::HashMap<String, String>, f64);

/// Scrapes `/metrics` and parses it with the Prometheus project's own
/// Python client parser (`prometheus_client`, installed by `.ci/run`).
fn scrape(addr: &str) -> Vec<Sample> {
    let (status, body) = raw_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    const PARSE: &str = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        for fam in parse(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       print(json.dumps([s.name, s.labels, s.value]))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the Prometheus parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus text parser refused the exposition (pip install prometheus_client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of `name` summed over the samples whose labels include all of
/// `labels`.
fn value(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn metrics_move(db: &str) {
    if !common::prerequisite(
        common::python_has("prometheus_client"),
        "python3 with prometheus_client (pip install prometheus_client)",
    ) {
        return;
    }
    let dir = TempDir::new();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        &dir.0,
        db,
        &[
            "--tick",
            "100ms",
            "--metrics-listen",
            &metrics_addr,
            "--metrics-token",
            "m3trics-secret",
        ],
    );
    let token = {
        let out = cli(
            &dir.0,
            db,
            &["token", "issue", "--project", "default"],
            None,
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let before = scrape(&metrics_addr);
    let list = [
        ("method", "GET"),
        ("route", "/v2/{project_id}/batch-tasks"),
        ("status", "200"),
    ];
    let lists_before = value(
        &before,
        "taskcenter_http_request_duration_seconds_count",
        &list,
    );
    let ticks_before = value(
        &before,
        "taskcenter_scheduler_tick_duration_seconds_count",
        &[],
    );
    for _ in 0..3 {
        let (status, _, _) = http(
            &server.addr,
            "GET",
            "/v2/default/batch-tasks",
            Some(&token),
            None,
        );
        assert_eq!(status, 200);
    }
    // Two tasks: with no worker they wait, and the gauge counts them.
    assert_eq!(
        value(&before, "taskcenter_tasks", &[("state", "pending")]),
        0.0
    );
    assert!(cli(
        &dir.0,
        db,
        &[
            "service",
            "add",
            "--project",
            "default",
            "--name",
            "helmet",
            "--version",
            "1.0.0",
            "--alg-name",
            "Helmet",
            "--company",
            "Acme"
        ],
        None
    )
    .status
    .success());
    let post = |path: &str, body: serde_json::Value| {
        let (status, _, reply) = http(&server.addr, "POST", path, Some(&token), Some(&body));
        assert_eq!(status, 200, "{path}: {reply:?}");
    };
    post(
        "/v2/default/video-group",
        json!({"id": "gate", "video_group_name": "gate", "access_type": "cloud"}),
    );
    for cam in ["cam-1", "cam-2"] {
        post(
            "/v2/default/source",
            json!({"id": cam, "video_source_name": cam, "access_type": "cloud",
            "url": format!("rtsp://{cam}/live"), "video_group_ids": ["gate"]}),
        );
    }
    post(
        "/v2/default/batch-tasks",
        json!({"name": "gate-helmet", "service_name": "helmet", "service_version": "1.0.0",
        "batch_input": {"video_source_group": [{"video_source_group_id": "gate"}]}, "output": {"event_center": true}}),
    );
    let wrong = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "wrong", "domain": {"name": "d"}}}},
                              "scope": {"project": {"id": "default"}}}});
    let (status, _, _) = http(&server.addr, "POST", "/v3/auth/tokens", None, Some(&wrong));
    assert_eq!(status, 401);
    std::thread::sleep(Duration::from_millis(500));

    let after = scrape(&metrics_addr);
    assert_eq!(
        value(
            &after,
            "taskcenter_http_request_duration_seconds_count",
            &list
        ) - lists_before,
        3.0,
        "three list requests counted under their route"
    );
    assert!(
        value(
            &after,
            "taskcenter_login_refusals_total",
            &[("reason", "wrong_credentials")]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "taskcenter_scheduler_tick_duration_seconds_count",
            &[]
        ) > ticks_before,
        "ticks happen and are timed"
    );
    assert!(after.iter().any(|s| s.0 == "taskcenter_workers"));
    let waiting: f64 = ["pending", "scheduling", "lack_of_resources"]
        .iter()
        .map(|s| value(&after, "taskcenter_tasks", &[("state", s)]))
        .sum();
    assert_eq!(
        waiting, 2.0,
        "the two new tasks, pending or already found waiting"
    );
    assert!(after
        .iter()
        .any(|s| s.0 == "taskcenter_db_pool_connections"));
    // A client holding a connection to the API port is counted.
    let held = std::net::TcpStream::connect(&server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let open = value(&scrape(&metrics_addr), "taskcenter_open_connections", &[]);
    assert!(open >= 1.0, "open connections with one held: {open}");
    drop(held);

    // On the API port: only with the metrics token.
    let (status, body) = raw_get(&server.addr, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("VIAS.00010005"), "the error body: {body}");
    let (status, _) = raw_get(&server.addr, "/metrics", Some("guess"));
    assert_eq!(status, 401);
    let (status, body) = raw_get(&server.addr, "/metrics", Some("m3trics-secret"));
    assert_eq!(status, 200);
    assert!(body.contains("taskcenter_http_request_duration_seconds"));
    drop(server);
}

#[test]
fn metrics_move_with_requests_and_ticks_on_sqlite() {
    metrics_move("t.db");
}

#[test]
fn metrics_move_with_requests_and_ticks_on_postgres() {
    common::on_postgres(metrics_move);
}

#[test]
fn without_a_metrics_token_the_api_port_serves_no_metrics() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, "t.db");
    for auth in [None, Some("anything")] {
        let (status, body) = raw_get(&server.addr, "/metrics", auth);
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("taskcenter_"), "{body}");
    }
}
