//! The production [`EcTransport`]: HTTP(S) with reqwest over rustls. One client (connection
//! pool) per distinct TLS identity and proxy (`[outbound]` and its per-station overrides: client
//! certificate, CA bundle, proxy), built at start and reused; answers read as they stream in, up
//! to the station's cap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Answer, EcTransport, Post, Posted, TransportError};
use crate::config::Config;

/// How long to wait for a TCP/TLS connection: longer is "unreachable", not "slow".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What distinguishes one client from another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Identity {
    client_cert: Option<(PathBuf, PathBuf)>,
    ca_bundle: Option<PathBuf>,
    proxy: Option<String>,
}

/// Stations over HTTP(S).
#[derive(Clone)]
pub struct HttpTransport {
    /// The client of stations with the `[outbound]` identity (and of unknown ones).
    default: reqwest::Client,
    /// Stations with an identity of their own, by id (stations sharing one share its client).
    stations: HashMap<String, reqwest::Client>,
}

impl HttpTransport {
    /// The clients `config` needs; an unreadable certificate, key or bundle, or a bad proxy URL,
    /// is an error naming its key.
    pub fn new(config: &Config) -> Result<HttpTransport, String> {
        crate::install_crypto_provider();
        let out = &config.outbound;
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>| cert.clone().zip(key.clone());
        let default_identity = Identity {
            client_cert: pair(&out.client_cert, &out.client_key),
            ca_bundle: out.ca_bundle.clone(),
            proxy: out.proxy.clone(),
        };
        let default = client(&default_identity).map_err(|e| format!("outbound: {e}"))?;
        let mut built: HashMap<Identity, reqwest::Client> = HashMap::new();
        let mut stations = HashMap::new();
        for (i, s) in config.station.iter().enumerate() {
            let identity = Identity {
                client_cert: pair(&s.client_cert, &s.client_key)
                    .or_else(|| default_identity.client_cert.clone()),
                ca_bundle: s.ca_bundle.clone().or_else(|| out.ca_bundle.clone()),
                proxy: s.proxy.clone().or_else(|| out.proxy.clone()),
            };
            if identity == default_identity {
                continue;
            }
            let http = match built.get(&identity) {
                Some(c) => c.clone(),
                None => {
                    let c = client(&identity).map_err(|e| format!("station[{i}]: {e}"))?;
                    built.insert(identity, c.clone());
                    c
                }
            };
            stations.insert(s.id.clone(), http);
        }
        Ok(HttpTransport { default, stations })
    }

    fn client_for(&self, station: &str) -> &reqwest::Client {
        self.stations.get(station).unwrap_or(&self.default)
    }
}

/// A client with `identity`.
fn client(identity: &Identity) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("pagonode/", env!("CARGO_PKG_VERSION")));
    builder = match &identity.proxy {
        Some(url) => {
            builder.proxy(reqwest::Proxy::all(url).map_err(|e| format!("proxy '{url}': {e}"))?)
        }
        None => builder.no_proxy(),
    };
    if let Some(bundle) = &identity.ca_bundle {
        let roots = crate::front::certs::read_certificates(bundle)
            .map_err(|e| format!("ca_bundle: {e}"))?
            .into_iter()
            .map(|c| reqwest::Certificate::from_der(&c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ca_bundle: {}: {e}", bundle.display()))?;
        builder = builder.tls_certs_only(roots);
    }
    if let Some((cert, key)) = &identity.client_cert {
        // Checked with rustls-pki-types first, for an error naming the file.
        crate::front::certs::read_certificates(cert).map_err(|e| format!("client_cert: {e}"))?;
        crate::front::certs::read_private_key(key).map_err(|e| format!("client_key: {e}"))?;
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("client_cert: {}: {e}", cert.display()))?;
        builder = builder.identity(id);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl EcTransport for HttpTransport {
    fn post<'a>(&'a self, request: Post<'a>) -> Posted<'a> {
        Box::pin(async move {
            let limit = request.max_response_bytes;
            let exchange = async {
                let resp = self
                    .client_for(request.station)
                    .post(request.url)
                    .header("Content-Type", "text/xml; charset=utf-8")
                    .header("SOAPAction", format!("\"{}\"", request.soap_action))
                    .body(request.body)
                    .send()
                    .await
                    .map_err(|e| transport_error(&e))?;
                let status = resp.status().as_u16();
                if resp.content_length().is_some_and(|n| n > limit as u64) {
                    return Err(TransportError::TooLarge(limit));
                }
                // Read as it comes, and no further than the cap: the connection is dropped there.
                let mut body = Vec::new();
                let mut resp = resp;
                while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
                    if body.len() + chunk.len() > limit {
                        return Err(TransportError::TooLarge(limit));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Answer { status, body })
            };
            tokio::time::timeout(request.timeout, exchange)
                .await
                .unwrap_or(Err(TransportError::Timeout))
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
