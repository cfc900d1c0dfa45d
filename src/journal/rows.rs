//! How journal rows are built: the two rows of each SOAP exchange (request and response), keyed
//! by the payment they are about ([`Keys`]), and the row of each state change. The official
//! fields are those of the "Giornale degli eventi" (SANP, Giornale degli eventi).

use super::segment::{RowRef, Rows};
use super::{Category, NODE, Subtype};
use crate::codec::types::{FiscalCode, NoticeNumber, PaymentToken, Text35};
use crate::codec::{Operation, Secrets};
use crate::ec_client::Exchange;
use crate::engine::{Millis, NoticeKey, Payment, Reply, StateEvent};
use crate::fault::NodeFault;

/// What the journal needs to know about a request: the payment keys it is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub fiscal_code: Option<FiscalCode>,
    pub notice_number: Option<NoticeNumber>,
    pub token: Option<PaymentToken>,
    pub psp: Option<Text35>,
    pub channel: Option<Text35>,
    pub station: Option<Text35>,
}

impl Keys {
    /// A PSP's request, before anything else is known.
    pub fn psp(id_psp: &Text35, id_channel: &Text35) -> Keys {
        Keys {
            psp: Some(id_psp.clone()),
            channel: Some(id_channel.clone()),
            ..Keys::default()
        }
    }

    /// The same keys, about the notice `key`.
    pub fn notice(mut self, key: &NoticeKey) -> Keys {
        self.fiscal_code = Some(key.fiscal_code.clone());
        self.notice_number = Some(key.notice_number.clone());
        self
    }

    /// Everything about a payment: its notice, token, PSP and station.
    pub fn payment(p: &Payment) -> Keys {
        Keys {
            token: Some(p.token.clone()),
            station: Some(p.station.id.clone()),
            ..Keys::psp(&p.psp.id_psp, &p.psp.id_channel).notice(&p.notice)
        }
    }

    /// The journal fields the keys fill: EC, notice, IUV, token, PSP, channel, station.
    fn row(&self) -> RowRef<'_> {
        RowRef {
            fiscal_code: self.fiscal_code.as_deref(),
            notice_number: self.notice_number.as_deref(),
            iuv: self.notice_number.as_ref().map(|n| n.iuv()),
            token: self.token.as_deref(),
            psp: self.psp.as_deref(),
            channel: self.channel.as_deref(),
            station: self.station.as_deref(),
            ..RowRef::default()
        }
    }
}

/// The rows of a PSP's request (`request`, as received, with its `secrets` masked here) and the
/// node's reply, sent at `now`.
pub fn psp_exchange(
    op: Operation,
    request: &[u8],
    secrets: &Secrets,
    reply: &Reply,
    keys: &Keys,
    started: Millis,
    now: Millis,
) -> Rows {
    let base = RowRef {
        component: "nodeForPsp",
        category: Some(Category::Interface),
        primitive: op.soap_action(),
        caller: keys.psp.as_deref(),
        callee: Some(NODE),
        ..keys.row()
    };
    let request = secrets.mask(request);
    let mut rows = Rows::new();
    rows.push(&RowRef {
        at: started,
        subtype: Some(Subtype::Req),
        payload: Some(&request),
        ..base
    });
    rows.push(&RowRef {
        at: now,
        subtype: Some(Subtype::Resp),
        outcome: Some(reply.esito()),
        payload: Some(&reply.envelope),
        duration_ms: Some(now.saturating_sub(started)),
        ..base
    });
    rows
}

/// The rows of the node's request to a station and of its answer (`result`: how the node read
/// it).
pub fn ec_exchange(
    op: Operation,
    station: &str,
    keys: &Keys,
    ex: &Exchange,
    result: Result<(), &NodeFault>,
) -> Rows {
    let base = RowRef {
        component: "paForNode",
        category: Some(Category::Interface),
        primitive: op.soap_action(),
        station: Some(station),
        caller: Some(NODE),
        callee: Some(station),
        ..keys.row()
    };
    let detail = result.err().map(|f| f.to_string());
    let mut rows = Rows::new();
    rows.push(&RowRef {
        at: ex.started_at,
        subtype: Some(Subtype::Req),
        payload: Some(&ex.request),
        outcome: Some("INVIATA"),
        ..base
    });
    rows.push(&RowRef {
        at: ex.started_at + ex.elapsed_ms,
        subtype: Some(Subtype::Resp),
        payload: ex.response.as_deref(),
        outcome: Some(match result {
            Ok(()) => "OK",
            Err(f) => f.code(),
        }),
        detail: detail.as_deref(),
        duration_ms: Some(ex.elapsed_ms),
        ..base
    });
    rows
}

/// The summary of a request the front door refused (wrong credentials, certificate or key):
/// what it claimed and why it was refused, never its payload (the journal keeps at most this
/// of a stranger's request).
pub fn refusal(
    at: Millis,
    op: Option<Operation>,
    psp: Option<&str>,
    channel: Option<&str>,
    code: &str,
    detail: &str,
) -> Rows {
    let mut rows = Rows::new();
    rows.push(&RowRef {
        at,
        component: "nodeForPsp",
        category: Some(Category::Interface),
        primitive: op.map_or("", Operation::soap_action),
        psp,
        channel,
        outcome: Some(code),
        caller: psp,
        callee: Some(NODE),
        detail: Some(detail),
        ..RowRef::default()
    });
    rows
}

/// The row of an internal error (a failed commit or read): its detail, which the PSP's fault
/// does not carry.
pub fn internal_error(at: Millis, detail: &str) -> Rows {
    let mut rows = Rows::new();
    rows.push(&RowRef {
        at,
        component: "node",
        category: Some(Category::Internal),
        primitive: "systemError",
        subtype: Some(Subtype::Intern),
        outcome: Some("PPT_SYSTEM_ERROR"),
        caller: Some(NODE),
        callee: Some(NODE),
        detail: Some(detail),
        ..RowRef::default()
    });
    rows
}

/// The row of a configuration version applied (`who` applied it; `diff` is what changed).
pub fn config_applied(at: Millis, version: u64, who: &str, diff: &str) -> Rows {
    let detail = format!("configuration version {version} applied by {who}\n{diff}");
    let mut rows = Rows::new();
    rows.push(&RowRef {
        at,
        component: "node",
        category: Some(Category::Internal),
        primitive: "configApplied",
        subtype: Some(Subtype::Intern),
        outcome: Some("OK"),
        caller: Some(who),
        callee: Some(NODE),
        detail: Some(&detail),
        ..RowRef::default()
    });
    rows
}

/// The row of a state change (the store commits it with the change).
pub fn event_row(e: &StateEvent) -> RowRef<'_> {
    RowRef {
        at: e.at,
        component: "engine",
        category: Some(Category::Internal),
        primitive: e.kind.as_str(),
        subtype: Some(Subtype::Intern),
        fiscal_code: e.notice.as_ref().map(|n| n.fiscal_code.as_str()),
        notice_number: e.notice.as_ref().map(|n| n.notice_number.as_str()),
        iuv: e.notice.as_ref().map(|n| n.notice_number.iuv()),
        token: e.token.as_deref(),
        psp: e.psp.as_deref(),
        channel: e.channel.as_deref(),
        station: e.station.as_deref(),
        outcome: e.outcome,
        caller: Some(NODE),
        callee: Some(NODE),
        payload: None,
        detail: e.detail.as_deref(),
        duration_ms: None,
    }
}
