//! Failures and load, with real processes: a worker killed with SIGKILL, the
//! server killed with SIGKILL and restarted, and a stress run of 10,000
//! tasks on 4 workers × 50 slots through start, stop, delete and worker
//! kills. SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::process::*;
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use taskcenter::domain::dump::{BatchTaskRecord, DumpRecord, TaskRecord};
#[allow(unused_imports)]
use taskcenter::store::prelude::*;

const HELMET: (&str, &str) = ("helmet", "1.0.0");

fn state(t: &Value) -> &str {
    t["state"].as_str().unwrap_or("GONE")
}

fn events(t: &Value) -> Vec<String> {
    t["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap().to_owned())
        .collect()
}

fn killed_worker(db: &str) {
    let env = Env::start(db, &["--lease", "2s", "--tick", "100ms"]);
    env.catalogue(6);
    let mut a = env.worker("a", "cloud", &env.exec());
    let batch = env.batch(
        "run",
        HELMET,
        "g",
        &["c1", "c2", "c3", "c4", "c5", "c6"],
        "sleep",
    );
    let tasks = env.tasks_of(&batch);
    env.wait(&tasks, Some("RUNNING"));
    let on_a = env.task(&tasks[0])["worker_id"].clone();
    assert!(tasks.iter().all(|id| env.task(id)["worker_id"] == on_a));
    let mut b = env.worker("b", "cloud", &env.exec());
    a.kill();
    let after = env.wait_for(&tasks, 30, "running on b", |ts| {
        ts.iter()
            .all(|t| state(t) == "RUNNING" && t["worker_id"] != on_a)
    });
    for t in &after {
        let ev = events(t);
        let tail: Vec<&str> = ev[ev.len().saturating_sub(6)..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "LeaseExpired",
                "Recover",
                "Requeued",
                "Schedule",
                "Place",
                "Started"
            ],
            "{t}"
        );
        assert_eq!(t["attempt"], 2, "placed once on a, once on b: {t}");
    }
    b.kill();
}

/// A worker stopped as a service manager stops it (SIGTERM) ends its
/// executors before it leaves, so the tasks it held, rescheduled after its
/// lease, never run twice at once.
fn stopped_worker(db: &str) {
    let env = Env::start(db, &["--lease", "2s", "--tick", "100ms"]);
    env.catalogue(2);
    let script = env.dir.0.join("pid.sh");
    std::fs::write(&script, "echo $$ >> pids.log\nexec sleep 30\n").unwrap();
    let mut a = env.worker("a", "cloud", &format!("sh {}", script.display()));
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1", "c2"], "sleep"));
    env.wait(&tasks, Some("RUNNING"));
    let pids: Vec<String> = std::fs::read_to_string(env.dir.0.join("pids.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(pids.iter().all(|p| alive(p)));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &a.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The agent's grace is 1 s; it leaves once its executors are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not leave");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        pids.iter().all(|p| !alive(p)),
        "executors outlived the agent: {pids:?}"
    );
    // Its tasks go back to the queue after the lease and run elsewhere.
    let _b = env.worker("b", "cloud", &format!("sh {}", script.display()));
    let after = env.wait_for(&tasks, 30, "running on b", |ts| {
        ts.iter()
            .all(|t| state(t) == "RUNNING" && t["worker_name"] == "b")
    });
    assert!(after.iter().all(|t| t["attempt"] == 2), "{after:?}");
}

fn killed_server(db: &str) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags = [
        "--listen",
        listen.as_str(),
        "--lease",
        "3s",
        "--tick",
        "100ms",
    ];
    let mut env = Env::start(db, &flags);
    env.catalogue(12);
    let mut w = env.worker_with("w", "cloud", &env.exec(), 8);
    let sources: Vec<String> = (1..=12).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let batch = env.batch("run", HELMET, "g", &refs, "sleep");
    let tasks = env.tasks_of(&batch);
    // Kill the server while tasks are being scheduled and started.
    std::thread::sleep(Duration::from_millis(150));
    env.server.kill();
    std::thread::sleep(Duration::from_millis(500));
    env.server = Server::start_with(&env.dir.0, db, &flags);
    let up = Instant::now();
    let steady = |ts: &[Value]| {
        let running = ts.iter().filter(|t| state(t) == "RUNNING").count();
        let pending = ts.iter().filter(|t| state(t) == "PENDING").count();
        running == 8 && pending == 4
    };
    env.wait_for(&tasks, 30, "8 running and 4 pending", steady);
    let took = up.elapsed();
    eprintln!("steady {took:?} after the restart");
    assert!(
        took <= Duration::from_secs(6),
        "steady within two lease periods of the restart, took {took:?}"
    );
    // Again, now with every slot running, and down for longer than a lease.
    env.server.kill();
    std::thread::sleep(Duration::from_millis(4000));
    env.server = Server::start_with(&env.dir.0, db, &flags);
    let up = Instant::now();
    env.wait_for(&tasks, 30, "8 running and 4 pending again", steady);
    let took = up.elapsed();
    eprintln!("steady {took:?} after the second restart");
    assert!(took <= Duration::from_secs(6), "took {took:?}");
    // A lease period later the worker still holds them: the restart did not
    // count the time the server was down against its lease.
    std::thread::sleep(Duration::from_millis(3500));
    env.wait_for(&tasks, 1, "still 8 running and 4 pending", steady);
    // Nothing ran twice and nothing was placed twice.
    let starts = env.starts();
    let distinct: HashSet<&(String, i64)> = starts.iter().collect();
    assert_eq!((starts.len(), distinct.len()), (8, 8), "{starts:?}");
    for id in &tasks {
        let t = env.task(id);
        let placed = events(&t).iter().filter(|e| *e == "Place").count();
        assert!(placed <= 1, "{t}");
    }
    // The worker still obeys the restarted server.
    env.call(
        "PUT",
        &format!("/v2/default/batch-tasks/{batch}/action/stop"),
        None,
    );
    env.wait(&tasks, Some("STOPPED"));
    w.kill();
}

const STRESS_BATCHES: usize = 20;
const STRESS_SOURCES: usize = 500;

/// 20 batches × 500 sources = 10,000 tasks, imported pending. Most exit at
/// once; every fourth batch runs a second; every fifth fails.
fn stress_dump() -> String {
    let mut tasks = Vec::new();
    let mut lines = Vec::new();
    for b in 0..STRESS_BATCHES {
        let mode = match b % 5 {
            0 => "fail",
            1 | 3 => "brief",
            _ => "ok",
        };
        tasks.clear();
        for s in 0..STRESS_SOURCES {
            tasks.push(TaskRecord {
                id: format!("t{b}-{s}"),
                video_source_id: format!("c{}", s + 1),
                state: "pending".into(),
                created_at: None,
                updated_at: None,
                ..Default::default()
            });
        }
        lines.push(
            serde_json::to_string(&DumpRecord::BatchTask(BatchTaskRecord {
                project_id: "default".into(),
                id: bid(b as u32 + 1),
                name: format!("stress-{b}"),
                description: None,
                service_name: "helmet".into(),
                service_version: "1.0.0".into(),
                priority: ["low", "medium", "high"][b % 3].into(),
                created_at: 1000 + b as i64,
                group_ids: vec!["g".into()],
                config: Some(json!({ "mode": mode })),
                output: None,
                tasks: tasks.clone(),
                ..Default::default()
            }))
            .unwrap(),
        );
    }
    lines.join("\n")
}

fn stress(db: &str) {
    let env = Env::start(db, &["--lease", "2s", "--tick", "100ms"]);
    env.catalogue(STRESS_SOURCES as u32);
    std::fs::write(env.dir.0.join("stress.ndjson"), stress_dump()).unwrap();
    env.cli(&["import", "stress.ndjson"]);
    let batches: Vec<String> = (1..=STRESS_BATCHES as u32).map(bid).collect();
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| env.worker_with(&format!("w{i}"), "cloud", &env.exec(), 50))
        .collect();
    // Churn: stop, start and delete batches and tasks, and kill workers.
    let mut seed = 7u64;
    let mut rnd = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let began = Instant::now();
    let mut deleted_batches = HashSet::new();
    for round in 0..30 {
        let b = &batches[rnd(batches.len())];
        if deleted_batches.contains(b) {
            continue;
        }
        let path = match rnd(4) {
            0 => format!("/v2/default/batch-tasks/{b}/action/stop"),
            1 => format!("/v2/default/batch-tasks/{b}/action/start"),
            2 => format!(
                "/v2/default/tasks/t{}-{}",
                batches.iter().position(|x| x == b).unwrap(),
                rnd(STRESS_SOURCES)
            ),
            _ => format!(
                "/v2/default/tasks/t{}-{}/action/stop",
                batches.iter().position(|x| x == b).unwrap(),
                rnd(STRESS_SOURCES)
            ),
        };
        let method = if path.starts_with("/v2/default/tasks/") && !path.ends_with("/stop") {
            "DELETE"
        } else {
            "PUT"
        };
        let (status, _, body) = http(&env.server.addr, method, &path, Some(&env.token), None);
        assert!(
            status == 200
                || body["error_code"] == "VIAS.00010012"
                || body["error_code"] == "VIAS.00010002",
            "{method} {path}: {status} {body}"
        );
        if round % 10 == 5 {
            // Kill a worker; a replacement registers.
            let i = rnd(workers.len());
            workers[i].kill();
            workers[i] = env.worker_with(&format!("w{i}-{round}"), "cloud", &env.exec(), 50);
        }
        if round == 20 {
            let b = batches[2].clone();
            env.call("DELETE", &format!("/v2/default/batch-tasks/{b}"), None);
            deleted_batches.insert(b);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Start whatever was stopped, then wait until nothing is in flight.
    for b in batches.iter().filter(|b| !deleted_batches.contains(*b)) {
        env.call(
            "PUT",
            &format!("/v2/default/batch-tasks/{b}/action/start"),
            None,
        );
    }
    let at_rest = ["succeeded", "failed"];
    let deadline = Instant::now() + Duration::from_secs(300);
    let list = loop {
        let list = env.call("GET", "/v2/default/batch-tasks?is_paged=false", None);
        let busy: u64 = list["batch_task_list"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["batch_task_status_info"].as_object().unwrap().iter())
            .filter(|(s, _)| !at_rest.contains(&s.as_str()))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        if busy == 0 {
            break list;
        }
        assert!(Instant::now() < deadline, "still in flight: {list}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "stress: churned and settled in {:?}; {} executor starts",
        began.elapsed(),
        env.starts().len()
    );
    for w in &mut workers {
        w.kill();
    }

    // Counters equal a fresh count; the list equals the counters.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(taskcenter::store::open_sql(db)).unwrap();
    let p = rt
        .block_on(store.find_project(&taskcenter::store::ProjectRef::Id("default".into())))
        .unwrap()
        .unwrap();
    let rows = list["batch_task_list"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        STRESS_BATCHES - deleted_batches.len(),
        "the deleted batch is gone"
    );
    let mut total = 0;
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let c = rt.block_on(store.check_counters(p.pk, id)).unwrap();
        assert_eq!(c.stored, c.counted, "batch {id}");
        assert_eq!(
            row["num_task"].as_i64().unwrap(),
            c.counted.iter().sum::<i64>(),
            "batch {id}"
        );
        total += row["num_task"].as_i64().unwrap();
    }
    assert!(total > 9_000, "most tasks survive the churn: {total}");
    // No assignment ran twice: each (task, attempt) started at most once,
    // and each task's attempt number is the number of times it was placed.
    let starts = env.starts();
    let mut seen = HashMap::new();
    for s in &starts {
        *seen.entry(s).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "assignments started twice: {twice:?}");
    for b in 0..STRESS_BATCHES {
        for s in (0..STRESS_SOURCES).step_by(50) {
            let id = format!("t{b}-{s}");
            if let Some(t) = rt.block_on(store.find_task(p.pk, &id)).unwrap() {
                let h = rt.block_on(store.list_task_history(p.pk, &id)).unwrap();
                let placed = h.iter().filter(|e| e.event == "Place").count() as i64;
                assert_eq!(placed, t.attempt, "{id}: {h:?}");
            }
        }
    }
}

/// What an executor started ends with its task: on a stop, a child that
/// ignores SIGTERM is killed after the grace even when the executor itself
/// obeys at once; on a normal exit, what it left running is ended too.
fn leftovers(db: &str) {
    let env = Env::start(db, &["--lease", "2s", "--tick", "100ms"]);
    env.catalogue(1);
    let script = env.dir.0.join("leave.sh");
    std::fs::write(
        &script,
        "if [ -e quick ]; then sleep 300 & echo $! >> quick.log; exit 0; fi\n\
         (trap '' TERM; exec sleep 300) & echo $! >> stubborn.log\n\
         exec sleep 30\n",
    )
    .unwrap();
    let _a = env.worker("a", "cloud", &format!("sh {}", script.display()));
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1"], "sleep"));
    env.wait(&tasks, Some("RUNNING"));
    let pid_in = |log: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(env.dir.0.join(log)).unwrap_or_default();
            if let Some(pid) = text.lines().next() {
                break pid.to_owned();
            }
            assert!(Instant::now() < deadline, "nothing in {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let alive = |pid: &str| {
        // A process reaped or gone; a zombie awaiting its reaper counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
    };
    let gone_within = |pid: &str, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "{what} (pid {pid}) outlived its task"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let stubborn = pid_in("stubborn.log");
    assert!(alive(&stubborn));
    env.call(
        "PUT",
        &format!("/v2/default/tasks/{}/action/stop", tasks[0]),
        None,
    );
    env.wait(&tasks, Some("STOPPED"));
    // The grace is 1 s.
    gone_within(&stubborn, "a child that ignores SIGTERM");

    std::fs::write(env.dir.0.join("quick"), "").unwrap();
    env.call(
        "PUT",
        &format!("/v2/default/tasks/{}/action/start", tasks[0]),
        None,
    );
    env.wait(&tasks, Some("SUCCEEDED"));
    gone_within(
        &pid_in("quick.log"),
        "a child left running by an executor that exited 0",
    );
}

/// The scheduling policy in a /proc stat file: its field 41 (0 normal,
/// 5 idle).
fn policy_in(stat: &std::path::Path) -> String {
    let s = std::fs::read_to_string(stat).unwrap();
    s.rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(41 - 3)
        .unwrap()
        .to_owned()
}

/// Runs two tasks, to their end, on a worker started with `flags` whose
/// executor writes down its own scheduling policy and its child's: those
/// two, and the policy of every thread of the agent.
fn policies_under(db: &str, flags: &[&str]) -> (String, String, Vec<String>) {
    let env = Env::start(db, &["--tick", "100ms"]);
    env.catalogue(2);
    let script = env.dir.0.join("policy.sh");
    std::fs::write(
        &script,
        "sleep 1 & cut -d' ' -f41 /proc/$!/stat > child.policy\n\
         cut -d' ' -f41 /proc/$$/stat > executor.policy\n",
    )
    .unwrap();
    let agent = env.worker_args("a", "cloud", &format!("sh {}", script.display()), 4, flags);
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1", "c2"], "once"));
    env.wait(&tasks, Some("SUCCEEDED"));
    let read = |f: &str| {
        std::fs::read_to_string(env.dir.0.join(f))
            .unwrap()
            .trim()
            .to_owned()
    };
    let threads = std::fs::read_dir(format!("/proc/{}/task", agent.0.id()))
        .unwrap()
        .map(|t| policy_in(&t.unwrap().path().join("stat")))
        .collect();
    (read("executor.policy"), read("child.policy"), threads)
}

/// With `--executor-priority idle` the executor (and what it starts) runs
/// under SCHED_IDLE while every thread of the agent keeps the normal
/// policy, and the tasks run to their end as any other.
fn idle_executors(db: &str) {
    let (executor, child, threads) = policies_under(db, &["--executor-priority", "idle"]);
    assert_eq!(executor, "5", "the executor runs under SCHED_IDLE");
    assert_eq!(child, "5", "and so does what it starts");
    assert!(
        threads.iter().all(|p| p == "0"),
        "every thread of the agent keeps the normal policy: {threads:?}"
    );
}

/// With `--priority idle` the whole worker runs under SCHED_IDLE: every
/// thread of the agent, the executor and what it starts; its tasks run to
/// their end as any other.
fn idle_worker(db: &str) {
    let (executor, child, threads) = policies_under(db, &["--priority", "idle"]);
    assert_eq!(executor, "5", "the executor runs under SCHED_IDLE");
    assert_eq!(child, "5", "and so does what it starts");
    assert!(threads.len() > 1, "the agent runs more than one thread");
    assert!(
        threads.iter().all(|p| p == "5"),
        "every thread of the agent: {threads:?}"
    );
}

/// At idle priority an executor that does not exist is still a failed
/// start (`VIAS.TC.SPAWN`), as at normal priority, not a crash of the
/// launcher.
fn idle_missing_executor(db: &str) {
    let env = Env::start(db, &["--tick", "100ms"]);
    env.catalogue(1);
    let _w = env.worker_args(
        "a",
        "cloud",
        "/nonexistent/analyzer --fast",
        4,
        &["--executor-priority", "idle"],
    );
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1"], "once"));
    env.wait(&tasks, Some("START_FAILED"));
    assert_eq!(env.task(&tasks[0])["error"]["code"], "VIAS.TC.SPAWN");
}

/// A worker given every `serve`'s address rides out the loss of the one it
/// talks to: it moves on to the next before its lease runs out, so its
/// tasks neither move nor run twice.
fn failover(db: &str) {
    let mut env = Env::start(db, &["--lease", "3s", "--tick", "100ms"]);
    env.catalogue(3);
    let b = Server::start_with(&env.dir.0, db, &["--lease", "3s", "--tick", "100ms"]);
    let credential = env.cli(&["workers", "add", "a"]);
    let servers = format!("http://{}, http://{}", env.server.addr, b.addr);
    let _worker = Worker(
        std::process::Command::new(BIN)
            .current_dir(&env.dir.0)
            .args(["worker", "--server", &servers, "--token", &credential])
            .args(["--slots", "4", "--grace", "1s", "--exec", &env.exec()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1", "c2", "c3"], "sleep"));
    env.wait(&tasks, Some("RUNNING"));
    // The first serve goes; the test asks the second from now on.
    let mut first = std::mem::replace(&mut env.server, b);
    first.kill();
    // Three leases and more.
    std::thread::sleep(Duration::from_secs(10));
    for id in &tasks {
        let t = env.task(id);
        assert_eq!(
            (state(&t), &t["attempt"], &t["worker_name"]),
            ("RUNNING", &json!(1), &json!("a")),
            "{t}"
        );
    }
    assert_eq!(
        env.starts().len(),
        3,
        "no executor started twice: {:?}",
        env.starts()
    );
}

/// A database that takes no writes for longer than the lease costs the
/// running tasks nothing: the workers cannot renew their leases meanwhile,
/// but once passes go through again the leases restart before any expires.
fn read_only_spell(db: &str) {
    let env = Env::start(db, &["--lease", "2s", "--tick", "100ms"]);
    env.catalogue(2);
    let _worker = env.worker("a", "cloud", &env.exec());
    let tasks = env.tasks_of(&env.batch("run", HELMET, "g", &["c1", "c2"], "sleep"));
    env.wait(&tasks, Some("RUNNING"));
    set_read_only(db, true);
    // Three leases and more.
    std::thread::sleep(Duration::from_secs(7));
    set_read_only(db, false);
    std::thread::sleep(Duration::from_secs(4));
    for id in &tasks {
        let t = env.task(id);
        assert_eq!((state(&t), &t["attempt"]), ("RUNNING", &json!(1)), "{t}");
    }
    assert_eq!(
        env.starts().len(),
        2,
        "no executor started twice: {:?}",
        env.starts()
    );
}

#[test]
fn a_read_only_spell_longer_than_the_lease_moves_no_task_on_postgres() {
    on_postgres(read_only_spell);
}

#[test]
fn a_worker_moves_to_the_next_serve_when_its_own_is_gone_on_postgres() {
    on_postgres(failover);
}

#[test]
fn what_an_executor_started_ends_with_its_task_on_sqlite() {
    leftovers(&TestDb::sqlite().url);
}

#[test]
fn what_an_executor_started_ends_with_its_task_on_postgres() {
    on_postgres(leftovers);
}

#[test]
fn idle_priority_executors_leave_the_agent_at_normal_priority_on_sqlite() {
    idle_executors(&TestDb::sqlite().url);
}

#[test]
fn an_idle_priority_worker_runs_every_thread_and_executor_under_sched_idle_on_sqlite() {
    idle_worker(&TestDb::sqlite().url);
}

#[test]
fn an_idle_priority_executor_that_does_not_exist_fails_to_start_on_sqlite() {
    idle_missing_executor(&TestDb::sqlite().url);
}

#[test]
fn a_killed_workers_tasks_run_elsewhere_on_sqlite() {
    killed_worker(&TestDb::sqlite().url);
}

#[test]
fn a_stopped_worker_ends_its_executors_first_on_sqlite() {
    stopped_worker(&TestDb::sqlite().url);
}

#[test]
fn a_stopped_worker_ends_its_executors_first_on_postgres() {
    on_postgres(stopped_worker);
}

#[test]
fn a_killed_server_loses_and_repeats_nothing_on_sqlite() {
    killed_server(&TestDb::sqlite().url);
}

#[test]
fn stress_on_sqlite() {
    stress(&TestDb::sqlite().url);
}

#[test]
fn a_killed_workers_tasks_run_elsewhere_on_postgres() {
    on_postgres(killed_worker);
}

#[test]
fn a_killed_server_loses_and_repeats_nothing_on_postgres() {
    on_postgres(killed_server);
}

#[test]
fn stress_on_postgres() {
    on_postgres(stress);
}
