//! Token deadlines and outcomes that arrive after them (official BDD tests PAG-1976,
//! `RetryATokenScaduto/*`), the outcome deadline of spontaneous payments, and the receipt fan-out
//! of multi-beneficiary notices (F_DPNR_10–20), late outcomes included. Tokens live 300 ms here.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pagonode::codec::node_for_psp::*;
use pagonode::codec::pa_for_node::{PaSendRtReq, PaSendRtV2Request};
use pagonode::codec::{AnyMessage, Body, Limits, read_message};
use pagonode::engine::render_receipt_v1;
use pagonode::mock_ec::{ScriptAction, ScriptRule, StoredReceipt};

const LIFETIME_MS: i64 = 300;

/// Activates with a 300 ms token; returns the token and when the answer arrived (the deadline
/// is at most 300 ms after that).
async fn activate_short(h: &Harness, psp: &Psp, fc: &str, nn: &str) -> (String, Instant) {
    let body = h
        .send(&activate_exp(psp, fc, nn, LIFETIME_MS, Some(&key(psp))))
        .await;
    (token_of(&body), Instant::now())
}

async fn wait_status(h: &Harness, fc: &str, nn: &str, token: &str, status: &str) {
    eventually(5, &format!("{token} {status}"), || async {
        (h.payment_status(fc, nn, token).await == status).then_some(())
    })
    .await;
}

/// Waits for the token's deadline to fire on its own (no request in between).
async fn expired(h: &Harness, fc: &str, nn: &str, token: &str) {
    wait_status(h, fc, nn, token, "CANCELLED").await;
}

fn millis(ts: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn the_deadline_fires_on_its_own_and_frees_the_notice() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    // A longer token here, so it is surely still live when checked right after.
    let lifetime = 800;
    let req = activate_exp(&PSP1, EC, &nn, lifetime, Some(&k));
    let t1 = token_of(&h.send(&req).await);
    let at = Instant::now();
    // Live for its lifetime.
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    let p = h.payments_of(EC, &nn).await;
    assert_eq!(
        millis(&p[0]["deadline"]) - millis(&p[0]["activatedAt"]),
        lifetime
    );
    // Cancelled by the timer, with nobody asking.
    expired(&h, EC, &nn, &t1).await;
    assert!(
        at.elapsed() < Duration::from_millis(3500),
        "fired late: {:?}",
        at.elapsed()
    );
    // Payable again; the cancelled activation's key was deleted, so the same request is a new
    // activation with a new token.
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, &nn)).await);
    let t2 = token_of(&h.send(&req).await);
    assert_ne!(t1, t2);
    let payments = h.payments_of(EC, &nn).await;
    assert_eq!(payments.len(), 2, "{payments:?}");
    assert_eq!(payments[0]["status"], "CANCELLED");
    assert_eq!(payments[0]["classification"], "TO_VERIFY");
    assert_eq!(payments[1]["status"], "PAYING");
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 2);
    assert_eq!(h.settled_copies().await, (0, 0));
    assert!(
        h.ec.receipts().is_empty(),
        "a cancelled token got a receipt"
    );
    h.stop().await;
}

#[tokio::test]
async fn ok_after_expiry_on_a_free_notice_is_token_scaduto_and_the_payment_completes() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let (t1, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t1).await;
    let spo = outcome(&PSP1, &t1, true, Some(&key(&PSP1)));
    let answer = h.send(&spo).await;
    expect_fault::<SendPaymentOutcomeRes>(&answer, "PPT_TOKEN_SCADUTO");
    // Re-sent with its key: the same answer, nothing done twice.
    assert_eq!(h.send(&spo).await, answer);
    // The receipt is generated and delivered all the same; the notice is paid.
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].receipt_id, t1);
    assert_eq!(receipts[0].notice_number, nn);
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;
    h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP2, EC, &nn), "PPT_PAGAMENTO_DUPLICATO")
        .await;
    wait_status(&h, EC, &nn, &t1, "NOTIFIED").await;
    assert_eq!(h.settled_copies().await, (1, 0));
    assert_eq!(h.ec.receipts().len(), 1);
    assert_eq!(h.ec.receipts()[0].deliveries, 1);
    // The outcome is now acquired: without the key it is ESITO_GIA_ACQUISITO.
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t1, true, None),
        "PPT_ESITO_GIA_ACQUISITO",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn ko_after_expiry_is_token_scaduto_ko_and_the_notice_stays_free() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let (t1, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t1).await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t1, false, None),
        "PPT_TOKEN_SCADUTO_KO",
    )
    .await;
    wait_status(&h, EC, &nn, &t1, "FAILED").await;
    let t2 = activate_ok(&h, &PSP2, EC, &nn).await;
    assert_ne!(t1, t2);
    assert_eq!(h.settled_copies().await, (0, 0));
    assert!(h.ec.receipts().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn late_outcome_when_another_psp_has_activated_since() {
    let h = Harness::start_admin(|_| {}).await;
    // OK: another payment exists, PPT_PAGAMENTO_DUPLICATO, nothing changes.
    let nn = notice("02", "00");
    let (t1, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t1).await;
    let t2 = activate_ok(&h, &PSP2, EC, &nn).await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t1, true, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;
    assert_eq!(h.payment_status(EC, &nn, &t1).await, "CANCELLED");
    assert_eq!(h.payment_status(EC, &nn, &t2).await, "PAYING");
    // The new token is still the one that pays.
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP2, &t2, true, None)).await);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].receipt_id, t2);

    // KO: PPT_TOKEN_SCADUTO_KO (official BDD test PAG-1976 "non pagabile spov1 KO"), and
    // the new activation is untouched.
    let nn = notice("02", "00");
    let (t3, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t3).await;
    let t4 = activate_ok(&h, &PSP2, EC, &nn).await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t3, false, None),
        "PPT_TOKEN_SCADUTO_KO",
    )
    .await;
    assert_eq!(h.payment_status(EC, &nn, &t4).await, "PAYING");
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP1, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP2, &t4, false, None)).await);
    assert_eq!(h.settled_copies().await, (1, 0));
    assert_eq!(h.ec.receipts().len(), 1, "only the first notice's receipt");
    h.stop().await;
}

#[tokio::test]
async fn late_outcome_while_another_activation_is_in_flight() {
    // The EC holds the activation 3 s: room for the late outcome on a loaded machine.
    let h = Harness::start_admin(|c| c.timings.ec_timeout_ms = 10_000).await;
    for ok_outcome in [true, false] {
        let nn = notice("02", "00");
        let (t1, _) = activate_short(&h, &PSP1, EC, &nn).await;
        expired(&h, EC, &nn, &t1).await;
        // PSP2's activation is held at the EC; the late outcome is sent once the EC has its
        // paGetPaymentV2 (the activation is then in flight) and must be answered before it.
        h.ec.add_script(
            ScriptRule::new("paGetPaymentV2", ScriptAction::Delay)
                .for_notice(&nn)
                .with_delay_ms(3000),
        )
        .unwrap();
        let req = activate(&PSP2, EC, &nn, 1000, None);
        let late = outcome(&PSP1, &t1, ok_outcome, None);
        let calls = h.ec_calls("paGetPaymentV2", &nn);
        let ((activated, activated_at), (answered, answered_at)) =
            tokio::join!(async { (h.send(&req).await, Instant::now()) }, async {
                eventually(10, "PSP2's paGetPaymentV2 at the EC", || async {
                    (h.ec_calls("paGetPaymentV2", &nn) > calls).then_some(())
                })
                .await;
                (h.send(&late).await, Instant::now())
            });
        assert!(
            answered_at < activated_at,
            "the late outcome was not answered while the activation was in flight"
        );
        let want = if ok_outcome {
            "PPT_PAGAMENTO_DUPLICATO"
        } else {
            "PPT_TOKEN_SCADUTO_KO"
        };
        expect_fault::<SendPaymentOutcomeRes>(&answered, want);
        let t2 = token_of(&activated);
        assert_eq!(h.payment_status(EC, &nn, &t1).await, "CANCELLED");
        assert_eq!(h.payment_status(EC, &nn, &t2).await, "PAYING");
    }
    assert_eq!(h.settled_copies().await, (0, 0));
    assert!(h.ec.receipts().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn late_outcome_when_the_notice_was_paid_since_is_duplicato() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let (t1, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t1).await;
    let t2 = activate_ok(&h, &PSP2, EC, &nn).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP2, &t2, true, None)).await);
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t1, true, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &t1, false, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;
    h.refused::<_, SendPaymentOutcomeV2Response>(
        &outcome_v2(&PSP1, &[&t1], true, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;
    assert_eq!(h.payment_status(EC, &nn, &t1).await, "CANCELLED");
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(h.settled_copies().await, (1, 0));
    assert_eq!(h.ec.receipts().len(), 1);
    assert_eq!(receipts[0].receipt_id, t2);
    h.stop().await;
}

#[tokio::test]
async fn an_outcome_right_at_the_deadline_is_late() {
    let h = Harness::start_admin(|_| {}).await;
    for ok_outcome in [true, false] {
        let nn = notice("02", "00");
        let (t1, answered) = activate_short(&h, &PSP1, EC, &nn).await;
        // The deadline is at most 300 ms after the answer: send the outcome right then, without
        // waiting for the timer to cancel the payment.
        tokio::time::sleep(
            (answered + Duration::from_millis(LIFETIME_MS as u64))
                .saturating_duration_since(Instant::now()),
        )
        .await;
        let want = if ok_outcome {
            "PPT_TOKEN_SCADUTO"
        } else {
            "PPT_TOKEN_SCADUTO_KO"
        };
        h.refused::<_, SendPaymentOutcomeRes>(&outcome(&PSP1, &t1, ok_outcome, None), want)
            .await;
        if ok_outcome {
            h.wait_receipts(1, 10).await;
            h.refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP2, EC, &nn, 1000, None),
                "PPT_PAGAMENTO_DUPLICATO",
            )
            .await;
        } else {
            activate_ok(&h, &PSP2, EC, &nn).await;
        }
    }
    // And an activation right at the deadline finds the notice free, even before the timer.
    let nn = notice("02", "00");
    let (t1, answered) = activate_short(&h, &PSP1, EC, &nn).await;
    tokio::time::sleep(
        (answered + Duration::from_millis(LIFETIME_MS as u64))
            .saturating_duration_since(Instant::now()),
    )
    .await;
    let t2 = activate_ok(&h, &PSP2, EC, &nn).await;
    assert_ne!(t1, t2);
    assert_eq!(h.payment_status(EC, &nn, &t1).await, "CANCELLED");
    h.stop().await;
}

#[tokio::test]
async fn a_spontaneous_payment_has_the_outcome_deadline_not_the_token_lifetime() {
    let h = Harness::start_admin(|c| c.timings.outcome_deadline_ms = 400).await;
    let AnyMessage::DemandPaymentNoticeResponse(d) =
        h.call(&demand(&PSP1, "00042", tassa_auto("AB123CD"))).await
    else {
        panic!()
    };
    let qr = d.qr_code.expect("qrCode");
    let (fc, nn) = (qr.fiscal_code.to_string(), qr.notice_number.to_string());
    // No expirationTime: a notice payment would live 30 minutes; this one has 400 ms.
    let spontaneous = activate_ok(&h, &PSP1, &fc, &nn).await;
    let normal_nn = notice("02", "00");
    let normal = activate_ok(&h, &PSP1, EC, &normal_nn).await;
    let p = &h.payments_of(&fc, &nn).await[0];
    assert_eq!(
        millis(&p["deadline"]) - millis(&p["activatedAt"]),
        400,
        "{p}"
    );
    let q = &h.payments_of(EC, &normal_nn).await[0];
    assert_eq!(
        millis(&q["deadline"]) - millis(&q["activatedAt"]),
        1_800_000,
        "{q}"
    );
    expired(&h, &fc, &nn, &spontaneous).await;
    assert_eq!(h.payment_status(EC, &normal_nn, &normal).await, "PAYING");
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &normal_nn, 1000, None),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    // A late OK on the free notice: PPT_TOKEN_SCADUTO, and the EC gets its receipt.
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&PSP1, &spontaneous, true, None),
        "PPT_TOKEN_SCADUTO",
    )
    .await;
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(
        (
            receipts[0].station.as_str(),
            receipts[0].receipt_id.as_str()
        ),
        ("88888888888_01", spontaneous.as_str())
    );
    // In time, the outcome is simply accepted.
    let AnyMessage::DemandPaymentNoticeResponse(d) =
        h.call(&demand(&PSP1, "00042", tassa_auto("CD456EF"))).await
    else {
        panic!()
    };
    let qr = d.qr_code.expect("qrCode");
    let t = activate_ok(
        &h,
        &PSP1,
        qr.fiscal_code.as_str(),
        qr.notice_number.as_str(),
    )
    .await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t, true, None)).await);
    h.wait_receipts(2, 10).await;
    h.stop().await;
}

// ------------------------------------------------------------------ multi-beneficiary receipts

/// The copies of one receipt: one per station, V1 or V2 as the station says, with the same
/// receipt in each (V1 copies carry its V1 rendering); only the PA block differs.
fn check_copies(copies: &[StoredReceipt], token: &str, nn: &str, expected: &[(&str, &str, u8)]) {
    let mut stations: Vec<(&str, &str, u8)> = copies
        .iter()
        .map(|r| (r.station.as_str(), r.id_pa.as_str(), r.version))
        .collect();
    stations.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(stations, want, "{copies:?}");
    let mut v2_receipt: Option<&str> = None;
    let mut parsed_v2 = None;
    for c in copies {
        assert_eq!(
            (
                c.receipt_id.as_str(),
                c.notice_number.as_str(),
                c.fiscal_code.as_str()
            ),
            (token, nn, EC),
            "{c:?}"
        );
        assert_eq!(c.deliveries, 1);
        assert_eq!(
            element(&c.request_body, "idStation"),
            Some(c.station.as_str())
        );
        assert_eq!(element(&c.request_body, "idPA"), Some(c.id_pa.as_str()));
        if c.version == 2 {
            let receipt = &c.request_body[c.request_body.find("<receipt>").unwrap()
                ..c.request_body.find("</receipt>").unwrap()];
            match v2_receipt {
                None => v2_receipt = Some(receipt),
                Some(first) => assert_eq!(first, receipt, "two V2 copies differ"),
            }
            let Ok(Body::Message(m)) =
                read_message::<PaSendRtV2Request>(c.request_body.as_bytes(), Limits::DEFAULT)
            else {
                panic!("{}", c.request_body)
            };
            parsed_v2 = Some(m.receipt);
        }
    }
    let v2 = parsed_v2.expect("a V2 copy");
    for c in copies.iter().filter(|c| c.version == 1) {
        let Ok(Body::Message(m)) =
            read_message::<PaSendRtReq>(c.request_body.as_bytes(), Limits::DEFAULT)
        else {
            panic!("{}", c.request_body)
        };
        assert_eq!(
            Some(m.receipt),
            render_receipt_v1(&v2),
            "the V1 copy is not the same receipt"
        );
    }
}

fn copies_of(h: &Harness, token: &str) -> Vec<StoredReceipt> {
    h.ec.receipts()
        .into_iter()
        .filter(|r| r.receipt_id == token)
        .collect()
}

async fn wait_copies(h: &Harness, token: &str, n: usize) -> Vec<StoredReceipt> {
    eventually(10, &format!("{n} copies of {token}"), || async {
        let c = copies_of(h, token);
        (c.len() >= n).then_some(c)
    })
    .await
}

#[tokio::test]
async fn multi_beneficiary_receipts_fan_out_one_copy_per_station() {
    let h = Harness::start_admin(|_| {}).await;
    // Scenario 12: the Comune and the Regione. The owner's station (V2) and the Regione's
    // broadcast station 88888888888_01 (V2).
    let nn12 = notice("02", "12");
    let t12 = activate_ok(&h, &PSP1, EC, &nn12).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t12, true, None)).await);
    // Scenario 13 adds the Provincia, whose broadcast station 88888888888_02 speaks V1.
    let nn13 = notice("02", "13");
    let t13 = activate_ok(&h, &PSP1, EC, &nn13).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t13, true, None)).await);
    // Scenario 15: five transfers, two of them to each secondary EC: still one copy per station.
    let nn15 = notice("02", "15");
    let t15 = activate_ok(&h, &PSP1, EC, &nn15).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t15, true, None)).await);
    // Scenario 13 on the owner's V1 station (segregation 01).
    let nn13v1 = notice("01", "13");
    let t13v1 = activate_ok(&h, &PSP1, EC, &nn13v1).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t13v1, true, None)).await);

    let three = [
        ("77777777777_01", EC, 2),
        ("88888888888_01", EC2, 2),
        ("88888888888_02", EC3, 1),
    ];
    check_copies(&wait_copies(&h, &t12, 2).await, &t12, &nn12, &three[..2]);
    check_copies(&wait_copies(&h, &t13, 3).await, &t13, &nn13, &three);
    check_copies(&wait_copies(&h, &t15, 3).await, &t15, &nn15, &three);
    let v1_owner = [
        ("77777777777_05", EC, 1),
        ("88888888888_01", EC2, 2),
        ("88888888888_02", EC3, 1),
    ];
    check_copies(
        &wait_copies(&h, &t13v1, 3).await,
        &t13v1,
        &nn13v1,
        &v1_owner,
    );
    for (nn, t) in [
        (&nn12, &t12),
        (&nn13, &t13),
        (&nn15, &t15),
        (&nn13v1, &t13v1),
    ] {
        wait_status(&h, EC, nn, t, "NOTIFIED").await;
    }
    assert_eq!(h.settled_copies().await, (2 + 3 + 3 + 3, 0));
    assert_eq!(h.ec.receipts().len(), 2 + 3 + 3 + 3, "extra copies");
    h.stop().await;
}

#[tokio::test]
async fn a_late_ok_on_a_multi_beneficiary_notice_fans_out_too() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "13");
    let (t, _) = activate_short(&h, &PSP1, EC, &nn).await;
    expired(&h, EC, &nn, &t).await;
    h.refused::<_, SendPaymentOutcomeRes>(&outcome(&PSP1, &t, true, None), "PPT_TOKEN_SCADUTO")
        .await;
    let copies = wait_copies(&h, &t, 3).await;
    check_copies(
        &copies,
        &t,
        &nn,
        &[
            ("77777777777_01", EC, 2),
            ("88888888888_01", EC2, 2),
            ("88888888888_02", EC3, 1),
        ],
    );
    wait_status(&h, EC, &nn, &t, "NOTIFIED").await;
    h.stop().await;
}
