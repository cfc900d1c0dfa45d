//! The fault codes the XSD fixtures' manifest expects (`xsd-fixtures/manifest.tsv`, column
//! `fault`), verified on the running node rather than taken on trust: every invalid PSP request
//! of the corpus is posted to the node, which must answer the manifest's fault; every invalid EC
//! answer of the corpus is served to the node by a station standing in for the EC, in the call
//! the answer belongs to (paVerifyPaymentNotice, paGetPayment(V2) and paDemandPaymentNotice for
//! a PSP's verify, activate and demand; paSendRT(V2) for a receipt copy), and the node must
//! answer the PSP, or journal the delivery attempt, with the manifest's fault.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pagonode::codec::Message;
use pagonode::codec::write_envelope;
use pagonode::journal::JournalQuery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{EC, EC2, Harness, PSP1, activate, demand, fault_code, outcome, tassa_auto, verify};

struct Fixture {
    file: String,
    /// The message's root element (the file name's first part).
    root: String,
    fault: String,
    bytes: Vec<u8>,
}

/// The invalid fixtures whose manifest row names a fault (the node receives them).
fn fixtures() -> Vec<Fixture> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("xsd-fixtures");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .filter_map(|line| {
            let c: Vec<&str> = line.split('\t').collect();
            (c[1] == "invalid" && c[4] != "-").then(|| Fixture {
                file: c[0].to_string(),
                root: c[0]
                    .trim_start_matches("invalid/")
                    .split("__")
                    .next()
                    .unwrap()
                    .to_string(),
                fault: c[4].to_string(),
                bytes: std::fs::read(dir.join(c[0])).unwrap(),
            })
        })
        .collect()
}

/// A station standing in for the EC: it answers each request with the bytes registered for the
/// notice number the request names (`*`: for a request naming none), over plain HTTP/1.1.
#[derive(Clone, Default)]
struct RawStation {
    answers: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Requests answered with registered bytes.
    served: Arc<AtomicUsize>,
}

impl RawStation {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (answers, served) = (self.answers.clone(), self.served.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (answers, served) = (answers.clone(), served.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else {
                        return;
                    };
                    let notice = between(&request, "<noticeNumber>", "</noticeNumber>")
                        .unwrap_or("*")
                        .to_string();
                    let registered = answers.lock().unwrap().get(&notice).cloned();
                    if registered.is_some() {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    let body = registered.unwrap_or_else(|| b"no answer registered".to_vec());
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        url
    }

    fn answer(&self, notice: &str, bytes: &[u8]) {
        self.answers
            .lock()
            .unwrap()
            .insert(notice.to_string(), bytes.to_vec());
    }
}

/// Reads one HTTP request (headers, then Content-Length bytes); its body as text.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into());
            }
        }
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    Some(&text[start..start + text[start..].find(close)?])
}

/// Starts a node whose stations `ids` are the raw station.
async fn harness_with_raw(station: &RawStation, ids: &[&'static str]) -> Harness {
    let url = station.start().await;
    let ids = ids.to_vec();
    Harness::start_with(move |c| {
        for s in c
            .station
            .iter_mut()
            .filter(|s| ids.contains(&s.id.as_str()))
        {
            s.url = format!("{url}/pa/{}", s.id);
        }
        // One attempt per receipt copy: the first answer is the one checked.
        c.receipts.max_attempts = 1;
    })
    .await
}

fn expect_fault(f: &Fixture, got: Option<String>, what: &str, problems: &mut Vec<String>) {
    if got.as_deref() != Some(f.fault.as_str()) {
        problems.push(format!(
            "{}: {what} {got:?}, the manifest says {}",
            f.file, f.fault
        ));
    }
}

/// `PSP` requests: the node's answer to each invalid one carries the manifest's fault.
async fn psp_requests(fixtures: &[&Fixture], problems: &mut Vec<String>) -> usize {
    let h = Harness::start().await;
    for f in fixtures {
        let action = f
            .root
            .trim_end_matches("Request")
            .trim_end_matches("Req")
            .to_string();
        let (status, body) = h.post(Some(&action), f.bytes.clone()).await;
        let got = fault_code(&body);
        if status != 200 || got.as_deref() != Some(f.fault.as_str()) {
            problems.push(format!(
                "{}: HTTP {status}, fault {got:?}, the manifest says {}",
                f.file, f.fault
            ));
        }
    }
    h.stop().await;
    fixtures.len()
}

/// A fresh notice number of the Comune with segregation code `seg`.
fn notice(seg: &str, scenario: &str) -> String {
    common::notice(seg, scenario)
}

/// EC answers to verify and paGetPayment(V2): the PSP's answer carries the manifest's fault.
async fn ec_answers_to_psp_calls(fixtures: &[&Fixture], problems: &mut Vec<String>) -> usize {
    let station = RawStation::default();
    let h = harness_with_raw(&station, &["77777777777_01", "77777777777_05"]).await;
    let mut checked = 0;
    for f in fixtures {
        // Segregation code 02: the V2 station; 01: the V1 one.
        let (seg, is_verify) = match f.root.as_str() {
            "paVerifyPaymentNoticeRes" => ("02", true),
            "paGetPaymentV2Response" => ("02", false),
            "paGetPaymentRes" => ("01", false),
            _ => continue,
        };
        let nn = notice(seg, "00");
        station.answer(&nn, &f.bytes);
        let body = if is_verify {
            h.post(
                Some("verifyPaymentNotice"),
                write_envelope(&verify(&PSP1, EC, &nn)),
            )
            .await
            .1
        } else {
            let req = activate(&PSP1, EC, &nn, 1000, None);
            h.post(
                Some(
                    pagonode::codec::node_for_psp::ActivatePaymentNoticeReq::OPERATION
                        .soap_action(),
                ),
                write_envelope(&req),
            )
            .await
            .1
        };
        checked += 1;
        expect_fault(f, fault_code(&body), "the PSP got", problems);
    }
    h.stop().await;
    assert_eq!(
        station.served.load(Ordering::Relaxed),
        checked,
        "the node called the station once per fixture"
    );
    checked
}

/// EC answers to paDemandPaymentNotice and paSendRT(V2), from the Regione's stations.
async fn ec_answers_of_the_regione(fixtures: &[&Fixture], problems: &mut Vec<String>) -> usize {
    let station = RawStation::default();
    let h = harness_with_raw(&station, &["88888888888_01", "88888888888_02"]).await;
    let mut checked = 0;
    for f in fixtures
        .iter()
        .filter(|f| f.root == "paDemandPaymentNoticeResponse")
    {
        station.answer("*", &f.bytes);
        let body = h
            .post(
                Some("demandPaymentNotice"),
                write_envelope(&demand(&PSP1, "00042", tassa_auto("AB123CD"))),
            )
            .await
            .1;
        checked += 1;
        expect_fault(f, fault_code(&body), "the PSP got", problems);
    }
    // Receipts: a notice with transfers to the Regione (scenario 13: a copy to each of its
    // stations, V2 and V1), paid; its copies get the fixture.
    let mut pending = Vec::new();
    for f in fixtures.iter().filter(|f| f.root.starts_with("paSendRT")) {
        let nn = notice("02", "13");
        station.answer(&nn, &f.bytes);
        let body = h
            .post(
                Some("activatePaymentNotice"),
                write_envelope(&activate(&PSP1, EC, &nn, 1000, None)),
            )
            .await
            .1;
        let Some(token) = between(&body, "<paymentToken>", "</paymentToken>") else {
            problems.push(format!("{}: activation refused: {body}", f.file));
            continue;
        };
        let token = token.to_string();
        let answer = h
            .post(
                Some("sendPaymentOutcome"),
                write_envelope(&outcome(&PSP1, &token, true, None)),
            )
            .await
            .1;
        assert_eq!(fault_code(&answer), None, "{answer}");
        let op = if f.root == "paSendRTRes" {
            "paSendRT"
        } else {
            "paSendRTV2"
        };
        pending.push((f, token, op));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (f, token, op) in pending {
        checked += 1;
        let got = loop {
            let rows = h
                .node()
                .node
                .journal_page(&JournalQuery {
                    token: Some(token.clone()),
                    primitive: Some(op.to_string()),
                    limit: 100,
                    ..JournalQuery::default()
                })
                .await
                .unwrap();
            let answered = rows.iter().find(|r| {
                r.entry.subtype == Some(pagonode::journal::Subtype::Resp)
                    && r.entry
                        .station
                        .as_deref()
                        .is_some_and(|s| s.starts_with(EC2))
            });
            if let Some(r) = answered {
                break r.entry.outcome.clone();
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        expect_fault(
            f,
            got,
            &format!("the {op} attempt was journalled with"),
            problems,
        );
    }
    h.stop().await;
    // Each demand once, each receipt to both of the Regione's stations.
    assert!(
        station.served.load(Ordering::Relaxed) >= checked,
        "the node called the station for every fixture"
    );
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_fixture_gets_the_fault_the_manifest_expects() {
    let all = fixtures();
    let (psp, ec): (Vec<&Fixture>, Vec<&Fixture>) =
        all.iter().partition(|f| f.fault == "PPT_SINTASSI_EXTRAXSD");
    assert!(
        ec.iter()
            .all(|f| f.fault == "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE"),
        "a fault this test does not know in the manifest"
    );
    let mut problems = Vec::new();
    let mut checked = psp_requests(&psp, &mut problems).await;
    checked += ec_answers_to_psp_calls(&ec, &mut problems).await;
    checked += ec_answers_of_the_regione(&ec, &mut problems).await;
    assert_eq!(
        checked,
        all.len(),
        "every fixture with a fault is run through the node"
    );
    assert!(
        problems.is_empty(),
        "{} of {checked} fixtures:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("{checked} invalid fixtures: the node answered each with the manifest's fault");
}
