//! The payment path in process: what one activate+outcome pair costs the node without HTTP, so
//! that a regression shows without a load run.
//!
//! Each pair is the load generator's (`pagonode loadgen`, the same request builders): an
//! activatePaymentNotice on a fresh notice of the simulated EC, then sendPaymentOutcome OK for
//! the token it got, both handed as SOAP bytes to [`Node::handle_soap`] (codec, registry checks,
//! engine, store commit, reply). The node calls the simulated EC ([`MockEc::answer`]) in process
//! for paGetPaymentV2 and, from its driver, paSendRTV2: a batch of pairs ends once every receipt
//! is delivered, so the delivery's commits count too. Logging is off (no subscriber).
//!
//! Groups, one per store: `sqlite` (a fresh database in a temporary directory, as the node opens
//! it: WAL, `synchronous=FULL`, journal on) and `memory` (commits applied at once: what the path
//! costs above the disk). Each with 1 pair in flight (a pair's latency) and 32 (the load
//! generator's concurrency: group commit shares fsyncs). Criterion's time is per pair
//! (throughput in pairs/s), on a tokio runtime of two workers, as on the CI's 2-core machine.
//!
//! `cargo bench --bench payment_path` (about a minute); `-- --quick` for a short run;
//! `-- sqlite` for one group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use pagonode::clock::SystemClock;
use pagonode::codec::{AnyMessage, Body, Limits, Message, read_any, write_envelope};
use pagonode::config::{Config, Database, EXAMPLE};
use pagonode::ec_client::{Answer, EcTransport, Post, Posted};
use pagonode::loadgen::{activate_request, outcome_request, pair_key};
use pagonode::mock_ec::{MockEc, MockEcConfig};
use pagonode::node::{Node, TokenIssuer};
use pagonode::registry::Registry;
use pagonode::store::{Durability, MemoryStore, SqliteStore, Store};

/// The simulated EC of the example configuration, answering in process.
struct InProcessEc(MockEc);

impl EcTransport for InProcessEc {
    fn post<'a>(&'a self, request: Post<'a>) -> Posted<'a> {
        Box::pin(async move {
            // The station's path, as the EC's HTTP server would see it.
            let path = request.url.find("/pa/").map_or("/", |i| &request.url[i..]);
            let (status, body) = self
                .0
                .answer(path, Some(request.soap_action), request.body.as_bytes())
                .await;
            Ok(Answer {
                status,
                body: body.into_bytes(),
            })
        })
    }
}

/// A node over `store`, recovered, its driver (receipt deliveries) running on the current
/// runtime.
async fn node(config: Config, store: Arc<dyn Store>) -> Arc<Node> {
    let ec = MockEc::new(MockEcConfig::from_toml_str(EXAMPLE).expect("example mock EC"));
    let node = Arc::new(Node::new(
        Arc::new(Registry::new(config)),
        store,
        Arc::new(InProcessEc(ec)),
        Arc::new(SystemClock),
        TokenIssuer::random(),
    ));
    node.recover().await.expect("recovery of a fresh store");
    tokio::spawn(pagonode::node::driver::run(node.clone()));
    node
}

/// Hands `req` to the node as its HTTP layer would, and reads the answer, which must be OK.
async fn call<M: Message>(node: &Node, req: &M) -> AnyMessage {
    let body = write_envelope(req);
    let reply = node
        .handle_soap(
            Some(M::OPERATION.soap_action()),
            None,
            body.as_bytes(),
            false,
        )
        .await;
    match read_any(reply.body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) if reply.status == 200 && reply.fault.is_none() => m,
        _ => panic!("{:?} refused: {}", M::OPERATION, reply.body),
    }
}

/// Pair `n`: activate, then the outcome OK for its token.
async fn pair(node: &Node, n: u64) {
    let (notice, key) = pair_key(RUN, n);
    let activate = activate_request("77777777777".into(), notice, key.clone()).expect("request");
    let AnyMessage::ActivatePaymentNoticeRes(res) = call(node, &activate).await else {
        panic!("not an activatePaymentNoticeRes");
    };
    let token = res.payment_token.expect("an OK activation has a token");
    let today = chrono::Utc::now().date_naive();
    let outcome = outcome_request(key, token, today).expect("request");
    call(node, &outcome).await;
}

/// Any number: each node has its own store and simulated EC.
const RUN: u64 = 4242;

/// Runs `pairs` pairs, `in_flight` at a time, then waits until every receipt is delivered;
/// returns how long it all took.
async fn batch(node: &Arc<Node>, seq: &AtomicU64, pairs: u64, in_flight: usize) -> Duration {
    let started = Instant::now();
    let first = seq.load(Ordering::Relaxed);
    let end = first + pairs;
    let next = Arc::new(AtomicU64::new(first));
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (node, next) = (node.clone(), next.clone());
        users.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return;
                }
                pair(&node, n).await;
            }
        });
    }
    while let Some(done) = users.join_next().await {
        done.expect("a pair failed");
    }
    seq.store(end, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.health().await.engine.3 > 0 {
        assert!(Instant::now() < deadline, "receipts not delivered in 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

fn payment_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    for store in ["sqlite", "memory"] {
        let mut group = c.benchmark_group(format!("payment_path/{store}"));
        group.throughput(Throughput::Elements(1));
        for in_flight in [1, 32] {
            // A fresh node and store per case: one case's backlog never slows the next.
            let mut config = Config::from_toml_str(EXAMPLE).expect("example configuration");
            let db = dir.path().join(format!("{store}-{in_flight}.db"));
            config.node.database = Database::Sqlite(db.clone());
            let node = rt.block_on(async {
                let store: Arc<dyn Store> = match store {
                    "sqlite" => Arc::new(SqliteStore::open(&db).expect("SQLite store")),
                    _ => Arc::new(MemoryStore::new(Durability::Immediate)),
                };
                node(config, store).await
            });
            let seq = AtomicU64::new(0);
            group.bench_function(BenchmarkId::new("pairs in flight", in_flight), |b| {
                b.iter_custom(|pairs| rt.block_on(batch(&node, &seq, pairs, in_flight)))
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
}

criterion_group! {
    name = benches;
    config = config();
    targets = payment_path
}
criterion_main!(benches);
