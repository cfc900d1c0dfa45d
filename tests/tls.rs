//! The TLS listener end to end: a whole payment (activate, outcome, receipt to the simulated EC)
//! made over HTTPS against the test certificate of `tests/tls/`, and what a client that does not
//! speak TLS or does not trust the certificate gets: no exchange at all.

mod common;

use common::*;
use pagonode::codec::node_for_psp::{ActivatePaymentNoticeRes, SendPaymentOutcomeRes};
use pagonode::codec::{Message, write_envelope};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");

async fn https_harness() -> Harness {
    Harness::start_with(|c| {
        c.node.tls_cert = Some(format!("{DIR}/cert.pem").into());
        c.node.tls_key = Some(format!("{DIR}/key.pem").into());
    })
    .await
}

/// POSTs a SOAP request with `client` to `url`: the raw answer, which must come with HTTP 200.
async fn post<M: Message>(client: &reqwest::Client, url: &str, req: &M) -> String {
    let resp = client
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", M::OPERATION.soap_action())
        .body(write_envelope(req))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_over_https_gets_its_receipt() {
    let h = https_harness().await;
    let cert = std::fs::read(format!("{DIR}/cert.pem")).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .https_only(true)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", h.node().addr.port());
    let nn = notice("02", "00");
    let body = post(
        &https,
        &url,
        &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))),
    )
    .await;
    let res: ActivatePaymentNoticeRes = ok(&body);
    let token = res.payment_token.expect("a token").to_string();
    let body = post(
        &https,
        &url,
        &outcome(&PSP1, &token, true, Some(&key(&PSP1))),
    )
    .await;
    ok::<SendPaymentOutcomeRes>(&body);
    let receipts = h.wait_receipts(1, 30).await;
    assert_eq!(receipts[0].receipt_id, token);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_untrusted_clients_get_no_answer() {
    let h = https_harness().await;
    let port = h.node().addr.port();
    let request = activate(&PSP1, EC, &notice("02", "00"), 1000, None);

    // Plain HTTP to the TLS port: the handshake fails, no HTTP answer comes back.
    let plain = reqwest::Client::new();
    let r = plain
        .post(format!("http://127.0.0.1:{port}/"))
        .header("SOAPAction", "activatePaymentNotice")
        .body(write_envelope(&request))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");

    // A client that does not trust the self-signed certificate refuses the connection.
    let untrusting = reqwest::Client::builder().build().unwrap();
    let r = untrusting
        .post(format!("https://localhost:{port}/"))
        .header("SOAPAction", "activatePaymentNotice")
        .body(write_envelope(&request))
        .send()
        .await;
    let e = r.expect_err("an untrusted certificate was accepted");
    assert!(e.is_connect(), "{e:?}");
    assert!(
        h.ec.requests().is_empty(),
        "a request reached the node without TLS"
    );
    h.stop().await;
}
