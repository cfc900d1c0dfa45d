//! The node's configuration (TOML): the parties it knows (PSPs, brokers, channels, creditor
//! entities, stations), how notices route to stations, the spontaneous-payment service catalogue,
//! and its timings. Every parameter has a default; a bad file fails at start with an error that
//! names the key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::types::{FiscalCode, Iban, Password, ServiceCode, Text35};

/// The example configuration shipped with the node (also what `pagonode` with no arguments runs).
pub const EXAMPLE: &str = include_str!("../pagonode.example.toml");

/// A configuration error: the key (TOML path), its line in the document when known, and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error at `{key}`{}: {message}", line.map(|n| format!(" (line {n})")).unwrap_or_default())]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    /// The key's line in the document (a parse error names it in `key`).
    pub line: Option<usize>,
}

impl ConfigError {
    /// The error with the line of its key in `text`, when it can be found there (a parse error
    /// names its line in its key).
    pub fn located_in(mut self, text: &str) -> ConfigError {
        if !self.key.contains("(line ") {
            self.line = locate(text, &self.key);
        }
        self
    }
}

/// The line (1-based) of a key like `station[2].url` or `timings.token_max_ms` in a TOML
/// document written with table headers (`[[station]]`, `[timings]`): the key's own line, else
/// its table's header.
fn locate(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let header = |l: &str| l.starts_with('[');
    let (mut start, mut end) = (0, lines.len());
    let mut path = String::new();
    let mut found = None;
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let table = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        let wanted = match index {
            Some(_) => format!("[[{table}]]"),
            None => format!("[{table}]"),
        };
        let at = (start..end)
            .filter(|&i| lines[i] == wanted)
            .nth(index.unwrap_or(0));
        if let Some(h) = at {
            // The table runs to the next header that is not one of its own sub-tables.
            let own = [format!("[{table}."), format!("[[{table}.")];
            start = h + 1;
            end = (start..end)
                .find(|&i| header(lines[i]) && !own.iter().any(|o| lines[i].starts_with(o)))
                .unwrap_or(end);
            found = Some(h + 1);
            path = table;
            continue;
        }
        let own_key = (start..end)
            .take_while(|&i| !header(lines[i]))
            .find(|&i| lines[i].split('=').next().map(str::trim) == Some(name));
        return own_key.map(|i| i + 1).or(found);
    }
    found
}

/// Something the node accepts but will refuse at request time: a reference the official node's
/// configuration does not check either (see [`Config::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration warning at `{key}`: {message}")]
pub struct ConfigWarning {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
        line: None,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub limits: FrontLimits,
    pub outbound: Outbound,
    pub timings: Timings,
    pub receipts: ReceiptPolicy,
    pub journal: JournalSection,
    /// Log format and level (`pagonode --log-format` and `RUST_LOG` take precedence).
    pub log: crate::logging::LogSection,
    pub psp: Vec<PspConfig>,
    pub psp_broker: Vec<PspBrokerConfig>,
    pub channel: Vec<ChannelConfig>,
    pub ec: Vec<EcConfig>,
    pub ec_broker: Vec<EcBrokerConfig>,
    pub station: Vec<StationConfig>,
    pub station_link: Vec<StationLinkConfig>,
    pub service: Vec<ServiceConfig>,
    /// The simulated EC's own table: read by `pagonode mock-ec`, ignored by the node.
    pub mock_ec: Option<toml::Value>,
    /// The file the configuration was read from: SIGHUP and `/config/refresh` read it again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Where nodeForPsp is served.
    pub listen: String,
    /// PEM certificate chain and key: when both are set the node serves HTTPS (rustls).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs PSP client certificates are verified against (mTLS): set, the
    /// node asks every client for a certificate.
    pub tls_client_ca: Option<PathBuf>,
    /// Whether a client without a certificate is served (`optional`: then only brokers with
    /// `client_cert_*` need one) or refused at the handshake (`required`).
    pub tls_client_auth: ClientAuth,
    /// The header (and query parameter) carrying a PSP broker's subscription key.
    pub subscription_key_header: String,
    /// The store: a SQLite database file (created if missing), or a PostgreSQL URL
    /// (`postgres://user@host:port/db?sslmode=verify-full`) for several nodes on one store.
    /// `PAGONODE_DATABASE_URL` overrides it (so that no password sits in the file).
    pub database: Database,
    /// Finished payments (with their receipts) and idempotency entries are deleted this many
    /// days after their activation (0: kept for ever).
    pub retention_days: u32,
    /// The admin listener (journal, payments, receipt re-send): off unless set.
    pub admin_listen: Option<String>,
    /// Bearer token the admin listener requires, if set (not empty; its id in the audit:
    /// `admin`). Without any admin token the admin listener must be on a loopback address.
    pub admin_token: Option<String>,
    /// More admin tokens, by id (the id names the operator in the audit).
    pub admin_tokens: std::collections::BTreeMap<String, String>,
    /// Largest request body accepted; bigger ones get PPT_SINTASSI_EXTRAXSD.
    pub max_body_bytes: usize,
    /// Deepest element nesting read in any document (PSP requests, station answers, the
    /// documents they carry); deeper ones are refused as malformed.
    pub max_xml_depth: usize,
    /// HTTP worker threads (default: the number of CPUs).
    pub workers: Option<usize>,
    /// Whether idempotency keys are honoured (official `useIdempotency`).
    pub use_idempotency: bool,
    /// The nodeForPsp URL the served WSDL advertises (`soap:address`); unset, the address the
    /// WSDL was asked on (Host header and scheme).
    pub public_url: Option<String>,
}

/// The smallest `max_xml_depth` accepted: room for every pagoPA message, with headers.
const MIN_XML_DEPTH: usize = 16;

impl NodeSection {
    /// The limits every document the node reads is held to.
    pub fn xml_limits(&self) -> crate::codec::Limits {
        crate::codec::Limits {
            max_depth: self.max_xml_depth,
        }
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: ClientAuth::Optional,
            subscription_key_header: "Ocp-Apim-Subscription-Key".into(),
            database: Database::Sqlite(PathBuf::from("pagonode.db")),
            retention_days: 90,
            admin_listen: None,
            admin_token: None,
            admin_tokens: Default::default(),
            max_body_bytes: 1024 * 1024,
            max_xml_depth: crate::codec::Limits::DEFAULT.max_depth,
            workers: None,
            use_idempotency: true,
            public_url: None,
        }
    }
}

/// Where the node keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file: one node.
    Sqlite(PathBuf),
    /// A PostgreSQL URL: any number of nodes.
    Postgres(String),
}

/// The environment variable that overrides `node.database`.
pub const DATABASE_ENV: &str = "PAGONODE_DATABASE_URL";

impl Database {
    /// A `postgres://` or `postgresql://` URL, else a SQLite file path.
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Database::Postgres(s.to_string())
        } else {
            Database::Sqlite(PathBuf::from(s))
        }
    }

    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }
}

/// Whether the nodeForPsp listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Optional,
    Required,
}

/// What a peer may hold of the node: time, connections and requests (`[limits]`). Timeouts and
/// connection caps hold for every listener; rates for nodeForPsp. A rate of 0 is off.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontLimits {
    /// Time for a client to send a request's head (the request line and headers), on a new
    /// connection or after the previous answer.
    pub header_timeout_ms: u64,
    /// Time for a client to send a request's body, from the end of its head.
    pub body_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive_ms: u64,
    /// Open connections per listener; beyond it the listener stops accepting until one closes.
    pub max_connections: usize,
    /// Open connections from one address (IPv6: one /64); beyond it a new one is closed at once.
    pub max_connections_per_address: usize,
    /// Requests per second one address may send (nodeForPsp), with `address_burst` at once.
    pub address_requests_per_second: u32,
    pub address_burst: u32,
    /// Authenticated requests per second one PSP broker may send, with `broker_burst` at once.
    pub broker_requests_per_second: u32,
    pub broker_burst: u32,
    /// How a request over a rate is answered: HTTP 429 with `Retry-After`, as the API gateway
    /// does (`http_429`), or the operation's KO response with PPT_SUPERAMENTOSOGLIA, the
    /// official node's throttling fault (`fault`; HTTP 429 still where the operation is not
    /// known before the body is read).
    pub over_rate: OverRate,
}

/// The answer to a request over its rate (`limits.over_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverRate {
    #[serde(rename = "http_429")]
    Http429,
    Fault,
}

impl Default for FrontLimits {
    fn default() -> Self {
        FrontLimits {
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            keep_alive_ms: 5_000,
            max_connections: 4_096,
            max_connections_per_address: 512,
            address_requests_per_second: 0,
            address_burst: 0,
            broker_requests_per_second: 0,
            broker_burst: 0,
            over_rate: OverRate::Http429,
        }
    }
}

/// The database without its password.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        let auth = &url[scheme + 3..at];
                        match auth.split_once(':') {
                            Some((user, _)) => {
                                format!("{}{user}:********{}", &url[..scheme + 3], &url[at..])
                            }
                            None => url.clone(),
                        }
                    }
                    _ => url.clone(),
                };
                f.write_str(&shown)
            }
        }
    }
}

/// How the node reaches stations (`[outbound]`): the defaults of every station, each of which
/// a station may override.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outbound {
    /// Largest answer read from a station; a longer one is not a valid answer
    /// (PPT_STAZIONE_INT_PA_ERRORE_RESPONSE) and is not read further.
    pub max_response_bytes: usize,
    /// Station connections go through this HTTP(S) proxy (CONNECT for https URLs).
    pub proxy: Option<String>,
    /// The client certificate (PEM chain) and key the node presents to stations (mTLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// PEM bundle of the only CAs a station's server certificate may chain to (default: the
    /// system's roots).
    pub ca_bundle: Option<PathBuf>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            max_response_bytes: 1024 * 1024,
            proxy: None,
            client_cert: None,
            client_key: None,
            ca_bundle: None,
        }
    }
}

/// The URL or path as written (the stored versions mask its password: see
/// [`crate::reconfig`]).
impl Serialize for Database {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Database::Sqlite(p) => p.serialize(s),
            Database::Postgres(url) => url.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Database, D::Error> {
        String::deserialize(d).map(|s| Database::parse(&s))
    }
}

/// When an expired payment token stops locking its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryMode {
    /// At its deadline: the token is cancelled then, and every transition also compares `now`
    /// with the deadline.
    #[default]
    Eager,
    /// As the official node: an expired token keeps the notice locked, and its outcome is
    /// processed as if it were valid, until the cancellation job (`mod3CancelV2`) cancels it
    /// (official BDD tests SEM_APNR_21, IDMP_ACT_9/19, retry_PaNew_01/03, REV_ANN_01/02).
    Official,
}

/// The node's timings, in milliseconds unless the name says otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// Token lifetime when activate omits `expirationTime` (`default_token_duration_validity_millis`).
    pub token_default_ms: u64,
    /// Largest `expirationTime` accepted; above it activate is refused (PPT_AUTORIZZAZIONE).
    pub token_max_ms: u64,
    /// Outcome deadline for payments of notices created by demandPaymentNotice ("entro 2 sec").
    pub outcome_deadline_ms: u64,
    /// Lifetime of an activate idempotency entry, capped by the token lifetime.
    pub idempotency_activate_minutes: u64,
    /// Lifetime of a sendPaymentOutcome idempotency entry.
    pub idempotency_outcome_minutes: u64,
    /// Lifetime of the entry cached for a request that failed semantically.
    pub idempotency_failure_minutes: u64,
    /// Default timeout of paVerify/paGetPayment/paDemand calls (official: 7 s).
    pub ec_timeout_ms: u64,
    /// Default timeout of paSendRT calls (official: 15 s).
    pub receipt_timeout_ms: u64,
    /// When expired tokens are cancelled: at their deadline, or by the cancellation job.
    pub expiry: ExpiryMode,
    /// How often the cancellation job (`mod3CancelV2`) runs in `official` expiry mode.
    pub cancellation_job_interval_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            token_default_ms: 1_800_000,
            token_max_ms: 1_800_000,
            outcome_deadline_ms: 2_000,
            idempotency_activate_minutes: 10,
            idempotency_outcome_minutes: 2 * 24 * 60,
            idempotency_failure_minutes: 24 * 60,
            ec_timeout_ms: 7_000,
            receipt_timeout_ms: 15_000,
            expiry: ExpiryMode::Eager,
            cancellation_job_interval_ms: 60_000,
        }
    }
}

/// How receipts are retried (official: 48 attempts one hour apart).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptPolicy {
    pub max_attempts: u32,
    pub retry_interval_ms: u64,
    /// Deliveries in flight at once towards one station.
    pub per_station_concurrency: usize,
}

impl Default for ReceiptPolicy {
    fn default() -> Self {
        ReceiptPolicy {
            max_attempts: 48,
            retry_interval_ms: 3_600_000,
            per_station_concurrency: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    pub enabled: bool,
    /// Journal entries older than this are deleted (official minimum: 24 months).
    pub retention_days: u32,
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            enabled: true,
            retention_days: 730,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PspConfig {
    pub id: String,
    /// `RAGIONE_SOCIALE`: the receipt's `PSPCompanyName`.
    pub name: String,
    /// The receipt's `pspFiscalCode`.
    pub fiscal_code: Option<String>,
    /// The receipt's `pspPartitaIVA`.
    pub vat_number: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PspBrokerConfig {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `FAULT_BEAN_ESTESO`: relay the EC's fault in `originalFault*` (else in `description`).
    #[serde(default = "yes")]
    pub extended_fault_bean: bool,
    /// The broker's subscription keys (primary and secondary): with any broker having one,
    /// every nodeForPsp request needs a key, and the key's broker must be the request's.
    #[serde(default)]
    pub subscription_keys: Vec<String>,
    /// SHA-256 fingerprints (hex, colons allowed) of the client certificates the broker's
    /// requests may come with; with these or `client_cert_subjects` set, one of them is required.
    #[serde(default)]
    pub client_cert_sha256: Vec<String>,
    /// Subjects (`CN=…, O=…`, compared attribute by attribute) of the allowed certificates.
    #[serde(default)]
    pub client_cert_subjects: Vec<String>,
}

impl PspBrokerConfig {
    /// Whether the broker's requests must come with one of its client certificates.
    pub fn pins_certificates(&self) -> bool {
        !self.client_cert_sha256.is_empty() || !self.client_cert_subjects.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: String,
    /// The PSP broker the channel belongs to.
    pub broker: String,
    pub password: String,
    /// PSPs allowed on the channel (default: the PSP whose id is the broker's).
    #[serde(default)]
    pub psps: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `MODELLO_PAGAMENTO`: verify and activate need `ATTIVATO_PRESSO_PSP`.
    #[serde(default = "default_models")]
    pub payment_models: Vec<String>,
    /// Overrides `timings.outcome_deadline_ms` for payments activated on this channel.
    pub outcome_deadline_ms: Option<u64>,
}

fn default_models() -> Vec<String> {
    vec![ATTIVATO_PRESSO_PSP.to_string()]
}

/// The payment model verify and activate require of the channel.
pub const ATTIVATO_PRESSO_PSP: &str = "ATTIVATO_PRESSO_PSP";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EcConfig {
    pub fiscal_code: String,
    /// Fallback `companyName` for receipts when paGetPayment (V1) omits it.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// IBANs registered for the EC; transfers to other IBANs are refused
    /// (PPT_STAZIONE_INT_PA_ERRORE_RESPONSE). Empty: not checked.
    #[serde(default)]
    pub ibans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EcBrokerConfig {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    pub id: String,
    /// The EC broker ("intermediario PA") the station belongs to.
    pub broker: String,
    /// Where the node sends paForNode requests.
    pub url: String,
    /// `VERSIONE_PRIMITIVE`: 1 = paGetPayment/paSendRT, 2 = paGetPaymentV2/paSendRTV2.
    #[serde(default = "one")]
    pub version: u8,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub timeout_ms: Option<u64>,
    pub receipt_timeout_ms: Option<u64>,
    /// Enabled for spontaneous payments ("quarto modello", paDemandPaymentNotice).
    #[serde(default)]
    pub spontaneous: bool,
    /// Override `[outbound]` for this station.
    pub max_response_bytes: Option<usize>,
    pub proxy: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
}

fn one() -> u8 {
    1
}

/// `PA_STAZIONE_PA`: which station serves which notices of an EC.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StationLinkConfig {
    pub ec: String,
    pub station: String,
    /// The notice's first digit.
    pub aux_digit: u8,
    /// Digits 2-3 of notices with aux digit 3.
    pub segregation_code: Option<String>,
    /// Digits 2-3 of notices with aux digit 0.
    pub application_code: Option<String>,
    /// The station receives a copy of receipts where its EC is a secondary beneficiary.
    #[serde(default)]
    pub broadcast: bool,
}

/// A spontaneous-payment service of the catalogue ("catalogoServizi").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `idServizio` (5 characters).
    pub id: String,
    pub description: String,
    pub category: Option<String>,
    /// `xsdRiferimento`: the schema `datiSpecificiServizio` must follow.
    pub xsd: String,
    /// Service version: 1 is the legacy nodoChiediNumeroAvviso service (PPT_VERSIONE_SERVIZIO).
    #[serde(default = "two")]
    pub version: u8,
    #[serde(default)]
    pub provider: Vec<ServiceProviderConfig>,
}

fn two() -> u8 {
    2
}

/// A `soggettoErogante`: an EC offering the service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProviderConfig {
    /// `idSoggettoServizio` (5 characters): what the PSP sends in demandPaymentNotice.
    pub id: String,
    pub ec: String,
    /// The station paDemandPaymentNotice goes to (default: the EC's spontaneous station).
    pub station: Option<String>,
    /// A date: `2024-01-01` (TOML date) or `"2024-01-01"`.
    #[serde(deserialize_with = "dates::date")]
    pub valid_from: chrono::NaiveDate,
    #[serde(default, deserialize_with = "dates::optional_date")]
    pub valid_to: Option<chrono::NaiveDate>,
    /// `commissione`: Y or N.
    pub commission: Option<String>,
}

impl Config {
    /// Parses and checks a configuration.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| describe_span(text, s)).unwrap_or_default();
            err(key, e.message().to_string())
        })?;
        cfg.check().map_err(|e| e.located_in(text))?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        let mut cfg = Config::from_toml_str(&text)?;
        cfg.file = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// `node.database` from [`DATABASE_ENV`], when it is set.
    pub fn apply_env(&mut self) {
        if let Ok(url) = std::env::var(DATABASE_ENV)
            && !url.trim().is_empty()
        {
            self.node.database = Database::parse(url.trim());
        }
    }

    /// The example configuration.
    pub fn example() -> Config {
        Config::from_toml_str(EXAMPLE).expect("the shipped example configuration is valid")
    }

    /// The checks [`Config::from_toml_str`] runs after parsing.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(level) = &self.log.level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| err("log.level", e.to_string()))?;
        }
        let t = &self.timings;
        positive("timings.token_default_ms", t.token_default_ms)?;
        positive("timings.outcome_deadline_ms", t.outcome_deadline_ms)?;
        positive("timings.ec_timeout_ms", t.ec_timeout_ms)?;
        positive("timings.receipt_timeout_ms", t.receipt_timeout_ms)?;
        positive(
            "timings.cancellation_job_interval_ms",
            t.cancellation_job_interval_ms,
        )?;
        if t.token_max_ms == 0 || t.token_max_ms > 1_800_000 {
            return Err(err(
                "timings.token_max_ms",
                "must be in 1..=1800000 (the XSD maximum of expirationTime)",
            ));
        }
        if t.token_default_ms > t.token_max_ms {
            return Err(err(
                "timings.token_default_ms",
                "must not exceed timings.token_max_ms",
            ));
        }
        if self.receipts.max_attempts == 0 {
            return Err(err("receipts.max_attempts", "must be at least 1"));
        }
        // Zero would re-send every failing copy in a tight loop against its station.
        positive(
            "receipts.retry_interval_ms",
            self.receipts.retry_interval_ms,
        )?;
        // Zero would delete the state-change journal at every maintenance pass.
        if self.journal.retention_days == 0 {
            return Err(err(
                "journal.retention_days",
                "must be at least 1 (the official retention is 24 months: 730)",
            ));
        }
        if self.node.workers == Some(0) {
            return Err(err("node.workers", "must be at least 1"));
        }
        if self.receipts.per_station_concurrency == 0 {
            return Err(err(
                "receipts.per_station_concurrency",
                "must be at least 1",
            ));
        }
        if self.node.max_body_bytes < 1024 {
            return Err(err("node.max_body_bytes", "must be at least 1024"));
        }
        if self.node.max_xml_depth < MIN_XML_DEPTH {
            return Err(err(
                "node.max_xml_depth",
                format!("must be at least {MIN_XML_DEPTH} (pagoPA messages nest 9 levels deep)"),
            ));
        }
        // An empty token would open the admin listener to anyone who sends an empty one.
        if self
            .node
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(err(
                "node.admin_token",
                "must not be empty (leave it out to have no token: then the admin listener must stay on loopback)",
            ));
        }
        for (id, token) in &self.node.admin_tokens {
            let key = format!("node.admin_tokens.{id}");
            if token.trim().is_empty() {
                return Err(err(key, "must not be empty"));
            }
            if id == crate::admin::DEFAULT_TOKEN_ID
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(err(
                    key,
                    format!(
                        "a token id is letters, digits and - _ . @, and not '{}' (admin_token's)",
                        crate::admin::DEFAULT_TOKEN_ID
                    ),
                ));
            }
        }
        if let Some(url) = &self.node.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(err(
                "node.public_url",
                format!("'{url}' is not an http(s) URL"),
            ));
        }
        if self.node.tls_cert.is_some() != self.node.tls_key.is_some() {
            return Err(err(
                "node.tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        if self.node.tls_client_ca.is_some() && self.node.tls_cert.is_none() {
            return Err(err(
                "node.tls_client_ca",
                "client certificates need TLS: set tls_cert and tls_key",
            ));
        }
        if self.node.tls_client_auth == ClientAuth::Required && self.node.tls_client_ca.is_none() {
            return Err(err(
                "node.tls_client_auth",
                "\"required\" needs tls_client_ca",
            ));
        }
        if actix_web::http::header::HeaderName::try_from(self.node.subscription_key_header.as_str())
            .is_err()
        {
            return Err(err(
                "node.subscription_key_header",
                "is not an HTTP header name",
            ));
        }
        self.limits.check()?;
        check_identity(
            "outbound",
            &self.outbound.client_cert,
            &self.outbound.client_key,
        )?;
        if self.outbound.max_response_bytes < 1024 {
            return Err(err("outbound.max_response_bytes", "must be at least 1024"));
        }

        let psps = unique("psp", self.psp.iter().map(|p| p.id.as_str()))?;
        for (i, p) in self.psp.iter().enumerate() {
            text35(&format!("psp[{i}].id"), &p.id)?;
            if p.name.is_empty() || p.name.chars().count() > 70 {
                return Err(err(
                    format!("psp[{i}].name"),
                    "must be 1..70 characters (PSPCompanyName)",
                ));
            }
        }
        let brokers = unique("psp_broker", self.psp_broker.iter().map(|b| b.id.as_str()))?;
        let mut keys = HashSet::new();
        for (i, b) in self.psp_broker.iter().enumerate() {
            let k = |f: &str| format!("psp_broker[{i}].{f}");
            text35(&k("id"), &b.id)?;
            if b.subscription_keys.len() > 2 {
                return Err(err(
                    k("subscription_keys"),
                    "at most two keys (primary and secondary)",
                ));
            }
            for key in &b.subscription_keys {
                if key.len() < 16 || !key.bytes().all(|c| c.is_ascii_graphic()) {
                    return Err(err(
                        k("subscription_keys"),
                        "a key is at least 16 printable ASCII characters",
                    ));
                }
                if !keys.insert(key.as_str()) {
                    return Err(err(k("subscription_keys"), "a key is used twice"));
                }
            }
            for f in &b.client_cert_sha256 {
                if crate::front::certs::parse_fingerprint(f).is_none() {
                    return Err(err(
                        k("client_cert_sha256"),
                        format!("'{f}' is not a SHA-256 fingerprint (64 hex digits)"),
                    ));
                }
            }
            for s in &b.client_cert_subjects {
                if crate::front::certs::Subject::parse(s).is_none() {
                    return Err(err(
                        k("client_cert_subjects"),
                        format!("'{s}' is not a subject (TYPE=value, …)"),
                    ));
                }
            }
            if b.pins_certificates() && self.node.tls_client_ca.is_none() {
                return Err(err(
                    k("client_cert_sha256"),
                    "client certificates need node.tls_client_ca",
                ));
            }
        }
        unique("channel", self.channel.iter().map(|c| c.id.as_str()))?;
        for (i, c) in self.channel.iter().enumerate() {
            let k = |f: &str| format!("channel[{i}].{f}");
            text35(&k("id"), &c.id)?;
            if !brokers.contains(c.broker.as_str()) {
                return Err(err(
                    k("broker"),
                    format!("unknown PSP broker '{}'", c.broker),
                ));
            }
            Password::new(c.password.clone()).map_err(|e| err(k("password"), e))?;
            for p in &c.psps {
                if !psps.contains(p.as_str()) {
                    return Err(err(k("psps"), format!("unknown PSP '{p}'")));
                }
            }
            if c.outcome_deadline_ms == Some(0) {
                return Err(err(k("outcome_deadline_ms"), "must be positive"));
            }
        }
        let ecs = unique("ec", self.ec.iter().map(|e| e.fiscal_code.as_str()))?;
        for (i, e) in self.ec.iter().enumerate() {
            FiscalCode::new(e.fiscal_code.clone())
                .map_err(|m| err(format!("ec[{i}].fiscal_code"), m))?;
            if e.name.is_empty() || e.name.chars().count() > 140 {
                return Err(err(format!("ec[{i}].name"), "must be 1..140 characters"));
            }
            for (j, iban) in e.ibans.iter().enumerate() {
                Iban::new(iban.clone()).map_err(|m| err(format!("ec[{i}].ibans[{j}]"), m))?;
            }
        }
        let ec_brokers = unique("ec_broker", self.ec_broker.iter().map(|b| b.id.as_str()))?;
        for (i, b) in self.ec_broker.iter().enumerate() {
            text35(&format!("ec_broker[{i}].id"), &b.id)?;
        }
        let stations = unique("station", self.station.iter().map(|s| s.id.as_str()))?;
        for (i, s) in self.station.iter().enumerate() {
            let k = |f: &str| format!("station[{i}].{f}");
            text35(&k("id"), &s.id)?;
            if !ec_brokers.contains(s.broker.as_str()) {
                return Err(err(
                    k("broker"),
                    format!("unknown EC broker '{}'", s.broker),
                ));
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) || s.url.len() < 10
            {
                return Err(err(k("url"), format!("'{}' is not an http(s) URL", s.url)));
            }
            if s.version != 1 && s.version != 2 {
                return Err(err(k("version"), "must be 1 or 2"));
            }
            if s.timeout_ms == Some(0) || s.receipt_timeout_ms == Some(0) {
                return Err(err(k("timeout_ms"), "timeouts must be positive"));
            }
            if s.max_response_bytes.is_some_and(|b| b < 1024) {
                return Err(err(k("max_response_bytes"), "must be at least 1024"));
            }
            check_identity(&format!("station[{i}]"), &s.client_cert, &s.client_key)?;
        }
        let mut routes = HashSet::new();
        for (i, l) in self.station_link.iter().enumerate() {
            let k = |f: &str| format!("station_link[{i}].{f}");
            if !ecs.contains(l.ec.as_str()) {
                return Err(err(k("ec"), format!("unknown EC '{}'", l.ec)));
            }
            if !stations.contains(l.station.as_str()) {
                return Err(err(
                    k("station"),
                    format!("unknown station '{}'", l.station),
                ));
            }
            let code = match (l.aux_digit, &l.segregation_code, &l.application_code) {
                (3, Some(c), None) | (0, None, Some(c)) => {
                    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(err(
                            k(if l.aux_digit == 3 {
                                "segregation_code"
                            } else {
                                "application_code"
                            }),
                            "must be two digits",
                        ));
                    }
                    Some(c.clone())
                }
                (1 | 2, None, None) => None,
                (3, _, _) => {
                    return Err(err(
                        k("segregation_code"),
                        "aux digit 3 needs segregation_code (and no application_code)",
                    ));
                }
                (0, _, _) => {
                    return Err(err(
                        k("application_code"),
                        "aux digit 0 needs application_code (and no segregation_code)",
                    ));
                }
                (1 | 2, _, _) => {
                    return Err(err(k("aux_digit"), "aux digits 1 and 2 take no code"));
                }
                _ => return Err(err(k("aux_digit"), "must be 0, 1, 2 or 3")),
            };
            if !routes.insert((l.ec.clone(), l.aux_digit, code)) {
                return Err(err(
                    k("station"),
                    "another link already routes these notices of this EC",
                ));
            }
        }
        unique("service", self.service.iter().map(|s| s.id.as_str()))?;
        let mut providers = HashSet::new();
        for (i, s) in self.service.iter().enumerate() {
            let k = |f: &str| format!("service[{i}].{f}");
            ServiceCode::new(s.id.clone()).map_err(|m| err(k("id"), m))?;
            if crate::codec::service::ServiceSchema::from_xsd_name(&s.xsd).is_none() {
                let known: Vec<_> = crate::codec::service::ServiceSchema::ALL
                    .iter()
                    .map(|x| x.xsd_name())
                    .collect();
                return Err(err(
                    k("xsd"),
                    format!(
                        "unknown service schema '{}' (known: {})",
                        s.xsd,
                        known.join(", ")
                    ),
                ));
            }
            if s.description.is_empty() || s.description.chars().count() > 70 {
                return Err(err(k("description"), "must be 1..70 characters"));
            }
            for (j, p) in s.provider.iter().enumerate() {
                let k = |f: &str| format!("service[{i}].provider[{j}].{f}");
                ServiceCode::new(p.id.clone()).map_err(|m| err(k("id"), m))?;
                if !providers.insert(p.id.clone()) {
                    return Err(err(
                        k("id"),
                        format!("duplicate idSoggettoServizio '{}'", p.id),
                    ));
                }
                // An EC the registry does not know (or has disabled) is a warning: see
                // `Config::warnings`.
                text35(&k("ec"), &p.ec)?;
                if let Some(st) = &p.station
                    && !stations.contains(st.as_str())
                {
                    return Err(err(k("station"), format!("unknown station '{st}'")));
                }
                if p.valid_to.is_some_and(|to| to < p.valid_from) {
                    return Err(err(k("valid_to"), "is before valid_from"));
                }
                if let Some(c) = &p.commission
                    && c != "Y"
                    && c != "N"
                {
                    return Err(err(k("commission"), "must be Y or N"));
                }
            }
        }
        Ok(())
    }

    /// What loads but is answered with a fault at request time. The official node's
    /// configuration tables relate parties by foreign keys, except the service catalogue's
    /// subjects, which name their EC by code (`CDS_SOGGETTO.ID_DOMINIO`, official `NODO4_CFG`
    /// schema): a catalogue provider may name an EC that is unknown or disabled, and
    /// demandPaymentNotice then answers `PPT_DOMINIO_SCONOSCIUTO` / `PPT_DOMINIO_DISABILITATO`
    /// (official BDD test `demandPaymentNotice_semantic_ko.feature`, soggetti 00003 / 00004).
    /// Every other reference is checked by [`Config::from_toml_str`], as a foreign key is.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        for (i, s) in self.service.iter().enumerate() {
            for (j, p) in s.provider.iter().enumerate() {
                let (what, code) = match self.ec.iter().find(|e| e.fiscal_code == p.ec) {
                    None => ("unknown", "PPT_DOMINIO_SCONOSCIUTO"),
                    Some(e) if !e.enabled => ("disabled", "PPT_DOMINIO_DISABILITATO"),
                    Some(_) => continue,
                };
                out.push(ConfigWarning {
                    key: format!("service[{i}].provider[{j}].ec"),
                    message: format!(
                        "{what} EC '{}': demandPaymentNotice for '{}' is answered {code}",
                        p.ec, p.id
                    ),
                });
            }
        }
        out
    }
}

/// Dates in the configuration: a TOML date (`valid_from = 2024-01-01`) or a string
/// (`valid_from = "2024-01-01"`).
pub(crate) mod dates {
    use serde::{Deserialize, Deserializer, de::Error};

    /// A date as the file spells it.
    enum DateValue {
        Text(String),
        Toml(toml::value::Datetime),
    }

    impl<'de> Deserialize<'de> for DateValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = DateValue;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a date: 2024-01-01 or \"2024-01-01\"")
                }
                fn visit_str<E: Error>(self, s: &str) -> Result<DateValue, E> {
                    Ok(DateValue::Text(s.to_string()))
                }
                // toml hands its dates over as a one-entry map.
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<DateValue, A::Error> {
                    toml::value::Datetime::deserialize(
                        serde::de::value::MapAccessDeserializer::new(map),
                    )
                    .map(DateValue::Toml)
                }
            }
            d.deserialize_any(Visitor)
        }
    }

    impl DateValue {
        fn parse<E: Error>(self) -> Result<chrono::NaiveDate, E> {
            match self {
                DateValue::Text(s) => chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                    .map_err(|e| E::custom(format!("'{s}' is not a date (YYYY-MM-DD): {e}"))),
                DateValue::Toml(d) => match (d.date, d.time, d.offset) {
                    (Some(date), None, None) => chrono::NaiveDate::from_ymd_opt(
                        i32::from(date.year),
                        u32::from(date.month),
                        u32::from(date.day),
                    )
                    .ok_or_else(|| E::custom(format!("{d} is not a date"))),
                    _ => Err(E::custom(format!(
                        "{d} is a date-time: a date (YYYY-MM-DD) is expected"
                    ))),
                },
            }
        }
    }

    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<chrono::NaiveDate, D::Error> {
        DateValue::deserialize(d)?.parse()
    }

    pub fn optional_date<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<chrono::NaiveDate>, D::Error> {
        Option::<DateValue>::deserialize(d)?
            .map(DateValue::parse)
            .transpose()
    }

    /// A date kept as its `YYYY-MM-DD` text (checked later, where the field's other rules are).
    pub fn optional_date_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<DateValue>::deserialize(d)? {
            None => None,
            Some(DateValue::Text(s)) => Some(s),
            Some(v) => Some(v.parse::<D::Error>()?.format("%Y-%m-%d").to_string()),
        })
    }
}

impl FrontLimits {
    fn check(&self) -> Result<(), ConfigError> {
        positive("limits.header_timeout_ms", self.header_timeout_ms)?;
        positive("limits.body_timeout_ms", self.body_timeout_ms)?;
        if self.max_connections == 0 {
            return Err(err("limits.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_address == 0 {
            return Err(err(
                "limits.max_connections_per_address",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A client certificate and its key are set together.
fn check_identity(
    table: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if cert.is_some() != key.is_some() {
        return Err(err(
            format!("{table}.client_cert"),
            "client_cert and client_key must be set together",
        ));
    }
    Ok(())
}

fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        Err(err(key, "must be positive"))
    } else {
        Ok(())
    }
}

fn text35(key: &str, v: &str) -> Result<(), ConfigError> {
    Text35::new(v.to_string())
        .map(drop)
        .map_err(|m| err(key, m))
}

fn unique<'a>(
    table: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashSet<&'a str>, ConfigError> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            return Err(err(format!("{table}[{i}]"), format!("duplicate id '{id}'")));
        }
    }
    Ok(seen)
}

/// Names the TOML location of a parse error: `line N` plus the nearest key.
fn describe_span(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let mut parts: Vec<String> = Vec::new();
    if !table.is_empty() {
        parts.push(table.trim_matches(['[', ']']).to_string());
    }
    if !key.is_empty() && !key.starts_with('[') {
        parts.push(key.to_string());
    }
    format!("{} (line {line_no})", parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid() {
        let c = Config::example();
        assert!(!c.psp.is_empty() && !c.station.is_empty() && !c.service.is_empty());
    }

    #[test]
    fn the_debian_packages_default_configuration_is_valid() {
        let c = Config::from_toml_str(include_str!("../debian/pagonode.toml")).unwrap();
        assert_eq!(
            c.node.database.sqlite_path(),
            Some(Path::new("/var/lib/pagonode/pagonode.db"))
        );
        assert!(c.psp.is_empty(), "parties are the operator's to add");
    }

    #[test]
    fn errors_name_the_line_of_their_key() {
        let bad = EXAMPLE.replacen("password = \"pwdpwdpwd\"", "password = \"short\"", 1);
        let e = Config::from_toml_str(&bad).unwrap_err();
        let line = bad.lines().position(|l| l.contains("\"short\"")).unwrap() + 1;
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.to_string().contains(&format!("(line {line})")), "{e}");
        let text = "[node]\nlisten = \"x\"\n\n[timings]\n# a comment\ntoken_max_ms = 0\n";
        let e = Config::from_toml_str(text).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("timings.token_max_ms", Some(6)));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = EXAMPLE.replacen("password = \"pwdpwdpwd\"", "password = \"short\"", 1);
        let e = Config::from_toml_str(&bad).unwrap_err();
        assert!(e.key.starts_with("channel[0].password"), "{e}");
        let typo = format!("{EXAMPLE}\n[timings2]\nx = 1\n");
        let e = Config::from_toml_str(&typo).unwrap_err();
        assert!(e.to_string().contains("timings2"), "{e}");
        let e = Config::from_toml_str("[timings]\ntoken_max_ms = 9999999\n").unwrap_err();
        assert_eq!(e.key, "timings.token_max_ms");
        let e = Config::from_toml_str("[node]\nadmin_token = \"\"\n").unwrap_err();
        assert_eq!(e.key, "node.admin_token");
        let e = Config::from_toml_str("[node.admin_tokens]\nalice = \" \"\n").unwrap_err();
        assert_eq!(e.key, "node.admin_tokens.alice");
    }

    /// The example with `from` replaced by `to` (once; `from` must be there).
    fn example_with(from: &str, to: &str) -> String {
        assert!(EXAMPLE.contains(from), "the example has no {from:?}");
        EXAMPLE.replacen(from, to, 1)
    }

    const PROVIDER_42: &str = "id = \"00042\"                       # idSoggettoServizio the PSP sends in demandPaymentNotice\nec = \"88888888888\"\nvalid_from = \"2024-01-01\"";

    #[test]
    fn dangling_references_the_official_node_accepts_are_warnings() {
        // (what, the example's provider 00042 rewritten, the warning's key and fault).
        let rows = [
            (
                "a provider naming an unknown EC",
                PROVIDER_42.replace("88888888888", "10000000000"),
                Some(("service[0].provider[0].ec", "PPT_DOMINIO_SCONOSCIUTO")),
            ),
            (
                "a provider naming a disabled EC",
                format!(
                    "{PROVIDER_42}\n[[service.provider]]\nid = \"00049\"\nec = \"12121212121\"\nvalid_from = 2024-01-01\n[[ec]]\nfiscal_code = \"12121212121\"\nname = \"Off\"\nenabled = false"
                ),
                Some(("service[0].provider[1].ec", "PPT_DOMINIO_DISABILITATO")),
            ),
            (
                "a provider naming a known EC",
                PROVIDER_42.to_string(),
                None,
            ),
        ];
        for (what, provider, expected) in rows {
            let text = example_with(PROVIDER_42, &provider);
            let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
            let warnings = cfg.warnings();
            match expected {
                None => assert!(warnings.is_empty(), "{what}: {warnings:?}"),
                Some((key, fault)) => {
                    assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
                    assert_eq!(warnings[0].key, key, "{what}");
                    assert!(
                        warnings[0].message.contains(fault),
                        "{what}: {}",
                        warnings[0]
                    );
                }
            }
        }
    }

    #[test]
    fn structural_typos_still_stop_the_node() {
        // (what, replaced, replacement, the key of the error).
        let rows = [
            (
                "a duplicate idSoggettoServizio",
                "id = \"00043\"",
                "id = \"00042\"",
                "service[1].provider[0].id",
            ),
            (
                "a duplicate EC",
                "fiscal_code = \"88888888888\"",
                "fiscal_code = \"77777777777\"",
                "ec[1]",
            ),
            (
                "an unknown key",
                "valid_from = \"2024-01-01\"",
                "valid_form = \"2024-01-01\"",
                "service.provider.valid_form",
            ),
            (
                "a provider naming an unknown station",
                "station = \"77777777777_01\"\nvalid_from",
                "station = \"77777777777_77\"\nvalid_from",
                "service[1].provider[0].station",
            ),
            (
                "a link naming an unknown station (a foreign key officially)",
                "station = \"88888888888_02\"",
                "station = \"88888888888_22\"",
                "station_link[",
            ),
            (
                "a provider's EC that is not a code",
                PROVIDER_42,
                "id = \"00042\"\nec = \"\"\nvalid_from = \"2024-01-01\"",
                "service[0].provider[0].ec",
            ),
        ];
        for (what, from, to, key) in rows {
            let e = Config::from_toml_str(&example_with(from, to))
                .map(|_| ())
                .expect_err(what);
            assert!(e.key.starts_with(key), "{what}: {e}");
        }
    }

    #[test]
    fn dates_are_toml_dates_or_strings() {
        let native = example_with("valid_from = \"2024-01-01\"", "valid_from = 2024-01-01");
        let c = Config::from_toml_str(&native).unwrap();
        assert_eq!(
            c.service[0].provider[0].valid_from,
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
        );
        let both = example_with(
            "valid_from = \"2024-01-01\"",
            "valid_from = 2024-01-01\nvalid_to = \"2030-12-31\"",
        );
        let c = Config::from_toml_str(&both).unwrap();
        assert_eq!(
            c.service[0].provider[0].valid_to,
            chrono::NaiveDate::from_ymd_opt(2030, 12, 31)
        );
        for (bad, why) in [
            ("valid_from = 2024-01-01T10:00:00", "date-time"),
            ("valid_from = \"2024-13-01\"", "not a date"),
            ("valid_from = 20240101", "expected a date"),
        ] {
            let e = Config::from_toml_str(&example_with("valid_from = \"2024-01-01\"", bad))
                .map(|_| ())
                .expect_err(bad);
            assert!(e.key.contains("valid_from"), "{bad}: {e}");
            assert!(e.message.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn expiry_mode_and_public_url() {
        let c = Config::example();
        assert_eq!(c.timings.expiry, ExpiryMode::Eager);
        let c = Config::from_toml_str(&example_with("expiry = \"eager\"", "expiry = \"official\""))
            .unwrap();
        assert_eq!(c.timings.expiry, ExpiryMode::Official);
        assert_eq!(c.timings.cancellation_job_interval_ms, 60_000);
        let e = Config::from_toml_str(&example_with("expiry = \"eager\"", "expiry = \"lazy\""))
            .unwrap_err();
        assert!(e.key.starts_with("timings.expiry"), "{e}");
        let e = Config::from_toml_str(&example_with(
            "[node]\n",
            "[node]\npublic_url = \"node.example.org\"\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "node.public_url");
    }
}
