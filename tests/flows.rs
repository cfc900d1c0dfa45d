//! End-to-end payment flows over real HTTP, real SQLite and the simulated EC.

mod common;

use common::*;
use pagonode::codec::AnyMessage;
use pagonode::codec::pa_for_node::PaSendRtV2Request;
use pagonode::codec::{Body, Limits, read_message};

#[tokio::test]
async fn notice_payment_verify_activate_outcome_receipt() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let AnyMessage::VerifyPaymentNoticeRes(v) = h.call(&verify(&PSP1, EC, &nn)).await else {
        panic!()
    };
    assert!(v.fault.is_none(), "{:?}", v.fault);
    let amount = v.payment_list.unwrap().payment_option_description[0].amount;
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    assert_eq!(token.len(), 32);
    let AnyMessage::SendPaymentOutcomeRes(o) = h
        .call(&outcome(&PSP1, &token, true, Some(&key(&PSP1))))
        .await
    else {
        panic!()
    };
    assert!(o.fault.is_none(), "{:?}", o.fault);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].receipt_id, token);
    assert_eq!(receipts[0].station, "77777777777_01");
    assert_eq!(receipts[0].version, 2);
    let Ok(Body::Message(rt)) =
        read_message::<PaSendRtV2Request>(receipts[0].request_body.as_bytes(), Limits::DEFAULT)
    else {
        panic!()
    };
    assert_eq!(rt.receipt.payment_amount, amount.amount());
    assert_eq!(
        rt.receipt.psp_company_name.as_str(),
        "PSP di Esempio S.p.A."
    );
    assert_eq!(rt.receipt.channel_description.as_str(), "app");
    h.stop().await;
}

#[tokio::test]
async fn spontaneous_payment_demand_activate_outcome_receipt() {
    let h = Harness::start().await;
    let AnyMessage::DemandPaymentNoticeResponse(d) =
        h.call(&demand(&PSP1, "00042", tassa_auto("AB123CD"))).await
    else {
        panic!()
    };
    assert!(d.fault.is_none(), "{:?}", d.fault);
    let qr = d.qr_code.unwrap();
    assert_eq!(qr.fiscal_code.as_str(), EC2);
    let token = activate_ok(
        &h,
        &PSP1,
        qr.fiscal_code.as_str(),
        qr.notice_number.as_str(),
    )
    .await;
    let AnyMessage::SendPaymentOutcomeRes(o) = h.call(&outcome(&PSP1, &token, true, None)).await
    else {
        panic!()
    };
    assert!(o.fault.is_none(), "{:?}", o.fault);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].station, "88888888888_01");
    assert_eq!(receipts[0].notice_number, qr.notice_number.as_str());
    h.stop().await;
}

#[tokio::test]
async fn v1_station_gets_v1_primitives_whatever_the_psp_speaks() {
    let h = Harness::start().await;
    let nn = notice("01", "00");
    let AnyMessage::ActivatePaymentNoticeV2Response(a) =
        h.call(&activate_v2(&PSP1, EC, &nn, 1000, None)).await
    else {
        panic!()
    };
    let token = a.payment_token.expect("token").to_string();
    let AnyMessage::SendPaymentOutcomeV2Response(o) =
        h.call(&outcome_v2(&PSP1, &[&token], true, None)).await
    else {
        panic!()
    };
    assert!(o.fault.is_none(), "{:?}", o.fault);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(
        (receipts[0].station.as_str(), receipts[0].version),
        ("77777777777_05", 1)
    );
    let ops: Vec<String> =
        h.ec.requests()
            .iter()
            .filter_map(|r| r.operation.clone())
            .collect();
    assert!(
        ops.contains(&"paGetPayment".to_string()) && ops.contains(&"paSendRT".to_string()),
        "{ops:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn ko_outcome_frees_the_notice_for_a_new_activation() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let t1 = activate_ok(&h, &PSP1, EC, &nn).await;
    let AnyMessage::SendPaymentOutcomeRes(o) = h.call(&outcome(&PSP1, &t1, false, None)).await
    else {
        panic!()
    };
    assert!(o.fault.is_none());
    let t2 = activate_ok(&h, &PSP2, EC, &nn).await;
    assert_ne!(t1, t2);
    assert!(h.ec.receipts().is_empty(), "no receipt for a KO");
    h.stop().await;
}

#[tokio::test]
async fn restart_between_activate_and_outcome() {
    let mut h = Harness::start().await;
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    h.restart().await;
    // The lock survived: another PSP still finds the payment in progress.
    let m = h.call(&activate(&PSP2, EC, &nn, 1000, None)).await;
    assert_eq!(code(&m).as_deref(), Some("PPT_PAGAMENTO_IN_CORSO"));
    let AnyMessage::SendPaymentOutcomeRes(o) = h.call(&outcome(&PSP1, &token, true, None)).await
    else {
        panic!()
    };
    assert!(o.fault.is_none(), "{:?}", o.fault);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

/// Every test above, again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
