//! Runs a trace: against an in-process node started for it (fresh database, the trace's
//! configuration, stations pointing at the EC player), or against a node at a URL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::compare::{self, Captures};
use super::ec::{EcPlayer, Played};
use super::trace::{DEFAULT_CONFIG, PspRequest, Step, StepKind, Trace};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::server::RunningNode;

/// Where traces run.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A running node's nodeForPsp URL; None: an in-process node per trace.
    pub node_url: Option<String>,
    /// Where the EC player listens when the node is remote (its stations must point there).
    pub ec_listen: Option<String>,
    /// The configuration in-process nodes start from, instead of the shipped default.
    pub base_config: Option<String>,
    /// Keep each in-process node's database in this directory, as `<trace file stem>.db`
    /// (replaced if it exists), instead of a temporary one.
    pub keep_databases: Option<std::path::PathBuf>,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything as expected.
    Pass,
    /// What went wrong, possibly on several lines.
    Fail(String),
    /// Not run: an earlier step failed.
    Skipped,
}

/// How one step went.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The step's label.
    pub label: String,
    /// Pass, fail (why) or skipped.
    pub verdict: Verdict,
    /// How long the step took.
    pub elapsed: Duration,
}

/// How a trace went.
#[derive(Debug, Clone)]
pub struct TraceReport {
    /// The trace's name.
    pub name: String,
    /// Its file.
    pub path: String,
    /// What it proves.
    pub description: String,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// The trace could not run at all (bad configuration, node not starting, …).
    pub error: Option<String>,
    /// How long the whole trace took, node start and stop included.
    pub elapsed: Duration,
}

impl TraceReport {
    /// Whether it ran and every step passed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.steps.iter().all(|s| s.verdict == Verdict::Pass)
    }

    /// The first failure, for one-line summaries.
    pub fn failure(&self) -> Option<String> {
        self.error.clone().or_else(|| {
            self.steps
                .iter()
                .enumerate()
                .find_map(|(i, s)| match &s.verdict {
                    Verdict::Fail(why) => Some(format!("step {} {}: {why}", i + 1, s.label)),
                    _ => None,
                })
        })
    }
}

/// A node to talk to: started here, or already running elsewhere.
enum Node {
    /// `temp`: the temporary directory to remove when done (None: the database is kept).
    InProcess {
        node: RunningNode,
        temp: Option<std::path::PathBuf>,
    },
    Remote(String),
}

impl Node {
    fn url(&self) -> String {
        match self {
            Node::InProcess { node, .. } => node.url(),
            Node::Remote(url) => url.clone(),
        }
    }

    async fn stop(self) {
        if let Node::InProcess { node, temp } = self {
            // The trace's last receipt step saw the station answer; the node records the
            // answer a moment later.
            node.node.deliveries_settled(SETTLE_LIMIT).await;
            node.stop().await;
            if let Some(dir) = temp {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// How long a stopping in-process node is given to record the delivery attempts in flight.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

static RUN: AtomicU64 = AtomicU64::new(0);

/// A fresh directory for an in-process node's database (removed when the trace ends).
fn temp_dir() -> Result<std::path::PathBuf, String> {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "pagonode-replay-{}-{}-{n}",
        std::process::id(),
        SystemClock.now_ms()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A URL nothing listens on (`{DOWN_URL}`: stations that must be unreachable).
fn closed_port_url() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    Ok(format!("http://{addr}"))
}

fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn start_node(trace: &Trace, target: &Target, ec_url: &str) -> Result<Node, String> {
    if let Some(url) = &target.node_url {
        return Ok(Node::Remote(url.clone()));
    }
    let (db, temp) = match &target.keep_databases {
        Some(dir) => {
            let stem = trace
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "trace".into());
            let db = dir.join(format!("{stem}.db"));
            // A fresh database: the files a previous replay of the trace left go.
            for suffix in [".db", ".db-wal", ".db-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("{stem}{suffix}")));
            }
            let _ = std::fs::remove_dir_all(crate::journal::writer::journal_dir(&db));
            (db, None)
        }
        None => {
            let dir = temp_dir()?;
            (dir.join("node.db"), Some(dir))
        }
    };
    let started = async {
        let text = trace.config_text(target.base_config.as_deref().unwrap_or(DEFAULT_CONFIG))?;
        let text = text
            .replace("{EC_URL}", ec_url)
            .replace("{DOWN_URL}", &closed_port_url()?)
            .replace("{DB}", &db.to_string_lossy());
        let config =
            Config::from_toml_str(&text).map_err(|e| format!("node configuration: {e}"))?;
        RunningNode::start(config, Some(bind("127.0.0.1:0")?), None)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match started {
        Ok(node) => Ok(Node::InProcess { node, temp }),
        Err(e) => {
            if let Some(dir) = temp {
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(e)
        }
    }
}

/// Runs one trace and reports every step. Never panics on a bad trace or a misbehaving node.
pub async fn run_trace(trace: &Trace, target: &Target) -> TraceReport {
    let t0 = Instant::now();
    let mut report = TraceReport {
        name: trace.name.clone(),
        path: trace.path.display().to_string(),
        description: trace.description.clone(),
        steps: Vec::new(),
        error: None,
        elapsed: Duration::ZERO,
    };
    match setup(trace, target).await {
        Err(e) => report.error = Some(e),
        Ok((node, player, captures)) => {
            let run = Run {
                trace,
                player: &player,
                captures,
                node_url: node.url(),
                http: http_client(),
            };
            report.steps = run.steps().await;
            node.stop().await;
            player.stop().await;
        }
    }
    report.elapsed = t0.elapsed();
    report
}

async fn setup(
    trace: &Trace,
    target: &Target,
) -> Result<(Node, EcPlayer, Arc<Mutex<Captures>>), String> {
    crate::install_crypto_provider();
    let listen =
        match (&target.node_url, &target.ec_listen) {
            (None, _) => "127.0.0.1:0",
            (Some(_), Some(addr)) => addr.as_str(),
            (Some(_), None) if trace.exchanges.is_empty() => "127.0.0.1:0",
            (Some(_), None) => return Err(
                "the trace plays ECs: give --ec-listen ADDR (the node's stations must point there)"
                    .into(),
            ),
        };
    let captures = Arc::new(Mutex::new(Captures::new()));
    let player = EcPlayer::start(bind(listen)?, trace.exchanges.clone(), captures.clone())?;
    match start_node(trace, target, player.url()).await {
        Ok(node) => Ok((node, player, captures)),
        Err(e) => {
            player.stop().await;
            Err(e)
        }
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// One trace being run.
struct Run<'a> {
    trace: &'a Trace,
    player: &'a EcPlayer,
    captures: Arc<Mutex<Captures>>,
    node_url: String,
    http: Result<reqwest::Client, String>,
}

impl Run<'_> {
    fn captures(&self) -> std::sync::MutexGuard<'_, Captures> {
        self.captures.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn steps(&self) -> Vec<StepReport> {
        let mut reports = Vec::new();
        let mut failed = false;
        for step in &self.trace.steps {
            if failed {
                reports.push(StepReport {
                    label: step.label.clone(),
                    verdict: Verdict::Skipped,
                    elapsed: Duration::ZERO,
                });
                continue;
            }
            let t0 = Instant::now();
            let mut problems = self.step(step).await;
            problems.extend(self.player.take_unexpected());
            failed = !problems.is_empty();
            let verdict = if failed {
                Verdict::Fail(problems.join("\n"))
            } else {
                Verdict::Pass
            };
            reports.push(StepReport {
                label: step.label.clone(),
                verdict,
                elapsed: t0.elapsed(),
            });
        }
        reports
    }

    /// Runs a step; returns what went wrong (nothing: it passed).
    async fn step(&self, step: &Step) -> Vec<String> {
        match &step.kind {
            StepKind::Wait(d) => {
                tokio::time::sleep(*d).await;
                Vec::new()
            }
            StepKind::Psp {
                requests,
                exchanges,
            } => {
                let mut problems = self.psp(requests).await;
                problems.extend(self.check_exchanges(exchanges, "while the request was in flight"));
                problems
            }
            StepKind::Ec { exchanges, timeout } => {
                let ids = exchanges.clone();
                self.player
                    .wait_until(*timeout, |p| {
                        ids.iter().all(|&i| p.played(i) != Played::Pending)
                    })
                    .await;
                self.check_exchanges(exchanges, &format!("within {} ms", timeout.as_millis()))
            }
            StepKind::Receipts { expected, timeout } => {
                let enough = |got: &BTreeMap<String, usize>| {
                    expected
                        .iter()
                        .all(|(s, n)| got.get(s).copied().unwrap_or(0) >= *n)
                };
                self.player
                    .wait_until(*timeout, |p| enough(&p.receipts()))
                    .await;
                let got = self.player.receipts();
                let stations: std::collections::BTreeSet<&String> =
                    expected.keys().chain(got.keys()).collect();
                let wrong: Vec<String> = stations
                    .into_iter()
                    .filter_map(|s| {
                        let (e, g) = (
                            expected.get(s).copied().unwrap_or(0),
                            got.get(s).copied().unwrap_or(0),
                        );
                        (e != g).then(|| format!("{s}: expected {e}, received {g}"))
                    })
                    .collect();
                if wrong.is_empty() {
                    Vec::new()
                } else {
                    vec![format!(
                        "receipts acknowledged by the ECs differ: {}",
                        wrong.join("; ")
                    )]
                }
            }
        }
    }

    fn check_exchanges(&self, ids: &[usize], when: &str) -> Vec<String> {
        ids.iter()
            .filter_map(|&i| {
                let x = &self.trace.exchanges[i];
                match self.player.played(i) {
                    Played::Pending => Some(format!(
                        "the node did not call {} on station {} {when}",
                        x.operation.soap_action(),
                        x.station
                    )),
                    Played::Called(Ok(())) => None,
                    Played::Called(Err(e)) => Some(e),
                }
            })
            .collect()
    }

    /// Sends the step's requests (at once when several) and matches the answers with the
    /// expected ones, in any order.
    async fn psp(&self, requests: &[PspRequest]) -> Vec<String> {
        let http = match &self.http {
            Ok(h) => h,
            Err(e) => return vec![e.clone()],
        };
        let mut bodies = Vec::new();
        for (k, r) in requests.iter().enumerate() {
            match compare::substitute(&r.body, &self.captures()) {
                Ok(b) => bodies.push(b),
                Err(e) => return vec![format!("request {}: {e}", k + 1)],
            }
        }
        let sends = requests.iter().zip(bodies).map(|(r, body)| {
            let mut req = http
                .post(&self.node_url)
                .header("Content-Type", "text/xml; charset=utf-8")
                .body(body);
            if let Some(a) = &r.soap_action {
                req = req.header("SOAPAction", a.as_str());
            }
            async move {
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("the node did not answer: {e}"))?;
                let status = resp.status().as_u16();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| format!("the node's answer could not be read: {e}"))?;
                Ok::<_, String>((status, text))
            }
        });
        let answers = futures_util::future::join_all(sends).await;
        let mut got = Vec::new();
        for (k, a) in answers.into_iter().enumerate() {
            match a {
                Ok(a) => got.push(a),
                Err(e) => return vec![format!("request {}: {e}", k + 1)],
            }
        }
        self.match_answers(requests, &got)
    }

    /// Finds an assignment of answers to expectations (the identity first: with one request it
    /// is the only one); captures are kept only from the assignment that matches.
    fn match_answers(&self, requests: &[PspRequest], got: &[(u16, String)]) -> Vec<String> {
        let mut caps = self.captures();
        let mut first_failure = None;
        for order in permutations(requests.len()) {
            let mut trial = caps.clone();
            let mut problems = Vec::new();
            for (k, &j) in order.iter().enumerate() {
                let (status, body) = &got[j];
                let which = if requests.len() > 1 {
                    format!("answer {} (to request {})", k + 1, j + 1)
                } else {
                    "answer".into()
                };
                if *status != requests[k].http_status {
                    problems.push(format!(
                        "{which}: HTTP {status}, expected {}: {}",
                        requests[k].http_status,
                        compare::abbreviate(body, 300)
                    ));
                } else if let Err(m) =
                    compare::compare_documents(&requests[k].expect, body, &mut trial)
                {
                    problems.push(format!("{which} differs {m}"));
                }
                if !problems.is_empty() {
                    break;
                }
            }
            if problems.is_empty() {
                *caps = trial;
                return Vec::new();
            }
            first_failure.get_or_insert(problems);
        }
        first_failure.unwrap_or_default()
    }
}

/// Every ordering of `0..n`, the identity first (n is small: the requests of one step).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for pos in (0..=rest.len()).rev() {
            let mut p = rest.clone();
            p.insert(pos, n - 1);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::permutations;

    #[test]
    fn permutations_start_with_the_identity() {
        let p = permutations(3);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], vec![0, 1, 2]);
        let mut sorted = p.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
    }
}
