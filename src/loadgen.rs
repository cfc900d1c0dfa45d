//! The load generator: drives activate + outcome pairs (notice payments) or demand + activate +
//! outcome (spontaneous payments) against a node, and reports throughput and latency
//! percentiles. With `--spawn` it starts a node and a simulated EC as child processes on
//! loopback, with a fresh database, so one command measures the whole system.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::codec::node_for_psp::*;
use crate::codec::types::*;
use crate::codec::{AnyMessage, Body, Limits, Message, read_any, write_envelope};
use crate::ec_client::http::root_cause;

/// Which flow each virtual user repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flow {
    /// activatePaymentNotice + sendPaymentOutcome on a notice of the simulated EC.
    Notice,
    /// demandPaymentNotice + activatePaymentNotice + sendPaymentOutcome.
    Spontaneous,
}

/// Load generator settings.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The node's nodeForPsp URL (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080/node-for-psp/v1")]
    pub node: String,
    /// Start a node and a simulated EC as child processes, with a fresh database.
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: the node configuration (default: the example, on free ports).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "notice")]
    pub flow: Flow,
    /// How long to run, in seconds (after warm-up).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Flows in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Disable the journal in the spawned node (to measure its cost).
    #[arg(long)]
    pub no_journal: bool,
    /// With --spawn: measure the journal's cost in one run. Two nodes are started, journal on
    /// and off, and loaded in turn (`--rounds` rounds of `--duration` seconds each, after
    /// `--warmup`, the order flipped every round), so that a noisy machine's drift falls on
    /// both alike; halfway, fresh nodes take the other slots. Prints the throughput ratio and
    /// each side's CPU and bytes written per flow.
    #[arg(long, requires = "spawn", conflicts_with = "no_journal")]
    pub compare_journal: bool,
    /// With --compare-journal: the journal off on both sides, to see what the comparison
    /// reports when there is no difference to find.
    #[arg(long, requires = "compare_journal")]
    pub control: bool,
    /// Rounds of --compare-journal.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Pass `key=value` pairs to the spawned node's [timings]/[node] (e.g. node.workers=2).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5)]
    pub progress: u64,
    /// With --spawn: put the spawned nodes' configurations and databases (`load0.db`, ...) in
    /// this directory and keep them; the processes are stopped gracefully (SIGTERM), so each
    /// node's journal is complete on disk for `pagonode journal`.
    #[arg(long, requires = "spawn", value_name = "DIR")]
    pub keep_dir: Option<PathBuf>,
    /// With --spawn: the nodes' store, a PostgreSQL URL (default: a fresh SQLite file each).
    #[arg(long, requires = "spawn")]
    pub database: Option<String>,
    /// With --spawn: how many nodes, on the one --database; each request goes to the next node
    /// in turn (an activation on one, its outcome on another).
    #[arg(long, default_value_t = 1, requires = "spawn")]
    pub nodes: usize,
    /// Fail (non-zero exit) when the measured throughput is below this many flows per second
    /// (activate+outcome pairs with the notice flow): the CI's floor against regressions.
    #[arg(long, value_name = "N", conflicts_with = "compare_journal")]
    pub min_pairs_per_sec: Option<f64>,
}

/// The PSP the load generator pays as (the example configuration's).
const PSP: (&str, &str, &str, &str) = ("60000000001", "60000000001", "60000000001_01", "pwdpwdpwd");

struct Stats {
    flows: Histogram<u64>,
    /// Flows completed, warm-up included (what the node did, for its CPU and bytes per flow).
    completed: u64,
    per_op: Vec<(&'static str, Histogram<u64>)>,
    errors: u64,
    first_errors: Vec<String>,
    last_error: Option<String>,
}

impl Stats {
    fn new() -> Stats {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
        Stats {
            flows: h(),
            completed: 0,
            per_op: [
                "demandPaymentNotice",
                "activatePaymentNotice",
                "sendPaymentOutcome",
            ]
            .into_iter()
            .map(|n| (n, h()))
            .collect(),
            errors: 0,
            first_errors: Vec::new(),
            last_error: None,
        }
    }

    fn op(&mut self, name: &str, micros: u64) {
        if let Some((_, h)) = self.per_op.iter_mut().find(|(n, _)| *n == name) {
            let _ = h.record(micros.max(1));
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e.clone());
        }
        self.last_error = Some(e);
    }
}

struct Ctx {
    http: reqwest::Client,
    /// The nodes' nodeForPsp URLs: requests go to each in turn.
    urls: Vec<String>,
    turn: AtomicU64,
    run_id: u64,
    /// Shared by every node a run loads, so no notice is paid twice at the simulated EC.
    seq: Arc<AtomicU64>,
    flow: Flow,
    /// Requests that could not even connect to the node.
    unreachable: AtomicU64,
}

/// `v` in base 36, `width` digits (0-9, a-z).
fn base36(mut v: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(digits).expect("ASCII digits")
}

fn t35(s: &str) -> Text35 {
    Text35::new(s).expect("static id")
}

fn password() -> Password {
    Password::new(PSP.3).expect("static password")
}

/// The notice number and idempotency key of flow `n` of run `run_id`: a notice of the
/// simulated EC's Comune (`302` + scenario `00`: one transfer, payable) that no other flow of
/// the run uses.
pub fn pair_key(run_id: u64, n: u64) -> (String, String) {
    let notice = format!("30200{:05}{:08}", run_id % 100_000, n % 100_000_000);
    (
        notice,
        // `[0-9]{11}_[a-zA-Z0-9]{10}`: the run and the flow in base 36, unique for 78
        // billion flows of a run (a key reused with another request would be refused).
        format!(
            "{}_{}{}",
            PSP.0,
            base36(run_id % 36u64.pow(3), 3),
            base36(n % 36u64.pow(7), 7)
        ),
    )
}

/// The activatePaymentNotice of a pair: 10.00 EUR for the notice, as the example
/// configuration's first PSP.
pub fn activate_request(
    fiscal_code: String,
    notice: String,
    key: String,
) -> Result<ActivatePaymentNoticeReq, String> {
    Ok(ActivatePaymentNoticeReq {
        id_psp: t35(PSP.0),
        id_broker_psp: t35(PSP.1),
        id_channel: t35(PSP.2),
        password: password(),
        idempotency_key: Some(IdempotencyKey::new(key)?),
        qr_code: crate::codec::common::QrCode {
            fiscal_code: FiscalCode::new(fiscal_code)?,
            notice_number: NoticeNumber::new(notice)?,
        },
        expiration_time: None,
        amount: Amount::from_cents(1000)?,
        due_date: None,
        payment_note: None,
    })
}

/// The sendPaymentOutcome OK that completes a pair, paid by card through an app on `today`.
pub fn outcome_request(
    key: String,
    token: PaymentToken,
    today: chrono::NaiveDate,
) -> Result<SendPaymentOutcomeReq, String> {
    let date = IsoDate::from_naive(today);
    Ok(SendPaymentOutcomeReq {
        id_psp: t35(PSP.0),
        id_broker_psp: t35(PSP.1),
        id_channel: t35(PSP.2),
        password: password(),
        idempotency_key: Some(IdempotencyKey::new(key)?),
        payment_token: token,
        outcome: Outcome::Ok,
        details: Some(OutcomeDetails {
            payment_method: PaymentMethod::CreditCard,
            payment_channel: Some(PaymentChannel::App),
            fee: Amount::from_cents(100)?,
            payer: None,
            application_date: date.clone(),
            transfer_date: date,
        }),
    })
}

impl Ctx {
    fn new(
        http: reqwest::Client,
        urls: Vec<String>,
        run_id: u64,
        seq: Arc<AtomicU64>,
        flow: Flow,
    ) -> Ctx {
        Ctx {
            http,
            urls,
            turn: AtomicU64::new(0),
            run_id,
            seq,
            flow,
            unreachable: AtomicU64::new(0),
        }
    }

    /// The nodes' commit counters, added up.
    async fn counters(&self) -> Option<(u64, u64)> {
        let mut total = (0, 0);
        for url in &self.urls {
            let (t, j) = health_counters(&self.http, url).await?;
            total = (total.0 + t, total.1 + j);
        }
        Some(total)
    }

    async fn call<M: Message>(&self, req: &M) -> Result<(AnyMessage, u64), String> {
        let t0 = Instant::now();
        let resp = self
            .http
            .post(&self.urls[self.turn.fetch_add(1, Ordering::Relaxed) as usize % self.urls.len()])
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", M::OPERATION.soap_action())
            .body(write_envelope(req))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    self.unreachable.fetch_add(1, Ordering::Relaxed);
                }
                format!("{}: {}", M::OPERATION.soap_action(), root_cause(&e))
            })?;
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        let micros = t0.elapsed().as_micros() as u64;
        match read_any(&body, Limits::DEFAULT) {
            Ok(Body::Message(m)) => match m.outcome_and_fault() {
                Some((Outcome::Ok, None)) => Ok((m, micros)),
                Some((_, fault)) => Err(format!(
                    "{}: {}",
                    M::OPERATION.soap_action(),
                    fault.map_or("KO", |f| f.fault_code.as_str())
                )),
                None => Err(format!("{}: not a response", M::OPERATION.soap_action())),
            },
            _ => Err(format!("{}: unreadable answer", M::OPERATION.soap_action())),
        }
    }

    fn next_key(&self) -> (String, String) {
        pair_key(self.run_id, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// One flow; returns the per-operation latencies.
    async fn flow(&self) -> Result<Vec<(&'static str, u64)>, String> {
        let mut lat = Vec::with_capacity(3);
        let (mut notice, key) = self.next_key();
        let mut fiscal_code = "77777777777".to_string();
        if self.flow == Flow::Spontaneous {
            let doc = b"<ta:tassaAuto xmlns:ta=\"http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto\"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga><ta:veicoloTarga>AB123CD</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>";
            let req = DemandPaymentNoticeRequest {
                id_psp: t35(PSP.0),
                id_broker_psp: t35(PSP.1),
                id_channel: t35(PSP.2),
                password: password(),
                id_soggetto_servizio: ServiceCode::new("00042").map_err(|e| e.to_string())?,
                dati_specifici_servizio: crate::codec::service::ServicePayload::from_document(
                    doc.to_vec(),
                    Limits::DEFAULT,
                )?,
            };
            let (m, us) = self.call(&req).await?;
            lat.push(("demandPaymentNotice", us));
            let AnyMessage::DemandPaymentNoticeResponse(d) = m else {
                return Err("demand: wrong answer".into());
            };
            let qr = d.qr_code.ok_or("demand: no qrCode")?;
            notice = qr.notice_number.to_string();
            fiscal_code = qr.fiscal_code.to_string();
        }
        let act = activate_request(fiscal_code, notice, key.clone())?;
        let (m, us) = self.call(&act).await?;
        lat.push(("activatePaymentNotice", us));
        let AnyMessage::ActivatePaymentNoticeRes(a) = m else {
            return Err("activate: wrong answer".into());
        };
        let token = a.payment_token.ok_or("activate: no token")?;
        let spo = outcome_request(key, token, chrono::Utc::now().date_naive())?;
        let (_, us) = self.call(&spo).await?;
        lat.push(("sendPaymentOutcome", us));
        Ok(lat)
    }
}

/// The measured part of a load: stats, how long it lasted, and the node's commit counters
/// (before, after).
struct Measured {
    stats: Stats,
    secs: f64,
    commits: Option<((u64, u64), (u64, u64))>,
}

/// Drives `concurrency` users against the node of `ctx` for `warmup + duration`, with a
/// progress line on stderr every `progress` (if given). Stops early, with an error, when a
/// whole progress interval (at most 5 s) passes without a flow completing and requests cannot
/// connect to the node.
async fn drive(
    ctx: &Arc<Ctx>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    progress: Option<Duration>,
) -> Result<Measured, String> {
    let before = ctx.counters().await;
    let stats = Arc::new(Mutex::new(Stats::new()));
    let start = Instant::now();
    let end = warmup + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let measured_from = Arc::new(Mutex::new(None::<(Instant, Option<(u64, u64)>)>));
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (ctx, stats, measured_from) = (ctx.clone(), stats.clone(), measured_from.clone());
        let stop = stop.clone();
        users.spawn(async move {
            while start.elapsed() < end && !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let unreachable = ctx.unreachable.load(Ordering::Relaxed);
                let r = ctx.flow().await;
                if ctx.unreachable.load(Ordering::Relaxed) > unreachable {
                    // Not a busy loop of refused connections while the node is away.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let measuring = t0.duration_since(start) >= warmup;
                if measuring {
                    let mut m = measured_from.lock().await;
                    if m.is_none() {
                        *m = Some((t0, ctx.counters().await));
                    }
                }
                let mut s = stats.lock().await;
                s.completed += u64::from(r.is_ok());
                match r {
                    Ok(lat) if measuring => {
                        let _ = s.flows.record((t0.elapsed().as_micros() as u64).max(1));
                        for (op, us) in lat {
                            s.op(op, us);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => s.error(e),
                }
            }
        });
    }
    let watch = Watch {
        ctx,
        stats: &stats,
        start,
        warmup,
        every: progress.unwrap_or(UNREACHABLE_AFTER).min(UNREACHABLE_AFTER),
        print: progress.is_some(),
    };
    let verdict = tokio::select! {
        verdict = watch.run(end) => verdict,
        _ = async { while users.join_next().await.is_some() {} } => Ok(()),
    };
    stop.store(true, Ordering::Relaxed);
    if verdict.is_err() {
        users.abort_all();
    }
    while users.join_next().await.is_some() {}
    verdict?;
    let (t_measure, counters_start) = measured_from.lock().await.unwrap_or((start, before));
    let secs = t_measure.elapsed().as_secs_f64();
    let after = ctx.counters().await;
    let stats = std::mem::replace(&mut *stats.lock().await, Stats::new());
    Ok(Measured {
        stats,
        secs,
        commits: counters_start.zip(after),
    })
}

/// The error for a node that cannot be connected to.
fn unreachable_node(url: &str, what: &str) -> String {
    format!(
        "cannot reach the node at {url}: {what}. Is it running? (`cargo run --release` starts the demo node; `pagonode loadgen --spawn` starts its own.)"
    )
}

/// Fails at once, with [`unreachable_node`], when nothing answers at the node's address (any
/// HTTP answer will do).
async fn check_reachable(http: &reqwest::Client, url: &str) -> Result<(), String> {
    match http.get(url).send().await {
        Err(e) if e.is_connect() || e.is_timeout() => Err(unreachable_node(url, &root_cause(&e))),
        _ => Ok(()),
    }
}

/// How long requests may fail to connect, with no flow completing, before a run stops.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// Watches a load while it runs: progress lines, and the node going away.
struct Watch<'a> {
    ctx: &'a Ctx,
    stats: &'a Mutex<Stats>,
    start: Instant,
    warmup: Duration,
    every: Duration,
    print: bool,
}

impl Watch<'_> {
    /// Ticks until `end` (from `start`); an error as soon as an interval had no flow complete
    /// and requests that could not connect.
    async fn run(&self, end: Duration) -> Result<(), String> {
        let mut last = (0, 0, self.ctx.unreachable.load(Ordering::Relaxed));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        let mut at = Duration::ZERO;
        while self.start.elapsed() + self.every <= end {
            tick.tick().await;
            at += self.every;
            let (completed, errors, last_error) = {
                let s = self.stats.lock().await;
                (s.completed, s.errors, s.last_error.clone())
            };
            let unreachable = self.ctx.unreachable.load(Ordering::Relaxed);
            if completed == last.0 && unreachable > last.2 {
                return Err(unreachable_node(
                    &self.ctx.urls.join(", "),
                    &format!(
                        "{} requests could not connect in the last {} s, none completed (last: {})",
                        unreachable - last.2,
                        self.every.as_secs(),
                        last_error.as_deref().unwrap_or("-")
                    ),
                ));
            }
            if self.print {
                let rate = (completed - last.0) as f64 / self.every.as_secs_f64();
                eprintln!(
                    "loadgen {:>4} s{}: {completed} flows, {rate:.0} flows/s, {} errors{}",
                    at.as_secs(),
                    if at <= self.warmup { " (warm-up)" } else { "" },
                    errors - last.1,
                    match (&last_error, errors > last.1) {
                        (Some(e), true) => format!(" (last: {e})"),
                        _ => String::new(),
                    }
                );
            }
            last = (completed, errors, unreachable);
        }
        std::future::pending().await
    }
}

fn http_client(concurrency: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// Runs the load and prints the report.
pub async fn run(args: LoadArgs) -> Result<(), String> {
    crate::install_crypto_provider();
    if args.compare_journal {
        return compare_journal(&args).await;
    }
    if args.nodes > 1 && args.database.is_none() {
        return Err("--nodes above 1 needs a shared --database (PostgreSQL)".into());
    }
    let spawned = if args.spawn {
        let journal = !args.no_journal;
        Some(Spawned::start(&args, &vec![journal; args.nodes.max(1)]).await?)
    } else {
        None
    };
    let urls = spawned
        .as_ref()
        .map(|s| s.nodes.iter().map(|n| n.1.clone()).collect())
        .unwrap_or_else(|| vec![args.node.clone()]);
    let ctx = Arc::new(Ctx::new(
        http_client(args.concurrency)?,
        urls,
        SystemClock.now_ms() / 1000,
        Arc::new(AtomicU64::new(0)),
        args.flow,
    ));
    for url in &ctx.urls {
        check_reachable(&ctx.http, url).await?;
    }
    let pids: Vec<(String, u32)> = match &spawned {
        Some(sp) => sp
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("node {i}"), n.0.id()))
            .chain([("simulated EC".to_string(), sp.ec.id())])
            .filter_map(|(n, p)| Some((n, p?)))
            .chain([("load generator".to_string(), std::process::id())])
            .collect(),
        None => vec![("load generator".to_string(), std::process::id())],
    };
    let cpu_before: Vec<u64> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    let footprint_before = spawned.as_ref().map(|sp| {
        let written: Vec<u64> = sp.usage().into_iter().map(|(_, w)| w).collect();
        (written, sp.store_bytes())
    });
    let m = drive(
        &ctx,
        args.concurrency,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
        (args.progress > 0).then(|| Duration::from_secs(args.progress)),
    )
    .await;
    let m = match m {
        Ok(m) => m,
        Err(e) => {
            if let Some(sp) = spawned {
                sp.stop().await;
            }
            return Err(e);
        }
    };
    if let Some(sp) = &spawned {
        // Receipts still in delivery and rows still being written belong to the flows run:
        // the node's CPU, bytes and store growth are read once it is idle.
        sp.settle().await;
    }
    report(&args, &m.stats, m.secs, m.commits);
    let ticks = ticks_per_second();
    let completed = m.stats.completed.max(1) as f64;
    for ((name, pid), before) in pids.iter().zip(cpu_before) {
        let used = cpu_ticks(*pid).saturating_sub(before) as f64 / ticks;
        println!(
            "  cpu {name}: {:.2} s total, {:.3} ms per flow (whole run incl. warm-up)",
            used,
            used * 1000.0 / completed
        );
    }
    if let (Some(sp), Some((written, store))) = (&spawned, footprint_before) {
        sp.report_footprint(&written, store, m.stats.completed);
    }
    if let Some(sp) = spawned {
        sp.stop().await;
    }
    verdict(m.stats.flows.is_empty(), m.stats.errors)?;
    let rate = m.stats.flows.len() as f64 / m.secs;
    match args.min_pairs_per_sec {
        Some(floor) if rate < floor => Err(format!(
            "throughput {rate:.0} flows/s is below the floor of {floor:.0} (--min-pairs-per-sec)"
        )),
        _ => Ok(()),
    }
}

/// A run fails when any flow failed (a failed flow is a fault, a timeout or a refused
/// connection: none is expected from a healthy node), or when none completed.
fn verdict(none_completed: bool, errors: u64) -> Result<(), String> {
    if none_completed {
        Err("no flow completed".into())
    } else if errors > 0 {
        Err(format!("{errors} flows failed"))
    } else {
        Ok(())
    }
}

/// `--compare-journal`: two nodes (journal on, off) loaded in turn; prints each round's
/// throughputs, the ratio on/off of the totals and each side's CPU and bytes per flow.
///
/// The two nodes are not interchangeable: with the journal off on both, the first one
/// spawned measured some 6% slower than the second over a run (a control run, `--control`,
/// shows it). So the run is split in two halves on fresh processes, the journal on the first
/// node in one half and on the second in the other: whatever a slot costs falls on both sides.
async fn compare_journal(args: &LoadArgs) -> Result<(), String> {
    let label = if args.control {
        ["first", "second"]
    } else {
        ["journal on", "journal off"]
    };
    println!(
        "pagonode loadgen --compare-journal{}: {} rounds of {} s per side (after {} s warm-up), concurrency {}",
        if args.control {
            " --control (journal off on both sides)"
        } else {
            ""
        },
        args.rounds,
        args.duration,
        args.warmup,
        args.concurrency
    );
    let (http, run_id, seq) = (
        http_client(args.concurrency)?,
        SystemClock.now_ms() / 1000,
        Arc::new(AtomicU64::new(0)),
    );
    let (mut flows, mut secs, mut completed) = ([0u64; 2], [0f64; 2], [0u64; 2]);
    let (mut cpu_us, mut written) = ([0f64; 2], [0u64; 2]);
    let (mut ratios, mut errors, mut first_errors) = (Vec::new(), 0, Vec::new());
    let halves = [args.rounds.div_ceil(2), args.rounds / 2];
    for (half, rounds) in halves.into_iter().enumerate() {
        // Which side each spawned node is: swapped in the second half.
        let side_of = |slot: usize| slot ^ half;
        let journals: Vec<bool> = (0..2)
            .map(|slot| side_of(slot) == 0 && !args.control)
            .collect();
        let spawned = Spawned::start(args, &journals).await?;
        let ctx = |slot: usize| {
            Arc::new(Ctx::new(
                http.clone(),
                vec![spawned.nodes[slot].1.clone()],
                run_id,
                seq.clone(),
                args.flow,
            ))
        };
        let slots = [ctx(0), ctx(1)];
        spawned.settle().await;
        let usage_before = spawned.usage();
        for round in 0..rounds {
            let mut rate = [0f64; 2];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for slot in order {
                // The node loaded before still has work of its own after its phase (receipts
                // to deliver, rows to write, checkpoints): it would slow this phase down.
                // Started only once every process is idle, each phase has the machine to
                // itself.
                spawned.settle().await;
                // Each round prints a line: no progress lines within a phase.
                let m = drive(
                    &slots[slot],
                    args.concurrency,
                    Duration::from_secs(args.warmup),
                    Duration::from_secs(args.duration),
                    None,
                )
                .await?;
                let side = side_of(slot);
                flows[side] += m.stats.flows.len();
                completed[side] += m.stats.completed;
                secs[side] += m.secs;
                errors += m.stats.errors;
                if first_errors.is_empty() {
                    first_errors = m.stats.first_errors;
                }
                rate[side] = m.stats.flows.len() as f64 / m.secs;
            }
            ratios.push(rate[0] / rate[1]);
            println!(
                "  round {}: {} {:.0} flows/s, {} {:.0} flows/s, ratio {:.3}",
                ratios.len(),
                label[0],
                rate[0],
                label[1],
                rate[1],
                rate[0] / rate[1]
            );
        }
        // Each node works only in its phases (and just after): its whole use over the half is
        // what its flows cost it. Steadier than throughput on a noisy host.
        spawned.settle().await;
        for (slot, (after, before)) in spawned.usage().into_iter().zip(usage_before).enumerate() {
            cpu_us[side_of(slot)] +=
                after.0.saturating_sub(before.0) as f64 / ticks_per_second() * 1e6;
            written[side_of(slot)] += after.1.saturating_sub(before.1);
        }
        spawned.stop().await;
    }
    let rate = |i: usize| flows[i] as f64 / secs[i];
    let total = rate(0) / rate(1);
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "  all rounds: {} {:.0} flows/s, {} {:.0} flows/s: ratio {total:.3} (median of rounds {median:.3}; flows/s {:+.1}%)",
        label[0],
        rate(0),
        label[1],
        rate(1),
        (total - 1.0) * 100.0
    );
    let (mean, low, high) = ratio_interval(&ratios);
    println!(
        "  geometric mean of the round ratios {mean:.3}, 95% interval {low:.3}-{high:.3} (what the machine's noise leaves of the measurement)"
    );
    let per_flow = |i: usize| {
        let n = completed[i].max(1) as f64;
        (cpu_us[i] / n, written[i] as f64 / n)
    };
    let (a, b) = (per_flow(0), per_flow(1));
    println!(
        "  per flow: {} {:.0} µs CPU, {:.1} KB written; {} {:.0} µs CPU, {:.1} KB written (CPU {:+.1}%, bytes {:+.1}%)",
        label[0],
        a.0,
        a.1 / 1000.0,
        label[1],
        b.0,
        b.1 / 1000.0,
        (a.0 / b.0 - 1.0) * 100.0,
        (a.1 / b.1 - 1.0) * 100.0
    );
    println!("  errors: {errors}");
    for e in &first_errors {
        println!("    {e}");
    }
    verdict(flows.contains(&0), errors)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn report(args: &LoadArgs, s: &Stats, secs: f64, commits: Option<((u64, u64), (u64, u64))>) {
    let flows = s.flows.len();
    let name = match args.flow {
        Flow::Notice => "activate+outcome pairs",
        Flow::Spontaneous => "spontaneous flows (demand+activate+outcome)",
    };
    println!(
        "pagonode loadgen: {flows} {name} in {secs:.1} s, concurrency {}",
        args.concurrency
    );
    println!("  throughput: {:.0} flows/s", flows as f64 / secs);
    println!(
        "  flow latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(s.flows.value_at_quantile(0.5)),
        ms(s.flows.value_at_quantile(0.9)),
        ms(s.flows.value_at_quantile(0.99)),
        ms(s.flows.max())
    );
    for (op, h) in s.per_op.iter().filter(|(_, h)| !h.is_empty()) {
        println!(
            "  {op:<22} p50 {:.2}  p99 {:.2}  max {:.2} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    if let Some(((tx0, jobs0), (tx1, jobs1))) = commits {
        let (tx, jobs) = (tx1.saturating_sub(tx0), jobs1.saturating_sub(jobs0));
        println!(
            "  store: {:.0} commits/s (fsyncs), {:.0} write jobs/s, {:.1} jobs per commit",
            tx as f64 / secs,
            jobs as f64 / secs,
            jobs as f64 / tx.max(1) as f64
        );
    }
    println!("  errors: {}", s.errors);
    for e in &s.first_errors {
        println!("    {e}");
    }
}

/// User + system CPU ticks a process has used so far (Linux `/proc`; 0 elsewhere).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The geometric mean of `ratios` and its interval of two standard errors either side (about
/// 95%, from the spread of the rounds' logarithms): how much of a run's ratio its noise leaves
/// standing. A single round's ratio swings by tens of percent on a shared host.
fn ratio_interval(ratios: &[f64]) -> (f64, f64, f64) {
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = 2.0 * (variance / n).sqrt();
    (mean.exp(), (mean - half).exp(), (mean + half).exp())
}

/// Bytes a process has caused to be written to storage so far (Linux `/proc`; 0 elsewhere).
fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A process's peak resident set, in KiB (`VmHWM` of `/proc/PID/status`; 0 elsewhere).
fn peak_resident_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A file's size (0 when it does not exist).
fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The size of the files under `dir`, recursively (0 when it does not exist).
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on Linux).
fn ticks_per_second() -> f64 {
    100.0
}

/// (transactions, commit jobs) from the node's health endpoint.
async fn health_counters(http: &reqwest::Client, node_url: &str) -> Option<(u64, u64)> {
    let base = node_url.split("/node-for-psp").next()?;
    let body = http
        .get(format!("{base}/health"))
        .send()
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((
        v["store"]["transactions"].as_u64()?,
        v["store"]["commit_jobs"].as_u64()?,
    ))
}

/// Nodes and a simulated EC as child processes.
struct Spawned {
    /// Each node and its nodeForPsp URL.
    nodes: Vec<(tokio::process::Child, String)>,
    ec: tokio::process::Child,
    dir: PathBuf,
    /// The nodes' SQLite databases (none on PostgreSQL).
    databases: Vec<PathBuf>,
    /// `--keep-dir`: stop gracefully and keep `dir`.
    keep: bool,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Spawned {
    /// A simulated EC and one node per entry of `journals` (its journal on or off), each with
    /// a fresh database.
    async fn start(args: &LoadArgs, journals: &[bool]) -> Result<Spawned, String> {
        let dir = args.keep_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("pagonode-loadgen-{}", std::process::id()))
        });
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let base = match &args.config {
            Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => crate::config::EXAMPLE.to_string(),
        };
        let ec_port = free_port()?;
        let mut configs = Vec::new();
        let mut databases = Vec::new();
        for (i, &journal) in journals.iter().enumerate() {
            let node_port = free_port()?;
            let database = match &args.database {
                Some(url) => url.clone(),
                None => {
                    let db = dir.join(format!("load{i}.db"));
                    databases.push(db.clone());
                    db.display().to_string()
                }
            };
            let mut text = base
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{node_port}"))
                .replace("127.0.0.1:8090", &format!("127.0.0.1:{ec_port}"))
                .replace("pagonode-demo.db", &database)
                .replace("admin_listen = \"127.0.0.1:8081\"", "");
            if !journal {
                text = text.replace("[journal]\nenabled = true", "[journal]\nenabled = false");
            }
            for o in &args.overrides {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("--set {o}: expected key=value"))?;
                let (table, key) = k
                    .split_once('.')
                    .ok_or_else(|| format!("--set {o}: expected table.key=value"))?;
                text = text.replacen(
                    &format!("[{table}]\n"),
                    &format!("[{table}]\n{key} = {v}\n"),
                    1,
                );
            }
            let cfg = dir.join(format!("load{i}.toml"));
            std::fs::write(&cfg, &text).map_err(|e| e.to_string())?;
            crate::config::Config::from_toml_str(&text).map_err(|e| e.to_string())?;
            configs.push((cfg, node_port));
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let spawn = |cmd: &str, cfg: &std::path::Path| {
            tokio::process::Command::new(&exe)
                .arg(cmd)
                .arg("--config")
                .arg(cfg)
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {cmd}: {e}"))
        };
        let ec = spawn("mock-ec", &configs[0].0)?;
        let mut nodes = Vec::new();
        for (cfg, port) in &configs {
            nodes.push((
                spawn("serve", cfg)?,
                format!("http://127.0.0.1:{port}/node-for-psp/v1"),
            ));
        }
        let http = reqwest::Client::new();
        let healthy = |port: u16| {
            let http = http.clone();
            async move {
                http.get(format!("http://127.0.0.1:{port}/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        };
        for _ in 0..200 {
            let mut up = healthy(ec_port).await;
            for (_, port) in &configs {
                up = up && healthy(*port).await;
            }
            if up {
                return Ok(Spawned {
                    nodes,
                    ec,
                    dir,
                    databases,
                    keep: args.keep_dir.is_some(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the spawned nodes or EC did not come up".into())
    }

    /// Waits until the spawned processes are idle (under a tenth of a CPU each over 200 ms),
    /// at most 10 s.
    async fn settle(&self) {
        let pids: Vec<u32> = self
            .nodes
            .iter()
            .map(|(n, _)| n)
            .chain([&self.ec])
            .filter_map(|c| c.id())
            .collect();
        let busy = |before: &[u64]| {
            pids.iter().zip(before).any(|(p, b)| {
                cpu_ticks(*p).saturating_sub(*b) as f64 > 0.1 * 0.2 * ticks_per_second()
            })
        };
        for _ in 0..50 {
            let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !busy(&before) {
                return;
            }
        }
    }

    /// Each node's (CPU ticks, bytes written) so far.
    fn usage(&self) -> Vec<(u64, u64)> {
        self.nodes
            .iter()
            .map(|(n, _)| n.id().map_or((0, 0), |p| (cpu_ticks(p), written_bytes(p))))
            .collect()
    }

    /// Bytes the nodes' SQLite stores take on disk: each database, its WAL and its journal
    /// segments. `None` on PostgreSQL.
    fn store_bytes(&self) -> Option<u64> {
        if self.databases.is_empty() {
            return None;
        }
        let mut total = 0;
        for db in &self.databases {
            let mut wal = db.clone().into_os_string();
            wal.push("-wal");
            total += file_bytes(db) + file_bytes(std::path::Path::new(&wal));
            total += tree_bytes(&crate::journal::writer::journal_dir(db));
        }
        Some(total)
    }

    /// Prints what the run cost each node beyond CPU: bytes written to storage, its peak
    /// resident memory, and how much the store grew per payment. `written` and `store` were
    /// read before the run; `completed` flows ran, warm-up included.
    fn report_footprint(&self, written: &[u64], store: Option<u64>, completed: u64) {
        let n = completed.max(1) as f64;
        for (i, ((node, _), before)) in self.nodes.iter().zip(written).enumerate() {
            let Some(pid) = node.id() else { continue };
            println!(
                "  node {i}: {:.1} KB written per flow, peak resident memory {:.0} MB",
                written_bytes(pid).saturating_sub(*before) as f64 / n / 1000.0,
                peak_resident_kb(pid) as f64 / 1024.0
            );
        }
        match (store, self.store_bytes()) {
            (Some(before), Some(after)) => println!(
                "  store growth: {:.2} KB per payment (database + WAL + journal, {:.1} MB to {:.1} MB)",
                after.saturating_sub(before) as f64 / n / 1000.0,
                before as f64 / 1e6,
                after as f64 / 1e6
            ),
            _ => println!("  store growth: not measured (PostgreSQL)"),
        }
    }

    async fn stop(mut self) {
        for child in self.nodes.iter_mut().map(|(n, _)| n).chain([&mut self.ec]) {
            match child.id() {
                Some(pid) if self.keep => {
                    // SAFETY: kill(2) on our own child, not reaped yet (its pid is still ours).
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                    if tokio::time::timeout(Duration::from_secs(30), child.wait())
                        .await
                        .is_err()
                    {
                        eprintln!("pagonode loadgen: pid {pid} did not stop on SIGTERM: killed");
                        let _ = child.kill().await;
                    }
                }
                _ => {
                    let _ = child.kill().await;
                }
            }
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ratio_interval;

    #[test]
    fn the_ratio_interval_is_geometric_and_narrows_with_agreeing_rounds() {
        let (mean, low, high) = ratio_interval(&[0.5, 2.0]);
        assert!((mean - 1.0).abs() < 1e-12);
        assert!(low < 0.5 && high > 2.0, "{low} {high}");
        let (mean, low, high) = ratio_interval(&[0.95; 8]);
        assert!((mean - 0.95).abs() < 1e-12 && (high - low).abs() < 1e-12);
        let (_, low, high) = ratio_interval(&[0.9, 1.0, 0.95, 0.92, 0.98, 0.93]);
        assert!(
            0.9 < low && low < 0.95 && 0.95 < high && high < 1.0,
            "{low} {high}"
        );
    }
}
