//! The admin listener over real HTTP, with an admin token: the OpenAPI document against the
//! routes it serves, the token required on every route but the public ones, JSON errors, bad
//! parameters refused, the journal in time order, and `/metrics` after a real payment.

mod common;

use std::collections::BTreeSet;

use common::*;
use pagonode::admin::{Access, ROUTES};
use pagonode::codec::node_for_psp::SendPaymentOutcomeRes;
use serde_json::Value;

const TOKEN: &str = "admin-api-test-token";

async fn start() -> Harness {
    Harness::start_admin(|c| c.node.admin_token = Some(TOKEN.into())).await
}

/// A request to the admin listener, with the token when `token` is set: (status, content type,
/// body).
async fn call(h: &Harness, method: &str, path: &str, token: bool) -> (u16, String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method, format!("{}{path}", h.admin_url()));
    if token {
        req = req.bearer_auth(TOKEN);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

/// A JSON answer with the token: (status, JSON).
async fn get_json(h: &Harness, path: &str) -> (u16, Value) {
    let (status, kind, body) = call(h, "GET", path, true).await;
    assert!(
        kind.starts_with("application/json"),
        "{path}: {kind}: {body}"
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

/// An error answer: the status and the JSON `{"error": "…"}` shape.
async fn json_error(h: &Harness, method: &str, path: &str, token: bool, status: u16) -> String {
    let (got, kind, body) = call(h, method, path, token).await;
    assert_eq!(got, status, "{method} {path}: {body}");
    assert!(
        kind.starts_with("application/json"),
        "{method} {path}: {kind}: {body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{body}");
    v["error"].as_str().unwrap().to_string()
}

/// A path of the route with its parameters filled in.
fn instance(path: &str) -> String {
    path.replace("{fiscal_code}", EC)
        .replace("{notice_number}", "302000100000009424")
        .replace("{receipt_id}", "ffffffffffffffffffffffffffffffff")
        .replace("{job}", "paSendRt")
        .replace("{what}", "CONFIG")
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes_served() {
    let h = start().await;
    let (status, doc) = get_json(&h, "/admin/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            // Public operations override the document's security with an empty list.
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            assert!(op["responses"].is_object(), "{method} {path}: no responses");
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let params = op["parameters"]
                    .as_array()
                    .map_or(&[][..], |p| p.as_slice());
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path}: path parameter {name} undocumented"
                );
            }
            documented.insert((method, path.clone(), public));
        }
    }
    let served: BTreeSet<(String, String, bool)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.access == Access::Public,
            )
        })
        .collect();
    assert_eq!(
        documented, served,
        "document (left) and routes (right) differ"
    );

    // Every route the document says needs the token refuses a call without it.
    for (method, path, public) in &documented {
        let path = instance(path);
        let (status, kind, body) = call(&h, method, &path, false).await;
        if *public {
            assert!(
                ![401, 403, 404, 405].contains(&status),
                "{method} {path} is public: {status} {body}"
            );
        } else if path.starts_with("/console/") && method == "GET" {
            assert_eq!(status, 303, "{method} {path}: to the login form: {body}");
        } else if path.starts_with("/console/") {
            assert_eq!(status, 401, "{method} {path}: {body}");
            assert!(kind.starts_with("text/html"), "{method} {path}: {kind}");
        } else {
            json_error(&h, method, &path, false, 401).await;
        }
    }
    // A wrong token is no token.
    let (status, _, _) = {
        let http = reqwest::Client::new();
        let resp = http
            .get(format!("{}/admin/journal", h.admin_url()))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), (), ())
    };
    assert_eq!(status, 401);
    h.stop().await;
}

#[tokio::test]
async fn admin_errors_are_json_and_bad_parameters_are_refused() {
    let h = start().await;
    let e = json_error(&h, "GET", "/admin/nothing-here", true, 404).await;
    assert!(e.contains("/admin/nothing-here"), "{e}");
    let e = json_error(&h, "DELETE", "/admin/journal", true, 405).await;
    assert!(e.contains("GET"), "{e}");
    let e = json_error(&h, "GET", "/admin/recipients?status=BOGUS", true, 400).await;
    assert!(e.contains("BOGUS") && e.contains("FAILED"), "{e}");
    for bad in [
        "/admin/recipients?limit=many",
        "/admin/recipients?colour=red",
        "/admin/journal?limit=-1",
        "/admin/journal?from=yesterday",
        "/admin/journal?after=42",
        "/admin/journal?bogus=1",
        "/admin/payments/77777777777/12",
        "/admin/payments/not-a-fiscal-code/302000100000009424",
        "/admin/receipts/ffffffffffffffffffffffffffffffff/resend?what=1",
    ] {
        let method = if bad.contains("/resend") {
            "POST"
        } else {
            "GET"
        };
        json_error(&h, method, bad, true, 400).await;
    }
    // Any case of a valid status is accepted.
    let (status, v) = get_json(&h, "/admin/recipients?status=failed").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, Value::Array(vec![]));
    json_error(
        &h,
        "POST",
        "/admin/receipts/ffffffffffffffffffffffffffffffff/resend",
        true,
        404,
    )
    .await;
    h.stop().await;
}

/// Pays notice `nn` of the Comune with PSP1 (activation, then outcome OK); returns the token.
async fn pay(h: &Harness, nn: &str) -> String {
    let token = activate_ok(h, &PSP1, EC, nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    token
}

#[tokio::test]
async fn the_journal_is_listed_in_time_order_page_after_page() {
    let h = start().await;
    let nn = notice("02", "00");
    let token = pay(&h, &nn).await;
    h.wait_receipts(1, 10).await;
    // Every exchange of the payment: 2 per PSP call and per station call, and state changes.
    let all = eventually(10, "the payment's rows journaled", || async {
        let (status, v) = get_json(&h, &format!("/admin/journal?notice={nn}&limit=1000")).await;
        assert_eq!(status, 200, "{v}");
        let rows = v["entries"].as_array().unwrap().clone();
        rows.iter()
            .any(|r| r["tipoEvento"] == "paSendRTV2" && r["sottoTipoEvento"] == "RESP")
            .then_some(rows)
    })
    .await;
    let times: Vec<&str> = all
        .iter()
        .map(|r| r["dataOraEvento"].as_str().unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");
    assert!(
        all.iter()
            .any(|r| r["codiceContestoPagamento"] == token.as_str())
    );

    // Pages of 3, continued with next_after, give the same rows in the same order.
    let mut paged: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let (status, v) = get_json(&h, &format!("/admin/journal?notice={nn}&limit=3{after}")).await;
        assert_eq!(status, 200, "{v}");
        paged.extend(v["entries"].as_array().unwrap().iter().cloned());
        match v["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
        assert!(paged.len() <= all.len(), "pages never end: {paged:?}");
    }
    assert_eq!(paged, all);
    h.stop().await;
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_a_payment_made_over_http() {
    let h = start().await;
    // The walkthrough's notice.
    let nn = "302000100000009424";
    pay(&h, nn).await;
    h.wait_receipts(1, 10).await;
    let station = "77777777777_01";
    let text = eventually(10, "the receipt's delivery counted", || async {
        let (status, kind, text) = call(&h, "GET", "/metrics", true).await;
        assert_eq!(status, 200, "{text}");
        assert!(kind.starts_with("text/plain"), "{kind}");
        let delivered = format!(
            "pagonode_receipt_delivery_attempts_total{{station=\"{station}\",result=\"delivered\"}}"
        );
        (sample(&text, &delivered) == Some(1.0)).then_some(text)
    })
    .await;

    // Every sample is a pagonode_ series with a number; every family has HELP and TYPE.
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.split_whitespace();
            let kind = words.next().unwrap();
            assert!(["HELP", "TYPE", "EOF"].contains(&kind), "{line}");
            if kind != "EOF" {
                assert!(words.next().unwrap().starts_with("pagonode_"), "{line}");
            }
            continue;
        }
        assert!(line.starts_with("pagonode_"), "{line}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }

    let activate = "operation=\"activatePaymentNotice\",outcome=\"OK\"";
    assert_eq!(
        sample(&text, &format!("pagonode_psp_requests_total{{{activate}}}")),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE pagonode_psp_request_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("pagonode_psp_request_seconds_count{{{activate}}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("pagonode_psp_request_seconds_bucket{{le=\"+Inf\",{activate}}}")
        ),
        Some(1.0),
        "{text}"
    );
    let outcome = "operation=\"sendPaymentOutcome\",outcome=\"OK\"";
    assert_eq!(
        sample(&text, &format!("pagonode_psp_requests_total{{{outcome}}}")),
        Some(1.0),
        "{text}"
    );
    // The station's calls: the payment data and the receipt, each answered within 2 s.
    let calls = |ops: &[&str]| -> f64 {
        ops.iter()
            .filter_map(|op| {
                let series = format!(
                    "pagonode_ec_call_seconds_count{{station=\"{station}\",operation=\"{op}\"}}"
                );
                sample(&text, &series)
            })
            .sum()
    };
    assert_eq!(calls(&["paGetPayment", "paGetPaymentV2"]), 1.0, "{text}");
    assert_eq!(calls(&["paSendRT", "paSendRTV2"]), 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            &format!("pagonode_sla_ec_answers_within_2s_ratio{{station=\"{station}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "pagonode_store_transaction_seconds_count").unwrap() >= 1.0);
    assert!(sample(&text, "pagonode_store_batch_commits_count").unwrap() >= 1.0);
    assert!(sample(&text, "pagonode_store_commit_wait_seconds_count").unwrap() >= 2.0);
    assert_eq!(sample(&text, "pagonode_deadlines_pending"), Some(0.0));
    assert_eq!(sample(&text, "pagonode_receipt_copies_pending"), Some(0.0));
    assert_eq!(sample(&text, "pagonode_receipt_copies_failed"), Some(0.0));
    // The journal writer writes off the payment path: its bytes come soon after.
    eventually(10, "journal bytes counted", || async {
        let (_, _, text) = call(&h, "GET", "/metrics", true).await;
        (sample(&text, "pagonode_journal_bytes_total").unwrap_or(0.0) > 0.0).then_some(())
    })
    .await;
    h.stop().await;
}
