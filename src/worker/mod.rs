//! The worker agent, `taskcenter worker`: registers with its own credential,
//! syncs with the server (heartbeat and long-poll in one call), runs the
//! executor once per assigned task with the task in its environment,
//! reports `started`, then `exited`/`crashed` from the exit status
//! (`spawn_failed` if it cannot start), stops tasks on request (SIGTERM,
//! SIGKILL after a grace period) and rides out server restarts with
//! backoff. A task stays in what the worker reports as running until its
//! final report is answered, so a restart neither loses nor repeats one.

pub mod client;
pub mod executor;

use crate::protocol::{
    Assignment, Held, RegisterReply, RegisterRequest, Report, ReportBatch, ReportBatchReply,
    ReportRequest, SyncReply, SyncRequest, WorkerKind,
};
use client::{Client, ClientError};
use executor::{Priority, Spawner};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub server: String,
    pub credential: String,
    pub slots: i64,
    pub kind: WorkerKind,
    /// The edge pool it serves by name, if any.
    pub pool: Option<String>,
    /// The executor: a program and its arguments (split like a shell
    /// would, quotes allowed; no shell runs it).
    pub exec: String,
    /// Between SIGTERM and SIGKILL when a task is stopped.
    pub grace: Duration,
    /// The CPU priority the executors run at.
    pub priority: Priority,
}

/// The executor command and what starts it.
#[derive(Clone)]
struct Executor {
    argv: Arc<[String]>,
    spawner: Spawner,
}

enum Control {
    Stop,
    Upgrade(Box<Assignment>),
    /// The agent is leaving: end the executor, report nothing (the server
    /// reschedules the task when the worker's lease runs out).
    Leave,
}

/// What the agent last told a running task, so an instruction the server
/// repeats on every sync is carried out once.
#[derive(PartialEq, Eq)]
enum Told {
    Stop,
    Upgrade(String),
}

struct Entry {
    ctl: mpsc::UnboundedSender<Control>,
    told: Option<Told>,
}

type Tasks = Arc<Mutex<HashMap<Held, Entry>>>;

/// Runs this agent finished lately, and when: a sync answered before a
/// run's final report can still name it after the run is done (it also
/// comes in the reports' answers), and a run is never started twice. A
/// placement's attempt is new each time, so a task placed again still runs.
type Finished = Arc<Mutex<FinishedRuns>>;

/// The finished runs, and the order they finished in: forgetting the ones
/// older than [`FINISHED_KEPT`] looks only at those, so a run's end costs
/// the same however many runs the last two minutes finished.
#[derive(Default)]
struct FinishedRuns {
    at: HashMap<Held, std::time::Instant>,
    order: std::collections::VecDeque<(std::time::Instant, Held)>,
}

impl FinishedRuns {
    /// Remembers `held` as finished at `now` (never earlier than the last
    /// one), and forgets runs finished `FINISHED_KEPT` before it.
    fn insert(&mut self, held: Held, now: std::time::Instant) {
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_duration_since(at) < FINISHED_KEPT {
                break;
            }
            if self.at.get(&old) == Some(&at) {
                self.at.remove(&old);
            }
            self.order.pop_front();
        }
        self.at.insert(held, now);
        self.order.push_back((now, held));
    }

    fn contains(&self, held: &Held) -> bool {
        self.at.contains_key(held)
    }
}

/// How long a finished run is remembered: far longer than any answer is on
/// its way.
const FINISHED_KEPT: Duration = Duration::from_secs(120);

const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// How long a sync waits for news at most, and how much longer its answer
/// may take before it goes again (to the next server if there are
/// several): 5 s each, or a third of the lease if that is shorter, so a
/// server that does not answer (frozen, or behind a dead link) never holds
/// the worker past its lease.
fn sync_timing(lease: Duration) -> (Duration, Duration) {
    let step = (lease / 3).min(Duration::from_secs(5));
    (step, step * 2)
}

/// Splits a command line into words as a POSIX shell would (quotes group,
/// backslash escapes), without running a shell.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(s).map_err(|e| e.to_string())?;
    if words.is_empty() {
        return Err("the executor command is empty".into());
    }
    Ok(words)
}

/// Runs the agent until the server refuses its credential.
pub async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let argv = split_command(&cfg.exec).map_err(|e| anyhow::anyhow!("--exec: {e}"))?;
    let exe = Executor {
        argv: argv.into(),
        spawner: Spawner::new(cfg.priority)?,
    };
    let client = Client::new(&cfg.server, &cfg.credential).map_err(|e| anyhow::anyhow!(e))?;
    let mut backoff = Backoff::default();
    let registered = loop {
        let body = RegisterRequest {
            kind: cfg.kind,
            slots: cfg.slots,
            pool: cfg.pool.clone(),
        };
        match client
            .post::<_, RegisterReply>("/worker/v1/register", &body, Duration::from_secs(10))
            .await
        {
            Ok(reply) => break reply,
            Err(e) if e.is_auth() => anyhow::bail!("the server refused the worker credential"),
            Err(e @ ClientError::Status { .. }) => anyhow::bail!("registration refused: {e}"),
            Err(e) => {
                tracing::warn!(error = %e, "registering; retrying");
                backoff.wait().await;
            }
        }
    };
    let lease = Duration::from_millis(u64::try_from(registered.lease_ms).unwrap_or(0));
    let (sync_wait, sync_timeout) = sync_timing(lease);
    tracing::info!(server = %client.server(), kind = cfg.kind.as_str(), slots = cfg.slots, "worker registered");
    let tasks: Tasks = Arc::default();
    let finished: Finished = Arc::default();
    let (placed, mut placed_rx) = mpsc::unbounded_channel();
    let reporter = Reporter::start(client.clone(), placed);
    // Tasks placed in the slots a report batch freed come back in its
    // answer: started at once, as a sync's.
    {
        let (cfg, exe, reporter) = (cfg.clone(), exe.clone(), reporter.clone());
        let (tasks, finished) = (tasks.clone(), finished.clone());
        tokio::spawn(async move {
            while let Some(assign) = placed_rx.recv().await {
                let reply = SyncReply {
                    assign,
                    ..SyncReply::default()
                };
                act(&cfg, &exe, &reporter, &tasks, &finished, reply);
            }
        });
    }
    backoff = Backoff::within(lease);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let running: Vec<Held> = lock(&tasks).keys().copied().collect();
        let body = SyncRequest {
            running,
            wait_ms: u64::try_from(sync_wait.as_millis()).unwrap_or(u64::MAX),
        };
        let reply = tokio::select! {
            reply = client.post::<_, SyncReply>("/worker/v1/sync", &body, sync_timeout) => reply,
            why = told_to_leave(&mut terminate) => {
                tracing::info!("{why}: ending the executors, then leaving");
                leave(&tasks, cfg.grace).await;
                return Ok(());
            }
        };
        match reply {
            Ok(reply) => {
                backoff = Backoff::within(lease);
                let acted = act(&cfg, &exe, &reporter, &tasks, &finished, reply);
                if !acted {
                    // Only instructions already in hand (a stop in its grace
                    // period): do not spin.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            Err(e) if e.is_auth() => {
                leave(&tasks, cfg.grace).await;
                anyhow::bail!("the server refused the worker credential")
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Waits for SIGTERM (what service managers send) or Ctrl-C; which came.
async fn told_to_leave(terminate: &mut tokio::signal::unix::Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "interrupted",
    }
}

/// Ends every executor as a stop does (SIGTERM to its group, SIGKILL after
/// `grace`) and waits for them, so no task runs on after the agent: the
/// server reschedules them once the lease runs out, and they must not then
/// run twice.
async fn leave(tasks: &Tasks, grace: Duration) {
    for e in lock(tasks).values() {
        let _ = e.ctl.send(Control::Leave);
    }
    let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(2);
    while !lock(tasks).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lock<T>(t: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Carries out a sync reply; whether anything new was done.
fn act(
    cfg: &WorkerConfig,
    exe: &Executor,
    reporter: &Reporter,
    tasks: &Tasks,
    finished: &Finished,
    r: SyncReply,
) -> bool {
    let mut acted = false;
    let mut map = lock(tasks);
    for a in r.assign {
        let held = a.held();
        if map.contains_key(&held) || lock(finished).contains(&held) {
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        map.insert(
            held,
            Entry {
                ctl: tx,
                told: None,
            },
        );
        acted = true;
        tokio::spawn(run_task(
            cfg.clone(),
            exe.clone(),
            reporter.clone(),
            (tasks.clone(), finished.clone()),
            a,
            rx,
        ));
    }
    for h in r.stop {
        if let Some(e) = map.get_mut(&h) {
            if e.told != Some(Told::Stop) && e.ctl.send(Control::Stop).is_ok() {
                e.told = Some(Told::Stop);
                acted = true;
            }
        }
    }
    for a in r.upgrade {
        if let Some(e) = map.get_mut(&a.held()) {
            let told = Told::Upgrade(a.service_version.clone());
            if e.told.as_ref() != Some(&told) && e.ctl.send(Control::Upgrade(Box::new(a))).is_ok() {
                e.told = Some(told);
                acted = true;
            }
        }
    }
    acted
}

enum End {
    Exit(std::io::Result<ExitStatus>),
    Stopped,
    Left,
}

async fn run_task(
    cfg: WorkerConfig,
    exe: Executor,
    reporter: Reporter,
    (tasks, finished): (Tasks, Finished),
    mut current: Assignment,
    mut ctl: mpsc::UnboundedReceiver<Control>,
) {
    let held = current.held();
    let mut first = Report::Started;
    'run: loop {
        let started = command(&exe, &current).and_then(|mut cmd| cmd.spawn());
        let mut child = match started {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("could not start {}: {e}", exe.argv[0]);
                report(
                    &reporter,
                    held,
                    Report::SpawnFailed,
                    Some(("VIAS.TC.SPAWN", &msg)),
                )
                .await;
                break 'run;
            }
        };
        let group = group_of(&child);
        tracing::info!(task = %current.task_id, attempt = held.attempt, "task started");
        if first == Report::Started {
            // Queued, not awaited: the executor is already running, and the
            // reporter keeps this ahead of the task's next report.
            drop(send_report(&reporter, held, first, None));
        } else {
            // An upgrade is done only once the server has it: until then its
            // syncs still ask for the upgrade, which must not restart the
            // executor again.
            report(&reporter, held, first, None).await;
        }
        if first == Report::Upgraded {
            // Done: a later upgrade, to any version, is a new instruction.
            if let Some(e) = lock(&tasks).get_mut(&held) {
                e.told = None;
            }
        }
        let end = loop {
            break tokio::select! {
                status = child.wait() => End::Exit(status),
                msg = ctl.recv() => match msg {
                    Some(Control::Upgrade(a)) if a.service_version == current.service_version => {
                        // It runs that version already: an instruction that
                        // crossed the report of the upgrade just done, or a
                        // version that went and came back. Nothing restarts;
                        // the server hears it is done (or refuses, if it knew).
                        report(&reporter, held, Report::Upgraded, None).await;
                        if let Some(e) = lock(&tasks).get_mut(&held) {
                            e.told = None;
                        }
                        continue;
                    }
                    Some(Control::Stop) | None => {
                        terminate(&mut child, group, cfg.grace).await;
                        End::Stopped
                    }
                    Some(Control::Leave) => {
                        terminate(&mut child, group, cfg.grace).await;
                        End::Left
                    }
                    Some(Control::Upgrade(a)) => {
                        terminate(&mut child, group, cfg.grace).await;
                        // A stop that came in meanwhile wins over the restart.
                        match ctl.try_recv() {
                            Ok(Control::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => End::Stopped,
                            Ok(Control::Leave) => End::Left,
                            _ => {
                                current = *a;
                                first = Report::Upgraded;
                                continue 'run;
                            }
                        }
                    }
                },
            };
        };
        if matches!(end, End::Exit(_)) {
            end_leftovers(group, cfg.grace);
        }
        match end {
            End::Exit(Ok(s)) if s.success() => report(&reporter, held, Report::Exited, None).await,
            End::Exit(Ok(s)) => {
                let msg = format!("the executor ended with {s}");
                report(
                    &reporter,
                    held,
                    Report::Crashed,
                    Some(("VIAS.TC.EXIT", &msg)),
                )
                .await
            }
            End::Exit(Err(e)) => {
                let msg = format!("waiting for the executor failed: {e}");
                report(
                    &reporter,
                    held,
                    Report::Crashed,
                    Some(("VIAS.TC.EXIT", &msg)),
                )
                .await
            }
            End::Stopped => report(&reporter, held, Report::Released, None).await,
            End::Left => {}
        }
        break;
    }
    // Remembered as finished before it leaves the running set, so an
    // answer naming it finds it in one or the other.
    lock(&finished).insert(held, std::time::Instant::now());
    lock(&tasks).remove(&held);
}

fn command(exe: &Executor, a: &Assignment) -> std::io::Result<Command> {
    // Names this start of the executor: an upgrade restarts it under the
    // same attempt, so output keyed by task and run never overwrites an
    // earlier run's.
    let run_id = crate::domain::random_hex(8).map_err(std::io::Error::other)?;
    let mut cmd = exe.spawner.command(&exe.argv)?;
    cmd.env("TASKCENTER_TASK_ID", &a.task_id)
        .env("TASKCENTER_PROJECT_ID", &a.project_id)
        .env("TASKCENTER_BATCH_ID", a.batch_id.as_deref().unwrap_or(""))
        .env("TASKCENTER_SOURCE_URL", &a.source_url)
        .env("TASKCENTER_SOURCE_CONFIG", &a.source_config)
        .env("TASKCENTER_INPUT", &a.input)
        .env("TASKCENTER_CONFIG", &a.config)
        .env("TASKCENTER_SERVICE_NAME", &a.service_name)
        .env("TASKCENTER_SERVICE_VERSION", &a.service_version)
        .env("TASKCENTER_ATTEMPT", a.attempt.to_string())
        .env("TASKCENTER_RUN_ID", run_id)
        .stdin(std::process::Stdio::null())
        // Its own process group, so a stop reaches whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    Ok(cmd)
}

/// The executor's process group: its own (see `spawn`), so its id is the
/// executor's. `None` once the executor has been waited for.
fn group_of(child: &Child) -> Option<Pid> {
    child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw)
}

/// Whether any process of the group is left.
fn group_alive(group: Pid) -> bool {
    nix::sys::signal::killpg(group, None).is_ok()
}

/// Waits until nothing of the group is left or `deadline`, then SIGKILL to
/// whatever still is.
async fn reap_group(group: Pid, deadline: tokio::time::Instant) {
    while group_alive(group) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_alive(group) {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

/// SIGTERM to the executor's process group; after `grace`, SIGKILL to the
/// executor if it is still there, and to anything else of its group (a
/// child that ignores SIGTERM outlives an executor that obeys it).
async fn terminate(child: &mut Child, group: Option<Pid>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    if let Some(g) = group {
        let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout_at(deadline, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    if let Some(g) = group {
        reap_group(g, deadline).await;
    }
}

/// An executor that ended by itself may have left processes running: they
/// end with the task, as on a stop (SIGTERM, SIGKILL after `grace`), in the
/// background so the task's report does not wait.
fn end_leftovers(group: Option<Pid>, grace: Duration) {
    if let Some(g) = group.filter(|g| group_alive(*g)) {
        let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGTERM);
        tokio::spawn(reap_group(g, tokio::time::Instant::now() + grace));
    }
}

/// Reports until the server answers (a refusal is an answer: the task moved
/// on without this worker).
/// Sends the worker's reports: whatever piled up while the previous
/// request was in flight goes in the next one (`/worker/v1/reports`), in
/// the order they were made, so many tasks' moves cost one request and one
/// transaction.
#[derive(Clone)]
struct Reporter(mpsc::UnboundedSender<(ReportRequest, oneshot::Sender<()>)>);

/// Where the reporter passes on the tasks an answer placed on this worker.
type Placed = mpsc::UnboundedSender<Vec<Assignment>>;

/// Most reports in one request.
const REPORT_BATCH: usize = 256;
/// A request goes once no new report came for this long...
const GATHER_QUIET: Duration = Duration::from_millis(1);
/// ...or once its first report waited this long.
const GATHER_MAX: Duration = Duration::from_millis(20);

impl Reporter {
    fn start(client: Client, placed: Placed) -> Reporter {
        let (tx, mut rx) = mpsc::unbounded_channel::<(ReportRequest, oneshot::Sender<()>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // A sync that hands out many tasks starts them one after
                // the other, and short ones end as quickly: their reports
                // come in a burst. Waiting for the burst to end sends it as
                // one request (one transaction) instead of a first report
                // alone and the rest queued behind it.
                let since = tokio::time::Instant::now();
                let mut batch = vec![first];
                let mut slept = false;
                loop {
                    let before = batch.len();
                    while batch.len() < REPORT_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let quiet = slept && batch.len() == before;
                    if quiet || batch.len() >= REPORT_BATCH || since.elapsed() >= GATHER_MAX {
                        break;
                    }
                    tokio::time::sleep(GATHER_QUIET).await;
                    slept = true;
                }
                let body = ReportBatch {
                    reports: batch.iter().map(|(r, _)| r.clone()).collect(),
                };
                if let Some(assign) = send_reports(&client, &body).await {
                    let _ = placed.send(assign);
                }
                for (_, done) in batch {
                    let _ = done.send(());
                }
            }
        });
        Reporter(tx)
    }
}

/// Sends a batch until the server has it; the tasks its answer placed on
/// this worker, if any.
async fn send_reports(client: &Client, body: &ReportBatch) -> Option<Vec<Assignment>> {
    let mut backoff = Backoff::default();
    loop {
        match client
            .post::<_, ReportBatchReply>("/worker/v1/reports", body, Duration::from_secs(10))
            .await
        {
            Ok(reply) => return Some(reply.assign).filter(|a| !a.is_empty()),
            Err(e @ ClientError::Status { status, .. })
                if status.is_client_error() && !e.is_auth() =>
            {
                tracing::warn!(error = %e, reports = body.reports.len(), "reports refused");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, reports = body.reports.len(), "reports failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Queues a report; the receiver resolves once the server has it (or
/// refused it).
fn send_report(
    reporter: &Reporter,
    held: Held,
    event: Report,
    error: Option<(&str, &str)>,
) -> oneshot::Receiver<()> {
    let body = ReportRequest {
        task: held.task,
        attempt: held.attempt,
        event,
        error_code: error.map(|e| e.0.to_owned()),
        error_message: error.map(|e| e.1.to_owned()),
    };
    let (done, sent) = oneshot::channel();
    let _ = reporter.0.send((body, done));
    sent
}

/// Reports on a task and waits until the server has it (or refused it).
async fn report(reporter: &Reporter, held: Held, event: Report, error: Option<(&str, &str)>) {
    let _ = send_report(reporter, held, event, error).await;
}

/// Waits that double from 100 ms up to a cap.
struct Backoff(Duration, Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100), MAX_BACKOFF)
    }
}

impl Backoff {
    /// A syncing worker retries at least four times a lease: once the
    /// server is back, its lease is renewed before it can run out.
    fn within(lease: Duration) -> Backoff {
        Backoff(
            Duration::from_millis(100),
            (lease / 4).clamp(Duration::from_millis(100), MAX_BACKOFF),
        )
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::server::{serve, Limits};
    use crate::protocol::ReportReply;
    use axum::routing::post;
    use axum::{Json, Router};

    /// A burst of reports (a sync's tasks starting, short ones ending) goes
    /// as one request, in the order made; a lone report still goes on its
    /// own.
    #[tokio::test]
    async fn a_burst_of_reports_goes_in_one_request() {
        let seen: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
        let log = seen.clone();
        let router = Router::new().route(
            "/worker/v1/reports",
            post(move |Json(b): Json<ReportBatch>| async move {
                let n = b.reports.len();
                log.lock()
                    .unwrap()
                    .push(b.reports.iter().map(|r| r.task).collect());
                Json(ReportBatchReply {
                    replies: vec![
                        ReportReply {
                            applied: true,
                            state: None,
                        };
                        n
                    ],
                    assign: Vec::new(),
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            router,
            Limits::default(),
            std::future::pending(),
        ));
        let (placed, _placed) = mpsc::unbounded_channel();
        let client = Client::new(&format!("http://{addr}"), "c").unwrap();
        let reporter = Reporter::start(client, placed);
        let held = |task| Held { task, attempt: 1 };
        let mut answers = Vec::new();
        for task in 1..=20 {
            answers.push(send_report(&reporter, held(task), Report::Started, None));
            if task % 5 == 0 {
                // Starting a process takes a moment.
                tokio::task::yield_now().await;
            }
        }
        for a in answers {
            a.await.unwrap();
        }
        report(&reporter, held(21), Report::Exited, None).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![(1..=20).collect::<Vec<_>>(), vec![21]]);
    }

    /// Finished runs are forgotten once older than `FINISHED_KEPT`, the
    /// oldest first, whatever else finished since.
    #[test]
    fn syncs_are_timed_to_fit_the_lease() {
        let s = Duration::from_secs;
        assert_eq!(sync_timing(s(15)), (s(5), s(10)));
        assert_eq!(sync_timing(s(60)), (s(5), s(10)));
        assert_eq!(sync_timing(s(6)), (s(2), s(4)));
    }

    #[test]
    fn finished_runs_are_forgotten_after_they_are_kept() {
        let run = |task| Held { task, attempt: 1 };
        let t0 = std::time::Instant::now();
        let mut done = FinishedRuns::default();
        done.insert(run(1), t0);
        done.insert(run(2), t0 + Duration::from_secs(60));
        // The same run again (a repeated report) keeps its newer time.
        done.insert(run(1), t0 + Duration::from_secs(70));
        done.insert(run(3), t0 + FINISHED_KEPT + Duration::from_secs(1));
        assert!(done.contains(&run(1)) && done.contains(&run(2)) && done.contains(&run(3)));
        done.insert(run(4), t0 + FINISHED_KEPT + Duration::from_secs(65));
        assert!(!done.contains(&run(2)), "finished 125 s before the last");
        assert!(
            done.contains(&run(1)),
            "finished again 115 s before the last"
        );
        done.insert(run(5), t0 + 3 * FINISHED_KEPT);
        assert!(!done.contains(&run(1)) && !done.contains(&run(3)) && !done.contains(&run(4)));
        assert!(done.contains(&run(5)));
        assert_eq!((done.at.len(), done.order.len()), (1, 1));
    }

    /// A run already finished is not started again when a late answer
    /// names it; a new attempt of the same task is.
    #[tokio::test]
    async fn a_finished_run_is_never_started_twice() {
        let cfg = WorkerConfig {
            server: "http://127.0.0.1:9".into(),
            credential: "c".into(),
            slots: 4,
            kind: WorkerKind::Cloud,
            pool: None,
            exec: "sleep 30".into(),
            grace: Duration::from_secs(1),
            priority: Priority::Normal,
        };
        let exe = Executor {
            argv: split_command(&cfg.exec).unwrap().into(),
            spawner: Spawner::new(Priority::Normal).unwrap(),
        };
        let (placed, _placed) = mpsc::unbounded_channel();
        let reporter = Reporter::start(Client::new(&cfg.server, "c").unwrap(), placed);
        let (tasks, finished): (Tasks, Finished) = Default::default();
        let done = Held {
            task: 7,
            attempt: 1,
        };
        lock(&finished).insert(done, std::time::Instant::now());
        let assignment = |task, attempt| Assignment {
            task,
            attempt,
            project_id: "p".into(),
            task_id: format!("t{task}"),
            batch_id: None,
            source_url: String::new(),
            source_config: String::new(),
            input: String::new(),
            config: "{}".into(),
            service_name: "s".into(),
            service_version: "1".into(),
        };
        let reply = SyncReply {
            assign: vec![assignment(7, 1)],
            ..SyncReply::default()
        };
        assert!(!act(&cfg, &exe, &reporter, &tasks, &finished, reply));
        assert!(lock(&tasks).is_empty());
        let reply = SyncReply {
            assign: vec![assignment(7, 2), assignment(8, 1)],
            ..SyncReply::default()
        };
        assert!(act(&cfg, &exe, &reporter, &tasks, &finished, reply));
        let mut running: Vec<Held> = lock(&tasks).keys().copied().collect();
        running.sort_by_key(|h| h.task);
        assert_eq!(
            running,
            [
                Held {
                    task: 7,
                    attempt: 2
                },
                Held {
                    task: 8,
                    attempt: 1
                }
            ]
        );
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split_command("sleep 30").unwrap(), ["sleep", "30"]);
        assert_eq!(
            split_command(r#"sh -c 'echo "$X" > out'"#).unwrap(),
            ["sh", "-c", r#"echo "$X" > out"#]
        );
        assert_eq!(
            split_command(r#"a "b c" d\ e"#).unwrap(),
            ["a", "b c", "d e"]
        );
        assert_eq!(split_command("''").unwrap(), [""]);
        assert!(split_command("  ").is_err());
        assert!(split_command("'open").is_err());
    }
}
