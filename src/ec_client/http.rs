//! The production [`EcTransport`]: HTTP(S) with reqwest over rustls. One client (connection
//! pool) per distinct TLS identity and proxy (`[outbound]` and its per-station overrides: client
//! certificate, CA bundle, proxy) and per thread, reused; answers read as they stream in, up to
//! the station's cap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thread_local::ThreadLocal;

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
///
/// Each thread has clients of its own: a pooled connection is driven by the runtime of the
/// thread that opened it, so an exchange started on an HTTP worker would otherwise hop to another
/// thread (and wake it) for every read and write. Built on a thread's first exchange from the
/// identities checked at start.
#[derive(Clone)]
pub struct HttpTransport {
    identities: Arc<Identities>,
    clients: Arc<ThreadLocal<Clients>>,
}

/// Who is who: the `[outbound]` identity, and the stations with one of their own.
struct Identities {
    default: Identity,
    /// By station id; stations sharing an identity share its index in `distinct`.
    stations: HashMap<String, usize>,
    distinct: Vec<Identity>,
}

/// One thread's clients, as [`Identities`] lays them out.
struct Clients {
    default: reqwest::Client,
    distinct: Vec<reqwest::Client>,
}

impl HttpTransport {
    /// The transport `config` needs; an unreadable certificate, key or bundle, or a bad proxy
    /// URL, is an error naming its key.
    pub fn new(config: &Config) -> Result<HttpTransport, String> {
        crate::install_crypto_provider();
        let out = &config.outbound;
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>| cert.clone().zip(key.clone());
        let default = Identity {
            client_cert: pair(&out.client_cert, &out.client_key),
            ca_bundle: out.ca_bundle.clone(),
            proxy: out.proxy.clone(),
        };
        client(&default).map_err(|e| format!("outbound: {e}"))?;
        let mut distinct: Vec<Identity> = Vec::new();
        let mut stations = HashMap::new();
        for (i, s) in config.station.iter().enumerate() {
            let identity = Identity {
                client_cert: pair(&s.client_cert, &s.client_key)
                    .or_else(|| default.client_cert.clone()),
                ca_bundle: s.ca_bundle.clone().or_else(|| out.ca_bundle.clone()),
                proxy: s.proxy.clone().or_else(|| out.proxy.clone()),
            };
            if identity == default {
                continue;
            }
            let index = match distinct.iter().position(|d| *d == identity) {
                Some(index) => index,
                None => {
                    client(&identity).map_err(|e| format!("station[{i}]: {e}"))?;
                    distinct.push(identity);
                    distinct.len() - 1
                }
            };
            stations.insert(s.id.clone(), index);
        }
        Ok(HttpTransport {
            identities: Arc::new(Identities {
                default,
                stations,
                distinct,
            }),
            clients: Arc::new(ThreadLocal::new()),
        })
    }

    /// This thread's client for `station`. Every identity was built once at start; building it
    /// again fails only if its files changed since, which is the station's connection failing.
    fn client_for(&self, station: &str) -> Result<reqwest::Client, TransportError> {
        let ids = &self.identities;
        let clients = self.clients.get_or_try(|| {
            Ok::<_, String>(Clients {
                default: client(&ids.default)?,
                distinct: ids.distinct.iter().map(client).collect::<Result<_, _>>()?,
            })
        });
        let clients = clients.map_err(TransportError::Connect)?;
        Ok(match ids.stations.get(station) {
            Some(&i) => clients.distinct[i].clone(),
            None => clients.default.clone(),
        })
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
                    .client_for(request.station)?
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
