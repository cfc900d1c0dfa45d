//! The paForNode SOAP service: every request is validated with the codec, then scripts and the
//! notice's scenario digits may override the answer, else the EC's state decides it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{Ec, Registry};
use super::faults::{
    MOCK_ID, PAA_ID_DOMINIO_ERRATO, PAA_PAGAMENTO_SCONOSCIUTO, PAA_RECEIPT_DUPLICATA,
    PAA_SEMANTICA, PAA_SINTASSI_EXTRAXSD, Refusal,
};
use super::positions::{
    Position, PositionOrigin, PositionStatus, Transfer, demand_notice, generated_debtor, remittance,
};
use super::records::{AnswerKind, Delivery, RequestRecord, StoredReceipt};
use super::scripts::{Decision, Plan, take_match};
use super::{MockEc, State};
use crate::codec::common::QrCode;
use crate::codec::envelope::{NS_SOAP, QNameValue};
use crate::codec::pa_for_node::{
    PaDemandPaymentNoticeRequest, PaDemandPaymentNoticeResponse, PaGetPaymentReq, PaGetPaymentRes,
    PaGetPaymentV2Request, PaGetPaymentV2Response, PaSendRtReq, PaSendRtRes, PaSendRtV2Request,
    PaSendRtV2Response, PaVerifyPaymentNoticeReq, PaVerifyPaymentNoticeRes,
};
use crate::codec::schema::Content;
use crate::codec::service::{NS_TASSA_AUTO, ServicePayload, ServiceSchema, TassaAuto, Veicolo};
use crate::codec::types::{
    FiscalCode, NoticeNumber, Outcome, ServiceCode, Text35, Text140, XsdString,
};
use crate::codec::xml::{AttrPolicy, Limits, XmlReader, XmlWriter, decode_document};
use crate::codec::{
    Body, KoResponse, Message, Operation, SoapFault, detect_operation, read_message, write_envelope,
};

/// The request history keeps this many entries; older ones are dropped.
const MAX_REQUESTS: usize = 10_000;
const XML: &str = "text/xml; charset=utf-8";

/// An HTTP answer, independent of the web framework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: String,
}

/// An answer, with what the records say about it.
struct Answered {
    reply: Reply,
    kind: AnswerKind,
    fault_code: Option<String>,
}

impl Answered {
    fn message<M: KoResponse>(m: &M) -> Answered {
        Answered {
            reply: Reply {
                status: 200,
                content_type: Some(XML),
                body: write_envelope(m),
            },
            kind: if m.outcome() == Outcome::Ok {
                AnswerKind::Ok
            } else {
                AnswerKind::Ko
            },
            fault_code: m.fault().map(|f| f.fault_code.to_string()),
        }
    }

    /// The same answer, made schema-invalid.
    fn corrupted(self) -> Answered {
        Answered {
            reply: Reply {
                body: corrupt(&self.reply.body),
                ..self.reply
            },
            kind: AnswerKind::Invalid,
            fault_code: self.fault_code,
        }
    }

    fn garbage() -> Answered {
        Answered {
            reply: Reply {
                status: 200,
                content_type: Some(XML),
                body: "<<< mock EC: this is not XML >>>".into(),
            },
            kind: AnswerKind::Garbage,
            fault_code: None,
        }
    }

    /// A SOAP 1.1 Fault, sent with HTTP 500 as the SOAP 1.1 HTTP binding requires.
    fn soap_fault(code: &str, text: &str) -> Answered {
        Answered {
            reply: Reply {
                status: 500,
                content_type: Some(XML),
                body: soap_fault_envelope(code, text),
            },
            kind: AnswerKind::SoapFault,
            fault_code: None,
        }
    }

    fn http_500() -> Answered {
        Answered {
            reply: Reply {
                status: 500,
                content_type: None,
                body: String::new(),
            },
            kind: AnswerKind::Http500,
            fault_code: None,
        }
    }
}

/// Who a request is from and what notice it is about, for scripts, records and logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestInfo {
    id_pa: Option<String>,
    station: Option<String>,
    /// The notice owner (`qrCode/fiscalCode`, `receipt/fiscalCode`).
    fiscal_code: Option<String>,
    notice: Option<String>,
}

impl RequestInfo {
    fn of(id_pa: &Text35, station: &Text35, notice: Option<(&FiscalCode, &NoticeNumber)>) -> Self {
        RequestInfo {
            id_pa: Some(id_pa.to_string()),
            station: Some(station.to_string()),
            fiscal_code: notice.map(|(fc, _)| fc.to_string()),
            notice: notice.map(|(_, n)| n.to_string()),
        }
    }

    fn of_qr(id_pa: &Text35, station: &Text35, qr: &QrCode) -> Self {
        Self::of(id_pa, station, Some((&qr.fiscal_code, &qr.notice_number)))
    }

    /// Best effort, for a request the codec rejected: the first unprefixed elements' text.
    fn sniffed(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        RequestInfo {
            id_pa: sniff(&text, "idPA"),
            station: sniff(&text, "idStation"),
            fiscal_code: sniff(&text, "fiscalCode"),
            notice: sniff(&text, "noticeNumber"),
        }
    }
}

/// The text of the first element `tag`, if short and not blank.
fn sniff(text: &str, tag: &str) -> Option<String> {
    let value = crate::codec::lenient::first_text(text, tag)?;
    (!value.is_empty() && value.len() <= 64).then(|| value.to_string())
}

/// A request the mock serves: how to describe it and how the EC answers it.
pub(crate) trait Served: Message + Sized {
    type Response: KoResponse;
    fn info(&self) -> RequestInfo;
    fn answer(&self, ctx: &mut Ctx<'_>) -> Result<Self::Response, Refusal>;
}

/// What an answer may read and change.
pub(crate) struct Ctx<'a> {
    reg: &'a Registry,
    st: &'a mut State,
    body: &'a [u8],
    now: DateTime<Utc>,
}

/// The parts of a receipt (V1 or V2) the store needs.
struct ReceiptHead<'r> {
    id_pa: &'r str,
    station: &'r str,
    version: u8,
    receipt_id: &'r str,
    fiscal_code: &'r FiscalCode,
    notice: &'r NoticeNumber,
    outcome: Outcome,
    fingerprint: String,
}

impl<'a> Ctx<'a> {
    /// The configured EC `id_pa`, else `PAA_ID_DOMINIO_ERRATO`.
    fn ec(&self, id_pa: &str) -> Result<&'a Ec, Refusal> {
        let reg: &'a Registry = self.reg;
        reg.ec(id_pa).ok_or_else(|| {
            Refusal::new(
                PAA_ID_DOMINIO_ERRATO,
                format!("{id_pa} is not an EC of this mock"),
            )
        })
    }

    /// The position a verify or paGetPayment is about, if it can be paid.
    fn payable(&mut self, id_pa: &str, qr: &QrCode) -> Result<&mut Position, Refusal> {
        self.ec(id_pa)?;
        if qr.fiscal_code.as_str() != id_pa {
            return Err(Refusal::new(
                PAA_SEMANTICA,
                format!("qrCode/fiscalCode {} is not idPA {id_pa}", qr.fiscal_code),
            ));
        }
        let position = self
            .reg
            .position_mut(&mut self.st.positions, &qr.fiscal_code, &qr.notice_number)
            .map_err(Refusal::system)?
            .ok_or_else(|| {
                Refusal::new(
                    PAA_PAGAMENTO_SCONOSCIUTO,
                    format!("notice {} is unknown", qr.notice_number),
                )
            })?;
        position.check_payable()?;
        Ok(position)
    }

    /// paGetPayment(V2): the payment data, and the position in progress.
    fn hand_out<T>(
        &mut self,
        id_pa: &str,
        qr: &QrCode,
        data: fn(&Position) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let position = self.payable(id_pa, qr)?;
        let data = data(position)?;
        // A new paGetPayment voids the previous one: the position simply stays in progress.
        position.status = PositionStatus::InProgress;
        position.payment_requests += 1;
        Ok(data)
    }

    /// paSendRT(V2): stores the receipt for its station and closes the position it pays.
    fn receive(&mut self, head: ReceiptHead<'_>) -> Result<(), Refusal> {
        self.ec(head.id_pa)?;
        // Broadcast copies reach secondary ECs' stations with the owner's notice: only a
        // configured owner has a position to close (`None` otherwise).
        let position = self
            .reg
            .position_mut(&mut self.st.positions, head.fiscal_code, head.notice)
            .map_err(Refusal::system)?;
        let incoming = StoredReceipt {
            station: head.station.to_string(),
            id_pa: head.id_pa.to_string(),
            receipt_id: head.receipt_id.to_string(),
            notice_number: head.notice.to_string(),
            fiscal_code: head.fiscal_code.to_string(),
            outcome: head.outcome.to_string(),
            version: head.version,
            request_body: String::from_utf8_lossy(self.body).into_owned(),
            first_received: self.now,
            last_received: self.now,
            deliveries: 1,
            conflicts: Vec::new(),
            fingerprint: head.fingerprint,
        };
        if self.st.receipts.deliver(incoming) == Delivery::Conflict {
            return Err(Refusal::new(
                PAA_RECEIPT_DUPLICATA,
                format!(
                    "receipt {} was already delivered to station {} with a different content",
                    head.receipt_id, head.station
                ),
            ));
        }
        if let Some(p) = position
            && head.outcome == Outcome::Ok
        {
            p.status = PositionStatus::Paid;
            if !p.receipt_ids.iter().any(|id| id == head.receipt_id) {
                p.receipt_ids.push(head.receipt_id.to_string());
            }
        }
        Ok(())
    }

    /// paDemandPaymentNotice: a new payable position for a configured service of `id_pa`.
    fn demand(
        &mut self,
        id_pa: &str,
        id_servizio: &ServiceCode,
        payload: &ServicePayload,
    ) -> Result<&Position, Refusal> {
        let ec = self.ec(id_pa)?;
        let reg: &'a Registry = self.reg;
        let service = reg
            .services
            .iter()
            .find(|s| s.id == *id_servizio && s.fiscal_code == ec.fiscal_code)
            .ok_or_else(|| {
                Refusal::new(
                    PAA_SEMANTICA,
                    format!("service {id_servizio} is not offered by EC {id_pa}"),
                )
            })?;
        let description = match tassa_auto_plate(payload) {
            Some(plate) => Text140::truncated(&format!("{} {plate}", service.description)),
            None => service.description.clone(),
        };
        let notice = loop {
            self.st.demand_counter += 1;
            let n = demand_notice(&service.segregation_code, self.st.demand_counter)
                .map_err(Refusal::system)?;
            // Skip numbers a configured position already uses.
            if !self
                .st
                .positions
                .contains_key(&(ec.fiscal_code.to_string(), n.to_string()))
            {
                break n;
            }
        };
        let transfer = Transfer::to_ec(
            ec,
            0,
            service.amount,
            remittance(notice.iuv(), service.amount, &description),
        );
        let position = Position::new(
            ec,
            notice.clone(),
            PositionOrigin::Demand,
            description,
            reg.due_date.clone(),
            generated_debtor(&notice),
            vec![transfer],
        )
        .map_err(Refusal::system)?;
        Ok(self.st.positions.entry(position.key()).or_insert(position))
    }
}

/// The plate of a TassaAuto service document (already validated by the codec).
fn tassa_auto_plate(payload: &ServicePayload) -> Option<String> {
    if payload.schema() != Some(ServiceSchema::TassaAutomobilistica) {
        return None;
    }
    let doc = decode_document(payload.document()).ok()?;
    let mut r = XmlReader::new(&doc, Limits::DEFAULT);
    let root = r.root().ok()?;
    r.enter(root, AttrPolicy::None).ok()?;
    r.child_ns = NS_TASSA_AUTO;
    let Veicolo::ConTarga(vehicle) = TassaAuto::read(&mut r).ok()?.veicolo;
    Some(vehicle.veicolo_targa.to_string())
}

/// An element's content as the codec writes it: equal strings, equal content.
fn fingerprint<C: Content>(c: &C) -> String {
    let mut w = XmlWriter::with_capacity(2048);
    c.write(&mut w);
    w.into_string()
}

impl Served for PaVerifyPaymentNoticeReq {
    type Response = PaVerifyPaymentNoticeRes;

    fn info(&self) -> RequestInfo {
        RequestInfo::of_qr(&self.id_pa, &self.id_station, &self.qr_code)
    }

    fn answer(&self, ctx: &mut Ctx<'_>) -> Result<Self::Response, Refusal> {
        let p = ctx.payable(&self.id_pa, &self.qr_code)?;
        Ok(PaVerifyPaymentNoticeRes {
            outcome: Outcome::Ok,
            fault: None,
            payment_list: Some(p.option_list()),
            payment_description: Some(p.description.clone()),
            fiscal_code_pa: Some(p.fiscal_code.clone()),
            company_name: Some(p.company_name.clone()),
            office_name: p.office_name.clone(),
        })
    }
}

impl Served for PaDemandPaymentNoticeRequest {
    type Response = PaDemandPaymentNoticeResponse;

    fn info(&self) -> RequestInfo {
        RequestInfo::of(&self.id_pa, &self.id_station, None)
    }

    fn answer(&self, ctx: &mut Ctx<'_>) -> Result<Self::Response, Refusal> {
        let p = ctx.demand(
            &self.id_pa,
            &self.id_servizio,
            &self.dati_specifici_servizio_request,
        )?;
        Ok(PaDemandPaymentNoticeResponse {
            outcome: Outcome::Ok,
            fault: None,
            qr_code: Some(QrCode {
                fiscal_code: p.fiscal_code.clone(),
                notice_number: p.notice.clone(),
            }),
            payment_list: Some(p.option_list()),
            payment_description: Some(p.description.clone()),
            fiscal_code_pa: Some(p.fiscal_code.clone()),
            company_name: Some(p.company_name.clone()),
            office_name: p.office_name.clone(),
        })
    }
}

/// paGetPayment and paGetPaymentV2 differ only in their types and the payment data's version.
macro_rules! served_get_payment {
    ($req:ty, $res:ident, $data:path) => {
        impl Served for $req {
            type Response = $res;

            fn info(&self) -> RequestInfo {
                RequestInfo::of_qr(&self.id_pa, &self.id_station, &self.qr_code)
            }

            fn answer(&self, ctx: &mut Ctx<'_>) -> Result<$res, Refusal> {
                let data = ctx.hand_out(&self.id_pa, &self.qr_code, $data)?;
                Ok($res {
                    outcome: Outcome::Ok,
                    fault: None,
                    data: Some(data),
                })
            }
        }
    };
}

served_get_payment!(PaGetPaymentReq, PaGetPaymentRes, Position::payment_v1);
served_get_payment!(
    PaGetPaymentV2Request,
    PaGetPaymentV2Response,
    Position::payment_v2
);

/// paSendRT and paSendRTV2 differ only in their types and version number.
macro_rules! served_send_rt {
    ($req:ty, $res:ident, $version:literal) => {
        impl Served for $req {
            type Response = $res;

            fn info(&self) -> RequestInfo {
                let r = &self.receipt;
                RequestInfo::of(
                    &self.id_pa,
                    &self.id_station,
                    Some((&r.fiscal_code, &r.notice_number)),
                )
            }

            fn answer(&self, ctx: &mut Ctx<'_>) -> Result<$res, Refusal> {
                let r = &self.receipt;
                ctx.receive(ReceiptHead {
                    id_pa: &self.id_pa,
                    station: &self.id_station,
                    version: $version,
                    receipt_id: &r.receipt_id,
                    fiscal_code: &r.fiscal_code,
                    notice: &r.notice_number,
                    outcome: r.outcome,
                    fingerprint: fingerprint(r),
                })?;
                Ok($res {
                    outcome: Outcome::Ok,
                    fault: None,
                })
            }
        }
    };
}

served_send_rt!(PaSendRtReq, PaSendRtRes, 1);
served_send_rt!(PaSendRtV2Request, PaSendRtV2Response, 2);

/// Answers one SOAP request.
pub(crate) async fn handle(
    mock: &MockEc,
    path: &str,
    soap_action: Option<&str>,
    query: &str,
    body: &[u8],
) -> Reply {
    match detect_operation(soap_action, Some(query), body) {
        Some(Operation::PaVerifyPaymentNotice) => {
            serve::<PaVerifyPaymentNoticeReq>(mock, path, body).await
        }
        Some(Operation::PaGetPayment) => serve::<PaGetPaymentReq>(mock, path, body).await,
        Some(Operation::PaGetPaymentV2) => serve::<PaGetPaymentV2Request>(mock, path, body).await,
        Some(Operation::PaSendRt) => serve::<PaSendRtReq>(mock, path, body).await,
        Some(Operation::PaSendRtV2) => serve::<PaSendRtV2Request>(mock, path, body).await,
        Some(Operation::PaDemandPaymentNotice) => {
            serve::<PaDemandPaymentNoticeRequest>(mock, path, body).await
        }
        other => {
            // No response element fits: a SOAP Fault is the only answer SOAP itself defines.
            let why = match other {
                Some(op) => format!("{} is not an operation of a creditor entity's station", op.soap_action()),
                None => "neither SOAPAction, the soapAction parameter nor the Body names a paForNode operation".into(),
            };
            let info = RequestInfo::sniffed(body);
            let seq = mock.open_record(path, other, &info, Some(why.clone()), None);
            mock.close(seq, other, &info, Answered::soap_fault("Client", &why))
        }
    }
}

async fn serve<R: Served>(mock: &MockEc, path: &str, body: &[u8]) -> Reply {
    let op = Some(R::OPERATION);
    let request = match read_message::<R>(body, Limits::DEFAULT) {
        Ok(Body::Message(m)) => m,
        rejected => {
            let violation = match rejected {
                Err(v) => v.to_string(),
                _ => "the Body holds a SOAP Fault, not a request".to_string(),
            };
            let info = RequestInfo::sniffed(body);
            let refusal = Refusal::new(PAA_SINTASSI_EXTRAXSD, violation.clone());
            let response = R::Response::ko(refusal.fault(&mock.fault_id(info.id_pa.as_deref())));
            let seq = mock.open_record(path, op, &info, Some(violation), None);
            return mock.close(seq, op, &info, Answered::message(&response));
        }
    };
    let info = request.info();
    let decision = mock.decide(R::OPERATION, &info);
    let seq = mock.open_record(path, op, &info, None, decision.delay);
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    let answered = match decision.plan {
        Plan::Normal => mock.normal(&request, body, &info),
        Plan::Invalid => mock.normal(&request, body, &info).corrupted(),
        Plan::Fault(code) => {
            let refusal = Refusal::new(
                &code,
                "answer forced by a script rule or the notice's scenario",
            );
            Answered::message(&R::Response::ko(
                refusal.fault(&mock.fault_id(info.id_pa.as_deref())),
            ))
        }
        Plan::Garbage => Answered::garbage(),
        Plan::SoapFault => Answered::soap_fault("Server", "mock EC: simulated SOAP fault"),
        Plan::Http500 => Answered::http_500(),
    };
    mock.close(seq, op, &info, answered)
}

impl MockEc {
    /// The fault `id`: the EC's fiscal code when the request names a configured one.
    fn fault_id(&self, id_pa: Option<&str>) -> String {
        id_pa
            .and_then(|id| self.inner.registry.ec(id))
            .map_or_else(|| MOCK_ID.to_string(), |ec| ec.fiscal_code.to_string())
    }

    /// A script rule's plan, else the notice's scenario (generated positions of verify and
    /// paGetPayment only), else the normal answer.
    fn decide(&self, op: Operation, info: &RequestInfo) -> Decision {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(d) = take_match(
            &mut st.scripts,
            op,
            info.notice.as_deref(),
            info.station.as_deref(),
        ) {
            return d;
        }
        let by_scenario = matches!(
            op,
            Operation::PaVerifyPaymentNotice | Operation::PaGetPayment | Operation::PaGetPaymentV2
        );
        if by_scenario
            && let (Some(fc), Some(notice)) = (&info.fiscal_code, &info.notice)
            && let Some(d) = self
                .inner
                .registry
                .scenario(&st.positions, fc, notice)
                .and_then(|s| s.decision())
        {
            return d;
        }
        Decision::normal()
    }

    /// What the EC's state says.
    fn normal<R: Served>(&self, request: &R, body: &[u8], info: &RequestInfo) -> Answered {
        let answer = {
            let mut guard = self.lock();
            let mut ctx = Ctx {
                reg: &self.inner.registry,
                st: &mut guard,
                body,
                now: Utc::now(),
            };
            request.answer(&mut ctx)
        };
        let response = answer
            .unwrap_or_else(|r| R::Response::ko(r.fault(&self.fault_id(info.id_pa.as_deref()))));
        Answered::message(&response)
    }

    /// Starts the record of a request; its answer is filled in by [`MockEc::close`].
    fn open_record(
        &self,
        path: &str,
        op: Option<Operation>,
        info: &RequestInfo,
        violation: Option<String>,
        delay: Option<Duration>,
    ) -> u64 {
        let mut st = self.lock();
        st.next_seq += 1;
        let seq = st.next_seq;
        if st.requests.len() >= MAX_REQUESTS {
            st.requests.pop_front();
        }
        st.requests.push_back(RequestRecord {
            seq,
            time: Utc::now(),
            path: path.to_string(),
            operation: op.map(|o| o.soap_action().to_string()),
            station: info.station.clone(),
            id_pa: info.id_pa.clone(),
            notice_number: info.notice.clone(),
            valid: violation.is_none(),
            violation,
            answer: AnswerKind::Pending,
            fault_code: None,
            delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
        seq
    }

    /// Completes the record, logs the request and hands back the reply.
    fn close(
        &self,
        seq: u64,
        op: Option<Operation>,
        info: &RequestInfo,
        answered: Answered,
    ) -> Reply {
        if let Some(r) = self.lock().requests.iter_mut().rev().find(|r| r.seq == seq) {
            r.answer = answered.kind;
            r.fault_code.clone_from(&answered.fault_code);
        }
        // One line per request: DEBUG, or a node under load fills the disk (GET /requests
        // lists the same records, by `seq`).
        tracing::debug!(
            seq,
            operation = op.map_or("unknown", Operation::soap_action),
            station = info.station.as_deref().unwrap_or("-"),
            notice = info.notice.as_deref().unwrap_or("-"),
            answer = ?answered.kind,
            fault_code = answered.fault_code.as_deref().unwrap_or("-"),
            "mock EC request"
        );
        answered.reply
    }
}

/// Makes a response schema-invalid the way broken ECs do: a third decimal on the first amount
/// (`10.00` → `10.003`), or, in a response without amounts, an outcome that is neither OK nor KO.
fn corrupt(xml: &str) -> String {
    let amount_end = ["<amount>", "<paymentAmount>"]
        .iter()
        .filter_map(|tag| xml.find(tag).map(|i| i + tag.len()))
        .min()
        .and_then(|start| xml.get(start..)?.find('<').map(|j| start + j));
    match amount_end {
        Some(at) => {
            let mut s = xml.to_string();
            s.insert(at, '3');
            s
        }
        None => xml
            .replacen("<outcome>OK</outcome>", "<outcome>KKL</outcome>", 1)
            .replacen("<outcome>KO</outcome>", "<outcome>KKL</outcome>", 1),
    }
}

/// A SOAP 1.1 envelope holding a `soapenv:Fault` with `faultcode` `soapenv:<code>`.
fn soap_fault_envelope(code: &str, text: &str) -> String {
    let fault = SoapFault {
        faultcode: QNameValue(format!("soapenv:{code}")),
        faultstring: XsdString::truncated(text),
        faultactor: None,
        detail: None,
    };
    let mut w = XmlWriter::with_capacity(512);
    w.raw("<soapenv:Envelope xmlns:soapenv=\"");
    w.raw(NS_SOAP);
    w.raw("\"><soapenv:Body><soapenv:Fault>");
    fault.write(&mut w);
    w.raw("</soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    w.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_breaks_the_first_amount_or_the_outcome() {
        let ok = "<outcome>OK</outcome><paymentList><x><amount>10.00</amount></x></paymentList>";
        assert_eq!(
            corrupt(ok),
            "<outcome>OK</outcome><paymentList><x><amount>10.003</amount></x></paymentList>"
        );
        assert_eq!(corrupt("<outcome>KO</outcome>"), "<outcome>KKL</outcome>");
    }

    #[test]
    fn soap_fault_reads_back() {
        let xml = soap_fault_envelope("Server", "a < b");
        assert!(matches!(
            read_message::<PaGetPaymentRes>(xml.as_bytes(), Limits::DEFAULT),
            Ok(Body::Fault(_))
        ));
    }

    #[test]
    fn sniff_is_lenient() {
        let info = RequestInfo::sniffed(
            b"<x><idPA>77777777777</idPA><idStation> s </idStation><noticeNumber></noticeNumber>",
        );
        assert_eq!(info.id_pa.as_deref(), Some("77777777777"));
        assert_eq!(info.station.as_deref(), Some("s"));
        assert_eq!(info.notice, None);
    }
}
