//! Hostile peers over real HTTP (issue 12): what a stranger, a PSP or a station sends cannot
//! crash the node, occupy it, or get a secret stored; after each attack a good request is still
//! answered correctly.
//!
//! The documents themselves: nesting far deeper than a recursive reader survives (in a
//! request's Header, after its Body, in its base64 service document, in a station's answer to
//! paGetPayment and to paSendRT, across a restart), inputs that were quadratic for earlier
//! scans (operation detection, password masking, namespace lookups, duplicate attributes), and
//! every way XML can spell a password.
//!
//! The peers: a station answering hundreds of megabytes (the node as a child process, its
//! memory read from `/proc`), bodies sent a byte at a time, a flood of connections under a low
//! descriptor limit, a stranger with a PSP's next idempotency key and a wrong password, rates,
//! client certificates of another broker, missing and wrong subscription keys, and the node's
//! own client certificate, CA bundle and proxy towards stations. After each, good requests are
//! answered and payments complete.

#[path = "hostile/child.rs"]
mod child;
mod common;
#[path = "hostile/peers.rs"]
mod peers;
#[path = "hostile/pki.rs"]
mod pki;

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
    let (mut sent, mut readable_sent) = (0, 0);
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
                readable_sent += 1;
            } else {
                expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
            }
            sent += 1;
        }
    }
    // A last request, journaled after all the others: once it is there, they all are. Those
    // whose credentials authenticate are journaled whole (the password masked), the others
    // only as a summary.
    let marker = notice("02", "00");
    ok::<ActivatePaymentNoticeRes>(&h.send(&activate(&PSP1, EC, &marker, 1000, None)).await);
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
        requests
            .iter()
            .any(|p| p.contains(marker.as_str()))
            .then_some(requests)
    })
    .await;
    assert!(
        readable_sent < rows.len() && rows.len() <= sent + 1,
        "{rows:?}"
    );
    for payload in rows {
        assert!(!payload.contains("pwd"), "{payload}");
        assert!(payload.contains("********"), "{payload}");
    }
    still_serves(&h).await;
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile peers.
// ---------------------------------------------------------------------------------------------

const AUTH: &str = "PPT_AUTENTICAZIONE";

/// A payment, start to end: activate, OK outcome, the receipt at the simulated EC.
async fn pays(h: &Harness) {
    let token = activate_ok(h, &PSP1, EC, &notice("02", "00")).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    eventually(15, "the receipt delivered", || async {
        h.ec.receipts()
            .iter()
            .any(|r| r.receipt_id == token)
            .then_some(())
    })
    .await;
}

/// `GET /health`: the JSON, whatever the status.
async fn health(url: &str) -> serde_json::Value {
    pagonode::install_crypto_provider();
    let base = url.trim_end_matches("/node-for-psp/v1");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn refused_count(health: &serde_json::Value, reason: &str) -> u64 {
    health["front"]["refused"][reason].as_u64().unwrap_or(0)
}

/// The journal rows of a PSP's requests (`/admin/journal`), once `ready` holds for them.
async fn psp_rows(
    h: &Harness,
    psp: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    eventually(10, "the journal rows", || async {
        let (status, v) = h
            .admin_get(&format!("/admin/journal?psp={psp}&limit=10000"))
            .await;
        assert_eq!(status, 200, "{v}");
        let rows = v["entries"].as_array().unwrap().clone();
        ready(&rows).then_some(rows)
    })
    .await
}

#[tokio::test]
async fn a_stranger_with_a_victims_next_key_changes_nothing() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let genuine = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let mut forged = genuine.clone();
    forged.password = pagonode::codec::types::Password::new("guessed12").unwrap();
    let before = health(&h.url()).await;
    let started = Instant::now();
    const FORGED: u64 = 300;
    for _ in 0..FORGED {
        h.refused::<_, ActivatePaymentNoticeRes>(&forged, AUTH)
            .await;
    }
    let told_for = started.elapsed();
    // Counted, and nothing committed for them: no idempotency entry, no fsync.
    let after = health(&h.url()).await;
    assert_eq!(
        refused_count(&after, "authentication") - refused_count(&before, "authentication"),
        FORGED
    );
    assert_eq!(
        after["store"]["transactions"], before["store"]["transactions"],
        "{before} {after}"
    );
    // The PSP's own request with that key is served, and replayed as the official node does.
    let first = h.send(&genuine).await;
    token_of(&first);
    assert_eq!(h.send(&genuine).await, first);
    // The journal: the PSP's two exchanges in full, and of the forged ones a few summaries
    // (at most one a second from an address), with the address and no payload.
    let exchanges = |rows: &[serde_json::Value], subtype: &str| {
        rows.iter()
            .filter(|r| {
                r["tipoEvento"] == "activatePaymentNotice" && r["sottoTipoEvento"] == subtype
            })
            .count()
    };
    let rows = psp_rows(&h, PSP1.id, |rows| exchanges(rows, "RESP") == 2).await;
    let summaries: Vec<_> = rows
        .iter()
        .filter(|r| r["esito"] == AUTH && r["sottoTipoEvento"].is_null())
        .collect();
    assert!(!summaries.is_empty());
    assert!(
        summaries.len() as u64 <= told_for.as_secs() + 2,
        "{} summaries in {told_for:?}",
        summaries.len()
    );
    for s in &summaries {
        assert!(s["payload"].is_null(), "{s}");
        assert!(
            s["dettaglio"].as_str().unwrap().contains("127.0.0.1"),
            "{s}"
        );
    }
    assert_eq!(
        exchanges(&rows, "REQ"),
        2,
        "only the PSP's own requests are journaled in full"
    );
    pays(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_password_is_never_quoted_in_a_fault() {
    let h = Harness::start().await;
    let plain = write_envelope(&activate(&PSP1, EC, &notice("02", "00"), 1000, None));
    for (place, spelling) in [
        ("body", "<password>pwd&leakage;pwd</password>"),
        ("body", "<password>pwd&#0;leakage</password>"),
        ("body", "<password>pwd<leakage/>pwd</password>"),
    ] {
        let body = plain.replacen("<password>pwdpwdpwd</password>", spelling, 1);
        let (status, answer) = h.post(Some("activatePaymentNotice"), body).await;
        assert_eq!(status, 200, "{answer}");
        expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
        assert!(!answer.contains("leakage"), "{place}: {answer}");
    }
    let body = in_header(
        &plain,
        "<w:S xmlns:w='urn:w'><w:Password>&leakage;</w:Password></w:S>",
    );
    let (_, answer) = h.post(Some("activatePaymentNotice"), body).await;
    expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
    assert!(!answer.contains("leakage"), "{answer}");
    still_serves(&h).await;
    h.stop().await;
}

const KEY1: &str = "primary-key-of-broker-1";
const KEY1_SECONDARY: &str = "secondary-key-of-broker-1";
const KEY2: &str = "primary-key-of-broker-2";

#[tokio::test]
async fn subscription_keys_are_checked_before_the_body_is_read() {
    let h = Harness::start_admin(|c| {
        c.psp_broker[0].subscription_keys = vec![KEY1.into(), KEY1_SECONDARY.into()];
        let b2 = c
            .psp_broker
            .iter_mut()
            .find(|b| b.id == PSP2.broker)
            .unwrap();
        b2.subscription_keys = vec![KEY2.into()];
    })
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = |psp: Psp, header: Option<&'static str>, query: Option<&'static str>| {
        let mut url = h.url();
        if let Some(k) = query {
            url = format!("{url}?Ocp-Apim-Subscription-Key={k}");
        }
        let mut req = http
            .post(url)
            .header("SOAPAction", "verifyPaymentNotice")
            .body(write_envelope(&verify(&psp, EC, &notice("02", "00"))));
        if let Some(k) = header {
            req = req.header("Ocp-Apim-Subscription-Key", k);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let json = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
            (status, json, res.text().await.unwrap())
        }
    };
    let gateway_401 = |(status, json, body): (u16, bool, String), why: &str| {
        assert_eq!((status, json), (401, true), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["statusCode"], 401);
        assert!(v["message"].as_str().unwrap().contains(why), "{body}");
    };
    gateway_401(send(PSP1, None, None).await, "missing subscription key");
    gateway_401(send(PSP1, Some("not-a-key-at-all"), None).await, "invalid");
    // Another broker's key: the request is read, but the key is not the caller's.
    gateway_401(send(PSP1, Some(KEY2), None).await, "invalid");
    for (psp, header, query) in [
        (PSP1, Some(KEY1), None),
        (PSP1, Some(KEY1_SECONDARY), None),
        (PSP1, None, Some(KEY1)),
        (PSP2, Some(KEY2), None),
    ] {
        let (status, _, body) = send(psp, header, query).await;
        assert_eq!(status, 200, "{body}");
        ok::<VerifyPaymentNoticeRes>(&body);
    }
    // Before the body is read: a request whose body never comes is answered at once.
    let mut stream = tokio::net::TcpStream::connect(h.node().addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"POST /node-for-psp/v1 HTTP/1.1\r\nHost: x\r\nSOAPAction: verifyPaymentNotice\r\nContent-Length: 100000\r\n\r\n<soapenv:Env")
        .await
        .unwrap();
    let answer = peers::closed_by_peer(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Counted and summarised in the journal, with nothing of the requests.
    let v = health(&h.url()).await;
    assert_eq!(refused_count(&v, "subscription_key"), 4, "{v}");
    let (status, j) = h
        .admin_get("/admin/journal?outcome=HTTP_401&limit=100")
        .await;
    assert_eq!(status, 200);
    let rows = j["entries"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["payload"].is_null()),
        "{j}"
    );
    // The contract and the health endpoint stay open.
    let wsdl = http.get(format!("{}?wsdl", h.url())).send().await.unwrap();
    assert_eq!(wsdl.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn over_its_rate_an_address_gets_429_and_the_others_do_not() {
    let h = Harness::start_with(|c| {
        c.limits.address_requests_per_second = 1;
        c.limits.address_burst = 5;
    })
    .await;
    for _ in 0..5 {
        still_serves(&h).await;
    }
    let (status, body) = h
        .post(
            Some("verifyPaymentNotice"),
            write_envelope(&verify(&PSP1, EC, &notice("02", "00"))),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit is exceeded"),
        "{body}"
    );
    // Another address is not held back.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let answer = other
        .post(h.url())
        .header("SOAPAction", "verifyPaymentNotice")
        .body(write_envelope(&verify(&PSP1, EC, &notice("02", "00"))))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    ok::<VerifyPaymentNoticeRes>(&answer.text().await.unwrap());
    // The first address is served again once its rate allows.
    eventually(10, "served again", || async {
        let (status, _) = h
            .post(
                Some("verifyPaymentNotice"),
                write_envelope(&verify(&PSP1, EC, &notice("02", "00"))),
            )
            .await;
        (status == 200).then_some(())
    })
    .await;
    assert!(refused_count(&health(&h.url()).await, "address_rate") >= 1);
    h.stop().await;
}

#[tokio::test]
async fn over_its_rate_a_broker_gets_429_and_strangers_cannot_spend_it() {
    let h = Harness::start_with(|c| {
        c.limits.broker_requests_per_second = 1;
        c.limits.broker_burst = 3;
    })
    .await;
    // Strangers claiming the broker do not spend its rate: only authenticated requests count.
    let mut forged = verify(&PSP1, EC, &notice("02", "00"));
    forged.password = pagonode::codec::types::Password::new("guessed12").unwrap();
    for _ in 0..20 {
        h.refused::<_, VerifyPaymentNoticeRes>(&forged, AUTH).await;
    }
    for _ in 0..3 {
        still_serves(&h).await;
    }
    let (status, body) = h
        .post(
            Some("verifyPaymentNotice"),
            write_envelope(&verify(&PSP1, EC, &notice("02", "00"))),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    // Another broker is not held back.
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, &notice("02", "00"))).await);
    assert_eq!(refused_count(&health(&h.url()).await, "broker_rate"), 1);
    h.stop().await;
}

/// A request whose head is sent whole and whose body then comes one byte at a time.
async fn slow_body(port: u16) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = peers::connect_from("127.0.0.2", port).await;
    stream
        .write_all(b"POST /node-for-psp/v1 HTTP/1.1\r\nHost: x\r\nSOAPAction: activatePaymentNotice\r\nContent-Length: 100000\r\n\r\n<")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_heads_are_cut_off_while_good_requests_go_on() {
    let h = Harness::start_with(|c| {
        c.limits.body_timeout_ms = 1_000;
        c.limits.header_timeout_ms = 1_000;
    })
    .await;
    let port = h.node().addr.port();
    let mut bodies = Vec::new();
    for _ in 0..20 {
        bodies.push(slow_body(port).await);
    }
    let mut heads = Vec::new();
    for _ in 0..20 {
        use tokio::io::AsyncWriteExt;
        let mut s = peers::connect_from("127.0.0.2", port).await;
        s.write_all(b"POST /node-for-psp/v1 HTTP/1.1\r\nHo")
            .await
            .unwrap();
        heads.push(s);
    }
    // One more byte a second on every body, until the node closes it.
    let dribble = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut open: Vec<_> = bodies.into_iter().collect();
        let mut closed = Vec::new();
        while !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut still = Vec::new();
            for mut s in open {
                if s.write_all(b"x").await.is_ok() {
                    still.push(s);
                } else {
                    closed.push(());
                }
            }
            open = still;
            if closed.len() == 20 {
                break;
            }
            // The node answered 408 and closed: writes fail once the peer resets.
            let mut next = Vec::new();
            for mut s in open {
                let mut buf = [0u8; 256];
                match tokio::time::timeout(
                    Duration::from_millis(1),
                    tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => closed.push(()),
                    Ok(Ok(_)) => closed.push(()),
                    Err(_) => next.push(s),
                }
            }
            open = next;
        }
    });
    for _ in 0..10 {
        let started = Instant::now();
        still_serves(&h).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    for mut s in heads {
        let answer = peers::closed_by_peer(&mut s, Duration::from_secs(10)).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    tokio::time::timeout(Duration::from_secs(15), dribble)
        .await
        .expect("every slow body closed by the node")
        .unwrap();
    assert_eq!(refused_count(&health(&h.url()).await, "body_timeout"), 20);
    pays(&h).await;
    h.stop().await;
}

/// A node in a child process with the test configuration (`{EC_URL}` the simulated EC in this
/// process, stations overridden by `stations`), plus `extra` TOML tables.
async fn child_node(
    dir: &std::path::Path,
    ec_url: &str,
    stations: &[(&str, &str)],
    extra: &str,
    nofile: Option<u64>,
) -> child::ChildNode {
    let mut text = CONFIG.to_string();
    for (station, url) in stations {
        text = text.replace(
            &format!("{{EC_URL}}/pa/{station}\""),
            &format!("{url}/pa/{station}\""),
        );
        text = text.replace(
            &format!("{{DOWN_URL}}/pa/{station}\""),
            &format!("{url}/pa/{station}\""),
        );
    }
    let text = text
        .replace("{EC_URL}", ec_url)
        .replace("{DOWN_URL}", "http://127.0.0.1:9")
        .replace("{DB}", dir.join("node.db").to_str().unwrap());
    child::ChildNode::start(&format!("{text}\n{extra}\n"), dir, nofile).await
}

/// The simulated EC, in this process.
async fn simulated_ec() -> (pagonode::mock_ec::MockEc, pagonode::mock_ec::MockEcServer) {
    pagonode::install_crypto_provider();
    let cfg = pagonode::mock_ec::MockEcConfig::from_toml_str(CONFIG).unwrap();
    let ec = pagonode::mock_ec::MockEc::new(cfg);
    let server = ec
        .clone()
        .start(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    (ec, server)
}

/// Posts a request to a URL: (status, body).
async fn post_to<M: pagonode::codec::Message>(url: &str, req: &M) -> (u16, String) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = http
        .post(url)
        .header("SOAPAction", M::OPERATION.soap_action())
        .body(write_envelope(req))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A payment through a node at `url`, its receipt awaited at the simulated EC `ec`.
async fn pays_at(url: &str, ec: &pagonode::mock_ec::MockEc) {
    let (_, body) = post_to(url, &activate(&PSP1, EC, &notice("02", "00"), 1000, None)).await;
    let token = token_of(&body);
    let (_, body) = post_to(url, &outcome(&PSP1, &token, true, None)).await;
    ok::<SendPaymentOutcomeRes>(&body);
    eventually(15, "the receipt delivered", || async {
        ec.receipts()
            .iter()
            .any(|r| r.receipt_id == token)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giant_station_answers_are_cut_at_the_cap_in_bounded_memory() {
    const SIZE: u64 = 300 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (ec, ec_server) = simulated_ec().await;
    // Notices 301… go to station _05 (chunked: nothing announces the size), 309… to _09
    // (Content-Length announces it).
    let chunked = peers::GiantStation::start(SIZE, peers::Framing::Chunked).await;
    let declared = peers::GiantStation::start(SIZE, peers::Framing::Declared).await;
    let node = child_node(
        dir.path(),
        &ec_server.url(),
        &[
            ("77777777777_05", &chunked.url),
            ("77777777777_09", &declared.url),
        ],
        "",
        None,
    )
    .await;
    let url = node.url();
    let big = |why: &str| {
        assert!(why.contains("larger than 1048576 bytes"), "{why}");
    };
    // Four at once on each station, verify and activate.
    let attacks = (0..4).flat_map(|_| {
        [
            (notice("01", "00"), true),
            (notice("09", "00"), true),
            (notice("01", "00"), false),
            (notice("09", "00"), false),
        ]
    });
    let answers = futures_util::future::join_all(attacks.map(|(nn, verify_it)| {
        let url = url.clone();
        async move {
            if verify_it {
                let (_, body) = post_to(&url, &verify(&PSP1, EC, &nn)).await;
                expect_fault::<VerifyPaymentNoticeRes>(&body, BAD_RESPONSE)
            } else {
                let (_, body) = post_to(&url, &activate(&PSP1, EC, &nn, 1000, None)).await;
                expect_fault::<ActivatePaymentNoticeRes>(&body, BAD_RESPONSE)
            }
        }
    }))
    .await;
    for fault in answers {
        big(fault
            .description
            .as_ref()
            .map(|d| d.as_str())
            .unwrap_or_default());
    }
    assert_eq!(
        chunked.answers.load(std::sync::atomic::Ordering::Relaxed)
            + declared.answers.load(std::sync::atomic::Ordering::Relaxed),
        16
    );
    // The node stopped reading at the cap: what the stations managed to write is the cap plus
    // what the sockets buffer, far from 300 MB each.
    let sent = chunked.sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < 8 * (32 << 20),
        "{sent} bytes written by the chunked station"
    );
    let peak = node.peak_rss_mb();
    assert!(peak < 300, "peak RSS {peak} MB\n{}", node.log_text());
    // Good requests are answered, payments complete.
    let (_, body) = post_to(&url, &verify(&PSP1, EC, &notice("02", "00"))).await;
    ok::<VerifyPaymentNoticeRes>(&body);
    pays_at(&url, &ec).await;
    eprintln!(
        "giant answers: node peak RSS {peak} MB, {sent} bytes written by the chunked station"
    );
    drop(node);
    ec_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_under_a_low_descriptor_limit_starves_nobody() {
    const NOFILE: u64 = 256;
    const FLOOD: usize = 450;
    let dir = tempfile::tempdir().unwrap();
    let (ec, ec_server) = simulated_ec().await;
    let node = child_node(
        dir.path(),
        &ec_server.url(),
        &[],
        "[limits]\nmax_connections_per_address = 64\nheader_timeout_ms = 60000\nmax_connections = 200\n",
        Some(NOFILE),
    )
    .await;
    // Idle connections from another address: the first 64 are held (until the header
    // timeout), the rest closed as they come.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(peers::connect_from("127.0.0.2", node.port).await);
    }
    let last = flood.last_mut().unwrap();
    peers::closed_by_peer(last, Duration::from_secs(10)).await;
    let url = node.url();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, body) = post_to(&url, &verify(&PSP1, EC, &notice("02", "00"))).await;
        assert_eq!(status, 200, "{body}");
        ok::<VerifyPaymentNoticeRes>(&body);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let fds = node.open_fds();
    assert!((fds as u64) < NOFILE, "{fds} descriptors open");
    let v = health(&url).await;
    assert!(
        refused_count(&v, "connections_per_address") >= (FLOOD - 64) as u64,
        "{v}"
    );
    pays_at(&url, &ec).await;
    assert!(
        !node.log_text().contains("Too many open files"),
        "{}",
        node.log_text()
    );
    drop(flood);
    drop(node);
    ec_server.stop().await;
}

#[tokio::test]
async fn a_psp_with_another_brokers_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(dir.path(), "psp-ca");
    let server = ca.server("node");
    let one = ca.client("psp-one", "psp-one");
    let two = ca.client("psp-two", "psp-two");
    let rogue_ca = pki::Ca::new(dir.path(), "rogue-ca");
    let rogue = rogue_ca.client("rogue", "psp-one");
    let fingerprint = one.sha256();
    let h = Harness::start_with(|c| {
        c.node.tls_cert = Some(server.cert.clone());
        c.node.tls_key = Some(server.key.clone());
        c.node.tls_client_ca = Some(ca.pem.clone());
        c.psp_broker[0].client_cert_sha256 = vec![fingerprint];
        let b2 = c
            .psp_broker
            .iter_mut()
            .find(|b| b.id == PSP2.broker)
            .unwrap();
        b2.client_cert_subjects = vec!["O = psp-ca, CN = psp-two".into()];
    })
    .await;
    let url = format!("https://localhost:{}/node-for-psp/v1", h.node().addr.port());
    let client = |identity: Option<&pki::Issued>| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca.root()]);
        if let Some(i) = identity {
            b = b.identity(i.identity());
        }
        b.build().unwrap()
    };
    let verify_as = |psp: Psp, identity: Option<&pki::Issued>| {
        let c = client(identity);
        let url = url.clone();
        async move {
            c.post(url)
                .header("SOAPAction", "verifyPaymentNotice")
                .body(write_envelope(&verify(&psp, EC, &notice("02", "00"))))
                .send()
                .await
        }
    };
    let body = |r: Result<reqwest::Response, reqwest::Error>| async move {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    ok::<VerifyPaymentNoticeRes>(&body(verify_as(PSP1, Some(&one)).await).await);
    ok::<VerifyPaymentNoticeRes>(&body(verify_as(PSP2, Some(&two)).await).await);
    expect_fault::<VerifyPaymentNoticeRes>(&body(verify_as(PSP1, Some(&two)).await).await, AUTH);
    expect_fault::<VerifyPaymentNoticeRes>(&body(verify_as(PSP1, None).await).await, AUTH);
    // A certificate of a CA the node does not trust fails the handshake.
    assert!(verify_as(PSP1, Some(&rogue)).await.is_err());
    let text = client(Some(&one))
        .get(url.replace("/node-for-psp/v1", "/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(refused_count(&v, "certificate"), 2, "{v}");
    h.stop().await;
}

#[tokio::test]
async fn a_required_client_certificate_is_required_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(dir.path(), "psp-ca");
    let server = ca.server("node");
    let one = ca.client("psp-one", "psp-one");
    let h = Harness::start_with(|c| {
        c.node.tls_cert = Some(server.cert.clone());
        c.node.tls_key = Some(server.key.clone());
        c.node.tls_client_ca = Some(ca.pem.clone());
        c.node.tls_client_auth = pagonode::config::ClientAuth::Required;
    })
    .await;
    let url = format!("https://localhost:{}/node-for-psp/v1", h.node().addr.port());
    let send = |identity: Option<&pki::Issued>| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca.root()]);
        if let Some(i) = identity {
            b = b.identity(i.identity());
        }
        b.build()
            .unwrap()
            .post(url.clone())
            .header("SOAPAction", "verifyPaymentNotice")
            .body(write_envelope(&verify(&PSP1, EC, &notice("02", "00"))))
            .send()
    };
    assert!(send(None).await.is_err());
    ok::<VerifyPaymentNoticeRes>(&send(Some(&one)).await.unwrap().text().await.unwrap());
    h.stop().await;
}

#[tokio::test]
async fn stations_are_called_with_the_nodes_certificate_their_ca_and_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = pki::Ca::new(dir.path(), "node-ca");
    let node_cert = node_ca.client("node-client", "pagonode");
    let station_ca = pki::Ca::new(dir.path(), "station-ca");
    let station_cert = station_ca.server("station");
    let proxy = peers::ForwardProxy::start().await;
    let mut tls_station = None;
    let h = Harness::start_full(
        |c, ec_url| {
            let station = peers::TlsStation::start(&station_cert, &node_ca.pem, ec_url.to_string());
            for s in &mut c.station {
                match s.id.as_str() {
                    // Notices 302… of the Comune: TLS, with the node's certificate.
                    "77777777777_01" => {
                        s.url = format!("{}/pa/{}", station.url, s.id);
                        s.client_cert = Some(node_cert.cert.clone());
                        s.client_key = Some(node_cert.key.clone());
                        s.ca_bundle = Some(station_ca.pem.clone());
                    }
                    // The Regione's: the same station, without a certificate to present.
                    "88888888888_01" => {
                        s.url = format!("{}/pa/{}", station.url, s.id);
                        s.ca_bundle = Some(station_ca.pem.clone());
                    }
                    // Notices 301…: through the proxy.
                    "77777777777_05" => s.proxy = Some(proxy.url.clone()),
                    _ => {}
                }
            }
            tls_station = Some(station);
        },
        |_| {},
    )
    .await;
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP1, EC, &notice("02", "00"))).await);
    h.refused::<_, VerifyPaymentNoticeRes>(
        &verify(&PSP1, EC2, &notice("02", "00")),
        "PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE",
    )
    .await;
    let before = proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed);
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP1, EC, &notice("01", "00"))).await);
    assert_eq!(
        proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        before + 1
    );
    // A whole payment over TLS: paGetPaymentV2 and the receipt.
    pays(&h).await;
    h.stop().await;
    tls_station.unwrap().stop().await;
}

#[tokio::test]
async fn the_admin_listener_needs_a_token_beyond_loopback_and_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    // Beyond loopback without a token, the node does not start.
    let mut open = pagonode::config::Config::example();
    open.node.database = pagonode::config::Database::Sqlite(dir.path().join("open.db"));
    let beyond = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = pagonode::server::RunningNode::start(open, Some(local), Some(beyond)).await;
    let e = refused.err().expect("an open admin API beyond loopback");
    assert!(
        matches!(e, pagonode::server::StartError::AdminExposed(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("node.admin_token"), "{e}");

    // With TLS on, the admin listener is TLS too, with the node's certificate and no client
    // certificate asked for, even where nodeForPsp requires one.
    const TOKEN: &str = "an-admin-token-for-the-test";
    let ca = pki::Ca::new(dir.path(), "node-ca");
    let server = ca.server("node");
    let psp_ca = pki::Ca::new(dir.path(), "psp-ca");
    let h = Harness::start_full(
        |c, _| {
            c.node.tls_cert = Some(server.cert.clone());
            c.node.tls_key = Some(server.key.clone());
            c.node.tls_client_ca = Some(psp_ca.pem.clone());
            c.node.tls_client_auth = pagonode::config::ClientAuth::Required;
            c.node.admin_token = Some(TOKEN.into());
        },
        |_| {},
    )
    .await;
    let admin = h.admin_url();
    assert!(admin.starts_with("https://"), "{admin}");
    let tls = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca.root()])
        .build()
        .unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut req = tls.get(format!("{admin}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/admin/journal", None).await, 401);
    assert_eq!(get("/admin/journal", Some("guessed")).await, 401);
    assert_eq!(get("/admin/journal", Some(TOKEN)).await, 200);
    // Plain HTTP gets no answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let plain_url = admin.replace("https://", "http://");
    assert!(
        plain
            .get(format!("{plain_url}/admin/journal"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .is_err()
    );

    // A re-send of an unknown receipt is refused (its audit: tests/admin_auth.rs).
    let resend = tls
        .post(format!(
            "{admin}/admin/receipts/nosuchreceipt/resend?station=77777777777_01"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn over_its_rate_a_broker_can_get_the_official_busy_fault() {
    let h = Harness::start_with(|c| {
        c.limits.broker_requests_per_second = 1;
        c.limits.broker_burst = 2;
        c.limits.over_rate = pagonode::config::OverRate::Fault;
    })
    .await;
    for _ in 0..2 {
        still_serves(&h).await;
    }
    h.refused::<_, VerifyPaymentNoticeRes>(
        &verify(&PSP1, EC, &notice("02", "00")),
        "PPT_SUPERAMENTOSOGLIA",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_strangers_unreadable_request_leaves_only_a_summary_in_the_journal() {
    let h = Harness::start_admin(|_| {}).await;
    let mut forged = activate(&PSP1, EC, &notice("02", "00"), 1000, None);
    forged.password = pagonode::codec::types::Password::new("guessed12").unwrap();
    let filler = "x".repeat(512 * 1024);
    let body =
        write_envelope(&forged).replacen("<qrCode>", &format!("<qrCode><junk>{filler}</junk>"), 1);
    let (status, answer) = h.post(Some("activatePaymentNotice"), body).await;
    assert_eq!(status, 200);
    expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
    // The same from the PSP itself is journaled whole, as a marker that the first is written.
    let genuine = write_envelope(&activate(&PSP1, EC, &notice("02", "00"), 1000, None)).replacen(
        "<qrCode>",
        "<qrCode><junk>marker</junk>",
        1,
    );
    let (_, answer) = h.post(Some("activatePaymentNotice"), genuine).await;
    expect_fault::<ActivatePaymentNoticeRes>(&answer, SYNTAX);
    let entries = eventually(10, "the PSP's request journaled", || async {
        let (_, v) = h
            .admin_get("/admin/journal?primitive=activatePaymentNotice&limit=100")
            .await;
        let entries = v["entries"].as_array().unwrap().clone();
        entries
            .iter()
            .any(|e| e["payload"].as_str().is_some_and(|p| p.contains("marker")))
            .then_some(entries)
    })
    .await;
    assert!(
        entries
            .iter()
            .all(|e| !e["payload"].as_str().unwrap_or_default().contains("xxxx")),
        "a stranger's payload was journaled"
    );
    let summary = entries
        .iter()
        .find(|e| {
            e["dettaglio"]
                .as_str()
                .is_some_and(|d| d.starts_with("refused (unauthenticated)"))
        })
        .expect("a summary of the stranger's request");
    assert_eq!(summary["esito"], SYNTAX);
    assert!(summary["payload"].is_null());
    assert_eq!(refused_count(&health(&h.url()).await, "unauthenticated"), 1);
    h.stop().await;
}
