//! Crash safety, proven: the node runs as a child process on a real SQLite file and is killed
//! with SIGKILL at random moments while PSP workers drive notice payments (one and several
//! beneficiaries), KO outcomes, spontaneous payments and abandoned short-lived activations
//! against the simulated EC (in this process, so it survives every kill). Between kills the EC
//! is down for a while, slow beyond the node's timeout, and answering garbage. The node is
//! restarted on the same database and port each time; the PSP side re-sends any request whose
//! connection died, with the same idempotency key.
//!
//! At the end, after the deliveries drain, the node's database and the EC's receipts are checked:
//! every acknowledged outcome completed and delivered to every recipient with the stored bytes,
//! no receipt id with two bodies, no early or double expiry, every deadline pending at a crash
//! fired after the restart, nothing acknowledged lost, EC failures answered with the right codes
//! and leaving no lock.
//!
//! CI runs a few kills (the default). The full run: `PAGONODE_CRASH_KILLS=25 cargo test --test
//! crash -- --nocapture`. `PAGONODE_CRASH_SEED` replays a schedule (the workers' interleaving
//! still varies); `PAGONODE_CRASH_WORKERS` sets the number of PSP workers (default 8).

#[path = "crash/checks.rs"]
mod checks;
mod common;
#[path = "crash/load.rs"]
mod load;
#[path = "crash/node_proc.rs"]
mod node_proc;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pagonode::mock_ec::{MockEc, MockEcConfig, MockEcServer, ScriptAction, ScriptRule};

use checks::{Db, Report};
use load::{Kind, Phase, PhaseSpan, Prng, Shared};
use node_proc::{Crash, NodeProc, now_ms};

/// How the run is sized.
struct Settings {
    kills: usize,
    workers: usize,
    seed: u64,
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

fn settings() -> Settings {
    let kills = env_number("PAGONODE_CRASH_KILLS").unwrap_or(4) as usize;
    assert!(kills >= 1, "PAGONODE_CRASH_KILLS must be at least 1");
    Settings {
        kills,
        workers: env_number("PAGONODE_CRASH_WORKERS").unwrap_or(8).max(1) as usize,
        seed: env_number("PAGONODE_CRASH_SEED")
            .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 20),
    }
}

/// Three free loopback ports (node, admin, EC), below the ephemeral range when possible: while
/// the node (or the EC) is down, no outgoing connection can then take its port and stop it from
/// listening again.
fn free_ports(rng: &mut Prng) -> (u16, u16, u16) {
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
                if ports.len() == 3 {
                    return (ports[0], ports[1], ports[2]);
                }
            }
        }
    }
    let l: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| l[i].local_addr().unwrap().port();
    (port(0), port(1), port(2))
}

/// The test configuration (`tests/common/node.toml`) for the child node: its placeholders
/// filled, fixed ports (the restarted node takes the same ones), the admin listener on, short
/// EC timeouts and receipt retries, and enough attempts that no receipt legitimately fails
/// during the run.
fn node_config(dir: &Path, ec_url: &str, port: u16, admin_port: u16) -> String {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let db = dir.join("node.db");
    let text = common::CONFIG
        .replace("{EC_URL}", ec_url)
        .replace("{DOWN_URL}", &down)
        .replace("{DB}", db.to_str().unwrap());
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
    assert_eq!(parsed.node.database, db);
    assert_eq!(parsed.timings.ec_timeout_ms, 500);
    assert_eq!(parsed.receipts.max_attempts, 1_000_000);
    out
}

/// The simulated EC, whose server can be stopped ("down") and started again on its address.
struct Ec {
    mock: MockEc,
    addr: SocketAddr,
    server: Option<MockEcServer>,
}

impl Ec {
    async fn start(port: u16) -> Ec {
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

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn begin(&mut self, phase: Phase) {
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

    async fn end(&mut self, phase: Phase) {
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
fn phase_for(i: usize) -> Option<Phase> {
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
async fn drain(db: &Path, admin: &str, secs: u64) -> Result<usize, String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_test_writer()
        .try_init();
    pagonode::install_crypto_provider();
    let s = settings();
    let started = Instant::now();
    eprintln!(
        "crash test: {} kills, {} workers, seed {} (PAGONODE_CRASH_SEED={} replays the schedule)",
        s.kills, s.workers, s.seed, s.seed
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port, ec_port) =
        free_ports(&mut Prng::new(s.seed ^ u64::from(std::process::id())));
    let mut ec = Ec::start(ec_port).await;
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        node_config(dir.path(), &ec.url(), port, admin_port),
    )
    .unwrap();
    let db_path = dir.path().join("node.db");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut node = NodeProc::new(env!("CARGO_BIN_EXE_pagonode"), &config, dir.path(), port);
    node.start().await.unwrap_or_else(|e| panic!("{e}"));

    // Load.
    let shared = Arc::new(Shared::new(port));
    let mut workers = Vec::new();
    for w in 0..s.workers {
        workers.push(tokio::spawn(load::worker(
            shared.clone(),
            s.seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9),
        )));
    }

    // Kills, with the EC failing around some of them.
    let mut rng = Prng::new(s.seed);
    let mut crashes: Vec<Crash> = Vec::new();
    for i in 0..s.kills {
        let phase = phase_for(i);
        if let Some(p) = phase {
            let probes = shared.activate_probes(&mut rng).await;
            // The phase starts before the EC is touched: stopping its server already resets
            // the connections in flight.
            shared.phases.lock().unwrap().push(PhaseSpan {
                phase: p,
                start: now_ms(),
                end: None,
            });
            ec.begin(p).await;
            shared.pay_probes(&mut rng, probes).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(200, 2000))).await;
        let down = Duration::from_millis(rng.range(0, 300));
        crashes.push(node.crash(down).await);
        if let Some(p) = phase {
            // The phase goes on for a while against the restarted node.
            tokio::time::sleep(Duration::from_millis(rng.range(400, 900))).await;
            ec.end(p).await;
            if let Some(span) = shared.phases.lock().unwrap().last_mut() {
                span.end = Some(now_ms());
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(rng.range(200, 600))).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a PSP worker panicked");
    }
    assert!(
        node.alive(),
        "the node died by itself:\n{}",
        node.log_tail(node.incarnations(), 40)
    );

    // Every abandoned deadline passes; then the abandoned notices must be payable again.
    let abandoned: Vec<load::Activation> = shared
        .ledger()
        .activations
        .iter()
        .filter(|a| a.kind == Kind::Abandoned)
        .cloned()
        .collect();
    let latest = abandoned
        .iter()
        .map(|a| a.acked_at + a.expiration_ms.unwrap_or(0))
        .max()
        .unwrap_or(0);
    let wait = latest.saturating_sub(now_ms()) + 300;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let mut violations = Vec::new();
    let mut resent = 0;
    let mut drained = |r: Result<usize, String>| match r {
        Ok(n) => resent += n,
        Err(e) => violations.push(e),
    };
    drained(drain(&db_path, &admin, 20).await);
    let mut tasks = Vec::new();
    for (k, chunk) in abandoned
        .chunks(abandoned.len().div_ceil(s.workers).max(1))
        .enumerate()
    {
        let (sh, chunk) = (shared.clone(), chunk.to_vec());
        let seed = s.seed ^ 0xABAD ^ k as u64;
        tasks.push(tokio::spawn(async move {
            let mut rng = Prng::new(seed);
            for a in &chunk {
                sh.reactivate(&mut rng, a).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("re-activation worker panicked");
    }

    // Drain, one more SIGKILL and restart with nothing in flight, drain again.
    drained(drain(&db_path, &admin, 60).await);
    crashes.push(node.crash(Duration::from_millis(50)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drained(drain(&db_path, &admin, 20).await);

    // Checks.
    let db = Db::read(&db_path).unwrap_or_else(|e| panic!("reading the node's database: {e}"));
    let mock_receipts = ec.mock.receipts();
    let phases = shared.phases.lock().unwrap().clone();
    let (report, requests, unknown): (Report, u64, u64) = {
        let ledger = shared.ledger();
        let report = checks::check(&db, &ledger, &crashes, &phases, &mock_receipts);
        (report, ledger.requests, ledger.unknown)
    };
    let kills = crashes.len() - 1;
    let summary = format!(
        "crash test: {kills} kills (+1 after the drain), {} payments acknowledged, {} completed, {} receipt copies delivered, {} lost, {} conflicting bodies, {} early/double expiries, {} deadlines pending at a crash fired after restart",
        report.acknowledged,
        report.completed,
        report.copies_delivered,
        report.lost,
        report.conflicts,
        report.bad_expiries,
        report.pending_fired
    );
    let details = format!(
        "  ({} requests, {} re-sent after a dead connection; {} multi-beneficiary, {} spontaneous, {} late-OK recoveries, {} KO outcomes, {} abandoned activations, {} re-activated; {} EC failure phases: {} activations/demands refused by EC failures ({} timeouts outside the slow phase), {} receipt delivery attempts failed, {} repeated deliveries; {} receipts re-sent from FAILED; node down {} ms at most per kill; {:.1} s)",
        requests,
        unknown,
        report.multi,
        report.spontaneous,
        report.late_ok,
        report.ko_acknowledged,
        report.abandoned,
        report.reactivated,
        phases.len(),
        report.ec_failures,
        report.spurious_timeouts,
        report.delivery_failures,
        report.redeliveries,
        resent,
        crashes
            .iter()
            .map(|c| c.up_at - c.killed_at)
            .max()
            .unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    println!("{details}");
    let errors = node.log_errors(20);
    if !errors.is_empty() {
        eprintln!(
            "crash test: errors logged by the node:\n{}",
            errors.join("\n")
        );
    }
    violations.extend(report.violations);
    violations.extend(journal_after_kills(&db_path, crashes.len()));
    if report.acknowledged == 0 {
        violations.push("no payment was acknowledged: the load did not run".into());
    }
    if report.pending_fired == 0 {
        violations.push(
            "no deadline was pending at a crash: the test proved nothing about deadlines".into(),
        );
    }
    if !violations.is_empty() {
        let kept = dir.keep();
        let shown: Vec<&String> = violations.iter().take(60).collect();
        panic!(
            "{summary}\n{} violations (seed {}; node logs and database kept in {}):\n{}",
            violations.len(),
            s.seed,
            kept.display(),
            shown
                .iter()
                .map(|v| format!("  - {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let _ = node.kill9().await;
    if let Some(server) = ec.server.take() {
        server.stop().await;
    }
}

/// The journal after the kills: readable to its end, ids in order, and the outcome exchange of
/// every accepted outcome there but the ones a kill caught before they were written (the
/// writer gathers 50 ms of rows: at the load of this test, a few per kill; state changes are
/// never lost).
fn journal_after_kills(db: &Path, kills: usize) -> Vec<String> {
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
