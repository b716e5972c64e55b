//! Running the real binary in tests: temporary directories, one-shot CLI
//! calls, `serve` on an ephemeral port, and a minimal HTTP client.
#![allow(dead_code)]

use super::unique;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_taskcenter");

pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("taskcenter_cli"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn cli(
    dir: &Path,
    db: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut c = Command::new(BIN)
        .current_dir(dir)
        .env("TASKCENTER_DATABASE_URL", db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    c.wait_with_output().unwrap()
}

/// Runs a CLI command that must succeed; its stdout, trimmed.
pub(crate) fn cli_ok(dir: &Path, db: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(dir, db, args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) struct Server {
    pub child: Child,
    pub addr: String,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `serve` on an ephemeral port and waits until it listens.
    pub(crate) fn start(dir: &Path, db: &str) -> Server {
        Server::start_with(dir, db, &[])
    }

    /// `serve` with extra flags.
    pub(crate) fn start_with(dir: &Path, db: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env("TASKCENTER_DATABASE_URL", db)
            .env("RUST_LOG", "info")
            .arg("serve")
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 {
            if let Some(i) = line.find("addr=") {
                addr = Some(line[i + 5..].split_whitespace().next().unwrap().to_owned());
                break;
            }
            line.clear();
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stdout.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Server {
            child,
            addr: addr.expect("serve printed its address"),
            stdout,
        }
    }

    /// What the server wrote to stdout so far (the bootstrap message comes
    /// before it starts listening).
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits up to five seconds for `pat` on stdout.
    pub(crate) fn wait_stdout(&self, pat: &str) -> bool {
        for _ in 0..100 {
            if self.stdout().contains(pat) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 exchange, so the tests need no client library.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("X-Auth-Token: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (
        status,
        head.to_owned(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

pub(crate) fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A TCP port free right now on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn password_token(addr: &str, user: &str, password: &str, project: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "default"}}}},
                               "scope": {"project": {"id": project}}}});
    let (status, head, _) = http(addr, "POST", "/v3/auth/tokens", None, Some(&body));
    assert_eq!(status, 201, "{head}");
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-subject-token:")
                .then(|| l[16..].trim().to_owned())
        })
        .unwrap()
}

/// The executor: what it does depends on the batch's config.
pub(crate) const EXEC: &str = r#"#!/bin/sh
echo "$TASKCENTER_TASK_ID $TASKCENTER_ATTEMPT $TASKCENTER_RUN_ID" >> starts.log
case "$TASKCENTER_CONFIG" in
  *brief*) exec sleep 1 ;;
  *sleep*) exec sleep 30 ;;
  *fail*) exit 3 ;;
  *) exit 0 ;;
esac
"#;

pub(crate) struct Env {
    pub dir: TempDir,
    pub db: String,
    pub server: Server,
    pub token: String,
}

impl Env {
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = cli(&self.dir.0, &self.db, args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, head, body) = http(
            &self.server.addr,
            method,
            path,
            Some(&self.token),
            body.as_ref(),
        );
        assert_eq!(status, 200, "{method} {path}: {head} {body}");
        body
    }

    pub(crate) fn worker(&self, name: &str, kind: &str, exec: &str) -> Worker {
        self.worker_with(name, kind, exec, 20)
    }

    pub(crate) fn worker_with(&self, name: &str, kind: &str, exec: &str, slots: u32) -> Worker {
        self.worker_args(name, kind, exec, slots, &[])
    }

    /// A worker with `extra` flags besides the usual ones.
    pub(crate) fn worker_args(
        &self,
        name: &str,
        kind: &str,
        exec: &str,
        slots: u32,
        extra: &[&str],
    ) -> Worker {
        let credential = self.cli(&["workers", "add", name]);
        let slots = slots.to_string();
        Command::new(BIN)
            .current_dir(&self.dir.0)
            .args([
                "worker",
                "--server",
                &format!("http://{}", self.server.addr),
                "--token",
                &credential,
                "--slots",
                &slots,
                "--type",
                kind,
                "--grace",
                "1s",
                "--exec",
                exec,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Worker)
            .unwrap()
    }

    pub(crate) fn batch(
        &self,
        name: &str,
        service: (&str, &str),
        group: &str,
        sources: &[&str],
        mode: &str,
    ) -> String {
        let list: Vec<Value> = sources
            .iter()
            .map(|s| json!({"video_source_id": s}))
            .collect();
        let r = self.call(
            "POST",
            "/v2/default/batch-tasks",
            Some(json!({
                "name": name, "service_name": service.0, "service_version": service.1,
                "batch_input": {"video_source_group": [{"video_source_group_id": group, "video_source_list": list}]},
                "config": {"mode": mode}, "output": {"event_center": true}})),
        );
        assert_eq!(r["succeed_count"], sources.len(), "{r}");
        r["id"].as_str().unwrap().to_owned()
    }

    pub(crate) fn tasks_of(&self, batch: &str) -> Vec<String> {
        let r = self.call(
            "GET",
            &format!("/v2/default/tasks?batch_id={batch}&page_size=100"),
            None,
        );
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The task as ShowTask has it; `Null` once it is gone.
    pub(crate) fn task(&self, id: &str) -> Value {
        let (status, _, body) = http(
            &self.server.addr,
            "GET",
            &format!("/v2/default/tasks/{id}"),
            Some(&self.token),
            None,
        );
        match status {
            200 => body,
            400 => Value::Null,
            s => panic!("ShowTask answered {s}: {body}"),
        }
    }

    /// Waits until every task is in `state` (`None`: gone).
    pub(crate) fn wait(&self, ids: &[String], state: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now: Vec<Value> = ids.iter().map(|id| self.task(id)).collect();
            let ok = now.iter().all(|t| match state {
                Some(s) => t["state"] == s,
                None => t.is_null(),
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {state:?}: {}",
                serde_json::to_string(&now).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Env {
    /// `serve` on a fresh directory with `extra` flags, a token for
    /// `default`, and the executor script written beside it.
    pub(crate) fn start(db: &str, extra: &[&str]) -> Env {
        let dir = TempDir::new();
        let server = Server::start_with(&dir.0, db, extra);
        let out = cli(
            &dir.0,
            db,
            &["token", "issue", "--project", "default"],
            None,
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        std::fs::write(dir.0.join("exec.sh"), EXEC).unwrap();
        Env {
            dir,
            db: db.to_owned(),
            server,
            token,
        }
    }

    /// `(task id, attempt)` of every executor start, in order.
    pub(crate) fn starts(&self) -> Vec<(String, i64)> {
        self.runs().into_iter().map(|(id, a, _)| (id, a)).collect()
    }

    /// `(task id, attempt, TASKCENTER_RUN_ID)` of every executor start.
    pub(crate) fn runs(&self) -> Vec<(String, i64, String)> {
        std::fs::read_to_string(self.dir.0.join("starts.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut f = l.split(' ');
                let id = f.next().unwrap().to_owned();
                let attempt = f.next().unwrap().parse().unwrap();
                (id, attempt, f.next().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Registers the service, group and sources the lifecycle tests use:
    /// `helmet` 1.0.0 (cloud), group `g`, sources `c1`..`cN`.
    pub(crate) fn catalogue(&self, sources: u32) {
        self.cli(&[
            "service",
            "add",
            "--project",
            "default",
            "--name",
            "helmet",
            "--version",
            "1.0.0",
            "--alg-name",
            "Algo",
            "--company",
            "Acme",
            "--deploy-type",
            "cloud",
        ]);
        self.call(
            "POST",
            "/v2/default/video-group",
            Some(json!({"id": "g", "video_group_name": "gate", "access_type": "cloud"})),
        );
        for i in 1..=sources {
            self.call(
                "POST",
                "/v2/default/source",
                Some(json!({"id": format!("c{i}"), "video_source_name": format!("cam-{i}"), "access_type": "cloud", "url": format!("file:///videos/{i}.mp4"), "video_group_ids": ["g"]})),
            );
        }
    }

    /// Waits up to `secs` for `done` over the tasks' ShowTask bodies.
    pub(crate) fn wait_for(
        &self,
        ids: &[String],
        secs: u64,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let now: Vec<Value> = ids.iter().map(|id| self.task(id)).collect();
            if done(&now) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}: {}",
                serde_json::to_string(&now).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The executor command line.
    pub(crate) fn exec(&self) -> String {
        format!("sh {}", self.dir.0.join("exec.sh").display())
    }
}

/// A `taskcenter worker` process, killed (SIGKILL) when dropped, so a
/// failing test never leaves one retrying for ever.
pub(crate) struct Worker(pub Child);

impl Worker {
    /// SIGKILL, and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
