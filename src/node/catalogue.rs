//! nodoChiediCatalogoServiziV2: the spontaneous-payment service catalogue, filtered by EC,
//! category and commission, as a base64 `listaCatalogoServizi` document.

use super::{Node, psp_ref};
use crate::codec::catalogue::{
    CatalogoServizi, ElencoSoggettiEroganti, ListaCatalogoServizi, SoggettoErogante,
};
use crate::codec::node_for_psp::{
    NodoChiediCatalogoServiziV2Request, NodoChiediCatalogoServiziV2Response,
};
use crate::codec::schema::Bounded;
use crate::codec::types::{
    Base64Binary, Commissione, IsoDate, Outcome, ServiceCode, Text35, Text70,
};
use crate::codec::write_envelope;
use crate::engine::{Reply, RequestCtx};
use crate::fault::NodeFault;
use crate::journal::Keys;

impl Node {
    /// Answers from configuration only: nothing to commit, nothing to cache.
    pub(super) fn catalogue(&self, r: &NodoChiediCatalogoServiziV2Request) -> (Reply, Keys) {
        let keys = Keys::psp(&r.identificativo_psp, &r.identificativo_canale);
        let psp = psp_ref(
            &r.identificativo_psp,
            &r.identificativo_intermediario_psp,
            &r.identificativo_canale,
        );
        let ctx = self.request_ctx(r, psp, None);
        let reply = match self.build_catalogue(r) {
            Ok(doc) => Reply::ok(write_envelope(&NodoChiediCatalogoServiziV2Response {
                outcome: Outcome::Ok,
                fault: None,
                xml_catalogo_servizi: doc.map(|d| Base64Binary(d.into_bytes())),
            })),
            Err(f) => refusal(&ctx, f),
        };
        (reply, keys)
    }

    /// The catalogue document after the filters; `None` when no service matches (the
    /// document needs at least one).
    fn build_catalogue(
        &self,
        r: &NodoChiediCatalogoServiziV2Request,
    ) -> Result<Option<String>, NodeFault> {
        if let Some(ec) = &r.identificativo_dominio {
            match self.registry().ec(ec) {
                None => return Err(NodeFault::DominioSconosciuto),
                Some(e) if !e.enabled => return Err(NodeFault::DominioDisabilitato),
                Some(_) => {}
            }
        }
        let mut services = Vec::new();
        for s in self.registry().services() {
            if r.categoria
                .as_ref()
                .is_some_and(|c| s.category.as_deref() != Some(c.as_str()))
            {
                continue;
            }
            let providers: Vec<SoggettoErogante> = s
                .provider
                .iter()
                .filter(|p| {
                    r.identificativo_dominio
                        .as_ref()
                        .is_none_or(|d| d.as_str() == p.ec)
                })
                .filter(|p| {
                    r.commissione
                        .is_none_or(|c| p.commission.as_deref().unwrap_or("N") == c.as_str())
                })
                .map(|p| SoggettoErogante {
                    id_soggetto_servizio: ServiceCode::truncated(&p.id),
                    id_dominio: Text35::truncated(&p.ec),
                    denominazione_ente_creditore: Text70::truncated(
                        self.registry()
                            .ec(&p.ec)
                            .map(|e| e.name.as_str())
                            .unwrap_or(&p.ec),
                    ),
                    data_inizio_validita: IsoDate::from_naive(p.valid_from),
                    data_fine_validita: p.valid_to.map(IsoDate::from_naive),
                    commissione: p
                        .commission
                        .as_deref()
                        .and_then(|c| c.parse::<Commissione>().ok()),
                })
                .collect();
            let Some(soggetto_erogante) = Bounded::new(providers) else {
                continue;
            };
            services.push(CatalogoServizi {
                id_servizio: ServiceCode::truncated(&s.id),
                descrizione_servizio: Text70::truncated(&s.description),
                elenco_soggetti_eroganti: ElencoSoggettiEroganti { soggetto_erogante },
                categoria: s.category.as_deref().map(Text35::truncated),
                xsd_riferimento: Text35::truncated(&s.xsd),
            });
        }
        Ok(Bounded::new(services)
            .map(|catalogo_servizi| ListaCatalogoServizi { catalogo_servizi }.to_document()))
    }
}

fn refusal(ctx: &RequestCtx, f: NodeFault) -> Reply {
    tracing::info!(operation = ctx.operation.soap_action(), psp = %ctx.psp.id_psp, fault = f.code(), "request refused");
    Reply::ko(ctx.operation, &f, ctx.extended_faults)
}
