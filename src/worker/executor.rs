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
//!
//! [`idle_process`] is the other way (`taskcenter worker --priority idle`):
//! the whole worker under `SCHED_IDLE`, agent and executors, so that not
//! even an executor's launch takes CPU from processes at normal priority.

use std::io;
use tokio::process::Command;

/// A CPU priority: the executors' (`taskcenter worker --executor-priority`)
/// or the whole worker's (`--priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Priority {
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

/// Puts every thread of this process under `SCHED_IDLE` (`taskcenter
/// worker --priority idle`), through `chrt --all-tasks --idle --pid 0`.
/// Threads and processes started afterwards inherit the policy, so the
/// agent, its runtime's threads and every executor yield the CPU to
/// processes at normal priority; the launch of an executor costs the host
/// nothing they want. Lowering one's own policy needs no privilege. Checked
/// afterwards from `/proc`, so a worker that cannot honour the setting
/// refuses to start.
pub fn idle_process() -> io::Result<()> {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new(CHRT[0])
        .args(["--all-tasks", "--idle", "--pid", "0", &pid])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::other(format!(
                "--priority idle: could not run chrt (util-linux): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "--priority idle: `chrt --all-tasks --idle --pid 0 {pid}` ended with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // Every thread, as chrt walked them: one started meanwhile inherited
    // the policy of the thread that started it, which this also checks.
    for t in std::fs::read_dir("/proc/self/task")? {
        let stat = t?.path().join("stat");
        let policy = match std::fs::read_to_string(&stat) {
            Ok(s) => policy_in(&s),
            // A thread that ended meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if policy != Some(SCHED_IDLE) {
            return Err(io::Error::other(format!(
                "--priority idle: {} has policy {policy:?} after chrt, not SCHED_IDLE (5)",
                stat.display()
            )));
        }
    }
    Ok(())
}

/// Linux's number for `SCHED_IDLE`.
pub const SCHED_IDLE: i64 = 5;

/// The scheduling policy in the text of a `/proc/…/stat` file (its field 41).
pub fn policy_in(stat: &str) -> Option<i64> {
    // Fields after the command name, which may hold spaces, start at 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(41 - 3)?
        .parse()
        .ok()
}

impl Spawner {
    /// For `idle`, checks once that the launcher is there and may lower a
    /// process to `SCHED_IDLE`, so an agent that cannot honour the setting
    /// refuses to start instead of running every task at normal priority.
    pub fn new(priority: Priority) -> io::Result<Spawner> {
        match priority {
            Priority::Normal => Ok(Spawner::default()),
            Priority::Idle => {
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

    /// Whether `program` can be started, asked before a launch through the
    /// launcher: `chrt` would report a missing executor only as its own
    /// exit status (127, or 126 when not executable), which reads as a
    /// crash. Without a launcher the start itself says so.
    pub fn ready(&self, program: &str) -> io::Result<()> {
        if self.prefix.is_empty() {
            return Ok(());
        }
        let runnable = |p: &std::path::Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        let found = if program.contains('/') {
            runnable(std::path::Path::new(program))
        } else {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path).any(|dir| runnable(&dir.join(program)))
        };
        if found {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no executable file of that name (searched PATH when the name has no /)",
            ))
        }
    }

    /// The command that runs `argv` at the configured priority, once
    /// [`Spawner::ready`] has found its program.
    pub fn command(&self, argv: &[String]) -> io::Result<Command> {
        self.ready(argv.first().map_or("", String::as_str))?;
        let mut words = self.prefix.iter().chain(argv);
        let mut cmd = Command::new(words.next().map_or("", String::as_str));
        cmd.args(words);
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy in a /proc stat file.
    fn policy_of(stat: &str) -> i64 {
        policy_in(&std::fs::read_to_string(stat).unwrap()).unwrap()
    }

    const SCHED_OTHER: i64 = 0;

    /// The policy of an executor started at `priority`, read once it is
    /// the executor (the launcher has exec'd it).
    async fn started_under(priority: Priority) -> i64 {
        let spawner = Spawner::new(priority).unwrap();
        let mut cmd = spawner.command(&["sleep".into(), "30".into()]).unwrap();
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

    /// Through the launcher a missing or non-executable program is found
    /// out before the launch; without it, the start itself tells.
    #[test]
    fn a_launch_checks_the_program_first() {
        let idle = Spawner::new(Priority::Idle).unwrap();
        assert!(idle.ready("sh").is_ok());
        assert!(idle.ready("/bin/sh").is_ok());
        let missing = idle.ready("no-such-analyzer-here").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(idle.ready("/nonexistent/analyzer").is_err());
        let plain = std::env::temp_dir().join(format!("tc-not-executable-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let not_executable = idle.ready(plain.to_str().unwrap());
        std::fs::remove_file(&plain).unwrap();
        assert!(not_executable.is_err(), "a file without an execute bit");
        assert!(
            idle.ready(std::env::temp_dir().to_str().unwrap()).is_err(),
            "a directory"
        );
        assert!(Spawner::new(Priority::Normal)
            .unwrap()
            .ready("no-such-analyzer-here")
            .is_ok());
    }

    #[tokio::test]
    async fn idle_executors_run_under_sched_idle_and_normal_ones_do_not() {
        assert_eq!(started_under(Priority::Idle).await, SCHED_IDLE);
        assert_eq!(started_under(Priority::Normal).await, SCHED_OTHER);
    }
}
