//! Deadlines: a payment whose outcome did not arrive in time is cancelled and its notice is
//! payable again. In `eager` expiry mode the node's timer fires [`Engine::deadline_fired`] at the
//! deadline, and every other transition also compares `now` with the deadline, so a deadline
//! that passed is honoured even before its timer fires. In `official` mode only the
//! cancellation job (`mod3CancelV2`) cancels, through the same [`Engine::deadline_fired`]: until
//! it runs an expired token still locks its notice and its outcome is processed as if it were
//! valid (official BDD tests SEM_APNR_21, IDMP_ACT_9/19, retry_PaNew_01/03, REV_ANN_01/02).

use super::{
    Engine, EventKind, Millis, Notice, NoticeState, PaymentStatus, PositionPaymentStatus,
    PositionStatus, StateEvent, Step, Version, Write, history,
};
use crate::codec::Operation;
use crate::config::ExpiryMode;

/// The activate primitive a payment was activated with: the scope of its idempotency key.
pub(super) fn activate_primitive(version: Version) -> &'static str {
    match version {
        Version::V1 => Operation::ActivatePaymentNotice.soap_action(),
        Version::V2 => Operation::ActivatePaymentNoticeV2.soap_action(),
    }
}

impl Engine {
    /// Whether `token` is a payment whose deadline passed and that a transition at `now` must
    /// cancel before going on: in `eager` mode; in `official` mode only the cancellation job
    /// cancels.
    pub(super) fn lapsed(&self, token: &str, expiry: ExpiryMode, now: Millis) -> bool {
        expiry == ExpiryMode::Eager
            && self
                .payments
                .get(token)
                .is_some_and(|p| p.status == PaymentStatus::Paying && p.deadline <= now)
    }

    /// The timer of `token` fired (eager mode), or the cancellation job found it expired
    /// (official mode).
    pub fn deadline_fired(&mut self, token: &str, now: Millis) -> Step {
        let mut step = Step::default();
        match self.payments.get(token) {
            Some(p) if p.status == PaymentStatus::Paying && p.deadline <= now => {
                self.expire(token, now, &mut step)
            }
            // Fired early (clock adjustments): arm again.
            Some(p) if p.status == PaymentStatus::Paying => {
                step.arm.push((p.token.clone(), p.deadline))
            }
            _ => {}
        }
        step
    }

    /// Cancels a payment whose deadline passed: CANCELLED, the notice payable again, the
    /// activation's idempotency entry deleted (what the official node's cancellation job does:
    /// BDD tests REV_ANN_01/02, IDMP_ACT_10).
    pub(super) fn expire(&mut self, token: &str, now: Millis, step: &mut Step) {
        let Some(mut p) = self.payments.get(token).cloned() else {
            return;
        };
        if p.status != PaymentStatus::Paying {
            return;
        }
        p.status = PaymentStatus::Cancelled;
        history::payment(step, now, &p, PositionPaymentStatus::Cancelled);
        if let Some(n) = self.notice(&p.notice).cloned()
            && n.state == NoticeState::Paying(p.token.clone())
        {
            self.set_notice(
                Notice {
                    state: NoticeState::Free,
                    ..n
                },
                now,
                step,
            );
            history::position(step, now, &p, PositionStatus::Inserted);
        }
        self.uncache_activation(&p, now, step);
        step.disarm.push(p.token.clone());
        let late_by = now.saturating_sub(p.deadline);
        step.writes.push(Write::Event(
            StateEvent::for_payment(now, EventKind::Expired, &p).detail(format!(
                "no outcome before the deadline (fired {late_by} ms after it)"
            )),
        ));
        self.set_payment(p, now, step);
    }
}
