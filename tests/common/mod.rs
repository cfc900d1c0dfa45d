//! The integration-test harness: a real node (real HTTP, real SQLite in a temporary directory)
//! in front of a real simulated EC, and builders for the PSP requests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pagonode::codec::common::{EntityUniqueIdentifier, QrCode, Subject};
use pagonode::codec::node_for_psp::*;
use pagonode::codec::service::ServicePayload;
use pagonode::codec::types::*;
use pagonode::codec::{AnyMessage, Body, Message, read_any, write_envelope};
use pagonode::config::Config;
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

pub const PSP1: Psp = Psp { id: "60000000001", broker: "60000000001", channel: "60000000001_01", password: "pwdpwdpwd" };
pub const PSP2: Psp = Psp { id: "60000000002", broker: "60000000002", channel: "60000000002_01", password: "secondpwd2" };

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
fn closed_port_url() -> String {
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
        let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
        pagonode::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ec = MockEc::new(MockEcConfig::from_toml_str(CONFIG).unwrap());
        let ec_server = ec.clone().start(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();
        let db = dir.path().join("node.db");
        let text = CONFIG
            .replace("{EC_URL}", &ec_server.url())
            .replace("{DOWN_URL}", &closed_port_url())
            .replace("{DB}", db.to_str().unwrap());
        let mut config = Config::from_toml_str(&text).unwrap();
        tweak(&mut config);
        let node = RunningNode::start(config.clone(), Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()), None).await.unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Harness { node: Some(node), ec, ec_server: Some(ec_server), dir, config, http }
    }

    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    pub fn url(&self) -> String {
        self.node().url()
    }

    /// Stops the node gracefully and starts it again on the same database.
    pub async fn restart(&mut self) {
        self.node.take().unwrap().stop().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        self.node = Some(RunningNode::start(self.config.clone(), Some(listener), None).await.unwrap());
    }

    /// POSTs raw bytes with a SOAPAction: (HTTP status, body).
    pub async fn post(&self, action: Option<&str>, body: impl Into<Vec<u8>>) -> (u16, String) {
        let mut req = self.http.post(self.url()).header("Content-Type", "text/xml; charset=utf-8").body(body.into());
        if let Some(a) = action {
            req = req.header("SOAPAction", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Sends a request and reads the answer, which must be a valid message.
    pub async fn call<M: Message>(&self, req: &M) -> AnyMessage {
        let (status, body) = self.post(Some(M::OPERATION.soap_action()), write_envelope(req)).await;
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// Waits until the simulated EC holds `n` receipts (or panics after `secs`).
    pub async fn wait_receipts(&self, n: usize, secs: u64) -> Vec<StoredReceipt> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.ec.receipts();
            if r.len() >= n || std::time::Instant::now() > deadline {
                assert!(r.len() >= n, "expected {n} receipts, the EC has {}: {r:?}", r.len());
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
        }
        if let Some(s) = self.ec_server.take() {
            s.stop().await;
        }
    }
}

/// Parses an answer; it must be a valid message.
pub fn parse(body: &str) -> AnyMessage {
    match read_any(body.as_bytes()) {
        Ok(Body::Message(m)) => m,
        other => panic!("not a valid message: {other:?}\n{body}"),
    }
}

/// The fault code of an answer (None for OK).
pub fn fault_code(body: &str) -> Option<String> {
    body.split_once("<faultCode>").and_then(|(_, r)| r.split_once("</faultCode>")).map(|(c, _)| c.to_string())
}

pub fn t35(s: &str) -> Text35 {
    Text35::new(s).unwrap()
}

pub fn qr(fc: &str, nn: &str) -> QrCode {
    QrCode { fiscal_code: FiscalCode::new(fc).unwrap(), notice_number: NoticeNumber::new(nn).unwrap() }
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

pub fn activate(psp: &Psp, fc: &str, nn: &str, cents: u64, key: Option<&str>) -> ActivatePaymentNoticeReq {
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

pub fn activate_v2(psp: &Psp, fc: &str, nn: &str, cents: u64, key: Option<&str>) -> ActivatePaymentNoticeV2Request {
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
                entity_unique_identifier_value: EntityUniqueIdentifierValue::new("RSSMRA80A01H501U").unwrap(),
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
        application_date: IsoDate::from_naive(chrono::NaiveDate::from_ymd_opt(2030, 1, 15).unwrap()),
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

pub fn outcome_v2(psp: &Psp, tokens: &[&str], ok: bool, key: Option<&str>) -> SendPaymentOutcomeV2Request {
    let d = details();
    SendPaymentOutcomeV2Request {
        id_psp: t35(psp.id),
        id_broker_psp: t35(psp.broker),
        id_channel: t35(psp.channel),
        password: Password::new(psp.password).unwrap(),
        idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
        payment_tokens: PaymentTokens {
            payment_token: pagonode::codec::schema::Bounded::new(tokens.iter().map(|t| PaymentToken::new(*t).unwrap()).collect()).unwrap(),
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
    ServicePayload::from_document(doc.into_bytes()).unwrap()
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
