//! `xmlCatalogoServizi`: the spontaneous-payment service catalogue document
//! (`CatalogoServizi_2_0_0.xsd`, namespace `…/nodeForPsp/xsd/CatalogoServizi`, root qualified,
//! children unqualified), base64-encoded in nodoChiediCatalogoServiziV2Response.

use super::schema::{Bounded, Content};
use super::types::{Commissione, IsoDate, ServiceCode, Text35, Text70};
use super::xml::{
    AttrPolicy, Limits, Violation, ViolationKind, XmlReader, XmlWriter, check_chars,
    decode_document,
};
use crate::xml_sequence;

/// The catalogue's namespace.
pub const NS_CATALOGO: &str = "http://pagopa-api.pagopa.gov.it/nodeForPsp/xsd/CatalogoServizi";

xml_sequence! {
    /// `ctSoggettoErogante`: an EC offering the service.
    pub struct SoggettoErogante {
        pub id_soggetto_servizio: ServiceCode = "idSoggettoServizio",
        pub id_dominio: Text35 = "idDominio",
        pub denominazione_ente_creditore: Text70 = "denominazioneEnteCreditore",
        pub data_inizio_validita: IsoDate = "dataInizioValidita",
        pub data_fine_validita: Option<IsoDate> = "dataFineValidita",
        pub commissione: Option<Commissione> = "commissione",
    }
}

xml_sequence! {
    /// `ctElencoSoggettiEroganti`.
    pub struct ElencoSoggettiEroganti {
        pub soggetto_erogante: Bounded<SoggettoErogante, 1, { usize::MAX }> = "soggettoErogante",
    }
}

xml_sequence! {
    /// `ctCatalogoServizi`: one service.
    pub struct CatalogoServizi {
        pub id_servizio: ServiceCode = "idServizio",
        pub descrizione_servizio: Text70 = "descrizioneServizio",
        pub elenco_soggetti_eroganti: ElencoSoggettiEroganti = "elencoSoggettiEroganti",
        pub categoria: Option<Text35> = "categoria",
        pub xsd_riferimento: Text35 = "xsdRiferimento",
    }
}

xml_sequence! {
    /// `listaCatalogoServizi`: the catalogue.
    pub struct ListaCatalogoServizi {
        pub catalogo_servizi: Bounded<CatalogoServizi, 1, { usize::MAX }> = "catalogoServizi",
    }
}

impl ListaCatalogoServizi {
    /// The catalogue document (before base64).
    pub fn to_document(&self) -> String {
        let mut w = XmlWriter::with_capacity(1024);
        w.raw("<cs:listaCatalogoServizi xmlns:cs=\"");
        w.raw(NS_CATALOGO);
        w.raw("\">");
        self.write(&mut w);
        w.raw("</cs:listaCatalogoServizi>");
        w.into_string()
    }

    /// Reads and checks a catalogue document.
    pub fn from_document(bytes: &[u8], limits: Limits) -> Result<ListaCatalogoServizi, Violation> {
        let doc = decode_document(bytes)?;
        check_chars(&doc)?;
        let mut r = XmlReader::new(&doc, limits);
        let root = r.root()?;
        if !root.is(NS_CATALOGO, "listaCatalogoServizi") {
            return Err(Violation::new(
                ViolationKind::Schema,
                root.local,
                format!("expected listaCatalogoServizi in {NS_CATALOGO}"),
            ));
        }
        r.set_path_base();
        r.enter(root, AttrPolicy::None)?;
        let v = ListaCatalogoServizi::read(&mut r)?;
        r.finish_document()?;
        Ok(v)
    }
}
