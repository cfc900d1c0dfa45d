//! SOAP 1.1 envelopes around the pagoPA messages: reading (with the envelope rules of the SOAP
//! 1.1 schema), writing, the message registry, and finding out which operation a request meant
//! even when it cannot be read.

use super::common::FaultBean;
use super::lenient::{Tag, Tags};
use super::mask::Secrets;
use super::node_for_psp::*;
use super::pa_for_node::*;
use super::schema::{Content, Particle, next_is};
use super::types::{Outcome, XsdString};
use super::xml::{
    AttrPolicy, Child, Limits, Violation, ViolationKind, XmlReader, XmlWriter, check_chars,
    decode_document, is_ncname,
};

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// nodeForPsp payload namespace.
pub const NS_NODE_FOR_PSP: &str = "http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd";
/// paForNode payload namespace.
pub const NS_PA_FOR_NODE: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";

/// The two SOAP interfaces of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interface {
    /// PSP → node.
    NodeForPsp,
    /// node → creditor entity station.
    PaForNode,
}

impl Interface {
    pub fn namespace(self) -> &'static str {
        match self {
            Interface::NodeForPsp => NS_NODE_FOR_PSP,
            Interface::PaForNode => NS_PA_FOR_NODE,
        }
    }

    /// The conventional prefix the node writes.
    pub fn prefix(self) -> &'static str {
        match self {
            Interface::NodeForPsp => "nfp",
            Interface::PaForNode => "pafn",
        }
    }

    fn from_namespace(ns: &str) -> Option<Interface> {
        match ns {
            NS_NODE_FOR_PSP => Some(Interface::NodeForPsp),
            NS_PA_FOR_NODE => Some(Interface::PaForNode),
            _ => None,
        }
    }
}

/// Whether a message is the request or the response of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

macro_rules! operations {
    ($( $op:ident => $action:literal, $iface:ident, $req:literal, $res:literal, $served:literal; )+) => {
        /// A SOAP operation of nodeForPsp or paForNode, named as its SOAPAction.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation { $( $op, )+ }

        impl Operation {
            pub const ALL: &'static [Operation] = &[ $( Operation::$op, )+ ];

            /// The SOAPAction, as the WSDL declares it.
            pub fn soap_action(self) -> &'static str {
                match self { $( Operation::$op => $action, )+ }
            }

            pub fn interface(self) -> Interface {
                match self { $( Operation::$op => Interface::$iface, )+ }
            }

            /// Local name of the request's root element.
            pub fn request_root(self) -> &'static str {
                match self { $( Operation::$op => $req, )+ }
            }

            /// Local name of the response's root element.
            pub fn response_root(self) -> &'static str {
                match self { $( Operation::$op => $res, )+ }
            }

            /// Whether the node serves this operation (the others are read and checked only).
            pub fn served(self) -> bool {
                match self { $( Operation::$op => $served, )+ }
            }
        }
    };
}

operations! {
    DemandPaymentNotice => "demandPaymentNotice", NodeForPsp, "demandPaymentNoticeRequest", "demandPaymentNoticeResponse", true;
    VerifyPaymentNotice => "verifyPaymentNotice", NodeForPsp, "verifyPaymentNoticeReq", "verifyPaymentNoticeRes", true;
    ActivatePaymentNotice => "activatePaymentNotice", NodeForPsp, "activatePaymentNoticeReq", "activatePaymentNoticeRes", true;
    ActivatePaymentNoticeV2 => "activatePaymentNoticeV2", NodeForPsp, "activatePaymentNoticeV2Request", "activatePaymentNoticeV2Response", true;
    SendPaymentOutcome => "sendPaymentOutcome", NodeForPsp, "sendPaymentOutcomeReq", "sendPaymentOutcomeRes", true;
    SendPaymentOutcomeV2 => "sendPaymentOutcomeV2", NodeForPsp, "sendPaymentOutcomeV2Request", "sendPaymentOutcomeV2Response", true;
    NodoChiediCatalogoServiziV2 => "nodoChiediCatalogoServiziV2", NodeForPsp, "nodoChiediCatalogoServiziV2Request", "nodoChiediCatalogoServiziV2Response", true;
    VerificaBollettino => "verificaBollettino", NodeForPsp, "verificaBollettinoReq", "verificaBollettinoRes", false;
    NodoInviaFlussoRendicontazione => "nodoInviaFlussoRendicontazione", NodeForPsp, "nodoInviaFlussoRendicontazioneRequest", "nodoInviaFlussoRendicontazioneResponse", false;
    NodoChiediTemplateInformativaPsp => "nodoChiediTemplateInformativaPSP", NodeForPsp, "nodoChiediTemplateInformativaPSPRequest", "nodoChiediTemplateInformativaPSPResponse", false;
    NodoChiediInformativaPa => "nodoChiediInformativaPA", NodeForPsp, "nodoChiediInformativaPARequest", "nodoChiediInformativaPAResponse", false;
    PaDemandPaymentNotice => "paDemandPaymentNotice", PaForNode, "paDemandPaymentNoticeRequest", "paDemandPaymentNoticeResponse", true;
    PaVerifyPaymentNotice => "paVerifyPaymentNotice", PaForNode, "paVerifyPaymentNoticeReq", "paVerifyPaymentNoticeRes", true;
    PaGetPayment => "paGetPayment", PaForNode, "paGetPaymentReq", "paGetPaymentRes", true;
    PaGetPaymentV2 => "paGetPaymentV2", PaForNode, "paGetPaymentV2Request", "paGetPaymentV2Response", true;
    PaSendRt => "paSendRT", PaForNode, "paSendRTReq", "paSendRTRes", true;
    PaSendRtV2 => "paSendRTV2", PaForNode, "paSendRTV2Request", "paSendRTV2Response", true;
}

impl Operation {
    /// The operation a SOAPAction names: bare or quoted, or ending a URI (`…/activatePaymentNotice`).
    pub fn from_soap_action(action: &str) -> Option<Operation> {
        let a = action.trim().trim_matches('"').trim();
        let a = a.rsplit(['/', '#']).next().unwrap_or(a);
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.soap_action() == a)
    }

    /// The operation whose request or response root is `local`.
    pub fn from_root(local: &str) -> Option<(Operation, Direction)> {
        Operation::ALL.iter().find_map(|&op| {
            if op.request_root() == local {
                Some((op, Direction::Request))
            } else if op.response_root() == local {
                Some((op, Direction::Response))
            } else {
                None
            }
        })
    }
}

/// A message root element: its type knows its operation and direction.
pub trait Message: Content {
    const OPERATION: Operation;
    const DIRECTION: Direction;

    fn root() -> &'static str {
        match Self::DIRECTION {
            Direction::Request => Self::OPERATION.request_root(),
            Direction::Response => Self::OPERATION.response_root(),
        }
    }
}

/// Responses that carry `outcome` and `fault` (every `ctResponse` extension): lets the node build
/// a KO of any operation.
pub trait KoResponse: Message {
    fn ko(fault: FaultBean) -> Self;
    fn outcome(&self) -> Outcome;
    fn fault(&self) -> Option<&FaultBean>;
}

macro_rules! messages {
    ($( $ty:ident => $op:ident, $dir:ident; )+) => {
        $(
            impl Message for $ty {
                const OPERATION: Operation = Operation::$op;
                const DIRECTION: Direction = Direction::$dir;
            }
        )+

        /// Any of the messages the codec reads and writes.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum AnyMessage { $( $ty($ty), )+ }

        impl AnyMessage {
            pub fn operation(&self) -> Operation {
                match self { $( AnyMessage::$ty(_) => Operation::$op, )+ }
            }

            pub fn direction(&self) -> Direction {
                match self { $( AnyMessage::$ty(_) => Direction::$dir, )+ }
            }

            /// The root element's local name.
            pub fn root(&self) -> &'static str {
                match self { $( AnyMessage::$ty(_) => <$ty as Message>::root(), )+ }
            }

            /// The message in a SOAP envelope.
            pub fn to_envelope(&self) -> String {
                match self { $( AnyMessage::$ty(m) => write_envelope(m), )+ }
            }

            fn read(op: Operation, dir: Direction, r: &mut XmlReader<'_>) -> Result<AnyMessage, Violation> {
                $(
                    if op == Operation::$op && dir == Direction::$dir {
                        return <$ty as Content>::read(r).map(AnyMessage::$ty);
                    }
                )+
                unreachable!("every operation has both messages")
            }
        }
    };
}

messages! {
    DemandPaymentNoticeRequest => DemandPaymentNotice, Request;
    DemandPaymentNoticeResponse => DemandPaymentNotice, Response;
    VerifyPaymentNoticeReq => VerifyPaymentNotice, Request;
    VerifyPaymentNoticeRes => VerifyPaymentNotice, Response;
    ActivatePaymentNoticeReq => ActivatePaymentNotice, Request;
    ActivatePaymentNoticeRes => ActivatePaymentNotice, Response;
    ActivatePaymentNoticeV2Request => ActivatePaymentNoticeV2, Request;
    ActivatePaymentNoticeV2Response => ActivatePaymentNoticeV2, Response;
    SendPaymentOutcomeReq => SendPaymentOutcome, Request;
    SendPaymentOutcomeRes => SendPaymentOutcome, Response;
    SendPaymentOutcomeV2Request => SendPaymentOutcomeV2, Request;
    SendPaymentOutcomeV2Response => SendPaymentOutcomeV2, Response;
    NodoChiediCatalogoServiziV2Request => NodoChiediCatalogoServiziV2, Request;
    NodoChiediCatalogoServiziV2Response => NodoChiediCatalogoServiziV2, Response;
    VerificaBollettinoReq => VerificaBollettino, Request;
    VerificaBollettinoRes => VerificaBollettino, Response;
    NodoInviaFlussoRendicontazioneRequest => NodoInviaFlussoRendicontazione, Request;
    NodoInviaFlussoRendicontazioneResponse => NodoInviaFlussoRendicontazione, Response;
    NodoChiediTemplateInformativaPspRequest => NodoChiediTemplateInformativaPsp, Request;
    NodoChiediTemplateInformativaPspResponse => NodoChiediTemplateInformativaPsp, Response;
    NodoChiediInformativaPaRequest => NodoChiediInformativaPa, Request;
    NodoChiediInformativaPaResponse => NodoChiediInformativaPa, Response;
    PaDemandPaymentNoticeRequest => PaDemandPaymentNotice, Request;
    PaDemandPaymentNoticeResponse => PaDemandPaymentNotice, Response;
    PaVerifyPaymentNoticeReq => PaVerifyPaymentNotice, Request;
    PaVerifyPaymentNoticeRes => PaVerifyPaymentNotice, Response;
    PaGetPaymentReq => PaGetPayment, Request;
    PaGetPaymentRes => PaGetPayment, Response;
    PaGetPaymentV2Request => PaGetPaymentV2, Request;
    PaGetPaymentV2Response => PaGetPaymentV2, Response;
    PaSendRtReq => PaSendRt, Request;
    PaSendRtRes => PaSendRt, Response;
    PaSendRtV2Request => PaSendRtV2, Request;
    PaSendRtV2Response => PaSendRtV2, Response;
}

/// Implements [`KoResponse`] for responses whose only required element is `outcome`.
macro_rules! ko_responses {
    ($( $ty:ident { $( $f:ident ),* } )+) => {
        $(
            impl KoResponse for $ty {
                fn ko(fault: FaultBean) -> Self {
                    $ty { outcome: Outcome::Ko, fault: Some(fault), $( $f: None, )* }
                }
                fn outcome(&self) -> Outcome {
                    self.outcome
                }
                fn fault(&self) -> Option<&FaultBean> {
                    self.fault.as_ref()
                }
            }
        )+

        impl AnyMessage {
            /// The `outcome` and `fault` of a response that has them (`None` for requests and
            /// the legacy responses).
            pub fn outcome_and_fault(&self) -> Option<(Outcome, Option<&FaultBean>)> {
                match self {
                    $( AnyMessage::$ty(m) => Some((m.outcome, m.fault.as_ref())), )+
                    _ => None,
                }
            }
        }
    };
}

ko_responses! {
    DemandPaymentNoticeResponse { qr_code, payment_list, payment_description, fiscal_code_pa, company_name, office_name }
    VerifyPaymentNoticeRes { payment_list, payment_description, fiscal_code_pa, company_name, office_name, standin }
    ActivatePaymentNoticeRes { total_amount, payment_description, fiscal_code_pa, company_name, office_name, payment_token, transfer_list, creditor_reference_id, standin }
    ActivatePaymentNoticeV2Response { total_amount, payment_description, fiscal_code_pa, company_name, office_name, payment_token, transfer_list, metadata, creditor_reference_id, suggested_user_fee, suggested_pa_fee, suggested_id_bundle, suggested_id_ci_bundle, all_ccp, standin }
    SendPaymentOutcomeRes {}
    SendPaymentOutcomeV2Response {}
    NodoChiediCatalogoServiziV2Response { xml_catalogo_servizi }
    VerificaBollettinoRes { payment_bollettino_list, payment_description, fiscal_code_pa, notice_number, company_name, office_name }
    PaDemandPaymentNoticeResponse { qr_code, payment_list, payment_description, fiscal_code_pa, company_name, office_name }
    PaVerifyPaymentNoticeRes { payment_list, payment_description, fiscal_code_pa, company_name, office_name }
    PaGetPaymentRes { data }
    PaGetPaymentV2Response { data }
    PaSendRtRes {}
    PaSendRtV2Response {}
}

/// The KO response of `op` carrying `fault`, in an envelope: how the node answers any request it
/// refuses, whatever the operation.
pub fn ko_envelope(op: Operation, fault: FaultBean) -> String {
    use Operation::*;
    match op {
        DemandPaymentNotice => write_envelope(&DemandPaymentNoticeResponse::ko(fault)),
        VerifyPaymentNotice => write_envelope(&VerifyPaymentNoticeRes::ko(fault)),
        ActivatePaymentNotice => write_envelope(&ActivatePaymentNoticeRes::ko(fault)),
        ActivatePaymentNoticeV2 => write_envelope(&ActivatePaymentNoticeV2Response::ko(fault)),
        SendPaymentOutcome => write_envelope(&SendPaymentOutcomeRes::ko(fault)),
        SendPaymentOutcomeV2 => write_envelope(&SendPaymentOutcomeV2Response::ko(fault)),
        NodoChiediCatalogoServiziV2 => {
            write_envelope(&NodoChiediCatalogoServiziV2Response::ko(fault))
        }
        VerificaBollettino => write_envelope(&VerificaBollettinoRes::ko(fault)),
        // The legacy `risposta` responses have no outcome: the fault alone says KO.
        NodoInviaFlussoRendicontazione => write_envelope(&NodoInviaFlussoRendicontazioneResponse {
            fault: Some(fault),
            esito: XsdString::truncated("KO"),
        }),
        NodoChiediTemplateInformativaPsp => {
            write_envelope(&NodoChiediTemplateInformativaPspResponse {
                fault: Some(fault),
                xml_template_informativa: None,
            })
        }
        NodoChiediInformativaPa => write_envelope(&NodoChiediInformativaPaResponse {
            fault: Some(fault),
            xml_informativa: None,
        }),
        PaDemandPaymentNotice => write_envelope(&PaDemandPaymentNoticeResponse::ko(fault)),
        PaVerifyPaymentNotice => write_envelope(&PaVerifyPaymentNoticeRes::ko(fault)),
        PaGetPayment => write_envelope(&PaGetPaymentRes::ko(fault)),
        PaGetPaymentV2 => write_envelope(&PaGetPaymentV2Response::ko(fault)),
        PaSendRt => write_envelope(&PaSendRtRes::ko(fault)),
        PaSendRtV2 => write_envelope(&PaSendRtV2Response::ko(fault)),
    }
}

/// Writes `m` in a SOAP 1.1 envelope, its root prefixed with the interface's conventional prefix.
pub fn write_envelope<M: Message>(m: &M) -> String {
    let iface = M::OPERATION.interface();
    let (prefix, root) = (iface.prefix(), M::root());
    let mut w = XmlWriter::with_capacity(1024);
    w.raw("<soapenv:Envelope xmlns:soapenv=\"");
    w.raw(NS_SOAP);
    w.raw("\" xmlns:");
    w.raw(prefix);
    w.raw("=\"");
    w.raw(iface.namespace());
    w.raw("\"><soapenv:Body><");
    w.raw(prefix);
    w.raw(":");
    w.raw(root);
    w.raw(">");
    m.write(&mut w);
    w.raw("</");
    w.raw(prefix);
    w.raw(":");
    w.raw(root);
    w.raw("></soapenv:Body></soapenv:Envelope>");
    w.into_string()
}

fn envelope_violation(reason: impl Into<String>) -> Violation {
    Violation::new(ViolationKind::Envelope, "", reason)
}

/// Reads an envelope and hands the Body's single child element, not yet entered, to `payload`.
/// Violations of the envelope itself (outside the payload) are [`ViolationKind::Envelope`] with
/// an empty path: paths are relative to the payload root. Also returns where the envelope keeps
/// its secrets, known if it was read.
fn read_envelope_with<T>(
    bytes: &[u8],
    limits: Limits,
    payload: impl for<'d> FnOnce(&mut XmlReader<'d>, Child<'d>) -> Result<T, Violation>,
) -> (Result<T, Violation>, Secrets) {
    let doc = match decode_document(bytes) {
        Ok(doc) => doc,
        Err(v) => return (Err(v), Secrets::unknown()),
    };
    let mut r = XmlReader::new(&doc, limits);
    let read = check_chars(&doc).and_then(|()| read_envelope(&mut r, payload));
    // The reader's ranges are of the decoded text: they are the request's own bytes (past a
    // byte order mark) unless the text was transcoded.
    let secrets = match (&read, &doc) {
        (Ok(_), std::borrow::Cow::Borrowed(text)) => {
            let offset = text.as_ptr() as usize - bytes.as_ptr() as usize;
            let at = |r: std::ops::Range<usize>| r.start + offset..r.end + offset;
            Secrets::at(r.take_secrets().into_iter().map(at).collect())
        }
        _ => Secrets::unknown(),
    };
    (read, secrets)
}

fn read_envelope<'d, T>(
    r: &mut XmlReader<'d>,
    payload: impl FnOnce(&mut XmlReader<'d>, Child<'d>) -> Result<T, Violation>,
) -> Result<T, Violation> {
    let root = r.root()?;
    if root.local != "Envelope" || root.ns != NS_SOAP {
        let why = if root.local == "Envelope" {
            format!(
                "the Envelope namespace must be '{NS_SOAP}' (SOAP 1.1), found '{}'",
                root.ns
            )
        } else {
            format!(
                "the root element must be a SOAP 1.1 Envelope, found '{}'",
                root.display_name()
            )
        };
        return Err(envelope_violation(why));
    }
    r.enter(root, AttrPolicy::Other(NS_SOAP))
        .map_err(at_envelope)?;
    let mut next = r.next_child().map_err(at_envelope)?;
    if let Some(h) = next.take_if(|c| c.is(NS_SOAP, "Header")) {
        r.enter(h, AttrPolicy::Other(NS_SOAP))
            .map_err(at_envelope)?;
        while let Some(entry) = r.next_child().map_err(at_envelope)? {
            check_other_namespace(&entry, "Header")?;
            r.enter(entry, AttrPolicy::Any).map_err(at_envelope)?;
            r.skip_content().map_err(at_envelope)?;
        }
        r.end_element().map_err(at_envelope)?;
        next = r.next_child().map_err(at_envelope)?;
    }
    let body = match next {
        Some(b) if b.is(NS_SOAP, "Body") => b,
        Some(other) => {
            return Err(envelope_violation(format!(
                "expected soapenv:Body, found '{}'",
                other.display_name()
            )));
        }
        None => return Err(envelope_violation("the Envelope has no Body")),
    };
    r.enter(body, AttrPolicy::Any).map_err(at_envelope)?;
    let Some(child) = r.next_child().map_err(at_envelope)? else {
        return Err(envelope_violation("the Body is empty"));
    };
    r.set_path_base();
    let value = payload(r, child)?;
    if let Some(extra) = r.next_child().map_err(at_envelope)? {
        return Err(envelope_violation(format!(
            "the Body must hold exactly one element; found another, '{}'",
            extra.display_name()
        )));
    }
    r.end_element().map_err(at_envelope)?;
    while let Some(extra) = r.next_child().map_err(at_envelope)? {
        check_other_namespace(&extra, "Envelope")?;
        r.enter(extra, AttrPolicy::Any).map_err(at_envelope)?;
        r.skip_content().map_err(at_envelope)?;
    }
    r.end_element().map_err(at_envelope)?;
    r.finish_document()?;
    Ok(value)
}

/// A schema violation found outside the payload is an envelope violation: no payload path.
fn at_envelope(v: Violation) -> Violation {
    match v.kind {
        ViolationKind::Schema if v.path.is_empty() => Violation {
            kind: ViolationKind::Envelope,
            ..v
        },
        ViolationKind::Schema => envelope_violation(format!("{} (at {})", v.reason, v.path)),
        _ => v,
    }
}

/// `xs:any namespace="##other"`: qualified, and not in the SOAP namespace.
fn check_other_namespace(c: &Child<'_>, parent: &str) -> Result<(), Violation> {
    if c.ns.is_empty() || c.ns == NS_SOAP {
        return Err(envelope_violation(format!(
            "element '{}' is not allowed in soapenv:{parent} (entries must be namespace-qualified, not SOAP)",
            c.display_name()
        )));
    }
    Ok(())
}

/// What a Body held: a pagoPA message or a SOAP Fault.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Body<M> {
    Message(M),
    Fault(SoapFault),
}

fn unknown_root(child: &Child<'_>) -> Violation {
    let why = match Interface::from_namespace(&child.ns) {
        Some(_) => format!("'{}' is not a message of this interface", child.local),
        None if child.ns.is_empty() => {
            format!(
                "the message root '{}' must be qualified with the nodeForPsp or paForNode namespace",
                child.local
            )
        }
        None => format!(
            "unknown payload namespace '{}' on '{}'",
            child.ns, child.local
        ),
    };
    Violation::new(ViolationKind::Schema, child.local, why)
}

/// Reads and validates any of the messages, or a SOAP Fault, in a SOAP 1.1 envelope.
pub fn read_any(bytes: &[u8], limits: Limits) -> Result<Body<AnyMessage>, Violation> {
    read_request(bytes, limits).0
}

/// [`read_any`], and where the request keeps its secrets (to store a copy without them).
pub fn read_request(
    bytes: &[u8],
    limits: Limits,
) -> (Result<Body<AnyMessage>, Violation>, Secrets) {
    read_envelope_with(bytes, limits, |r, child| {
        if child.is(NS_SOAP, "Fault") {
            r.enter(child, AttrPolicy::None)?;
            return SoapFault::read(r).map(Body::Fault);
        }
        let found = Interface::from_namespace(&child.ns).and_then(|iface| {
            Operation::from_root(child.local).filter(|(op, _)| op.interface() == iface)
        });
        let Some((op, dir)) = found else {
            return Err(unknown_root(&child));
        };
        r.enter(child, AttrPolicy::None)?;
        AnyMessage::read(op, dir, r).map(Body::Message)
    })
}

/// Reads the message `M` (or a SOAP Fault) from an envelope; any other root is a violation.
pub fn read_message<M: Message>(bytes: &[u8], limits: Limits) -> Result<Body<M>, Violation> {
    read_envelope_with(bytes, limits, |r, child| {
        if child.is(NS_SOAP, "Fault") {
            r.enter(child, AttrPolicy::None)?;
            return SoapFault::read(r).map(Body::Fault);
        }
        if !child.is(M::OPERATION.interface().namespace(), M::root()) {
            let why = format!(
                "expected '{}' in namespace '{}', found '{}'",
                M::root(),
                M::OPERATION.interface().namespace(),
                child.display_name()
            );
            return Err(Violation::new(ViolationKind::Schema, child.local, why));
        }
        r.enter(child, AttrPolicy::None)?;
        M::read(r).map(Body::Message)
    })
    .0
}

/// `soapenv:Fault` `detail`: element-only, any attributes, lax wildcard entries kept unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail;

impl Content for Detail {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        // Entries are lax (any content); `detail` itself holds no character data.
        while let Some(entry) = r.next_child()? {
            r.enter(entry, AttrPolicy::Any)?;
            r.skip_content()?;
        }
        r.end_element()?;
        Ok(Detail)
    }
    fn write(&self, _: &mut XmlWriter) {}
}

/// `xs:QName` (lexical form: `prefix:local` or `local`; the reader checks the prefix is bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QNameValue(pub String);

impl super::schema::Simple for QNameValue {
    fn parse(text: &str) -> Result<Self, String> {
        let v = super::schema::collapse(text);
        let ok = match v.split_once(':') {
            Some((p, l)) => is_ncname(p) && is_ncname(l),
            None => is_ncname(v),
        };
        if ok {
            Ok(QNameValue(v.to_string()))
        } else {
            Err(format!("value '{v}' is not a QName"))
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.text(&self.0)
    }
}

/// `faultcode`: a QName whose prefix must be bound where it appears.
struct FaultCode(QNameValue);

impl Content for FaultCode {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        let text = r.read_text()?;
        let q = <QNameValue as super::schema::Simple>::parse(&text).map_err(|e| r.invalid(e))?;
        if let Some((prefix, _)) = q.0.split_once(':')
            && !r.is_bound(prefix)
        {
            return Err(r.invalid(format!(
                "the prefix of QName '{}' is not bound to a namespace",
                q.0
            )));
        }
        r.close_simple();
        Ok(FaultCode(q))
    }
    fn write(&self, w: &mut XmlWriter) {
        super::schema::Simple::write(&self.0, w)
    }
}

/// `xs:anyURI`: any string that is a URI reference once escaped, so `%` must start an escape
/// (`%` + two hex digits) and there is at most one fragment (`#`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyUri(pub String);

impl super::schema::Simple for AnyUri {
    fn parse(text: &str) -> Result<Self, String> {
        let v = super::schema::collapse(text);
        let b = v.as_bytes();
        let bad_escape = b.iter().enumerate().any(|(i, &c)| {
            c == b'%'
                && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
        if bad_escape || v.matches('#').count() > 1 {
            return Err(format!("value '{v}' is not a URI reference (xs:anyURI)"));
        }
        Ok(AnyUri(v.to_string()))
    }
    fn write(&self, w: &mut XmlWriter) {
        w.text(&self.0)
    }
}

/// A SOAP 1.1 Fault, as an EC's SOAP stack may send instead of a pagoPA response.
#[derive(Debug, Clone, PartialEq)]
pub struct SoapFault {
    pub faultcode: QNameValue,
    pub faultstring: XsdString,
    pub faultactor: Option<AnyUri>,
    pub detail: Option<Detail>,
}

impl Content for SoapFault {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        let FaultCode(faultcode) = Particle::read_particle(r, "faultcode")?;
        let faultstring = Particle::read_particle(r, "faultstring")?;
        let faultactor = Particle::read_particle(r, "faultactor")?;
        // `detail` takes any attribute (`xs:anyAttribute namespace="##any"`).
        let detail = if next_is(r, "detail")? {
            let child = r.take_child().expect("peeked detail");
            r.enter(child, AttrPolicy::Any)?;
            Some(Detail::read(r)?)
        } else {
            None
        };
        r.end_element()?;
        Ok(SoapFault {
            faultcode,
            faultstring,
            faultactor,
            detail,
        })
    }

    fn write(&self, w: &mut XmlWriter) {
        self.faultcode.write_particle(w, "faultcode");
        self.faultstring.write_particle(w, "faultstring");
        self.faultactor.write_particle(w, "faultactor");
        self.detail.write_particle(w, "detail");
    }
}

/// Finds the operation a request is for, even when the request cannot be read: from the
/// `SOAPAction` header (quoted or not), else the `soapAction` query parameter, else the local
/// name of the Body's first element (recovered leniently from broken XML).
pub fn detect_operation(
    soap_action: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Option<Operation> {
    soap_action
        .and_then(Operation::from_soap_action)
        .or_else(|| {
            query
                .and_then(query_soap_action)
                .and_then(|a| Operation::from_soap_action(&a))
        })
        .or_else(|| sniff_root(body).map(|(op, _)| op))
}

/// The `soapAction` parameter of a query string.
pub fn query_soap_action(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.eq_ignore_ascii_case("soapAction").then(|| v.to_string())
    })
}

/// The operation and direction named by the first element inside `Body`, read leniently: the
/// first element named as a message root after the first `Body` start tag, or anywhere if there
/// is no `Body`.
pub fn sniff_root(body: &[u8]) -> Option<(Operation, Direction)> {
    let text = String::from_utf8_lossy(body);
    let (mut in_body, mut before_body) = (false, None);
    for tag in Tags::new(&text) {
        let Tag::Start { .. } = tag else { continue };
        let local = tag.local();
        if !in_body && local == "Body" {
            in_body = true;
        } else if let Some(found) = Operation::from_root(local) {
            if in_body {
                return Some(found);
            }
            before_body.get_or_insert(found);
        }
    }
    before_body.filter(|_| !in_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::mask::MASKED;
    use crate::codec::types::encode_base64;

    /// The example activation, its idempotency key template (`KEY`) filled in.
    static ACTIVATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        include_str!("../../examples/activate.xml").replace("_KEY", "_a1B2c3D4e5")
    });
    const DEMAND: &str = include_str!("../../examples/demand.xml");
    const SOAP_FAULT: &str = include_str!(
        "../../xsd-fixtures/valid/paGetPaymentRes__soap_fault_detail_attributes_and_actor.xml"
    );

    fn nested(depth: usize) -> String {
        format!(
            "{}{}",
            "<h:a xmlns:h='urn:h'>".repeat(depth),
            "</h:a>".repeat(depth)
        )
    }

    /// `doc` with `nested(depth)` in place of `at`.
    fn deep(doc: &str, at: &str, depth: usize) -> String {
        assert!(doc.contains(at), "{at}");
        doc.replacen(at, &nested(depth), 1)
    }

    #[test]
    fn nesting_is_bounded_in_every_part_of_an_envelope() {
        let header = ACTIVATE.replacen(
            "<soapenv:Body>",
            "<soapenv:Header>HERE</soapenv:Header><soapenv:Body>",
            1,
        );
        let after_body = ACTIVATE.replacen("</soapenv:Body>", "</soapenv:Body>HERE", 1);
        let detail = SOAP_FAULT.replacen("testo", "HERE", 1);
        // Far beyond what a recursive reader survives on a thread's stack.
        for depth in [200, 100_000] {
            for doc in [&header, &after_body, &detail] {
                let v = read_any(deep(doc, "HERE", depth).as_bytes(), Limits::DEFAULT).unwrap_err();
                assert_eq!(v.kind, ViolationKind::Limit, "{v}");
                assert!(v.reason.contains("deeper than 64"), "{v}");
            }
        }
        // The limit counts from the root: an Envelope (1) and a Header (2) leave 62 levels.
        let fits =
            |doc: &str, depth| read_any(deep(doc, "HERE", depth).as_bytes(), Limits::DEFAULT);
        assert!(fits(&header, 62).is_ok());
        assert!(fits(&header, 63).is_err());
        assert!(fits(&after_body, 63).is_ok());
        let low = Limits { max_depth: 16 };
        assert!(read_any(deep(&header, "HERE", 14).as_bytes(), low).is_ok());
        assert!(read_any(deep(&header, "HERE", 15).as_bytes(), low).is_err());
        // Inside the payload: refused as the element it is not, before any depth matters.
        let payload = deep(&ACTIVATE, "<amount>10.00</amount>", 100_000);
        assert!(read_any(payload.as_bytes(), Limits::DEFAULT).is_err());
    }

    #[test]
    fn a_service_document_is_held_to_the_limits_of_its_message() {
        let at = DEMAND.find("<datiSpecificiServizio>").unwrap() + "<datiSpecificiServizio>".len();
        let end = DEMAND.find("</datiSpecificiServizio>").unwrap();
        let with = |doc: &str| {
            format!(
                "{}{}{}",
                &DEMAND[..at],
                encode_base64(doc.as_bytes()),
                &DEMAND[end..]
            )
        };
        let other = |inner: &str| format!("<x:doc xmlns:x='urn:other'>{inner}</x:doc>");
        assert!(read_any(with(&other(&nested(63))).as_bytes(), Limits::DEFAULT).is_ok());
        for depth in [64, 100_000] {
            let v = read_any(with(&other(&nested(depth))).as_bytes(), Limits::DEFAULT).unwrap_err();
            assert!(v.reason.contains("deeper than 64"), "{v}");
            assert_eq!(v.path, "demandPaymentNoticeRequest/datiSpecificiServizio");
        }
    }

    #[test]
    fn secrets_are_where_the_reader_read_them() {
        for (spelled, value) in [
            ("pwdpwdpwd", "pwdpwdpwd"),
            ("<![CDATA[pwdpwdpwd]]>", "pwdpwdpwd"),
            (
                "pwd<![CDATA[pwd]]>p&#119;&amp;<!-- x -->d<?pi x?>",
                "pwdpwdpw&d",
            ),
            ("\n  pwdpwdpwd  \n", "\n  pwdpwdpwd  \n"),
        ] {
            let doc = format!(
                "\u{FEFF}{}",
                ACTIVATE
                    .replace("<password>pwdpwdpwd</password>", &format!("<password>{spelled}</password>"))
                    .replace(
                        "<soapenv:Body>",
                        "<soapenv:Header><w:Security xmlns:w='urn:w'><w:Password>hdr<w:x/></w:Password></w:Security></soapenv:Header><soapenv:Body>"
                    )
            );
            let (read, secrets) = read_request(doc.as_bytes(), Limits::DEFAULT);
            let Ok(Body::Message(AnyMessage::ActivatePaymentNoticeReq(m))) = read else {
                panic!("{spelled}: {read:?}");
            };
            assert_eq!(m.password.expose(), value);
            let masked = secrets.mask(doc.as_bytes());
            assert_eq!(
                masked,
                doc.replace(spelled, MASKED).replace("hdr<w:x/>", MASKED),
                "{spelled}"
            );
            // The lenient masking of an unread document agrees.
            assert_eq!(Secrets::unknown().mask(doc.as_bytes()), masked);
        }
    }

    #[test]
    fn the_operation_is_found_in_broken_requests_without_rescanning() {
        let op = |doc: &str| sniff_root(doc.as_bytes()).map(|(op, _)| op);
        assert_eq!(op(&ACTIVATE), Some(Operation::ActivatePaymentNotice));
        let cut = &ACTIVATE[..ACTIVATE.find("<idPSP>").unwrap() - 3];
        assert_eq!(op(cut), Some(Operation::ActivatePaymentNotice));
        // A root name before the Body does not count when there is a Body; it does without one.
        let header = ACTIVATE.replacen(
            "<soapenv:Body>",
            "<soapenv:Header><x:verifyPaymentNoticeReq xmlns:x='urn:x'/><!-- <soapenv:Body><paSendRTReq> --></soapenv:Header><soapenv:Body>",
            1,
        );
        assert_eq!(op(&header), Some(Operation::ActivatePaymentNotice));
        assert_eq!(
            op("<verifyPaymentNoticeReq><activatePaymentNoticeReq>"),
            Some(Operation::VerifyPaymentNotice)
        );
        assert_eq!(op("<soapenv:Body><!-- <verifyPaymentNoticeReq> -->"), None);
        assert_eq!(op(&format!("<!-- {}", "Body".repeat(10_000))), None);
    }
}
