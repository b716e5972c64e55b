//! Access keys (AK/SK): requests signed as Huawei's SDKs sign them. Router
//! cases (no socket) on both backends, signed here with the crate's own
//! signing functions; then a real `serve` driven by Huawei's Python SDK core
//! (`huaweicloudsdkcore`), a signer nobody here wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::process::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use taskcenter::api::{self, AppState};
use taskcenter::identity::access_key::{self, AccessKeys, MasterKey};
use taskcenter::identity::signature::{self, Authorization, SignedRequest};
#[allow(unused_imports)]
use taskcenter::store::prelude::*;

/// A `YYYYMMDDTHHMMSSZ` date `offset_secs` from now.
fn sdk_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let at = if offset_secs < 0 {
        now - shift
    } else {
        now + shift
    };
    // 2026-11-29T05:31:12Z → 20261129T053112Z
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace(['-', ':'], "")
}

/// A request signed with `sk`: `host`, `content-type`, `x-sdk-date` and
/// `extra` headers, all signed.
struct Signed<'a> {
    method: &'a str,
    uri: &'a str,
    body: Vec<u8>,
    ak: &'a str,
    sk: &'a str,
    date: String,
    extra: Vec<(&'a str, &'a str)>,
}

impl<'a> Signed<'a> {
    fn new(method: &'a str, uri: &'a str, ak: &'a str, sk: &'a str) -> Signed<'a> {
        Signed {
            method,
            uri,
            body: Vec::new(),
            ak,
            sk,
            date: sdk_date(0),
            extra: Vec::new(),
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("host".to_owned(), "localhost:8080".to_owned()),
            ("x-sdk-date".to_owned(), self.date.clone()),
        ];
        for (k, v) in &self.extra {
            h.push((k.to_ascii_lowercase(), (*v).to_owned()));
        }
        h.sort();
        h
    }

    fn authorization(&self) -> String {
        let headers = self.headers();
        let (path, query) = match self.uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.uri, None),
        };
        let mut auth = Authorization {
            access_key: self.ak.to_owned(),
            signed_headers: headers.iter().map(|(k, _)| k.clone()).collect(),
            signature: String::new(),
        };
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let canonical = signature::canonical_request(
            &SignedRequest {
                method: self.method,
                path,
                query,
                body: &self.body,
            },
            &auth,
            &lookup,
        )
        .unwrap();
        auth.signature = signature::sign(
            self.sk.as_bytes(),
            &signature::string_to_sign(&self.date, &canonical),
        );
        format!(
            "SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={}",
            auth.access_key,
            auth.signed_headers.join(";"),
            auth.signature
        )
    }

    fn request(&self) -> Request<Body> {
        self.request_with(&self.authorization(), self.body.clone())
    }

    /// The request with another Authorization value or body than signed.
    fn request_with(&self, authorization: &str, body: Vec<u8>) -> Request<Body> {
        let mut r = Request::builder().method(self.method).uri(self.uri);
        for (k, v) in self.headers() {
            r = r.header(k, v);
        }
        r.header("authorization", authorization)
            .body(Body::from(body))
            .unwrap()
    }
}

/// The context's app with a known master key, a user `alice` in `p1`, a
/// project `p2` she is not in, and an access key of hers.
struct Keys {
    ctx: Ctx,
    ak: String,
    sk: String,
}

async fn setup(ctx: Ctx) -> Keys {
    let (master, _) = MasterKey::generate().unwrap();
    ctx.store
        .create_project("p2", "project two", 1)
        .await
        .unwrap();
    ctx.store
        .create_user("alice", "not-a-hash", &["p1".to_owned()])
        .await
        .unwrap();
    let issued = access_key::create_access_key(&*ctx.store, &master, "alice")
        .await
        .unwrap();
    let app = api::app(AppState {
        access_keys: Arc::new(AccessKeys::new(Some(master))),
        ..AppState::new(
            ctx.store.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(15),
        )
    });
    Keys {
        ctx: Ctx { app, ..ctx },
        ak: issued.access_key,
        sk: issued.secret_key.to_string(),
    }
}

both_backends! {
    async fn a_good_signature_reaches_the_handler_with_the_body_intact(ctx: Ctx) {
        let k = setup(ctx).await;
        let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks?page_size=5&task_state=running%2Cstopped", &k.ak, &k.sk).request()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.raw));
        assert_eq!(r.body["count"], 0);
        // A body the handler refuses by a field proves the body arrived.
        let mut post = Signed::new("POST", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        post.body = json!({"name": "夜间巡检", "service_version": "1.0.0"}).to_string().into_bytes();
        let r = k.ctx.send(post.request()).await;
        assert_error(&r, 400, "VIAS.00010001", Some("service_name"));
        // The same, signed over a body other than the one sent.
        let r = k.ctx.send(post.request_with(&post.authorization(), b"{}".to_vec())).await;
        assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        // X-Project-Id naming the path's project is fine; the handler sees
        // the project.
        let mut with_project = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        with_project.extra.push(("X-Project-Id", "p1"));
        assert_eq!(k.ctx.send(with_project.request()).await.status, StatusCode::OK);
        // A body hash header that is not the body's hash is refused.
        let mut claimed = Signed::new("POST", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        claimed.body = b"{}".to_vec();
        let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        claimed.extra.push(("X-Sdk-Content-Sha256", empty_hash));
        let r = k.ctx.send(claimed.request()).await;
        assert_error(&r, 401, "VIAS.00010005", Some("X-Sdk-Content-Sha256"));
        claimed.extra = vec![("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD")];
        let r = k.ctx.send(claimed.request()).await;
        assert_error(&r, 401, "VIAS.00010005", Some("X-Sdk-Content-Sha256"));
    }

    async fn a_missing_or_garbled_authorization_is_401(ctx: Ctx) {
        let k = setup(ctx).await;
        let plain = k.ctx.send(Request::get("/v2/p1/batch-tasks").body(Body::empty()).unwrap()).await;
        assert_error(&plain, 401, "VIAS.00010005", Some("X-Auth-Token"));
        assert!(plain.body["advice"].as_str().unwrap().contains("X-Auth-Token"));
        assert!(plain.body["advice"].as_str().unwrap().contains("access key"));
        let good = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        let auth = good.authorization();
        for bad in [
            "SDK-HMAC-SHA256 garbage".to_owned(),
            "Bearer abc".to_owned(),
            auth.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3"),
            auth.replace("Signature=", "Signature=0"),
            auth.replace("host;", ""),
            auth.replace(";x-sdk-date", ""),
            String::new(),
        ] {
            let r = k.ctx.send(good.request_with(&bad, Vec::new())).await;
            assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        }
        // A forged signature of the right shape.
        let forged = auth.rsplit_once('=').unwrap().0.to_owned() + "=" + &"0".repeat(64);
        let r = k.ctx.send(good.request_with(&forged, Vec::new())).await;
        assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        assert_eq!(r.body["detail"], "the signature does not match the request");
        // The wrong secret.
        let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, "0123456789").request()).await;
        assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        // With a valid token too, the token decides.
        let mut both = good.request_with("SDK-HMAC-SHA256 garbage", Vec::new());
        both.headers_mut().insert("x-auth-token", k.ctx.token.parse().unwrap());
        assert_eq!(k.ctx.send(both).await.status, StatusCode::OK);
    }

    async fn an_unknown_or_revoked_access_key_is_401(ctx: Ctx) {
        let k = setup(ctx).await;
        let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks", "AKUNKNOWN0000000000X", &k.sk).request()).await;
        assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        assert_eq!(r.body["detail"], "the access key is unknown");
        let good = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        assert_eq!(k.ctx.send(good.request()).await.status, StatusCode::OK);
        k.ctx.store.delete_access_key(&k.ak, 1).await.unwrap();
        // Revocation takes effect within a second, cached key or not.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk).request()).await;
        assert_error(&r, 401, "VIAS.00010005", Some("Authorization"));
        assert_eq!(r.body["detail"], "the access key has been revoked");
        let listed = k.ctx.store.list_access_keys(Some("alice")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at, Some(1));
        // Revoking again changes nothing; an unknown AK is not found.
        k.ctx.store.delete_access_key(&k.ak, 2).await.unwrap();
        assert_eq!(k.ctx.store.list_access_keys(None).await.unwrap()[0].revoked_at, Some(1));
        assert!(k.ctx.store.delete_access_key("NOPE", 3).await.is_err());
        assert!(k.ctx.store.list_access_keys(Some("nobody")).await.is_err());
    }

    async fn a_date_outside_fifteen_minutes_is_401(ctx: Ctx) {
        let k = setup(ctx).await;
        for (offset, ok) in [(-14 * 60, true), (14 * 60, true), (-16 * 60, false), (16 * 60, false)] {
            let mut s = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
            s.date = sdk_date(offset);
            let r = k.ctx.send(s.request()).await;
            if ok {
                assert_eq!(r.status, StatusCode::OK, "{offset}: {}", String::from_utf8_lossy(&r.raw));
            } else {
                assert_error(&r, 401, "VIAS.00010005", Some("X-Sdk-Date"));
            }
        }
        let mut s = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        s.date = "2026-11-29T05:31:12Z".into();
        assert_error(&k.ctx.send(s.request()).await, 401, "VIAS.00010005", Some("X-Sdk-Date"));
    }

    async fn another_project_is_403(ctx: Ctx) {
        let k = setup(ctx).await;
        // X-Project-Id naming another project than the path's.
        let mut s = Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        s.extra.push(("X-Project-Id", "p2"));
        assert_error(&k.ctx.send(s.request()).await, 403, "VIAS.00010005", Some("X-Project-Id"));
        // One the server cannot read is refused, not skipped: an
        // X-Project-Id as naming another project, a content hash beside a
        // body as not that body's.
        let unreadable = |mut req: Request<Body>, name: &str| {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(b"p1\xff").unwrap(),
            );
            req
        };
        let get = || Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        let r = k.ctx.send(unreadable(get().request(), "X-Project-Id")).await;
        assert_error(&r, 403, "VIAS.00010005", Some("X-Project-Id"));
        let mut post = Signed::new("POST", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        post.body = b"{}".to_vec();
        let r = k.ctx.send(unreadable(post.request(), "X-Sdk-Content-Sha256")).await;
        assert_error(&r, 401, "VIAS.00010005", Some("X-Sdk-Content-Sha256"));
        // Without a body the content hash is not looked at (as the SDKs send it).
        let r = k.ctx.send(unreadable(get().request(), "X-Sdk-Content-Sha256")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // A project the key's user is not a member of, or none at all.
        for uri in ["/v2/p2/batch-tasks", "/v2/nope/batch-tasks"] {
            let r = k.ctx.send(Signed::new("GET", uri, &k.ak, &k.sk).request()).await;
            assert_error(&r, 403, "VIAS.00010005", Some("project_id"));
        }
    }

    async fn a_body_over_one_mib_is_413_after_the_key_is_known(ctx: Ctx) {
        let k = setup(ctx).await;
        let mut s = Signed::new("POST", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        s.body = vec![b' '; api::MAX_BODY_BYTES + 1];
        assert_error(&k.ctx.send(s.request()).await, 413, "VIAS.00010001", None);
        // An unknown key learns nothing but 401.
        let mut s = Signed::new("POST", "/v2/p1/batch-tasks", "AKUNKNOWN0000000000X", &k.sk);
        s.body = vec![b' '; api::MAX_BODY_BYTES + 1];
        assert_error(&k.ctx.send(s.request()).await, 401, "VIAS.00010005", Some("Authorization"));
        // Exactly the limit is read, checked and handed on.
        let mut s = Signed::new("POST", "/v2/p1/batch-tasks", &k.ak, &k.sk);
        let mut body = b"{}".to_vec();
        body.resize(api::MAX_BODY_BYTES, b' ');
        s.body = body;
        assert_error(&k.ctx.send(s.request()).await, 400, "VIAS.00010001", None);
    }

    async fn last_use_is_recorded_about_once_a_minute(ctx: Ctx) {
        let k = setup(ctx).await;
        assert_eq!(k.ctx.store.list_access_keys(Some("alice")).await.unwrap()[0].last_used_at, None);
        for _ in 0..3 {
            let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk).request()).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let mut first = None;
        for _ in 0..40 {
            first = k.ctx.store.list_access_keys(None).await.unwrap()[0].last_used_at;
            if first.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first = first.expect("last_used_at recorded");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = k.ctx.send(Signed::new("GET", "/v2/p1/batch-tasks", &k.ak, &k.sk).request()).await;
        assert_eq!(r.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            k.ctx.store.list_access_keys(None).await.unwrap()[0].last_used_at,
            Some(first),
            "no second write within the minute"
        );
    }
}

// ---------------------------------------------------------------------
// Huawei's Python SDK core against a real server.

fn python_with_sdk() -> bool {
    prerequisite(
        python_has("huaweicloudsdkcore.signer.signer"),
        "python3 with Huawei's SDK core (pip install huaweicloudsdkcore)",
    )
}

/// Runs tests/sdk_sign.py with `cases`; one reply per case, by name.
fn run_signer(addr: &str, ak: &str, sk: &str, cases: &Value) -> Vec<(String, u16, Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_sign.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(format!("http://{addr}"))
        .env("TC_AK", ak)
        .env("TC_SK", sk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs: pip install huaweicloudsdkcore");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SDK signer failed (pip install huaweicloudsdkcore): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_owned(),
                v["status"].as_u64().unwrap() as u16,
                v["body"].clone(),
            )
        })
        .collect()
}

fn create_key(dir: &Path, db: &str, user: &str) -> (String, String) {
    let out = cli(dir, db, &["access-key", "create", "--user", user], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (ak, sk) = (field("access_key:"), field("secret_key:"));
    assert!(!stderr.contains(&sk), "the SK goes to stdout only");
    (ak, sk)
}

fn sdk_against_a_server(db: &str) {
    if !python_with_sdk() {
        return;
    }
    let dir = TempDir::new();
    // The server starts before any key exists: it reads the key file that
    // `access-key create` makes when the first signed request needs it.
    let server = Server::start(&dir.0, db);
    let (ak, sk) = create_key(&dir.0, db, "admin");
    let key_file = dir.0.join("taskcenter.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = cli(
        &dir.0,
        db,
        &["project", "create", "other", "--id", "other"],
        None,
    );
    assert!(out.status.success());
    let get = json!({"name": "get", "method": "GET", "path": "/v2/default/batch-tasks",
        "query": [["page_size", "5"], ["task_state", "running,stopped"], ["video_group", "北门"]]});
    let post = json!({"name": "post", "method": "POST", "path": "/v2/default/batch-tasks",
        "body": json!({"name": "夜间巡检", "service_version": "1.0.0"}).to_string()});
    let cjk = json!({"name": "cjk", "method": "GET", "path": "/v2/default/video-group/烟火"});
    let with = |base: &Value, name: &str, tamper: Value| {
        let mut c = base.clone();
        c["name"] = json!(name);
        c["tamper"] = tamper;
        c
    };
    let cases = json!([
        get, post, cjk,
        with(&get, "get-method", json!({"method": "DELETE"})),
        with(&get, "get-path", json!({"path": "/v2/default/tasks"})),
        with(&get, "get-query", json!({"query": "page_size=6&task_state=running%2Cstopped&video_group=%E5%8C%97%E9%97%A8"})),
        with(&get, "get-header", json!({"header": ["Content-Type", "text/plain"]})),
        with(&get, "get-date", json!({"date_shift": 1})),
        with(&post, "post-body", json!({"body": json!({"name": "夜间巡检", "service_version": "1.0.1"}).to_string()})),
        with(&post, "post-method", json!({"method": "PUT"})),
        with(&cjk, "cjk-path", json!({"path": "/v2/default/video-group/烟花"})),
        {"name": "x-project-id", "method": "GET", "path": "/v2/default/batch-tasks", "headers": {"X-Project-Id": "default"}},
        {"name": "x-project-id-other", "method": "GET", "path": "/v2/default/batch-tasks", "headers": {"X-Project-Id": "other"}},
        {"name": "not-a-member", "method": "GET", "path": "/v2/other/batch-tasks"},
    ]);
    let replies = run_signer(&server.addr, &ak, &sk, &cases);
    let expect = |name: &str| {
        replies
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no reply for {name}: {replies:?}"))
            .clone()
    };
    let (_, status, body) = expect("get");
    assert_eq!(
        (status, &body),
        (200, &json!({"count": 0, "batch_task_list": []}))
    );
    // The body arrived: the handler names the missing field.
    let (_, status, body) = expect("post");
    assert_eq!(
        (status, body["params"].clone()),
        (400, json!(["service_name"])),
        "{body}"
    );
    // Past authentication: the route's own check of the CJK id.
    let (_, status, body) = expect("cjk");
    assert_eq!(
        (status, body["params"].clone()),
        (400, json!(["video_group_id"])),
        "{body}"
    );
    for name in [
        "get-method",
        "get-path",
        "get-query",
        "get-header",
        "get-date",
        "post-body",
        "post-method",
        "cjk-path",
    ] {
        let (_, status, body) = expect(name);
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error_code"], "VIAS.00010005", "{name}");
        assert_eq!(
            body["detail"], "the signature does not match the request",
            "{name}"
        );
    }
    assert_eq!(expect("x-project-id").1, 200);
    for name in ["x-project-id-other", "not-a-member"] {
        let (_, status, body) = expect(name);
        assert_eq!(
            (status, body["error_code"].clone()),
            (403, json!("VIAS.00010005")),
            "{name}: {body}"
        );
    }

    // The README's Python example, verbatim, against this server.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- sdk-python -->")
        .expect("README marks its Python example");
    let block = &readme[start..];
    let block = &block[block.find("```python\n").unwrap() + 10..];
    let snippet = &block[..block.find("```").unwrap()];
    assert!(snippet.contains("127.0.0.1:8080"));
    let snippet = snippet.replace("127.0.0.1:8080", &server.addr);
    let out = Command::new("python3")
        .args(["-c", &snippet])
        .env("TASKCENTER_AK", &ak)
        .env("TASKCENTER_SK", &sk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README example (pip install huaweicloudsdkcore): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "README example printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(printed["count"], 0, "{printed}");

    // The CLI lists the key (never its secret), then revokes it; the
    // server refuses it within a second.
    let out = cli(&dir.0, db, &["access-key", "list", "--user", "admin"], None);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.starts_with(&format!("{ak}\tadmin\t")), "{listed}");
    assert!(!listed.contains(&sk));
    let cols: Vec<&str> = listed.trim_end().split('\t').collect();
    assert_eq!(cols.len(), 5, "{listed}");
    assert_ne!(cols[3], "-", "last use recorded: {listed}");
    assert_eq!(cols[4], "-", "not revoked: {listed}");
    let out = cli(&dir.0, db, &["access-key", "delete", &ak], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1000));
    let replies = run_signer(&server.addr, &ak, &sk, &json!([get]));
    assert_eq!(replies[0].1, 401, "{replies:?}");
    assert_eq!(replies[0].2["detail"], "the access key has been revoked");
    let out = cli(&dir.0, db, &["access-key", "list"], None);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_ne!(listed.trim_end().split('\t').nth(4), Some("-"), "{listed}");
    let out = cli(&dir.0, db, &["access-key", "delete", "NOSUCHKEY"], None);
    assert!(!out.status.success());
    let out = cli(
        &dir.0,
        db,
        &["access-key", "create", "--user", "nobody"],
        None,
    );
    assert!(!out.status.success());
    drop(server);
}

#[test]
fn huaweis_python_sdk_signs_requests_a_server_accepts_on_sqlite() {
    sdk_against_a_server("taskcenter.db");
}

#[test]
fn huaweis_python_sdk_signs_requests_a_server_accepts_on_postgres() {
    on_postgres(sdk_against_a_server);
}
