//! paForNode (`http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd`): what the node sends creditor
//! entities' stations and what they answer.

use super::common::*;
use super::schema::Bounded;
use super::service::ServicePayload;
use super::types::*;
use crate::{xml_choice, xml_sequence};

xml_sequence! {
    /// `ctPaymentOptionDescriptionPA`.
    pub struct PaymentOptionDescriptionPa {
        pub amount: AmountNotZero = "amount",
        pub options: AmountOption = "options",
        pub due_date: Option<IsoDate> = "dueDate",
        pub detail_description: Option<Text140> = "detailDescription",
        pub all_ccp: bool = "allCCP",
    }
}

xml_sequence! {
    /// `ctPaymentOptionsDescriptionListPA`: exactly one option.
    pub struct PaymentOptionsDescriptionListPa {
        pub payment_option_description: PaymentOptionDescriptionPa = "paymentOptionDescription",
    }
}

xml_sequence! {
    /// `ctTransferPA` (paGetPayment, paSendRT): IBAN and taxonomy required.
    pub struct TransferPa {
        pub id_transfer: IdTransfer = "idTransfer",
        pub transfer_amount: AmountNotZero = "transferAmount",
        pub fiscal_code_pa: FiscalCode = "fiscalCodePA",
        pub iban: PaIban = "IBAN",
        pub remittance_information: Text140 = "remittanceInformation",
        pub transfer_category: Text140 = "transferCategory",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_sequence! {
    /// `ctTransferListPA`.
    pub struct TransferListPa {
        pub transfer: Bounded<TransferPa, 1, 5> = "transfer",
    }
}

xml_sequence! {
    /// `ctPaymentPA`: the payment data an EC returns in paGetPayment.
    pub struct PaymentPa {
        pub creditor_reference_id: Text35 = "creditorReferenceId",
        pub payment_amount: AmountNotZero = "paymentAmount",
        pub due_date: IsoDate = "dueDate",
        pub retention_date: Option<IsoDateTime> = "retentionDate",
        pub last_payment: Option<bool> = "lastPayment",
        pub description: Text140 = "description",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub debtor: Subject = "debtor",
        pub transfer_list: TransferListPa = "transferList",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_choice! {
    /// The required `IBAN | richiestaMarcaDaBollo` choice of `ctTransferPAV2`.
    pub enum PaCreditAccount {
        Iban(PaIban) = "IBAN",
        Stamp(RichiestaMarcaDaBollo) = "richiestaMarcaDaBollo",
    }
}

xml_sequence! {
    /// `ctTransferPAV2` (paGetPaymentV2).
    pub struct TransferPaV2 {
        pub id_transfer: IdTransfer = "idTransfer",
        pub transfer_amount: AmountNotZero = "transferAmount",
        pub fiscal_code_pa: FiscalCode = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub account: PaCreditAccount = "IBAN|richiestaMarcaDaBollo",
        pub remittance_information: Text140 = "remittanceInformation",
        pub transfer_category: Text140 = "transferCategory",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_sequence! {
    /// `ctTransferListPAV2`.
    pub struct TransferListPaV2 {
        pub transfer: Bounded<TransferPaV2, 1, 5> = "transfer",
    }
}

xml_sequence! {
    /// `ctPaymentPAV2`: `companyName` is required here.
    pub struct PaymentPaV2 {
        pub creditor_reference_id: Text35 = "creditorReferenceId",
        pub payment_amount: AmountNotZero = "paymentAmount",
        pub due_date: IsoDate = "dueDate",
        pub retention_date: Option<IsoDateTime> = "retentionDate",
        pub last_payment: Option<bool> = "lastPayment",
        pub description: Text140 = "description",
        pub company_name: Text140 = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub debtor: Subject = "debtor",
        pub transfer_list: TransferListPaV2 = "transferList",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_choice! {
    /// The required `IBAN | MBDAttachment` choice of `ctTransferPAReceiptV2`.
    pub enum ReceiptCreditAccount {
        Iban(PaIban) = "IBAN",
        MbdAttachment(Base64Binary) = "MBDAttachment",
    }
}

xml_sequence! {
    /// `ctTransferPAReceiptV2` (paSendRTV2).
    pub struct TransferPaReceiptV2 {
        pub id_transfer: IdTransfer = "idTransfer",
        pub transfer_amount: AmountNotZero = "transferAmount",
        pub fiscal_code_pa: FiscalCode = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub account: ReceiptCreditAccount = "IBAN|MBDAttachment",
        pub remittance_information: Text140 = "remittanceInformation",
        pub transfer_category: Text140 = "transferCategory",
        pub metadata: Option<Metadata> = "metadata",
    }
}

xml_sequence! {
    /// `ctTransferListPAReceiptV2`.
    pub struct TransferListPaReceiptV2 {
        pub transfer: Bounded<TransferPaReceiptV2, 1, 5> = "transfer",
    }
}

xml_sequence! {
    /// `ctReceipt` (paSendRT).
    pub struct Receipt {
        pub receipt_id: XsdString = "receiptId",
        pub notice_number: NoticeNumber = "noticeNumber",
        pub fiscal_code: FiscalCode = "fiscalCode",
        pub outcome: Outcome = "outcome",
        pub creditor_reference_id: Text35 = "creditorReferenceId",
        pub payment_amount: Amount = "paymentAmount",
        pub description: Text140 = "description",
        pub company_name: Text140 = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub debtor: Subject = "debtor",
        pub transfer_list: TransferListPa = "transferList",
        pub id_psp: Text35 = "idPSP",
        pub psp_fiscal_code: Option<Text70> = "pspFiscalCode",
        pub psp_partita_iva: Option<Text20> = "pspPartitaIVA",
        pub psp_company_name: Text70 = "PSPCompanyName",
        pub id_channel: Text35 = "idChannel",
        pub channel_description: Text35 = "channelDescription",
        pub payer: Option<Subject> = "payer",
        pub payment_method: Option<Text35> = "paymentMethod",
        pub fee: Option<Amount> = "fee",
        pub payment_date_time: Option<IsoDateTime> = "paymentDateTime",
        pub application_date: Option<IsoDate> = "applicationDate",
        pub transfer_date: Option<IsoDate> = "transferDate",
        pub metadata: Option<Metadata> = "metadata",
        pub stand_in: Option<bool> = "standIn",
    }
}

xml_sequence! {
    /// `ctReceiptV2` (paSendRTV2).
    pub struct ReceiptV2 {
        pub receipt_id: XsdString = "receiptId",
        pub notice_number: NoticeNumber = "noticeNumber",
        pub fiscal_code: FiscalCode = "fiscalCode",
        pub outcome: Outcome = "outcome",
        pub creditor_reference_id: Text35 = "creditorReferenceId",
        pub payment_amount: Amount = "paymentAmount",
        pub description: Text140 = "description",
        pub company_name: Text140 = "companyName",
        pub office_name: Option<Text140> = "officeName",
        pub debtor: Subject = "debtor",
        pub transfer_list: TransferListPaReceiptV2 = "transferList",
        pub id_psp: Text35 = "idPSP",
        pub psp_fiscal_code: Option<Text70> = "pspFiscalCode",
        pub psp_partita_iva: Option<Text20> = "pspPartitaIVA",
        pub psp_company_name: Text70 = "PSPCompanyName",
        pub id_channel: Text35 = "idChannel",
        pub channel_description: Text35 = "channelDescription",
        pub payer: Option<Subject> = "payer",
        pub payment_method: Option<Text35> = "paymentMethod",
        pub payment_note: Option<Text210> = "paymentNote",
        pub fee: Option<Amount> = "fee",
        pub primary_ci_incurred_fee: Option<Amount> = "primaryCiIncurredFee",
        pub id_bundle: Option<Text70> = "idBundle",
        pub id_ci_bundle: Option<Text70> = "idCiBundle",
        pub payment_date_time: Option<IsoDateTime> = "paymentDateTime",
        pub application_date: Option<IsoDate> = "applicationDate",
        pub transfer_date: Option<IsoDate> = "transferDate",
        pub metadata: Option<Metadata> = "metadata",
        pub stand_in: Option<bool> = "standIn",
    }
}

xml_sequence! {
    /// `paVerifyPaymentNoticeReq`.
    pub struct PaVerifyPaymentNoticeReq {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub qr_code: QrCode = "qrCode",
    }
}

xml_sequence! {
    /// `paVerifyPaymentNoticeRes`.
    pub struct PaVerifyPaymentNoticeRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub payment_list: Option<PaymentOptionsDescriptionListPa> = "paymentList",
        pub payment_description: Option<Text140> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
    }
}

xml_sequence! {
    /// `paGetPaymentReq`.
    pub struct PaGetPaymentReq {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub qr_code: QrCode = "qrCode",
        pub amount: Option<Amount> = "amount",
        pub payment_note: Option<Text210> = "paymentNote",
        pub transfer_type: Option<TransferType> = "transferType",
        pub due_date: Option<IsoDate> = "dueDate",
    }
}

xml_sequence! {
    /// `paGetPaymentRes`.
    pub struct PaGetPaymentRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub data: Option<PaymentPa> = "data",
    }
}

xml_sequence! {
    /// `paGetPaymentV2Request`.
    pub struct PaGetPaymentV2Request {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub qr_code: QrCode = "qrCode",
        pub amount: Option<Amount> = "amount",
        pub payment_note: Option<Text210> = "paymentNote",
        pub transfer_type: Option<TransferType> = "transferType",
        pub due_date: Option<IsoDate> = "dueDate",
    }
}

xml_sequence! {
    /// `paGetPaymentV2Response`.
    pub struct PaGetPaymentV2Response {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub data: Option<PaymentPaV2> = "data",
    }
}

xml_sequence! {
    /// `paSendRTReq`: a receipt for one recipient station.
    pub struct PaSendRtReq {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub receipt: Receipt = "receipt",
    }
}

xml_sequence! {
    /// `paSendRTRes`.
    pub struct PaSendRtRes {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
    }
}

xml_sequence! {
    /// `paSendRTV2Request`.
    pub struct PaSendRtV2Request {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub receipt: ReceiptV2 = "receipt",
    }
}

xml_sequence! {
    /// `paSendRTV2Response`.
    pub struct PaSendRtV2Response {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
    }
}

xml_sequence! {
    /// `paDemandPaymentNoticeRequest`: asks the EC to create a notice from service data.
    pub struct PaDemandPaymentNoticeRequest {
        pub id_pa: Text35 = "idPA",
        pub id_broker_pa: Text35 = "idBrokerPA",
        pub id_station: Text35 = "idStation",
        pub id_servizio: ServiceCode = "idServizio",
        pub id_soggetto_servizio: ServiceCode = "idSoggettoServizio",
        pub dati_specifici_servizio_request: ServicePayload = "datiSpecificiServizioRequest",
    }
}

xml_sequence! {
    /// `paDemandPaymentNoticeResponse`.
    pub struct PaDemandPaymentNoticeResponse {
        pub outcome: Outcome = "outcome",
        pub fault: Option<FaultBean> = "fault",
        pub qr_code: Option<QrCode> = "qrCode",
        pub payment_list: Option<PaymentOptionsDescriptionListPa> = "paymentList",
        pub payment_description: Option<Text140> = "paymentDescription",
        pub fiscal_code_pa: Option<FiscalCode> = "fiscalCodePA",
        pub company_name: Option<Text140> = "companyName",
        pub office_name: Option<Text140> = "officeName",
    }
}
