//! activatePaymentNotice(V2): lock the notice, get the payment data from the EC, issue the token
//! (the official BDD tests `NewMod3/primitives/activatePaymentNotice_*` and
//! `NewMod3/flows/activatePaymentNotice/*`). Two steps around the EC call: [`Engine::activate`] reserves the
//! notice, [`Engine::activation_completed`] (or [`Engine::activation_failed`]) finishes.

use std::collections::HashSet;

use super::{
    ActivationRequest, Engine, EventKind, Millis, NoticeKey, NoticeState, Payment, PaymentStatus,
    PositionPaymentStatus, PositionStatus, Reply, RequestCtx, StateEvent, StationRef, Step,
    Version, Write, history,
};
use crate::codec::node_for_psp::{
    ActivatePaymentNoticeRes, ActivatePaymentNoticeV2Response, PspCreditAccount, TransferListPsp,
    TransferListPspV2, TransferPsp, TransferPspV2,
};
use crate::codec::pa_for_node::{
    PaCreditAccount, PaymentPa, PaymentPaV2, TransferListPaV2, TransferPaV2,
};
use crate::codec::schema::Bounded;
use crate::codec::types::{Amount, Iban, Outcome, PaymentToken, Text140};
use crate::codec::write_envelope;
use crate::config::{ExpiryMode, Timings};
use crate::fault::NodeFault;
use crate::registry::Registry;

/// An activation request that passed the registry checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivateCommand {
    pub ctx: RequestCtx,
    pub version: Version,
    pub notice: NoticeKey,
    pub station: StationRef,
    /// A fresh token (the engine has no randomness).
    pub token: PaymentToken,
    pub request: ActivationRequest,
    /// The outcome deadline of the caller's channel, for notices created by demand.
    pub outcome_deadline_ms: u64,
}

/// What the driver does next.
#[derive(Debug)]
pub enum ActivateStep {
    /// The notice is reserved: call paGetPayment, then `activation_completed` or
    /// `activation_failed`. The step holds writes that must be committed anyway (an expired token
    /// found on the notice).
    CallEc(Step),
    /// Answered without calling the EC (refused).
    Done(Step),
}

const MINUTE_MS: u64 = 60_000;

impl Engine {
    /// Checks `expirationTime` and the notice's state, then reserves the notice for this token.
    pub fn activate(
        &mut self,
        timings: &Timings,
        cmd: ActivateCommand,
        now: Millis,
    ) -> ActivateStep {
        if let Some(step) = self.answered_meanwhile(&cmd.ctx, now) {
            return ActivateStep::Done(step);
        }
        if let Some(ms) = cmd.request.expiration_ms {
            if ms > timings.token_max_ms as i64 {
                let fault = NodeFault::Autorizzazione(format!(
                    "expirationTime deve essere <= {}",
                    timings.token_max_ms
                ));
                return ActivateStep::Done(self.refuse(&cmd.ctx, &fault, timings, now));
            }
            if ms <= 0 {
                let fault = NodeFault::Semantica("expirationTime deve essere > 0".into());
                return ActivateStep::Done(self.refuse(&cmd.ctx, &fault, timings, now));
            }
        }
        if self.activating.contains_key(&cmd.notice) {
            return ActivateStep::Done(self.refuse(
                &cmd.ctx,
                &NodeFault::PagamentoInCorso,
                timings,
                now,
            ));
        }
        let mut step = Step::default();
        let state = self
            .notice(&cmd.notice)
            .map(|n| n.state.clone())
            .unwrap_or(NoticeState::Free);
        match state {
            NoticeState::Free => {}
            NoticeState::Paid(_) => {
                return ActivateStep::Done(self.refuse(
                    &cmd.ctx,
                    &NodeFault::PagamentoDuplicato,
                    timings,
                    now,
                ));
            }
            NoticeState::Paying(token) => {
                // A deadline that passed is honoured even if its timer has not fired yet (in
                // official mode the token keeps the notice until the cancellation job).
                if self.lapsed(token.as_str(), timings.expiry, now) {
                    self.expire(token.as_str(), now, &mut step);
                } else {
                    return ActivateStep::Done(self.refuse(
                        &cmd.ctx,
                        &NodeFault::PagamentoInCorso,
                        timings,
                        now,
                    ));
                }
            }
        }
        let base = self
            .notice(&cmd.notice)
            .cloned()
            .unwrap_or_else(|| super::Notice::free(cmd.notice.clone()));
        self.activating_tokens
            .insert(cmd.token.clone(), cmd.notice.clone());
        self.activating.insert(cmd.notice.clone(), (cmd, base));
        ActivateStep::CallEc(step)
    }

    /// Drops the reservation of an activation that will run again (its commit lost a race).
    pub fn activation_abandoned(&mut self, token: &str) {
        self.take_reservation(token);
    }

    fn take_reservation(&mut self, token: &str) -> Option<(ActivateCommand, super::Notice)> {
        let key = self.activating_tokens.remove(token)?;
        self.activating.remove(&key)
    }

    /// paGetPayment failed (or its data broke a node rule): the notice is free again, the PSP
    /// gets the fault, cached under its key.
    pub fn activation_failed(
        &mut self,
        timings: &Timings,
        token: &str,
        fault: &NodeFault,
        now: Millis,
    ) -> Step {
        match self.take_reservation(token) {
            Some((cmd, _)) => self.refuse(&cmd.ctx, fault, timings, now),
            None => Step::default(),
        }
    }

    /// paGetPayment answered: the payment starts, the token is issued.
    pub fn activation_completed(
        &mut self,
        reg: &Registry,
        token: &str,
        data: PaymentPaV2,
        now: Millis,
    ) -> Step {
        let timings = reg.timings();
        let Some((cmd, base)) = self.take_reservation(token) else {
            return Step::default();
        };
        if let Err(fault) = check_payment_data(reg, &cmd.notice, &data, cmd.version) {
            return self.refuse(&cmd.ctx, &fault, timings, now);
        }
        let demanded = base.demanded_at;
        let lifetime = cmd
            .request
            .expiration_ms
            .map(|ms| ms as u64)
            .unwrap_or(timings.token_default_ms);
        // The official node has no outcome deadline of its own for spontaneous payments: "entro
        // 2 sec" is the PSP's service level (SANP, "Livelli di servizio PSP", TPSPO); only the
        // token lifetime applies.
        let deadline = now
            + if demanded.is_some() && timings.expiry == ExpiryMode::Eager {
                cmd.outcome_deadline_ms
            } else {
                lifetime
            };
        let payment = Payment {
            token: cmd.token.clone(),
            notice: cmd.notice.clone(),
            psp: cmd.ctx.psp.clone(),
            psp_version: cmd.version,
            station: cmd.station.clone(),
            idempotency_key: cmd
                .ctx
                .idem
                .as_ref()
                .and_then(|i| crate::codec::types::IdempotencyKey::new(i.key.key.clone()).ok()),
            request: cmd.request.clone(),
            data,
            activated_at: now,
            deadline,
            status: PaymentStatus::Paying,
            outcome: None,
            revision: 0,
        };
        let reply = activate_response(&payment);
        let mut step = Step::default();
        let notice = super::Notice {
            state: NoticeState::Paying(cmd.token.clone()),
            ..base
        };
        self.set_notice(notice, now, &mut step);
        history::position(&mut step, now, &payment, PositionStatus::Paying);
        history::payment(&mut step, now, &payment, PositionPaymentStatus::Paying);
        step.writes.push(Write::Event(
            StateEvent::for_payment(now, EventKind::Activated, &payment).outcome("OK"),
        ));
        step.arm.push((payment.token.clone(), deadline));
        let valid_to = now + (timings.idempotency_activate_minutes * MINUTE_MS).min(deadline - now);
        self.cache(
            &cmd.ctx,
            &reply,
            Some(payment.token.clone()),
            valid_to,
            now,
            &mut step,
        );
        self.set_payment(payment, now, &mut step);
        step.reply = Some(reply);
        step
    }
}

/// The node's checks on the EC's payment data (SANP, "Integrazione tramite API sincrone",
/// paGetPayment; official BDD tests `paGetPaymentRes_semantic_ko.feature`, SEM_PGPR_03–06): amounts
/// add up, every beneficiary EC is known and enabled, IBANs are registered for their EC and
/// usable towards the PSP, transfer ids are distinct; a digital stamp needs activate V2.
pub fn check_payment_data(
    reg: &Registry,
    notice: &NoticeKey,
    data: &PaymentPaV2,
    version: Version,
) -> Result<(), NodeFault> {
    let bad = |why: String| Err(NodeFault::StazioneIntPaErroreResponse(why));
    let mut sum: u64 = 0;
    let mut ids = HashSet::new();
    for t in data.transfer_list.transfer.iter() {
        sum += t.transfer_amount.cents();
        if !ids.insert(t.id_transfer) {
            return bad(format!("idTransfer {} repeated", t.id_transfer.get()));
        }
        let ec = match reg.ec(&t.fiscal_code_pa) {
            Some(ec) if ec.enabled => ec,
            Some(_) => {
                return bad(format!(
                    "transfer {}: creditor entity {} is disabled",
                    t.id_transfer.get(),
                    t.fiscal_code_pa
                ));
            }
            None => {
                return bad(format!(
                    "transfer {}: creditor entity {} is unknown",
                    t.id_transfer.get(),
                    t.fiscal_code_pa
                ));
            }
        };
        match &t.account {
            PaCreditAccount::Iban(iban) => {
                if Iban::new(iban.as_str()).is_err() {
                    return bad(format!(
                        "transfer {}: IBAN '{}' is not a valid IBAN",
                        t.id_transfer.get(),
                        iban
                    ));
                }
                if !reg.iban_registered(ec, iban) {
                    return bad(format!(
                        "transfer {}: IBAN {} is not registered for {}",
                        t.id_transfer.get(),
                        iban,
                        ec.fiscal_code
                    ));
                }
            }
            PaCreditAccount::Stamp(_) if version == Version::V1 => {
                return Err(NodeFault::Semantica("Pagamento non attivabile".into()));
            }
            PaCreditAccount::Stamp(_) => {}
        }
    }
    if sum != data.payment_amount.cents() {
        return bad(format!(
            "paymentAmount {} differs from the sum of the transfers {}",
            data.payment_amount,
            Amount::from_cents(sum)
                .map(|a| a.to_string())
                .unwrap_or_else(|_| sum.to_string())
        ));
    }
    if reg.ec(&notice.fiscal_code).is_none() {
        return bad(format!("notice owner {} unknown", notice.fiscal_code));
    }
    Ok(())
}

/// paGetPayment (V1) data in the V2 shape the engine keeps: `companyName` falls back to the
/// EC's registered name (it is required in receipts).
pub fn data_from_v1(data: PaymentPa, fallback_company: &str) -> PaymentPaV2 {
    let transfers = data
        .transfer_list
        .transfer
        .into_vec()
        .into_iter()
        .map(|t| TransferPaV2 {
            id_transfer: t.id_transfer,
            transfer_amount: t.transfer_amount,
            fiscal_code_pa: t.fiscal_code_pa,
            company_name: None,
            account: PaCreditAccount::Iban(t.iban),
            remittance_information: t.remittance_information,
            transfer_category: t.transfer_category,
            metadata: t.metadata,
        })
        .collect();
    PaymentPaV2 {
        creditor_reference_id: data.creditor_reference_id,
        payment_amount: data.payment_amount,
        due_date: data.due_date,
        retention_date: data.retention_date,
        last_payment: data.last_payment,
        description: data.description,
        company_name: data
            .company_name
            .unwrap_or_else(|| Text140::truncated(fallback_company)),
        office_name: data.office_name,
        debtor: data.debtor,
        transfer_list: TransferListPaV2 {
            transfer: Bounded::new(transfers).expect("same number of transfers"),
        },
        metadata: data.metadata,
    }
}

/// The OK answer to the PSP, in the version it used.
fn activate_response(p: &Payment) -> Reply {
    let d = &p.data;
    let psp_iban = |a: &PaCreditAccount| match a {
        PaCreditAccount::Iban(i) => Iban::new(i.as_str()).ok(),
        PaCreditAccount::Stamp(_) => None,
    };
    match p.psp_version {
        Version::V1 => {
            let transfers = d
                .transfer_list
                .transfer
                .iter()
                .filter_map(|t| {
                    Some(TransferPsp {
                        id_transfer: t.id_transfer,
                        transfer_amount: t.transfer_amount.amount(),
                        fiscal_code_pa: t.fiscal_code_pa.clone(),
                        iban: psp_iban(&t.account)?,
                        remittance_information: t.remittance_information.clone(),
                        metadata: t.metadata.clone(),
                    })
                })
                .collect();
            Reply::ok(write_envelope(&ActivatePaymentNoticeRes {
                outcome: Outcome::Ok,
                fault: None,
                total_amount: Some(d.payment_amount.amount()),
                payment_description: Some(d.description.clone()),
                fiscal_code_pa: Some(p.notice.fiscal_code.clone()),
                company_name: Some(d.company_name.clone()),
                office_name: d.office_name.clone(),
                payment_token: Some(p.token.clone()),
                transfer_list: Bounded::new(transfers).map(|transfer| TransferListPsp { transfer }),
                creditor_reference_id: Some(d.creditor_reference_id.clone()),
                standin: None,
            }))
        }
        Version::V2 => {
            let transfers = d
                .transfer_list
                .transfer
                .iter()
                .map(|t| TransferPspV2 {
                    id_transfer: t.id_transfer,
                    transfer_amount: t.transfer_amount.amount(),
                    fiscal_code_pa: t.fiscal_code_pa.clone(),
                    company_name: t.company_name.clone(),
                    account: match &t.account {
                        PaCreditAccount::Iban(_) => {
                            psp_iban(&t.account).map(PspCreditAccount::Iban)
                        }
                        PaCreditAccount::Stamp(s) => Some(PspCreditAccount::Stamp(s.clone())),
                    },
                    remittance_information: t.remittance_information.clone(),
                    transfer_category: Some(t.transfer_category.clone()),
                    metadata: t.metadata.clone(),
                })
                .collect();
            Reply::ok(write_envelope(&ActivatePaymentNoticeV2Response {
                outcome: Outcome::Ok,
                fault: None,
                total_amount: Some(d.payment_amount.amount()),
                payment_description: Some(d.description.clone()),
                fiscal_code_pa: Some(p.notice.fiscal_code.clone()),
                company_name: Some(d.company_name.clone()),
                office_name: d.office_name.clone(),
                payment_token: Some(p.token.clone()),
                transfer_list: Bounded::new(transfers)
                    .map(|transfer| TransferListPspV2 { transfer }),
                metadata: d.metadata.clone(),
                creditor_reference_id: Some(d.creditor_reference_id.clone()),
                suggested_user_fee: None,
                suggested_pa_fee: None,
                suggested_id_bundle: None,
                suggested_id_ci_bundle: None,
                all_ccp: None,
                standin: None,
            }))
        }
    }
}

impl Engine {
    /// Whether the notice can be paid now, as verifyPaymentNotice reports it: a live token gives
    /// PPT_PAGAMENTO_IN_CORSO (in official expiry mode, an expired one the cancellation job has
    /// not cancelled too), a paid notice PPT_PAGAMENTO_DUPLICATO. No side effects.
    pub fn payable(
        &self,
        key: &NoticeKey,
        expiry: ExpiryMode,
        now: Millis,
    ) -> Result<(), NodeFault> {
        if self.activating.contains_key(key) {
            return Err(NodeFault::PagamentoInCorso);
        }
        match self.notice(key).map(|n| &n.state) {
            None | Some(NoticeState::Free) => Ok(()),
            Some(NoticeState::Paid(_)) => Err(NodeFault::PagamentoDuplicato),
            Some(NoticeState::Paying(t)) if self.lapsed(t.as_str(), expiry, now) => Ok(()),
            Some(NoticeState::Paying(_)) => Err(NodeFault::PagamentoInCorso),
        }
    }

    /// demandPaymentNotice created this notice: its payments get the outcome deadline.
    pub fn record_demand(&mut self, key: &NoticeKey, now: Millis) -> Step {
        let mut step = Step::default();
        let notice = self
            .notice(key)
            .cloned()
            .unwrap_or_else(|| super::Notice::free(key.clone()));
        if notice.state == NoticeState::Free {
            step.writes.push(Write::Event(StateEvent {
                at: now,
                kind: EventKind::NoticeDemanded,
                notice: Some(key.clone()),
                token: None,
                psp: None,
                channel: None,
                station: None,
                outcome: Some("OK"),
                detail: None,
            }));
            self.set_notice(
                super::Notice {
                    demanded_at: Some(now),
                    ..notice
                },
                now,
                &mut step,
            );
        }
        step
    }
}
