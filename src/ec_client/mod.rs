//! Outbound SOAP to creditor entities' stations: what the node sends and how it reads the
//! answers, over an [`EcTransport`] (HTTP in production, [`http::HttpTransport`]; a simulated
//! network in tests). Reading is the same whatever the transport: the official mapping of
//! failures to fault codes (SANP, "Gestione degli errori": `PPT_STAZIONE_INT_PA_TIMEOUT`,
//! `PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE`, `PPT_STAZIONE_INT_PA_ERRORE_RESPONSE`,
//! `PPT_ERRORE_EMESSO_DA_PAA`), and every answer validated with the codec that reads PSP
//! requests.

pub mod http;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::codec::types::Outcome;
use crate::codec::{Body, KoResponse, Limits, Message, read_message, write_envelope};
use crate::config::StationConfig;
use crate::engine::Millis;
use crate::fault::NodeFault;

/// What a station's HTTP server answered: status and body, unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made (refused, unreachable, TLS handshake failed).
    #[error("connection failed: {0}")]
    Connect(String),
    /// No complete answer within the call's timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The connection broke, or the answer could not be read.
    #[error("{0}")]
    Broken(String),
    /// The answer is longer than the station's cap (not read further).
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// One SOAP 1.1 request to a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post<'a> {
    /// The station's id (it selects the TLS identity and proxy to use).
    pub station: &'a str,
    pub url: &'a str,
    pub soap_action: &'a str,
    pub body: String,
    /// For the whole exchange, connection included.
    pub timeout: Duration,
    /// The longest answer read: a longer one is not read further.
    pub max_response_bytes: usize,
}

/// The answer of one [`EcTransport::post`], when it comes.
pub type Posted<'a> = Pin<Box<dyn Future<Output = Result<Answer, TransportError>> + Send + 'a>>;

/// How requests reach stations.
pub trait EcTransport: Send + Sync + 'static {
    fn post<'a>(&'a self, request: Post<'a>) -> Posted<'a>;
}

/// One request/response exchange, for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: String,
    pub response: Option<String>,
    pub started_at: Millis,
    pub elapsed_ms: u64,
}

/// Calls stations: writes requests, reads answers into typed responses or faults.
#[derive(Clone)]
pub struct EcClient {
    transport: Arc<dyn EcTransport>,
    clock: Arc<dyn Clock>,
    /// What a station's answer may make the reader do.
    limits: Limits,
    /// The longest answer read from a station without a cap of its own.
    max_response_bytes: usize,
}

impl EcClient {
    pub fn new(
        transport: Arc<dyn EcTransport>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        max_response_bytes: usize,
    ) -> EcClient {
        EcClient {
            transport,
            clock,
            limits,
            max_response_bytes,
        }
    }

    /// Sends `req` to `station` and reads the typed answer; a KO becomes the fault the PSP gets.
    pub async fn call<Req: Message, Res: Message + KoResponse>(
        &self,
        station: &StationConfig,
        req: &Req,
        timeout: Duration,
    ) -> (Result<Res, NodeFault>, Exchange) {
        self.call_raw(
            station,
            Req::OPERATION.soap_action(),
            write_envelope(req),
            timeout,
        )
        .await
    }

    /// Sends a ready envelope (a stored receipt copy) and reads the typed answer.
    pub async fn call_raw<Res: Message + KoResponse>(
        &self,
        station: &StationConfig,
        soap_action: &str,
        body: String,
        timeout: Duration,
    ) -> (Result<Res, NodeFault>, Exchange) {
        let started_at = self.clock.now_ms();
        let max_response_bytes = station
            .max_response_bytes
            .unwrap_or(self.max_response_bytes);
        let request = Post {
            station: &station.id,
            url: &station.url,
            soap_action,
            body: body.clone(),
            timeout,
            max_response_bytes,
        };
        let sent = self.transport.post(request).await.and_then(|answer| {
            // Whatever the transport: a transport that reads it all is held to the cap here.
            if answer.body.len() > max_response_bytes {
                Err(TransportError::TooLarge(max_response_bytes))
            } else {
                Ok(answer)
            }
        });
        let elapsed_ms = self.clock.now_ms().saturating_sub(started_at);
        let (outcome, response) = match sent {
            Err(e) => (Err(transport_fault(e)), None),
            Ok(answer) => {
                let text = String::from_utf8_lossy(&answer.body).into_owned();
                (
                    interpret::<Res>(answer.status, &answer.body, self.limits),
                    Some(text),
                )
            }
        };
        // In the calling request's span, if any: the PSP request that caused the call.
        tracing::debug!(
            operation = soap_action,
            url = station.url,
            outcome = outcome.as_ref().map_or_else(|f| f.code(), |_| "OK"),
            elapsed_ms,
            "EC call answered"
        );
        (
            outcome,
            Exchange {
                request: body,
                response,
                started_at,
                elapsed_ms,
            },
        )
    }
}

fn transport_fault(e: TransportError) -> NodeFault {
    match e {
        TransportError::Timeout => NodeFault::StazioneIntPaTimeout,
        e @ TransportError::Connect(_) => NodeFault::StazioneIntPaIrraggiungibile(e.to_string()),
        TransportError::Broken(why) => NodeFault::StazioneIntPaIrraggiungibile(why),
        e @ TransportError::TooLarge(_) => NodeFault::StazioneIntPaErroreResponse(e.to_string()),
    }
}

/// Reads an answer: a valid response with `outcome=OK` and no fault is the only success.
fn interpret<Res: Message + KoResponse>(
    status: u16,
    bytes: &[u8],
    limits: Limits,
) -> Result<Res, NodeFault> {
    let bad = |why: String| NodeFault::StazioneIntPaErroreResponse(why);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!("HTTP {status} with an empty body")));
    }
    match read_message::<Res>(bytes, limits) {
        Err(v) => Err(bad(format!("invalid {} (HTTP {status}): {v}", Res::root()))),
        Ok(Body::Fault(f)) => Err(bad(format!(
            "SOAP Fault {}: {}",
            f.faultcode.0, f.faultstring
        ))),
        Ok(Body::Message(m)) => match (m.outcome(), m.fault()) {
            (Outcome::Ok, None) => Ok(m),
            (Outcome::Ok, Some(_)) => Err(bad("outcome OK together with a fault".into())),
            (Outcome::Ko, Some(f)) => Err(NodeFault::ErroreEmessoDaPaa(Box::new(f.clone()))),
            (Outcome::Ko, None) => Err(bad("outcome KO without a fault".into())),
        },
    }
}
