//! A payment's whole story: every attempt on a notice with its messages, classified as an
//! e-commerce payment console shows them.
//!
//! The story is read from the journal alone: state changes are journaled in the same
//! transaction as the change, so the journal knows every attempt's state. That lets the admin
//! API (which adds what the store holds: amounts, deadlines, receipt recipients) and the
//! `pagonode journal story` command (which reads only the journal, read-only) tell the same
//! story.

use serde_json::{Value, json};

use super::JournalRow;
use super::{Category, JournalEntry, Subtype};
use crate::engine::history::{
    POSITION_PAYMENT_STATUS, POSITION_RECEIPT_RECIPIENT_STATUS, POSITION_STATUS,
};
use crate::engine::{Millis, NoticeKey, Payment, PaymentStatus, Recipient, StatusOf, StatusRow};

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
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Positive => "POSITIVE",
            Classification::Negative => "NEGATIVE",
            Classification::ToVerify => "TO_VERIFY",
            Classification::InProgress => "IN_PROGRESS",
        }
    }
}

/// Classifies an attempt from its journal rows, in order: the last state change says where it
/// stands (activated: in progress; expired: to verify; outcome accepted: OK or KO), and an
/// outcome contradicting the one acquired ("Esito discorde") makes it one to verify.
pub fn classify(rows: &[&JournalEntry]) -> Classification {
    let contradicted = rows.iter().any(|e| {
        [&e.detail, &e.payload]
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains("Esito discorde")))
    });
    let mut state = Classification::InProgress;
    for e in rows
        .iter()
        .filter(|e| e.category == Some(Category::Internal))
    {
        match e.primitive.as_str() {
            "ACTIVATED" => state = Classification::InProgress,
            "EXPIRED" => state = Classification::ToVerify,
            "OUTCOME_ACCEPTED" if e.outcome.as_deref() == Some("OK") => {
                state = Classification::Positive
            }
            "OUTCOME_ACCEPTED" => state = Classification::Negative,
            _ => {}
        }
    }
    match state {
        Classification::Positive | Classification::Negative if contradicted => {
            Classification::ToVerify
        }
        s => s,
    }
}

/// What a payment's status alone says (for a payment whose journal rows are gone).
fn status_classification(s: PaymentStatus) -> Classification {
    match s {
        PaymentStatus::Paying => Classification::InProgress,
        PaymentStatus::Cancelled => Classification::ToVerify,
        PaymentStatus::Paid | PaymentStatus::Notified => Classification::Positive,
        PaymentStatus::Failed => Classification::Negative,
    }
}

/// ISO 8601 UTC with milliseconds, the journal's `dataOraEvento` format.
pub fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
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

/// One attempt to pay a notice: an activation that issued a token, or one that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// None for a refused activation.
    pub token: Option<String>,
    /// How it ended.
    pub classification: Classification,
    /// The PSP that asked for the activation.
    pub psp: Option<String>,
    /// The PSP's channel.
    pub channel: Option<String>,
    /// The station the notice was routed to.
    pub station: Option<String>,
    /// When the activation was asked for.
    pub at: Millis,
    /// The fault a refused activation got.
    pub refused_with: Option<String>,
    /// The attempt's journal rows, in order.
    pub row_ids: Vec<i64>,
}

fn is_activation(e: &JournalEntry) -> bool {
    e.component == "nodeForPsp"
        && matches!(
            e.primitive.as_str(),
            "activatePaymentNotice" | "activatePaymentNoticeV2"
        )
}

/// The rows of a notice's story, in the order things happened (exchanges are journaled when
/// they end, so ids alone would not do).
pub fn notice_rows(key: &NoticeKey, rows: Vec<JournalRow>) -> Vec<JournalRow> {
    let mut rows: Vec<JournalRow> = rows
        .into_iter()
        .filter(|r| {
            r.entry.notice_number.as_deref() == Some(key.notice_number.as_str())
                && r.entry
                    .fiscal_code
                    .as_deref()
                    .is_none_or(|f| f == key.fiscal_code.as_str())
        })
        .collect();
    rows.sort_by_key(|r| (r.entry.at, r.id));
    rows
}

/// The attempts of a notice, in the order they were made, from its rows (as [`notice_rows`]
/// orders them). A row belongs to the attempt whose token it carries, or, without a token, to
/// the activation it happened during (the paGetPayment call, the request of a refused
/// activation).
pub fn attempts(rows: &[JournalRow]) -> Vec<Attempt> {
    // (token, window of the activation exchange) for every activation answered.
    let mut found: Vec<(Option<String>, Millis, Millis, &JournalEntry)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let e = &r.entry;
        if !is_activation(e) || e.subtype != Some(Subtype::Resp) {
            continue;
        }
        let start = rows[..i]
            .iter()
            .rev()
            .find(|q| {
                is_activation(&q.entry)
                    && q.entry.subtype == Some(Subtype::Req)
                    && q.entry.token == e.token
                    && q.entry.psp == e.psp
            })
            .map_or(e.at, |q| q.entry.at);
        let known = e.token.is_some() && found.iter().any(|(t, ..)| t == &e.token);
        if !known && (e.token.is_some() || e.outcome.as_deref() != Some("OK")) {
            found.push((e.token.clone(), start, e.at, e));
        }
    }
    // A token activated by an engine event whose answer was not journaled is an attempt too.
    for r in rows.iter().filter(|r| {
        r.entry.category == Some(Category::Internal) && r.entry.primitive == "ACTIVATED"
    }) {
        if r.entry.token.is_some() && !found.iter().any(|(t, ..)| t == &r.entry.token) {
            found.push((r.entry.token.clone(), r.entry.at, r.entry.at, &r.entry));
        }
    }
    found.sort_by_key(|(_, start, ..)| *start);
    let belongs = |token: &Option<String>, start: Millis, end: Millis, e: &JournalEntry| match (
        &e.token, token,
    ) {
        (Some(t), Some(mine)) => t == mine,
        (Some(_), None) => false,
        (None, _) => e.at >= start && e.at <= end && e.category == Some(Category::Interface),
    };
    found
        .into_iter()
        .map(|(token, start, end, answer)| {
            let own: Vec<&JournalRow> = rows
                .iter()
                .filter(|r| belongs(&token, start, end, &r.entry))
                .collect();
            let entries: Vec<&JournalEntry> = own.iter().map(|r| &r.entry).collect();
            let classification = if token.is_some() {
                classify(&entries)
            } else {
                Classification::Negative
            };
            Attempt {
                classification,
                psp: answer.psp.clone(),
                channel: answer.channel.clone(),
                station: own.iter().find_map(|r| r.entry.station.clone()),
                at: start,
                refused_with: token.is_none().then(|| answer.outcome.clone()).flatten(),
                row_ids: own.iter().map(|r| r.id).collect(),
                token,
            }
        })
        .collect()
}

fn attempt_json(a: &Attempt) -> Value {
    json!({
        "paymentToken": a.token,
        "classification": a.classification.as_str(),
        "idPSP": a.psp,
        "idChannel": a.channel,
        "station": a.station,
        "at": timestamp(a.at),
        "refusedWith": a.refused_with,
        "journalIds": a.row_ids,
    })
}

/// A notice's story from its journal rows and its status histories.
pub fn story_json(key: &NoticeKey, rows: &[JournalRow], history: &[StatusRow]) -> Value {
    json!({
        "fiscalCode": key.fiscal_code.as_str(),
        "noticeNumber": key.notice_number.as_str(),
        "attempts": attempts(rows).iter().map(attempt_json).collect::<Vec<_>>(),
        "statusHistory": history_json(history),
        "journal": rows.iter().map(row_json).collect::<Vec<_>>(),
    })
}

/// The status histories in the official tables' shape: the notice's `POSITION_STATUS` rows;
/// per token its `POSITION_PAYMENT_STATUS` rows; per token and station its
/// `POSITION_RECEIPT_RECIPIENT_STATUS` rows. Each entry is a status and its time, in the order
/// written; tokens and copies in the order they first appear.
pub fn history_json(history: &[StatusRow]) -> Value {
    let entry = |r: &StatusRow| json!({ "status": r.of.status(), "at": timestamp(r.at) });
    let mut position = Vec::new();
    let mut payments: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut recipients: Vec<((&str, &str), Vec<Value>)> = Vec::new();
    fn series<K: PartialEq>(list: &mut Vec<(K, Vec<Value>)>, key: K, v: Value) {
        match list.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(v),
            None => list.push((key, vec![v])),
        }
    }
    for r in history {
        let token = r.of.token().as_str();
        match &r.of {
            StatusOf::Position(..) => {
                let mut v = entry(r);
                v["paymentToken"] = json!(token);
                position.push(v);
            }
            StatusOf::Payment(..) => series(&mut payments, token, entry(r)),
            StatusOf::Recipient(_, station, _) => {
                series(&mut recipients, (token, station.as_str()), entry(r))
            }
        }
    }
    json!({
        POSITION_STATUS: position,
        POSITION_PAYMENT_STATUS: payments
            .into_iter()
            .map(|(t, h)| json!({ "paymentToken": t, "history": h }))
            .collect::<Vec<_>>(),
        POSITION_RECEIPT_RECIPIENT_STATUS: recipients
            .into_iter()
            .map(|((t, s), h)| json!({ "paymentToken": t, "station": s, "history": h }))
            .collect::<Vec<_>>(),
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

/// Everything about a notice: its attempts in order, each classified, with what the store holds
/// about its payments (status, amount, deadline, outcome, receipt recipients), and the journal
/// rows behind them. `rows` are the journal rows naming the notice number; `payments` the
/// notice's payments with their receipt's recipients; `history` its status histories.
pub fn notice_story(
    key: &NoticeKey,
    rows: Vec<JournalRow>,
    payments: &[(Payment, Vec<Recipient>)],
    history: &[StatusRow],
) -> Value {
    let rows = notice_rows(key, rows);
    let mut story = story_json(key, &rows, history);
    let Some(attempts) = story["attempts"].as_array_mut() else {
        return story;
    };
    // A payment whose journal rows are gone (retention) is still an attempt, classified from
    // its status.
    for (p, _) in payments {
        if !attempts
            .iter()
            .any(|a| a["paymentToken"] == p.token.as_str())
        {
            attempts.push(json!({
                "paymentToken": p.token.as_str(),
                "classification": status_classification(p.status).as_str(),
                "idPSP": p.psp.id_psp.as_str(),
                "idChannel": p.psp.id_channel.as_str(),
                "station": p.station.id.as_str(),
                "at": timestamp(p.activated_at),
                "journalIds": [],
            }));
        }
    }
    for a in attempts.iter_mut() {
        let Some((p, recipients)) = a["paymentToken"]
            .as_str()
            .and_then(|t| payments.iter().find(|(p, _)| p.token.as_str() == t))
        else {
            continue;
        };
        a["status"] = json!(p.status.as_str());
        a["amount"] = json!(p.data.payment_amount.to_string());
        a["activatedAt"] = json!(timestamp(p.activated_at));
        a["deadline"] = json!(timestamp(p.deadline));
        a["outcome"] = json!(p.outcome.as_ref().map(|o| json!({ "outcome": o.outcome.as_str(), "receivedAt": timestamp(o.received_at), "idPSP": o.psp.id_psp.as_str() })));
        a["recipients"] = json!(recipients.iter().map(recipient_json).collect::<Vec<_>>());
    }
    story
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: i64,
        at: u64,
        component: &str,
        primitive: &str,
        subtype: Subtype,
        token: Option<&str>,
        outcome: &str,
    ) -> JournalRow {
        let category = if component == "engine" {
            Category::Internal
        } else {
            Category::Interface
        };
        JournalRow {
            id,
            entry: JournalEntry {
                at,
                component: component.into(),
                category: Some(category),
                primitive: primitive.into(),
                subtype: Some(subtype),
                fiscal_code: Some("77777777777".into()),
                notice_number: Some("302000000000000001".into()),
                token: token.map(str::to_string),
                psp: Some("60000000001".into()),
                outcome: Some(outcome.into()),
                ..JournalEntry::default()
            },
        }
    }

    #[test]
    fn attempts_are_classified_from_the_journal() {
        use Subtype::*;
        let rows = vec![
            row(
                3,
                10,
                "nodeForPsp",
                "activatePaymentNotice",
                Req,
                Some("t1"),
                "",
            ),
            row(1, 11, "paForNode", "paGetPayment", Req, None, "INVIATA"),
            row(2, 12, "paForNode", "paGetPayment", Resp, None, "OK"),
            row(5, 13, "engine", "ACTIVATED", Intern, Some("t1"), "OK"),
            row(
                4,
                14,
                "nodeForPsp",
                "activatePaymentNotice",
                Resp,
                Some("t1"),
                "OK",
            ),
            row(6, 20, "engine", "EXPIRED", Intern, Some("t1"), ""),
            row(7, 30, "nodeForPsp", "activatePaymentNotice", Req, None, ""),
            row(
                8,
                31,
                "nodeForPsp",
                "activatePaymentNotice",
                Resp,
                None,
                "PPT_PAGAMENTO_IN_CORSO",
            ),
            row(
                9,
                40,
                "nodeForPsp",
                "activatePaymentNotice",
                Req,
                Some("t2"),
                "",
            ),
            row(11, 41, "engine", "ACTIVATED", Intern, Some("t2"), "OK"),
            row(
                10,
                42,
                "nodeForPsp",
                "activatePaymentNotice",
                Resp,
                Some("t2"),
                "OK",
            ),
            row(
                12,
                50,
                "engine",
                "OUTCOME_ACCEPTED",
                Intern,
                Some("t2"),
                "OK",
            ),
        ];
        let a = attempts(&rows);
        let summary: Vec<_> = a
            .iter()
            .map(|a| {
                (
                    a.token.as_deref(),
                    a.classification,
                    a.refused_with.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("t1"), Classification::ToVerify, None),
                (
                    None,
                    Classification::Negative,
                    Some("PPT_PAGAMENTO_IN_CORSO")
                ),
                (Some("t2"), Classification::Positive, None),
            ]
        );
        assert_eq!(
            a[0].row_ids,
            vec![3, 1, 2, 5, 4, 6],
            "the paGetPayment of the activation belongs to it"
        );
        assert_eq!(a[1].row_ids, vec![7, 8]);
    }

    #[test]
    fn a_contradicting_outcome_needs_checking() {
        let mut ok = row(
            1,
            1,
            "engine",
            "OUTCOME_ACCEPTED",
            Subtype::Intern,
            Some("t"),
            "OK",
        )
        .entry;
        assert_eq!(classify(&[&ok]), Classification::Positive);
        let discorde = JournalEntry {
            payload: Some("<description>Esito discorde: {}</description>".into()),
            ..ok.clone()
        };
        ok.primitive = "OUTCOME_ACCEPTED".into();
        assert_eq!(classify(&[&ok, &discorde]), Classification::ToVerify);
    }
}
