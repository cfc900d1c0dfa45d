//! Debt positions: the notices the mock EC knows, explicit (from the configuration or created by
//! paDemandPaymentNotice) or generated from the notice number, and the paForNode data built
//! from them.
//!
//! A generated position is a pure function of (owner EC, notice number, the configured ECs), so
//! the same notice always gives the same data; only its state (payable, in progress, paid)
//! changes as requests and receipts arrive.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::Datelike;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{Ec, Registry};
use super::faults::{
    PAA_PAGAMENTO_ANNULLATO, PAA_PAGAMENTO_DUPLICATO, PAA_PAGAMENTO_SCADUTO,
    PAA_PAGAMENTO_SCONOSCIUTO, PAA_SEMANTICA, PAA_SYSTEM_ERROR, Refusal,
};
use super::scripts::{Decision, Plan};
use crate::codec::common::{EntityUniqueIdentifier, RichiestaMarcaDaBollo, Subject};
use crate::codec::pa_for_node::{
    PaCreditAccount, PaymentOptionDescriptionPa, PaymentOptionsDescriptionListPa, PaymentPa,
    PaymentPaV2, TransferListPa, TransferListPaV2, TransferPa, TransferPaV2,
};
use crate::codec::schema::Bounded;
use crate::codec::types::{
    AmountNotZero, AmountOption, CountryCode, EntityUniqueIdentifierType,
    EntityUniqueIdentifierValue, FiscalCode, HashDocumento, IdTransfer, IsoDate, NoticeNumber,
    Text35, Text70, Text140, TipoBollo, encode_base64,
};

/// The taxonomy code (`transferCategory`) used when none is configured.
pub(crate) const DEFAULT_CATEGORY: &str = "0101101IM";
/// A digital stamp ("marca da bollo digitale") costs 16.00.
const STAMP_CENTS: u64 = 1600;
/// Generated amounts are 10.00 plus the notice's last four digits as cents.
const BASE_CENTS: u64 = 1000;

/// Debtors of generated positions (fictitious people), picked by the notice's digits.
const DEBTORS: [(&str, &str); 4] = [
    ("RSSMRA80A01H501U", "Mario Rossi"),
    ("VRDGPP75B12F205Z", "Giuseppe Verdi"),
    ("BNCLCU90C45L219K", "Lucia Bianchi"),
    ("NREANN85D50G273Q", "Anna Neri"),
];

/// Where a position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionOrigin {
    /// A `[[mock_ec.position]]` entry.
    Config,
    /// Built from the notice number's scenario digits on first use.
    Generated,
    /// Created by paDemandPaymentNotice.
    Demand,
}

/// The life of a position as the EC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionStatus {
    /// Can be verified and paid.
    #[default]
    Payable,
    /// A paGetPayment handed its data out; a new paGetPayment voids the previous one.
    InProgress,
    /// A positive receipt arrived.
    Paid,
    /// Past its term: verify and paGetPayment answer `PAA_PAGAMENTO_SCADUTO`.
    Expired,
    /// Withdrawn: verify and paGetPayment answer `PAA_PAGAMENTO_ANNULLATO`.
    Cancelled,
}

/// One transfer ("quota") of a position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transfer {
    pub fiscal_code: FiscalCode,
    pub company_name: Text140,
    pub amount: AmountNotZero,
    pub account: PaCreditAccount,
    pub remittance: Text140,
    pub category: Text140,
}

impl Transfer {
    /// A transfer to a configured EC, credited to its `k`-th IBAN (cycling through its list).
    pub fn to_ec(ec: &Ec, k: usize, amount: AmountNotZero, remittance: Text140) -> Transfer {
        Transfer {
            fiscal_code: ec.fiscal_code.clone(),
            company_name: ec.company_name.clone(),
            amount,
            account: PaCreditAccount::Iban(ec.iban(k)),
            remittance,
            category: Text140::truncated(DEFAULT_CATEGORY),
        }
    }

    fn v1(&self, id: u8) -> Result<TransferPa, Refusal> {
        let PaCreditAccount::Iban(iban) = &self.account else {
            return Err(Refusal::new(
                PAA_SEMANTICA,
                format!(
                    "transfer {id} is a digital stamp, which paGetPayment (V1) cannot carry: use paGetPaymentV2"
                ),
            ));
        };
        Ok(TransferPa {
            id_transfer: transfer_id(id)?,
            transfer_amount: self.amount,
            fiscal_code_pa: self.fiscal_code.clone(),
            iban: iban.clone(),
            remittance_information: self.remittance.clone(),
            transfer_category: self.category.clone(),
            metadata: None,
        })
    }

    fn v2(&self, id: u8) -> Result<TransferPaV2, Refusal> {
        Ok(TransferPaV2 {
            id_transfer: transfer_id(id)?,
            transfer_amount: self.amount,
            fiscal_code_pa: self.fiscal_code.clone(),
            company_name: Some(self.company_name.clone()),
            account: self.account.clone(),
            remittance_information: self.remittance.clone(),
            transfer_category: self.category.clone(),
            metadata: None,
        })
    }
}

fn transfer_id(id: u8) -> Result<IdTransfer, Refusal> {
    IdTransfer::new(id).map_err(Refusal::system)
}

/// A debt position and its state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Position {
    pub fiscal_code: FiscalCode,
    pub notice: NoticeNumber,
    pub iuv: Text35,
    pub origin: PositionOrigin,
    pub status: PositionStatus,
    pub amount: AmountNotZero,
    pub description: Text140,
    pub due_date: IsoDate,
    pub company_name: Text140,
    pub office_name: Option<Text140>,
    pub debtor: Subject,
    pub transfers: Vec<Transfer>,
    /// How many paGetPayment calls handed the data out.
    pub payment_requests: u32,
    /// The receipts that paid it.
    pub receipt_ids: Vec<String>,
}

/// The mock's positions, by (owner fiscal code, notice number).
pub(crate) type Positions = HashMap<(String, String), Position>;

/// Builds `PaymentPa` or `PaymentPaV2` from a position: the two types share every field but the
/// transfer list (and V2 requires `companyName`).
macro_rules! payment_data {
    ($ty:ident, $p:expr, $company:expr, $transfers:expr) => {
        $ty {
            creditor_reference_id: $p.iuv.clone(),
            payment_amount: $p.amount,
            due_date: $p.due_date.clone(),
            retention_date: None,
            last_payment: None,
            description: $p.description.clone(),
            company_name: $company,
            office_name: $p.office_name.clone(),
            debtor: $p.debtor.clone(),
            transfer_list: $transfers,
            metadata: None,
        }
    };
}

impl Position {
    /// A payable position of `owner`; its amount is the sum of the transfers (1 to 5).
    pub fn new(
        owner: &Ec,
        notice: NoticeNumber,
        origin: PositionOrigin,
        description: Text140,
        due_date: IsoDate,
        debtor: Subject,
        transfers: Vec<Transfer>,
    ) -> Result<Position, String> {
        if !(1..=5).contains(&transfers.len()) {
            return Err(format!(
                "a position has 1 to 5 transfers, not {}",
                transfers.len()
            ));
        }
        let cents = transfers
            .iter()
            .try_fold(0u64, |sum, t| sum.checked_add(t.amount.cents()))
            .ok_or("the transfers' amounts overflow")?;
        Ok(Position {
            fiscal_code: owner.fiscal_code.clone(),
            iuv: Text35::truncated(notice.iuv()),
            notice,
            origin,
            status: PositionStatus::Payable,
            amount: AmountNotZero::from_cents(cents)?,
            description,
            due_date,
            company_name: owner.company_name.clone(),
            office_name: owner.office_name.clone(),
            debtor,
            transfers,
            payment_requests: 0,
            receipt_ids: Vec::new(),
        })
    }

    pub fn key(&self) -> (String, String) {
        (self.fiscal_code.to_string(), self.notice.to_string())
    }

    /// Whether verify and paGetPayment may go on, or the fault the state gives.
    pub fn check_payable(&self) -> Result<(), Refusal> {
        let (code, why) = match self.status {
            PositionStatus::Payable | PositionStatus::InProgress => return Ok(()),
            PositionStatus::Paid => (PAA_PAGAMENTO_DUPLICATO, "already paid"),
            PositionStatus::Expired => (PAA_PAGAMENTO_SCADUTO, "expired"),
            PositionStatus::Cancelled => (PAA_PAGAMENTO_ANNULLATO, "cancelled"),
        };
        Err(Refusal::new(
            code,
            format!("notice {} is {why}", self.notice),
        ))
    }

    /// The single payment option of verify and demand responses.
    pub fn option_list(&self) -> PaymentOptionsDescriptionListPa {
        PaymentOptionsDescriptionListPa {
            payment_option_description: PaymentOptionDescriptionPa {
                amount: self.amount,
                options: AmountOption::Eq,
                due_date: Some(self.due_date.clone()),
                detail_description: None,
                // allCCP = every IBAN is a postal account; the mock's never all are.
                all_ccp: false,
            },
        }
    }

    /// `ctPaymentPA`: refused (`PAA_SEMANTICA`) when a transfer is a digital stamp.
    pub fn payment_v1(&self) -> Result<PaymentPa, Refusal> {
        let transfers = self.numbered(Transfer::v1)?;
        let list = Bounded::new(transfers)
            .ok_or_else(|| Refusal::system("transfer count outside 1..5"))?;
        Ok(payment_data!(
            PaymentPa,
            self,
            Some(self.company_name.clone()),
            TransferListPa { transfer: list }
        ))
    }

    /// `ctPaymentPAV2`.
    pub fn payment_v2(&self) -> Result<PaymentPaV2, Refusal> {
        let transfers = self.numbered(Transfer::v2)?;
        let list = Bounded::new(transfers)
            .ok_or_else(|| Refusal::system("transfer count outside 1..5"))?;
        Ok(payment_data!(
            PaymentPaV2,
            self,
            self.company_name.clone(),
            TransferListPaV2 { transfer: list }
        ))
    }

    /// Converts each transfer with its 1-based `idTransfer`.
    fn numbered<T>(
        &self,
        convert: fn(&Transfer, u8) -> Result<T, Refusal>,
    ) -> Result<Vec<T>, Refusal> {
        (1u8..)
            .zip(&self.transfers)
            .map(|(id, t)| convert(t, id))
            .collect()
    }

    /// The position as JSON shows it.
    pub fn view(&self) -> PositionView {
        PositionView {
            fiscal_code: self.fiscal_code.to_string(),
            notice_number: self.notice.to_string(),
            iuv: self.iuv.to_string(),
            origin: self.origin,
            scenario: (self.origin == PositionOrigin::Generated)
                .then(|| Scenario::of(&self.notice).name()),
            status: self.status,
            amount: self.amount.to_string(),
            description: self.description.to_string(),
            due_date: self.due_date.to_string(),
            company_name: self.company_name.to_string(),
            office_name: self.office_name.as_ref().map(ToString::to_string),
            debtor: DebtorView {
                kind: self
                    .debtor
                    .unique_identifier
                    .entity_unique_identifier_type
                    .to_string(),
                id: self
                    .debtor
                    .unique_identifier
                    .entity_unique_identifier_value
                    .to_string(),
                name: self.debtor.full_name.to_string(),
            },
            transfers: (1u8..)
                .zip(&self.transfers)
                .map(|(id, t)| t.view(id))
                .collect(),
            payment_requests: self.payment_requests,
            receipt_ids: self.receipt_ids.clone(),
        }
    }
}

impl Transfer {
    fn view(&self, id: u8) -> TransferView {
        let (iban, stamp) = match &self.account {
            PaCreditAccount::Iban(i) => (Some(i.to_string()), None),
            PaCreditAccount::Stamp(s) => (
                None,
                Some(StampView {
                    hash: s.hash_documento.as_str().to_string(),
                    province: s.provincia_residenza.to_string(),
                }),
            ),
        };
        TransferView {
            id_transfer: id,
            fiscal_code: self.fiscal_code.to_string(),
            company_name: self.company_name.to_string(),
            amount: self.amount.to_string(),
            iban,
            stamp,
            remittance: self.remittance.to_string(),
            category: self.category.to_string(),
        }
    }
}

/// A position as `GET /positions/{fiscal_code}/{notice_number}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionView {
    /// The owner EC.
    pub fiscal_code: String,
    /// 18-digit notice number.
    pub notice_number: String,
    /// `creditorReferenceId` (the IUV).
    pub iuv: String,
    /// Where it comes from.
    pub origin: PositionOrigin,
    /// For generated positions, the scenario the notice number selects.
    pub scenario: Option<String>,
    /// Its state.
    pub status: PositionStatus,
    /// `paymentAmount`: the sum of the transfers.
    pub amount: String,
    /// `description`.
    pub description: String,
    /// `dueDate`.
    pub due_date: String,
    /// `companyName`.
    pub company_name: String,
    /// `officeName`.
    pub office_name: Option<String>,
    /// The debtor.
    pub debtor: DebtorView,
    /// The transfers, in `idTransfer` order.
    pub transfers: Vec<TransferView>,
    /// paGetPayment calls that handed the data out.
    pub payment_requests: u32,
    /// Receipts that paid it.
    pub receipt_ids: Vec<String>,
}

/// The debtor of a [`PositionView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebtorView {
    /// `F` (natural person) or `G` (legal person).
    #[serde(rename = "type")]
    pub kind: String,
    /// Fiscal code or VAT number.
    pub id: String,
    /// Full name.
    pub name: String,
}

/// A transfer of a [`PositionView`]: `iban` or `stamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferView {
    /// `idTransfer`, 1..5.
    pub id_transfer: u8,
    /// The beneficiary EC.
    pub fiscal_code: String,
    /// `companyName`.
    pub company_name: String,
    /// `transferAmount`.
    pub amount: String,
    /// The IBAN credited, if not a stamp.
    pub iban: Option<String>,
    /// The digital stamp requested, if not an IBAN.
    pub stamp: Option<StampView>,
    /// `remittanceInformation`.
    pub remittance: String,
    /// `transferCategory` (taxonomy code).
    pub category: String,
}

/// A digital-stamp transfer's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StampView {
    /// `hashDocumento`, base64.
    pub hash: String,
    /// `provinciaResidenza`.
    pub province: String,
}

/// What a generated notice does, from its scenario digits (index 3..5, after the aux digit and
/// the segregation code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// `00`–`09` (and any unlisted value): 1 transfer; `11`–`15`: 1 to 5 transfers.
    Transfers(u8),
    /// `21`: an IBAN transfer plus a 16.00 digital stamp.
    Stamp,
    /// `90`–`94`: a KO with this code.
    Fault(&'static str),
    /// `95`: an answer that is not XML.
    Garbage,
    /// `96`: a schema-invalid answer.
    Invalid,
    /// `97`: an answer after 60 s, later than any caller waits.
    Timeout,
    /// `98`: a SOAP 1.1 Fault.
    SoapFault,
    /// `99`: HTTP 500 with an empty body.
    Http500,
}

/// How long scenario `97` keeps the caller waiting.
const TIMEOUT_SCENARIO_MS: u64 = 60_000;

impl Scenario {
    pub fn of(notice: &NoticeNumber) -> Scenario {
        match notice.get(3..5).unwrap_or("00") {
            "11" => Scenario::Transfers(1),
            "12" => Scenario::Transfers(2),
            "13" => Scenario::Transfers(3),
            "14" => Scenario::Transfers(4),
            "15" => Scenario::Transfers(5),
            "21" => Scenario::Stamp,
            "90" => Scenario::Fault(PAA_PAGAMENTO_SCONOSCIUTO),
            "91" => Scenario::Fault(PAA_PAGAMENTO_DUPLICATO),
            "92" => Scenario::Fault(PAA_PAGAMENTO_SCADUTO),
            "93" => Scenario::Fault(PAA_PAGAMENTO_ANNULLATO),
            "94" => Scenario::Fault(PAA_SYSTEM_ERROR),
            "95" => Scenario::Garbage,
            "96" => Scenario::Invalid,
            "97" => Scenario::Timeout,
            "98" => Scenario::SoapFault,
            "99" => Scenario::Http500,
            _ => Scenario::Transfers(1),
        }
    }

    /// The scenario's name in the JSON views.
    pub fn name(self) -> String {
        match self {
            Scenario::Transfers(n) => format!("transfers_{n}"),
            Scenario::Stamp => "stamp".into(),
            Scenario::Fault(code) => code.into(),
            Scenario::Garbage => "garbage".into(),
            Scenario::Invalid => "invalid".into(),
            Scenario::Timeout => "timeout".into(),
            Scenario::SoapFault => "soap_fault".into(),
            Scenario::Http500 => "http_500".into(),
        }
    }

    /// How the answer departs from the normal one, if it does.
    pub fn decision(self) -> Option<Decision> {
        let plan = match self {
            Scenario::Transfers(_) | Scenario::Stamp => return None,
            Scenario::Timeout => return Some(Decision::delayed(TIMEOUT_SCENARIO_MS)),
            Scenario::Fault(code) => Plan::Fault(code.to_string()),
            Scenario::Garbage => Plan::Garbage,
            Scenario::Invalid => Plan::Invalid,
            Scenario::SoapFault => Plan::SoapFault,
            Scenario::Http500 => Plan::Http500,
        };
        Some(Decision { plan, delay: None })
    }
}

/// `/RFB/<IUV>/<amount>/TXT/<text>`: the structured remittance information ECs use.
pub(crate) fn remittance(iuv: &str, amount: AmountNotZero, text: &str) -> Text140 {
    Text140::truncated(&format!("/RFB/{iuv}/{amount}/TXT/{text}"))
}

/// The default due date: 31 December of next year, so every notice is payable for a while yet.
pub(crate) fn default_due_date() -> IsoDate {
    let year = chrono::Utc::now().year() + 1;
    IsoDate::from_naive(chrono::NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or_default())
}

/// A fictitious natural-person debtor, the same for the same notice.
pub(crate) fn generated_debtor(notice: &NoticeNumber) -> Subject {
    let digits: usize = notice.bytes().map(|b| usize::from(b - b'0')).sum();
    let (id, name) = DEBTORS[digits % DEBTORS.len()];
    Subject {
        unique_identifier: EntityUniqueIdentifier {
            entity_unique_identifier_type: EntityUniqueIdentifierType::F,
            entity_unique_identifier_value: EntityUniqueIdentifierValue::truncated(id),
        },
        full_name: Text70::truncated(name),
        street_name: None,
        civic_number: None,
        postal_code: None,
        city: None,
        state_province_region: None,
        country: None,
        email: None,
    }
}

/// Builds the position a notice number describes, for `owner`. Transfers after the first go to
/// the other configured ECs in order, cycling and skipping the owner (all to the owner when it
/// is the only one).
pub(crate) fn generate(
    owner: &Ec,
    ecs: &[Ec],
    notice: &NoticeNumber,
    due_date: &IsoDate,
) -> Result<Position, String> {
    let scenario = Scenario::of(notice);
    let last4: u64 = notice.get(14..).and_then(|d| d.parse().ok()).unwrap_or(0);
    let cents = BASE_CENTS + last4;
    let iuv = notice.iuv();
    let others: Vec<&Ec> = ecs
        .iter()
        .filter(|e| e.fiscal_code != owner.fiscal_code)
        .collect();
    let (description, transfers) = match scenario {
        Scenario::Transfers(n) if n > 1 => {
            let n64 = u64::from(n);
            let share = cents / n64;
            let mut transfers = Vec::with_capacity(usize::from(n));
            for i in 0..usize::from(n) {
                // The first transfer takes the remainder, so the sum is exact.
                let amount = if i == 0 {
                    cents - share * (n64 - 1)
                } else {
                    share
                };
                let amount = AmountNotZero::from_cents(amount)?;
                let ec = match i {
                    0 => owner,
                    _ if others.is_empty() => owner,
                    _ => others[(i - 1) % others.len()],
                };
                let text = format!("Quota {} di {n}", i + 1);
                // `i` also picks the IBAN, so an EC with several transfers uses several IBANs.
                transfers.push(Transfer::to_ec(
                    ec,
                    i,
                    amount,
                    remittance(iuv, amount, &text),
                ));
            }
            (
                format!("Tributo multi-beneficiario in {n} quote, avviso {notice}"),
                transfers,
            )
        }
        Scenario::Stamp => {
            let amount = AmountNotZero::from_cents(cents)?;
            let stamp_amount = AmountNotZero::from_cents(STAMP_CENTS)?;
            let stamp = Transfer {
                fiscal_code: owner.fiscal_code.clone(),
                company_name: owner.company_name.clone(),
                amount: stamp_amount,
                account: PaCreditAccount::Stamp(stamp_request(owner, notice)?),
                remittance: remittance(iuv, stamp_amount, "Marca da bollo digitale"),
                category: Text140::truncated(DEFAULT_CATEGORY),
            };
            let fee = Transfer::to_ec(
                owner,
                0,
                amount,
                remittance(iuv, amount, "Diritti di istruttoria"),
            );
            (
                format!("Pratica con marca da bollo digitale, avviso {notice}"),
                vec![fee, stamp],
            )
        }
        _ => {
            let amount = AmountNotZero::from_cents(cents)?;
            let text = format!("Avviso di pagamento {notice}");
            (
                text.clone(),
                vec![Transfer::to_ec(
                    owner,
                    0,
                    amount,
                    remittance(iuv, amount, &text),
                )],
            )
        }
    };
    Position::new(
        owner,
        notice.clone(),
        PositionOrigin::Generated,
        Text140::truncated(&description),
        due_date.clone(),
        generated_debtor(notice),
        transfers,
    )
}

/// The stamp of scenario `21`: the document hash is derived from the notice, province Rome.
fn stamp_request(owner: &Ec, notice: &NoticeNumber) -> Result<RichiestaMarcaDaBollo, String> {
    let digest: [u8; 32] =
        Sha256::digest(format!("{}|{notice}", owner.fiscal_code).as_bytes()).into();
    Ok(RichiestaMarcaDaBollo {
        hash_documento: HashDocumento::new(&encode_base64(&digest))?,
        tipo_bollo: TipoBollo::Ordinario,
        provincia_residenza: CountryCode::new("RM")?,
    })
}

/// A notice number for paDemandPaymentNotice: aux digit 3, the service's segregation code,
/// scenario digits `00`, an 11-digit counter, and the IUV check digits (mod 93).
pub(crate) fn demand_notice(segregation_code: &str, counter: u64) -> Result<NoticeNumber, String> {
    let body = format!("3{segregation_code}00{counter:011}");
    let value: u64 = body
        .parse()
        .map_err(|_| format!("counter {counter} does not fit a notice number"))?;
    NoticeNumber::new(format!("{body}{:02}", value % 93))
}

impl Registry {
    /// The position `(fiscal_code, notice)`, generating it on first use when `fiscal_code` is a
    /// configured EC; `None` for another EC's notice.
    pub(crate) fn position_mut<'p>(
        &self,
        positions: &'p mut Positions,
        fiscal_code: &FiscalCode,
        notice: &NoticeNumber,
    ) -> Result<Option<&'p mut Position>, String> {
        match positions.entry((fiscal_code.to_string(), notice.to_string())) {
            Entry::Occupied(e) => Ok(Some(e.into_mut())),
            Entry::Vacant(v) => match self.ec(fiscal_code) {
                None => Ok(None),
                Some(owner) => Ok(Some(v.insert(generate(
                    owner,
                    &self.ecs,
                    notice,
                    &self.due_date,
                )?))),
            },
        }
    }

    /// The position as it stands; a generated one that was never asked for is shown as it
    /// would be, without creating it.
    pub(crate) fn position_view(
        &self,
        positions: &Positions,
        fiscal_code: &str,
        notice: &str,
    ) -> Option<PositionView> {
        if let Some(p) = positions.get(&(fiscal_code.to_string(), notice.to_string())) {
            return Some(p.view());
        }
        let notice = NoticeNumber::new(notice).ok()?;
        let owner = self.ec(fiscal_code)?;
        generate(owner, &self.ecs, &notice, &self.due_date)
            .ok()
            .map(|p| p.view())
    }

    /// Whether a notice's scenario digits apply: the owner is configured and the position, if it
    /// exists, was generated.
    pub(crate) fn scenario(
        &self,
        positions: &Positions,
        fiscal_code: &str,
        notice: &str,
    ) -> Option<Scenario> {
        self.ec(fiscal_code)?;
        let explicit = positions
            .get(&(fiscal_code.to_string(), notice.to_string()))
            .is_some_and(|p| p.origin != PositionOrigin::Generated);
        if explicit {
            return None;
        }
        NoticeNumber::new(notice).ok().map(|n| Scenario::of(&n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(fc: &str) -> Ec {
        Ec {
            fiscal_code: FiscalCode::new(fc).unwrap(),
            company_name: Text140::new(format!("Ente {fc}")).unwrap(),
            office_name: None,
            ibans: vec![Text35::new(format!("IT60X05428111010{fc}")).unwrap()],
        }
    }

    #[test]
    fn generated_multi_transfer_sums_and_cycles() {
        let ecs = [ec("77777777777"), ec("11111111111"), ec("22222222222")];
        let notice = NoticeNumber::new("302150000000001234").unwrap();
        let p = generate(&ecs[0], &ecs, &notice, &default_due_date()).unwrap();
        assert_eq!(p.amount.cents(), 1000 + 1234);
        assert_eq!(p.transfers.len(), 5);
        let sum: u64 = p.transfers.iter().map(|t| t.amount.cents()).sum();
        assert_eq!(sum, p.amount.cents());
        let owners: Vec<&str> = p.transfers.iter().map(|t| t.fiscal_code.as_str()).collect();
        assert_eq!(
            owners,
            [
                "77777777777",
                "11111111111",
                "22222222222",
                "11111111111",
                "22222222222"
            ]
        );
        assert_eq!(p.iuv.as_str(), "02150000000001234");
        assert_eq!(
            p,
            generate(&ecs[0], &ecs, &notice, &default_due_date()).unwrap()
        );
    }

    #[test]
    fn demand_notices_carry_check_digits() {
        let n = demand_notice("02", 1).unwrap();
        assert_eq!(&n[..16], "3020000000000001");
        assert_eq!(n[16..].parse::<u64>().unwrap(), 3020000000000001 % 93);
        assert_eq!(Scenario::of(&n), Scenario::Transfers(1));
        assert!(demand_notice("02", 100_000_000_000).is_err());
    }
}
