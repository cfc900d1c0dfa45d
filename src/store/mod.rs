//! Durable state behind one interface. The engine's writes for one command are committed in one
//! transaction; commits from concurrent requests are grouped (one fsync for many). SQLite is the
//! embedded default; [`MemoryStore`] has the same semantics in memory, for tests and the
//! simulation; the interface is what a PostgreSQL backend implements for several nodes.

pub mod memory;
pub(crate) mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use memory::{Durability, MemoryStore};
pub use sqlite::SqliteStore;

use crate::engine::{
    IdemEntry, IdemKey, Millis, Notice, NoticeKey, Payment, ReceiptRecord, Recipient, StatusRow,
    Write,
};
use crate::journal::segment::Rows;
use crate::journal::{JournalError, JournalQuery, JournalRow};

/// A store failure (the node answers PPT_SYSTEM_ERROR and logs it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        StoreError(e.0)
    }
}

/// Resolves when a commit is durable (or failed).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Store counters: `commit_jobs / transactions` is how well commits are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub transactions: u64,
    pub commit_jobs: u64,
}

/// Durable state. Reads are short and synchronous; commits are asynchronous and grouped.
pub trait Store: Send + Sync + 'static {
    /// A notice and the payment its state names.
    fn load_notice(&self, key: &NoticeKey)
    -> Result<Option<(Notice, Option<Payment>)>, StoreError>;
    /// A payment and its notice.
    fn load_payment(&self, token: &str) -> Result<Option<(Payment, Notice)>, StoreError>;
    fn load_idempotency(&self, key: &IdemKey) -> Result<Option<IdemEntry>, StoreError>;
    /// Every outbox row of a receipt.
    fn load_recipients(&self, receipt_id: &str) -> Result<Vec<Recipient>, StoreError>;
    fn load_receipt(&self, receipt_id: &str) -> Result<Option<ReceiptRecord>, StoreError>;
    /// Payments waiting for their outcome (start-up: deadlines to re-arm).
    fn paying_payments(&self) -> Result<Vec<(Payment, Notice)>, StoreError>;
    /// Every outbox row of each receipt that still has a copy to deliver (start-up: deliveries
    /// to resume). The settled copies come too: a copy that failed for good keeps its payment
    /// PAID when the others are delivered (Part A §7.3: NOTIFIED needs every recipient).
    fn recipients_in_delivery(&self) -> Result<Vec<Recipient>, StoreError>;
    /// How many outbox rows are FAILED (`/metrics`, the console).
    fn failed_recipients(&self) -> Result<u64, StoreError>;
    /// Outbox rows in a given status, newest first (admin).
    fn recipients_by_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<Recipient>, StoreError>;
    /// Payments of a notice, oldest first (admin: a payment's story).
    fn payments_of_notice(&self, key: &NoticeKey) -> Result<Vec<Payment>, StoreError>;
    /// A notice's status histories (official vocabulary), in the order they were written.
    fn status_history(&self, key: &NoticeKey) -> Result<Vec<StatusRow>, StoreError>;
    /// Commits the writes of one engine step atomically. The call itself queues the writes:
    /// commits are applied in the order of the calls (the node calls it while it still holds
    /// the engine, so steps reach the disk in the order the engine made them).
    fn commit(&self, writes: Vec<Write>) -> Commit;
    /// Queues journal rows of SOAP exchanges: written soon, in the background, off the hot path.
    fn journal(&self, rows: Rows);
    fn query_journal(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError>;
    /// Deletes journal rows older than `before` and expired idempotency entries.
    fn maintenance(&self, journal_before: Millis, now: Millis) -> Commit;
    /// Waits until everything queued so far is durable.
    fn flush(&self) -> Commit;
    /// A cheap liveness check of the database.
    fn health(&self) -> Result<(), StoreError>;
    /// Counters since start: transactions (each one fsync) and commit jobs written.
    fn stats(&self) -> StoreStats;
    /// The store's own histograms and counters for `/metrics` (transactions, group commits,
    /// journal bytes), if it keeps them.
    fn metrics(&self) -> Option<std::sync::Arc<crate::metrics::StoreMetrics>> {
        None
    }
}
