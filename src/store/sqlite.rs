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

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use super::legacy;
use super::schema::{self, Dialect, Events, Fields, Val};
use super::{
    Commit, CommitCounters, ConfigVersion, Read, Retention, Store, StoreError, StoreStats,
};
use crate::engine::{
    CopyParts, IdemEntry, IdemKey, Notice, NoticeKey, Payment, Recipient, RecipientStatus,
    StatusRow, Write,
};
use crate::journal::segment::{Rows, SegmentWriter};
use crate::journal::writer::{JournalWriter, journal_dir};
use crate::journal::{JournalQuery, JournalRow};

/// The schema, one step per version: applied in order, recorded in `PRAGMA user_version`.
const MIGRATIONS: &[Migration] = &[
    // 1: the initial schema. Large values written once (payment data, receipt copies) live in
    // their own tables so the rows updated at every transition stay small.
    Migration::Sql(
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
    ),
    // 2: the fault code of each cached response, so a replay is journaled without reading the
    // envelope (entries written before are filled in from it, once).
    Migration::Sql(
        "
    ALTER TABLE idempotency ADD COLUMN fault_code TEXT;
    UPDATE idempotency
       SET fault_code = substr(response, instr(response, '<faultCode>') + 11,
                               instr(response, '</faultCode>') - instr(response, '<faultCode>') - 11)
     WHERE instr(response, '<faultCode>') > 0;
    ",
    ),
    // 3: revisions (compare-and-set writes) and compact rows: a receipt's body once per version
    // instead of once per copy (each copy keeps its own envelope around it), large values
    // packed from now on (rows written before stay plain text: both are read), the PAYING
    // payments indexed by deadline (what takes a dead node's deadlines over reads).
    Migration::Sql(
        "
    ALTER TABLE notices ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE payments ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    DROP INDEX payments_paying;
    CREATE INDEX payments_paying ON payments (deadline) WHERE status = 'PAYING';
    DROP INDEX recipients_pending;
    CREATE INDEX recipients_pending ON recipients (status) WHERE status = 'PENDING';
    ALTER TABLE recipients ADD COLUMN head TEXT NOT NULL DEFAULT '';
    ALTER TABLE recipients ADD COLUMN tail TEXT NOT NULL DEFAULT '';
    CREATE TABLE receipts_v3 (
        receipt_id TEXT PRIMARY KEY,
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body_v1 BLOB,
        body_v2 BLOB
    ) WITHOUT ROWID;
    INSERT INTO receipts_v3 (receipt_id, fiscal_code, notice_number, created_at)
        SELECT receipt_id, fiscal_code, notice_number, created_at FROM receipts;
    ",
    ),
    Migration::Rust(split_copies),
    Migration::Sql(
        "
    DROP TABLE recipient_requests;
    DROP TABLE receipts;
    ALTER TABLE receipts_v3 RENAME TO receipts;
    ",
    ),
    // 4: status histories in the official vocabulary (`crate::engine::history`), clustered by
    // notice: one row per notice per commit (its history rows as lines, see
    // `schema::status_rows`), so a commit pays one insert for them; ids come from the
    // journal's sequence.
    Migration::Sql(
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
    ),
    // 5: the journal is listed in time order (then by id), its state changes too; the failed
    // copies are counted (`/metrics`, the console).
    Migration::Sql(
        "
    CREATE INDEX events_at ON events (at);
    CREATE INDEX recipients_failed ON recipients (status) WHERE status = 'FAILED';
    ",
    ),
    // 6: the configuration versions applied at runtime (`crate::reconfig`).
    Migration::Sql(
        "
    CREATE TABLE config_versions (
        version INTEGER PRIMARY KEY,
        applied_at INTEGER NOT NULL,
        applied_by TEXT NOT NULL,
        toml TEXT NOT NULL,
        file_hash TEXT NOT NULL,
        diff TEXT NOT NULL
    );
    ",
    ),
];

/// A schema step.
enum Migration {
    Sql(&'static str),
    /// A step SQL cannot say.
    Rust(fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>),
}

/// Migration 3: each copy's envelope cut around its receipt; the receipt's body kept once per
/// version, packed.
fn split_copies(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let mut st = tx.prepare(
        "SELECT r.receipt_id, r.station, r.version, q.request FROM recipients r
           JOIN recipient_requests q ON q.receipt_id = r.receipt_id AND q.station = r.station",
    )?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let (id, station, version, request): (String, String, i64, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let parts = CopyParts::split(&request).ok_or_else(|| {
            StoreError::Failed(format!("receipt {id} copy {station}: no receipt element"))
        })?;
        tx.execute(
            "UPDATE recipients SET head = ?1, tail = ?2 WHERE receipt_id = ?3 AND station = ?4",
            params![parts.head, parts.tail, id, station],
        )?;
        let column = if version == 1 { "body_v1" } else { "body_v2" };
        tx.execute(
            &format!(
                "UPDATE receipts_v3 SET {column} = ?1 WHERE receipt_id = ?2 AND {column} IS NULL"
            ),
            params![schema::pack(parts.body), id],
        )?;
    }
    Ok(())
}

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
    Maintenance(Retention, oneshot::Sender<Result<usize, StoreError>>),
    Flush(Done),
    /// A configuration version; the sender gets its number.
    SaveConfig(ConfigVersion, oneshot::Sender<Result<usize, StoreError>>),
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

struct Counters {
    commits: CommitCounters,
    /// The next journal row id, shared by the state changes and the exchanges so that ids
    /// order the whole journal.
    next_journal_id: Arc<AtomicU64>,
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
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans made once, whatever the values bound: otherwise SQLite marks a statement to be
    // prepared again whenever its parameters are cleared (for a `col = ?` term it might read
    // as 0 or 1), and every cached read paid a full parse (~70 µs for a notice).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
        Err(StoreError::Failed(format!(
            "the database is in journal_mode={mode}, synchronous={synchronous}: a commit would not \
             survive a power cut (WAL with synchronous=FULL required), refusing to run"
        )))
    }
}

fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for i in schema::pending_migrations(version, migrations.len())? {
        let tx = conn.transaction()?;
        match &migrations[i] {
            Migration::Sql(sql) => {
                tx.execute_batch(&sql.replace("JOURNAL_COLUMNS", JOURNAL_COLUMNS))?
            }
            Migration::Rust(step) => step(&tx)?,
        }
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
            .map_err(|e| StoreError::Failed(format!("{}: {e}", journal_dir.display())))?;
        let last_exchange = legacy::import(path, &mut segments, last_exchange)?;
        let last_event = writer.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64;
        let next_journal_id = Arc::new(AtomicU64::new(last_event.max(last_exchange) + 1));
        let journal = JournalWriter::start(segments, next_journal_id.clone())?;
        let counters = Arc::new(Counters {
            next_journal_id,
            commits: CommitCounters::new(crate::metrics::StoreMetrics {
                journal_bytes: journal.bytes_written(),
                ..Default::default()
            }),
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
                .map_err(|e| StoreError::Failed(format!("cannot start {name}: {e}")))
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

    /// Sends the writer a job; the future is its answer.
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Read<'static, T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(make(tx));
        Box::pin(async move {
            if !sent {
                return Err(StoreError::failed("the store is closed"));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::failed("the store writer stopped")))
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
                .map_err(|_| StoreError::failed("reader pool poisoned"))?;
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
        counters.commits.committed(jobs, writing);
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

/// Writes a group of jobs in one transaction (one fsync). If any job fails (a conflict, or a
/// fault), the transaction is rolled back and each job is retried alone, so only the faulty one
/// is refused.
fn write_batch(conn: &mut Connection, batch: Vec<Job>, counters: &Counters) {
    let next_id = || counters.next_journal_id.fetch_add(1, Ordering::Relaxed);
    let run = |conn: &mut Connection, jobs: &[Job]| -> Result<Vec<usize>, StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done = jobs
            .iter()
            .map(|job| run_job(&tx, job, &next_id))
            .collect::<Result<Vec<_>, _>>()?;
        // A commit failing with an I/O error (a full disk, a failed fsync) after its steps were
        // made, for the tests; the transaction is rolled back as SQLite does on such an error.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("store.commit_io_error", |_| Err(StoreError::Failed(
            "disk I/O error (injected)".into()
        )));
        tx.commit()?;
        Ok(done)
    };
    let results: Vec<Result<usize, StoreError>> = match run(conn, &batch) {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(error = %e, jobs = batch.len(), "group commit failed: retrying its jobs one by one");
            batch
                .iter()
                .map(|job| run(conn, std::slice::from_ref(job)).map(|d| d[0]))
                .collect()
        }
    };
    crate::failpoints::failpoint!("store.committed", results.iter().any(Result::is_ok));
    for (job, r) in batch.into_iter().zip(results) {
        if let Err(e @ StoreError::Failed(_)) = &r {
            tracing::error!(error = %e, "store write failed");
        }
        match job {
            Job::Commit(_, done) | Job::Flush(done) => {
                let _ = done.send(r.map(drop));
            }
            Job::Maintenance(_, done) | Job::SaveConfig(_, done) => {
                let _ = done.send(r);
            }
        }
    }
}

/// Runs one job in the writer's transaction; a maintenance job says how many finished payments
/// it deleted.
fn run_job(c: &Connection, job: &Job, next_id: &dyn Fn() -> u64) -> Result<usize, StoreError> {
    match job {
        Job::Commit(writes, _) => {
            let dialect = Dialect {
                events: Events::Numbered,
                lease: None,
            };
            for op in schema::plan(writes, dialect, next_id) {
                let changed = c
                    .prepare_cached(op.sql)?
                    .execute(rusqlite::params_from_iter(op.params.iter()))?;
                if let Some(what) = op.cas
                    && changed != 1
                {
                    return Err(StoreError::Conflict(what.into()));
                }
            }
            Ok(0)
        }
        Job::Maintenance(r, _) => retain(c, r),
        Job::Flush(_) => Ok(0),
        Job::SaveConfig(v, _) => Ok(c
            .prepare_cached(
                "INSERT INTO config_versions (version, applied_at, applied_by, toml, file_hash, diff)
                 VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM config_versions), ?1, ?2, ?3, ?4, ?5)
                 RETURNING version",
            )?
            .query_row(
                params![v.applied_at as i64, v.applied_by, v.toml, v.file_hash, v.diff],
                |r| r.get::<_, i64>(0),
            )? as usize),
    }
}

/// One round of retention (see [`Retention`]): returns how many finished payments it deleted.
fn retain(c: &Connection, r: &Retention) -> Result<usize, StoreError> {
    c.execute(
        "DELETE FROM events WHERE at < ?1",
        [r.journal_before as i64],
    )?;
    c.execute(
        "DELETE FROM status_history WHERE at < ?1",
        [r.journal_before as i64],
    )?;
    c.prepare_cached(schema::DELETE_OLD_IDEMPOTENCY)?
        .execute([r.now as i64])?;
    let tokens: Vec<String> = c
        .prepare_cached(schema::FINISHED_PAYMENTS)?
        .query_map(
            params![r.finished_before as i64, schema::RETENTION_BATCH as i64],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    for t in &tokens {
        for sql in schema::DELETE_FINISHED {
            c.prepare_cached(sql)?.execute([t])?;
        }
    }
    Ok(tokens.len())
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Text(t) => ValueRef::Text(t.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Fields for Row<'_> {
    fn int(&self, col: &str) -> Result<Option<i64>, String> {
        self.get(col).map_err(|e| format!("{col}: {e}"))
    }

    fn text(&self, col: &str) -> Result<Option<String>, String> {
        self.get(col).map_err(|e| format!("{col}: {e}"))
    }

    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, String> {
        self.get(col).map_err(|e| format!("{col}: {e}"))
    }

    fn xml(&self, col: &str) -> Result<Option<String>, String> {
        use rusqlite::types::ValueRef;
        match self.get_ref(col).map_err(|e| format!("{col}: {e}"))? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
            ValueRef::Blob(b) => schema::unpack(b)
                .map(Some)
                .map_err(|e| format!("{col}: {e}")),
            other => Err(format!("{col}: unexpected {:?}", other.data_type())),
        }
    }
}

/// Runs a query and decodes every row with `decode`.
fn all<T>(
    c: &Connection,
    table: &str,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T, String>,
) -> Result<Vec<T>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row).map_err(|e| schema::corrupt(table, e))?);
    }
    Ok(out)
}

/// A notice's status histories, in the order they were written (see [`crate::engine::history`]).
pub(crate) fn status_history(
    c: &Connection,
    key: &NoticeKey,
) -> Result<Vec<StatusRow>, StoreError> {
    let texts = all(
        c,
        "status_history",
        schema::SELECT_STATUS_HISTORY,
        params![key.fiscal_code.as_str(), key.notice_number.as_str()],
        |row| Ok(row.text("rows")?.unwrap_or_default()),
    )?;
    schema::status_history(key, texts.into_iter().map(Ok))
}

impl SqliteStore {
    /// A read on a pooled connection, answered at once.
    fn now<'a, T: Send + 'a>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Read<'a, T> {
        Box::pin(std::future::ready(self.read(f)))
    }
}

impl Store for SqliteStore {
    fn load_notice<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Option<(Notice, Option<Payment>)>> {
        self.now(|c| {
            let found = all(
                c,
                "notices",
                schema::SELECT_NOTICE,
                params![key.fiscal_code.as_str(), key.notice_number.as_str()],
                |row| Ok((schema::notice_from(row)?, schema::payment_from(row)?)),
            )?;
            Ok(found
                .into_iter()
                .next()
                .and_then(|(n, p)| n.map(|n| (n, p))))
        })
    }

    fn load_payment<'a>(&'a self, token: &'a str) -> Read<'a, Option<(Payment, Notice)>> {
        self.now(|c| {
            Ok(all(c, "payments", &schema::QUERIES.payment, [token], |r| {
                schema::payment_pair(r)
            })?
            .into_iter()
            .next())
        })
    }

    fn load_idempotency<'a>(&'a self, key: &'a IdemKey) -> Read<'a, Option<IdemEntry>> {
        self.now(|c| {
            Ok(all(
                c,
                "idempotency",
                schema::SELECT_IDEMPOTENCY,
                params![key.psp, key.key, key.primitive],
                |row| schema::idem_from(row, key),
            )?
            .into_iter()
            .next())
        })
    }

    fn load_recipients<'a>(&'a self, receipt_id: &'a str) -> Read<'a, Vec<Recipient>> {
        self.now(|c| {
            all(
                c,
                "recipients",
                &schema::QUERIES.recipients_of,
                [receipt_id],
                |r| schema::recipient_from(r),
            )
        })
    }

    fn paying_payments(&self) -> Read<'_, Vec<(Payment, Notice)>> {
        self.now(|c| {
            all(c, "payments", &schema::QUERIES.paying, [], |r| {
                schema::payment_pair(r)
            })
        })
    }

    fn recipients_in_delivery(&self) -> Read<'_, Vec<Recipient>> {
        self.now(|c| {
            all(c, "recipients", &schema::QUERIES.in_delivery, [], |r| {
                schema::recipient_from(r)
            })
        })
    }

    fn failed_recipients(&self) -> Read<'_, u64> {
        self.now(|c| {
            Ok(
                c.prepare_cached("SELECT COUNT(*) FROM recipients WHERE status = 'FAILED'")?
                    .query_row([], |r| r.get::<_, i64>(0))? as u64,
            )
        })
    }

    fn recipients_by_status<'a>(
        &'a self,
        status: RecipientStatus,
        limit: usize,
    ) -> Read<'a, Vec<Recipient>> {
        self.now(move |c| {
            all(
                c,
                "recipients",
                schema::QUERIES.by_status(status),
                params![limit.min(i64::MAX as usize) as i64],
                |r| schema::recipient_from(r),
            )
        })
    }

    fn payments_of_notice<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<Payment>> {
        self.now(|c| {
            all(
                c,
                "payments",
                &schema::QUERIES.of_notice,
                params![key.fiscal_code.as_str(), key.notice_number.as_str()],
                |row| schema::payment_pair(row).map(|(p, _)| p),
            )
        })
    }

    fn status_history<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<StatusRow>> {
        self.now(|c| status_history(c, key))
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.ask(|done| Job::Commit(writes, done))
    }

    fn journal(&self, rows: Rows) {
        self.inner.journal.append(rows);
    }

    fn query_journal<'a>(&'a self, q: &'a JournalQuery) -> Read<'a, Vec<JournalRow>> {
        self.now(|c| Ok(super::journal_query::query(c, &self.inner.journal_dir, q)?))
    }

    fn maintenance(&self, r: Retention) -> Read<'_, usize> {
        let deleted = self.ask(|tx| Job::Maintenance(r, tx));
        // Both writers are asked at once: the future depends only on requests already sent.
        let journal = self.inner.journal.retain(r.journal_before);
        Box::pin(async move {
            let deleted = deleted.await?;
            journal.await?;
            Ok(deleted)
        })
    }

    /// Both writers are asked at once: the future depends only on requests already sent.
    fn flush(&self) -> Commit {
        let state = self.ask(Job::Flush);
        let journal = self.inner.journal.flush();
        Box::pin(async move {
            state.await?;
            Ok(journal.await?)
        })
    }

    fn stats(&self) -> StoreStats {
        self.inner.counters.commits.stats()
    }

    fn metrics(&self) -> Option<Arc<crate::metrics::StoreMetrics>> {
        Some(self.inner.counters.commits.metrics.clone())
    }

    fn save_config(&self, v: ConfigVersion) -> Read<'_, u64> {
        let saved = self.ask(|tx| Job::SaveConfig(v, tx));
        Box::pin(async move { saved.await.map(|n| n as u64) })
    }

    fn latest_config(&self) -> Read<'_, Option<ConfigVersion>> {
        self.now(|c| {
            Ok(c.prepare_cached(
                "SELECT version, applied_at, applied_by, toml, file_hash, diff
                       FROM config_versions ORDER BY version DESC LIMIT 1",
            )?
            .query_row([], |r| {
                Ok(ConfigVersion {
                    version: r.get::<_, i64>(0)? as u64,
                    applied_at: r.get::<_, i64>(1)? as u64,
                    applied_by: r.get(2)?,
                    toml: r.get(3)?,
                    file_hash: r.get(4)?,
                    diff: r.get(5)?,
                })
            })
            .optional()?)
        })
    }

    fn latest_config_version(&self) -> Read<'_, u64> {
        self.now(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM config_versions",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    fn health(&self) -> Read<'_, ()> {
        self.now(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)?)
        })
    }

    fn close(&self) {
        SqliteStore::close(self);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::engine::Millis;
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
            .now_or_never()
            .expect("SQLite reads answer at once")
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
    fn a_version_2_database_keeps_its_receipt_copies_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let mut c = Connection::open(&db).unwrap();
        migrate(&mut c, &MIGRATIONS[..2]).unwrap();
        let copy = |station: &str, receipt: &str| {
            format!(
                "<soapenv:Envelope><soapenv:Body><pafn:paSendRTV2Request><idPA>77777777777</idPA><idStation>{station}</idStation>{receipt}</pafn:paSendRTV2Request></soapenv:Body></soapenv:Envelope>"
            )
        };
        let body = "<receipt><receiptId>t1</receiptId><outcome>OK</outcome></receipt>";
        c.execute_batch(
            "INSERT INTO receipts VALUES ('t1', '77777777777', '302000000000000001', '<receipt/>', 5);",
        )
        .unwrap();
        for (station, status) in [("S1", "NOTIFIED"), ("S2", "PENDING")] {
            c.execute(
                "INSERT INTO recipients VALUES ('t1', ?1, '77777777777', 2, ?2, 1, 9, NULL)",
                [station, status],
            )
            .unwrap();
            c.execute(
                "INSERT INTO recipient_requests VALUES ('t1', ?1, ?2)",
                [station, &copy(station, body)],
            )
            .unwrap();
        }
        drop(c);
        let store = SqliteStore::open(&db).unwrap();
        let copies = store.load_recipients("t1").now_or_never().unwrap().unwrap();
        assert_eq!(copies.len(), 2);
        for r in &copies {
            assert_eq!(r.request, copy(r.station.as_str(), body));
        }
        assert_eq!(copies[1].status, crate::engine::RecipientStatus::Pending);
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
            let page = store.query_journal(&q).now_or_never().unwrap().unwrap();
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
            assert!(e.to_string().contains("refusing to run"), "{e}");
        }
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        assert!(durable_or_refuse(&conn).is_err());
        assert!(open(&path, "NORMAL").is_err());
        assert!(open(&path, "EXTRA").is_ok());
    }
}
