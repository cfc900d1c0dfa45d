//! Status histories in the official node's vocabulary: the rows its `POSITION_STATUS` (the
//! notice), `POSITION_PAYMENT_STATUS` (each token) and `POSITION_RECEIPT_RECIPIENT_STATUS` (each
//! receipt copy) tables get, which the official BDD tests count exactly (`PAG-1976.feature`,
//! `paSendRTV2_NM3.feature` PSRTV2_ACTV1_06/20/24, `RetryATokenScaduto/*`). The engine writes
//! each row in the step of the change it describes, so the store commits it with the change.
//!
//! The rows, as the official node writes them:
//! - activation: position PAYING, payment PAYING;
//! - outcome OK: payment PAID, position PAID, payment NOTICE_GENERATED, each recipient
//!   NOTICE_GENERATED;
//! - each delivery attempt: the recipient NOTICE_SENT, then NOTIFIED or NOTICE_PENDING; the
//!   payment NOTICE_SENT at the receipt's first attempt; the position NOTIFIED when the notice
//!   owner's station is notified; the payment NOTIFIED when every recipient is;
//! - outcome KO: payment FAILED, position INSERTED;
//! - cancellation (the deadline, or the cancellation job): payment CANCELLED, position INSERTED.

use super::{Millis, NoticeKey, Payment, Recipient, Step, Write};
use crate::codec::types::{PaymentToken, Text35};

crate::xml_enum! {
    /// `POSITION_STATUS`: where the notice stands.
    pub enum PositionStatus {
        Inserted = "INSERTED",
        Paying = "PAYING",
        Paid = "PAID",
        Notified = "NOTIFIED",
    }
}

crate::xml_enum! {
    /// `POSITION_PAYMENT_STATUS`: where one token's payment stands.
    pub enum PositionPaymentStatus {
        Paying = "PAYING",
        Paid = "PAID",
        NoticeGenerated = "NOTICE_GENERATED",
        NoticeSent = "NOTICE_SENT",
        Notified = "NOTIFIED",
        Cancelled = "CANCELLED",
        Failed = "FAILED",
    }
}

crate::xml_enum! {
    /// `POSITION_RECEIPT_RECIPIENT_STATUS`: where one copy of a receipt stands.
    pub enum ReceiptRecipientStatus {
        NoticeGenerated = "NOTICE_GENERATED",
        NoticeSent = "NOTICE_SENT",
        NoticePending = "NOTICE_PENDING",
        Notified = "NOTIFIED",
    }
}

/// What a history row is about, and the status it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOf {
    /// The notice (the token that moved it, for reference).
    Position(PaymentToken, PositionStatus),
    Payment(PaymentToken, PositionPaymentStatus),
    /// The copy of receipt (token) for a station.
    Recipient(PaymentToken, Text35, ReceiptRecipientStatus),
}

/// One row of a status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub at: Millis,
    pub notice: NoticeKey,
    pub of: StatusOf,
}

/// The official table a history row belongs to.
pub const POSITION_STATUS: &str = "POSITION_STATUS";
pub const POSITION_PAYMENT_STATUS: &str = "POSITION_PAYMENT_STATUS";
pub const POSITION_RECEIPT_RECIPIENT_STATUS: &str = "POSITION_RECEIPT_RECIPIENT_STATUS";

impl StatusOf {
    /// The official table of the row.
    pub fn table(&self) -> &'static str {
        match self {
            StatusOf::Position(..) => POSITION_STATUS,
            StatusOf::Payment(..) => POSITION_PAYMENT_STATUS,
            StatusOf::Recipient(..) => POSITION_RECEIPT_RECIPIENT_STATUS,
        }
    }

    /// The status recorded, by its official name.
    pub fn status(&self) -> &'static str {
        match self {
            StatusOf::Position(_, s) => s.as_str(),
            StatusOf::Payment(_, s) => s.as_str(),
            StatusOf::Recipient(_, _, s) => s.as_str(),
        }
    }

    pub fn token(&self) -> &PaymentToken {
        match self {
            StatusOf::Position(t, _) | StatusOf::Payment(t, _) | StatusOf::Recipient(t, ..) => t,
        }
    }

    pub fn station(&self) -> Option<&Text35> {
        match self {
            StatusOf::Recipient(_, s, _) => Some(s),
            _ => None,
        }
    }

    /// The table as a small number, for storage: 0 position, 1 payment, 2 recipient.
    pub fn kind(&self) -> u8 {
        match self {
            StatusOf::Position(..) => 0,
            StatusOf::Payment(..) => 1,
            StatusOf::Recipient(..) => 2,
        }
    }

    /// Rebuilds a row's subject from its stored columns (`None`: not a known kind/status).
    pub fn from_columns(
        kind: u8,
        status: &str,
        token: PaymentToken,
        station: Option<Text35>,
    ) -> Option<StatusOf> {
        match kind {
            0 => Some(StatusOf::Position(token, status.parse().ok()?)),
            1 => Some(StatusOf::Payment(token, status.parse().ok()?)),
            2 => Some(StatusOf::Recipient(token, station?, status.parse().ok()?)),
            _ => None,
        }
    }
}

/// Appends the notice's `POSITION_STATUS` row.
pub(super) fn position(step: &mut Step, at: Millis, p: &Payment, status: PositionStatus) {
    push(
        step,
        at,
        &p.notice,
        StatusOf::Position(p.token.clone(), status),
    );
}

/// Appends the payment's `POSITION_PAYMENT_STATUS` row.
pub(super) fn payment(step: &mut Step, at: Millis, p: &Payment, status: PositionPaymentStatus) {
    push(
        step,
        at,
        &p.notice,
        StatusOf::Payment(p.token.clone(), status),
    );
}

/// Appends the copy's `POSITION_RECEIPT_RECIPIENT_STATUS` row.
pub(super) fn recipient(
    step: &mut Step,
    at: Millis,
    notice: &NoticeKey,
    r: &Recipient,
    status: ReceiptRecipientStatus,
) {
    push(
        step,
        at,
        notice,
        StatusOf::Recipient(r.receipt_id.clone(), r.station.clone(), status),
    );
}

fn push(step: &mut Step, at: Millis, notice: &NoticeKey, of: StatusOf) {
    step.writes.push(Write::Status(StatusRow {
        at,
        notice: notice.clone(),
        of,
    }));
}
