//! One run of the crash test or of the power-cut test: the node as a child process on a real
//! store (a SQLite file: for a power cut, on the filesystem of `lazyfs.rs`; or, for the crash
//! test with `PAGONODE_TEST_STORE=postgres`, a database of the test PostgreSQL), PSP workers paying notices
//! against the simulated EC (in this process, so it survives every disruption), and the node
//! disrupted over and over: killed with SIGKILL, or its power cut, at random moments and at
//! named windows reached through failpoints (`src/failpoints.rs`). Between some disruptions the
//! EC is down, slow beyond the node's timeout, or answering garbage. The node is restarted on
//! the same database and port each time; the PSP side re-sends any request whose connection
//! died, with the same idempotency key.
//!
//! At the end, after the deliveries drain, the node's database, its journal and the EC's
//! receipts are checked (`checks.rs`).
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pagonode::config::Database;
use pagonode::mock_ec::{MockEc, MockEcConfig, MockEcServer, ScriptAction, ScriptRule};

use crate::checks::{self, Db};
use crate::common;
use crate::lazyfs::PowerLayer;
use crate::load::{self, Kind, Phase, PhaseSpan, Prng, Shared};
use crate::node_proc::{Crash, NodeProc, now_ms};

/// How the node is disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// SIGKILL: the process dies, the page cache keeps every write.
    Kill,
    /// The process stops, the power is cut (everything not fsynced is lost), it is killed and
    /// the machine "reboots".
    PowerCut,
}

impl Disruption {
    fn name(self) -> &'static str {
        match self {
            Disruption::Kill => "crash test",
            Disruption::PowerCut => "power-cut test",
        }
    }

    fn env_prefix(self) -> &'static str {
        match self {
            Disruption::Kill => "PAGONODE_CRASH",
            Disruption::PowerCut => "PAGONODE_POWER",
        }
    }
}

/// The named windows: failpoints of the node, and how many passes to let go before stopping
/// (drawn below this bound, so the stop comes at a different step each time).
pub const WINDOWS: [(&str, u64); 3] = [
    // A state change committed (durable), nobody told yet: the PSP's answer, the timers and
    // the deliveries of that step are all still to come.
    ("store.committed", 120),
    // An EC acknowledged a receipt copy; the NOTIFIED commit is still to come.
    ("delivery.acked", 40),
    // The EC gave the payment data (paGetPayment), the activation is not committed yet.
    ("activate.ec_answered", 30),
];

/// What disruption `i` is: with an EC failure phase (at a random moment), at a named window,
/// or at a random moment with the EC healthy.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Random(Option<Phase>),
    Window(usize),
}

fn plan(i: usize) -> Plan {
    match i % 7 {
        0 => Plan::Random(None),
        1 => Plan::Random(Some(Phase::Down)),
        2 => Plan::Window(0),
        3 => Plan::Random(Some(Phase::Slow)),
        4 => Plan::Window(1),
        5 => Plan::Random(Some(Phase::Garbage)),
        _ => Plan::Window(2),
    }
}

/// The `FAILPOINTS` of the incarnation that disruption `i` ends.
fn failpoints(i: usize, rng: &mut Prng) -> String {
    match plan(i) {
        Plan::Window(w) => {
            let (name, within) = WINDOWS[w];
            format!("{name}={}*off->return", rng.range(0, within))
        }
        Plan::Random(_) => String::new(),
    }
}

/// How the run is sized.
pub struct Settings {
    pub disruptions: usize,
    pub workers: usize,
    pub seed: u64,
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

/// CI's size: 21 disruptions (three rounds of the seven plans: 9 at named windows, 9 with EC
/// failures, 3 plain).
const DEFAULT_DISRUPTIONS: u64 = 21;

pub fn settings(d: Disruption) -> Settings {
    let p = d.env_prefix();
    let disruptions = env_number(&format!("{p}_KILLS")).unwrap_or(DEFAULT_DISRUPTIONS) as usize;
    assert!(disruptions >= 1, "{p}_KILLS must be at least 1");
    Settings {
        disruptions,
        workers: env_number(&format!("{p}_WORKERS")).unwrap_or(8).max(1) as usize,
        seed: env_number(&format!("{p}_SEED"))
            .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 20),
    }
}

/// `n` free loopback ports (nodes, EC), below the ephemeral range when possible: while a node
/// (or the EC) is down, no outgoing connection can then take its port and stop it from
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

/// The test configuration (`tests/common/node.toml`) for the child node: its placeholders
/// filled, a fixed port (the restarted node takes the same one), short EC timeouts and receipt
/// retries, and so many attempts that no receipt may fail during the run.
pub fn node_config(db: &Database, ec_url: &str, port: u16) -> String {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let text = common::CONFIG
        .replace("{EC_URL}", ec_url)
        .replace("{DOWN_URL}", &down)
        .replace("{DB}", &db.to_string());
    let mut doc: toml::Table = text.parse().expect("tests/common/node.toml");
    let table = |doc: &toml::Table, name: &str| -> toml::Table {
        doc.get(name)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut node = table(&doc, "node");
    node.insert("listen".into(), format!("127.0.0.1:{port}").into());
    node.insert("workers".into(), 4.into());
    doc.insert("node".into(), node.into());
    let mut timings = table(&doc, "timings");
    timings.insert("ec_timeout_ms".into(), 500.into());
    timings.insert("receipt_timeout_ms".into(), 500.into());
    timings.insert(
        "outcome_deadline_ms".into(),
        (OUTCOME_DEADLINE_MS as i64).into(),
    );
    doc.insert("timings".into(), timings.into());
    let mut receipts = table(&doc, "receipts");
    receipts.insert("max_attempts".into(), 1_000_000.into());
    receipts.insert("retry_interval_ms".into(), 150.into());
    receipts.insert("per_station_concurrency".into(), 4.into());
    doc.insert("receipts".into(), receipts.into());
    let out = toml::to_string(&doc).expect("configuration");
    let parsed = pagonode::config::Config::from_toml_str(&out)
        .expect("the crash test configuration is valid");
    assert_eq!(&parsed.node.database, db);
    assert_eq!(parsed.timings.ec_timeout_ms, 500);
    assert_eq!(parsed.receipts.max_attempts, 1_000_000);
    out
}

/// The outcome deadline of spontaneous payments in these runs.
pub const OUTCOME_DEADLINE_MS: u64 = 700;

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

/// The node, its disk and how it is disrupted.
struct Target {
    node: NodeProc,
    layer: Option<PowerLayer>,
    disruption: Disruption,
}

impl Target {
    /// Ends the current incarnation (it has stopped itself at a failpoint, or is stopped
    /// here), and starts the next one with `failpoints`.
    async fn disrupt(&mut self, down: Duration, failpoints: &str) -> Crash {
        let killed_at = match &mut self.layer {
            None => self.node.kill9().await,
            Some(layer) => {
                // The node stands still; the power goes; only then does it die (a process
                // killed first could have its last writes made durable by nothing, but the
                // kernel would still finish them).
                self.node.freeze();
                layer.cut();
                let cut_at = now_ms();
                self.node.kill9().await;
                layer
                    .restart()
                    .unwrap_or_else(|e| panic!("restarting the power-cut filesystem: {e}"));
                cut_at
            }
        };
        tokio::time::sleep(down).await;
        let (spawned_at, up_at) = self
            .node
            .start(failpoints)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Crash {
            killed_at,
            spawned_at,
            up_at,
            power_cut: self.disruption == Disruption::PowerCut,
        }
    }
}

/// Polls the database until no payment is PAYING past its deadline and no receipt copy is
/// PENDING. A FAILED copy ends the wait: with a million attempts allowed, none may fail.
pub async fn drain(db: &checks::Source, secs: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (paying, pending, failed) = checks::open_work(db, now_ms())?;
        if failed > 0 {
            return Err(format!(
                "{failed} receipt copies FAILED (max_attempts is 1000000: a copy may only fail through a bug)"
            ));
        }
        if paying == 0 && pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            let overdue = checks::overdue(db, now_ms())?;
            return Err(format!(
                "not drained after {secs} s: {paying} payments PAYING past their deadline {overdue:?}, {pending} receipt copies PENDING"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole run; panics with every violation found.
pub async fn run(disruption: Disruption) {
    if disruption == Disruption::PowerCut && common::pg::on_postgres() {
        // The power-cut layer is the node's own disk: a node on PostgreSQL writes none of its
        // state there (PostgreSQL's own durability is its own).
        eprintln!("power-cut test: not run on PostgreSQL (the node keeps no state on its disk)");
        return;
    }
    let _ = tracing_subscriber::fmt()
        // fuser logs the replies the kernel no longer wants (requests of a killed node).
        .with_env_filter("error,fuser=off")
        .with_test_writer()
        .try_init();
    pagonode::install_crypto_provider();
    let name = disruption.name();
    let s = settings(disruption);
    let started = Instant::now();
    eprintln!(
        "{name}: {} disruptions, {} workers, seed {} ({}_SEED={} replays the schedule)",
        s.disruptions,
        s.workers,
        s.seed,
        disruption.env_prefix(),
        s.seed
    );
    let dir = tempfile::tempdir().unwrap();
    let layer = match disruption {
        Disruption::Kill => None,
        Disruption::PowerCut => {
            let (backing, mount) = (dir.path().join("disk"), dir.path().join("mnt"));
            std::fs::create_dir_all(&backing).unwrap();
            std::fs::create_dir_all(&mount).unwrap();
            Some(PowerLayer::mount(&backing, &mount).unwrap_or_else(|e| panic!("{e}")))
        }
    };
    let data_dir: PathBuf = layer
        .as_ref()
        .map_or_else(|| dir.path().to_path_buf(), |l| l.path().to_path_buf());
    let (database, source) = if common::pg::on_postgres() {
        let server = common::pg::server().expect("PAGONODE_TEST_STORE=postgres needs PostgreSQL");
        let url = server.database().await;
        (
            Database::Postgres(url.clone()),
            checks::Source::Postgres(url),
        )
    } else {
        let path = data_dir.join("node.db");
        (Database::Sqlite(path.clone()), checks::Source::Sqlite(path))
    };
    let ports = free_ports(&mut Prng::new(s.seed ^ u64::from(std::process::id())), 2);
    let (port, ec_port) = (ports[0], ports[1]);
    let mut ec = Ec::start(ec_port).await;
    let config = dir.path().join("node.toml");
    std::fs::write(&config, node_config(&database, &ec.url(), port)).unwrap();
    let mut rng = Prng::new(s.seed);
    let mut target = Target {
        node: NodeProc::new(env!("CARGO_BIN_EXE_pagonode"), &config, dir.path(), port),
        layer,
        disruption,
    };
    target
        .node
        .start(&failpoints(0, &mut rng))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Load.
    let shared = Arc::new(Shared::new(&[port]));
    let mut workers = Vec::new();
    for w in 0..s.workers {
        workers.push(tokio::spawn(load::worker(
            shared.clone(),
            s.seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9),
        )));
    }

    // Disruptions, with the EC failing around some of them.
    let mut crashes: Vec<Crash> = Vec::new();
    let mut windows_reached = [0usize; WINDOWS.len()];
    let mut windows_missed = Vec::new();
    for i in 0..s.disruptions {
        let phase = match plan(i) {
            Plan::Random(phase) => phase,
            Plan::Window(_) => None,
        };
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
        match plan(i) {
            Plan::Window(w) => {
                if target.node.wait_stopped(Duration::from_secs(15)).await {
                    windows_reached[w] += 1;
                } else {
                    windows_missed.push(WINDOWS[w].0);
                }
            }
            Plan::Random(_) => {
                tokio::time::sleep(Duration::from_millis(rng.range(200, 2000))).await;
                if phase.is_none() {
                    shared.deadline_probe(&mut rng).await;
                }
            }
        }
        let down = Duration::from_millis(rng.range(0, 300));
        // The incarnation after the last disruption runs to the end: no failpoint.
        let next = if i + 1 < s.disruptions {
            failpoints(i + 1, &mut rng)
        } else {
            String::new()
        };
        crashes.push(target.disrupt(down, &next).await);
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
        target.node.alive() && !target.node.stopped(),
        "the node died or stopped by itself:\n{}",
        target.node.log_tail(target.node.incarnations(), 40)
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
    if let Err(e) = drain(&source, 20).await {
        violations.push(e);
    }
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

    // Drain, one more disruption and restart with nothing in flight, drain again.
    if let Err(e) = drain(&source, 60).await {
        violations.push(e);
    }
    // The node idle for longer than the journal's sync period: this disruption may take no
    // exchange at all (see `checks::journal`).
    tokio::time::sleep(Duration::from_millis(
        checks::JOURNAL_GATHER_MS + checks::JOURNAL_SYNC_MS + checks::SCHEDULING_SLACK_MS,
    ))
    .await;
    crashes.push(target.disrupt(Duration::from_millis(50), "").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(e) = drain(&source, 20).await {
        violations.push(e);
    }
    // The graceful stop writes the journal out: what the checks and the contract dump read.
    if let Err(e) = target.node.terminate().await {
        violations.push(e);
    }

    // Checks.
    let db = Db::read(&source).unwrap_or_else(|e| panic!("reading the node's database: {e}"));
    let mock_receipts = ec.mock.receipts();
    let phases = shared.phases.lock().unwrap().clone();
    let (report, requests, unknown, journal): (checks::Report, u64, u64, checks::JournalCheck) = {
        let ledger = shared.ledger();
        let report = checks::check(&db, &ledger, &crashes, &phases, &mock_receipts, false);
        let journal = checks::journal(&database, &ledger, &crashes);
        (report, ledger.requests, ledger.unknown, journal)
    };
    common::export_journal(
        &database,
        match disruption {
            Disruption::Kill => "crash-test",
            Disruption::PowerCut => "power-cut-test",
        },
    );
    let kills = crashes.len() - 1;
    let summary = format!(
        "{name}: {kills} {} (+1 after the drain; {} at named windows {:?}), {} payments acknowledged, {} completed, {} receipt copies delivered, {} lost, {} conflicting bodies, {} early/double/missed expiries, {} deadlines pending at a disruption fired after restart",
        match disruption {
            Disruption::Kill => "kills",
            Disruption::PowerCut => "power cuts",
        },
        windows_reached.iter().sum::<usize>(),
        WINDOWS
            .iter()
            .zip(windows_reached)
            .map(|((n, _), k)| format!("{n}: {k}"))
            .collect::<Vec<_>>(),
        report.acknowledged,
        report.completed,
        report.copies_delivered,
        report.lost,
        report.conflicts,
        report.bad_expiries,
        report.pending_fired
    );
    let details = format!(
        "  ({} requests, {} re-sent after a dead connection; {} multi-beneficiary, {} spontaneous, {} late-OK recoveries, {} KO outcomes, {} abandoned activations, {} re-activated; {} EC failure phases: {} activations/demands refused by EC failures ({} timeouts outside the slow phase), {} receipt delivery attempts failed, {} repeated deliveries; node down {} ms at most per disruption; {:.1} s)",
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
        crashes
            .iter()
            .map(|c| c.up_at - c.killed_at)
            .max()
            .unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    println!("{details}");
    println!("{}", journal.summary);
    if let Some(layer) = &target.layer {
        let st = layer.stats();
        println!(
            "  filesystem: {} file syncs ({} MiB made durable), {} directory syncs, {} operations refused after the cuts",
            st.file_syncs,
            st.bytes_synced >> 20,
            st.dir_syncs,
            st.refused
        );
    }
    let errors = target.node.log_errors(20);
    if !errors.is_empty() {
        eprintln!("{name}: errors logged by the node:\n{}", errors.join("\n"));
    }
    violations.extend(report.violations);
    violations.extend(journal.violations);
    if !windows_missed.is_empty() {
        eprintln!(
            "{name}: windows not reached within 15 s (disrupted there at once instead): {windows_missed:?}"
        );
    }
    for (w, k) in windows_reached.iter().enumerate() {
        if *k == 0 && s.disruptions >= 7 {
            violations.push(format!(
                "the window {} was never reached: the run proved nothing about it",
                WINDOWS[w].0
            ));
        }
    }
    if report.acknowledged == 0 {
        violations.push("no payment was acknowledged: the load did not run".into());
    }
    if report.pending_fired == 0 {
        violations.push(
            "no deadline was pending at a disruption: the test proved nothing about deadlines"
                .into(),
        );
    }
    if !violations.is_empty() {
        if let Some(layer) = &target.layer {
            let copy = dir.path().join("after-last-restart");
            if let Err(e) = crate::lazyfs::copy_tree(layer.path(), &copy) {
                eprintln!("{name}: copying the filesystem for the post-mortem: {e}");
            }
        }
        drop(target.layer.take());
        let kept = dir.keep();
        let shown: Vec<&String> = violations.iter().take(60).collect();
        panic!(
            "{summary}\n{} violations (seed {}; node logs, configuration and database kept in {}):\n{}",
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
    if let Some(server) = ec.server.take() {
        server.stop().await;
    }
}
