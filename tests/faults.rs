//! Every fault code the node answers PSPs with, each triggered the way a real PSP triggers it,
//! over real HTTP: HTTP 200, the operation's response element, `outcome=KO`, the code, `id` =
//! `NodoDeiPagamentiSPC`, and the official faultString/description where the official BDD suite
//! checks one.

mod common;

use common::*;
use pagonode::codec::common::FaultBean;
use pagonode::codec::node_for_psp::*;
use pagonode::codec::service::ServicePayload;
use pagonode::codec::types::*;
use pagonode::codec::{Body, Limits, read_any, write_envelope};
use pagonode::config::ServiceProviderConfig;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const NFP: &str = "http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd";
const EXTRAXSD: &str = "PPT_SINTASSI_EXTRAXSD";
const EXTRAXSD_FS: &str = "Errore di sintassi extra XSD.";
const IN_CORSO: &str = "Pagamento in attesa risulta in corso al sistema pagoPA";

/// A PSP of the test configuration with one thing changed.
const fn psp(
    id: &'static str,
    broker: &'static str,
    channel: &'static str,
    password: &'static str,
) -> Psp {
    Psp {
        id,
        broker,
        channel,
        password,
    }
}

const UNKNOWN: &str = "69999999999";
/// PSP `60000000003` is disabled (its broker and channel are fine).
const PSP_DISABLED: Psp = psp("60000000003", "60000000003", "60000000003_01", "pwdpwdpwd");
/// Channel `60000000001_07` has no ATTIVATO_PRESSO_PSP payment model.
const PSP1_CH07: Psp = psp("60000000001", "60000000001", "60000000001_07", "pwdpwdpwd");

fn syntax_ko<Res: pagonode::codec::KoResponse + std::fmt::Debug>(
    status: u16,
    body: &str,
) -> FaultBean {
    assert_eq!(status, 200, "{body}");
    let f = expect_fault::<Res>(body, EXTRAXSD);
    assert_eq!(f.fault_string.as_str(), EXTRAXSD_FS);
    f
}

fn activate_text(nn: &str) -> String {
    write_envelope(&activate(&PSP1, EC, nn, 1000, None))
}

fn passaporto() -> ServicePayload {
    let doc = "<pp:pagamentoPratica xmlns:pp=\"http://PuntoAccessoPSP.spcoop.gov.it/pagamentoPratica\"><pp:codicePratica>A001</pp:codicePratica><pp:pagatore><pp:codiceFiscalePagatore>RSSMRA80A01H501U</pp:codiceFiscalePagatore><pp:denominazionePagatore>Mario Rossi</pp:denominazionePagatore></pp:pagatore><pp:intestatario><pp:codiceFiscaleIntestatario>RSSLCU10A41H501X</pp:codiceFiscaleIntestatario><pp:denominazioneIntestatario>Lucia Rossi</pp:denominazioneIntestatario></pp:intestatario></pp:pagamentoPratica>";
    ServicePayload::from_document(doc.as_bytes().to_vec(), Limits::DEFAULT).unwrap()
}

// ------------------------------------------------------------------ PPT_SINTASSI_EXTRAXSD

#[tokio::test]
async fn broken_requests_get_extraxsd_in_the_operation_response() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let good = activate_text(&nn);
    let act = Some("activatePaymentNotice");

    // Not well-formed XML.
    let (s, b) = h.post_query(None, act, &good[..good.len() - 40]).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // SOAP 1.2 envelope namespace.
    let (s, b) = h.post_query(None, act, good.replace(SOAP11, SOAP12)).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // Missing Body, empty Body, empty root element.
    let no_body = format!("<soapenv:Envelope xmlns:soapenv=\"{SOAP11}\"></soapenv:Envelope>");
    let (s, b) = h.post_query(None, act, no_body).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let empty_body =
        format!("<soapenv:Envelope xmlns:soapenv=\"{SOAP11}\"><soapenv:Body/></soapenv:Envelope>");
    let (s, b) = h.post_query(None, act, empty_body.clone()).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let empty_root = format!(
        "<soapenv:Envelope xmlns:soapenv=\"{SOAP11}\" xmlns:nfp=\"{NFP}\"><soapenv:Body><nfp:activatePaymentNoticeReq/></soapenv:Body></soapenv:Envelope>"
    );
    let (s, b) = h.post_query(None, act, empty_root).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // A child element in the target namespace (the schema's children are unqualified).
    let qualified = good.replace(
        "<idPSP>60000000001</idPSP>",
        "<nfp:idPSP>60000000001</nfp:idPSP>",
    );
    assert_ne!(qualified, good);
    let (s, b) = h.post_query(None, act, qualified).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // Password missing, or 7 characters (8..15 required).
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace("<password>pwdpwdpwd</password>", ""),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                "<password>pwdpwdpwd</password>",
                "<password>pwdpwdp</password>",
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // Amount with one decimal, three decimals, a comma.
    for amount in ["10.1", "10.123", "10,00"] {
        let (s, b) = h
            .post_query(
                None,
                act,
                good.replace(
                    "<amount>10.00</amount>",
                    &format!("<amount>{amount}</amount>"),
                ),
            )
            .await;
        syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    }
    // An element the schema does not have; a repeated one; out of order.
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace("<amount>", "<colour>red</colour><amount>"),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                "<amount>10.00</amount>",
                "<amount>10.00</amount><amount>10.00</amount>",
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                "<idPSP>60000000001</idPSP><idBrokerPSP>60000000001</idBrokerPSP>",
                "<idBrokerPSP>60000000001</idBrokerPSP><idPSP>60000000001</idPSP>",
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // An idempotency key that breaks the pattern; expirationTime above the schema's 1800000;
    // an empty paymentNote; a 17-digit notice number.
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                "<qrCode>",
                "<idempotencyKey>60000000001-1244565744</idempotencyKey><qrCode>",
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                "</qrCode>",
                "</qrCode><expirationTime>1800001</expirationTime>",
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace("</amount>", "</amount><paymentNote></paymentNote>"),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(
            None,
            act,
            good.replace(
                &format!("<noticeNumber>{nn}</noticeNumber>"),
                &format!("<noticeNumber>{}</noticeNumber>", &nn[1..]),
            ),
        )
        .await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);

    // The same broken request on other primitives gets their own response element.
    let (s, b) = h
        .post_query(None, Some("verifyPaymentNotice"), empty_body.clone())
        .await;
    syntax_ko::<VerifyPaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(None, Some("activatePaymentNoticeV2"), empty_body.clone())
        .await;
    syntax_ko::<ActivatePaymentNoticeV2Response>(s, &b);
    let (s, b) = h
        .post_query(None, Some("sendPaymentOutcome"), empty_body.clone())
        .await;
    syntax_ko::<SendPaymentOutcomeRes>(s, &b);
    let (s, b) = h
        .post_query(None, Some("sendPaymentOutcomeV2"), empty_body.clone())
        .await;
    syntax_ko::<SendPaymentOutcomeV2Response>(s, &b);
    let (s, b) = h
        .post_query(None, Some("demandPaymentNotice"), empty_body)
        .await;
    syntax_ko::<DemandPaymentNoticeResponse>(s, &b);

    // None of this touched the notice: it can still be activated.
    activate_ok(&h, &PSP1, EC, &nn).await;
    h.stop().await;
}

#[tokio::test]
async fn oversize_body_is_a_syntax_error() {
    let h = Harness::start().await;
    assert_eq!(h.config.node.max_body_bytes, 65536);
    let nn = notice("02", "00");
    let padding = format!("<!--{}-->", "x".repeat(70_000));
    let big = activate_text(&nn).replace("<soapenv:Body>", &format!("<soapenv:Body>{padding}"));
    assert!(big.len() > 65536);
    let (s, b) = h.post_query(None, Some("activatePaymentNotice"), big).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    // Just under the limit, the same request is served.
    let fits = activate_text(&nn).replace(
        "<soapenv:Body>",
        &format!("<soapenv:Body><!--{}-->", "x".repeat(60_000)),
    );
    assert!(fits.len() < 65536);
    let (s, b) = h
        .post_query(None, Some("activatePaymentNotice"), fits)
        .await;
    assert_eq!(s, 200);
    token_of(&b);
    h.stop().await;
}

#[tokio::test]
async fn the_operation_comes_from_soapaction_query_or_body_root() {
    let h = Harness::start().await;
    let broken =
        format!("<soapenv:Envelope xmlns:soapenv=\"{SOAP11}\"><soapenv:Body></soapenv:Envelope>");
    // SOAPAction unquoted and quoted.
    let (s, b) = h
        .post_query(None, Some("verifyPaymentNotice"), broken.clone())
        .await;
    syntax_ko::<VerifyPaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(None, Some("\"verifyPaymentNotice\""), broken.clone())
        .await;
    syntax_ko::<VerifyPaymentNoticeRes>(s, &b);
    let (s, b) = h
        .post_query(None, Some("\"activatePaymentNoticeV2\""), broken.clone())
        .await;
    syntax_ko::<ActivatePaymentNoticeV2Response>(s, &b);
    // ?soapAction= when there is no header.
    let (s, b) = h
        .post_query(Some("soapAction=sendPaymentOutcome"), None, broken.clone())
        .await;
    syntax_ko::<SendPaymentOutcomeRes>(s, &b);
    let (s, b) = h
        .post_query(Some("soapAction=demandPaymentNotice"), None, broken)
        .await;
    syntax_ko::<DemandPaymentNoticeResponse>(s, &b);
    // The Body's root when there is neither, even in a broken (SOAP 1.2) envelope.
    let nn = notice("02", "00");
    let soap12 = activate_text(&nn).replace(SOAP11, SOAP12);
    let (s, b) = h.post_query(None, None, soap12).await;
    syntax_ko::<ActivatePaymentNoticeRes>(s, &b);
    let truncated = write_envelope(&outcome(&PSP1, "abc", true, None));
    let (s, b) = h
        .post_query(None, None, &truncated[..truncated.len() / 2])
        .await;
    syntax_ko::<SendPaymentOutcomeRes>(s, &b);
    // A valid request without SOAPAction is served from its root (with an XML declaration).
    let (s, b) = h
        .post_query(
            None,
            None,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>{}",
                activate_text(&nn)
            ),
        )
        .await;
    assert_eq!(s, 200);
    token_of(&b);
    h.stop().await;
}

#[tokio::test]
async fn soapaction_naming_another_operation_is_soapaction_errata() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let (s, b) = h
        .post_query(None, Some("verifyPaymentNotice"), activate_text(&nn))
        .await;
    assert_eq!(s, 200);
    expect_fault::<VerifyPaymentNoticeRes>(&b, "PPT_SOAPACTION_ERRATA");
    let (s, b) = h
        .post_query(None, Some("sendPaymentOutcome"), activate_text(&nn))
        .await;
    assert_eq!(s, 200);
    expect_fault::<SendPaymentOutcomeRes>(&b, "PPT_SOAPACTION_ERRATA");
    // Nothing was activated.
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 0);
    activate_ok(&h, &PSP2, EC, &nn).await;
    h.stop().await;
}

#[tokio::test]
async fn unrecognisable_request_is_a_soap_fault_with_a_body() {
    let h = Harness::start().await;
    for (action, body) in [
        (None, "<hello/>".to_string()),
        (None, String::new()),
        (Some("paGetPayment"), activate_text(&notice("02", "00"))),
    ] {
        let (s, b) = h.post_query(None, action, body).await;
        assert_eq!(s, 500, "{b}");
        assert!(!b.trim().is_empty(), "an empty 500");
        match read_any(b.as_bytes(), Limits::DEFAULT) {
            Ok(Body::Fault(f)) => assert!(f.faultcode.0.ends_with("Client"), "{b}"),
            other => panic!("not a SOAP Fault: {other:?}\n{b}"),
        }
    }
    h.stop().await;
}

// ------------------------------------------------------------------ PSP, broker, channel, password

/// Checks that every primitive refuses `who` with `code` (and the description, if given).
async fn refused_everywhere(h: &Harness, who: &Psp, code: &str, description: Option<&str>) {
    let nn = notice("02", "00");
    let mut faults = vec![
        h.refused::<_, VerifyPaymentNoticeRes>(&verify(who, EC, &nn), code)
            .await,
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(who, EC, &nn, 1000, Some(&key(&PSP1))),
            code,
        )
        .await,
        h.refused::<_, ActivatePaymentNoticeV2Response>(
            &activate_v2(who, EC, &nn, 1000, None),
            code,
        )
        .await,
        h.refused::<_, SendPaymentOutcomeRes>(
            &outcome(who, "0123456789abcdef0123456789abcdef", true, None),
            code,
        )
        .await,
        h.refused::<_, SendPaymentOutcomeV2Response>(
            &outcome_v2(who, &["0123456789abcdef0123456789abcdef"], false, None),
            code,
        )
        .await,
        h.refused::<_, DemandPaymentNoticeResponse>(
            &demand(who, "00042", tassa_auto("AB123CD")),
            code,
        )
        .await,
    ];
    if let Some(d) = description {
        for f in faults.drain(..) {
            assert_eq!(f.description.as_deref(), Some(d));
        }
    }
    assert_eq!(
        h.ec_calls("paVerifyPaymentNotice", &nn) + h.ec_calls("paGetPaymentV2", &nn),
        0,
        "the EC was called"
    );
}

#[tokio::test]
async fn psp_broker_channel_and_password_faults_on_every_primitive() {
    let h = Harness::start().await;
    let p1 = PSP1;
    refused_everywhere(
        &h,
        &psp(UNKNOWN, p1.broker, p1.channel, p1.password),
        "PPT_PSP_SCONOSCIUTO",
        None,
    )
    .await;
    refused_everywhere(&h, &PSP_DISABLED, "PPT_PSP_DISABILITATO", None).await;
    refused_everywhere(
        &h,
        &psp(p1.id, UNKNOWN, p1.channel, p1.password),
        "PPT_INTERMEDIARIO_PSP_SCONOSCIUTO",
        None,
    )
    .await;
    refused_everywhere(
        &h,
        &psp(p1.id, "60000000009", "60000000009_01", p1.password),
        "PPT_INTERMEDIARIO_PSP_DISABILITATO",
        None,
    )
    .await;
    refused_everywhere(
        &h,
        &psp(p1.id, p1.broker, "60000000001_99", p1.password),
        "PPT_CANALE_SCONOSCIUTO",
        None,
    )
    .await;
    refused_everywhere(
        &h,
        &psp(p1.id, p1.broker, "60000000001_02", p1.password),
        "PPT_CANALE_DISABILITATO",
        None,
    )
    .await;
    refused_everywhere(
        &h,
        &psp(p1.id, p1.broker, p1.channel, "wrongpwd1"),
        "PPT_AUTENTICAZIONE",
        None,
    )
    .await;
    // The broker does not own the channel; the PSP is not allowed on the channel.
    let wrong_broker = psp(p1.id, PSP2.broker, p1.channel, p1.password);
    refused_everywhere(
        &h,
        &wrong_broker,
        "PPT_AUTORIZZAZIONE",
        Some("Configurazione intermediario-canale non corretta"),
    )
    .await;
    let wrong_psp = psp(PSP2.id, p1.broker, p1.channel, p1.password);
    refused_everywhere(
        &h,
        &wrong_psp,
        "PPT_AUTORIZZAZIONE",
        Some("Configurazione intermediario-canale non corretta"),
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn channel_without_attivato_presso_psp_cannot_verify_or_activate_but_can_send_outcomes() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let want = "Il canale non è di tipo 'ATTIVATO_PRESSO_PSP'";
    let f = h
        .refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1_CH07, EC, &nn), "PPT_AUTORIZZAZIONE")
        .await;
    assert_eq!(f.description.as_deref(), Some(want));
    let f = h
        .refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP1_CH07, EC, &nn, 1000, None),
            "PPT_AUTORIZZAZIONE",
        )
        .await;
    assert_eq!(f.description.as_deref(), Some(want));
    let f = h
        .refused::<_, ActivatePaymentNoticeV2Response>(
            &activate_v2(&PSP1_CH07, EC, &nn, 1000, None),
            "PPT_AUTORIZZAZIONE",
        )
        .await;
    assert_eq!(f.description.as_deref(), Some(want));
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 0);
    // The payment model is not checked on sendPaymentOutcome (official BDD test SEM_SPO_07).
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    let b = h.send(&outcome(&PSP1_CH07, &token, true, None)).await;
    ok::<SendPaymentOutcomeRes>(&b);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn expiration_time_above_the_maximum_is_refused_not_clamped() {
    let h = Harness::start_with(|c| c.timings.token_max_ms = 7000).await;
    let nn = notice("02", "00");
    let f = h
        .refused::<_, ActivatePaymentNoticeRes>(
            &activate_exp(&PSP1, EC, &nn, 7001, None),
            "PPT_AUTORIZZAZIONE",
        )
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some("expirationTime deve essere <= 7000")
    );
    let mut v2 = activate_v2(&PSP1, EC, &nn, 1000, None);
    v2.expiration_time = Some(ExpirationTime::from_millis(1_800_000).unwrap());
    let f = h
        .refused::<_, ActivatePaymentNoticeV2Response>(&v2, "PPT_AUTORIZZAZIONE")
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some("expirationTime deve essere <= 7000")
    );
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 0);
    // The maximum itself is fine.
    token_of(&h.send(&activate_exp(&PSP1, EC, &nn, 7000, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn checks_run_in_the_official_order() {
    let h = Harness::start().await;
    let p1 = PSP1;
    let nn = notice("02", "00");
    let bad = "wrongpwd1";
    let act = |who: Psp, fc: &str, n: String| activate(&who, fc, &n, 1000, None);
    // Unknown PSP and wrong password: the PSP first.
    let r = act(psp(UNKNOWN, p1.broker, p1.channel, bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_PSP_SCONOSCIUTO")
        .await;
    // Disabled PSP and unknown broker: the PSP first.
    let r = act(psp(PSP_DISABLED.id, UNKNOWN, UNKNOWN, bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_PSP_DISABILITATO")
        .await;
    // Unknown broker, unknown channel, wrong password: the broker.
    let r = act(psp(p1.id, UNKNOWN, UNKNOWN, bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_INTERMEDIARIO_PSP_SCONOSCIUTO")
        .await;
    // Disabled channel and wrong password: the channel.
    let r = act(psp(p1.id, p1.broker, "60000000001_02", bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_CANALE_DISABILITATO")
        .await;
    // Wrong password and a broker that does not own the channel: the password.
    let r = act(psp(p1.id, PSP2.broker, p1.channel, bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_AUTENTICAZIONE")
        .await;
    // Wrong password and an unknown EC: the password.
    let r = act(
        psp(p1.id, p1.broker, p1.channel, bad),
        "12345678901",
        nn.clone(),
    );
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_AUTENTICAZIONE")
        .await;
    h.refused::<_, VerifyPaymentNoticeRes>(
        &verify(&psp(p1.id, p1.broker, p1.channel, bad), "12345678901", &nn),
        "PPT_AUTENTICAZIONE",
    )
    .await;
    // Wrong payment model and an unknown EC: the payment model.
    let r = act(PSP1_CH07, "12345678901", nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_AUTORIZZAZIONE")
        .await;
    // Unknown EC and a notice no station serves: the EC.
    let r = act(p1, "12345678901", "511000000000000001".into());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_DOMINIO_SCONOSCIUTO")
        .await;
    // Disabled EC and a notice no station serves: the EC.
    let r = act(p1, "12121212121", "311000000000000001".into());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_DOMINIO_DISABILITATO")
        .await;
    // A notice in progress, and a wrong password: the password.
    activate_ok(&h, &PSP2, EC, &nn).await;
    let r = act(psp(p1.id, p1.broker, p1.channel, bad), EC, nn.clone());
    h.refused::<_, ActivatePaymentNoticeRes>(&r, "PPT_AUTENTICAZIONE")
        .await;
    h.refused::<_, VerifyPaymentNoticeRes>(
        &verify(&psp(p1.id, p1.broker, p1.channel, bad), EC, &nn),
        "PPT_AUTENTICAZIONE",
    )
    .await;
    h.stop().await;
}

// ------------------------------------------------------------------ EC, broker, station

#[tokio::test]
async fn domain_broker_and_station_faults_on_verify_and_activate() {
    let h = Harness::start().await;
    let cases: [(&str, String, &str, &str); 8] = [
        (
            "12345678901",
            notice("02", "00"),
            "PPT_DOMINIO_SCONOSCIUTO",
            "Identificativo Dominio sconosciuto.",
        ),
        (
            "12121212121",
            notice("02", "00"),
            "PPT_DOMINIO_DISABILITATO",
            "Dominio disabilitato.",
        ),
        // Aux digit 5 does not exist; aux 3 with segregation code 11, and aux 0 with application
        // code 02, have no station.
        (
            EC,
            format!("5{}", &notice("02", "00")[1..]),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA",
            "IdentificativoStazioneRichiedente sconosciuto.",
        ),
        (
            EC,
            notice("11", "00"),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA",
            "IdentificativoStazioneRichiedente sconosciuto.",
        ),
        (
            EC,
            format!("0{}", &notice("02", "00")[1..]),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA",
            "IdentificativoStazioneRichiedente sconosciuto.",
        ),
        // Segregation code 06: a disabled station.
        (
            EC,
            notice("06", "00"),
            "PPT_STAZIONE_INT_PA_DISABILITATA",
            "Stazione disabilitata.",
        ),
        // Segregation code 08: a station whose EC broker is disabled.
        (
            EC,
            notice("08", "00"),
            "PPT_INTERMEDIARIO_PA_DISABILITATO",
            "Intermediario dominio disabilitato.",
        ),
        (
            EC3,
            notice("01", "00"),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA",
            "IdentificativoStazioneRichiedente sconosciuto.",
        ),
    ];
    for (fc, nn, code, fault_string) in &cases {
        let f = h
            .refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, fc, nn), code)
            .await;
        assert_eq!(f.fault_string.as_str(), *fault_string, "{code}");
        let f = h
            .refused::<_, ActivatePaymentNoticeRes>(&activate(&PSP1, fc, nn, 1000, None), code)
            .await;
        assert_eq!(f.fault_string.as_str(), *fault_string, "{code}");
        let f = h
            .refused::<_, ActivatePaymentNoticeV2Response>(
                &activate_v2(&PSP2, fc, nn, 1000, None),
                code,
            )
            .await;
        assert_eq!(f.fault_string.as_str(), *fault_string, "{code}");
    }
    assert!(
        h.ec.requests().is_empty(),
        "no EC was called: {:?}",
        h.ec.requests()
    );
    h.stop().await;
}

fn provider(id: &str, ec: &str, station: Option<&str>) -> ServiceProviderConfig {
    ServiceProviderConfig {
        id: id.into(),
        ec: ec.into(),
        station: station.map(str::to_string),
        valid_from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        valid_to: None,
        commission: None,
    }
}

#[tokio::test]
async fn demand_catalogue_domain_and_station_faults() {
    let h = Harness::start_with(|c| {
        let tassa = c.service.iter_mut().find(|s| s.id == "00001").unwrap();
        // 00050 and 00051 (an unknown and a disabled EC) come from the TOML file, where they
        // load with a warning.
        tassa.provider.extend([
            provider("00052", EC, Some("77777777777_08")),
            provider("00053", EC, Some("77777777777_06")),
            // A station not enabled for spontaneous payments, named or looked up.
            provider("00054", EC, Some("77777777777_05")),
            provider("00055", EC3, None),
            provider("00056", EC, Some("77777777777_99")),
        ]);
    })
    .await;
    let ask = |s: &'static str| demand(&PSP1, s, tassa_auto("AB123CD"));
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(&ask("00099"), "PPT_SERVIZIO_SCONOSCIUTO")
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some("Servizio inesistente sul sistema pagoPA")
    );
    // Provider 00044 becomes valid in 2099.
    h.refused::<_, DemandPaymentNoticeResponse>(&ask("00044"), "PPT_SERVIZIO_NONATTIVO")
        .await;
    // Provider 00045 offers a version-1 (legacy) service.
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(&ask("00045"), "PPT_VERSIONE_SERVIZIO")
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some("Versione servizio incompatibile con la chiamata")
    );
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(&ask("00050"), "PPT_DOMINIO_SCONOSCIUTO")
        .await;
    assert_eq!(
        f.fault_string.as_str(),
        "Identificativo Dominio sconosciuto."
    );
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(&ask("00051"), "PPT_DOMINIO_DISABILITATO")
        .await;
    assert_eq!(f.fault_string.as_str(), "Dominio disabilitato.");
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(
            &ask("00052"),
            "PPT_INTERMEDIARIO_PA_DISABILITATO",
        )
        .await;
    assert_eq!(
        f.fault_string.as_str(),
        "Intermediario dominio disabilitato."
    );
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(
            &ask("00053"),
            "PPT_STAZIONE_INT_PA_DISABILITATA",
        )
        .await;
    assert_eq!(f.fault_string.as_str(), "Stazione disabilitata.");
    for s in ["00054", "00055", "00056"] {
        let f = h
            .refused::<_, DemandPaymentNoticeResponse>(&ask(s), "PPT_STAZIONE_INT_PA_SCONOSCIUTA")
            .await;
        assert_eq!(
            f.fault_string.as_str(),
            "IdentificativoStazioneRichiedente sconosciuto."
        );
    }
    // A valid document of another catalogue schema (Passaporto for the car tax).
    h.refused::<_, DemandPaymentNoticeResponse>(
        &demand(&PSP1, "00042", passaporto()),
        "PPT_SINTASSI_XSD",
    )
    .await;
    // ... and of its own schema on the Passaporto service's side, the other way round.
    h.refused::<_, DemandPaymentNoticeResponse>(
        &demand(&PSP1, "00043", tassa_auto("AB123CD")),
        "PPT_SINTASSI_XSD",
    )
    .await;
    assert!(
        h.ec.requests().is_empty(),
        "no EC was called: {:?}",
        h.ec.requests()
    );
    // The right document goes through.
    ok::<DemandPaymentNoticeResponse>(&h.send(&demand(&PSP1, "00043", passaporto())).await);
    h.stop().await;
}

// ------------------------------------------------------------------ position state

#[tokio::test]
async fn pagamento_in_corso_on_a_notice_being_paid() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let token = token_of(&h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k))).await);
    let check = |f: FaultBean| {
        assert_eq!(f.fault_string.as_str(), IN_CORSO);
        assert_eq!(f.description.as_deref(), Some(IN_CORSO));
    };
    check(
        h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP2, EC, &nn), "PPT_PAGAMENTO_IN_CORSO")
            .await,
    );
    check(
        h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), "PPT_PAGAMENTO_IN_CORSO")
            .await,
    );
    check(
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP2, EC, &nn, 1000, None),
            "PPT_PAGAMENTO_IN_CORSO",
        )
        .await,
    );
    check(
        h.refused::<_, ActivatePaymentNoticeV2Response>(
            &activate_v2(&PSP2, EC, &nn, 1000, None),
            "PPT_PAGAMENTO_IN_CORSO",
        )
        .await,
    );
    // The same PSP with another key, or none.
    check(
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))),
            "PPT_PAGAMENTO_IN_CORSO",
        )
        .await,
    );
    check(
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP1, EC, &nn, 1000, None),
            "PPT_PAGAMENTO_IN_CORSO",
        )
        .await,
    );
    // One paGetPayment, and the token is still the one that pays.
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    assert_eq!(h.ec_calls("paVerifyPaymentNotice", &nn), 0);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn pagamento_duplicato_on_a_paid_notice() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    // PAID (receipt maybe still in flight), then NOTIFIED.
    for round in 0..2 {
        h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP2, EC, &nn), "PPT_PAGAMENTO_DUPLICATO")
            .await;
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP2, EC, &nn, 1000, None),
            "PPT_PAGAMENTO_DUPLICATO",
        )
        .await;
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))),
            "PPT_PAGAMENTO_DUPLICATO",
        )
        .await;
        h.refused::<_, ActivatePaymentNoticeV2Response>(
            &activate_v2(&PSP1, EC, &nn, 1000, None),
            "PPT_PAGAMENTO_DUPLICATO",
        )
        .await;
        if round == 0 {
            h.wait_receipts(1, 10).await;
        }
    }
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    assert_eq!(h.ec_calls("paVerifyPaymentNotice", &nn), 0);
    h.stop().await;
}

// ------------------------------------------------------------------ sendPaymentOutcome

#[tokio::test]
async fn unknown_token_and_another_psps_token() {
    let h = Harness::start().await;
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(
            &outcome(&PSP1, "ffffffffffffffffffffffffffffffff", true, None),
            "PPT_TOKEN_SCONOSCIUTO",
        )
        .await;
    assert_eq!(f.description.as_deref(), Some("token unknown"));
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(&PSP1, &["ffffffffffffffffffffffffffffffff"], false, None),
        "PPT_TOKEN_SCONOSCIUTO",
    )
    .await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP2, &token, true, None),
        "PPT_TOKEN_SCONOSCIUTO",
    )
    .await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP2, &token, false, None),
        "PPT_TOKEN_SCONOSCIUTO",
    )
    .await;
    // The other PSP's attempts changed nothing: the owner's outcome is the first.
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].receipt_id, token);
    h.stop().await;
}

#[tokio::test]
async fn second_outcome_is_esito_gia_acquisito_concorde_or_discorde() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    let fs = "L'esito del pagamento risulta già acquisito dal sistema pagoPA.";
    let json = format!(
        "{{\"applicationDate\":\"2030-01-15\",\"fee\":1.00,\"outcome\":\"OK\",\"payerEntityUniqueIdentifierValue\":\"RSSMRA80A01H501U\",\"paymentChannel\":\"app\",\"paymentMethod\":\"creditCard\",\"paymentToken\":\"{token}\",\"transferDate\":\"2030-01-16\"}}"
    );
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(
            &outcome(&PSP1, &token, true, None),
            "PPT_ESITO_GIA_ACQUISITO",
        )
        .await;
    assert_eq!(f.fault_string.as_str(), fs);
    assert_eq!(
        f.description.as_deref(),
        Some(format!("Esito concorde: {json}").as_str())
    );
    // Other details, same outcome: still concorde, still the first outcome's data.
    let mut other = outcome(&PSP1, &token, true, None);
    other.details.as_mut().unwrap().payment_method = PaymentMethod::Cash;
    other.details.as_mut().unwrap().fee = Amount::from_cents(250).unwrap();
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(&other, "PPT_ESITO_GIA_ACQUISITO")
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some(format!("Esito concorde: {json}").as_str())
    );
    // The opposite outcome.
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(
            &outcome(&PSP1, &token, false, None),
            "PPT_ESITO_GIA_ACQUISITO",
        )
        .await;
    assert_eq!(f.fault_string.as_str(), fs);
    assert!(
        f.description
            .as_deref()
            .unwrap()
            .starts_with("Esito discorde"),
        "{f:?}"
    );
    // V2 on the same token.
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(&PSP1, &[&token], true, None),
        "PPT_ESITO_GIA_ACQUISITO",
    )
    .await;
    // One receipt, delivered once.
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(h.settled_copies().await, (1, 0));
    assert_eq!(h.ec.receipts().len(), 1);
    assert_eq!(receipts[0].deliveries, 1);

    // KO then KO: also already acquired (concorde).
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, false, None)).await);
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(
            &outcome(&PSP1, &token, false, None),
            "PPT_ESITO_GIA_ACQUISITO",
        )
        .await;
    assert_eq!(
        f.description.as_deref(),
        Some(
            format!("Esito concorde: {{\"outcome\":\"KO\",\"paymentToken\":\"{token}\"}}").as_str()
        )
    );
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(
            &outcome(&PSP1, &token, true, None),
            "PPT_ESITO_GIA_ACQUISITO",
        )
        .await;
    assert!(
        f.description
            .as_deref()
            .unwrap()
            .starts_with("Esito discorde"),
        "{f:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn outcome_ok_without_details_is_semantica_and_changes_nothing() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    let mut r = outcome(&PSP1, &token, true, None);
    r.details = None;
    let f = h
        .refused::<_, SendPaymentOutcomeRes>(&r, "PPT_SEMANTICA")
        .await;
    assert_eq!(f.fault_string.as_str(), "Errore semantico.");
    let mut r2 = outcome_v2(&PSP1, &[&token], true, None);
    r2.details = None;
    h.refused::<_, SendPaymentOutcomeV2Response>(&r2, "PPT_SEMANTICA")
        .await;
    // Still in progress, still payable by its owner.
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn a_multi_token_outcome_is_refused_whole_when_one_token_is_not_the_psps() {
    let h = Harness::start().await;
    let t1 = activate_ok(&h, &PSP1, EC, &notice("02", "00")).await;
    let t2 = activate_ok(&h, &PSP1, EC, &notice("02", "00")).await;
    let other = activate_ok(&h, &PSP2, EC, &notice("02", "00")).await;
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(
            &PSP1,
            &[&t1, "ffffffffffffffffffffffffffffffff"],
            true,
            None,
        ),
        "PPT_TOKEN_SCONOSCIUTO",
    )
    .await;
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(&PSP1, &[&t1, &other], true, None),
        "PPT_TOKEN_SCONOSCIUTO",
    )
    .await;
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(&PSP1, &[&t1, &t1], true, None),
        "PPT_SEMANTICA",
    )
    .await;
    // None of them got an outcome: both pay together now, one receipt each.
    ok::<SendPaymentOutcomeV2Response>(&h.send(&outcome_v2(&PSP1, &[&t1, &t2], true, None)).await);
    let receipts = h.wait_receipts(2, 10).await;
    let mut ids: Vec<&str> = receipts.iter().map(|r| r.receipt_id.as_str()).collect();
    ids.sort();
    let mut want = vec![t1.as_str(), t2.as_str()];
    want.sort();
    assert_eq!(ids, want);
    h.stop().await;
}

/// Every test above, again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
