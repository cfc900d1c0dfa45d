//! The integration-test harness: a real node (real HTTP, a real store: SQLite in a temporary
//! directory, or a database of the test PostgreSQL, see [`pg`]) in front of a real simulated
//! EC, and builders for the PSP requests.
#![allow(dead_code)]

pub mod pg;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pagonode::codec::common::{EntityUniqueIdentifier, QrCode, Subject};
use pagonode::codec::node_for_psp::*;
use pagonode::codec::service::ServicePayload;
use pagonode::codec::types::*;
use pagonode::codec::{AnyMessage, Body, Limits, Message, read_any, write_envelope};
use pagonode::config::{Config, Database};
use pagonode::mock_ec::{MockEc, MockEcConfig, MockEcServer, StoredReceipt};
use pagonode::server::RunningNode;

pub const CONFIG: &str = include_str!("node.toml");

/// A PSP identity from the test configuration.
#[derive(Debug, Clone, Copy)]
pub struct Psp {
    pub id: &'static str,
    pub broker: &'static str,
    pub channel: &'static str,
    pub password: &'static str,
}

pub const PSP1: Psp = Psp {
    id: "60000000001",
    broker: "60000000001",
    channel: "60000000001_01",
    password: "pwdpwdpwd",
};
pub const PSP2: Psp = Psp {
    id: "60000000002",
    broker: "60000000002",
    channel: "60000000002_01",
    password: "secondpwd2",
};

pub const EC: &str = "77777777777";
pub const EC2: &str = "88888888888";
pub const EC3: &str = "99999999999";

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh notice number of the Comune: `3` + segregation code + scenario digits + 13 digits.
pub fn notice(segregation: &str, scenario: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 100_000;
    format!("3{segregation}{scenario}{:013}", n % 10_000_000_000_000)
}

/// A fresh idempotency key for a PSP.
pub fn key(psp: &Psp) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}_{:010}", psp.id, n)
}

/// The running pair: node and simulated EC.
pub struct Harness {
    pub node: Option<RunningNode>,
    pub ec: MockEc,
    ec_server: Option<MockEcServer>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    http: reqwest::Client,
}

/// A URL nothing listens on (a port just released).
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Starts with a tweak to the node configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::launch(|c, _| tweak(c), |_| {}, false).await
    }

    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    pub fn url(&self) -> String {
        self.node().url()
    }

    /// Stops the node gracefully and starts it again on the same database.
    /// The admin listener comes back (on a new port) if the node had one.
    pub async fn restart(&mut self) {
        let node = self.node.take().unwrap();
        let admin = node
            .admin_url()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        node.stop().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        self.node = Some(
            RunningNode::start(self.config.clone(), Some(listener), admin)
                .await
                .unwrap(),
        );
    }

    /// POSTs raw bytes with a SOAPAction: (HTTP status, body).
    pub async fn post(&self, action: Option<&str>, body: impl Into<Vec<u8>>) -> (u16, String) {
        let mut req = self
            .http
            .post(self.url())
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body.into());
        if let Some(a) = action {
            req = req.header("SOAPAction", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Sends a request and reads the answer, which must be a valid message.
    pub async fn call<M: Message>(&self, req: &M) -> AnyMessage {
        let (status, body) = self
            .post(Some(M::OPERATION.soap_action()), write_envelope(req))
            .await;
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// Waits until the simulated EC holds `n` receipts (or panics after `secs`).
    pub async fn wait_receipts(&self, n: usize, secs: u64) -> Vec<StoredReceipt> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.ec.receipts();
            if r.len() >= n || std::time::Instant::now() > deadline {
                assert!(
                    r.len() >= n,
                    "expected {n} receipts, the EC has {}: {r:?}",
                    r.len()
                );
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops both, after checking that every request the node sent the EC was valid, and
    /// (with `PAGONODE_DUMP_DIR` set) exports the node's journal, once the stop has written
    /// it, for the official XSD check `.ci/run` runs (see [`export_journal`]).
    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
            export_journal(&self.config.node.database, "harness");
        }
        let invalid: Vec<_> = self
            .ec
            .requests()
            .into_iter()
            .filter(|r| !r.valid)
            .collect();
        assert!(
            invalid.is_empty(),
            "the node sent the EC invalid requests: {invalid:?}"
        );
        if let Some(s) = self.ec_server.take() {
            s.stop().await;
        }
    }
}

/// With `PAGONODE_DUMP_DIR` set, writes every row of the journal of the (stopped) node whose
/// database is `db` to `<dir>/<source>-<pid>-<n>.jsonl`, one JSON object per row as
/// `pagonode journal query --json --payload` prints them: `.ci/xsd-emitted` takes the messages
/// the node and the EC emitted from these files and checks them against the official XSDs.
pub fn export_journal(db: &Database, source: &str) {
    use std::io::Write as _;
    let Ok(dir) = std::env::var("PAGONODE_DUMP_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{source}-{}-{n}.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let reader = pagonode::cli::journal::JournalReader::open(db)
        .unwrap_or_else(|e| panic!("journal of {db}: {e}"));
    let mut failed = None;
    reader
        .query_all(&pagonode::journal::JournalQuery::default(), None, |row| {
            if failed.is_none()
                && let Err(e) = writeln!(out, "{}", pagonode::journal::story::row_json(row))
            {
                failed = Some(e);
            }
        })
        .unwrap_or_else(|e| panic!("reading the journal of {db}: {e}"));
    if let Some(e) = failed {
        panic!("{}: {e}", path.display());
    }
    out.flush().unwrap();
}

/// Parses an answer; it must be a valid message.
/// Sends a request (SOAPAction = its operation) to the nodeForPsp endpoint at `url`, for nodes
/// the tests start beside a [`Harness`]; returns the raw answer.
pub async fn send_to<M: Message>(http: &reqwest::Client, url: &str, req: &M) -> String {
    http.post(url)
        .header("SOAPAction", M::OPERATION.soap_action())
        .header("Content-Type", "text/xml")
        .body(write_envelope(req))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn parse(body: &str) -> AnyMessage {
    match read_any(body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) => m,
        other => panic!("not a valid message: {other:?}\n{body}"),
    }
}

/// The fault code of an answer (None for OK).
pub fn fault_code(body: &str) -> Option<String> {
    body.split_once("<faultCode>")
        .and_then(|(_, r)| r.split_once("</faultCode>"))
        .map(|(c, _)| c.to_string())
}

pub fn t35(s: &str) -> Text35 {
    Text35::new(s).unwrap()
}

pub fn qr(fc: &str, nn: &str) -> QrCode {
    QrCode {
        fiscal_code: FiscalCode::new(fc).unwrap(),
        notice_number: NoticeNumber::new(nn).unwrap(),
    }
}

pub fn verify(psp: &Psp, fc: &str, nn: &str) -> VerifyPaymentNoticeReq {
    VerifyPaymentNoticeReq {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        qr_code: qr(fc, nn),
    }
}

pub fn activate(
    psp: &Psp,
    fc: &str,
    nn: &str,
    cents: u64,
    key: Option<&str>,
) -> ActivatePaymentNoticeReq {
    ActivatePaymentNoticeReq {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
        qr_code: qr(fc, nn),
        expiration_time: None,
        amount: Amount::from_cents(cents).unwrap(),
        due_date: None,
        payment_note: None,
    }
}

pub fn activate_v2(
    psp: &Psp,
    fc: &str,
    nn: &str,
    cents: u64,
    key: Option<&str>,
) -> ActivatePaymentNoticeV2Request {
    let v1 = activate(psp, fc, nn, cents, key);
    ActivatePaymentNoticeV2Request {
        id_psp: v1.id_psp,
        id_broker_psp: v1.id_broker_psp,
        id_channel: v1.id_channel,
        password: v1.password,
        idempotency_key: v1.idempotency_key,
        qr_code: v1.qr_code,
        expiration_time: None,
        amount: v1.amount,
        due_date: None,
        payment_note: Some(Text210::new("nota del PSP").unwrap()),
        payment_method: Some(PaymentMethodFee::Cp),
        touch_point: Some(TouchpointFee::Psp),
    }
}

pub fn details() -> OutcomeDetails {
    OutcomeDetails {
        payment_method: PaymentMethod::CreditCard,
        payment_channel: Some(PaymentChannel::App),
        fee: Amount::from_cents(100).unwrap(),
        payer: Some(Subject {
            unique_identifier: EntityUniqueIdentifier {
                entity_unique_identifier_type: EntityUniqueIdentifierType::F,
                entity_unique_identifier_value: EntityUniqueIdentifierValue::new(
                    "RSSMRA80A01H501U",
                )
                .unwrap(),
            },
            full_name: Text70::new("Mario Rossi").unwrap(),
            street_name: None,
            civic_number: None,
            postal_code: None,
            city: None,
            state_province_region: None,
            country: None,
            email: None,
        }),
        application_date: IsoDate::from_naive(
            chrono::NaiveDate::from_ymd_opt(2030, 1, 15).unwrap(),
        ),
        transfer_date: IsoDate::from_naive(chrono::NaiveDate::from_ymd_opt(2030, 1, 16).unwrap()),
    }
}

pub fn outcome(psp: &Psp, token: &str, ok: bool, key: Option<&str>) -> SendPaymentOutcomeReq {
    SendPaymentOutcomeReq {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
        payment_token: PaymentToken::new(token).unwrap(),
        outcome: if ok { Outcome::Ok } else { Outcome::Ko },
        details: ok.then(details),
    }
}

pub fn outcome_v2(
    psp: &Psp,
    tokens: &[&str],
    ok: bool,
    key: Option<&str>,
) -> SendPaymentOutcomeV2Request {
    let d = details();
    SendPaymentOutcomeV2Request {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
        payment_tokens: PaymentTokens {
            payment_token: pagonode::codec::schema::Bounded::new(
                tokens
                    .iter()
                    .map(|t| PaymentToken::new(*t).unwrap())
                    .collect(),
            )
            .unwrap(),
        },
        outcome: if ok { Outcome::Ok } else { Outcome::Ko },
        details: ok.then_some(OutcomeDetailsV2 {
            payment_method: d.payment_method,
            payment_channel: d.payment_channel,
            fee: d.fee,
            primary_ci_incurred_fee: None,
            id_bundle: None,
            id_ci_bundle: None,
            payer: d.payer,
            application_date: d.application_date,
            transfer_date: d.transfer_date,
            marche_da_bollo: None,
        }),
    }
}

/// The TassaAuto service document for a plate.
pub fn tassa_auto(plate: &str) -> ServicePayload {
    let doc = format!(
        "<ta:tassaAuto xmlns:ta=\"http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto\"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga><ta:veicoloTarga>{plate}</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>"
    );
    ServicePayload::from_document(doc.into_bytes(), Limits::DEFAULT).unwrap()
}

pub fn demand(psp: &Psp, soggetto: &str, payload: ServicePayload) -> DemandPaymentNoticeRequest {
    DemandPaymentNoticeRequest {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        id_soggetto_servizio: ServiceCode::new(soggetto).unwrap(),
        dati_specifici_servizio: payload,
    }
}

/// Activates (V1) and returns the token; panics on KO.
pub async fn activate_ok(h: &Harness, psp: &Psp, fc: &str, nn: &str) -> String {
    match h.call(&activate(psp, fc, nn, 1000, Some(&key(psp)))).await {
        AnyMessage::ActivatePaymentNoticeRes(r) => {
            assert!(r.fault.is_none(), "activation refused: {:?}", r.fault);
            r.payment_token.expect("token").to_string()
        }
        other => panic!("{other:?}"),
    }
}

/// The fault code of any response message (None for OK).
pub fn code(m: &AnyMessage) -> Option<String> {
    fault_code(&m.to_envelope())
}

// ---------------------------------------------------------------------------------------------
// Helpers for the fault, idempotency, EC-failure and late-outcome tests.
// ---------------------------------------------------------------------------------------------

use pagonode::codec::common::FaultBean;
use pagonode::codec::{KoResponse, read_message};
use pagonode::mock_ec::{PositionConfig, TransferConfig};

/// The id the node signs its own faults with.
pub const NODE_FAULT_ID: &str = "NodoDeiPagamentiSPC";

impl Harness {
    /// Starts with the admin listener on, a tweak to the node configuration (which also gets the
    /// simulated EC's base URL, to point stations elsewhere) and a tweak to the simulated EC's
    /// configuration (explicit positions, for one).
    pub async fn start_full(
        tweak: impl FnOnce(&mut Config, &str),
        mock_tweak: impl FnOnce(&mut MockEcConfig),
    ) -> Harness {
        Harness::launch(tweak, mock_tweak, true).await
    }

    async fn launch(
        tweak: impl FnOnce(&mut Config, &str),
        mock_tweak: impl FnOnce(&mut MockEcConfig),
        admin: bool,
    ) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        pagonode::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut mock_config = MockEcConfig::from_toml_str(CONFIG).unwrap();
        mock_tweak(&mut mock_config);
        mock_config.validate().unwrap();
        let ec = MockEc::new(mock_config);
        let ec_server = ec
            .clone()
            .start(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .await
            .unwrap();
        let db = dir.path().join("node.db");
        let text = CONFIG
            .replace("{EC_URL}", &ec_server.url())
            .replace("{DOWN_URL}", &closed_port_url())
            .replace("{DB}", db.to_str().unwrap());
        let mut config = Config::from_toml_str(&text).unwrap();
        if pg::on_postgres() {
            let server = pg::server().expect("PAGONODE_TEST_STORE=postgres needs PostgreSQL");
            config.node.database = Database::Postgres(server.database().await);
        }
        tweak(&mut config, &ec_server.url());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = admin.then(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let node = RunningNode::start(config.clone(), Some(listener), admin)
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Harness {
            node: Some(node),
            ec,
            ec_server: Some(ec_server),
            dir,
            config,
            http,
        }
    }

    /// [`Harness::start_with`] with the admin listener on.
    pub async fn start_admin(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_full(|c, _| tweak(c), |_| {}).await
    }

    /// The simulated EC's base URL.
    pub fn ec_url(&self) -> String {
        self.ec_server.as_ref().expect("EC running").url()
    }

    /// The admin base URL (only with [`Harness::start_full`] / [`Harness::start_admin`]).
    pub fn admin_url(&self) -> String {
        self.node()
            .admin_url()
            .expect("started with the admin listener")
    }

    /// POSTs raw bytes with an optional SOAPAction and an optional query string.
    pub async fn post_query(
        &self,
        query: Option<&str>,
        action: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> (u16, String) {
        let url = match query {
            Some(q) => format!("{}?{q}", self.url()),
            None => self.url(),
        };
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/xml")
            .body(body.into());
        if let Some(a) = action {
            req = req.header("SOAPAction", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Sends a request (SOAPAction = its operation) and returns the raw answer, which must come
    /// with HTTP 200.
    pub async fn send<M: Message>(&self, req: &M) -> String {
        let (status, body) = self
            .post(Some(M::OPERATION.soap_action()), write_envelope(req))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Sends a request that must be refused with `code` in a `Res` element; returns the fault.
    pub async fn refused<Req: Message, Res: KoResponse + std::fmt::Debug>(
        &self,
        req: &Req,
        code: &str,
    ) -> FaultBean {
        let body = self.send(req).await;
        expect_fault::<Res>(&body, code)
    }

    /// GET on the admin listener: (status, JSON).
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.admin_url()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    /// POST on the admin listener: (status, JSON).
    pub async fn admin_post(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.admin_url()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    /// A notice's story (`GET /admin/payments/{fc}/{nn}`).
    pub async fn story(&self, fc: &str, nn: &str) -> serde_json::Value {
        let (status, v) = self.admin_get(&format!("/admin/payments/{fc}/{nn}")).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The payments of a notice (attempts that got a token), from its story.
    pub async fn payments_of(&self, fc: &str, nn: &str) -> Vec<serde_json::Value> {
        let story = self.story(fc, nn).await;
        story["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["paymentToken"].is_string())
            .cloned()
            .collect()
    }

    /// The status of one payment (`PAYING`, `PAID`, `NOTIFIED`, `FAILED`, `CANCELLED`).
    pub async fn payment_status(&self, fc: &str, nn: &str, token: &str) -> String {
        let payments = self.payments_of(fc, nn).await;
        let p = payments
            .iter()
            .find(|p| p["paymentToken"] == token)
            .unwrap_or_else(|| panic!("no payment {token}: {payments:?}"));
        p["status"].as_str().unwrap().to_string()
    }

    /// A notice's status histories, from its story: (POSITION_STATUS rows, then per token its
    /// POSITION_PAYMENT_STATUS rows, then per (token, station) its
    /// POSITION_RECEIPT_RECIPIENT_STATUS rows), statuses only.
    pub async fn histories(&self, fc: &str, nn: &str) -> Histories {
        let story = self.story(fc, nn).await;
        let h = &story["statusHistory"];
        let statuses = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["status"].as_str().unwrap().to_string())
                .collect()
        };
        Histories {
            position: statuses(&h["POSITION_STATUS"]),
            payments: h["POSITION_PAYMENT_STATUS"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["paymentToken"].as_str().unwrap().to_string(),
                        statuses(&p["history"]),
                    )
                })
                .collect(),
            recipients: h["POSITION_RECEIPT_RECIPIENT_STATUS"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        (
                            r["paymentToken"].as_str().unwrap().to_string(),
                            r["station"].as_str().unwrap().to_string(),
                        ),
                        statuses(&r["history"]),
                    )
                })
                .collect(),
        }
    }

    /// The recipients (`GET /admin/recipients?status=...`).
    pub async fn recipients(&self, status: &str) -> Vec<serde_json::Value> {
        let (code, v) = self
            .admin_get(&format!("/admin/recipients?status={status}"))
            .await;
        assert_eq!(code, 200, "{v}");
        v.as_array().unwrap().clone()
    }

    /// How many requests of `operation` about `notice` the simulated EC received.
    pub fn ec_calls(&self, operation: &str, notice: &str) -> usize {
        self.ec
            .requests()
            .iter()
            .filter(|r| {
                r.operation.as_deref() == Some(operation)
                    && r.notice_number.as_deref() == Some(notice)
            })
            .count()
    }
}

/// A notice's status histories in the official vocabulary (see [`Harness::histories`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histories {
    pub position: Vec<String>,
    pub payments: Vec<(String, Vec<String>)>,
    pub recipients: Vec<((String, String), Vec<String>)>,
}

impl Histories {
    /// One token's POSITION_PAYMENT_STATUS rows.
    pub fn payment(&self, token: &str) -> Vec<&str> {
        self.payments
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, h)| h.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// One copy's POSITION_RECEIPT_RECIPIENT_STATUS rows.
    pub fn recipient(&self, token: &str, station: &str) -> Vec<&str> {
        self.recipients
            .iter()
            .find(|((t, s), _)| t == token && s == station)
            .map(|(_, h)| h.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The notice's POSITION_STATUS rows.
    pub fn position(&self) -> Vec<&str> {
        self.position.iter().map(String::as_str).collect()
    }
}

/// Polls `f` every 20 ms until it gives `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads an answer that must be a `Res` element with `outcome=KO` and a fault signed by the
/// node; returns the fault.
pub fn ko<Res: KoResponse + std::fmt::Debug>(body: &str) -> FaultBean {
    match read_message::<Res>(body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) => {
            assert_eq!(m.outcome(), Outcome::Ko, "{body}");
            let f = m
                .fault()
                .cloned()
                .unwrap_or_else(|| panic!("KO without a fault: {body}"));
            assert_eq!(f.id.as_str(), NODE_FAULT_ID, "{body}");
            f
        }
        other => panic!("expected a {} KO, got {other:?}\n{body}", Res::root()),
    }
}

/// [`ko`], and the fault code must be `code`.
pub fn expect_fault<Res: KoResponse + std::fmt::Debug>(body: &str, code: &str) -> FaultBean {
    let f = ko::<Res>(body);
    assert_eq!(f.fault_code.as_str(), code, "{body}");
    f
}

/// Reads an answer that must be a `Res` element with `outcome=OK` and no fault.
pub fn ok<Res: KoResponse + std::fmt::Debug>(body: &str) -> Res {
    match read_message::<Res>(body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) => {
            assert_eq!(m.outcome(), Outcome::Ok, "{body}");
            assert!(m.fault().is_none(), "{body}");
            m
        }
        other => panic!("expected a {} OK, got {other:?}\n{body}", Res::root()),
    }
}

/// The token of an OK activatePaymentNoticeRes.
pub fn token_of(body: &str) -> String {
    let r: ActivatePaymentNoticeRes = ok(body);
    r.payment_token.expect("paymentToken").to_string()
}

/// An activation with `expirationTime`.
pub fn activate_exp(
    psp: &Psp,
    fc: &str,
    nn: &str,
    expiration_ms: i64,
    key: Option<&str>,
) -> ActivatePaymentNoticeReq {
    let mut r = activate(psp, fc, nn, 1000, key);
    r.expiration_time = Some(ExpirationTime::from_millis(expiration_ms).unwrap());
    r
}

/// The text inside the first `<tag>...</tag>` (None if absent).
pub fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// `xml` with the content of the first `<tag>...</tag>` replaced.
pub fn replace_element(xml: &str, tag: &str, content: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&close).unwrap() + start;
    format!("{}{content}{}", &xml[..start], &xml[end..])
}

/// `xml` without its first `<tag>...</tag>` element.
pub fn remove_element(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let end = xml[start..].find(&close).unwrap() + start + close.len();
    format!("{}{}", &xml[..start], &xml[end..])
}

/// An explicit position of the simulated EC, with the given transfers (beneficiary, amount,
/// IBAN; `None` IBAN = the beneficiary's configured one).
pub fn mock_position(
    owner: &str,
    nn: &str,
    transfers: &[(&str, &str, Option<&str>)],
) -> PositionConfig {
    PositionConfig {
        fiscal_code: Some(owner.to_string()),
        notice_number: nn.to_string(),
        transfer: transfers
            .iter()
            .map(|(fc, amount, iban)| TransferConfig {
                fiscal_code: Some(fc.to_string()),
                amount: Some(amount.to_string()),
                iban: iban.map(str::to_string),
                ..TransferConfig::default()
            })
            .collect(),
        ..PositionConfig::default()
    }
}

/// Starts a harness (admin listener on, `tweak` applied to the configuration) whose station
/// `station` is behind a [`RewritingEc`] forwarding to the simulated EC.
pub async fn behind_proxy(
    station: &'static str,
    tweak: impl FnOnce(&mut Config),
) -> (Harness, RewritingEc) {
    let proxy = RewritingEc::start();
    let url = proxy.url.clone();
    let h = Harness::start_full(
        move |c, _| {
            let st = c.station.iter_mut().find(|s| s.id == station).unwrap();
            st.url = format!("{url}/pa/{station}");
            tweak(c);
        },
        |_| {},
    )
    .await;
    proxy.forward_to(&h.ec_url());
    (h, proxy)
}

/// How a [`RewritingEc`] changes an answer: (SOAPAction of the request, the simulated EC's
/// answer) → the answer sent to the node.
pub type Rewrite = std::sync::Arc<dyn Fn(&str, String) -> String + Send + Sync>;

/// A station that forwards every request to the simulated EC and can rewrite its answers: how
/// the tests get answers the simulated EC never gives (KO without a fault, inconsistent amounts,
/// missing elements). Point a station's URL at `{url}/pa/<station>`.
pub struct RewritingEc {
    pub url: String,
    target: std::sync::Arc<std::sync::Mutex<String>>,
    rewrite: std::sync::Arc<std::sync::Mutex<Option<Rewrite>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RewritingEc {
    /// Listens on a free port; forwards nowhere until [`RewritingEc::forward_to`].
    pub fn start() -> RewritingEc {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std_listener.local_addr().unwrap());
        let target: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
        let rewrite: std::sync::Arc<std::sync::Mutex<Option<Rewrite>>> = Default::default();
        let (t, r) = (target.clone(), rewrite.clone());
        let task = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (t, r, http) = (t.clone(), r.clone(), http.clone());
                tokio::spawn(async move {
                    let _ = serve_rewritten(stream, t, r, http).await;
                });
            }
        });
        RewritingEc {
            url,
            target,
            rewrite,
            task,
        }
    }

    /// Where requests go: the simulated EC's base URL (the request path is kept).
    pub fn forward_to(&self, base: &str) {
        *self.target.lock().unwrap() = base.to_string();
    }

    /// Rewrites every answer from now on.
    pub fn rewrite(&self, f: impl Fn(&str, String) -> String + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Some(std::sync::Arc::new(f));
    }

    /// Passes answers through unchanged from now on.
    pub fn pass_through(&self) {
        *self.rewrite.lock().unwrap() = None;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn serve_rewritten(
    mut stream: tokio::net::TcpStream,
    target: std::sync::Arc<std::sync::Mutex<String>>,
    rewrite: std::sync::Arc<std::sync::Mutex<Option<Rewrite>>>,
    http: reqwest::Client,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let action = header("soapaction")
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    let base = target.lock().unwrap().clone();
    let forwarded = http
        .post(format!("{base}{path}"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{action}\""))
        .body(body)
        .send()
        .await;
    let (status, answer) = match forwarded {
        Ok(resp) => (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ),
        Err(e) => (502, format!("forwarding failed: {e}")),
    };
    let f = rewrite.lock().unwrap().clone();
    let answer = match f {
        Some(f) => f(&action, answer),
        None => answer,
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

impl Harness {
    /// The receipt copies the node holds, (NOTIFIED, FAILED), once none is waiting for delivery
    /// (needs the admin listener). With none PENDING nothing more leaves the node until another
    /// outcome or a re-send on demand, so what the simulated EC holds then is final: "no
    /// (other) receipt" is checked on this event, not after a sleep.
    pub async fn settled_copies(&self) -> (usize, usize) {
        eventually(30, "no receipt copy pending", || async {
            self.recipients("PENDING").await.is_empty().then_some(())
        })
        .await;
        (
            self.recipients("NOTIFIED").await.len(),
            self.recipients("FAILED").await.len(),
        )
    }
}
