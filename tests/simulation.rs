//! The whole node under a seeded deterministic simulation, in the manner of TigerBeetle's VOPR
//! and FoundationDB's simulator. One seed decides everything: which PSP sends what and when
//! (verify, activate V1/V2 with or without a key and an `expirationTime`, demand then activate,
//! outcomes OK/KO in time, late, twice, concurrently, for carts, with a key reused, requests
//! re-sent), how each station answers (OK, KO, garbage, HTTP 500, slowly, never, refusing the
//! connection), when the node's driver polls its deadlines and deliveries (on time or late), and
//! when the node crashes and restarts (its state rebuilt from the store; with the in-memory store
//! the commits not yet durable at the crash are lost, with SQLite the database is closed and
//! opened again). Time is virtual: the node reads a [`VirtualClock`], reaches stations through
//! a simulated network, and every future is polled here, one at a time, in an order the seed
//! chooses, so a seed replays exactly.
//!
//! After every step:
//! 1. at most one live (PAYING) token per notice, at most one payment paying it, and the
//!    notice's state agrees with its payments;
//! 2. every outcome acknowledged OK was received before its token's deadline, and its payment
//!    is completed (or failed, for KO), with its receipt and copies;
//! 3. every receipt copy is delivered or pending, every copy sent to a station carried the
//!    stored bytes, and a payment is NOTIFIED exactly when all its copies are;
//! 4. no token expires before its deadline, and none is still live once the driver has polled
//!    past its deadline;
//! 5. a request re-sent under its idempotency key while the entry is valid gets the first answer
//!    byte for byte, and another request under the key `PPT_ERRORE_IDEMPOTENZA`.
//!
//! At the end of a seed the stations heal and virtual time runs on: every payment must settle,
//! every copy be acknowledged by its station, and no station hold two contents for one receipt.
//!
//! `cargo test --release --test simulation` runs 1,000 seeds (a debug build, 24);
//! `PAGONODE_SIM_SEEDS=N` runs N; `PAGONODE_SIM_SEED=S` replays seed S alone, and
//! `PAGONODE_SIM_TRACE=1` prints what it does. One seed in ten runs on a real SQLite database
//! in a temporary directory, the others on the in-memory store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use common::{PSP1, PSP2, Psp};
use pagonode::clock::{Clock, VirtualClock};
use pagonode::codec::common::FaultBean;
use pagonode::codec::node_for_psp::{
    ActivatePaymentNoticeReq, ActivatePaymentNoticeV2Request, SendPaymentOutcomeReq,
    SendPaymentOutcomeV2Request,
};
use pagonode::codec::pa_for_node::{
    PaDemandPaymentNoticeResponse, PaGetPaymentRes, PaGetPaymentV2Response, PaSendRtRes,
    PaSendRtV2Response, PaVerifyPaymentNoticeRes,
};
use pagonode::codec::types::{ExpirationTime, FiscalCode, NoticeNumber, Outcome};
use pagonode::codec::xml::Limits;
use pagonode::codec::{AnyMessage, Body, KoResponse, Message, read_any, write_envelope};
use pagonode::config::Config;
use pagonode::ec_client::{Answer, EcTransport, Post, Posted, TransportError};
use pagonode::engine::{Millis, NoticeKey, NoticeState, PaymentStatus, RecipientStatus};
use pagonode::journal::JournalQuery;
use pagonode::journal::JournalRow;
use pagonode::journal::segment::Rows;
use pagonode::mock_ec::{MockEc, MockEcConfig};
use pagonode::node::{Due, Node, TokenIssuer};
use pagonode::registry::Registry;
use pagonode::store::{
    Commit, Durability, MemoryStore, Read, Retention, SqliteStore, Store, StoreStats,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use tokio::sync::oneshot;

/// 2026-01-01T00:00:00Z.
const START: Millis = 1_767_225_600_000;
/// PSP and time actions per seed (each runs to quiescence; time advances add checked steps).
const ACTIONS: usize = 120;
/// Virtual time the final drain may take.
const DRAIN_MS: Millis = 30 * 60_000;

// ------------------------------------------------------------------------------- the seed

/// The seed's choices: `rand`'s seeded generator (the same sequence for a seed, given the
/// `rand` version Cargo.lock pins).
struct Rng(StdRng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(StdRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// 0..n (0 if n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen by weight.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut r = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        unreachable!("a weight was picked")
    }
}

// ------------------------------------------------------------------------- the executor

/// Set when the task's future may progress.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a task ends with.
enum Done {
    /// The answer to the request with this index.
    Reply(usize, String),
    Background,
}

struct Task {
    future: Pin<Box<dyn Future<Output = Done>>>,
    woken: Arc<Woken>,
}

/// Polls `future` to completion on this thread (the SQLite store answers from its threads).
fn block_on<T>(future: impl Future<Output = T>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Polls `future` once: the simulated EC answers at once unless a script delays it.
fn poll_once<T>(future: impl Future<Output = T>) -> Option<T> {
    let waker = Waker::from(Arc::new(Woken(AtomicBool::new(false))));
    let mut cx = Context::from_waker(&waker);
    match std::pin::pin!(future).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

// ---------------------------------------------------------------------------- the network

/// One request in flight to a station.
struct Call {
    url: String,
    action: String,
    body: String,
    timeout_at: Millis,
    /// When and what the node gets; decided by the simulation when it first sees the call.
    plan: Option<(Millis, Result<Answer, TransportError>)>,
    reply: oneshot::Sender<Result<Answer, TransportError>>,
}

#[derive(Default)]
struct Net {
    calls: Vec<Call>,
    /// Every receipt copy that reached a station (the EC processed it), as sent.
    receipts_sent: Vec<String>,
}

/// The node's [`EcTransport`]: calls wait for the simulation to answer them.
struct SimTransport {
    net: Arc<Mutex<Net>>,
    clock: Arc<VirtualClock>,
}

impl EcTransport for SimTransport {
    fn post<'a>(&'a self, request: Post<'a>) -> Posted<'a> {
        let (tx, rx) = oneshot::channel();
        let call = Call {
            url: request.url.to_string(),
            action: request.soap_action.to_string(),
            body: request.body,
            timeout_at: self.clock.now_ms() + request.timeout.as_millis() as u64,
            plan: None,
            reply: tx,
        };
        self.net.lock().unwrap().calls.push(call);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(TransportError::Broken("connection reset".into())))
        })
    }
}

/// How a station behaves for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    /// Every call answered OK at once (the final drain).
    Perfect,
    Healthy,
    Flaky,
    Slow,
    Down,
}

/// A KO answer of the station to `action`, with an EC fault.
fn ec_ko(action: &str) -> String {
    let mut bean = FaultBean::node("PAA_SYSTEM_ERROR", "System error", Some("simulated"));
    bean.id = pagonode::codec::types::XsdString::truncated("77777777777");
    fn ko<R: KoResponse>(bean: FaultBean) -> String {
        write_envelope(&R::ko(bean))
    }
    match action {
        "paVerifyPaymentNotice" => ko::<PaVerifyPaymentNoticeRes>(bean),
        "paGetPayment" => ko::<PaGetPaymentRes>(bean),
        "paGetPaymentV2" => ko::<PaGetPaymentV2Response>(bean),
        "paSendRT" => ko::<PaSendRtRes>(bean),
        "paSendRTV2" => ko::<PaSendRtV2Response>(bean),
        _ => ko::<PaDemandPaymentNoticeResponse>(bean),
    }
}

// ---------------------------------------------------------------------------- the world

const STATIONS: [&str; 4] = [
    "77777777777_01",
    "77777777777_05",
    "88888888888_01",
    "88888888888_02",
];

/// Notices of the example configuration, and what their digits make the simulated EC answer.
const NOTICES: [(&str, &str); 6] = [
    // An explicit position, on the Comune's V2 station.
    ("77777777777", "302000100000009424"),
    // One transfer, V2 station.
    ("77777777777", "302000000000000101"),
    // Three transfers (Comune, Regione, Provincia), V1 station: copies to two broadcast stations.
    ("77777777777", "301130000000000202"),
    // The Regione's notice, two transfers.
    ("88888888888", "302120000000000303"),
    // Five transfers.
    ("77777777777", "302150000000000404"),
    // A digital stamp: V1 activate refused, an outcome without its attachment refused.
    ("77777777777", "302210000000000505"),
];

fn config(sqlite: Option<&PathBuf>) -> Config {
    let mut c = Config::example();
    let t = &mut c.timings;
    t.token_default_ms = 20_000;
    t.token_max_ms = 60_000;
    t.outcome_deadline_ms = 2_000;
    t.idempotency_activate_minutes = 1;
    t.idempotency_outcome_minutes = 3;
    t.idempotency_failure_minutes = 2;
    t.ec_timeout_ms = 3_000;
    t.receipt_timeout_ms = 3_000;
    // Never FAILED: every copy stays due until its station takes it.
    c.receipts.max_attempts = 1_000_000;
    c.receipts.retry_interval_ms = 2_000;
    c.receipts.per_station_concurrency = 2;
    // The SQLite store's journal writer gathers rows for 50 ms of real time per batch: those
    // seeds record state changes only.
    c.journal.enabled = sqlite.is_none();
    if let Some(db) = sqlite {
        c.node.database = pagonode::config::Database::Sqlite(db.clone());
    }
    c
}

/// The SQLite store, counting the commits queued: the simulation waits for its writer thread
/// only when a task has given it work.
struct Counted {
    store: SqliteStore,
    queued: std::sync::atomic::AtomicU64,
    waited: std::sync::atomic::AtomicU64,
}

impl Counted {
    fn open(path: &std::path::Path) -> Arc<Counted> {
        Arc::new(Counted {
            store: SqliteStore::open(path).unwrap(),
            queued: Default::default(),
            waited: Default::default(),
        })
    }

    /// Waits until every commit queued so far is durable (and its task woken).
    fn idle(&self) {
        let queued = self.queued.load(Ordering::SeqCst);
        if self.waited.swap(queued, Ordering::SeqCst) != queued {
            block_on(self.store.flush()).unwrap();
        }
    }
}

impl Store for Counted {
    fn load_notice<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Option<(pagonode::engine::Notice, Option<pagonode::engine::Payment>)>> {
        self.store.load_notice(key)
    }
    fn load_payment<'a>(
        &'a self,
        token: &'a str,
    ) -> Read<'a, Option<(pagonode::engine::Payment, pagonode::engine::Notice)>> {
        self.store.load_payment(token)
    }
    fn load_idempotency<'a>(
        &'a self,
        key: &'a pagonode::engine::IdemKey,
    ) -> Read<'a, Option<pagonode::engine::IdemEntry>> {
        self.store.load_idempotency(key)
    }
    fn load_recipients<'a>(&'a self, id: &'a str) -> Read<'a, Vec<pagonode::engine::Recipient>> {
        self.store.load_recipients(id)
    }
    fn paying_payments(
        &self,
    ) -> Read<'_, Vec<(pagonode::engine::Payment, pagonode::engine::Notice)>> {
        self.store.paying_payments()
    }
    fn recipients_in_delivery(&self) -> Read<'_, Vec<pagonode::engine::Recipient>> {
        self.store.recipients_in_delivery()
    }
    fn failed_recipients(&self) -> Read<'_, u64> {
        self.store.failed_recipients()
    }
    fn recipients_by_status<'a>(
        &'a self,
        status: pagonode::engine::RecipientStatus,
        limit: usize,
    ) -> Read<'a, Vec<pagonode::engine::Recipient>> {
        self.store.recipients_by_status(status, limit)
    }
    fn payments_of_notice<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Vec<pagonode::engine::Payment>> {
        self.store.payments_of_notice(key)
    }
    fn status_history<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Vec<pagonode::engine::StatusRow>> {
        self.store.status_history(key)
    }
    fn commit(&self, writes: Vec<pagonode::engine::Write>) -> Commit {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.store.commit(writes)
    }
    fn journal(&self, rows: Rows) {
        self.store.journal(rows)
    }
    fn query_journal<'a>(&'a self, q: &'a JournalQuery) -> Read<'a, Vec<JournalRow>> {
        self.store.query_journal(q)
    }
    fn maintenance(&self, r: Retention) -> Read<'_, usize> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.store.maintenance(r)
    }
    fn flush(&self) -> Commit {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.store.flush()
    }
    fn health(&self) -> Read<'_, ()> {
        self.store.health()
    }
    fn save_config(&self, v: pagonode::store::ConfigVersion) -> Read<'_, u64> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.store.save_config(v)
    }
    fn latest_config(&self) -> Read<'_, Option<pagonode::store::ConfigVersion>> {
        self.store.latest_config()
    }
    fn latest_config_version(&self) -> Read<'_, u64> {
        self.store.latest_config_version()
    }
    fn stats(&self) -> StoreStats {
        self.store.stats()
    }
    fn close(&self) {
        self.store.close()
    }
}

enum Backing {
    Memory(MemoryStore),
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: Arc<Counted>,
    },
}

impl Backing {
    fn store(&self) -> &dyn Store {
        match self {
            Backing::Memory(m) => m,
            Backing::Sqlite { store, .. } => store.as_ref(),
        }
    }

    fn shared(&self) -> Arc<dyn Store> {
        match self {
            Backing::Memory(m) => Arc::new(m.clone()),
            Backing::Sqlite { store, .. } => store.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct SimNotice {
    key: NoticeKey,
    /// Created by demandPaymentNotice: its payments have the 2-second outcome deadline.
    demanded: bool,
}

/// A token a PSP holds.
#[derive(Debug, Clone)]
struct Held {
    token: String,
    psp: usize,
}

#[derive(Debug, Clone)]
enum What {
    Verify,
    Activate { notice: usize },
    Outcome { tokens: Vec<String>, ok: bool },
    Demand,
}

/// A request a PSP sent.
#[derive(Debug, Clone)]
struct Request {
    psp: usize,
    what: What,
    action: &'static str,
    body: String,
    key: Option<String>,
    sent_at: Millis,
    /// Another request under the same key was in flight with it: which answer the key keeps
    /// depends on the interleaving.
    overlapped: bool,
    reply: Option<String>,
    /// Never answered (the node was down, or crashed while it was in flight).
    lost: bool,
}

/// The idempotency scope of a request: (PSP, key, primitive).
type Scope = (usize, String, &'static str);

/// The answer a key holds, as far as the PSP can tell.
#[derive(Debug, Clone)]
struct Origin {
    body: String,
    reply: String,
    sent_at: Millis,
    /// The token an OK activation issued (its entry goes when the token gets an outcome or
    /// expires, and lives no longer than the token).
    token: Option<String>,
    /// An outcome's entry (they live longer than an activation's refusals).
    outcome: bool,
}

/// What the simulation does next.
#[derive(Debug, Clone)]
enum Action {
    Activate {
        psp: usize,
        notice: usize,
        v2: bool,
    },
    Outcome {
        psp: usize,
        tokens: Vec<String>,
        ok: bool,
        v2: bool,
    },
    Verify {
        psp: usize,
        notice: usize,
    },
    Demand {
        psp: usize,
    },
    /// A request sent again, byte for byte.
    Resend(usize),
    /// Another request under a key already used.
    ReuseKey(usize),
    /// Two or three requests at once.
    Burst,
    Advance(Millis),
    Crash {
        mid_step: bool,
    },
    Mood(usize, Mood),
    Sweep,
    /// The EC has a new debt position (its digits choose transfers, stamp, stations).
    NewNotice,
}

struct Sim {
    seed: u64,
    rng: Rng,
    clock: Arc<VirtualClock>,
    registry: Arc<Registry>,
    backing: Backing,
    node: Option<Arc<Node>>,
    net: Arc<Mutex<Net>>,
    ec: MockEc,
    tasks: Vec<Task>,
    moods: [Mood; 4],
    notices: Vec<SimNotice>,
    requests: Vec<Request>,
    held: Vec<Held>,
    next_key: u64,
    origins: BTreeMap<Scope, Origin>,
    in_flight: BTreeMap<Scope, usize>,
    /// PSP actions due at a time: (when, sequence) → action.
    planned: BTreeMap<(Millis, u64), Action>,
    planned_seq: u64,
    /// When the driver, late, will poll what is due.
    poll_at: Option<Millis>,
    /// When the driver last polled (since the node started).
    last_poll: Option<Millis>,
    /// The node is down until then.
    down_until: Option<Millis>,
    /// Crash after this many more scheduling decisions of the current step.
    crash_in: Option<u64>,
    statuses: BTreeMap<String, PaymentStatus>,
    receipts_checked: usize,
    steps: u64,
    trace: Vec<String>,
    tracing: bool,
    /// The PSPs have stopped: the end of the seed.
    draining: bool,
    /// What the seed reached, for `PAGONODE_SIM_STATS=1`.
    reached: BTreeMap<String, u64>,
    /// A hash of every line logged: two runs of a seed must end with the same.
    digest: u64,
    /// Keep every line, not the last 60.
    keep_trace: bool,
}

type Checked = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn psp(i: usize) -> &'static Psp {
    if i == 0 { &PSP1 } else { &PSP2 }
}

/// The answer's outcome and fault code (`OK` for none), and the token of an OK activation.
fn read_reply(body: &str) -> (String, Option<String>) {
    let Ok(Body::Message(m)) = read_any(body.as_bytes(), Limits::DEFAULT) else {
        return ("UNREADABLE".into(), None);
    };
    let code = match m.outcome_and_fault() {
        Some((_, Some(f))) => f.fault_code.to_string(),
        Some((Outcome::Ok, None)) => "OK".into(),
        _ => "KO".into(),
    };
    let token = match &m {
        AnyMessage::ActivatePaymentNoticeRes(r) => r.payment_token.as_ref(),
        AnyMessage::ActivatePaymentNoticeV2Response(r) => r.payment_token.as_ref(),
        _ => None,
    };
    (code, token.map(|t| t.to_string()))
}

/// The front door's answers to a caller that does not authenticate: given before the
/// idempotency cache is read, and never cached (docs/decisions.md, "Front door").
const REFUSED_BEFORE_THE_CACHE: &[&str] = &[
    "PPT_AUTENTICAZIONE",
    "PPT_PSP_SCONOSCIUTO",
    "PPT_PSP_DISABILITATO",
    "PPT_INTERMEDIARIO_PSP_SCONOSCIUTO",
    "PPT_INTERMEDIARIO_PSP_DISABILITATO",
    "PPT_CANALE_SCONOSCIUTO",
    "PPT_CANALE_DISABILITATO",
];

impl Sim {
    fn new(seed: u64, tracing: bool) -> Sim {
        let sqlite = seed % 10 == 3;
        let clock = Arc::new(VirtualClock::new(START));
        let (backing, cfg) = if sqlite {
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                tempfile::tempdir_in(shm).unwrap()
            } else {
                tempfile::tempdir().unwrap()
            };
            let path = dir.path().join("node.db");
            let store = Counted::open(&path);
            let cfg = config(Some(&path));
            (
                Backing::Sqlite {
                    _dir: dir,
                    path,
                    store,
                },
                cfg,
            )
        } else {
            (
                Backing::Memory(MemoryStore::new(Durability::Manual)),
                config(None),
            )
        };
        let mock = MockEcConfig::from_toml_str(pagonode::config::EXAMPLE).unwrap();
        let notices = NOTICES
            .iter()
            .map(|(fc, nn)| SimNotice {
                key: NoticeKey {
                    fiscal_code: FiscalCode::new(*fc).unwrap(),
                    notice_number: NoticeNumber::new(*nn).unwrap(),
                },
                demanded: false,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng: Rng::new(seed),
            clock,
            registry: Arc::new(Registry::new(cfg)),
            backing,
            node: None,
            net: Arc::default(),
            ec: MockEc::new(mock),
            tasks: Vec::new(),
            moods: [Mood::Healthy; 4],
            notices,
            requests: Vec::new(),
            held: Vec::new(),
            next_key: 0,
            origins: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            planned: BTreeMap::new(),
            planned_seq: 0,
            poll_at: None,
            last_poll: None,
            down_until: None,
            crash_in: None,
            statuses: BTreeMap::new(),
            receipts_checked: 0,
            steps: 0,
            trace: Vec::new(),
            tracing,
            draining: false,
            reached: BTreeMap::new(),
            digest: 0,
            keep_trace: false,
        };
        sim.start();
        sim
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn count(&mut self, what: impl Into<String>) {
        *self.reached.entry(what.into()).or_default() += 1;
    }

    fn log(&mut self, line: String) {
        let line = format!("{:>8} {line}", self.now() - START);
        if self.tracing {
            eprintln!("{line}");
        }
        self.digest = self.digest.wrapping_mul(0x100_0000_01b3).wrapping_add(
            line.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }),
        );
        self.trace.push(line);
        if self.trace.len() > 60 && !self.keep_trace {
            self.trace.remove(0);
        }
    }

    fn spawn(&mut self, future: impl Future<Output = Done> + 'static) {
        self.tasks.push(Task {
            future: Box::pin(future),
            woken: Arc::new(Woken(AtomicBool::new(true))),
        });
    }

    // ------------------------------------------------------------------ node lifecycle

    /// A node on the store as it is, its state rebuilt from it.
    fn start(&mut self) {
        let transport = SimTransport {
            net: self.net.clone(),
            clock: self.clock.clone(),
        };
        let node = Arc::new(Node::new(
            self.registry.clone(),
            self.backing.shared(),
            Arc::new(transport),
            self.clock.clone(),
            TokenIssuer::seeded(self.rng.next()),
        ));
        self.node = Some(node.clone());
        self.down_until = None;
        self.poll_at = None;
        self.last_poll = None;
        self.log("node started".into());
        self.spawn(async move {
            node.recover().await.expect("recovery");
            Done::Background
        });
    }

    /// The process dies: in-flight requests get no answer, the engine's memory is gone, and
    /// with the in-memory store the commits not yet applied are lost (a random prefix of them
    /// was applied first).
    fn crash(&mut self) {
        self.tasks.clear();
        self.node = None;
        self.net.lock().unwrap().calls.clear();
        let lost_keys: Vec<Scope> = self.in_flight.keys().cloned().collect();
        for scope in lost_keys {
            // What the lost requests committed is unknown to their PSPs.
            self.origins.remove(&scope);
        }
        self.in_flight.clear();
        for r in &mut self.requests {
            if r.reply.is_none() {
                r.lost = true;
            }
        }
        match &mut self.backing {
            Backing::Memory(m) => {
                let keep = self.rng.below(m.queued() as u64 + 1);
                for _ in 0..keep {
                    m.apply_next();
                }
                m.crash();
            }
            Backing::Sqlite { path, store, .. } => {
                store.store.close();
                *store = Counted::open(path);
            }
        }
        let down = if self.rng.chance(50) {
            0
        } else {
            self.rng.range(1, 8_000)
        };
        self.down_until = Some(self.now() + down);
        self.log(format!("CRASH, down for {down} ms"));
        self.count("crashes");
    }

    // ------------------------------------------------------------------------ stepping

    /// Runs everything runnable at the current instant until nothing moves: tasks, commits,
    /// station answers due now, and the driver if it is due (unless it is late).
    fn settle(&mut self) {
        loop {
            if let Some(n) = &mut self.crash_in {
                if *n == 0 {
                    self.crash_in = None;
                    self.crash();
                    return;
                }
                *n -= 1;
            }
            let ready: Vec<usize> = (0..self.tasks.len())
                .filter(|&i| self.tasks[i].woken.0.load(Ordering::SeqCst))
                .collect();
            let queued = match &self.backing {
                Backing::Memory(m) => m.queued(),
                Backing::Sqlite { .. } => 0,
            };
            if queued > 0 && (ready.is_empty() || self.rng.chance(30)) {
                if let Backing::Memory(m) = &self.backing {
                    m.apply_next();
                }
                continue;
            }
            if !ready.is_empty() {
                let i = ready[self.rng.below(ready.len() as u64) as usize];
                // The SQLite store commits on its own thread, so whether a commit is done when
                // its task first awaits it depends on that thread's speed: the store is waited
                // for after each poll, and a task its own commit woke is polled again at once,
                // so the seed decides the same things on every run.
                while self.poll_task(i) {
                    let Backing::Sqlite { store, .. } = &self.backing else {
                        break;
                    };
                    store.idle();
                    if !self.tasks[i].woken.0.load(Ordering::SeqCst) {
                        break;
                    }
                }
                continue;
            }
            if self.network() || self.drive() {
                continue;
            }
            return;
        }
    }

    /// Polls task `i`; true if it is still pending.
    fn poll_task(&mut self, i: usize) -> bool {
        let woken = self.tasks[i].woken.clone();
        woken.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(woken);
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(done) = self.tasks[i].future.as_mut().poll(&mut cx) else {
            return true;
        };
        self.tasks.remove(i);
        if let Done::Reply(idx, body) = done {
            self.answered(idx, body);
        }
        false
    }

    /// Decides how stations answer the calls seen for the first time, and delivers the answers
    /// due now. True if something was delivered.
    fn network(&mut self) -> bool {
        let now = self.now();
        let mut net = self.net.lock().unwrap();
        let Net {
            calls,
            receipts_sent,
        } = &mut *net;
        for call in calls.iter_mut().filter(|c| c.plan.is_none()) {
            let station = STATIONS
                .iter()
                .position(|s| call.url.ends_with(s))
                .unwrap_or(0);
            call.plan = Some(plan(
                &mut self.rng,
                &self.ec,
                self.moods[station],
                call,
                now,
                receipts_sent,
            ));
        }
        let mut delivered = false;
        let mut i = 0;
        while i < calls.len() {
            if calls[i].plan.as_ref().is_some_and(|(at, _)| *at <= now) {
                let call = calls.remove(i);
                let (_, answer) = call.plan.expect("planned");
                let _ = call.reply.send(answer);
                delivered = true;
            } else {
                i += 1;
            }
        }
        delivered
    }

    /// The driver: polls what is due, unless it is late this time. True if it polled.
    fn drive(&mut self) -> bool {
        let Some(node) = self.node.clone() else {
            return false;
        };
        let now = self.now();
        match node.next_wakeup() {
            Some(at) if at <= now => {}
            _ => {
                self.poll_at = None;
                return false;
            }
        }
        let lag = if self.rng.chance(75) {
            0
        } else {
            self.rng.range(1, 400)
        };
        if *self.poll_at.get_or_insert(now + lag) > now {
            return false;
        }
        self.poll_at = None;
        let mut due = Due::default();
        node.poll_due(now, &mut due);
        self.last_poll = Some(now);
        for token in due.deadlines {
            let node = node.clone();
            self.spawn(async move {
                node.expire(&token).await;
                Done::Background
            });
        }
        for key in due.deliveries {
            let node = node.clone();
            self.spawn(async move {
                node.deliver(key).await;
                Done::Background
            });
        }
        true
    }

    /// The next instant something happens on its own: a station answers, the driver wakes up
    /// (or, late, polls), the node restarts, a PSP acts.
    fn next_event(&self) -> Option<Millis> {
        let net = self.net.lock().unwrap();
        let calls = net
            .calls
            .iter()
            .filter_map(|c| c.plan.as_ref().map(|p| p.0));
        let driver = self
            .node
            .as_ref()
            .and_then(|n| self.poll_at.or_else(|| n.next_wakeup()));
        let planned = self.planned.keys().next().map(|k| k.0);
        calls
            .chain(driver)
            .chain(self.down_until)
            .chain(planned)
            .min()
    }

    /// Lets `by` ms of virtual time pass, stopping at every event on the way (each stop is a
    /// checked step), and before a planned PSP action.
    fn advance(&mut self, by: Millis) -> Checked {
        let target = self.now() + by;
        loop {
            let now = self.now();
            let next = self.next_event().unwrap_or(target).max(now + 1).min(target);
            self.clock.set(next);
            if self.down_until.is_some_and(|at| at <= next) {
                self.start();
            }
            self.settle();
            self.check()?;
            if next >= target || self.planned.keys().next().is_some_and(|k| k.0 <= next) {
                return Ok(());
            }
        }
    }

    // ------------------------------------------------------------------------ the PSPs

    fn fresh_key(&mut self, p: usize) -> String {
        self.next_key += 1;
        format!("{}_{:010}", psp(p).id, self.next_key)
    }

    /// A key for a new request: mostly fresh, sometimes none.
    fn key_for(&mut self, p: usize) -> Option<String> {
        (!self.rng.chance(15)).then(|| self.fresh_key(p))
    }

    fn send(
        &mut self,
        p: usize,
        what: What,
        action: &'static str,
        body: String,
        key: Option<String>,
    ) {
        let idx = self.requests.len();
        let now = self.now();
        let mut r = Request {
            psp: p,
            what,
            action,
            body: body.clone(),
            key: key.clone(),
            sent_at: now,
            overlapped: false,
            reply: None,
            lost: false,
        };
        let Some(node) = self.node.clone() else {
            r.lost = true;
            self.log(format!(
                "#{idx} {action} from PSP{} refused: node down",
                p + 1
            ));
            self.requests.push(r);
            return;
        };
        if let Some(k) = key {
            let scope = (p, k, action);
            let n = self.in_flight.entry(scope.clone()).or_default();
            if *n > 0 {
                r.overlapped = true;
                for other in self.requests.iter_mut().filter(|o| {
                    o.reply.is_none()
                        && !o.lost
                        && (o.psp, o.key.as_deref(), o.action)
                            == (scope.0, Some(scope.1.as_str()), scope.2)
                }) {
                    other.overlapped = true;
                }
            }
            *n += 1;
        }
        self.log(format!(
            "#{idx} {action} from PSP{}: {:?} key {:?}",
            p + 1,
            r.what,
            r.key
        ));
        self.requests.push(r);
        self.spawn(async move {
            let reply = node
                .handle_soap(Some(action), None, body.as_bytes(), false)
                .await;
            Done::Reply(idx, reply.body)
        });
    }

    fn activate(&mut self, p: usize, n: usize, v2: bool, key: Option<String>, amount: u64) {
        let who = if self.rng.chance(3) {
            Psp {
                password: "wrongpwd1",
                ..*psp(p)
            }
        } else {
            *psp(p)
        };
        let k = &self.notices[n].key;
        let (fc, nn) = (k.fiscal_code.to_string(), k.notice_number.to_string());
        let exp = match self.rng.below(10) {
            0 => Some(self.rng.range(500, 40_000) as i64),
            1 if self.rng.chance(20) => Some(70_000),
            _ => None,
        };
        let exp = exp.map(|ms| ExpirationTime::from_millis(ms).unwrap());
        let (action, body) = if v2 {
            let mut r: ActivatePaymentNoticeV2Request =
                common::activate_v2(&who, &fc, &nn, amount, key.as_deref());
            r.expiration_time = exp;
            (
                ActivatePaymentNoticeV2Request::OPERATION.soap_action(),
                write_envelope(&r),
            )
        } else {
            let mut r: ActivatePaymentNoticeReq =
                common::activate(&who, &fc, &nn, amount, key.as_deref());
            r.expiration_time = exp;
            (
                ActivatePaymentNoticeReq::OPERATION.soap_action(),
                write_envelope(&r),
            )
        };
        self.send(p, What::Activate { notice: n }, action, body, key);
    }

    fn outcome(&mut self, p: usize, tokens: Vec<String>, ok: bool, v2: bool, key: Option<String>) {
        let who = if self.rng.chance(2) {
            Psp {
                password: "wrongpwd1",
                ..*psp(p)
            }
        } else {
            *psp(p)
        };
        let (action, body) = if v2 || tokens.len() > 1 {
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let r = common::outcome_v2(&who, &refs, ok, key.as_deref());
            (
                SendPaymentOutcomeV2Request::OPERATION.soap_action(),
                write_envelope(&r),
            )
        } else {
            let r = common::outcome(&who, &tokens[0], ok, key.as_deref());
            (
                SendPaymentOutcomeReq::OPERATION.soap_action(),
                write_envelope(&r),
            )
        };
        self.send(p, What::Outcome { tokens, ok }, action, body, key);
    }

    fn plan_action(&mut self, after: Millis, action: Action) {
        if self.draining {
            return;
        }
        self.planned_seq += 1;
        let at = self.now() + after;
        self.planned.insert((at, self.planned_seq), action);
    }

    /// A PSP reads an answer.
    fn answered(&mut self, idx: usize, body: String) {
        let now = self.now();
        let (code, token) = read_reply(&body);
        self.requests[idx].reply = Some(body.clone());
        let r = self.requests[idx].clone();
        self.log(format!("#{idx} answered {code}"));
        self.count(format!("{} {code}", r.action));
        if let Err(v) = self.idempotency(&r, &code, token.clone()) {
            self.violation(v);
        }
        match (&r.what, code.as_str()) {
            (What::Activate { notice }, "OK") => {
                let token = token.expect("an OK activation has a token");
                self.held.push(Held {
                    token: token.clone(),
                    psp: r.psp,
                });
                if self.notices[*notice].demanded && self.rng.chance(85) {
                    // The PSP races the 2-second outcome deadline of a spontaneous payment.
                    let after = self.rng.range(1_200, 2_600);
                    let (ok, v2) = (self.rng.chance(85), self.rng.chance(30));
                    self.plan_action(
                        after,
                        Action::Outcome {
                            psp: r.psp,
                            tokens: vec![token],
                            ok,
                            v2,
                        },
                    );
                }
            }
            (What::Demand, "OK") => {
                if let Ok(Body::Message(AnyMessage::DemandPaymentNoticeResponse(d))) =
                    read_any(body.as_bytes(), Limits::DEFAULT)
                    && let Some(qr) = d.qr_code
                {
                    self.notices.push(SimNotice {
                        key: NoticeKey::from_qr(&qr),
                        demanded: true,
                    });
                    let n = self.notices.len() - 1;
                    if self.rng.chance(90) {
                        let (after, v2) = (self.rng.below(300), self.rng.chance(50));
                        self.plan_action(
                            after,
                            Action::Activate {
                                psp: r.psp,
                                notice: n,
                                v2,
                            },
                        );
                    }
                }
            }
            (What::Outcome { tokens, ok }, _) => {
                if let Err(v) = self.outcome_acknowledged(tokens, *ok, &code, now) {
                    self.violation(v);
                }
            }
            _ => {}
        }
    }

    fn violation(&mut self, v: String) {
        panic!("{}", self.report(&v));
    }

    fn report(&self, v: &str) -> String {
        format!(
            "simulation seed {} violated an invariant after {} steps at t+{} ms: {v}\n\
             replay: PAGONODE_SIM_SEED={} PAGONODE_SIM_TRACE=1 cargo test --release --test simulation\n\
             last actions:\n{}",
            self.seed,
            self.steps,
            self.now() - START,
            self.seed,
            self.trace.join("\n")
        )
    }

    /// Invariant 2, when the PSP reads an outcome's answer.
    fn outcome_acknowledged(
        &self,
        tokens: &[String],
        ok: bool,
        code: &str,
        now: Millis,
    ) -> Checked {
        let store = self.backing.store();
        let accepted = match (ok, code) {
            (_, "OK") => true,
            // A late OK on a free notice: the payment is completed all the same.
            (true, "PPT_TOKEN_SCADUTO") => tokens.len() == 1,
            _ => false,
        };
        if !accepted {
            return Ok(());
        }
        for t in tokens {
            let (p, _) = block_on(store.load_payment(t))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("outcome on {t} acknowledged, no payment stored"))?;
            let o = p
                .outcome
                .as_ref()
                .ok_or_else(|| format!("outcome on {t} acknowledged {code}, none stored"))?;
            if ok {
                ensure!(
                    matches!(p.status, PaymentStatus::Paid | PaymentStatus::Notified),
                    "OK outcome on {t} acknowledged {code} at {now}, payment {:?}",
                    p.status
                );
                ensure!(
                    // A receipt and its copies are written in one commit.
                    !block_on(store.load_recipients(t))
                        .map_err(|e| e.to_string())?
                        .is_empty(),
                    "OK outcome on {t} acknowledged, no receipt"
                );
            } else {
                ensure!(
                    p.status == PaymentStatus::Failed,
                    "KO outcome on {t} acknowledged OK, payment {:?}",
                    p.status
                );
            }
            if code == "OK" {
                ensure!(
                    o.received_at < p.deadline,
                    "outcome on {t} acknowledged OK although received {} ms after its deadline",
                    o.received_at - p.deadline
                );
            }
        }
        Ok(())
    }

    /// Invariant 5, when the PSP reads the answer to a request with a key.
    fn idempotency(&mut self, r: &Request, code: &str, token: Option<String>) -> Checked {
        let Some(key) = &r.key else {
            return Ok(());
        };
        let scope: Scope = (r.psp, key.clone(), r.action);
        if let Some(n) = self.in_flight.get_mut(&scope) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&scope);
            }
        }
        let reply = r.reply.as_deref().unwrap_or_default();
        if r.overlapped {
            self.origins.remove(&scope);
            return Ok(());
        }
        if let Some(o) = self.origins.get(&scope).cloned()
            && self.still_cached(&o, self.now())?
        {
            if o.body == r.body {
                self.count("re-sent requests checked against their first answer");
                ensure!(
                    o.reply == reply,
                    "{} re-sent under key {key} while its entry is valid: a different answer\nfirst: {}\nnow:   {}",
                    r.action,
                    o.reply,
                    reply
                );
            } else {
                self.count("other requests under a valid key checked");
                // Unless its caller does not authenticate: refused before the cache is read.
                ensure!(
                    code == "PPT_ERRORE_IDEMPOTENZA" || REFUSED_BEFORE_THE_CACHE.contains(&code),
                    "another {} under key {key} while its entry is valid: {code}",
                    r.action
                );
            }
            return Ok(());
        }
        // A fresh evaluation, or the replay of an entry whose origin is not known for sure (a
        // request that overlapped another, or was in flight at a crash, wrote it): the key holds
        // this answer now, unless nothing was cached, and its lifetime is counted from the
        // earliest request that may have written it. A caller that does not authenticate is
        // refused before the cache is consulted, and nothing is cached for it
        // (docs/decisions.md, "Front door").
        if !(matches!(code, "PPT_ERRORE_IDEMPOTENZA" | "PPT_SYSTEM_ERROR")
            || REFUSED_BEFORE_THE_CACHE.contains(&code))
        {
            let sent_at = self
                .requests
                .iter()
                .filter(|o| {
                    (o.psp, o.key.as_deref(), o.action) == (r.psp, Some(key.as_str()), r.action)
                        && o.body == r.body
                        && (o.lost || o.reply.as_deref() == Some(reply))
                })
                .map(|o| o.sent_at)
                .min()
                .unwrap_or(r.sent_at);
            let token = token.filter(|_| matches!(r.what, What::Activate { .. }) && code == "OK");
            self.origins.insert(
                scope,
                Origin {
                    body: r.body.clone(),
                    reply: reply.to_string(),
                    sent_at,
                    token,
                    outcome: matches!(r.what, What::Outcome { .. }),
                },
            );
        }
        Ok(())
    }

    /// Whether an entry is surely still valid at `now`: within its lifetime from when its
    /// request was sent, and, for an activation's, its token still live and before its deadline.
    fn still_cached(&self, o: &Origin, now: Millis) -> Result<bool, String> {
        let t = &self.registry.config().timings;
        let minutes = if o.outcome {
            t.idempotency_outcome_minutes
        } else if o.token.is_some() {
            t.idempotency_activate_minutes
        } else {
            t.idempotency_failure_minutes
        };
        if now >= o.sent_at + minutes * 60_000 {
            return Ok(false);
        }
        let Some(token) = &o.token else {
            return Ok(true);
        };
        Ok(block_on(self.backing.store().load_payment(token))
            .map_err(|e| e.to_string())?
            .is_some_and(|(p, _)| p.status == PaymentStatus::Paying && now < p.deadline))
    }

    // ---------------------------------------------------------------------- invariants

    /// Invariants 1, 3 and 4, over the store as it is, and the copies stations received.
    fn check(&mut self) -> Checked {
        self.steps += 1;
        let now = self.now();
        let store = self.backing.store();
        let err = |e: pagonode::store::StoreError| e.to_string();
        let mut stored_copies = BTreeSet::new();
        let mut newly_cancelled = Vec::new();
        let mut transitions = Vec::new();
        for n in &self.notices {
            let key = &n.key;
            let payments = block_on(store.payments_of_notice(key)).map_err(err)?;
            let notice = block_on(store.load_notice(key))
                .map_err(err)?
                .map(|(n, _)| n);
            let live: Vec<&str> = payments
                .iter()
                .filter(|p| p.status == PaymentStatus::Paying)
                .map(|p| p.token.as_str())
                .collect();
            let paid: Vec<&str> = payments
                .iter()
                .filter(|p| matches!(p.status, PaymentStatus::Paid | PaymentStatus::Notified))
                .map(|p| p.token.as_str())
                .collect();
            ensure!(live.len() <= 1, "notice {key}: live tokens {live:?}");
            ensure!(paid.len() <= 1, "notice {key}: paid by {paid:?}");
            match notice.as_ref().map(|n| &n.state) {
                None => ensure!(
                    payments.is_empty(),
                    "notice {key}: payments without a notice"
                ),
                Some(NoticeState::Free) => ensure!(
                    live.is_empty() && paid.is_empty(),
                    "notice {key} FREE beside live {live:?}, paid {paid:?}"
                ),
                Some(NoticeState::Paying(t)) => ensure!(
                    live == [t.as_str()] && paid.is_empty(),
                    "notice {key} PAYING {t} beside live {live:?}, paid {paid:?}"
                ),
                Some(NoticeState::Paid(t)) => ensure!(
                    live.is_empty() && paid == [t.as_str()],
                    "notice {key} PAID by {t} beside live {live:?}, paid {paid:?}"
                ),
            }
            for p in &payments {
                let t = p.token.as_str();
                if p.status == PaymentStatus::Paying
                    && let Some(polled) = self.last_poll
                {
                    ensure!(
                        p.deadline > polled,
                        "{t}: still live although the driver polled at {polled}, past its deadline {}",
                        p.deadline
                    );
                }
                if p.status == PaymentStatus::Cancelled
                    && self.statuses.get(t) != Some(&PaymentStatus::Cancelled)
                {
                    newly_cancelled.push((t.to_string(), p.deadline));
                }
                if self.statuses.get(t) != Some(&p.status) {
                    transitions.push(format!("payment {}", p.status.as_str()));
                }
                let copies = block_on(store.load_recipients(t)).map_err(err)?;
                if matches!(p.status, PaymentStatus::Paid | PaymentStatus::Notified) {
                    ensure!(!copies.is_empty(), "{t} paid without receipt copies");
                    ensure!(
                        copies.iter().all(|c| c.status != RecipientStatus::Failed),
                        "{t}: a copy FAILED"
                    );
                    let all = copies.iter().all(|c| c.status == RecipientStatus::Notified);
                    ensure!(
                        all == (p.status == PaymentStatus::Notified),
                        "{t} is {:?} with copies {:?}",
                        p.status,
                        copies
                            .iter()
                            .map(|c| (c.station.as_str(), c.status))
                            .collect::<Vec<_>>()
                    );
                    stored_copies.extend(copies.into_iter().map(|c| c.request));
                } else {
                    ensure!(copies.is_empty(), "{t} is {:?} with a receipt", p.status);
                }
            }
        }
        // Invariant 4: an expiry at or after the deadline, recorded in the journal.
        for (t, deadline) in newly_cancelled {
            ensure!(
                now >= deadline,
                "{t} cancelled at {now}, before its deadline {deadline}"
            );
            let events = block_on(store.query_journal(&JournalQuery {
                token: Some(t.clone()),
                primitive: Some("EXPIRED".into()),
                limit: 10,
                ..JournalQuery::default()
            }))
            .map_err(err)?;
            ensure!(
                events.len() == 1,
                "{t} cancelled with {} expiry events",
                events.len()
            );
            ensure!(
                events[0].entry.at >= deadline,
                "{t} expired at {}, before its deadline {deadline}",
                events[0].entry.at
            );
        }
        for n in &self.notices {
            for p in block_on(store.payments_of_notice(&n.key)).map_err(err)? {
                self.statuses.insert(p.token.to_string(), p.status);
            }
        }
        for t in transitions {
            self.count(t);
        }
        let net = self.net.lock().unwrap();
        for body in &net.receipts_sent[self.receipts_checked..] {
            ensure!(
                stored_copies.contains(body),
                "a station received a receipt copy the store does not hold: {body}"
            );
        }
        self.receipts_checked = net.receipts_sent.len();
        Ok(())
    }

    // --------------------------------------------------------------------- the script

    fn choose(&mut self) -> Action {
        if let Some((&k, _)) = self.planned.iter().next()
            && k.0 <= self.now()
        {
            return self.planned.remove(&k).expect("planned");
        }
        let p = self.rng.below(2) as usize;
        let n = self.rng.below(self.notices.len() as u64) as usize;
        let mine: Vec<usize> = (0..self.held.len())
            .filter(|&i| self.held[i].psp == p)
            .collect();
        let keyed: Vec<usize> = (0..self.requests.len())
            .filter(|&i| self.requests[i].key.is_some())
            .collect();
        match self
            .rng
            .weighted(&[16, 16, 5, 4, 6, 3, 4, 22, 10, 4, 2, 3, 1, 3])
        {
            0 => Action::Activate {
                psp: p,
                notice: n,
                v2: self.rng.chance(50),
            },
            1 if !self.held.is_empty() => {
                let own = !mine.is_empty() && self.rng.chance(90);
                let pool: Vec<usize> = if own {
                    mine
                } else {
                    (0..self.held.len()).collect()
                };
                let mut tokens = vec![self.held[self.rng.pick(&pool)].token.clone()];
                if self.rng.chance(15) {
                    tokens.push(self.held[self.rng.pick(&pool)].token.clone());
                }
                Action::Outcome {
                    psp: p,
                    tokens,
                    ok: self.rng.chance(75),
                    v2: self.rng.chance(30),
                }
            }
            2 => Action::Verify { psp: p, notice: n },
            3 => Action::Demand { psp: p },
            4 if !keyed.is_empty() => Action::Resend(self.rng.pick(&keyed)),
            5 if !keyed.is_empty() => Action::ReuseKey(self.rng.pick(&keyed)),
            6 => Action::Burst,
            7 => Action::Advance(self.rng.range(1, 300)),
            8 => Action::Advance(self.rng.range(300, 5_000)),
            9 => Action::Advance(self.rng.range(5_000, 90_000)),
            10 => Action::Crash {
                mid_step: self.rng.chance(50),
            },
            11 => {
                let moods = [
                    Mood::Healthy,
                    Mood::Healthy,
                    Mood::Flaky,
                    Mood::Slow,
                    Mood::Down,
                ];
                Action::Mood(self.rng.below(4) as usize, self.rng.pick(&moods))
            }
            12 => Action::Sweep,
            13 => Action::NewNotice,
            _ => Action::Advance(self.rng.range(1, 100)),
        }
    }

    fn run_action(&mut self, a: Action) -> Checked {
        match a {
            Action::Activate { psp, notice, v2 } => {
                let key = self.key_for(psp);
                self.activate(psp, notice, v2, key, 1000);
            }
            Action::Outcome {
                psp,
                tokens,
                ok,
                v2,
            } => {
                let key = self.key_for(psp);
                self.outcome(psp, tokens, ok, v2, key);
            }
            Action::Verify { psp: p, notice } => {
                let k = self.notices[notice].key.clone();
                let r = common::verify(psp(p), k.fiscal_code.as_str(), k.notice_number.as_str());
                self.send(
                    p,
                    What::Verify,
                    "verifyPaymentNotice",
                    write_envelope(&r),
                    None,
                );
            }
            Action::Demand { psp: p } => {
                let plate = format!("AB{:03}CD", self.rng.below(1000));
                let r = common::demand(psp(p), "00042", common::tassa_auto(&plate));
                self.send(
                    p,
                    What::Demand,
                    "demandPaymentNotice",
                    write_envelope(&r),
                    None,
                );
            }
            Action::Resend(i) => {
                let r = self.requests[i].clone();
                self.send(r.psp, r.what, r.action, r.body, r.key);
            }
            Action::ReuseKey(i) => {
                let r = self.requests[i].clone();
                match r.what {
                    What::Activate { notice } => {
                        let n = self.rng.below(self.notices.len() as u64) as usize;
                        let n = if self.rng.chance(50) { notice } else { n };
                        let v2 = r.action == "activatePaymentNoticeV2";
                        let amount = 1000 + self.rng.range(1, 500);
                        self.activate(r.psp, n, v2, r.key, amount);
                    }
                    What::Outcome { tokens, ok } => {
                        let v2 = r.action == "sendPaymentOutcomeV2";
                        self.outcome(r.psp, tokens, !ok, v2, r.key);
                    }
                    _ => {}
                }
            }
            Action::Burst => {
                for _ in 0..self.rng.range(2, 4) {
                    let a = self.choose();
                    if matches!(
                        a,
                        Action::Activate { .. }
                            | Action::Outcome { .. }
                            | Action::Verify { .. }
                            | Action::Resend(_)
                    ) {
                        self.run_action(a)?;
                    }
                }
            }
            Action::Advance(by) => {
                self.log(format!("advance {by} ms"));
                return self.advance(by);
            }
            Action::Crash { mid_step } => {
                if self.node.is_none() {
                    return Ok(());
                }
                if mid_step {
                    self.crash_in = Some(self.rng.below(12));
                    self.log("crash planned within this step".into());
                    let n = self.notices.len() as u64;
                    let a = Action::Activate {
                        psp: self.rng.below(2) as usize,
                        notice: self.rng.below(n) as usize,
                        v2: false,
                    };
                    return self.run_action(a);
                }
                self.crash();
            }
            Action::Mood(s, m) => {
                self.log(format!("station {} {m:?}", STATIONS[s]));
                self.moods[s] = m;
            }
            Action::Sweep => {
                if let Some(n) = &self.node {
                    n.sweep();
                }
            }
            Action::NewNotice => {
                // Aux digit 3, segregation 02 (V2 station) or 01 (V1 station), then the scenario
                // digits and a number of the seed's own.
                let (ec, segregation) = match self.rng.below(4) {
                    0 => ("88888888888", "02"),
                    1 => ("77777777777", "01"),
                    _ => ("77777777777", "02"),
                };
                let scenario = self.rng.pick(&["00", "00", "11", "12", "13", "15", "21"]);
                let number = format!("3{segregation}{scenario}{:013}", self.notices.len());
                self.log(format!("new notice {ec}/{number}"));
                self.notices.push(SimNotice {
                    key: NoticeKey {
                        fiscal_code: FiscalCode::new(ec).unwrap(),
                        notice_number: NoticeNumber::new(number).unwrap(),
                    },
                    demanded: false,
                });
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Checked {
        let a = self.choose();
        self.run_action(a)?;
        self.settle();
        if self.crash_in.take().is_some() {
            // Nothing left to interrupt: the crash happens now.
            self.crash();
        }
        self.check()
    }

    /// The end of a seed: stations heal, PSPs stop, time runs on until everything settles.
    fn drain(&mut self) -> Checked {
        self.log("drain".into());
        self.draining = true;
        self.planned.clear();
        self.moods = [Mood::Perfect; 4];
        let limit = self.now() + DRAIN_MS;
        loop {
            if self.node.is_none() {
                let at = self.down_until.unwrap_or(self.now());
                self.clock.set(at);
                self.start();
            }
            self.settle();
            self.check()?;
            if self.settled()? {
                break;
            }
            ensure!(
                self.now() < limit,
                "not settled {} minutes after the drain began",
                DRAIN_MS / 60_000
            );
            let next = self.next_event().unwrap_or(self.now() + 1_000);
            self.clock.set(next.max(self.now() + 1));
        }
        // Every copy acknowledged by its station, one content per receipt.
        let store = self.backing.store();
        let received = self.ec.receipts();
        for r in &received {
            ensure!(
                r.conflicts.is_empty(),
                "station {} got receipt {} with two contents",
                r.station,
                r.receipt_id
            );
        }
        for n in &self.notices {
            for p in block_on(store.payments_of_notice(&n.key)).map_err(|e| e.to_string())? {
                for c in block_on(store.load_recipients(&p.token)).map_err(|e| e.to_string())? {
                    ensure!(
                        received.iter().any(|r| r.station == c.station.as_str()
                            && r.receipt_id == c.receipt_id.as_str()),
                        "copy of {} for {} NOTIFIED, never received by the station",
                        c.receipt_id,
                        c.station
                    );
                }
            }
        }
        Ok(())
    }

    /// No payment waiting for its outcome, no copy to send, nothing in flight.
    fn settled(&self) -> Result<bool, String> {
        let store = self.backing.store();
        if !self.tasks.is_empty() || !self.net.lock().unwrap().calls.is_empty() {
            return Ok(false);
        }
        for n in &self.notices {
            for p in block_on(store.payments_of_notice(&n.key)).map_err(|e| e.to_string())? {
                if matches!(p.status, PaymentStatus::Paying | PaymentStatus::Paid) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn close(self) {
        if let Backing::Sqlite { store, .. } = &self.backing {
            store.store.close();
        }
    }
}

/// How a station answers one call, decided when the simulation first sees it: when, and what.
/// A station that processes the request (changing its state) does so at once; the answer may
/// reach the node later, or never.
fn plan(
    rng: &mut Rng,
    ec: &MockEc,
    mood: Mood,
    call: &Call,
    now: Millis,
    receipts_sent: &mut Vec<String>,
) -> (Millis, Result<Answer, TransportError>) {
    enum Kind {
        Ok(Millis),
        Ko,
        Garbage,
        Http500,
        Never,
        Refused,
    }
    // Per mood, the weights of: OK at once, OK slowly, KO, garbage, HTTP 500, silence, refusal.
    let weights = match mood {
        Mood::Perfect => [1, 0, 0, 0, 0, 0, 0],
        Mood::Healthy => [90, 3, 2, 1, 1, 1, 1],
        Mood::Flaky => [30, 10, 15, 15, 10, 10, 10],
        Mood::Slow => [0, 1, 0, 0, 0, 0, 0],
        Mood::Down => [0, 0, 0, 0, 0, 3, 7],
    };
    let kind = match rng.weighted(&weights) {
        0 if mood == Mood::Perfect => Kind::Ok(0),
        0 => Kind::Ok(rng.below(40)),
        1 => Kind::Ok(rng.range(200, 5_000)),
        2 => Kind::Ko,
        3 => Kind::Garbage,
        4 => Kind::Http500,
        5 => Kind::Never,
        _ => Kind::Refused,
    };
    let answer = |status: u16, body: String| {
        Ok(Answer {
            status,
            body: body.into_bytes(),
        })
    };
    let timeout = (call.timeout_at, Err(TransportError::Timeout));
    match kind {
        Kind::Ok(delay) => {
            let path = call.url.find("/pa/").map_or("/", |i| &call.url[i..]);
            let Some((status, body)) =
                poll_once(ec.answer(path, Some(&call.action), call.body.as_bytes()))
            else {
                return timeout;
            };
            if call.action.starts_with("paSendRT") {
                receipts_sent.push(call.body.clone());
            }
            if now + delay >= call.timeout_at {
                timeout
            } else {
                (now + delay, answer(status, body))
            }
        }
        Kind::Ko => (now + rng.below(40), answer(200, ec_ko(&call.action))),
        Kind::Garbage => (now, answer(200, "<<< not XML >>>".into())),
        Kind::Http500 => (now, answer(500, String::new())),
        Kind::Never => timeout,
        Kind::Refused => (
            now,
            Err(TransportError::Connect("connection refused".into())),
        ),
    }
}

fn run_seed(seed: u64, tracing: bool, reached: &mut BTreeMap<String, u64>) -> u64 {
    let mut sim = Sim::new(seed, tracing);
    let result = (|| -> Checked {
        sim.settle();
        sim.check()?;
        for _ in 0..ACTIONS {
            sim.step()?;
        }
        sim.drain()
    })();
    if let Err(v) = result {
        let report = sim.report(&v);
        sim.close();
        panic!("{report}");
    }
    let steps = sim.steps;
    let sent = sim.net.lock().unwrap().receipts_sent.len() as u64;
    *reached
        .entry("receipt copies received by stations".into())
        .or_default() += sent;
    for (k, v) in std::mem::take(&mut sim.reached) {
        *reached.entry(k).or_default() += v;
    }
    sim.close();
    steps
}

/// The simulation runs without the test harness, so that its summary is printed on success too:
/// first a check that two seeds (one per store) replay exactly, then the seeds.
fn main() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let tracing = std::env::var("PAGONODE_SIM_TRACE").is_ok_and(|v| v == "1");
    let seeds: Vec<u64> = match env("PAGONODE_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            replays_exactly();
            let n = env("PAGONODE_SIM_SEEDS").unwrap_or(if cfg!(debug_assertions) {
                16
            } else {
                1_000
            });
            (1..=n).collect()
        }
    };
    let (mut steps, mut reached) = (0, BTreeMap::new());
    for &seed in &seeds {
        steps += run_seed(seed, tracing, &mut reached);
    }
    if std::env::var("PAGONODE_SIM_STATS").is_ok_and(|v| v == "1") {
        for (what, n) in &reached {
            println!("  {n:>8}  {what}");
        }
    }
    println!(
        "simulation: {} seeds, {steps} steps, 0 violations",
        seeds.len()
    );
}

/// Two runs of a seed do the same, to the last line of their logs.
fn replays_exactly() {
    let run = |seed| {
        let mut sim = Sim::new(seed, false);
        sim.keep_trace = true;
        sim.settle();
        for _ in 0..ACTIONS {
            sim.step().unwrap();
        }
        sim.drain().unwrap();
        let out = (
            sim.steps,
            sim.now(),
            sim.digest,
            std::mem::take(&mut sim.trace),
        );
        sim.close();
        out
    };
    // One seed on the in-memory store, one on SQLite.
    for seed in [5, 3] {
        let (a, b) = (run(seed), run(seed));
        if let Some(i) = (0..a.3.len().min(b.3.len())).find(|&i| a.3[i] != b.3[i]) {
            let from = i.saturating_sub(25);
            panic!(
                "seed {seed} ran differently twice from line {i}:\n{}\nvs\n{}",
                a.3[from..(i + 5).min(a.3.len())].join("\n"),
                b.3[from..(i + 5).min(b.3.len())].join("\n")
            );
        }
        assert_eq!(
            (a.0, a.1, a.2),
            (b.0, b.1, b.2),
            "seed {seed} ran differently twice"
        );
    }
}
