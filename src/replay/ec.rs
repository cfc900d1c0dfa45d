//! The EC player: one HTTP listener that plays every creditor entity of a trace. The station is
//! the last segment of the request path (`…/pa/77777777777_01`), so the node's station URLs
//! must end with their station id.
//!
//! Every scripted exchange of the trace is queued up front, per (station, operation), in file
//! order: a call is matched with the first exchange still queued for its station and operation,
//! whenever it comes (so an asynchronous receipt cannot slip past the step that expects it).
//! Receipts nobody scripted are acknowledged OK; any other unscripted call is answered with a
//! SOAP fault and reported as unexpected.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::compare::{self, Captures};
use super::trace::{Answer, Exchange};
use crate::codec::pa_for_node::{PaSendRtRes, PaSendRtV2Response};
use crate::codec::types::Outcome;
use crate::codec::{Body, Limits, Operation, read_any, write_envelope};

/// What happened to a scripted exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Played {
    /// Not called yet.
    Pending,
    /// Called; `Err` says how the request differed from the expected one.
    Called(Result<(), String>),
}

struct Script {
    exchanges: Vec<Exchange>,
    played: Vec<Played>,
    queues: HashMap<(String, Operation), VecDeque<usize>>,
    unexpected: Vec<String>,
    /// Receipts acknowledged OK, per station.
    receipts: BTreeMap<String, usize>,
}

struct Shared {
    script: Mutex<Script>,
    captures: Arc<Mutex<Captures>>,
    changed: Notify,
    /// Set when the player stops: silent exchanges end.
    stopping: watch::Sender<bool>,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running EC player.
pub struct EcPlayer {
    url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

/// The paForNode operations a call can be for: the SOAPAction, else the body's root.
fn operation_of(req: &HttpRequest, body: &[u8]) -> Option<Operation> {
    let action = req
        .headers()
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok());
    crate::codec::detect_operation(action, None, body)
}

fn is_receipt(op: Operation) -> bool {
    matches!(op, Operation::PaSendRt | Operation::PaSendRtV2)
}

/// The EC's OK answer to a receipt nobody scripted.
fn receipt_ok(op: Operation) -> String {
    match op {
        Operation::PaSendRtV2 => write_envelope(&PaSendRtV2Response {
            outcome: Outcome::Ok,
            fault: None,
        }),
        _ => write_envelope(&PaSendRtRes {
            outcome: Outcome::Ok,
            fault: None,
        }),
    }
}

/// Whether an answer acknowledges a receipt: HTTP 200 and a valid response with outcome OK.
fn acknowledges(status: u16, body: &str) -> bool {
    status == 200
        && matches!(read_any(body.as_bytes(), Limits::DEFAULT), Ok(Body::Message(m))
            if matches!(m.outcome_and_fault(), Some((Outcome::Ok, None))))
}

/// A SOAP fault telling the node (and whoever reads its journal) that the trace had no answer.
fn unscripted_fault(what: &str) -> String {
    let mut w = crate::codec::xml::XmlWriter::default();
    w.raw("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>");
    w.text(&format!("pagonode replay: {what}"));
    w.raw("</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    w.into_string()
}

fn xml(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK),
    )
    .insert_header(("Content-Type", "text/xml; charset=utf-8"))
    .body(body)
}

/// Takes the exchange a call plays: among those queued for its station and operation, the first
/// whose expected request it matches (several receipts to one station may come in any order),
/// else the first one, with the difference. Captures are kept only from a match.
fn pick(
    script: &mut Script,
    station: &str,
    op: Operation,
    request: &str,
    captures: &Mutex<Captures>,
) -> Option<(usize, Result<(), compare::Mismatch>)> {
    let queue = script.queues.get_mut(&(station.to_string(), op))?;
    let mut caps = captures.lock().unwrap_or_else(|p| p.into_inner());
    let mut first_difference = None;
    for (pos, &i) in queue.iter().enumerate() {
        let mut trial = caps.clone();
        let verdict = match &script.exchanges[i].expect {
            None => Ok(()),
            Some(expected) => compare::compare_documents(expected, request, &mut trial),
        };
        match verdict {
            Ok(()) => {
                *caps = trial;
                queue.remove(pos);
                return Some((i, Ok(())));
            }
            Err(m) => {
                first_difference.get_or_insert(m);
            }
        }
    }
    let difference = first_difference?;
    queue.pop_front().map(|i| (i, Err(difference)))
}

/// What the handler decided, computed under the lock and acted on after it.
enum Decision {
    Answer {
        answer: Answer,
        delay: Duration,
        receipt_station: Option<String>,
    },
    Unscripted(HttpResponse),
}

/// Decides how to answer a call (under the script's lock; nothing here waits).
fn decide(shared: &Shared, station: &str, op: Option<Operation>, text: &str) -> Decision {
    let mut script = shared.script();
    let Some(op) = op else {
        script.unexpected.push(format!(
            "a request to station {station} for no recognisable operation: {}",
            compare::abbreviate(text, 200)
        ));
        return Decision::Unscripted(xml(500, unscripted_fault("unrecognisable request")));
    };
    let Some((i, verdict)) = pick(&mut script, station, op, text, &shared.captures) else {
        if is_receipt(op) {
            return Decision::Answer {
                answer: Answer::Reply {
                    body: receipt_ok(op),
                    status: 200,
                },
                delay: Duration::ZERO,
                receipt_station: Some(station.to_string()),
            };
        }
        script.unexpected.push(format!(
            "unexpected {} to station {station}: {}",
            op.soap_action(),
            compare::abbreviate(text, 300)
        ));
        shared.changed.notify_waiters();
        return Decision::Unscripted(xml(
            500,
            unscripted_fault(&format!("no {} scripted for {station}", op.soap_action())),
        ));
    };
    let x = script.exchanges[i].clone();
    let mut verdict = verdict.map_err(|m| format!("{} to {station} differs {m}", op.soap_action()));
    // A reply may use what the request just captured.
    let answer = match x.answer {
        Answer::Reply { body, status } => match compare::substitute(
            &body,
            &shared.captures.lock().unwrap_or_else(|p| p.into_inner()),
        ) {
            Ok(body) => Answer::Reply { body, status },
            Err(e) => {
                verdict = Err(format!("reply to {} at {station}: {e}", op.soap_action()));
                Answer::Reply {
                    body: unscripted_fault(&e),
                    status: 500,
                }
            }
        },
        other => other,
    };
    script.played[i] = Played::Called(verdict);
    shared.changed.notify_waiters();
    Decision::Answer {
        answer,
        delay: x.delay,
        receipt_station: is_receipt(op).then(|| station.to_string()),
    }
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Arc<Shared>>,
) -> HttpResponse {
    let station = req
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    let decision = decide(&shared, &station, operation_of(&req, &body), &text);
    let (answer, delay, receipt_station) = match decision {
        Decision::Unscripted(resp) => return resp,
        Decision::Answer {
            answer,
            delay,
            receipt_station,
        } => (answer, delay, receipt_station),
    };
    let mut stopping = shared.stopping.subscribe();
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return xml(503, unscripted_fault("stopped")),
        }
    }
    match answer {
        Answer::Reply { body, status } => {
            if let Some(station) = receipt_station
                && acknowledges(status, &body)
            {
                *shared.script().receipts.entry(station).or_default() += 1;
                shared.changed.notify_waiters();
            }
            xml(status, body)
        }
        Answer::Silence => {
            let _ = stopping.wait_for(|s| *s).await;
            xml(503, unscripted_fault("stopped"))
        }
        Answer::Close => {
            // Headers, then a body that fails: the connection is dropped mid-answer.
            let broken = futures_util::stream::once(async {
                Err::<web::Bytes, _>(std::io::Error::other("connection dropped by the trace"))
            });
            HttpResponse::Ok()
                .insert_header(("Content-Type", "text/xml; charset=utf-8"))
                .streaming(broken)
        }
    }
}

impl EcPlayer {
    /// Starts playing `exchanges` on `listener`. `captures` is shared with the runner: expected
    /// requests capture into it and replies are filled from it.
    pub fn start(
        listener: std::net::TcpListener,
        exchanges: Vec<Exchange>,
        captures: Arc<Mutex<Captures>>,
    ) -> Result<EcPlayer, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut queues: HashMap<(String, Operation), VecDeque<usize>> = HashMap::new();
        for (i, x) in exchanges.iter().enumerate() {
            queues
                .entry((x.station.clone(), x.operation))
                .or_default()
                .push_back(i);
        }
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                played: vec![Played::Pending; exchanges.len()],
                exchanges,
                queues,
                unexpected: Vec::new(),
                receipts: BTreeMap::new(),
            }),
            captures,
            changed: Notify::new(),
            stopping: watch::channel(false).0,
        });
        let data = web::Data::new(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(|e| format!("EC player: {e}"))?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(EcPlayer {
            url: format!("http://{addr}"),
            shared,
            handle,
            task,
        })
    }

    /// The base URL stations point at (`{EC_URL}` in trace configurations).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What happened to exchange `i`.
    pub fn played(&self, i: usize) -> Played {
        self.shared.script().played[i].clone()
    }

    /// Unexpected calls since the last time they were taken.
    pub fn take_unexpected(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.script().unexpected)
    }

    /// Receipts acknowledged OK so far, per station.
    pub fn receipts(&self) -> BTreeMap<String, usize> {
        self.shared.script().receipts.clone()
    }

    /// Waits until `done` holds (checked at every call the player answers) or `timeout` passes;
    /// returns whether it holds.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&EcPlayer) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before checking, so a change between the check and the wait is seen.
            let changed = self.shared.changed.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(self);
            }
        }
    }

    /// Stops the listener; silent exchanges end.
    pub async fn stop(self) {
        let _ = self.shared.stopping.send(true);
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}
