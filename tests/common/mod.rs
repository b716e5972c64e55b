//! Test harness: a fresh database per test (a temporary SQLite file, or a
//! uniquely named PostgreSQL database dropped afterwards), an app on it, and
//! `both_backends!`, which writes each case once and runs it on both.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use taskcenter::api::{self, AppState};
use taskcenter::domain::dump::*;
use taskcenter::identity;
#[allow(unused_imports)]
use taskcenter::store::prelude::*;
use taskcenter::store::{self, Store};
use tower::ServiceExt;

pub(crate) mod process;

/// Whether this is a CI run (`CI` set to anything but empty, `false` or
/// `0`): there a case whose prerequisite is missing fails instead of
/// skipping, so CI can never pass by skipping.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "false" | "0"))
}

/// `have`, when it holds; otherwise the case skips locally (it prints
/// SKIPPED and gets `false`) and fails under CI.
pub(crate) fn prerequisite(have: bool, what: &str) -> bool {
    if !have {
        assert!(
            !in_ci(),
            "{what} is needed under CI: this case may not be skipped"
        );
        eprintln!("SKIPPED: {what} is not available; this case did not run");
    }
    have
}

/// Whether `python3` runs and can import `module`.
pub(crate) fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", taskcenter::domain::random_hex(8).unwrap())
}

/// A database that exists for one test.
pub(crate) struct TestDb {
    pub url: String,
    pg_admin: Option<(String, String)>,
    file: Option<std::path::PathBuf>,
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        let file = std::env::temp_dir().join(format!("{}.db", unique("taskcenter_test")));
        TestDb {
            url: file.to_string_lossy().into_owned(),
            pg_admin: None,
            file: Some(file),
        }
    }

    /// `None` (skip) when TEST_DATABASE_URL is unset locally; a failure when
    /// it is unset under CI, so a CI run can never pass by skipping.
    pub(crate) async fn postgres() -> Option<TestDb> {
        let admin = match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                if in_ci() {
                    panic!("TEST_DATABASE_URL must be set when CI is set: PostgreSQL tests may not be skipped");
                }
                eprintln!("SKIPPED: TEST_DATABASE_URL is not set; PostgreSQL case not run");
                return None;
            }
        };
        let name = unique("taskcenter_test");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str())
            .await
            .unwrap();
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b.to_owned(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let prefix = &base[..base.rfind('/').unwrap()];
        Some(TestDb {
            url: format!("{prefix}/{name}{query}"),
            pg_admin: Some((admin, name)),
            file: None,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
        if let Some((admin, name)) = self.pg_admin.take() {
            // Drop runs inside the test's runtime; a thread with its own
            // runtime does the async work.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ = sqlx::Executor::execute(
                            &mut c,
                            format!("drop database if exists {name} with (force)").as_str(),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// An app on a fresh database with one project `p1` and a token for it.
pub(crate) struct Ctx {
    pub db: TestDb,
    pub store: Arc<store::SqlStore>,
    pub app: api::App,
    pub token: String,
    pub project_pk: i64,
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Ctx {
    /// Registers service `helmet` 1.0.0 (id `svc1`, deployed) in `p1`.
    pub(crate) async fn add_helmet_service(&self, deploy_type: store::DeployType) {
        self.store
            .create_service(
                self.project_pk,
                &store::NewService {
                    id: "svc1".into(),
                    service_name: "helmet".into(),
                    service_version: "1.0.0".into(),
                    alg_name: "Helmet".into(),
                    company: "Acme".into(),
                    deploy_type,
                    deployed: true,
                    description: String::new(),
                    created_at: 1,
                },
            )
            .await
            .unwrap();
    }

    pub(crate) async fn new(db: TestDb) -> Ctx {
        let store = store::open_sql(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let p = store.create_project("p1", "project one", 1).await.unwrap();
        let token = identity::issue_token(&*store, p.pk, None, Duration::from_secs(3600))
            .await
            .unwrap()
            .token;
        let app = api::app(AppState::new(
            store.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(15),
        ));
        Ctx {
            db,
            store,
            app,
            token,
            project_pk: p.pk,
        }
    }

    pub(crate) async fn sqlite() -> Ctx {
        Ctx::new(TestDb::sqlite()).await
    }

    pub(crate) async fn postgres() -> Option<Ctx> {
        Some(Ctx::new(TestDb::postgres().await?).await)
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    /// GET with this context's token.
    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header("x-auth-token", &self.token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn post(&self, uri: &str, body: Value) -> Reply {
        self.post_raw(uri, body.to_string().into_bytes()).await
    }

    pub(crate) async fn post_raw(&self, uri: &str, body: Vec<u8>) -> Reply {
        self.send(
            Request::post(uri)
                .header("x-auth-token", &self.token)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Any method with this context's token, and a JSON body if given.
    pub(crate) async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("x-auth-token", &self.token)
                .header("content-type", "application/json")
                .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                .unwrap(),
        )
        .await
    }

    /// `GET /v2/p1/batch-tasks?{query}`.
    pub(crate) async fn list(&self, query: &str) -> Reply {
        self.get(&format!("/v2/p1/batch-tasks?{query}")).await
    }

    /// Ids of the batches a successful list returned, shortened to the
    /// fixture's numbers.
    pub(crate) async fn list_ids(&self, query: &str) -> (u64, Vec<u32>) {
        let r = self.list(query).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{query}: {}",
            String::from_utf8_lossy(&r.raw)
        );
        let ids = r.body["batch_task_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u32::from_str_radix(b["id"].as_str().unwrap(), 16).unwrap())
            .collect();
        (r.body["count"].as_u64().unwrap(), ids)
    }

    pub(crate) async fn import(&self, records: Vec<DumpRecord>) {
        let mut imp = self.store.begin_import().await.unwrap();
        for (i, r) in records.into_iter().enumerate() {
            imp.put(i as u64 + 1, r).await.unwrap();
        }
        imp.commit().await.unwrap();
    }
}

/// Asserts the contract's error body: all six fields, the code, and the
/// offending parameter (or none).
pub(crate) fn assert_error(r: &Reply, status: u16, code: &str, param: Option<&str>) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&r.raw)
    );
    let obj = r.body.as_object().unwrap_or_else(|| {
        panic!(
            "error body is not JSON: {:?}",
            String::from_utf8_lossy(&r.raw)
        )
    });
    for f in ["error_code", "error_msg", "detail", "reason", "advice"] {
        assert!(
            obj.get(f).and_then(Value::as_str).is_some(),
            "field {f} missing in {obj:?}"
        );
    }
    assert_eq!(obj.len(), 6, "exactly six fields: {obj:?}");
    assert_eq!(r.body["error_code"], code, "{obj:?}");
    let params: Vec<&str> = r.body["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    match param {
        Some(p) => assert_eq!(params, vec![p], "{obj:?}"),
        None => assert!(params.len() <= 1),
    }
}

/// An `error_list` entry of a batch reply: a string `<id>: <code> <why>`,
/// as VIAS's SDK reads it; (id, code).
pub(crate) fn error_entry(v: &Value) -> (String, String) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("an error_list entry is a string: {v}"));
    let (id, rest) = s.split_once(": ").unwrap();
    let code = rest.split_whitespace().next().unwrap();
    (id.to_owned(), code.to_owned())
}

pub(crate) fn bid(n: u32) -> String {
    format!("{n:032x}")
}

pub(crate) fn task(id: &str, source: &str, state: &str) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        video_source_id: source.into(),
        state: state.into(),
        created_at: None,
        updated_at: None,
        target_roi: None,
    }
}

pub(crate) fn batch(
    project: &str,
    n: u32,
    name: &str,
    svc: (&str, &str),
    groups: &[&str],
    created_at: i64,
    tasks: Vec<TaskRecord>,
) -> DumpRecord {
    DumpRecord::BatchTask(BatchTaskRecord {
        project_id: project.into(),
        id: bid(n),
        name: name.into(),
        description: None,
        service_name: svc.0.into(),
        service_version: svc.1.into(),
        priority: if n % 2 == 0 {
            "high".into()
        } else {
            "low".into()
        },
        created_at,
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
        config: None,
        output: None,
        tasks,
        ..Default::default()
    })
}

/// The list fixture in project p1 (and a decoy project p2 with clashing
/// ids and names). Batches, by number:
///
/// | n | name     | service         | groups      | created_at | tasks                                   |
/// |---|----------|-----------------|-------------|------------|-----------------------------------------|
/// | 1 | alpha    | helmet (Acme, Helmet) | g1    | 1000 | running, running, stopped               |
/// | 2 | Beta_1   | smoke.det (华为云, 烟火检测) | g2,g1 | 2000 | pending                  |
/// | 3 | gamma_x  | fire.x (Acme, Fire)   | g3    | 3000 | —                                       |
/// | 4 | 夜间巡检  | helmet          | g1,g3       | 4000       | failed, succeeded, lack_of_resources, frozen |
/// | 5 | delta-2  | smoke.det       | g3          | 5000       | stopped, stopped                        |
/// | 6 | epsilon  | fire.x          | g2          | 5000       | running                                 |
///
/// Groups: g1 "gate", g2 "北门", g3 "dock.[east]". Sources s1..s6 named cam-1..cam-6.
pub(crate) fn fixture() -> Vec<DumpRecord> {
    let mut v = Vec::new();
    v.push(DumpRecord::Project(ProjectRecord {
        id: "p2".into(),
        name: "project p2".into(),
        created_at: Some(1),
    }));
    for p in ["p1", "p2"] {
        for (name, ver, alg, company) in [
            ("helmet", "1.0.0", "Helmet", "Acme"),
            ("smoke.det", "2.0.0", "烟火检测", "华为云"),
            ("fire.x", "1.0.0", "Fire", "Acme"),
        ] {
            v.push(DumpRecord::Service(ServiceRecord {
                project_id: p.into(),
                id: None,
                service_name: name.into(),
                service_version: ver.into(),
                alg_name: alg.into(),
                company: company.into(),
                deploy_type: if name == "fire.x" {
                    "edge".into()
                } else {
                    "cloud".into()
                },
                deployed: None,
                created_at: Some(1),
                ..Default::default()
            }));
        }
        for (id, name) in [("g1", "gate"), ("g2", "北门"), ("g3", "dock.[east]")] {
            v.push(DumpRecord::VideoGroup(VideoGroupRecord {
                project_id: p.into(),
                id: id.into(),
                name: name.into(),
                created_at: Some(1),
                ..Default::default()
            }));
        }
        for i in 1..=6 {
            let g = match i {
                1..=3 => vec!["g1".to_owned()],
                4 => vec!["g2".to_owned()],
                _ => vec!["g3".to_owned()],
            };
            v.push(DumpRecord::VideoSource(VideoSourceRecord {
                project_id: p.into(),
                id: format!("s{i}"),
                name: format!("cam-{i}"),
                url: format!("rtsp://cam{i}/live"),
                group_ids: g,
                created_at: Some(1),
                deleted: false,
                ..Default::default()
            }));
        }
    }
    let h = ("helmet", "1.0.0");
    let s = ("smoke.det", "2.0.0");
    let f = ("fire.x", "1.0.0");
    v.push(batch(
        "p1",
        1,
        "alpha",
        h,
        &["g1"],
        1000,
        vec![
            task("t11", "s1", "running"),
            task("t12", "s2", "RUNNING"),
            task("t13", "s3", "stopped"),
        ],
    ));
    v.push(batch(
        "p1",
        2,
        "Beta_1",
        s,
        &["g2", "g1"],
        2000,
        vec![task("t21", "s4", "pending")],
    ));
    v.push(batch("p1", 3, "gamma_x", f, &["g3"], 3000, vec![]));
    v.push(batch(
        "p1",
        4,
        "夜间巡检",
        h,
        &["g1", "g3"],
        4000,
        vec![
            task("t41", "s1", "failed"),
            task("t42", "s2", "succeeded"),
            task("t43", "s5", "lack_of_resources"),
            task("t44", "s6", "frozen"),
        ],
    ));
    v.push(batch(
        "p1",
        5,
        "delta-2",
        s,
        &["g3"],
        5000,
        vec![task("t51", "s1", "stopped"), task("t52", "s2", "stopped")],
    ));
    v.push(batch(
        "p1",
        6,
        "epsilon",
        f,
        &["g2"],
        5000,
        vec![task("t61", "s3", "running")],
    ));
    // Decoys in p2: same ids, names and groups; must never show in p1.
    v.push(batch(
        "p2",
        1,
        "alpha",
        h,
        &["g1"],
        9000,
        vec![task("t11", "s1", "running")],
    ));
    v.push(batch(
        "p2",
        7,
        "zeta",
        h,
        &["g1"],
        9000,
        vec![task("t71", "s1", "running")],
    ));
    v
}

/// Runs each statement on the PostgreSQL database at `url`, in turn, on a
/// connection of its own.
#[allow(dead_code)]
pub(crate) fn pg_exec(url: &str, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        for sql in statements {
            sqlx::Executor::execute(&mut c, *sql).await.unwrap();
        }
    });
}

/// The statements that make the PostgreSQL database at `url` read-only
/// (`true`) or writable again for every new session, and end the sessions
/// open on it, as a failover to a standby and back would.
#[allow(dead_code)]
pub(crate) fn set_read_only(url: &str, read_only: bool) {
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let set = if read_only {
        format!("alter database {name} set default_transaction_read_only = on")
    } else {
        format!("alter database {name} reset default_transaction_read_only")
    };
    pg_exec(
        url,
        &[
            "set default_transaction_read_only = off",
            &set,
            &format!(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = '{name}' and pid <> pg_backend_pid()"
            ),
        ],
    );
}

/// Runs `f` on a fresh PostgreSQL database (skipped locally without
/// `TEST_DATABASE_URL`; under `CI` a missing one fails), for the tests that
/// drive the real binary and need only a URL.
pub(crate) fn on_postgres(f: impl FnOnce(&str)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(TestDb::postgres()) else {
        return;
    };
    f(&db.url);
    drop(db);
}

/// Runs each `async fn name(ctx: Ctx) { ... }` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($ctx:ident: Ctx) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $ctx = Ctx::sqlite().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some($ctx) = Ctx::postgres().await else { return };
                    $body
                }
            )*
        }
    };
}
