//! Receipt delivery results (SANP, "Integrazione tramite API sincrone": 48 attempts one hour
//! apart; official BDD tests `paSendRTV2_NM3.feature`, PSRTV2_ACTV1_06/20/24): an acknowledged copy is
//! NOTIFIED; a failed attempt is retried after the retry interval until the attempts run out,
//! then the recipient is FAILED (visible, re-sendable on demand). The payment is NOTIFIED when
//! every recipient is.

use super::{
    Engine, EventKind, Millis, Payment, PaymentStatus, PositionPaymentStatus, PositionStatus,
    ReceiptRecipientStatus, Recipient, RecipientKey, RecipientStatus, StateEvent, Step, Write,
    history,
};
use crate::codec::types::PaymentToken;

/// The retry policy (official: 48 attempts one hour apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    pub retry_interval_ms: u64,
}

impl Engine {
    /// Whether the engine holds the recipients of a receipt still being delivered.
    pub fn knows_recipients(&self, receipt_id: &str) -> bool {
        self.recipients.contains_key(receipt_id)
    }

    /// Replaces the engine's copies of a receipt with the store's (with a shared store, before
    /// a result is recorded), unless the engine has writes of them in flight. A receipt with no
    /// copy left to deliver leaves memory.
    /// `since`: [`Engine::epoch`] when the read began.
    pub fn refresh_receipt(
        &mut self,
        receipt_id: &PaymentToken,
        stored: Vec<Recipient>,
        since: u64,
    ) {
        if self.writing(super::Record::Receipt(receipt_id.clone()), since) {
            return;
        }
        if stored.iter().any(|r| r.status == RecipientStatus::Pending) {
            self.recipients.insert(receipt_id.clone(), stored);
        } else {
            self.recipients.remove(receipt_id.as_str());
        }
    }

    /// The copy to send for an outbox row, if it is due at `now` (a schedule entry left from
    /// before a re-send or a retry brought forward is not).
    pub fn due_delivery(&self, key: &RecipientKey, now: Millis) -> Option<&Recipient> {
        self.pending(key).filter(|r| r.next_attempt_at <= now)
    }

    fn pending(&self, key: &RecipientKey) -> Option<&Recipient> {
        self.recipients
            .get(&key.receipt_id)?
            .iter()
            .find(|r| r.station == key.station && r.status == RecipientStatus::Pending)
    }

    /// Every copy still to deliver, due now: the official `paSendRt` job's pass (official BDD
    /// tests `paSendRTV2_NM3.feature`, `MBD/flows/paSendRTV2/*retry*`). Returns the step and
    /// each copy with the attempts it had, to tell when each has had one more
    /// ([`attempted_since`](Self::attempted_since)).
    pub fn retry_pending(&mut self, now: Millis) -> (Step, Vec<(RecipientKey, u32)>) {
        let mut step = Step::default();
        let mut copies = Vec::new();
        for r in self
            .recipients
            .values_mut()
            .flatten()
            .filter(|r| r.status == RecipientStatus::Pending)
        {
            r.next_attempt_at = r.next_attempt_at.min(now);
            step.writes.push(Write::Recipient(r.clone()));
            step.deliver.push((r.key(), now));
            copies.push((r.key(), r.attempts));
        }
        (step, copies)
    }

    /// Whether the copy `key`, which had made `attempts` attempts, has made another (or is
    /// settled).
    pub fn attempted_since(&self, key: &RecipientKey, attempts: u32) -> bool {
        self.pending(key).is_none_or(|r| r.attempts > attempts)
    }

    /// The result of one delivery attempt, sent at `sent_at`. `Ok` means the station
    /// acknowledged (outcome OK, or a duplicate-receipt answer); `Err` carries why it failed.
    /// The attempt's status rows (NOTICE_SENT, then NOTIFIED or NOTICE_PENDING) are written
    /// with its result: an attempt cut short by a stop does not count, and leaves none.
    pub fn delivery_result(
        &mut self,
        key: &RecipientKey,
        sent_at: Millis,
        result: Result<(), String>,
        policy: DeliveryPolicy,
        now: Millis,
    ) -> Step {
        let mut step = Step::default();
        let payment = self.payments.get(&key.receipt_id).cloned();
        let Some(list) = self.recipients.get_mut(&key.receipt_id) else {
            return step;
        };
        // The receipt's first attempt: the payment is NOTICE_SENT.
        let first = list.iter().all(|r| r.attempts == 0);
        let Some(r) = list
            .iter_mut()
            .find(|r| r.station == key.station && r.status == RecipientStatus::Pending)
        else {
            return step;
        };
        r.attempts += 1;
        // The history rows need the notice, which the payment gives (the node hydrates it first).
        let history = |step: &mut Step, at, r: &Recipient, status| {
            if let Some(p) = &payment {
                history::recipient(step, at, &p.notice, r, status);
            }
        };
        history(&mut step, sent_at, r, ReceiptRecipientStatus::NoticeSent);
        if let Some(p) = payment.as_ref().filter(|_| first) {
            history::payment(&mut step, sent_at, p, PositionPaymentStatus::NoticeSent);
        }
        let event = |kind: EventKind, r: &Recipient| {
            let base = match &payment {
                Some(p) => StateEvent::for_payment(now, kind, p),
                None => StateEvent {
                    at: now,
                    kind,
                    notice: None,
                    token: Some(r.receipt_id.clone()),
                    psp: None,
                    channel: None,
                    station: None,
                    outcome: None,
                    detail: None,
                },
            };
            StateEvent {
                station: Some(r.station.clone()),
                ..base
            }
        };
        match result {
            Ok(()) => {
                r.status = RecipientStatus::Notified;
                r.last_error = None;
                history(&mut step, now, r, ReceiptRecipientStatus::Notified);
                // The notice is NOTIFIED when its owner's station is (official BDD tests
                // PSRTV2_ACTV1_20 and _24).
                if let Some(p) = payment.as_ref().filter(|p| p.station.id == r.station) {
                    history::position(&mut step, now, p, PositionStatus::Notified);
                }
                step.writes.push(Write::Event(
                    event(EventKind::RecipientNotified, r)
                        .outcome("OK")
                        .detail(format!("attempt {}", r.attempts)),
                ));
            }
            Err(why) => {
                r.last_error = Some(why.clone());
                history(&mut step, now, r, ReceiptRecipientStatus::NoticePending);
                if r.attempts >= policy.max_attempts {
                    r.status = RecipientStatus::Failed;
                    step.writes.push(Write::Event(
                        event(EventKind::RecipientFailed, r)
                            .outcome("KO")
                            .detail(format!(
                                "{} attempts exhausted; last error: {why}",
                                r.attempts
                            )),
                    ));
                } else {
                    r.next_attempt_at = now + policy.retry_interval_ms;
                    step.deliver.push((r.key(), r.next_attempt_at));
                    step.writes.push(Write::Event(
                        event(EventKind::DeliveryFailed, r)
                            .outcome("KO")
                            .detail(format!("attempt {}: {why}", r.attempts)),
                    ));
                }
            }
        }
        step.writes.push(Write::Recipient(r.clone()));
        self.settle_receipt(&key.receipt_id, payment, now, &mut step);
        step
    }

    /// When no recipient is pending any more, the receipt leaves memory; if every one was
    /// notified the payment is NOTIFIED.
    fn settle_receipt(
        &mut self,
        receipt_id: &str,
        payment: Option<Payment>,
        now: Millis,
        step: &mut Step,
    ) {
        let Some(list) = self.recipients.get(receipt_id) else {
            return;
        };
        if list.iter().any(|r| r.status == RecipientStatus::Pending) {
            return;
        }
        let all_notified = list.iter().all(|r| r.status == RecipientStatus::Notified);
        self.recipients.remove(receipt_id);
        if let Some(mut p) = payment
            && all_notified
            && p.status == PaymentStatus::Paid
        {
            p.status = PaymentStatus::Notified;
            history::payment(step, now, &p, PositionPaymentStatus::Notified);
            step.writes.push(Write::Event(
                StateEvent::for_payment(now, EventKind::PaymentNotified, &p).outcome("OK"),
            ));
            self.set_payment(p, now, step);
        }
    }

    /// Queues copies of a receipt again on demand: `stored` are its outbox rows as the store has
    /// them (failed and notified ones are no longer in memory); `station` picks one, or all.
    pub fn resend(
        &mut self,
        receipt_id: &PaymentToken,
        stored: Vec<Recipient>,
        station: Option<&str>,
        now: Millis,
    ) -> Step {
        let mut step = Step::default();
        let mut list = self.recipients.remove(receipt_id).unwrap_or_default();
        for r in stored {
            if !list.iter().any(|m| m.station == r.station) {
                list.push(r);
            }
        }
        for r in list
            .iter_mut()
            .filter(|r| station.is_none_or(|s| r.station.as_str() == s))
        {
            r.status = RecipientStatus::Pending;
            r.attempts = 0;
            r.next_attempt_at = now;
            step.deliver.push((r.key(), now));
            step.writes.push(Write::Recipient(r.clone()));
            step.writes.push(Write::Event(StateEvent {
                at: now,
                kind: EventKind::ResendRequested,
                notice: None,
                token: Some(r.receipt_id.clone()),
                psp: None,
                channel: None,
                station: Some(r.station.clone()),
                outcome: None,
                detail: None,
            }));
        }
        if !list.is_empty() {
            self.recipients.insert(receipt_id.clone(), list);
        }
        step
    }
}
