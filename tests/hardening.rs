//! A bad day in production, against the real binary: a login flood, slow
//! and idle connection floods, the connection cap, a full disk under
//! SQLite, a PostgreSQL outage, and what the logs may show at debug level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{cli, cli_ok, free_port, http, Server, TempDir, BIN};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn login_body(user: &str, password: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "default"}}}},
                    "scope": {"project": {"id": "p1"}}}})
}

/// The contract's error body: all six fields, with this code.
fn assert_error_body(body: &Value, code: &str) {
    for f in [
        "error_code",
        "error_msg",
        "detail",
        "params",
        "reason",
        "advice",
    ] {
        assert!(body.get(f).is_some(), "{f} missing in {body}");
    }
    assert_eq!(body["error_code"], code, "{body}");
}

fn login_flood(db: &str) {
    let dir = TempDir::new();
    cli_ok(
        &dir.0,
        db,
        &["project", "create", "one", "--id", "p1"],
        None,
    );
    let server = Server::start(&dir.0, db);
    let pid = server.child.id();
    let addr = server.addr.clone();
    // One wrong login first: the checker threads have their buffers.
    let (status, _, _) = http(
        &addr,
        "POST",
        "/v3/auth/tokens",
        None,
        Some(&login_body("warm", "x")),
    );
    assert_eq!(status, 401);
    let start = rss_kib(pid);
    let peak = Arc::new(Mutex::new(start));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let r = rss_kib(pid);
                let mut p = peak.lock().unwrap();
                *p = (*p).max(r);
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // 64 concurrent wrong passwords and 8 more at the same moment, each for
    // its own user name (the per-user throttle would otherwise refuse most
    // of them unchecked). The queue holds 64: what comes beyond it is
    // refused at once with 503, not queued.
    let barrier = Arc::new(Barrier::new(72));
    let flood: Vec<_> = (0..72)
        .map(|i| {
            let (addr, barrier) = (addr.clone(), barrier.clone());
            std::thread::spawn(move || {
                let body = login_body(&format!("user-{i}"), "wrong");
                barrier.wait();
                let t = Instant::now();
                let r = http(&addr, "POST", "/v3/auth/tokens", None, Some(&body));
                (r, t.elapsed())
            })
        })
        .collect();
    let mut busy = 0;
    for t in flood {
        let ((status, head, body), took) = t.join().unwrap();
        match status {
            401 => {}
            503 => {
                assert_error_body(&body, "VIAS.TC.UNAVAILABLE");
                assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
                assert!(took < Duration::from_millis(500), "a refusal took {took:?}");
                busy += 1;
            }
            other => panic!("a login in the flood answered {other}: {body}"),
        }
    }
    eprintln!("{busy} of 72 concurrent logins refused for a full queue");
    assert!(busy >= 1, "no login was refused for a full queue");
    assert!(busy <= 8, "{busy} refused: the queue holds 64");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let end = rss_kib(pid);
    let peak = *peak.lock().unwrap();
    eprintln!("serve RSS: {start} KiB before, peak {peak} KiB, {end} KiB after the flood");
    assert!(
        peak < start + 100 * 1024,
        "peak RSS {peak} KiB from {start} KiB"
    );
    assert!(end < start + 100 * 1024, "RSS {end} KiB from {start} KiB");
    // The server still logs people in.
    let (status, _, _) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 200);
}

#[test]
fn a_login_flood_keeps_memory_flat_and_refuses_beyond_the_queue_on_sqlite() {
    login_flood("l.db");
}

#[test]
fn a_login_flood_keeps_memory_flat_and_refuses_beyond_the_queue_on_postgres() {
    common::on_postgres(login_flood);
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before the close is fine; keep reading.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn healthz(addr: &str) -> u16 {
    let t = Instant::now();
    let (status, _, _) = http(addr, "GET", "/healthz", None, None);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "healthz took {:?}",
        t.elapsed()
    );
    status
}

#[test]
fn slowloris_and_idle_floods_are_closed_and_clients_are_served_throughout() {
    let dir = TempDir::new();
    let server = Server::start_with(&dir.0, "s.db", &["--header-timeout", "1s"]);
    let addr = server.addr.clone();
    // 300 connections that trickle a request head, one header line every
    // 200 ms, and 300 that send nothing at all.
    let mut trickling: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let opened = Instant::now();
    while opened.elapsed() < Duration::from_millis(800) {
        for (i, s) in trickling.iter_mut().enumerate() {
            let _ = s.write_all(format!("X-Slow-{i}: a\r\n").as_bytes());
        }
        assert_eq!(
            healthz(&addr),
            200,
            "a normal client is answered during the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The head timeout (1 s) closes every one of them.
    for s in trickling.iter_mut().chain(idle.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "a slow or idle connection was kept open"
        );
    }
    assert_eq!(healthz(&addr), 200);
}

#[test]
fn past_the_connection_cap_new_clients_get_a_prompt_503() {
    let dir = TempDir::new();
    let server = Server::start_with(
        &dir.0,
        "c.db",
        &["--max-connections", "20", "--header-timeout", "30s"],
    );
    let addr = server.addr.clone();
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let (status, _, body) = http(&addr, "GET", "/healthz", None, None);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the refusal took {:?}",
        t.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "VIAS.TC.UNAVAILABLE");
    drop(held);
    // The slots come back as the held connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = http(&addr, "GET", "/healthz", None, None);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the cap did not free up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount file systems (not root, or
    /// root without the right to mount, as in some containers).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(common::unique("taskcenter_full"));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir_all(&dir);
        }
        ok.then_some(Tmpfs(dir))
    }
}

/// A small tmpfs and a database file's path on it; `None` where this
/// process may not mount (the case then skips, or fails under CI).
fn database_on_tmpfs() -> Option<(Tmpfs, String)> {
    let mounted = Tmpfs::mount("24m");
    if !common::prerequisite(
        mounted.is_some(),
        "mounting a small tmpfs (root with the right to mount)",
    ) {
        return None;
    }
    let fs = mounted?;
    let db = fs.0.join("t.db").to_str()?.to_owned();
    Some((fs, db))
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills the file system holding `path` with a ballast file, leaving about
/// `leave` bytes free.
fn ballast(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 16 * 1024];
    loop {
        let free = nix_free(path.parent().unwrap());
        if free <= leave {
            break;
        }
        if f.write_all(&chunk[..chunk.len().min((free - leave) as usize)])
            .is_err()
        {
            break;
        }
        f.flush().unwrap();
    }
}

/// Free bytes of the file system holding `dir` (`df`, so the test needs no
/// bindings).
fn nix_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_full_disk_answers_507_and_writes_resume_when_space_is_back_on_sqlite() {
    let Some((fs, db)) = database_on_tmpfs() else {
        return;
    };
    let dir = TempDir::new();
    let run = |args: &[&str]| cli_ok(&dir.0, &db, args, None);
    run(&["project", "create", "one", "--id", "p1"]);
    run(&[
        "service",
        "add",
        "--project",
        "p1",
        "--name",
        "svc",
        "--version",
        "1.0.0",
        "--alg-name",
        "A",
        "--company",
        "C",
    ]);
    let token = run(&["token", "issue", "--project", "p1"]);
    let server = Server::start_with(&dir.0, &db, &["--tick", "100ms", "--wait-limit", "1s"]);
    let addr = server.addr.clone();
    let group = |id: &str| {
        let name: String = format!("{}{}", id.replace('-', ""), "n".repeat(20))
            .chars()
            .take(20)
            .collect();
        let body = json!({"id": id, "video_group_name": name, "access_type": "cloud"});
        http(
            &addr,
            "POST",
            "/v2/p1/video-group",
            Some(&token),
            Some(&body),
        )
    };
    let (status, _, body) = group("g-first");
    assert_eq!(status, 200, "{body}");
    // Leave a little room, then fill it through the API.
    let weight = fs.0.join("ballast");
    ballast(&weight, 256 * 1024);
    let mut stored = vec!["g-first".to_owned()];
    let mut full = None;
    for i in 0..20_000 {
        let id = format!("g{i}");
        let (status, _, body) = group(&id);
        match status {
            200 => stored.push(id),
            507 => {
                assert_error_body(&body, "VIAS.TC.STORAGE_FULL");
                full = Some(id);
                break;
            }
            other => panic!("a write on a full disk answered {other}: {body}"),
        }
    }
    let refused = full.expect("the disk filled up");
    // Still full: refused again, and not ready.
    assert_eq!(group(&refused).0, 507);
    let (status, _, _) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 503, "readyz reports the failing write path");
    // Space back: writes work again without a restart.
    std::fs::remove_file(&weight).unwrap();
    let (status, _, body) = group(&refused);
    assert_eq!(status, 200, "{body}");
    stored.push(refused);
    let (status, _, _) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 200);
    // And the scheduler's ticks: a batch's task is placed on a worker.
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v2/p1/source",
        Some(&token),
        Some(
            &json!({"id": "cam", "video_source_name": "cam", "access_type": "cloud", "type": "url",
                     "video_group_ids": ["g-first"],
                     "type_config": "<type>URL</type><config><URL_ADDRESS>rtsp://cam/live</URL_ADDRESS></config>"}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v2/p1/batch-tasks",
        Some(&token),
        Some(
            &json!({"name": "after-full", "service_name": "svc", "service_version": "1.0.0",
                     "batch_input": {"video_source_group": [{"video_source_group_id": "g-first"}]},
                     "config": {}, "output": {"event_center": true}}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, list) = http(&addr, "GET", "/v2/p1/batch-tasks", Some(&token), None);
        // No worker exists: the scheduler moves the task on to
        // lack_of_resources once it has waited a second.
        if list["batch_task_list"][0]["batch_task_status_info"]["lack_of_resources"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not move the task: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every acknowledged group is there, once.
    let (_, _, list) = http(
        &addr,
        "GET",
        "/v2/p1/video-group/groups?is_paged=false",
        Some(&token),
        None,
    );
    let listed: Vec<&str> = list["video_group_list"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|g| g["video_group_id"].as_str().unwrap())
        .collect();
    for id in &stored {
        assert_eq!(listed.iter().filter(|l| *l == id).count(), 1, "{id}");
    }
    drop(server);
    let check = Command::new("sqlite3")
        .arg(&db)
        .arg("pragma integrity_check")
        .output();
    match check {
        Ok(o) => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok"),
        Err(_) => {
            // No sqlite3 shell: the binary's own store reads every table.
            run(&[
                "export",
                "--output",
                dir.0.join("dump.ndjson").to_str().unwrap(),
            ]);
        }
    }
}

/// The PostgreSQL server binaries (`initdb`, `pg_ctl`), if installed.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A PostgreSQL cluster of the test's own on a free port, run as the
/// `postgres` user when the test runs as root (the server refuses root).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn pg(&self, tool: &str, args: &[&str]) -> bool {
        let tool = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        c.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn init() -> Option<Cluster> {
        let bin = pg_bin()?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = std::env::temp_dir().join(common::unique("taskcenter_pg"));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            assert!(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let c = Cluster {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = c.dir.join("data");
        assert!(
            c.pg(
                "initdb",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres"
                ]
            ),
            "initdb"
        );
        Some(c)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        assert!(
            self.pg(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "start"
                ]
            ),
            "pg_ctl start"
        );
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        self.pg(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_postgres_outage_answers_503_fast_and_everything_recovers() {
    let Some(cluster) = Cluster::init() else {
        assert!(
            !common::in_ci(),
            "the outage test needs the PostgreSQL server binaries under CI"
        );
        eprintln!("skipped: no PostgreSQL server binaries");
        return;
    };
    cluster.start();
    let db = cluster.url();
    let dir = TempDir::new();
    let run = |args: &[&str]| cli_ok(&dir.0, &db, args, None);
    run(&["project", "create", "one", "--id", "p1"]);
    let token = run(&["token", "issue", "--project", "p1"]);
    let server = Server::start(&dir.0, &db);
    let addr = server.addr.clone();
    let group = |id: &str| {
        let body =
            json!({"id": id, "video_group_name": id.replace('-', ""), "access_type": "cloud"});
        let t = Instant::now();
        let (status, _, body) = http(
            &addr,
            "POST",
            "/v2/p1/video-group",
            Some(&token),
            Some(&body),
        );
        (status, body, t.elapsed())
    };
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let id = format!("before{i}");
        assert_eq!(group(&id).0, 200);
        acknowledged.push(id);
    }

    cluster.stop();
    let down = Instant::now();
    let mut refused = Vec::new();
    let mut i = 0;
    while down.elapsed() < Duration::from_secs(20) {
        let t = Instant::now();
        let (status, _, body) = http(&addr, "GET", "/readyz", None, None);
        let took = t.elapsed();
        assert_eq!(status, 503, "readyz during the outage: {body}");
        assert!(took < Duration::from_millis(1500), "readyz took {took:?}");
        let id = format!("during{i}");
        i += 1;
        let (status, body, took) = group(&id);
        assert_eq!(status, 503, "a write during the outage: {body}");
        assert_error_body(&body, "VIAS.TC.UNAVAILABLE");
        assert!(
            took < Duration::from_secs(5),
            "a write during the outage took {took:?}"
        );
        refused.push(id);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(refused.len() >= 3, "{refused:?}");

    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http(&addr, "GET", "/readyz", None, None).0 != 200 {
        assert!(Instant::now() < deadline, "readyz did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Writes work again; what was refused can be sent again, once.
    for id in &refused {
        let (status, body, _) = group(id);
        assert_eq!(status, 200, "{id}: {body}");
        acknowledged.push(id.clone());
    }
    let listed = group_ids(&addr, &token);
    acknowledged.sort();
    assert_eq!(listed, acknowledged, "nothing lost, nothing doubled");
}

/// The ids of project `p1`'s video groups, sorted.
fn group_ids(addr: &str, token: &str) -> Vec<String> {
    let (status, _, list) = http(
        addr,
        "GET",
        "/v2/p1/video-group/groups?is_paged=false",
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{list}");
    let mut ids: Vec<String> = list["video_group_list"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|g| g["video_group_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `serve` at `RUST_LOG=debug`, its stdout and stderr kept whole.
fn debug_serve(dir: &Path, db: &str, envs: &[(&str, &str)]) -> (Child, String, Arc<Mutex<String>>) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("TASKCENTER_DATABASE_URL", db)
        .env("RUST_LOG", "debug")
        .args(["serve", "--listen", "127.0.0.1:0", "--tick", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let (logs, tx) = (logs.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(i) = line.find("addr=") {
                    let _ = tx.send(
                        line[i + 5..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    );
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve printed its address");
    (child, addr, logs)
}

fn no_secret_in_debug_logs(db: &str) {
    let dir = TempDir::new();
    let admin_pw = "admin-pw-4d1c9e";
    let master = "6b1f0c3e9a7d5b2f8e4c1a0d9b7f5e3c2a1b0f9e8d7c6b5a4f3e2d1c0b9a8f7e";
    let (mut child, addr, logs) = debug_serve(
        &dir.0,
        db,
        &[
            ("TASKCENTER_ADMIN_PASSWORD", admin_pw),
            ("TASKCENTER_MASTER_KEY", master),
        ],
    );
    let token = common::process::password_token(&addr, "admin", admin_pw, "default");
    let wrong = "wrong-pw-7e3a55";
    let (status, _, _) = http(
        &addr,
        "POST",
        "/v3/auth/tokens",
        None,
        Some(&login_body("admin", wrong)),
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(&addr, "GET", "/v2/default/batch-tasks", Some(&token), None);
    assert_eq!(status, 200);
    let out = cli(&dir.0, db, &["workers", "add", "w1"], None);
    let worker = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(worker.starts_with("tcw"), "{worker}");
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /worker/v1/register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {worker}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    // The token revoked, and used once more.
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "DELETE /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Auth-Token: {token}\r\nX-Subject-Token: {token}\r\n\r\n"
    )
    .unwrap();
    let _ = s.read_to_string(&mut String::new());
    std::thread::sleep(Duration::from_millis(600));
    let (status, _, _) = http(&addr, "GET", "/v2/default/batch-tasks", Some(&token), None);
    assert_eq!(status, 401);
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(100));
    let logs = logs.lock().unwrap().clone();
    assert!(logs.lines().count() > 10, "serve logged at debug: {logs}");
    let token_secret = token.rsplit('.').next().unwrap();
    let worker_secret = worker.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("the admin password", admin_pw),
        ("a wrong password", wrong),
        ("a token", token.as_str()),
        ("a token's secret", token_secret),
        ("a worker credential's secret", worker_secret),
        ("the master key", master),
    ] {
        assert!(!logs.contains(secret), "{what} is in the log:\n{logs}");
    }
}

#[test]
fn no_secret_in_debug_logs_on_sqlite() {
    no_secret_in_debug_logs("d.db");
}

#[test]
fn no_secret_in_debug_logs_on_postgres() {
    common::on_postgres(no_secret_in_debug_logs);
}

/// Sends `bytes` as they are and reads the answer to the end.
fn raw_exchange(addr: &str, bytes: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn requests_the_http_layer_cannot_read_get_the_error_body() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, "h.db");
    let addr = server.addr.clone();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..6000)
            .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(80)))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("a bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400, "VIAS.TC.BAD_REQUEST"),
        ("raw bytes in the path", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "VIAS.TC.BAD_REQUEST"),
        (
            "conflicting lengths",
            b"POST /v2/p1/video-group HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
            "VIAS.TC.BAD_REQUEST",
        ),
        ("a URI too long", long_uri.into_bytes(), 414, "VIAS.TC.URI_TOO_LONG"),
        ("headers too large", big_headers.into_bytes(), 431, "VIAS.TC.HEADERS_TOO_LARGE"),
    ];
    for (what, bytes, status, code) in cases {
        let (got, body) = raw_exchange(&addr, &bytes);
        assert_eq!(got, status, "{what}: {body}");
        assert_error_body(&body, code);
    }
    // A normal request on a new connection is unaffected.
    assert_eq!(healthz(&addr), 200);
}

/// A NUL in a login's user name (which PostgreSQL cannot even compare) is an
/// unknown user: 401, not a server error.
fn nul_in_a_login(db: &str) {
    let dir = TempDir::new();
    cli_ok(
        &dir.0,
        db,
        &["project", "create", "one", "--id", "p1"],
        None,
    );
    let server = Server::start(&dir.0, db);
    let (status, _, body) = http(
        &server.addr,
        "POST",
        "/v3/auth/tokens",
        None,
        Some(&login_body("a\u{0}b", "x\u{0}y")),
    );
    assert_eq!(status, 401, "{body}");
    assert_error_body(&body, "VIAS.00010005");
}

#[test]
fn a_nul_in_a_login_is_an_unknown_user_on_sqlite() {
    nul_in_a_login("n.db");
}

#[test]
fn a_nul_in_a_login_is_an_unknown_user_on_postgres() {
    common::on_postgres(nul_in_a_login);
}

/// Runs the CLI and waits at most `limit` for it to end (`None`: it did
/// not, and was killed).
fn cli_within(dir: &Path, db: &str, args: &[&str], limit: Duration) -> Option<(bool, String)> {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env("TASKCENTER_DATABASE_URL", db)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.success(), err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A database that turns read-only under a running `serve` (a failover
/// that left it on a standby, or a database set read-only): writes answer
/// 503 and keep nothing, reads go on, `/readyz` says why, an export still
/// works, a new `serve` refuses to start, and writes resume once the
/// database takes them again, without a restart.
fn read_only_database(db: &str) {
    let dir = TempDir::new();
    let run = |args: &[&str]| cli_ok(&dir.0, db, args, None);
    run(&["project", "create", "one", "--id", "p1"]);
    let token = run(&["token", "issue", "--project", "p1"]);
    let server = Server::start(&dir.0, db);
    let addr = server.addr.clone();
    let group = |id: &str| {
        let body = json!({"id": id, "video_group_name": id, "access_type": "cloud"});
        http(
            &addr,
            "POST",
            "/v2/p1/video-group",
            Some(&token),
            Some(&body),
        )
    };
    let groups = || group_ids(&addr, &token);
    assert_eq!(group("before").0, 200);
    common::set_read_only(db, true);

    // The pool finds its connections gone (503: unreachable), then opens
    // read-only ones.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        i += 1;
        let (status, head, body) = group(&format!("ro{i}"));
        assert_eq!(status, 503, "a write on a read-only database: {body}");
        assert_error_body(&body, "VIAS.TC.UNAVAILABLE");
        assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
        if body["detail"].as_str().unwrap().contains("read-only") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write was refused as read-only: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(groups(), ["before"], "nothing of a refused write was kept");
    let (status, _, body) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    let (ok, err) = cli_within(&dir.0, db, &["export"], Duration::from_secs(60))
        .expect("export on a read-only database ended");
    assert!(ok, "export on a read-only database: {err}");
    let (ok, err) = cli_within(
        &dir.0,
        db,
        &["serve", "--listen", "127.0.0.1:0"],
        Duration::from_secs(60),
    )
    .expect("a serve on a read-only database refused to start");
    assert!(!ok);
    assert!(err.contains("takes no writes"), "{err}");

    common::set_read_only(db, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = group("after");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not resume: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(groups(), ["after", "before"]);
    let (status, _, body) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_read_only_database_answers_503_and_writes_resume_on_postgres() {
    common::on_postgres(read_only_database);
}

/// A SQLite file on a file system that turned read-only (as one does after
/// a disk error): `serve` refuses to start at once and says why, and starts
/// once the file system is writable again.
#[test]
fn a_read_only_file_system_stops_serve_from_starting_on_sqlite() {
    let Some((fs, db)) = database_on_tmpfs() else {
        return;
    };
    let dir = TempDir::new();
    cli_ok(
        &dir.0,
        &db,
        &["project", "create", "kept", "--id", "p1"],
        None,
    );
    let remount = |how: &str| {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&fs.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {how}");
    };
    remount("ro");
    let (ok, err) = cli_within(
        &dir.0,
        &db,
        &["serve", "--listen", "127.0.0.1:0"],
        Duration::from_secs(10),
    )
    .expect("serve on a read-only file system refused to start at once");
    assert!(!ok);
    // Depending on what SQLite finds beside the file, it cannot open it for
    // writing, or opens it and refuses the first write.
    assert!(
        err.contains("takes no writes")
            || (err.contains("could not open the database") && err.contains("read-only?")),
        "{err}"
    );
    remount("rw");
    let server = Server::start(&dir.0, &db);
    let (status, _, _) = http(&server.addr, "GET", "/readyz", None, None);
    assert_eq!(status, 200);
}
