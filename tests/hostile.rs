//! Hostile peers over real HTTP (issue 12): what a stranger, a PSP or a station sends cannot
//! crash the node, occupy it, or get a secret stored; after each attack a good request is still
//! answered correctly.
//!
//! This part covers the documents themselves: nesting far deeper than a recursive reader
//! survives (in a request's Header, after its Body, in its base64 service document, in a
//! station's answer to paGetPayment and to paSendRT, across a restart), inputs that were
//! quadratic for earlier scans (operation detection, password masking, namespace lookups,
//! duplicate attributes), and every way XML can spell a password.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pagonode::codec::envelope::NS_SOAP;
use pagonode::codec::node_for_psp::*;
use pagonode::codec::types::encode_base64;
use pagonode::codec::write_envelope;

const SYNTAX: &str = "PPT_SINTASSI_EXTRAXSD";
const BAD_RESPONSE: &str = "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE";

/// Deeper than the recursive reader survived (it overflowed its stack at 5,000 levels in a
/// release build, fewer in a debug one), and small enough for the tests' 64 KiB bodies.
const DEPTH: usize = 8_000;

/// A namespace-qualified element (as SOAP Header entries must be) holding `depth` levels.
fn nested(depth: usize) -> String {
    format!(
        "<h:x xmlns:h='urn:h'>{}{}</h:x>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    )
}

/// An envelope with `extra` in a SOAP Header.
fn in_header(envelope: &str, extra: &str) -> String {
    envelope.replacen(
        "<soapenv:Body>",
        &format!("<soapenv:Header>{extra}</soapenv:Header><soapenv:Body>"),
        1,
    )
}

/// An envelope with `extra` after its Body.
fn after_body(envelope: &str, extra: &str) -> String {
    envelope.replacen("</soapenv:Body>", &format!("</soapenv:Body>{extra}"), 1)
}

/// A good request gets its right answer.
async fn still_serves(h: &Harness) {
    let nn = notice("02", "00");
    let res: VerifyPaymentNoticeRes = ok(&h.send(&verify(&PSP1, EC, &nn)).await);
    assert!(res.payment_list.is_some());
}

#[tokio::test]
async fn deep_requests_get_a_syntax_fault() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let request = write_envelope(&activate(&PSP1, EC, &nn, 1000, None));
    for place in [in_header, after_body] {
        let attack = place(&request, &nested(DEPTH));
        assert!(attack.len() < 65_536, "within the body limit");
        // With a SOAPAction, and without (the operation found by scanning the body).
        for action in [Some("activatePaymentNotice"), None] {
            let (status, body) = h.post(action, attack.as_bytes()).await;
            assert_eq!(status, 200, "{body}");
            let fault = expect_fault::<ActivatePaymentNoticeRes>(&body, SYNTAX);
            let why = fault.description.map(|d| d.to_string()).unwrap_or_default();
            assert!(why.contains("deeper than 64"), "{why}");
            still_serves(&h).await;
        }
    }
    activate_ok(&h, &PSP1, EC, &nn).await;
    h.stop().await;
}

#[tokio::test]
async fn a_deep_service_document_gets_a_syntax_fault() {
    let h = Harness::start().await;
    let request = write_envelope(&demand(&PSP1, "00042", tassa_auto("AB123CD")));
    let base64 = element(&request, "datiSpecificiServizio").unwrap();
    let deep = format!(
        "<x:doc xmlns:x='urn:other'>{}</x:doc>",
        nested(DEPTH * 3 / 4)
    );
    let attack = request.replacen(base64, &encode_base64(deep.as_bytes()), 1);
    assert!(attack.len() < 65_536, "within the body limit");
    let (status, body) = h.post(Some("demandPaymentNotice"), attack).await;
    assert_eq!(status, 200, "{body}");
    let fault = expect_fault::<DemandPaymentNoticeResponse>(&body, SYNTAX);
    assert!(
        fault
            .description
            .is_some_and(|d| d.as_str().contains("datiSpecificiServizio")),
        "{body}"
    );
    ok::<DemandPaymentNoticeResponse>(
        &h.send(&demand(&PSP1, "00042", tassa_auto("AB123CD"))).await,
    );
    still_serves(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_deep_answer_to_pa_get_payment_is_a_bad_response() {
    // Station 77777777777_05 (notices 301…) speaks paGetPayment and paSendRT.
    let (h, proxy) = behind_proxy("77777777777_05", |_| {}).await;
    let nn = notice("01", "00");
    for place in [in_header, after_body] {
        proxy.rewrite(move |action, answer| {
            if action == "paGetPayment" {
                place(&answer, &nested(DEPTH))
            } else {
                answer
            }
        });
        let fault = h
            .refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP1, EC, &nn, 1000, None),
                BAD_RESPONSE,
            )
            .await;
        assert!(
            fault
                .description
                .is_some_and(|d| d.as_str().contains("deeper than 64")),
        );
        still_serves(&h).await;
    }
    proxy.pass_through();
    activate_ok(&h, &PSP1, EC, &nn).await;
    h.stop().await;
    proxy.stop();
}

/// The recipient of receipt `token` at `station`, once `ready` holds for it.
async fn recipient_when(
    h: &Harness,
    token: &str,
    station: &str,
    status: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(15, &format!("{token} at {station} {status}"), || async {
        h.recipients(status)
            .await
            .into_iter()
            .find(|r| r["receiptId"] == token && r["station"] == station && ready(r))
    })
    .await
}

#[tokio::test]
async fn a_deep_answer_to_pa_send_rt_keeps_the_copy_pending_across_a_restart() {
    const STATION: &str = "77777777777_05";
    let (mut h, proxy) = behind_proxy(STATION, |c| c.receipts.max_attempts = 1_000).await;
    proxy.rewrite(|action, answer| {
        if action == "paSendRT" {
            in_header(&answer, &nested(DEPTH))
        } else {
            answer
        }
    });
    let nn = notice("01", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    let attempts = |r: &serde_json::Value| r["attempts"].as_u64().unwrap_or(0);
    let before = recipient_when(&h, &token, STATION, "PENDING", |r| attempts(r) >= 2).await;
    still_serves(&h).await;
    // Recovery sends the copy again at start: the station answers the same.
    h.restart().await;
    let after = attempts(&before) + 2;
    recipient_when(&h, &token, STATION, "PENDING", |r| attempts(r) >= after).await;
    still_serves(&h).await;
    // The station comes to its senses: the copy is delivered.
    proxy.pass_through();
    recipient_when(&h, &token, STATION, "NOTIFIED", |_| true).await;
    eventually(10, "payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    h.stop().await;
    proxy.stop();
}

#[tokio::test]
async fn the_simulated_ec_and_validate_survive_deep_documents() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let request = write_envelope(&pagonode::codec::pa_for_node::PaVerifyPaymentNoticeReq {
        id_pa: t35(EC),
        id_broker_pa: t35(EC),
        id_station: t35("77777777777_01"),
        qr_code: qr(EC, &nn),
    });
    let attack = in_header(&request, &nested(DEPTH));
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/pa/77777777777_01", h.ec_url()))
        .header("SOAPAction", "paVerifyPaymentNotice")
        .body(attack.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Refused as the simulated EC refuses any malformed request (and not counted against the
    // node, which did not send it).
    let records = h.ec.requests();
    let refused = records.last().unwrap();
    assert_eq!(refused.fault_code.as_deref(), Some("PAA_SINTASSI_EXTRAXSD"));
    assert!(
        refused
            .violation
            .as_deref()
            .is_some_and(|v| v.contains("deeper than 64"))
    );
    h.ec.clear_requests();
    still_serves(&h).await;
    h.stop().await;

    // `pagonode validate`, 100,000 levels deep.
    let deep = in_header(&request, &nested(100_000));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(deep.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("deeper than 64"), "{stdout}");
}

/// About 1 MB of each input that made an earlier scan quadratic, each in an otherwise good
/// activate that `request` makes (a notice of its own each).
fn quadratic_inputs(
    request: impl Fn() -> String,
) -> Vec<(&'static str, Option<&'static str>, String)> {
    const MB: usize = 1 << 20;
    let many = |unit: &str| unit.repeat(MB / unit.len());
    // Declarations on the Envelope, used by a header entry holding many elements.
    let declarations: String = (0..MB / 50)
        .map(|i| format!(" xmlns:p{i}='urn:p'"))
        .collect();
    let envelope_tag = format!("<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"");
    let namespaces = in_header(
        &request().replacen(&envelope_tag, &format!("{envelope_tag}{declarations}"), 1),
        &format!("<h:x xmlns:h='urn:h'>{}</h:x>", "<a/>".repeat(MB / 8)),
    );
    let attributes: String = (0..MB / 16).map(|i| format!(" h:a{i}=''")).collect();
    vec![
        // No SOAPAction: the operation is found past a comment full of `Body`.
        (
            "Body in a comment",
            None,
            request().replacen(
                "<soapenv:Body>",
                &format!("<!-- {} --><soapenv:Body>", many("Body")),
                1,
            ),
        ),
        (
            "password in a comment",
            Some("activatePaymentNotice"),
            in_header(&request(), &format!("<!-- {} -->", many("password"))),
        ),
        (
            "password in an unreadable request",
            Some("activatePaymentNotice"),
            format!("{}{}", request(), many("<password")),
        ),
        (
            "namespace declarations",
            Some("activatePaymentNotice"),
            namespaces,
        ),
        (
            "attributes",
            Some("activatePaymentNotice"),
            in_header(&request(), &format!("<h:x xmlns:h='urn:h'{attributes}/>")),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quadratic_inputs_are_answered_promptly_while_good_requests_go_on() {
    // A debug build reads a megabyte slowly: the simulated EC (in this process) may wait for a
    // core meanwhile, which is not what this test is about.
    let h = Harness::start_with(|c| {
        c.node.max_body_bytes = 2 << 20;
        c.timings.ec_timeout_ms = 15_000;
    })
    .await;
    let attacks =
        quadratic_inputs(|| write_envelope(&activate(&PSP1, EC, &notice("02", "00"), 1000, None)));
    // All at once, beside good requests: minutes each for the earlier scans, so a generous
    // bound still tells them apart.
    let bound = Duration::from_secs(20);
    let sent = attacks.iter().map(|(what, action, body)| {
        let h = &h;
        async move {
            let started = Instant::now();
            let (status, answer) = h.post(*action, body.as_bytes()).await;
            let took = started.elapsed();
            eprintln!("{what}: answered in {took:?}");
            assert!(took < bound, "{what}: {took:?}");
            (*what, status, answer)
        }
    });
    let good = async {
        for _ in 0..5 {
            let started = Instant::now();
            still_serves(&h).await;
            assert!(started.elapsed() < bound);
        }
    };
    let (answers, ()) = tokio::join!(futures_util::future::join_all(sent), good);
    for (what, status, answer) in answers {
        assert_eq!(status, 200, "{what}: {answer}");
        // Each is answered as activatePaymentNotice; the readable ones are served.
        if what == "password in an unreadable request" {
            expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
        } else {
            let res: ActivatePaymentNoticeRes = ok(&answer);
            assert!(res.payment_token.is_some(), "{what}");
        }
    }
    still_serves(&h).await;
    h.stop().await;
}

/// Ways of writing PSP1's password `pwdpwdpwd` (the element and its content), and whether the
/// request is still readable (and so authenticates).
const SPELLINGS: &[(&str, bool)] = &[
    ("<password><![CDATA[pwdpwdpwd]]></password>", true),
    ("<password>pwd<![CDATA[pwd]]>pwd</password>", true),
    (
        "<password><![CDATA[pwd]]><![CDATA[pwdpwd]]></password>",
        true,
    ),
    ("<password>&#112;&#x77;d&#112;wdpw&#100;</password>", true),
    (
        "<password>pwd<!-- </password> -->pwd<?pi pwd?>pwd</password>",
        true,
    ),
    ("<password xmlns=''>pwdpwdpwd</password >", true),
    ("<password\n>pwdpwdpwd</password\n>", true),
    ("<password>pwd<b>pwd</b>pwd</password>", false),
    ("<password>pwd<password>pwd</password>pwd</password>", false),
    ("<password a='>'>pwdpwdpwd</password>", false),
    ("<x:password>pwdpwdpwd</x:password>", false),
    ("<password>pwdpwdpwd</passwd>", false),
    ("< password>pwdpwdpwd</password>", false),
    ("<PASSWORD>pwdpwdpwd</PASSWORD>", false),
    ("<password pwdpwdpwd</password>", false),
];

/// A WS-Security-like header entry carrying a password too.
const HEADER_PASSWORD: &str =
    "<w:S xmlns:w='urn:w'><w:Password>pwd<!--x-->pwdpwd</w:Password></w:S>";

#[tokio::test]
async fn no_spelling_of_a_password_reaches_the_journal() {
    let h = Harness::start_admin(|_| {}).await;
    let mut sent = 0;
    for &(spelling, readable) in SPELLINGS {
        // As is, cut short before its end tag (the rest of the document is the password's; a
        // `< password>` is no tag, so nothing says that text is a password), and beside a
        // password in a SOAP Header.
        for form in ["as is", "cut", "header"] {
            if form == "cut" && spelling.starts_with("< ") {
                continue;
            }
            let nn = notice("02", "00");
            let plain = write_envelope(&activate(&PSP1, EC, &nn, 1000, None));
            let request = plain.replacen("<password>pwdpwdpwd</password>", spelling, 1);
            let body = match form {
                "cut" => {
                    let at = request.find(spelling).unwrap() + spelling.rfind("</").unwrap();
                    request[..at].to_string()
                }
                "header" => in_header(&request, HEADER_PASSWORD),
                _ => request,
            };
            let (status, answer) = h.post(Some("activatePaymentNotice"), body).await;
            assert_eq!(status, 200, "{answer}");
            if readable && form != "cut" {
                ok::<ActivatePaymentNoticeRes>(&answer);
            } else {
                expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
            }
            sent += 1;
        }
    }
    let rows = eventually(10, "every request journaled", || async {
        let (status, v) = h
            .admin_get("/admin/journal?primitive=activatePaymentNotice&limit=1000")
            .await;
        assert_eq!(status, 200, "{v}");
        let requests: Vec<String> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["componente"] == "nodeForPsp" && e["sottoTipoEvento"] == "REQ")
            .map(|e| e["payload"].as_str().unwrap_or_default().to_string())
            .collect();
        (requests.len() == sent).then_some(requests)
    })
    .await;
    for payload in rows {
        assert!(!payload.contains("pwd"), "{payload}");
        assert!(payload.contains("********"), "{payload}");
    }
    still_serves(&h).await;
    h.stop().await;
}
