//! The final checks of the crash and power-cut tests: the node's store and journal (read-only;
//! a SQLite file, or the PostgreSQL database of a cluster) against what the PSP side was told
//! and what the simulated EC received.
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use pagonode::mock_ec::StoredReceipt;
use rusqlite::{Connection, OpenFlags};

use super::load::{Activation, Kind, Ledger, Phase, PhaseSpan};
use super::node_proc::Crash;

/// How long after a phase ends its effects may still be seen (requests already in flight, idle
/// connections of the node's pool to a server that was restarted).
pub const PHASE_GRACE_MS: u64 = 1500;

/// How soon after its deadline (or after the restart, if the node was down at the deadline) a
/// deadline must have fired.
pub const DEADLINE_SLACK_MS: u64 = 5000;

/// How late, on this shared 2-core machine, a thread of the node may run after it was due (the
/// journal writer's wake-ups): the one allowance of the journal check beyond the design's own
/// periods.
pub const SCHEDULING_SLACK_MS: u64 = 500;

/// The journal writer gathers rows this long before writing them (`journal/writer.rs`,
/// `GATHER`): a kill loses the rows queued in that instant.
pub const JOURNAL_GATHER_MS: u64 = 50;

/// The journal writer syncs what it wrote at least this often (`journal/writer.rs`,
/// `SYNC_EVERY`): a power cut loses the exchanges of that last second too.
pub const JOURNAL_SYNC_MS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct DbPayment {
    pub fc: String,
    pub nn: String,
    pub status: String,
    pub activated_at: u64,
    pub deadline: u64,
    pub outcome: Option<String>,
    pub outcome_at: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct DbEvent {
    pub kind: String,
    pub at: u64,
    pub outcome: Option<String>,
    pub station: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DbRecipient {
    pub status: String,
    pub ec: String,
    pub request: Option<String>,
}

/// The node's state tables.
pub struct Db {
    pub payments: HashMap<String, DbPayment>,
    /// Engine events by token, in commit order.
    pub events: HashMap<String, Vec<DbEvent>>,
    /// Every engine event (kind, at), for the phase checks.
    pub all_events: Vec<(String, u64)>,
    pub receipts: BTreeSet<String>,
    /// By (receipt id, station).
    pub recipients: HashMap<(String, String), DbRecipient>,
    /// (fiscal code, notice number) → (state, token).
    pub notices: HashMap<(String, String), (String, Option<String>)>,
}

/// Where the node's state is: its SQLite file, or the PostgreSQL database of a cluster.
#[derive(Debug, Clone)]
pub enum Source {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A column's value.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }

    fn int(&self) -> Option<u64> {
        match self {
            Value::Int(i) => Some(*i as u64),
            _ => None,
        }
    }

    fn blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

impl Source {
    /// The rows of `sql` (read-only, beside the running nodes).
    pub fn rows(&self, sql: &str) -> Result<Vec<Vec<Value>>, String> {
        match self {
            Source::Sqlite(path) => sqlite_rows(path, sql),
            Source::Postgres(url) => {
                let (url, sql) = (url.clone(), sql.to_string());
                std::thread::spawn(move || postgres_rows(&url, &sql))
                    .join()
                    .map_err(|_| "the PostgreSQL reader panicked".to_string())?
            }
        }
    }

    /// The table of the state changes' journal rows.
    fn events(&self) -> &'static str {
        match self {
            Source::Sqlite(_) => "events",
            Source::Postgres(_) => "journal",
        }
    }

    fn count(&self, sql: &str) -> Result<u64, String> {
        self.rows(sql)?
            .first()
            .and_then(|r| r.first())
            .and_then(Value::int)
            .ok_or_else(|| format!("no count from {sql}"))
    }
}

fn sqlite_rows(path: &Path, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    use rusqlite::types::ValueRef;
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut st = c.prepare(sql).map_err(|e| format!("{sql}: {e}"))?;
    let n = st.column_count();
    let mut rows = st.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(match r.get_ref(i).map_err(|e| e.to_string())? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Int(v as i64),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(row);
    }
    Ok(out)
}

fn postgres_rows(url: &str, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    use tokio_postgres::types::Type;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(conn);
        let rows = client
            .query(sql, &[])
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let e = |e: tokio_postgres::Error| e.to_string();
        let mut out = Vec::new();
        for r in rows {
            let mut row = Vec::new();
            for (i, col) in r.columns().iter().enumerate() {
                let v = match *col.type_() {
                    Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::Int),
                    Type::INT4 => r
                        .try_get::<_, Option<i32>>(i)
                        .map_err(e)?
                        .map(|v| Value::Int(v.into())),
                    Type::BYTEA => r
                        .try_get::<_, Option<Vec<u8>>>(i)
                        .map_err(e)?
                        .map(Value::Blob),
                    _ => r
                        .try_get::<_, Option<String>>(i)
                        .map_err(e)?
                        .map(Value::Text),
                };
                row.push(v.unwrap_or(Value::Null));
            }
            out.push(row);
        }
        Ok(out)
    })
}

/// (PAYING payments whose deadline passed at `now`, PENDING recipients, FAILED recipients).
pub fn open_work(db: &Source, now: u64) -> Result<(u64, u64, u64), String> {
    Ok((
        db.count(&format!(
            "SELECT count(*) FROM payments WHERE status = 'PAYING' AND deadline <= {now}"
        ))?,
        db.count("SELECT count(*) FROM recipients WHERE status = 'PENDING'")?,
        db.count("SELECT count(*) FROM recipients WHERE status = 'FAILED'")?,
    ))
}

/// PAYING payments whose deadline passed at `now`: (token, deadline).
pub fn overdue(db: &Source, now: u64) -> Result<Vec<(String, u64)>, String> {
    Ok(db
        .rows(&format!("SELECT token, deadline FROM payments WHERE status = 'PAYING' AND deadline <= {now} ORDER BY deadline LIMIT 10"))?
        .iter()
        .map(|r| (r[0].text().unwrap_or_default(), r[1].int().unwrap_or(0)))
        .collect())
}

impl Db {
    pub fn read(db: &Source) -> Result<Db, String> {
        let mut payments = HashMap::new();
        for r in db.rows("SELECT token, fiscal_code, notice_number, status, activated_at, deadline, outcome, outcome_at FROM payments")? {
            payments.insert(
                r[0].text().unwrap_or_default(),
                DbPayment {
                    fc: r[1].text().unwrap_or_default(),
                    nn: r[2].text().unwrap_or_default(),
                    status: r[3].text().unwrap_or_default(),
                    activated_at: r[4].int().unwrap_or(0),
                    deadline: r[5].int().unwrap_or(0),
                    outcome: r[6].text(),
                    outcome_at: r[7].int(),
                },
            );
        }
        let mut events: HashMap<String, Vec<DbEvent>> = HashMap::new();
        let mut all_events = Vec::new();
        let sql = format!(
            "SELECT token, primitive, at, outcome, station FROM {} WHERE component = 'engine' ORDER BY id",
            db.events()
        );
        for r in db.rows(&sql)? {
            let ev = DbEvent {
                kind: r[1].text().unwrap_or_default(),
                at: r[2].int().unwrap_or(0),
                outcome: r[3].text(),
                station: r[4].text(),
            };
            all_events.push((ev.kind.clone(), ev.at));
            if let Some(t) = r[0].text() {
                events.entry(t).or_default().push(ev);
            }
        }
        let receipts = db
            .rows("SELECT receipt_id FROM receipts")?
            .iter()
            .filter_map(|r| r[0].text())
            .collect::<BTreeSet<_>>();
        let mut recipients = HashMap::new();
        for r in db.rows(
            "SELECT r.receipt_id, r.station, r.status, r.ec, r.head, r.tail,
                    CASE r.version WHEN 1 THEN c.body_v1 ELSE c.body_v2 END
               FROM recipients r LEFT JOIN receipts c ON c.receipt_id = r.receipt_id",
        )? {
            let request = match (r[4].text(), r[6].blob(), r[5].text()) {
                (Some(head), Some(body), Some(tail)) => {
                    pagonode::store::schema::join_copy(&head, body, &tail).ok()
                }
                _ => None,
            };
            recipients.insert(
                (
                    r[0].text().unwrap_or_default(),
                    r[1].text().unwrap_or_default(),
                ),
                DbRecipient {
                    status: r[2].text().unwrap_or_default(),
                    ec: r[3].text().unwrap_or_default(),
                    request,
                },
            );
        }
        let mut notices = HashMap::new();
        for r in db.rows("SELECT fiscal_code, notice_number, state, token FROM notices")? {
            notices.insert(
                (
                    r[0].text().unwrap_or_default(),
                    r[1].text().unwrap_or_default(),
                ),
                (r[2].text().unwrap_or_default(), r[3].text()),
            );
        }
        Ok(Db {
            payments,
            events,
            all_events,
            receipts,
            recipients,
            notices,
        })
    }

    fn events_of(&self, token: &str, kind: &str) -> Vec<&DbEvent> {
        self.events
            .get(token)
            .map(|v| v.iter().filter(|e| e.kind == kind).collect())
            .unwrap_or_default()
    }
}

/// The numbers of the summary line, and every violation found.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub acknowledged: usize,
    pub completed: usize,
    pub copies_delivered: usize,
    pub lost: usize,
    pub conflicts: usize,
    pub bad_expiries: usize,
    pub pending_fired: usize,
    pub late_ok: usize,
    pub ko_acknowledged: usize,
    pub abandoned: usize,
    pub reactivated: usize,
    pub spontaneous: usize,
    pub multi: usize,
    pub redeliveries: u64,
    pub ec_failures: usize,
    pub delivery_failures: usize,
    pub spurious_timeouts: usize,
}

const PAID: [&str; 2] = ["PAID", "NOTIFIED"];

/// Runs every check.
pub fn check(
    db: &Db,
    ledger: &Ledger,
    crashes: &[Crash],
    phases: &[PhaseSpan],
    mock: &[StoredReceipt],
    cluster: bool,
) -> Report {
    let mut r = Report {
        violations: ledger
            .violations
            .iter()
            .map(|v| format!("PSP side: {v}"))
            .collect(),
        ..Report::default()
    };
    let activations: HashMap<&str, &Activation> = ledger
        .activations
        .iter()
        .map(|a| (a.token.as_str(), a))
        .collect();
    let delivered: HashMap<(&str, &str), &StoredReceipt> = mock
        .iter()
        .map(|m| ((m.station.as_str(), m.receipt_id.as_str()), m))
        .collect();

    acknowledged_payments(&mut r, db, ledger, &activations, &delivered);
    no_conflicting_receipts(&mut r, db, mock);
    expiries(&mut r, db);
    // A cluster is never down: the other nodes fire a dead node's deadlines, on time.
    let down: &[Crash] = if cluster { &[] } else { crashes };
    crash_deadlines(&mut r, db, ledger, crashes, down);
    psp_expirations(&mut r, db, ledger, down);
    nothing_lost(&mut r, db, ledger);
    state_changes_complete(&mut r, db);
    ec_phases(&mut r, db, ledger, phases);
    r
}

/// When a deadline at `at` must have fired by: `at`, or the restart after it if the node was
/// down then (killed, or its power cut), plus the slack.
fn fire_by(at: u64, crashes: &[Crash]) -> u64 {
    crashes
        .iter()
        .find(|c| c.killed_at <= at && at <= c.up_at)
        .map_or(at, |c| c.up_at)
        + DEADLINE_SLACK_MS
}

/// 4b. Deadlines against what the PSP asked for, not only against the deadline the node stored:
///     the token lives `expirationTime` (spontaneous payments: the outcome deadline) from the
///     moment the node took the activation, which lies between the PSP's first send and its
///     answer. So the stored deadline lies in that window too; the expiry comes neither before
///     the window's start nor (beyond the slack) after its end; an outcome answered before the
///     window's start is never `PPT_TOKEN_SCADUTO`; an OK outcome sent after the window's end
///     (plus the slack) is never accepted as on time.
fn psp_expirations(r: &mut Report, db: &Db, ledger: &Ledger, crashes: &[Crash]) {
    for a in &ledger.activations {
        let lifetime = match (a.kind, a.expiration_ms) {
            (Kind::Spontaneous, _) => crate::run::OUTCOME_DEADLINE_MS,
            (_, Some(ms)) => ms,
            // The default lifetime (30 minutes) outlasts the run.
            (_, None) => continue,
        };
        let t = a.token.as_str();
        let (earliest, latest) = (a.sent_at + lifetime, a.acked_at + lifetime);
        let Some(p) = db.payments.get(t) else {
            continue; // reported by nothing_lost
        };
        if p.deadline < earliest || p.deadline > latest {
            r.bad_expiries += 1;
            r.violations.push(format!(
                "token {t}: the node stored the deadline {}, outside [{earliest}, {latest}]: the PSP sent the activation at {} with a lifetime of {lifetime} ms and got the answer at {}",
                p.deadline, a.sent_at, a.acked_at
            ));
        }
        if let Some(e) = db.events_of(t, "EXPIRED").first() {
            if e.at < earliest {
                r.bad_expiries += 1;
                r.violations.push(format!(
                    "token {t} expired at {}, {} ms before the earliest end of the lifetime the PSP asked for ({lifetime} ms from {})",
                    e.at,
                    earliest - e.at,
                    a.sent_at
                ));
            }
            if e.at > fire_by(latest, crashes) {
                r.bad_expiries += 1;
                r.violations.push(format!(
                    "token {t} expired at {}, {} ms after the latest end of the lifetime the PSP asked for",
                    e.at,
                    e.at - latest
                ));
            }
        }
        for o in ledger.outcomes.iter().filter(|o| o.token == t) {
            if o.answer.starts_with("PPT_TOKEN_SCADUTO") && o.answered < earliest {
                r.bad_expiries += 1;
                r.violations.push(format!(
                    "token {t}: the outcome answered at {} was {}, {} ms before the lifetime the PSP asked for could end",
                    o.answered,
                    o.answer,
                    earliest - o.answered
                ));
            }
            if o.answer == "OK" && o.sent > fire_by(latest, crashes) {
                r.bad_expiries += 1;
                r.violations.push(format!(
                    "token {t}: an outcome sent at {}, {} ms after the lifetime the PSP asked for had ended, was accepted as on time",
                    o.sent,
                    o.sent - latest
                ));
            }
        }
    }
}

/// 6. The journal's state changes are complete: every state in the tables has the event that
///    made it (they are committed in the same transaction, so none may be missing).
fn state_changes_complete(r: &mut Report, db: &Db) {
    for (t, p) in &db.payments {
        let count = |kind: &str| db.events_of(t, kind).len();
        if count("ACTIVATED") != 1 {
            r.violations.push(format!(
                "token {t}: {} ACTIVATED events",
                count("ACTIVATED")
            ));
        }
        if p.outcome.is_some() && count("OUTCOME_ACCEPTED") == 0 {
            r.violations.push(format!(
                "token {t}: outcome {:?} stored without an OUTCOME_ACCEPTED event",
                p.outcome
            ));
        }
        if db.receipts.contains(t) && count("RECEIPT_GENERATED") != 1 {
            r.violations.push(format!(
                "token {t}: a receipt with {} RECEIPT_GENERATED events",
                count("RECEIPT_GENERATED")
            ));
        }
        if p.status == "NOTIFIED" && count("PAYMENT_NOTIFIED") != 1 {
            r.violations.push(format!(
                "token {t}: NOTIFIED with {} PAYMENT_NOTIFIED events",
                count("PAYMENT_NOTIFIED")
            ));
        }
    }
    for ((id, station), row) in &db.recipients {
        if row.status == "NOTIFIED"
            && !db
                .events_of(id, "RECIPIENT_NOTIFIED")
                .iter()
                .any(|e| e.station.as_deref() == Some(station.as_str()))
        {
            r.violations.push(format!(
                "receipt {id} → {station}: NOTIFIED without a RECIPIENT_NOTIFIED event"
            ));
        }
    }
}

/// The journal check's result.
pub struct JournalCheck {
    pub summary: String,
    pub violations: Vec<String>,
}

/// The journal after the disruptions: readable to its end, ids in order, and the exchange of
/// every outcome the PSP got an answer to, but for those a disruption may have taken by design.
/// An exchange is queued before its answer is sent and the writer writes what it gathered
/// [`JOURNAL_GATHER_MS`] later: a kill takes only the exchanges answered within that (plus
/// [`SCHEDULING_SLACK_MS`]) before it. Written exchanges are synced at least every
/// [`JOURNAL_SYNC_MS`]: a power cut also takes those of that last second. State changes are
/// committed with the state: [`state_changes_complete`] allows no loss at all.
pub fn journal(
    db: &pagonode::config::Database,
    ledger: &Ledger,
    crashes: &[Crash],
) -> JournalCheck {
    use pagonode::journal::JournalQuery;
    let reader = match pagonode::cli::journal::JournalReader::open(db) {
        Ok(r) => r,
        Err(e) => {
            return JournalCheck {
                summary: String::new(),
                violations: vec![format!("journal unreadable: {e}")],
            };
        }
    };
    // The answers the node journalled: (primitive family, what identifies the payment). An
    // activation answered from the idempotency cache is journalled without its token: it is
    // found by its notice (the ledger's activations are of distinct notices but for the
    // re-activations at the end). An outcome row always has its token.
    let (mut ids, mut answered) = (Vec::new(), std::collections::HashSet::new());
    let read = reader.query_all(&JournalQuery::default(), None, |r| {
        ids.push(pagonode::journal::Cursor::of(r));
        let e = &r.entry;
        if e.subtype != Some(pagonode::journal::Subtype::Resp) {
            return;
        }
        if e.primitive.starts_with("activatePaymentNotice") && e.outcome.as_deref() == Some("OK") {
            answered.extend(
                e.notice_number
                    .clone()
                    .map(|n| ("activatePaymentNotice", n)),
            );
        } else if e.primitive.starts_with("sendPaymentOutcome") {
            answered.extend(e.token.clone().map(|t| ("sendPaymentOutcome", t)));
        }
    });
    let mut violations = Vec::new();
    if let Err(e) = read {
        violations.push(format!("journal unreadable: {e}"));
    }
    // Listed in time order (then by id), each row once.
    let distinct: std::collections::HashSet<i64> = ids.iter().map(|c| c.id).collect();
    if !ids.windows(2).all(|w| w[0] < w[1]) || distinct.len() != ids.len() {
        violations.push("journal rows out of time order, or listed twice".into());
    }
    let told = ledger
        .activations
        .iter()
        .map(|a| ("activatePaymentNotice", &a.nn, a.acked_at))
        .chain(
            ledger
                .outcomes
                .iter()
                .map(|o| ("sendPaymentOutcome", &o.token, o.answered)),
        );
    let (mut total, mut excused, mut missing) = (0, 0, 0);
    for (family, id, at) in told {
        total += 1;
        if answered.contains(&(family, id.clone())) {
            continue;
        }
        // Received up to the slack after the disruption: sent before it, read late.
        let taken = crashes.iter().any(|c| {
            let window = JOURNAL_GATHER_MS
                + SCHEDULING_SLACK_MS
                + if c.power_cut { JOURNAL_SYNC_MS } else { 0 };
            at <= c.killed_at + SCHEDULING_SLACK_MS && c.killed_at <= at + window
        });
        if taken {
            excused += 1;
            continue;
        }
        missing += 1;
        if missing <= 10 {
            violations.push(format!(
                "the {family} answer on {id} received at {at} is not in the journal, and no disruption came within the journal's sync period after it"
            ));
        }
    }
    if missing > 0 {
        violations.push(format!(
            "{missing} answers missing from the journal in all (disruptions at {:?})",
            crashes.iter().map(|c| c.killed_at).collect::<Vec<_>>()
        ));
    }
    JournalCheck {
        summary: format!(
            "  journal: {} rows; {} of {total} answered activations and outcomes with their exchange, {excused} taken by a disruption right after their answer (allowed), {missing} missing",
            ids.len(),
            total - excused - missing,
        ),
        violations,
    }
}

/// 1. Every acknowledged OK outcome: its payment completed, its receipt delivered to every
///    recipient, with the bytes the node stored.
fn acknowledged_payments(
    r: &mut Report,
    db: &Db,
    ledger: &Ledger,
    activations: &HashMap<&str, &Activation>,
    delivered: &HashMap<(&str, &str), &StoredReceipt>,
) {
    for o in ledger.outcomes.iter().filter(|o| o.ok) {
        r.acknowledged += 1;
        let t = o.token.as_str();
        let Some(a) = activations.get(t) else {
            r.violations.push(format!(
                "outcome OK acknowledged on {t}, a token no activation answered"
            ));
            r.lost += 1;
            continue;
        };
        match a.kind {
            Kind::Spontaneous => r.spontaneous += 1,
            Kind::Multi => r.multi += 1,
            _ => {}
        }
        let Some(p) = db.payments.get(t) else {
            r.violations.push(format!(
                "LOST: outcome OK acknowledged ({}) on {t} ({}/{}), no such payment in the store",
                o.answer, a.fc, a.nn
            ));
            r.lost += 1;
            continue;
        };
        if !PAID.contains(&p.status.as_str()) {
            r.violations.push(format!(
                "LOST: outcome OK acknowledged ({}) on {t} ({}/{}), payment is {}",
                o.answer, a.fc, a.nn, p.status
            ));
            r.lost += 1;
            continue;
        }
        r.completed += 1;
        if !db.receipts.contains(t) {
            r.violations.push(format!(
                "LOST: payment {t} is {} but has no receipt",
                p.status
            ));
            r.lost += 1;
        }
        let expected: BTreeSet<&str> = a.copies.iter().map(|(s, _)| *s).collect();
        let actual: BTreeSet<&str> = db
            .recipients
            .keys()
            .filter(|(id, _)| id == t)
            .map(|(_, s)| s.as_str())
            .collect();
        if expected != actual {
            r.violations.push(format!(
                "receipt {t} ({}/{}): recipients {actual:?}, expected {expected:?}",
                a.fc, a.nn
            ));
        }
        let mut all_notified = true;
        for (station, id_pa) in &a.copies {
            let row = db.recipients.get(&(t.to_string(), station.to_string()));
            match row {
                Some(row) if row.status == "NOTIFIED" => {}
                Some(row) => {
                    all_notified = false;
                    r.violations.push(format!(
                        "receipt {t} → {station}: recipient {} after the drain",
                        row.status
                    ));
                }
                None => all_notified = false,
            }
            if let Some(row) = row
                && row.ec != *id_pa
            {
                r.violations.push(format!(
                    "receipt {t} → {station}: idPA {} in the store, expected {id_pa}",
                    row.ec
                ));
            }
            match delivered.get(&(*station, t)) {
                None => {
                    r.lost += 1;
                    r.violations.push(format!(
                        "LOST: receipt {t} ({}/{}) never delivered to {station}",
                        a.fc, a.nn
                    ));
                }
                Some(m) => {
                    r.copies_delivered += 1;
                    if m.id_pa != *id_pa || m.outcome != "OK" {
                        r.violations.push(format!("receipt {t} → {station}: delivered with idPA {} outcome {}, expected {id_pa} OK", m.id_pa, m.outcome));
                    }
                }
            }
        }
        if all_notified && p.status != "NOTIFIED" {
            r.violations.push(format!(
                "payment {t} is {} although every recipient acknowledged its receipt",
                p.status
            ));
        }
        match o.answer.as_str() {
            "OK" => {
                if !db.events_of(t, "EXPIRED").is_empty() {
                    r.violations.push(format!(
                        "{t}: the PSP was told OK, yet the token has an EXPIRED event"
                    ));
                }
            }
            _ => {
                // PPT_TOKEN_SCADUTO: the documented late-OK recovery.
                r.late_ok += 1;
                let late = db.events_of(t, "LATE_OUTCOME");
                if db.events_of(t, "EXPIRED").len() != 1
                    || !late
                        .iter()
                        .any(|e| e.outcome.as_deref() == Some("PPT_TOKEN_SCADUTO"))
                {
                    r.violations.push(format!("{t}: answered PPT_TOKEN_SCADUTO without one EXPIRED and a LATE_OUTCOME PPT_TOKEN_SCADUTO event"));
                }
            }
        }
    }
    // Every receipt whose copies were all acknowledged must have completed its payment.
    for id in &db.receipts {
        let rows: Vec<&DbRecipient> = db
            .recipients
            .iter()
            .filter(|((rid, _), _)| rid == id)
            .map(|(_, v)| v)
            .collect();
        if rows.is_empty() {
            r.violations.push(format!("receipt {id} has no recipients"));
        }
        for row in &rows {
            if row.status != "NOTIFIED" {
                r.violations.push(format!(
                    "receipt {id}: a recipient is {} after the drain",
                    row.status
                ));
            }
        }
        if let Some(p) = db.payments.get(id)
            && !rows.is_empty()
            && rows.iter().all(|x| x.status == "NOTIFIED")
            && p.status != "NOTIFIED"
            && !activations.contains_key(id.as_str())
        {
            r.violations.push(format!(
                "payment {id} is {} although every recipient acknowledged its receipt",
                p.status
            ));
        }
    }
}

/// 2. No receipt id delivered with two bodies; one receipt per token; no notice paid twice; every
///    delivered copy is exactly the copy the node stored.
fn no_conflicting_receipts(r: &mut Report, db: &Db, mock: &[StoredReceipt]) {
    let mut conflicting = BTreeSet::new();
    for m in mock {
        r.redeliveries += u64::from(m.deliveries.saturating_sub(1));
        if !m.conflicts.is_empty() {
            conflicting.insert((m.receipt_id.as_str(), m.station.as_str()));
            r.violations.push(format!(
                "CONFLICT: receipt {} delivered to {} with {} different bodies",
                m.receipt_id,
                m.station,
                m.conflicts.len() + 1
            ));
        }
        if !db.receipts.contains(&m.receipt_id) {
            r.violations.push(format!(
                "receipt {} delivered to {} but absent from the store",
                m.receipt_id, m.station
            ));
        }
        match db
            .recipients
            .get(&(m.receipt_id.clone(), m.station.clone()))
        {
            None => r.violations.push(format!(
                "receipt {} delivered to {}, which is not one of its recipients",
                m.receipt_id, m.station
            )),
            Some(row) if row.request.as_deref() != Some(m.request_body.as_str()) => {
                conflicting.insert((m.receipt_id.as_str(), m.station.as_str()));
                r.violations.push(format!("CONFLICT: receipt {} → {}: the delivered bytes differ from the copy the node stored", m.receipt_id, m.station));
            }
            Some(_) => {}
        }
    }
    r.conflicts = conflicting.len();
    for (token, events) in &db.events {
        let generated = events
            .iter()
            .filter(|e| e.kind == "RECEIPT_GENERATED")
            .count();
        if generated > 1 {
            r.violations
                .push(format!("token {token}: {generated} receipts generated"));
        }
        if generated == 1 && !db.receipts.contains(token) {
            r.violations.push(format!(
                "token {token}: receipt generated but no receipts row"
            ));
        }
    }
    let mut paid: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (t, p) in &db.payments {
        if PAID.contains(&p.status.as_str()) {
            paid.entry((p.fc.as_str(), p.nn.as_str()))
                .or_default()
                .push(t);
        }
    }
    for ((fc, nn), tokens) in paid {
        if tokens.len() > 1 {
            r.violations
                .push(format!("notice {fc}/{nn} paid twice: {tokens:?}"));
        }
        match db.notices.get(&(fc.to_string(), nn.to_string())) {
            Some((state, Some(tok))) if state == "PAID" && tokens.contains(&tok.as_str()) => {}
            other => r.violations.push(format!(
                "notice {fc}/{nn} has a paid payment {tokens:?} but its state is {other:?}"
            )),
        }
    }
}

/// 3. No payment expired early or twice, and expiry agrees with the outcome. Also: a token's
///    events were committed in the order the engine made them (each step reads the clock under
///    the engine's lock; the events' ids follow the commit order), else an older step can
///    overwrite a newer one's state on disk.
fn expiries(r: &mut Report, db: &Db) {
    for (t, events) in &db.events {
        for w in events.windows(2) {
            if w[1].at < w[0].at {
                r.violations.push(format!(
                    "token {t}: {} made at {} was committed after {} made at {}: steps reached the store out of order",
                    w[1].kind, w[1].at, w[0].kind, w[0].at
                ));
            }
        }
    }
    for (t, p) in &db.payments {
        let expired = db.events_of(t, "EXPIRED");
        if expired.len() > 1 {
            r.bad_expiries += 1;
            r.violations
                .push(format!("token {t} expired {} times", expired.len()));
        }
        if let Some(e) = expired.first() {
            if e.at < p.deadline {
                r.bad_expiries += 1;
                r.violations.push(format!(
                    "token {t} expired early: at {} < deadline {} ({} ms)",
                    e.at,
                    p.deadline,
                    p.deadline - e.at
                ));
            }
            if let Some(at) = p.outcome_at
                && at < p.deadline
            {
                r.bad_expiries += 1;
                r.violations.push(format!("token {t} expired although its outcome came on time ({} ms before the deadline)", p.deadline - at));
            }
            let late = db.events_of(t, "LATE_OUTCOME");
            let late_is = |code: &str| {
                late.iter()
                    .any(|l| l.outcome.as_deref() == Some(code) && l.at >= e.at)
            };
            match p.status.as_str() {
                "PAID" | "NOTIFIED" if !late_is("PPT_TOKEN_SCADUTO") => {
                    r.bad_expiries += 1;
                    r.violations.push(format!("token {t} is {} but expired, without the late-OK recovery (PPT_TOKEN_SCADUTO)", p.status));
                }
                "FAILED" if !late_is("PPT_TOKEN_SCADUTO_KO") => {
                    r.violations.push(format!(
                        "token {t} is FAILED but expired, without a late KO"
                    ));
                }
                "PAYING" => r
                    .violations
                    .push(format!("token {t} expired but is still PAYING")),
                _ => {}
            }
            if PAID.contains(&p.status.as_str())
                && !db
                    .events_of(t, "OUTCOME_ACCEPTED")
                    .iter()
                    .any(|o| o.at >= e.at)
            {
                r.violations
                    .push(format!("token {t}: EXPIRED after its accepted outcome"));
            }
        }
        match p.status.as_str() {
            "CANCELLED" if expired.len() != 1 => {
                r.violations.push(format!("token {t} is CANCELLED with {} EXPIRED events", expired.len()));
            }
            // Every flow ends with an outcome or a short deadline: a token still live at the end
            // is one the PSP never learnt about (its activation or its outcome was lost).
            "PAYING" => r.violations.push(format!(
                "token {t} ({}/{}) still PAYING at the end (deadline {}, activated {}): its deadline never fired, or its outcome was lost",
                p.fc, p.nn, p.deadline, p.activated_at
            )),
            _ => {}
        }
        if let Some(at) = p.outcome_at
            && at >= p.deadline
            && expired.is_empty()
        {
            r.violations.push(format!(
                "token {t}: outcome accepted {} ms after the deadline without an expiry",
                at - p.deadline
            ));
        }
        if p.outcome.is_some() != p.outcome_at.is_some() {
            r.violations
                .push(format!("token {t}: outcome and outcome_at disagree"));
        }
    }
}

/// 4. Deadlines pending at a crash fired after the restart, and every expiry came from its
///    timer (soon after the deadline, or after the restart when the node was down then), not
///    from a later request that happened to touch the notice; abandoned notices are payable
///    again. `down`: the disruptions a deadline may have waited for (none in a cluster, where
///    the other nodes take a dead one's deadlines over).
fn crash_deadlines(r: &mut Report, db: &Db, ledger: &Ledger, crashes: &[Crash], down: &[Crash]) {
    let mut untimely = BTreeSet::new();
    for (t, p) in &db.payments {
        if let Some(e) = db.events_of(t, "EXPIRED").first()
            && e.at > fire_by(p.deadline, down)
        {
            untimely.insert(t.as_str());
            r.violations.push(format!(
                "token {t}: deadline {} fired at {}, after {} (its timer did not fire; something else expired it)",
                p.deadline,
                e.at,
                fire_by(p.deadline, down)
            ));
        }
    }
    for (t, p) in &db.payments {
        let pending_at = crashes.iter().find(|c| {
            p.activated_at < c.killed_at
                && c.killed_at < p.deadline
                && p.outcome_at.is_none_or(|o| o > c.killed_at)
        });
        let Some(c) = pending_at else { continue };
        match db.events_of(t, "EXPIRED").first() {
            Some(e) => {
                if e.at < c.spawned_at && !down.is_empty() {
                    r.violations.push(format!("token {t}: pending at the kill at {}, expired at {} before the restart at {}", c.killed_at, e.at, c.spawned_at));
                } else if !untimely.contains(t.as_str()) {
                    r.pending_fired += 1;
                }
            }
            None if p.outcome_at.is_some_and(|o| o < p.deadline) => {}
            None => r.violations.push(format!(
                "token {t}: deadline {} pending at the kill at {} never fired (status {})",
                p.deadline, c.killed_at, p.status
            )),
        }
    }
    let reactivated: HashMap<(&str, &str), &Activation> = ledger
        .activations
        .iter()
        .filter(|a| a.kind == Kind::Reactivated)
        .map(|a| ((a.fc.as_str(), a.nn.as_str()), a))
        .collect();
    for a in ledger
        .activations
        .iter()
        .filter(|a| a.kind == Kind::Abandoned)
    {
        r.abandoned += 1;
        let t = a.token.as_str();
        match db.payments.get(t) {
            None => {} // reported by nothing_lost
            Some(p) if p.status != "CANCELLED" => {
                r.violations.push(format!(
                    "abandoned token {t} ({}/{}) is {}, not CANCELLED",
                    a.fc, a.nn, p.status
                ));
            }
            Some(_) => {}
        }
        match reactivated.get(&(a.fc.as_str(), a.nn.as_str())) {
            None => r.violations.push(format!(
                "abandoned notice {}/{} was not payable again",
                a.fc, a.nn
            )),
            Some(re) => {
                if !ledger.outcomes.iter().any(|o| o.token == re.token && o.ok) {
                    r.violations.push(format!(
                        "abandoned notice {}/{}: the new payment got no OK outcome",
                        a.fc, a.nn
                    ));
                }
            }
        }
    }
    r.reactivated = reactivated.len();
}

/// 5. Nothing acknowledged was lost: activations exist, KO outcomes are FAILED.
fn nothing_lost(r: &mut Report, db: &Db, ledger: &Ledger) {
    for a in &ledger.activations {
        match db.payments.get(&a.token) {
            None => {
                r.lost += 1;
                r.violations.push(format!(
                    "LOST: activation of {}/{} acknowledged with token {}, absent from the store",
                    a.fc, a.nn, a.token
                ));
            }
            Some(p) if p.fc != a.fc || p.nn != a.nn => {
                r.violations.push(format!(
                    "token {} belongs to {}/{} in the store, {}/{} was activated",
                    a.token, p.fc, p.nn, a.fc, a.nn
                ));
            }
            Some(_) => {}
        }
    }
    for o in ledger.outcomes.iter().filter(|o| !o.ok) {
        r.ko_acknowledged += 1;
        match db.payments.get(&o.token) {
            Some(p) if p.status == "FAILED" && p.outcome.as_deref() == Some("KO") => {}
            Some(p) => {
                r.lost += 1;
                r.violations.push(format!(
                    "LOST: outcome KO acknowledged ({}) on {}, payment is {} with outcome {:?}",
                    o.answer, o.token, p.status, p.outcome
                ));
            }
            None => {
                r.lost += 1;
                r.violations.push(format!(
                    "LOST: outcome KO acknowledged on {}, no such payment",
                    o.token
                ));
            }
        }
    }
}

/// The EC failure phases: activations failed with the phase's code, never with a code no
/// phase explains, and receipt deliveries failed during each (check 1 shows they arrived later).
/// A timeout outside the slow phase is the node answering correctly for an EC that took more
/// than its timeout on a loaded machine: allowed, and counted.
fn ec_phases(r: &mut Report, db: &Db, ledger: &Ledger, phases: &[PhaseSpan]) {
    let window = |p: &PhaseSpan| {
        (
            p.start,
            p.end.unwrap_or(u64::MAX).saturating_add(PHASE_GRACE_MS),
        )
    };
    let during = |p: &PhaseSpan, sent: u64, answered: u64| {
        let (from, to) = window(p);
        answered >= from && sent <= to
    };
    r.ec_failures = ledger.ec_failures.len();
    for f in &ledger.ec_failures {
        let explained = phases
            .iter()
            .any(|p| p.phase.code() == f.code && during(p, f.sent, f.answered));
        if explained {
            continue;
        }
        if f.code == Phase::Slow.code() {
            r.spurious_timeouts += 1;
        } else {
            let overlapping: Vec<&str> = phases
                .iter()
                .filter(|p| during(p, f.sent, f.answered))
                .map(|p| p.phase.name())
                .collect();
            r.violations.push(format!(
                "{} {} answered {} (sent {}, answered {}), which no EC failure explains (phases then: {overlapping:?})",
                f.op, f.notice, f.code, f.sent, f.answered
            ));
        }
    }
    r.delivery_failures = db
        .all_events
        .iter()
        .filter(|(k, _)| k == "DELIVERY_FAILED")
        .count();
    for p in phases {
        let (from, to) = window(p);
        let activations = ledger
            .ec_failures
            .iter()
            .filter(|f| {
                f.op == "activate" && f.code == p.phase.code() && during(p, f.sent, f.answered)
            })
            .count();
        let deliveries = db
            .all_events
            .iter()
            .filter(|(k, at)| k == "DELIVERY_FAILED" && *at >= from && *at <= to)
            .count();
        if activations == 0 {
            r.violations.push(format!(
                "phase '{}' at {from}: no activation failed with {}",
                p.phase.name(),
                p.phase.code()
            ));
        }
        if deliveries == 0 {
            r.violations.push(format!(
                "phase '{}' at {from}: no receipt delivery failed",
                p.phase.name()
            ));
        }
    }
}
