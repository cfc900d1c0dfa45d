//! Starting and stopping a whole node: store, engine recovery, deadline wheel, receipt delivery,
//! housekeeping, the nodeForPsp listener and the optional admin listener.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::ec_client::http::HttpTransport;
use crate::node::{Node, TokenIssuer};
use crate::registry::Registry;
use crate::store::{SqliteStore, Store};

/// A running node.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Whether the listeners speak TLS.
    tls: bool,
    servers: Vec<(ServerHandle, JoinHandle<std::io::Result<()>>)>,
    tasks: Vec<JoinHandle<()>>,
    store: SqliteStore,
}

/// How often finished records leave the engine's memory.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often old journal rows and expired idempotency entries are deleted.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in PEM form", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{}: no private key in PEM form", key.display()),
        e => format!("{}: {e}", key.display()),
    })?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS configuration: {e}"))
}

impl RunningNode {
    /// Opens the store, recovers the engine, starts the background tasks and the listeners.
    /// `listener` overrides `node.listen` (tests bind port 0); the admin listener follows
    /// `node.admin_listen`, or `admin_listener` when given.
    pub async fn start(
        config: Config,
        listener: Option<TcpListener>,
        admin_listener: Option<TcpListener>,
    ) -> Result<RunningNode, String> {
        let store = SqliteStore::open(&config.node.database)
            .map_err(|e| format!("{}: {e}", config.node.database.display()))?;
        let listener = match listener {
            Some(l) => l,
            None => bind(&config.node.listen)?,
        };
        let admin_listener = match (admin_listener, &config.node.admin_listen) {
            (Some(l), _) => Some(l),
            (None, Some(a)) => Some(bind(a)?),
            (None, None) => None,
        };
        let workers = config.node.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let tls = match (&config.node.tls_cert, &config.node.tls_key) {
            (Some(c), Some(k)) => Some(tls_config(c, k)?),
            _ => None,
        };
        if let Some(l) = &admin_listener {
            admin_exposure(l, &config.node)?;
        }
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        let registry = Arc::new(Registry::new(config));
        let node = Arc::new(Node::new(
            registry,
            Arc::new(store.clone()),
            Arc::new(HttpTransport::new()?),
            Arc::new(SystemClock),
            TokenIssuer::random(),
        ));

        let tasks = vec![
            tokio::spawn(crate::node::driver::run(node.clone())),
            tokio::spawn(housekeeping(node.clone())),
        ];
        let (paying, pending) = node
            .recover()
            .await
            .map_err(|f| format!("recovery failed: {f}"))?;
        tracing::info!(
            payments_in_flight = paying,
            receipts_to_deliver = pending,
            "state recovered from the store"
        );

        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let data = web::Data::new(node.clone());
        let app_data = data.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_data.clone())
                .configure(crate::http::configure)
        })
        .workers(workers)
        .shutdown_timeout(30);
        let server = match tls.clone() {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        }
        .map_err(|e| e.to_string())?
        .run();
        let mut servers = vec![(server.handle(), tokio::spawn(server))];

        let mut admin_addr = None;
        if let Some(l) = admin_listener {
            admin_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
            let data = data.clone();
            let admin = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .wrap(actix_web::middleware::from_fn(crate::admin::authorize))
                    .configure(crate::admin::configure)
            })
            .workers(1)
            .shutdown_timeout(5);
            // The same certificate as nodeForPsp: tokens and payments never cross in clear
            // where PSPs' requests do not.
            let admin = match tls.clone() {
                Some(tls) => admin.listen_rustls_0_23(l, tls),
                None => admin.listen(l),
            }
            .map_err(|e| e.to_string())?
            .run();
            servers.push((admin.handle(), tokio::spawn(admin)));
        }
        Ok(RunningNode {
            node,
            addr,
            admin_addr,
            tls: tls.is_some(),
            servers,
            tasks,
            store,
        })
    }

    /// The nodeForPsp URL.
    pub fn url(&self) -> String {
        format!("http://{}/node-for-psp/v1", self.addr)
    }

    /// The admin base URL, if the admin listener is on.
    pub fn admin_url(&self) -> Option<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.admin_addr.map(|a| format!("{scheme}://{a}"))
    }

    /// Graceful stop: the listeners finish in-flight requests, then the store writes what is
    /// queued and closes.
    pub async fn stop(self) {
        for (handle, _) in &self.servers {
            handle.stop(true).await;
        }
        for (_, task) in self.servers {
            let _ = task.await;
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        self.store.close();
        tracing::info!("node stopped");
    }

    /// Runs until SIGINT/SIGTERM, then stops gracefully.
    /// Runs until `signal` (see [`shutdown_signal`]) resolves, then stops gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: finishing in-flight requests");
        self.stop().await;
    }
}

/// Refuses an admin listener reachable beyond loopback without an admin token: it would let
/// anyone on the network read payments and re-send receipts.
fn admin_exposure(listener: &TcpListener, node: &crate::config::NodeSection) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_loopback() || crate::admin::tokens(node).next().is_some() {
        return Ok(());
    }
    Err(format!(
        "the admin listener {addr} (node.admin_listen) is reachable beyond loopback and has no \
         admin token: set node.admin_token, or listen on 127.0.0.1"
    ))
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: called before the node starts, a SIGTERM sent as soon as it says it
/// is listening (by a supervisor, a test) stops it gracefully instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        async move {
            tokio::select! {
                _ = received(interrupt.as_mut()) => {}
                _ = received(terminate.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when the signal arrives; never, if it could not be listened for.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Sweeps finished records out of the engine, and periodically applies journal retention and
/// deletes expired idempotency entries.
async fn housekeeping(node: Arc<Node>) {
    let mut since_maintenance = Duration::ZERO;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        node.sweep();
        since_maintenance += SWEEP_EVERY;
        if since_maintenance >= MAINTENANCE_EVERY {
            since_maintenance = Duration::ZERO;
            if let Err(e) = node.maintenance().await {
                tracing::error!(error = %e, "maintenance failed");
            }
        }
    }
}
