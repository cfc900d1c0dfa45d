//! Receipts: built once when a payment completes, then copied to every recipient station
//! (official BDD tests `Mod4/flows/demandPaymentNotice_flow.feature` F_DPNR_10–20,
//! `NewMod3/flows/paSendRTV2_NM3.feature`, `TestGenerazioneRicevute/*`): the notice owner's station, plus every broadcast station of
//! each other EC named in the transfers. Every copy has the same `receipt` element; only the PA
//! block (`idPA`, `idBrokerPA`, `idStation`) and the primitive version (by station) differ.

use super::{
    CopyParts, Engine, EventKind, Millis, Notice, NoticeState, OutcomeRecord, Payment,
    PaymentStatus, PositionPaymentStatus, PositionStatus, ReceiptRecipientStatus, ReceiptRecord,
    Recipient, RecipientStatus, StateEvent, Step, Version, Write, history,
};
use crate::codec::pa_for_node::{
    PaCreditAccount, PaSendRtReq, PaSendRtV2Request, Receipt, ReceiptCreditAccount, ReceiptV2,
    TransferListPa, TransferListPaReceiptV2, TransferPa, TransferPaReceiptV2,
};
use crate::codec::schema::Bounded;
use crate::codec::types::{FiscalCode, IsoDateTime, Outcome, Text20, Text35, Text70, XsdString};
use crate::codec::write_envelope;
use crate::config::StationConfig;
use crate::registry::Registry;

impl Engine {
    /// An OK outcome: the payment is PAID, the notice paid, the receipt generated and queued for
    /// every recipient.
    pub(super) fn complete_payment(
        &mut self,
        reg: &Registry,
        mut p: Payment,
        record: OutcomeRecord,
        now: Millis,
        step: &mut Step,
    ) {
        p.status = PaymentStatus::Paid;
        p.outcome = Some(record);
        history::payment(step, now, &p, PositionPaymentStatus::Paid);
        if let Some(n) = self.notice(&p.notice).cloned() {
            self.set_notice(
                Notice {
                    state: NoticeState::Paid(p.token.clone()),
                    ..n
                },
                now,
                step,
            );
            history::position(step, now, &p, PositionStatus::Paid);
        }
        history::payment(step, now, &p, PositionPaymentStatus::NoticeGenerated);
        let receipt = build_receipt(reg, &p);
        let receipt_id = p.token.clone();
        let mut record = ReceiptRecord {
            receipt_id: receipt_id.clone(),
            notice: p.notice.clone(),
            body_v1: None,
            body_v2: None,
            created_at: now,
        };
        let mut recipients = Vec::new();
        for (station, ec) in recipients_of(reg, &p) {
            let (version, request) = recipient_request(station, &ec, &receipt);
            let body = match version {
                Version::V1 => &mut record.body_v1,
                Version::V2 => &mut record.body_v2,
            };
            if body.is_none() {
                *body = CopyParts::split(&request).map(|c| c.body.to_string());
            }
            recipients.push(Recipient {
                receipt_id: receipt_id.clone(),
                station: Text35::truncated(&station.id),
                ec,
                version,
                request,
                status: RecipientStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
            });
        }
        step.writes.push(Write::Receipt(record));
        for r in &recipients {
            step.writes.push(Write::Recipient(r.clone()));
            history::recipient(
                step,
                now,
                &p.notice,
                r,
                ReceiptRecipientStatus::NoticeGenerated,
            );
            step.deliver.push((r.key(), now));
        }
        let names: Vec<&str> = recipients.iter().map(|r| r.station.as_str()).collect();
        step.writes.push(Write::Event(
            StateEvent::for_payment(now, EventKind::ReceiptGenerated, &p)
                .outcome("OK")
                .detail(format!("recipients: {}", names.join(", "))),
        ));
        self.recipients.insert(receipt_id, recipients);
        self.set_payment(p, now, step);
    }
}

/// The stations a receipt goes to, each once, with the `idPA` of its copy.
fn recipients_of<'r>(reg: &'r Registry, p: &Payment) -> Vec<(&'r StationConfig, FiscalCode)> {
    let mut out: Vec<(&StationConfig, FiscalCode)> = Vec::new();
    if let Some(owner) = reg.station(&p.station.id) {
        out.push((owner, p.notice.fiscal_code.clone()));
    }
    for t in p.data.transfer_list.transfer.iter() {
        if t.fiscal_code_pa == p.notice.fiscal_code
            || out.iter().any(|(_, ec)| ec == &t.fiscal_code_pa)
        {
            continue;
        }
        for st in reg.broadcast_stations(&t.fiscal_code_pa) {
            if !out.iter().any(|(s, _)| s.id == st.id) {
                out.push((st, t.fiscal_code_pa.clone()));
            }
        }
    }
    out
}

/// The receipt, from the activation, the EC's payment data, the outcome and the registry.
fn build_receipt(reg: &Registry, p: &Payment) -> ReceiptV2 {
    let record = p
        .outcome
        .as_ref()
        .expect("a completed payment has its outcome");
    let details = record.details.as_ref();
    let psp = reg.psp(&record.psp.id_psp);
    let stamp_for = |t: &crate::codec::pa_for_node::TransferPaV2| {
        details
            .and_then(|d| d.marche_da_bollo.as_ref())
            .and_then(|l| {
                l.marca_da_bollo
                    .iter()
                    .find(|m| m.payment_token == p.token && m.id_transfer == t.id_transfer)
            })
            .map(|m| m.mbd_attachment.clone())
    };
    let transfers: Vec<TransferPaReceiptV2> = p
        .data
        .transfer_list
        .transfer
        .iter()
        .map(|t| TransferPaReceiptV2 {
            id_transfer: t.id_transfer,
            transfer_amount: t.transfer_amount,
            fiscal_code_pa: t.fiscal_code_pa.clone(),
            company_name: t.company_name.clone(),
            account: match &t.account {
                PaCreditAccount::Iban(i) => ReceiptCreditAccount::Iban(i.clone()),
                // The outcome checks guarantee the attachment is there.
                PaCreditAccount::Stamp(_) => ReceiptCreditAccount::MbdAttachment(
                    stamp_for(t).unwrap_or_else(|| crate::codec::types::Base64Binary(Vec::new())),
                ),
            },
            remittance_information: t.remittance_information.clone(),
            transfer_category: t.transfer_category.clone(),
            metadata: t.metadata.clone(),
        })
        .collect();
    let paid_at =
        chrono::DateTime::from_timestamp_millis(record.received_at as i64).unwrap_or_default();
    ReceiptV2 {
        receipt_id: XsdString::truncated(p.token.as_str()),
        notice_number: p.notice.notice_number.clone(),
        fiscal_code: p.notice.fiscal_code.clone(),
        outcome: Outcome::Ok,
        creditor_reference_id: p.data.creditor_reference_id.clone(),
        payment_amount: p.data.payment_amount.amount(),
        description: p.data.description.clone(),
        company_name: p.data.company_name.clone(),
        office_name: p.data.office_name.clone(),
        debtor: p.data.debtor.clone(),
        transfer_list: TransferListPaReceiptV2 {
            transfer: Bounded::new(transfers).expect("1..5 transfers from the EC"),
        },
        id_psp: record.psp.id_psp.clone(),
        psp_fiscal_code: psp
            .and_then(|x| x.fiscal_code.as_deref())
            .map(Text70::truncated),
        psp_partita_iva: psp
            .and_then(|x| x.vat_number.as_deref())
            .map(Text20::truncated),
        psp_company_name: Text70::truncated(
            psp.map(|x| x.name.as_str())
                .unwrap_or(record.psp.id_psp.as_str()),
        ),
        id_channel: record.psp.id_channel.clone(),
        channel_description: Text35::truncated(
            details
                .and_then(|d| d.payment_channel)
                .map(|c| c.as_str())
                .unwrap_or("NA"),
        ),
        payer: details.and_then(|d| d.payer.clone()),
        payment_method: details.map(|d| Text35::truncated(d.payment_method.as_str())),
        payment_note: p.request.payment_note.clone(),
        fee: details.map(|d| d.fee),
        primary_ci_incurred_fee: details.and_then(|d| d.primary_ci_incurred_fee),
        id_bundle: details.and_then(|d| d.id_bundle.clone()),
        id_ci_bundle: details.and_then(|d| d.id_ci_bundle.clone()),
        payment_date_time: Some(IsoDateTime::from_utc(paid_at)),
        application_date: details.map(|d| d.application_date.clone()),
        transfer_date: details.map(|d| d.transfer_date.clone()),
        metadata: p.data.metadata.clone(),
        stand_in: None,
    }
}

/// The V1 form of a receipt (`ctReceipt`), for V1 stations: the same content minus the V2-only
/// elements. `None` when a transfer carries a digital stamp, which V1 cannot express.
pub fn render_receipt_v1(r: &ReceiptV2) -> Option<Receipt> {
    let transfers = r
        .transfer_list
        .transfer
        .iter()
        .map(|t| match &t.account {
            ReceiptCreditAccount::Iban(iban) => Some(TransferPa {
                id_transfer: t.id_transfer,
                transfer_amount: t.transfer_amount,
                fiscal_code_pa: t.fiscal_code_pa.clone(),
                iban: iban.clone(),
                remittance_information: t.remittance_information.clone(),
                transfer_category: t.transfer_category.clone(),
                metadata: t.metadata.clone(),
            }),
            ReceiptCreditAccount::MbdAttachment(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Receipt {
        receipt_id: r.receipt_id.clone(),
        notice_number: r.notice_number.clone(),
        fiscal_code: r.fiscal_code.clone(),
        outcome: r.outcome,
        creditor_reference_id: r.creditor_reference_id.clone(),
        payment_amount: r.payment_amount,
        description: r.description.clone(),
        company_name: r.company_name.clone(),
        office_name: r.office_name.clone(),
        debtor: r.debtor.clone(),
        transfer_list: TransferListPa {
            transfer: Bounded::new(transfers)?,
        },
        id_psp: r.id_psp.clone(),
        psp_fiscal_code: r.psp_fiscal_code.clone(),
        psp_partita_iva: r.psp_partita_iva.clone(),
        psp_company_name: r.psp_company_name.clone(),
        id_channel: r.id_channel.clone(),
        channel_description: r.channel_description.clone(),
        payer: r.payer.clone(),
        payment_method: r.payment_method.clone(),
        fee: r.fee,
        payment_date_time: r.payment_date_time.clone(),
        application_date: r.application_date.clone(),
        transfer_date: r.transfer_date.clone(),
        metadata: r.metadata.clone(),
        stand_in: r.stand_in,
    })
}

/// The paSendRT(V2) envelope for one station. A V1 station gets paSendRT unless the receipt
/// carries a digital stamp, which only paSendRTV2 can carry.
fn recipient_request(
    station: &StationConfig,
    ec: &FiscalCode,
    receipt: &ReceiptV2,
) -> (Version, String) {
    let id_pa = Text35::truncated(ec.as_str());
    let id_broker_pa = Text35::truncated(&station.broker);
    let id_station = Text35::truncated(&station.id);
    if Version::from_number(station.version) == Version::V1
        && let Some(v1) = render_receipt_v1(receipt)
    {
        return (
            Version::V1,
            write_envelope(&PaSendRtReq {
                id_pa,
                id_broker_pa,
                id_station,
                receipt: v1,
            }),
        );
    }
    (
        Version::V2,
        write_envelope(&PaSendRtV2Request {
            id_pa,
            id_broker_pa,
            id_station,
            receipt: receipt.clone(),
        }),
    )
}
