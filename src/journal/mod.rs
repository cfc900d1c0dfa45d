//! The event journal ("Giornale degli eventi", SANP Part B §2.7): every SOAP exchange the node
//! takes part in and every internal state change, with the official fields.
//!
//! Everything about the journal lives here: its types, how rows are built ([`rows`]), the
//! segment files of the SOAP exchanges and their writer ([`segment`], [`writer`]) and a
//! payment's story ([`story`]). The journal depends on no store: each store reads its own
//! tables back ([`crate::store::journal_query`]), and the read-only `pagonode journal` command
//! ([`crate::cli::journal`]) reads through both.
//!
//! State changes come from the engine as [`Write::Event`](crate::engine::Write) and the store
//! commits them in the same transaction as the change they describe, so the journal never misses
//! one; SOAP exchanges are encoded where they happen and appended to segment files by the
//! journal writer, off the payment path. Both share one id sequence: merged by id, they are the
//! journal.

pub mod rows;
pub mod segment;
pub mod story;
pub mod writer;

pub use rows::Keys;

use crate::engine::Millis;

/// Parses a time bound: epoch milliseconds or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .map_err(|e| format!("'{s}': {e}"))
}

/// `categoriaEvento`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// An exchange with another system (`INTERFACCIA`).
    Interface,
    /// An internal state change (`INTERNO`).
    Internal,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Interface => "INTERFACCIA",
            Category::Internal => "INTERNO",
        }
    }
}

/// `sottoTipoEvento`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subtype {
    Req,
    Resp,
    Intern,
}

impl Subtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Subtype::Req => "REQ",
            Subtype::Resp => "RESP",
            Subtype::Intern => "INTERN",
        }
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalEntry {
    /// `dataOraEvento`, UTC milliseconds.
    pub at: Millis,
    /// `componente`: `nodeForPsp`, `paForNode`, `engine`, `delivery`.
    pub component: String,
    pub category: Option<Category>,
    /// `tipoEvento`: the primitive, or the state change's kind.
    pub primitive: String,
    pub subtype: Option<Subtype>,
    /// `identificativoDominio`.
    pub fiscal_code: Option<String>,
    pub notice_number: Option<String>,
    /// `identificativoUnivocoVersamento`.
    pub iuv: Option<String>,
    /// `codiceContestoPagamento`: the payment token.
    pub token: Option<String>,
    pub psp: Option<String>,
    pub channel: Option<String>,
    pub station: Option<String>,
    /// `esito`: OK / KO or the fault code.
    pub outcome: Option<String>,
    /// `identificativoFruitore` (caller) and `identificativoErogatore` (responder).
    pub caller: Option<String>,
    pub callee: Option<String>,
    /// The SOAP message itself.
    pub payload: Option<String>,
    pub detail: Option<String>,
    pub duration_ms: Option<u64>,
}

/// The node's id as caller or responder.
pub const NODE: &str = "NodoDeiPagamentiSPC";

/// A filter over the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalQuery {
    pub notice_number: Option<String>,
    pub fiscal_code: Option<String>,
    pub token: Option<String>,
    pub psp: Option<String>,
    pub primitive: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    /// Rows after this place (pagination). Rows come in time order, then by id.
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// A place in the journal's order: by time (`dataOraEvento`), then by id. Ids alone do not
/// give the time order: an exchange is numbered when the journal writer takes it, after the
/// state changes committed while it was going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub at: Millis,
    pub id: i64,
}

impl Cursor {
    /// The place of `row`.
    pub fn of(row: &JournalRow) -> Cursor {
        Cursor {
            at: row.entry.at,
            id: row.id,
        }
    }
}

/// `<time in ms>-<id>`: what the admin API gives as `next_after` and takes as `after`.
impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.at, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Cursor, String> {
        let bad = || {
            format!("'{s}' is not a journal position (<time in ms>-<id>, as next_after gives it)")
        };
        let (at, id) = s.split_once('-').ok_or_else(bad)?;
        Ok(Cursor {
            at: at.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A journal row with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub id: i64,
    pub entry: JournalEntry,
}

/// A journal file could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(pub String);

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError(e.to_string())
    }
}
