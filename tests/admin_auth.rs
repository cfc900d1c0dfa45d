//! The admin token guards every admin route: a table of every route the admin listener serves
//! (checked against `src/admin.rs`, so a new route without a row fails), each called without a
//! token, with wrong ones and with the right one, over real HTTP on a node with a payment made.

mod common;

use common::*;

const TOKEN: &str = "s3cret-admin-token";

/// One admin route: its pattern as `src/admin.rs` registers it, the method, a concrete path
/// for the call, whether the token guards it, and the status the right token gets.
struct Route {
    pattern: &'static str,
    post: bool,
    path: String,
    guarded: bool,
    authorized_status: u16,
}

fn routes(token: &str, nn: &str) -> Vec<Route> {
    let r = |pattern, post, path: String, guarded, authorized_status| Route {
        pattern,
        post,
        path,
        guarded,
        authorized_status,
    };
    vec![
        // The liveness probe stays open (README: `GET /health` for load balancers).
        r("/health", false, "/health".into(), false, 200),
        r("/admin/journal", false, "/admin/journal".into(), true, 200),
        r(
            "/admin/payments/{fiscal_code}/{notice_number}",
            false,
            format!("/admin/payments/{EC}/{nn}"),
            true,
            200,
        ),
        r(
            "/admin/recipients",
            false,
            "/admin/recipients?status=NOTIFIED".into(),
            true,
            200,
        ),
        r(
            "/admin/receipts/{receipt_id}/resend",
            true,
            format!("/admin/receipts/{token}/resend"),
            true,
            202,
        ),
        r(
            "/monitoring/v1/jobs/trigger/{job}",
            false,
            "/monitoring/v1/jobs/trigger/paSendRt".into(),
            true,
            200,
        ),
        r(
            "/jobs/trigger/{job}",
            false,
            "/jobs/trigger/mod3CancelV2".into(),
            true,
            200,
        ),
    ]
}

/// The route patterns `src/admin.rs`'s `configure` registers (`.route("<pattern>", ...)`).
fn registered_patterns() -> Vec<String> {
    let src = include_str!("../src/admin.rs");
    let start = src
        .find("pub fn configure(")
        .expect("src/admin.rs has its configure function");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("the end of configure")];
    body.split(".route(")
        .skip(1)
        .map(|call| {
            let quoted = call
                .trim_start()
                .strip_prefix('"')
                .expect("a literal pattern");
            quoted[..quoted.find('"').unwrap()].to_string()
        })
        .collect()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    route: &Route,
    authorization: Option<&str>,
) -> u16 {
    let url = format!("{base}{}", route.path);
    let mut req = if route.post {
        http.post(url)
    } else {
        http.get(url)
    };
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

#[test]
fn the_table_lists_every_admin_route() {
    let registered = registered_patterns();
    assert!(registered.len() >= 7, "{registered:?}");
    let listed: Vec<&str> = routes("t", "n").iter().map(|r| r.pattern).collect();
    for p in &registered {
        assert!(
            listed.contains(&p.as_str()),
            "admin route {p} has no row in this test's table"
        );
    }
    for p in &listed {
        assert!(
            registered.iter().any(|r| r == p),
            "the table lists {p}, which src/admin.rs does not register"
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
    let http = reqwest::Client::new();
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
            if route.guarded {
                assert_eq!(status, 401, "{} with {a:?}", route.path);
            } else {
                assert_ne!(status, 401, "{} with {a:?}", route.path);
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
    h.stop().await;
}
