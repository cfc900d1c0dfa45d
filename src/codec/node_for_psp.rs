//! nodeForPsp (`http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd`): what PSPs send the node
//! and what the node answers. V1 verify/activate/outcome use `…Req`/`…Res`, everything else
//! `…Request`/`…Response`.

use super::common::*;
use super::schema::Bounded;
use super::service::ServicePayload;
use super::types::*;
use crate::{xml_choice, xml_sequence};

xml_sequence! {
    /// `ctPaymentOptionDescription`: one way to pay the notice, as shown to the PSP.
    pub struct PaymentOptionDescription {
        pub amount: AmountNotZero = "amount",
        pub options: AmountOption = "options",
        pub due_date: Option<IsoDate> = "dueDate",
        pub payment_note: Option<Text210> = "paymentNote",
    }
}

xml_sequence! {
    /// `ctPaymentOptionsDescriptionList`: 1..5 options.
    pub struct PaymentOptionsDescriptionList {
        pub payment_option_description: Bounded<PaymentOptionDescription, 1, 5> = "paymentOptionDescription",
    }
}

xml_sequence! {
    /// `ctPaymentOptionBollettinoDescription` (verificaBollettino).
    pub struct PaymentOptionBollettinoDescription {
        pub amount: AmountNotZero = "amount",
        pub options: AmountOption = "options",
        pub due_date: Option<IsoDate> = "dueDate",
        pub payment_note: Option<Text210> = "paymentNote",
        pub all_ccp: bool = "allCCP",
    }
}

xml_sequence! {
    /// `ctPaymentOptionsBollettinoDescriptionList`.
    pub struct PaymentOptionsBollettinoDescriptionList {
        pub payment_option_description: Bounded<PaymentOptionBollettinoDescription, 1, 5> = "paymentOptionDescription",
    }
}

xml_sequence! {
    /// `ctTransferPSP` (activatePaymentNotice V1): an IBAN is required, no `transferCategory`.
    pub struct TransferPsp {
        pub id_transfer: IdTransfer = "idTransfer",
        pub transfer_amount: Amount = "transferAmount",
        pub fiscal_code_pa: FiscalCode = "fiscalCodePA",
        pub iban: Iban = "IBAN",
        pub remittance_information: Text140 = "remittanceInformation",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_sequence! {
    /// `ctTransferListPSP`.
    pub struct TransferListPsp {
        pub transfer: Bounded<TransferPsp, 1, 5> = "transfer",
    }
}

xml_choice! {
    /// The optional `IBAN | richiestaMarcaDaBollo` choice of `ctTransferPSPV2`.
    pub enum PspCreditAccount {
        Iban(Iban) = "IBAN",
        Stamp(RichiestaMarcaDaBollo) = "richiestaMarcaDaBollo",
    }
}

xml_sequence! {
    /// `ctTransferPSPV2` (activatePaymentNoticeV2).
    pub struct TransferPspV2 {
        pub id_transfer: IdTransfer = "idTransfer",
        pub transfer_amount: Amount = "transferAmount",
        pub fiscal_code_pa: FiscalCode = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub account: Option<PspCreditAccount> = "IBAN|richiestaMarcaDaBollo",
        pub remittance_information: Text140 = "remittanceInformation",
        pub transfer_category: Option<Text140> = "transferCategory",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_sequence! {
    /// `ctTransferListPSPV2`.
    pub struct TransferListPspV2 {
        pub transfer: Bounded<TransferPspV2, 1, 5> = "transfer",
    }
}

xml_sequence! {
    /// `ctMarcaDaBollo`: a digital stamp bought for one transfer of one token.
    pub struct MarcaDaBollo {
        pub payment_token: PaymentToken = "paymentToken",
        pub id_transfer: IdTransfer = "idTransfer",
        pub mbd_attachment: Base64Binary = "MBDAttachment",
    }
}

xml_sequence! {
    /// `ctListaMarcheDaBollo`: up to 25 stamps.
    pub struct ListaMarcheDaBollo {
        pub marca_da_bollo: Bounded<MarcaDaBollo, 1, 25> = "marcaDaBollo",
    }
}

xml_sequence! {
    /// `ctOutcomeDetails` (sendPaymentOutcome).
    pub struct OutcomeDetails {
        pub payment_method: PaymentMethod = "paymentMethod",
        pub payment_channel: Option<PaymentChannel> = "paymentChannel",
        pub fee: Amount = "fee",
        pub payer: Option<Subject> = "payer",
        pub application_date: IsoDate = "applicationDate",
        pub transfer_date: IsoDate = "transferDate",
    }
}

xml_sequence! {
    /// `ctOutcomeDetailsV2` (sendPaymentOutcomeV2).
    pub struct OutcomeDetailsV2 {
        pub payment_method: PaymentMethod = "paymentMethod",
        pub payment_channel: Option<PaymentChannel> = "paymentChannel",
        pub fee: Amount = "fee",
        pub primary_ci_incurred_fee: Option<Amount> = "primaryCiIncurredFee",
        pub id_bundle: Option<Text70> = "idBundle",
        pub id_ci_bundle: Option<Text70> = "idCiBundle",
        pub payer: Option<Subject> = "payer",
        pub application_date: IsoDate = "applicationDate",
        pub transfer_date: IsoDate = "transferDate",
        pub marche_da_bollo: Option<ListaMarcheDaBollo> = "marcheDaBollo",
    }
}

xml_sequence! {
    /// `stPaymentTokens` (a complex type despite its name): 1..5 tokens, a cart.
    pub struct PaymentTokens {
        pub payment_token: Bounded<PaymentToken, 1, 5> = "paymentToken",
    }
}

xml_sequence! {
    /// `verifyPaymentNoticeReq`: what the notice is worth; no side effects.
    pub struct VerifyPaymentNoticeReq {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub qr_code: QrCode = "qrCode",
    }
}

xml_sequence! {
    /// `verifyPaymentNoticeRes`.
    pub struct VerifyPaymentNoticeRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub payment_list: Option<PaymentOptionsDescriptionList> = "paymentList",
        pub payment_description: Option<Text210> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub standin: Option<bool> = "standin",
    }
}

xml_sequence! {
    /// `activatePaymentNoticeReq`: lock the notice and get a payment token.
    pub struct ActivatePaymentNoticeReq {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub idempotency_key: Option<IdempotencyKey> = "idempotencyKey",
        pub qr_code: QrCode = "qrCode",
        pub expiration_time: Option<ExpirationTime> = "expirationTime",
        pub amount: Amount = "amount",
        pub due_date: Option<IsoDate> = "dueDate",
        pub payment_note: Option<Text210> = "paymentNote",
    }
}

xml_sequence! {
    /// `activatePaymentNoticeRes`.
    pub struct ActivatePaymentNoticeRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub total_amount: Option<Amount> = "totalAmount",
        pub payment_description: Option<Text140> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub payment_token: Option<PaymentToken> = "paymentToken",
        pub transfer_list: Option<TransferListPsp> = "transferList",
        pub creditor_reference_id: Option<Text35> = "creditorReferenceId",
        pub standin: Option<bool> = "standin",
    }
}

xml_sequence! {
    /// `activatePaymentNoticeV2Request`.
    pub struct ActivatePaymentNoticeV2Request {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub idempotency_key: Option<IdempotencyKey> = "idempotencyKey",
        pub qr_code: QrCode = "qrCode",
        pub expiration_time: Option<ExpirationTime> = "expirationTime",
        pub amount: Amount = "amount",
        pub due_date: Option<IsoDate> = "dueDate",
        pub payment_note: Option<Text210> = "paymentNote",
        pub payment_method: Option<PaymentMethodFee> = "paymentMethod",
        pub touch_point: Option<TouchpointFee> = "touchPoint",
    }
}

xml_sequence! {
    /// `activatePaymentNoticeV2Response`.
    pub struct ActivatePaymentNoticeV2Response {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub total_amount: Option<Amount> = "totalAmount",
        pub payment_description: Option<Text140> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub payment_token: Option<PaymentToken> = "paymentToken",
        pub transfer_list: Option<TransferListPspV2> = "transferList",
        pub metadata: Option<Metadata> = "metadata",
        pub creditor_reference_id: Option<Text35> = "creditorReferenceId",
        pub suggested_user_fee: Option<Amount> = "suggestedUserFee",
        pub suggested_pa_fee: Option<Amount> = "suggestedPaFee",
        pub suggested_id_bundle: Option<Text70> = "suggestedIdBundle",
        pub suggested_id_ci_bundle: Option<Text70> = "suggestedIdCiBundle",
        pub all_ccp: Option<bool> = "allCCP",
        pub standin: Option<bool> = "standin",
    }
}

xml_sequence! {
    /// `sendPaymentOutcomeReq`: the PSP tells the node whether the user paid.
    pub struct SendPaymentOutcomeReq {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub idempotency_key: Option<IdempotencyKey> = "idempotencyKey",
        pub payment_token: PaymentToken = "paymentToken",
        pub outcome: Outcome = "outcome",
        pub details: Option<OutcomeDetails> = "details",
    }
}

xml_sequence! {
    /// `sendPaymentOutcomeRes`.
    pub struct SendPaymentOutcomeRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
    }
}

xml_sequence! {
    /// `sendPaymentOutcomeV2Request`: the outcome of a cart of 1..5 tokens.
    pub struct SendPaymentOutcomeV2Request {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub idempotency_key: Option<IdempotencyKey> = "idempotencyKey",
        pub payment_tokens: PaymentTokens = "paymentTokens",
        pub outcome: Outcome = "outcome",
        pub details: Option<OutcomeDetailsV2> = "details",
    }
}

xml_sequence! {
    /// `sendPaymentOutcomeV2Response`.
    pub struct SendPaymentOutcomeV2Response {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
    }
}

xml_sequence! {
    /// `demandPaymentNoticeRequest`: a spontaneous payment; the EC creates the notice.
    pub struct DemandPaymentNoticeRequest {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub id_soggetto_servizio: ServiceCode = "idSoggettoServizio",
        pub dati_specifici_servizio: ServicePayload = "datiSpecificiServizio",
    }
}

xml_sequence! {
    /// `demandPaymentNoticeResponse`: the notice the EC issued.
    pub struct DemandPaymentNoticeResponse {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub qr_code: Option<QrCode> = "qrCode",
        pub payment_list: Option<PaymentOptionsDescriptionList> = "paymentList",
        pub payment_description: Option<Text210> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
    }
}

xml_sequence! {
    /// `nodoChiediCatalogoServiziV2Request`: the spontaneous-payment service catalogue.
    pub struct NodoChiediCatalogoServiziV2Request {
        pub identificativo_psp: Text35 = "identificativoPSP",
        pub identificativo_intermediario_psp: Text35 = "identificativoIntermediarioPSP",
        pub identificativo_canale: Text35 = "identificativoCanale",
        pub password: Password = "password",
        pub identificativo_dominio: Option<Text35> = "identificativoDominio",
        pub categoria: Option<Text35> = "categoria",
        pub commissione: Option<Commissione> = "commissione",
    }
}

xml_sequence! {
    /// `nodoChiediCatalogoServiziV2Response`: `xmlCatalogoServizi` is a base64 `listaCatalogoServizi`.
    pub struct NodoChiediCatalogoServiziV2Response {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub xml_catalogo_servizi: Option<Base64Binary> = "xmlCatalogoServizi",
    }
}

xml_sequence! {
    /// `verificaBollettinoReq` (Poste Italiane; read and checked, not served).
    pub struct VerificaBollettinoReq {
        pub id_psp: Text35 = "idPSP",
        pub id_broker_psp: Text35 = "idBrokerPSP",
        pub id_channel: Text35 = "idChannel",
        pub password: Password = "password",
        pub cc_post: PostalAccount = "ccPost",
        pub notice_number: NoticeNumber = "noticeNumber",
    }
}

xml_sequence! {
    /// `verificaBollettinoRes`.
    pub struct VerificaBollettinoRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub payment_bollettino_list: Option<PaymentOptionsBollettinoDescriptionList> = "paymentBollettinoList",
        pub payment_description: Option<Text210> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub notice_number: Option<NoticeNumber> = "noticeNumber",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
    }
}

xml_sequence! {
    /// `nodoInviaFlussoRendicontazioneRequest` (reporting; read and checked, not served).
    pub struct NodoInviaFlussoRendicontazioneRequest {
        pub identificativo_psp: Text35 = "identificativoPSP",
        pub identificativo_intermediario_psp: Text35 = "identificativoIntermediarioPSP",
        pub identificativo_canale: Text35 = "identificativoCanale",
        pub password: Password = "password",
        pub identificativo_dominio: Text35 = "identificativoDominio",
        pub identificativo_flusso: XsdString = "identificativoFlusso",
        pub data_ora_flusso: IsoDateTime = "dataOraFlusso",
        pub xml_rendicontazione: Base64Binary = "xmlRendicontazione",
    }
}

xml_sequence! {
    /// `nodoInviaFlussoRendicontazioneResponse` (legacy `risposta`: no `outcome`).
    pub struct NodoInviaFlussoRendicontazioneResponse {
        pub fault: Option<FaultBean> = "fault",
        pub esito: XsdString = "esito",
    }
}

xml_sequence! {
    /// `nodoChiediTemplateInformativaPSPRequest` (read and checked, not served).
    pub struct NodoChiediTemplateInformativaPspRequest {
        pub identificativo_psp: Text35 = "identificativoPSP",
        pub identificativo_intermediario_psp: Text35 = "identificativoIntermediarioPSP",
        pub identificativo_canale: Text35 = "identificativoCanale",
        pub password: Password = "password",
    }
}

xml_sequence! {
    /// `nodoChiediTemplateInformativaPSPResponse`.
    pub struct NodoChiediTemplateInformativaPspResponse {
        pub fault: Option<FaultBean> = "fault",
        pub xml_template_informativa: Option<Base64Binary> = "xmlTemplateInformativa",
    }
}

xml_sequence! {
    /// `nodoChiediInformativaPARequest` (read and checked, not served).
    pub struct NodoChiediInformativaPaRequest {
        pub identificativo_psp: Option<Text35> = "identificativoPSP",
        pub identificativo_intermediario_psp: Text35 = "identificativoIntermediarioPSP",
        pub identificativo_canale: Text35 = "identificativoCanale",
        pub password: Password = "password",
        pub identificativo_dominio: Option<Text35> = "identificativoDominio",
    }
}

xml_sequence! {
    /// `nodoChiediInformativaPAResponse`.
    pub struct NodoChiediInformativaPaResponse {
        pub fault: Option<FaultBean> = "fault",
        pub xml_informativa: Option<Base64Binary> = "xmlInformativa",
    }
}
