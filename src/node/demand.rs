//! demandPaymentNotice → paDemandPaymentNotice: a spontaneous payment. The catalogue resolves
//! `idSoggettoServizio` to the service and its EC; the EC creates the notice; the node remembers
//! the notice was created this way (its payments get the outcome deadline).

use std::time::Duration;

use super::verify::psp_option;
use super::{Node, psp_ref};
use crate::codec::node_for_psp::{
    DemandPaymentNoticeRequest, DemandPaymentNoticeResponse, PaymentOptionsDescriptionList,
};
use crate::codec::pa_for_node::{PaDemandPaymentNoticeRequest, PaDemandPaymentNoticeResponse};
use crate::codec::schema::Bounded;
use crate::codec::service::ServiceSchema;
use crate::codec::types::{FiscalCode, Outcome, ServiceCode, Text35, Text210};
use crate::codec::{Operation, write_envelope};
use crate::engine::{NoticeKey, Reply};
use crate::fault::NodeFault;
use crate::journal::Keys;

impl Node {
    pub(super) async fn demand(&self, r: &DemandPaymentNoticeRequest) -> (Reply, Keys) {
        let mut keys = Keys::psp(&r.id_psp, &r.id_channel);
        let ctx = self.request_ctx(r, psp_ref(&r.id_psp, &r.id_broker_psp, &r.id_channel), None);
        let registry = self.registry();
        let svc = match registry.resolve_service(&r.id_soggetto_servizio, self.today()) {
            Ok(s) => s,
            Err(f) => return (self.refuse(&ctx, f).await, keys),
        };
        keys.station = Some(Text35::truncated(&svc.route.station.id));
        keys.fiscal_code = FiscalCode::new(svc.route.ec.fiscal_code.as_str()).ok();
        // The codec checked the document against the schema it declares; here it must be the
        // schema the catalogue names for this service.
        let expected = ServiceSchema::from_xsd_name(&svc.service.xsd);
        if r.dati_specifici_servizio.schema() != expected || expected.is_none() {
            let fault = NodeFault::SintassiXsd(format!(
                "datiSpecificiServizio is not a {} document",
                svc.service.xsd
            ));
            return (self.refuse(&ctx, fault).await, keys);
        }
        let req = PaDemandPaymentNoticeRequest {
            id_pa: Text35::truncated(&svc.route.ec.fiscal_code),
            id_broker_pa: Text35::truncated(&svc.route.station.broker),
            id_station: Text35::truncated(&svc.route.station.id),
            id_servizio: ServiceCode::truncated(&svc.service.id),
            id_soggetto_servizio: r.id_soggetto_servizio.clone(),
            dati_specifici_servizio_request: r.dati_specifici_servizio.clone(),
        };
        let timeout = Duration::from_millis(registry.station_timeout_ms(svc.route.station));
        let (result, exchange) = self
            .ec
            .call::<_, PaDemandPaymentNoticeResponse>(svc.route.station, &req, timeout)
            .await;
        let result = result.and_then(to_psp);
        // The notice the EC created keys the exchange too, so that it is part of the payment's story.
        if let Some(qr) = result.as_ref().ok().and_then(|r| r.qr_code.as_ref()) {
            keys = keys.notice(&NoticeKey::from_qr(qr));
        }
        self.journal_ec(
            Operation::PaDemandPaymentNotice,
            &svc.route.station.id,
            &keys,
            &exchange,
            result.as_ref().map(drop),
        );
        let res = match result {
            Ok(res) => res,
            Err(f) => return (self.refuse(&ctx, f).await, keys),
        };
        let Some(qr) = &res.qr_code else {
            unreachable!("to_psp requires qrCode")
        };
        let notice = NoticeKey::from_qr(qr);
        if let Err(f) = self.hydrate_notice(&notice).await {
            return (self.refuse(&ctx, f).await, keys);
        }
        let queued = self.run(|e, now| e.record_demand(&notice, now));
        match self.finish(queued).await {
            Ok(_) => (Reply::ok(write_envelope(&res)), keys),
            Err(super::Failed::Conflict) => (self.conflicted(ctx.operation), keys),
            Err(super::Failed::Fault(f)) => (self.refuse(&ctx, f).await, keys),
        }
    }
}

/// The node's rules on an OK paDemandPaymentNotice answer: qrCode, the payment option,
/// description, fiscal code and company name must be there (the official BDD tests of
/// paDemandPaymentNoticeResponse answer PPT_STAZIONE_INT_PA_ERRORE_RESPONSE without them).
fn to_psp(res: PaDemandPaymentNoticeResponse) -> Result<DemandPaymentNoticeResponse, NodeFault> {
    let missing = |what: &str| {
        NodeFault::StazioneIntPaErroreResponse(format!(
            "{what} missing in paDemandPaymentNoticeResponse"
        ))
    };
    let qr = res.qr_code.ok_or_else(|| missing("qrCode"))?;
    let list = res.payment_list.ok_or_else(|| missing("paymentList"))?;
    let description = res
        .payment_description
        .ok_or_else(|| missing("paymentDescription"))?;
    let fiscal_code = res.fiscal_code_pa.ok_or_else(|| missing("fiscalCodePA"))?;
    let company = res.company_name.ok_or_else(|| missing("companyName"))?;
    Ok(DemandPaymentNoticeResponse {
        outcome: Outcome::Ok,
        fault: None,
        qr_code: Some(qr),
        payment_list: Some(PaymentOptionsDescriptionList {
            payment_option_description: Bounded::one(psp_option(&list.payment_option_description)),
        }),
        payment_description: Some(Text210::truncated(&description)),
        fiscal_code_pa: Some(fiscal_code),
        company_name: Some(company),
        office_name: res.office_name,
    })
}
