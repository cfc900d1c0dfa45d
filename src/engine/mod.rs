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
    Notice(Notice),
    Payment(Box<Payment>),
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

/// The engine's state.
#[derive(Debug, Default)]
pub struct Engine {
    notices: HashMap<NoticeKey, (Notice, Millis)>,
    payments: HashMap<PaymentToken, Payment>,
    /// Activations waiting for paGetPayment (memory only: nothing was acknowledged yet).
    activating: HashMap<NoticeKey, ActivateCommand>,
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
        for r in pending {
            if r.status == RecipientStatus::Pending {
                step.deliver.push((r.key(), r.next_attempt_at));
            }
            self.recipients
                .entry(r.receipt_id.clone())
                .or_default()
                .push(r);
        }
        step
    }

    /// A notice the engine holds.
    pub fn notice(&self, key: &NoticeKey) -> Option<&Notice> {
        self.notices.get(key).map(|(n, _)| n)
    }

    fn set_notice(&mut self, notice: Notice, now: Millis, step: &mut Step) {
        step.writes.push(Write::Notice(notice.clone()));
        self.notices.insert(notice.key.clone(), (notice, now));
    }

    fn set_payment(&mut self, payment: Payment, now: Millis, step: &mut Step) {
        if let Some((_, touched)) = self.notices.get_mut(&payment.notice) {
            *touched = now;
        }
        step.writes.push(Write::Payment(Box::new(payment.clone())));
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
