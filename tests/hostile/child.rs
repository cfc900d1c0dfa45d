//! The node as a child process (`pagonode serve --config F`), for what only a process of its own
//! shows: its memory (`/proc/<pid>/status`) and its open descriptors under a low limit. Killed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct ChildNode {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// A port free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl ChildNode {
    /// Writes `config` (whose `[node] listen` is replaced by a free port) to `dir` and starts a
    /// node on it, with at most `nofile` open descriptors if given; waits for its `/health`.
    pub async fn start(config: &str, dir: &Path, nofile: Option<u64>) -> ChildNode {
        let port = free_port();
        let config = config.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        );
        let path = dir.join("child-node.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("child-node.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pagonode"));
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit(2) is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let node = ChildNode { child, port, log };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let health = format!("http://127.0.0.1:{port}/health");
        super::common::eventually(30, "the child node's /health", || async {
            http.get(&health)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        node
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/node-for-psp/v1", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status`, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// The largest resident set the process has had (`VmHWM`): its memory "throughout".
    pub fn peak_rss_mb(&self) -> u64 {
        self.status_kb("VmHWM:") / 1024
    }

    /// Descriptors the process holds now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The process's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
