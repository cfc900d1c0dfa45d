//! The payment engine: the state machine over debt positions, payments and receipts.
//!
//! Pure: no I/O, no clock, no randomness. Each command takes `now` (and, where needed, the
//! registry and a fresh token) and returns a [`Step`]: the writes to commit, the reply to send once
//! they are committed, and the deadlines and deliveries to schedule. The drivers (HTTP, store,
//! EC client, timer wheel, delivery workers) do the rest. Every protocol rule lives here.
//!
//! The engine keeps the records it works on in memory; records it does not hold are hydrated
//! from the store by the driver before a command (`hydrate_*`), and finished records are
//! swept out after a grace period ([`Engine::sweep`]).

mod activate;
mod delivery;
mod expiry;
pub mod history;
mod idempotency;
pub mod model;
mod outcome;
mod receipt;

use std::collections::{HashMap, VecDeque};

pub use activate::{ActivateCommand, ActivateStep, check_payment_data, data_from_v1};
pub use delivery::DeliveryPolicy;
pub use history::{
    PositionPaymentStatus, PositionStatus, ReceiptRecipientStatus, StatusOf, StatusRow,
};
pub use idempotency::{IdemCheck, IdemCtx, RequestCtx, request_hash};
pub use model::*;
pub use outcome::OutcomeCommand;
pub use receipt::render_receipt_v1;

use crate::codec::types::{Outcome, PaymentToken};
use crate::codec::{Operation, ko_envelope};
use crate::fault::{FaultCode, NodeFault};

/// A durable change: the store applies a step's writes in one transaction.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Write {
    /// The notice, if the store's copy is still at revision `expected` (else the commit fails
    /// with a conflict).
    Notice {
        notice: Notice,
        expected: Revision,
    },
    /// The payment, if the store's copy is still at revision `expected`.
    Payment {
        payment: Box<Payment>,
        expected: Revision,
    },
    Receipt(ReceiptRecord),
    Recipient(Recipient),
    PutIdempotency(IdemEntry),
    /// Deletes the entry under `key` if it is the one cached for `token`.
    DeleteIdempotency {
        key: IdemKey,
        token: PaymentToken,
    },
    Event(StateEvent),
    /// A row of a status history (official vocabulary), with the change it describes.
    Status(StatusRow),
}

/// An answer to a PSP: the envelope, and what it says (`esito` in the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub envelope: String,
    /// The fault of a KO answer; `None` for OK.
    pub fault: Option<FaultCode>,
}

impl Reply {
    pub fn ok(envelope: String) -> Reply {
        Reply {
            envelope,
            fault: None,
        }
    }

    /// The KO answer of `op` carrying `fault` (`extended`: the caller broker's extended fault
    /// bean).
    pub fn ko(op: Operation, fault: &NodeFault, extended: bool) -> Reply {
        Reply {
            envelope: ko_envelope(op, fault.to_bean(extended)),
            fault: Some(fault.fault_code()),
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self.fault {
            None => Outcome::Ok,
            Some(_) => Outcome::Ko,
        }
    }

    /// `OK`, or the fault code.
    pub fn esito(&self) -> &'static str {
        self.fault.map_or("OK", FaultCode::as_str)
    }
}

/// What a command produced. The reply is sent, and deadlines and deliveries scheduled, only
/// after the writes are committed.
#[derive(Debug, Default)]
pub struct Step {
    pub writes: Vec<Write>,
    pub reply: Option<Reply>,
    pub arm: Vec<(PaymentToken, Millis)>,
    pub disarm: Vec<PaymentToken>,
    pub deliver: Vec<(RecipientKey, Millis)>,
    /// The reply repeats an answer cached by a step whose writes may not be durable yet: it is
    /// sent only once everything queued before is.
    pub reply_after_queued: bool,
}

impl Step {
    pub fn reply(reply: Reply) -> Step {
        Step {
            reply: Some(reply),
            ..Step::default()
        }
    }

    pub fn merge(&mut self, other: Step) {
        self.writes.extend(other.writes);
        if other.reply.is_some() {
            self.reply = other.reply;
        }
        self.arm.extend(other.arm);
        self.disarm.extend(other.disarm);
        self.deliver.extend(other.deliver);
        self.reply_after_queued |= other.reply_after_queued;
    }
}

/// How long finished records stay in memory after their last change: comfortably longer than a
/// commit takes, so a record is never re-read from the store before its change is durable.
pub const SWEEP_GRACE_MS: Millis = 60_000;

/// A record a write names, for the driver to track writes in flight (see
/// [`Engine::writes_queued`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    Notice(NoticeKey),
    Payment(PaymentToken),
    /// A receipt's copies.
    Receipt(PaymentToken),
    /// An idempotency entry (kept in memory only while its write is in flight).
    Idempotency(IdemKey),
}

impl Write {
    /// The record the write changes, if the engine holds it in memory.
    pub fn record(&self) -> Option<Record> {
        match self {
            Write::Notice { notice, .. } => Some(Record::Notice(notice.key.clone())),
            Write::Payment { payment, .. } => Some(Record::Payment(payment.token.clone())),
            Write::Receipt(r) => Some(Record::Receipt(r.receipt_id.clone())),
            Write::Recipient(r) => Some(Record::Receipt(r.receipt_id.clone())),
            Write::PutIdempotency(e) => Some(Record::Idempotency(e.key.clone())),
            Write::DeleteIdempotency { key, .. } => Some(Record::Idempotency(key.clone())),
            Write::Event(_) | Write::Status(_) => None,
        }
    }
}

/// A record's writes: how many are in flight, and when the last one ended.
#[derive(Debug, Default, Clone, Copy)]
struct Writes {
    pending: u32,
    /// [`Engine::epoch`] after the last one ended.
    ended: u64,
    ended_at: Millis,
}

/// How long a record's ended writes are remembered: longer than any read takes.
const WRITES_KEPT_MS: Millis = 30_000;

/// The revision stamps an engine gives the records it writes: `base` (random per engine, given
/// by the driver: the engine has no randomness) plus a counter, so two engines on one store do
/// not give the same stamp.
#[derive(Debug, Default)]
struct Stamps {
    base: u64,
    issued: u64,
}

impl Stamps {
    fn next(&mut self) -> Revision {
        self.issued += 1;
        match self.base.wrapping_add(self.issued) {
            0 => self.next(),
            stamp => stamp,
        }
    }
}

/// The engine's state.
#[derive(Debug, Default)]
pub struct Engine {
    stamps: Stamps,
    /// Writes per record, uncommitted and recent: the engine's copy of a record with writes in
    /// flight is newer than the store's, and so is the copy of one whose write ended after a
    /// read of it began (the read may predate the commit): neither is replaced by that read
    /// (see [`Engine::refresh_notice`]).
    in_flight: HashMap<Record, Writes>,
    /// Counts the writes that ended: what a read says it began after ([`Engine::epoch`]).
    epoch: u64,
    notices: HashMap<NoticeKey, (Notice, Millis)>,
    payments: HashMap<PaymentToken, Payment>,
    /// Activations waiting for paGetPayment (memory only: nothing was acknowledged yet).
    /// With the notice as it was when reserved: the activation is written over that revision,
    /// so if another node changed the notice meanwhile (and a read brought the change here),
    /// the commit fails instead of overwriting it.
    activating: HashMap<NoticeKey, (ActivateCommand, Notice)>,
    activating_tokens: HashMap<PaymentToken, NoticeKey>,
    /// Recipients not yet delivered, by receipt id.
    recipients: HashMap<PaymentToken, Vec<Recipient>>,
    /// Idempotency entries written recently, newest last: they may not be committed yet, so the
    /// store cannot be asked about them.
    /// `None` is a deletion not yet known to be committed.
    recent_idem: HashMap<IdemKey, (Millis, idempotency::Recent)>,
    recent_idem_order: VecDeque<(Millis, IdemKey)>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// An engine whose revision stamps start from `base` (a random number: see [`Revision`]).
    pub fn with_stamps(base: u64) -> Engine {
        Engine {
            stamps: Stamps { base, issued: 0 },
            ..Engine::default()
        }
    }

    /// Forgets every record (the driver rebuilds the engine from the store); revision stamps go
    /// on where they were.
    pub fn clear(&mut self) {
        let stamps = std::mem::take(&mut self.stamps);
        *self = Engine {
            stamps,
            ..Engine::default()
        };
    }

    /// The driver queued writes of these records to the store.
    pub fn writes_queued(&mut self, records: &[Record]) {
        for r in records {
            self.in_flight.entry(r.clone()).or_default().pending += 1;
        }
    }

    /// Where the writes that ended stand: the driver takes it before a read, and gives it to the
    /// `refresh_*` call that applies the read.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Writes of these records were committed (`ok`) or not. A write that failed leaves the
    /// engine's copies ahead of the store (or, on a conflict, behind another node's): they are
    /// dropped, to be read again. An idempotency entry is remembered only until the store has
    /// it: another node may replace it afterwards.
    pub fn writes_done(&mut self, records: &[Record], ok: bool, now: Millis) {
        self.epoch += 1;
        for r in records {
            let w = self.in_flight.entry(r.clone()).or_default();
            w.pending = w.pending.saturating_sub(1);
            (w.ended, w.ended_at) = (self.epoch, now);
            let settled = w.pending == 0;
            if !ok || (settled && matches!(r, Record::Idempotency(_))) {
                self.forget(r);
            }
        }
    }

    /// Drops the engine's copy of a record.
    fn forget(&mut self, r: &Record) {
        match r {
            Record::Notice(key) => {
                if let Some((n, _)) = self.notices.remove(key)
                    && let NoticeState::Paying(t) | NoticeState::Paid(t) = &n.state
                    && !self.recipients.contains_key(t.as_str())
                {
                    self.payments.remove(t.as_str());
                }
            }
            Record::Payment(token) => {
                if let Some(p) = self.payments.remove(token.as_str()) {
                    self.notices.remove(&p.notice);
                }
            }
            Record::Receipt(id) => {
                self.recipients.remove(id.as_str());
            }
            Record::Idempotency(key) => {
                self.recent_idem.remove(key);
            }
        }
    }

    /// Whether the engine's copy of `r` is newer than a read begun at `since`.
    fn writing(&self, r: Record, since: u64) -> bool {
        self.in_flight
            .get(&r)
            .is_some_and(|w| w.pending > 0 || w.ended > since)
    }

    /// Replaces the engine's copy of a notice (and of the payment its state names) with the
    /// store's, unless the engine has writes of them in flight (its copies are then newer).
    /// With several nodes on one store the engine's memory is only a cache: the driver reads the
    /// records of a command again before running it.
    /// `since`: [`Engine::epoch`] when the read began.
    pub fn refresh_notice(
        &mut self,
        key: &NoticeKey,
        stored: Option<(Notice, Option<Payment>)>,
        now: Millis,
        since: u64,
    ) {
        if self.writing(Record::Notice(key.clone()), since) {
            return;
        }
        let (notice, payment) = stored.unwrap_or_else(|| (Notice::free(key.clone()), None));
        if let Some(p) = payment {
            self.refresh_payment_copy(p, since);
        }
        self.notices.insert(key.clone(), (notice, now));
    }

    /// [`Engine::refresh_notice`] for a payment and its notice (`None`: the store has no such
    /// payment, and neither does the engine any longer).
    pub fn refresh_payment(
        &mut self,
        token: &str,
        stored: Option<(Payment, Notice)>,
        now: Millis,
        since: u64,
    ) {
        match stored {
            Some((payment, notice)) => {
                if !self.writing(Record::Notice(notice.key.clone()), since) {
                    self.notices.insert(notice.key.clone(), (notice, now));
                }
                self.refresh_payment_copy(payment, since);
            }
            None => {
                if let Ok(t) = PaymentToken::new(token)
                    && !self.writing(Record::Payment(t), since)
                {
                    self.payments.remove(token);
                }
            }
        }
    }

    fn refresh_payment_copy(&mut self, p: Payment, since: u64) {
        if !self.writing(Record::Payment(p.token.clone()), since) {
            self.payments.insert(p.token.clone(), p);
        }
    }

    /// Whether the engine holds the notice (else the driver hydrates it from the store).
    pub fn knows_notice(&self, key: &NoticeKey) -> bool {
        self.notices.contains_key(key)
    }

    /// Whether the engine holds the payment.
    pub fn knows_payment(&self, token: &str) -> bool {
        self.payments.contains_key(token)
    }

    /// Loads a notice (and the payment its state names) read from the store. Ignored if the
    /// engine already holds the notice: its copy is newer than any committed one.
    pub fn hydrate_notice(
        &mut self,
        key: &NoticeKey,
        stored: Option<(Notice, Option<Payment>)>,
        now: Millis,
    ) {
        if self.notices.contains_key(key) {
            return;
        }
        let (notice, payment) = stored.unwrap_or_else(|| (Notice::free(key.clone()), None));
        if let Some(p) = payment {
            self.payments.entry(p.token.clone()).or_insert(p);
        }
        self.notices.insert(key.clone(), (notice, now));
    }

    /// Loads a payment and its notice read from the store (see [`hydrate_notice`](Self::hydrate_notice)).
    pub fn hydrate_payment(&mut self, stored: Option<(Payment, Notice)>, now: Millis) {
        if let Some((payment, notice)) = stored {
            if !self.notices.contains_key(&notice.key) {
                self.notices.insert(notice.key.clone(), (notice, now));
            }
            self.payments
                .entry(payment.token.clone())
                .or_insert(payment);
        }
    }

    /// Rebuilds the live state at start-up: payments waiting for their outcome (their deadlines
    /// to re-arm, overdue ones included) and the recipients of receipts still being delivered:
    /// every copy of each such receipt, not only the pending ones (those are re-queued; the
    /// others count when the receipt settles, so a copy that failed for good keeps the payment
    /// PAID).
    pub fn recover(
        &mut self,
        paying: Vec<(Payment, Notice)>,
        pending: Vec<Recipient>,
        now: Millis,
    ) -> Step {
        let mut step = Step::default();
        for (payment, notice) in paying {
            step.arm.push((payment.token.clone(), payment.deadline));
            self.hydrate_payment(Some((payment, notice)), now);
        }
        let since = self.epoch;
        step.merge(self.adopt_receipts(pending, since));
        step
    }

    /// Takes charge of receipts' copies (every copy of each receipt), read from the store
    /// since [`Engine::epoch`] was `since`: the engine's list of each is replaced and its pending
    /// copies scheduled, but for a receipt the engine has written since (its list is newer).
    pub fn adopt_receipts(&mut self, copies: Vec<Recipient>, since: u64) -> Step {
        let mut step = Step::default();
        let mut lists: HashMap<PaymentToken, Vec<Recipient>> = HashMap::new();
        for r in copies {
            lists.entry(r.receipt_id.clone()).or_default().push(r);
        }
        for (id, list) in lists {
            if self.writing(Record::Receipt(id.clone()), since) {
                continue;
            }
            for r in list.iter().filter(|r| r.status == RecipientStatus::Pending) {
                step.deliver.push((r.key(), r.next_attempt_at));
            }
            self.recipients.insert(id, list);
        }
        step
    }

    /// A notice the engine holds.
    pub fn notice(&self, key: &NoticeKey) -> Option<&Notice> {
        self.notices.get(key).map(|(n, _)| n)
    }

    /// Writes a notice computed from the engine's copy (whose revision it still carries).
    fn set_notice(&mut self, mut notice: Notice, now: Millis, step: &mut Step) {
        let expected = notice.revision;
        notice.revision = self.stamps.next();
        step.writes.push(Write::Notice {
            notice: notice.clone(),
            expected,
        });
        self.notices.insert(notice.key.clone(), (notice, now));
    }

    /// Writes a payment computed from the engine's copy (whose revision it still carries).
    fn set_payment(&mut self, mut payment: Payment, now: Millis, step: &mut Step) {
        if let Some((_, touched)) = self.notices.get_mut(&payment.notice) {
            *touched = now;
        }
        let expected = payment.revision;
        payment.revision = self.stamps.next();
        step.writes.push(Write::Payment {
            payment: Box::new(payment.clone()),
            expected,
        });
        self.payments.insert(payment.token.clone(), payment);
    }

    /// A payment the engine holds.
    pub fn payment(&self, token: &str) -> Option<&Payment> {
        self.payments.get(token)
    }

    /// Recipients of a receipt still being delivered.
    pub fn recipients(&self, receipt_id: &str) -> &[Recipient] {
        self.recipients
            .get(receipt_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Forgets records nobody needs in memory any more: notices that are not being paid and
    /// have not changed for [`SWEEP_GRACE_MS`] (with their finished payments), and old
    /// idempotency entries (the store has them).
    pub fn sweep(&mut self, now: Millis) {
        let kept = now.saturating_sub(WRITES_KEPT_MS);
        self.in_flight
            .retain(|_, w| w.pending > 0 || w.ended_at > kept);
        let cutoff = now.saturating_sub(SWEEP_GRACE_MS);
        self.notices.retain(|_, (notice, touched)| {
            *touched > cutoff || matches!(notice.state, NoticeState::Paying(_))
        });
        let (notices, recipients) = (&self.notices, &self.recipients);
        self.payments.retain(|token, p| {
            p.status == PaymentStatus::Paying
                || notices.contains_key(&p.notice)
                || recipients.contains_key(token)
        });
        while let Some((at, _)) = self.recent_idem_order.front() {
            if *at > cutoff {
                break;
            }
            if let Some((at, key)) = self.recent_idem_order.pop_front()
                && self.recent_idem.get(&key).is_some_and(|(t, _)| *t == at)
            {
                self.recent_idem.remove(&key);
            }
        }
    }

    /// Numbers for health and tests: (notices, payments, activations in flight, receipts in delivery).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.notices.len(),
            self.payments.len(),
            self.activating.len(),
            self.recipients.len(),
        )
    }
}
