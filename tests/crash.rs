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
#[path = "crash/setup.rs"]
mod setup;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use checks::{Db, Report};
use load::{Kind, PhaseSpan, Prng, Shared};
use node_proc::{Crash, NodeProc, now_ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_test_writer()
        .try_init();
    pagonode::install_crypto_provider();
    let s = setup::settings();
    let started = Instant::now();
    eprintln!(
        "crash test: {} kills, {} workers, seed {} (PAGONODE_CRASH_SEED={} replays the schedule)",
        s.kills, s.workers, s.seed, s.seed
    );
    let dir = tempfile::tempdir().unwrap();
    let ports = setup::free_ports(&mut Prng::new(s.seed ^ u64::from(std::process::id())), 3);
    let (port, admin_port, ec_port) = (ports[0], ports[1], ports[2]);
    let mut ec = setup::Ec::start(ec_port).await;
    let config = dir.path().join("node.toml");
    let (database, source) = setup::database(dir.path(), false).await;
    std::fs::write(
        &config,
        setup::node_config(&database, &ec.url(), port, admin_port),
    )
    .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut node = NodeProc::new(env!("CARGO_BIN_EXE_pagonode"), &config, dir.path(), port);
    node.start().await.unwrap_or_else(|e| panic!("{e}"));

    // Load.
    let shared = Arc::new(Shared::new(&[port]));
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
        let phase = setup::phase_for(i);
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
        if phase.is_none() {
            shared.deadline_probe(&mut rng).await;
        }
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
    drained(setup::drain(&source, &admin, 20).await);
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
    drained(setup::drain(&source, &admin, 60).await);
    crashes.push(node.crash(Duration::from_millis(50)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drained(setup::drain(&source, &admin, 20).await);

    // Checks.
    let db = Db::read(&source).unwrap_or_else(|e| panic!("reading the node's database: {e}"));
    let mock_receipts = ec.mock.receipts();
    let phases = shared.phases.lock().unwrap().clone();
    let (report, requests, unknown): (Report, u64, u64) = {
        let ledger = shared.ledger();
        let report = checks::check(&db, &ledger, &crashes, &phases, &mock_receipts, false);
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
    violations.extend(setup::journal_after_kills(&database, crashes.len()));
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

/// The crash test again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
