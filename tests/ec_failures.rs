//! What the node does when a creditor entity (EC) fails: slow, down, broken, KO, or sending data
//! the node must refuse (official BDD tests `paDemandPaymentNotice.feature`,
//! `paGetPaymentRes_syntax_ko.feature`, `paGetPaymentRes_semantic_ko.feature`), and receipt
//! deliveries that fail (`paSendRTV2_NM3.feature`, PSRTV2_ACTV1_24). After every failed call the notice is free again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pagonode::codec::Limits;
use pagonode::codec::node_for_psp::*;
use pagonode::config::ServiceProviderConfig;
use pagonode::mock_ec::{ScriptAction, ScriptRule};

const TIMEOUT: &str = "PPT_STAZIONE_INT_PA_TIMEOUT";
const DOWN: &str = "PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE";
const BAD_RESPONSE: &str = "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE";
const EC_KO: &str = "PPT_ERRORE_EMESSO_DA_PAA";

/// The notice is free: a normal activation by another PSP succeeds (after `unscript` makes the
/// EC answer normally for it).
async fn free_again(h: &Harness, fc: &str, nn: &str) {
    h.ec.add_script(ScriptRule::new("*", ScriptAction::Ok).for_notice(nn))
        .unwrap();
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, fc, nn)).await);
    activate_ok(h, &PSP2, fc, nn).await;
}

/// A change to an EC answer.
type AnswerRewrite = fn(String) -> String;

/// The EC answer with everything inside the response element replaced by `<outcome>KO</outcome>`.
fn ko_without_fault(answer: String) -> String {
    let start = answer.find("<outcome>").expect("an outcome");
    let body_end = answer.find("</soapenv:Body>").expect("a Body");
    let wrapper_end = answer[..body_end].rfind("</").unwrap();
    format!(
        "{}<outcome>KO</outcome>{}",
        &answer[..start],
        &answer[wrapper_end..]
    )
}

/// The EC answer with a fault next to `outcome=OK`.
fn ok_with_fault(answer: String) -> String {
    answer.replacen(
        "<outcome>OK</outcome>",
        "<outcome>OK</outcome><fault><faultCode>PAA_SYSTEM_ERROR</faultCode><faultString>Errore generico</faultString><id>77777777777</id></fault>",
        1,
    )
}

// ------------------------------------------------------------------ verify and activate

#[tokio::test]
async fn slow_ec_is_a_timeout_and_the_notice_stays_free() {
    let h = Harness::start().await;
    assert_eq!(h.config.timings.ec_timeout_ms, 1500);
    // Scenario 97 never answers in time; a script delays a normal notice past the timeout.
    // (Verify and activate on different notices: a verify during an activation is IN_CORSO.)
    let (slow_v, slow_a) = (notice("02", "97"), notice("02", "97"));
    let (delayed_v, delayed_a, delayed_v1) =
        (notice("02", "00"), notice("02", "00"), notice("01", "00"));
    h.ec.add_script(
        ScriptRule::new("paVerifyPaymentNotice", ScriptAction::Delay)
            .for_notice(&delayed_v)
            .with_delay_ms(2500)
            .times(1),
    )
    .unwrap();
    h.ec.add_script(
        ScriptRule::new("paGetPaymentV2", ScriptAction::Delay)
            .for_notice(&delayed_a)
            .with_delay_ms(2500)
            .times(1),
    )
    .unwrap();
    h.ec.add_script(
        ScriptRule::new("paGetPayment", ScriptAction::Delay)
            .for_notice(&delayed_v1)
            .with_delay_ms(2500)
            .times(1),
    )
    .unwrap();
    let started = Instant::now();
    let (r1, r2, r3, r4, r5) = (
        verify(&PSP1, EC, &slow_v),
        activate(&PSP1, EC, &slow_a, 1000, Some(&key(&PSP1))),
        verify(&PSP1, EC, &delayed_v),
        activate(&PSP2, EC, &delayed_a, 1000, None),
        activate(&PSP2, EC, &delayed_v1, 1000, None),
    );
    let (b1, b2, b3, b4, b5) = tokio::join!(
        h.send(&r1),
        h.send(&r2),
        h.send(&r3),
        h.send(&r4),
        h.send(&r5)
    );
    let elapsed = started.elapsed();
    expect_fault::<VerifyPaymentNoticeRes>(&b1, TIMEOUT);
    expect_fault::<ActivatePaymentNoticeRes>(&b2, TIMEOUT);
    expect_fault::<VerifyPaymentNoticeRes>(&b3, TIMEOUT);
    expect_fault::<ActivatePaymentNoticeRes>(&b4, TIMEOUT);
    expect_fault::<ActivatePaymentNoticeRes>(&b5, TIMEOUT);
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(5000),
        "{elapsed:?}"
    );
    // The scripts were spent: the delayed notices verify and activate normally now.
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP1, EC, &delayed_v)).await);
    activate_ok(&h, &PSP1, EC, &delayed_a).await;
    activate_ok(&h, &PSP1, EC, &delayed_v1).await;
    free_again(&h, EC, &slow_v).await;
    free_again(&h, EC, &slow_a).await;
    h.stop().await;
}

#[tokio::test]
async fn ec_down_is_irraggiungibile_and_the_notice_stays_free() {
    let h = Harness::start_with(|c| {
        c.station
            .iter_mut()
            .find(|s| s.id == "77777777777_09")
            .unwrap()
            .spontaneous = true;
        let pass = c.service.iter_mut().find(|s| s.id == "00002").unwrap();
        pass.provider.push(ServiceProviderConfig {
            id: "00060".into(),
            ec: EC.into(),
            station: Some("77777777777_09".into()),
            valid_from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            valid_to: None,
            commission: None,
        });
    })
    .await;
    // Segregation code 09: a station on a closed port.
    let nn = notice("09", "00");
    h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), DOWN)
        .await;
    h.refused::<_, ActivatePaymentNoticeRes>(&activate(&PSP1, EC, &nn, 1000, None), DOWN)
        .await;
    // Not locked by the failed activation: another PSP gets the same answer, not IN_CORSO.
    h.refused::<_, ActivatePaymentNoticeV2Response>(&activate_v2(&PSP2, EC, &nn, 1000, None), DOWN)
        .await;
    h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP2, EC, &nn), DOWN)
        .await;
    let doc = "<pp:pagamentoPratica xmlns:pp=\"http://PuntoAccessoPSP.spcoop.gov.it/pagamentoPratica\"><pp:codicePratica>A001</pp:codicePratica><pp:pagatore><pp:codiceFiscalePagatore>RSSMRA80A01H501U</pp:codiceFiscalePagatore><pp:denominazionePagatore>Mario Rossi</pp:denominazionePagatore></pp:pagatore><pp:intestatario><pp:codiceFiscaleIntestatario>RSSLCU10A41H501X</pp:codiceFiscaleIntestatario><pp:denominazioneIntestatario>Lucia Rossi</pp:denominazioneIntestatario></pp:intestatario></pp:pagamentoPratica>";
    let payload = pagonode::codec::service::ServicePayload::from_document(
        doc.as_bytes().to_vec(),
        Limits::DEFAULT,
    )
    .unwrap();
    h.refused::<_, DemandPaymentNoticeResponse>(&demand(&PSP1, "00060", payload), DOWN)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn broken_ec_answers_are_errore_response_and_the_notice_stays_free() {
    let h = Harness::start().await;
    // Scenarios: 95 not XML, 96 schema-invalid, 98 SOAP Fault, 99 HTTP 500 with an empty body;
    // on a V2 station (segregation 02) and a V1 one (01).
    for seg in ["02", "01"] {
        for scenario in ["95", "96", "98", "99"] {
            let nn = notice(seg, scenario);
            h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), BAD_RESPONSE)
                .await;
            h.refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP1, EC, &nn, 1000, Some(&key(&PSP1))),
                BAD_RESPONSE,
            )
            .await;
            h.refused::<_, ActivatePaymentNoticeV2Response>(
                &activate_v2(&PSP2, EC, &nn, 1000, None),
                BAD_RESPONSE,
            )
            .await;
            free_again(&h, EC, &nn).await;
        }
    }
    // The same failures scripted on a normal notice.
    for action in [
        ScriptAction::Garbage,
        ScriptAction::Invalid,
        ScriptAction::SoapFault,
        ScriptAction::Http500,
    ] {
        let nn = notice("02", "00");
        h.ec.add_script(
            ScriptRule::new("paGetPaymentV2", action)
                .for_notice(&nn)
                .times(1),
        )
        .unwrap();
        h.ec.add_script(
            ScriptRule::new("paVerifyPaymentNotice", action)
                .for_notice(&nn)
                .times(1),
        )
        .unwrap();
        h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), BAD_RESPONSE)
            .await;
        h.refused::<_, ActivatePaymentNoticeRes>(
            &activate(&PSP1, EC, &nn, 1000, None),
            BAD_RESPONSE,
        )
        .await;
        activate_ok(&h, &PSP1, EC, &nn).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn ko_without_fault_and_ok_with_fault_are_errore_response() {
    let (h, proxy) = behind_proxy("77777777777_01", |_| {}).await;
    let nn = notice("02", "00");
    // Sanity: through the proxy, unchanged, everything works.
    ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP1, EC, &nn)).await);
    for (rewrite, why) in [
        (ko_without_fault as AnswerRewrite, "KO without a fault"),
        (ok_with_fault, "OK together with a fault"),
    ] {
        proxy.rewrite(move |_, a| rewrite(a));
        let faults = [
            h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), BAD_RESPONSE)
                .await,
            h.refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP1, EC, &nn, 1000, None),
                BAD_RESPONSE,
            )
            .await,
            h.refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP2, EC, &nn, 1000, None),
                BAD_RESPONSE,
            )
            .await,
        ];
        for f in faults {
            assert!(
                f.description.as_deref().is_some_and(|d| d.contains(why)),
                "{f:?}"
            );
        }
    }
    proxy.pass_through();
    activate_ok(&h, &PSP2, EC, &nn).await;
    h.stop().await;
    proxy.stop();
}

#[tokio::test]
async fn ec_ko_is_errore_emesso_da_paa_extended_only_for_brokers_that_want_it() {
    let h = Harness::start().await;
    let codes = [
        ("90", "PAA_PAGAMENTO_SCONOSCIUTO"),
        ("91", "PAA_PAGAMENTO_DUPLICATO"),
        ("92", "PAA_PAGAMENTO_SCADUTO"),
        ("93", "PAA_PAGAMENTO_ANNULLATO"),
        ("94", "PAA_SYSTEM_ERROR"),
    ];
    for seg in ["02", "01"] {
        for (scenario, paa) in codes {
            let nn = notice(seg, scenario);
            // PSP1's broker has FAULT_BEAN_ESTESO: the EC's fault travels in originalFault*.
            let extended = [
                h.refused::<_, VerifyPaymentNoticeRes>(&verify(&PSP1, EC, &nn), EC_KO)
                    .await,
                h.refused::<_, ActivatePaymentNoticeRes>(
                    &activate(&PSP1, EC, &nn, 1000, None),
                    EC_KO,
                )
                .await,
                h.refused::<_, ActivatePaymentNoticeV2Response>(
                    &activate_v2(&PSP1, EC, &nn, 1000, None),
                    EC_KO,
                )
                .await,
            ];
            for f in extended {
                assert_eq!(f.original_fault_code.as_deref(), Some(paa));
                assert!(
                    f.original_fault_string
                        .as_deref()
                        .is_some_and(|s| !s.is_empty()),
                    "{f:?}"
                );
                assert!(f.original_description.is_some(), "{f:?}");
            }
            // PSP2's broker has not: no originalFault* elements, the EC's fault summarised in
            // the description.
            let plain = [
                h.send(&verify(&PSP2, EC, &nn)).await,
                h.send(&activate(&PSP2, EC, &nn, 1000, None)).await,
            ];
            for (i, body) in plain.iter().enumerate() {
                let f = if i == 0 {
                    expect_fault::<VerifyPaymentNoticeRes>(body, EC_KO)
                } else {
                    expect_fault::<ActivatePaymentNoticeRes>(body, EC_KO)
                };
                assert!(
                    !body.contains("originalFault") && !body.contains("originalDescription"),
                    "{body}"
                );
                assert!(
                    f.description.as_deref().is_some_and(|d| d.contains(paa)),
                    "{body}"
                );
            }
            free_again(&h, EC, &nn).await;
        }
    }
    // An EC fault code the node does not know is passed through as it is.
    let nn = notice("02", "00");
    h.ec.add_script(
        ScriptRule::new("paGetPaymentV2", ScriptAction::Fault)
            .with_fault_code("PAA_CIAO")
            .for_notice(&nn)
            .times(1),
    )
    .unwrap();
    let f = h
        .refused::<_, ActivatePaymentNoticeRes>(&activate(&PSP1, EC, &nn, 1000, None), EC_KO)
        .await;
    assert_eq!(f.original_fault_code.as_deref(), Some("PAA_CIAO"));
    activate_ok(&h, &PSP1, EC, &nn).await;
    h.stop().await;
}

#[tokio::test]
async fn payment_data_the_node_refuses_is_errore_response() {
    let unknown_ec = "302770000000000001";
    let disabled_ec = "302770000000000002";
    let bad_iban = "302770000000000003";
    let bad_iban_v1 = "301770000000000004";
    let second_bad = "302770000000000005";
    let proxy = RewritingEc::start();
    let url = proxy.url.clone();
    let h = Harness::start_full(
        move |c, _| {
            let st = c
                .station
                .iter_mut()
                .find(|s| s.id == "77777777777_05")
                .unwrap();
            st.url = format!("{url}/pa/77777777777_05");
        },
        |m| {
            m.position.extend([
                mock_position(
                    EC,
                    unknown_ec,
                    &[
                        (EC, "5.00", None),
                        ("10000000000", "5.00", Some("IT60X0542811101000000555555")),
                    ],
                ),
                mock_position(
                    EC,
                    disabled_ec,
                    &[("12121212121", "10.00", Some("IT60X0542811101000000666666"))],
                ),
                mock_position(
                    EC,
                    bad_iban,
                    &[(EC, "10.00", Some("IT60X0542811101000000999999"))],
                ),
                mock_position(
                    EC,
                    bad_iban_v1,
                    &[(EC, "10.00", Some("IT60X0542811101000000999999"))],
                ),
                mock_position(
                    EC,
                    second_bad,
                    &[
                        (EC, "4.00", None),
                        (EC2, "6.00", Some("IT60X0542811101000000123456")),
                    ],
                ),
            ]);
        },
    )
    .await;
    proxy.forward_to(&h.ec_url());
    let cases = [
        (unknown_ec, "10000000000 is unknown"),
        (disabled_ec, "12121212121 is disabled"),
        (bad_iban, "IT60X0542811101000000999999 is not registered"),
        (bad_iban_v1, "IT60X0542811101000000999999 is not registered"),
        (
            second_bad,
            "IT60X0542811101000000123456 is not registered for 88888888888",
        ),
    ];
    for (nn, why) in cases {
        let f = h
            .refused::<_, ActivatePaymentNoticeRes>(
                &activate(&PSP1, EC, nn, 1000, None),
                BAD_RESPONSE,
            )
            .await;
        assert!(
            f.description.as_deref().is_some_and(|d| d.contains(why)),
            "{f:?}"
        );
        // Not locked: another PSP gets the same answer; verify (no transfers) works.
        h.refused::<_, ActivatePaymentNoticeV2Response>(
            &activate_v2(&PSP2, EC, nn, 1000, None),
            BAD_RESPONSE,
        )
        .await;
        ok::<VerifyPaymentNoticeRes>(&h.send(&verify(&PSP2, EC, nn)).await);
    }
    // paymentAmount different from the sum of the transfers (the V1 station, behind the proxy).
    let nn = notice("01", "12");
    proxy.rewrite(|action, a| {
        if action == "paGetPayment" {
            replace_element(&a, "paymentAmount", "999.99")
        } else {
            a
        }
    });
    let f = h
        .refused::<_, ActivatePaymentNoticeRes>(&activate(&PSP1, EC, &nn, 1000, None), BAD_RESPONSE)
        .await;
    assert!(
        f.description
            .as_deref()
            .is_some_and(|d| d.contains("999.99")),
        "{f:?}"
    );
    proxy.pass_through();
    activate_ok(&h, &PSP2, EC, &nn).await;
    h.stop().await;
    proxy.stop();
}

// ------------------------------------------------------------------ demandPaymentNotice

#[tokio::test]
async fn demand_ec_failures() {
    let (h, proxy) = behind_proxy("88888888888_01", |_| {}).await;
    let ask = |who: &Psp| demand(who, "00042", tassa_auto("AB123CD"));
    ok::<DemandPaymentNoticeResponse>(&h.send(&ask(&PSP1)).await);

    // The EC refuses: extended for PSP1's broker, summarised for PSP2's.
    h.ec.add_script(
        ScriptRule::new("paDemandPaymentNotice", ScriptAction::Fault)
            .with_fault_code("PAA_SEMANTICA")
            .times(2),
    )
    .unwrap();
    let f = h
        .refused::<_, DemandPaymentNoticeResponse>(&ask(&PSP1), EC_KO)
        .await;
    assert_eq!(f.original_fault_code.as_deref(), Some("PAA_SEMANTICA"));
    let body = h.send(&ask(&PSP2)).await;
    let f = expect_fault::<DemandPaymentNoticeResponse>(&body, EC_KO);
    assert!(!body.contains("originalFault"), "{body}");
    assert!(
        f.description
            .as_deref()
            .is_some_and(|d| d.contains("PAA_SEMANTICA")),
        "{body}"
    );

    // Broken answers.
    for action in [
        ScriptAction::Garbage,
        ScriptAction::Invalid,
        ScriptAction::SoapFault,
        ScriptAction::Http500,
    ] {
        h.ec.add_script(ScriptRule::new("paDemandPaymentNotice", action).times(1))
            .unwrap();
        h.refused::<_, DemandPaymentNoticeResponse>(&ask(&PSP1), BAD_RESPONSE)
            .await;
    }
    // Slow.
    h.ec.add_script(
        ScriptRule::new("paDemandPaymentNotice", ScriptAction::Delay)
            .with_delay_ms(2500)
            .times(1),
    )
    .unwrap();
    h.refused::<_, DemandPaymentNoticeResponse>(&ask(&PSP1), TIMEOUT)
        .await;

    // Answers missing what the node requires, KO without a fault, OK with a fault.
    let rewrites: Vec<(&str, AnswerRewrite)> = vec![
        ("qrCode missing", |a| remove_element(&a, "qrCode")),
        ("paymentList missing", |a| remove_element(&a, "paymentList")),
        ("paymentDescription missing", |a| {
            remove_element(&a, "paymentDescription")
        }),
        ("fiscalCodePA missing", |a| {
            remove_element(&a, "fiscalCodePA")
        }),
        ("companyName missing", |a| remove_element(&a, "companyName")),
        ("KO without a fault", ko_without_fault),
        ("OK together with a fault", ok_with_fault),
    ];
    for (why, rewrite) in rewrites {
        proxy.rewrite(move |action, a| {
            if action == "paDemandPaymentNotice" {
                rewrite(a)
            } else {
                a
            }
        });
        let f = h
            .refused::<_, DemandPaymentNoticeResponse>(&ask(&PSP1), BAD_RESPONSE)
            .await;
        assert!(
            f.description.as_deref().is_some_and(|d| d.contains(why)),
            "{why}: {f:?}"
        );
    }
    proxy.pass_through();
    ok::<DemandPaymentNoticeResponse>(&h.send(&ask(&PSP2)).await);
    h.stop().await;
    proxy.stop();
}

// ------------------------------------------------------------------ receipt delivery

/// Activates and sends a positive outcome; the PSP's answer must be OK and quick, whatever the
/// EC does with the receipt.
async fn pay(h: &Harness, nn: &str) -> String {
    let token = activate_ok(h, &PSP1, EC, nn).await;
    let started = Instant::now();
    ok::<SendPaymentOutcomeRes>(&h.send(&outcome(&PSP1, &token, true, None)).await);
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the outcome waited for the receipt"
    );
    token
}

/// Waits until the recipient of `token` at `station` has `status`; returns it.
async fn recipient(h: &Harness, token: &str, station: &str, status: &str) -> serde_json::Value {
    eventually(10, &format!("{token} at {station} {status}"), || async {
        h.recipients(status)
            .await
            .into_iter()
            .find(|r| r["receiptId"] == token && r["station"] == station)
    })
    .await
}

#[tokio::test]
async fn failed_receipt_deliveries_are_retried_until_they_succeed() {
    let h = Harness::start_admin(|_| {}).await;
    // Each failure twice, then the normal answer: three attempts.
    let kinds = [
        ScriptAction::Fault,
        ScriptAction::Garbage,
        ScriptAction::Invalid,
        ScriptAction::SoapFault,
        ScriptAction::Http500,
    ];
    let mut paid = Vec::new();
    for action in kinds {
        let nn = notice("02", "00");
        h.ec.add_script(
            ScriptRule::new("paSendRTV2", action)
                .for_notice(&nn)
                .times(2),
        )
        .unwrap();
        paid.push((
            nn.clone(),
            pay(&h, &nn).await,
            3,
            "77777777777_01",
            "paSendRTV2",
        ));
    }
    // A V1 station (paSendRT).
    let nn = notice("01", "00");
    h.ec.add_script(
        ScriptRule::new("paSendRT", ScriptAction::Http500)
            .for_notice(&nn)
            .times(1),
    )
    .unwrap();
    paid.push((
        nn.clone(),
        pay(&h, &nn).await,
        2,
        "77777777777_05",
        "paSendRT",
    ));
    // A timeout (the EC answers after the receipt timeout of 1500 ms), then success.
    let nn = notice("02", "00");
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Delay)
            .with_delay_ms(2000)
            .for_notice(&nn)
            .times(1),
    )
    .unwrap();
    paid.push((
        nn.clone(),
        pay(&h, &nn).await,
        2,
        "77777777777_01",
        "paSendRTV2",
    ));

    for (nn, token, attempts, station, op) in &paid {
        let r = recipient(&h, token, station, "NOTIFIED").await;
        assert_eq!(r["attempts"], *attempts, "{nn}: {r}");
        assert_eq!(h.ec_calls(op, nn), *attempts as usize, "{nn}");
        assert!(
            h.ec.receipts()
                .iter()
                .any(|s| &s.receipt_id == token && &s.station == station),
            "{nn}"
        );
        eventually(5, "payment NOTIFIED", || async {
            (h.payment_status(EC, nn, token).await == "NOTIFIED").then_some(())
        })
        .await;
    }
    h.stop().await;
}

#[tokio::test]
async fn receipt_failed_after_max_attempts_is_listed_and_resent_on_demand() {
    let h = Harness::start_admin(|_| {}).await;
    assert_eq!(h.config.receipts.max_attempts, 3);
    let nn = notice("02", "00");
    h.ec.add_script(ScriptRule::new("paSendRTV2", ScriptAction::Http500).for_notice(&nn))
        .unwrap();
    let token = pay(&h, &nn).await;
    let r = recipient(&h, &token, "77777777777_01", "FAILED").await;
    assert_eq!(r["attempts"], 3, "{r}");
    assert!(r["lastError"].is_string(), "{r}");
    // No attempt after the last one, not even from a pass of the retry job (which answers
    // once it has sent every copy still to deliver).
    let (status, _) = h.admin_get("/jobs/trigger/paSendRt").await;
    assert_eq!(status, 200);
    assert_eq!(h.settled_copies().await, (0, 1));
    assert_eq!(h.ec_calls("paSendRTV2", &nn), 3);
    assert_eq!(h.payment_status(EC, &nn, &token).await, "PAID");
    // The notice is paid all the same.
    h.refused::<_, ActivatePaymentNoticeRes>(
        &activate(&PSP2, EC, &nn, 1000, None),
        "PPT_PAGAMENTO_DUPLICATO",
    )
    .await;

    h.ec.clear_scripts();
    let (status, v) = h
        .admin_post(&format!("/admin/receipts/{token}/resend"))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["queued"], 1);
    let receipts = h.wait_receipts(1, 10).await;
    assert_eq!(receipts[0].receipt_id, token);
    let r = recipient(&h, &token, "77777777777_01", "NOTIFIED").await;
    assert_eq!(r["attempts"], 1, "{r}");
    assert!(
        !h.recipients("FAILED")
            .await
            .iter()
            .any(|r| r["receiptId"] == token.as_str())
    );
    eventually(5, "payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    // An unknown receipt cannot be re-sent.
    let (status, _) = h
        .admin_post("/admin/receipts/ffffffffffffffffffffffffffffffff/resend")
        .await;
    assert_eq!(status, 404);
    h.stop().await;
}

/// Runs `pagonode receipts ARGS --admin <the harness's admin URL>`; returns its stdout.
async fn receipts_cli(h: &Harness, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .arg("receipts")
        .args(args)
        .args(["--admin", &h.admin_url()])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pagonode receipts {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn one_failed_copy_of_a_multi_beneficiary_receipt_is_resent_alone() {
    let h = Harness::start_admin(|_| {}).await;
    // Scenario 12: transfers to the Comune and the Regione: copies to 77777777777_01 and to
    // the Regione's broadcast station 88888888888_01. Only the latter fails.
    let nn = notice("02", "12");
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Fault).for_station("88888888888_01"),
    )
    .unwrap();
    let token = pay(&h, &nn).await;
    recipient(&h, &token, "77777777777_01", "NOTIFIED").await;
    let r = recipient(&h, &token, "88888888888_01", "FAILED").await;
    assert_eq!(r["attempts"], 3);
    assert_eq!(
        h.payment_status(EC, &nn, &token).await,
        "PAID",
        "NOTIFIED needs every copy delivered"
    );
    h.ec.clear_scripts();
    // The operator's way: `pagonode receipts list`, then `pagonode receipts resend`.
    let listed = receipts_cli(&h, &["list"]).await;
    assert!(
        listed.contains(&token) && listed.contains("88888888888_01") && listed.contains("FAILED"),
        "{listed}"
    );
    let resent = receipts_cli(&h, &["resend", &token, "--station", "88888888888_01"]).await;
    assert_eq!(resent.trim(), format!("receipt {token}: 1 copy queued"));
    recipient(&h, &token, "88888888888_01", "NOTIFIED").await;
    eventually(5, "payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    let receipts = h.wait_receipts(2, 10).await;
    let owner = receipts
        .iter()
        .find(|r| r.station == "77777777777_01")
        .unwrap();
    assert_eq!(owner.deliveries, 1, "the delivered copy was sent again");
    h.stop().await;
}

#[tokio::test]
async fn a_copy_failed_before_a_restart_keeps_the_payment_paid_after_it() {
    let mut h = Harness::start_admin(|_| {}).await;
    // Scenario 12 again: the Regione's copy fails for good while the Comune's is still being
    // retried (each attempt outlasts the receipt timeout); then the node restarts.
    let nn = notice("02", "12");
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Fault).for_station("88888888888_01"),
    )
    .unwrap();
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Delay)
            .with_delay_ms(2000)
            .for_station("77777777777_01"),
    )
    .unwrap();
    let token = pay(&h, &nn).await;
    recipient(&h, &token, "88888888888_01", "FAILED").await;
    recipient(&h, &token, "77777777777_01", "PENDING").await;
    h.ec.clear_scripts();
    h.restart().await;
    recipient(&h, &token, "77777777777_01", "NOTIFIED").await;
    recipient(&h, &token, "88888888888_01", "FAILED").await;
    // The copy that failed before the restart still counts: with every copy settled, the
    // payment is not NOTIFIED.
    assert_eq!(h.settled_copies().await, (1, 1));
    assert_eq!(h.payment_status(EC, &nn, &token).await, "PAID");
    let (status, _) = h
        .admin_post(&format!(
            "/admin/receipts/{token}/resend?station=88888888888_01"
        ))
        .await;
    assert_eq!(status, 202);
    recipient(&h, &token, "88888888888_01", "NOTIFIED").await;
    eventually(5, "payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn receipt_duplicata_counts_as_delivered() {
    let h = Harness::start_admin(|_| {}).await;
    let nn = notice("02", "00");
    h.ec.add_script(
        ScriptRule::new("paSendRTV2", ScriptAction::Fault)
            .with_fault_code("PAA_RECEIPT_DUPLICATA")
            .for_notice(&nn),
    )
    .unwrap();
    let token = pay(&h, &nn).await;
    let r = recipient(&h, &token, "77777777777_01", "NOTIFIED").await;
    assert_eq!(r["attempts"], 1, "{r}");
    eventually(5, "payment NOTIFIED", || async {
        (h.payment_status(EC, &nn, &token).await == "NOTIFIED").then_some(())
    })
    .await;
    assert_eq!(h.settled_copies().await, (1, 0));
    assert_eq!(h.ec_calls("paSendRTV2", &nn), 1, "retried a duplicate");
    h.stop().await;
}
