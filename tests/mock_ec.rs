//! The simulated creditor entity over real HTTP: every SOAP answer it gives (but the deliberately
//! broken ones) must read back with the codec.

use std::time::{Duration, Instant};

use pagonode::codec::common::QrCode;
use pagonode::codec::pa_for_node::*;
use pagonode::codec::schema::Bounded;
use pagonode::codec::service::ServicePayload;
use pagonode::codec::types::*;
use pagonode::codec::{Body, KoResponse, Limits, Message, read_message, write_envelope};
use pagonode::mock_ec::{
    AnswerKind, MockEc, MockEcConfig, MockEcServer, PositionStatus, ScriptAction, ScriptRule,
};
use serde_json::Value;

const CONFIG: &str = r#"
[node]
unrelated = "the mock ignores other tables"

[mock_ec]
listen = "127.0.0.1:0"

[[mock_ec.ec]]
fiscal_code = "77777777777"
company_name = "Comune di Esempio"
office_name = "Ufficio tributi"
ibans = ["IT60X0542811101000000123456", "IT60X0542811101000000654321"]

[[mock_ec.ec]]
fiscal_code = "11111111111"
company_name = "Provincia di Esempio"

[[mock_ec.ec]]
fiscal_code = "22222222222"
company_name = "Regione Esempio"
ibans = ["IT60X0542811101000000222222"]

[[mock_ec.position]]
fiscal_code = "77777777777"
notice_number = "302000100000009424"
amount = "10.00"
description = "Canone mensa scolastica"
due_date = "2030-12-31"
debtor = { type = "F", id = "RSSMRA80A01H501U", name = "Mario Rossi" }
[[mock_ec.position.transfer]]
fiscal_code = "77777777777"
amount = "10.00"
iban = "IT60X0542811101000000123456"
remittance = "Mensa scolastica"
category = "0101101IM"

# Explicit positions are not subject to the scenario digits (90 would be "unknown").
[[mock_ec.position]]
notice_number = "302900000000000001"
amount = "5.00"

[[mock_ec.position]]
notice_number = "302000000000000777"
status = "expired"

[[mock_ec.service]]
id_servizio = "00001"
fiscal_code = "77777777777"
segregation_code = "02"
amount = "120.00"
description = "Tassa automobilistica"

[[mock_ec.script]]
primitive = "paVerifyPaymentNotice"
notice_number = "302000000000000888"
action = "fault"
fault_code = "PAA_SEMANTICA"
times = 1
"#;

const EC: &str = "77777777777";
const STATION: &str = "77777777777_01";
const TASSA_AUTO: &str = r#"<ta:tassaAuto xmlns:ta="http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga><ta:veicoloTarga>AB123CD</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>"#;

fn t35(s: &str) -> Text35 {
    Text35::new(s).unwrap()
}

fn qr(fc: &str, notice: &str) -> QrCode {
    QrCode {
        fiscal_code: FiscalCode::new(fc).unwrap(),
        notice_number: NoticeNumber::new(notice).unwrap(),
    }
}

fn verify_req(fc: &str, notice: &str) -> PaVerifyPaymentNoticeReq {
    PaVerifyPaymentNoticeReq {
        id_pa: t35(fc),
        id_broker_pa: t35(fc),
        id_station: t35(STATION),
        qr_code: qr(fc, notice),
    }
}

/// paGetPaymentReq and paGetPaymentV2Request have the same fields.
macro_rules! get_payment {
    ($ty:ident, $notice:expr) => {
        $ty {
            id_pa: t35(EC),
            id_broker_pa: t35(EC),
            id_station: t35(STATION),
            qr_code: qr(EC, $notice),
            amount: Some(Amount::from_cents(1000).unwrap()),
            payment_note: None,
            transfer_type: None,
            due_date: None,
        }
    };
}

/// A positive receipt of `data` (V1 `ctReceipt` or V2 `ctReceiptV2`), as the node builds it.
macro_rules! receipt {
    ($ty:ident, $data:expr, $notice:expr, $id:expr, $transfers:expr $(, $extra:ident: $value:expr)*) => {
        $ty {
            receipt_id: XsdString::new($id).unwrap(),
            notice_number: NoticeNumber::new($notice).unwrap(),
            fiscal_code: FiscalCode::new(EC).unwrap(),
            outcome: Outcome::Ok,
            creditor_reference_id: $data.creditor_reference_id.clone(),
            payment_amount: $data.payment_amount.amount(),
            description: $data.description.clone(),
            company_name: Text140::new("Comune di Esempio").unwrap(),
            office_name: None,
            debtor: $data.debtor.clone(),
            transfer_list: $transfers,
            id_psp: t35("60000000001"),
            psp_fiscal_code: None,
            psp_partita_iva: None,
            psp_company_name: Text70::new("PSP di Esempio S.p.A.").unwrap(),
            id_channel: t35("60000000001_01"),
            channel_description: t35("app"),
            payer: None,
            payment_method: Some(t35("creditCard")),
            fee: Some(Amount::from_cents(100).unwrap()),
            payment_date_time: None,
            application_date: None,
            transfer_date: None,
            metadata: None,
            stand_in: None,
            $($extra: $value,)*
        }
    };
}

fn receipt_v1(data: &PaymentPa, notice: &str, id: &str) -> PaSendRtReq {
    PaSendRtReq {
        id_pa: t35(EC),
        id_broker_pa: t35(EC),
        id_station: t35(STATION),
        receipt: receipt!(Receipt, data, notice, id, data.transfer_list.clone()),
    }
}

fn receipt_v2(data: &PaymentPaV2, notice: &str, id: &str) -> PaSendRtV2Request {
    let transfers = data
        .transfer_list
        .transfer
        .iter()
        .map(|t| TransferPaReceiptV2 {
            id_transfer: t.id_transfer,
            transfer_amount: t.transfer_amount,
            fiscal_code_pa: t.fiscal_code_pa.clone(),
            company_name: t.company_name.clone(),
            account: match &t.account {
                PaCreditAccount::Iban(iban) => ReceiptCreditAccount::Iban(iban.clone()),
                PaCreditAccount::Stamp(_) => {
                    ReceiptCreditAccount::MbdAttachment(Base64Binary(b"<marca/>".to_vec()))
                }
            },
            remittance_information: t.remittance_information.clone(),
            transfer_category: t.transfer_category.clone(),
            metadata: None,
        })
        .collect();
    let list = TransferListPaReceiptV2 {
        transfer: Bounded::new(transfers).unwrap(),
    };
    PaSendRtV2Request {
        id_pa: t35(EC),
        id_broker_pa: t35(EC),
        id_station: t35(STATION),
        receipt: receipt!(ReceiptV2, data, notice, id, list,
            payment_note: None, primary_ci_incurred_fee: None, id_bundle: None, id_ci_bundle: None),
    }
}

/// A running mock and an HTTP client for it.
struct Harness {
    mock: MockEc,
    server: MockEcServer,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        // reqwest is built without a crypto provider; plain http needs none, but building a
        // client still asks for one.
        pagonode::install_crypto_provider();
        let mock = MockEc::new(MockEcConfig::from_toml_str(CONFIG).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = mock.clone().start(listener).await.unwrap();
        Harness {
            mock,
            server,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` with `SOAPAction: action`; gives the status and body.
    async fn soap(&self, action: &str, body: String) -> (u16, String) {
        let res = self
            .http
            .post(format!("{}/pa/{STATION}", self.server.url()))
            .header("SOAPAction", action)
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Sends `req` and reads the answer as `S`, which must be schema-valid.
    async fn call<Q: Message, S: Message>(&self, req: &Q) -> S {
        let (status, body) = self
            .soap(Q::OPERATION.soap_action(), write_envelope(req))
            .await;
        assert_eq!(status, 200, "{body}");
        read(&body)
    }

    async fn verify(&self, notice: &str) -> PaVerifyPaymentNoticeRes {
        self.call(&verify_req(EC, notice)).await
    }

    async fn get_v1(&self, notice: &str) -> PaGetPaymentRes {
        self.call(&get_payment!(PaGetPaymentReq, notice)).await
    }

    async fn get_v2(&self, notice: &str) -> PaGetPaymentV2Response {
        self.call(&get_payment!(PaGetPaymentV2Request, notice))
            .await
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }
}

/// Reads a response the mock gave: it must be a valid message, not a SOAP Fault.
fn read<S: Message>(body: &str) -> S {
    match read_message::<S>(body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) => m,
        Ok(Body::Fault(f)) => panic!("unexpected SOAP Fault {f:?}"),
        Err(v) => panic!("invalid response ({v}): {body}"),
    }
}

/// The fault code of a KO response.
fn fault_code<M: KoResponse>(m: &M) -> String {
    assert_eq!(m.outcome(), Outcome::Ko);
    m.fault()
        .expect("a KO carries a fault")
        .fault_code
        .to_string()
}

#[tokio::test]
async fn v1_flow_verify_get_payment_receipt() {
    let h = Harness::start().await;
    let (status, health) = h.json(reqwest::Method::GET, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let notice = "302000100000009424";
    let verify = h.verify(notice).await;
    assert_eq!(verify.outcome, Outcome::Ok);
    let option = &verify
        .payment_list
        .as_ref()
        .unwrap()
        .payment_option_description;
    assert_eq!(option.amount.to_string(), "10.00");
    assert!(!option.all_ccp);
    assert_eq!(
        verify.payment_description.as_deref(),
        Some("Canone mensa scolastica")
    );
    assert_eq!(verify.company_name.as_deref(), Some("Comune di Esempio"));
    assert_eq!(verify.office_name.as_deref(), Some("Ufficio tributi"));

    let got = h.get_v1(notice).await;
    let data = got.data.expect("OK carries data");
    assert_eq!(data.creditor_reference_id.as_str(), "02000100000009424");
    assert_eq!(data.due_date.as_str(), "2030-12-31");
    assert_eq!(data.debtor.full_name.as_str(), "Mario Rossi");
    assert_eq!(data.company_name.as_deref(), Some("Comune di Esempio"));
    assert_eq!(
        data.transfer_list.transfer[0]
            .remittance_information
            .as_str(),
        "Mensa scolastica"
    );
    assert_eq!(
        h.mock.position(EC, notice).unwrap().status,
        PositionStatus::InProgress
    );

    let res: PaSendRtRes = h
        .call(&receipt_v1(
            &data,
            notice,
            "c110729d258c4ab1b765fe902aae41d6",
        ))
        .await;
    assert_eq!(res.outcome, Outcome::Ok);
    let position = h.mock.position(EC, notice).unwrap();
    assert_eq!(position.status, PositionStatus::Paid);
    assert_eq!(position.receipt_ids, ["c110729d258c4ab1b765fe902aae41d6"]);

    assert_eq!(
        fault_code(&h.verify(notice).await),
        "PAA_PAGAMENTO_DUPLICATO"
    );
    assert_eq!(
        fault_code(&h.get_v1(notice).await),
        "PAA_PAGAMENTO_DUPLICATO"
    );

    let receipts = h.mock.receipts();
    assert_eq!(receipts.len(), 1);
    assert_eq!((receipts[0].version, receipts[0].deliveries), (1, 1));
    assert_eq!(receipts[0].station, STATION);
    assert!(
        receipts[0]
            .request_body
            .contains("c110729d258c4ab1b765fe902aae41d6")
    );

    let (_, view) = h
        .json(
            reqwest::Method::GET,
            &format!("/positions/{EC}/{notice}"),
            None,
        )
        .await;
    assert_eq!(view["status"], "paid");
    let (status, _) = h
        .json(
            reqwest::Method::GET,
            "/positions/99999999999/302000100000009424",
            None,
        )
        .await;
    assert_eq!(status, 404);
    h.server.stop().await;
}

#[tokio::test]
async fn v2_flow_on_a_generated_notice() {
    let h = Harness::start().await;
    let notice = "302000000000001234";
    let verify = h.verify(notice).await;
    // 10.00 plus the last four digits as cents.
    assert_eq!(
        verify
            .payment_list
            .unwrap()
            .payment_option_description
            .amount
            .to_string(),
        "22.34"
    );

    let first = h.get_v2(notice).await.data.unwrap();
    let again = h.get_v2(notice).await.data.unwrap();
    // Deterministic, and a new paGetPayment voids the previous one rather than failing.
    assert_eq!(first, again);
    assert_eq!(first.company_name.as_str(), "Comune di Esempio");
    assert_eq!(first.creditor_reference_id.as_str(), &notice[1..]);
    assert_eq!(
        first.transfer_list.transfer[0].transfer_category.as_str(),
        "0101101IM"
    );
    assert_eq!(h.mock.position(EC, notice).unwrap().payment_requests, 2);

    let res: PaSendRtV2Response = h.call(&receipt_v2(&first, notice, "token-v2")).await;
    assert_eq!(res.outcome, Outcome::Ok);
    assert_eq!(
        fault_code(&h.get_v2(notice).await),
        "PAA_PAGAMENTO_DUPLICATO"
    );
    assert_eq!(h.mock.receipts()[0].version, 2);
    h.server.stop().await;
}

#[tokio::test]
async fn generated_multi_transfer_positions_add_up() {
    let h = Harness::start().await;
    for n in 1..=5u8 {
        let notice = format!("3021{n}0000000004{n}21");
        let data = h.get_v2(&notice).await.data.unwrap();
        let transfers = &data.transfer_list.transfer;
        assert_eq!(transfers.len(), usize::from(n), "{notice}");
        let sum: u64 = transfers.iter().map(|t| t.transfer_amount.cents()).sum();
        assert_eq!(sum, data.payment_amount.cents(), "{notice}");
        let owners: Vec<&str> = transfers
            .iter()
            .map(|t| t.fiscal_code_pa.as_str())
            .collect();
        let expected = [
            "77777777777",
            "11111111111",
            "22222222222",
            "11111111111",
            "22222222222",
        ];
        assert_eq!(owners, expected[..usize::from(n)], "{notice}");
        assert!(transfers.iter().all(|t| t.company_name.is_some()));
        // The same position through V1: same amounts, IBANs everywhere.
        let v1 = h.get_v1(&notice).await.data.unwrap();
        assert_eq!(v1.payment_amount, data.payment_amount);
        assert_eq!(v1.transfer_list.transfer.len(), usize::from(n));
    }
    h.server.stop().await;
}

#[tokio::test]
async fn stamp_scenario_needs_v2() {
    let h = Harness::start().await;
    let notice = "302210000000000005";
    let data = h.get_v2(notice).await.data.unwrap();
    let transfers = &data.transfer_list.transfer;
    assert_eq!(transfers.len(), 2);
    assert!(matches!(transfers[0].account, PaCreditAccount::Iban(_)));
    let PaCreditAccount::Stamp(stamp) = &transfers[1].account else {
        panic!("a stamp")
    };
    assert_eq!(stamp.provincia_residenza.as_str(), "RM");
    assert_eq!(transfers[1].transfer_amount.to_string(), "16.00");
    assert_eq!(data.payment_amount.to_string(), "26.05");
    assert_eq!(fault_code(&h.get_v1(notice).await), "PAA_SEMANTICA");
    h.server.stop().await;
}

#[tokio::test]
async fn fault_scenarios_90_to_99() {
    let h = Harness::start().await;
    for (digits, code) in [
        ("90", "PAA_PAGAMENTO_SCONOSCIUTO"),
        ("91", "PAA_PAGAMENTO_DUPLICATO"),
        ("92", "PAA_PAGAMENTO_SCADUTO"),
        ("93", "PAA_PAGAMENTO_ANNULLATO"),
        ("94", "PAA_SYSTEM_ERROR"),
    ] {
        let notice = format!("302{digits}0000000000042");
        let verify = h.verify(&notice).await;
        assert_eq!(fault_code(&verify), code);
        assert_eq!(verify.fault.unwrap().id.as_str(), EC);
        assert_eq!(fault_code(&h.get_v1(&notice).await), code);
        assert_eq!(fault_code(&h.get_v2(&notice).await), code);
    }
    // An explicit position with the same digits is served normally.
    assert_eq!(h.verify("302900000000000001").await.outcome, Outcome::Ok);
    // An expired explicit position.
    assert_eq!(
        fault_code(&h.verify("302000000000000777").await),
        "PAA_PAGAMENTO_SCADUTO"
    );

    let get = |notice: &str| write_envelope(&get_payment!(PaGetPaymentV2Request, notice));
    let (status, body) = h.soap("paGetPaymentV2", get("302950000000000042")).await;
    assert_eq!(status, 200);
    assert!(
        read_message::<PaGetPaymentV2Response>(body.as_bytes(), Limits::DEFAULT).is_err(),
        "garbage: {body}"
    );

    let (status, body) = h.soap("paGetPaymentV2", get("302960000000000042")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<paymentAmount>10.423</paymentAmount>"),
        "{body}"
    );
    assert!(read_message::<PaGetPaymentV2Response>(body.as_bytes(), Limits::DEFAULT).is_err());

    let started = Instant::now();
    let slow = h
        .http
        .post(format!("{}/pa", h.server.url()))
        .header("SOAPAction", "paGetPaymentV2")
        .body(get("302970000000000042"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));
    assert!(started.elapsed() < Duration::from_secs(5));

    let (status, body) = h.soap("paGetPaymentV2", get("302980000000000042")).await;
    assert_eq!(status, 500);
    assert!(matches!(
        read_message::<PaGetPaymentV2Response>(body.as_bytes(), Limits::DEFAULT),
        Ok(Body::Fault(_))
    ));

    let (status, body) = h.soap("paGetPaymentV2", get("302990000000000042")).await;
    assert_eq!((status, body.as_str()), (500, ""));

    let kinds: Vec<AnswerKind> = h
        .mock
        .requests()
        .iter()
        .rev()
        .take(5)
        .map(|r| r.answer)
        .collect();
    assert_eq!(
        kinds,
        [
            AnswerKind::Http500,
            AnswerKind::SoapFault,
            AnswerKind::Pending,
            AnswerKind::Invalid,
            AnswerKind::Garbage
        ]
    );
    // Stopping does not wait for the 60 s answer still pending.
    let stopping = Instant::now();
    h.server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn bad_requests_are_refused_in_band() {
    let h = Harness::start().await;
    // Schema-invalid: the required idStation is missing.
    let xml = write_envelope(&get_payment!(PaGetPaymentReq, "302000100000009424"))
        .replace(&format!("<idStation>{STATION}</idStation>"), "");
    let (status, body) = h.soap("paGetPayment", xml).await;
    assert_eq!(status, 200);
    let res: PaGetPaymentRes = read(&body);
    assert_eq!(fault_code(&res), "PAA_SINTASSI_EXTRAXSD");
    let fault = res.fault.unwrap();
    assert_eq!(fault.id.as_str(), EC);
    assert!(fault.description.unwrap().contains("idStation"));

    // Not XML at all, the operation known from SOAPAction only.
    let (status, body) = h.soap("paVerifyPaymentNotice", "<<nonsense".into()).await;
    assert_eq!(status, 200);
    let res: PaVerifyPaymentNoticeRes = read(&body);
    assert_eq!(fault_code(&res), "PAA_SINTASSI_EXTRAXSD");
    assert_eq!(res.fault.unwrap().id.as_str(), "mock-ec");

    // A well-formed request for an EC the mock does not impersonate.
    let res: PaVerifyPaymentNoticeRes = h
        .call(&verify_req("99999999999", "302000100000009424"))
        .await;
    assert_eq!(fault_code(&res), "PAA_ID_DOMINIO_ERRATO");
    assert_eq!(res.fault.unwrap().id.as_str(), "mock-ec");

    // No operation can be told: a SOAP Fault.
    let (status, body) = h.soap("", "<a/>".into()).await;
    assert_eq!(status, 500);
    assert!(matches!(
        read_message::<PaVerifyPaymentNoticeRes>(body.as_bytes(), Limits::DEFAULT),
        Ok(Body::Fault(_))
    ));

    let records = h.mock.requests();
    assert_eq!(records.len(), 4);
    assert!(!records[0].valid);
    assert!(
        records[0]
            .violation
            .as_deref()
            .unwrap()
            .contains("idStation")
    );
    assert_eq!(
        records[0].fault_code.as_deref(),
        Some("PAA_SINTASSI_EXTRAXSD")
    );
    assert_eq!(
        records[2].fault_code.as_deref(),
        Some("PAA_ID_DOMINIO_ERRATO")
    );
    assert!(records[2].valid);
    let (_, json) = h.json(reqwest::Method::GET, "/requests", None).await;
    assert_eq!(json[0]["operation"], "paGetPayment");
    assert_eq!(json[0]["answer"], "ko");
    h.server.stop().await;
}

#[tokio::test]
async fn duplicate_and_conflicting_receipts() {
    let h = Harness::start().await;
    let notice = "302000000000000100";
    let data = h.get_v1(notice).await.data.unwrap();
    let first = receipt_v1(&data, notice, "token-1");
    for _ in 0..2 {
        let res: PaSendRtRes = h.call(&first).await;
        assert_eq!(res.outcome, Outcome::Ok);
    }
    let mut changed = first.clone();
    changed.receipt.fee = Some(Amount::from_cents(250).unwrap());
    let res: PaSendRtRes = h.call(&changed).await;
    assert_eq!(fault_code(&res), "PAA_RECEIPT_DUPLICATA");

    // The same receipt to another station is another delivery record.
    let mut other_station = first.clone();
    other_station.id_station = t35("77777777777_02");
    let res: PaSendRtRes = h.call(&other_station).await;
    assert_eq!(res.outcome, Outcome::Ok);

    let receipts = h.mock.receipts();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0].deliveries, 2);
    assert_eq!(receipts[0].conflicts.len(), 1);
    assert!(
        receipts[0].conflicts[0]
            .request_body
            .contains("<fee>2.50</fee>")
    );
    assert!(receipts[0].last_received >= receipts[0].first_received);

    let (_, json) = h
        .json(
            reqwest::Method::GET,
            &format!("/receipts?station={STATION}&receipt_id=token-1"),
            None,
        )
        .await;
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["deliveries"], 2);
    assert_eq!(json[0]["conflicts"].as_array().unwrap().len(), 1);
    let (status, _) = h.json(reqwest::Method::DELETE, "/receipts", None).await;
    assert_eq!(status, 204);
    assert!(h.mock.receipts().is_empty());
    h.server.stop().await;
}

#[tokio::test]
async fn scripts_fault_delay_and_count_down() {
    let h = Harness::start().await;
    // From the configuration: one PAA_SEMANTICA, then normal answers.
    assert_eq!(
        fault_code(&h.verify("302000000000000888").await),
        "PAA_SEMANTICA"
    );
    assert_eq!(h.verify("302000000000000888").await.outcome, Outcome::Ok);

    let notice = "302000000000000200";
    h.mock
        .add_script(
            ScriptRule::new("paGetPaymentV2", ScriptAction::Fault)
                .for_notice(notice)
                .with_fault_code("PAA_PAGAMENTO_IN_CORSO")
                .times(2),
        )
        .unwrap();
    assert_eq!(
        fault_code(&h.get_v2(notice).await),
        "PAA_PAGAMENTO_IN_CORSO"
    );
    assert_eq!(
        fault_code(&h.get_v2(notice).await),
        "PAA_PAGAMENTO_IN_CORSO"
    );
    assert_eq!(h.get_v2(notice).await.outcome, Outcome::Ok);
    // The rule names the V2 operation: V1 was never affected.
    assert_eq!(h.get_v1(notice).await.outcome, Outcome::Ok);

    h.mock
        .add_script(
            ScriptRule::new("*", ScriptAction::Delay)
                .with_delay_ms(300)
                .times(1),
        )
        .unwrap();
    let started = Instant::now();
    assert_eq!(h.verify(notice).await.outcome, Outcome::Ok);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.mock.requests().last().unwrap().delay_ms, Some(300));

    // `ok` overrides a scenario.
    h.mock
        .add_script(ScriptRule::new("*", ScriptAction::Ok).for_notice("302900000000000042"))
        .unwrap();
    assert_eq!(h.verify("302900000000000042").await.outcome, Outcome::Ok);

    // Over HTTP: an HTTP 500 for one station's receipts only.
    let rule = r#"{"primitive":"paSendRT","station":"77777777777_09","action":"http_500"}"#;
    let (status, scripts) = h.json(reqwest::Method::POST, "/scripts", Some(rule)).await;
    assert_eq!(status, 201);
    assert_eq!(scripts.as_array().unwrap().len(), 2);
    let data = h.get_v1("302000000000000300").await.data.unwrap();
    let mut req = receipt_v1(&data, "302000000000000300", "token-3");
    req.id_station = t35("77777777777_09");
    let (status, body) = h.soap("paSendRT", write_envelope(&req)).await;
    assert_eq!((status, body.as_str()), (500, ""));
    req.id_station = t35(STATION);
    assert_eq!(h.call::<_, PaSendRtRes>(&req).await.outcome, Outcome::Ok);

    let (status, error) = h
        .json(
            reqwest::Method::POST,
            "/scripts",
            Some(r#"{"primitive":"paFoo","action":"ok"}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("primitive"));
    assert!(
        h.mock
            .add_script(ScriptRule::new("*", ScriptAction::Ok).times(0))
            .is_err()
    );

    let (status, _) = h.json(reqwest::Method::DELETE, "/scripts", None).await;
    assert_eq!(status, 204);
    assert!(h.mock.scripts().is_empty());
    assert_eq!(
        fault_code(&h.verify("302900000000000042").await),
        "PAA_PAGAMENTO_SCONOSCIUTO"
    );
    h.server.stop().await;
}

#[tokio::test]
async fn demand_creates_a_payable_notice() {
    let h = Harness::start().await;
    let demand = |servizio: &str| PaDemandPaymentNoticeRequest {
        id_pa: t35(EC),
        id_broker_pa: t35(EC),
        id_station: t35(STATION),
        id_servizio: ServiceCode::new(servizio).unwrap(),
        id_soggetto_servizio: ServiceCode::new("00042").unwrap(),
        dati_specifici_servizio_request: ServicePayload::from_document(
            TASSA_AUTO.as_bytes().to_vec(),
            Limits::DEFAULT,
        )
        .unwrap(),
    };
    let res: PaDemandPaymentNoticeResponse = h.call(&demand("00001")).await;
    assert_eq!(res.outcome, Outcome::Ok);
    let qr = res.qr_code.unwrap();
    assert_eq!(qr.fiscal_code.as_str(), EC);
    let notice = qr.notice_number.to_string();
    assert!(notice.starts_with("30200"), "{notice}");
    assert_eq!(
        res.payment_description.as_deref(),
        Some("Tassa automobilistica AB123CD")
    );
    assert_eq!(res.company_name.as_deref(), Some("Comune di Esempio"));
    let option = res.payment_list.unwrap().payment_option_description;
    assert_eq!(
        (option.amount.to_string().as_str(), option.all_ccp),
        ("120.00", false)
    );

    let verify = h.verify(&notice).await;
    assert_eq!(
        verify
            .payment_list
            .unwrap()
            .payment_option_description
            .amount
            .to_string(),
        "120.00"
    );
    let second: PaDemandPaymentNoticeResponse = h.call(&demand("00001")).await;
    assert_ne!(second.qr_code.unwrap().notice_number.to_string(), notice);

    let unknown: PaDemandPaymentNoticeResponse = h.call(&demand("00009")).await;
    assert_eq!(fault_code(&unknown), "PAA_SEMANTICA");
    h.server.stop().await;
}

#[test]
fn configuration_errors_name_the_key() {
    let bad = CONFIG.replace("segregation_code = \"02\"", "segregation_code = \"2\"");
    let err = MockEcConfig::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("mock_ec.service[0].segregation_code"), "{err}");
    let err = MockEcConfig::from_toml_str("[mock_ec]\n[[mock_ec.ec]]\nfiscal_code = 7\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("fiscal_code"), "{err}");
    let unknown_ec = "[[mock_ec.position]]\nfiscal_code = \"12345678901\"\nnotice_number = \"302000000000000001\"\n";
    let err = MockEcConfig::from_toml_str(unknown_ec)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mock_ec.position[0].fiscal_code"), "{err}");
}

#[test]
fn the_shipped_example_configuration_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pagonode.example.toml");
    let cfg = MockEcConfig::from_file(path).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:8090");
    assert!(cfg.ec.iter().any(|ec| ec.fiscal_code == EC));
    let err = MockEcConfig::from_file("/nonexistent/pagonode.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/nonexistent/pagonode.toml:"), "{err}");
}
