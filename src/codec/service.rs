//! `datiSpecificiServizio`: the base64 service document of a spontaneous payment, checked against
//! the catalogue schema its root namespace declares (`TassaAutomobilistica_1_1_0`,
//! `A001_Passaporto_1_0_0`, `D847_Pesca_1_0_0`). Those schemas are `elementFormDefault="qualified"`:
//! every child is in the target namespace.

use super::schema::{Content, Simple};
use super::types::{Text, decode_base64, encode_base64};
use super::xml::{
    AttrPolicy, Limits, Violation, ViolationKind, XmlReader, XmlWriter, check_chars,
    decode_document,
};
use crate::{xml_choice, xml_enum, xml_sequence};

/// Namespace of `TassaAutomobilistica_1_1_0.xsd`.
pub const NS_TASSA_AUTO: &str = "http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto";
/// Namespace of `A001_Passaporto_1_0_0.xsd`.
pub const NS_PAGAMENTO_PRATICA: &str = "http://PuntoAccessoPSP.spcoop.gov.it/pagamentoPratica";
/// Namespace of `D847_Pesca_1_0_0.xsd`.
pub const NS_PRATICA_CANONI: &str = "http://PuntoAccessoPSP.spcoop.gov.it/praticaPagamentoCanoni";

/// The catalogue service schemas the node knows, by the name the catalogue's `xsdRiferimento`
/// gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceSchema {
    TassaAutomobilistica,
    Passaporto,
    Pesca,
}

impl ServiceSchema {
    pub const ALL: [ServiceSchema; 3] = [
        ServiceSchema::TassaAutomobilistica,
        ServiceSchema::Passaporto,
        ServiceSchema::Pesca,
    ];

    /// The catalogue's `xsdRiferimento` value.
    pub fn xsd_name(self) -> &'static str {
        match self {
            ServiceSchema::TassaAutomobilistica => "TassaAutomobilistica_1_1_0",
            ServiceSchema::Passaporto => "A001_Passaporto_1_0_0",
            ServiceSchema::Pesca => "D847_Pesca_1_0_0",
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            ServiceSchema::TassaAutomobilistica => NS_TASSA_AUTO,
            ServiceSchema::Passaporto => NS_PAGAMENTO_PRATICA,
            ServiceSchema::Pesca => NS_PRATICA_CANONI,
        }
    }

    fn root(self) -> &'static str {
        match self {
            ServiceSchema::TassaAutomobilistica => "tassaAuto",
            ServiceSchema::Passaporto => "pagamentoPratica",
            ServiceSchema::Pesca => "praticaPagamentoCanoni",
        }
    }

    pub fn from_xsd_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.xsd_name() == name)
    }

    fn from_namespace(ns: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.namespace() == ns)
    }
}

xml_enum! {
    /// `stTipoVeicoloTarga`: 1 cars, 2 trailers, 4 motorcycles.
    pub enum TipoVeicoloTarga { Autoveicolo = "1", Rimorchio = "2", Motoveicolo = "4" }
}

xml_sequence! {
    /// `ctVeicoloConTarga`.
    pub struct VeicoloConTarga {
        pub tipo_veicolo_targa: TipoVeicoloTarga = "tipoVeicoloTarga",
        pub veicolo_targa: Text<7, 8> = "veicoloTarga",
    }
}

xml_choice! {
    /// The (single-branch) choice of `ctTassaAuto`.
    pub enum Veicolo { ConTarga(VeicoloConTarga) = "veicoloConTarga" }
}

xml_sequence! {
    /// `tassaAuto`: the car tax ("bollo auto") service document.
    pub struct TassaAuto {
        pub veicolo: Veicolo = "veicoloConTarga",
    }
}

xml_sequence! {
    /// `ctPagatore`.
    pub struct Pagatore {
        pub codice_fiscale_pagatore: Text<0, { usize::MAX }> = "codiceFiscalePagatore",
        pub denominazione_pagatore: Text<1, 50> = "denominazionePagatore",
    }
}

xml_sequence! {
    /// `ctIntestatario`.
    pub struct Intestatario {
        pub codice_fiscale_intestatario: Text<0, { usize::MAX }> = "codiceFiscaleIntestatario",
        pub denominazione_intestatario: Text<1, 50> = "denominazioneIntestatario",
    }
}

/// `codicePratica` with a `fixed` value: the text must be exactly the value, or empty (an empty
/// element takes the fixed value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodicePratica<const A001: bool>;

impl<const A001: bool> Simple for CodicePratica<A001> {
    fn parse(text: &str) -> Result<Self, String> {
        let fixed = if A001 { "A001" } else { "D847" };
        if text.is_empty() || text == fixed {
            Ok(CodicePratica)
        } else {
            Err(format!("value '{text}' is not the fixed value '{fixed}'"))
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(if A001 { "A001" } else { "D847" })
    }
}

xml_sequence! {
    /// `pagamentoPratica` (A001, passport).
    pub struct PagamentoPratica {
        pub codice_pratica: CodicePratica<true> = "codicePratica",
        pub pagatore: Pagatore = "pagatore",
        pub intestatario: Intestatario = "intestatario",
    }
}

xml_sequence! {
    /// `ctCampoNote`.
    pub struct CampoNote {
        pub note: Text<1, 40> = "note",
    }
}

xml_sequence! {
    /// `praticaPagamentoCanoni` (D847, fishing licence).
    pub struct PraticaPagamentoCanoni {
        pub codice_pratica: CodicePratica<false> = "codicePratica",
        pub pagatore: Pagatore = "pagatore",
        pub intestatario: Intestatario = "intestatario",
        pub note: Option<CampoNote> = "note",
    }
}

/// A decoded, checked service document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePayload {
    bytes: Vec<u8>,
    schema: Option<ServiceSchema>,
}

impl ServicePayload {
    /// Checks raw document bytes: well-formed XML within `limits`, valid against its schema
    /// when the root namespace is a known catalogue schema.
    pub fn from_document(bytes: Vec<u8>, limits: Limits) -> Result<Self, String> {
        let schema = check_service_document(&bytes, limits)?;
        Ok(ServicePayload { bytes, schema })
    }

    /// The decoded document.
    pub fn document(&self) -> &[u8] {
        &self.bytes
    }

    /// The catalogue schema the document declares, if the node knows it.
    pub fn schema(&self) -> Option<ServiceSchema> {
        self.schema
    }
}

/// The base64 text of the element, then the document it holds, read within the limits of the
/// message that carries it.
impl Content for ServicePayload {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        let text = r.read_text()?;
        let payload = decode_base64(&text).and_then(|bytes| {
            ServicePayload::from_document(bytes, r.limits())
                .map_err(|e| format!("service document: {e}"))
        });
        match payload {
            Ok(p) => {
                r.close_simple();
                Ok(p)
            }
            Err(reason) => Err(r.invalid(reason)),
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&encode_base64(&self.bytes))
    }
}

fn check_service_document(bytes: &[u8], limits: Limits) -> Result<Option<ServiceSchema>, String> {
    if bytes.is_empty() {
        return Err("empty document".into());
    }
    let doc = decode_document(bytes).map_err(|v| v.to_string())?;
    check_chars(&doc).map_err(|v| v.to_string())?;
    let mut r = XmlReader::new(&doc, limits);
    let root = r.root().map_err(|v| v.to_string())?;
    let schema = ServiceSchema::from_namespace(&root.ns);
    let local = root.local;
    let result: Result<(), Violation> = (|| {
        r.enter(root, AttrPolicy::None)?;
        r.set_path_base();
        match schema {
            Some(s) if s.root() == local => {
                r.child_ns = s.namespace();
                match s {
                    ServiceSchema::TassaAutomobilistica => TassaAuto::read(&mut r).map(drop)?,
                    ServiceSchema::Passaporto => PagamentoPratica::read(&mut r).map(drop)?,
                    ServiceSchema::Pesca => PraticaPagamentoCanoni::read(&mut r).map(drop)?,
                }
            }
            Some(s) => {
                return Err(Violation::new(
                    ViolationKind::ServicePayload,
                    local,
                    format!("root element must be '{}' in {}", s.root(), s.xsd_name()),
                ));
            }
            // A namespace the node has no schema for: well-formedness is all it can check.
            None => r.skip_content()?,
        }
        r.finish_document()
    })();
    result.map_err(|v| {
        let where_ = if v.path.is_empty() {
            String::new()
        } else {
            format!("{local}/{}: ", v.path)
        };
        format!("{where_}{}", v.reason)
    })?;
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASSA: &str = r#"<ta:tassaAuto xmlns:ta="http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga><ta:veicoloTarga>AB123CD</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>"#;

    #[test]
    fn tassa_auto() {
        let p = ServicePayload::from_document(TASSA.as_bytes().to_vec(), Limits::DEFAULT).unwrap();
        assert_eq!(p.schema(), Some(ServiceSchema::TassaAutomobilistica));
        let bad = TASSA.replace(">1<", ">3<");
        assert!(ServicePayload::from_document(bad.into_bytes(), Limits::DEFAULT).is_err());
        let unqualified = TASSA
            .replace("<ta:veicoloTarga>", "<veicoloTarga>")
            .replace("</ta:veicoloTarga>", "</veicoloTarga>");
        assert!(ServicePayload::from_document(unqualified.into_bytes(), Limits::DEFAULT).is_err());
    }

    #[test]
    fn unknown_namespace_needs_only_well_formedness() {
        assert!(
            ServicePayload::from_document(
                b"<x xmlns='urn:other'><y/></x>".to_vec(),
                Limits::DEFAULT
            )
            .is_ok()
        );
        assert!(ServicePayload::from_document(b"<x><y></x>".to_vec(), Limits::DEFAULT).is_err());
        assert!(ServicePayload::from_document(Vec::new(), Limits::DEFAULT).is_err());
        assert!(crate::codec::schema::from_fragment::<ServicePayload>("<d>cia</d>").is_err());
    }
}
