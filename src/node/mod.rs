//! The node: the driver around the engine. It reads requests (codec), runs the registry checks,
//! hydrates the engine from the store, calls the ECs, commits each step before answering, and
//! schedules deadlines and receipt deliveries. One file per primitive.

mod activate;
mod catalogue;
mod demand;
mod outcome;
mod verify;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec::{AnyMessage, Body, Direction, Operation, Secrets, ko_envelope, read_request};
use crate::deadlines::Deadlines;
use crate::delivery::Delivery;
use crate::ec_client::{EcClient, Exchange};
use crate::engine::{
    Engine, IdemCheck, IdemCtx, IdemKey, Millis, NoticeKey, PspRef, RequestCtx, Step, request_hash,
};
use crate::fault::NodeFault;
use crate::journal::segment::{RowRef, Rows};
use crate::journal::{Category, NODE, Subtype};
use crate::registry::{Caller, PspCredentials, Registry};
use crate::store::{Commit, Store};

/// The node's shared state.
pub struct Node {
    pub registry: Arc<Registry>,
    engine: Mutex<Engine>,
    pub store: Arc<dyn Store>,
    pub ec: EcClient,
    pub deadlines: Deadlines,
    pub delivery: Delivery,
}

/// An engine step whose writes are already queued to the store (see [`Node::queue`]).
pub(crate) struct Queued {
    commit: Option<Commit>,
    /// The step, its writes taken.
    step: Step,
}

/// The answer to one SOAP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapReply {
    /// 200 for every pagoPA answer (faults travel in-band); 500 only for a SOAP Fault when not
    /// even the operation could be recognised.
    pub status: u16,
    pub body: String,
    pub operation: Option<Operation>,
}

/// What the journal needs to know about a request: its payment keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub fiscal_code: Option<String>,
    pub notice_number: Option<String>,
    pub token: Option<String>,
    pub psp: Option<String>,
    pub channel: Option<String>,
    pub station: Option<String>,
}

impl Keys {
    /// The journal fields the keys fill: EC, notice, IUV, token, PSP, channel, station.
    fn row(&self) -> RowRef<'_> {
        let notice_number = self.notice_number.as_deref();
        RowRef {
            fiscal_code: self.fiscal_code.as_deref(),
            notice_number,
            // Keys come from validated requests; a notice number that is not one has no IUV.
            iuv: notice_number.and_then(|n| {
                let iuv_len = crate::codec::types::NoticeNumber::new(n).ok()?.iuv().len();
                n.get(n.len() - iuv_len..)
            }),
            token: self.token.as_deref(),
            psp: self.psp.as_deref(),
            channel: self.channel.as_deref(),
            station: self.station.as_deref(),
            ..RowRef::default()
        }
    }

    fn psp(id_psp: &str, id_channel: &str) -> Keys {
        Keys {
            psp: Some(id_psp.to_string()),
            channel: Some(id_channel.to_string()),
            ..Keys::default()
        }
    }

    fn notice(mut self, key: &NoticeKey) -> Keys {
        self.fiscal_code = Some(key.fiscal_code.to_string());
        self.notice_number = Some(key.notice_number.to_string());
        self
    }
}

/// A token the node issues: 32 lowercase hex digits (fits `stPaymentToken`'s 35 characters):
/// the issuing millisecond (48 bits) then 80 random bits. Time-ordered tokens keep the store's
/// inserts at the end of its indexes (few pages touched per commit); 80 random bits keep them
/// unguessable and unique.
pub fn new_token() -> crate::codec::types::PaymentToken {
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let n = (u128::from(crate::clock::now_ms()) << 80) | random;
    crate::codec::types::PaymentToken::new(format!("{n:032x}")).expect("32 hex digits")
}

impl Node {
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        ec: EcClient,
        deadlines: Deadlines,
        delivery: Delivery,
    ) -> Node {
        Node {
            registry,
            engine: Mutex::new(Engine::new()),
            store,
            ec,
            deadlines,
            delivery,
        }
    }

    /// The engine, locked. Never held across an await.
    pub(crate) fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the engine from the store: at start-up, and after a failed commit (the engine may
    /// then be ahead of the store; the store is the truth).
    pub async fn recover(&self) -> Result<(usize, usize), NodeFault> {
        let (queued, counts) = self.rebuild_engine().map_err(system)?;
        self.finish(queued).await?;
        Ok(counts)
    }

    /// A new engine holding what the store says is live: payments waiting for their outcome,
    /// every copy of each receipt still being delivered (settled ones too: a copy that failed
    /// for good keeps its payment PAID), and the payments those copies belong to (without them
    /// the last acknowledged copy could not mark its payment NOTIFIED). Returns the step
    /// re-arming the deadlines and re-queueing the deliveries, and (payments, copies to send).
    fn rebuild_engine(&self) -> Result<(Queued, (usize, usize)), crate::store::StoreError> {
        let paying = self.store.paying_payments()?;
        let pending = self.store.recipients_in_delivery()?;
        let mut owners = Vec::new();
        {
            let mut seen = std::collections::HashSet::new();
            for r in &pending {
                if seen.insert(r.receipt_id.as_str())
                    && let Some(owner) = self.store.load_payment(&r.receipt_id)?
                {
                    owners.push(owner);
                }
            }
        }
        let to_deliver = pending
            .iter()
            .filter(|r| r.status == crate::engine::RecipientStatus::Pending)
            .count();
        let counts = (paying.len(), to_deliver);
        let now = crate::clock::now_ms();
        let mut engine = self.engine();
        *engine = Engine::new();
        for owner in owners {
            engine.hydrate_payment(Some(owner), now);
        }
        let step = engine.recover(paying, pending, now);
        Ok((self.queue(engine, step), counts))
    }

    /// Queues a step's writes to the store while the engine that made the step is still locked,
    /// then unlocks it. The store applies commits in the order they are queued, so steps reach
    /// the disk in the order the engine made them. Queued after the unlock, two steps on the same
    /// records could be committed in the opposite order: an expiry made just before a late OK
    /// outcome, committed after it, left the notice FREE (and, until the receipt was delivered,
    /// the payment CANCELLED) beside the generated receipt, and a restart then read that.
    pub(crate) fn queue(&self, engine: MutexGuard<'_, Engine>, mut step: Step) -> Queued {
        let writes = std::mem::take(&mut step.writes);
        let commit = (!writes.is_empty()).then(|| self.store.commit(writes));
        drop(engine);
        Queued { commit, step }
    }

    /// Runs an engine command and queues its writes (see [`Node::queue`]).
    pub(crate) fn run(&self, command: impl FnOnce(&mut Engine) -> Step) -> Queued {
        let mut engine = self.engine();
        let step = command(&mut engine);
        self.queue(engine, step)
    }

    /// Waits until a step's writes are committed, then schedules its deadlines and deliveries,
    /// and returns its reply.
    pub(crate) async fn finish(&self, queued: Queued) -> Result<Option<String>, NodeFault> {
        let Queued { commit, step } = queued;
        let Step {
            writes: _,
            reply,
            arm,
            disarm,
            deliver,
        } = step;
        if let Some(commit) = commit
            && let Err(e) = commit.await
        {
            tracing::error!(error = %e, "commit failed: resynchronising the engine with the store");
            if let Err(e) = self.rebuild_engine() {
                tracing::error!(error = %e, "the store cannot be read either");
            }
            return Err(system(e));
        }
        for t in disarm {
            self.deadlines.disarm(&t);
        }
        for (t, at) in arm {
            self.deadlines.arm(&t, at);
        }
        for (k, at) in deliver {
            self.delivery.schedule(k, at);
        }
        Ok(reply)
    }

    /// Commits a step and returns its reply; a step without one (the engine lost track of the
    /// request after a resynchronisation) answers PPT_SYSTEM_ERROR.
    async fn reply(&self, op: Operation, queued: Queued) -> String {
        match self.finish(queued).await {
            Ok(Some(r)) => r,
            Ok(None) => ko_envelope(
                op,
                NodeFault::SystemError("request lost during a store recovery".into()).to_bean(true),
            ),
            Err(f) => ko_envelope(op, f.to_bean(true)),
        }
    }

    /// Handles one nodeForPsp request: the HTTP layer's only entry point.
    pub async fn handle_soap(
        &self,
        soap_action: Option<&str>,
        query: Option<&str>,
        body: &[u8],
        too_big: bool,
    ) -> SoapReply {
        let started = crate::clock::now_ms();
        let Some(op) = crate::codec::detect_operation(soap_action, query, body) else {
            tracing::warn!(bytes = body.len(), "request for no recognisable operation");
            return SoapReply {
                status: 500,
                body: soap_client_fault(
                    "unknown operation: no SOAPAction and no recognisable Body",
                ),
                operation: None,
            };
        };
        if op.interface() != crate::codec::Interface::NodeForPsp {
            return SoapReply {
                status: 500,
                body: soap_client_fault(&format!(
                    "{} is not a nodeForPsp operation",
                    op.soap_action()
                )),
                operation: Some(op),
            };
        }
        let (reply, keys, secrets) = if too_big {
            let limit = self.registry.config().node.max_body_bytes;
            (
                self.syntax_fault(op, body, format!("request body larger than {limit} bytes")),
                Keys::default(),
                Secrets::unknown(),
            )
        } else {
            let (read, secrets) = read_request(body, self.registry.config().node.xml_limits());
            let (reply, keys) = match read {
                Err(v) => (self.syntax_fault(op, body, v.to_string()), Keys::default()),
                Ok(Body::Fault(_)) => (
                    self.syntax_fault(op, body, "a SOAP Fault is not a request".into()),
                    Keys::default(),
                ),
                Ok(Body::Message(m)) if m.direction() != Direction::Request => (
                    self.syntax_fault(
                        op,
                        body,
                        format!("'{}' is a response, not a request", m.root()),
                    ),
                    Keys::default(),
                ),
                Ok(Body::Message(m)) if m.operation() != op && soap_action.is_some() => {
                    let why = format!(
                        "SOAPAction '{}' does not match the request element '{}'",
                        op.soap_action(),
                        m.root()
                    );
                    (
                        ko_envelope(op, NodeFault::SoapActionErrata(why).to_bean(true)),
                        Keys::default(),
                    )
                }
                Ok(Body::Message(m)) => self.dispatch(m).await,
            };
            (reply, keys, secrets)
        };
        self.journal_psp(op, body, &secrets, &reply, &keys, started);
        SoapReply {
            status: 200,
            body: reply,
            operation: Some(op),
        }
    }

    async fn dispatch(&self, m: AnyMessage) -> (String, Keys) {
        match m {
            AnyMessage::VerifyPaymentNoticeReq(r) => self.verify(r).await,
            AnyMessage::ActivatePaymentNoticeReq(r) => self.activate_v1(r).await,
            AnyMessage::ActivatePaymentNoticeV2Request(r) => self.activate_v2(r).await,
            AnyMessage::SendPaymentOutcomeReq(r) => self.outcome_v1(r).await,
            AnyMessage::SendPaymentOutcomeV2Request(r) => self.outcome_v2(r).await,
            AnyMessage::DemandPaymentNoticeRequest(r) => self.demand(r).await,
            AnyMessage::NodoChiediCatalogoServiziV2Request(r) => self.catalogue(r),
            other => {
                let op = other.operation();
                let fault = NodeFault::Semantica(format!(
                    "{} is not served by this node",
                    op.soap_action()
                ));
                (ko_envelope(op, fault.to_bean(true)), Keys::default())
            }
        }
    }

    /// The answer to a request that cannot be read. A request whose key is cached gets
    /// PPT_ERRORE_IDEMPOTENZA instead (BEHAVIOUR.md Part A §4.4: the cache is consulted before
    /// the schema; syntax failures are never cached).
    fn syntax_fault(&self, op: Operation, body: &[u8], why: String) -> String {
        tracing::info!(operation = op.soap_action(), reason = %why, "request refused: PPT_SINTASSI_EXTRAXSD");
        if let Some((psp, key)) = sniff_idempotency(body)
            && self.registry.config().node.use_idempotency
        {
            let key = IdemKey {
                psp,
                key,
                primitive: op.soap_action(),
            };
            let stored = self.store.load_idempotency(&key).ok().flatten();
            let ctx = IdemCtx { key, hash: [0; 32] };
            if self
                .engine()
                .check_idempotency(&ctx, stored, crate::clock::now_ms())
                != IdemCheck::Fresh
            {
                return ko_envelope(op, NodeFault::ErroreIdempotenza.to_bean(true));
            }
        }
        ko_envelope(op, NodeFault::SintassiExtraXsd(why).to_bean(true))
    }

    /// The request context, with its idempotency scope when it has a key and idempotency is on.
    fn request_ctx<M: crate::codec::Message>(
        &self,
        msg: &M,
        psp: PspRef,
        key: Option<&str>,
    ) -> RequestCtx {
        let extended = self
            .registry
            .psp_broker(&psp.id_broker_psp)
            .is_none_or(|b| b.extended_fault_bean);
        let idem = key
            .filter(|_| self.registry.config().node.use_idempotency)
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
    fn idempotent_reply(&self, ctx: &RequestCtx) -> Result<Option<String>, NodeFault> {
        let Some(idem) = &ctx.idem else {
            return Ok(None);
        };
        let stored = self.store.load_idempotency(&idem.key).map_err(system)?;
        let engine = self.engine();
        Ok(
            match engine.check_idempotency(idem, stored, crate::clock::now_ms()) {
                IdemCheck::Fresh => None,
                IdemCheck::Replay(r) => Some(r),
                IdemCheck::Mismatch => engine.idempotency_mismatch(ctx).reply,
            },
        )
    }

    /// Authenticates the caller; a failure is answered (and cached) right away.
    async fn authenticate(
        &self,
        ctx: &RequestCtx,
        password: &crate::codec::types::Password,
    ) -> Result<Caller<'_>, String> {
        let cred = PspCredentials {
            id_psp: &ctx.psp.id_psp,
            id_broker_psp: &ctx.psp.id_broker_psp,
            id_channel: &ctx.psp.id_channel,
            password,
        };
        match self.registry.authenticate(cred) {
            Ok(c) => Ok(c),
            Err(f) => Err(self.refuse(ctx, f).await),
        }
    }

    /// Refuses a request with a fault (cached under its key) and returns the reply.
    async fn refuse(&self, ctx: &RequestCtx, fault: NodeFault) -> String {
        tracing::info!(operation = ctx.operation.soap_action(), psp = %ctx.psp.id_psp, fault = fault.code(), "request refused");
        let queued =
            self.run(|e| e.refuse(ctx, &fault, self.registry.timings(), crate::clock::now_ms()));
        self.reply(ctx.operation, queued).await
    }

    /// Brings a notice (and its current payment) into the engine if it is not there.
    fn hydrate_notice(&self, key: &NoticeKey) -> Result<(), NodeFault> {
        if self.engine().knows_notice(key) {
            return Ok(());
        }
        let stored = self.store.load_notice(key).map_err(system)?;
        self.engine()
            .hydrate_notice(key, stored, crate::clock::now_ms());
        Ok(())
    }

    /// Brings a payment (and its notice) into the engine if it is not there.
    pub(crate) fn hydrate_payment(&self, token: &str) -> Result<(), NodeFault> {
        if self.engine().knows_payment(token) {
            return Ok(());
        }
        let stored = self.store.load_payment(token).map_err(system)?;
        self.engine()
            .hydrate_payment(stored, crate::clock::now_ms());
        Ok(())
    }

    /// A deadline fired (from the timer wheel).
    pub async fn on_deadline(&self, token: &str) {
        if let Err(f) = self.hydrate_payment(token) {
            tracing::error!(token, fault = %f, "cannot load an expiring payment");
            return;
        }
        let queued = self.run(|e| e.deadline_fired(token, crate::clock::now_ms()));
        if let Err(f) = self.finish(queued).await {
            tracing::error!(token, fault = %f, "expiry not committed");
        }
    }

    /// Journals an exchange with a station: its request and response rows, encoded here and
    /// written by the journal writer.
    pub(crate) fn journal_ec(
        &self,
        op: Operation,
        station: &str,
        keys: &Keys,
        ex: &Exchange,
        result: Result<(), &NodeFault>,
    ) {
        if !self.registry.config().journal.enabled {
            return;
        }
        let base = RowRef {
            component: "paForNode",
            category: Some(Category::Interface),
            primitive: op.soap_action(),
            station: Some(station),
            caller: Some(NODE),
            callee: Some(station),
            ..keys.row()
        };
        let detail = result.err().map(|f| f.to_string());
        let mut rows = Rows::new();
        rows.push(&RowRef {
            at: ex.started_at,
            subtype: Some(Subtype::Req),
            payload: Some(&ex.request),
            outcome: Some("INVIATA"),
            ..base
        });
        rows.push(&RowRef {
            at: ex.started_at + ex.elapsed_ms,
            subtype: Some(Subtype::Resp),
            payload: ex.response.as_deref(),
            outcome: Some(match result {
                Ok(()) => "OK",
                Err(f) => f.code(),
            }),
            detail: detail.as_deref(),
            duration_ms: Some(ex.elapsed_ms),
            ..base
        });
        self.store.journal(rows);
    }

    fn journal_psp(
        &self,
        op: Operation,
        request: &[u8],
        secrets: &Secrets,
        reply: &str,
        keys: &Keys,
        started: Millis,
    ) {
        if !self.registry.config().journal.enabled {
            return;
        }
        let now = crate::clock::now_ms();
        let base = RowRef {
            component: "nodeForPsp",
            category: Some(Category::Interface),
            primitive: op.soap_action(),
            caller: keys.psp.as_deref(),
            callee: Some(NODE),
            ..keys.row()
        };
        let request = secrets.mask(request);
        let mut rows = Rows::new();
        rows.push(&RowRef {
            at: started,
            subtype: Some(Subtype::Req),
            payload: Some(&request),
            ..base
        });
        rows.push(&RowRef {
            at: now,
            subtype: Some(Subtype::Resp),
            outcome: Some(reply_outcome(reply)),
            payload: Some(reply),
            duration_ms: Some(now.saturating_sub(started)),
            ..base
        });
        self.store.journal(rows);
    }
}

/// `OK`, or the fault code of a KO answer (for the journal's `esito`).
pub fn reply_outcome(reply: &str) -> &str {
    match reply
        .split_once("<faultCode>")
        .and_then(|(_, rest)| rest.split_once("</faultCode>"))
    {
        Some((code, _)) => code,
        None if reply.contains("<outcome>KO</outcome>") => "KO",
        None => "OK",
    }
}

pub(crate) fn system(e: impl std::fmt::Display) -> NodeFault {
    NodeFault::SystemError(e.to_string())
}

/// `(idPSP, idempotencyKey)` of a request that cannot be parsed, read leniently.
fn sniff_idempotency(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let field = |name| crate::codec::lenient::first_text(text, name).map(str::to_string);
    Some((field("idPSP")?, field("idempotencyKey")?))
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
fn psp_ref(
    id_psp: &crate::codec::types::Text35,
    broker: &crate::codec::types::Text35,
    channel: &crate::codec::types::Text35,
) -> PspRef {
    PspRef {
        id_psp: id_psp.clone(),
        id_broker_psp: broker.clone(),
        id_channel: channel.clone(),
    }
}

/// The node's `now` as a chrono date (for the catalogue's validity dates).
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

impl Node {
    /// Queues a receipt's copies again (all of them, or one station's): the admin re-send.
    pub async fn resend(
        &self,
        receipt_id: &str,
        station: Option<&str>,
    ) -> Result<usize, NodeFault> {
        let stored = self.store.load_recipients(receipt_id).map_err(system)?;
        if stored.is_empty() {
            return Err(NodeFault::Semantica(format!("no receipt {receipt_id}")));
        }
        if let Some(s) = station
            && !stored.iter().any(|r| r.station.as_str() == s)
        {
            return Err(NodeFault::Semantica(format!(
                "receipt {receipt_id} has no recipient {s}"
            )));
        }
        self.hydrate_payment(receipt_id)?;
        let queued = self.run(|e| e.resend(receipt_id, stored, station, crate::clock::now_ms()));
        let copies = queued.step.deliver.len();
        self.finish(queued).await?;
        Ok(copies)
    }
}
