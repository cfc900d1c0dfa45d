//! Outbound SOAP to creditor entities' stations, with per-call timeouts and the official mapping
//! of failures to fault codes (BEHAVIOUR.md Part B §2.8): timeout → `PPT_STAZIONE_INT_PA_TIMEOUT`,
//! no connection → `PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE`, an answer that is not a valid response
//! → `PPT_STAZIONE_INT_PA_ERRORE_RESPONSE`, a KO with a fault → `PPT_ERRORE_EMESSO_DA_PAA`.
//! Every answer is validated with the same codec as PSP requests.

use std::time::{Duration, Instant};

use crate::codec::types::Outcome;
use crate::codec::{Body, KoResponse, Message, read_message, write_envelope};
use crate::engine::Millis;
use crate::fault::NodeFault;

/// One request/response exchange, for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: String,
    pub response: Option<String>,
    pub started_at: Millis,
    pub elapsed_ms: u64,
}

/// The HTTP client the node calls stations with.
#[derive(Clone)]
pub struct EcClient {
    http: reqwest::Client,
}

/// How long to wait for a TCP/TLS connection: longer is "unreachable", not "slow".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl EcClient {
    pub fn new() -> Result<EcClient, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .no_proxy()
            .user_agent(concat!("pagonode/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(EcClient { http })
    }

    /// Sends `req` to `url` and reads the typed answer; a KO becomes the fault the PSP gets.
    pub async fn call<Req: Message, Res: Message + KoResponse>(
        &self,
        url: &str,
        req: &Req,
        timeout: Duration,
    ) -> (Result<Res, NodeFault>, Exchange) {
        self.call_raw(
            url,
            Req::OPERATION.soap_action(),
            write_envelope(req),
            timeout,
        )
        .await
    }

    /// Sends a ready envelope (a stored receipt copy) and reads the typed answer.
    pub async fn call_raw<Res: Message + KoResponse>(
        &self,
        url: &str,
        soap_action: &str,
        body: String,
        timeout: Duration,
    ) -> (Result<Res, NodeFault>, Exchange) {
        let started_at = crate::clock::now_ms();
        let t0 = Instant::now();
        let sent = self
            .http
            .post(url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{soap_action}\""))
            .timeout(timeout)
            .body(body.clone())
            .send()
            .await;
        let result = match sent {
            Err(e) => Err(transport_fault(&e)),
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Err(e) => Err(transport_fault(&e)),
                    Ok(bytes) => Ok((status, bytes)),
                }
            }
        };
        let elapsed_ms = t0.elapsed().as_millis() as u64;
        let (outcome, response) = match result {
            Err(fault) => (Err(fault), None),
            Ok((status, bytes)) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                (interpret::<Res>(status.as_u16(), &bytes), Some(text))
            }
        };
        // In the calling request's span, if any: the PSP request that caused the call.
        tracing::debug!(
            operation = soap_action,
            url,
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

fn transport_fault(e: &reqwest::Error) -> NodeFault {
    if e.is_connect() {
        NodeFault::StazioneIntPaIrraggiungibile(format!("connection failed: {}", root_cause(e)))
    } else if e.is_timeout() {
        NodeFault::StazioneIntPaTimeout
    } else {
        NodeFault::StazioneIntPaIrraggiungibile(root_cause(e))
    }
}

/// The innermost error's message (`Connection refused (os error 111)`), not the wrapper's.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Reads an answer: a valid response with `outcome=OK` and no fault is the only success.
fn interpret<Res: Message + KoResponse>(status: u16, bytes: &[u8]) -> Result<Res, NodeFault> {
    let bad = |why: String| NodeFault::StazioneIntPaErroreResponse(why);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!("HTTP {status} with an empty body")));
    }
    match read_message::<Res>(bytes) {
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
