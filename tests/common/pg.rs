//! A throw-away PostgreSQL for the tests: `initdb` and `pg_ctl` (Debian's `postgresql` package
//! puts them in `/usr/lib/postgresql/<version>/bin`) in a temporary directory, on a free
//! loopback port, without fsync (the tests kill nodes and the server, never the machine: a commit
//! written to the operating system survives). Run as root (CI), the
//! server runs as the `postgres` user, which owns its directory. A watchdog stops it and removes
//! its directory once the test process is gone.
//!
//! Which store the tests of a binary use: SQLite, or PostgreSQL when `PAGONODE_TEST_STORE=
//! postgres`. A binary runs its tests on both with [`run_again_on_postgres`]: its test of that
//! name runs the binary's other tests again, in a child process, on PostgreSQL. Without
//! PostgreSQL installed they are skipped, saying so, unless `CI=true` or
//! `PAGONODE_REQUIRE_POSTGRES=1` (then a missing PostgreSQL fails).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming the store the tests use.
pub const STORE_ENV: &str = "PAGONODE_TEST_STORE";

/// Whether this process runs its tests on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(STORE_ENV).is_ok_and(|v| v == "postgres")
}

/// Whether a missing PostgreSQL is a failure (CI) rather than a skip.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("PAGONODE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// How to enable the PostgreSQL tests.
pub const HOW: &str = "install PostgreSQL (Debian: apt-get install postgresql) to run them; \
                       CI=true or PAGONODE_REQUIRE_POSTGRES=1 makes a missing PostgreSQL fail";

/// The directory of `initdb` and `pg_ctl`, if PostgreSQL is installed.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").is_file().then_some(bin)
}

/// A running PostgreSQL server.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// The user the server runs as when the tests run as root.
    user: Option<String>,
    /// Whether it accepts TLS ([`Postgres::start_tls`]).
    tls: bool,
}

static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(1);

/// The server the tests of this process share (started on first use); `None` (said once) when
/// PostgreSQL is not installed and not required.
pub fn server() -> Option<&'static Postgres> {
    SHARED
        .get_or_init(|| match Postgres::start() {
            Ok(pg) => Some(pg),
            Err(e) if required() => panic!("PostgreSQL is required here: {e}"),
            Err(e) => {
                eprintln!("PostgreSQL tests skipped: {e}; {HOW}");
                None
            }
        })
        .as_ref()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Postgres {
    /// Initialises and starts a server of its own (a test that stops and restarts it uses one).
    pub fn start() -> Result<Postgres, String> {
        Postgres::launch(false)
    }

    /// [`Postgres::start`], the server also accepting TLS with the certificate of `tests/tls`
    /// (self-signed, for `localhost` and `127.0.0.1`).
    pub fn start_tls() -> Result<Postgres, String> {
        Postgres::launch(true)
    }

    fn launch(tls: bool) -> Result<Postgres, String> {
        let bin = bin_dir().ok_or("initdb not found")?;
        let root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("pagonode-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let user = root.then(|| "postgres".to_string());
        let mut owner = None;
        if let Some(u) = &user {
            let out = Command::new("id")
                .args(["-u", u])
                .output()
                .map_err(|e| e.to_string())?;
            let uid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| {
                    format!("running as root and there is no '{u}' user to run PostgreSQL")
                })?;
            std::os::unix::fs::chown(&dir, Some(uid), None).map_err(|e| e.to_string())?;
            owner = Some(uid);
        }
        let pg = Postgres {
            port: free_port(),
            bin,
            dir,
            user,
            tls,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "pagonode",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        if tls {
            // Where `ssl = on` looks for them, readable by the server's user only.
            let tls_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
            for (from, to) in [("cert.pem", "server.crt"), ("key.pem", "server.key")] {
                let to = data.join(to);
                std::fs::copy(tls_dir.join(from), &to).map_err(|e| format!("{from}: {e}"))?;
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(&to, owner, None).map_err(|e| e.to_string())?;
            }
        }
        pg.watchdog()?;
        pg.pg_ctl_start()?;
        // CI checks the PostgreSQL tests ran: each server started says so, with the test
        // binary that started it.
        if let Ok(file) = std::env::var("PAGONODE_POSTGRES_RAN") {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .map_err(|e| e.to_string())?;
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let binary = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
            let store = if on_postgres() { "rerun" } else { "direct" };
            writeln!(f, "{binary} {store} {} {}", std::process::id(), pg.port)
                .map_err(|e| e.to_string())?;
        }
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a PostgreSQL program (as the server's user when the tests run as root).
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off \
             -c full_page_writes=off -c max_connections=300 -c ssl={}",
            self.port,
            if self.tls { "on" } else { "off" }
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server (a fault test: the database goes away).
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts it again, on the same port.
    pub fn restart(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.pg_ctl_start() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("PostgreSQL does not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Stops the server and removes its directory when this process is gone.
    fn watchdog(&self) -> Result<(), String> {
        let stop = format!(
            "{} -D '{}' -m immediate -w stop",
            match &self.user {
                Some(u) => format!("runuser -u {u} -- '{}'", self.bin.join("pg_ctl").display()),
                None => format!("'{}'", self.bin.join("pg_ctl").display()),
            },
            self.data().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("watchdog: {e}"))
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://pagonode@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database: its URL.
    pub async fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("the test PostgreSQL answers");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        drop(client);
        let _ = task.await;
        self.url(&name)
    }

    /// The server's log (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The test of this name in a binary runs the binary's other tests again, on PostgreSQL: a
/// child process of the same binary with [`STORE_ENV`] set. Prints why it did not, when
/// PostgreSQL is missing (fails instead where it is required).
pub const RERUN_TEST: &str = "on_postgresql";

/// See [`RERUN_TEST`].
pub fn run_again_on_postgres() {
    if on_postgres() {
        return;
    }
    if bin_dir().is_none() {
        assert!(!required(), "PostgreSQL is required here: initdb not found");
        eprintln!(
            "{}: the tests of this binary on PostgreSQL were skipped: {HOW}",
            std::env::current_exe().unwrap().display()
        );
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--skip", RERUN_TEST, "--test-threads", "4"])
        .env(STORE_ENV, "postgres")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        out.status.success(),
        "the tests failed on PostgreSQL:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("on PostgreSQL: {summary}");
}
