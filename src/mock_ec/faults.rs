//! The EC-side (`PAA_`) fault codes the mock answers with, and the fault beans that carry them.

use crate::codec::common::FaultBean;
use crate::codec::types::XsdString;

/// The request breaks the paForNode schema.
pub const PAA_SINTASSI_EXTRAXSD: &str = "PAA_SINTASSI_EXTRAXSD";
/// `idPA` is not one of the configured creditor entities.
pub const PAA_ID_DOMINIO_ERRATO: &str = "PAA_ID_DOMINIO_ERRATO";
/// Catch-all semantic error (e.g. a digital stamp asked for through paGetPayment V1).
pub const PAA_SEMANTICA: &str = "PAA_SEMANTICA";
/// The notice is unknown to the EC.
pub const PAA_PAGAMENTO_SCONOSCIUTO: &str = "PAA_PAGAMENTO_SCONOSCIUTO";
/// The notice is already paid.
pub const PAA_PAGAMENTO_DUPLICATO: &str = "PAA_PAGAMENTO_DUPLICATO";
/// The notice has expired.
pub const PAA_PAGAMENTO_SCADUTO: &str = "PAA_PAGAMENTO_SCADUTO";
/// The notice was cancelled.
pub const PAA_PAGAMENTO_ANNULLATO: &str = "PAA_PAGAMENTO_ANNULLATO";
/// A generic failure of the EC.
pub const PAA_SYSTEM_ERROR: &str = "PAA_SYSTEM_ERROR";
/// A receipt id already delivered to the station with a different content.
pub const PAA_RECEIPT_DUPLICATA: &str = "PAA_RECEIPT_DUPLICATA";

/// The fault `id` when the request names no configured EC.
pub const MOCK_ID: &str = "mock-ec";

/// Why the mock refuses a request: a fault code and what exactly went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: String,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: &str, detail: impl Into<String>) -> Self {
        Refusal {
            code: code.to_string(),
            detail: detail.into(),
        }
    }

    /// A failure of the mock itself (a position it could not build), answered as the EC's.
    pub fn system(detail: impl Into<String>) -> Self {
        Refusal::new(PAA_SYSTEM_ERROR, detail)
    }

    /// The fault bean, signed with `id` (the EC's fiscal code, or [`MOCK_ID`]).
    pub fn fault(&self, id: &str) -> FaultBean {
        FaultBean {
            fault_code: XsdString::truncated(&self.code),
            fault_string: XsdString::truncated(fault_string(&self.code)),
            id: XsdString::truncated(id),
            description: Some(XsdString::truncated(&self.detail)),
            serial: None,
            original_fault_code: None,
            original_fault_string: None,
            original_description: None,
        }
    }
}

/// The conventional fault string of a `PAA_` code (the wording of the pagoPA specification);
/// a code a script invents is its own fault string.
fn fault_string(code: &str) -> &str {
    match code {
        PAA_SINTASSI_EXTRAXSD => "Errore di sintassi extra XSD",
        PAA_ID_DOMINIO_ERRATO => "La PAA non corrisponde al Dominio indicato",
        PAA_SEMANTICA => "Errore semantico",
        PAA_PAGAMENTO_SCONOSCIUTO => "Pagamento in attesa risulta sconosciuto all'Ente Creditore",
        PAA_PAGAMENTO_DUPLICATO => "Pagamento in attesa risulta concluso all'Ente Creditore",
        PAA_PAGAMENTO_SCADUTO => "Pagamento in attesa risulta scaduto all'Ente Creditore",
        PAA_PAGAMENTO_ANNULLATO => "Pagamento in attesa risulta annullato all'Ente Creditore",
        PAA_SYSTEM_ERROR => "Errore generico",
        PAA_RECEIPT_DUPLICATA => "Ricevuta duplicata",
        other => other,
    }
}
