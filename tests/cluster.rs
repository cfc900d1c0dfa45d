//! Several nodes on one PostgreSQL: any node serves any request, and losing one loses nothing.
//! The nodes are called directly (no load balancer): in this process (the flows across nodes,
//! the races, the database going away) or as child processes killed with SIGKILL (a dead node's
//! receipts and deadlines taken over; the cluster crash test).
//!
//! These tests need PostgreSQL (see `common::pg`): without it they say they were skipped, or
//! fail where it is required (CI). The cluster crash test's length: `PAGONODE_CLUSTER_KILLS`
//! (default 20 kills), `PAGONODE_CRASH_SEED` replays a schedule.

#[path = "crash/checks.rs"]
mod checks;
mod common;
#[path = "crash/lazyfs.rs"]
mod lazyfs;
#[path = "crash/load.rs"]
mod load;
#[path = "crash/node_proc.rs"]
mod node_proc;
#[path = "crash/run.rs"]
mod run;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pagonode::codec::Message;
use pagonode::codec::node_for_psp::{
    ActivatePaymentNoticeRes, SendPaymentOutcomeRes, VerifyPaymentNoticeRes,
};
use pagonode::codec::types::ExpirationTime;
use pagonode::codec::write_envelope;
use pagonode::config::{Config, Database};
use pagonode::server::RunningNode;

use common::*;
use load::{Phase, Prng, Shared};
use node_proc::{Crash, NodeProc, now_ms};

/// Nodes in this process on one database of the test PostgreSQL, in front of one simulated EC.
struct Cluster {
    nodes: Vec<RunningNode>,
    ec: run::Ec,
    database: Database,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

/// A node configuration for the cluster's database (the crash tests': short timeouts and
/// retries), listening where the caller binds.
fn config(database: &Database, ec_url: &str) -> Config {
    let text = run::node_config(database, ec_url, 0);
    let mut c = Config::from_toml_str(&text).unwrap();
    c.node.admin_listen = None;
    c
}

impl Cluster {
    /// `n` nodes, or `None` when PostgreSQL is missing (and not required: the skip is said).
    async fn start(n: usize) -> Option<Cluster> {
        let server = common::pg::server()?;
        let url = server.database().await;
        Some(Cluster::start_on(Database::Postgres(url), n).await)
    }

    async fn start_on(database: Database, n: usize) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        pagonode::install_crypto_provider();
        let ec_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ec = run::Ec::start(ec_port).await;
        let mut c = Cluster {
            nodes: Vec::new(),
            ec,
            database,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        for _ in 0..n {
            c.add_node().await;
        }
        c
    }

    async fn add_node(&mut self) {
        let cfg = config(&self.database, &self.ec.url());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let node = RunningNode::start(cfg, Some(listener), Some(admin))
            .await
            .unwrap();
        self.nodes.push(node);
    }

    /// Sends a request to node `i`: the raw answer (HTTP 200).
    async fn send<M: Message>(&self, i: usize, req: &M) -> String {
        let resp = self
            .http
            .post(self.nodes[i].url())
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", M::OPERATION.soap_action())
            .body(write_envelope(req))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.unwrap()
    }

    /// The body of `GET path` on node `i`'s admin listener.
    async fn admin(&self, i: usize, path: &str) -> String {
        let url = format!("{}{path}", self.nodes[i].admin_url().unwrap());
        let resp = self.http.get(url).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// A notice's story from node `i`'s admin API.
    async fn story(&self, i: usize, nn: &str) -> serde_json::Value {
        serde_json::from_str(&self.admin(i, &format!("/admin/payments/{EC}/{nn}")).await).unwrap()
    }

    /// Waits (20 s at most) until the simulated EC holds a copy of receipt `token`.
    async fn receipt_delivered(&self, token: &str) {
        eventually(20, "the receipt at the EC", || async {
            self.ec
                .mock
                .receipts()
                .iter()
                .any(|r| r.receipt_id == token)
                .then_some(())
        })
        .await;
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
        let mut ec = self.ec;
        if let Some(s) = ec.server.take() {
            s.stop().await;
        }
    }
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// TLS to PostgreSQL as the URL's `sslmode` asks (the server's certificate is self-signed):
/// `verify-full` with `sslrootcert` naming it connects encrypted, without `sslrootcert` (the
/// public web roots) it refuses the server; `require` encrypts without checking; `disable`
/// connects in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_to_postgresql_as_sslmode_asks() {
    if common::pg::server().is_none() {
        return;
    }
    let server = common::pg::Postgres::start_tls().unwrap();
    let plain = server.database().await;
    let (client, conn) = tokio_postgres::connect(&plain, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let base = plain.split_once('?').unwrap().0;
    let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/cert.pem");
    // Whether the store's connections to the URL with `query` are encrypted.
    let encrypted = async |query: &str, app: &str| -> Result<bool, String> {
        let url = format!("{base}?{query}&application_name={app}");
        let store = pagonode::store::open(
            &Database::Postgres(url),
            pagonode::store::StoreOptions { lease_ms: 1000 },
        )
        .await
        .map_err(|e| e.to_string())?;
        store.health().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                  WHERE a.application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        store.close();
        Ok(row
            .get::<_, Option<bool>>(0)
            .expect("the store's connections"))
    };
    let verified = format!("sslmode=verify-full&sslrootcert={cert}");
    assert_eq!(encrypted(&verified, "verified").await, Ok(true));
    let refused = encrypted("sslmode=verify-full", "unknown_ca").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(encrypted("sslmode=require", "required").await, Ok(true));
    assert_eq!(encrypted("sslmode=disable", "clear").await, Ok(false));
    drop(client);
    let _ = task.await;
    server.stop();
}

/// Nodes starting together on an empty database: one applies the migrations (under the
/// advisory lock), the others wait and find the schema up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_starting_together_migrate_the_schema_once() {
    let Some(server) = common::pg::server() else {
        return;
    };
    let url = server.database().await;
    let database = Database::Postgres(url.clone());
    let options = pagonode::store::StoreOptions { lease_ms: 1000 };
    let opened =
        futures_util::future::join_all((0..3).map(|_| pagonode::store::open(&database, options)))
            .await;
    for store in opened {
        store.expect("a node starting with the others").close();
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let versions: Vec<i64> = client
        .query(
            "SELECT version::BIGINT FROM pagonode_schema ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, expected, "each migration applied once");
    drop(client);
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_activated_on_one_node_completes_on_the_other() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let nn = notice("02", "00");
    let act = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let first = c.send(0, &act).await;
    let token = token_of(&first);
    // B knows the payment A started: the notice is being paid, and a replay gets A's bytes.
    expect_fault::<VerifyPaymentNoticeRes>(
        &c.send(1, &verify(&PSP1, EC, &nn)).await,
        "PPT_PAGAMENTO_IN_CORSO",
    );
    assert_eq!(c.send(1, &act).await, first);
    let spo = outcome(&PSP1, &token, true, Some(&key(&PSP1)));
    let answer = c.send(1, &spo).await;
    ok::<SendPaymentOutcomeRes>(&answer);
    assert_eq!(c.send(0, &spo).await, answer, "the outcome replayed on A");
    c.receipt_delivered(&token).await;
    // Either node's admin API tells the whole story: A's activation, B's outcome (the
    // exchanges are journaled in batches, a few milliseconds later).
    for i in 0..2 {
        eventually(5, "the whole story", || async {
            let text = c.story(i, &nn).await.to_string();
            (text.contains("activatePaymentNotice") && text.contains("sendPaymentOutcome"))
                .then_some(())
        })
        .await;
    }
    c.stop().await;
}

/// The journal of every node, listed in time order from PostgreSQL: pages continued with
/// `next_after` give the one listing; `/metrics` reads the store's counts from PostgreSQL too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_journal_pages_in_time_order_and_metrics_read_the_database() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let nn = notice("02", "00");
    let first = c
        .send(0, &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))))
        .await;
    let token = token_of(&first);
    ok::<SendPaymentOutcomeRes>(
        &c.send(1, &outcome(&PSP1, &token, true, Some(&key(&PSP1))))
            .await,
    );
    c.receipt_delivered(&token).await;
    let all = eventually(10, "the same rows paged", || async {
        let v: serde_json::Value =
            serde_json::from_str(&c.admin(1, &format!("/admin/journal?notice={nn}")).await)
                .unwrap();
        let all = v["entries"].as_array().unwrap().clone();
        let mut paged: Vec<serde_json::Value> = Vec::new();
        let mut after = String::new();
        loop {
            let v: serde_json::Value = serde_json::from_str(
                &c.admin(0, &format!("/admin/journal?notice={nn}&limit=2{after}"))
                    .await,
            )
            .unwrap();
            paged.extend(v["entries"].as_array().unwrap().iter().cloned());
            match v["next_after"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
            assert!(paged.len() <= all.len() + 10, "pages never end: {paged:?}");
        }
        (paged == all).then_some(all)
    })
    .await;
    let text = serde_json::Value::from(all.clone()).to_string();
    assert!(
        text.contains("activatePaymentNotice") && text.contains("sendPaymentOutcome"),
        "{text}"
    );
    let times: Vec<&str> = all
        .iter()
        .map(|r| r["dataOraEvento"].as_str().unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");

    // Node 0's journal writer counts its bytes once its batch is written.
    let metrics = eventually(5, "the journal's bytes counted", || async {
        let text = c.admin(0, "/metrics").await;
        (sample(&text, "pagonode_journal_bytes_total")? > 0.0).then_some(text)
    })
    .await;
    assert_eq!(
        sample(&metrics, "pagonode_receipt_copies_failed"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "pagonode_store_transaction_seconds_count").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_activations_of_one_notice_on_two_nodes_give_one_token() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let c = Arc::new(c);
    for _ in 0..10 {
        let nn = notice("02", "00");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (c, nn) = (c.clone(), nn.clone());
            tasks.push(tokio::spawn(async move {
                let req = activate_v2(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
                c.send(i % 2, &req).await
            }));
        }
        let mut tokens = Vec::new();
        for t in tasks {
            let body = t.await.unwrap();
            match fault_code(&body) {
                None => tokens.push(element(&body, "paymentToken").unwrap().to_string()),
                Some(code) => assert_eq!(code, "PPT_PAGAMENTO_IN_CORSO", "{body}"),
            }
        }
        assert_eq!(tokens.len(), 1, "tokens: {tokens:?}");
    }
    Arc::into_inner(c).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_request_sent_to_both_nodes_at_once_gets_one_answer() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let c = Arc::new(c);
    for _ in 0..10 {
        let nn = notice("02", "00");
        let act = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
        let (a, b) = tokio::join!(c.send(0, &act), c.send(1, &act));
        let winner = [&a, &b]
            .into_iter()
            .find(|x| fault_code(x).is_none())
            .unwrap_or_else(|| panic!("no token:\n{a}\n{b}"));
        for x in [&a, &b] {
            assert!(
                x == winner || fault_code(x).as_deref() == Some("PPT_PAGAMENTO_IN_CORSO"),
                "{x}"
            );
        }
        // Later replays on either node: the token.
        assert_eq!(&c.send(1, &act).await, winner);
        assert_eq!(&c.send(0, &act).await, winner);
        let token = token_of(winner);
        let spo = outcome(&PSP1, &token, true, Some(&key(&PSP1)));
        let (a, b) = tokio::join!(c.send(0, &spo), c.send(1, &spo));
        assert_eq!(a, b, "one outcome, one answer");
        ok::<SendPaymentOutcomeRes>(&a);
    }
    Arc::into_inner(c).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outcome_on_the_other_node_after_the_deadline_gets_the_late_rules() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    // Activated on A with a one-second lifetime; the outcome comes to B after it.
    let nn = notice("02", "00");
    let mut act = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    act.expiration_time = Some(ExpirationTime::from_millis(1000).unwrap());
    let token = token_of(&c.send(0, &act).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = c
        .send(1, &outcome(&PSP1, &token, true, Some(&key(&PSP1))))
        .await;
    expect_fault::<SendPaymentOutcomeRes>(&late, "PPT_TOKEN_SCADUTO");
    // Accepted all the same (the money was taken, nobody else is paying): the receipt goes out,
    // and the deadline fired exactly once, on one node.
    c.receipt_delivered(&token).await;
    let story = c.story(1, &nn).await.to_string();
    assert_eq!(story.matches("\"EXPIRED\"").count(), 1, "{story}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_receipts_and_deadlines_are_taken_over() {
    let Some(server) = common::pg::server() else {
        return;
    };
    let database = Database::Postgres(server.database().await);
    let mut c = Cluster::start_on(database.clone(), 1).await;
    let ports = run::free_ports(&mut Prng::new(now_ms()), 1);
    // A's configuration names a SQLite file; PAGONODE_DATABASE_URL puts it on the cluster's
    // database (where the URL and its password live in operation).
    let cfg = c.dir.path().join("a.toml");
    let unused = c.dir.path().join("a.db");
    let file_db = Database::Sqlite(unused.clone());
    std::fs::write(&cfg, run::node_config(&file_db, &c.ec.url(), ports[0])).unwrap();
    let mut a = NodeProc::new(env!("CARGO_BIN_EXE_pagonode"), &cfg, c.dir.path(), ports[0]);
    let Database::Postgres(url) = &database else {
        unreachable!("the cluster's database is PostgreSQL")
    };
    a.env(pagonode::config::DATABASE_ENV, url);
    a.start("").await.unwrap();
    let a_url = format!("http://127.0.0.1:{}/node-for-psp/v1", ports[0]);
    let on_a = async |body: String, action: &str| {
        c.http
            .post(&a_url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", action)
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // On A: a payment whose receipt cannot be delivered (the EC is down), and an activation
    // whose deadline passes while A is dead.
    let nn = notice("02", "12");
    let act = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let token = token_of(&on_a(write_envelope(&act), "activatePaymentNotice").await);
    let abandoned = notice("02", "00");
    let mut act2 = activate(&PSP2, EC, &abandoned, 1000, Some(&key(&PSP2)));
    act2.expiration_time = Some(ExpirationTime::from_millis(1500).unwrap());
    token_of(&on_a(write_envelope(&act2), "activatePaymentNotice").await);
    assert!(
        !unused.exists(),
        "the node opened its configuration's SQLite file"
    );
    c.ec.begin(Phase::Down).await;
    let spo = outcome(&PSP1, &token, true, Some(&key(&PSP1)));
    ok::<SendPaymentOutcomeRes>(&on_a(write_envelope(&spo), "sendPaymentOutcome").await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.ec.mock.receipts().is_empty());
    a.kill9().await;
    c.ec.end(Phase::Down).await;
    // B delivers both copies (the Comune's and the Regione's), once A's lease has expired.
    let started = Instant::now();
    let receipts = eventually(30, "the dead node's receipts", || async {
        let r: Vec<_> =
            c.ec.mock
                .receipts()
                .into_iter()
                .filter(|r| r.receipt_id == token)
                .collect();
        (r.len() >= 2).then_some(r)
    })
    .await;
    eprintln!(
        "taken over: receipts delivered {} ms after the kill",
        started.elapsed().as_millis()
    );
    let stations: std::collections::BTreeSet<_> =
        receipts.iter().map(|r| r.station.clone()).collect();
    assert_eq!(stations.len(), 2, "{receipts:?}");
    // The abandoned deadline fired on B: the notice is payable again there.
    let again = eventually(30, "the dead node's deadline", || async {
        let body = c
            .send(0, &activate(&PSP1, EC, &abandoned, 1000, Some(&key(&PSP1))))
            .await;
        fault_code(&body).is_none().then_some(body)
    })
    .await;
    token_of(&again);
    let story = c.story(0, &abandoned).await.to_string();
    assert_eq!(story.matches("\"EXPIRED\"").count(), 1, "{story}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_going_away_gets_system_errors_and_loses_nothing() {
    if common::pg::server().is_none() {
        return;
    }
    // A server of its own: this test stops it.
    let server = common::pg::Postgres::start().unwrap();
    let database = Database::Postgres(server.database().await);
    let c = Cluster::start_on(database, 1).await;
    let nn = notice("02", "00");
    let token = token_of(
        &c.send(0, &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))))
            .await,
    );
    server.stop();
    let started = Instant::now();
    let refused = c
        .send(
            0,
            &activate(&PSP1, EC, &notice("02", "00"), 1000, Some(&key(&PSP1))),
        )
        .await;
    expect_fault::<ActivatePaymentNoticeRes>(&refused, "PPT_SYSTEM_ERROR");
    let spo = outcome(&PSP1, &token, true, Some(&key(&PSP1)));
    expect_fault::<SendPaymentOutcomeRes>(&c.send(0, &spo).await, "PPT_SYSTEM_ERROR");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered within bounded time"
    );
    server.restart();
    // The node reconnects by itself; the payment acknowledged before is still there.
    let answer = eventually(30, "the node back on its database", || async {
        let body = c.send(0, &spo).await;
        (fault_code(&body).as_deref() != Some("PPT_SYSTEM_ERROR")).then_some(body)
    })
    .await;
    ok::<SendPaymentOutcomeRes>(&answer);
    c.receipt_delivered(&token).await;
    c.stop().await;
    server.stop();
}

/// The cluster crash test: three nodes (child processes) under load on one PostgreSQL, one of
/// them killed with SIGKILL every second or two and restarted, the PSP side sending each request
/// to any node (a request whose connection died goes again, same key, to the next one). Then the
/// same checks as the single node's crash test: nothing acknowledged lost, no double token, no
/// early or double expiry, every receipt copy delivered with the stored bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_killed_in_turn_under_load_lose_nothing() {
    let Some(server) = common::pg::server() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_test_writer()
        .try_init();
    pagonode::install_crypto_provider();
    let s = run::settings(run::Disruption::Kill);
    let kills = std::env::var("PAGONODE_CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize);
    eprintln!(
        "cluster crash test: {kills} kills of 3 nodes, {} workers, seed {}",
        s.workers, s.seed
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ports = run::free_ports(&mut Prng::new(s.seed ^ u64::from(std::process::id())), 4);
    let mut ec = run::Ec::start(ports[3]).await;
    let url = server.database().await;
    let database = Database::Postgres(url.clone());
    let source = checks::Source::Postgres(url);
    let mut nodes = Vec::new();
    for (i, &port) in ports[..3].iter().enumerate() {
        let home = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&home).unwrap();
        let cfg = home.join("node.toml");
        std::fs::write(&cfg, run::node_config(&database, &ec.url(), port)).unwrap();
        let mut n = NodeProc::new(env!("CARGO_BIN_EXE_pagonode"), &cfg, &home, port);
        n.start("").await.unwrap_or_else(|e| panic!("{e}"));
        nodes.push(n);
    }
    let shared = Arc::new(Shared::new(&ports[..3]));
    let mut workers = Vec::new();
    for w in 0..s.workers {
        workers.push(tokio::spawn(load::worker(
            shared.clone(),
            s.seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9),
        )));
    }
    let mut rng = Prng::new(s.seed);
    let mut crashes: Vec<Crash> = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
        shared.deadline_probe(&mut rng).await;
        let i = rng.range(0, 3) as usize;
        let killed_at = nodes[i].kill9().await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 500))).await;
        let (spawned_at, up_at) = nodes[i].start("").await.unwrap_or_else(|e| panic!("{e}"));
        crashes.push(Crash {
            killed_at,
            spawned_at,
            up_at,
            power_cut: false,
        });
    }
    tokio::time::sleep(Duration::from_millis(rng.range(200, 600))).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a PSP worker panicked");
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        assert!(n.alive(), "node {i} died by itself");
    }

    // Every abandoned deadline passes (on whichever node), then the notices are paid again.
    let abandoned: Vec<load::Activation> = shared
        .ledger()
        .activations
        .iter()
        .filter(|a| a.kind == load::Kind::Abandoned)
        .cloned()
        .collect();
    let latest = abandoned
        .iter()
        .map(|a| a.acked_at + a.expiration_ms.unwrap_or(0))
        .max()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(latest.saturating_sub(now_ms()) + 300)).await;
    let mut violations = Vec::new();
    let mut drained = |r: Result<(), String>| {
        if let Err(e) = r {
            violations.push(e);
        }
    };
    drained(run::drain(&source, 30).await);
    for a in &abandoned {
        shared.reactivate(&mut rng, a).await;
    }
    drained(run::drain(&source, 60).await);

    let db = checks::Db::read(&source).unwrap_or_else(|e| panic!("reading the database: {e}"));
    let mock_receipts = ec.mock.receipts();
    let (report, journal) = {
        let ledger = shared.ledger();
        (
            checks::check(&db, &ledger, &crashes, &[], &mock_receipts, true),
            checks::journal(&database, &ledger, &crashes),
        )
    };
    let summary = format!(
        "cluster crash test: {} kills of 3 nodes, {} payments acknowledged, {} completed, {} receipt copies delivered, {} lost, {} conflicting bodies, {} early/double expiries, {} deadlines pending at a kill fired ({:.1} s)",
        crashes.len(),
        report.acknowledged,
        report.completed,
        report.copies_delivered,
        report.lost,
        report.conflicts,
        report.bad_expiries,
        report.pending_fired,
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    println!("{}", journal.summary);
    violations.extend(report.violations);
    violations.extend(journal.violations);
    if report.acknowledged == 0 {
        violations.push("no payment was acknowledged: the load did not run".into());
    }
    if report.pending_fired == 0 {
        violations.push("no deadline was pending at a kill: nothing proved about deadlines".into());
    }
    if !violations.is_empty() {
        let kept = dir.keep();
        panic!(
            "{summary}\n{} violations (seed {}; logs kept in {}):\n{}",
            violations.len(),
            s.seed,
            kept.display(),
            violations
                .iter()
                .take(60)
                .map(|v| format!("  - {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for n in &mut nodes {
        n.kill9().await;
    }
    if let Some(s) = ec.server.take() {
        s.stop().await;
    }
}
