//! The web console in a real browser: Chromium, headless, driven over
//! WebDriver (chromedriver) with a few raw HTTP calls. Skips locally when
//! chromedriver is not installed; fails under `CI=true` instead (`.ci/run`
//! installs Debian's `chromium` and `chromium-driver`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{cli_ok, free_port, http, Server, TempDir};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free port, and one headless browser session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn driver_path() -> Option<String> {
    [
        "chromedriver",
        "/usr/bin/chromedriver",
        "/usr/lib/chromium/chromedriver",
    ]
    .into_iter()
    .find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .map(str::to_owned)
}

/// One WebDriver command.
fn wd(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open: read the head, then
    // exactly Content-Length bytes of body.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(
            n > 0,
            "chromedriver closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {head}\n{}", String::from_utf8_lossy(&body)))
}

impl Browser {
    fn start() -> Option<Browser> {
        let Some(path) = driver_path() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the console tests need chromedriver under CI"
            );
            eprintln!("SKIPPED: chromedriver is not installed");
            return None;
        };
        let port = free_port();
        let driver = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                                            "--disable-gpu", "--window-size=1280,900"]}}}});
        let r = wd(port, "POST", "/session", Some(caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Some(Browser {
            driver,
            port,
            session,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        wd(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )["value"]
            .take()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Waits up to `secs` for `script` to return true.
    fn wait(&self, secs: u64, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.js(script) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for `{script}`; the page shows: {}",
                self.js("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn rows(&self) -> Value {
        self.js("return Array.from(document.querySelectorAll('#batches tbody tr td.name')).map(e => e.textContent)")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_batch_page_signs_in_filters_pages_follows_changes_and_renders_names_as_text() {
    let Some(b) = Browser::start() else { return };
    let dir = TempDir::new();
    let db = "console.db";
    let vendor = "<img src=x onerror=window.__x=1>";
    let run = |args: &[&str]| cli_ok(&dir.0, db, args, None);
    run(&["project", "create", "default", "--id", "default"]);
    run(&[
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
        vendor,
    ]);
    let token = run(&["token", "issue", "--project", "default"]);
    cli_ok(
        &dir.0,
        db,
        &["user", "create", "ops", "--project", "default"],
        Some("ops-password-1\n"),
    );
    let server = Server::start_with(&dir.0, db, &["--no-scheduler"]);
    let base = format!("http://{}", server.addr);
    let call = |method: &str, path: &str, body: Value| {
        let (status, _, reply) = http(&server.addr, method, path, Some(&token), Some(&body));
        assert_eq!(status, 200, "{path}: {reply}");
        reply
    };
    for (g, name) in [("north", "North"), ("south", "South")] {
        call(
            "POST",
            "/v2/default/video-group",
            json!({"id": g, "video_group_name": name, "access_type": "cloud"}),
        );
        call(
            "POST",
            "/v2/default/source",
            json!({"id": format!("cam-{g}"), "video_source_name": format!("cam-{g}"),
            "access_type": "cloud", "type": "url", "video_group_ids": [g],
            "type_config": format!("<type>URL</type><config><URL_ADDRESS>rtsp://{g}/live</URL_ADDRESS></config>")}),
        );
    }
    let batch = |name: &str, group: &str| {
        call(
            "POST",
            "/v2/default/batch-tasks",
            json!({"name": name, "service_name": "helmet", "service_version": "1.0.0",
            "batch_input": {"video_source_group": [{"video_source_group_id": group}]}, "config": {}, "output": {"event_center": true}}),
        )
    };
    batch("alpha", "north");
    batch("beta", "south");

    // The page carries a strict Content-Security-Policy.
    let (status, head, _) = http(&server.addr, "GET", "/console/", None, None);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );

    // Sign in.
    b.go(&format!("{base}/"));
    b.wait(10, "return !document.querySelector('#signin-view').hidden");
    b.type_into("#signin input[name=user]", "ops");
    b.type_into("#signin input[name=password]", "ops-password-1");
    b.type_into("#signin input[name=project]", "default");
    b.click("#signin button");
    b.wait(
        10,
        "return document.querySelectorAll('#batches tbody tr').length === 2",
    );
    assert_eq!(
        b.js("return document.querySelector('#total').textContent"),
        json!("2 batch tasks")
    );
    // The token is in no URL.
    assert!(!b
        .js("return location.href")
        .as_str()
        .unwrap()
        .contains("tc1."));

    // Names are text: the vendor shows its characters and makes no element.
    let shown = b.js(
        "return Array.from(document.querySelectorAll('#batches tbody td')).map(e => e.textContent)",
    );
    assert!(
        shown.as_array().unwrap().iter().any(|c| c == vendor),
        "{shown}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#batches img').length"),
        json!(0)
    );
    assert_eq!(b.js("return window.__x === undefined"), json!(true));

    // Filter by group and state through the form: one row, the exact total.
    b.js("const f = document.querySelector('#filters');
          for (const o of f.video_group.options) o.selected = o.value === 'north';
          for (const o of f.task_state.options) o.selected = o.value === 'pending';
          return true");
    b.click("#filters button[type=submit]");
    b.wait(
        10,
        "return document.querySelector('#total').textContent === '1 batch tasks'",
    );
    assert_eq!(b.rows(), json!(["alpha"]));
    assert!(b
        .js("return location.search")
        .as_str()
        .unwrap()
        .contains("video_group=north"));
    // A second view, then back: the first comes back; a reload keeps it.
    b.js("const f = document.querySelector('#filters');
          for (const o of f.video_group.options) o.selected = o.value === 'south';
          return true");
    b.click("#filters button[type=submit]");
    b.wait(
        10,
        "return document.querySelector('#batches tbody td.name')?.textContent === 'beta'",
    );
    b.cmd("POST", "/back", Some(json!({})));
    b.wait(
        10,
        "return document.querySelector('#batches tbody td.name')?.textContent === 'alpha'",
    );
    b.cmd("POST", "/refresh", Some(json!({})));
    b.wait(
        10,
        "return document.querySelector('#batches tbody td.name')?.textContent === 'alpha'",
    );
    assert_eq!(b.rows(), json!(["alpha"]));

    // Pages: one row per page, forward and back, with the exact total.
    b.go(&format!(
        "{base}/console/?page_size=10&sort_name=created_at&order_by=asc"
    ));
    b.wait(
        10,
        "return document.querySelectorAll('#batches tbody tr').length === 2",
    );
    assert_eq!(b.rows(), json!(["alpha", "beta"]));

    // Live: a batch created elsewhere shows up within about a second, and
    // unchanged pages are answered 304 in between.
    batch("gamma", "north");
    b.wait(
        3,
        "return document.querySelector('#total').textContent === '3 batch tasks'",
    );
    assert_eq!(b.rows(), json!(["alpha", "beta", "gamma"]));
    let (status, head, _) = http(
        &server.addr,
        "GET",
        "/v2/default/batch-tasks?is_paged=true",
        Some(&token),
        None,
    );
    assert_eq!(status, 200);
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_owned())
        })
        .expect("an ETag on a list page");
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(s, "GET /v2/default/batch-tasks?is_paged=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Auth-Token: {token}\r\nIf-None-Match: {etag}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 304"), "{out}");

    // Stop a selected batch: the page reports each batch's result.
    b.js("window.confirm = () => true; return true");
    b.click("#batches tbody tr:first-child input[type=checkbox]");
    b.click("[data-action=stop]");
    b.wait(
        10,
        "return document.querySelector('#action-result').textContent.includes('tasks')",
    );

    // Sign out: the token is revoked.
    b.click("#signout");
    b.wait(10, "return !document.querySelector('#signin-view').hidden");
}
