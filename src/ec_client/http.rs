//! The production [`EcTransport`]: HTTP(S) with reqwest over rustls.

use std::time::Duration;

use super::{Answer, EcTransport, Post, Posted, TransportError};

/// How long to wait for a TCP/TLS connection: longer is "unreachable", not "slow".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Stations over HTTP(S), through one connection pool.
#[derive(Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
}

impl HttpTransport {
    pub fn new() -> Result<HttpTransport, String> {
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
        Ok(HttpTransport { http })
    }
}

impl EcTransport for HttpTransport {
    fn post<'a>(&'a self, request: Post<'a>) -> Posted<'a> {
        Box::pin(async move {
            let resp = self
                .http
                .post(request.url)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", format!("\"{}\"", request.soap_action))
                .timeout(request.timeout)
                .body(request.body)
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
            Ok(Answer {
                status,
                body: Vec::from(body),
            })
        })
    }
}

fn transport_error(e: &reqwest::Error) -> TransportError {
    if e.is_connect() {
        TransportError::Connect(root_cause(e))
    } else if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Broken(root_cause(e))
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
