//! The shared store: PostgreSQL, for several nodes at once. Any node serves any request: every
//! write is a compare-and-set on the records' revisions ([`crate::store::schema`]), so of two
//! nodes racing on one notice one commits and the other gets a conflict (and runs its command
//! again on what the winner wrote). The outbox is shared: each receipt is leased by one node at a
//! time, and the leases and deadlines of a dead node are taken over ([`SharedStore`]).
//!
//! Each node writes through one connection: the commits queued while one transaction is being
//! written go together in the next (one round of fsync for many), their statements pipelined,
//! in the order the node queued them. Reads go through a pool with timeouts. The journal (state
//! changes and SOAP exchanges, every node's) is a table partitioned by day; exchanges are
//! written in batches by a task of their own, off the payment path.

mod connect;
mod migrate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::schema::{self, Dialect, Events, Fields, Lease, Val};
use super::{
    Commit, CommitCounters, ConfigVersion, Read, Retention, SharedStore, Store, StoreError,
    StoreOptions, StoreStats,
};
use crate::engine::{
    IdemEntry, IdemKey, Millis, Notice, NoticeKey, Payment, Recipient, RecipientStatus, StatusRow,
    Write,
};
use crate::journal::segment::{RowRef, Rows};
use crate::journal::{JournalQuery, JournalRow};
pub use connect::{CONNECT_TIMEOUT, target};

/// Read connections per node.
const POOL_SIZE: usize = 16;
/// How long a read waits for a connection (a database that is down fails reads this soon).
const POOL_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many commits go in one transaction.
const MAX_GROUP: usize = 512;
/// Journal rows waiting while the database is unreachable, at most (older ones are dropped).
const JOURNAL_BACKLOG: usize = 200_000;
/// How often the journal writer writes what it gathered.
const JOURNAL_EVERY: Duration = Duration::from_millis(50);

type Done = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Commit(Vec<Write>, Done),
    Flush(Done),
}

enum JournalMsg {
    Rows(Rows),
    Flush(Done),
}

/// The PostgreSQL store. Cloning shares it.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    journal: Mutex<Option<mpsc::UnboundedSender<JournalMsg>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    counters: Arc<CommitCounters>,
    lease: Lease,
}

fn failed(e: tokio_postgres::Error) -> StoreError {
    StoreError::Failed(describe(&e))
}

/// The database's message when there is one (the driver's own says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => failed(e),
        other => StoreError::Failed(format!("database unreachable: {other}")),
    }
}

impl ToSql for Val<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) => i.to_sql(ty, out),
            Val::Text(t) => t.as_ref().to_sql(ty, out),
            Val::Blob(b) => b.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl Fields for Row {
    fn int(&self, col: &str) -> Result<Option<i64>, String> {
        let i = self
            .columns()
            .iter()
            .position(|c| c.name() == col)
            .ok_or_else(|| format!("{col}: no such column"))?;
        let e = |e: tokio_postgres::Error| format!("{col}: {e}");
        match *self.columns()[i].type_() {
            Type::INT2 => Ok(self.try_get::<_, Option<i16>>(i).map_err(e)?.map(i64::from)),
            Type::INT4 => Ok(self.try_get::<_, Option<i32>>(i).map_err(e)?.map(i64::from)),
            _ => self.try_get(i).map_err(e),
        }
    }

    fn text(&self, col: &str) -> Result<Option<String>, String> {
        self.try_get(col).map_err(|e| format!("{col}: {e}"))
    }

    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, String> {
        self.try_get(col).map_err(|e| format!("{col}: {e}"))
    }

    fn xml(&self, col: &str) -> Result<Option<String>, String> {
        self.bytes(col)?
            .map(|b| schema::unpack(&b))
            .transpose()
            .map_err(|e| format!("{col}: {e}"))
    }
}

fn params<'a>(vals: &'a [Val<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Leases the receipts with copies to deliver whose lease has expired (see
/// [`SharedStore::claim_receipts`]): `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take
/// different receipts.
const CLAIM_RECEIPTS: &str = "UPDATE receipts SET lease_owner = $1, lease_until = $2
 WHERE receipt_id IN (
   SELECT c.receipt_id FROM receipts c
    WHERE c.lease_until < $3
      AND c.receipt_id IN (SELECT receipt_id FROM recipients WHERE status = 'PENDING')
    LIMIT $4 FOR UPDATE SKIP LOCKED)
 RETURNING receipt_id";

impl PgStore {
    /// Connects, migrates the schema (one node at a time) and starts the writers.
    pub async fn open(url: &str, options: StoreOptions) -> Result<PgStore, StoreError> {
        let t = target(url)?;
        let (mut client, conn_task) = connect_one(&t).await?;
        migrate::migrate(&mut client).await?;
        migrate::partitions(
            &mut client,
            crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            0,
        )
        .await?;
        drop(client);
        conn_task.abort();
        let manager = Manager::from_config(
            t.config.clone(),
            t.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(StoreError::failed)?;
        let counters = Arc::new(CommitCounters::default());
        let lease = Lease {
            owner: rand::random::<u64>() >> 1 | 1,
            lease_ms: options.lease_ms,
        };
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (journal_tx, journal_rx) = mpsc::unbounded_channel();
        let dialect = Dialect {
            events: Events::Sequenced,
            lease: Some(lease),
        };
        let tasks = vec![
            tokio::spawn(writer(Arc::new(t), jobs_rx, counters.clone(), dialect)),
            tokio::spawn(journal_writer(
                pool.clone(),
                journal_rx,
                counters.metrics.journal_bytes.clone(),
            )),
        ];
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                jobs: Mutex::new(Some(jobs_tx)),
                journal: Mutex::new(Some(journal_tx)),
                tasks: Mutex::new(tasks),
                counters,
                lease,
            }),
        })
    }

    fn request(&self, make: impl FnOnce(Done) -> Job) -> Commit {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .inner
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|j| j.send(make(tx)).is_ok()))
            .unwrap_or(false);
        Box::pin(async move {
            if !sent {
                return Err(StoreError::failed("the store is closed"));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::failed("the store writer stopped")))
        })
    }

    /// Rows of `sql`, each decoded by `decode`.
    async fn all<T>(
        &self,
        table: &str,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let st = client.prepare_cached(sql).await.map_err(failed)?;
        let rows = client.query(&st, args).await.map_err(failed)?;
        rows.iter()
            .map(|r| decode(r).map_err(|e| schema::corrupt(table, e)))
            .collect()
    }

    /// The one row of `sql`, if any.
    async fn one<T>(
        &self,
        table: &str,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Result<T, String>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.all(table, sql, args, decode).await?.into_iter().next())
    }

    async fn retain(&self, r: Retention) -> Result<usize, StoreError> {
        let mut client = self.inner.pool.get().await.map_err(pool_error)?;
        migrate::partitions(&mut client, r.now, r.journal_before).await?;
        client
            .execute(schema::DELETE_OLD_IDEMPOTENCY, &[&(r.now as i64)])
            .await
            .map_err(failed)?;
        client
            .execute(
                "DELETE FROM status_history WHERE at < $1",
                &[&(r.journal_before as i64)],
            )
            .await
            .map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let tokens: Vec<String> = tx
            .query(
                schema::FINISHED_PAYMENTS,
                &[
                    &(r.finished_before as i64),
                    &(schema::RETENTION_BATCH as i64),
                ],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for sql in schema::DELETE_FINISHED {
            let many = sql.replace("= $1", "= ANY($1)");
            tx.execute(&many, &[&tokens]).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(tokens.len())
    }
}

async fn connect_one(t: &connect::Target) -> Result<(Client, JoinHandle<()>), StoreError> {
    let (client, connection) = t
        .config
        .connect(t.tls.clone())
        .await
        .map_err(|e| StoreError::Failed(format!("database unreachable: {}", describe(&e))))?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok((client, task))
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    task: JoinHandle<()>,
    statements: HashMap<&'static str, Statement>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a failed transaction may be retried as it is: the connection is fine, the database
/// refused it (a conflict, a deadlock with another node, a constraint).
fn retryable(e: &StoreError, conn: &Option<Conn>) -> bool {
    matches!(e, StoreError::Conflict(_)) || conn.as_ref().is_some_and(|c| !c.client.is_closed())
}

/// The commit writer: one connection, commits in the order queued, grouped.
async fn writer(
    target: Arc<connect::Target>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    counters: Arc<CommitCounters>,
    dialect: Dialect,
) {
    let mut conn: Option<Conn> = None;
    while let Some(first) = rx.recv().await {
        // What queued while the previous transaction was written goes in this one.
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commits = batch
            .iter()
            .filter(|j| matches!(j, Job::Commit(..)))
            .count() as u64;
        let all: Vec<&Job> = batch.iter().collect();
        let writing = std::time::Instant::now();
        let results = match run(&target, &mut conn, &all, dialect).await {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(e) if batch.len() > 1 && retryable(&e, &conn) => {
                tracing::debug!(error = %e, jobs = batch.len(), "group commit failed: retrying its jobs one by one");
                let mut results = Vec::with_capacity(batch.len());
                for job in &batch {
                    results.push(run(&target, &mut conn, &[job], dialect).await);
                }
                results
            }
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect::<Vec<_>>(),
        };
        counters.committed(commits, writing);
        // Committed, nobody told yet: the crash window the crash test stops the node in.
        crate::failpoints::failpoint!("store.committed", results.iter().any(Result::is_ok));
        for (job, r) in batch.into_iter().zip(results) {
            if let Err(e @ StoreError::Failed(_)) = &r {
                tracing::error!(error = %e, "store write failed");
            }
            let (Job::Commit(_, done) | Job::Flush(done)) = job;
            let _ = done.send(r);
        }
    }
}

/// Commits `jobs` in one transaction (connecting first if needed). A commit whose outcome is
/// unknown (the connection broke) is reported failed, never done.
async fn run(
    target: &connect::Target,
    conn: &mut Option<Conn>,
    jobs: &[&Job],
    dialect: Dialect,
) -> Result<(), StoreError> {
    let writes: Vec<&Vec<Write>> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Commit(w, _) => Some(w),
            Job::Flush(_) => None,
        })
        .collect();
    if writes.is_empty() {
        return Ok(());
    }
    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
        *conn = None;
        let (client, task) = connect_one(target).await?;
        *conn = Some(Conn {
            client,
            task,
            statements: HashMap::new(),
        });
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above")
    };
    let no_id = || 0;
    let ops: Vec<schema::Op<'_>> = writes
        .iter()
        .flat_map(|w| schema::plan(w, dialect, &no_id))
        .collect();
    let result = apply(c, &ops).await;
    if let Err(StoreError::Failed(_)) = &result
        && c.client.is_closed()
    {
        *conn = None;
    }
    result
}

async fn apply(c: &mut Conn, ops: &[schema::Op<'_>]) -> Result<(), StoreError> {
    for op in ops {
        if !c.statements.contains_key(op.sql) {
            let st = c.client.prepare(op.sql).await.map_err(failed)?;
            c.statements.insert(op.sql, st);
        }
    }
    let Conn {
        client, statements, ..
    } = c;
    let tx = client.transaction().await.map_err(failed)?;
    // Pipelined: every statement is sent before the first answer is read.
    let counts = futures_util::future::try_join_all(ops.iter().map(|op| {
        let st = &statements[op.sql];
        let args = params(&op.params);
        let tx = &tx;
        async move { tx.execute(st, &args).await }
    }))
    .await
    .map_err(|e| match e.code() {
        // Another node's transaction on the same records: a deadlock, or a row it inserted
        // first (a receipt of a payment both completed at once: its compare-and-set comes
        // later in the transaction).
        Some(
            &SqlState::T_R_SERIALIZATION_FAILURE
            | &SqlState::T_R_DEADLOCK_DETECTED
            | &SqlState::UNIQUE_VIOLATION,
        ) => StoreError::Conflict(format!("transaction ({})", describe(&e))),
        _ => failed(e),
    })?;
    for (op, n) in ops.iter().zip(counts) {
        if let Some(what) = op.cas
            && n != 1
        {
            return Err(StoreError::Conflict(what.into()));
        }
    }
    tx.commit().await.map_err(failed)
}

/// Writes the journal's exchanges in batches, one `INSERT` per batch.
async fn journal_writer(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<JournalMsg>,
    written: Arc<AtomicU64>,
) {
    let mut pending: Vec<Rows> = Vec::new();
    let mut rows = 0usize;
    let mut flushes: Vec<Done> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() || !flushes.is_empty() {
        let mut tick = tokio::time::interval(JOURNAL_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = rx.recv(), if open => match msg {
                    Some(JournalMsg::Rows(r)) => { rows += r.len() as usize; pending.push(r); }
                    Some(JournalMsg::Flush(done)) => { flushes.push(done); break; }
                    None => { open = false; break; }
                },
                _ = tick.tick() => break,
            }
        }
        if !pending.is_empty() {
            match insert_journal(&pool, &pending).await {
                Ok(bytes) => {
                    written.fetch_add(bytes, Ordering::Relaxed);
                    pending.clear();
                    rows = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows, "journal rows not written yet");
                    while rows > JOURNAL_BACKLOG && !pending.is_empty() {
                        rows -= pending.remove(0).len() as usize;
                    }
                }
            }
        }
        let result = if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::failed(
                "journal rows not written: database unreachable",
            ))
        };
        for done in flushes.drain(..) {
            let _ = done.send(result.clone());
        }
        if !open && !pending.is_empty() {
            tracing::error!(rows, "journal rows lost at shutdown: database unreachable");
            break;
        }
    }
}

/// The exchanges of `batch`, in one statement (a column array per field). Returns the bytes
/// of the rows' values.
async fn insert_journal<'a>(pool: &Pool, batch: &'a [Rows]) -> Result<u64, StoreError> {
    #[derive(Default)]
    struct Columns<'b> {
        ints: [Vec<Option<i64>>; 2],
        texts: [Vec<Option<&'b str>>; 16],
    }
    let mut c: Columns<'a> = Columns::default();
    let mut bytes = 0u64;
    let mut add = |r: &RowRef<'a>| {
        let texts = [
            Some(r.component),
            r.category.map(|x| x.as_str()),
            Some(r.primitive),
            r.subtype.map(|x| x.as_str()),
            r.fiscal_code,
            r.notice_number,
            r.iuv,
            r.token,
            r.psp,
            r.channel,
            r.station,
            r.outcome,
            r.caller,
            r.callee,
            r.payload,
            r.detail,
        ];
        c.ints[0].push(Some(r.at as i64));
        c.ints[1].push(r.duration_ms.map(|d| d as i64));
        bytes += 16 + texts.iter().flatten().map(|t| t.len() as u64).sum::<u64>();
        for (col, t) in c.texts.iter_mut().zip(texts) {
            col.push(t);
        }
    };
    for rows in batch {
        rows.each(&mut add);
    }
    let client = pool.get().await.map_err(pool_error)?;
    let st = client
        .prepare_cached(
            "INSERT INTO journal (at, component, category, primitive, subtype, fiscal_code, notice_number, iuv,
               token, psp, channel, station, outcome, caller, callee, payload, detail, duration_ms)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
               $14::text[], $15::text[], $16::text[], $17::text[], $18::int8[])",
        )
        .await
        .map_err(failed)?;
    let t = &c.texts;
    client
        .execute(
            &st,
            &[
                &c.ints[0], &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8], &t[9],
                &t[10], &t[11], &t[12], &t[13], &t[14], &t[15], &c.ints[1],
            ],
        )
        .await
        .map_err(failed)?;
    Ok(bytes)
}

/// One page of the journal (every node's), in time order (then by id).
async fn query_journal(client: &Client, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
    let (filter, args) = crate::store::journal_query::filters(q);
    let sql = format!(
        "SELECT id, {} FROM journal WHERE {filter} ORDER BY at, id LIMIT {}",
        schema::JOURNAL_FIELDS,
        q.limit.clamp(1, 10_000)
    );
    let rows = client.query(&sql, &params(&args)).await.map_err(failed)?;
    rows.iter()
        .map(|r| {
            crate::store::journal_query::journal_from(r).map_err(|e| schema::corrupt("journal", e))
        })
        .collect()
}

/// A notice's status histories, in the order written.
async fn status_history(client: &Client, key: &NoticeKey) -> Result<Vec<StatusRow>, StoreError> {
    let rows = client
        .query(
            schema::SELECT_STATUS_HISTORY,
            &[&key.fiscal_code.as_str(), &key.notice_number.as_str()],
        )
        .await
        .map_err(failed)?;
    schema::status_history(
        key,
        rows.iter()
            .map(|r| r.text("rows").map(Option::unwrap_or_default)),
    )
}

/// Runs `read` on a connection of its own to the database at `url` (the read-only
/// `pagonode journal`).
fn read_alone<T>(
    url: &str,
    read: impl AsyncFnOnce(&Client) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreError::failed)?;
    rt.block_on(async {
        let t = target(url)?;
        let (client, task) = connect_one(&t).await?;
        let out = read(&client).await;
        drop(client);
        task.abort();
        out
    })
}

/// One page of the journal of the database at `url`.
pub fn read_journal(url: &str, q: &JournalQuery) -> Result<Vec<JournalRow>, StoreError> {
    read_alone(url, async |c| query_journal(c, q).await)
}

/// A notice's status histories in the database at `url`.
pub fn read_status_history(url: &str, key: &NoticeKey) -> Result<Vec<StatusRow>, StoreError> {
    read_alone(url, async |c| status_history(c, key).await)
}

impl Store for PgStore {
    fn load_notice<'a>(
        &'a self,
        key: &'a NoticeKey,
    ) -> Read<'a, Option<(Notice, Option<Payment>)>> {
        Box::pin(async move {
            let found = self
                .one(
                    "notices",
                    schema::SELECT_NOTICE,
                    &[&key.fiscal_code.as_str(), &key.notice_number.as_str()],
                    |row| Ok((schema::notice_from(row)?, schema::payment_from(row)?)),
                )
                .await?;
            Ok(found.and_then(|(n, p)| n.map(|n| (n, p))))
        })
    }

    fn load_payment<'a>(&'a self, token: &'a str) -> Read<'a, Option<(Payment, Notice)>> {
        Box::pin(async move {
            self.one(
                "payments",
                &schema::QUERIES.payment,
                &[&token],
                schema::payment_pair,
            )
            .await
        })
    }

    fn load_idempotency<'a>(&'a self, key: &'a IdemKey) -> Read<'a, Option<IdemEntry>> {
        Box::pin(async move {
            self.one(
                "idempotency",
                schema::SELECT_IDEMPOTENCY,
                &[&key.psp, &key.key, &key.primitive],
                move |row| schema::idem_from(row, key),
            )
            .await
        })
    }

    fn load_recipients<'a>(&'a self, receipt_id: &'a str) -> Read<'a, Vec<Recipient>> {
        Box::pin(async move {
            self.all(
                "recipients",
                &schema::QUERIES.recipients_of,
                &[&receipt_id],
                schema::recipient_from,
            )
            .await
        })
    }

    fn paying_payments(&self) -> Read<'_, Vec<(Payment, Notice)>> {
        Box::pin(async move {
            self.all(
                "payments",
                &schema::QUERIES.paying,
                &[],
                schema::payment_pair,
            )
            .await
        })
    }

    fn recipients_in_delivery(&self) -> Read<'_, Vec<Recipient>> {
        Box::pin(async move {
            self.all(
                "recipients",
                &schema::QUERIES.in_delivery,
                &[],
                schema::recipient_from,
            )
            .await
        })
    }

    fn failed_recipients(&self) -> Read<'_, u64> {
        Box::pin(async move {
            let n = self
                .one(
                    "recipients",
                    "SELECT COUNT(*) FROM recipients WHERE status = 'FAILED'",
                    &[],
                    |r| r.try_get::<_, i64>(0).map_err(|e| e.to_string()),
                )
                .await?;
            Ok(n.unwrap_or(0).max(0) as u64)
        })
    }

    fn recipients_by_status<'a>(
        &'a self,
        status: RecipientStatus,
        limit: usize,
    ) -> Read<'a, Vec<Recipient>> {
        Box::pin(async move {
            let limit = limit.min(i64::MAX as usize) as i64;
            self.all(
                "recipients",
                schema::QUERIES.by_status(status),
                &[&limit],
                schema::recipient_from,
            )
            .await
        })
    }

    fn payments_of_notice<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<Payment>> {
        Box::pin(async move {
            self.all(
                "payments",
                &schema::QUERIES.of_notice,
                &[&key.fiscal_code.as_str(), &key.notice_number.as_str()],
                |row| schema::payment_pair(row).map(|(p, _)| p),
            )
            .await
        })
    }

    fn status_history<'a>(&'a self, key: &'a NoticeKey) -> Read<'a, Vec<StatusRow>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            status_history(&client, key).await
        })
    }

    fn commit(&self, writes: Vec<Write>) -> Commit {
        self.request(|done| Job::Commit(writes, done))
    }

    fn journal(&self, rows: Rows) {
        if let Ok(j) = self.inner.journal.lock()
            && let Some(j) = j.as_ref()
        {
            let _ = j.send(JournalMsg::Rows(rows));
        }
    }

    fn query_journal<'a>(&'a self, q: &'a JournalQuery) -> Read<'a, Vec<JournalRow>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            query_journal(&client, q).await
        })
    }

    fn maintenance(&self, r: Retention) -> Read<'_, usize> {
        Box::pin(self.retain(r))
    }

    fn flush(&self) -> Commit {
        let state = self.request(Job::Flush);
        let (tx, rx) = oneshot::channel();
        let sent = self
            .inner
            .journal
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|j| j.send(JournalMsg::Flush(tx)).is_ok()))
            .unwrap_or(false);
        Box::pin(async move {
            state.await?;
            if sent {
                rx.await
                    .unwrap_or_else(|_| Err(StoreError::failed("the journal writer stopped")))?;
            }
            Ok(())
        })
    }

    fn health(&self) -> Read<'_, ()> {
        Box::pin(async move {
            self.one("health", "SELECT 1", &[], |_| Ok(())).await?;
            Ok(())
        })
    }

    fn save_config(&self, v: ConfigVersion) -> Read<'_, u64> {
        Box::pin(async move {
            let mut client = self.inner.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(failed)?;
            // Nodes applying at once are numbered one after the other.
            tx.batch_execute("LOCK TABLE config_versions IN EXCLUSIVE MODE")
                .await
                .map_err(failed)?;
            let row = tx
                .query_one(
                    "INSERT INTO config_versions (version, applied_at, applied_by, toml, file_hash, diff)
                     VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM config_versions), $1, $2, $3, $4, $5)
                     RETURNING version",
                    &[
                        &(v.applied_at as i64),
                        &v.applied_by,
                        &v.toml,
                        &v.file_hash,
                        &v.diff,
                    ],
                )
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn latest_config(&self) -> Read<'_, Option<ConfigVersion>> {
        Box::pin(async move {
            self.one(
                "config_versions",
                "SELECT version, applied_at, applied_by, toml, file_hash, diff
                   FROM config_versions ORDER BY version DESC LIMIT 1",
                &[],
                |r| {
                    let text = |i: usize| r.try_get::<_, String>(i).map_err(|e| e.to_string());
                    let int = |i: usize| r.try_get::<_, i64>(i).map_err(|e| e.to_string());
                    Ok(ConfigVersion {
                        version: int(0)? as u64,
                        applied_at: int(1)? as u64,
                        applied_by: text(2)?,
                        toml: text(3)?,
                        file_hash: text(4)?,
                        diff: text(5)?,
                    })
                },
            )
            .await
        })
    }

    fn latest_config_version(&self) -> Read<'_, u64> {
        Box::pin(async move {
            let n = self
                .one(
                    "config_versions",
                    "SELECT COALESCE(MAX(version), 0) FROM config_versions",
                    &[],
                    |r| r.try_get::<_, i64>(0).map_err(|e| e.to_string()),
                )
                .await?;
            Ok(n.unwrap_or(0).max(0) as u64)
        })
    }

    fn stats(&self) -> StoreStats {
        self.inner.counters.stats()
    }

    fn metrics(&self) -> Option<Arc<crate::metrics::StoreMetrics>> {
        Some(self.inner.counters.metrics.clone())
    }

    fn close(&self) {
        if let Ok(mut j) = self.inner.jobs.lock() {
            j.take();
        }
        if let Ok(mut j) = self.inner.journal.lock() {
            j.take();
        }
        // The writers end when their queues are drained.
        if let Ok(mut t) = self.inner.tasks.lock() {
            t.clear();
        }
        self.inner.pool.close();
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}

impl SharedStore for PgStore {
    fn overdue_payments(&self, before: Millis, limit: usize) -> Read<'_, Vec<(Payment, Notice)>> {
        Box::pin(async move {
            self.all(
                "payments",
                &schema::QUERIES.overdue,
                &[&(before as i64), &(limit as i64)],
                schema::payment_pair,
            )
            .await
        })
    }

    fn claim_receipts(&self, now: Millis, limit: usize) -> Read<'_, Vec<Recipient>> {
        Box::pin(async move {
            let l = self.inner.lease;
            let claimed: Vec<String> = self
                .all(
                    "receipts",
                    CLAIM_RECEIPTS,
                    &[
                        &(l.owner as i64),
                        &((now + l.lease_ms) as i64),
                        &(now as i64),
                        &(limit as i64),
                    ],
                    |row| row.text("receipt_id")?.ok_or_else(|| "receipt_id".into()),
                )
                .await?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            self.all(
                "recipients",
                &schema::QUERIES.recipients_of_many,
                &[&claimed],
                schema::recipient_from,
            )
            .await
        })
    }

    fn take_receipt<'a>(&'a self, receipt_id: &'a str, now: Millis) -> Read<'a, ()> {
        Box::pin(async move {
            let l = self.inner.lease;
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "UPDATE receipts SET lease_owner = $1, lease_until = $2 WHERE receipt_id = $3",
                    &[&(l.owner as i64), &((now + l.lease_ms) as i64), &receipt_id],
                )
                .await
                .map_err(failed)?;
            Ok(())
        })
    }
}
