//! verifyPaymentNotice → paVerifyPaymentNotice: what the notice is worth. No side effects.

use std::time::Duration;

use super::{Node, psp_ref};
use crate::codec::node_for_psp::{
    PaymentOptionDescription, PaymentOptionsDescriptionList, VerifyPaymentNoticeReq,
    VerifyPaymentNoticeRes,
};
use crate::codec::pa_for_node::{
    PaVerifyPaymentNoticeReq, PaVerifyPaymentNoticeRes, PaymentOptionDescriptionPa,
};
use crate::codec::schema::Bounded;
use crate::codec::types::{Outcome, Text35, Text210};
use crate::codec::{Operation, write_envelope};
use crate::engine::{NoticeKey, Reply};
use crate::fault::NodeFault;
use crate::journal::Keys;
use crate::registry::Caller;

impl Node {
    pub(super) async fn verify(
        &self,
        r: &VerifyPaymentNoticeReq,
        caller: Caller<'_>,
    ) -> (Reply, Keys) {
        let key = NoticeKey::from_qr(&r.qr_code);
        let mut keys = Keys::psp(&r.id_psp, &r.id_channel).notice(&key);
        let ctx = self.request_ctx(r, psp_ref(&r.id_psp, &r.id_broker_psp, &r.id_channel), None);
        let registry = self.registry();
        let checks = registry
            .require_psp_activation(&caller)
            .and_then(|_| registry.route_notice(&r.qr_code));
        let route = match checks {
            Ok(route) => route,
            Err(f) => return (self.refuse(&ctx, f).await, keys),
        };
        keys.station = Some(Text35::truncated(&route.station.id));
        let state = match self.hydrate_notice(&key).await {
            Ok(()) => {
                let engine = self.engine();
                engine.payable(&key, registry.timings().expiry, self.now())
            }
            Err(f) => Err(f),
        };
        if let Err(f) = state {
            return (self.refuse(&ctx, f).await, keys);
        }
        let req = PaVerifyPaymentNoticeReq {
            id_pa: Text35::truncated(key.fiscal_code.as_str()),
            id_broker_pa: Text35::truncated(&route.station.broker),
            id_station: Text35::truncated(&route.station.id),
            qr_code: r.qr_code.clone(),
        };
        let timeout = Duration::from_millis(registry.station_timeout_ms(route.station));
        let (result, exchange) = self
            .ec
            .call::<_, PaVerifyPaymentNoticeRes>(route.station, &req, timeout)
            .await;
        let result = result.and_then(to_psp);
        self.journal_ec(
            Operation::PaVerifyPaymentNotice,
            &route.station.id,
            &keys,
            &exchange,
            result.as_ref().map(drop),
        );
        match result {
            Ok(res) => (Reply::ok(write_envelope(&res)), keys),
            Err(f) => (self.refuse(&ctx, f).await, keys),
        }
    }
}

/// The EC's single payment option, as the PSP sees it: `detailDescription` becomes
/// `paymentNote`, `allCCP` is dropped.
pub(super) fn psp_option(o: &PaymentOptionDescriptionPa) -> PaymentOptionDescription {
    PaymentOptionDescription {
        amount: o.amount,
        options: o.options,
        due_date: o.due_date.clone(),
        payment_note: o.detail_description.as_ref().map(|d| Text210::truncated(d)),
    }
}

/// The node's rules on an OK paVerifyPaymentNotice answer (SANP, "Integrazione tramite API
/// sincrone": `paymentList` is required, and every other element but `officeName`).
fn to_psp(res: PaVerifyPaymentNoticeRes) -> Result<VerifyPaymentNoticeRes, NodeFault> {
    let missing = |what: &str| {
        NodeFault::StazioneIntPaErroreResponse(format!(
            "{what} missing in paVerifyPaymentNoticeRes"
        ))
    };
    let list = res.payment_list.ok_or_else(|| missing("paymentList"))?;
    let description = res
        .payment_description
        .ok_or_else(|| missing("paymentDescription"))?;
    let fiscal_code = res.fiscal_code_pa.ok_or_else(|| missing("fiscalCodePA"))?;
    let company = res.company_name.ok_or_else(|| missing("companyName"))?;
    Ok(VerifyPaymentNoticeRes {
        outcome: Outcome::Ok,
        fault: None,
        payment_list: Some(PaymentOptionsDescriptionList {
            payment_option_description: Bounded::one(psp_option(&list.payment_option_description)),
        }),
        payment_description: Some(Text210::truncated(&description)),
        fiscal_code_pa: Some(fiscal_code),
        company_name: Some(company),
        office_name: res.office_name,
        standin: None,
    })
}
