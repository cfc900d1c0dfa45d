//! A simulated creditor entity (EC): a real paForNode SOAP server for demos, tests and
//! integrators, in the spirit of `pagopa-mock-ec` but stateful.
//!
//! # SOAP
//!
//! `POST` to any path (the node's station URLs point at it) serves paVerifyPaymentNotice,
//! paGetPayment, paGetPaymentV2, paSendRT, paSendRTV2 and paDemandPaymentNotice, chosen by
//! SOAPAction, the `soapAction` query parameter or the Body's root. Every request is validated
//! with the codec: an invalid one gets `outcome=KO` `PAA_SINTASSI_EXTRAXSD` (HTTP 200) in the
//! operation's response element. An unknown `idPA` gets `PAA_ID_DOMINIO_ERRATO`. Fault `id`s
//! are the EC's fiscal code, or [`MOCK_ID`] when the request names no configured EC.
//!
//! # Debt positions
//!
//! Explicit positions come from the configuration (and from paDemandPaymentNotice). Any other
//! notice of a configured EC is generated from its number; digits 4–5 (after the aux digit and
//! segregation code) choose the scenario:
//!
//! | digits | scenario |
//! |---|---|
//! | `00`–`09` (and unlisted) | one transfer to the owner; amount 10.00 + the last 4 digits as cents |
//! | `11`–`15` | 1–5 transfers: the owner, then the other ECs in turn |
//! | `21` | an IBAN transfer plus a 16.00 digital stamp (paGetPayment V1: `PAA_SEMANTICA`) |
//! | `90`–`94` | `PAA_PAGAMENTO_SCONOSCIUTO`, `_DUPLICATO`, `_SCADUTO`, `_ANNULLATO`, `PAA_SYSTEM_ERROR` |
//! | `95` / `96` | not XML / a schema-invalid response |
//! | `97` | the answer after 60 s |
//! | `98` / `99` | a SOAP 1.1 Fault / HTTP 500 with an empty body |
//!
//! Scenarios apply to verify and paGetPayment(V2). A position is payable, then in progress
//! after a paGetPayment (a new one voids the previous), then paid by a positive receipt; verify
//! and paGetPayment on a paid position answer `PAA_PAGAMENTO_DUPLICATO`.
//!
//! # Receipts
//!
//! Receipts are kept per station and receipt id. The same receipt again is idempotent (OK, one
//! more delivery); the same id with another content is a recorded conflict, `PAA_RECEIPT_DUPLICATA`.
//!
//! # Scripts
//!
//! [`ScriptRule`]s, from the configuration or added at run time, override the answers to valid
//! requests (before the scenario digits): the first matching rule wins, and one with `times` is
//! removed once spent.
//!
//! # HTTP endpoints
//!
//! `GET /health`; `GET|DELETE /receipts` (filters `station`, `receipt_id`, `notice_number`);
//! `GET|DELETE /requests`; `GET|POST|DELETE /scripts`; `GET /positions/{fiscal_code}/{notice_number}`.

mod config;
mod faults;
mod positions;
mod records;
mod scripts;
mod server;
mod soap;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_LISTEN, DebtorConfig, EcConfig, MockConfigError, MockEcConfig, PositionConfig,
    ServiceConfig, StampConfig, TransferConfig,
};
pub use faults::{
    MOCK_ID, PAA_ID_DOMINIO_ERRATO, PAA_PAGAMENTO_ANNULLATO, PAA_PAGAMENTO_DUPLICATO,
    PAA_PAGAMENTO_SCADUTO, PAA_PAGAMENTO_SCONOSCIUTO, PAA_RECEIPT_DUPLICATA, PAA_SEMANTICA,
    PAA_SINTASSI_EXTRAXSD, PAA_SYSTEM_ERROR,
};
pub use positions::{
    DebtorView, PositionOrigin, PositionStatus, PositionView, StampView, TransferView,
};
pub use records::{AnswerKind, ReceiptConflict, RequestRecord, StoredReceipt};
pub use scripts::{ScriptAction, ScriptRule};

use config::Registry;
use positions::Positions;

/// The simulated EC: its configuration and state, shared by every request. Cloning is cheap
/// and clones share the state.
#[derive(Clone)]
pub struct MockEc {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    state: Mutex<State>,
}

/// What changes while the mock runs.
pub(crate) struct State {
    positions: Positions,
    receipts: records::Receipts,
    requests: VecDeque<RequestRecord>,
    /// Sequence number of the last request recorded.
    next_seq: u64,
    scripts: Vec<ScriptRule>,
    /// Feeds the notice numbers paDemandPaymentNotice issues.
    demand_counter: u64,
}

impl MockEc {
    /// A mock serving `cfg`. Configuration entries that do not pass [`MockEcConfig::validate`]
    /// are logged and left out (the loaders refuse them before this point).
    pub fn new(cfg: MockEcConfig) -> Self {
        let (resolved, errors) = cfg.resolve();
        for error in &errors {
            tracing::error!(%error, "mock EC configuration entry ignored");
        }
        let state = State {
            positions: resolved
                .positions
                .into_iter()
                .map(|p| (p.key(), p))
                .collect(),
            receipts: records::Receipts::default(),
            requests: VecDeque::new(),
            next_seq: 0,
            scripts: resolved.scripts,
            demand_counter: 0,
        };
        MockEc {
            inner: Arc::new(Inner {
                registry: resolved.registry,
                state: Mutex::new(state),
            }),
        }
    }

    /// Serves on `listener` in the background (on the current tokio runtime) until
    /// [`MockEcServer::stop`].
    pub async fn start(self, listener: TcpListener) -> io::Result<MockEcServer> {
        let addr = listener.local_addr()?;
        let server = server::build(self, listener)?;
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(MockEcServer { addr, handle, task })
    }

    /// Answers one SOAP request in-process, as the HTTP endpoint would: (HTTP status, body). For
    /// a simulation that carries the node's requests itself. A delay asked for by a script or a
    /// notice's scenario is waited for on the tokio timer.
    pub async fn answer(
        &self,
        path: &str,
        soap_action: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let reply = soap::handle(self, path, soap_action, "", body).await;
        (reply.status, reply.body)
    }

    /// The receipts received, each with its deliveries and conflicts.
    pub fn receipts(&self) -> Vec<StoredReceipt> {
        self.lock().receipts.all().to_vec()
    }

    /// Forgets every receipt (positions stay paid).
    pub fn clear_receipts(&self) {
        self.lock().receipts.clear();
    }

    /// The SOAP requests received, oldest first (the latest 10 000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.iter().cloned().collect()
    }

    /// Forgets the request history.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// The script rules in force, in matching order.
    pub fn scripts(&self) -> Vec<ScriptRule> {
        self.lock().scripts.clone()
    }

    /// Appends a rule (it matches after the existing ones); refused if it does not validate.
    pub fn add_script(&self, rule: ScriptRule) -> Result<(), String> {
        rule.validate()?;
        self.lock().scripts.push(rule);
        Ok(())
    }

    /// Removes every script rule.
    pub fn clear_scripts(&self) {
        self.lock().scripts.clear();
    }

    /// A position's data and state; `None` unless `fiscal_code` is a configured EC and
    /// `notice_number` a notice number.
    pub fn position(&self, fiscal_code: &str, notice_number: &str) -> Option<PositionView> {
        let st = self.lock();
        self.inner
            .registry
            .position_view(&st.positions, fiscal_code, notice_number)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated in a way that matters to a mock:
        // keep serving rather than poison every later request.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running mock (see [`MockEc::start`]).
pub struct MockEcServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: JoinHandle<io::Result<()>>,
}

impl MockEcServer {
    /// `http://<addr>`: the base of every station URL pointing at it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops at once, dropping requests in flight (a scenario `97` answer, for one).
    pub async fn stop(self) {
        self.handle.stop(false).await;
        if let Err(error) = joined(self.task.await) {
            tracing::warn!(%error, "mock EC server ended with an error");
        }
    }

    /// Serves until Ctrl-C, then stops gracefully; also returns if the server fails.
    async fn until_ctrl_c(self) -> io::Result<()> {
        let MockEcServer {
            handle, mut task, ..
        } = self;
        tokio::select! {
            ended = &mut task => return joined(ended),
            signal = tokio::signal::ctrl_c() => signal?,
        }
        tracing::info!("mock EC stopping");
        handle.stop(true).await;
        joined(task.await)
    }
}

fn joined(r: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    r.map_err(io::Error::other)?
}

/// Runs the mock in the foreground on `cfg.listen` until Ctrl-C (the `pagonode mock-ec` command).
pub async fn run(cfg: MockEcConfig) -> io::Result<()> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(&cfg.listen)?;
    let server = MockEc::new(cfg).start(listener).await?;
    tracing::info!(url = %server.url(), "mock EC listening");
    server.until_ctrl_c().await
}
