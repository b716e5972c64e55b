//! Entry points for fuzzing the parsers that take untrusted input: the list
//! query, request bodies and paths through the whole router, dump records
//! through the importer, and the signature header. The `fuzz/` targets call
//! these; `tests/fuzz_corpus.rs` runs every input of the checked-in corpus
//! through them on every test run, so a crash once found stays fixed.
//!
//! Each entry point panics when it finds a defect: a panic inside the code
//! under test, or an answer of 500 or more (a client's input must only ever
//! be refused with a 4xx and the error body).
// A harness reports a defect by panicking, and its own set-up failing is
// one too: `expect` is how it says so.
#![allow(clippy::expect_used)]

use crate::api::{self, AppState};
use crate::domain::dump::DumpRecord;
use crate::domain::list::ListBatchTasksParams;
use crate::domain::query::QueryParams;
use crate::domain::DeployType;
use crate::identity::signature;
use crate::store::prelude::*;
use crate::store::{self, Importer, NewService};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The batch-task list's query string.
pub fn list_query(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let _ = ListBatchTasksParams::parse(Some(&raw));
    let _ = QueryParams::parse_with_lists(Some(&raw), &["a", "b", "name"], &["a"]);
}

/// An `Authorization: SDK-HMAC-SHA256 …` header and the other signed parts.
pub fn signature_header(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    if let Ok(a) = signature::Authorization::parse(&raw) {
        let _ = a.signed_headers.len();
    }
    let _ = signature::canonical_uri(&raw);
    let _ = signature::canonical_query(Some(&raw));
    let _ = signature::parse_sdk_date(&raw);
}

/// The routes a request is fuzzed on: the first input byte picks one, the
/// rest is its body (or, for a GET, its query string).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v2/p1/batch-tasks"),
    ("PUT", "/v2/p1/batch-tasks/b1"),
    ("GET", "/v2/p1/batch-tasks"),
    ("POST", "/v2/p1/services/svc/tasks"),
    ("PUT", "/v2/p1/tasks/t1"),
    ("GET", "/v2/p1/tasks"),
    ("POST", "/v2/p1/source"),
    ("PUT", "/v2/p1/source/s1"),
    ("GET", "/v2/p1/source/sources"),
    ("POST", "/v2/p1/video-group"),
    ("PUT", "/v2/p1/video-group/g1"),
    ("GET", "/v2/p1/video-group/groups"),
    ("GET", "/v2/p1/algorithm/services/user"),
    ("POST", "/v2/p1/algorithm/svc-id/deploy"),
    ("POST", "/v2/p1/edge-pools"),
    ("GET", "/v2/p1/edge-pools"),
    ("POST", "/v3/auth/tokens"),
    ("PUT", "/v2/p1/batch-tasks/b1/action/start"),
];

/// A router over a SQLite database of its own, with a project `p1`, a
/// service, a group `g1` and a source `s1`, and a token for `p1`.
pub struct ApiHarness {
    rt: tokio::runtime::Runtime,
    app: Option<api::App>,
    token: String,
    file: PathBuf,
}

impl ApiHarness {
    pub fn new() -> ApiHarness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let file = std::env::temp_dir().join(format!(
            "taskcenter-fuzz-{}-{}.db",
            std::process::id(),
            crate::domain::random_hex(8).unwrap_or_default()
        ));
        let (app, token) = rt.block_on(async {
            let s = store::open_sql(file.to_str().expect("a UTF-8 temporary path"))
                .await
                .expect("the fuzz database opens");
            s.migrate().await.expect("migrations");
            let p = s.create_project("p1", "fuzz", 1).await.expect("project");
            s.create_service(
                p.pk,
                &NewService {
                    id: "svc-id".into(),
                    service_name: "svc".into(),
                    service_version: "1.0.0".into(),
                    alg_name: "A".into(),
                    company: "C".into(),
                    deploy_type: DeployType::Cloud,
                    deployed: true,
                    description: String::new(),
                    created_at: 1,
                },
            )
            .await
            .expect("service");
            let token = crate::identity::issue_token(&*s, p.pk, None, Duration::from_secs(86_400))
                .await
                .expect("token")
                .token;
            let app = api::app(AppState::new(
                s as Arc<dyn Store>,
                Duration::from_secs(86_400),
                Duration::from_secs(15),
            ));
            (app, token)
        });
        let h = ApiHarness {
            rt,
            app: Some(app),
            token,
            file,
        };
        for (route, body) in [
            (
                9u8,
                r#"{"id":"g1","video_group_name":"g1","access_type":"cloud"}"#,
            ),
            (
                6,
                r#"{"id":"s1","video_source_name":"s1","access_type":"cloud","type":"url","video_group_ids":["g1"],"type_config":"<type>URL</type><config><URL_ADDRESS>rtsp://s1/live</URL_ADDRESS></config>"}"#,
            ),
        ] {
            let mut input = vec![route];
            input.extend_from_slice(body.as_bytes());
            assert!(h.request(&input).is_success(), "seeding the fuzz database");
        }
        h
    }

    /// Sends the request `data` describes; panics on an answer of 500 or
    /// more, or on a 4xx without the contract's error body.
    pub fn request(&self, data: &[u8]) -> StatusCode {
        let Some((&pick, rest)) = data.split_first() else {
            return StatusCode::OK;
        };
        let (method, path) = ROUTES[usize::from(pick) % ROUTES.len()];
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let mut b = Request::builder()
            .header("x-auth-token", &self.token)
            .header("content-type", "application/json");
        let body = if method == Method::GET {
            b = b.uri(format!("{path}?{}", query_text(rest)));
            Body::empty()
        } else {
            b = b.uri(path);
            Body::from(rest.to_vec())
        };
        let req = b.method(method.clone()).body(body).expect("a request");
        let (status, bytes) = self.rt.block_on(async {
            let router = self.app.as_ref().expect("a router").router.clone();
            let resp = router.oneshot(req).await.expect("the router answers");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .expect("a body");
            (status, bytes)
        });
        assert!(
            !status.is_server_error(),
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if status.is_client_error() {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).expect("a 4xx carries a JSON body");
            assert!(v["error_code"].is_string(), "{v}");
        }
        status
    }
}

impl Default for ApiHarness {
    fn default() -> Self {
        ApiHarness::new()
    }
}

impl std::fmt::Debug for ApiHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiHarness")
            .field("file", &self.file)
            .finish()
    }
}

impl Drop for ApiHarness {
    fn drop(&mut self) {
        // The store's connections go back to their pool on the runtime.
        let rt = self.rt.enter();
        drop(self.app.take());
        drop(rt);
        for suffix in ["", "-wal", "-shm"] {
            let mut f = self.file.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Input bytes as a query string: the bytes that structure a query kept,
/// every other byte percent-encoded, so any input makes a valid URI.
fn query_text(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-_.~&=,%+".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A dump's lines fed to one import that is never committed, over a
/// database of its own with a project `p1`.
pub struct DumpHarness {
    rt: tokio::runtime::Runtime,
    importer: Option<Box<dyn Importer>>,
    line: u64,
    file: PathBuf,
}

impl DumpHarness {
    pub fn new() -> DumpHarness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let file = std::env::temp_dir().join(format!(
            "taskcenter-fuzz-dump-{}-{}.db",
            std::process::id(),
            crate::domain::random_hex(8).unwrap_or_default()
        ));
        let importer = rt.block_on(async {
            let s = store::open_sql(file.to_str().expect("a UTF-8 temporary path"))
                .await
                .expect("the fuzz database opens");
            s.migrate().await.expect("migrations");
            s.create_project("p1", "fuzz", 1).await.expect("project");
            s.begin_import().await.expect("an import")
        });
        DumpHarness {
            rt,
            importer: Some(importer),
            line: 0,
            file,
        }
    }

    /// One line of a dump: parsed, then handed to the importer (which may
    /// refuse it; it must not panic). Whether the importer took it.
    pub fn line(&mut self, data: &[u8]) -> bool {
        let Ok(record) = serde_json::from_slice::<DumpRecord>(data) else {
            return false;
        };
        self.line += 1;
        let line = self.line;
        match self.importer.as_mut() {
            Some(imp) => self.rt.block_on(imp.put(line, record)).is_ok(),
            None => false,
        }
    }
}

impl Default for DumpHarness {
    fn default() -> Self {
        DumpHarness::new()
    }
}

impl std::fmt::Debug for DumpHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpHarness")
            .field("file", &self.file)
            .finish()
    }
}

impl Drop for DumpHarness {
    fn drop(&mut self) {
        // The import is rolled back with its transaction, on the runtime.
        let rt = self.rt.enter();
        drop(self.importer.take());
        drop(rt);
        for suffix in ["", "-wal", "-shm"] {
            let mut f = self.file.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
}
