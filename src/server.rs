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
use crate::front::limits::Connections;
use crate::node::{Node, TokenIssuer};
use crate::registry::Registry;
use crate::store::{Store, StoreOptions};

/// A running node.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Both listeners serve HTTPS (`node.tls_cert`).
    pub tls: bool,
    servers: Vec<(ServerHandle, JoinHandle<std::io::Result<()>>)>,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<dyn Store>,
}

/// How often finished records leave the engine's memory.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often retention runs (old journal rows, expired idempotency entries, finished payments).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{database}: {source}")]
    Store {
        database: String,
        source: crate::store::StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// A listener's address could not be read, or the HTTP server refused the listener.
    #[error("{0}")]
    Listener(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::front::certs::CertError),
    #[error(
        "the admin listener {0} (node.admin_listen) is reachable beyond loopback and has no \
         admin token: set node.admin_token, or listen on 127.0.0.1"
    )]
    AdminExposed(SocketAddr),
    /// The HTTP client towards the ECs could not be built.
    #[error("{0}")]
    Transport(String),
    #[error("configuration: {0}")]
    Configuration(#[from] crate::node::ApplyError),
    #[error("recovery failed: {0}")]
    Recovery(#[from] crate::fault::NodeFault),
}

fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|source| StartError::Listen {
        addr: addr.to_string(),
        source,
    })
}

/// Applies `[limits]` to a listener's `HttpServer`: header and keep-alive timeouts, and the
/// connection cap (actix counts connections per worker thread). A macro: the server's type
/// parameters name actix's internals.
macro_rules! limited {
    ($server:expr, $limits:expr, $workers:expr) => {
        $server
            .client_request_timeout(Duration::from_millis($limits.header_timeout_ms))
            .keep_alive(Duration::from_millis($limits.keep_alive_ms))
            .max_connections($limits.max_connections.div_ceil($workers))
    };
}

/// With subscription keys on (some broker has one), the enabled brokers that have none: they
/// cannot call.
fn brokers_without_keys(config: &Config) -> Vec<&str> {
    let brokers = &config.psp_broker;
    if brokers.iter().all(|b| b.subscription_keys.is_empty()) {
        return Vec::new();
    }
    brokers
        .iter()
        .filter(|b| b.enabled && b.subscription_keys.is_empty())
        .map(|b| b.id.as_str())
        .collect()
}

impl RunningNode {
    /// Opens the store, recovers the engine, starts the background tasks and the listeners.
    /// `listener` overrides `node.listen` (tests bind port 0); the admin listener follows
    /// `node.admin_listen`, or `admin_listener` when given.
    pub async fn start(
        config: Config,
        listener: Option<TcpListener>,
        admin_listener: Option<TcpListener>,
    ) -> Result<RunningNode, StartError> {
        let options = StoreOptions {
            lease_ms: config.timings.receipt_timeout_ms + crate::node::TAKEOVER_MS,
        };
        let store = crate::store::open(&config.node.database, options)
            .await
            .map_err(|source| StartError::Store {
                database: config.node.database.to_string(),
                source,
            })?;
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
        let tls = crate::front::certs::server_config(&config.node)?;
        let admin_tls = crate::front::certs::admin_config(&config.node)?;
        if let Some(l) = &admin_listener {
            admin_exposure(l, &config.node)?;
        }
        let transport = HttpTransport::new(&config).map_err(StartError::Transport)?;
        let mut limits = config.limits.clone();
        limits.max_connections =
            crate::front::limits::connections_within_descriptors(limits.max_connections);
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        let keyless = brokers_without_keys(&config);
        if !keyless.is_empty() {
            tracing::warn!(
                brokers = ?keyless,
                "subscription keys are on and these PSP brokers have none: their requests are refused (HTTP 401)"
            );
        }
        let reload_on_hangup = config.file.is_some();
        let registry = Arc::new(Registry::new(config));
        let node = Arc::new(Node::new(
            registry,
            store.clone(),
            Arc::new(transport),
            Arc::new(SystemClock),
            TokenIssuer::random(),
        ));
        node.settle_config().await?;

        let mut tasks = vec![
            tokio::spawn(crate::node::driver::run(node.clone())),
            tokio::spawn(housekeeping(node.clone())),
        ];
        if store.shared().is_some() {
            tasks.push(tokio::spawn(crate::node::driver::take_over(node.clone())));
            tasks.push(tokio::spawn(crate::node::follow_store(node.clone())));
        }
        #[cfg(unix)]
        if reload_on_hangup {
            tasks.push(tokio::spawn(crate::node::reload_on_hangup(node.clone())));
        }
        let (paying, pending) = node.recover().await?;
        tracing::info!(
            payments_in_flight = paying,
            receipts_to_deliver = pending,
            "state recovered from the store"
        );

        let addr = listener.local_addr()?;
        let data = web::Data::new(node.clone());
        let app_data = data.clone();
        let connections = node.front().connections.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_data.clone())
                .configure(crate::http::configure)
        })
        .workers(workers)
        .shutdown_timeout(30)
        .on_connect(move |io, ext| crate::front::on_connect(&connections, io, ext));
        let server = limited!(server, limits, workers);
        let scheme_tls = tls.is_some();
        let server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        }?
        .run();
        let mut servers = vec![(server.handle(), tokio::spawn(server))];

        let mut admin_addr = None;
        if let Some(l) = admin_listener {
            admin_addr = Some(l.local_addr()?);
            let data = data.clone();
            let connections = Connections::new(limits.max_connections_per_address);
            let admin = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .wrap(actix_web::middleware::from_fn(crate::admin::authorize))
                    .configure(crate::admin::configure)
            })
            .workers(1)
            .shutdown_timeout(5)
            .on_connect(move |io, ext| crate::front::on_connect(&connections, io, ext));
            let admin = limited!(admin, limits, 1);
            let admin = match admin_tls {
                Some(tls) => admin.listen_rustls_0_23(l, tls),
                None => admin.listen(l),
            }?
            .run();
            servers.push((admin.handle(), tokio::spawn(admin)));
        }
        Ok(RunningNode {
            node,
            addr,
            admin_addr,
            tls: scheme_tls,
            servers,
            tasks,
            store,
        })
    }

    /// The nodeForPsp URL.
    pub fn url(&self) -> String {
        format!("{}://{}/node-for-psp/v1", self.scheme(), self.addr)
    }

    /// The admin base URL, if the admin listener is on.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_addr.map(|a| format!("{}://{a}", self.scheme()))
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
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
fn admin_exposure(
    listener: &TcpListener,
    node: &crate::config::NodeSection,
) -> Result<(), StartError> {
    let addr = listener.local_addr()?;
    if addr.ip().is_loopback() || crate::admin::tokens(node).next().is_some() {
        return Ok(());
    }
    Err(StartError::AdminExposed(addr))
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
        node.front().forget_idle();
        since_maintenance += SWEEP_EVERY;
        if since_maintenance >= MAINTENANCE_EVERY {
            since_maintenance = Duration::ZERO;
            match node.maintenance().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(payments = n, "finished payments deleted (retention)"),
                Err(e) => tracing::error!(error = %e, "maintenance failed"),
            }
        }
    }
}
