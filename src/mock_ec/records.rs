//! What the mock remembers for inspection: the receipts delivered to it and every SOAP request.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A receipt delivered to one station (paSendRT or paSendRTV2), with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredReceipt {
    /// `idStation` of the request: receipts are kept per station.
    pub station: String,
    /// `idPA` of the request (a secondary EC for broadcast copies).
    pub id_pa: String,
    /// `receipt/receiptId` (the payment token).
    pub receipt_id: String,
    /// `receipt/noticeNumber`.
    pub notice_number: String,
    /// The notice owner (`receipt/fiscalCode`).
    pub fiscal_code: String,
    /// `receipt/outcome`.
    pub outcome: String,
    /// 1 for paSendRT, 2 for paSendRTV2.
    pub version: u8,
    /// The first delivery's HTTP body.
    pub request_body: String,
    /// When the first delivery arrived.
    pub first_received: DateTime<Utc>,
    /// When the latest identical delivery arrived.
    pub last_received: DateTime<Utc>,
    /// Deliveries with the same content, the first included.
    pub deliveries: u32,
    /// Deliveries of the same receipt id with a different content (answered
    /// `PAA_RECEIPT_DUPLICATA`).
    pub conflicts: Vec<ReceiptConflict>,
    /// The `receipt` element as the codec writes it: equal fingerprints, equal content.
    #[serde(skip)]
    pub(crate) fingerprint: String,
}

/// A delivery that reused a receipt id for a different receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptConflict {
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Its HTTP body.
    pub request_body: String,
}

/// What a delivery was, against the receipts already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    First,
    /// The same receipt again: idempotent.
    Repeat,
    /// The same id with another content.
    Conflict,
}

/// The receipts received, in arrival order, found by (station, receipt id) in constant time (a
/// long load run delivers hundreds of thousands).
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    list: Vec<StoredReceipt>,
    index: HashMap<(String, String), usize>,
}

impl Receipts {
    pub fn all(&self) -> &[StoredReceipt] {
        &self.list
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.index.clear();
    }

    /// Stores `incoming` (a first delivery: count 1, no conflicts), or counts it against the
    /// receipt with its station and id.
    pub fn deliver(&mut self, incoming: StoredReceipt) -> Delivery {
        let key = (incoming.station.clone(), incoming.receipt_id.clone());
        let Some(&i) = self.index.get(&key) else {
            self.index.insert(key, self.list.len());
            self.list.push(incoming);
            return Delivery::First;
        };
        let r = &mut self.list[i];
        if r.fingerprint == incoming.fingerprint {
            r.deliveries += 1;
            r.last_received = incoming.first_received;
            Delivery::Repeat
        } else {
            r.conflicts.push(ReceiptConflict {
                received_at: incoming.first_received,
                request_body: incoming.request_body,
            });
            Delivery::Conflict
        }
    }
}

/// The query of `GET /receipts`: every given field must match.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ReceiptFilter {
    station: Option<String>,
    receipt_id: Option<String>,
    notice_number: Option<String>,
}

impl ReceiptFilter {
    pub fn matches(&self, r: &StoredReceipt) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.station, &r.station)
            && ok(&self.receipt_id, &r.receipt_id)
            && ok(&self.notice_number, &r.notice_number)
    }
}

/// What the mock answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Not answered yet (a delay is running).
    Pending,
    /// `outcome=OK`.
    Ok,
    /// `outcome=KO` (see `fault_code`).
    Ko,
    /// A body that is not XML.
    Garbage,
    /// A schema-invalid response.
    Invalid,
    /// A SOAP 1.1 Fault.
    SoapFault,
    /// HTTP 500 with an empty body.
    #[serde(rename = "http_500")]
    Http500,
}

/// One SOAP request and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Arrival order, from 1.
    pub seq: u64,
    /// When it arrived.
    pub time: DateTime<Utc>,
    /// The HTTP path it was posted to.
    pub path: String,
    /// The SOAPAction detected, if any.
    pub operation: Option<String>,
    /// `idStation` (read leniently from an invalid request).
    pub station: Option<String>,
    /// `idPA` (likewise).
    pub id_pa: Option<String>,
    /// The notice it is about (likewise).
    pub notice_number: Option<String>,
    /// Whether the request passed the codec's validation.
    pub valid: bool,
    /// Why not, if it did not.
    pub violation: Option<String>,
    /// What it got.
    pub answer: AnswerKind,
    /// The fault code of a KO answer.
    pub fault_code: Option<String>,
    /// How long the answer was held back.
    pub delay_ms: Option<u64>,
}
