//! What the crash tests share: their settings, ports, the node configuration, the simulated EC
//! that goes down and comes back, draining the open work, and the journal check after the
//! kills.
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pagonode::config::Database;
use pagonode::mock_ec::{MockEc, MockEcConfig, MockEcServer, ScriptAction, ScriptRule};

use crate::checks;
use crate::common;
use crate::load::{Phase, Prng};
use crate::node_proc::now_ms;

/// How the run is sized.
pub struct Settings {
    pub kills: usize,
    pub workers: usize,
    pub seed: u64,
}

pub fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

pub fn settings() -> Settings {
    let kills = env_number("PAGONODE_CRASH_KILLS").unwrap_or(4) as usize;
    assert!(kills >= 1, "PAGONODE_CRASH_KILLS must be at least 1");
    Settings {
        kills,
        workers: env_number("PAGONODE_CRASH_WORKERS").unwrap_or(8).max(1) as usize,
        seed: env_number("PAGONODE_CRASH_SEED")
            .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 20),
    }
}

/// `n` free loopback ports (nodes, admin, EC), below the ephemeral range when possible: while
/// the node (or the EC) is down, no outgoing connection can then take its port and stop it from
/// listening again.
pub fn free_ports(rng: &mut Prng, n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let mut ports = Vec::new();
    if low > 12_000 {
        for _ in 0..200 {
            let port = rng.range(10_000, low) as u16;
            if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                ports.push(port);
                if ports.len() == n {
                    return ports;
                }
            }
        }
    }
    let l: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    l.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// The store of a crash test: a SQLite file in `dir`, or a new database of the test
/// PostgreSQL (with `PAGONODE_TEST_STORE=postgres`, or when `postgres` says so); and how the
/// checks read it.
pub async fn database(dir: &std::path::Path, postgres: bool) -> (Database, checks::Source) {
    if postgres || common::pg::on_postgres() {
        let server = common::pg::server().expect("this test needs PostgreSQL");
        let url = server.database().await;
        (
            Database::Postgres(url.clone()),
            checks::Source::Postgres(url),
        )
    } else {
        let path = dir.join("node.db");
        (Database::Sqlite(path.clone()), checks::Source::Sqlite(path))
    }
}

/// The test configuration (`tests/common/node.toml`) for the child node: its placeholders
/// filled, fixed ports (the restarted node takes the same ones), the admin listener on, short
/// EC timeouts and receipt retries, and enough attempts that no receipt legitimately fails
/// during the run.
pub fn node_config(database: &Database, ec_url: &str, port: u16, admin_port: u16) -> String {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let db = match database {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => url.clone(),
    };
    let text = common::CONFIG
        .replace("{EC_URL}", ec_url)
        .replace("{DOWN_URL}", &down)
        .replace("{DB}", &db);
    let mut doc: toml::Table = text.parse().expect("tests/common/node.toml");
    let table = |doc: &toml::Table, name: &str| -> toml::Table {
        doc.get(name)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut node = table(&doc, "node");
    node.insert("listen".into(), format!("127.0.0.1:{port}").into());
    node.insert(
        "admin_listen".into(),
        format!("127.0.0.1:{admin_port}").into(),
    );
    node.insert("workers".into(), 4.into());
    doc.insert("node".into(), node.into());
    let mut timings = table(&doc, "timings");
    timings.insert("ec_timeout_ms".into(), 500.into());
    timings.insert("receipt_timeout_ms".into(), 500.into());
    timings.insert("outcome_deadline_ms".into(), 700.into());
    doc.insert("timings".into(), timings.into());
    let mut receipts = table(&doc, "receipts");
    receipts.insert("max_attempts".into(), 1_000_000.into());
    receipts.insert("retry_interval_ms".into(), 150.into());
    receipts.insert("per_station_concurrency".into(), 4.into());
    doc.insert("receipts".into(), receipts.into());
    let out = toml::to_string(&doc).expect("configuration");
    let parsed = pagonode::config::Config::from_toml_str(&out)
        .expect("the crash test configuration is valid");
    assert_eq!(&parsed.node.database, database);
    assert_eq!(parsed.timings.ec_timeout_ms, 500);
    assert_eq!(parsed.receipts.max_attempts, 1_000_000);
    out
}

/// The simulated EC, whose server can be stopped ("down") and started again on its address.
pub struct Ec {
    pub mock: MockEc,
    addr: SocketAddr,
    pub server: Option<MockEcServer>,
}

impl Ec {
    pub async fn start(port: u16) -> Ec {
        let mock = MockEc::new(MockEcConfig::from_toml_str(common::CONFIG).unwrap());
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = mock.clone().start(listener).await.unwrap();
        Ec {
            mock,
            addr,
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn begin(&mut self, phase: Phase) {
        match phase {
            Phase::Down => {
                if let Some(s) = self.server.take() {
                    s.stop().await;
                }
            }
            Phase::Slow => self
                .mock
                .add_script(ScriptRule::new("*", ScriptAction::Delay).with_delay_ms(1200))
                .unwrap(),
            Phase::Garbage => self
                .mock
                .add_script(ScriptRule::new("*", ScriptAction::Garbage))
                .unwrap(),
        }
    }

    pub async fn end(&mut self, phase: Phase) {
        match phase {
            Phase::Down => {
                let deadline = Instant::now() + Duration::from_secs(10);
                let listener = loop {
                    match std::net::TcpListener::bind(self.addr) {
                        Ok(l) => break l,
                        Err(e) if Instant::now() < deadline => {
                            eprintln!("crash test: rebinding the EC on {}: {e}", self.addr);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot restart the EC on {}: {e}", self.addr),
                    }
                };
                self.server = Some(self.mock.clone().start(listener).await.unwrap());
            }
            Phase::Slow | Phase::Garbage => self.mock.clear_scripts(),
        }
    }
}

/// Which EC failure accompanies kill `i`: none, then down, slow, garbage, in turn.
pub fn phase_for(i: usize) -> Option<Phase> {
    [
        None,
        Some(Phase::Down),
        Some(Phase::Slow),
        Some(Phase::Garbage),
    ][i % 4]
}

/// Polls the database until no payment is PAYING past its deadline and no receipt copy is
/// PENDING; FAILED copies are re-sent through the admin API. Returns how many receipts were
/// re-sent, or what was still to do after `secs` seconds.
pub async fn drain(db: &checks::Source, admin: &str, secs: u64) -> Result<usize, String> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut resent = 0;
    loop {
        let (paying, pending, failed) = checks::open_work(db, now_ms())?;
        if failed > 0 {
            for id in checks::failed_receipts(db)? {
                let resp = http
                    .post(format!("{admin}/admin/receipts/{id}/resend"))
                    .send()
                    .await
                    .map_err(|e| format!("admin resend {id}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("admin resend {id}: HTTP {}", resp.status()));
                }
                resent += 1;
            }
        } else if paying == 0 && pending == 0 {
            return Ok(resent);
        }
        if Instant::now() > deadline {
            let overdue = checks::overdue(db, now_ms())?;
            return Err(format!(
                "not drained after {secs} s: {paying} payments PAYING past their deadline {overdue:?}, {pending} receipt copies PENDING, {failed} FAILED"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The journal after the kills: readable to its end, ids in order, and the outcome exchange of
/// every accepted outcome there but the ones a kill caught before they were written (the
/// writer gathers 50 ms of rows: at the load of this test, a few per kill; state changes are
/// never lost).
pub fn journal_after_kills(db: &Database, kills: usize) -> Vec<String> {
    use pagonode::journal::JournalQuery;
    let reader = match pagonode::journal::cli::JournalReader::open(db) {
        Ok(r) => r,
        Err(e) => return vec![format!("journal unreadable: {e}")],
    };
    let (mut ids, mut accepted, mut answered) = (
        Vec::new(),
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let read = reader.query_all(&JournalQuery::default(), None, |r| {
        ids.push(r.id);
        let token = r.entry.token.clone();
        if r.entry.primitive == "OUTCOME_ACCEPTED" {
            accepted.extend(token);
        } else if r.entry.primitive.starts_with("sendPaymentOutcome")
            && r.entry.subtype == Some(pagonode::journal::Subtype::Resp)
        {
            answered.extend(token);
        }
    });
    let mut violations = Vec::new();
    if let Err(e) = read {
        violations.push(format!("journal unreadable: {e}"));
    }
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        violations.push("journal ids out of order".into());
    }
    let journalled = accepted.intersection(&answered).count();
    if accepted.len() - journalled > 15 * kills {
        violations.push(format!(
            "only {journalled} of {} accepted outcomes have their exchange in the journal after {kills} kills",
            accepted.len()
        ));
    }
    println!(
        "  journal: {} rows; {journalled} of {} accepted outcomes with their exchange",
        ids.len(),
        accepted.len()
    );
    violations
}
