//! A payment's whole story: every attempt on a notice with its messages, classified as an
//! e-commerce payment console shows them.

use serde_json::{Value, json};

use super::JournalEntry;
use crate::engine::{NoticeKey, Payment, PaymentStatus, Recipient};
use crate::store::{JournalQuery, JournalRow, Store, StoreError};

/// How a payment attempt ended, from the PSP's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Outcome OK: the payment was completed.
    Positive,
    /// Outcome KO, or the activation was refused.
    Negative,
    /// No outcome before the deadline, or contradicting outcomes: someone must check.
    ToVerify,
    /// Still waiting for the outcome.
    InProgress,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Positive => "POSITIVE",
            Classification::Negative => "NEGATIVE",
            Classification::ToVerify => "TO_VERIFY",
            Classification::InProgress => "IN_PROGRESS",
        }
    }
}

/// Classifies an attempt from its payment record and its journal rows.
pub fn classify(p: &Payment, rows: &[&JournalEntry]) -> Classification {
    let contradicted = rows.iter().any(|e| e.detail.as_deref().is_some_and(|d| d.contains("Esito discorde")) || e.payload.as_deref().is_some_and(|d| d.contains("Esito discorde")));
    match p.status {
        PaymentStatus::Paying => Classification::InProgress,
        PaymentStatus::Cancelled => Classification::ToVerify,
        _ if contradicted => Classification::ToVerify,
        PaymentStatus::Paid | PaymentStatus::Notified => Classification::Positive,
        PaymentStatus::Failed => Classification::Negative,
    }
}

/// ISO 8601 UTC with milliseconds, the journal's `dataOraEvento` format.
pub fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A journal row as JSON, with the official field names.
pub fn row_json(row: &JournalRow) -> Value {
    let e = &row.entry;
    json!({
        "id": row.id,
        "dataOraEvento": timestamp(e.at),
        "componente": e.component,
        "categoriaEvento": e.category.map(|c| c.as_str()),
        "tipoEvento": e.primitive,
        "sottoTipoEvento": e.subtype.map(|s| s.as_str()),
        "identificativoDominio": e.fiscal_code,
        "numeroAvviso": e.notice_number,
        "identificativoUnivocoVersamento": e.iuv,
        "codiceContestoPagamento": e.token,
        "identificativoPrestatoreServiziPagamento": e.psp,
        "canalePagamento": e.channel,
        "identificativoStazioneIntermediarioPA": e.station,
        "esito": e.outcome,
        "identificativoFruitore": e.caller,
        "identificativoErogatore": e.callee,
        "durataMs": e.duration_ms,
        "dettaglio": e.detail,
        "payload": e.payload,
    })
}

fn recipient_json(r: &Recipient) -> Value {
    json!({
        "station": r.station.as_str(),
        "idPA": r.ec.as_str(),
        "version": r.version.number(),
        "status": r.status.as_str(),
        "attempts": r.attempts,
        "nextAttemptAt": timestamp(r.next_attempt_at),
        "lastError": r.last_error,
    })
}

/// Everything about a notice: its payments in order, each classified, with receipts and
/// recipients, and the journal rows behind them.
pub fn notice_story(store: &dyn Store, key: &NoticeKey) -> Result<Value, StoreError> {
    let payments = store.payments_of_notice(key)?;
    let rows = store.query_journal(&JournalQuery { notice_number: Some(key.notice_number.to_string()), limit: 10_000, ..JournalQuery::default() })?;
    let mut rows: Vec<JournalRow> = rows.into_iter().filter(|r| r.entry.fiscal_code.as_deref().is_none_or(|f| f == key.fiscal_code.as_str())).collect();
    // Exchanges are journaled when they end: order the story by when things happened.
    rows.sort_by_key(|r| (r.entry.at, r.id));
    let mut attempts = Vec::new();
    for p in &payments {
        let own: Vec<&JournalEntry> = rows.iter().filter(|r| r.entry.token.as_deref() == Some(p.token.as_str())).map(|r| &r.entry).collect();
        let recipients = store.load_recipients(p.token.as_str())?;
        attempts.push(json!({
            "paymentToken": p.token.as_str(),
            "classification": classify(p, &own).as_str(),
            "status": p.status.as_str(),
            "idPSP": p.psp.id_psp.as_str(),
            "idChannel": p.psp.id_channel.as_str(),
            "station": p.station.id.as_str(),
            "amount": p.data.payment_amount.to_string(),
            "activatedAt": timestamp(p.activated_at),
            "deadline": timestamp(p.deadline),
            "outcome": p.outcome.as_ref().map(|o| json!({ "outcome": o.outcome.as_str(), "receivedAt": timestamp(o.received_at), "idPSP": o.psp.id_psp.as_str() })),
            "recipients": recipients.iter().map(recipient_json).collect::<Vec<_>>(),
        }));
    }
    // Activations refused before a token existed are attempts too.
    for r in rows.iter().filter(|r| {
        matches!(r.entry.primitive.as_str(), "activatePaymentNotice" | "activatePaymentNoticeV2")
            && r.entry.subtype == Some(super::Subtype::Resp)
            && r.entry.component == "nodeForPsp"
            && r.entry.outcome.as_deref().is_some_and(|o| o != "OK")
            && r.entry.token.is_none()
    }) {
        attempts.push(json!({
            "paymentToken": null,
            "classification": Classification::Negative.as_str(),
            "status": "REFUSED",
            "idPSP": r.entry.psp,
            "refusedWith": r.entry.outcome,
            "at": timestamp(r.entry.at),
        }));
    }
    Ok(json!({
        "fiscalCode": key.fiscal_code.as_str(),
        "noticeNumber": key.notice_number.as_str(),
        "attempts": attempts,
        "journal": rows.iter().map(row_json).collect::<Vec<_>>(),
    }))
}
