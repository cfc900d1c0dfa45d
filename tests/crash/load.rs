//! The PSP side of the crash test: concurrent workers paying notices, multi-beneficiary notices
//! and spontaneous payments, and abandoning short-lived activations, every request with an
//! idempotency key. The ledger records what the node *acknowledged*: an answer the client
//! actually received. A request whose connection died (the node was killed) is "unknown": it is
//! sent again, byte for byte with the same idempotency key, once the node is back, and the
//! answer to that retry is what counts, as for a real PSP.
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagonode::codec::types::ExpirationTime;
use pagonode::codec::{AnyMessage, Body, Limits, Message, read_any, write_envelope};

use super::node_proc::now_ms;
use crate::common::{
    EC, EC2, EC3, PSP1, PSP2, Psp, activate, activate_v2, demand, fault_code, outcome, outcome_v2,
    tassa_auto,
};

/// The fault codes an activation (or a demand) gets when the EC's station fails.
pub const EC_FAILURE_CODES: [&str; 3] = [
    "PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE",
    "PPT_STAZIONE_INT_PA_TIMEOUT",
    "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE",
];

/// A small deterministic generator (splitmix64): the schedule of a run follows from its seed.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// A failure of the simulated EC, switched on between kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its server is stopped: connections are refused.
    Down,
    /// Every answer comes after the node's EC timeout.
    Slow,
    /// Every answer is not XML.
    Garbage,
}

impl Phase {
    /// The fault code an activation gets during the phase.
    pub fn code(self) -> &'static str {
        match self {
            Phase::Down => "PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE",
            Phase::Slow => "PPT_STAZIONE_INT_PA_TIMEOUT",
            Phase::Garbage => "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Down => "EC down",
            Phase::Slow => "EC slow",
            Phase::Garbage => "EC garbage",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PhaseSpan {
    pub phase: Phase,
    pub start: u64,
    pub end: Option<u64>,
}

/// A copy of a receipt: (station, `idPA` of the copy).
pub type Copy = (&'static str, &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One transfer, outcome OK.
    Single,
    /// One transfer, outcome KO.
    Ko,
    /// Scenario 12/13: copies to 2-3 stations, outcome OK.
    Multi,
    /// demandPaymentNotice, then activate and outcome OK.
    Spontaneous,
    /// A short `expirationTime` and no outcome, ever.
    Abandoned,
    /// An abandoned notice paid at the end (it must be payable again).
    Reactivated,
}

/// An activation the node answered OK.
#[derive(Debug, Clone)]
pub struct Activation {
    pub token: String,
    pub fc: String,
    pub nn: String,
    pub kind: Kind,
    /// The receipt copies an OK outcome must produce.
    pub copies: Vec<Copy>,
    /// When the PSP first sent the activation that got the token: the node's activation (and
    /// the token's lifetime) starts after this.
    pub sent_at: u64,
    /// When the PSP got the answer.
    pub acked_at: u64,
    /// The `expirationTime` the PSP asked for.
    pub expiration_ms: Option<u64>,
}

/// An outcome answer received: `answer` is `OK` or the fault code.
#[derive(Debug, Clone)]
pub struct OutcomeAck {
    pub token: String,
    pub ok: bool,
    pub answer: String,
    /// When the attempt that got the answer was sent.
    pub sent: u64,
    /// When the PSP got the answer.
    pub answered: u64,
}

/// An activation or a demand refused because the EC failed.
#[derive(Debug, Clone)]
pub struct EcFailure {
    pub op: &'static str,
    pub notice: String,
    pub code: String,
    pub sent: u64,
    pub answered: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub activations: Vec<Activation>,
    pub outcomes: Vec<OutcomeAck>,
    pub ec_failures: Vec<EcFailure>,
    /// What the PSP side saw that it must never see.
    pub violations: Vec<String>,
    pub requests: u64,
    /// Requests whose connection died, sent again with the same key.
    pub unknown: u64,
}

/// An answer received.
struct Called {
    body: String,
    /// When the request was first sent.
    first_sent: u64,
    /// When the attempt that got the answer was sent (later if a connection died before).
    sent: u64,
    answered: u64,
}

/// What the node answered.
enum Answer {
    Ok(Box<AnyMessage>),
    Fault(String),
}

fn classify(body: &str) -> Result<Answer, String> {
    match read_any(body.as_bytes(), Limits::DEFAULT) {
        Ok(Body::Message(m)) => match fault_code(body) {
            Some(code) => Ok(Answer::Fault(code)),
            None if body.contains("<outcome>KO</outcome>") => {
                Err(format!("KO without a fault: {body}"))
            }
            None => Ok(Answer::Ok(Box::new(m))),
        },
        other => Err(format!("not a valid answer ({other:?}): {body}")),
    }
}

/// The copies of a notice of the Comune (77777777777) with segregation code `seg` and scenario
/// digits `scenario`: its own station (V2 for `02`, V1 for `01`), plus the broadcast station of
/// each other EC in the transfers (scenario 12: the Regione; 13: the Regione and the Provincia).
pub fn copies_for(seg: &str, scenario: &str) -> Vec<Copy> {
    let owner = if seg == "02" {
        "77777777777_01"
    } else {
        "77777777777_05"
    };
    let mut copies = vec![(owner, EC)];
    if scenario == "12" || scenario == "13" {
        copies.push(("88888888888_01", EC2));
    }
    if scenario == "13" {
        copies.push(("88888888888_02", EC3));
    }
    copies
}

pub struct Shared {
    http: reqwest::Client,
    /// Each node's (nodeForPsp URL, health URL): a request goes to the next in turn, and a
    /// request whose connection died is sent again to the next one (a cluster: any node serves
    /// any request).
    nodes: Vec<(String, String)>,
    turn: std::sync::atomic::AtomicUsize,
    pub stop: AtomicBool,
    pub ledger: Mutex<Ledger>,
    pub phases: Mutex<Vec<PhaseSpan>>,
    keys: AtomicU64,
    notices: AtomicU64,
}

impl Shared {
    /// The PSP side of nodes listening on `ports` (one node, or a cluster).
    pub fn new(ports: &[u16]) -> Shared {
        Shared {
            http: reqwest::Client::builder()
                .no_proxy()
                .tcp_nodelay(true)
                // Far above any answer time: only a dead node ends a request early.
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            nodes: ports
                .iter()
                .map(|port| {
                    (
                        format!("http://127.0.0.1:{port}/node-for-psp/v1"),
                        format!("http://127.0.0.1:{port}/health"),
                    )
                })
                .collect(),
            turn: Default::default(),
            stop: AtomicBool::new(false),
            ledger: Mutex::default(),
            phases: Mutex::default(),
            keys: AtomicU64::new(1),
            notices: AtomicU64::new(1),
        }
    }

    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn violation(&self, v: String) {
        self.ledger().violations.push(v);
    }

    /// A fresh idempotency key of `psp`.
    fn key(&self, psp: &Psp) -> String {
        format!(
            "{}_{:010}",
            psp.id,
            self.keys.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh notice number of the Comune.
    fn notice(&self, seg: &str, scenario: &str) -> String {
        format!(
            "3{seg}{scenario}{:013}",
            self.notices.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Waits (bounded) until node `i` answers `/health`.
    async fn wait_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = self
                .http
                .get(&self.nodes[i].1)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a request until an answer is received: a connection that dies is retried with the
    /// same bytes (same idempotency key) on the next node (the same one if it is alone), once it
    /// is up.
    async fn call<M: Message>(&self, req: &M) -> Option<Called> {
        let body = write_envelope(req);
        let action = M::OPERATION.soap_action();
        let first_sent = now_ms();
        let give_up = Instant::now() + Duration::from_secs(120);
        let mut retried = false;
        self.ledger().requests += 1;
        let mut node = self.turn.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        loop {
            let sent = now_ms();
            let resp = self
                .http
                .post(&self.nodes[node].0)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", action)
                .body(body.clone())
                .send()
                .await;
            if let Ok(resp) = resp {
                let status = resp.status().as_u16();
                if let Ok(text) = resp.text().await {
                    if status != 200 {
                        self.violation(format!("{action}: HTTP {status}: {text}"));
                        return None;
                    }
                    return Some(Called {
                        body: text,
                        first_sent,
                        sent,
                        answered: now_ms(),
                    });
                }
            }
            if !retried {
                retried = true;
                self.ledger().unknown += 1;
            }
            if Instant::now() > give_up {
                self.violation(format!("{action}: no answer for 120 s"));
                return None;
            }
            node = (node + 1) % self.nodes.len();
            self.wait_up(node).await;
        }
    }

    /// Activates until the node says OK; EC failures (during the phases) are recorded and the
    /// activation is tried again with a new key: the failure must have left no lock.
    #[allow(clippy::too_many_arguments)]
    async fn activate(
        &self,
        rng: &mut Prng,
        psp: &Psp,
        fc: &str,
        nn: &str,
        expiration_ms: Option<u64>,
        kind: Kind,
        copies: Vec<Copy>,
    ) -> Option<String> {
        for _ in 0..400 {
            let key = self.key(psp);
            let exp = expiration_ms
                .map(|ms| ExpirationTime::from_millis(ms as i64).expect("expirationTime"));
            let answer = if rng.coin() {
                let mut r = activate(psp, fc, nn, 1000, Some(&key));
                r.expiration_time = exp;
                self.call(&r).await
            } else {
                let mut r = activate_v2(psp, fc, nn, 1000, Some(&key));
                r.expiration_time = exp;
                self.call(&r).await
            };
            let Called {
                body,
                first_sent: sent,
                answered,
                ..
            } = answer?;
            match classify(&body) {
                Ok(Answer::Ok(m)) => {
                    let token = match *m {
                        AnyMessage::ActivatePaymentNoticeRes(r) => {
                            r.payment_token.map(|t| t.to_string())
                        }
                        AnyMessage::ActivatePaymentNoticeV2Response(r) => {
                            r.payment_token.map(|t| t.to_string())
                        }
                        _ => None,
                    };
                    let Some(token) = token else {
                        self.violation(format!("activate {fc}/{nn}: OK without a token: {body}"));
                        return None;
                    };
                    self.ledger().activations.push(Activation {
                        token: token.clone(),
                        fc: fc.to_string(),
                        nn: nn.to_string(),
                        kind,
                        copies,
                        sent_at: sent,
                        acked_at: answered,
                        expiration_ms,
                    });
                    return Some(token);
                }
                Ok(Answer::Fault(code)) if EC_FAILURE_CODES.contains(&code.as_str()) => {
                    self.ledger().ec_failures.push(EcFailure {
                        op: "activate",
                        notice: nn.to_string(),
                        code,
                        sent,
                        answered,
                    });
                    tokio::time::sleep(Duration::from_millis(rng.range(20, 80))).await;
                }
                Ok(Answer::Fault(code)) if code == "PPT_PAGAMENTO_IN_CORSO" => {
                    self.violation(format!(
                        "activate {fc}/{nn}: PPT_PAGAMENTO_IN_CORSO: a lock outlived a failed or lost activation"
                    ));
                    return None;
                }
                Ok(Answer::Fault(code)) => {
                    self.violation(format!("activate {fc}/{nn}: unexpected {code}"));
                    return None;
                }
                Err(e) => {
                    self.violation(format!("activate {fc}/{nn}: {e}"));
                    return None;
                }
            }
        }
        self.violation(format!(
            "activate {fc}/{nn}: still refused after 400 attempts"
        ));
        None
    }

    /// Sends the outcome once (retrying only a lost connection, with the same key).
    async fn outcome(&self, rng: &mut Prng, psp: &Psp, token: &str, ok: bool) {
        let key = self.key(psp);
        let answer = if rng.coin() {
            self.call(&outcome(psp, token, ok, Some(&key))).await
        } else {
            self.call(&outcome_v2(psp, &[token], ok, Some(&key))).await
        };
        let Some(Called {
            body,
            sent,
            answered,
            ..
        }) = answer
        else {
            return;
        };
        let late = if ok {
            "PPT_TOKEN_SCADUTO"
        } else {
            "PPT_TOKEN_SCADUTO_KO"
        };
        let answer = match classify(&body) {
            Ok(Answer::Ok(_)) => "OK".to_string(),
            Ok(Answer::Fault(code)) if code == late => code,
            Ok(Answer::Fault(code)) => {
                self.violation(format!(
                    "outcome {} on {token}: unexpected {code}",
                    if ok { "OK" } else { "KO" }
                ));
                return;
            }
            Err(e) => {
                self.violation(format!("outcome on {token}: {e}"));
                return;
            }
        };
        self.ledger().outcomes.push(OutcomeAck {
            token: token.to_string(),
            ok,
            answer,
            sent,
            answered,
        });
    }

    /// demandPaymentNotice for the Regione's service 00042 until a notice is created.
    async fn demand(&self, rng: &mut Prng, psp: &Psp) -> Option<(String, String)> {
        for _ in 0..400 {
            let Called {
                body,
                first_sent: sent,
                answered,
                ..
            } = self
                .call(&demand(psp, "00042", tassa_auto("AB123CD")))
                .await?;
            match classify(&body) {
                Ok(Answer::Ok(m)) => {
                    if let AnyMessage::DemandPaymentNoticeResponse(d) = *m
                        && let Some(qr) = d.qr_code
                    {
                        return Some((qr.fiscal_code.to_string(), qr.notice_number.to_string()));
                    }
                    self.violation(format!("demand: OK without a qrCode: {body}"));
                    return None;
                }
                Ok(Answer::Fault(code)) if EC_FAILURE_CODES.contains(&code.as_str()) => {
                    self.ledger().ec_failures.push(EcFailure {
                        op: "demand",
                        notice: String::new(),
                        code,
                        sent,
                        answered,
                    });
                    tokio::time::sleep(Duration::from_millis(rng.range(20, 80))).await;
                }
                Ok(Answer::Fault(code)) => {
                    self.violation(format!("demand: unexpected {code}"));
                    return None;
                }
                Err(e) => {
                    self.violation(format!("demand: {e}"));
                    return None;
                }
            }
        }
        self.violation("demand: still refused after 400 attempts".into());
        None
    }

    /// A notice of the Comune: activate, then the outcome. A hurried one has a short
    /// `expirationTime` and the user takes a while: its outcome races the deadline (and the
    /// kills), so some arrive late.
    async fn notice_flow(
        &self,
        rng: &mut Prng,
        psp: &Psp,
        kind: Kind,
        scenario: &str,
        ok: bool,
        hurried: bool,
    ) {
        let seg = if rng.coin() { "02" } else { "01" };
        let nn = self.notice(seg, scenario);
        let exp = hurried.then(|| rng.range(400, 900));
        if let Some(token) = self
            .activate(rng, psp, EC, &nn, exp, kind, copies_for(seg, scenario))
            .await
        {
            if hurried {
                tokio::time::sleep(Duration::from_millis(rng.range(0, 800))).await;
            }
            self.outcome(rng, psp, &token, ok).await;
        }
    }

    /// demand, activate, outcome; a quarter of the users take up to a second to pay, around the
    /// outcome deadline of spontaneous payments.
    async fn spontaneous_flow(&self, rng: &mut Prng, psp: &Psp) {
        let Some((fc, nn)) = self.demand(rng, psp).await else {
            return;
        };
        // Service 00042 belongs to the Regione: one transfer, its own (spontaneous) station.
        let copies = vec![("88888888888_01", EC2)];
        if let Some(token) = self
            .activate(rng, psp, &fc, &nn, None, Kind::Spontaneous, copies)
            .await
        {
            if rng.range(0, 4) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.range(0, 1000))).await;
            }
            self.outcome(rng, psp, &token, true).await;
        }
    }

    /// An activation whose outcome never comes: its deadline must fire, even across a crash.
    async fn abandoned_flow(&self, rng: &mut Prng, psp: &Psp) {
        let exp = rng.range(300, 1200);
        self.abandon(rng, psp, exp).await;
    }

    /// An abandoned activation just before a kill: its deadline is pending at the kill.
    pub async fn deadline_probe(&self, rng: &mut Prng) {
        let psp = if rng.coin() { &PSP1 } else { &PSP2 };
        self.abandon(rng, psp, 1500).await;
    }

    async fn abandon(&self, rng: &mut Prng, psp: &Psp, exp: u64) {
        let seg = if rng.coin() { "02" } else { "01" };
        let scenario = ["00", "12", "13"][rng.range(0, 3) as usize];
        let nn = self.notice(seg, scenario);
        self.activate(
            rng,
            psp,
            EC,
            &nn,
            Some(exp),
            Kind::Abandoned,
            copies_for(seg, scenario),
        )
        .await;
    }

    /// Activates notices whose outcomes [`Shared::pay_probes`] sends once a phase has begun, so
    /// that receipts are generated, and fail to be delivered, while the EC is failing.
    pub async fn activate_probes(&self, rng: &mut Prng) -> Vec<(&'static Psp, String)> {
        let mut probes = Vec::new();
        for (seg, scenario) in [("01", "13"), ("02", "12")] {
            let psp = if rng.coin() { &PSP1 } else { &PSP2 };
            let nn = self.notice(seg, scenario);
            if let Some(token) = self
                .activate(
                    rng,
                    psp,
                    EC,
                    &nn,
                    None,
                    Kind::Multi,
                    copies_for(seg, scenario),
                )
                .await
            {
                probes.push((psp, token));
            }
        }
        probes
    }

    pub async fn pay_probes(&self, rng: &mut Prng, probes: Vec<(&'static Psp, String)>) {
        for (psp, token) in probes {
            self.outcome(rng, psp, &token, true).await;
        }
    }

    /// Pays an abandoned notice at the end: it must be payable again.
    pub async fn reactivate(&self, rng: &mut Prng, a: &Activation) {
        let psp = if rng.coin() { &PSP1 } else { &PSP2 };
        if let Some(token) = self
            .activate(
                rng,
                psp,
                &a.fc,
                &a.nn,
                None,
                Kind::Reactivated,
                a.copies.clone(),
            )
            .await
        {
            self.outcome(rng, psp, &token, true).await;
        }
    }
}

/// One virtual PSP: random flows until told to stop (the flow in progress is finished).
pub async fn worker(sh: Arc<Shared>, seed: u64) {
    let mut rng = Prng::new(seed);
    while !sh.stop.load(Ordering::Relaxed) {
        let psp = if rng.coin() { &PSP1 } else { &PSP2 };
        match rng.range(0, 100) {
            0..30 => {
                sh.notice_flow(&mut rng, psp, Kind::Single, "00", true, false)
                    .await
            }
            30..38 => {
                sh.notice_flow(&mut rng, psp, Kind::Ko, "00", false, false)
                    .await
            }
            38..56 => {
                let scenario = if rng.coin() { "12" } else { "13" };
                sh.notice_flow(&mut rng, psp, Kind::Multi, scenario, true, false)
                    .await
            }
            56..74 => sh.spontaneous_flow(&mut rng, psp).await,
            74..80 => {
                sh.notice_flow(&mut rng, psp, Kind::Single, "00", true, true)
                    .await
            }
            80..83 => {
                sh.notice_flow(&mut rng, psp, Kind::Ko, "00", false, true)
                    .await
            }
            83..88 => {
                let scenario = if rng.coin() { "12" } else { "13" };
                sh.notice_flow(&mut rng, psp, Kind::Multi, scenario, true, true)
                    .await
            }
            _ => sh.abandoned_flow(&mut rng, psp).await,
        }
    }
}
