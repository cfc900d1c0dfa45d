//! The embedded store: SQLite in WAL mode with `synchronous=FULL` (a commit survives power loss),
//! schema migrations, a pool of read connections and one writer thread that groups the commits
//! queued while the previous one was being written into a single transaction (one fsync).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use super::{Commit, JournalQuery, JournalRow, Store, StoreError, StoreStats};
use crate::codec::node_for_psp::OutcomeDetailsV2;
use crate::codec::pa_for_node::PaymentPaV2;
use crate::codec::schema::{from_fragment, to_fragment};
use crate::codec::types::{
    Amount, FiscalCode, IdempotencyKey, IsoDate, NoticeNumber, Outcome, PaymentToken, Text35,
    Text210,
};
use crate::engine::{
    ActivationRequest, IdemEntry, IdemKey, Millis, Notice, NoticeKey, NoticeState, OutcomeRecord,
    Payment, PaymentStatus, PspRef, ReceiptRecord, Recipient, RecipientStatus, StationRef, Version,
    Write,
};
use crate::journal::{Category, JournalEntry, Subtype};

/// The schema, one entry per version: applied in order, recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. Large values written once (payment data, receipt copies) live in
    // their own tables so the rows updated at every transition stay small.
    "
    CREATE TABLE notices (
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        state TEXT NOT NULL,
        token TEXT,
        demanded_at INTEGER,
        PRIMARY KEY (fiscal_code, notice_number)
    ) WITHOUT ROWID;
    CREATE TABLE payments (
        token TEXT PRIMARY KEY,
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        status TEXT NOT NULL,
        id_psp TEXT NOT NULL,
        id_broker_psp TEXT NOT NULL,
        id_channel TEXT NOT NULL,
        psp_version INTEGER NOT NULL,
        station TEXT NOT NULL,
        station_broker TEXT NOT NULL,
        station_version INTEGER NOT NULL,
        idempotency_key TEXT,
        amount_cents INTEGER NOT NULL,
        due_date TEXT,
        payment_note TEXT,
        expiration_ms INTEGER,
        payment_method TEXT,
        touch_point TEXT,
        activated_at INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        outcome TEXT,
        outcome_at INTEGER,
        outcome_psp TEXT,
        outcome_broker TEXT,
        outcome_channel TEXT,
        outcome_version INTEGER,
        outcome_details TEXT
    ) WITHOUT ROWID;
    CREATE INDEX payments_by_notice ON payments (fiscal_code, notice_number);
    CREATE INDEX payments_paying ON payments (status) WHERE status = 'PAYING';
    CREATE TABLE payment_data (
        token TEXT PRIMARY KEY,
        data TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE receipts (
        receipt_id TEXT PRIMARY KEY,
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE recipients (
        receipt_id TEXT NOT NULL,
        station TEXT NOT NULL,
        ec TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        PRIMARY KEY (receipt_id, station)
    ) WITHOUT ROWID;
    CREATE INDEX recipients_pending ON recipients (status) WHERE status <> 'NOTIFIED';
    CREATE TABLE recipient_requests (
        receipt_id TEXT NOT NULL,
        station TEXT NOT NULL,
        request TEXT NOT NULL,
        PRIMARY KEY (receipt_id, station)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        psp TEXT NOT NULL,
        key TEXT NOT NULL,
        primitive TEXT NOT NULL,
        request_hash BLOB NOT NULL,
        response TEXT NOT NULL,
        token TEXT,
        valid_to INTEGER NOT NULL,
        inserted_at INTEGER NOT NULL,
        PRIMARY KEY (psp, key, primitive)
    ) WITHOUT ROWID;
    CREATE TABLE events (JOURNAL_COLUMNS);
    CREATE INDEX events_notice ON events (notice_number);
    CREATE INDEX events_token ON events (token);
    ",
];

/// The journal database's schema: SOAP exchanges, written off the payment path.
const JOURNAL_MIGRATIONS: &[&str] = &["
    CREATE TABLE journal (JOURNAL_COLUMNS);
    CREATE INDEX journal_notice ON journal (notice_number);
    CREATE INDEX journal_token ON journal (token);
    "];

/// Columns shared by `events` (state changes, in the state database) and `journal` (exchanges,
/// in the journal database): together they are the event journal.
const JOURNAL_COLUMNS: &str = "
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        component TEXT NOT NULL,
        category TEXT,
        primitive TEXT NOT NULL,
        subtype TEXT,
        fiscal_code TEXT,
        notice_number TEXT,
        iuv TEXT,
        token TEXT,
        psp TEXT,
        channel TEXT,
        station TEXT,
        outcome TEXT,
        caller TEXT,
        callee TEXT,
        payload TEXT,
        detail TEXT,
        duration_ms INTEGER";

/// Tells a caller its job is written (or not).
type Done = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Commit(Vec<Write>, Done),
    Journal(Vec<JournalEntry>),
    Maintenance {
        journal_before: Millis,
        now: Millis,
        done: Done,
    },
    Flush(Done),
}

/// The SQLite store. Cloning shares it.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The state writer (commits) and the journal writer (exchanges).
    jobs: Mutex<Option<(mpsc::Sender<Job>, mpsc::Sender<Job>)>>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    journal_path: PathBuf,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    commit_jobs: AtomicU64,
    /// The next journal row id, shared by both databases so ids order the whole journal.
    next_journal_id: AtomicU64,
}

/// At most this many commits go in one transaction.
const MAX_GROUP: usize = 1024;
/// How a writer gathers jobs into one transaction.
#[derive(Clone, Copy)]
enum Linger {
    /// Someone waits for each commit: wait for company at most `max`, and stop at the first
    /// silence of `step`.
    WhileArriving {
        max: std::time::Duration,
        step: std::time::Duration,
    },
    /// Nobody waits: after the first job, sleep this long, then take everything queued. While
    /// the writer sleeps (rather than waits on the channel) senders do not wake it, so the
    /// payment path pays no wake-up per journal row.
    Gather(std::time::Duration),
}

/// State commits: linger briefly.
const STATE_LINGER: Linger = Linger::WhileArriving {
    max: std::time::Duration::from_micros(1500),
    step: std::time::Duration::from_micros(300),
};
/// Journal rows: many per transaction (fewer pages written per row), one wake-up per batch.
const JOURNAL_LINGER: Linger = Linger::Gather(std::time::Duration::from_millis(50));
const READERS: usize = 4;

/// How often the WAL files are checkpointed into the databases, by a thread of their own (so
/// no commit waits for a checkpoint).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn open(path: &Path, synchronous: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    // 64 MiB of page cache: the hot pages of every table stay in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if version > migrations.len() {
        return Err(StoreError(format!(
            "database schema version {version} is newer than this node ({})",
            migrations.len()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(&sql.replace("JOURNAL_COLUMNS", JOURNAL_COLUMNS))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The journal database lives next to the state database: `x.db` → `x.journal.db`.
fn journal_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pagonode");
    path.with_file_name(format!("{stem}.journal.db"))
}

fn reader(path: &Path, journal: &Path) -> Result<Connection, StoreError> {
    let c = open(path, "FULL")?;
    c.execute("ATTACH DATABASE ?1 AS jdb", [journal.to_string_lossy()])?;
    c.pragma_update(None, "query_only", "ON")?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` and its journal
    /// database beside it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // synchronous=FULL: a commit is on disk before anyone is told about it.
        let mut writer = open(path, "FULL")?;
        migrate(&mut writer, MIGRATIONS)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let journal_path = journal_path(path);
        // The exchanges are a record, not state: NORMAL (fsync at checkpoints) keeps them off
        // the disk's critical path; a power cut may lose the last instants of them.
        let mut jwriter = open(&journal_path, "NORMAL")?;
        migrate(&mut jwriter, JOURNAL_MIGRATIONS)?;
        jwriter.pragma_update(None, "wal_autocheckpoint", 0)?;
        let max_id = |c: &Connection, table: &str| -> Result<u64, StoreError> {
            Ok(c.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        };
        let counters = Arc::new(Counters::default());
        counters.next_journal_id.store(
            max_id(&writer, "events")?.max(max_id(&jwriter, "journal")?) + 1,
            Ordering::Relaxed,
        );
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(reader(path, &journal_path)?);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (jtx, jrx) = mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError(format!("cannot start {name}: {e}")))
        };
        let c = counters.clone();
        let c2 = counters.clone();
        let checkpoint_paths = (path.to_path_buf(), journal_path.clone());
        let stop2 = stop.clone();
        let threads = vec![
            spawn(
                "store-writer",
                Box::new(move || writer_loop(writer, rx, &c, STATE_LINGER)),
            )?,
            spawn(
                "journal-writer",
                Box::new(move || writer_loop(jwriter, jrx, &c2, JOURNAL_LINGER)),
            )?,
            spawn(
                "store-checkpoint",
                Box::new(move || checkpoint_loop(&checkpoint_paths.0, &checkpoint_paths.1, &stop2)),
            )?,
        ];
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some((tx, jtx))),
                readers: Mutex::new(readers),
                path: path.to_path_buf(),
                journal_path,
                threads: Mutex::new(threads),
                counters,
                stop,
            }),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the writers after the queued work is written (graceful shutdown).
    pub fn close(&self) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        self.inner.stop.store(true, Ordering::Relaxed);
        let threads = self
            .inner
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for h in threads {
            let _ = h.join();
        }
    }

    fn send(&self, job: Job, journal: bool) -> bool {
        match self.inner.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|(tx, jtx)| {
                if journal {
                    jtx.send(job).is_ok()
                } else {
                    tx.send(job).is_ok()
                }
            }),
            Err(_) => false,
        }
    }

    fn request(
        &self,
        journal: bool,
        make: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Job,
    ) -> Commit {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(make(tx), journal);
        Box::pin(async move {
            if !sent {
                return Err(StoreError("the store is closed".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError("the store writer stopped".into())))
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = {
            let mut pool = self
                .inner
                .readers
                .lock()
                .map_err(|_| StoreError("reader pool poisoned".into()))?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => reader(&self.inner.path, &self.inner.journal_path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < READERS
        {
            pool.push(conn);
        }
        result
    }
}

fn checkpoint_loop(path: &Path, journal: &Path, stop: &std::sync::atomic::AtomicBool) {
    let conns: Vec<Connection> = [path, journal]
        .iter()
        .filter_map(|p| open(p, "FULL").ok())
        .collect();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(CHECKPOINT_EVERY);
        for c in &conns {
            if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, counters: &Counters, linger: Linger) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        match linger {
            // A transaction costs about the same for one job as for twenty (the same pages
            // are written), so waiting a fraction of a millisecond for company is cheaper
            // than committing alone.
            Linger::WhileArriving { max, step } => {
                let lingering = std::time::Instant::now();
                while batch.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) if lingering.elapsed() < max => match rx.recv_timeout(step) {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        },
                        Err(_) => break,
                    }
                }
            }
            Linger::Gather(pause) => {
                if !matches!(batch[0], Job::Flush(_)) {
                    thread::sleep(pause);
                }
                batch.extend(rx.try_iter().take(MAX_GROUP));
            }
        }
        let jobs = batch
            .iter()
            .filter(|j| matches!(j, Job::Commit(..)))
            .count() as u64;
        write_batch(&mut conn, batch, counters);
        // Only state transactions count: they are the fsyncs the payment path waits for.
        if jobs > 0 {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters.commit_jobs.fetch_add(jobs, Ordering::Relaxed);
        }
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

/// Writes a group of jobs in one transaction (one fsync). If any job fails (it should not: the
/// engine only produces consistent writes), the transaction is rolled back and each job is
/// retried alone, so only the faulty one is refused.
fn write_batch(conn: &mut Connection, batch: Vec<Job>, counters: &Counters) {
    let next_id = || counters.next_journal_id.fetch_add(1, Ordering::Relaxed);
    let run = |conn: &mut Connection, jobs: &[Job]| -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in jobs {
            run_job(&tx, job, &next_id)?;
        }
        tx.commit()?;
        Ok(())
    };
    let results: Vec<Result<(), StoreError>> = match run(conn, &batch) {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, jobs = batch.len(), "group commit failed: retrying its jobs one by one");
            batch
                .iter()
                .map(|job| run(conn, std::slice::from_ref(job)))
                .collect()
        }
    };
    for (job, r) in batch.into_iter().zip(results) {
        match (job, r) {
            (Job::Commit(_, done) | Job::Maintenance { done, .. } | Job::Flush(done), r) => {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "store write failed");
                }
                let _ = done.send(r);
            }
            (Job::Journal(_), Err(e)) => tracing::error!(error = %e, "journal rows lost"),
            (Job::Journal(_), Ok(())) => {}
        }
    }
}

fn run_job(c: &Connection, job: &Job, next_id: &dyn Fn() -> u64) -> Result<(), StoreError> {
    match job {
        Job::Commit(writes, _) => writes.iter().try_for_each(|w| apply(c, w, next_id)),
        Job::Journal(entries) => entries
            .iter()
            .try_for_each(|e| insert_journal(c, INSERT_EXCHANGE, next_id(), e)),
        Job::Maintenance {
            journal_before,
            now,
            ..
        } => {
            // The same job goes to both writers: each cleans its own database.
            let is_state = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'idempotency'",
                [],
                |r| r.get::<_, i64>(0),
            )? > 0;
            if is_state {
                c.execute("DELETE FROM events WHERE at < ?1", [*journal_before as i64])?;
                c.execute(
                    "DELETE FROM idempotency WHERE valid_to <= ?1",
                    [*now as i64],
                )?;
            } else {
                c.execute(
                    "DELETE FROM journal WHERE at < ?1",
                    [*journal_before as i64],
                )?;
            }
            Ok(())
        }
        Job::Flush(_) => Ok(()),
    }
}

fn state_columns(s: &NoticeState) -> (&'static str, Option<&str>) {
    match s {
        NoticeState::Free => ("FREE", None),
        NoticeState::Paying(t) => ("PAYING", Some(t.as_str())),
        NoticeState::Paid(t) => ("PAID", Some(t.as_str())),
    }
}

fn apply(c: &Connection, w: &Write, next_id: &dyn Fn() -> u64) -> Result<(), StoreError> {
    match w {
        Write::Notice(n) => {
            let (state, token) = state_columns(&n.state);
            c.prepare_cached(
                "INSERT INTO notices (fiscal_code, notice_number, state, token, demanded_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (fiscal_code, notice_number) DO UPDATE SET state = excluded.state, token = excluded.token, demanded_at = excluded.demanded_at",
            )?
            .execute(params![n.key.fiscal_code.as_str(), n.key.notice_number.as_str(), state, token, n.demanded_at.map(|v| v as i64)])?;
        }
        Write::Payment(p) => save_payment(c, p)?,
        Write::Receipt(r) => {
            // A receipt is generated once: a second insert with other content would be a bug.
            c.prepare_cached("INSERT INTO receipts (receipt_id, fiscal_code, notice_number, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![r.receipt_id, r.notice.fiscal_code.as_str(), r.notice.notice_number.as_str(), r.body, r.created_at as i64])?;
        }
        Write::Recipient(r) => {
            // The copy's bytes are written once; status changes touch only the small row.
            c.prepare_cached("INSERT OR IGNORE INTO recipient_requests (receipt_id, station, request) VALUES (?1, ?2, ?3)")?
                .execute(params![r.receipt_id, r.station.as_str(), r.request])?;
            c.prepare_cached(
                "INSERT INTO recipients (receipt_id, station, ec, version, status, attempts, next_attempt_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (receipt_id, station) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                   next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
            )?
            .execute(params![
                r.receipt_id,
                r.station.as_str(),
                r.ec.as_str(),
                r.version.number(),
                r.status.as_str(),
                r.attempts,
                r.next_attempt_at as i64,
                r.last_error
            ])?;
        }
        Write::PutIdempotency(e) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO idempotency (psp, key, primitive, request_hash, response, token, valid_to, inserted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![e.key.psp, e.key.key, e.key.primitive, &e.request_hash[..], e.response, e.token, e.valid_to as i64, e.inserted_at as i64])?;
        }
        Write::DeleteIdempotency { key: k, token } => {
            c.prepare_cached("DELETE FROM idempotency WHERE psp = ?1 AND key = ?2 AND primitive = ?3 AND token = ?4")?
                .execute(params![k.psp, k.key, k.primitive, token])?;
        }
        Write::Event(e) => insert_journal(c, INSERT_EVENT, next_id(), &JournalEntry::from(e))?,
    }
    Ok(())
}

fn save_payment(c: &Connection, p: &Payment) -> Result<(), StoreError> {
    // The EC's data never changes after activation: written once, not at every transition.
    c.prepare_cached("INSERT OR IGNORE INTO payment_data (token, data) VALUES (?1, ?2)")?
        .execute(params![p.token.as_str(), to_fragment("data", &p.data)])?;
    let o = p.outcome.as_ref();
    c.prepare_cached(
        "INSERT OR REPLACE INTO payments (token, fiscal_code, notice_number, status, id_psp, id_broker_psp, id_channel, psp_version,
           station, station_broker, station_version, idempotency_key, amount_cents, due_date, payment_note, expiration_ms,
           payment_method, touch_point, activated_at, deadline, outcome, outcome_at, outcome_psp, outcome_broker,
           outcome_channel, outcome_version, outcome_details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
           ?25, ?26, ?27)",
    )?
    .execute(params![
        p.token.as_str(),
        p.notice.fiscal_code.as_str(),
        p.notice.notice_number.as_str(),
        p.status.as_str(),
        p.psp.id_psp.as_str(),
        p.psp.id_broker_psp.as_str(),
        p.psp.id_channel.as_str(),
        p.psp_version.number(),
        p.station.id.as_str(),
        p.station.broker.as_str(),
        p.station.version.number(),
        p.idempotency_key.as_ref().map(|k| k.as_str()),
        p.request.amount.cents() as i64,
        p.request.due_date.as_ref().map(|d| d.as_str()),
        p.request.payment_note.as_ref().map(|n| n.as_str()),
        p.request.expiration_ms,
        p.request.payment_method.map(|m| m.as_str()),
        p.request.touch_point.map(|t| t.as_str()),
        p.activated_at as i64,
        p.deadline as i64,
        o.map(|o| o.outcome.as_str()),
        o.map(|o| o.received_at as i64),
        o.map(|o| o.psp.id_psp.as_str()),
        o.map(|o| o.psp.id_broker_psp.as_str()),
        o.map(|o| o.psp.id_channel.as_str()),
        o.map(|o| o.version.number()),
        o.and_then(|o| o.details.as_ref()).map(|d| to_fragment("details", d)),
    ])?;
    Ok(())
}

/// The insert of a journal row into `events` or `journal` (same columns).
macro_rules! insert_journal_sql {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (id, at, component, category, primitive, subtype, fiscal_code, notice_number, iuv,
               token, psp, channel, station, outcome, caller, callee, payload, detail, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        )
    };
}
const INSERT_EVENT: &str = insert_journal_sql!("events");
const INSERT_EXCHANGE: &str = insert_journal_sql!("journal");

fn insert_journal(c: &Connection, sql: &str, id: u64, e: &JournalEntry) -> Result<(), StoreError> {
    c.prepare_cached(sql)?.execute(params![
        id as i64,
        e.at as i64,
        e.component,
        e.category.map(|c| c.as_str()),
        e.primitive,
        e.subtype.map(|s| s.as_str()),
        e.fiscal_code,
        e.notice_number,
        e.iuv,
        e.token,
        e.psp,
        e.channel,
        e.station,
        e.outcome,
        e.caller,
        e.callee,
        e.payload,
        e.detail,
        e.duration_ms.map(|d| d as i64)
    ])?;
    Ok(())
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {why}").into(),
    )
}

fn text<T>(
    row: &Row<'_>,
    i: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> rusqlite::Result<T> {
    let s: String = row.get(i)?;
    parse(s).map_err(|e| corrupt(i, e))
}

fn opt_text<T>(
    row: &Row<'_>,
    i: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> rusqlite::Result<Option<T>> {
    let s: Option<String> = row.get(i)?;
    s.map(parse).transpose().map_err(|e| corrupt(i, e))
}

fn notice_key(row: &Row<'_>) -> rusqlite::Result<NoticeKey> {
    Ok(NoticeKey {
        fiscal_code: text(row, "fiscal_code", FiscalCode::new)?,
        notice_number: text(row, "notice_number", NoticeNumber::new)?,
    })
}

fn notice_from(row: &Row<'_>) -> rusqlite::Result<Notice> {
    let key = notice_key(row)?;
    let state: String = row.get("state")?;
    let token: Option<String> = row.get("token")?;
    let token = || {
        token
            .clone()
            .ok_or_else(|| corrupt("token", "missing"))
            .and_then(|t| PaymentToken::new(t).map_err(|e| corrupt("token", e)))
    };
    let state = match state.as_str() {
        "FREE" => NoticeState::Free,
        "PAYING" => NoticeState::Paying(token()?),
        "PAID" => NoticeState::Paid(token()?),
        other => return Err(corrupt("state", other)),
    };
    Ok(Notice {
        key,
        state,
        demanded_at: row.get::<_, Option<i64>>("demanded_at")?.map(|v| v as u64),
    })
}

fn payment_from(row: &Row<'_>) -> rusqlite::Result<Payment> {
    let t35 = |i: &str| text(row, i, Text35::new);
    let outcome = match opt_text(row, "outcome", |s| s.parse::<Outcome>())? {
        None => None,
        Some(outcome) => Some(OutcomeRecord {
            outcome,
            received_at: row.get::<_, i64>("outcome_at")? as u64,
            psp: PspRef {
                id_psp: t35("outcome_psp")?,
                id_broker_psp: t35("outcome_broker")?,
                id_channel: t35("outcome_channel")?,
            },
            version: Version::from_number(row.get("outcome_version")?),
            details: opt_text(row, "outcome_details", |s| {
                from_fragment::<OutcomeDetailsV2>(&s).map_err(|v| v.to_string())
            })?,
        }),
    };
    Ok(Payment {
        token: text(row, "token", PaymentToken::new)?,
        notice: notice_key(row)?,
        psp: PspRef {
            id_psp: t35("id_psp")?,
            id_broker_psp: t35("id_broker_psp")?,
            id_channel: t35("id_channel")?,
        },
        psp_version: Version::from_number(row.get("psp_version")?),
        station: StationRef {
            id: t35("station")?,
            broker: t35("station_broker")?,
            version: Version::from_number(row.get("station_version")?),
        },
        idempotency_key: opt_text(row, "idempotency_key", IdempotencyKey::new)?,
        request: ActivationRequest {
            amount: Amount::from_cents(row.get::<_, i64>("amount_cents")? as u64)
                .map_err(|e| corrupt("amount_cents", e))?,
            due_date: opt_text(row, "due_date", |s| {
                <IsoDate as crate::codec::schema::Simple>::parse(&s)
            })?,
            payment_note: opt_text(row, "payment_note", Text210::new)?,
            expiration_ms: row.get("expiration_ms")?,
            payment_method: opt_text(row, "payment_method", |s| s.parse())?,
            touch_point: opt_text(row, "touch_point", |s| s.parse())?,
        },
        data: text(row, "data", |s| {
            from_fragment::<PaymentPaV2>(&s).map_err(|v| v.to_string())
        })?,
        activated_at: row.get::<_, i64>("activated_at")? as u64,
        deadline: row.get::<_, i64>("deadline")? as u64,
        status: text(row, "status", |s| PaymentStatus::parse(&s).ok_or(s))?,
        outcome,
    })
}

fn recipient_from(row: &Row<'_>) -> rusqlite::Result<Recipient> {
    Ok(Recipient {
        receipt_id: row.get("receipt_id")?,
        station: text(row, "station", Text35::new)?,
        ec: text(row, "ec", FiscalCode::new)?,
        version: Version::from_number(row.get("version")?),
        request: row.get("request")?,
        status: text(row, "status", |s| RecipientStatus::parse(&s).ok_or(s))?,
        attempts: row.get("attempts")?,
        next_attempt_at: row.get::<_, i64>("next_attempt_at")? as u64,
        last_error: row.get("last_error")?,
    })
}

/// One page of journal rows matching `q`, oldest first: the union of the state changes
/// (`events`) and, when `exchanges` (the journal database is attached as `jdb`), the SOAP
/// exchanges. Shared by the store and the read-only `pagonode journal` reader.
pub(crate) fn query_journal(
    c: &Connection,
    q: &JournalQuery,
    exchanges: bool,
) -> rusqlite::Result<Vec<JournalRow>> {
    let union = if exchanges {
        "SELECT * FROM main.events UNION ALL SELECT * FROM jdb.journal"
    } else {
        "SELECT * FROM main.events"
    };
    let mut sql = format!("SELECT * FROM ({union}) WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let text = |v: &Option<String>| v.clone().map(rusqlite::types::Value::Text);
    let int = |v: Option<i64>| v.map(rusqlite::types::Value::Integer);
    let filters = [
        ("notice_number", "=", text(&q.notice_number)),
        ("fiscal_code", "=", text(&q.fiscal_code)),
        ("token", "=", text(&q.token)),
        ("psp", "=", text(&q.psp)),
        ("primitive", "=", text(&q.primitive)),
        ("outcome", "=", text(&q.outcome)),
        ("at", ">=", int(q.from.map(|v| v as i64))),
        ("at", "<", int(q.to.map(|v| v as i64))),
        ("id", ">", int(q.after_id)),
    ];
    for (column, op, value) in filters {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
        }
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", q.limit.clamp(1, 10_000)));
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), journal_from)?;
    rows.collect()
}

fn journal_from(row: &Row<'_>) -> rusqlite::Result<JournalRow> {
    let category = match row.get::<_, Option<String>>("category")?.as_deref() {
        Some("INTERFACCIA") => Some(Category::Interface),
        Some("INTERNO") => Some(Category::Internal),
        _ => None,
    };
    let subtype = match row.get::<_, Option<String>>("subtype")?.as_deref() {
        Some("REQ") => Some(Subtype::Req),
        Some("RESP") => Some(Subtype::Resp),
        Some("INTERN") => Some(Subtype::Intern),
        _ => None,
    };
    Ok(JournalRow {
        id: row.get("id")?,
        entry: JournalEntry {
            at: row.get::<_, i64>("at")? as u64,
            component: row.get("component")?,
            category,
            primitive: row.get("primitive")?,
            subtype,
            fiscal_code: row.get("fiscal_code")?,
            notice_number: row.get("notice_number")?,
            iuv: row.get("iuv")?,
            token: row.get("token")?,
            psp: row.get("psp")?,
            channel: row.get("channel")?,
            station: row.get("station")?,
            outcome: row.get("outcome")?,
            caller: row.get("caller")?,
            callee: row.get("callee")?,
            payload: row.get("payload")?,
            detail: row.get("detail")?,
            duration_ms: row.get::<_, Option<i64>>("duration_ms")?.map(|d| d as u64),
        },
    })
}

fn load_payment_row(c: &Connection, token: &str) -> Result<Option<Payment>, StoreError> {
    Ok(c.prepare_cached("SELECT payments.*, payment_data.data FROM payments JOIN payment_data USING (token) WHERE token = ?1")?
        .query_row([token], payment_from)
        .optional()?)
}

fn load_notice_row(c: &Connection, key: &NoticeKey) -> Result<Option<Notice>, StoreError> {
    Ok(
        c.prepare_cached("SELECT * FROM notices WHERE fiscal_code = ?1 AND notice_number = ?2")?
            .query_row(
                params![key.fiscal_code.as_str(), key.notice_number.as_str()],
                notice_from,
            )
            .optional()?,
    )
}

impl Store for SqliteStore {
    fn load_notice(
        &self,
        key: &NoticeKey,
    ) -> Result<Option<(Notice, Option<Payment>)>, StoreError> {
        self.read(|c| {
            let Some(n) = load_notice_row(c, key)? else {
                return Ok(None);
            };
            let payment = match &n.state {
                NoticeState::Free => None,
                NoticeState::Paying(t) | NoticeState::Paid(t) => load_payment_row(c, t.as_str())?,
            };
            Ok(Some((n, payment)))
        })
    }

    fn load_payment(&self, token: &str) -> Result<Option<(Payment, Notice)>, StoreError> {
        self.read(|c| {
            let Some(p) = load_payment_row(c, token)? else {
                return Ok(None);
            };
            let n =
                load_notice_row(c, &p.notice)?.unwrap_or_else(|| Notice::free(p.notice.clone()));
            Ok(Some((p, n)))
        })
    }

    fn load_idempotency(&self, key: &IdemKey) -> Result<Option<IdemEntry>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT request_hash, response, token, valid_to, inserted_at FROM idempotency WHERE psp = ?1 AND key = ?2 AND primitive = ?3")?
                .query_row(params![key.psp, key.key, key.primitive], |row| {
                    let hash: Vec<u8> = row.get(0)?;
                    Ok(IdemEntry {
                        key: key.clone(),
                        request_hash: hash.try_into().map_err(|_| corrupt("request_hash", "not 32 bytes"))?,
                        response: row.get(1)?,
                        token: row.get(2)?,
                        valid_to: row.get::<_, i64>(3)? as u64,
                        inserted_at: row.get::<_, i64>(4)? as u64,
                    })
                })
                .optional()?)
        })
    }

    fn load_recipients(&self, receipt_id: &str) -> Result<Vec<Recipient>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT recipients.*, recipient_requests.request FROM recipients JOIN recipient_requests USING (receipt_id, station) WHERE receipt_id = ?1 ORDER BY station",
            )?;
            let rows = st.query_map([receipt_id], recipient_from)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn load_receipt(&self, receipt_id: &str) -> Result<Option<ReceiptRecord>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT * FROM receipts WHERE receipt_id = ?1")?
                    .query_row([receipt_id], |row| {
                        Ok(ReceiptRecord {
                            receipt_id: row.get("receipt_id")?,
                            notice: notice_key(row)?,
                            body: row.get("body")?,
                            created_at: row.get::<_, i64>("created_at")? as u64,
                        })
                    })
                    .optional()?,
            )
        })
    }

    fn paying_payments(&self) -> Result<Vec<(Payment, Notice)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT payments.*, payment_data.data FROM payments JOIN payment_data USING (token) WHERE status = 'PAYING'")?;
            let payments = st
                .query_map([], payment_from)?
                .collect::<Result<Vec<_>, _>>()?;
            payments
                .into_iter()
                .map(|p| {
                    let n = load_notice_row(c, &p.notice)?
                        .unwrap_or_else(|| Notice::free(p.notice.clone()));
                    Ok((p, n))
                })
                .collect()
        })
    }

    fn recipients_in_delivery(&self) -> Result<Vec<Recipient>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT recipients.*, recipient_requests.request FROM recipients JOIN recipient_requests USING (receipt_id, station) WHERE receipt_id IN (SELECT receipt_id FROM recipients WHERE status = ?1) ORDER BY receipt_id",
            )?;
            let rows = st.query_map(params![RecipientStatus::Pending.as_str()], recipient_from)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn recipients_by_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<Recipient>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT recipients.*, recipient_requests.request FROM recipients JOIN recipient_requests USING (receipt_id, station) WHERE status = ?1 ORDER BY next_attempt_at DESC LIMIT ?2",
            )?;
            let rows = st.query_map(
                params![status, limit.min(i64::MAX as usize) as i64],
                recipient_from,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn payments_of_notice(&self, key: &NoticeKey) -> Result<Vec<Payment>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT payments.*, payment_data.data FROM payments JOIN payment_data USING (token) WHERE fiscal_code = ?1 AND notice_number = ?2 ORDER BY activated_at")?;
            let rows = st.query_map(params![key.fiscal_code.as_str(), key.notice_number.as_str()], payment_from)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.request(false, |done| Job::Commit(writes, done))
    }

    fn journal(&self, entries: Vec<JournalEntry>) {
        if !entries.is_empty() && !self.send(Job::Journal(entries), true) {
            tracing::warn!("journal rows dropped: the store is closed");
        }
    }

    fn query_journal(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
        self.read(|c| Ok(query_journal(c, q, true)?))
    }

    fn maintenance(&self, journal_before: Millis, now: Millis) -> Commit {
        let state = self.request(false, |done| Job::Maintenance {
            journal_before,
            now,
            done,
        });
        let journal = self.request(true, |done| Job::Maintenance {
            journal_before,
            now,
            done,
        });
        Box::pin(async move {
            state.await?;
            journal.await
        })
    }

    fn flush(&self) -> Commit {
        let state = self.request(false, Job::Flush);
        let journal = self.request(true, Job::Flush);
        Box::pin(async move {
            state.await?;
            journal.await
        })
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            transactions: self.inner.counters.transactions.load(Ordering::Relaxed),
            commit_jobs: self.inner.counters.commit_jobs.load(Ordering::Relaxed),
        }
    }

    fn health(&self) -> Result<(), StoreError> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)?)
        })
    }
}
