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

/// Retention, on the store the node ran on: a finished payment (paid, its receipt's copy
/// delivered) older than the period is deleted with its receipt; a payment still waiting for
/// its outcome is kept; the paid notice stays paid (a second payment is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_finished_payments_only() {
    use pagonode::codec::types::{FiscalCode, NoticeNumber};
    use pagonode::engine::NoticeKey;
    use pagonode::store::{Retention, StoreOptions};
    let mut h = Harness::start_admin(|_| {}).await;
    let paid = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &paid).await;
    let m = h.call(&outcome(&PSP1, &token, true, None)).await;
    assert_eq!(code(&m), None, "{m:?}");
    eventually(20, "the payment NOTIFIED", || async {
        (h.payment_status(EC, &paid, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    let waiting = notice("02", "00");
    let waiting_token = activate_ok(&h, &PSP2, EC, &waiting).await;
    h.node.take().unwrap().stop().await;

    let store = pagonode::store::open(&h.config.node.database, StoreOptions { lease_ms: 1000 })
        .await
        .unwrap();
    let now = pagonode::clock::Clock::now_ms(&pagonode::clock::SystemClock);
    let r = Retention {
        now,
        journal_before: 0,
        finished_before: now + 1,
    };
    assert_eq!(
        store.maintenance(r).await.unwrap(),
        1,
        "one finished payment"
    );
    assert_eq!(
        store.maintenance(r).await.unwrap(),
        0,
        "nothing left to delete"
    );
    let key = |nn: &str| NoticeKey {
        fiscal_code: FiscalCode::new(EC).unwrap(),
        notice_number: NoticeNumber::new(nn).unwrap(),
    };
    assert!(
        store
            .payments_of_notice(&key(&paid))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.load_recipients(&token).await.unwrap().is_empty());
    let kept = store.payments_of_notice(&key(&waiting)).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].token.as_str(), waiting_token);
    store.close();
    drop(store);

    h.node = Some(
        pagonode::server::RunningNode::start(
            h.config.clone(),
            Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
            None,
        )
        .await
        .unwrap(),
    );
    let again = h.call(&activate(&PSP2, EC, &paid, 1000, None)).await;
    assert_eq!(code(&again).as_deref(), Some("PPT_PAGAMENTO_DUPLICATO"));
    let m = h.call(&outcome(&PSP2, &waiting_token, true, None)).await;
    assert_eq!(code(&m), None, "{m:?}");
    h.stop().await;
}

/// Every test above, again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
