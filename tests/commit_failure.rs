//! A store commit failing (an I/O error injected at the commit, failpoint
//! `store.commit_io_error`) after the engine changed its state: the PSP gets
//! `PPT_SYSTEM_ERROR`, never an acknowledgement, and the node goes on from what the store holds
//! (it resynchronises its engine with the store), as the PSP's retry shows. Real node, real HTTP,
//! real SQLite, simulated EC.
//!
//! One test: the failpoint is process-wide, so the phases run one after the other.

mod common;

use common::*;
use pagonode::codec::node_for_psp::{ActivatePaymentNoticeRes, SendPaymentOutcomeRes};

const FAILPOINT: &str = "store.commit_io_error";

/// Makes every store commit fail while alive.
struct FailingCommits;

impl FailingCommits {
    fn start() -> FailingCommits {
        fail::cfg(FAILPOINT, "return").unwrap();
        FailingCommits
    }
}

impl Drop for FailingCommits {
    fn drop(&mut self) {
        fail::remove(FAILPOINT);
    }
}

#[tokio::test]
async fn a_failed_commit_is_never_acknowledged_and_the_node_follows_the_store() {
    let h = Harness::start_admin(|_| {}).await;

    // Activation: the token's commit fails.
    let nn = notice("02", "00");
    let failing = FailingCommits::start();
    let k1 = key(&PSP1);
    let body = h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k1))).await;
    drop(failing);
    let f = expect_fault::<ActivatePaymentNoticeRes>(&body, "PPT_SYSTEM_ERROR");
    assert_eq!(f.id.to_string(), NODE_FAULT_ID);
    assert!(
        h.payments_of(EC, &nn).await.is_empty(),
        "a payment was stored although its activation failed"
    );
    // Had the engine kept the lost token, the notice would be "in progress" for its lifetime.
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    assert_eq!(h.payment_status(EC, &nn, &token).await, "PAYING");

    // Outcome: the commit making the payment PAID (and its receipt) fails.
    let failing = FailingCommits::start();
    let k2 = key(&PSP1);
    let body = h.send(&outcome(&PSP1, &token, true, Some(&k2))).await;
    drop(failing);
    expect_fault::<SendPaymentOutcomeRes>(&body, "PPT_SYSTEM_ERROR");
    assert_eq!(h.payment_status(EC, &nn, &token).await, "PAYING");
    for status in ["PENDING", "NOTIFIED", "FAILED"] {
        assert!(
            h.recipients(status).await.is_empty(),
            "receipt copies ({status}) stored for an outcome that failed"
        );
    }
    // The PSP retries: had the engine kept the outcome it lost, the answer would be
    // PPT_ESITO_GIA_ACQUISITO and no receipt would ever leave.
    let body = h.send(&outcome(&PSP1, &token, true, Some(&k2))).await;
    ok::<SendPaymentOutcomeRes>(&body);
    let receipts = h.wait_receipts(1, 30).await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0].receipt_id, token);
    eventually(30, "the payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    assert_eq!(h.ec.receipts().len(), 1);
    h.stop().await;
}
