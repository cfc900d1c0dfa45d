//! The node: the one driver of the engine. It reads requests (codec), runs the registry checks,
//! hydrates the engine from the store, calls the ECs, commits each step before answering, and
//! schedules what the steps ask for (deadlines, receipt deliveries). Nothing else calls the
//! engine or applies its effects. One file per primitive; [`driver`] is when the node wakes up
//! by itself.
//!
//! The node reads time from its [`Clock`], issues tokens from its [`TokenIssuer`] and reaches
//! stations through its [`EcTransport`]: given virtual ones, a test runs the whole node on
//! virtual time.

mod activate;
mod catalogue;
mod deliver;
mod demand;
pub mod driver;
mod jobs;
mod outcome;
mod reconfig;
mod token;
mod verify;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use driver::{Due, TAKEOVER_MS};
#[cfg(unix)]
pub use reconfig::reload_on_hangup;
pub use reconfig::{ActiveVersion, Applied, ApplyError, Origin, follow_store};
pub use token::TokenIssuer;

use crate::clock::Clock;
use crate::codec::types::{IdempotencyKey, Password, PaymentToken, Text35};
use crate::codec::{AnyMessage, Body, Direction, Operation, Secrets, read_request};
use crate::config::OverRate;
use crate::ec_client::{EcClient, EcTransport, Exchange};
use crate::engine::{
    Engine, IdemCheck, IdemCtx, IdemKey, Millis, NoticeKey, PspRef, Record, Reply, RequestCtx,
    Step, Write, request_hash,
};
use crate::fault::NodeFault;
use crate::front::keys::KeyRefusal;
use crate::front::refusals::Reason;
use crate::front::{FrontDoor, Peer, certs};
use crate::journal::{JournalQuery, JournalRow, Keys, rows};
use crate::metrics::Metrics;
use crate::registry::{Caller, PspCredentials, Registry};
use crate::store::{Commit, Store, StoreError, StoreStats};

/// The node's shared state.
pub struct Node {
    /// The running configuration, swapped whole when a new version is applied: each request
    /// reads one snapshot of it from start to end (see [`Node::registry`]).
    registry: std::sync::RwLock<Arc<Registry>>,
    /// The running configuration's version, who applied it and when.
    active: Mutex<ActiveVersion>,
    /// Applications of new versions, one at a time.
    applying: tokio::sync::Mutex<()>,
    engine: Mutex<Engine>,
    store: Arc<dyn Store>,
    ec: EcClient,
    clock: Arc<dyn Clock>,
    tokens: TokenIssuer,
    schedule: Mutex<driver::Schedule>,
    /// Wakes the driver when something is scheduled before the time it sleeps until.
    wakeup: tokio::sync::Notify,
    /// Other nodes share the store: the engine's memory is only a cache, read again before
    /// each command (see [`Engine::refresh_notice`]).
    shared: bool,
    front: FrontDoor,
    /// When a commit or a read of the store last failed (`now` ms; 0: never).
    store_failed_at: AtomicU64,
    /// Numbers the internal errors, so that a PSP's fault names the log line with the detail.
    incidents: AtomicU64,
    metrics: Arc<Metrics>,
    /// Told whenever a delivery attempt ends.
    attempt_ended: tokio::sync::Notify,
    /// Held by a run of the cancellation job: runs do not overlap, so a run asked for on
    /// demand ends after the one in progress.
    cancellation: tokio::sync::Mutex<()>,
}

/// How long after a failed commit or read the health endpoint reports the store down.
pub const STORE_FAILURE_WINDOW: Duration = Duration::from_secs(30);

/// An engine step whose writes are already queued to the store (see [`Node::queue`]).
pub(crate) struct Queued {
    commit: Option<Commit>,
    /// The step, its writes taken.
    step: Step,
    /// The records the writes change (tracked while they are in flight, with a shared store).
    records: Vec<Record>,
}

/// Why a step was not committed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Another node changed a record first: read again and run the command again.
    Conflict,
    Fault(NodeFault),
}

impl From<Failed> for NodeFault {
    fn from(f: Failed) -> NodeFault {
        match f {
            Failed::Conflict => {
                NodeFault::SystemError("the payment kept changing: try again".into())
            }
            Failed::Fault(f) => f,
        }
    }
}

/// How many times a request whose commit lost a race to another node is run again.
const CONFLICT_RETRIES: usize = 5;

tokio::task_local! {
    /// Set when a commit of the request being dispatched lost a race: its answer is not sent,
    /// the request runs again (see [`Node::dispatch`]).
    static CONFLICTED: Cell<bool>;
}

/// The answer to one SOAP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapReply {
    /// 200 for every pagoPA answer (faults travel in-band); 500 only for a SOAP Fault when not
    /// even the operation could be recognised; 401 and 429 for the front door's refusals.
    pub status: u16,
    pub body: String,
    pub operation: Option<Operation>,
    /// The front door's refusals are JSON, as an API gateway's; the rest is SOAP.
    pub json: bool,
    /// With 429: seconds until the caller may send again.
    pub retry_after_s: Option<u64>,
    /// The fault of a pagoPA KO answer.
    pub fault: Option<crate::fault::FaultCode>,
}

impl SoapReply {
    fn soap(status: u16, body: String, operation: Option<Operation>) -> SoapReply {
        SoapReply {
            status,
            body,
            operation,
            json: false,
            retry_after_s: None,
            fault: None,
        }
    }

    /// The pagoPA answer to a request (a KO's fault code kept for the metrics).
    fn answer(reply: Reply, operation: Operation) -> SoapReply {
        SoapReply {
            fault: reply.fault,
            ..SoapReply::soap(200, reply.envelope, Some(operation))
        }
    }

    /// HTTP 401 for a subscription key refused, in the gateway's words.
    pub fn unauthorized(refusal: KeyRefusal) -> SoapReply {
        SoapReply {
            status: 401,
            body: crate::front::gateway_json(401, refusal.message()),
            operation: None,
            json: true,
            retry_after_s: None,
            fault: None,
        }
    }

    /// HTTP 408 for a body not received within `limits.body_timeout_ms` (the connection is
    /// closed).
    pub fn body_timeout() -> SoapReply {
        SoapReply {
            status: 408,
            body: crate::front::gateway_json(408, "Request body not received in time."),
            operation: None,
            json: true,
            retry_after_s: None,
            fault: None,
        }
    }

    /// HTTP 429 for a caller over its rate: try again after `wait`.
    pub fn throttled(wait: Duration) -> SoapReply {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        SoapReply {
            status: 429,
            body: crate::front::gateway_json(
                429,
                &format!("Rate limit is exceeded. Try again in {secs} seconds."),
            ),
            operation: None,
            json: true,
            retry_after_s: Some(secs),
            fault: None,
        }
    }
}

/// Why a parsed request is not served.
enum Refusal {
    /// Its credentials, certificate or key are not the claimed PSP's: an in-band fault, nothing
    /// cached, only a summary journaled.
    Fault(NodeFault),
    /// Its subscription key is another broker's.
    Key,
    /// Its broker is over its rate.
    Throttled(Duration),
}

/// What the health endpoint reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub store: Result<(), StoreError>,
    pub store_stats: StoreStats,
    /// (notices, payments, activations in flight, receipts in delivery) in the engine.
    pub engine: (usize, usize, usize, usize),
    pub deadlines: usize,
}

impl Node {
    /// A node over `store`, reaching stations through `transport`, reading time from `clock`.
    /// Call [`Node::recover`] before serving.
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        transport: Arc<dyn EcTransport>,
        clock: Arc<dyn Clock>,
        tokens: TokenIssuer,
    ) -> Node {
        let now = clock.now_ms();
        let xml_limits = registry.config().node.xml_limits();
        let max_response_bytes = registry.config().outbound.max_response_bytes;
        let schedule = driver::Schedule::new(
            now,
            registry.config().receipts.per_station_concurrency,
            registry.timings(),
        );
        let shared = store.shared().is_some();
        let metrics = Arc::new(Metrics::new(registry.config()));
        Node {
            front: FrontDoor::new(registry.config()),
            store_failed_at: AtomicU64::new(0),
            incidents: AtomicU64::new(0),
            active: Mutex::new(ActiveVersion::unversioned(registry.config())),
            applying: tokio::sync::Mutex::new(()),
            registry: std::sync::RwLock::new(registry),
            engine: Mutex::new(Engine::with_stamps(tokens.stamp_base())),
            shared,
            store,
            ec: EcClient::new(transport, clock.clone(), xml_limits, max_response_bytes),
            clock,
            tokens,
            schedule: Mutex::new(schedule),
            wakeup: tokio::sync::Notify::new(),
            metrics,
            attempt_ended: tokio::sync::Notify::new(),
            cancellation: tokio::sync::Mutex::new(()),
        }
    }

    /// The node's counters and histograms (`/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The configured parties and timings. Every registry read goes through here: within a
    /// request, the snapshot it started with (see [`reconfig::SNAPSHOT`]); elsewhere, the
    /// running configuration.
    pub fn registry(&self) -> Arc<Registry> {
        reconfig::SNAPSHOT
            .try_with(Arc::clone)
            .unwrap_or_else(|_| self.running())
    }

    /// The front door: keys, limiters, refusal counters.
    pub fn front(&self) -> &FrontDoor {
        &self.front
    }

    /// The node's `now`.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The node's date (UTC), for the catalogue's validity dates.
    fn today(&self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp_millis(self.now() as i64)
            .unwrap_or_default()
            .date_naive()
    }

    /// The engine, locked. Never held across an await.
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the engine from the store: at start-up, and after a failed commit (the engine may
    /// then be ahead of the store; the store is the truth). Returns (payments waiting for their
    /// outcome, receipt copies to deliver). With a shared store the engine starts empty: the
    /// deadlines and receipts of this node's previous life are taken over like any dead node's
    /// ([`Node::take_over`]).
    pub async fn recover(&self) -> Result<(usize, usize), NodeFault> {
        if self.shared {
            // Whatever has waited long enough is taken over at once (later, every second).
            self.take_over()
                .await
                .map_err(|e| self.store_failed("takeover", e))?;
            return Ok((0, 0));
        }
        let (queued, counts) = self
            .rebuild_engine()
            .await
            .map_err(|e| self.store_failed("recovery", e))?;
        self.finish(queued).await?;
        Ok(counts)
    }

    /// A new engine holding what the store says is live: payments waiting for their outcome,
    /// every copy of each receipt still being delivered (settled ones too: a copy that failed
    /// for good keeps its payment PAID), and the payments those copies belong to (without them
    /// the last acknowledged copy could not mark its payment NOTIFIED). Returns the step
    /// re-arming the deadlines and re-queueing the deliveries, and (payments, copies to send).
    async fn rebuild_engine(&self) -> Result<(Queued, (usize, usize)), StoreError> {
        let paying = self.store.paying_payments().await?;
        let pending = self.store.recipients_in_delivery().await?;
        let owners = self.owners_of(&pending).await?;
        let to_deliver = pending
            .iter()
            .filter(|r| r.status == crate::engine::RecipientStatus::Pending)
            .count();
        let counts = (paying.len(), to_deliver);
        let mut engine = self.engine();
        let now = self.now();
        engine.clear();
        for owner in owners {
            engine.hydrate_payment(Some(owner), now);
        }
        let step = engine.recover(paying, pending, now);
        Ok((self.queue(engine, step), counts))
    }

    /// The payments (and notices) of receipts' copies.
    async fn owners_of(
        &self,
        copies: &[crate::engine::Recipient],
    ) -> Result<Vec<(crate::engine::Payment, crate::engine::Notice)>, StoreError> {
        let mut owners = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in copies {
            if seen.insert(&r.receipt_id)
                && let Some(owner) = self.store.load_payment(&r.receipt_id).await?
            {
                owners.push(owner);
            }
        }
        Ok(owners)
    }

    /// Queues a step's writes to the store while the engine that made the step is still locked,
    /// then unlocks it. The store applies commits in the order they are queued, so steps reach
    /// the disk in the order the engine made them. Queued after the unlock, two steps on the same
    /// records could be committed in the opposite order: an expiry made just before a late OK
    /// outcome, committed after it, left the notice FREE (and, until the receipt was delivered,
    /// the payment CANCELLED) beside the generated receipt, and a restart then read that.
    fn queue(&self, mut engine: MutexGuard<'_, Engine>, mut step: Step) -> Queued {
        let writes = std::mem::take(&mut step.writes);
        let records: Vec<Record> = if self.shared {
            writes.iter().filter_map(Write::record).collect()
        } else {
            Vec::new()
        };
        engine.writes_queued(&records);
        let commit = (!writes.is_empty()).then(|| self.store.commit(writes));
        drop(engine);
        Queued {
            commit,
            step,
            records,
        }
    }

    /// Runs an engine command at `now` and queues its writes (see [`Node::queue`]). `now` is
    /// read with the engine locked, so the steps' times follow the order they are made (and
    /// committed) in.
    fn run(&self, command: impl FnOnce(&mut Engine, Millis) -> Step) -> Queued {
        let mut engine = self.engine();
        let step = command(&mut engine, self.now());
        self.queue(engine, step)
    }

    /// Waits until a step's writes are committed, then schedules its deadlines and deliveries,
    /// and returns its reply. A commit that failed leaves the engine ahead of the store: alone on
    /// it, the node rebuilds the engine from the store; sharing it, it drops the records the step
    /// wrote (read again by the next command that needs them).
    async fn finish(&self, queued: Queued) -> Result<Option<Reply>, Failed> {
        let Queued {
            commit,
            step,
            records,
        } = queued;
        let Step {
            writes: _,
            reply,
            arm,
            disarm,
            deliver,
            reply_after_queued,
        } = step;
        let commit = match commit {
            Some(c) => Some(c),
            // A repeated answer acknowledges the commit of the step that cached it.
            None if reply_after_queued => Some(self.store.flush()),
            None => None,
        };
        if let Some(commit) = commit {
            let waited = std::time::Instant::now();
            let result = commit.await;
            self.metrics.commit_waited(waited.elapsed());
            if self.shared {
                let now = self.now();
                self.engine().writes_done(&records, result.is_ok(), now);
            }
            if let Err(e) = result {
                let failed = match e {
                    StoreError::Conflict(what) => {
                        tracing::debug!(%what, "commit lost a race: running the command again");
                        Failed::Conflict
                    }
                    e => Failed::Fault(self.store_failed("commit", e)),
                };
                if !self.shared {
                    tracing::error!(
                        "resynchronising the engine with the store after a failed commit"
                    );
                    // The schedules still hold what was armed: only the engine is rebuilt.
                    if let Err(e) = self.rebuild_engine().await {
                        self.store_failed("resynchronisation", e);
                    }
                }
                return Err(failed);
            }
        }
        self.schedule_effects(arm, disarm, deliver);
        Ok(reply)
    }

    /// Commits a step and returns its reply; a step without one (the engine lost track of the
    /// request after a resynchronisation) answers PPT_SYSTEM_ERROR. A commit that lost a race
    /// marks the request to be run again ([`Node::dispatch`]).
    async fn reply(&self, op: Operation, queued: Queued) -> Reply {
        match self.finish(queued).await {
            Ok(Some(r)) => r,
            Ok(None) => Reply::ko(
                op,
                &NodeFault::SystemError("request lost during a store recovery".into()),
                true,
            ),
            Err(Failed::Conflict) => self.conflicted(op),
            Err(Failed::Fault(f)) => Reply::ko(op, &f, true),
        }
    }

    /// Marks the request being dispatched to run again (a commit lost a race); the reply is
    /// only a placeholder, sent if the retries run out.
    fn conflicted(&self, op: Operation) -> Reply {
        let _ = CONFLICTED.try_with(|c| c.set(true));
        Reply::ko(op, &Failed::Conflict.into(), true)
    }

    /// Whether a commit of the request being dispatched lost a race (it runs again).
    fn lost_race(&self) -> bool {
        CONFLICTED.try_with(Cell::get).unwrap_or(false)
    }

    /// Handles one nodeForPsp request from a peer the front door knows nothing of (handed to
    /// the node in process).
    pub async fn handle_soap(
        &self,
        soap_action: Option<&str>,
        query: Option<&str>,
        body: &[u8],
        too_big: bool,
    ) -> SoapReply {
        self.handle_request(&Peer::default(), soap_action, query, body, too_big)
            .await
    }

    /// Handles one nodeForPsp request from `peer`: the HTTP layer's entry point. The request is
    /// authenticated ([`Node::admit`]) before anything of it is cached or journaled, and runs
    /// under one snapshot of the configuration.
    pub async fn handle_request(
        &self,
        peer: &Peer,
        soap_action: Option<&str>,
        query: Option<&str>,
        body: &[u8],
        too_big: bool,
    ) -> SoapReply {
        self.with_snapshot(self.serve(peer, soap_action, query, body, too_big))
            .await
    }

    async fn serve(
        &self,
        peer: &Peer,
        soap_action: Option<&str>,
        query: Option<&str>,
        body: &[u8],
        too_big: bool,
    ) -> SoapReply {
        let started = self.now();
        let registry = self.registry();
        let Some(op) = crate::codec::detect_operation(soap_action, query, body) else {
            tracing::warn!(bytes = body.len(), "request for no recognisable operation");
            return SoapReply::soap(
                500,
                soap_client_fault("unknown operation: no SOAPAction and no recognisable Body"),
                None,
            );
        };
        if op.interface() != crate::codec::Interface::NodeForPsp {
            return SoapReply::soap(
                500,
                soap_client_fault(&format!(
                    "{} is not a nodeForPsp operation",
                    op.soap_action()
                )),
                Some(op),
            );
        }
        // Whether the request's caller authenticated (its payload may be journaled) or not
        // (only a summary is, at a bounded pace: see `tell_refusal`).
        let (reply, keys, secrets, known) = if too_big {
            let limit = self.registry().config().node.max_body_bytes;
            let sniffed = self.sniff(body, peer);
            let why = format!("request body larger than {limit} bytes");
            let known = sniffed.is_some();
            let reply = self.syntax_fault(op, sniffed, why).await;
            (reply, Keys::default(), Secrets::unknown(), known)
        } else {
            let (read, secrets) = read_request(body, self.registry().config().node.xml_limits());
            let unreadable = async |why: String| {
                let sniffed = self.sniff(body, peer);
                let known = sniffed.is_some();
                (
                    self.syntax_fault(op, sniffed, why).await,
                    Keys::default(),
                    known,
                )
            };
            let (reply, keys, known) = match read {
                Err(v) => unreadable(v.to_string()).await,
                Ok(Body::Fault(_)) => unreadable("a SOAP Fault is not a request".into()).await,
                Ok(Body::Message(m)) if m.direction() != Direction::Request => {
                    unreadable(format!("'{}' is a response, not a request", m.root())).await
                }
                Ok(Body::Message(m)) if m.operation() != op && soap_action.is_some() => {
                    let why = format!(
                        "SOAPAction '{}' does not match the request element '{}'",
                        op.soap_action(),
                        m.root()
                    );
                    let known =
                        credentials(&m).is_some_and(|c| self.identify(&registry, c, peer).is_ok());
                    let reply = Reply::ko(op, &NodeFault::SoapActionErrata(why), true);
                    (reply, Keys::default(), known)
                }
                Ok(Body::Message(m)) => match credentials(&m) {
                    None => {
                        let (reply, keys) = not_served(op);
                        (reply, keys, false)
                    }
                    Some(cred) => match self.admit(&registry, op, cred, peer) {
                        Ok(caller) => {
                            let (reply, keys) = self.dispatch(m, caller).await;
                            (reply, keys, true)
                        }
                        Err(Refusal::Fault(fault)) => {
                            let extended = registry
                                .psp_broker(cred.id_broker_psp)
                                .is_none_or(|b| b.extended_fault_bean);
                            return SoapReply::answer(Reply::ko(op, &fault, extended), op);
                        }
                        Err(Refusal::Key) => {
                            return SoapReply::unauthorized(KeyRefusal::Invalid);
                        }
                        Err(Refusal::Throttled(wait)) => {
                            return self.over_rate(Some(op), wait);
                        }
                    },
                },
            };
            (reply, keys, secrets, known)
        };
        if !known {
            let code = reply.fault.map_or("OK", |f| f.as_str());
            self.tell_refusal(Some(op), Reason::Unauthenticated, code, None, peer);
        } else if self.registry().config().journal.enabled {
            let rows = rows::psp_exchange(op, body, &secrets, &reply, &keys, started, self.now());
            self.store.journal(rows);
        }
        SoapReply::answer(reply, op)
    }

    /// The answer to a request over its rate: HTTP 429, or with `limits.over_rate = "fault"`
    /// the operation's KO with PPT_SUPERAMENTOSOGLIA when the operation is known.
    pub fn over_rate(&self, op: Option<Operation>, wait: Duration) -> SoapReply {
        match op {
            Some(op)
                if self.registry().config().limits.over_rate == OverRate::Fault
                    && op.interface() == crate::codec::Interface::NodeForPsp =>
            {
                SoapReply::answer(Reply::ko(op, &NodeFault::SuperamentoSoglia, true), op)
            }
            _ => SoapReply::throttled(wait),
        }
    }

    /// Authenticates a parsed request before anything of it is cached, journaled or committed:
    /// the registry's checks (PSP, broker, channel, password, their relationship, in the
    /// official order), then the peer's client certificate and subscription key, which must be
    /// the claimed broker's; then the broker's rate. A refusal is counted and told
    /// ([`Node::tell_refusal`]).
    fn admit<'r>(
        &self,
        registry: &'r Registry,
        op: Operation,
        cred: PspCredentials<'_>,
        peer: &Peer,
    ) -> Result<Caller<'r>, Refusal> {
        let refused = |code: &str, reason: Reason| {
            self.tell_refusal(
                Some(op),
                reason,
                code,
                Some((cred.id_psp, cred.id_channel)),
                peer,
            );
        };
        let caller = match self.identify(registry, cred, peer) {
            Ok(caller) => caller,
            Err((fault, reason)) => {
                refused(fault.code(), reason);
                return Err(match reason {
                    Reason::SubscriptionKey => Refusal::Key,
                    _ => Refusal::Fault(fault),
                });
            }
        };
        if let Err(wait) = self.front.rates.check_broker(&caller.broker.id) {
            refused("HTTP_429", Reason::BrokerRate);
            return Err(Refusal::Throttled(wait));
        }
        Ok(caller)
    }

    /// The caller a request's credentials and its peer name, or why they do not.
    fn identify<'r>(
        &self,
        registry: &'r Registry,
        cred: PspCredentials<'_>,
        peer: &Peer,
    ) -> Result<Caller<'r>, (NodeFault, Reason)> {
        let caller = registry
            .authenticate(cred)
            .map_err(|f| (f, Reason::Authentication))?;
        if !certs::allows(caller.broker, peer.certificate.as_ref()) {
            return Err((NodeFault::Autenticazione, Reason::Certificate));
        }
        if peer
            .key_broker
            .as_ref()
            .is_some_and(|b| *b != caller.broker.id)
        {
            return Err((NodeFault::Autenticazione, Reason::SubscriptionKey));
        }
        Ok(caller)
    }

    /// Counts a refusal of the front door, and, at a bounded pace (see
    /// [`crate::front::refusals`]), logs it with the peer's address and journals a summary of
    /// it (no payload: what was claimed, the answer, the address, how many went untold).
    /// Refusals for rates and timeouts are logged only.
    pub fn tell_refusal(
        &self,
        op: Option<Operation>,
        reason: Reason,
        code: &str,
        claimed: Option<(&str, &str)>,
        peer: &Peer,
    ) {
        let Some(untold) = self.front.refusals.record(reason, peer.addr) else {
            return;
        };
        let address = peer
            .addr
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let (psp, channel) = claimed.unzip();
        tracing::warn!(
            %address,
            reason = reason.as_str(),
            code,
            operation = op.map(|o| o.soap_action()),
            psp,
            channel,
            untold,
            "request refused at the front door"
        );
        let journaled = matches!(
            reason,
            Reason::Authentication
                | Reason::Certificate
                | Reason::SubscriptionKey
                | Reason::Unauthenticated
        );
        if journaled && self.registry().config().journal.enabled {
            let detail = format!(
                "refused ({}) from {address}; {untold} more refusals from this address since the last one journaled",
                reason.as_str()
            );
            let psp = psp.and_then(|p| Text35::new(p).ok());
            let channel = channel.and_then(|c| Text35::new(c).ok());
            self.store.journal(rows::refusal(
                self.now(),
                op,
                psp.as_deref(),
                channel.as_deref(),
                code,
                &detail,
            ));
        }
    }

    /// Runs an authenticated request; if one of its commits lost a race to another node, runs it again (on the
    /// records as the winner left them), a few times at most.
    async fn dispatch(&self, m: AnyMessage, caller: Caller<'_>) -> (Reply, Keys) {
        let mut attempt = 0;
        loop {
            let (answer, conflicted) = CONFLICTED
                .scope(Cell::new(false), async {
                    let answer = self.dispatch_once(&m, caller).await;
                    (answer, CONFLICTED.with(Cell::get))
                })
                .await;
            if !conflicted || attempt == CONFLICT_RETRIES {
                if conflicted {
                    tracing::warn!(
                        operation = m.operation().soap_action(),
                        "request kept losing races: answered PPT_SYSTEM_ERROR"
                    );
                }
                return answer;
            }
            attempt += 1;
        }
    }

    async fn dispatch_once(&self, m: &AnyMessage, caller: Caller<'_>) -> (Reply, Keys) {
        match m {
            AnyMessage::VerifyPaymentNoticeReq(r) => self.verify(r, caller).await,
            AnyMessage::ActivatePaymentNoticeReq(r) => self.activate_v1(r, caller).await,
            AnyMessage::ActivatePaymentNoticeV2Request(r) => self.activate_v2(r, caller).await,
            AnyMessage::SendPaymentOutcomeReq(r) => self.outcome_v1(r).await,
            AnyMessage::SendPaymentOutcomeV2Request(r) => self.outcome_v2(r).await,
            AnyMessage::DemandPaymentNoticeRequest(r) => self.demand(r).await,
            AnyMessage::NodoChiediCatalogoServiziV2Request(r) => self.catalogue(r),
            other => not_served(other.operation()),
        }
    }

    /// The answer to a request that cannot be read. A request whose key is cached gets
    /// PPT_ERRORE_IDEMPOTENZA instead: the official node consults the cache before the schema,
    /// and never caches syntax failures (official BDD test `sendPaymentOutcome_IDMP_SPO_06_02`:
    /// a cached key re-sent with a value outside the XSD gets PPT_ERRORE_IDEMPOTENZA). Only
    /// for a caller whose credentials, read leniently, authenticate: to anyone else the cache
    /// does not say which keys it holds.
    async fn syntax_fault(&self, op: Operation, sniffed: Option<Sniffed>, why: String) -> Reply {
        tracing::info!(operation = op.soap_action(), reason = %why, "request refused: PPT_SINTASSI_EXTRAXSD");
        if let Some(Sniffed {
            psp,
            key: Some(key),
        }) = sniffed
            && self.registry().config().node.use_idempotency
        {
            let key = IdemKey {
                psp,
                key,
                primitive: op.soap_action(),
            };
            // A store that cannot answer leaves the syntax fault as the answer.
            let stored = match self.store.load_idempotency(&key).await {
                Ok(stored) => stored,
                Err(e) => {
                    self.store_failed("idempotency lookup", e);
                    None
                }
            };
            let ctx = IdemCtx { key, hash: [0; 32] };
            if self.engine().check_idempotency(&ctx, stored, self.now()) != IdemCheck::Fresh {
                return Reply::ko(op, &NodeFault::ErroreIdempotenza, true);
            }
        }
        Reply::ko(op, &NodeFault::SintassiExtraXsd(why), true)
    }

    /// The request context, with its idempotency scope when it has a key and idempotency is on.
    fn request_ctx<M: crate::codec::Message>(
        &self,
        msg: &M,
        psp: PspRef,
        key: Option<&IdempotencyKey>,
    ) -> RequestCtx {
        let extended = self
            .registry()
            .psp_broker(&psp.id_broker_psp)
            .is_none_or(|b| b.extended_fault_bean);
        let idem = key
            .filter(|_| self.registry().config().node.use_idempotency)
            .map(|k| IdemCtx {
                key: IdemKey {
                    psp: psp.id_psp.to_string(),
                    key: k.to_string(),
                    primitive: M::OPERATION.soap_action(),
                },
                hash: request_hash(msg),
            });
        RequestCtx {
            operation: M::OPERATION,
            psp,
            extended_faults: extended,
            idem,
        }
    }

    /// Consults the idempotency cache: `Some(reply)` ends the request there.
    async fn idempotent_reply(&self, ctx: &RequestCtx) -> Option<Reply> {
        let idem = ctx.idem.as_ref()?;
        let stored = match self.store.load_idempotency(&idem.key).await {
            Ok(stored) => stored,
            Err(e) => {
                let fault = self.store_failed("idempotency lookup", e);
                return Some(Reply::ko(ctx.operation, &fault, ctx.extended_faults));
            }
        };
        let check = {
            let engine = self.engine();
            match engine.check_idempotency(idem, stored, self.now()) {
                IdemCheck::Mismatch => return engine.idempotency_mismatch(ctx).reply,
                check => check,
            }
        };
        let IdemCheck::Replay { reply, unconfirmed } = check else {
            return None;
        };
        // The answer acknowledges the change its first request made: durable, or queued before
        // this flush.
        if unconfirmed && let Err(e) = self.store.flush().await {
            let fault = self.store_failed("flush before a replay", e);
            return Some(Reply::ko(ctx.operation, &fault, ctx.extended_faults));
        }
        Some(reply)
    }

    /// Refuses an authenticated request with a fault (cached under its key) and returns the
    /// reply.
    async fn refuse(&self, ctx: &RequestCtx, fault: NodeFault) -> Reply {
        tracing::info!(operation = ctx.operation.soap_action(), psp = %ctx.psp.id_psp, fault = fault.code(), "request refused");
        let queued = self.run(|e, now| e.refuse(ctx, &fault, self.registry().timings(), now));
        self.reply(ctx.operation, queued).await
    }

    /// Brings a notice (and its current payment) into the engine: if it is not there, or, with
    /// a shared store, always (another node may have changed it).
    async fn hydrate_notice(&self, key: &NoticeKey) -> Result<(), NodeFault> {
        if !self.shared && self.engine().knows_notice(key) {
            return Ok(());
        }
        crate::failpoints::failpoint_return!(
            "store.load_notice",
            Err(self.store_failed(
                "notice lookup",
                StoreError::failed("injected failure (failpoint store.load_notice)"),
            ))
        );
        let since = self.engine().epoch();
        let stored = self
            .store
            .load_notice(key)
            .await
            .map_err(|e| self.store_failed("notice lookup", e))?;
        let mut engine = self.engine();
        let now = self.now();
        if self.shared {
            engine.refresh_notice(key, stored, now, since);
        } else {
            engine.hydrate_notice(key, stored, now);
        }
        Ok(())
    }

    /// Brings a payment (and its notice) into the engine, as [`Node::hydrate_notice`] does.
    async fn hydrate_payment(&self, token: &PaymentToken) -> Result<(), NodeFault> {
        if !self.shared && self.engine().knows_payment(token) {
            return Ok(());
        }
        let since = self.engine().epoch();
        let stored = self
            .store
            .load_payment(token)
            .await
            .map_err(|e| self.store_failed("payment lookup", e))?;
        let mut engine = self.engine();
        let now = self.now();
        if self.shared {
            engine.refresh_payment(token, stored, now, since);
        } else {
            engine.hydrate_payment(stored, now);
        }
        Ok(())
    }

    /// A deadline passed (the driver polled it, or the cancellation job): the engine cancels
    /// the payment if it is still waiting for its outcome. Returns whether it did. With a shared
    /// store another node may cancel it (or take the outcome) first: the command then runs again
    /// on what it wrote, and does nothing.
    pub async fn expire(&self, token: &PaymentToken) -> bool {
        for _ in 0..=CONFLICT_RETRIES {
            if let Err(f) = self.hydrate_payment(token).await {
                tracing::error!(%token, fault = %f, "cannot load an expiring payment");
                return false;
            }
            let queued = self.run(|e, now| e.deadline_fired(token, now));
            let cancelled = queued.commit.is_some();
            match self.finish(queued).await {
                Ok(_) => return cancelled,
                Err(Failed::Conflict) => continue,
                Err(Failed::Fault(f)) => {
                    tracing::error!(%token, fault = %f, "expiry not committed");
                    return false;
                }
            }
        }
        false
    }

    /// Counts an exchange with a station (`/metrics`) and journals it (the journal writer
    /// writes it off the payment path).
    fn journal_ec(
        &self,
        op: Operation,
        station: &str,
        keys: &Keys,
        ex: &Exchange,
        result: Result<(), &NodeFault>,
    ) {
        self.metrics.ec_call(
            station,
            op,
            result.err().map(NodeFault::fault_code),
            ex.response.is_some(),
            ex.elapsed_ms,
            ex.started_at + ex.elapsed_ms,
        );
        if self.registry().config().journal.enabled {
            self.store
                .journal(rows::ec_exchange(op, station, keys, ex, result));
        }
    }

    /// Queues a receipt's copies again (all of them, or one station's): the admin re-send.
    /// The journal rows of the re-sent copies say who asked (`by`), with the payment's notice.
    pub async fn resend(
        &self,
        receipt_id: &str,
        station: Option<&str>,
        by: &str,
    ) -> Result<usize, NodeFault> {
        let unknown = || NodeFault::Semantica(format!("no receipt {receipt_id}"));
        let receipt_id = PaymentToken::new(receipt_id).map_err(|_| unknown())?;
        if let Some(shared) = self.store.shared() {
            shared
                .take_receipt(&receipt_id, self.now())
                .await
                .map_err(|e| self.store_failed("receipt takeover", e))?;
        }
        let stored = self
            .store
            .load_recipients(&receipt_id)
            .await
            .map_err(|e| self.store_failed("recipients lookup", e))?;
        if stored.is_empty() {
            return Err(unknown());
        }
        if let Some(s) = station
            && !stored.iter().any(|r| r.station.as_str() == s)
        {
            return Err(NodeFault::Semantica(format!(
                "receipt {receipt_id} has no recipient {s}"
            )));
        }
        self.hydrate_payment(&receipt_id).await?;
        let queued = self.run(|e, now| {
            let notice = e.payment(&receipt_id).map(|p| p.notice.clone());
            let mut step = e.resend(&receipt_id, stored, station, now);
            for w in &mut step.writes {
                if let crate::engine::Write::Event(event) = w {
                    event.detail = Some(format!("re-sent by {by}"));
                    event.notice = event.notice.take().or_else(|| notice.clone());
                }
            }
            step
        });
        let copies = queued.step.deliver.len();
        self.finish(queued).await?;
        self.metrics.resent(copies);
        Ok(copies)
    }

    /// Forgets finished records the engine no longer needs in memory (see [`Engine::sweep`]).
    pub fn sweep(&self) {
        let mut engine = self.engine();
        engine.sweep(self.now());
    }

    /// Deletes what the retention periods let go: journal rows, expired idempotency entries,
    /// finished payments with their receipts (batch after batch, other commits in between).
    pub async fn maintenance(&self) -> Result<usize, StoreError> {
        const DAY_MS: u64 = 86_400_000;
        let now = self.now();
        let registry = self.registry();
        let cfg = registry.config();
        let journal = u64::from(cfg.journal.retention_days) * DAY_MS;
        let finished = match cfg.node.retention_days {
            0 => 0,
            days => now.saturating_sub(u64::from(days) * DAY_MS),
        };
        let r = crate::store::Retention {
            now,
            journal_before: now.saturating_sub(journal),
            finished_before: finished,
        };
        let mut deleted = 0;
        loop {
            let n = self.store.maintenance(r).await?;
            deleted += n;
            if n < crate::store::schema::RETENTION_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// One page of the journal.
    pub async fn journal_page(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
        self.store.query_journal(q).await
    }

    /// A notice's story: its attempts, their payments and receipt copies, the journal rows.
    pub async fn notice_story(&self, key: &NoticeKey) -> Result<serde_json::Value, StoreError> {
        let rows = self.notice_rows(key).await?;
        let mut payments = Vec::new();
        for p in self.store.payments_of_notice(key).await? {
            let recipients = self.store.load_recipients(&p.token).await?;
            payments.push((p, recipients));
        }
        let history = self.store.status_history(key).await?;
        Ok(crate::journal::story::notice_story(
            key, rows, &payments, &history,
        ))
    }

    /// A notice's journal rows, in the order things happened.
    pub async fn notice_rows(&self, key: &NoticeKey) -> Result<Vec<JournalRow>, StoreError> {
        let mut rows = Vec::new();
        let mut q = JournalQuery {
            notice_number: Some(key.notice_number.to_string()),
            limit: 10_000,
            ..JournalQuery::default()
        };
        loop {
            let page = self.store.query_journal(&q).await?;
            let full = page.len() == q.limit;
            q.after = page.last().map(crate::journal::Cursor::of);
            rows.extend(page);
            if !full {
                break;
            }
        }
        Ok(crate::journal::story::notice_rows(key, rows))
    }

    /// Receipt copies in a status, newest first.
    pub async fn recipients_by_status(
        &self,
        status: crate::engine::RecipientStatus,
        limit: usize,
    ) -> Result<Vec<crate::engine::Recipient>, StoreError> {
        self.store.recipients_by_status(status, limit).await
    }

    /// How many receipt copies are FAILED.
    pub async fn failed_recipients(&self) -> Result<u64, StoreError> {
        self.store.failed_recipients().await
    }

    /// The Prometheus text exposition of the node's metrics (`GET /metrics`).
    pub async fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        // Read first: the engine's and the schedules' locks are not held across a store read.
        let receipt_copies_failed = self.store.failed_recipients().await.ok();
        let (_, payments_in_memory, activations_in_flight, _) = self.engine().sizes();
        let (deadlines_pending, (receipt_copies_pending, receipt_copies_in_flight)) = {
            let s = self.schedule();
            (s.pending_deadlines(), s.deliveries())
        };
        let stats = self.store.stats();
        let gauges = crate::metrics::Gauges {
            now: self.now(),
            deadlines_pending,
            receipt_copies_pending,
            receipt_copies_in_flight,
            receipt_copies_failed,
            payments_in_memory,
            activations_in_flight,
            store_transactions: stats.transactions,
            store_commits: stats.commit_jobs,
            config_version: self.active_version().version,
        };
        self.metrics.render(gauges, self.store.metrics())
    }

    /// Liveness and a few numbers. The store is down when it does not answer now, or when a
    /// commit or a read failed within [`STORE_FAILURE_WINDOW`].
    pub async fn health(&self) -> Health {
        let failed_at = self.store_failed_at.load(Ordering::Relaxed);
        let store = self.store.health().await.and_then(|()| {
            let ago = self.now().saturating_sub(failed_at);
            if failed_at != 0 && ago < STORE_FAILURE_WINDOW.as_millis() as u64 {
                Err(StoreError::failed(format!(
                    "a commit or a read failed {ago} ms ago"
                )))
            } else {
                Ok(())
            }
        });
        Health {
            store,
            store_stats: self.store.stats(),
            engine: self.engine().sizes(),
            deadlines: self.schedule().pending_deadlines(),
        }
    }

    /// A failed commit or read of the store, while doing `what`: remembered for the health
    /// endpoint, logged and journaled with its detail under an incident number, and answered
    /// with PPT_SYSTEM_ERROR naming only that number (SQL errors and paths are for the
    /// operator, not for a PSP).
    fn store_failed(&self, what: &str, e: StoreError) -> NodeFault {
        let now = self.now();
        self.store_failed_at.store(now.max(1), Ordering::Relaxed);
        let incident = self.incidents.fetch_add(1, Ordering::Relaxed) + 1;
        let reference = format!("{now}-{incident}");
        tracing::error!(incident = %reference, error = %e, "store failure during {what}");
        if self.registry().config().journal.enabled {
            let detail = format!("incident {reference}: {what}: {e}");
            self.store.journal(rows::internal_error(now, &detail));
        }
        NodeFault::SystemError(format!("Errore interno del nodo (incidente {reference})"))
    }

    /// What a request that cannot be parsed says of its caller, read leniently: `None` unless
    /// its credentials (read leniently too) authenticate.
    fn sniff(&self, body: &[u8], peer: &Peer) -> Option<Sniffed> {
        let text = std::str::from_utf8(body).ok()?;
        let field = |name| crate::codec::lenient::first_text(text, name);
        let password = Password::new(field("password")?).ok()?;
        let cred = PspCredentials {
            id_psp: field("idPSP")?,
            id_broker_psp: field("idBrokerPSP")?,
            id_channel: field("idChannel")?,
            password: &password,
        };
        self.identify(&self.registry(), cred, peer).ok()?;
        Some(Sniffed {
            psp: cred.id_psp.to_string(),
            key: field("idempotencyKey").map(str::to_string),
        })
    }
}

/// The authenticated caller of a request that cannot be parsed, and its idempotency key.
struct Sniffed {
    psp: String,
    key: Option<String>,
}

/// The credentials of a nodeForPsp request the node serves (`None` for the others).
fn credentials(m: &AnyMessage) -> Option<PspCredentials<'_>> {
    let cred = |id_psp, id_broker_psp, id_channel, password| PspCredentials {
        id_psp,
        id_broker_psp,
        id_channel,
        password,
    };
    Some(match m {
        AnyMessage::VerifyPaymentNoticeReq(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::ActivatePaymentNoticeReq(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::ActivatePaymentNoticeV2Request(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::SendPaymentOutcomeReq(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::SendPaymentOutcomeV2Request(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::DemandPaymentNoticeRequest(r) => {
            cred(&r.id_psp, &r.id_broker_psp, &r.id_channel, &r.password)
        }
        AnyMessage::NodoChiediCatalogoServiziV2Request(r) => cred(
            &r.identificativo_psp,
            &r.identificativo_intermediario_psp,
            &r.identificativo_canale,
            &r.password,
        ),
        _ => return None,
    })
}

/// The answer to a nodeForPsp request the node does not serve.
fn not_served(op: Operation) -> (Reply, Keys) {
    let fault = NodeFault::Semantica(format!("{} is not served by this node", op.soap_action()));
    (Reply::ko(op, &fault, true), Keys::default())
}

/// A SOAP 1.1 Client fault, for requests whose operation cannot be recognised at all.
fn soap_client_fault(why: &str) -> String {
    let mut w = crate::codec::xml::XmlWriter::default();
    w.raw("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>");
    w.text(why);
    w.raw("</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    w.into_string()
}

/// The PSP identity of an authenticated request.
fn psp_ref(id_psp: &Text35, broker: &Text35, channel: &Text35) -> PspRef {
    PspRef {
        id_psp: id_psp.clone(),
        id_broker_psp: broker.clone(),
        id_channel: channel.clone(),
    }
}
