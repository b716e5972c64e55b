//! Running the real binary in tests: temporary directories, one-shot CLI
//! calls, `serve` on an ephemeral port, and a minimal HTTP client.
#![allow(dead_code)]

use super::unique;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_taskcenter");

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
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

pub fn cli(dir: &Path, db: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
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

pub struct Server {
    pub child: Child,
    pub addr: String,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `serve` on an ephemeral port and waits until it listens.
    pub fn start(dir: &Path, db: &str) -> Server {
        Server::start_with(dir, db, &[])
    }

    /// `serve` with extra flags.
    pub fn start_with(dir: &Path, db: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env("TASKCENTER_DATABASE_URL", db)
            .env("RUST_LOG", "info")
            .args(["serve", "--listen", "127.0.0.1:0"])
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
                addr = Some(line[i + 5..].split_whitespace().next().unwrap().to_string());
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
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits up to five seconds for `pat` on stdout.
    pub fn wait_stdout(&self, pat: &str) -> bool {
        for _ in 0..100 {
            if self.stdout().contains(pat) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn kill(&mut self) {
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
pub fn http(
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
        rest.to_string()
    };
    (
        status,
        head.to_string(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

pub fn dechunk(mut s: &str) -> String {
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

pub fn password_token(addr: &str, user: &str, password: &str, project: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "default"}}}},
                               "scope": {"project": {"id": project}}}});
    let (status, head, _) = http(addr, "POST", "/v3/auth/tokens", None, Some(&body));
    assert_eq!(status, 201, "{head}");
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-subject-token:")
                .then(|| l[16..].trim().to_string())
        })
        .unwrap()
}
