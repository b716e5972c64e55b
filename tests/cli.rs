//! The real binary: `serve` over TCP (bootstrap, the README walkthrough,
//! tokens across restarts and across processes), and import/export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::process::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The README's walkthrough, run as written, against a server started with
/// the README's first command (here on an ephemeral port, with the built
/// binary in place of `cargo run`).
#[test]
fn readme_walkthrough_works_against_a_fresh_server() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough -->")
        .expect("README marks its walkthrough");
    let block = &readme[start..];
    let block = &block[block.find("```bash\n").unwrap() + 8..];
    let script = &block[..block.find("```").unwrap()];
    assert!(
        script.contains("cargo run -q --release --") && script.contains("http://127.0.0.1:8080")
    );

    let dir = TempDir::new();
    let server = Server::start(&dir.0, "taskcenter.db");
    assert!(
        server.wait_stdout("created project \"default\" and user \"admin\""),
        "bootstrap message: {:?}",
        server.stdout()
    );
    let script = script
        .replace("cargo run -q --release --", BIN)
        .replace("http://127.0.0.1:8080", &format!("http://{}", server.addr));
    // Whatever happens, the background worker goes with the script, and a
    // wait that never ends fails the test instead of hanging it.
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let out = Command::new("timeout")
        .arg("120")
        .arg("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counts = |r: &Value| r["batch_task_list"][0]["batch_task_status_info"].clone();
    // Running, filtered by group name and state; the tasks, on the worker.
    let running = replies
        .iter()
        .find(|r| r["count"] == 1 && counts(r) == json!({"running": 2}))
        .unwrap_or_else(|| panic!("a list with two running tasks: {stdout}"));
    // The README shows this answer: the same but for the id and the time.
    let shown = &readme[readme.find("the filtered list answers").unwrap()..];
    let shown = &shown[shown.find("```json\n").unwrap() + 8..];
    let mut shown: Value = serde_json::from_str(&shown[..shown.find("```").unwrap()]).unwrap();
    for varies in ["id", "created_at"] {
        shown["batch_task_list"][0][varies] = running["batch_task_list"][0][varies].clone();
    }
    assert_eq!(running, &shown, "the README's sample answer");
    // A walkthrough that works as written warns about nothing.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let tasks = replies
        .iter()
        .find(|r| r["tasks"].is_array())
        .unwrap_or_else(|| panic!("ListTasks: {stdout}"));
    assert_eq!(tasks["count"], 2);
    for t in tasks["tasks"].as_array().unwrap() {
        assert_eq!(
            (t["state"].clone(), t["attempt"].clone()),
            (json!("RUNNING"), json!(1)),
            "{t}"
        );
        assert!(t["worker_id"].is_string(), "{t}");
    }
    assert!(
        replies.iter().any(|r| counts(r) == json!({"stopped": 2})),
        "stopped: {stdout}"
    );
    let last = replies.last().unwrap();
    assert_eq!(
        last,
        &json!({"count": 0, "batch_task_list": []}),
        "{stdout}"
    );
    assert!(
        !stdout.contains("error_code"),
        "no step of the walkthrough failed: {stdout}"
    );
}

#[test]
fn tokens_survive_a_restart_and_bootstrap_happens_once() {
    let dir = TempDir::new();
    let out = cli(
        &dir.0,
        "t.db",
        &["project", "create", "demo", "--id", "demo"],
        None,
    );
    assert!(out.status.success());
    let out = cli(
        &dir.0,
        "t.db",
        &["user", "create", "ops", "--project", "demo"],
        Some("s3cret pass\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "a password read from stdin is not echoed"
    );
    let mut a = Server::start(&dir.0, "t.db");
    assert!(
        !a.stdout().contains("created project"),
        "a non-empty database is not bootstrapped"
    );
    let token = password_token(&a.addr, "ops", "s3cret pass", "demo");
    assert_eq!(
        http(&a.addr, "GET", "/v2/demo/batch-tasks", Some(&token), None).0,
        200
    );
    a.kill();
    let b = Server::start(&dir.0, "t.db");
    let (status, _, body) = http(&b.addr, "GET", "/v2/demo/batch-tasks", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"count": 0, "batch_task_list": []}));
    let out = cli(
        &dir.0,
        "t.db",
        &["token", "issue", "--project", "demo", "--ttl", "1x"],
        None,
    );
    assert!(!out.status.success());
    let out = cli(
        &dir.0,
        "t.db",
        &["token", "issue", "--project", "demo", "--ttl", "90s"],
        None,
    );
    let t = String::from_utf8(out.stdout).unwrap();
    assert_eq!(t.lines().count(), 1, "the token alone on stdout");
    assert_eq!(
        http(&b.addr, "GET", "/v2/demo/batch-tasks", Some(t.trim()), None).0,
        200
    );
}

/// A second database started in the same directory keeps the first one's
/// admin password file and writes its own beside it.
#[test]
fn a_second_database_keeps_the_first_ones_password_file() {
    let dir = TempDir::new();
    let a = Server::start(&dir.0, "a.db");
    assert!(a.wait_stdout("New database"));
    let first = std::fs::read_to_string(dir.0.join("taskcenter-admin-password")).unwrap();
    let b = Server::start(&dir.0, "b.db");
    assert!(
        b.wait_stdout("taskcenter-admin-password.1"),
        "{}",
        b.stdout()
    );
    let second = std::fs::read_to_string(dir.0.join("taskcenter-admin-password.1")).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.0.join("taskcenter-admin-password")).unwrap(),
        first
    );
    assert_ne!(first, second);
    // Each file opens its own database.
    password_token(&a.addr, "admin", first.trim(), "default");
    password_token(&b.addr, "admin", second.trim(), "default");
}

/// Arguments that cannot work are refused before anything is written.
#[test]
fn the_cli_refuses_what_cannot_work_before_writing_anything() {
    let dir = TempDir::new();
    let db = "t.db";
    cli_ok(
        &dir.0,
        db,
        &["project", "create", "one", "--id", "p1"],
        None,
    );
    // A user that does not exist: no master key file is made for it.
    let out = cli(
        &dir.0,
        db,
        &["access-key", "create", "--user", "nobody"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nobody\" does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.0.join("taskcenter.key").exists());
    // An upgrade to the version it is at.
    let out = cli(
        &dir.0,
        db,
        &[
            "service",
            "upgrade",
            "--project",
            "p1",
            "--name",
            "svc",
            "--from",
            "1.0.0",
            "--to",
            "1.0.0",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same version"));
    // No connection at all, no task at all.
    for args in [
        &["serve", "--max-connections", "0"][..],
        &["generate", "--tasks", "0"][..],
    ] {
        let out = cli(&dir.0, db, args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid value '0'"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A worker asked to run at idle priority that cannot lower itself (no
/// `chrt` to be found) refuses to start and says why, instead of running
/// every task at normal priority.
#[test]
fn an_idle_priority_worker_that_cannot_lower_itself_refuses_to_start() {
    let dir = TempDir::new();
    let mut child = Command::new(BIN)
        .current_dir(&dir.0)
        .env("PATH", &dir.0)
        .args(["worker", "--server", "http://127.0.0.1:9", "--token", "w.x"])
        .args(["--exec", "true", "--priority", "idle"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A worker that went on would retry its registration for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the worker went on without its priority");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--priority idle") && stderr.contains("chrt"),
        "{stderr}"
    );
}

/// A PostgreSQL server that cannot be reached: the CLI says why, not only
/// that it waited.
#[test]
fn an_unreachable_database_is_named_with_its_cause() {
    let dir = TempDir::new();
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let out = cli(&dir.0, &url, &["migrate"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not open the database"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

/// Two `serve` processes on one database: a token from one works on the
/// other, and a batch created through one shows in the other's list (whose
/// read model was loaded before) within one second.
fn two_processes(db: &str) {
    let dir = TempDir::new();
    let a = Server::start(&dir.0, db);
    let b = Server::start(&dir.0, db);
    assert!(a.wait_stdout("New database") || b.wait_stdout("New database"));
    let file = dir.0.join("taskcenter-admin-password");
    let pw = std::fs::read_to_string(&file).expect("the bootstrap wrote the admin password");
    let pw = pw.trim().to_owned();
    assert_eq!(pw.len(), 24);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "only its owner may read the password file"
    );
    assert!(
        !a.stdout().contains(&pw) && !b.stdout().contains(&pw),
        "the password never reaches stdout when it is not a terminal"
    );
    let token = password_token(&a.addr, "admin", &pw, "default");
    let out = cli(
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
            "Acme",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Some(token.as_str());
    // A loads its view of the (empty) project first.
    assert_eq!(
        http(&a.addr, "GET", "/v2/default/batch-tasks", t, None).2,
        json!({"count": 0, "batch_task_list": []})
    );
    assert_eq!(
        http(
            &b.addr,
            "POST",
            "/v2/default/video-group",
            t,
            Some(&json!({"id": "g", "video_group_name": "g", "access_type": "cloud"}))
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &b.addr,
            "POST",
            "/v2/default/source",
            t,
            Some(&json!({"id": "s", "video_source_name": "s", "access_type": "cloud", "url": "rtsp://s", "video_group_ids": ["g"]}))
        )
        .0,
        200
    );
    let body = json!({"name": "b1", "service_name": "helmet", "service_version": "1.0.0",
        "batch_input": {"video_source_group": [{"video_source_group_id": "g"}]}, "output": {"event_center": true}});
    assert_eq!(
        http(&b.addr, "POST", "/v2/default/batch-tasks", t, Some(&body)).0,
        200
    );
    let written = std::time::Instant::now();
    // B, which wrote, answers with it at once.
    let (_, _, on_b) = http(&b.addr, "GET", "/v2/default/batch-tasks", t, None);
    assert_eq!(on_b["count"], 1);
    let seen_by_a = loop {
        let (status, _, list) = http(
            &a.addr,
            "GET",
            "/v2/default/batch-tasks?is_paged=false",
            t,
            None,
        );
        assert_eq!(status, 200);
        if list["count"] == 1 {
            break list;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the other process did not see the write within 1 s: {list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // No worker: the task waits, pending or (once a scheduler looked)
    // lacking resources; either way it is counted once.
    let info = &seen_by_a["batch_task_list"][0]["batch_task_status_info"];
    assert!(
        *info == json!({"pending": 1}) || *info == json!({"lack_of_resources": 1}),
        "{info}"
    );
    assert_eq!(seen_by_a["batch_task_list"][0]["video_source_name"], "s");

    // Two more batches: a scheduler's pass that finds no worker moves the
    // tasks of all three in one transaction, and both processes' lists
    // follow every one of them.
    for name in ["b2", "b3"] {
        let mut body = body.clone();
        body["name"] = json!(name);
        assert_eq!(
            http(&b.addr, "POST", "/v2/default/batch-tasks", t, Some(&body)).0,
            200
        );
    }
    let written = std::time::Instant::now();
    for addr in [&a.addr, &b.addr] {
        loop {
            let (_, _, list) = http(
                addr,
                "GET",
                "/v2/default/batch-tasks?is_paged=false",
                t,
                None,
            );
            let infos: Vec<&Value> = list["batch_task_list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| &b["batch_task_status_info"])
                .collect();
            if infos.len() == 3 && infos.iter().all(|i| **i == json!({"lack_of_resources": 1})) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "{addr} did not see all three batches' tasks lacking resources: {list}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn two_serve_processes_share_tokens_and_counts_on_postgres() {
    on_postgres(two_processes);
}

#[test]
fn two_serve_processes_share_tokens_and_counts_on_sqlite() {
    let db = TestDb::sqlite();
    two_processes(&db.url);
}

#[test]
fn import_names_the_first_bad_line_and_loads_nothing() {
    let dir = TempDir::new();
    let good = [
        r#"{"kind":"project","id":"p1","name":"demo"}"#,
        r#"{"kind":"service","project_id":"p1","service_name":"helmet","service_version":"1.0.0","alg_name":"Helmet detection","company":"Acme","deploy_type":"cloud"}"#,
        r#"{"kind":"video_group","project_id":"p1","id":"g1","name":"gate"}"#,
        r#"{"kind":"video_source","project_id":"p1","id":"s1","name":"cam-1","url":"rtsp://x","group_ids":["g1"]}"#,
    ];
    for (bad, line_no, what) in [
        (
            r#"{"kind":"video_source","project_id":"p1","id":"s2","name":"cam-2","url":"rtsp://y","group_ids":["nope"]}"#,
            5,
            "group_ids",
        ),
        (r#"{"kind":"gizmo"}"#, 5, "gizmo"),
        ("not json", 5, "line 5"),
        (
            r#"{"kind":"batch_task","project_id":"p1","id":"0123456789abcdef0123456789abcdef","name":"x","service_name":"helmet","service_version":"1.0.0","created_at":1,"group_ids":["g1"],"tasks":[{"id":"t1","video_source_id":"s1","state":"napping"}]}"#,
            5,
            "tasks.state",
        ),
    ] {
        let mut text = good.join("\n");
        text.push('\n');
        text.push_str(bad);
        text.push_str("\n{\"kind\":\"project\",\"id\":\"p9\",\"name\":\"later\"}\n");
        let file = dir.0.join("dump.ndjson");
        std::fs::write(&file, &text).unwrap();
        let out = cli(&dir.0, "i.db", &["import", file.to_str().unwrap()], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("line {line_no}")) && err.contains(what),
            "{err}"
        );
        let out = cli(&dir.0, "i.db", &["export"], None);
        assert!(out.status.success());
        assert!(
            out.stdout.is_empty(),
            "nothing was loaded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The same file, fixed, loads; stdin works as `-`.
    let mut text = good.join("\n");
    text.push('\n');
    let out = cli(&dir.0, "i.db", &["import", "-"], Some(&text));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("import complete"));
}

#[test]
fn cli_export_import_export_round_trips() {
    let dir = TempDir::new();
    let mut text = String::new();
    for r in fixture() {
        text.push_str(&serde_json::to_string(&r).unwrap());
        text.push('\n');
    }
    // The fixture assumes p1 exists.
    let text = format!("{{\"kind\":\"project\",\"id\":\"p1\",\"name\":\"one\"}}\n{text}");
    assert!(cli(&dir.0, "a.db", &["import", "-"], Some(&text))
        .status
        .success());
    let first = cli(&dir.0, "a.db", &["export"], None);
    assert!(first.status.success());
    assert!(cli(
        &dir.0,
        "b.db",
        &["import", "-"],
        Some(&String::from_utf8_lossy(&first.stdout))
    )
    .status
    .success());
    let second = cli(&dir.0, "b.db", &["export", "--output", "b.ndjson"], None);
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        std::fs::read_to_string(dir.0.join("b.ndjson")).unwrap()
    );
    assert!(first.stdout.len() > 1000);
    // The dump holds password hashes: only its owner may read the file,
    // also when --output overwrites a file that others could read.
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| {
        std::fs::metadata(dir.0.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("b.ndjson"), 0o600);
    std::fs::write(dir.0.join("open.ndjson"), "").unwrap();
    std::fs::set_permissions(
        dir.0.join("open.ndjson"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let third = cli(&dir.0, "b.db", &["export", "--output", "open.ndjson"], None);
    assert!(third.status.success());
    assert_eq!(mode("open.ndjson"), 0o600);
}

/// Credentials taken back through the CLI: tokens listed and revoked, a
/// password changed, a user deleted, a worker revoked.
#[test]
fn the_cli_revokes_what_it_issues() {
    let dir = TempDir::new();
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = cli(&dir.0, "c.db", args, stdin);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(run(&["project", "create", "one", "--id", "p1"], None).0);
    // The database holds password hashes: its files are the owner's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["c.db", "c.db-wal", "c.db-shm"] {
            if let Ok(m) = std::fs::metadata(dir.0.join(f)) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
            } else {
                assert_ne!(f, "c.db", "the database file exists");
            }
        }
    }
    // A vendor or algorithm name the list's filters cannot select is
    // registered, with a warning that says which filter and why.
    let service = |name: &str, alg: &str, company: &str| {
        run(
            &[
                "service",
                "add",
                "--project",
                "p1",
                "--name",
                name,
                "--version",
                "1.0.0",
                "--alg-name",
                alg,
                "--company",
                company,
            ],
            None,
        )
    };
    let (ok, _, err) = service("helmet", "Helmet", "Acme");
    assert!(ok && !err.contains("warning"), "{err}");
    let (ok, _, err) = service("gate", "Gate count", "A");
    assert!(ok, "{err}");
    assert!(
        err.contains("`title` filter") && err.contains("' '"),
        "{err}"
    );
    assert!(
        !err.contains("`manufacturer`"),
        "`manufacturer=A,` selects A: {err}"
    );
    let (ok, _, err) = service("count", "Count", "Acme\tCo");
    assert!(!ok, "a control character is refused outright: {err}");
    let (ok, _, err) = service("count", "Count", "Acme&Co");
    assert!(
        ok && err.contains("`manufacturer` filter") && err.contains("'&'"),
        "{err}"
    );
    assert!(!err.contains("`title`"), "{err}");
    // An empty database URL would be a temporary database lost at exit.
    for empty in ["", "sqlite:", "sqlite://"] {
        let out = cli(&dir.0, empty, &["migrate"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("database URL is empty"),
            "{empty:?}: {err}"
        );
    }
    // A lifetime past a century is refused (its expiry would not print).
    let (ok, _, err) = run(
        &["token", "issue", "--project", "p1", "--ttl", "3000000d"],
        None,
    );
    assert!(!ok && err.contains("longer than 36500d"), "{err}");
    let (ok, token, _) = run(&["token", "issue", "--project", "p1"], None);
    assert!(ok);
    let id = token.trim().split('.').nth(1).unwrap().to_owned();
    let (ok, listed, _) = run(&["token", "list"], None);
    assert!(
        ok && listed
            .lines()
            .any(|l| l.starts_with(&format!("{id}\tp1\t-\t"))),
        "{listed}"
    );
    assert!(!listed.contains(token.trim()), "no secret in the list");
    assert!(run(&["token", "revoke", &id], None).0);
    assert!(!run(&["token", "list"], None).1.contains(&id));
    let (ok, _, err) = run(&["token", "revoke", &id], None);
    assert!(!ok && err.contains("does not exist"), "{err}");

    assert!(
        run(
            &["user", "create", "alice", "--project", "p1"],
            Some("pw-one\n")
        )
        .0
    );
    assert!(run(&["user", "passwd", "alice"], Some("pw-two\n")).0);
    let (ok, _, err) = run(&["user", "passwd", "nobody"], Some("x\n"));
    assert!(!ok && err.contains("does not exist"), "{err}");
    assert!(run(&["user", "delete", "alice"], None).0);
    assert!(!run(&["user", "delete", "alice"], None).0);

    let (ok, cred, _) = run(&["workers", "add", "w1"], None);
    assert!(ok && cred.starts_with("tcw1."));
    assert!(run(&["workers", "revoke", "w1"], None).0);
    let (_, listed, _) = run(&["workers", "list"], None);
    assert!(
        listed.contains("\tw1\t") && listed.trim_end().ends_with("lost"),
        "{listed}"
    );
    assert!(!run(&["workers", "revoke", "w2"], None).0);
}

/// `--log-format json`: every log line on stderr is one JSON object a log
/// shipper can read, with the message and its fields.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let dir = TempDir::new();
    let mut child = Command::new(BIN)
        .current_dir(&dir.0)
        .env("TASKCENTER_DATABASE_URL", "j.db")
        .env("TASKCENTER_ADMIN_PASSWORD", "not-logged")
        .env("RUST_LOG", "debug")
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-scheduler",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in err.lines() {
        let line = line.unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains("not-logged"),
            "the admin password is never logged: {line}"
        );
        let serving = v["fields"]["message"] == "taskcenter serving";
        seen.push(v);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let last = seen.last().expect("serve logged something");
    assert_eq!(last["fields"]["message"], "taskcenter serving", "{seen:?}");
    assert!(
        last["fields"]["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{last}"
    );
}
