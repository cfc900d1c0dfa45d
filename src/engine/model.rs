//! The engine's records: debt positions (notices), payments (tokens), receipts and their
//! recipients, idempotency entries. These are what the store persists.

use crate::codec::common::QrCode;
use crate::codec::node_for_psp::OutcomeDetailsV2;
use crate::codec::pa_for_node::PaymentPaV2;
use crate::codec::types::{
    Amount, FiscalCode, IdempotencyKey, IsoDate, NoticeNumber, Outcome, PaymentMethodFee,
    PaymentToken, Text35, Text210, TouchpointFee,
};

/// Milliseconds since the UNIX epoch. The engine never reads a clock: `now` comes in.
pub type Millis = u64;

/// A debt position's identity: the EC's fiscal code and the notice number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoticeKey {
    pub fiscal_code: FiscalCode,
    pub notice_number: NoticeNumber,
}

impl NoticeKey {
    pub fn from_qr(qr: &QrCode) -> NoticeKey {
        NoticeKey {
            fiscal_code: qr.fiscal_code.clone(),
            notice_number: qr.notice_number.clone(),
        }
    }
}

impl std::fmt::Display for NoticeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.fiscal_code, self.notice_number)
    }
}

/// Where a debt position stands. One payment in flight per notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeState {
    /// Payable ("INSERTED").
    Free,
    /// A token is live on it ("PAYING").
    Paying(PaymentToken),
    /// Paid by that token ("PAID" / "NOTIFIED"): new activations are duplicates.
    Paid(PaymentToken),
}

/// A record's revision in the store: a stamp every write of the record replaces, so a write can
/// say which revision it was computed from (compare-and-set: several nodes share one store).
/// Stamps are unique per writer, not counters: two writers racing from the same revision never
/// produce the same next one, so a write computed from a losing write's result cannot pass.
/// `0`: not stored yet (or stored before revisions existed).
pub type Revision = u64;

/// A debt position as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub key: NoticeKey,
    pub state: NoticeState,
    /// Set when the notice was created by demandPaymentNotice through this node: in eager expiry
    /// its payments get the outcome deadline ("entro 2 sec") instead of the token lifetime.
    pub demanded_at: Option<Millis>,
    pub revision: Revision,
}

impl Notice {
    pub fn free(key: NoticeKey) -> Notice {
        Notice {
            key,
            state: NoticeState::Free,
            demanded_at: None,
            revision: 0,
        }
    }
}

/// Which version of a primitive a party speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn from_number(n: u8) -> Version {
        if n >= 2 { Version::V2 } else { Version::V1 }
    }

    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The PSP side of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspRef {
    pub id_psp: Text35,
    pub id_broker_psp: Text35,
    pub id_channel: Text35,
}

/// The EC station a notice routes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationRef {
    pub id: Text35,
    pub broker: Text35,
    pub version: Version,
}

/// What the PSP asked for in activatePaymentNotice(V2).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRequest {
    pub amount: Amount,
    pub due_date: Option<IsoDate>,
    pub payment_note: Option<Text210>,
    pub expiration_ms: Option<i64>,
    pub payment_method: Option<PaymentMethodFee>,
    pub touch_point: Option<TouchpointFee>,
}

/// A payment's status ("POSITION_PAYMENT_STATUS").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Token live, waiting for the outcome.
    Paying,
    /// Outcome OK: receipt generated, being delivered.
    Paid,
    /// Every recipient acknowledged the receipt.
    Notified,
    /// Outcome KO.
    Failed,
    /// The deadline passed without an outcome: the token is expired.
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Paying => "PAYING",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Notified => "NOTIFIED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        [
            PaymentStatus::Paying,
            PaymentStatus::Paid,
            PaymentStatus::Notified,
            PaymentStatus::Failed,
            PaymentStatus::Cancelled,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// The outcome a PSP sent (V1 details are kept in the V2 shape, which contains them).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRecord {
    pub outcome: Outcome,
    pub received_at: Millis,
    pub psp: PspRef,
    pub version: Version,
    pub details: Option<OutcomeDetailsV2>,
}

/// A payment: one token on one notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub token: PaymentToken,
    pub notice: NoticeKey,
    pub psp: PspRef,
    /// The activate primitive the PSP used.
    pub psp_version: Version,
    pub station: StationRef,
    pub idempotency_key: Option<IdempotencyKey>,
    pub request: ActivationRequest,
    /// The EC's payment data from paGetPayment (V1 data is kept in the V2 shape).
    pub data: PaymentPaV2,
    pub activated_at: Millis,
    /// The outcome must arrive before this instant.
    pub deadline: Millis,
    pub status: PaymentStatus,
    pub outcome: Option<OutcomeRecord>,
    pub revision: Revision,
}

/// A receipt's delivery state towards one station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    /// To be sent (again) at `next_attempt_at`.
    Pending,
    /// The station acknowledged it.
    Notified,
    /// Attempts exhausted; re-sent only on demand.
    Failed,
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "PENDING",
            RecipientStatus::Notified => "NOTIFIED",
            RecipientStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<RecipientStatus> {
        [
            RecipientStatus::Pending,
            RecipientStatus::Notified,
            RecipientStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One copy of a receipt for one station: the outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub receipt_id: PaymentToken,
    pub station: Text35,
    /// `idPA` of the copy: the notice owner for its station, the secondary EC for broadcast ones.
    pub ec: FiscalCode,
    pub version: Version,
    /// The exact paSendRT(V2) envelope: every attempt sends these bytes.
    pub request: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
}

impl Recipient {
    pub fn key(&self) -> RecipientKey {
        RecipientKey {
            receipt_id: self.receipt_id.clone(),
            station: self.station.clone(),
        }
    }
}

/// Identifies an outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecipientKey {
    pub receipt_id: PaymentToken,
    pub station: Text35,
}

/// A generated receipt: its id (the token), notice and content, once per primitive version its
/// copies use: the `receipt` element exactly as every copy of that version carries it (see
/// [`CopyParts`]), so the store keeps a receipt's body once however many copies it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub receipt_id: PaymentToken,
    pub notice: NoticeKey,
    /// The `ctReceipt` of paSendRT copies, if any copy is V1.
    pub body_v1: Option<String>,
    /// The `ctReceiptV2` of paSendRTV2 copies, if any copy is V2.
    pub body_v2: Option<String>,
    pub created_at: Millis,
}

/// A copy's envelope cut around its `receipt` element: what is the copy's own (`head`: the
/// envelope up to the element, with the copy's `idPA`, `idBrokerPA`, `idStation`; `tail`: what
/// follows) and the receipt, the same in every copy of one version. Joined again, the parts are
/// the envelope byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyParts<'a> {
    pub head: &'a str,
    pub body: &'a str,
    pub tail: &'a str,
}

impl<'a> CopyParts<'a> {
    /// Cuts a paSendRT(V2) envelope (`None` if it has no `receipt` element).
    pub fn split(envelope: &'a str) -> Option<CopyParts<'a>> {
        let start = envelope.find("<receipt>")?;
        let end = envelope.rfind("</receipt>")? + "</receipt>".len();
        (start < end).then(|| CopyParts {
            head: &envelope[..start],
            body: &envelope[start..end],
            tail: &envelope[end..],
        })
    }

    pub fn join(&self) -> String {
        [self.head, self.body, self.tail].concat()
    }
}

/// The scope of an idempotency key: (PSP, key, primitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdemKey {
    pub psp: String,
    pub key: String,
    pub primitive: &'static str,
}

/// A cached response for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemEntry {
    pub key: IdemKey,
    /// SHA-256 of the canonical request.
    pub request_hash: [u8; 32],
    /// The response, replayed byte for byte.
    pub reply: super::Reply,
    /// The token an activation issued (None for failures and outcomes).
    pub token: Option<PaymentToken>,
    pub valid_to: Millis,
    pub inserted_at: Millis,
}

impl IdemEntry {
    /// Whether a new entry under the same key, written at `at`, must leave this one in place:
    /// a valid OK answer holds its key until it expires (or its activation ends); a failure
    /// can be answered over.
    pub fn keeps_key_at(&self, at: Millis) -> bool {
        self.valid_to > at && self.reply.fault.is_none()
    }
}

/// What kind of internal state change a [`StateEvent`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A token was issued: the notice is locked.
    Activated,
    /// The deadline passed with no outcome: the token expired, the notice is payable again.
    Expired,
    /// An outcome was accepted (OK or KO).
    OutcomeAccepted,
    /// An outcome arrived after the deadline (the fault tells how it was answered).
    LateOutcome,
    /// A receipt was generated, with its recipients.
    ReceiptGenerated,
    /// A recipient acknowledged the receipt.
    RecipientNotified,
    /// A delivery attempt failed (will be retried).
    DeliveryFailed,
    /// A recipient exhausted its attempts.
    RecipientFailed,
    /// Every recipient acknowledged: the payment is NOTIFIED.
    PaymentNotified,
    /// A notice was created by demandPaymentNotice through the node.
    NoticeDemanded,
    /// A receipt was queued again on demand.
    ResendRequested,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Activated => "ACTIVATED",
            EventKind::Expired => "EXPIRED",
            EventKind::OutcomeAccepted => "OUTCOME_ACCEPTED",
            EventKind::LateOutcome => "LATE_OUTCOME",
            EventKind::ReceiptGenerated => "RECEIPT_GENERATED",
            EventKind::RecipientNotified => "RECIPIENT_NOTIFIED",
            EventKind::DeliveryFailed => "DELIVERY_FAILED",
            EventKind::RecipientFailed => "RECIPIENT_FAILED",
            EventKind::PaymentNotified => "PAYMENT_NOTIFIED",
            EventKind::NoticeDemanded => "NOTICE_DEMANDED",
            EventKind::ResendRequested => "RESEND_REQUESTED",
        }
    }
}

/// An internal state change, written in the same transaction as the change itself, so the
/// journal never misses one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEvent {
    pub at: Millis,
    pub kind: EventKind,
    pub notice: Option<NoticeKey>,
    pub token: Option<PaymentToken>,
    pub psp: Option<Text35>,
    pub channel: Option<Text35>,
    pub station: Option<Text35>,
    /// OK / KO, or the fault code the change was answered with.
    pub outcome: Option<&'static str>,
    pub detail: Option<String>,
}

impl StateEvent {
    /// An event about a payment, with its parties filled in.
    pub fn for_payment(at: Millis, kind: EventKind, p: &Payment) -> StateEvent {
        StateEvent {
            at,
            kind,
            notice: Some(p.notice.clone()),
            token: Some(p.token.clone()),
            psp: Some(p.psp.id_psp.clone()),
            channel: Some(p.psp.id_channel.clone()),
            station: Some(p.station.id.clone()),
            outcome: None,
            detail: None,
        }
    }

    pub fn outcome(mut self, o: &'static str) -> StateEvent {
        self.outcome = Some(o);
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> StateEvent {
        self.detail = Some(d.into());
        self
    }
}
