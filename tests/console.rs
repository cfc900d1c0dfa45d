//! The operator console in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver), against a real node after real payments. It logs in with the admin token, finds
//! the README walkthrough's payment in the journal, reads its story (classification, receipt
//! status, the messages pretty-printed with the password masked), sees the live service levels,
//! and re-sends a FAILED receipt copy with the page's button.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (or `PAGONODE_CHROMEDRIVER` and
//! `PAGONODE_CHROMIUM` naming the two programs): without them the test fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use pagonode::codec::node_for_psp::SendPaymentOutcomeRes;
use pagonode::mock_ec::{ScriptAction, ScriptRule};

const TOKEN: &str = "console-test-token";
/// The README walkthrough's notice.
const WALKTHROUGH: &str = "302000100000009424";
const STATION: &str = "77777777777_01";

/// chromedriver, stopped with the test.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Starts chromedriver on a free port and waits until it listens.
fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = program("PAGONODE_CHROMEDRIVER", "chromedriver");
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {exe} ({e}): the console test needs headless Chromium and its \
                 driver (Debian: apt-get install chromium chromium-driver)"
            )
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{exe} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": program("PAGONODE_CHROMIUM", "/usr/bin/chromium"),
            // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("headless Chromium through {}: {e}", driver.url))
}

/// The text of the first element matching `css`, waiting for it to appear.
async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Pays notice `nn` of the Comune with PSP1; returns the token.
async fn pay(h: &Harness, nn: &str) -> String {
    let token = activate_ok(h, &PSP1, EC, nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    token
}

/// The status of the receipt copy of `token` at [`STATION`], once it is `status`.
async fn copy_status(h: &Harness, token: &str, status: &str) {
    eventually(10, &format!("{token} {status}"), || async {
        let (code, v) = {
            let resp = reqwest::Client::new()
                .get(format!(
                    "{}/admin/recipients?status={status}",
                    h.admin_url()
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            )
        };
        assert_eq!(code, 200, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["receiptId"] == token && r["station"] == STATION)
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_payment_and_resends_a_failed_receipt_in_the_browser() {
    let driver = chromedriver();
    let h = Harness::start_admin(|c| c.node.admin_token = Some(TOKEN.into())).await;
    let paid = pay(&h, WALKTHROUGH).await;
    h.wait_receipts(1, 10).await;
    // A second payment whose receipt the station refuses until its attempts run out.
    let failing = notice("02", "00");
    h.ec.add_script(ScriptRule::new("paSendRTV2", ScriptAction::Http500).for_notice(&failing))
        .unwrap();
    let failed = pay(&h, &failing).await;
    copy_status(&h, &failed, "FAILED").await;

    let c = browser(&driver).await;
    let admin = h.admin_url();
    let result = async {
        // Without the cookie, the console sends the browser to its login form.
        c.goto(&format!("{admin}/console/")).await.unwrap();
        assert!(
            c.current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/console/login")
        );
        let token = c.find(Locator::Css("#token")).await.unwrap();
        token.send_keys("wrong").await.unwrap();
        c.find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(text(&c, "p.error").await.contains("not an admin token"));
        let token = c.find(Locator::Css("#token")).await.unwrap();
        token.send_keys(TOKEN).await.unwrap();
        c.find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // The live view: the station's answers within 2 s, the FAILED copy counted.
        let stations = text(&c, "#stations").await;
        assert!(stations.contains(STATION), "{stations}");
        assert!(stations.contains("100.0%"), "{stations}");
        assert_eq!(text(&c, "#failed-copies").await, "1");

        // The journal search by notice, then the payment's story.
        c.goto(&format!("{admin}/console/")).await.unwrap();
        let search = c
            .find(Locator::Css("form.search input[name=notice]"))
            .await
            .unwrap();
        search.send_keys(WALKTHROUGH).await.unwrap();
        c.find(Locator::Css("form.search button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let rows = text(&c, "table.journal").await;
        assert!(rows.contains("activatePaymentNotice"), "{rows}");
        assert!(rows.contains(&paid), "{rows}");
        assert!(
            !rows.contains(&failed),
            "only the notice searched for: {rows}"
        );
        // By PSP and outcome, and by token.
        c.goto(&format!(
            "{admin}/console/journal?psp={}&outcome=OK&token={failed}",
            PSP1.id
        ))
        .await
        .unwrap();
        let rows = text(&c, "table.journal").await;
        assert!(rows.contains(&failed) && !rows.contains(&paid), "{rows}");

        c.goto(&format!("{admin}/console/journal?notice={WALKTHROUGH}"))
            .await
            .unwrap();
        c.find(Locator::Css(&format!(
            "table.journal a[href='/console/payments/{EC}/{WALKTHROUGH}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        assert!(text(&c, "h1").await.contains(WALKTHROUGH));
        assert_eq!(text(&c, "section.attempt .badge").await, "POSITIVE");
        assert_eq!(text(&c, "section.attempt dd.token").await, paid);
        eventually(10, "the copy NOTIFIED on the page", || async {
            c.refresh().await.unwrap();
            (text(&c, "table.recipients td.status").await == "NOTIFIED").then_some(())
        })
        .await;
        // The messages, pretty-printed (one element a line), the PSP's password masked.
        let xml: Vec<String> = {
            let mut v = Vec::new();
            for e in c.find_all(Locator::Css("pre.xml")).await.unwrap() {
                v.push(e.prop("textContent").await.unwrap().unwrap_or_default());
            }
            v
        };
        let activation = xml
            .iter()
            .find(|x| x.contains("activatePaymentNoticeReq>"))
            .unwrap_or_else(|| panic!("{xml:?}"));
        assert!(activation.lines().count() > 10, "{activation}");
        assert!(
            activation
                .lines()
                .any(|l| l.trim_start() == format!("<noticeNumber>{WALKTHROUGH}</noticeNumber>")),
            "{activation}"
        );
        assert!(
            activation.contains("<password>********</password>"),
            "{activation}"
        );
        assert!(
            xml.iter().all(|x| !x.contains(PSP1.password)),
            "a password in the page"
        );

        // The FAILED copy, re-sent with the page's button once the station accepts it again.
        c.goto(&format!("{admin}/console/receipts")).await.unwrap();
        let list = text(&c, "#failed").await;
        assert!(list.contains(&failed) && !list.contains(&paid), "{list}");
        h.ec.clear_scripts();
        c.find(Locator::Css(&format!(
            "button.resend[data-receipt='{failed}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        let done = text(&c, "#done").await;
        assert!(
            done.contains(&failed) && done.contains("1 copy queued"),
            "{done}"
        );
        copy_status(&h, &failed, "NOTIFIED").await;
        assert!(h.ec.receipts().iter().any(|r| r.receipt_id == failed));
        c.goto(&format!("{admin}/console/receipts")).await.unwrap();
        assert_eq!(text(&c, "#none").await, "No FAILED copy.");

        // Logged out, the console asks for the token again.
        c.find(Locator::Css("form.logout button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.goto(&format!("{admin}/console/receipts")).await.unwrap();
        assert!(
            c.current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/console/login")
        );
    };
    // The browser is closed whether the checks pass or not.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    h.stop().await;
}
