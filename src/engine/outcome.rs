//! sendPaymentOutcome(V2): the PSP says whether the user paid (official BDD tests
//! `NewMod3/flows/sendPaymentOutcome/*`, `PAG-1976.feature`, `RetryATokenScaduto/*`).
//! OK produces the receipt; KO frees the notice at once; a repeated outcome gets
//! `PPT_ESITO_GIA_ACQUISITO`; a late one the official late-outcome codes.

use super::{
    Engine, EventKind, Millis, Notice, NoticeState, OutcomeRecord, PaymentStatus,
    PositionPaymentStatus, PositionStatus, Reply, RequestCtx, StateEvent, Step, Version, Write,
    history,
};
use crate::codec::node_for_psp::{
    OutcomeDetailsV2, SendPaymentOutcomeRes, SendPaymentOutcomeV2Response,
};
use crate::codec::pa_for_node::PaCreditAccount;
use crate::codec::types::{Outcome, PaymentToken};
use crate::codec::write_envelope;
use crate::fault::NodeFault;
use crate::registry::Registry;

/// An outcome that passed the registry checks. V1 details are given in the V2 shape.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeCommand {
    pub ctx: RequestCtx,
    pub version: Version,
    pub tokens: Vec<PaymentToken>,
    pub outcome: Outcome,
    pub details: Option<OutcomeDetailsV2>,
}

const MINUTE_MS: u64 = 60_000;

impl Engine {
    /// Applies an outcome to its token(s). The driver hydrated every token first.
    pub fn outcome(&mut self, reg: &Registry, cmd: OutcomeCommand, now: Millis) -> Step {
        let timings = reg.timings();
        if let Some(step) = self.answered_meanwhile(&cmd.ctx, now) {
            return step;
        }
        if let Err(fault) = self.check_outcome(&cmd) {
            return self.refuse(&cmd.ctx, &fault, timings, now);
        }
        let mut step = Step::default();
        let mut first_fault: Option<NodeFault> = None;
        for token in &cmd.tokens {
            if let Some(fault) = self.apply_outcome(reg, &cmd, token, now, &mut step) {
                first_fault.get_or_insert(fault);
            }
        }
        let reply = match &first_fault {
            None => ok_response(cmd.version),
            Some(f) => Reply::ko(cmd.ctx.operation, f, cmd.ctx.extended_faults),
        };
        self.cache(
            &cmd.ctx,
            &reply,
            None,
            now + timings.idempotency_outcome_minutes * MINUTE_MS,
            now,
            &mut step,
        );
        step.reply = Some(reply);
        step
    }

    /// The checks that refuse the whole request before anything changes.
    fn check_outcome(&self, cmd: &OutcomeCommand) -> Result<(), NodeFault> {
        for (i, token) in cmd.tokens.iter().enumerate() {
            if cmd.tokens[..i].contains(token) {
                return Err(NodeFault::Semantica(format!(
                    "paymentToken {token} repeated"
                )));
            }
            // Tokens are looked up as (token, PSP): another PSP's token is unknown to this one.
            let p = match self.payments.get(token.as_str()) {
                Some(p) if p.psp.id_psp == cmd.ctx.psp.id_psp => p,
                _ => return Err(NodeFault::TokenSconosciuto),
            };
            if let Some(done) = &p.outcome {
                let agree = if done.outcome == cmd.outcome {
                    "concorde"
                } else {
                    "discorde"
                };
                return Err(NodeFault::EsitoGiaAcquisito(format!(
                    "Esito {agree}: {}",
                    outcome_json(token, done)
                )));
            }
        }
        if cmd.outcome == Outcome::Ok {
            let Some(details) = &cmd.details else {
                return Err(NodeFault::Semantica(
                    "details obbligatorio con outcome OK".into(),
                ));
            };
            self.check_stamps(cmd, details)?;
        }
        Ok(())
    }

    /// Every digital-stamp transfer of every token needs its `MBDAttachment`, and every
    /// attachment a stamp transfer (official BDD tests `MBD/*`: `PPT_SEMANTICA` "Check marca da
    /// bollo").
    fn check_stamps(
        &self,
        cmd: &OutcomeCommand,
        details: &OutcomeDetailsV2,
    ) -> Result<(), NodeFault> {
        let stamps: Vec<_> = details
            .marche_da_bollo
            .iter()
            .flat_map(|l| l.marca_da_bollo.iter())
            .collect();
        let mut used = 0;
        for token in &cmd.tokens {
            let Some(p) = self.payments.get(token.as_str()) else {
                continue;
            };
            for t in p.data.transfer_list.transfer.iter() {
                if matches!(t.account, PaCreditAccount::Stamp(_)) {
                    if !stamps
                        .iter()
                        .any(|m| &m.payment_token == token && m.id_transfer == t.id_transfer)
                    {
                        return Err(NodeFault::Semantica("Check marca da bollo".into()));
                    }
                    used += 1;
                }
            }
        }
        if used != stamps.len() {
            return Err(NodeFault::Semantica("Check marca da bollo".into()));
        }
        Ok(())
    }

    /// One token's outcome. Returns the fault to answer with, if any.
    fn apply_outcome(
        &mut self,
        reg: &Registry,
        cmd: &OutcomeCommand,
        token: &PaymentToken,
        now: Millis,
        step: &mut Step,
    ) -> Option<NodeFault> {
        // In official expiry mode an expired token the cancellation job has not cancelled is
        // processed as if it were valid (official BDD tests retry_PaNew_01/03, SPO_REV_03).
        if self.lapsed(token.as_str(), reg.timings().expiry, now) {
            self.expire(token.as_str(), now, step);
        }
        let p = self.payments.get(token.as_str())?.clone();
        let record = OutcomeRecord {
            outcome: cmd.outcome,
            received_at: now,
            psp: cmd.ctx.psp.clone(),
            version: cmd.version,
            details: cmd.details.clone(),
        };
        match p.status {
            PaymentStatus::Paying => {
                step.disarm.push(p.token.clone());
                self.accept_outcome(reg, token, record, now, step, None);
                None
            }
            PaymentStatus::Cancelled => self.late_outcome(reg, token, record, now, step),
            // Refused by check_outcome.
            PaymentStatus::Paid | PaymentStatus::Notified | PaymentStatus::Failed => None,
        }
    }

    /// An outcome on a token whose deadline passed (official BDD tests `PAG-1976.feature`,
    /// `RetryATokenScaduto/retry_PaNew_0*`, SEM_SPO_13/13.1).
    fn late_outcome(
        &mut self,
        reg: &Registry,
        token: &PaymentToken,
        record: OutcomeRecord,
        now: Millis,
        step: &mut Step,
    ) -> Option<NodeFault> {
        let p = self.payments.get(token.as_str())?.clone();
        // The token now paying on the notice may be overdue itself: in eager mode its deadline
        // is honoured before its timer fires, so the notice is free for this outcome; in
        // official mode it holds the notice until the cancellation job.
        if let Some(NoticeState::Paying(other)) = self.notice(&p.notice).map(|n| n.state.clone())
            && self.lapsed(other.as_str(), reg.timings().expiry, now)
        {
            self.expire(other.as_str(), now, step);
        }
        let state = self
            .notice(&p.notice)
            .map(|n| n.state.clone())
            .unwrap_or(NoticeState::Free);
        let taken = self.activating.contains_key(&p.notice);
        let fault = match (&state, record.outcome) {
            // The money was taken and nobody else has paid or is paying: complete the payment.
            (NoticeState::Free, Outcome::Ok) if !taken => NodeFault::TokenScaduto,
            (NoticeState::Free, Outcome::Ko) | (NoticeState::Paying(_), Outcome::Ko) => {
                NodeFault::TokenScadutoKo
            }
            _ if taken && record.outcome == Outcome::Ko => NodeFault::TokenScadutoKo,
            _ => NodeFault::PagamentoDuplicato,
        };
        let event = StateEvent::for_payment(now, EventKind::LateOutcome, &p)
            .outcome(fault.code())
            .detail(format!("late outcome {}", record.outcome));
        step.writes.push(Write::Event(event));
        match fault {
            NodeFault::TokenScaduto => {
                self.accept_outcome(reg, token, record, now, step, Some(fault.code()))
            }
            NodeFault::TokenScadutoKo if state == NoticeState::Free && !taken => {
                self.accept_outcome(reg, token, record, now, step, Some(fault.code()))
            }
            _ => {}
        }
        Some(fault)
    }

    /// Records an outcome: OK completes the payment (receipt), KO fails it and frees the notice.
    /// Either way the activation's idempotency entry goes (official BDD tests
    /// IDMP_SPO_08/09/10/19).
    fn accept_outcome(
        &mut self,
        reg: &Registry,
        token: &PaymentToken,
        record: OutcomeRecord,
        now: Millis,
        step: &mut Step,
        late: Option<&str>,
    ) {
        let Some(mut p) = self.payments.get(token.as_str()).cloned() else {
            return;
        };
        self.uncache_activation(&p, now, step);
        let outcome = record.outcome;
        let event =
            StateEvent::for_payment(now, EventKind::OutcomeAccepted, &p).outcome(outcome.as_str());
        step.writes.push(Write::Event(match late {
            Some(code) => event.detail(format!("accepted after the deadline, answered {code}")),
            None => event,
        }));
        match outcome {
            Outcome::Ok => self.complete_payment(reg, p, record, now, step),
            Outcome::Ko => {
                p.status = PaymentStatus::Failed;
                p.outcome = Some(record);
                history::payment(step, now, &p, PositionPaymentStatus::Failed);
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
                self.set_payment(p, now, step);
            }
        }
    }
}

fn ok_response(version: Version) -> Reply {
    Reply::ok(match version {
        Version::V1 => write_envelope(&SendPaymentOutcomeRes {
            outcome: Outcome::Ok,
            fault: None,
        }),
        Version::V2 => write_envelope(&SendPaymentOutcomeV2Response {
            outcome: Outcome::Ok,
            fault: None,
        }),
    })
}

/// The outcome already acquired, as the official node describes it: a JSON object with the keys
/// in alphabetical order and the fee as a bare number.
fn outcome_json(token: &PaymentToken, done: &OutcomeRecord) -> String {
    let mut fields: Vec<(&str, String)> = Vec::new();
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    if let Some(d) = &done.details {
        fields.push(("applicationDate", q(d.application_date.as_str())));
        fields.push(("fee", d.fee.to_string()));
    }
    fields.push(("outcome", q(done.outcome.as_str())));
    if let Some(d) = &done.details {
        if let Some(payer) = &d.payer {
            fields.push((
                "payerEntityUniqueIdentifierValue",
                q(&payer.unique_identifier.entity_unique_identifier_value),
            ));
        }
        if let Some(ch) = d.payment_channel {
            fields.push(("paymentChannel", q(ch.as_str())));
        }
        fields.push(("paymentMethod", q(d.payment_method.as_str())));
    }
    fields.push(("paymentToken", q(token.as_str())));
    if let Some(d) = &done.details {
        fields.push(("transferDate", q(d.transfer_date.as_str())));
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}
