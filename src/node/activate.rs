//! activatePaymentNotice(V2) → paGetPayment(V2): the notice is locked and a token issued.

use std::time::Duration;

use super::{Node, psp_ref};
use crate::codec::Message;
use crate::codec::node_for_psp::{ActivatePaymentNoticeReq, ActivatePaymentNoticeV2Request};
use crate::codec::pa_for_node::{
    PaGetPaymentReq, PaGetPaymentRes, PaGetPaymentV2Request, PaGetPaymentV2Response, PaymentPaV2,
};
use crate::codec::types::{IdempotencyKey, Text35};
use crate::codec::{Operation, common::QrCode};
use crate::engine::{
    ActivateCommand, ActivateStep, ActivationRequest, NoticeKey, Reply, StationRef, Version,
    data_from_v1,
};
use crate::fault::NodeFault;
use crate::journal::Keys;
use crate::registry::{Caller, Route};

/// What V1 and V2 activations have in common.
struct Activation<'a> {
    version: Version,
    qr: &'a QrCode,
    request: ActivationRequest,
}

impl Node {
    pub(super) async fn activate_v1(
        &self,
        r: &ActivatePaymentNoticeReq,
        caller: Caller<'_>,
    ) -> (Reply, Keys) {
        let request = ActivationRequest {
            amount: r.amount,
            due_date: r.due_date.clone(),
            payment_note: r.payment_note.clone(),
            expiration_ms: r.expiration_time.map(|e| e.millis()),
            payment_method: None,
            touch_point: None,
        };
        let a = Activation {
            version: Version::V1,
            qr: &r.qr_code,
            request,
        };
        self.activate(
            r,
            (&r.id_psp, &r.id_broker_psp, &r.id_channel),
            r.idempotency_key.as_ref(),
            a,
            caller,
        )
        .await
    }

    pub(super) async fn activate_v2(
        &self,
        r: &ActivatePaymentNoticeV2Request,
        caller: Caller<'_>,
    ) -> (Reply, Keys) {
        let request = ActivationRequest {
            amount: r.amount,
            due_date: r.due_date.clone(),
            payment_note: r.payment_note.clone(),
            expiration_ms: r.expiration_time.map(|e| e.millis()),
            payment_method: r.payment_method,
            touch_point: r.touch_point,
        };
        let a = Activation {
            version: Version::V2,
            qr: &r.qr_code,
            request,
        };
        self.activate(
            r,
            (&r.id_psp, &r.id_broker_psp, &r.id_channel),
            r.idempotency_key.as_ref(),
            a,
            caller,
        )
        .await
    }

    async fn activate<M: Message>(
        &self,
        msg: &M,
        ids: (&Text35, &Text35, &Text35),
        key: Option<&IdempotencyKey>,
        a: Activation<'_>,
        caller: Caller<'_>,
    ) -> (Reply, Keys) {
        let op = M::OPERATION;
        let notice = NoticeKey::from_qr(a.qr);
        let mut keys = Keys::psp(ids.0, ids.2).notice(&notice);
        let ctx = self.request_ctx(msg, psp_ref(ids.0, ids.1, ids.2), key);
        if let Some(reply) = self.idempotent_reply(&ctx).await {
            return (reply, keys);
        }
        let registry = self.registry();
        let checks = registry
            .require_psp_activation(&caller)
            .and_then(|_| registry.route_notice(a.qr));
        let route = match checks {
            Ok(route) => route,
            Err(f) => return (self.refuse(&ctx, f).await, keys),
        };
        let station_id = Text35::truncated(&route.station.id);
        keys.station = Some(station_id.clone());
        if let Err(f) = self.hydrate_notice(&notice).await {
            return (self.refuse(&ctx, f).await, keys);
        }
        let token = self.tokens.issue(self.now());
        let cmd = ActivateCommand {
            ctx: ctx.clone(),
            version: a.version,
            notice: notice.clone(),
            station: StationRef {
                id: station_id,
                broker: Text35::truncated(&route.station.broker),
                version: Version::from_number(route.station.version),
            },
            token: token.clone(),
            request: a.request.clone(),
            outcome_deadline_ms: caller
                .channel
                .outcome_deadline_ms
                .unwrap_or(registry.timings().outcome_deadline_ms),
        };
        let (queued, done) = {
            let mut engine = self.engine();
            let now = self.now();
            match engine.activate(registry.timings(), cmd, now) {
                ActivateStep::Done(step) => (self.queue(engine, step), true),
                ActivateStep::CallEc(pre) => (self.queue(engine, pre), false),
            }
        };
        if done {
            return (self.reply(op, queued).await, keys);
        }
        // An expired token found on the notice is cancelled durably before the new activation.
        match self.finish(queued).await {
            Ok(_) => {}
            Err(super::Failed::Conflict) => {
                self.engine().activation_abandoned(&token);
                return (self.conflicted(op), keys);
            }
            Err(super::Failed::Fault(f)) => {
                let queued =
                    self.run(|e, now| e.activation_failed(registry.timings(), &token, &f, now));
                return (self.reply(op, queued).await, keys);
            }
        }
        let data = self.get_payment(&route, a.qr, &a.request, &keys).await;
        crate::failpoints::failpoint!("activate.ec_answered", data.is_ok());
        let queued = match data {
            Ok(data) => self.run(|e, now| e.activation_completed(&registry, &token, data, now)),
            Err(f) => self.run(|e, now| e.activation_failed(registry.timings(), &token, &f, now)),
        };
        let reply = self.reply(op, queued).await;
        if reply.fault.is_none() {
            keys.token = Some(token);
        }
        (reply, keys)
    }

    /// paGetPayment or paGetPaymentV2, as the station's version says (whatever the PSP used).
    async fn get_payment(
        &self,
        route: &Route<'_>,
        qr: &QrCode,
        a: &ActivationRequest,
        keys: &Keys,
    ) -> Result<PaymentPaV2, NodeFault> {
        let (id_pa, id_broker_pa, id_station) = (
            Text35::truncated(qr.fiscal_code.as_str()),
            Text35::truncated(&route.station.broker),
            Text35::truncated(&route.station.id),
        );
        let timeout = Duration::from_millis(self.registry().station_timeout_ms(route.station));
        let missing_data = || {
            NodeFault::StazioneIntPaErroreResponse("data missing in the paGetPayment answer".into())
        };
        if route.station.version >= 2 {
            let req = PaGetPaymentV2Request {
                id_pa,
                id_broker_pa,
                id_station,
                qr_code: qr.clone(),
                amount: Some(a.amount),
                payment_note: a.payment_note.clone(),
                transfer_type: None,
                due_date: a.due_date.clone(),
            };
            let (result, ex) = self
                .ec
                .call::<_, PaGetPaymentV2Response>(route.station, &req, timeout)
                .await;
            let result = result.and_then(|r| r.data.ok_or_else(missing_data));
            self.journal_ec(
                Operation::PaGetPaymentV2,
                &route.station.id,
                keys,
                &ex,
                result.as_ref().map(drop),
            );
            result
        } else {
            let req = PaGetPaymentReq {
                id_pa,
                id_broker_pa,
                id_station,
                qr_code: qr.clone(),
                amount: Some(a.amount),
                payment_note: a.payment_note.clone(),
                transfer_type: None,
                due_date: a.due_date.clone(),
            };
            let (result, ex) = self
                .ec
                .call::<_, PaGetPaymentRes>(route.station, &req, timeout)
                .await;
            let result = result.and_then(|r| r.data.ok_or_else(missing_data));
            self.journal_ec(
                Operation::PaGetPayment,
                &route.station.id,
                keys,
                &ex,
                result.as_ref().map(drop),
            );
            Ok(data_from_v1(result?, &route.ec.name))
        }
    }
}
