//! The node under test as a child process (`pagonode serve --config F`): started, killed with
//! SIGKILL (or stopped, for a power cut, then killed) and started again on the same database and
//! ports. An incarnation can be started with failpoints (`src/failpoints.rs`): it then stops
//! itself at a named point, where the test kills it. Every incarnation logs to its own file in
//! the test's directory; the child is killed when this handle is dropped (a failing test leaves
//! no node behind).
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Milliseconds since the UNIX epoch (the node's clock: the system's).
pub fn now_ms() -> u64 {
    use pagonode::clock::Clock;
    pagonode::clock::SystemClock.now_ms()
}

/// One kill and the restart that followed it.
#[derive(Debug, Clone, Copy)]
pub struct Crash {
    /// When the killed process was reaped (or the power cut): whatever its database holds was
    /// written before.
    pub killed_at: u64,
    /// When the next incarnation was spawned (its recovery starts after this instant).
    pub spawned_at: u64,
    /// When its `/health` first answered (or it stopped at a failpoint during its start-up).
    pub up_at: u64,
    /// A power cut (not a kill): only what was synced survived it.
    pub power_cut: bool,
}

/// Whether process `pid` is stopped (SIGSTOP).
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) S ...`: the state follows the command name's closing parenthesis.
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T'))
}

pub struct NodeProc {
    exe: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    health: String,
    http: reqwest::Client,
    child: Option<Child>,
    incarnation: u32,
    /// Environment variables of every incarnation.
    env: Vec<(String, String)>,
}

impl NodeProc {
    pub fn new(exe: &str, config: &Path, dir: &Path, port: u16) -> NodeProc {
        NodeProc {
            exe: PathBuf::from(exe),
            config: config.to_path_buf(),
            dir: dir.to_path_buf(),
            health: format!("http://127.0.0.1:{port}/health"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
            child: None,
            incarnation: 0,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of every incarnation started from now on.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    fn log_path(&self, incarnation: u32) -> PathBuf {
        self.dir.join(format!("node-{incarnation:03}.log"))
    }

    /// Spawns the next incarnation and waits (bounded) for its `/health`; returns (spawned at,
    /// up at). `failpoints`: the `FAILPOINTS` of the incarnation (empty: none).
    pub async fn start(&mut self, failpoints: &str) -> Result<(u64, u64), String> {
        assert!(self.child.is_none(), "a node is already running");
        self.incarnation += 1;
        let log = std::fs::File::create(self.log_path(self.incarnation))
            .map_err(|e| format!("node log: {e}"))?;
        let spawned_at = now_ms();
        let mut child = Command::new(&self.exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .env("FAILPOINTS", failpoints)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", self.exe.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "node incarnation {} exited during start-up ({status}):\n{}",
                    self.incarnation,
                    self.log_tail(self.incarnation, 40)
                ));
            }
            // A failpoint may stop it during its recovery: a window like any other.
            let stopped = child.id().is_some_and(is_stopped);
            let up = stopped
                || self
                    .http
                    .get(&self.health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            if up {
                self.child = Some(child);
                return Ok((spawned_at, now_ms()));
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(format!(
                    "node incarnation {} not healthy after 30 s:\n{}",
                    self.incarnation,
                    self.log_tail(self.incarnation, 40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// SIGKILL (no chance to flush or finish anything) and reap. Returns when it was dead.
    pub async fn kill9(&mut self) -> u64 {
        let mut child = self.child.take().expect("a running node");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "node incarnation {} died by itself ({status}):\n{}",
                self.incarnation,
                self.log_tail(self.incarnation, 40)
            );
        }
        // tokio's Child::kill sends SIGKILL on Unix, then waits for the process.
        child.kill().await.expect("SIGKILL the node");
        now_ms()
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("a running node");
        child.id().expect("a running node has a pid") as libc::pid_t
    }

    /// SIGSTOP: every thread of the node stops where it stands (it may finish the system call
    /// it is in, never act on its result).
    pub fn freeze(&self) {
        // SAFETY: kill(2) on our own child, which is not reaped yet (its pid is still ours).
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    /// Whether the node stopped (itself, at a failpoint, or by [`NodeProc::freeze`]).
    pub fn stopped(&self) -> bool {
        is_stopped(self.pid() as u32)
    }

    /// Waits (at most `within`) for the node to stop itself at its failpoint.
    pub async fn wait_stopped(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stopped() {
                return true;
            }
            if !self.alive() {
                panic!(
                    "node incarnation {} died by itself:\n{}",
                    self.incarnation,
                    self.log_tail(self.incarnation, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// SIGTERM: the graceful stop (deliveries dropped, the journal written and synced); waits
    /// for the exit.
    pub async fn terminate(&mut self) -> Result<(), String> {
        // SAFETY: as in `freeze`.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let mut child = self.child.take().expect("a running node");
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the node exited with {status} on SIGTERM")),
            Ok(Err(e)) => Err(format!("waiting for the node: {e}")),
            Err(_) => Err("the node did not exit within 30 s of SIGTERM".into()),
        }
    }

    /// Whether the current incarnation is still alive.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn incarnations(&self) -> u32 {
        self.incarnation
    }

    /// The last `lines` lines of an incarnation's log.
    pub fn log_tail(&self, incarnation: u32, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(incarnation)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of every incarnation's log that say something went wrong inside the node (errors,
    /// panics), at most `max`.
    pub fn log_errors(&self, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in 1..=self.incarnation {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            for line in text.lines() {
                if line.contains("ERROR") || line.contains("panicked") {
                    out.push(format!("node-{i:03}: {line}"));
                    if out.len() >= max {
                        return out;
                    }
                }
            }
        }
        out
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}
