//! The journal writer: one thread that numbers exchange rows and appends them to the segments.
//!
//! The payment path hands it encoded [`Rows`] and goes on: nothing waits for the journal. The
//! thread sleeps between batches instead of waiting on its channel, so senders do not wake it
//! per row; each batch is one `write`. The rows reach the disk within [`SYNC_EVERY`] of being
//! written (the page cache is synced then, busy or idle), or at once when someone flushes: a
//! power cut may lose the last second of exchanges, never a state change (those are committed
//! with the state).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::JournalError;
use super::segment::{Rows, SegmentWriter};
use crate::engine::Millis;

/// How long the writer gathers rows before writing them.
const GATHER: Duration = Duration::from_millis(50);
/// How often written rows are synced to the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);

type Done = oneshot::Sender<Result<(), JournalError>>;

enum Msg {
    Rows(Rows),
    /// Everything sent before is durable when this is answered.
    Flush(Done),
    /// Retention: delete the segments older than this.
    Retain(Millis, Done),
}

/// The handle of the journal writer thread.
pub struct JournalWriter {
    tx: RwLock<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// Bytes written to the segments since the start (`/metrics`).
    written: Arc<AtomicU64>,
}

impl JournalWriter {
    /// Starts the writer over `segments`; rows get ids from `next_id` (shared with the state
    /// changes, so ids order the whole journal).
    pub fn start(
        segments: SegmentWriter,
        next_id: Arc<AtomicU64>,
    ) -> Result<JournalWriter, JournalError> {
        let (tx, rx) = mpsc::channel();
        let written = Arc::new(AtomicU64::new(0));
        let counted = written.clone();
        let thread = thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run(segments, &rx, &next_id, &counted))
            .map_err(|e| JournalError(format!("cannot start the journal writer: {e}")))?;
        Ok(JournalWriter {
            tx: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            written,
        })
    }

    /// The count of bytes written to the segments since the start, kept up to date.
    pub fn bytes_written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx
            .read()
            .is_ok_and(|tx| tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok()))
    }

    /// Queues rows; they are written soon, off the caller's path.
    pub fn append(&self, rows: Rows) {
        if !rows.is_empty() && !self.send(Msg::Rows(rows)) {
            tracing::warn!("journal rows dropped: the journal is closed");
        }
    }

    fn request(
        &self,
        msg: impl FnOnce(Done) -> Msg,
    ) -> oneshot::Receiver<Result<(), JournalError>> {
        let (done, rx) = oneshot::channel();
        // If the writer is gone, `done` is dropped with the message: the receiver says so.
        self.send(msg(done));
        rx
    }

    /// Resolves when every row queued before this call is on disk (asked at once, not when
    /// the future is first polled).
    pub fn flush(&self) -> impl Future<Output = Result<(), JournalError>> + use<> {
        answer(self.request(Msg::Flush))
    }

    /// Deletes the segments whose rows are all older than `before`.
    pub fn retain(&self, before: Millis) -> impl Future<Output = Result<(), JournalError>> + use<> {
        answer(self.request(|done| Msg::Retain(before, done)))
    }

    /// Writes what is queued, syncs it and stops the thread.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

async fn answer(rx: oneshot::Receiver<Result<(), JournalError>>) -> Result<(), JournalError> {
    rx.await
        .unwrap_or_else(|_| Err(JournalError("the journal writer stopped".into())))
}

fn run(
    mut segments: SegmentWriter,
    rx: &mpsc::Receiver<Msg>,
    next_id: &AtomicU64,
    written: &AtomicU64,
) {
    let mut last_sync = Instant::now();
    // Rows written since the last sync: they are synced within SYNC_EVERY even if no more
    // rows come (an idle node's last exchanges are not left in the page cache).
    let mut unsynced = false;
    loop {
        let first = if unsynced {
            match rx.recv_timeout(SYNC_EVERY.saturating_sub(last_sync.elapsed())) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = segments.sync() {
                        tracing::error!(error = %e, "journal rows not synced");
                    }
                    (last_sync, unsynced) = (Instant::now(), false);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(msg) => msg,
                Err(_) => break,
            }
        };
        if matches!(first, Msg::Rows(_)) {
            thread::sleep(GATHER);
        }
        let mut waiting = Vec::new();
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                Msg::Rows(rows) => {
                    let first_id = next_id.fetch_add(rows.len(), Ordering::Relaxed);
                    if let Err(e) = segments.append(rows, first_id) {
                        tracing::error!(error = %e, "journal rows lost");
                    }
                }
                Msg::Flush(done) => waiting.push((done, None)),
                Msg::Retain(before, done) => waiting.push((done, Some(before))),
            }
        }
        let mut result = segments.write().map_err(|e| e.to_string());
        written.store(segments.bytes_written(), Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "journal rows lost");
        }
        if !waiting.is_empty() || last_sync.elapsed() >= SYNC_EVERY {
            result = result.and(segments.sync().map_err(|e| e.to_string()));
            (last_sync, unsynced) = (Instant::now(), false);
        } else {
            unsynced = true;
        }
        for (done, retain) in waiting {
            let r = match retain {
                Some(before) => segments
                    .retain(before)
                    .map(|n| {
                        if n > 0 {
                            tracing::info!(segments = n, "journal retention: segments deleted");
                        }
                    })
                    .map_err(|e| e.to_string()),
                None => result.clone(),
            };
            let _ = done.send(r.map_err(JournalError));
        }
    }
    if let Err(e) = segments.write().and_then(|()| segments.sync()) {
        tracing::error!(error = %e, "journal rows lost at shutdown");
    }
}

/// The journal directory beside a state database: `x.db` → `x.journal/`.
pub fn journal_dir(db: &Path) -> std::path::PathBuf {
    let stem = db
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pagonode");
    db.with_file_name(format!("{stem}.journal"))
}
