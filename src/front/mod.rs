//! The front door: what the node holds a peer to before it reads, parses or stores anything of
//! its request. Per connection: a cap per address and the client certificate (mTLS). Per
//! request, before the body is read: the per-address rate and the subscription key. After the
//! request is parsed, the node authenticates it with the [`Peer`] (certificate and key must be
//! the claimed broker's) and counts it against its broker's rate. Every refusal is counted and
//! told at a bounded pace ([`refusals`]).

pub mod certs;
pub mod keys;
pub mod limits;
pub mod refusals;

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

use crate::config::Config;
use certs::PeerCertificate;
use keys::SubscriptionKeys;
use limits::{Connections, RateLimits};
use refusals::Refusals;

/// The body of the front door's own answers (HTTP 401, 429), as the API gateway in front of the
/// official node writes them (Azure API Management: `{"statusCode": …, "message": …}`).
pub fn gateway_json(status: u16, message: &str) -> String {
    serde_json::json!({ "statusCode": status, "message": message }).to_string()
}

/// Who sent a request, as far as the front door knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub addr: Option<IpAddr>,
    /// The client certificate the TLS handshake verified.
    pub certificate: Option<PeerCertificate>,
    /// The PSP broker whose subscription key the request carries (keys on).
    pub key_broker: Option<String>,
}

/// The front door's state: keys, limiters and counters.
#[derive(Debug)]
pub struct FrontDoor {
    /// Replaced whole when a configuration is applied at runtime.
    keys: std::sync::RwLock<Arc<SubscriptionKeys>>,
    pub rates: RateLimits,
    /// Open nodeForPsp connections per address.
    pub connections: Arc<Connections>,
    pub refusals: Refusals,
    pub body_timeout: Duration,
}

impl FrontDoor {
    pub fn new(config: &Config) -> FrontDoor {
        FrontDoor {
            keys: std::sync::RwLock::new(Arc::new(SubscriptionKeys::new(config))),
            rates: RateLimits::new(&config.limits),
            connections: Connections::new(config.limits.max_connections_per_address),
            refusals: Refusals::default(),
            body_timeout: Duration::from_millis(config.limits.body_timeout_ms),
        }
    }

    /// The subscription keys in force.
    pub fn keys(&self) -> Arc<SubscriptionKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts the keys (and key header) of a configuration applied at runtime in force.
    pub fn set_keys(&self, config: &Config) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(SubscriptionKeys::new(config));
    }

    /// Forgets the limiters' state of peers gone quiet.
    pub fn forget_idle(&self) {
        self.rates.forget_idle();
        self.refusals.forget_idle();
    }

    /// The counters, for the health endpoint.
    pub fn stats(&self) -> serde_json::Value {
        let mut refused: serde_json::Map<String, serde_json::Value> = self
            .refusals
            .counts()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        refused.insert(
            "connections_per_address".into(),
            self.connections.refused().into(),
        );
        serde_json::json!({
            "connections_open": self.connections.open_now(),
            "refused": refused,
            "refusals_untold_untracked": self.refusals.untold_untracked(),
        })
    }
}

/// The listeners' `on_connect` hook: counts the connection against its address's cap (over the
/// cap the socket is shut down at once, so that a flood from one address holds no descriptor
/// and no slot of the listener), and keeps the client certificate of a TLS connection for the
/// requests on it. The count is kept in the connection's extensions, so it ends with it.
pub fn on_connect(connections: &Arc<Connections>, io: &dyn Any, ext: &mut Extensions) {
    let tls = io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>();
    let tcp = match tls {
        Some(t) => Some(t.get_ref().0),
        None => io.downcast_ref::<TcpStream>(),
    };
    let Some(tcp) = tcp else { return };
    if let Some(cert) = tls.and_then(|t| t.get_ref().1.peer_certificates()?.first().cloned()) {
        ext.insert(PeerCertificate::from_der(&cert));
    }
    let Ok(addr) = tcp.peer_addr() else { return };
    let (guard, within) = connections.open(addr.ip());
    if !within {
        tracing::debug!(%addr, "connection refused: too many from its address");
        // The peer reads an end of stream and the listener closes the connection.
        let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Both);
    }
    ext.insert(guard);
}
