//! A store in memory, with the SQLite store's semantics: each commit is atomic (all its writes
//! or none), its notice and payment writes are compare-and-set on their revisions (as in
//! [`super::schema`]), commits are applied in the order they were queued, and reads see only
//! what is applied. One difference: an idempotency entry replaces whatever entry is there (the
//! SQL stores never write over a valid OK answer; the engine's property tests model the
//! replacing store). For tests and the simulation: in [`Durability::Manual`] mode a commit stays queued
//! (its future pending) until the test applies it, and [`MemoryStore::crash`] loses exactly
//! the commits not yet applied, as a process crash loses what was not yet on disk.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{Commit, ConfigVersion, Read, Retention, Store, StoreError, StoreStats, schema};
use crate::codec::types::{PaymentToken, Text35};
use crate::engine::{
    IdemEntry, IdemKey, Notice, NoticeKey, NoticeState, Payment, PaymentStatus, ReceiptRecord,
    Recipient, RecipientStatus, StatusRow, Write,
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
    /// The configuration versions, oldest first.
    configs: Vec<ConfigVersion>,
}

enum Job {
    Commit(Vec<Write>),
    Maintenance(Retention),
    Flush,
    SaveConfig(ConfigVersion),
}

struct Inner {
    tables: Tables,
    /// Each job with where its result goes (a maintenance job's: how many payments it deleted).
    queued: VecDeque<(Job, oneshot::Sender<Result<usize, StoreError>>)>,
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

    fn request(&self, job: Job) -> Read<'static, usize> {
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
                .unwrap_or_else(|_| Err(StoreError::failed("the store stopped before the commit")))
        })
    }

    fn commit_job(&self, job: Job) -> Commit {
        let done = self.request(job);
        Box::pin(async move { done.await.map(drop) })
    }

    /// A read, answered at once.
    fn read<'a, T: Send + 'a>(&self, f: impl FnOnce(&Tables) -> T) -> Read<'a, T> {
        Box::pin(std::future::ready(Ok(f(&self.lock().tables))))
    }
}

impl Inner {
    fn run(&mut self, job: Job) -> Result<usize, StoreError> {
        match job {
            Job::Commit(writes) => {
                self.stats.transactions += 1;
                self.stats.commit_jobs += 1;
                self.commit(writes).map(|()| 0)
            }
            Job::Maintenance(r) => Ok(self.tables.retain(r)),
            Job::Flush => Ok(0),
            Job::SaveConfig(mut v) => {
                let configs = &mut self.tables.configs;
                v.version = configs.last().map_or(0, |c| c.version) + 1;
                let n = v.version as usize;
                configs.push(v);
                Ok(n)
            }
        }
    }

    /// All the writes or none: a write over a record changed since the engine read it is a
    /// conflict, a receipt generated twice a failure (as the stores' constraints say).
    fn commit(&mut self, writes: Vec<Write>) -> Result<(), StoreError> {
        let t = &self.tables;
        let mut receipts = Vec::new();
        for w in &writes {
            match w {
                Write::Notice { notice, expected } => {
                    let stored = t.notices.get(&notice.key).map_or(0, |n| n.revision);
                    if stored != *expected {
                        return Err(StoreError::Conflict("notice".into()));
                    }
                }
                Write::Payment { payment, expected } => {
                    let stored = t.payments.get(&payment.token).map_or(0, |p| p.revision);
                    if stored != *expected {
                        return Err(StoreError::Conflict("payment".into()));
                    }
                }
                Write::PutIdempotency(e)
                    if t.idempotency
                        .get(&idem_id(&e.key))
                        .is_some_and(|held| held.keeps_key_at(e.inserted_at)) =>
                {
                    return Err(StoreError::Conflict("idempotency entry".into()));
                }
                Write::Receipt(r) => {
                    if t.receipts.contains_key(&r.receipt_id) || receipts.contains(&&r.receipt_id) {
                        return Err(StoreError::Failed(format!(
                            "UNIQUE constraint failed: receipts.receipt_id ({})",
                            r.receipt_id
                        )));
                    }
                    receipts.push(&r.receipt_id);
                }
                _ => {}
            }
        }
        let t = &mut self.tables;
        for w in writes {
            match w {
                Write::Notice { notice, .. } => {
                    t.notices.insert(notice.key.clone(), notice);
                }
                Write::Payment { payment, .. } => {
                    t.payments.insert(payment.token.clone(), *payment);
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
    /// One round of retention (see [`Retention`]): returns how many finished payments it
    /// deleted (at most [`schema::RETENTION_BATCH`]).
    fn retain(&mut self, r: Retention) -> usize {
        self.journal.retain(|_, e| e.at >= r.journal_before);
        for rows in self.history.values_mut() {
            rows.retain(|row| row.at >= r.journal_before);
        }
        self.history.retain(|_, rows| !rows.is_empty());
        self.idempotency.retain(|_, e| e.valid_to > r.now);
        let finished: Vec<PaymentToken> = self
            .payments
            .values()
            .filter(|p| {
                p.activated_at < r.finished_before
                    && p.status != PaymentStatus::Paying
                    && self
                        .recipients_of(p.token.as_str())
                        .all(|c| c.status != RecipientStatus::Pending)
            })
            .map(|p| p.token.clone())
            .take(schema::RETENTION_BATCH)
            .collect();
        for t in &finished {
            self.recipients.remove(t);
            self.receipts.remove(t);
            self.payments.remove(t);
        }
        finished.len()
    }

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
    fn load_notice<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Option<(Notice, Option<Payment>)>> {
        self.read(|t| {
            let n = t.notices.get(key)?.clone();
            let payment = match &n.state {
                NoticeState::Free => None,
                NoticeState::Paying(tk) | NoticeState::Paid(tk) => t.payments.get(tk).cloned(),
            };
            Some((n, payment))
        })
    }

    fn load_payment<'a>(&'a self, token: &'a str) -> Read<'a, Option<(Payment, Notice)>> {
        self.read(|t| {
            let p = t.payments.get(token)?.clone();
            let n = t.notice_or_free(&p.notice);
            Some((p, n))
        })
    }

    fn load_idempotency<'a>(&'a self, key: &'a IdemKey) -> Read<'a, Option<IdemEntry>> {
        self.read(|t| t.idempotency.get(&idem_id(key)).cloned())
    }

    fn load_recipients<'a>(&'a self, receipt_id: &'a str) -> Read<'a, Vec<Recipient>> {
        self.read(|t| t.recipients_of(receipt_id).cloned().collect())
    }

    fn paying_payments(&self) -> Read<'_, Vec<(Payment, Notice)>> {
        self.read(|t| {
            t.payments
                .values()
                .filter(|p| p.status == PaymentStatus::Paying)
                .map(|p| (p.clone(), t.notice_or_free(&p.notice)))
                .collect()
        })
    }

    fn recipients_in_delivery(&self) -> Read<'_, Vec<Recipient>> {
        self.read(|t| {
            t.recipients
                .values()
                .filter(|c| c.values().any(|r| r.status == RecipientStatus::Pending))
                .flat_map(|c| c.values().cloned())
                .collect()
        })
    }

    fn failed_recipients(&self) -> Read<'_, u64> {
        self.read(|t| {
            t.all_recipients()
                .filter(|r| r.status == RecipientStatus::Failed)
                .count() as u64
        })
    }

    fn recipients_by_status<'a>(
        &'a self,
        status: RecipientStatus,
        limit: usize,
    ) -> Read<'a, Vec<Recipient>> {
        self.read(|t| {
            let mut out: Vec<Recipient> = t
                .all_recipients()
                .filter(|r| r.status == status)
                .cloned()
                .collect();
            out.sort_by_key(|r| std::cmp::Reverse(r.next_attempt_at));
            out.truncate(limit);
            out
        })
    }

    fn payments_of_notice<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<Payment>> {
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

    fn status_history<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<StatusRow>> {
        self.read(|t| t.history.get(key).cloned().unwrap_or_default())
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.commit_job(Job::Commit(writes))
    }

    fn journal(&self, rows: Rows) {
        let mut inner = self.lock();
        for entry in rows.entries() {
            let id = inner.next_journal_id;
            inner.next_journal_id += 1;
            inner.tables.journal.insert(id, entry);
        }
    }

    fn query_journal<'a>(&'a self, q: &'a JournalQuery) -> Read<'a, Vec<JournalRow>> {
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

    fn maintenance(&self, r: Retention) -> Read<'_, usize> {
        self.request(Job::Maintenance(r))
    }

    fn flush(&self) -> Commit {
        self.commit_job(Job::Flush)
    }

    fn health(&self) -> Read<'_, ()> {
        self.read(|_| ())
    }

    fn save_config(&self, v: ConfigVersion) -> Read<'_, u64> {
        let saved = self.request(Job::SaveConfig(v));
        Box::pin(async move { saved.await.map(|n| n as u64) })
    }

    fn latest_config(&self) -> Read<'_, Option<ConfigVersion>> {
        self.read(|t| t.configs.last().cloned())
    }

    fn latest_config_version(&self) -> Read<'_, u64> {
        self.read(|t| t.configs.last().map_or(0, |c| c.version))
    }

    fn stats(&self) -> StoreStats {
        self.lock().stats
    }

    fn close(&self) {}
}
