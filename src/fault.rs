//! The node's faults: one variant per `PPT_*` code (SANP, "Gestione degli errori", dominio
//! nodo), with the fault strings the official BDD suite checks where it checks them and the same
//! style elsewhere.

use crate::codec::common::FaultBean;
use crate::codec::types::XsdString;

/// A fault the node answers with (`outcome=KO` + `fault`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeFault {
    /// The request breaks the WSDL/XSD (or is not well-formed, or too big).
    #[error("PPT_SINTASSI_EXTRAXSD: {0}")]
    SintassiExtraXsd(String),
    /// An embedded document (digital stamp) breaks its own schema.
    #[error("PPT_SINTASSI_XSD: {0}")]
    SintassiXsd(String),
    #[error("PPT_SOAPACTION_ERRATA: {0}")]
    SoapActionErrata(String),
    #[error("PPT_PSP_SCONOSCIUTO")]
    PspSconosciuto,
    #[error("PPT_PSP_DISABILITATO")]
    PspDisabilitato,
    #[error("PPT_INTERMEDIARIO_PSP_SCONOSCIUTO")]
    IntermediarioPspSconosciuto,
    #[error("PPT_INTERMEDIARIO_PSP_DISABILITATO")]
    IntermediarioPspDisabilitato,
    #[error("PPT_CANALE_SCONOSCIUTO")]
    CanaleSconosciuto,
    #[error("PPT_CANALE_DISABILITATO")]
    CanaleDisabilitato,
    #[error("PPT_AUTENTICAZIONE")]
    Autenticazione,
    /// The caller is not entitled: wrong broker/channel/PSP relationship, wrong payment model,
    /// `expirationTime` above the maximum. The description says which.
    #[error("PPT_AUTORIZZAZIONE: {0}")]
    Autorizzazione(String),
    #[error("PPT_DOMINIO_SCONOSCIUTO")]
    DominioSconosciuto,
    #[error("PPT_DOMINIO_DISABILITATO")]
    DominioDisabilitato,
    #[error("PPT_INTERMEDIARIO_PA_SCONOSCIUTO")]
    IntermediarioPaSconosciuto,
    #[error("PPT_INTERMEDIARIO_PA_DISABILITATO")]
    IntermediarioPaDisabilitato,
    #[error("PPT_STAZIONE_INT_PA_SCONOSCIUTA")]
    StazioneIntPaSconosciuta,
    #[error("PPT_STAZIONE_INT_PA_DISABILITATA")]
    StazioneIntPaDisabilitata,
    #[error("PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE: {0}")]
    StazioneIntPaIrraggiungibile(String),
    #[error("PPT_STAZIONE_INT_PA_TIMEOUT")]
    StazioneIntPaTimeout,
    /// The EC's answer is not a valid response, or breaks a node rule on its content.
    #[error("PPT_STAZIONE_INT_PA_ERRORE_RESPONSE: {0}")]
    StazioneIntPaErroreResponse(String),
    /// The EC answered KO: its fault travels in `originalFault*` (extended beans) or in the
    /// description.
    #[error("PPT_ERRORE_EMESSO_DA_PAA: {}", .0.fault_code)]
    ErroreEmessoDaPaa(Box<FaultBean>),
    #[error("PPT_SERVIZIO_SCONOSCIUTO")]
    ServizioSconosciuto,
    #[error("PPT_SERVIZIO_NONATTIVO")]
    ServizioNonAttivo,
    #[error("PPT_VERSIONE_SERVIZIO")]
    VersioneServizio,
    #[error("PPT_PAGAMENTO_IN_CORSO")]
    PagamentoInCorso,
    #[error("PPT_PAGAMENTO_DUPLICATO")]
    PagamentoDuplicato,
    #[error("PPT_ERRORE_IDEMPOTENZA")]
    ErroreIdempotenza,
    #[error("PPT_TOKEN_SCONOSCIUTO")]
    TokenSconosciuto,
    #[error("PPT_TOKEN_SCADUTO")]
    TokenScaduto,
    #[error("PPT_TOKEN_SCADUTO_KO")]
    TokenScadutoKo,
    /// The token already has an outcome; the description (`Esito concorde: {…}` /
    /// `Esito discorde: {…}`) carries the outcome already acquired.
    #[error("PPT_ESITO_GIA_ACQUISITO: {0}")]
    EsitoGiaAcquisito(String),
    #[error("PPT_SEMANTICA: {0}")]
    Semantica(String),
    /// The caller is over its request rate (`limits.over_rate = "fault"`).
    #[error("PPT_SUPERAMENTOSOGLIA")]
    SuperamentoSoglia,
    /// The node itself failed (e.g. the store could not commit).
    #[error("PPT_SYSTEM_ERROR: {0}")]
    SystemError(String),
}

/// Declares [`FaultCode`] from its variants and their codes.
macro_rules! fault_codes {
    ($( $variant:ident => $code:literal, )+) => {
        /// A `faultCode` the node answers with: one per [`NodeFault`] variant.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FaultCode { $( $variant, )+ }

        impl FaultCode {
            /// Every code, in declaration order (`code as usize` is its index here).
            pub const ALL: &'static [FaultCode] = &[ $( FaultCode::$variant, )+ ];

            pub fn as_str(self) -> &'static str {
                match self { $( FaultCode::$variant => $code, )+ }
            }

            /// The code named `s`; `None` if the node never answers with it.
            pub fn parse(s: &str) -> Option<FaultCode> {
                match s { $( $code => Some(FaultCode::$variant), )+ _ => None }
            }
        }
    };
}

fault_codes! {
    SintassiExtraXsd => "PPT_SINTASSI_EXTRAXSD",
    SintassiXsd => "PPT_SINTASSI_XSD",
    SoapActionErrata => "PPT_SOAPACTION_ERRATA",
    PspSconosciuto => "PPT_PSP_SCONOSCIUTO",
    PspDisabilitato => "PPT_PSP_DISABILITATO",
    IntermediarioPspSconosciuto => "PPT_INTERMEDIARIO_PSP_SCONOSCIUTO",
    IntermediarioPspDisabilitato => "PPT_INTERMEDIARIO_PSP_DISABILITATO",
    CanaleSconosciuto => "PPT_CANALE_SCONOSCIUTO",
    CanaleDisabilitato => "PPT_CANALE_DISABILITATO",
    Autenticazione => "PPT_AUTENTICAZIONE",
    Autorizzazione => "PPT_AUTORIZZAZIONE",
    DominioSconosciuto => "PPT_DOMINIO_SCONOSCIUTO",
    DominioDisabilitato => "PPT_DOMINIO_DISABILITATO",
    IntermediarioPaSconosciuto => "PPT_INTERMEDIARIO_PA_SCONOSCIUTO",
    IntermediarioPaDisabilitato => "PPT_INTERMEDIARIO_PA_DISABILITATO",
    StazioneIntPaSconosciuta => "PPT_STAZIONE_INT_PA_SCONOSCIUTA",
    StazioneIntPaDisabilitata => "PPT_STAZIONE_INT_PA_DISABILITATA",
    StazioneIntPaIrraggiungibile => "PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE",
    StazioneIntPaTimeout => "PPT_STAZIONE_INT_PA_TIMEOUT",
    StazioneIntPaErroreResponse => "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE",
    ErroreEmessoDaPaa => "PPT_ERRORE_EMESSO_DA_PAA",
    ServizioSconosciuto => "PPT_SERVIZIO_SCONOSCIUTO",
    ServizioNonAttivo => "PPT_SERVIZIO_NONATTIVO",
    VersioneServizio => "PPT_VERSIONE_SERVIZIO",
    PagamentoInCorso => "PPT_PAGAMENTO_IN_CORSO",
    PagamentoDuplicato => "PPT_PAGAMENTO_DUPLICATO",
    ErroreIdempotenza => "PPT_ERRORE_IDEMPOTENZA",
    TokenSconosciuto => "PPT_TOKEN_SCONOSCIUTO",
    TokenScaduto => "PPT_TOKEN_SCADUTO",
    TokenScadutoKo => "PPT_TOKEN_SCADUTO_KO",
    EsitoGiaAcquisito => "PPT_ESITO_GIA_ACQUISITO",
    Semantica => "PPT_SEMANTICA",
    SuperamentoSoglia => "PPT_SUPERAMENTOSOGLIA",
    SystemError => "PPT_SYSTEM_ERROR",
}

impl std::fmt::Display for FaultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NodeFault {
    /// The `faultCode`.
    pub fn code(&self) -> &'static str {
        self.fault_code().as_str()
    }

    /// The `faultCode`, typed.
    pub fn fault_code(&self) -> FaultCode {
        use NodeFault::*;
        match self {
            SintassiExtraXsd(_) => FaultCode::SintassiExtraXsd,
            SintassiXsd(_) => FaultCode::SintassiXsd,
            SoapActionErrata(_) => FaultCode::SoapActionErrata,
            PspSconosciuto => FaultCode::PspSconosciuto,
            PspDisabilitato => FaultCode::PspDisabilitato,
            IntermediarioPspSconosciuto => FaultCode::IntermediarioPspSconosciuto,
            IntermediarioPspDisabilitato => FaultCode::IntermediarioPspDisabilitato,
            CanaleSconosciuto => FaultCode::CanaleSconosciuto,
            CanaleDisabilitato => FaultCode::CanaleDisabilitato,
            Autenticazione => FaultCode::Autenticazione,
            Autorizzazione(_) => FaultCode::Autorizzazione,
            DominioSconosciuto => FaultCode::DominioSconosciuto,
            DominioDisabilitato => FaultCode::DominioDisabilitato,
            IntermediarioPaSconosciuto => FaultCode::IntermediarioPaSconosciuto,
            IntermediarioPaDisabilitato => FaultCode::IntermediarioPaDisabilitato,
            StazioneIntPaSconosciuta => FaultCode::StazioneIntPaSconosciuta,
            StazioneIntPaDisabilitata => FaultCode::StazioneIntPaDisabilitata,
            StazioneIntPaIrraggiungibile(_) => FaultCode::StazioneIntPaIrraggiungibile,
            StazioneIntPaTimeout => FaultCode::StazioneIntPaTimeout,
            StazioneIntPaErroreResponse(_) => FaultCode::StazioneIntPaErroreResponse,
            ErroreEmessoDaPaa(_) => FaultCode::ErroreEmessoDaPaa,
            ServizioSconosciuto => FaultCode::ServizioSconosciuto,
            ServizioNonAttivo => FaultCode::ServizioNonAttivo,
            VersioneServizio => FaultCode::VersioneServizio,
            PagamentoInCorso => FaultCode::PagamentoInCorso,
            PagamentoDuplicato => FaultCode::PagamentoDuplicato,
            ErroreIdempotenza => FaultCode::ErroreIdempotenza,
            TokenSconosciuto => FaultCode::TokenSconosciuto,
            TokenScaduto => FaultCode::TokenScaduto,
            TokenScadutoKo => FaultCode::TokenScadutoKo,
            EsitoGiaAcquisito(_) => FaultCode::EsitoGiaAcquisito,
            Semantica(_) => FaultCode::Semantica,
            SuperamentoSoglia => FaultCode::SuperamentoSoglia,
            SystemError(_) => FaultCode::SystemError,
        }
    }

    /// The `faultString`.
    pub fn fault_string(&self) -> &'static str {
        use NodeFault::*;
        match self {
            SintassiExtraXsd(_) => "Errore di sintassi extra XSD.",
            SintassiXsd(_) => "Errore di sintassi XSD.",
            SoapActionErrata(_) => "SOAPAction errata.",
            PspSconosciuto => "Identificativo PSP sconosciuto.",
            PspDisabilitato => "PSP disabilitato.",
            IntermediarioPspSconosciuto => "Identificativo intermediario PSP sconosciuto.",
            IntermediarioPspDisabilitato => "Intermediario PSP disabilitato.",
            CanaleSconosciuto => "Identificativo canale sconosciuto.",
            CanaleDisabilitato => "Canale disabilitato.",
            Autenticazione => "Password sconosciuta o errata.",
            Autorizzazione(_) => "Autorizzazione negata.",
            DominioSconosciuto => "Identificativo Dominio sconosciuto.",
            DominioDisabilitato => "Dominio disabilitato.",
            IntermediarioPaSconosciuto => "Identificativo intermediario dominio sconosciuto.",
            IntermediarioPaDisabilitato => "Intermediario dominio disabilitato.",
            StazioneIntPaSconosciuta => "IdentificativoStazioneRichiedente sconosciuto.",
            StazioneIntPaDisabilitata => "Stazione disabilitata.",
            StazioneIntPaIrraggiungibile(_) => "Stazione irraggiungibile.",
            StazioneIntPaTimeout => "Timeout risposta dalla stazione.",
            StazioneIntPaErroreResponse(_) => "Errore nella risposta della stazione.",
            ErroreEmessoDaPaa(_) => "Errore restituito dall'ente creditore",
            ServizioSconosciuto => "Servizio sconosciuto.",
            ServizioNonAttivo => "Servizio non attivo.",
            VersioneServizio => "Versione servizio errata.",
            PagamentoInCorso => "Pagamento in attesa risulta in corso al sistema pagoPA",
            PagamentoDuplicato => "Pagamento in attesa risulta concluso al sistema pagoPA",
            ErroreIdempotenza => "Errore di idempotenza.",
            TokenSconosciuto => "Token sconosciuto.",
            TokenScaduto => "Token scaduto.",
            TokenScadutoKo => "Token scaduto.",
            EsitoGiaAcquisito(_) => {
                "L'esito del pagamento risulta già acquisito dal sistema pagoPA."
            }
            Semantica(_) => "Errore semantico.",
            SuperamentoSoglia => "Superamento soglia.",
            SystemError(_) => "Errore generico.",
        }
    }

    /// The `description`, when the fault has one.
    pub fn description(&self) -> Option<String> {
        use NodeFault::*;
        match self {
            SintassiExtraXsd(d)
            | SintassiXsd(d)
            | SoapActionErrata(d)
            | Autorizzazione(d)
            | StazioneIntPaIrraggiungibile(d)
            | StazioneIntPaErroreResponse(d)
            | EsitoGiaAcquisito(d)
            | Semantica(d)
            | SystemError(d) => Some(d.clone()),
            PagamentoInCorso => Some(self.fault_string().to_string()),
            ServizioSconosciuto => Some("Servizio inesistente sul sistema pagoPA".into()),
            VersioneServizio => Some("Versione servizio incompatibile con la chiamata".into()),
            TokenSconosciuto => Some("token unknown".into()),
            TokenScadutoKo => Some("Token scaduto: esito negativo acquisito".into()),
            _ => None,
        }
    }

    /// The fault bean, as the node writes it. `extended` is the caller broker's
    /// `FAULT_BEAN_ESTESO`: with it an EC's fault travels in `originalFault*`, without it the
    /// EC's bean is summarised in `description`.
    pub fn to_bean(&self, extended: bool) -> FaultBean {
        let mut bean = FaultBean::node(
            self.code(),
            self.fault_string(),
            self.description().as_deref(),
        );
        if let NodeFault::ErroreEmessoDaPaa(ec) = self {
            let text = |s: &XsdString| XsdString::truncated(s.as_str());
            if extended {
                bean.description = ec
                    .description
                    .as_ref()
                    .map(text)
                    .or_else(|| Some(text(&ec.fault_string)));
                bean.original_fault_code = Some(text(&ec.fault_code));
                bean.original_fault_string = Some(text(&ec.fault_string));
                bean.original_description = ec.description.as_ref().map(text);
            } else {
                let summary = format!(
                    "faultCode={} faultString={} id={}{}",
                    ec.fault_code,
                    ec.fault_string,
                    ec.id,
                    ec.description
                        .as_ref()
                        .map(|d| format!(" description={d}"))
                        .unwrap_or_default()
                );
                bean.description = Some(XsdString::truncated(&summary));
            }
        }
        bean
    }
}
