//! Deadlines: a payment whose outcome did not arrive in time is cancelled and its notice is
//! payable again. The timer wheel fires [`Engine::deadline_fired`]; every other transition also
//! compares `now` with the deadline, so a deadline that passed is honoured even before its
//! timer fires.

use super::{
    Engine, EventKind, Millis, Notice, NoticeState, PaymentStatus, PositionPaymentStatus,
    PositionStatus, StateEvent, Step, Version, Write, history,
};
use crate::codec::Operation;

/// The activate primitive a payment was activated with: the scope of its idempotency key.
pub(super) fn activate_primitive(version: Version) -> &'static str {
    match version {
        Version::V1 => Operation::ActivatePaymentNotice.soap_action(),
        Version::V2 => Operation::ActivatePaymentNoticeV2.soap_action(),
    }
}

impl Engine {
    /// The timer of `token` fired.
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
