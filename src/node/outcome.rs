//! sendPaymentOutcome(V2): the PSP reports the outcome; OK starts the receipts.

use super::{Node, psp_ref};
use crate::codec::Message;
use crate::codec::node_for_psp::{
    OutcomeDetails, OutcomeDetailsV2, SendPaymentOutcomeReq, SendPaymentOutcomeV2Request,
};
use crate::codec::types::{IdempotencyKey, Outcome, PaymentToken, Text35};
use crate::engine::{OutcomeCommand, PaymentStatus, Reply, Version};
use crate::journal::Keys;

/// V1 details in the V2 shape (which adds only optional elements).
fn details_v2(d: OutcomeDetails) -> OutcomeDetailsV2 {
    OutcomeDetailsV2 {
        payment_method: d.payment_method,
        payment_channel: d.payment_channel,
        fee: d.fee,
        primary_ci_incurred_fee: None,
        id_bundle: None,
        id_ci_bundle: None,
        payer: d.payer,
        application_date: d.application_date,
        transfer_date: d.transfer_date,
        marche_da_bollo: None,
    }
}

/// What V1 and V2 outcomes have in common.
struct OutcomeInput {
    version: Version,
    tokens: Vec<PaymentToken>,
    outcome: Outcome,
    details: Option<OutcomeDetailsV2>,
}

impl Node {
    pub(super) async fn outcome_v1(&self, r: &SendPaymentOutcomeReq) -> (Reply, Keys) {
        let input = OutcomeInput {
            version: Version::V1,
            tokens: vec![r.payment_token.clone()],
            outcome: r.outcome,
            details: r.details.clone().map(details_v2),
        };
        self.outcome(
            r,
            (&r.id_psp, &r.id_broker_psp, &r.id_channel),
            r.idempotency_key.as_ref(),
            input,
        )
        .await
    }

    pub(super) async fn outcome_v2(&self, r: &SendPaymentOutcomeV2Request) -> (Reply, Keys) {
        let input = OutcomeInput {
            version: Version::V2,
            tokens: r.payment_tokens.payment_token.to_vec(),
            outcome: r.outcome,
            details: r.details.clone(),
        };
        self.outcome(
            r,
            (&r.id_psp, &r.id_broker_psp, &r.id_channel),
            r.idempotency_key.as_ref(),
            input,
        )
        .await
    }

    async fn outcome<M: Message>(
        &self,
        msg: &M,
        ids: (&Text35, &Text35, &Text35),
        key: Option<&IdempotencyKey>,
        input: OutcomeInput,
    ) -> (Reply, Keys) {
        let mut keys = Keys::psp(ids.0, ids.2);
        keys.token = input.tokens.first().cloned();
        let ctx = self.request_ctx(msg, psp_ref(ids.0, ids.1, ids.2), key);
        if let Some(reply) = self.idempotent_reply(&ctx).await {
            return (reply, keys);
        }
        // The channel's payment model is not checked on an outcome: the official BDD test
        // SEM_SPO_07 gets OK from channel 60000000001_07, not ATTIVATO_PRESSO_PSP.
        for t in &input.tokens {
            if let Err(f) = self.hydrate_payment(t).await {
                return (self.refuse(&ctx, f).await, keys);
            }
        }
        let mut spontaneous = None;
        if let Some(p) = input.tokens.first().and_then(|t| {
            let engine = self.engine();
            engine.payment(t).map(|p| {
                // A spontaneous payment's outcome is due within 2 s of its activation: the
                // PSP's service level.
                let spontaneous = p.status == PaymentStatus::Paying
                    && engine
                        .notice(&p.notice)
                        .is_some_and(|n| n.demanded_at.is_some());
                let activated = spontaneous.then_some(p.activated_at);
                (p.notice.clone(), p.station.id.clone(), activated)
            })
        }) {
            keys = keys.notice(&p.0);
            keys.station = Some(p.1);
            spontaneous = p.2.map(|activated_at| (activated_at, self.now()));
        }
        let cmd = OutcomeCommand {
            ctx,
            version: input.version,
            tokens: input.tokens,
            outcome: input.outcome,
            details: input.details,
        };
        let registry = self.registry();
        let queued = self.run(|e, now| e.outcome(&registry, cmd, now));
        let reply = self.reply(M::OPERATION, queued).await;
        // Counted once per request: a run that lost a race is run again.
        if let Some((activated_at, now)) = spontaneous
            && !self.lost_race()
        {
            self.metrics
                .psp_outcome(ids.0.as_str(), now.saturating_sub(activated_at), now);
        }
        (reply, keys)
    }
}
