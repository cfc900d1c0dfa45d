//! The configuration changed while the node runs, over real HTTP: through the admin API (a
//! whole document, a merge patch, `/config/refresh`), SIGHUP on a node process, and on two
//! nodes sharing a PostgreSQL. Each change reaches the next request (on the same connection),
//! a payment keeps what it was activated with, a refused document changes nothing, and the
//! applied version survives a restart.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use pagonode::codec::node_for_psp::{
    ActivatePaymentNoticeRes, SendPaymentOutcomeRes, VerifyPaymentNoticeRes,
};
use pagonode::codec::{Message, write_envelope};
use pagonode::config::{Config, Database};
use pagonode::mock_ec::{ScriptAction, ScriptRule};
use pagonode::server::RunningNode;
use serde_json::{Value, json};

/// The admin token the tests apply configurations with: its id names them in the history.
const ALICE: &str = "alice-runtime-config-token";

fn with_alice(c: &mut Config) {
    c.node.admin_tokens.insert("alice".into(), ALICE.into());
}

/// Calls the admin listener at `base` as alice: (status, body).
async fn admin(method: &str, base: &str, path: &str, body: Option<String>) -> (u16, String) {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(ALICE);
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn admin_json(method: &str, base: &str, path: &str, body: Option<String>) -> (u16, Value) {
    let (status, text) = admin(method, base, path, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// `PATCH /admin/config`: must be applied; returns the version in force.
async fn patch(base: &str, p: Value) -> u64 {
    let (status, v) = admin_json("PATCH", base, "/admin/config", Some(p.to_string())).await;
    assert_eq!(status, 200, "{v}");
    v["version"].as_u64().unwrap()
}

/// The running configuration's version, from `GET /admin/config`, and the document.
async fn running(base: &str) -> (u64, String) {
    let (status, text) = admin("GET", base, "/admin/config", None).await;
    assert_eq!(status, 200, "{text}");
    let version = text
        .strip_prefix("# configuration version ")
        .and_then(|t| t.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text}"));
    (version, text)
}

/// One HTTP/1.1 connection kept alive across requests.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(url: &str) -> Connection {
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// Sends a SOAP request and reads its answer; the connection must stay open.
    fn send<M: Message>(&mut self, req: &M) -> String {
        let body = write_envelope(req);
        let head = format!(
            "POST /node-for-psp/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: {}\r\nContent-Length: {}\r\n\r\n",
            M::OPERATION.soap_action(),
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            assert!(
                !(name.eq_ignore_ascii_case("connection") && value.trim() == "close"),
                "the node closed the connection"
            );
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
        }
        let mut body = vec![0; length.expect("a Content-Length")];
        self.reader.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_psp_disabled_at_runtime_is_refused_on_the_same_connection() {
    let h = Harness::start_admin(with_alice).await;
    let base = h.admin_url();
    let (before, _) = running(&base).await;
    let nn = notice("02", "00");
    let url = h.url();
    let mut conn = Connection::open(&url);
    let verify_req = verify(&PSP1, EC, &nn);
    let first = tokio::task::block_in_place(|| conn.send(&verify_req));
    ok::<VerifyPaymentNoticeRes>(&first);

    let version = patch(&base, json!({ "psp": { PSP1.id: { "enabled": false } } })).await;
    assert_eq!(version, before + 1);
    let refused = tokio::task::block_in_place(|| conn.send(&verify_req));
    expect_fault::<VerifyPaymentNoticeRes>(&refused, "PPT_PSP_DISABILITATO");

    let again = patch(&base, json!({ "psp": { PSP1.id: { "enabled": true } } })).await;
    assert_eq!(again, before + 2);
    let served = tokio::task::block_in_place(|| conn.send(&verify_req));
    ok::<VerifyPaymentNoticeRes>(&served);

    // Visible: the metrics gauge, and the journal's record of who changed what.
    let (_, metrics) = admin("GET", &base, "/metrics", None).await;
    assert!(
        metrics.contains(&format!("pagonode_config_version {}", before + 2)),
        "{metrics}"
    );
    let (status, live) = admin("GET", &base, "/console/live", None).await;
    assert_eq!(status, 200, "{live}");
    assert!(
        live.contains(&format!("v{}", before + 2)) && live.contains("applied by alice"),
        "{live}"
    );
    // (The journal is written in the background.)
    let applied = format!("configuration version {} applied by alice", before + 1);
    let disabled = format!("~ psp.{}.enabled: true -> false", PSP1.id);
    eventually(10, "the journal's record of the change", || async {
        let (status, page) =
            admin_json("GET", &base, "/admin/journal?primitive=configApplied", None).await;
        assert_eq!(status, 200, "{page}");
        page["entries"]
            .as_array()?
            .iter()
            .filter_map(|e| e["dettaglio"].as_str())
            .any(|d| d.contains(&applied) && d.contains(&disabled))
            .then_some(())
    })
    .await;
    h.stop().await;
}

/// Pays a notice of scenario 12 (the Comune's, with a transfer to the Regione, whose station
/// 88888888888_01 is linked with the broadcast flag) and returns the stations its receipt
/// reached, once every copy is acknowledged.
async fn copies_after_payment(h: &Harness, base: &str) -> Vec<String> {
    let nn = notice("02", "12");
    let token = activate_ok(h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    eventually(15, "the payment NOTIFIED", || async {
        let (_, story) = admin_json("GET", base, &format!("/admin/payments/{EC}/{nn}"), None).await;
        let notified = story["attempts"]
            .as_array()?
            .iter()
            .any(|a| a["paymentToken"] == token.as_str() && a["status"] == "NOTIFIED");
        notified.then_some(())
    })
    .await;
    let mut stations: Vec<String> =
        h.ec.receipts()
            .into_iter()
            .filter(|r| r.receipt_id == token)
            .map(|r| r.station)
            .collect();
    stations.sort();
    stations
}

#[tokio::test]
async fn a_broadcast_flag_flipped_at_runtime_changes_the_next_fan_out() {
    let h = Harness::start_admin(with_alice).await;
    let base = h.admin_url();
    assert_eq!(
        copies_after_payment(&h, &base).await,
        ["77777777777_01", "88888888888_01"]
    );
    patch(
        &base,
        json!({ "station_link": { "88888888888:3:02": { "broadcast": false } } }),
    )
    .await;
    assert_eq!(copies_after_payment(&h, &base).await, ["77777777777_01"]);
    patch(
        &base,
        json!({ "station_link": { "88888888888:3:02": { "broadcast": true } } }),
    )
    .await;
    assert_eq!(
        copies_after_payment(&h, &base).await,
        ["77777777777_01", "88888888888_01"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_finishes_under_the_configuration_it_started_with() {
    let h = Harness::start_admin(with_alice).await;
    let base = h.admin_url();
    let nn = notice("02", "00");
    h.ec.add_script(
        ScriptRule::new("paGetPaymentV2", ScriptAction::Delay)
            .for_notice(&nn)
            .with_delay_ms(1_000),
    )
    .unwrap();
    let in_flight = {
        let (url, req) = (h.url(), activate(&PSP1, EC, &nn, 1000, None));
        tokio::spawn(async move { send_to(&reqwest::Client::new(), &url, &req).await })
    };
    eventually(10, "the station asked for the payment data", || async {
        h.ec.requests()
            .iter()
            .any(|r| {
                r.operation.as_deref() == Some("paGetPaymentV2")
                    && r.notice_number.as_deref() == Some(nn.as_str())
            })
            .then_some(())
    })
    .await;
    // The Comune's IBAN is no longer registered: a transfer to it is refused from now on.
    patch(
        &base,
        json!({ "ec": { EC: { "ibans": ["IT02A0301503200000003517230"] } } }),
    )
    .await;
    let activated = in_flight.await.unwrap();
    ok::<ActivatePaymentNoticeRes>(&activated);
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP1, EC, &notice("02", "00"), 1000, None),
        "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE",
    )
    .await;
    h.stop().await;
}

/// The time between a payment's activation and its deadline, from the admin story.
async fn lifetime_ms(base: &str, nn: &str, token: &str) -> i64 {
    let (_, story) = admin_json("GET", base, &format!("/admin/payments/{EC}/{nn}"), None).await;
    let p = story["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["paymentToken"] == token)
        .unwrap_or_else(|| panic!("{story}"))
        .clone();
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(p[k].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{k}: {e}: {p}"))
            .timestamp_millis()
    };
    at("deadline") - at("activatedAt")
}

#[tokio::test]
async fn a_shorter_token_lifetime_reaches_the_next_activation_only() {
    let h = Harness::start_admin(with_alice).await;
    let base = h.admin_url();
    let early = notice("02", "00");
    let early_token = activate_ok(&h, &PSP1, EC, &early).await;
    assert_eq!(lifetime_ms(&base, &early, &early_token).await, 1_800_000);

    patch(&base, json!({ "timings": { "token_default_ms": 60_000 } })).await;
    let late = notice("02", "00");
    let late_token = activate_ok(&h, &PSP1, EC, &late).await;
    assert_eq!(lifetime_ms(&base, &late, &late_token).await, 60_000);
    // The earlier payment keeps its own deadline, and completes under it.
    assert_eq!(lifetime_ms(&base, &early, &early_token).await, 1_800_000);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &early_token, true, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn a_refused_configuration_names_its_key_and_line_and_changes_nothing() {
    let h = Harness::start_admin(with_alice).await;
    let base = h.admin_url();
    let (version, shown) = running(&base).await;

    // The shown document, sent back as it is (secrets redacted): identical, no new version.
    let (status, v) = admin_json("POST", &base, "/admin/config", Some(shown.clone())).await;
    assert_eq!((status, v["changed"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(v["version"].as_u64(), Some(version));

    let line_of =
        |doc: &str, needle: &str| doc.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases = [
        (
            "a value out of range",
            shown.replacen("token_max_ms = 1800000", "token_max_ms = 0", 1),
            "token_max_ms = 0",
            "timings.token_max_ms",
        ),
        (
            "a syntax error",
            shown.replacen("token_max_ms = 1800000", "token_max_ms = = 3", 1),
            "token_max_ms = = 3",
            "timings",
        ),
        (
            "a key read at start only",
            shown.replacen(
                "max_body_bytes = 65536",
                "max_body_bytes = 65536\nworkers = 77",
                1,
            ),
            "workers = 77",
            "node.workers",
        ),
        (
            "a channel naming an unknown broker",
            shown.replacen("broker = \"60000000002\"", "broker = \"60000000077\"", 1),
            "broker = \"60000000077\"",
            "channel[3].broker",
        ),
    ];
    for (what, doc, needle, key) in cases {
        let (status, v) = admin_json("POST", &base, "/admin/config", Some(doc.clone())).await;
        assert_eq!(status, 400, "{what}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(v["key"].as_str().unwrap().starts_with(key), "{what}: {v}");
        let line = line_of(&doc, needle);
        assert!(
            error.contains(&format!("line {line})")),
            "{what}: line {line}: {error}"
        );
    }
    // A patch is checked the same way.
    let (status, v) = admin_json(
        "PATCH",
        &base,
        "/admin/config",
        Some(json!({ "timings": { "token_default_ms": 0 } }).to_string()),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["key"], "timings.token_default_ms");
    let (status, v) = admin_json(
        "PATCH",
        &base,
        "/admin/config",
        Some(json!({ "node": { "listen": "127.0.0.1:1" } }).to_string()),
    )
    .await;
    assert_eq!(
        (status, v["key"].as_str()),
        (400, Some("node.listen")),
        "{v}"
    );

    for not_a_patch in ["[1]", "{\"psp\":"] {
        let (status, v) =
            admin_json("PATCH", &base, "/admin/config", Some(not_a_patch.into())).await;
        assert_eq!(status, 400, "{not_a_patch}: {v}");
    }

    // Nothing changed.
    assert_eq!(running(&base).await, (version, shown));
    let token = activate_ok(&h, &PSP1, EC, &notice("02", "00")).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn get_config_redacts_every_secret() {
    let h = Harness::start_admin(|c| {
        with_alice(c);
        c.node.admin_token = Some("the-default-admin-token".into());
        c.psp_broker[0].subscription_keys = vec!["subscription-key-0123456789".into()];
    })
    .await;
    let (status, text) = admin("GET", &h.admin_url(), "/admin/config", None).await;
    assert_eq!(status, 200, "{text}");
    for secret in [
        "pwdpwdpwd",
        "secondpwd2",
        ALICE,
        "the-default-admin-token",
        "subscription-key-0123456789",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert!(text.contains("alice = \"********\""), "{text}");
    assert!(text.contains("password = \"********\""), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn the_applied_version_survives_a_restart_until_the_file_changes() {
    let mut h = Harness::start_admin(with_alice).await;
    let version = patch(
        &h.admin_url(),
        json!({ "psp": { PSP2.id: { "enabled": false } } }),
    )
    .await;
    h.restart().await;
    let (after, text) = running(&h.admin_url()).await;
    assert_eq!(after, version, "{text}");
    h.refused::<_, VerifyPaymentNoticeRes>(
        &verify(&PSP2, EC, &notice("02", "00")),
        "PPT_PSP_DISABILITATO",
    )
    .await;

    // The node started with another configuration (its file changed): the file wins, as a new
    // version, and the runtime change is gone.
    h.config.timings.token_default_ms = 90_000;
    h.restart().await;
    let (after, text) = running(&h.admin_url()).await;
    assert_eq!(after, version + 1, "{text}");
    assert!(text.contains("applied by file"), "{text}");
    assert!(text.contains("token_default_ms = 90000"), "{text}");
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, &notice("02", "00"))).await);
    h.stop().await;
}

/// A node process reading `file` (its admin listener at `admin`).
struct NodeProcess {
    child: std::process::Child,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_refresh_read_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let file = dir.path().join("pagonode.toml");
    let db = dir.path().join("node.db");
    let text = CONFIG
        .replace("{EC_URL}", &closed_port_url())
        .replace("{DOWN_URL}", &closed_port_url())
        .replace("{DB}", db.to_str().unwrap())
        .replacen(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
            1,
        )
        + &format!("\n[node.admin_tokens]\nalice = \"{ALICE}\"\n");
    std::fs::write(&file, &text).unwrap();
    let mut node = NodeProcess {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_pagonode"))
            .args(["serve", "--config", file.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    let base = format!("http://127.0.0.1:{admin_port}");
    let http = reqwest::Client::new();
    eventually(30, "the node process", || async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .map(drop)
    })
    .await;
    let (first, _) = running(&base).await;
    let url = format!("http://127.0.0.1:{port}/node-for-psp/v1");
    let soap = |req: pagonode::codec::node_for_psp::VerifyPaymentNoticeReq| {
        let http = http.clone();
        let url = url.clone();
        async move { send_to(&http, &url, &req).await }
    };
    let pid = node.child.id() as libc::pid_t;
    let hangup = || assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);

    // The file disables PSP2: SIGHUP puts it in force.
    let disabled = text.replacen(
        "name = \"Banca Seconda S.p.A.\"",
        "name = \"Banca Seconda S.p.A.\"\nenabled = false",
        1,
    );
    std::fs::write(&file, &disabled).unwrap();
    hangup();
    let (v, shown) = eventually(10, "the version of the SIGHUP", || async {
        let r = running(&base).await;
        (r.0 > first).then_some(r)
    })
    .await;
    assert_eq!(v, first + 1);
    assert!(shown.contains("applied by sighup"), "{shown}");
    let body = soap(verify(&PSP2, EC, &notice("02", "00"))).await;
    expect_fault::<VerifyPaymentNoticeRes>(&body, "PPT_PSP_DISABILITATO");

    // A broken file is refused: the node keeps running its configuration.
    std::fs::write(&file, disabled.replacen("[timings]", "[timings\n", 1)).unwrap();
    hangup();
    let (status, v) = admin_json("GET", &base, "/config/refresh/CONFIG", None).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["description"].as_str().unwrap().contains("line"), "{v}");
    assert_eq!(running(&base).await.0, first + 1);
    assert!(node.child.try_wait().unwrap().is_none(), "the node stopped");

    // The file restored, the official refresh reads it (as alice).
    std::fs::write(&file, &text).unwrap();
    let (status, v) = admin_json("GET", &base, "/monitoring/v1/config/refresh/ALL", None).await;
    assert_eq!((status, &v["success"]), (200, &json!(true)), "{v}");
    let (v, shown) = running(&base).await;
    assert_eq!(v, first + 2);
    assert!(shown.contains("applied by alice"), "{shown}");
    let body = soap(verify(&PSP2, EC, &notice("02", "00"))).await;
    assert_ne!(
        fault_code(&body).as_deref(),
        Some("PPT_PSP_DISABILITATO"),
        "{body}"
    );
    let (status, _) = admin("GET", &base, "/config/refresh/NOTHING", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_postgresql_switch_together() {
    let server = common::pg::server()
        .expect("PostgreSQL is needed by this test (Debian: apt-get install postgresql)");
    let database = Database::Postgres(server.database().await);
    let h = Harness::start_admin(|c| {
        with_alice(c);
        c.node.database = database.clone();
    })
    .await;
    let mut second = h.config.clone();
    second.node.listen = "127.0.0.1:0".into();
    let other = RunningNode::start(
        second,
        Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
    )
    .await
    .unwrap();
    let (bases, urls) = (
        [h.admin_url(), other.admin_url().unwrap()],
        [h.url(), other.url()],
    );
    let (v0, _) = running(&bases[0]).await;
    assert_eq!(
        running(&bases[1]).await.0,
        v0,
        "the second node runs the stored version"
    );

    let http = reqwest::Client::new();
    let verify_on = |i: usize| {
        let (http, url) = (http.clone(), urls[i].clone());
        async move { send_to(&http, &url, &verify(&PSP1, EC, &notice("02", "00"))).await }
    };
    for (i, enabled) in [(0, false), (1, true)] {
        let applied = Instant::now();
        let version = patch(
            &bases[i],
            json!({ "psp": { PSP1.id: { "enabled": enabled } } }),
        )
        .await;
        let other_node = 1 - i;
        eventually(3, "the other node on the new version", || async {
            (running(&bases[other_node]).await.0 == version).then_some(())
        })
        .await;
        let took = applied.elapsed();
        assert!(took < Duration::from_millis(2_500), "{took:?}");
        for n in [0, 1] {
            let body = verify_on(n).await;
            let code = fault_code(&body);
            if enabled {
                assert_ne!(
                    code.as_deref(),
                    Some("PPT_PSP_DISABILITATO"),
                    "node {n}: {body}"
                );
            } else {
                expect_fault::<VerifyPaymentNoticeRes>(&body, "PPT_PSP_DISABILITATO");
            }
        }
        eprintln!("version {version} on both nodes after {took:?}");
    }
    let token = activate_ok(&h, &PSP1, EC, &notice("02", "00")).await;
    let body = send_to(&http, &urls[1], &outcome(&PSP1, &token, true, None)).await;
    ok::<SendPaymentOutcomeRes>(&body);
    other.stop().await;
    h.stop().await;
}

/// Every test above, again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
