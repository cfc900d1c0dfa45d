//! Durable state behind one interface. The engine's writes for one command are committed in one
//! transaction, as compare-and-set writes ([`schema`]); commits from concurrent requests are
//! grouped (one fsync for many). SQLite is the embedded default; PostgreSQL lets several nodes
//! share one store ([`SharedStore`]); [`MemoryStore`] has the same semantics in memory, for
//! tests and the simulation.

pub mod journal_query;
pub mod legacy;
pub mod memory;
pub mod postgres;
pub mod schema;
pub(crate) mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use memory::{Durability, MemoryStore};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::Database;
use crate::engine::{
    IdemEntry, IdemKey, Millis, Notice, NoticeKey, Payment, Recipient, RecipientStatus, StatusRow,
    Write,
};
use crate::journal::segment::Rows;
use crate::journal::{JournalError, JournalQuery, JournalRow};

/// A store failure (the node answers PPT_SYSTEM_ERROR and logs it), or a lost race.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set write found its record changed by another writer (another node): the
    /// commit did nothing; read the records again and run the command again.
    #[error("conflict: the {0} changed meanwhile")]
    Conflict(String),
    #[error("store: {0}")]
    Failed(String),
}

impl StoreError {
    pub fn failed(e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::failed(e)
    }
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        StoreError::Failed(e.0)
    }
}

/// Resolves when a commit is durable (or failed).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A read: SQLite answers at once (no thread hop), PostgreSQL over the network.
pub type Read<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Store counters: `commit_jobs / transactions` is how well commits are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub transactions: u64,
    pub commit_jobs: u64,
}

/// What a store counts of its group commits, for [`Store::stats`] and `/metrics`.
#[derive(Default)]
pub(crate) struct CommitCounters {
    transactions: AtomicU64,
    commit_jobs: AtomicU64,
    pub(crate) metrics: Arc<crate::metrics::StoreMetrics>,
}

impl CommitCounters {
    pub(crate) fn new(metrics: crate::metrics::StoreMetrics) -> CommitCounters {
        CommitCounters {
            metrics: Arc::new(metrics),
            ..Default::default()
        }
    }

    /// One transaction begun at `started` wrote `commits` commits. Only commits count
    /// (maintenance and flushes do not): they are what the payment path waits for.
    pub(crate) fn committed(&self, commits: u64, started: std::time::Instant) {
        if commits > 0 {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            self.commit_jobs.fetch_add(commits, Ordering::Relaxed);
            self.metrics
                .transaction_seconds
                .observe_duration(started.elapsed());
            self.metrics.batch_commits.observe(commits);
        }
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            commit_jobs: self.commit_jobs.load(Ordering::Relaxed),
        }
    }
}

/// What [`Store::maintenance`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub now: Millis,
    /// Journal rows older than this.
    pub journal_before: Millis,
    /// Finished payments (cancelled, failed, or paid with no copy of their receipt left to
    /// deliver) activated before this, with their receipts and copies.
    pub finished_before: Millis,
}

/// One applied configuration (`config_versions`): the node's configuration history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersion {
    /// 1, 2, …: numbered by the store.
    pub version: u64,
    pub applied_at: Millis,
    /// The admin token's id, `sighup` or `file`.
    pub applied_by: String,
    /// The configuration's canonical TOML ([`crate::reconfig::canonical`]).
    pub toml: String,
    /// The shared hash ([`crate::reconfig::shared_hash`]) of the configuration file the
    /// applying node had read: at start, the stored version wins while the file's is the same.
    pub file_hash: String,
    /// What changed from the version before ([`crate::reconfig::diff`]).
    pub diff: String,
}

/// Durable state. Reads are short; commits are asynchronous and grouped.
pub trait Store: Send + Sync + 'static {
    /// A notice and the payment its state names.
    fn load_notice<'a>(&'a self, key: &'a NoticeKey)
    -> Read<'a, Option<(Notice, Option<Payment>)>>;
    /// A payment and its notice.
    fn load_payment<'a>(&'a self, token: &'a str) -> Read<'a, Option<(Payment, Notice)>>;
    fn load_idempotency<'a>(&'a self, key: &'a IdemKey) -> Read<'a, Option<IdemEntry>>;
    /// Every copy of a receipt.
    fn load_recipients<'a>(&'a self, receipt_id: &'a str) -> Read<'a, Vec<Recipient>>;
    /// Payments waiting for their outcome (start-up: deadlines to re-arm).
    fn paying_payments(&self) -> Read<'_, Vec<(Payment, Notice)>>;
    /// Every copy of each receipt that still has a copy to deliver (start-up: deliveries to
    /// resume). The settled copies come too: a copy that failed for good keeps its payment PAID
    /// when the others are delivered (Part A §7.3: NOTIFIED needs every recipient).
    fn recipients_in_delivery(&self) -> Read<'_, Vec<Recipient>>;
    /// How many copies are FAILED (`/metrics`, the console).
    fn failed_recipients(&self) -> Read<'_, u64>;
    /// Copies in a given status, newest first (admin).
    fn recipients_by_status<'a>(
        &'a self,
        status: RecipientStatus,
        limit: usize,
    ) -> Read<'a, Vec<Recipient>>;
    /// Payments of a notice, oldest first (admin: a payment's story).
    fn payments_of_notice<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<Payment>>;
    /// A notice's status histories (official vocabulary), in the order they were written.
    fn status_history<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<StatusRow>>;
    /// Commits the writes of one engine step atomically, or fails with
    /// [`StoreError::Conflict`] if a record changed since the engine read it. The call itself
    /// queues the writes: commits are applied in the order of the calls (the node calls it while
    /// it still holds the engine, so steps reach the disk in the order the engine made them).
    fn commit(&self, writes: Vec<Write>) -> Commit;
    /// Queues journal rows of SOAP exchanges: written soon, in the background, off the hot path.
    fn journal(&self, rows: Rows);
    fn query_journal<'a>(&'a self, q: &'a JournalQuery) -> Read<'a, Vec<JournalRow>>;
    /// Deletes what retention says: old journal rows, expired idempotency entries, and at most
    /// [`schema::RETENTION_BATCH`] finished payments, whose number it returns (call again while
    /// it returns a full batch).
    fn maintenance(&self, r: Retention) -> Read<'_, usize>;
    /// Waits until everything queued so far is durable.
    fn flush(&self) -> Commit;
    /// A cheap liveness check of the database.
    fn health(&self) -> Read<'_, ()>;
    /// Stores a configuration version, numbered after the last one (its `version` is not
    /// read), durably; returns its number.
    fn save_config(&self, v: ConfigVersion) -> Read<'_, u64>;
    /// The last configuration version stored.
    fn latest_config(&self) -> Read<'_, Option<ConfigVersion>>;
    /// The number of the last configuration version (0: none), polled by nodes sharing the store.
    fn latest_config_version(&self) -> Read<'_, u64>;
    /// Counters since start: transactions (each one fsync) and commit jobs written.
    fn stats(&self) -> StoreStats;
    /// The store's own histograms and counters for `/metrics` (transactions, group commits,
    /// journal bytes), if it keeps them.
    fn metrics(&self) -> Option<Arc<crate::metrics::StoreMetrics>> {
        None
    }
    /// Stops the writers after what is queued (graceful shutdown).
    fn close(&self);
    /// What several nodes on this store share (`None`: the node is alone on it).
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }
}

/// The work nodes sharing a store take over from one another: deadlines a dead node armed, and
/// the receipts it was delivering (each receipt is leased by one node at a time).
pub trait SharedStore: Send + Sync {
    /// Payments still PAYING whose deadline passed before `before`, earliest first.
    fn overdue_payments(&self, before: Millis, limit: usize) -> Read<'_, Vec<(Payment, Notice)>>;
    /// Leases receipts with copies to deliver whose lease has expired at `now` (their node is
    /// dead, or lost them) and returns every copy of each.
    fn claim_receipts(&self, now: Millis, limit: usize) -> Read<'_, Vec<Recipient>>;
    /// Leases one receipt, whoever holds it (the admin re-send, on any node).
    fn take_receipt<'a>(&'a self, receipt_id: &'a str, now: Millis) -> Read<'a, ()>;
}

/// Options of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long past a receipt copy's next attempt its node's lease lasts (shared stores).
    pub lease_ms: u64,
}

/// Opens (creating and migrating if needed) the configured store.
pub async fn open(db: &Database, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match db {
        Database::Sqlite(path) => Arc::new(
            SqliteStore::open(path)
                .map_err(|e| StoreError::Failed(format!("{}: {e}", path.display())))?,
        ),
        Database::Postgres(url) => Arc::new(PgStore::open(url, options).await?),
    })
}
