//! Idempotency of activatePaymentNotice and sendPaymentOutcome (official BDD tests
//! `activatePaymentNotice_IDMP_ACT_*`, `sendPaymentOutcome_IDMP_SPO_*`), and the
//! activation race between two PSPs, over real HTTP.

mod common;

use common::*;
use pagonode::codec::node_for_psp::*;
use pagonode::codec::types::*;
use pagonode::codec::write_envelope;
use pagonode::mock_ec::{ScriptAction, ScriptRule};
use std::time::Instant;

fn idem_ko_act(body: &str) {
    expect_fault::<ActivatePaymentNoticeRes>(body, "PPT_ERRORE_IDEMPOTENZA");
}

#[tokio::test]
async fn same_key_same_request_replays_the_same_bytes_and_token() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let first = h.send(&req).await;
    let token = token_of(&first);
    for _ in 0..3 {
        assert_eq!(h.send(&req).await, first, "not a byte-for-byte replay");
    }
    assert_eq!(
        h.ec_calls("paGetPaymentV2", &nn),
        1,
        "the replay called the EC"
    );
    let payments = h.payments_of(EC, &nn).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["paymentToken"], token.as_str());

    // The same for activatePaymentNoticeV2 (its own scope).
    let nn2 = notice("02", "00");
    let k2 = key(&PSP1);
    let req2 = activate_v2(&PSP1, EC, &nn2, 1000, Some(&k2));
    let first2 = h.send(&req2).await;
    ok::<ActivatePaymentNoticeV2Response>(&first2);
    assert_eq!(h.send(&req2).await, first2);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn2), 1);
    h.stop().await;
}

#[tokio::test]
async fn same_key_different_request_is_errore_idempotenza_without_side_effects() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    let other_notice = notice("02", "00");
    let k = key(&PSP1);
    let original = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let first = h.send(&original).await;
    let token = token_of(&first);

    let mut variants: Vec<ActivatePaymentNoticeReq> = Vec::new();
    let mut r = original.clone();
    r.amount = Amount::from_cents(1001).unwrap();
    variants.push(r);
    let mut r = original.clone();
    r.due_date = Some(IsoDate::from_naive(
        chrono::NaiveDate::from_ymd_opt(2031, 1, 31).unwrap(),
    ));
    variants.push(r);
    let mut r = original.clone();
    r.payment_note = Some(Text210::new("nota").unwrap());
    variants.push(r);
    let mut r = original.clone();
    r.expiration_time = Some(ExpirationTime::from_millis(60_000).unwrap());
    variants.push(r);
    variants.push(activate(&PSP1, EC, &other_notice, 1000, Some(&k)));
    for v in &variants {
        idem_ko_act(&h.send(v).await);
    }
    // A wrong password never reaches the cache: it is refused before it is consulted.
    let mut wrong = original.clone();
    wrong.password = Password::new("wrongpwd1").unwrap();
    h.refused::<_, ActivatePaymentNoticeRes>(&wrong, "PPT_AUTENTICAZIONE")
        .await;
    // No side effects: one paGetPayment, the other notice untouched, the original still
    // replayed, the token still the one in progress.
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    assert_eq!(h.ec_calls("paGetPaymentV2", &other_notice), 0);
    assert_eq!(h.send(&original).await, first);
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    assert_eq!(h.payments_of(EC, &nn).await.len(), 1);
    activate_ok(&h, &PSP2, EC, &other_notice).await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.stop().await;
}

#[tokio::test]
async fn same_key_after_a_semantic_failure_is_errore_idempotenza() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    // Segregation code 11: no station serves the notice.
    let unserved = activate(&PSP1, EC, &notice("11", "00"), 1000, Some(&k));
    let refused = h.send(&unserved).await;
    expect_fault::<ActivatePaymentNoticeRes>(&refused, "PPT_STAZIONE_INT_PA_SCONOSCIUTA");
    // Corrected: the failure was cached under the key.
    idem_ko_act(&h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k))).await);
    // The failed request itself is replayed.
    assert_eq!(h.send(&unserved).await, refused);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 0);
    // The notice was never locked.
    activate_ok(&h, &PSP2, EC, &nn).await;

    // sendPaymentOutcome: an unknown token, then the right one, with the same key.
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    let k = key(&PSP1);
    let unknown = outcome(&PSP1, "ffffffffffffffffffffffffffffffff", true, Some(&k));
    expect_fault::<SendPaymentOutcomeRes>(&h.send(&unknown).await, "PPT_TOKEN_SCONOSCIUTO");
    expect_fault::<SendPaymentOutcomeRes>(
        &h.send(&outcome(&PSP1, &token, true, Some(&k))).await,
        "PPT_ERRORE_IDEMPOTENZA",
    );
    // A wrong password, then corrected, with another key: the refusal came before
    // authentication, so nothing was cached and the corrected outcome is accepted.
    let k = key(&PSP1);
    let mut wrong = outcome(&PSP1, &token, true, Some(&k));
    wrong.password = Password::new("wrongpwd1").unwrap();
    expect_fault::<SendPaymentOutcomeRes>(&h.send(&wrong).await, "PPT_AUTENTICAZIONE");
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, Some(&k))).await);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn same_key_after_a_syntax_failure_is_processed_normally() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let good = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let bad = write_envelope(&good).replace("<amount>10.00</amount>", "<amount>10.1</amount>");
    let (s, b) = h.post(Some("activatePaymentNotice"), bad).await;
    assert_eq!(s, 200);
    expect_fault::<ActivatePaymentNoticeRes>(&b, "PPT_SINTASSI_EXTRAXSD");
    let token = token_of(&h.send(&good).await);

    let k = key(&PSP1);
    let good = outcome(&PSP1, &token, true, Some(&k));
    let bad = write_envelope(&good).replace("<fee>1.00</fee>", "<fee>1.0</fee>");
    let (s, b) = h.post(Some("sendPaymentOutcome"), bad).await;
    assert_eq!(s, 200);
    expect_fault::<SendPaymentOutcomeRes>(&b, "PPT_SINTASSI_EXTRAXSD");
    ok::<SendPaymentOutcomeRes>(&h.send(&good).await);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_request_reusing_a_cached_key_is_errore_idempotenza() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let good = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let first = h.send(&good).await;
    let token = token_of(&first);
    let bad = write_envelope(&good).replace("<amount>10.00</amount>", "<amount>10.1</amount>");
    let (s, b) = h.post(Some("activatePaymentNotice"), bad).await;
    assert_eq!(s, 200);
    idem_ko_act(&b);
    assert_eq!(h.send(&good).await, first);

    // sendPaymentOutcome re-sent with a paymentMethod the schema forbids (IDMP_SPO_06_02).
    let k = key(&PSP1);
    let good = outcome(&PSP1, &token, true, Some(&k));
    let first = h.send(&good).await;
    ok::<SendPaymentOutcomeRes>(&first);
    let bad = write_envelope(&good).replace(
        "<paymentMethod>creditCard</paymentMethod>",
        "<paymentMethod>card</paymentMethod>",
    );
    let (s, b) = h.post(Some("sendPaymentOutcome"), bad).await;
    assert_eq!(s, 200);
    expect_fault::<SendPaymentOutcomeRes>(&b, "PPT_ERRORE_IDEMPOTENZA");
    assert_eq!(h.send(&good).await, first);
    h.stop().await;
}

#[tokio::test]
async fn keys_are_per_psp() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let nn2 = notice("02", "00");
    let k = key(&PSP1);
    let first = h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k))).await;
    let t1 = token_of(&first);
    // The same key from another PSP is a new request: evaluated (the notice is in progress),
    // neither replayed nor refused as a key reuse.
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, Some(&k)),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    let k2 = key(&PSP1);
    let t2 = token_of(&h.send(&activate(&PSP2, EC, &nn2, 1000, Some(&k2))).await);
    assert_ne!(t1, t2);
    // PSP1 has not used k2: for PSP1 it is a new key too.
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP1, EC, &nn2, 1000, Some(&k2)),
        "PPT_PAGAMENTO_IN_CORSO",
    )
    .await;
    // The first PSP's entry is untouched.
    assert_eq!(
        h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k))).await,
        first
    );
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn2), 1);
    // Outcomes too: PSP2 uses PSP1's outcome key for its own token.
    let ko1 = key(&PSP1);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t1, true, Some(&ko1))).await);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP2, &t2, true, Some(&ko1))).await);
    h.wait_receipts(2, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn outcome_replay_is_byte_identical_and_has_no_side_effect() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    // An outcome may reuse its activation's key (another primitive, another scope).
    let k = key(&PSP1);
    let token = token_of(&h.send(&activate(&PSP1, EC, &nn, 1000, Some(&k))).await);
    let req = outcome(&PSP1, &token, true, Some(&k));
    let first = h.send(&req).await;
    ok::<SendPaymentOutcomeRes>(&first);
    assert_eq!(h.send(&req).await, first);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(h.send(&req).await, first);
    // Same key, different outcome.
    expect_fault::<SendPaymentOutcomeRes>(
        &h.send(&outcome(&PSP1, &token, false, Some(&k))).await,
        "PPT_ERRORE_IDEMPOTENZA",
    );
    // Without the key the same outcome is already acquired.
    expect_fault::<SendPaymentOutcomeRes>(
        &h.send(&outcome(&PSP1, &token, true, None)).await,
        "PPT_ESITO_GIA_ACQUISITO",
    );
    assert_eq!(h.settled_copies().await, (1, 0));
    let after = h.ec.receipts();
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].deliveries, 1,
        "the replays delivered the receipt again"
    );
    assert_eq!(receipts[0].receipt_id, token);

    // A refused outcome is replayed too.
    let k = key(&PSP1);
    let unknown = outcome(&PSP1, "ffffffffffffffffffffffffffffffff", false, Some(&k));
    let refused = h.send(&unknown).await;
    expect_fault::<SendPaymentOutcomeRes>(&refused, "PPT_TOKEN_SCONOSCIUTO");
    assert_eq!(h.send(&unknown).await, refused);
    // V2 has its own scope.
    let nn = notice("02", "00");
    let token = activate_ok(&h, &PSP1, EC, &nn).await;
    let req = outcome_v2(&PSP1, &[&token], false, Some(&k));
    let first = h.send(&req).await;
    ok::<SendPaymentOutcomeV2Response>(&first);
    assert_eq!(h.send(&req).await, first);
    h.stop().await;
}

#[tokio::test]
async fn activate_key_is_deleted_once_an_outcome_is_accepted() {
    let h = Harness::start().await;
    // OK: the re-sent activation is evaluated again, and the notice is paid.
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let t1 = token_of(&h.send(&req).await);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t1, true, None)).await);
    h.refused::<_, ActivatePaymentNoticeRes>(&req, "PPT_PAGAMENTO_DUPLICATO")
        .await;
    h.wait_receipts(1, 10).await;

    // KO: the re-sent activation gets a new token, which is then replayed.
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let t2 = token_of(&h.send(&req).await);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t2, false, Some(&key(&PSP1)))).await);
    let again = h.send(&req).await;
    let t3 = token_of(&again);
    assert_ne!(t2, t3);
    assert_eq!(h.send(&req).await, again);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 2);

    // A refused outcome (unknown PSP) does not delete it.
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let first = h.send(&req).await;
    let t4 = token_of(&first);
    let stranger = Psp {
        id: "69999999999",
        ..PSP1
    };
    h.refused::<_, SendPaymentOutcomeRes>(
        &outcome(&stranger, &t4, true, None),
        "PPT_PSP_SCONOSCIUTO",
    )
    .await;
    assert_eq!(h.send(&req).await, first);
    h.stop().await;
}

#[tokio::test]
async fn without_idempotency_keys_are_ignored() {
    let h = Harness::start_with(|c| c.node.use_idempotency = false).await;
    let nn = notice("02", "00");
    let k = key(&PSP1);
    let req = activate(&PSP1, EC, &nn, 1000, Some(&k));
    let token = token_of(&h.send(&req).await);
    h.refused::<_, ActivatePaymentNoticeRes>(&req, "PPT_PAGAMENTO_IN_CORSO")
        .await;
    // A syntax error with the same key is just a syntax error.
    let bad = write_envelope(&req).replace("<amount>10.00</amount>", "<amount>10.1</amount>");
    let (_, b) = h.post(Some("activatePaymentNotice"), bad).await;
    expect_fault::<ActivatePaymentNoticeRes>(&b, "PPT_SINTASSI_EXTRAXSD");
    // A semantic failure is not cached: corrected, the same key works.
    let nn2 = notice("02", "00");
    let k2 = key(&PSP1);
    let mut wrong = activate(&PSP1, EC, &nn2, 1000, Some(&k2));
    wrong.password = Password::new("wrongpwd1").unwrap();
    h.refused::<_, ActivatePaymentNoticeRes>(&wrong, "PPT_AUTENTICAZIONE")
        .await;
    activate_ok(&h, &PSP1, EC, &nn2).await;
    // A re-sent outcome is already acquired.
    let spo = outcome(&PSP1, &token, true, Some(&key(&PSP1)));
    ok::<SendPaymentOutcomeRes>(&h.send(&spo).await);
    h.refused::<_, SendPaymentOutcomeRes>(&spo, "PPT_ESITO_GIA_ACQUISITO")
        .await;
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn two_psps_activating_the_same_notice_at_once() {
    // The EC holds each first activation 2 s; the second PSP's activation is sent once the EC has
    // the first one's paGetPaymentV2, so it always meets an activation in flight.
    let h = Harness::start_admin(|c| c.timings.ec_timeout_ms = 10_000).await;
    for round in 0..4 {
        let nn = notice("02", "00");
        h.ec.add_script(
            ScriptRule::new("paGetPaymentV2", ScriptAction::Delay)
                .for_notice(&nn)
                .with_delay_ms(2000),
        )
        .unwrap();
        let a1 = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
        let a2 = activate(&PSP2, EC, &nn, 1000, Some(&key(&PSP2)));
        let (first, second) = if round % 2 == 0 {
            (&a1, &a2)
        } else {
            (&a2, &a1)
        };
        let ((b_first, first_at), (b_second, second_at)) =
            tokio::join!(async { (h.send(first).await, Instant::now()) }, async {
                eventually(10, "the first activation at the EC", || async {
                    (h.ec_calls("paGetPaymentV2", &nn) == 1).then_some(())
                })
                .await;
                (h.send(second).await, Instant::now())
            });
        assert!(
            second_at < first_at,
            "round {round}: the second activation was not answered while the first was in flight"
        );
        let (b1, b2) = if round % 2 == 0 {
            (b_first, b_second)
        } else {
            (b_second, b_first)
        };
        let results = [fault_code(&b1), fault_code(&b2)];
        let winners = results.iter().filter(|c| c.is_none()).count();
        let in_corso = results
            .iter()
            .filter(|c| c.as_deref() == Some("PPT_PAGAMENTO_IN_CORSO"))
            .count();
        assert_eq!((winners, in_corso), (1, 1), "round {round}: {b1}\n{b2}");
        let (winner, token) = if results[0].is_none() {
            (PSP1, token_of(&b1))
        } else {
            (PSP2, token_of(&b2))
        };
        assert_eq!(
            winner.id,
            first.id_psp.to_string(),
            "round {round}: the activation in flight lost"
        );
        assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1, "round {round}");
        let payments = h.payments_of(EC, &nn).await;
        assert_eq!(payments.len(), 1, "round {round}: {payments:?}");
        assert_eq!(payments[0]["paymentToken"], token.as_str());
        assert_eq!(payments[0]["idPSP"], winner.id);
        assert_eq!(payments[0]["status"], "PAYING");
    }
    h.stop().await;
}

/// Sends `body` twice on two connections so that the node receives both at the same instant:
/// everything but the last byte first, then the last byte of each.
async fn twins(h: &Harness, action: &str, body: &str) -> [String; 2] {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = h.url();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let head = format!(
        "POST /node-for-psp/v1 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/xml\r\nSOAPAction: {action}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (last, rest) = (&body[body.len() - 1..], &body[..body.len() - 1]);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(rest.as_bytes()).await.unwrap();
        streams.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for s in &mut streams {
        s.write_all(last.as_bytes()).await.unwrap();
    }
    let mut out = Vec::new();
    for mut s in streams {
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        out.push(text.split_once("\r\n\r\n").unwrap().1.to_string());
    }
    [out.remove(0), out.remove(0)]
}

#[tokio::test]
async fn a_request_resent_while_the_first_is_being_processed_gets_the_same_answer() {
    // A PSP that times out re-sends the same outcome with the same key while the node is still
    // processing the first one. Both copies must get the first answer, and so must a later
    // re-send. The window is small: the copies arrive at the same instant, many times.
    let h = Harness::start().await;
    let mut bad = Vec::new();
    for round in 0..150 {
        let token = activate_ok(&h, &PSP1, EC, &notice("02", "00")).await;
        let spo = outcome(&PSP1, &token, round % 2 == 0, Some(&key(&PSP1)));
        let [b1, b2] = twins(&h, "sendPaymentOutcome", &write_envelope(&spo)).await;
        let later = h.send(&spo).await;
        if [&b1, &b2, &later].iter().any(|b| fault_code(b).is_some()) {
            bad.push(format!("round {round}:\n{b1}\n{b2}\n{later}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of 150 rounds:\n{}",
        bad.len(),
        bad.join("\n")
    );
    h.stop().await;
}

#[tokio::test]
async fn an_activation_resent_while_the_first_is_in_flight() {
    // The same activation twice at the same instant (the PSP's retry overtaking its first try):
    // one token at most; a copy that did not get it was told the payment is in progress; and a
    // later re-send replays the token.
    let h = Harness::start().await;
    for _ in 0..10 {
        let nn = notice("02", "00");
        let req = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
        let [b1, b2] = twins(&h, "activatePaymentNotice", &write_envelope(&req)).await;
        let winner = [&b1, &b2]
            .into_iter()
            .find(|b| fault_code(b).is_none())
            .unwrap_or_else(|| panic!("no token:\n{b1}\n{b2}"));
        for b in [&b1, &b2] {
            assert!(
                b == winner || fault_code(b).as_deref() == Some("PPT_PAGAMENTO_IN_CORSO"),
                "{b}"
            );
        }
        assert_eq!(&h.send(&req).await, winner);
        assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    }
    h.stop().await;
}

#[tokio::test]
async fn replays_survive_a_restart() {
    let mut h = Harness::start().await;
    let nn = notice("02", "00");
    let act = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let a = h.send(&act).await;
    let token = token_of(&a);
    let nn2 = notice("02", "00");
    let t2 = activate_ok(&h, &PSP1, EC, &nn2).await;
    let spo = outcome(&PSP1, &t2, false, Some(&key(&PSP1)));
    let o = h.send(&spo).await;
    ok::<SendPaymentOutcomeRes>(&o);
    h.restart().await;
    assert_eq!(h.send(&act).await, a);
    assert_eq!(h.send(&spo).await, o);
    let mut changed = act.clone();
    changed.amount = Amount::from_cents(999).unwrap();
    idem_ko_act(&h.send(&changed).await);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

#[tokio::test]
async fn a_v2_activation_key_is_deleted_by_a_v1_outcome() {
    let h = Harness::start().await;
    let nn = notice("02", "00");
    let req = activate_v2(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let first = h.send(&req).await;
    let t1 = ok::<ActivatePaymentNoticeV2Response>(&first)
        .payment_token
        .unwrap()
        .to_string();
    assert_eq!(h.send(&req).await, first);
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &t1, false, None)).await);
    let again = h.send(&req).await;
    let t2 = ok::<ActivatePaymentNoticeV2Response>(&again)
        .payment_token
        .unwrap()
        .to_string();
    assert_ne!(t1, t2);
    h.stop().await;
}

#[tokio::test]
async fn an_ec_failure_is_cached_and_an_expired_activate_key_is_not_replayed() {
    let h = Harness::start_with(|c| c.timings.idempotency_activate_minutes = 0).await;
    // PA-new ERRORE_RESPONSE is cached under the key (IDMP_ACT_14): re-sent, the same answer,
    // without asking the EC again.
    let nn = notice("02", "95");
    let req = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let first = h.send(&req).await;
    expect_fault::<ActivatePaymentNoticeRes>(&first, "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE");
    assert_eq!(h.send(&req).await, first);
    assert_eq!(h.ec_calls("paGetPaymentV2", &nn), 1);
    // An activate entry lives min(key validity, token lifetime): 0 minutes here, so the same
    // request again is evaluated again and finds its own payment in progress (IDMP_ACT_8).
    let nn = notice("02", "00");
    let req = activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1)));
    let token = token_of(&h.send(&req).await);
    h.refused::<_, ActivatePaymentNoticeRes>(&req, "PPT_PAGAMENTO_IN_CORSO")
        .await;
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    h.wait_receipts(1, 10).await;
    h.stop().await;
}

/// Every test above, again on PostgreSQL (see `common::pg`).
#[test]
fn on_postgresql() {
    common::pg::run_again_on_postgres();
}
