//! Complex types shared by nodeForPsp and paForNode (`ctQrCode`, `ctSubject`, `ctFaultBean`,
//! `ctMetadata`, ...). Where the two schemas each define a type with identical content, one
//! Rust type serves both.

use super::schema::Bounded;
use super::types::*;
use crate::xml_sequence;

xml_sequence! {
    /// `ctQrCode`: the notice, as printed on the payment notice's QR code.
    pub struct QrCode {
        pub fiscal_code: FiscalCode = "fiscalCode",
        pub notice_number: NoticeNumber = "noticeNumber",
    }
}

xml_sequence! {
    /// `ctEntityUniqueIdentifier`.
    pub struct EntityUniqueIdentifier {
        pub entity_unique_identifier_type: EntityUniqueIdentifierType = "entityUniqueIdentifierType",
        pub entity_unique_identifier_value: EntityUniqueIdentifierValue = "entityUniqueIdentifierValue",
    }
}

xml_sequence! {
    /// `ctSubject`: a debtor or a payer.
    pub struct Subject {
        pub unique_identifier: EntityUniqueIdentifier = "uniqueIdentifier",
        pub full_name: Text70 = "fullName",
        pub street_name: Option<Text70> = "streetName",
        pub civic_number: Option<Text16> = "civicNumber",
        pub postal_code: Option<Text16> = "postalCode",
        pub city: Option<Text35> = "city",
        pub state_province_region: Option<Text35> = "stateProvinceRegion",
        pub country: Option<CountryCode> = "country",
        pub email: Option<Email> = "e-mail",
    }
}

xml_sequence! {
    /// `ctFaultBean` (and nodeForPsp's identical `faultBean`).
    pub struct FaultBean {
        pub fault_code: XsdString = "faultCode",
        pub fault_string: XsdString = "faultString",
        /// Who raised the fault: `NodoDeiPagamentiSPC` for the node, else the EC's or PSP's id.
        pub id: XsdString = "id",
        pub description: Option<XsdString> = "description",
        pub serial: Option<i32> = "serial",
        pub original_fault_code: Option<XsdString> = "originalFaultCode",
        pub original_fault_string: Option<XsdString> = "originalFaultString",
        pub original_description: Option<XsdString> = "originalDescription",
    }
}

xml_sequence! {
    /// `ctMapEntry`.
    pub struct MapEntry {
        pub key: Text140 = "key",
        pub value: Text140 = "value",
    }
}

xml_sequence! {
    /// `ctMetadata`: 1..15 key/value pairs the EC keeps for itself; echoed in the receipt.
    pub struct Metadata {
        pub map_entry: Bounded<MapEntry, 1, 15> = "mapEntry",
    }
}

xml_sequence! {
    /// `ctRichiestaMarcaDaBollo`: a digital stamp requested in place of an IBAN (V2 transfers).
    pub struct RichiestaMarcaDaBollo {
        pub hash_documento: HashDocumento = "hashDocumento",
        pub tipo_bollo: TipoBollo = "tipoBollo",
        pub provincia_residenza: CountryCode = "provinciaResidenza",
    }
}

impl FaultBean {
    /// A fault raised by the node itself (`id` = `NodoDeiPagamentiSPC`).
    pub fn node(code: &str, fault_string: &str, description: Option<&str>) -> FaultBean {
        FaultBean {
            fault_code: XsdString::truncated(code),
            fault_string: XsdString::truncated(fault_string),
            id: XsdString::truncated(NODE_ID),
            description: description.map(XsdString::truncated),
            serial: None,
            original_fault_code: None,
            original_fault_string: None,
            original_description: None,
        }
    }
}

/// The identifier the node signs its faults with.
pub const NODE_ID: &str = "NodoDeiPagamentiSPC";
