//! The lifecycle through the store: the transition table is the only way a
//! task moves, the scheduler places by priority on worker capacity, worker
//! reports and lost leases move tasks, and two schedulers on one database
//! never overcommit a worker. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::Arc;
use taskcenter::domain::dump::DumpRecord;
use taskcenter::domain::transition::{self, Event, Outcome};
use taskcenter::domain::DeployType;
use taskcenter::domain::TaskState::{self, *};
use taskcenter::protocol::Held;
use taskcenter::scheduler::{self, TickConfig};
use taskcenter::store;
use taskcenter::store::lifecycle::{Applied, TaskDetail};
#[allow(unused_imports)]
use taskcenter::store::prelude::*;

const LEASE: i64 = 10_000;

/// The list fixture with only `t21` pending and every other task at rest
/// (stopped, succeeded or failed), so the scheduler has one task to move.
fn calm_fixture() -> Vec<DumpRecord> {
    let mut v = fixture();
    for r in &mut v {
        if let DumpRecord::BatchTask(b) = r {
            for t in &mut b.tasks {
                let s: TaskState = t.state.parse().unwrap();
                if !matches!(s, Pending | Stopped | Succeeded | Failed) {
                    t.state = "stopped".into();
                }
            }
        }
    }
    v
}

/// One batch per (state, six events), every task in that state.
/// (task id, its state, the event to try, its batch).
type Case = (String, TaskState, Event, String);

fn every_state_fixture() -> (Vec<DumpRecord>, Vec<Case>) {
    let mut recs = fixture();
    let mut cases = Vec::new();
    for (si, state) in TaskState::ALL.into_iter().enumerate() {
        for (ci, chunk) in Event::ALL.chunks(6).enumerate() {
            let n = 100 + (si * 4 + ci) as u32;
            let mut tasks = Vec::new();
            for (k, e) in chunk.iter().enumerate() {
                let id = format!("x{si}_{}", ci * 6 + k);
                tasks.push(task(&id, &format!("s{}", k + 1), state.as_str()));
                cases.push((id, state, *e, bid(n)));
            }
            recs.push(batch(
                "p1",
                n,
                &format!("matrix-{n}"),
                ("helmet", "1.0.0"),
                &["g1"],
                10_000 + i64::from(n),
                tasks,
            ));
        }
    }
    (recs, cases)
}

async fn worker(store: &Arc<store::SqlStore>, name: &str, kind: &str, slots: i64, now: i64) -> i64 {
    store.create_worker(name, name, b"unused").await.unwrap();
    let w = store.find_worker_credential(name).await.unwrap().unwrap();
    store
        .register_worker(
            w.pk,
            DeployType::parse(kind).unwrap(),
            slots,
            None,
            now,
            LEASE,
        )
        .await
        .unwrap();
    w.pk
}

/// A task for each of sources s1..s6 in batches 1 and 5, where the batch
/// takes it (a source already in the batch is refused): their ids.
async fn tasks_on_sources(ctx: &Ctx) -> Vec<String> {
    let mut ids = Vec::new();
    for s in 1..=6 {
        for b in [1u32, 5] {
            if let Ok(t) = ctx
                .store
                .add_task(ctx.project_pk, &bid(b), &format!("s{s}"))
                .await
            {
                ids.push(t.id);
            }
        }
    }
    ids
}

/// Edge pool `pool-north` (node `edge-a`), and the fixture's edge service
/// `fire.x` deployed onto it; the service's id.
async fn fire_onto_north_pool(ctx: &Ctx, now: i64) -> String {
    use taskcenter::store::{Deployment, Listing, NewEdgePool, ServiceFilter, ServiceSort};
    let st = &ctx.store;
    let fire = st
        .list_services(
            ctx.project_pk,
            &ServiceFilter {
                name_like: Some("fire.x".into()),
                deployed: None,
            },
            Listing {
                sort: ServiceSort::CreatedAt,
                descending: false,
                page: None,
            },
        )
        .await
        .unwrap()
        .items
        .remove(0)
        .id;
    st.create_edge_pool(
        ctx.project_pk,
        &NewEdgePool {
            id: "pool-north".into(),
            name: "north-pool".into(),
            description: String::new(),
            ief_service_instance_id: None,
            nodes: vec!["edge-a".into()],
            created_at: now,
        },
    )
    .await
    .unwrap();
    let deployment = Deployment {
        pool_id: Some("pool-north".into()),
        stream_count: 4,
        deploy_config: None,
        envs: None,
    };
    st.deploy_service(ctx.project_pk, &fire, &deployment)
        .await
        .unwrap();
    fire
}

async fn state(ctx: &Ctx, id: &str) -> TaskState {
    ctx.store
        .find_task(ctx.project_pk, id)
        .await
        .unwrap()
        .unwrap()
        .state
}

/// The worker routes of an app that runs placing passes in its reports
/// route, as one worker.
struct WorkerHttp {
    router: axum::Router,
    cred: String,
}

impl WorkerHttp {
    /// A POST that must succeed; its JSON answer.
    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        use tower::ServiceExt;
        let req = axum::http::Request::post(path)
            .header("authorization", format!("Bearer {}", self.cred))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let raw = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }
}

/// On the calm fixture: worker `w1` with one cloud slot registered over
/// HTTP, a second task of batch 1 waiting, and `t21` handed to `w1` by a
/// sync. Returns the worker, the waiting task's id, and a report on `t21`.
async fn one_slot_worker_running_t21(
    ctx: &Ctx,
) -> (WorkerHttp, String, impl Fn(&str) -> serde_json::Value) {
    let st = &ctx.store;
    let app = taskcenter::api::app(taskcenter::api::AppState {
        placing: Some(TickConfig::default()),
        ..taskcenter::api::AppState::new(
            st.clone(),
            std::time::Duration::from_secs(3600),
            std::time::Duration::from_secs(15),
        )
    });
    let cred = taskcenter::identity::create_worker(&**st, "w1")
        .await
        .unwrap()
        .credential;
    let w1 = WorkerHttp {
        router: app.router,
        cred,
    };
    w1.post(
        "/worker/v1/register",
        serde_json::json!({"kind": "cloud", "slots": 1}),
    )
    .await;
    let second = st.add_task(ctx.project_pk, &bid(1), "s4").await.unwrap().id;
    scheduler::tick(
        &**st,
        taskcenter::domain::now_millis(),
        &TickConfig::default(),
    )
    .await
    .unwrap();
    let sync = w1
        .post(
            "/worker/v1/sync",
            serde_json::json!({"running": [], "wait_ms": 0}),
        )
        .await;
    let first = sync["assign"][0].clone();
    assert_eq!(first["task_id"], "t21");
    let report = move |event: &str| serde_json::json!({"task": first["task"], "attempt": first["attempt"], "event": event});
    (w1, second, report)
}

/// On the calm fixture: a cloud worker `w1` with `slots` slots, tasks of
/// batch 1 on s4–s6 beside `t21`, two passes, and the worker's sync.
/// Returns the worker, the four tasks' ids (`t21` first) and what the
/// sync handed out.
async fn worker_given_batch_tasks(
    ctx: &Ctx,
    slots: i64,
) -> (i64, Vec<String>, Vec<taskcenter::protocol::Assignment>) {
    let st = &ctx.store;
    let cfg = TickConfig::default();
    let mut now = taskcenter::domain::now_millis();
    let w = worker(st, "w1", "cloud", slots, now).await;
    let mut ids = vec!["t21".to_owned()];
    for s in ["s4", "s5", "s6"] {
        ids.push(st.add_task(ctx.project_pk, &bid(1), s).await.unwrap().id);
    }
    for _ in 0..2 {
        now += 100;
        scheduler::tick(&**st, now, &cfg).await.unwrap();
    }
    let assigned = st.sync_worker(w, now, LEASE, &[]).await.unwrap().assign;
    (w, ids, assigned)
}

/// Runs statements on the context's database beside its store.
async fn raw_sql(ctx: &Ctx, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = if ctx.db.url.starts_with("postgres") {
        ctx.db.url.clone()
    } else {
        format!("sqlite:{}", ctx.db.url)
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn counters_are_exact(ctx: &Ctx) {
    let page = ctx
        .store
        .list_batch_tasks_from_db(ctx.project_pk, &Default::default())
        .await
        .unwrap();
    let all = ctx
        .store
        .list_batch_tasks(
            ctx.project_pk,
            &taskcenter::domain::ListBatchTasksParams {
                paging: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.count > 0);
    for row in &all.rows {
        let c = ctx
            .store
            .check_counters(ctx.project_pk, &row.id)
            .await
            .unwrap();
        assert_eq!(c.stored, c.counted, "batch {}", row.id);
        assert_eq!(row.counters, c.counted, "read model of batch {}", row.id);
    }
}

both_backends! {
    async fn the_store_accepts_exactly_the_declared_transitions(ctx: Ctx) {
        let (recs, cases) = every_state_fixture();
        ctx.import(recs).await;
        for (id, from, event, _) in &cases {
            let r = ctx.store.apply_task_event(ctx.project_pk, id, *event).await;
            if event.needs_worker() {
                assert!(matches!(r, Err(store::StoreError::NotAllowed(_))), "{from} + {event}: {r:?}");
                assert_eq!(state(&ctx, id).await, *from, "a refused event leaves the task");
                continue;
            }
            let r = r.unwrap();
            match transition::next(*from, *event) {
                None => {
                    assert_eq!(r, Applied::Refused { state: *from }, "{from} + {event} is undeclared");
                    assert_eq!(state(&ctx, id).await, *from);
                }
                Some(Outcome::To(to)) => {
                    assert_eq!(r, Applied::Moved { from: *from, to: Outcome::To(to) });
                    assert_eq!(state(&ctx, id).await, to, "{from} + {event}");
                    let h = ctx.store.list_task_history(ctx.project_pk, id).await.unwrap();
                    assert_eq!(h.last().map(|h| (h.from, h.event.clone(), h.to)), Some((*from, event.to_string(), Some(to))));
                }
                Some(Outcome::Gone) => {
                    assert_eq!(r, Applied::Moved { from: *from, to: Outcome::Gone });
                    assert!(ctx.store.find_task(ctx.project_pk, id).await.unwrap().is_none(), "{from} + {event} deletes");
                }
            }
        }
        counters_are_exact(&ctx).await;
    }

    async fn a_service_deployed_onto_an_edge_pool_runs_only_on_that_pool(ctx: Ctx) {
        use taskcenter::store::{Listing, ServiceFilter, ServiceSort};
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let mut now = taskcenter::domain::now_millis();
        let fire_service = || async {
            st.list_services(
                ctx.project_pk,
                &ServiceFilter { name_like: Some("fire.x".into()), deployed: None },
                Listing { sort: ServiceSort::CreatedAt, descending: false, page: None },
            )
            .await
            .unwrap()
            .items
            .remove(0)
        };
        fire_onto_north_pool(&ctx, now).await;
        // An edge worker outside the pool has room, but the pool has none.
        worker(st, "edge-b", "edge", 4, now).await;
        let t1 = st.add_task(ctx.project_pk, &bid(3), "s1").await.unwrap().id;
        for _ in 0..2 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        assert_eq!(state(&ctx, &t1).await, LackOfResources, "edge-b is not in the pool");
        // A cloud worker that bears a node's name runs no edge task: the
        // pool stays Abnormal and its service's pool not live.
        let pool_live = || async {
            let pool = st.find_edge_pool(ctx.project_pk, "pool-north").await.unwrap().unwrap();
            (pool.running(), fire_service().await.pool.map(|p| p.1))
        };
        let a = worker(st, "edge-a", "cloud", 1, now).await;
        assert_eq!(pool_live().await, (false, Some(false)));
        // A node the pool names, and a worker registered with --pool.
        st.register_worker(a, DeployType::Edge, 1, None, now, LEASE).await.unwrap();
        assert_eq!(pool_live().await, (true, Some(true)));
        st.create_worker("edge-c", "edge-c", b"unused").await.unwrap();
        let c = st.find_worker_credential("edge-c").await.unwrap().unwrap();
        st.register_worker(c.pk, DeployType::Edge, 1, Some("north-pool"), now, LEASE).await.unwrap();
        let t2 = st.add_task(ctx.project_pk, &bid(3), "s2").await.unwrap().id;
        let t3 = st.add_task(ctx.project_pk, &bid(3), "s3").await.unwrap().id;
        for _ in 0..4 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        let mut held = Vec::new();
        for t in [&t1, &t2, &t3] {
            let d = st.find_task(ctx.project_pk, t).await.unwrap().unwrap();
            held.push(d.worker_id);
        }
        let placed: Vec<&str> = held.iter().flatten().map(String::as_str).collect();
        assert_eq!(placed.len(), 2, "two pool slots, three tasks: {held:?}");
        assert!(placed.contains(&"edge-a") && placed.contains(&"edge-c"), "{held:?}");
        assert!(!placed.contains(&"edge-b"), "{held:?}");
        counters_are_exact(&ctx).await;
    }

    async fn scheduler_places_by_priority_and_follows_worker_reports(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let mut now = taskcenter::domain::now_millis();
        // No worker at all: pending tasks lack resources.
        let r = scheduler::tick(&**st, now, &cfg).await.unwrap();
        assert_eq!(r.count(Event::NoCapacity), 1, "{r:?}");
        assert_eq!(state(&ctx, "t21").await, LackOfResources);
        let error = || async { st.find_task(ctx.project_pk, "t21").await.unwrap().unwrap().error_code };
        assert_eq!(error().await.as_deref(), Some("VIAS.TC.NO_WORKER"));
        let w = worker(st, "w1", "cloud", 1, now).await;
        // Batch 3's service runs on edge workers; there are none.
        let edge = st.add_task(ctx.project_pk, &bid(3), "s1").await.unwrap().id;
        now += 100;
        let r = scheduler::tick(&**st, now, &cfg).await.unwrap();
        assert_eq!(r.count(Event::CapacityBack), 1, "{r:?}");
        assert_eq!(state(&ctx, "t21").await, Pending);
        assert_eq!(error().await, None, "waiting again, it no longer shows why it could not");
        assert_eq!(state(&ctx, &edge).await, LackOfResources, "no edge worker");
        // Batch 1 (low priority) gets a task; batch 2 (high) holds t21.
        let low = st.add_task(ctx.project_pk, &bid(1), "s4").await.unwrap().id;
        now += 100;
        scheduler::tick(&**st, now, &cfg).await.unwrap();
        // One slot: the high-priority task is picked first and placed in the
        // same pass (its history keeps both stages); the low one waits.
        assert_eq!(state(&ctx, "t21").await, Starting);
        assert_eq!(state(&ctx, &low).await, Pending);
        let moves: Vec<(TaskState, String)> = st
            .list_task_history(ctx.project_pk, "t21")
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.from, h.event))
            .collect();
        assert!(
            moves.ends_with(&[(Pending, "Schedule".into()), (Scheduling, "Place".into())]),
            "{moves:?}"
        );
        let d = st.find_task(ctx.project_pk, "t21").await.unwrap().unwrap();
        assert_eq!((d.worker_id.as_deref(), d.attempt), (Some("w1"), 1));
        // What other processes' waiting syncs watch: per worker, the tasks
        // it holds (how many, their states, their last move).
        assert_eq!(
            st.held_fingerprints().await.unwrap(),
            vec![(w, [1, Starting.index() as i64, now])]
        );

        // The worker learns its assignment and reports.
        let reply = st.sync_worker(w, now, LEASE, &[]).await.unwrap();
        assert_eq!(reply.assign.len(), 1);
        let a = &reply.assign[0];
        assert_eq!((a.task_id.as_str(), a.source_url.as_str()), ("t21", "rtsp://cam4/live"));
        let held = Held { task: a.task, attempt: a.attempt };
        let stale = Held { task: a.task, attempt: a.attempt + 1 };
        assert_eq!(st.report_task(w, stale, Event::Started, None).await.unwrap(), Applied::Refused { state: Starting });
        st.report_task(w, held, Event::Started, None).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Running);
        assert!(st.sync_worker(w, now, LEASE, &[held]).await.unwrap().is_empty());
        // Stop: the worker is told, then lets go.
        st.apply_task_event(ctx.project_pk, "t21", Event::Stop).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Stopping);
        assert_eq!(st.sync_worker(w, now, LEASE, &[held]).await.unwrap().stop, vec![held]);
        st.report_task(w, held, Event::Released, None).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Stopped);

        // The freed slot goes to the low-priority task; it fails.
        for _ in 0..2 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        assert_eq!(state(&ctx, &low).await, Starting);
        let a = st.sync_worker(w, now, LEASE, &[]).await.unwrap().assign.remove(0);
        let held = Held { task: a.task, attempt: a.attempt };
        st.report_task(w, held, Event::Started, None).await.unwrap();
        st.report_task(w, held, Event::Crashed, Some(("VIAS.TC.EXIT".into(), "exit status 1".into()))).await.unwrap();
        let d = st.find_task(ctx.project_pk, &low).await.unwrap().unwrap();
        assert_eq!((d.state, d.error_code.as_deref()), (Failed, Some("VIAS.TC.EXIT")));
        // A finished task frees its slot and keeps the worker it ran on.
        assert_eq!(d.worker_id.as_deref(), Some("w1"));
        let held: i64 = st.list_workers().await.unwrap().iter().map(|w| w.held).sum();
        assert_eq!(held, 0, "a finished task frees its slot");
        let placed: Vec<Option<String>> = st
            .list_task_history(ctx.project_pk, &low)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.event == "Place")
            .map(|h| h.worker_id)
            .collect();
        assert_eq!(placed, vec![Some("w1".to_owned())], "the history names the placement's worker");
        counters_are_exact(&ctx).await;
    }

    async fn reports_that_end_deleted_tasks_in_one_request_free_their_slots(ctx: Ctx) {
        // Tasks deleted while they run go when their executors end; a
        // worker reporting that for several at once is told they went, and
        // the slots they held are free at once.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let (w, _, assigned) = worker_given_batch_tasks(&ctx, 3).await;
        let h: Vec<Held> = assigned.iter().map(|a| Held { task: a.task, attempt: a.attempt }).collect();
        let mine: Vec<String> = assigned.iter().map(|a| a.task_id.clone()).collect();
        assert_eq!(h.len(), 3, "{mine:?}");
        let rep = |held: Held, event: Event| store::lifecycle::WorkerReport { held, event, error: None };
        let started: Vec<_> = h.iter().map(|x| rep(*x, Event::Started)).collect();
        st.report_tasks(w, &started).await.unwrap();
        for id in &mine[..2] {
            st.apply_task_event(ctx.project_pk, id, Event::Delete).await.unwrap();
        }
        let replies = st
            .report_tasks(w, &[rep(h[0], Event::Released), rep(h[1], Event::Exited), rep(h[2], Event::Exited)])
            .await
            .unwrap();
        let gone = Some(Applied::Moved { from: Deleting, to: Outcome::Gone });
        assert_eq!(
            replies,
            vec![gone, gone, Some(Applied::Moved { from: Running, to: Outcome::To(Succeeded) })]
        );
        assert!(scheduler::frees_slot(&replies), "the reports freed slots");
        for id in &mine[..2] {
            assert!(st.find_task(ctx.project_pk, id).await.unwrap().is_none(), "{id} is gone");
        }
        let held: i64 = st.list_workers().await.unwrap().iter().map(|w| w.held).sum();
        assert_eq!(held, 0, "every slot is free again");
        counters_are_exact(&ctx).await;
    }

    async fn many_reports_in_one_request_move_each_task_as_alone(ctx: Ctx) {
        // What a busy worker sends: several tasks' reports in one request,
        // some tasks twice, one with an error, one stale.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let (w, ids, mut assigned) = worker_given_batch_tasks(&ctx, 4).await;
        assert_eq!(assigned.len(), 4);
        assigned.sort_by_key(|a| ids.iter().position(|i| *i == a.task_id));
        let h: Vec<Held> = assigned.iter().map(|a| Held { task: a.task, attempt: a.attempt }).collect();
        let rep = |held: Held, event: Event, error: Option<(&str, &str)>| store::lifecycle::WorkerReport {
            held,
            event,
            error: error.map(|(c, m)| (c.to_owned(), m.to_owned())),
        };
        let stale = Held { task: h[3].task, attempt: h[3].attempt + 1 };
        let replies = st
            .report_tasks(w, &[
                rep(h[0], Event::Started, None),
                rep(h[1], Event::Started, None),
                rep(h[2], Event::Started, None),
                rep(h[3], Event::Started, None),
                rep(h[0], Event::Exited, None),
                rep(h[1], Event::Exited, None),
                rep(h[2], Event::Crashed, Some(("VIAS.TC.EXIT", "exit status 3"))),
                rep(stale, Event::Exited, None),
                rep(h[3], Event::Exited, None),
                // Already succeeded: refused, nothing moves.
                rep(h[0], Event::Exited, None),
            ])
            .await
            .unwrap();
        let moved = |from, to| Some(Applied::Moved { from, to: Outcome::To(to) });
        assert_eq!(
            replies,
            vec![
                moved(Starting, Running),
                moved(Starting, Running),
                moved(Starting, Running),
                moved(Starting, Running),
                moved(Running, Succeeded),
                moved(Running, Succeeded),
                moved(Running, Failed),
                Some(Applied::Refused { state: Running }),
                moved(Running, Succeeded),
                Some(Applied::Refused { state: Succeeded }),
            ]
        );
        for (id, end) in ids.iter().zip([Succeeded, Succeeded, Failed, Succeeded]) {
            let d = st.find_task(ctx.project_pk, id).await.unwrap().unwrap();
            assert_eq!(d.state, end, "{id}");
            assert_eq!(d.worker_id.as_deref(), Some("w1"), "{id} keeps the worker it ran on");
            // Every state is in the history, with the step that left it,
            // whether the reports moved the task one at a time or at once.
            let steps: Vec<(TaskState, String, Option<TaskState>)> = st
                .list_task_history(ctx.project_pk, id)
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.from, h.event, h.to))
                .collect();
            let last = if end == Failed { "Crashed" } else { "Exited" };
            assert!(
                steps.ends_with(&[
                    (Scheduling, "Place".into(), Some(Starting)),
                    (Starting, "Started".into(), Some(Running)),
                    (Running, last.into(), Some(end)),
                ]),
                "{id}: {steps:?}"
            );
        }
        let d = st.find_task(ctx.project_pk, &ids[2]).await.unwrap().unwrap();
        assert_eq!((d.error_code.as_deref(), d.error_message.as_deref()), (Some("VIAS.TC.EXIT"), Some("exit status 3")));
        let held: i64 = st.list_workers().await.unwrap().iter().map(|w| w.held).sum();
        assert_eq!(held, 0, "every slot is free again");
        counters_are_exact(&ctx).await;
    }

    async fn a_placing_pass_places_and_leaves_maintenance_to_the_full_pass(ctx: Ctx) {
        // What a worker's report wakes: placement only.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let now = taskcenter::domain::now_millis();
        worker(st, "w1", "cloud", 1, now).await;
        let r = scheduler::place(&**st, now, &cfg).await.unwrap();
        assert_eq!((r.count(Event::Schedule), r.count(Event::Place)), (1, 1), "{r:?}");
        assert_eq!(state(&ctx, "t21").await, Starting);
        // The worker falls silent past its lease: a placing pass leaves its
        // task, the full pass takes it back.
        let later = now + LEASE + 1;
        let r = scheduler::place(&**st, later, &cfg).await.unwrap();
        assert_eq!(r.total(), 0, "{r:?}");
        assert_eq!(state(&ctx, "t21").await, Starting);
        scheduler::tick(&**st, later, &cfg).await.unwrap();
        assert_ne!(state(&ctx, "t21").await, Starting, "the full pass handles a lost worker");
        counters_are_exact(&ctx).await;
    }

    async fn a_placing_pass_reaches_past_tasks_waiting_for_a_full_edge_pool(ctx: Ctx) {
        // A placing pass reads about as many waiting tasks as there are free
        // slots; tasks bound to a pool without a free slot must not hide the
        // ones behind them that a free slot elsewhere can take.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let now = taskcenter::domain::now_millis();
        fire_onto_north_pool(&ctx, now).await;
        st.create_service(ctx.project_pk, &store::NewService {
            id: "ember".into(),
            service_name: "ember".into(),
            service_version: "1.0.0".into(),
            alg_name: "Ember".into(),
            company: "Acme".into(),
            deploy_type: DeployType::Edge,
            deployed: true,
            description: String::new(),
            created_at: 1,
        }).await.unwrap();
        let create = |name: String, service: &str, groups: &[&str]| {
            let groups: Vec<_> = groups.iter().map(|g| serde_json::json!({"video_source_group_id": g})).collect();
            serde_json::json!({"name": name, "service_name": service, "service_version": "1.0.0",
                "batch_input": {"video_source_group": groups}, "config": {}, "output": {"event_center": true}})
        };
        // 18 tasks for the pool (one slot, edge-a), more than one free slot
        // plus the slack: the pool's slot is taken by the first of them.
        worker(st, "edge-a", "edge", 1, now).await;
        for i in 0..3 {
            let r = ctx.post("/v2/p1/batch-tasks", create(format!("pool-{i}"), "fire.x", &["g1", "g2", "g3"])).await;
            assert_eq!(r.body["succeed_count"], 6, "{}", r.body);
        }
        scheduler::tick(&**st, now, &cfg).await.unwrap();
        // Then a task any edge worker can run, and a free slot outside the pool.
        let r = ctx.post("/v2/p1/batch-tasks", create("free".into(), "ember", &["g2"])).await;
        assert_eq!(r.body["succeed_count"], 1, "{}", r.body);
        let batch = r.body["id"].as_str().unwrap().to_owned();
        let tasks = ctx.get(&format!("/v2/p1/tasks?batch_id={batch}")).await;
        let ember = tasks.body["tasks"][0]["id"].as_str().unwrap().to_owned();
        worker(st, "edge-b", "edge", 1, now).await;
        let r = scheduler::place(&**st, now + 1, &cfg).await.unwrap();
        assert_eq!(r.count(Event::Place), 1, "{r:?}");
        let d = st.find_task(ctx.project_pk, &ember).await.unwrap().unwrap();
        assert_eq!((d.state, d.worker_id.as_deref()), (Starting, Some("edge-b")));
        counters_are_exact(&ctx).await;
    }

    async fn a_placing_pass_places_nothing_on_a_revoked_worker(ctx: Ctx) {
        // Between a revoke and the next full pass, placing passes run too.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let now = taskcenter::domain::now_millis();
        worker(st, "w1", "cloud", 1, now).await;
        st.revoke_worker("w1").await.unwrap();
        let r = scheduler::place(&**st, now, &cfg).await.unwrap();
        assert_eq!(r.count(Event::Place), 0, "{r:?}");
        assert_ne!(state(&ctx, "t21").await, Starting);
        counters_are_exact(&ctx).await;
    }

    async fn a_backlog_of_one_worker_type_does_not_hide_the_other(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        // Steps of two tasks, so three waiting cloud tasks fill a step.
        let cfg = TickConfig { batch: 2, ..TickConfig::default() };
        let mut now = taskcenter::domain::now_millis();
        worker(st, "cloud-1", "cloud", 1, now).await;
        for _ in 0..2 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        assert_eq!(state(&ctx, "t21").await, Starting, "the one cloud slot is taken");
        let mut cloud = Vec::new();
        for s in ["s4", "s5", "s6"] {
            cloud.push(st.add_task(ctx.project_pk, &bid(1), s).await.unwrap().id);
        }
        let edge = st.add_task(ctx.project_pk, &bid(3), "s1").await.unwrap().id;
        worker(st, "edge-1", "edge", 1, now).await;
        now += 100;
        scheduler::tick(&**st, now, &cfg).await.unwrap();
        assert_eq!(state(&ctx, &edge).await, Starting, "the edge task is placed past the cloud backlog");
        for id in &cloud {
            assert_eq!(state(&ctx, id).await, Pending);
        }
    }

    async fn a_silent_worker_loses_its_tasks_to_another(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let mut now = taskcenter::domain::now_millis();
        let w1 = worker(st, "w1", "cloud", 1, now).await;
        for _ in 0..3 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        assert_eq!(state(&ctx, "t21").await, Starting);
        let a = st.sync_worker(w1, now, LEASE, &[]).await.unwrap().assign.remove(0);
        let h1 = Held { task: a.task, attempt: a.attempt };
        st.report_task(w1, h1, Event::Started, None).await.unwrap();
        let w2 = worker(st, "w2", "cloud", 1, now + LEASE).await;
        // w1 goes silent past its lease; w2 keeps syncing.
        now += LEASE + 1;
        let mut seen = vec![state(&ctx, "t21").await];
        for _ in 0..6 {
            st.sync_worker(w2, now, LEASE, &[]).await.unwrap();
            scheduler::tick(&**st, now, &cfg).await.unwrap();
            let s = state(&ctx, "t21").await;
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            now += 100;
        }
        // Scheduling lasts no longer than the pass that placed it: the
        // history has it, a look between passes does not.
        assert_eq!(seen, vec![Running, Abnormal, Recovering, Pending, Starting]);
        let events: Vec<String> = st
            .list_task_history(ctx.project_pk, "t21")
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.event)
            .collect();
        assert!(events.ends_with(&["Schedule".into(), "Place".into()]), "{events:?}");
        let d = st.find_task(ctx.project_pk, "t21").await.unwrap().unwrap();
        assert_eq!((d.worker_id.as_deref(), d.attempt), (Some("w2"), 2));
        // A report from the old holder is refused; w1 is told to stop it.
        assert_eq!(st.report_task(w1, h1, Event::Exited, None).await.unwrap(), Applied::Refused { state: Starting });
        assert_eq!(st.sync_worker(w1, now, LEASE, &[h1]).await.unwrap().stop, vec![h1]);
        counters_are_exact(&ctx).await;
    }

    async fn operator_freeze_undeploy_and_upgrade_move_tasks(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let mut now = taskcenter::domain::now_millis();
        let w = worker(st, "w1", "cloud", 4, now).await;
        let mut tick = |n: i64| {
            now += n;
            now
        };
        // Start t21 (smoke.det 2.0.0).
        for _ in 0..3 {
            scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        }
        let a = st.sync_worker(w, tick(0), LEASE, &[]).await.unwrap().assign.remove(0);
        let held = Held { task: a.task, attempt: a.attempt };
        st.report_task(w, held, Event::Started, None).await.unwrap();
        // Upgrade: running → upgrading → (worker restarts it) → running.
        st.create_service(ctx.project_pk, &store::NewService {
            id: "smoke3".into(),
            service_name: "smoke.det".into(),
            service_version: "3.0.0".into(),
            alg_name: "烟火检测三".into(),
            company: "FireVendor".into(),
            deploy_type: DeployType::Cloud,
            deployed: true,
            description: String::new(),
            created_at: 1,
        }).await.unwrap();
        // A version of another deploy type would strand the tasks: refused,
        // nothing moved.
        st.create_service(ctx.project_pk, &store::NewService {
            id: "smoke-edge".into(),
            service_name: "smoke.det".into(),
            service_version: "2.5.0".into(),
            alg_name: "烟火检测".into(),
            company: "华为云".into(),
            deploy_type: DeployType::Edge,
            deployed: true,
            description: String::new(),
            created_at: 1,
        }).await.unwrap();
        let refused = st.upgrade_service(ctx.project_pk, "smoke.det", "2.0.0", "2.5.0").await;
        assert!(matches!(refused, Err(store::StoreError::NotAllowed(_))), "{refused:?}");
        assert_eq!(st.upgrade_service(ctx.project_pk, "smoke.det", "2.0.0", "3.0.0").await.unwrap(), 2);
        // The batches show the new version's algorithm and vendor, in the
        // list and in its filters, from memory and from the tables alike.
        let by_title = taskcenter::domain::ListBatchTasksParams {
            titles: vec!["烟火检测三".into()],
            manufacturers: vec!["FireVendor".into()],
            ..Default::default()
        };
        let listed = st.list_batch_tasks(ctx.project_pk, &by_title).await.unwrap();
        assert_eq!(listed.count, 2);
        assert!(listed.rows.iter().all(|r| r.service_version == "3.0.0" && r.task_type == "0"));
        assert_eq!(st.list_batch_tasks_from_db(ctx.project_pk, &by_title).await.unwrap(), listed);
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Upgrading);
        let up = st.sync_worker(w, tick(0), LEASE, &[held]).await.unwrap().upgrade;
        assert_eq!(up.iter().map(|a| a.service_version.as_str()).collect::<Vec<_>>(), vec!["3.0.0"]);
        st.report_task(w, held, Event::Upgraded, None).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Running);
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Running, "the new version is not upgraded again");
        // Freeze: running → freezing → (released) frozen; unfreeze → recovering → pending.
        st.set_project_frozen(ctx.project_pk, true).await.unwrap();
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Freezing);
        assert_eq!(st.sync_worker(w, tick(0), LEASE, &[held]).await.unwrap().stop, vec![held]);
        st.report_task(w, held, Event::Released, None).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Frozen);
        st.set_project_frozen(ctx.project_pk, false).await.unwrap();
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Recovering);
        // Undeploy the service: its live tasks stop for want of it.
        st.set_service_deployed(ctx.project_pk, "smoke.det", "3.0.0", false).await.unwrap();
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        scheduler::tick(&**st, tick(100), &cfg).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, StoppedNoService);
        counters_are_exact(&ctx).await;
    }

    async fn a_schedule_runs_its_task_only_inside_its_windows(ctx: Ctx) {
        // Mondays 09:00–10:00 at +08:00, that is 01:00–02:00 UTC.
        const MONDAY: i64 = 1_795_996_800_000; // 2026-11-30 00:00 UTC
        const H: i64 = 3_600_000;
        let mut recs = calm_fixture();
        let mut b = batch("p1", 60, "nightly", ("helmet", "1.0.0"), &["g1"], 9_000, vec![task("sch", "s1", "pending")]);
        if let DumpRecord::BatchTask(r) = &mut b {
            r.schedule = Some(serde_json::json!({"type": "weekly", "timezone": "+08:00", "days_of_week": [1],
                "periods": [[{"begin_at": "09:00:00", "end_at": "10:00:00"}]]}));
        }
        recs.push(b);
        ctx.import(recs).await;
        let st = &ctx.store;
        let cfg = TickConfig::default();
        let w = worker(st, "w1", "cloud", 10, MONDAY).await;
        let held = |d: &TaskDetail| (d.state, d.schedule_held);
        let show = || async { st.find_task(ctx.project_pk, "sch").await.unwrap().unwrap() };
        // A pass at `at`, the worker alive then.
        let pass = |at: i64| async move {
            st.extend_leases(at, LEASE).await.unwrap();
            scheduler::tick(&**st, at, &cfg).await.unwrap()
        };

        // 08:30 local: outside the window, the task is stopped and held;
        // an unscheduled task is placed as usual.
        let r = pass(MONDAY + H / 2).await;
        assert_eq!(r.count(Event::WindowClosed), 1, "{r:?}");
        assert_eq!(held(&show().await), (Stopped, true));
        assert_eq!(state(&ctx, "t21").await, Starting);
        // 09:00:01: the window opened; the next pass places it.
        let r = pass(MONDAY + H + 1_000).await;
        assert_eq!(r.count(Event::WindowOpened), 1, "{r:?}");
        assert_eq!(held(&show().await), (Pending, false));
        pass(MONDAY + H + 2_000).await;
        assert_eq!(state(&ctx, "sch").await, Starting);
        let a = st.sync_worker(w, MONDAY + H + 3_000, LEASE, &[]).await.unwrap().assign;
        let h = a.iter().find(|a| a.task_id == "sch").map(|a| Held { task: a.task, attempt: a.attempt }).unwrap();
        st.report_task(w, h, Event::Started, None).await.unwrap();
        // 09:59:59 it still runs; 10:00:00 the window is over: stopped, held.
        pass(MONDAY + 2 * H - 1_000).await;
        assert_eq!(state(&ctx, "sch").await, Running);
        pass(MONDAY + 2 * H).await;
        assert_eq!(held(&show().await), (Stopping, true));
        assert!(st.sync_worker(w, MONDAY + 2 * H, LEASE, &[h]).await.unwrap().stop.contains(&h));
        st.report_task(w, h, Event::Released, None).await.unwrap();
        assert_eq!(held(&show().await), (Stopped, true), "held for the next window");
        pass(MONDAY + 3 * H).await;
        assert_eq!(state(&ctx, "sch").await, Stopped, "no window on Monday afternoon");
        let moves: Vec<(TaskState, String)> = st.list_task_history(ctx.project_pk, "sch").await.unwrap()
            .into_iter().map(|h| (h.from, h.event)).collect();
        assert_eq!(moves, [(Pending, "WindowClosed".into()), (Stopped, "WindowOpened".into()), (Pending, "Schedule".into()),
            (Scheduling, "Place".into()), (Starting, "Started".into()), (Running, "WindowClosed".into()), (Stopping, "Released".into())]);

        // The next Monday's window starts it again, and ends it again.
        let week = 7 * 24 * H;
        pass(week + MONDAY + H).await;
        pass(week + MONDAY + H + 1_000).await;
        assert_eq!(held(&show().await), (Starting, false));
        pass(week + MONDAY + 2 * H).await;
        assert_eq!(held(&show().await), (Stopping, true));
        let h = Held { task: h.task, attempt: h.attempt + 1 };
        st.report_task(w, h, Event::Released, None).await.unwrap();

        // A user's stop on a held task ends the hold: no window starts it.
        let stop = st.apply_task_event(ctx.project_pk, "sch", Event::Stop).await.unwrap();
        assert_eq!(stop, Applied::Moved { from: Stopped, to: Outcome::To(Stopped) });
        assert_eq!(held(&show().await), (Stopped, false));
        assert!(matches!(st.apply_task_event(ctx.project_pk, "sch", Event::Stop).await.unwrap(), Applied::Refused { .. }));
        let two_weeks = 2 * week;
        pass(two_weeks + MONDAY + H + 1_000).await;
        assert_eq!(held(&show().await), (Stopped, false));
        // A user's start outside a window: the schedule holds it until one.
        st.apply_task_event(ctx.project_pk, "sch", Event::Start).await.unwrap();
        pass(two_weeks + MONDAY + 5 * H).await;
        assert_eq!(held(&show().await), (Stopped, true));
        // Inside one it runs at once, in one pass.
        st.apply_task_event(ctx.project_pk, "sch", Event::Start).await.unwrap();
        pass(3 * week + MONDAY + H + 1_000).await;
        assert_eq!(held(&show().await), (Starting, false));
        counters_are_exact(&ctx).await;
    }

    async fn reports_run_beside_two_schedulers_and_every_task_runs_once(ctx: Ctx) {
        // A worker's reports, sent from a third store, commit between two
        // processes' passes placing on it.
        ctx.import(calm_fixture()).await;
        let other = store::open_sql(&ctx.db.url).await.unwrap();
        let reporter = store::open_sql(&ctx.db.url).await.unwrap();
        let st = ctx.store.clone();
        let now = taskcenter::domain::now_millis();
        let w = worker(&st, "w1", "cloud", 2, now).await;
        let mut ids = vec!["t21".to_owned()];
        ids.extend(tasks_on_sources(&ctx).await);
        assert_eq!(ids.len(), 8);
        let cfg = TickConfig::default();
        let passes = |s: Arc<store::SqlStore>| async move {
            for i in 0..30 {
                scheduler::tick(&*s, now + i, &cfg).await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        // Runs what it is given and reports it started and ended, in one
        // request, as the agent does; the worker never holds more than its
        // slots.
        let work = |s: Arc<store::SqlStore>, rounds: i64| async move {
            for i in 0..rounds {
                let reply = s.sync_worker(w, now + i, LEASE, &[]).await.unwrap();
                let ws = s.list_workers().await.unwrap();
                assert!(ws.iter().all(|w| w.held <= w.slots), "{ws:?}");
                let reports: Vec<store::lifecycle::WorkerReport> = reply
                    .assign
                    .iter()
                    .flat_map(|a| {
                        [Event::Started, Event::Exited].map(|event| store::lifecycle::WorkerReport {
                            held: Held { task: a.task, attempt: a.attempt },
                            event,
                            error: None,
                        })
                    })
                    .collect();
                if !reports.is_empty() {
                    let replies = s.report_tasks(w, &reports).await.unwrap();
                    assert!(
                        replies.iter().all(|r| matches!(r, Some(Applied::Moved { .. }))),
                        "a report on a task the worker holds applies: {replies:?}"
                    );
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::join!(passes(st.clone()), passes(other.clone()), work(reporter.clone(), 60));
        // Whatever is left, one step at a time.
        for i in 0..10 {
            scheduler::tick(&*st, now + 100 + i, &cfg).await.unwrap();
            work(reporter.clone(), 1).await;
        }
        for id in &ids {
            assert_eq!(state(&ctx, id).await, Succeeded, "{id}");
            let h = st.list_task_history(ctx.project_pk, id).await.unwrap();
            let count = |e: &str| h.iter().filter(|x| x.event == e).count();
            assert_eq!((count("Place"), count("Started"), count("Exited")), (1, 1, 1), "{id}: {h:?}");
        }
        assert_eq!(st.list_workers().await.unwrap()[0].held, 0);
        counters_are_exact(&ctx).await;
    }

    async fn reports_that_free_a_slot_get_its_next_task_in_their_answer(ctx: Ctx) {
        // Through the HTTP routes, in a process that runs the scheduler.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let (w1, second, report) = one_slot_worker_running_t21(&ctx).await;
        // Started frees nothing: nothing placed, no list in the answer.
        let r = w1.post("/worker/v1/reports", serde_json::json!({"reports": [report("started")]})).await;
        assert_eq!(r["replies"][0]["applied"], true);
        assert!(r.get("assign").is_none(), "{r}");
        // Exited frees the one slot: the next task is placed on it and
        // comes back with the answer, as a sync would hand it out.
        let r = w1.post("/worker/v1/reports", serde_json::json!({"reports": [report("exited")]})).await;
        assert_eq!(r["replies"][0]["state"], "SUCCEEDED");
        assert_eq!(r["assign"].as_array().map(Vec::len), Some(1), "{r}");
        assert_eq!(r["assign"][0]["task_id"], second.as_str());
        assert_eq!(state(&ctx, &second).await, Starting);
        let h = st.list_task_history(ctx.project_pk, &second).await.unwrap();
        assert_eq!(h.last().map(|e| (e.event.as_str(), e.worker_name.as_deref())), Some(("Place", Some("w1"))));
        counters_are_exact(&ctx).await;
    }

    async fn a_revoked_worker_stays_out_of_service(ctx: Ctx) {
        // Revoked while its long poll waits: the move of its task that the
        // revoke brings wakes the poll, which must not renew the lease.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let (w1, second, report) = one_slot_worker_running_t21(&ctx).await;
        w1.post("/worker/v1/reports", serde_json::json!({"reports": [report("started")]})).await;
        assert_eq!(state(&ctx, "t21").await, Running);
        let held = report("started");
        let poll = {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/worker/v1/sync")
                .header("authorization", format!("Bearer {}", w1.cred))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    serde_json::json!({"running": [{"task": held["task"], "attempt": held["attempt"]}], "wait_ms": 5_000})
                        .to_string(),
                ))
                .unwrap();
            tokio::spawn(w1.router.clone().oneshot(req))
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        st.revoke_worker("w1").await.unwrap();
        let cfg = TickConfig::default();
        let mut now = taskcenter::domain::now_millis();
        scheduler::tick(&**st, now, &cfg).await.unwrap();
        let answer = poll.await.unwrap().unwrap();
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX).await.unwrap();
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        for _ in 0..4 {
            now += 100;
            scheduler::tick(&**st, now, &cfg).await.unwrap();
        }
        let workers = st.list_workers().await.unwrap();
        assert!(workers.iter().all(|w| w.lost), "{workers:?}");
        // No live worker is left, so nothing is placed again: both tasks
        // wait for capacity, none sits on w1.
        for id in ["t21", second.as_str()] {
            assert_eq!(state(&ctx, id).await, LackOfResources, "{id}");
        }
        // The store refuses the revoked worker's lease outright too.
        let id = workers.iter().find(|w| w.name == "w1").unwrap().id.clone();
        let pk = st.find_worker_credential(&id).await.unwrap().unwrap().pk;
        assert!(st.sync_worker(pk, now, LEASE, &[]).await.is_err());
        assert!(st.register_worker(pk, DeployType::Cloud, 1, None, now, LEASE).await.is_err());
        assert!(st.list_workers().await.unwrap().iter().all(|w| w.lost));
        counters_are_exact(&ctx).await;
    }

    async fn reports_go_in_when_the_placing_pass_after_them_fails(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let (w1, second, report) = one_slot_worker_running_t21(&ctx).await;
        w1.post("/worker/v1/reports", serde_json::json!({"reports": [report("started")]})).await;
        // Every placement fails from here on: the database refuses any move
        // to `starting`.
        let starting = Starting.index();
        let postgres = ctx.db.url.starts_with("postgres");
        let ddl = if postgres {
            format!(
                "create function refuse_starting() returns trigger language plpgsql as \
                 $$ begin raise exception 'no placing'; end $$; \
                 create trigger refuse_starting before update on tasks for each row \
                 when (new.state = {starting}) execute function refuse_starting();"
            )
        } else {
            format!(
                "create trigger refuse_starting before update on tasks \
                 when new.state = {starting} begin select raise(abort, 'no placing'); end;"
            )
        };
        raw_sql(&ctx, &ddl).await;
        // The exit still goes in and is answered; nothing placed with it.
        let r = w1.post("/worker/v1/reports", serde_json::json!({"reports": [report("exited")]})).await;
        assert_eq!((&r["replies"][0]["applied"], &r["replies"][0]["state"]), (&serde_json::json!(true), &serde_json::json!("SUCCEEDED")), "{r}");
        assert!(r.get("assign").is_none(), "{r}");
        assert_eq!(state(&ctx, "t21").await, Succeeded);
        assert_ne!(state(&ctx, &second).await, Starting);
        counters_are_exact(&ctx).await;
        // Once placing works again, the scheduler places the next task.
        raw_sql(&ctx, if postgres { "drop trigger refuse_starting on tasks" } else { "drop trigger refuse_starting" }).await;
        scheduler::tick(&**st, taskcenter::domain::now_millis(), &TickConfig::default()).await.unwrap();
        assert_eq!(state(&ctx, &second).await, Starting);
        counters_are_exact(&ctx).await;
    }

    async fn a_sync_list_older_than_a_start_does_not_lose_the_task(ctx: Ctx) {
        // The agent starts what a report's answer brings while its sync
        // waits on the server with the list it took before.
        ctx.import(calm_fixture()).await;
        let st = &ctx.store;
        let now = taskcenter::domain::now_millis();
        let w = worker(st, "w1", "cloud", 1, now).await;
        scheduler::tick(&**st, now, &TickConfig::default()).await.unwrap();
        let listed = taskcenter::domain::now_millis();
        let a = st.sync_worker(w, now, LEASE, &[]).await.unwrap().assign.remove(0);
        let held = Held { task: a.task, attempt: a.attempt };
        let started = store::lifecycle::WorkerReport { held, event: Event::Started, error: None };
        st.report_tasks(w, &[started]).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Running);
        let reply = st.sync_worker_listed(w, now, LEASE, &[], listed).await.unwrap();
        assert!(reply.is_empty(), "{reply:?}");
        assert_eq!(state(&ctx, "t21").await, Running, "a list older than the start does not name it");
        // A list taken after the start that does not name it: lost.
        st.sync_worker_listed(w, now, LEASE, &[], taskcenter::domain::now_millis() + 1).await.unwrap();
        assert_eq!(state(&ctx, "t21").await, Abnormal);
        counters_are_exact(&ctx).await;
    }

    async fn two_schedulers_never_overcommit_a_worker(ctx: Ctx) {
        ctx.import(calm_fixture()).await;
        // A second process's store on the same database.
        let other = store::open_sql(&ctx.db.url).await.unwrap();
        let st = ctx.store.clone();
        let now = taskcenter::domain::now_millis();
        let w = worker(&st, "w1", "cloud", 3, now).await;
        let ids = tasks_on_sources(&ctx).await;
        assert_eq!(ids.len(), 7);
        let cfg = TickConfig::default();
        let run = |s: Arc<store::SqlStore>| async move {
            for i in 0..20 {
                scheduler::tick(&*s, now + i, &cfg).await.unwrap();
            }
        };
        let check = |s: Arc<store::SqlStore>| async move {
            for _ in 0..40 {
                let ws = s.list_workers().await.unwrap();
                assert!(ws.iter().all(|w| w.held <= w.slots), "{ws:?}");
                tokio::task::yield_now().await;
            }
        };
        tokio::join!(run(st.clone()), run(other.clone()), check(st.clone()));
        let ws = st.list_workers().await.unwrap();
        assert_eq!(ws[0].held, 3, "both schedulers together filled the worker exactly");
        let reply = st.sync_worker(w, now + 50, LEASE, &[]).await.unwrap();
        let mut tasks: Vec<i64> = reply.assign.iter().map(|a| a.task).collect();
        tasks.sort_unstable();
        tasks.dedup();
        assert_eq!(tasks.len(), 3);
        assert!(reply.assign.iter().all(|a| a.attempt == 1), "each placed once: {:?}", reply.assign);
        for id in &ids {
            let h = st.list_task_history(ctx.project_pk, id).await.unwrap();
            assert!(h.iter().filter(|e| e.event == "Place").count() <= 1, "{id}: {h:?}");
        }
        counters_are_exact(&ctx).await;
    }
}
