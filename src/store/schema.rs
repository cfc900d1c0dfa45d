//! The logical schema both stores share: the tables' columns, how records become rows and rows
//! records, and the statements a commit runs. SQLite and PostgreSQL differ only in their DDL
//! (each store's migrations), in where journal rows go and in the leases of a shared outbox.
//!
//! Rows are compact: the large XML values written once (the EC's payment data, the outcome
//! details, cached responses, a receipt's body) are LZ4-compressed ([`pack`]); a receipt's body
//! is stored once per version and each copy keeps only its own envelope around it
//! ([`CopyParts`]).
//!
//! Every state write is a compare-and-set: a notice or payment row is written only if it is
//! still at the revision the engine computed from ([`Write::Notice`]), an idempotency entry only
//! if no valid one is there. A statement that changes no row fails the commit with
//! [`StoreError::Conflict`].
//!
//! Statements use `$1, $2...` placeholders, each first used in increasing order: PostgreSQL reads
//! them as positions, SQLite as names numbered in order of first use, so one text serves both.

use std::borrow::Cow;

use super::StoreError;
use crate::codec::node_for_psp::OutcomeDetailsV2;
use crate::codec::pa_for_node::PaymentPaV2;
use crate::codec::schema::{from_fragment, to_fragment};
use crate::codec::types::{
    Amount, FiscalCode, IdempotencyKey, IsoDate, NoticeNumber, Outcome, PaymentToken, Text35,
    Text210,
};
use crate::engine::{
    ActivationRequest, CopyParts, IdemEntry, IdemKey, Millis, Notice, NoticeKey, NoticeState,
    OutcomeRecord, Payment, PaymentStatus, PspRef, Recipient, RecipientStatus, Reply, StationRef,
    StatusOf, StatusRow, Version, Write,
};
use crate::fault::FaultCode;
use crate::journal::segment::RowRef;

/// A statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Val<'a> {
        Val::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(s: Option<&'a str>) -> Val<'a> {
        s.map_or(Val::Null, Val::from)
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

impl From<Option<Vec<u8>>> for Val<'_> {
    fn from(v: Option<Vec<u8>>) -> Self {
        v.map_or(Val::Null, |b| Val::Blob(Cow::Owned(b)))
    }
}

/// A u64 (a time, a revision stamp) in a signed 64-bit column, bit for bit.
pub fn int(v: u64) -> Val<'static> {
    Val::Int(v as i64)
}

/// A large XML value as stored: LZ4 with its length in front.
pub fn pack(xml: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(xml.as_bytes())
}

/// The XML of a [`pack`]ed value.
pub fn unpack(stored: &[u8]) -> Result<String, String> {
    let raw = lz4_flex::decompress_size_prepended(stored).map_err(|e| e.to_string())?;
    String::from_utf8(raw).map_err(|e| e.to_string())
}

/// A copy's envelope from its stored parts: its head and tail and its receipt's [`pack`]ed
/// body.
pub fn join_copy(head: &str, body: &[u8], tail: &str) -> Result<String, String> {
    let body = unpack(body)?;
    Ok(CopyParts {
        head,
        body: &body,
        tail,
    }
    .join())
}

/// The columns of a row, by name, as each store's driver reads them.
pub trait Fields {
    fn int(&self, col: &str) -> Result<Option<i64>, String>;
    fn text(&self, col: &str) -> Result<Option<String>, String>;
    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, String>;
    /// An XML value: [`pack`]ed, or plain text in rows written before values were packed.
    fn xml(&self, col: &str) -> Result<Option<String>, String>;
}

fn need<T>(v: Option<T>, col: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("{col}: missing"))
}

fn parsed<T>(
    f: &impl Fields,
    col: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<Option<T>, String> {
    f.text(col)?
        .map(parse)
        .transpose()
        .map_err(|e| format!("{col}: {e}"))
}

fn required<T>(
    f: &impl Fields,
    col: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, String> {
    need(parsed(f, col, parse)?, col)
}

fn uint(f: &impl Fields, col: &str) -> Result<u64, String> {
    Ok(need(f.int(col)?, col)? as u64)
}

/// A row that cannot be read back: the store is damaged or newer than this node.
pub fn corrupt(table: &str, e: String) -> StoreError {
    StoreError::Failed(format!("{table}: unreadable row: {e}"))
}

fn state_columns(s: &NoticeState) -> (&'static str, Option<&str>) {
    match s {
        NoticeState::Free => ("FREE", None),
        NoticeState::Paying(t) => ("PAYING", Some(t.as_str())),
        NoticeState::Paid(t) => ("PAID", Some(t.as_str())),
    }
}

/// The notice's columns as [`SELECT_PAYMENTS`] names them (`n_...`); `None` if the row has no
/// notice.
pub fn notice_from(f: &impl Fields) -> Result<Option<Notice>, String> {
    let Some(state) = f.text("n_state")? else {
        return Ok(None);
    };
    let key = NoticeKey {
        fiscal_code: required(f, "n_fiscal_code", FiscalCode::new)?,
        notice_number: required(f, "n_notice_number", NoticeNumber::new)?,
    };
    let token = || required(f, "n_token", PaymentToken::new);
    let state = match state.as_str() {
        "FREE" => NoticeState::Free,
        "PAYING" => NoticeState::Paying(token()?),
        "PAID" => NoticeState::Paid(token()?),
        other => return Err(format!("n_state: {other}")),
    };
    Ok(Some(Notice {
        key,
        state,
        demanded_at: f.int("n_demanded_at")?.map(|v| v as u64),
        revision: f.int("n_revision")?.unwrap_or(0) as u64,
    }))
}

/// The payment of a [`SELECT_PAYMENTS`] row (`None` if the row has none: a notice without one).
pub fn payment_from(f: &impl Fields) -> Result<Option<Payment>, String> {
    let Some(token) = parsed(f, "token", PaymentToken::new)? else {
        return Ok(None);
    };
    let t35 = |col: &str| required(f, col, Text35::new);
    let outcome = match parsed(f, "outcome", |s| s.parse::<Outcome>())? {
        None => None,
        Some(outcome) => Some(OutcomeRecord {
            outcome,
            received_at: uint(f, "outcome_at")?,
            psp: PspRef {
                id_psp: t35("outcome_psp")?,
                id_broker_psp: t35("outcome_broker")?,
                id_channel: t35("outcome_channel")?,
            },
            version: Version::from_number(need(f.int("outcome_version")?, "outcome_version")? as u8),
            details: f
                .xml("outcome_details")?
                .map(|s| from_fragment::<OutcomeDetailsV2>(&s).map_err(|v| v.to_string()))
                .transpose()?,
        }),
    };
    let data = need(f.xml("data")?, "data")?;
    Ok(Some(Payment {
        token,
        notice: NoticeKey {
            fiscal_code: required(f, "fiscal_code", FiscalCode::new)?,
            notice_number: required(f, "notice_number", NoticeNumber::new)?,
        },
        psp: PspRef {
            id_psp: t35("id_psp")?,
            id_broker_psp: t35("id_broker_psp")?,
            id_channel: t35("id_channel")?,
        },
        psp_version: Version::from_number(need(f.int("psp_version")?, "psp_version")? as u8),
        station: StationRef {
            id: t35("station")?,
            broker: t35("station_broker")?,
            version: Version::from_number(need(f.int("station_version")?, "station_version")? as u8),
        },
        idempotency_key: parsed(f, "idempotency_key", IdempotencyKey::new)?,
        request: ActivationRequest {
            amount: Amount::from_cents(uint(f, "amount_cents")?).map_err(|e| e.to_string())?,
            due_date: parsed(f, "due_date", |s| {
                <IsoDate as crate::codec::schema::Simple>::parse(&s)
            })?,
            payment_note: parsed(f, "payment_note", Text210::new)?,
            expiration_ms: f.int("expiration_ms")?,
            payment_method: parsed(f, "payment_method", |s| s.parse())?,
            touch_point: parsed(f, "touch_point", |s| s.parse())?,
        },
        data: from_fragment::<PaymentPaV2>(&data).map_err(|v| format!("data: {v}"))?,
        activated_at: uint(f, "activated_at")?,
        deadline: uint(f, "deadline")?,
        status: required(f, "status", |s| PaymentStatus::parse(&s).ok_or(s))?,
        outcome,
        revision: f.int("revision")?.unwrap_or(0) as u64,
    }))
}

/// A payment and its notice from a [`SELECT_PAYMENTS`] row.
pub fn payment_pair(f: &impl Fields) -> Result<(Payment, Notice), String> {
    let p = need(payment_from(f)?, "token")?;
    let n = notice_from(f)?.unwrap_or_else(|| Notice::free(p.notice.clone()));
    Ok((p, n))
}

/// A copy from a [`SELECT_RECIPIENTS`] row.
pub fn recipient_from(f: &impl Fields) -> Result<Recipient, String> {
    let head = need(f.text("head")?, "head")?;
    let tail = need(f.text("tail")?, "tail")?;
    let body = need(f.bytes("body")?, "body")?;
    Ok(Recipient {
        receipt_id: required(f, "receipt_id", PaymentToken::new)?,
        station: required(f, "station", Text35::new)?,
        ec: required(f, "ec", FiscalCode::new)?,
        version: Version::from_number(need(f.int("version")?, "version")? as u8),
        request: join_copy(&head, &body, &tail)?,
        status: required(f, "status", |s| RecipientStatus::parse(&s).ok_or(s))?,
        attempts: need(f.int("attempts")?, "attempts")? as u32,
        next_attempt_at: uint(f, "next_attempt_at")?,
        last_error: f.text("last_error")?,
    })
}

/// An idempotency entry from a [`SELECT_IDEMPOTENCY`] row.
pub fn idem_from(f: &impl Fields, key: &IdemKey) -> Result<IdemEntry, String> {
    let hash = need(f.bytes("request_hash")?, "request_hash")?;
    Ok(IdemEntry {
        key: key.clone(),
        request_hash: hash
            .try_into()
            .map_err(|_| "request_hash: not 32 bytes".to_string())?,
        reply: Reply {
            envelope: need(f.xml("response")?, "response")?,
            fault: parsed(f, "fault_code", |c| FaultCode::parse(&c).ok_or(c))?,
        },
        token: parsed(f, "token", PaymentToken::new)?,
        valid_to: uint(f, "valid_to")?,
        inserted_at: uint(f, "inserted_at")?,
    })
}

/// Payments with their notices (`n_...` columns): add a `WHERE` on `p` and `n`.
pub const SELECT_PAYMENTS: &str =
    "SELECT n.fiscal_code AS n_fiscal_code, n.notice_number AS n_notice_number, n.state AS n_state,
   n.token AS n_token, n.demanded_at AS n_demanded_at, n.revision AS n_revision, p.*, d.data
 FROM payments p JOIN payment_data d ON d.token = p.token
 LEFT JOIN notices n ON n.fiscal_code = p.fiscal_code AND n.notice_number = p.notice_number";

/// A notice and the payment its state names, in [`SELECT_PAYMENTS`]' columns.
pub const SELECT_NOTICE: &str = "SELECT n.fiscal_code AS n_fiscal_code, n.notice_number AS n_notice_number, n.state AS n_state,
   n.token AS n_token, n.demanded_at AS n_demanded_at, n.revision AS n_revision, p.*, d.data
 FROM notices n LEFT JOIN payments p ON p.token = n.token LEFT JOIN payment_data d ON d.token = n.token
 WHERE n.fiscal_code = $1 AND n.notice_number = $2";

/// Receipt copies with their receipt's body: add a `WHERE` on `r`.
pub const SELECT_RECIPIENTS: &str =
    "SELECT r.*, CASE r.version WHEN 1 THEN c.body_v1 ELSE c.body_v2 END AS body
 FROM recipients r JOIN receipts c ON c.receipt_id = r.receipt_id";

/// The reads both stores make, built once from [`SELECT_PAYMENTS`] and [`SELECT_RECIPIENTS`].
pub struct Queries {
    pub payment: String,
    pub paying: String,
    /// PAYING payments whose deadline passed before `$1`, earliest first, at most `$2`.
    pub overdue: String,
    pub of_notice: String,
    pub recipients_of: String,
    /// Every copy of the receipts of the array `$1` (PostgreSQL).
    pub recipients_of_many: String,
    pub in_delivery: String,
    /// Copies in a status, newest first, at most `$1`: one text per status, the status
    /// written out so that the partial index of that status can serve it (a bound value cannot
    /// select a partial index in a plan made once).
    by_status: [String; 3],
}

impl Queries {
    pub fn by_status(&self, status: RecipientStatus) -> &str {
        let i = match status {
            RecipientStatus::Pending => 0,
            RecipientStatus::Notified => 1,
            RecipientStatus::Failed => 2,
        };
        &self.by_status[i]
    }
}

pub static QUERIES: std::sync::LazyLock<Queries> = std::sync::LazyLock::new(|| Queries {
    payment: format!("{SELECT_PAYMENTS} WHERE p.token = $1"),
    paying: format!("{SELECT_PAYMENTS} WHERE p.status = 'PAYING'"),
    overdue: format!(
        "{SELECT_PAYMENTS} WHERE p.status = 'PAYING' AND p.deadline <= $1 ORDER BY p.deadline LIMIT $2"
    ),
    of_notice: format!(
        "{SELECT_PAYMENTS} WHERE p.fiscal_code = $1 AND p.notice_number = $2 ORDER BY p.activated_at"
    ),
    recipients_of: format!("{SELECT_RECIPIENTS} WHERE r.receipt_id = $1 ORDER BY r.station"),
    recipients_of_many: format!(
        "{SELECT_RECIPIENTS} WHERE r.receipt_id = ANY($1) ORDER BY r.receipt_id, r.station"
    ),
    in_delivery: format!(
        "{SELECT_RECIPIENTS} WHERE r.receipt_id IN (SELECT receipt_id FROM recipients WHERE status = 'PENDING') ORDER BY r.receipt_id"
    ),
    by_status: [
        RecipientStatus::Pending,
        RecipientStatus::Notified,
        RecipientStatus::Failed,
    ]
    .map(|status| {
        format!(
            "{SELECT_RECIPIENTS} WHERE r.status = '{}' ORDER BY r.next_attempt_at DESC LIMIT $1",
            status.as_str()
        )
    }),
});

pub const SELECT_IDEMPOTENCY: &str =
    "SELECT request_hash, response, fault_code, token, valid_to, inserted_at FROM idempotency
 WHERE psp = $1 AND key = $2 AND primitive = $3";

/// One statement of a commit, with its parameters; `cas`: it must change exactly one row, else
/// the commit fails with a conflict (this says about what).
#[derive(Debug)]
pub struct Op<'a> {
    pub sql: &'static str,
    pub params: Vec<Val<'a>>,
    pub cas: Option<&'static str>,
}

/// What differs in how the two stores write.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Journal rows of state changes: SQLite numbers them itself (one sequence with the
    /// journal segments), PostgreSQL from a sequence.
    pub events: Events,
    /// The outbox is shared: receipts are leased (PostgreSQL).
    pub lease: Option<Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// `events (id, ...)`, ids given.
    Numbered,
    /// `journal (...)`, ids from the database.
    Sequenced,
}

/// The lease a node holds on the receipts it delivers: only the holder records their copies'
/// results, and the lease lasts until `lease_ms` past the next attempt it plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub lease_ms: u64,
}

const UPSERT_NOTICE: &str = "INSERT INTO notices (fiscal_code, notice_number, state, token, demanded_at, revision)
 VALUES ($1, $2, $3, $4, $5, $6)
 ON CONFLICT (fiscal_code, notice_number) DO UPDATE SET state = excluded.state, token = excluded.token,
   demanded_at = excluded.demanded_at, revision = excluded.revision
 WHERE notices.revision = $7";

const INSERT_PAYMENT_DATA: &str =
    "INSERT INTO payment_data (token, data) VALUES ($1, $2) ON CONFLICT (token) DO NOTHING";

const UPSERT_PAYMENT: &str = "INSERT INTO payments (token, fiscal_code, notice_number, status, id_psp, id_broker_psp, id_channel,
   psp_version, station, station_broker, station_version, idempotency_key, amount_cents, due_date, payment_note,
   expiration_ms, payment_method, touch_point, activated_at, deadline, outcome, outcome_at, outcome_psp,
   outcome_broker, outcome_channel, outcome_version, outcome_details, revision)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
   $23, $24, $25, $26, $27, $28)
 ON CONFLICT (token) DO UPDATE SET status = excluded.status, deadline = excluded.deadline,
   outcome = excluded.outcome, outcome_at = excluded.outcome_at, outcome_psp = excluded.outcome_psp,
   outcome_broker = excluded.outcome_broker, outcome_channel = excluded.outcome_channel,
   outcome_version = excluded.outcome_version, outcome_details = excluded.outcome_details,
   revision = excluded.revision
 WHERE payments.revision = $29";

const INSERT_RECEIPT: &str =
    "INSERT INTO receipts (receipt_id, fiscal_code, notice_number, created_at, body_v1, body_v2)
 VALUES ($1, $2, $3, $4, $5, $6)";

const INSERT_LEASED_RECEIPT: &str =
    "INSERT INTO receipts (receipt_id, fiscal_code, notice_number, created_at, body_v1, body_v2,
   lease_owner, lease_until)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const UPSERT_RECIPIENT: &str = "INSERT INTO recipients (receipt_id, station, ec, version, status, attempts, next_attempt_at,
   last_error, head, tail)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
 ON CONFLICT (receipt_id, station) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
   next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error";

/// The lease is still this node's; it now lasts past the copy's next attempt.
const EXTEND_LEASE: &str = "UPDATE receipts SET lease_until = GREATEST(lease_until, $1)
 WHERE receipt_id = $2 AND lease_owner = $3";

/// An entry is written where none is, where the one there has expired, or over a refusal (a
/// re-sent activation refused PPT_PAGAMENTO_IN_CORSO while its first copy was in flight, or
/// another request under the key refused meanwhile: the answer of the request in flight then
/// replaces it). Never over another answer that was OK: of two nodes answering one request at
/// once, the second to commit fails and replays the first.
const PUT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency (psp, key, primitive, request_hash, response, fault_code, token,
   valid_to, inserted_at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
 ON CONFLICT (psp, key, primitive) DO UPDATE SET request_hash = excluded.request_hash,
   response = excluded.response, fault_code = excluded.fault_code, token = excluded.token,
   valid_to = excluded.valid_to, inserted_at = excluded.inserted_at
 WHERE idempotency.valid_to <= excluded.inserted_at
    OR idempotency.fault_code IS NOT NULL";

const DELETE_IDEMPOTENCY: &str =
    "DELETE FROM idempotency WHERE psp = $1 AND key = $2 AND primitive = $3 AND token = $4";

/// The journal columns after `id`, in order.
pub const JOURNAL_FIELDS: &str =
    "at, component, category, primitive, subtype, fiscal_code, notice_number, iuv, token, psp,
   channel, station, outcome, caller, callee, payload, detail, duration_ms";

const INSERT_NUMBERED_EVENT: &str = "INSERT INTO events (id, at, component, category, primitive, subtype, fiscal_code,
   notice_number, iuv, token, psp, channel, station, outcome, caller, callee, payload, detail, duration_ms)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

pub const INSERT_JOURNAL: &str = "INSERT INTO journal (at, component, category, primitive, subtype, fiscal_code,
   notice_number, iuv, token, psp, channel, station, outcome, caller, callee, payload, detail, duration_ms)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

/// A journal row's columns after `id`, in [`JOURNAL_FIELDS`] order.
pub fn journal_values<'a>(e: &RowRef<'a>) -> Vec<Val<'a>> {
    vec![
        int(e.at),
        e.component.into(),
        e.category.map(|c| c.as_str()).into(),
        e.primitive.into(),
        e.subtype.map(|s| s.as_str()).into(),
        e.fiscal_code.into(),
        e.notice_number.into(),
        e.iuv.into(),
        e.token.into(),
        e.psp.into(),
        e.channel.into(),
        e.station.into(),
        e.outcome.into(),
        e.caller.into(),
        e.callee.into(),
        e.payload.into(),
        e.detail.into(),
        e.duration_ms.map(|d| d as i64).into(),
    ]
}

/// The statements that apply `writes`, in order. `next_id` numbers state changes' journal rows
/// where the store numbers them ([`Events::Numbered`]).
pub fn plan<'a>(writes: &'a [Write], d: Dialect, next_id: &dyn Fn() -> u64) -> Vec<Op<'a>> {
    let mut ops = Vec::with_capacity(writes.len() + 2);
    let mut statuses = StatusBatch::default();
    for w in writes {
        match w {
            Write::Notice {
                notice: n,
                expected,
            } => {
                let (state, token) = state_columns(&n.state);
                ops.push(Op {
                    sql: UPSERT_NOTICE,
                    params: vec![
                        n.key.fiscal_code.as_str().into(),
                        n.key.notice_number.as_str().into(),
                        state.into(),
                        token.into(),
                        n.demanded_at.map(|v| v as i64).into(),
                        int(n.revision),
                        int(*expected),
                    ],
                    cas: Some("notice"),
                });
            }
            Write::Payment {
                payment: p,
                expected,
            } => {
                // The EC's data never changes after activation: written once.
                if *expected == 0 {
                    ops.push(Op {
                        sql: INSERT_PAYMENT_DATA,
                        params: vec![
                            p.token.as_str().into(),
                            Some(pack(&to_fragment("data", &p.data))).into(),
                        ],
                        cas: None,
                    });
                }
                ops.push(Op {
                    sql: UPSERT_PAYMENT,
                    params: payment_values(p, *expected),
                    cas: Some("payment"),
                });
            }
            Write::Receipt(r) => {
                let mut params = vec![
                    r.receipt_id.as_str().into(),
                    r.notice.fiscal_code.as_str().into(),
                    r.notice.notice_number.as_str().into(),
                    int(r.created_at),
                    r.body_v1.as_deref().map(pack).into(),
                    r.body_v2.as_deref().map(pack).into(),
                ];
                let sql = match d.lease {
                    Some(l) => {
                        params.push(int(l.owner));
                        params.push(int(r.created_at + l.lease_ms));
                        INSERT_LEASED_RECEIPT
                    }
                    None => INSERT_RECEIPT,
                };
                ops.push(Op {
                    sql,
                    params,
                    cas: None,
                });
            }
            Write::Recipient(r) => {
                let parts = CopyParts::split(&r.request);
                ops.push(Op {
                    sql: UPSERT_RECIPIENT,
                    params: vec![
                        r.receipt_id.as_str().into(),
                        r.station.as_str().into(),
                        r.ec.as_str().into(),
                        Val::Int(i64::from(r.version.number())),
                        r.status.as_str().into(),
                        Val::Int(i64::from(r.attempts)),
                        int(r.next_attempt_at),
                        r.last_error.as_deref().into(),
                        parts.map_or(r.request.as_str(), |p| p.head).into(),
                        parts.map_or("", |p| p.tail).into(),
                    ],
                    cas: None,
                });
                if let Some(l) = d.lease {
                    ops.push(Op {
                        sql: EXTEND_LEASE,
                        params: vec![
                            int(r.next_attempt_at + l.lease_ms),
                            r.receipt_id.as_str().into(),
                            int(l.owner),
                        ],
                        cas: Some("receipt lease"),
                    });
                }
            }
            Write::PutIdempotency(e) => ops.push(Op {
                sql: PUT_IDEMPOTENCY,
                params: vec![
                    e.key.psp.as_str().into(),
                    e.key.key.as_str().into(),
                    e.key.primitive.into(),
                    Val::Blob(Cow::Borrowed(&e.request_hash[..])),
                    Some(pack(&e.reply.envelope)).into(),
                    e.reply.fault.map(FaultCode::as_str).into(),
                    e.token.as_ref().map(|t| t.as_str()).into(),
                    int(e.valid_to),
                    int(e.inserted_at),
                ],
                cas: Some("idempotency entry"),
            }),
            Write::DeleteIdempotency { key, token } => ops.push(Op {
                sql: DELETE_IDEMPOTENCY,
                params: vec![
                    key.psp.as_str().into(),
                    key.key.as_str().into(),
                    key.primitive.into(),
                    token.as_str().into(),
                ],
                cas: None,
            }),
            Write::Event(e) => {
                let values = journal_values(&crate::journal::rows::event_row(e));
                let (sql, params) = match d.events {
                    Events::Numbered => {
                        let mut params = vec![int(next_id())];
                        params.extend(values);
                        (INSERT_NUMBERED_EVENT, params)
                    }
                    Events::Sequenced => (INSERT_JOURNAL, values),
                };
                ops.push(Op {
                    sql,
                    params,
                    cas: None,
                });
            }
            Write::Status(row) => statuses.push(row),
        }
    }
    for (notice, at, lines) in statuses.notices {
        let mut params = vec![
            notice.fiscal_code.as_str().into(),
            notice.notice_number.as_str().into(),
        ];
        let sql = match d.events {
            Events::Numbered => {
                params.push(int(next_id()));
                INSERT_NUMBERED_STATUS
            }
            Events::Sequenced => INSERT_STATUS,
        };
        params.push(int(at));
        params.push(Val::Text(Cow::Owned(lines)));
        ops.push(Op {
            sql,
            params,
            cas: None,
        });
    }
    ops
}

/// A notice's status histories, in the order written (`$1`, `$2`: the notice).
pub const SELECT_STATUS_HISTORY: &str =
    "SELECT rows FROM status_history WHERE fiscal_code = $1 AND notice_number = $2 ORDER BY id";

const INSERT_NUMBERED_STATUS: &str = "INSERT INTO status_history (fiscal_code, notice_number, id, at, rows) VALUES ($1, $2, $3, $4, $5)";

const INSERT_STATUS: &str =
    "INSERT INTO status_history (fiscal_code, notice_number, at, rows) VALUES ($1, $2, $3, $4)";

/// The status-history rows of one commit, gathered by notice: each notice's rows are written as
/// one table row, one line per history row: `at kind status token [station]`, tab-separated.
#[derive(Default)]
struct StatusBatch<'a> {
    notices: Vec<(&'a NoticeKey, Millis, String)>,
}

impl<'a> StatusBatch<'a> {
    fn push(&mut self, s: &'a StatusRow) {
        let i = match self.notices.iter().position(|(n, ..)| *n == &s.notice) {
            Some(i) => i,
            None => {
                self.notices.push((&s.notice, s.at, String::new()));
                self.notices.len() - 1
            }
        };
        let lines = &mut self.notices[i].2;
        use std::fmt::Write as _;
        let _ = write!(
            lines,
            "{}\t{}\t{}\t{}",
            s.at,
            s.of.kind(),
            s.of.status(),
            s.of.token().as_str()
        );
        if let Some(station) = s.of.station() {
            lines.push('\t');
            lines.push_str(station.as_str());
        }
        lines.push('\n');
    }
}

/// The rows of one `status_history` line set (see [`StatusBatch`]).
pub fn status_rows(key: &NoticeKey, lines: &str) -> Result<Vec<StatusRow>, String> {
    lines
        .lines()
        .map(|line| {
            let mut f = line.split('\t');
            let mut next = || f.next().ok_or_else(|| format!("short line '{line}'"));
            let at = next()?.parse::<u64>().map_err(|e| e.to_string())?;
            let kind = next()?.parse::<u8>().map_err(|e| e.to_string())?;
            let status = next()?;
            let token = PaymentToken::new(next()?)?;
            let station = next().ok().map(Text35::new).transpose()?;
            let of = StatusOf::from_columns(kind, status, token, station)
                .ok_or_else(|| format!("unknown status '{line}'"))?;
            Ok(StatusRow {
                at,
                notice: key.clone(),
                of,
            })
        })
        .collect()
}

/// A notice's status histories from the texts of its `status_history` rows, in the order read.
pub fn status_history(
    key: &NoticeKey,
    texts: impl IntoIterator<Item = Result<String, String>>,
) -> Result<Vec<StatusRow>, StoreError> {
    let mut out = Vec::new();
    for text in texts {
        out.extend(
            text.and_then(|t| status_rows(key, &t))
                .map_err(|e| corrupt("status_history", e))?,
        );
    }
    Ok(out)
}

/// The migrations (indexes in a list of `count`) a database at schema `version` still needs;
/// a database migrated by a newer node is refused.
pub fn pending_migrations(
    version: usize,
    count: usize,
) -> Result<std::ops::Range<usize>, StoreError> {
    if version > count {
        return Err(StoreError::Failed(format!(
            "database schema version {version} is newer than this node ({count})"
        )));
    }
    Ok(version..count)
}

fn payment_values(p: &Payment, expected: u64) -> Vec<Val<'_>> {
    let o = p.outcome.as_ref();
    vec![
        p.token.as_str().into(),
        p.notice.fiscal_code.as_str().into(),
        p.notice.notice_number.as_str().into(),
        p.status.as_str().into(),
        p.psp.id_psp.as_str().into(),
        p.psp.id_broker_psp.as_str().into(),
        p.psp.id_channel.as_str().into(),
        Val::Int(i64::from(p.psp_version.number())),
        p.station.id.as_str().into(),
        p.station.broker.as_str().into(),
        Val::Int(i64::from(p.station.version.number())),
        p.idempotency_key.as_ref().map(|k| k.as_str()).into(),
        Val::Int(p.request.amount.cents() as i64),
        p.request.due_date.as_ref().map(|d| d.as_str()).into(),
        p.request.payment_note.as_ref().map(|n| n.as_str()).into(),
        p.request.expiration_ms.into(),
        p.request.payment_method.map(|m| m.as_str()).into(),
        p.request.touch_point.map(|t| t.as_str()).into(),
        int(p.activated_at),
        int(p.deadline),
        o.map(|o| o.outcome.as_str()).into(),
        o.map(|o| o.received_at as i64).into(),
        o.map(|o| o.psp.id_psp.as_str()).into(),
        o.map(|o| o.psp.id_broker_psp.as_str()).into(),
        o.map(|o| o.psp.id_channel.as_str()).into(),
        o.map(|o| i64::from(o.version.number())).into(),
        o.and_then(|o| o.details.as_ref())
            .map(|d| pack(&to_fragment("details", d)))
            .into(),
        int(p.revision),
        int(expected),
    ]
}

/// What retention deletes, in batches (see [`super::Retention`]): finished payments (with their
/// data, receipts and copies) activated before `$1`, and expired idempotency entries. A notice
/// stays: a paid one must keep refusing a second payment.
pub const RETENTION_BATCH: usize = 1000;

pub const DELETE_OLD_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE valid_to <= $1";

/// Payments activated before `$1` that are over: cancelled, failed, or paid with every copy of
/// their receipt delivered or given up on.
pub const FINISHED_PAYMENTS: &str = "SELECT token FROM payments p WHERE p.activated_at < $1
   AND p.status IN ('NOTIFIED', 'FAILED', 'CANCELLED', 'PAID')
   AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.receipt_id = p.token AND r.status = 'PENDING')
 LIMIT $2";

/// The rows of one finished payment, children first.
pub const DELETE_FINISHED: [&str; 4] = [
    "DELETE FROM recipients WHERE receipt_id = $1",
    "DELETE FROM receipts WHERE receipt_id = $1",
    "DELETE FROM payment_data WHERE token = $1",
    "DELETE FROM payments WHERE token = $1",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement's placeholders are first used in increasing order (see the module doc).
    #[test]
    fn placeholders_come_in_order() {
        for sql in [
            SELECT_NOTICE,
            SELECT_IDEMPOTENCY,
            UPSERT_NOTICE,
            INSERT_PAYMENT_DATA,
            UPSERT_PAYMENT,
            INSERT_RECEIPT,
            INSERT_LEASED_RECEIPT,
            UPSERT_RECIPIENT,
            EXTEND_LEASE,
            PUT_IDEMPOTENCY,
            DELETE_IDEMPOTENCY,
            INSERT_NUMBERED_EVENT,
            INSERT_JOURNAL,
            DELETE_OLD_IDEMPOTENCY,
            FINISHED_PAYMENTS,
            SELECT_STATUS_HISTORY,
            INSERT_NUMBERED_STATUS,
            INSERT_STATUS,
        ]
        .into_iter()
        .chain(DELETE_FINISHED)
        {
            let mut seen = 0;
            let mut rest = sql;
            while let Some(i) = rest.find('$') {
                let digits: String = rest[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let n: usize = digits.parse().unwrap();
                assert!(n <= seen + 1, "${n} before ${} in {sql}", seen + 1);
                seen = seen.max(n);
                rest = &rest[i + 1 + digits.len()..];
            }
        }
    }

    #[test]
    fn packed_values_round_trip() {
        let xml = "<receipt><receiptId>abc</receiptId></receipt>".repeat(20);
        let packed = pack(&xml);
        assert!(packed.len() < xml.len() / 4);
        assert_eq!(unpack(&packed).unwrap(), xml);
        assert!(unpack(b"\x05\x00").is_err());
    }
}
