//! Official compatibility over real HTTP: `timings.expiry` in both modes, the official job
//! triggers on the admin listener, and the exact status-history rows (POSITION_STATUS,
//! POSITION_PAYMENT_STATUS, POSITION_RECEIPT_RECIPIENT_STATUS) the official BDD tests count in
//! their flows (PAG-1976, RetryATokenScaduto, paSendRTV2_NM3 PSRTV2_ACTV1_06/20/24,
//! RevisionePollerAnnulliMod3 REV_ANN_01/05, SEM_APNR_21, IDMP_ACT_8).

mod common;

use std::time::Duration;

use common::*;
use pagonode::codec::AnyMessage;
use pagonode::codec::node_for_psp::*;
use pagonode::config::{Config, ExpiryMode};
use pagonode::mock_ec::{ScriptAction, ScriptRule};

const HOUR: u64 = 3_600_000;
const TOKEN_MS: i64 = 300;

/// The official node's expiry: only the cancellation job cancels, here only when triggered.
fn official(c: &mut Config) {
    c.timings.expiry = ExpiryMode::Official;
    c.timings.cancellation_job_interval_ms = HOUR;
    c.receipts.retry_interval_ms = HOUR;
}

/// pagonode's default expiry; receipt copies retried only when the job is triggered.
fn eager(c: &mut Config) {
    c.receipts.retry_interval_ms = HOUR;
}

async fn start(mode: ExpiryMode) -> Harness {
    Harness::start_admin(move |c| match mode {
        ExpiryMode::Official => official(c),
        ExpiryMode::Eager => eager(c),
    })
    .await
}

/// `GET /monitoring/v1/jobs/trigger/{job}`: must succeed.
async fn trigger(h: &Harness, job: &str) {
    let (status, body) = h
        .admin_get(&format!("/monitoring/v1/jobs/trigger/{job}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
}

/// Activates with a 300 ms token.
async fn activate_short(h: &Harness, psp: &Psp, nn: &str) -> String {
    token_of(
        &h.send(&activate_exp(psp, EC, nn, TOKEN_MS, Some(&key(psp))))
            .await,
    )
}

/// Waits until the token's deadline (as its story gives it) has passed.
async fn past_deadline(h: &Harness, nn: &str, token: &str) {
    let payments = h.payments_of(EC, nn).await;
    let p = payments
        .iter()
        .find(|p| p["paymentToken"] == token)
        .unwrap();
    let deadline = chrono::DateTime::parse_from_rfc3339(p["deadline"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let left = deadline - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(left.max(0) as u64 + 20)).await;
}

async fn wait_status(h: &Harness, nn: &str, token: &str, status: &str) {
    eventually(10, &format!("{token} {status}"), || async {
        (h.payment_status(EC, nn, token).await == status).then_some(())
    })
    .await;
}

/// A fresh notice with a 300 ms token of PSP1 whose deadline has passed: (notice, token).
async fn expired_token(h: &Harness) -> (String, String) {
    let nn = notice("02", "00");
    let token = activate_short(h, &PSP1, &nn).await;
    past_deadline(h, &nn, &token).await;
    (nn, token)
}

/// [`expired_token`], cancelled: at its deadline (eager), or by the triggered job (official).
async fn cancelled_token(h: &Harness, mode: ExpiryMode) -> (String, String) {
    let (nn, token) = expired_token(h).await;
    if mode == ExpiryMode::Official {
        assert_eq!(h.payment_status(EC, &nn, &token).await, "PAYING");
        trigger(h, "mod3CancelV2").await;
        // The trigger answers once the pass is committed: no waiting.
        assert_eq!(h.payment_status(EC, &nn, &token).await, "CANCELLED");
    } else {
        wait_status(h, &nn, &token, "CANCELLED").await;
    }
    (nn, token)
}

const PAID_AND_NOTIFIED: [&str; 5] = [
    "PAYING",
    "PAID",
    "NOTICE_GENERATED",
    "NOTICE_SENT",
    "NOTIFIED",
];
const DELIVERED: [&str; 3] = ["NOTICE_GENERATED", "NOTICE_SENT", "NOTIFIED"];

#[tokio::test]
async fn official_mode_an_expired_token_holds_the_notice_until_the_cancellation_job() {
    let h = start(ExpiryMode::Official).await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate_exp(&PSP1, EC, &nn, TOKEN_MS, Some(&k));
    let t1 = token_of(&h.send(&req).await);
    past_deadline(&h, &nn, &t1).await;
    // Expired, not cancelled: in progress for everyone (SEM_APNR_21, IDMP_ACT_9/19); the same
    // request under the same key is no replay, its entry having lived no longer than the token
    // (IDMP_ACT_8, SEM_APNR_22).
    for req in [
        activate(&PSP2, EC, &nn, 1000, None),
        activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))),
        req.clone(),
    ] {
        h.refused::<_, ActivatePaymentNoticeRes>(&req, "PPT_PAGAMENTO_IN_CORSO")
            .await;
    }
    h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP2, EC, &nn), "PPT_PAGAMENTO_IN_CORSO")
        .await;
    assert_eq!(h.payment_status(EC, &nn, &t1).await, "PAYING");
    // The job cancels it (REV_ANN_01/02): the notice is payable again, a new activation gets
    // a new token (REV_ANN_05). The refusal of the re-sent request stays cached under its key
    // (a semantic failure is cached for a day: IDMP_ACT_14).
    trigger(&h, "mod3CancelV2").await;
    assert_eq!(h.payment_status(EC, &nn, &t1).await, "CANCELLED");
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, &nn)).await);
    h.refused::<_, ActivatePaymentNoticeRes>(&req, "PPT_PAGAMENTO_IN_CORSO")
        .await;
    let t2 = token_of(
        &h.send(&activate_exp(&PSP1, EC, &nn, TOKEN_MS, Some(&key(&PSP1))))
            .await,
    );
    assert_ne!(t1, t2);
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.payment(&t1), ["PAYING", "CANCELLED"]);
    assert_eq!(hist.payment(&t2), ["PAYING"]);
    assert_eq!(hist.position(), ["PAYING", "INSERTED", "PAYING"]);
    assert!(
        h.ec.receipts().is_empty(),
        "a cancelled token got a receipt"
    );
    h.stop().await;
}

#[tokio::test]
async fn official_mode_an_outcome_on_an_expired_token_the_job_has_not_cancelled_counts() {
    let h = start(ExpiryMode::Official).await;
    // OK: paid as in time (retry_PaNew_01, SPO_REV_03).
    let (nn, t) = expired_token(&h).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t, true, None)).await);
    wait_status(&h, &nn, &t, "NOTIFIED").await;
    trigger(&h, "mod3CancelV2").await;
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.payment(&t), PAID_AND_NOTIFIED);
    assert_eq!(hist.position(), ["PAYING", "PAID", "NOTIFIED"]);
    assert_eq!(hist.recipient(&t, "77777777777_01"), DELIVERED);
    // KO: failed as in time, the notice free again (retry_PaNew_03).
    let (nn, t) = expired_token(&h).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t, false, None)).await);
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.payment(&t), ["PAYING", "FAILED"]);
    assert_eq!(hist.position(), ["PAYING", "INSERTED"]);
    token_of(&h.send(&activate(&PSP2, EC, &nn, 1000, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn eager_mode_an_expired_token_frees_the_notice_at_its_deadline() {
    let h = start(ExpiryMode::Eager).await;
    let (nn, t1) = expired_token(&h).await;
    // No job needed: the deadline is honoured by the next request even before its timer.
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, &nn)).await);
    let t2 = token_of(&h.send(&activate(&PSP2, EC, &nn, 1000, None)).await);
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.payment(&t1), ["PAYING", "CANCELLED"]);
    assert_eq!(hist.payment(&t2), ["PAYING"]);
    assert_eq!(hist.position(), ["PAYING", "INSERTED", "PAYING"]);
    h.stop().await;
}

#[tokio::test]
async fn late_outcomes_on_a_cancelled_token_in_both_modes() {
    for mode in [ExpiryMode::Eager, ExpiryMode::Official] {
        let h = start(mode).await;
        // OK on a free notice: PPT_TOKEN_SCADUTO, and the payment completes (Retry_DB_GR_07,
        // PAG-1976): 6 payment rows, 4 position rows.
        let (nn, t) = cancelled_token(&h, mode).await;
        expect_fault::<SendPaymentOutcomeRes>(
            &h.send(&outcome(&PSP1, &t, true, None)).await,
            "PPT_TOKEN_SCADUTO",
        );
        wait_status(&h, &nn, &t, "NOTIFIED").await;
        let hist = h.histories(EC, &nn).await;
        assert_eq!(
            hist.payment(&t),
            [
                "PAYING",
                "CANCELLED",
                "PAID",
                "NOTICE_GENERATED",
                "NOTICE_SENT",
                "NOTIFIED"
            ],
            "{mode:?}"
        );
        assert_eq!(
            hist.position(),
            ["PAYING", "INSERTED", "PAID", "NOTIFIED"],
            "{mode:?}"
        );
        assert_eq!(hist.recipient(&t, "77777777777_01"), DELIVERED, "{mode:?}");
        // KO on a free notice: PPT_TOKEN_SCADUTO_KO; the payment FAILED (3 rows), the notice
        // unchanged (2 rows).
        let (nn, t) = cancelled_token(&h, mode).await;
        expect_fault::<SendPaymentOutcomeRes>(
            &h.send(&outcome(&PSP1, &t, false, None)).await,
            "PPT_TOKEN_SCADUTO_KO",
        );
        let hist = h.histories(EC, &nn).await;
        assert_eq!(
            hist.payment(&t),
            ["PAYING", "CANCELLED", "FAILED"],
            "{mode:?}"
        );
        assert_eq!(hist.position(), ["PAYING", "INSERTED"], "{mode:?}");
        // OK while another token pays the notice: PPT_PAGAMENTO_DUPLICATO, nothing changes
        // (SEM_SPO_13.1, retry_PaNew_05).
        let (nn, t1) = cancelled_token(&h, mode).await;
        let t2 = token_of(&h.send(&activate(&PSP2, EC, &nn, 1000, None)).await);
        expect_fault::<SendPaymentOutcomeRes>(
            &h.send(&outcome(&PSP1, &t1, true, None)).await,
            "PPT_PAGAMENTO_DUPLICATO",
        );
        let hist = h.histories(EC, &nn).await;
        assert_eq!(hist.payment(&t1), ["PAYING", "CANCELLED"], "{mode:?}");
        assert_eq!(hist.payment(&t2), ["PAYING"], "{mode:?}");
        assert_eq!(
            hist.position(),
            ["PAYING", "INSERTED", "PAYING"],
            "{mode:?}"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn a_successful_payment_with_one_and_with_three_recipients() {
    let three = notice("02", "00");
    let h = Harness::start_full(
        |c, _| eager(c),
        |m| {
            m.position.push(mock_position(
                EC,
                &three,
                &[(EC, "5.00", None), (EC2, "3.00", None), (EC3, "2.00", None)],
            ))
        },
    )
    .await;
    let one = notice("02", "00");
    for nn in [&one, &three] {
        let t = activate_ok(&h, &PSP1, EC, nn).await;
        ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t, true, None)).await);
        wait_status(&h, nn, &t, "NOTIFIED").await;
        let hist = h.histories(EC, nn).await;
        // Each of NOTICE_GENERATED, NOTICE_SENT and NOTIFIED once, whatever the number of
        // recipients (PSRTV2_ACTV1_06): 5 rows; the notice 3.
        assert_eq!(hist.payment(&t), PAID_AND_NOTIFIED);
        assert_eq!(hist.position(), ["PAYING", "PAID", "NOTIFIED"]);
        let stations: &[&str] = if nn == &one {
            &["77777777777_01"]
        } else {
            &["77777777777_01", "88888888888_01", "88888888888_02"]
        };
        assert_eq!(hist.recipients.len(), stations.len(), "{hist:?}");
        for s in stations {
            assert_eq!(hist.recipient(&t, s), DELIVERED, "{s}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn a_failed_retry_then_a_delivered_one() {
    let h = start(ExpiryMode::Eager).await;
    let nn = notice("02", "00");
    // The owner's station refuses the receipt twice (PSRTV2_ACTV1_20: a KO, then the retry
    // job's attempt fails too).
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Fault)
            .for_notice(&nn)
            .times(2),
    )
    .unwrap();
    let t = activate_ok(&h, &PSP1, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t, true, None)).await);
    let station = "77777777777_01";
    eventually(10, "the first attempt", || async {
        (h.histories(EC, &nn).await.recipient(&t, station).len() == 3).then_some(())
    })
    .await;
    // Each attempt appends NOTICE_SENT and its result.
    let mut copy = vec!["NOTICE_GENERATED", "NOTICE_SENT", "NOTICE_PENDING"];
    assert_eq!(h.histories(EC, &nn).await.recipient(&t, station), copy);
    // One retry, failed: exactly 5 rows; the payment stays NOTICE_SENT, the notice PAID.
    trigger(&h, "paSendRt").await;
    copy.extend(["NOTICE_SENT", "NOTICE_PENDING"]);
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.recipient(&t, station), copy);
    assert_eq!(
        hist.payment(&t),
        ["PAYING", "PAID", "NOTICE_GENERATED", "NOTICE_SENT"]
    );
    assert_eq!(hist.position(), ["PAYING", "PAID"]);
    // The next retry is delivered: everything NOTIFIED.
    trigger(&h, "paSendRt").await;
    copy.extend(["NOTICE_SENT", "NOTIFIED"]);
    let hist = h.histories(EC, &nn).await;
    assert_eq!(hist.recipient(&t, station), copy);
    assert_eq!(hist.payment(&t), PAID_AND_NOTIFIED);
    assert_eq!(hist.position(), ["PAYING", "PAID", "NOTIFIED"]);
    assert_eq!(h.ec.receipts().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn the_spontaneous_outcome_deadline_is_pagonodes_only() {
    for (mode, lifetime) in [(ExpiryMode::Eager, 2000), (ExpiryMode::Official, 1_800_000)] {
        let h = start(mode).await;
        let r = h.call(&demand(&PSP1, "00042", tassa_auto("AB123CD"))).await;
        let AnyMessage::DemandPaymentNoticeResponse(r) = r else {
            panic!("{r:?}")
        };
        let qr = r.qr_code.expect("qrCode");
        let (fc, nn) = (qr.fiscal_code.to_string(), qr.notice_number.to_string());
        token_of(&h.send(&activate(&PSP1, &fc, &nn, 12000, None)).await);
        let p = &h.payments_of(&fc, &nn).await[0];
        let at = |f: &str| {
            chrono::DateTime::parse_from_rfc3339(p[f].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(at("deadline") - at("activatedAt"), lifetime, "{mode:?}");
        h.stop().await;
    }
}

#[tokio::test]
async fn official_mode_the_cancellation_job_also_runs_on_its_own() {
    let h = Harness::start_admin(|c| {
        official(c);
        c.timings.cancellation_job_interval_ms = 200;
    })
    .await;
    let nn = notice("02", "00");
    let t = activate_short(&h, &PSP1, &nn).await;
    wait_status(&h, &nn, &t, "CANCELLED").await;
    assert_eq!(
        h.histories(EC, &nn).await.position(),
        ["PAYING", "INSERTED"]
    );
    h.stop().await;
}

#[tokio::test]
async fn job_triggers_answer_as_the_official_monitoring_api() {
    let h = start(ExpiryMode::Official).await;
    for path in [
        "/monitoring/v1/jobs/trigger/mod3CancelV2",
        "/jobs/trigger/mod3CancelV2",
        "/monitoring/v1/jobs/trigger/paSendRt",
    ] {
        let (status, body) = h.admin_get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let job = path.rsplit('/').next().unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "success": true,
                "action": format!("Trigger job {job}"),
                "description": "Job triggered",
            }),
            "{path}"
        );
    }
    let (status, body) = h.admin_get("/monitoring/v1/jobs/trigger/paInviaRt").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["action"], "Trigger job paInviaRt");
    h.stop().await;
}

/// `GET ?wsdl`: the operations the node answers, at the address it was asked on, or at
/// `node.public_url`.
#[tokio::test]
async fn the_served_wsdl_has_the_address_it_was_asked_on() {
    let get = |url: String, host: Option<&'static str>| async move {
        let mut req = reqwest::Client::new().get(url);
        if let Some(h) = host {
            req = req.header("Host", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.unwrap()
    };
    let h = Harness::start().await;
    let url = h.url();
    let wsdl = get(format!("{url}?wsdl"), Some("pagonode.example:9443")).await;
    assert_eq!(
        wsdl,
        pagonode::wsdl::served_node_for_psp("http://pagonode.example:9443/node-for-psp/v1")
    );
    let wsdl = get(format!("{url}?wsdl"), None).await;
    assert!(
        wsdl.contains(&format!("location=\"{url}\"")),
        "asked on {url}:\n{wsdl}"
    );
    assert!(!wsdl.contains("verificaBollettino"));
    h.stop().await;
    let public = "https://pagonode.example.org/nodo/node-for-psp/v1";
    let h = Harness::start_with(|c| c.node.public_url = Some(public.into())).await;
    let wsdl = get(format!("{}?wsdl", h.url()), Some("other:1")).await;
    assert_eq!(wsdl, pagonode::wsdl::served_node_for_psp(public));
    h.stop().await;
}
