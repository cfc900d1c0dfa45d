//! A store in memory, with the SQLite store's semantics: each commit is atomic (all its writes
//! or none), commits are applied in the order they were queued, and reads see only what is
//! applied. For tests and the simulation: in [`Durability::Manual`] mode a commit stays queued
//! (its future pending) until the test applies it, and [`MemoryStore::crash`] loses exactly
//! the commits not yet applied, as a process crash loses what was not yet on disk.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{Commit, Store, StoreError, StoreStats};
use crate::codec::types::{PaymentToken, Text35};
use crate::engine::{
    IdemEntry, IdemKey, Millis, Notice, NoticeKey, NoticeState, Payment, PaymentStatus,
    ReceiptRecord, Recipient, RecipientStatus, StatusRow, Write,
};
use crate::journal::rows::event_row;
use crate::journal::segment::Rows;
use crate::journal::{Cursor, JournalEntry, JournalQuery, JournalRow};

/// When a queued commit becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// At once: the commit future is ready when it is returned.
    Immediate,
    /// When the test says so ([`MemoryStore::apply_next`]).
    Manual,
}

/// The store in memory (cloning shares it).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

type IdemId = (String, String, &'static str);

fn idem_id(k: &IdemKey) -> IdemId {
    (k.psp.clone(), k.key.clone(), k.primitive)
}

/// What is durable.
#[derive(Default)]
struct Tables {
    notices: BTreeMap<NoticeKey, Notice>,
    payments: BTreeMap<PaymentToken, Payment>,
    receipts: BTreeMap<PaymentToken, ReceiptRecord>,
    /// By receipt, then by station.
    recipients: BTreeMap<PaymentToken, BTreeMap<Text35, Recipient>>,
    idempotency: BTreeMap<IdemId, IdemEntry>,
    /// State changes and SOAP exchanges, by id.
    journal: BTreeMap<u64, JournalEntry>,
    /// The official status histories, by notice, in the order written.
    history: BTreeMap<NoticeKey, Vec<StatusRow>>,
}

enum Job {
    Commit(Vec<Write>),
    Maintenance { journal_before: Millis, now: Millis },
    Flush,
}

struct Inner {
    tables: Tables,
    queued: VecDeque<(Job, oneshot::Sender<Result<(), StoreError>>)>,
    durability: Durability,
    next_journal_id: u64,
    stats: StoreStats,
}

impl MemoryStore {
    pub fn new(durability: Durability) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                tables: Tables::default(),
                queued: VecDeque::new(),
                durability,
                next_journal_id: 1,
                stats: StoreStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs queued and not yet applied.
    pub fn queued(&self) -> usize {
        self.lock().queued.len()
    }

    /// Applies the oldest queued job and resolves its future; false if none was queued.
    pub fn apply_next(&self) -> bool {
        let mut inner = self.lock();
        let Some((job, done)) = inner.queued.pop_front() else {
            return false;
        };
        let result = inner.run(job);
        drop(inner);
        let _ = done.send(result);
        true
    }

    /// The process dies: the queued jobs are lost (their futures fail), what was applied stays.
    pub fn crash(&self) {
        self.lock().queued.clear();
    }

    fn request(&self, job: Job) -> Commit {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        match inner.durability {
            Durability::Immediate => {
                let result = inner.run(job);
                let _ = tx.send(result);
            }
            Durability::Manual => inner.queued.push_back((job, tx)),
        }
        drop(inner);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError("the store stopped before the commit".into())))
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Tables) -> T) -> Result<T, StoreError> {
        Ok(f(&self.lock().tables))
    }
}

impl Inner {
    fn run(&mut self, job: Job) -> Result<(), StoreError> {
        match job {
            Job::Commit(writes) => {
                self.stats.transactions += 1;
                self.stats.commit_jobs += 1;
                self.commit(writes)
            }
            Job::Maintenance {
                journal_before,
                now,
            } => {
                self.tables.journal.retain(|_, e| e.at >= journal_before);
                self.tables.idempotency.retain(|_, e| e.valid_to > now);
                Ok(())
            }
            Job::Flush => Ok(()),
        }
    }

    /// All the writes or none: the only write that can fail is a receipt generated twice.
    fn commit(&mut self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut receipts = Vec::new();
        for w in &writes {
            if let Write::Receipt(r) = w {
                if self.tables.receipts.contains_key(&r.receipt_id)
                    || receipts.contains(&&r.receipt_id)
                {
                    return Err(StoreError(format!(
                        "UNIQUE constraint failed: receipts.receipt_id ({})",
                        r.receipt_id
                    )));
                }
                receipts.push(&r.receipt_id);
            }
        }
        let t = &mut self.tables;
        for w in writes {
            match w {
                Write::Notice(n) => {
                    t.notices.insert(n.key.clone(), n);
                }
                Write::Payment(p) => {
                    t.payments.insert(p.token.clone(), *p);
                }
                Write::Receipt(r) => {
                    t.receipts.insert(r.receipt_id.clone(), r);
                }
                Write::Recipient(r) => {
                    let copies = t.recipients.entry(r.receipt_id.clone()).or_default();
                    match copies.get_mut(&r.station) {
                        // As in SQLite: the copy's bytes, EC and version are written once; a
                        // later write changes only its delivery state.
                        Some(old) => {
                            old.status = r.status;
                            old.attempts = r.attempts;
                            old.next_attempt_at = r.next_attempt_at;
                            old.last_error = r.last_error;
                        }
                        None => {
                            copies.insert(r.station.clone(), r);
                        }
                    }
                }
                Write::PutIdempotency(e) => {
                    t.idempotency.insert(idem_id(&e.key), e);
                }
                Write::DeleteIdempotency { key, token } => {
                    let id = idem_id(&key);
                    if t.idempotency
                        .get(&id)
                        .is_some_and(|e| e.token.as_ref() == Some(&token))
                    {
                        t.idempotency.remove(&id);
                    }
                }
                Write::Status(row) => {
                    t.history.entry(row.notice.clone()).or_default().push(row);
                }
                Write::Event(e) => {
                    let id = self.next_journal_id;
                    self.next_journal_id += 1;
                    t.journal.insert(id, event_row(&e).to_entry());
                }
            }
        }
        Ok(())
    }
}

impl Tables {
    fn notice_or_free(&self, key: &NoticeKey) -> Notice {
        self.notices
            .get(key)
            .cloned()
            .unwrap_or_else(|| Notice::free(key.clone()))
    }

    fn recipients_of(&self, receipt_id: &str) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .get(receipt_id)
            .into_iter()
            .flat_map(|c| c.values())
    }

    fn all_recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.values().flat_map(|c| c.values())
    }
}

impl Store for MemoryStore {
    fn load_notice(
        &self,
        key: &NoticeKey,
    ) -> Result<Option<(Notice, Option<Payment>)>, StoreError> {
        self.read(|t| {
            let n = t.notices.get(key)?.clone();
            let payment = match &n.state {
                NoticeState::Free => None,
                NoticeState::Paying(tk) | NoticeState::Paid(tk) => t.payments.get(tk).cloned(),
            };
            Some((n, payment))
        })
    }

    fn load_payment(&self, token: &str) -> Result<Option<(Payment, Notice)>, StoreError> {
        self.read(|t| {
            let p = t.payments.get(token)?.clone();
            let n = t.notice_or_free(&p.notice);
            Some((p, n))
        })
    }

    fn load_idempotency(&self, key: &IdemKey) -> Result<Option<IdemEntry>, StoreError> {
        self.read(|t| t.idempotency.get(&idem_id(key)).cloned())
    }

    fn load_recipients(&self, receipt_id: &str) -> Result<Vec<Recipient>, StoreError> {
        self.read(|t| t.recipients_of(receipt_id).cloned().collect())
    }

    fn load_receipt(&self, receipt_id: &str) -> Result<Option<ReceiptRecord>, StoreError> {
        self.read(|t| t.receipts.get(receipt_id).cloned())
    }

    fn paying_payments(&self) -> Result<Vec<(Payment, Notice)>, StoreError> {
        self.read(|t| {
            t.payments
                .values()
                .filter(|p| p.status == PaymentStatus::Paying)
                .map(|p| (p.clone(), t.notice_or_free(&p.notice)))
                .collect()
        })
    }

    fn recipients_in_delivery(&self) -> Result<Vec<Recipient>, StoreError> {
        self.read(|t| {
            t.recipients
                .values()
                .filter(|c| c.values().any(|r| r.status == RecipientStatus::Pending))
                .flat_map(|c| c.values().cloned())
                .collect()
        })
    }

    fn failed_recipients(&self) -> Result<u64, StoreError> {
        self.read(|t| {
            t.all_recipients()
                .filter(|r| r.status == RecipientStatus::Failed)
                .count() as u64
        })
    }

    fn recipients_by_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<Recipient>, StoreError> {
        self.read(|t| {
            let mut out: Vec<Recipient> = t
                .all_recipients()
                .filter(|r| r.status.as_str() == status)
                .cloned()
                .collect();
            out.sort_by_key(|r| std::cmp::Reverse(r.next_attempt_at));
            out.truncate(limit);
            out
        })
    }

    fn payments_of_notice(&self, key: &NoticeKey) -> Result<Vec<Payment>, StoreError> {
        self.read(|t| {
            let mut out: Vec<Payment> = t
                .payments
                .values()
                .filter(|p| &p.notice == key)
                .cloned()
                .collect();
            out.sort_by_key(|p| p.activated_at);
            out
        })
    }

    fn status_history(&self, key: &NoticeKey) -> Result<Vec<StatusRow>, StoreError> {
        self.read(|t| t.history.get(key).cloned().unwrap_or_default())
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.request(Job::Commit(writes))
    }

    fn journal(&self, rows: Rows) {
        let mut inner = self.lock();
        for entry in rows.entries() {
            let id = inner.next_journal_id;
            inner.next_journal_id += 1;
            inner.tables.journal.insert(id, entry);
        }
    }

    fn query_journal(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
        // In time order, then by id, as the SQLite store lists them.
        self.read(|t| {
            let mut hits: Vec<(Cursor, &JournalEntry)> = t
                .journal
                .iter()
                .map(|(&id, e)| {
                    let place = Cursor {
                        at: e.at,
                        id: id as i64,
                    };
                    (place, e)
                })
                .filter(|(place, e)| q.after.is_none_or(|a| *place > a) && e.as_row().matches(q))
                .collect();
            hits.sort_unstable_by_key(|(place, _)| *place);
            hits.into_iter()
                .take(q.limit.clamp(1, 10_000))
                .map(|(place, e)| JournalRow {
                    id: place.id,
                    entry: e.clone(),
                })
                .collect()
        })
    }

    fn maintenance(&self, journal_before: Millis, now: Millis) -> Commit {
        self.request(Job::Maintenance {
            journal_before,
            now,
        })
    }

    fn flush(&self) -> Commit {
        self.request(Job::Flush)
    }

    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.lock().stats
    }
}
