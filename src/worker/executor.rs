//! How the agent starts its executors, and at which CPU priority.
//!
//! At `normal` priority an executor is started on whichever task asks, and
//! runs at the agent's own priority. At `idle` priority it is started on one
//! thread of its own whose scheduling policy is `SCHED_IDLE`: Linux keeps the
//! policy per thread and a child takes its parent thread's, so the executors
//! (and whatever they start) run on CPU time nothing else wants, while the
//! agent's own threads keep normal priority and its syncs stay on time. That
//! is for hosts the analysis shares with `serve` or other services that must
//! stay responsive: the executors yield to them at once, not after a slice.

use std::io;
use std::sync::mpsc;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The CPU priority executors run at (`taskcenter worker --executor-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorPriority {
    /// The agent's own.
    #[default]
    Normal,
    /// `SCHED_IDLE`: only CPU time no other process at normal priority wants.
    Idle,
}

type Job = (Command, oneshot::Sender<io::Result<Child>>);

/// Starts executors at the configured priority.
#[derive(Clone, Debug)]
pub struct Spawner(Option<mpsc::Sender<Job>>);

impl Spawner {
    /// Needs a Tokio runtime: the executors' exits are awaited on it.
    pub fn new(priority: ExecutorPriority) -> io::Result<Spawner> {
        match priority {
            ExecutorPriority::Normal => Ok(Spawner(None)),
            ExecutorPriority::Idle => {
                let runtime = tokio::runtime::Handle::current();
                let (jobs, rx) = mpsc::channel::<Job>();
                let (ready_tx, ready) = mpsc::sync_channel(1);
                std::thread::Builder::new()
                    .name("executors".into())
                    .spawn(move || {
                        let lowered = lower_to_idle();
                        let ok = lowered.is_ok();
                        let _ = ready_tx.send(lowered);
                        if !ok {
                            return;
                        }
                        let _in_runtime = runtime.enter();
                        for (mut cmd, reply) in rx {
                            let _ = reply.send(cmd.spawn());
                        }
                    })?;
                ready.recv().map_err(|_| gone())??;
                Ok(Spawner(Some(jobs)))
            }
        }
    }

    pub async fn spawn(&self, mut cmd: Command) -> io::Result<Child> {
        match &self.0 {
            None => cmd.spawn(),
            Some(jobs) => {
                let (reply, answer) = oneshot::channel();
                jobs.send((cmd, reply)).map_err(|_| gone())?;
                answer.await.map_err(|_| gone())?
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the thread that starts executors has ended")
}

/// Puts the calling thread under `SCHED_IDLE`, which any thread may do to
/// itself. The library also resets the nice value, which nice has no say
/// in under this policy and an unprivileged agent started under `nice` may
/// not do; so the policy the thread ends up with is what decides.
fn lower_to_idle() -> io::Result<()> {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
    match thread_schedule_policy() {
        Ok(p) if p == idle => Ok(()),
        _ => Err(io::Error::other(format!(
            "could not lower the executors' priority to idle: {set:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy in a /proc stat file (its field 41).
    fn policy_of(stat: &str) -> i64 {
        let stat = std::fs::read_to_string(stat).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Fields after the command name start at field 3.
        fields[41 - 3].parse().unwrap()
    }

    const SCHED_OTHER: i64 = 0;
    const SCHED_IDLE: i64 = 5;

    async fn started_under(priority: ExecutorPriority) -> (i64, i64) {
        let spawner = Spawner::new(priority).unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30").kill_on_drop(true);
        let mut child = spawner.spawn(cmd).await.unwrap();
        let executor = policy_of(&format!("/proc/{}/stat", child.id().unwrap()));
        // The thread that asked: the agent's own keep their policy.
        let agent = policy_of("/proc/thread-self/stat");
        child.kill().await.unwrap();
        (executor, agent)
    }

    /// At idle priority the executor runs under SCHED_IDLE and the agent
    /// does not; at normal priority both keep the normal policy.
    #[tokio::test]
    async fn idle_executors_leave_the_agent_at_normal_priority() {
        assert_eq!(
            started_under(ExecutorPriority::Idle).await,
            (SCHED_IDLE, SCHED_OTHER)
        );
        assert_eq!(
            started_under(ExecutorPriority::Normal).await,
            (SCHED_OTHER, SCHED_OTHER)
        );
    }
}
