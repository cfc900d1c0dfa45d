//! The event journal ("Giornale degli eventi", SANP Part B §2.7): every SOAP exchange the node
//! takes part in and every internal state change, with the official fields.
//!
//! State changes are written in the same transaction as the change (they come from the engine
//! as [`Write::Event`](crate::engine::Write)), so the journal never misses one; SOAP exchanges
//! are encoded where they happen and appended to segment files by the journal writer, off the
//! payment path ([`segment`], [`writer`]).

pub mod cli;
pub mod segment;
pub mod story;
pub mod writer;

use crate::engine::{Millis, StateEvent};

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

impl From<&StateEvent> for JournalEntry {
    fn from(e: &StateEvent) -> JournalEntry {
        JournalEntry {
            at: e.at,
            component: "engine".into(),
            category: Some(Category::Internal),
            primitive: e.kind.as_str().into(),
            subtype: Some(Subtype::Intern),
            fiscal_code: e.notice.as_ref().map(|n| n.fiscal_code.to_string()),
            notice_number: e.notice.as_ref().map(|n| n.notice_number.to_string()),
            iuv: e.notice.as_ref().map(|n| n.notice_number.iuv().to_string()),
            token: e.token.clone(),
            psp: e.psp.clone(),
            channel: e.channel.clone(),
            station: e.station.clone(),
            outcome: e.outcome.clone(),
            caller: Some(NODE.into()),
            callee: Some(NODE.into()),
            payload: None,
            detail: e.detail.clone(),
            duration_ms: None,
        }
    }
}
