//! How the agent starts its executors, and at which CPU priority.
//!
//! At `normal` priority an executor runs at the agent's own priority. At
//! `idle` priority it is started through util-linux's `chrt --idle 0`, which
//! puts itself under Linux's `SCHED_IDLE` and then becomes the executor, so
//! the executor and whatever it starts get only a very small share of a CPU
//! that processes at normal priority want, and yield it to them at once.
//! That is for hosts the analysis shares with `serve` or other services that
//! must stay responsive. No thread of the agent changes its policy: the
//! agent's syncs and reports never wait behind a starved thread.

use std::io;
use tokio::process::Command;

/// The CPU priority executors run at (`taskcenter worker --executor-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorPriority {
    /// The agent's own.
    #[default]
    Normal,
    /// `SCHED_IDLE`: a very small share of a CPU that anything at normal
    /// priority wants.
    Idle,
}

/// What an executor is started with: the program and the arguments that go
/// before the executor's own command line.
#[derive(Debug, Clone, Default)]
pub struct Spawner {
    prefix: Vec<String>,
}

/// The launcher for `idle`: sets its own policy, then execs the command.
const CHRT: [&str; 3] = ["chrt", "--idle", "0"];

impl Spawner {
    /// For `idle`, checks once that the launcher is there and may lower a
    /// process to `SCHED_IDLE`, so an agent that cannot honour the setting
    /// refuses to start instead of running every task at normal priority.
    pub fn new(priority: ExecutorPriority) -> io::Result<Spawner> {
        match priority {
            ExecutorPriority::Normal => Ok(Spawner::default()),
            ExecutorPriority::Idle => {
                let probe = std::process::Command::new(CHRT[0])
                    .args(&CHRT[1..])
                    .arg("true")
                    .stdin(std::process::Stdio::null())
                    .output();
                let why = match probe {
                    Ok(out) if out.status.success() => {
                        return Ok(Spawner {
                            prefix: CHRT.iter().map(|s| (*s).to_owned()).collect(),
                        })
                    }
                    Ok(out) => format!(
                        "`chrt --idle 0 true` ended with {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    Err(e) => format!("could not run chrt (util-linux): {e}"),
                };
                Err(io::Error::other(format!(
                    "--executor-priority idle starts executors through chrt --idle, which failed: {why}"
                )))
            }
        }
    }

    /// The command that runs `argv` at the configured priority.
    pub fn command(&self, argv: &[String]) -> Command {
        let mut words = self.prefix.iter().chain(argv);
        let mut cmd = Command::new(words.next().map_or("", String::as_str));
        cmd.args(words);
        cmd
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

    /// The policy of an executor started at `priority`, read once it is
    /// the executor (the launcher has exec'd it).
    async fn started_under(priority: ExecutorPriority) -> i64 {
        let spawner = Spawner::new(priority).unwrap();
        let mut cmd = spawner.command(&["sleep".into(), "30".into()]);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let stat = format!("/proc/{}/stat", child.id().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&stat).unwrap().contains("(sleep)") {
            assert!(
                std::time::Instant::now() < deadline,
                "the executor never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let policy = policy_of(&stat);
        child.kill().await.unwrap();
        policy
    }

    #[tokio::test]
    async fn idle_executors_run_under_sched_idle_and_normal_ones_do_not() {
        assert_eq!(started_under(ExecutorPriority::Idle).await, SCHED_IDLE);
        assert_eq!(started_under(ExecutorPriority::Normal).await, SCHED_OTHER);
    }
}
