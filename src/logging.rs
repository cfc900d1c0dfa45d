//! Logs for operators: one line per event on stderr (stdout stays for what a command prints,
//! such as the demo's banner), as text or as one JSON object per line, colours only on a
//! terminal. Each nodeForPsp request gets a [`RequestId`]: its lines carry it (the `request`
//! span) and so does the answer's `X-Request-Id` header.

use std::fmt;
use std::io::IsTerminal;

use serde::Deserialize;

/// How log lines are written.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, and the
    /// `span` (`request_id` on a request's lines).
    Json,
}

/// The `[log]` table of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json` (`--log-format` and `PAGONODE_LOG_FORMAT` take precedence).
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `debug`, `pagonode=debug,actix_server=warn`); `RUST_LOG`
    /// takes precedence. Default `info`.
    pub level: Option<String>,
}

impl LogSection {
    /// The `[log]` table of a configuration file, read before the rest so that the
    /// configuration's own errors are logged as configured. An unreadable file or table gives
    /// the defaults: loading the whole configuration reports the error.
    pub fn from_file(path: &std::path::Path) -> LogSection {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            log: LogSection,
        }
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<File>(&text).ok())
            .map(|f| f.log)
            .unwrap_or_default()
    }
}

/// Installs the process's log subscriber: `format` from the command line if given, else the
/// configuration's; the filter from `RUST_LOG`, else the configuration's `level`, else `info`.
pub fn init(format: Option<LogFormat>, config: &LogSection) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = config.level.as_deref().unwrap_or("info");
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
            eprintln!("pagonode: log level '{level}' ignored ({e}): using info");
            tracing_subscriber::EnvFilter::new("info")
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.unwrap_or(config.format) {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        // The target (`pagonode::node`, `actix_server`) is a field a log store can filter on.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The identity of one nodeForPsp request, from its arrival to its answer: on its log lines
/// and in the answer's `X-Request-Id` header. Random, so ids from several nodes do not clash;
/// a plain `u64` so that a row (the journal's, a metric's exemplar) can keep it as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    pub fn new() -> RequestId {
        RequestId(rand::random())
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The span a request's work runs in: every line logged inside carries `request_id`.
    pub fn span(self) -> tracing::Span {
        tracing::info_span!("request", request_id = %self)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_print_as_16_hex_digits() {
        let id = RequestId(0xab);
        assert_eq!(id.to_string(), "00000000000000ab");
        assert_ne!(RequestId::new(), RequestId::new());
    }

    #[test]
    fn the_log_table_is_read_on_its_own_and_checked_with_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "[node]\nbogus = 1\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(LogSection::from_file(&path).format, LogFormat::Json);
        std::fs::write(&path, "[log]\nformat = \"xml\"\n").unwrap();
        assert_eq!(LogSection::from_file(&path), LogSection::default());
        let err = crate::config::Config::from_toml_str("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(err.key.starts_with("log.format"), "{err}");
        let err =
            crate::config::Config::from_toml_str("[log]\nlevel = \"pagonode=loud\"\n").unwrap_err();
        assert_eq!(err.key, "log.level", "{err}");
    }
}
