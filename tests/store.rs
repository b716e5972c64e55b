//! Store contract: counters always equal a fresh count after random task
//! writes, and export → import → export round-trips exactly; both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use proptest::prelude::*;
use serde_json::json;
use std::sync::Arc;
use taskcenter::domain::dump::DumpRecord;
use taskcenter::domain::transition::{self, Event, Outcome};
use taskcenter::domain::TaskState;
use taskcenter::store::lifecycle::Applied;
#[allow(unused_imports)]
use taskcenter::store::prelude::*;
use taskcenter::store::{self, Store};

#[derive(Debug, Clone)]
enum Op {
    Insert { batch: usize, source: usize },
    Apply { task: usize, event: Event },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..6usize).prop_map(|(batch, source)| Op::Insert { batch, source }),
        (0..64usize, prop::sample::select(Event::ALL.to_vec()))
            .prop_map(|(task, event)| Op::Apply { task, event }),
        (0..64usize).prop_map(|task| Op::Apply {
            task,
            event: Event::Delete
        }),
    ]
}

/// Applies `ops` through the store in a fresh project and checks, after each
/// step, every batch's stored counters against a fresh count of its tasks and
/// against the model kept here.
async fn check_counters(store: &Arc<store::SqlStore>, ops: &[Op]) {
    let pid = unique("p");
    let p = store.create_project(&pid, &pid, 1).await.unwrap();
    let mut imp = store.begin_import().await.unwrap();
    let svc = format!(
        r#"{{"kind":"service","project_id":"{pid}","service_name":"svc","service_version":"1.0.0","alg_name":"A","company":"C","deploy_type":"cloud"}}"#
    );
    imp.put(1, serde_json::from_str(&svc).unwrap())
        .await
        .unwrap();
    imp.put(
        2,
        serde_json::from_str(&format!(
            r#"{{"kind":"video_group","project_id":"{pid}","id":"g","name":"g"}}"#
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    for s in 0..6 {
        let rec = format!(
            r#"{{"kind":"video_source","project_id":"{pid}","id":"s{s}","name":"s{s}","url":"rtsp://s","group_ids":["g"]}}"#
        );
        imp.put(3, serde_json::from_str(&rec).unwrap())
            .await
            .unwrap();
    }
    for b in 0..3u32 {
        let rec = format!(
            r#"{{"kind":"batch_task","project_id":"{pid}","id":"{}","name":"b{b}","service_name":"svc","service_version":"1.0.0","created_at":{b},"group_ids":["g"]}}"#,
            bid(b)
        );
        imp.put(3, serde_json::from_str(&rec).unwrap())
            .await
            .unwrap();
    }
    imp.commit().await.unwrap();

    // Model: (task id, batch, source, state), and the tasks a schedule holds
    // stopped (a closing window holds; a user's intent or an opening window
    // lets go; a user's stop on a held stopped task only lets go).
    let mut model: Vec<(String, usize, usize, TaskState)> = Vec::new();
    let mut held: std::collections::HashSet<String> = Default::default();
    for op in ops {
        match op.clone() {
            Op::Insert { batch, source } => {
                let r = store
                    .add_task(p.pk, &bid(batch as u32), &format!("s{source}"))
                    .await;
                if model.iter().any(|t| t.1 == batch && t.2 == source) {
                    assert!(
                        matches!(r, Err(store::StoreError::Conflict { .. })),
                        "duplicate source in a batch: {r:?}"
                    );
                } else {
                    let row = r.unwrap();
                    assert_eq!(row.state, TaskState::Pending);
                    model.push((row.id, batch, source, TaskState::Pending));
                }
            }
            Op::Apply { task, event } => {
                if model.is_empty() {
                    assert!(matches!(
                        store.apply_task_event(p.pk, "nothing", event).await,
                        Err(store::StoreError::NotFound { .. } | store::StoreError::NotAllowed(_))
                    ));
                    continue;
                }
                let i = task % model.len();
                let cur = model[i].3;
                let r = store.apply_task_event(p.pk, &model[i].0, event).await;
                if event.needs_worker() {
                    assert!(
                        matches!(r, Err(store::StoreError::NotAllowed(_))),
                        "{event} needs a worker: {r:?}"
                    );
                    continue;
                }
                let r = r.unwrap();
                let id = model[i].0.clone();
                let release = (cur, event) == (TaskState::Stopped, Event::Stop) && held.remove(&id);
                match transition::next(cur, event) {
                    None if release => assert_eq!(
                        r,
                        Applied::Moved {
                            from: cur,
                            to: Outcome::To(cur)
                        },
                        "held {cur} + {event}"
                    ),
                    None => assert_eq!(r, Applied::Refused { state: cur }, "{cur} + {event}"),
                    Some(to) => {
                        match event {
                            Event::WindowClosed => {
                                held.insert(id);
                            }
                            Event::Start | Event::Stop | Event::WindowOpened => {
                                held.remove(&id);
                            }
                            _ => {}
                        }
                        assert_eq!(r, Applied::Moved { from: cur, to }, "{cur} + {event}");
                        match to {
                            Outcome::To(s) => model[i].3 = s,
                            Outcome::Gone => {
                                model.remove(i);
                            }
                        }
                    }
                }
            }
        }
        for b in 0..3usize {
            let c = store.check_counters(p.pk, &bid(b as u32)).await.unwrap();
            let mut expect = [0i64; 18];
            for t in model.iter().filter(|t| t.1 == b) {
                expect[t.3.index()] += 1;
            }
            assert_eq!(
                c.stored, c.counted,
                "stored counters equal a fresh count after {op:?}"
            );
            assert_eq!(c.counted, expect, "the fresh count equals the model");
            assert_eq!(c.stored_num_task, expect.iter().sum::<i64>());
        }
    }
}

fn counter_property(db: TestDb) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async {
        let s = store::open_sql(&db.url).await.unwrap();
        s.migrate().await.unwrap();
        s
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            rt.block_on(check_counters(&store, &ops));
            Ok(())
        })
        .unwrap();
    drop(store);
    drop(db);
}

#[test]
fn counters_equal_a_fresh_count_after_random_writes_sqlite() {
    counter_property(TestDb::sqlite());
}

#[test]
fn counters_equal_a_fresh_count_after_random_writes_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(TestDb::postgres()) else {
        return;
    };
    drop(rt);
    counter_property(db);
}

async fn export_lines(store: &Arc<store::SqlStore>) -> String {
    let (send, mut recv) = tokio::sync::mpsc::channel::<DumpRecord>(16);
    let s = store.clone();
    let job = tokio::spawn(async move { s.export(send).await });
    let mut out = String::new();
    while let Some(r) = recv.recv().await {
        out.push_str(&serde_json::to_string(&r).unwrap());
        out.push('\n');
    }
    job.await.unwrap().unwrap();
    out
}

async fn import_lines(store: &Arc<store::SqlStore>, text: &str) {
    let mut imp = store.begin_import().await.unwrap();
    for (i, line) in text.lines().enumerate() {
        imp.put(i as u64 + 1, serde_json::from_str(line).unwrap())
            .await
            .unwrap();
    }
    imp.commit().await.unwrap();
}

async fn open(db: &TestDb) -> Arc<store::SqlStore> {
    let s = store::open_sql(&db.url).await.unwrap();
    s.migrate().await.unwrap();
    s
}

async fn round_trip(src: Ctx, dst: TestDb) {
    src.import(fixture()).await;
    // Some writes through the API and the store, so more than imported rows travel.
    let hash = taskcenter::identity::hash_password("pw").unwrap();
    src.store
        .create_user("carol", &hash, &["p1".into(), "p2".into()])
        .await
        .unwrap();
    src.store
        .apply_task_event(src.project_pk, "t21", Event::Schedule)
        .await
        .unwrap();
    // The VIAS wire's objects: an edge pool, a service deployed onto it with
    // its settings, a source with coordinates and tags, a single task.
    let pool = src
        .post(
            "/v2/p1/edge-pools",
            json!({"name": "north-pool", "description": "北门", "nodes": ["edge-a"]}),
        )
        .await;
    assert_eq!(pool.status, 201, "{}", pool.body);
    let pool_id = pool.body["id"].as_str().unwrap().to_owned();
    let services = src.get("/v2/p1/algorithm/services/user").await.body;
    let fire = services["service_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "fire.x")
        .unwrap()["alg_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        src.call("PUT", &format!("/v2/p1/algorithm/{fire}/deploy/stop"), None)
            .await
            .status,
        200
    );
    let r = src
        .post(
            &format!("/v2/p1/algorithm/{fire}/deploy"),
            json!({"pool_id": pool_id, "stream_count": 4,
            "deploy_config": {"gpu": "t4"}, "envs": {"MODE": "night"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = src
        .post("/v2/p1/source", json!({"id": "s9", "video_source_name": "cam-9", "access_type": "cloud",
            "url": "rtsp://cam9/live", "latitude": "31.2304", "longitude": "121.4737", "tag": ["north", "gate"],
            "video_group_ids": ["g1"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pending = |c: Vec<(TaskState, i64)>| {
        c.into_iter()
            .find(|(s, _)| *s == TaskState::Pending)
            .unwrap()
            .1
    };
    let pending_before = pending(src.store.count_tasks_by_state().await.unwrap());
    let r = src
        .post("/v2/p1/services/fire.x/tasks", json!({"name": "single_1", "description": "one camera",
            "service_version": "1.0.0", "input": {"type": "video_source", "data": [{"video_source_id": "s9"}]},
            "output": {"event_center": true}, "config": {"threshold": 0.5},
            "schedule": {"type": "weekly", "timezone": "+08:00", "days_of_week": [1, 2],
                "periods": [[{"begin_at": "08:00:00", "end_at": "18:00:00"}]]},
            "resource_order_id": "order-1"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        pending(src.store.count_tasks_by_state().await.unwrap()),
        pending_before + 1,
        "a single task counts too"
    );
    // A batch whose tasks carry a region and a schedule: both travel with
    // the rows a load writes in bulk.
    let r = src
        .post("/v2/p1/batch-tasks", json!({"name": "zoned", "service_name": "helmet", "service_version": "1.0.0",
            "batch_input": {"video_source_group": [{"video_source_group_id": "g1",
                "video_source_list": [{"video_source_id": "s2", "target_roi": {"polygon": [[0, 0], [640, 480]]}}]}]},
            "schedule": {"type": "weekly", "timezone": "+08:00", "days_of_week": [3],
                "periods": [[{"begin_at": "07:00:00", "end_at": "09:30:00"}]]},
            "output": {"event_center": true}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = export_lines(&src.store).await;
    assert!(first.lines().count() > 20);
    assert!(first.contains("640"), "the dump keeps the task's region");
    assert!(
        first.contains("09:30:00"),
        "the dump keeps the batch's schedule"
    );
    assert!(first.contains(r#""kind":"user","name":"carol""#));
    for needle in [
        r#""kind":"edge_pool""#,
        "edge-a",
        "night",
        "121.4737",
        "single_1",
        "order-1",
        "08:00:00",
    ] {
        assert!(first.contains(needle), "the dump keeps {needle}");
    }
    let dst_store = open(&dst).await;
    import_lines(&dst_store, &first).await;
    let second = export_lines(&dst_store).await;
    assert_eq!(first, second);
    // And the imported data answers the list the same way.
    let counts = dst_store
        .check_counters(
            dst_store
                .find_project(&store::ProjectRef::Id("p1".into()))
                .await
                .unwrap()
                .unwrap()
                .pk,
            &bid(2),
        )
        .await
        .unwrap();
    assert_eq!(counts.stored[TaskState::Scheduling.index()], 1);
}

both_backends! {
    async fn export_import_export_is_identical(ctx: Ctx) {
        let dst = if ctx.store.backend() == "sqlite" { TestDb::sqlite() } else { TestDb::postgres().await.unwrap() };
        round_trip(ctx, dst).await;
    }

    async fn import_is_all_or_nothing(ctx: Ctx) {
        let mut imp = ctx.store.begin_import().await.unwrap();
        let mut failed_at = None;
        for (i, r) in fixture().into_iter().enumerate() {
            let r = if i == 30 {
                // A batch naming a service that does not exist.
                let mut bad = r;
                if let DumpRecord::BatchTask(b) = &mut bad { b.service_name = "nope.svc".into(); }
                bad
            } else { r };
            if let Err(e) = imp.put(i as u64 + 1, r).await {
                assert_eq!(e.line, 31, "the error names the bad record's line: {e}");
                failed_at = Some(i);
                break;
            }
        }
        assert!(failed_at.is_some());
        drop(imp);
        let ctx2 = ctx.store.find_project(&store::ProjectRef::Id("p2".into())).await.unwrap();
        assert!(ctx2.is_none(), "nothing of the failed import is visible");
        assert_eq!(ctx.list("").await.body["count"], 0);
    }

    async fn a_task_id_used_twice_fails_the_whole_load(ctx: Ctx) {
        // Twice in one load into empty tables: PostgreSQL finds it only when
        // it puts the lifted unique constraint back, at the end.
        let mut twice = fixture();
        let later = twice
            .iter_mut()
            .filter_map(|r| match r {
                DumpRecord::BatchTask(b) if b.project_id == "p1" && !b.tasks.is_empty() => Some(b),
                _ => None,
            })
            .nth(1)
            .unwrap();
        later.tasks[0].id = "t11".into();
        let e = load(&ctx.store, twice).await.unwrap_err();
        let (param, detail) = invalid_param(&e);
        assert_eq!(param, "tasks.id", "{detail}");
        assert!(detail.contains("used twice"), "{detail}");
        if ctx.store.backend() == "postgres" {
            assert!(detail.contains("t11"), "the id is named: {detail}");
        }
        assert_eq!(ctx.list("").await.body["count"], 0, "nothing of the load is visible");
        assert!(ctx.store.find_project(&store::ProjectRef::Id("p2".into())).await.unwrap().is_none());

        // The same dump, fixed, loads; a later load reusing an id that now
        // exists fails too, and leaves the first load as it was.
        ctx.import(fixture()).await;
        let before = ctx.list("").await.body["count"].clone();
        let again = vec![batch("p1", 9, "omega", ("helmet", "1.0.0"), &["g1"], 9000, vec![task("t11", "s4", "pending")])];
        let e = load(&ctx.store, again).await.unwrap_err();
        let (param, detail) = invalid_param(&e);
        assert_eq!(param, "tasks.id", "{detail}");
        assert_eq!(ctx.list("").await.body["count"], before);
    }
}

/// Loads `records` in one import; the first error, from a record or the commit.
async fn load(
    store: &Arc<store::SqlStore>,
    records: Vec<DumpRecord>,
) -> Result<(), store::ImportError> {
    let mut imp = store.begin_import().await.unwrap();
    for (i, r) in records.into_iter().enumerate() {
        imp.put(i as u64 + 1, r).await?;
    }
    imp.commit().await
}

fn invalid_param(e: &store::ImportError) -> (&str, &str) {
    match &e.error {
        store::StoreError::Invalid(f) => (f.param.as_str(), f.detail.as_str()),
        other => panic!("expected a field error, got {other:?}"),
    }
}

/// A load into empty tables lifts their constraints on PostgreSQL for the
/// transaction; the schema after it is exactly the one the migrations made.
#[tokio::test]
async fn a_postgres_load_puts_back_every_constraint_and_index() {
    let Some(ctx) = Ctx::postgres().await else {
        return;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&ctx.db.url).await.unwrap();
    let schema = "select c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid) \
                  || case when c.convalidated then '' else ' NOT VALID' end \
                  from pg_constraint c where c.connamespace = 'public'::regnamespace \
                  union all select indexdef from pg_indexes where schemaname = 'public' order by 1";
    let before: Vec<String> = sqlx::query_scalar(schema)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(
        before
            .iter()
            .any(|c| c.contains("tasks_project_pk_id_key UNIQUE")),
        "{before:?}"
    );
    ctx.import(fixture()).await;
    let after: Vec<String> = sqlx::query_scalar(schema)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, after);
    // And they hold: a second task with an existing id is refused.
    let dup = sqlx::query(
        "insert into tasks (project_pk, id, batch_pk, video_source_pk, state, created_at, updated_at) \
         select project_pk, id, batch_pk, video_source_pk, state, created_at, updated_at from tasks limit 1",
    )
    .execute(&mut conn)
    .await;
    assert!(dup.is_err(), "the unique constraint is back");
}

/// A load into PostgreSQL next to a running `serve`: lifting constraints
/// locks whole tables one after the other, and a `serve` transaction may
/// hold a table the load locks later while wanting one the load locked
/// earlier. The database ends such a deadlock by failing one side; the load
/// gives way instead, starts again, and both go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_load_gives_way_to_a_transaction_holding_its_tables() {
    let Some(ctx) = Ctx::postgres().await else {
        return;
    };
    use sqlx::Connection;
    let mut other = sqlx::PgConnection::connect(&ctx.db.url).await.unwrap();
    sqlx::raw_sql("begin; select count(*) from tasks")
        .execute(&mut other)
        .await
        .unwrap();
    let store = ctx.store.clone();
    let loading = tokio::spawn(async move { load(&store, fixture()).await });
    // The load has locked the batch tables by now and waits for `tasks`.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let read: Result<i64, _> = sqlx::query_scalar("select count(*) from batch_tasks")
        .fetch_one(&mut other)
        .await;
    assert_eq!(
        read.expect("the other transaction is not ended as a deadlock"),
        0,
        "the load has not committed"
    );
    sqlx::raw_sql("commit").execute(&mut other).await.unwrap();
    loading
        .await
        .unwrap()
        .expect("the load goes through once the tables are free");
    let page = ctx.list("").await;
    assert!(
        page.body["count"].as_u64().unwrap() > 0,
        "the loaded batches are listed: {}",
        page.body
    );
}

#[tokio::test]
async fn sqlite_export_imports_into_postgres_identically() {
    let Some(dst) = TestDb::postgres().await else {
        return;
    };
    round_trip(Ctx::sqlite().await, dst).await;
}

mod read_model_matches_sql {
    use super::*;
    use taskcenter::domain::{
        ListBatchTasksParams, NameField, NameLike, Paging, SortField, SortOrder,
    };

    fn subset(items: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        prop::sample::subsequence(items.to_vec(), 0..=items.len().min(3))
            .prop_map(|v| v.into_iter().map(str::to_owned).collect())
    }

    fn query() -> impl Strategy<Value = ListBatchTasksParams> {
        (
            prop::option::of((1u32..4, 5u32..8)),
            any::<bool>(),
            any::<bool>(),
            subset(&["g1", "gate", "g2", "北门", "g3", "dock.[east]", "zzz"]),
            prop::sample::subsequence(TaskState::ALL.to_vec(), 0..3),
            prop::option::of((
                any::<bool>(),
                prop::sample::select(vec!["a", "_", "a_", "巡", "ke.d", ".", "e", "%"]),
            )),
            subset(&["Acme", "华为云", "acme"]),
            subset(&["Helmet", "Fire", "烟火检测"]),
        )
            .prop_map(
                |(
                    paging,
                    by_count,
                    asc,
                    video_groups,
                    task_states,
                    name,
                    manufacturers,
                    titles,
                )| ListBatchTasksParams {
                    paging: paging.map(|(page_num, page_size)| Paging {
                        page_num,
                        page_size,
                    }),
                    sort: if by_count {
                        SortField::TaskCount
                    } else {
                        SortField::CreatedAt
                    },
                    order: if asc { SortOrder::Asc } else { SortOrder::Desc },
                    video_groups,
                    task_states,
                    name_like: name.map(|(svc, n)| NameLike {
                        field: if svc {
                            NameField::PublishServiceName
                        } else {
                            NameField::BatchTaskName
                        },
                        needle: n.to_owned(),
                    }),
                    manufacturers,
                    titles,
                },
            )
    }

    #[derive(Debug, Clone)]
    enum Write {
        Apply(usize, Event),
        Add(u32, usize),
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            (0..20usize, prop::sample::select(Event::ALL.to_vec()))
                .prop_map(|(t, e)| Write::Apply(t, e)),
            (1..7u32, 1..7usize).prop_map(|(b, s)| Write::Add(b, s)),
            (0..20usize).prop_map(|t| Write::Apply(t, Event::Delete)),
        ]
    }

    /// After each write, the read model answers every query exactly as SQL
    /// over the tables does (count, order, and every field of every row).
    async fn check(
        ctx: &Ctx,
        tasks: &mut Vec<String>,
        steps: &[(Write, Vec<ListBatchTasksParams>)],
    ) {
        for (w, queries) in steps {
            match w {
                Write::Apply(i, event) if !tasks.is_empty() => {
                    let at = i % tasks.len();
                    // Worker events are refused here; the rest follow the table.
                    if let Ok(Applied::Moved {
                        to: Outcome::Gone, ..
                    }) = ctx
                        .store
                        .apply_task_event(ctx.project_pk, &tasks[at], *event)
                        .await
                    {
                        tasks.remove(at);
                    }
                }
                Write::Add(b, s) => {
                    if let Ok(t) = ctx
                        .store
                        .add_task(ctx.project_pk, &bid(*b), &format!("s{s}"))
                        .await
                    {
                        tasks.push(t.id);
                    }
                }
                _ => {}
            }
            for q in queries {
                let model = ctx.store.list_batch_tasks(ctx.project_pk, q).await.unwrap();
                let db = ctx
                    .store
                    .list_batch_tasks_from_db(ctx.project_pk, q)
                    .await
                    .unwrap();
                assert_eq!(model, db, "after {w:?}, query {q:?}");
            }
        }
    }

    fn run(ctx: Ctx, rt: &tokio::runtime::Runtime, cases: u32) {
        rt.block_on(ctx.import(fixture()));
        // Cases share the database, so the live task ids carry over too.
        let tasks = std::sync::Mutex::new(
            [
                "t11", "t12", "t13", "t21", "t41", "t42", "t43", "t44", "t51", "t52", "t61",
            ]
            .map(String::from)
            .to_vec(),
        );
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &prop::collection::vec((write(), prop::collection::vec(query(), 1..6)), 1..12),
                |steps| {
                    rt.block_on(check(&ctx, &mut tasks.lock().unwrap(), &steps));
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn on_sqlite() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ctx = rt.block_on(Ctx::sqlite());
        run(ctx, &rt, 64);
    }

    #[test]
    fn on_postgres() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let Some(ctx) = rt.block_on(Ctx::postgres()) else {
            return;
        };
        run(ctx, &rt, 32);
    }
}

/// A database written by the version before the VIAS wire (migrations
/// 0001–0004): its rows as that version wrote them.
const OLD_ROWS: &str = "
insert into projects (id, name, created_at) values ('p1', 'one', 1);
insert into services (project_pk, id, service_name, service_version, alg_name, company, deploy_type, deployed, created_at)
    select pk, 'svc1', 'helmet.det', '1.0.0', 'Helmet', 'Acme', 'cloud', 1, 1 from projects;
insert into video_groups (project_pk, id, name, created_at) select pk, 'g1', 'gate', 1 from projects;
insert into video_sources (project_pk, id, name, url, created_at) select pk, 's1', 'cam-1', 'rtsp://cam1/live', 1 from projects;
insert into video_sources (project_pk, id, name, url, created_at) select pk, 's2', 'cam-2', 'rtsp://cam2/live', 2 from projects;
insert into video_source_groups (source_pk, position, group_pk)
    select s.pk, 0, g.pk from video_sources s, video_groups g;
insert into batch_tasks (project_pk, id, name, name_lc, service_pk, service_name, service_name_lc, service_version,
    alg_name, company, task_type, priority, config, output, created_at, num_task, c_running, c_pending)
    select p.pk, '000000000000000000000000000000b1', 'alpha', 'alpha', v.pk, 'helmet.det', 'helmet.det', '1.0.0', 'Helmet', 'Acme', '1', 'high',
    '{}', '{\"event_center\":true}', 1, 2, 1, 1 from projects p, services v;
insert into batch_task_groups (batch_pk, position, group_pk) select b.pk, 0, g.pk from batch_tasks b, video_groups g;
insert into tasks (project_pk, id, batch_pk, video_source_pk, state, created_at, updated_at)
    select b.project_pk, 't1', b.pk, s.pk, RUNNING, 1, 1 from batch_tasks b, video_sources s where s.id = 's1';
insert into tasks (project_pk, id, batch_pk, video_source_pk, state, created_at, updated_at)
    select b.project_pk, 't2', b.pk, s.pk, PENDING, 1, 1 from batch_tasks b, video_sources s where s.id = 's2';
";

/// Migrations 0001–0004 by hand, the old rows, then today's `open`: the
/// data comes through 0005 and later, readable in the new shapes.
async fn carried_forward(db: TestDb, kind: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let (connect, old): (String, [(&str, &str); 4]) = if kind == "sqlite" {
        (
            format!("sqlite:{}?mode=rwc", db.url),
            [
                (
                    "0001_init",
                    include_str!("../migrations/sqlite/0001_init.sql"),
                ),
                (
                    "0002_change_feed",
                    include_str!("../migrations/sqlite/0002_change_feed.sql"),
                ),
                (
                    "0003_lifecycle",
                    include_str!("../migrations/sqlite/0003_lifecycle.sql"),
                ),
                (
                    "0004_task_ids",
                    include_str!("../migrations/sqlite/0004_task_ids.sql"),
                ),
            ],
        )
    } else {
        (
            db.url.clone(),
            [
                (
                    "0001_init",
                    include_str!("../migrations/postgres/0001_init.sql"),
                ),
                (
                    "0002_change_feed",
                    include_str!("../migrations/postgres/0002_change_feed.sql"),
                ),
                (
                    "0003_lifecycle",
                    include_str!("../migrations/postgres/0003_lifecycle.sql"),
                ),
                (
                    "0004_task_ids",
                    include_str!("../migrations/postgres/0004_task_ids.sql"),
                ),
            ],
        )
    };
    let mut conn = sqlx::AnyConnection::connect(&connect).await.unwrap();
    sqlx::raw_sql(
        "create table schema_migrations (name text primary key, applied_at bigint not null)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for (name, body) in old {
        sqlx::raw_sql(body).execute(&mut conn).await.unwrap();
        sqlx::query("insert into schema_migrations (name, applied_at) values ($1, 1)")
            .bind(name)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let rows = OLD_ROWS
        .replace("RUNNING", &TaskState::Running.index().to_string())
        .replace("PENDING", &TaskState::Pending.index().to_string());
    sqlx::raw_sql(&rows).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let st = open(&db).await;
    let p = st
        .find_project(&store::ProjectRef::Id("p1".into()))
        .await
        .unwrap()
        .unwrap();
    let (s1, groups) = st.find_video_source(p.pk, "s1").await.unwrap().unwrap();
    assert!(
        s1.type_config.contains("rtsp://cam1/live"),
        "the URL becomes the source's type_config: {}",
        s1.type_config
    );
    assert_eq!(groups.len(), 1);
    let svc = st.find_service(p.pk, "svc1").await.unwrap().unwrap();
    assert_eq!(
        (svc.service_name.as_str(), svc.deployed),
        ("helmet.det", true)
    );
    let t1 = st.find_task(p.pk, "t1").await.unwrap().unwrap();
    assert_eq!(t1.state, TaskState::Running);
    let c = st
        .check_counters(p.pk, "000000000000000000000000000000b1")
        .await
        .unwrap();
    assert_eq!(c.stored, c.counted, "counters survive the table rebuild");
    // The migrated data travels through a dump like new data does.
    let dump = export_lines(&st).await;
    assert!(
        dump.contains("rtsp://cam2/live") && dump.contains("\"t2\""),
        "{dump}"
    );
    let again = if kind == "sqlite" {
        TestDb::sqlite()
    } else {
        TestDb::postgres().await.unwrap()
    };
    let dst = open(&again).await;
    import_lines(&dst, &dump).await;
    assert_eq!(export_lines(&dst).await, dump);
    // A restore into an empty database builds the by-source index at the end:
    // it is there afterwards.
    let connect = if kind == "sqlite" {
        format!("sqlite:{}", again.url)
    } else {
        again.url.clone()
    };
    let mut conn = sqlx::AnyConnection::connect(&connect).await.unwrap();
    let sql = if kind == "sqlite" {
        "select count(*) from sqlite_master where type = 'index' and name = 'tasks_by_source'"
    } else {
        "select count(*) from pg_indexes where indexname = 'tasks_by_source'"
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 1, "tasks_by_source exists after a restore");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_database_of_the_previous_version_is_carried_forward_on_sqlite() {
    carried_forward(TestDb::sqlite(), "sqlite").await;
}

#[tokio::test]
async fn a_database_of_the_previous_version_is_carried_forward_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        carried_forward(db, "postgres").await;
    }
}

/// Several `serve` processes starting on one empty database: exactly one
/// creates the default project and its admin, in one transaction, and the
/// others find it done instead of failing.
async fn bootstrap_once(db: TestDb) {
    let stores = [open(&db).await, open(&db).await, open(&db).await];
    let runs = stores
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.bootstrap("default", "admin", "hash").await })
        })
        .collect::<Vec<_>>();
    let mut created = 0;
    for r in runs {
        if r.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one process sets up the database");
    let s = &stores[0];
    assert_eq!(s.count_projects().await.unwrap(), 1);
    let admin = s.find_user("admin").await.unwrap().expect("the admin user");
    let p = s
        .find_project(&store::ProjectRef::Id("default".into()))
        .await
        .unwrap()
        .expect("the default project");
    assert!(s.user_has_project(admin.pk, p.pk).await.unwrap());
    // Later starts leave it as it is.
    assert!(!s.bootstrap("default", "admin", "other").await.unwrap());
    assert_eq!(
        s.find_user("admin").await.unwrap().unwrap().password_hash,
        "hash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_several_processes_sets_up_an_empty_database_on_sqlite() {
    bootstrap_once(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_several_processes_sets_up_an_empty_database_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        bootstrap_once(db).await;
    }
}

/// A process frozen while it holds the lifecycle lock (SIGSTOP, a paused
/// VM) holds up the other processes on the database for seconds, not until
/// it wakes: PostgreSQL ends its idle transaction. An export whose reader
/// pauses as long is not ended so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_lock_holder_stalls_the_others_for_seconds_on_postgres() {
    use std::time::{Duration, Instant};
    use taskcenter::scheduler::{self, TickConfig};
    let Some(ctx) = Ctx::postgres().await else {
        return;
    };
    ctx.import(fixture()).await;
    let frozen = open(&ctx.db).await;
    let held = frozen.begin_tick().await.unwrap();
    let started = Instant::now();
    let now = taskcenter::domain::now_millis();
    let ticked = tokio::time::timeout(
        Duration::from_secs(60),
        scheduler::tick(&*ctx.store, now, &TickConfig::default()),
    )
    .await
    .expect("the other process's tick waits seconds, not for ever");
    ticked.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "the tick waited for the lock: {waited:?}"
    );
    assert!(
        held.commit().await.is_err(),
        "the frozen transaction was ended"
    );

    let (out, mut rx) = tokio::sync::mpsc::channel(1);
    let store = ctx.store.clone();
    let exporting = tokio::spawn(async move { store.export(out).await });
    assert!(rx.recv().await.is_some());
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut records = 1;
    while rx.recv().await.is_some() {
        records += 1;
    }
    exporting
        .await
        .unwrap()
        .expect("a slow reader does not end the export");
    assert!(records > 10, "{records}");
}
