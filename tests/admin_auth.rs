//! The admin token guards every admin route: a table of every route the admin listener serves
//! (checked against `src/admin.rs`'s `ROUTES`, so a new route without a row fails), each called without a
//! token, with wrong ones and with the right one, over real HTTP on a node with a payment made.

mod common;

use common::*;

const TOKEN: &str = "s3cret-admin-token";

/// One admin route: its pattern as `src/admin.rs` declares it in `ROUTES`, the method, a
/// concrete path for the call, a form body (urlencoded, empty for none), the status a call
/// without the right token gets (`None`: the route is public), and the status the right token
/// gets.
struct Route {
    pattern: &'static str,
    method: &'static str,
    path: String,
    form: &'static str,
    refused: Option<u16>,
    authorized_status: u16,
}

/// A console page sends a browser without the token to its login form.
const TO_LOGIN: Option<u16> = Some(303);
const UNAUTHORIZED: Option<u16> = Some(401);

fn routes(token: &str, nn: &str) -> Vec<Route> {
    let get = |pattern, path: String, refused, authorized_status| Route {
        pattern,
        method: "GET",
        path,
        form: "",
        refused,
        authorized_status,
    };
    let post = |pattern, path: String, form, refused, authorized_status| Route {
        pattern,
        method: "POST",
        path,
        form,
        refused,
        authorized_status,
    };
    vec![
        // The liveness probe stays open (README: `GET /health` for load balancers).
        get("/health", "/health".into(), None, 200),
        get("/metrics", "/metrics".into(), UNAUTHORIZED, 200),
        get(
            "/admin/openapi.json",
            "/admin/openapi.json".into(),
            UNAUTHORIZED,
            200,
        ),
        get("/admin/journal", "/admin/journal".into(), UNAUTHORIZED, 200),
        get(
            "/admin/payments/{fiscal_code}/{notice_number}",
            format!("/admin/payments/{EC}/{nn}"),
            UNAUTHORIZED,
            200,
        ),
        get(
            "/admin/recipients",
            "/admin/recipients?status=NOTIFIED".into(),
            UNAUTHORIZED,
            200,
        ),
        post(
            "/admin/receipts/{receipt_id}/resend",
            format!("/admin/receipts/{token}/resend"),
            "",
            UNAUTHORIZED,
            202,
        ),
        get(
            "/admin/service-levels",
            "/admin/service-levels".into(),
            UNAUTHORIZED,
            200,
        ),
        get(
            "/monitoring/v1/jobs/trigger/{job}",
            "/monitoring/v1/jobs/trigger/paSendRt".into(),
            UNAUTHORIZED,
            200,
        ),
        get(
            "/jobs/trigger/{job}",
            "/jobs/trigger/mod3CancelV2".into(),
            UNAUTHORIZED,
            200,
        ),
        get("/admin/config", "/admin/config".into(), UNAUTHORIZED, 200),
        // An empty document is the default configuration: refused (another listen address),
        // nothing changed.
        post(
            "/admin/config",
            "/admin/config".into(),
            "",
            UNAUTHORIZED,
            400,
        ),
        // An empty merge patch: nothing changes.
        Route {
            pattern: "/admin/config",
            method: "PATCH",
            path: "/admin/config".into(),
            form: "{}",
            refused: UNAUTHORIZED,
            authorized_status: 200,
        },
        get(
            "/monitoring/v1/config/refresh/{what}",
            "/monitoring/v1/config/refresh/CONFIG".into(),
            UNAUTHORIZED,
            200,
        ),
        get(
            "/config/refresh/{what}",
            "/config/refresh/ALL".into(),
            UNAUTHORIZED,
            200,
        ),
        get("/console/", "/console/".into(), TO_LOGIN, 200),
        get("/console/live", "/console/live".into(), TO_LOGIN, 200),
        get(
            "/console/journal",
            format!("/console/journal?notice={nn}"),
            TO_LOGIN,
            200,
        ),
        get(
            "/console/payments/{fiscal_code}/{notice_number}",
            format!("/console/payments/{EC}/{nn}"),
            TO_LOGIN,
            200,
        ),
        get(
            "/console/receipts",
            "/console/receipts".into(),
            TO_LOGIN,
            200,
        ),
        // A station the receipt has no copy for: the right token gets as far as the re-send,
        // which finds nothing to queue (the EC is not called again).
        post(
            "/console/receipts/{receipt_id}/resend",
            format!("/console/receipts/{token}/resend"),
            "station=77777777777_99",
            UNAUTHORIZED,
            404,
        ),
        get("/console/login", "/console/login".into(), None, 200),
        // Public: the token travels in the form, whatever the header says.
        post(
            "/console/login",
            "/console/login".into(),
            "token=s3cret-admin-token",
            None,
            303,
        ),
        post(
            "/console/logout",
            "/console/logout".into(),
            "",
            UNAUTHORIZED,
            303,
        ),
        get(
            "/console/assets/console.css",
            "/console/assets/console.css".into(),
            None,
            200,
        ),
        get(
            "/console/assets/console.js",
            "/console/assets/console.js".into(),
            None,
            200,
        ),
    ]
}

/// The routes `src/admin.rs` declares (its `ROUTES` table is what the listener serves).
fn registered() -> Vec<(&'static str, &'static str)> {
    pagonode::admin::ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .collect()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    route: &Route,
    authorization: Option<&str>,
) -> u16 {
    let url = format!("{base}{}", route.path);
    let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
    let mut req = http.request(method, url);
    if !route.form.is_empty() {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(route.form);
    }
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

#[test]
fn the_table_lists_every_admin_route() {
    let registered = registered();
    assert!(registered.len() >= 7, "{registered:?}");
    let listed: Vec<(&str, &str)> = routes("t", "n")
        .iter()
        .map(|r| (r.method, r.pattern))
        .collect();
    for p in &registered {
        assert!(
            listed.contains(p),
            "admin route {p:?} has no row in this test's table"
        );
    }
    for p in &listed {
        assert!(
            registered.contains(p),
            "the table lists {p:?}, which src/admin.rs does not declare"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_wants_the_token() {
    let h = Harness::start_admin(|c| c.node.admin_token = Some(TOKEN.into())).await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<pagonode::codec::node_for_psp::SendPaymentOutcomeRes>(
        &h.send(&outcome(&PSP1, &token, true, None)).await,
    );
    h.wait_receipts(1, 30).await;
    // Redirects are statuses here: a console page answers 303 to the login form.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = h.admin_url();
    let wrong = [
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(TOKEN.to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("bearer {TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
        Some(format!("Bearer  {TOKEN}")),
    ];
    for route in routes(&token, &nn) {
        for a in &wrong {
            let status = call(&http, &base, &route, a.as_deref()).await;
            match route.refused {
                Some(refused) => assert_eq!(status, refused, "{} with {a:?}", route.path),
                None => assert!(
                    ![401, 403].contains(&status),
                    "{} is public: {status} with {a:?}",
                    route.path
                ),
            }
        }
        let status = call(&http, &base, &route, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(
            status, route.authorized_status,
            "{} with the right token",
            route.path
        );
    }
    // Only the authorized re-send reached the EC: the receipt, then one copy again.
    eventually(30, "the re-sent copy", || async {
        (h.ec_calls("paSendRTV2", &nn) >= 2).then_some(())
    })
    .await;
    assert_eq!(h.ec_calls("paSendRTV2", &nn), 2);
    // The re-send is journaled with who asked: the token's id and the caller's address.
    let text = http
        .get(format!("{base}/admin/journal?primitive=RESEND_REQUESTED"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let journal: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = journal["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{journal}");
    let detail = rows[0]["dettaglio"].as_str().unwrap();
    assert!(
        detail.starts_with("re-sent by token admin from 127.0.0.1:"),
        "{journal}"
    );
    h.stop().await;
}
