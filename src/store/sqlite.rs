//! The embedded store: SQLite in WAL mode with `synchronous=FULL` (a commit survives power loss),
//! schema migrations, a pool of read connections and one writer thread that groups the commits
//! queued while the previous one was being written into a single transaction (one fsync).
//! The journal's SOAP exchanges are not here: they go to segment files beside the database
//! ([`crate::journal::segment`]), through their own writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use super::{Commit, Store, StoreError, StoreStats};
use crate::codec::node_for_psp::OutcomeDetailsV2;
use crate::codec::pa_for_node::PaymentPaV2;
use crate::codec::schema::{from_fragment, to_fragment};
use crate::codec::types::{
    Amount, FiscalCode, IdempotencyKey, IsoDate, NoticeNumber, Outcome, PaymentToken, Text35,
    Text210,
};
use crate::engine::{
    ActivationRequest, IdemEntry, IdemKey, Millis, Notice, NoticeKey, NoticeState, OutcomeRecord,
    Payment, PaymentStatus, PspRef, ReceiptRecord, Recipient, RecipientStatus, Reply, StationRef,
    StatusOf, StatusRow, Version, Write,
};
use crate::fault::FaultCode;
use crate::journal::rows::event_row;
use crate::journal::segment::{RowRef, Rows, SegmentWriter};
use crate::journal::writer::{JournalWriter, journal_dir};
use crate::journal::{JournalQuery, JournalRow, legacy};

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
    // 2: the fault code of each cached response, so a replay is journaled without reading the
    // envelope (entries written before are filled in from it, once).
    "
    ALTER TABLE idempotency ADD COLUMN fault_code TEXT;
    UPDATE idempotency
       SET fault_code = substr(response, instr(response, '<faultCode>') + 11,
                               instr(response, '</faultCode>') - instr(response, '<faultCode>') - 11)
     WHERE instr(response, '<faultCode>') > 0;
    ",
    // 3: status histories in the official vocabulary (`crate::engine::history`), clustered by
    // notice: one row per notice per commit (its history rows as lines, see `StatusBatch`),
    // so a commit pays one insert for them; ids come from the journal's sequence.
    "
    CREATE TABLE status_history (
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        id INTEGER NOT NULL,
        at INTEGER NOT NULL,
        rows TEXT NOT NULL,
        PRIMARY KEY (fiscal_code, notice_number, id)
    ) WITHOUT ROWID;
    ",
    // 4: the journal is listed in time order (then by id), its state changes too.
    "CREATE INDEX events_at ON events (at);",
];

/// The columns of `events` (state changes): with the exchanges in the segments, the event
/// journal. (Also the columns of the `journal` table of the journal database earlier versions
/// kept beside this one, which [`legacy::import`] moves into segments.)
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
    /// The state writer's queue.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The journal's exchanges, in segments in `journal_dir`.
    journal: JournalWriter,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    journal_dir: PathBuf,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// Dropped to stop the checkpointer at once (it waits on it between rounds).
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    commit_jobs: AtomicU64,
    /// The next journal row id, shared by the state changes and the exchanges so that ids
    /// order the whole journal.
    next_journal_id: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::StoreMetrics>,
}

/// At most this many commits go in one transaction.
const MAX_GROUP: usize = 1024;
/// How long the writer waits for company for a commit (someone waits for each one): at most
/// `LINGER_MAX`, stopping at the first silence of `LINGER_STEP`.
const LINGER_MAX: std::time::Duration = std::time::Duration::from_micros(1500);
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(300);
const READERS: usize = 4;

/// How often the WAL file is checkpointed into the database, by a thread of its own (so no
/// commit waits for a checkpoint).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn open(path: &Path, synchronous: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    // 64 MiB of page cache: the hot pages of every table stay in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    durable_or_refuse(&conn)?;
    Ok(conn)
}

/// Reads back the pragmas a commit's durability rests on (WAL, `synchronous` FULL or EXTRA:
/// the WAL synced at every commit) and refuses a connection without them: SQLite keeps its
/// previous journal mode, without an error, where WAL cannot be used.
fn durable_or_refuse(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if mode.eq_ignore_ascii_case("wal") && synchronous >= 2 {
        Ok(())
    } else {
        Err(StoreError(format!(
            "the database is in journal_mode={mode}, synchronous={synchronous}: a commit would not \
             survive a power cut (WAL with synchronous=FULL required), refusing to run"
        )))
    }
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

fn reader(path: &Path) -> Result<Connection, StoreError> {
    let c = open(path, "FULL")?;
    c.pragma_update(None, "query_only", "ON")?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` and the journal
    /// segments beside it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // synchronous=FULL: a commit is on disk before anyone is told about it.
        let mut writer = open(path, "FULL")?;
        migrate(&mut writer, MIGRATIONS)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let journal_dir = journal_dir(path);
        let (mut segments, last_exchange) = SegmentWriter::open(&journal_dir)
            .map_err(|e| StoreError(format!("{}: {e}", journal_dir.display())))?;
        let last_exchange = legacy::import(path, &mut segments, last_exchange)?;
        let last_event = writer.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64;
        let next_journal_id = Arc::new(AtomicU64::new(last_event.max(last_exchange) + 1));
        let journal = JournalWriter::start(segments, next_journal_id.clone())?;
        let counters = Arc::new(Counters {
            next_journal_id,
            metrics: Arc::new(crate::metrics::StoreMetrics {
                journal_bytes: journal.bytes_written(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(reader(path)?);
        }
        let (stop, stopped) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError(format!("cannot start {name}: {e}")))
        };
        let c = counters.clone();
        let checkpoint_path = path.to_path_buf();

        let threads = vec![
            spawn(
                "store-writer",
                Box::new(move || writer_loop(writer, rx, &c)),
            )?,
            spawn(
                "store-checkpoint",
                Box::new(move || checkpoint_loop(&checkpoint_path, &stopped)),
            )?,
        ];
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                journal,
                readers: Mutex::new(readers),
                path: path.to_path_buf(),
                journal_dir,
                threads: Mutex::new(threads),
                counters,
                stop: Mutex::new(Some(stop)),
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
        self.inner.journal.close();
        if let Ok(mut stop) = self.inner.stop.lock() {
            stop.take();
        }
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

    fn send(&self, job: Job) -> bool {
        match self.inner.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok()),
            Err(_) => false,
        }
    }

    fn request(&self, make: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Job) -> Commit {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(make(tx));
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
            None => reader(&self.inner.path)?,
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

/// Past this size the WAL is restarted after a checkpoint (see [`checkpoint_loop`]).
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// Checkpoints the WAL into the database every [`CHECKPOINT_EVERY`], without blocking commits
/// (`PASSIVE`). Under a steady stream of commits a passive checkpoint never catches up with the
/// last frame, so SQLite never starts the WAL over: it grew past a gigabyte in two minutes of
/// load, every commit appending to new blocks. So once the WAL is past
/// [`WAL_RESTART_BYTES`], the passive pass is followed by a `RESTART` one: it holds commits back
/// only while it copies the few frames written since the passive pass (and at most 100 ms),
/// then the WAL is rewritten from its start (its file, and the pages cached for it, reused).
fn checkpoint_loop(path: &Path, stop: &mpsc::Receiver<()>) {
    let conn = match open(path, "FULL") {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no checkpoints: the database cannot be opened");
            return;
        }
    };
    // A restart waits for the commit in progress and for readers to leave the WAL, holding
    // new commits back meanwhile: never for long (a long read makes it give up until the next
    // round).
    if let Err(e) = conn.busy_timeout(std::time::Duration::from_millis(100)) {
        tracing::warn!(error = %e, "checkpoint: cannot set the busy timeout");
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    // Nothing is ever sent on `stop`: it is dropped (disconnected) when the store closes.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let checkpoint =
            |mode: &str| conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
        if let Err(e) = checkpoint("PASSIVE") {
            tracing::warn!(error = %e, "checkpoint failed");
            continue;
        }
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size > WAL_RESTART_BYTES
            && let Err(e) = checkpoint("RESTART")
        {
            tracing::warn!(error = %e, wal_bytes = size, "WAL restart failed");
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, counters: &Counters) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // A transaction costs about the same for one job as for twenty (the same pages are
        // written), so waiting a fraction of a millisecond for company is cheaper than
        // committing alone.
        let lingering = std::time::Instant::now();
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) if lingering.elapsed() < LINGER_MAX => match rx.recv_timeout(LINGER_STEP) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                },
                Err(_) => break,
            }
        }
        let jobs = batch
            .iter()
            .filter(|j| matches!(j, Job::Commit(..)))
            .count() as u64;
        let writing = std::time::Instant::now();
        write_batch(&mut conn, batch, counters);
        // Commits count (maintenance and flushes do not): they are what the payment path waits
        // for.
        if jobs > 0 {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters.commit_jobs.fetch_add(jobs, Ordering::Relaxed);
            let m = &counters.metrics;
            m.transaction_seconds.observe_duration(writing.elapsed());
            m.batch_commits.observe(jobs);
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
        // A commit failing with an I/O error (a full disk, a failed fsync) after its steps were
        // made, for the tests; the transaction is rolled back as SQLite does on such an error.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("store.commit_io_error", |_| Err(StoreError(
            "disk I/O error (injected)".into()
        )));
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
    crate::failpoints::failpoint!("store.committed", results.iter().any(Result::is_ok));
    for (job, r) in batch.into_iter().zip(results) {
        let (Job::Commit(_, done) | Job::Maintenance { done, .. } | Job::Flush(done)) = job;
        if let Err(e) = &r {
            tracing::error!(error = %e, "store write failed");
        }
        let _ = done.send(r);
    }
}

fn run_job(c: &Connection, job: &Job, next_id: &dyn Fn() -> u64) -> Result<(), StoreError> {
    match job {
        Job::Commit(writes, _) => {
            let mut statuses = StatusBatch::default();
            for w in writes {
                apply(c, w, next_id, &mut statuses)?;
            }
            statuses.write(c, next_id)
        }
        Job::Maintenance {
            journal_before,
            now,
            ..
        } => {
            c.execute("DELETE FROM events WHERE at < ?1", [*journal_before as i64])?;
            c.execute(
                "DELETE FROM status_history WHERE at < ?1",
                [*journal_before as i64],
            )?;
            c.execute(
                "DELETE FROM idempotency WHERE valid_to <= ?1",
                [*now as i64],
            )?;
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

    fn write(self, c: &Connection, next_id: &dyn Fn() -> u64) -> Result<(), StoreError> {
        for (notice, at, lines) in self.notices {
            c.prepare_cached(
                "INSERT INTO status_history (fiscal_code, notice_number, id, at, rows) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                notice.fiscal_code.as_str(),
                notice.notice_number.as_str(),
                next_id() as i64,
                at as i64,
                lines
            ])?;
        }
        Ok(())
    }
}

/// The rows of one `status_history` line set (see [`StatusBatch`]).
fn status_rows(key: &NoticeKey, lines: &str) -> Result<Vec<StatusRow>, String> {
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

fn apply<'a>(
    c: &Connection,
    w: &'a Write,
    next_id: &dyn Fn() -> u64,
    statuses: &mut StatusBatch<'a>,
) -> Result<(), StoreError> {
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
                .execute(params![r.receipt_id.as_str(), r.notice.fiscal_code.as_str(), r.notice.notice_number.as_str(), r.body, r.created_at as i64])?;
        }
        Write::Recipient(r) => {
            // The copy's bytes are written once; status changes touch only the small row.
            c.prepare_cached("INSERT OR IGNORE INTO recipient_requests (receipt_id, station, request) VALUES (?1, ?2, ?3)")?
                .execute(params![r.receipt_id.as_str(), r.station.as_str(), r.request])?;
            c.prepare_cached(
                "INSERT INTO recipients (receipt_id, station, ec, version, status, attempts, next_attempt_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (receipt_id, station) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                   next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
            )?
            .execute(params![
                r.receipt_id.as_str(),
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
                "INSERT OR REPLACE INTO idempotency (psp, key, primitive, request_hash, response, fault_code, token, valid_to, inserted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.key.psp,
                e.key.key,
                e.key.primitive,
                &e.request_hash[..],
                e.reply.envelope,
                e.reply.fault.map(FaultCode::as_str),
                e.token.as_ref().map(|t| t.as_str()),
                e.valid_to as i64,
                e.inserted_at as i64
            ])?;
        }
        Write::DeleteIdempotency { key: k, token } => {
            c.prepare_cached("DELETE FROM idempotency WHERE psp = ?1 AND key = ?2 AND primitive = ?3 AND token = ?4")?
                .execute(params![k.psp, k.key, k.primitive, token.as_str()])?;
        }
        Write::Event(e) => insert_event(c, next_id(), &event_row(e))?,
        Write::Status(s) => statuses.push(s),
    }
    Ok(())
}

/// A notice's status histories, in the order they were written (see [`crate::engine::history`]).
pub(crate) fn status_history(c: &Connection, key: &NoticeKey) -> rusqlite::Result<Vec<StatusRow>> {
    let mut st = c.prepare_cached(
        "SELECT rows FROM status_history WHERE fiscal_code = ?1 AND notice_number = ?2 ORDER BY id",
    )?;
    let rows = st.query_map(
        params![key.fiscal_code.as_str(), key.notice_number.as_str()],
        |row| text(row, "rows", |lines| status_rows(key, &lines)),
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.concat())
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

/// A state change's journal row, in the transaction of the change.
fn insert_event(c: &Connection, id: u64, e: &RowRef<'_>) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO events (id, at, component, category, primitive, subtype, fiscal_code, notice_number, iuv,
           token, psp, channel, station, outcome, caller, callee, payload, detail, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
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
        receipt_id: text(row, "receipt_id", PaymentToken::new)?,
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
            Ok(c.prepare_cached("SELECT request_hash, response, fault_code, token, valid_to, inserted_at FROM idempotency WHERE psp = ?1 AND key = ?2 AND primitive = ?3")?
                .query_row(params![key.psp, key.key, key.primitive], |row| {
                    let hash: Vec<u8> = row.get(0)?;
                    Ok(IdemEntry {
                        key: key.clone(),
                        request_hash: hash.try_into().map_err(|_| corrupt("request_hash", "not 32 bytes"))?,
                        reply: Reply {
                            envelope: row.get("response")?,
                            fault: opt_text(row, "fault_code", |c| {
                                FaultCode::parse(&c).ok_or(c)
                            })?,
                        },
                        token: opt_text(row, "token", PaymentToken::new)?,
                        valid_to: row.get::<_, i64>("valid_to")? as u64,
                        inserted_at: row.get::<_, i64>("inserted_at")? as u64,
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
                            receipt_id: text(row, "receipt_id", PaymentToken::new)?,
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

    fn failed_recipients(&self) -> Result<u64, StoreError> {
        // `status <> 'NOTIFIED'` lets SQLite count in the partial index `recipients_pending`.
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT COUNT(*) FROM recipients WHERE status = 'FAILED' AND status <> 'NOTIFIED'",
            )?
            .query_row([], |r| r.get::<_, i64>(0))? as u64)
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

    fn status_history(&self, key: &NoticeKey) -> Result<Vec<StatusRow>, StoreError> {
        self.read(|c| Ok(status_history(c, key)?))
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.request(|done| Job::Commit(writes, done))
    }

    fn journal(&self, rows: Rows) {
        self.inner.journal.append(rows);
    }

    fn query_journal(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
        self.read(|c| Ok(crate::journal::query::query(c, &self.inner.journal_dir, q)?))
    }

    fn maintenance(&self, journal_before: Millis, now: Millis) -> Commit {
        let state = self.request(|done| Job::Maintenance {
            journal_before,
            now,
            done,
        });
        let journal = self.inner.journal.retain(journal_before);
        Box::pin(async move {
            state.await?;
            Ok(journal.await?)
        })
    }

    /// Both writers are asked at once: the future depends only on requests already sent.
    fn flush(&self) -> Commit {
        let state = self.request(Job::Flush);
        let journal = self.inner.journal.flush();
        Box::pin(async move {
            state.await?;
            Ok(journal.await?)
        })
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            transactions: self.inner.counters.transactions.load(Ordering::Relaxed),
            commit_jobs: self.inner.counters.commit_jobs.load(Ordering::Relaxed),
        }
    }

    fn metrics(&self) -> Option<Arc<crate::metrics::StoreMetrics>> {
        Some(self.inner.counters.metrics.clone())
    }

    fn health(&self) -> Result<(), StoreError> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Category, JournalEntry, Subtype};
    use crate::store::Store;

    fn exchange(at: Millis, notice: &str) -> JournalEntry {
        JournalEntry {
            at,
            component: "nodeForPsp".into(),
            category: Some(Category::Interface),
            primitive: "activatePaymentNotice".into(),
            subtype: Some(Subtype::Req),
            fiscal_code: Some("77777777777".into()),
            notice_number: Some(notice.into()),
            payload: Some("<soapenv:Envelope/>".into()),
            ..JournalEntry::default()
        }
    }

    fn everything(store: &SqliteStore) -> Vec<JournalRow> {
        store
            .query_journal(&JournalQuery {
                limit: 10_000,
                ..JournalQuery::default()
            })
            .unwrap()
    }

    #[test]
    fn an_earlier_versions_journal_database_is_moved_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let legacy = legacy::database_path(&db);
        let c = Connection::open(&legacy).unwrap();
        c.execute_batch(&format!("CREATE TABLE journal ({JOURNAL_COLUMNS});"))
            .unwrap();
        for (id, at) in [(3i64, 1_000i64), (7, 2_000), (9, 3_000)] {
            c.execute(
                "INSERT INTO journal (id, at, component, category, primitive, subtype, notice_number, payload)
                 VALUES (?1, ?2, 'nodeForPsp', 'INTERFACCIA', 'activatePaymentNotice', 'REQ', '302000000000000001', '<x/>')",
                params![id, at],
            )
            .unwrap();
        }
        drop(c);
        let store = SqliteStore::open(&db).unwrap();
        let rows = everything(&store);
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 7, 9]);
        assert_eq!(rows[1].entry.at, 2_000);
        assert_eq!(rows[1].entry.payload.as_deref(), Some("<x/>"));
        assert!(!legacy.exists());
        let mut imported = legacy.clone().into_os_string();
        imported.push(".imported");
        assert!(Path::new(&imported).exists());
        // New rows come after the imported ones.
        let mut rows = Rows::new();
        rows.push(&exchange(4_000, "302000000000000002").as_row());
        store.journal(rows);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.flush()).unwrap();
        assert_eq!(everything(&store).last().unwrap().id, 10);
        store.close();
        // Reopened, nothing is imported twice.
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(everything(&store).len(), 4);
        store.close();
    }

    #[test]
    fn state_changes_and_exchanges_page_together_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("node.db")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..30 {
            if i % 3 == 0 {
                let event = crate::engine::StateEvent {
                    at: i,
                    kind: crate::engine::EventKind::Activated,
                    notice: None,
                    token: Some(crate::codec::types::PaymentToken::new(format!("t{i}")).unwrap()),
                    psp: None,
                    channel: None,
                    station: None,
                    outcome: None,
                    detail: None,
                };
                rt.block_on(store.commit(vec![Write::Event(event)]))
                    .unwrap();
            } else {
                let mut rows = Rows::new();
                rows.push(&exchange(i, "302000000000000001").as_row());
                store.journal(rows);
                rt.block_on(store.flush()).unwrap();
            }
        }
        let mut seen = Vec::new();
        let mut q = JournalQuery {
            limit: 7,
            ..JournalQuery::default()
        };
        loop {
            let page = store.query_journal(&q).unwrap();
            if page.is_empty() {
                break;
            }
            q.after = page.last().map(crate::journal::Cursor::of);
            seen.extend(page.into_iter().map(|r| (r.id, r.entry.at)));
        }
        assert_eq!(seen.len(), 30);
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "ids ascend: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].1 < w[1].1),
            "in the order written"
        );
        store.close();
    }

    #[test]
    fn a_connection_that_would_lose_commits_in_a_power_cut_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let conn = open(&path, "FULL").unwrap();
        assert_eq!(
            conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))
                .unwrap(),
            2
        );
        for (pragma, value) in [("synchronous", "NORMAL"), ("synchronous", "OFF")] {
            conn.pragma_update(None, pragma, value).unwrap();
            let e = durable_or_refuse(&conn).unwrap_err();
            assert!(e.0.contains("refusing to run"), "{e}");
        }
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        assert!(durable_or_refuse(&conn).is_err());
        assert!(open(&path, "NORMAL").is_err());
        assert!(open(&path, "EXTRA").is_ok());
    }
}
