//! Health that means something (issue 12): a commit or a read of the store that failed makes
//! `/health` report the store down, and the PSP that met the failure gets PPT_SYSTEM_ERROR with
//! no internal text (SQL errors, paths): the detail goes to the log and the journal. The
//! failure is injected with a failpoint (`store.load_notice`), in a test binary of its own (a
//! failpoint holds for the whole process).

mod common;

use common::*;
use pagonode::codec::node_for_psp::*;

async fn health(h: &Harness) -> (u16, serde_json::Value) {
    let url = h.url().replace("/node-for-psp/v1", "/health");
    let res = reqwest::Client::new().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_str(&res.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_failed_read_makes_the_store_unhealthy_and_tells_the_psp_nothing_of_it() {
    let h = Harness::start_admin(|_| {}).await;
    let (status, v) = health(&h).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("UP")), "{v}");

    pagonode::failpoints::configure("store.load_notice", "return").unwrap();
    let answer = h.send(&verify(&PSP1, EC, &notice("02", "00"))).await;
    pagonode::failpoints::configure("store.load_notice", "off").unwrap();
    let fault = expect_fault::<VerifyPaymentNoticeRes>(&answer, "PPT_SYSTEM_ERROR");
    let description = fault.description.unwrap().to_string();
    assert!(
        description.starts_with("Errore interno del nodo (incidente "),
        "{description}"
    );
    assert!(
        !answer.contains("injected") && !answer.contains("failpoint"),
        "{answer}"
    );

    // Down while the failure is recent, with no error text either.
    let (status, v) = health(&h).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "DOWN");
    assert_eq!(v["store"]["status"], "failing");
    assert!(!v.to_string().contains("injected"), "{v}");

    // The detail is in the journal, under the incident the PSP was given.
    let incident = description
        .trim_start_matches("Errore interno del nodo (incidente ")
        .trim_end_matches(')')
        .to_string();
    eventually(10, "the incident in the journal", || async {
        let (_, j) = h
            .admin_get("/admin/journal?outcome=PPT_SYSTEM_ERROR&limit=100")
            .await;
        j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tipoEvento"] == "systemError")
            .filter(|r| {
                let detail = r["dettaglio"].as_str().unwrap_or_default();
                detail.contains(&incident) && detail.contains("injected failure")
            })
            .map(drop)
    })
    .await;

    // The store answers again: requests are served (the health endpoint says down until the
    // failure is older than the window).
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP1, EC, &notice("02", "00"))).await);
    h.stop().await;
}
