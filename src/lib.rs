//! pagonode: an open-source pagoPA payment node ("Nodo dei Pagamenti").

pub mod clock;
pub mod codec;
pub mod config;
pub mod deadlines;
pub mod ec_client;
pub mod engine;
pub mod failpoints;
pub mod fault;
pub mod front;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod mock_ec;
pub mod reconfig;
pub mod registry;
pub mod store;
pub mod wsdl;

/// Installs rustls' ring provider as the process default (idempotent): the HTTP client and the
/// TLS listener both need one, and only ring is compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod admin;
pub mod cli;
pub mod delivery;
pub mod http;
pub mod loadgen;
pub mod node;
pub mod replay;
pub mod server;
