//! Configuration of the simulated creditor entity: the `[mock_ec]` table of the node's TOML file,
//! and its check, which turns it into the registry of ECs, services and positions the mock
//! serves. Every key has a default; a bad value is an error naming its key
//! (`mock_ec.position[0].amount: ...`).

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::positions::{
    DEFAULT_CATEGORY, Position, PositionOrigin, PositionStatus, Transfer, default_due_date,
    generated_debtor, remittance,
};
use super::scripts::ScriptRule;
use crate::codec::common::{EntityUniqueIdentifier, RichiestaMarcaDaBollo, Subject};
use crate::codec::pa_for_node::PaCreditAccount;
use crate::codec::schema::Simple;
use crate::codec::types::{
    AmountNotZero, CountryCode, EntityUniqueIdentifierType, EntityUniqueIdentifierValue,
    FiscalCode, HashDocumento, IsoDate, NoticeNumber, PaIban, ServiceCode, Text70, Text140,
    TipoBollo,
};

/// The address `pagonode mock-ec` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// The `[mock_ec]` table. Missing keys take their defaults: an empty table describes one EC,
/// `77777777777` "Comune di Esempio", offering one spontaneous-payment service, `00001`
/// ("Tassa automobilistica", 120.00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockEcConfig {
    /// `host:port` the `pagonode mock-ec` command listens on.
    pub listen: String,
    /// The creditor entities the mock impersonates (`[[mock_ec.ec]]`).
    pub ec: Vec<EcConfig>,
    /// Explicit debt positions (`[[mock_ec.position]]`). Any other notice of a configured EC
    /// is generated from its number.
    pub position: Vec<PositionConfig>,
    /// Services paDemandPaymentNotice creates notices for (`[[mock_ec.service]]`).
    pub service: Vec<ServiceConfig>,
    /// Scripted answers installed at start (`[[mock_ec.script]]`).
    pub script: Vec<ScriptRule>,
}

impl Default for MockEcConfig {
    fn default() -> Self {
        MockEcConfig {
            listen: DEFAULT_LISTEN.to_string(),
            ec: vec![EcConfig {
                fiscal_code: "77777777777".into(),
                company_name: Some("Comune di Esempio".into()),
                office_name: None,
                ibans: vec!["IT60X0542811101000000123456".into()],
            }],
            position: Vec::new(),
            service: vec![ServiceConfig {
                id_servizio: "00001".into(),
                fiscal_code: None,
                segregation_code: Some("02".into()),
                amount: Some("120.00".into()),
                description: Some("Tassa automobilistica".into()),
            }],
            script: Vec::new(),
        }
    }
}

/// A creditor entity (`[[mock_ec.ec]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EcConfig {
    /// 11-digit fiscal code (`idPA`). Required.
    pub fiscal_code: String,
    /// Default `Ente creditore <fiscal_code>`.
    pub company_name: Option<String>,
    /// Optional `officeName` of its answers.
    pub office_name: Option<String>,
    /// Accounts credited by its transfers, used in turn. Default: one made-up IBAN.
    pub ibans: Vec<String>,
}

/// An explicit debt position (`[[mock_ec.position]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositionConfig {
    /// The owner EC. Default: the first configured EC.
    pub fiscal_code: Option<String>,
    /// 18 digits. Required.
    pub notice_number: String,
    /// Default: the sum of the transfers, or 10.00 with the default transfer.
    pub amount: Option<String>,
    /// Default `Avviso <notice_number>`.
    pub description: Option<String>,
    /// `YYYY-MM-DD` (a TOML date or a string). Default: 31 December of next year.
    #[serde(deserialize_with = "crate::config::dates::optional_date_text")]
    pub due_date: Option<String>,
    /// `payable` (default), `paid`, `expired` or `cancelled`.
    pub status: PositionStatus,
    /// Default: a fictitious person chosen by the notice number.
    pub debtor: Option<DebtorConfig>,
    /// Default: one transfer of the whole amount to the owner's first IBAN.
    pub transfer: Vec<TransferConfig>,
}

/// The debtor of a configured position.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebtorConfig {
    /// `F` (natural person, the default) or `G` (legal person).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Fiscal code or VAT number, 2..16 characters. Required.
    pub id: String,
    /// 1..70 characters. Required.
    pub name: String,
}

/// A transfer of a configured position (`[[mock_ec.position.transfer]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// Beneficiary EC. Default: the position's owner.
    pub fiscal_code: Option<String>,
    /// Required when the position has several transfers; else the position's amount.
    pub amount: Option<String>,
    /// Default: the beneficiary's first IBAN (it must then be a configured EC).
    pub iban: Option<String>,
    /// A digital stamp instead of an IBAN (paGetPaymentV2 only).
    pub stamp: Option<StampConfig>,
    /// Default: `/RFB/<IUV>/<amount>/TXT/<description>`.
    pub remittance: Option<String>,
    /// Default `0101101IM`.
    pub category: Option<String>,
}

/// A digital-stamp request (`richiestaMarcaDaBollo`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StampConfig {
    /// Base64 hash of the stamped document (4..72 characters). Required.
    pub hash: String,
    /// Province of residence, two capital letters. Default `RM`.
    pub province: Option<String>,
}

/// A spontaneous-payment service (`[[mock_ec.service]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// `idServizio`, 5 characters. Required.
    pub id_servizio: String,
    /// The EC offering it. Default: the first configured EC.
    pub fiscal_code: Option<String>,
    /// Two digits, the notices' segregation code. Default `01`.
    pub segregation_code: Option<String>,
    /// Default 10.00.
    pub amount: Option<String>,
    /// Default `Servizio <id_servizio>`. For a TassaAuto request, the plate is appended.
    pub description: Option<String>,
}

/// The file around the `[mock_ec]` table: other tables belong to the node and are ignored.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    mock_ec: MockEcConfig,
}

/// Why a `[mock_ec]` configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum MockConfigError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// One message per bad key (`mock_ec.ec[0].fiscal_code: …`), printed one a line.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The error of a file's contents, after its path.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: Box<MockConfigError>,
    },
}

impl MockEcConfig {
    /// Reads the `[mock_ec]` table of a TOML document (the defaults if there is none) and checks it.
    pub fn from_toml_str(s: &str) -> Result<Self, MockConfigError> {
        let file: ConfigFile = toml::from_str(s)?;
        file.mock_ec.validate()?;
        Ok(file.mock_ec)
    }

    /// [`MockEcConfig::from_toml_str`] on a file; errors start with the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MockConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MockConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| MockConfigError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Checks every value; the error lists each bad key.
    pub fn validate(&self) -> Result<(), MockConfigError> {
        let (_, errors) = self.resolve();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(MockConfigError::Invalid(errors))
        }
    }

    /// The checked configuration, and one message per bad entry (left out of the result).
    pub(crate) fn resolve(&self) -> (Resolved, Vec<String>) {
        let mut errs = Errors(Vec::new());
        errs.check("mock_ec.listen", check_listen(&self.listen));
        let mut ecs: Vec<Ec> = Vec::new();
        for (i, c) in self.ec.iter().enumerate() {
            let key = format!("mock_ec.ec[{i}]");
            if let Some(ec) = resolve_ec(&key, c, &mut errs) {
                if ecs.iter().any(|e| e.fiscal_code == ec.fiscal_code) {
                    errs.push(
                        &format!("{key}.fiscal_code"),
                        format!("EC {} is configured twice", ec.fiscal_code),
                    );
                } else {
                    ecs.push(ec);
                }
            }
        }
        let registry_due_date = default_due_date();
        let mut positions: Vec<Position> = Vec::new();
        for (i, c) in self.position.iter().enumerate() {
            let key = format!("mock_ec.position[{i}]");
            if let Some(p) = resolve_position(&key, c, &ecs, &registry_due_date, &mut errs) {
                if positions.iter().any(|q| q.key() == p.key()) {
                    errs.push(
                        &format!("{key}.notice_number"),
                        format!("notice {} is configured twice", p.notice),
                    );
                } else {
                    positions.push(p);
                }
            }
        }
        let mut services: Vec<Service> = Vec::new();
        for (i, c) in self.service.iter().enumerate() {
            let key = format!("mock_ec.service[{i}]");
            if let Some(s) = resolve_service(&key, c, &ecs, &mut errs) {
                if services
                    .iter()
                    .any(|t| t.id == s.id && t.fiscal_code == s.fiscal_code)
                {
                    errs.push(
                        &format!("{key}.id_servizio"),
                        format!("service {} is configured twice", s.id),
                    );
                } else {
                    services.push(s);
                }
            }
        }
        let scripts = self
            .script
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                errs.check(
                    &format!("mock_ec.script[{i}]"),
                    rule.validate().map(|()| rule.clone()),
                )
            })
            .collect();
        let registry = Registry {
            ecs,
            services,
            due_date: registry_due_date,
        };
        (
            Resolved {
                registry,
                positions,
                scripts,
            },
            errs.0,
        )
    }
}

/// The configuration, checked: what [`super::MockEc`] starts from.
pub(crate) struct Resolved {
    pub registry: Registry,
    pub positions: Vec<Position>,
    pub scripts: Vec<ScriptRule>,
}

/// The fixed part of the mock: its ECs and services.
#[derive(Debug)]
pub(crate) struct Registry {
    pub ecs: Vec<Ec>,
    pub services: Vec<Service>,
    /// Due date of generated positions.
    pub due_date: IsoDate,
}

impl Registry {
    /// The configured EC with this fiscal code.
    pub fn ec(&self, fiscal_code: &str) -> Option<&Ec> {
        self.ecs
            .iter()
            .find(|e| e.fiscal_code.as_str() == fiscal_code)
    }
}

/// A configured creditor entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ec {
    pub fiscal_code: FiscalCode,
    pub company_name: Text140,
    pub office_name: Option<Text140>,
    pub ibans: Vec<PaIban>,
}

impl Ec {
    /// The `k`-th IBAN, cycling through the configured ones.
    pub fn iban(&self, k: usize) -> PaIban {
        match self.ibans.get(k % self.ibans.len().max(1)) {
            Some(iban) => iban.clone(),
            None => default_iban(&self.fiscal_code),
        }
    }
}

/// A made-up IBAN for an EC configured without one (well-formed, not a real account).
fn default_iban(fiscal_code: &FiscalCode) -> PaIban {
    PaIban::truncated(&format!("IT60X05428111010{fiscal_code}"))
}

/// A configured spontaneous-payment service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Service {
    pub id: ServiceCode,
    pub fiscal_code: FiscalCode,
    pub segregation_code: String,
    pub amount: AmountNotZero,
    pub description: Text140,
}

/// Collects the errors of a configuration check, each prefixed with its key.
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, key: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{key}: {why}"));
    }

    /// The value, or `None` after recording why not.
    fn check<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.push(key, e)).ok()
    }

    /// An optional value: `Some(None)` when absent, `None` when present but bad.
    fn optional<T>(
        &mut self,
        key: &str,
        v: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match v {
            None => Some(None),
            Some(s) => self.check(key, parse(s)).map(Some),
        }
    }
}

fn check_listen(listen: &str) -> Result<(), String> {
    let mut addrs = listen
        .to_socket_addrs()
        .map_err(|e| format!("'{listen}' is not a host:port address: {e}"))?;
    addrs
        .next()
        .map(drop)
        .ok_or_else(|| format!("'{listen}' resolves to no address"))
}

/// The EC `fiscal_code` names, or the first configured one when it is absent.
fn find_ec<'e>(ecs: &'e [Ec], fiscal_code: Option<&str>) -> Result<&'e Ec, String> {
    match fiscal_code {
        None => ecs
            .first()
            .ok_or_else(|| "no EC is configured ([[mock_ec.ec]])".to_string()),
        Some(fc) => ecs
            .iter()
            .find(|e| e.fiscal_code.as_str() == fc)
            .ok_or_else(|| format!("'{fc}' is not a configured EC ([[mock_ec.ec]])")),
    }
}

fn resolve_ec(key: &str, c: &EcConfig, errs: &mut Errors) -> Option<Ec> {
    let fiscal_code = errs.check(
        &format!("{key}.fiscal_code"),
        FiscalCode::new(c.fiscal_code.as_str()),
    );
    let company = c
        .company_name
        .clone()
        .unwrap_or_else(|| format!("Ente creditore {}", c.fiscal_code));
    let company_name = errs.check(&format!("{key}.company_name"), Text140::new(company));
    let office_name = errs.optional(
        &format!("{key}.office_name"),
        c.office_name.as_deref(),
        |s| Text140::new(s),
    );
    let mut ibans = Vec::with_capacity(c.ibans.len());
    for (j, iban) in c.ibans.iter().enumerate() {
        ibans.extend(errs.check(&format!("{key}.ibans[{j}]"), PaIban::new(iban.as_str())));
    }
    let fiscal_code = fiscal_code?;
    if c.ibans.is_empty() {
        ibans.push(default_iban(&fiscal_code));
    } else if ibans.len() != c.ibans.len() {
        return None;
    }
    Some(Ec {
        fiscal_code,
        company_name: company_name?,
        office_name: office_name?,
        ibans,
    })
}

fn resolve_position(
    key: &str,
    c: &PositionConfig,
    ecs: &[Ec],
    due_default: &IsoDate,
    errs: &mut Errors,
) -> Option<Position> {
    let k = |field: &str| format!("{key}.{field}");
    let owner = errs.check(&k("fiscal_code"), find_ec(ecs, c.fiscal_code.as_deref()));
    let notice = errs.check(
        &k("notice_number"),
        NoticeNumber::new(c.notice_number.as_str()),
    );
    let amount = errs.optional(&k("amount"), c.amount.as_deref(), AmountNotZero::parse);
    let text = c
        .description
        .clone()
        .unwrap_or_else(|| format!("Avviso {}", c.notice_number));
    let description = errs.check(&k("description"), Text140::new(text));
    let due_date = errs.optional(&k("due_date"), c.due_date.as_deref(), IsoDate::parse);
    let debtor = match &c.debtor {
        Some(d) => resolve_debtor(&k("debtor"), d, errs).map(Some),
        None => Some(None),
    };
    let (owner, notice, amount, description, due_date, debtor) =
        (owner?, notice?, amount?, description?, due_date?, debtor?);
    let iuv = notice.iuv().to_string();
    let transfers = if c.transfer.is_empty() {
        let amount = match amount {
            Some(a) => a,
            None => errs.check(&k("amount"), AmountNotZero::from_cents(1000))?,
        };
        vec![Transfer::to_ec(
            owner,
            0,
            amount,
            remittance(&iuv, amount, &description),
        )]
    } else {
        // A lone transfer defaults to the position's amount; several must each say theirs.
        let single_amount = if c.transfer.len() == 1 { amount } else { None };
        let ctx = TransferDefaults {
            owner,
            ecs,
            iuv: &iuv,
            description: &description,
            amount: single_amount,
        };
        let resolved: Vec<Option<Transfer>> = c
            .transfer
            .iter()
            .enumerate()
            .map(|(j, t)| resolve_transfer(&k(&format!("transfer[{j}]")), t, &ctx, errs))
            .collect();
        resolved.into_iter().collect::<Option<Vec<_>>>()?
    };
    let debtor = debtor.unwrap_or_else(|| generated_debtor(&notice));
    let due_date = due_date.unwrap_or_else(|| due_default.clone());
    let mut position = errs.check(
        &k("transfer"),
        Position::new(
            owner,
            notice,
            PositionOrigin::Config,
            description,
            due_date,
            debtor,
            transfers,
        ),
    )?;
    if let Some(a) = amount
        && a != position.amount
    {
        errs.push(
            &k("amount"),
            format!(
                "{a} differs from the sum of the transfers, {}",
                position.amount
            ),
        );
        return None;
    }
    position.status = c.status;
    Some(position)
}

fn resolve_debtor(key: &str, d: &DebtorConfig, errs: &mut Errors) -> Option<Subject> {
    let kind = d.kind.as_deref().unwrap_or("F");
    let kind = errs.check(
        &format!("{key}.type"),
        kind.parse::<EntityUniqueIdentifierType>(),
    );
    let id = errs.check(
        &format!("{key}.id"),
        EntityUniqueIdentifierValue::new(d.id.as_str()),
    );
    let name = errs.check(&format!("{key}.name"), Text70::new(d.name.as_str()));
    Some(Subject {
        unique_identifier: EntityUniqueIdentifier {
            entity_unique_identifier_type: kind?,
            entity_unique_identifier_value: id?,
        },
        full_name: name?,
        street_name: None,
        civic_number: None,
        postal_code: None,
        city: None,
        state_province_region: None,
        country: None,
        email: None,
    })
}

/// What a configured transfer inherits from its position.
struct TransferDefaults<'a> {
    owner: &'a Ec,
    ecs: &'a [Ec],
    iuv: &'a str,
    description: &'a str,
    amount: Option<AmountNotZero>,
}

fn resolve_transfer(
    key: &str,
    t: &TransferConfig,
    d: &TransferDefaults<'_>,
    errs: &mut Errors,
) -> Option<Transfer> {
    let k = |field: &str| format!("{key}.{field}");
    let fiscal_code = match &t.fiscal_code {
        None => Some(d.owner.fiscal_code.clone()),
        Some(fc) => errs.check(&k("fiscal_code"), FiscalCode::new(fc.as_str())),
    }?;
    let beneficiary = d.ecs.iter().find(|e| e.fiscal_code == fiscal_code);
    let amount = match (&t.amount, d.amount) {
        (Some(a), _) => errs.check(&k("amount"), AmountNotZero::parse(a)),
        (None, Some(a)) => Some(a),
        (None, None) => errs.check(
            &k("amount"),
            Err("required: the position has several transfers, or no amount of its own".into()),
        ),
    };
    let account = match (&t.iban, &t.stamp) {
        (Some(_), Some(_)) => errs.check(
            &k("stamp"),
            Err("set either iban or stamp, not both".into()),
        ),
        (Some(iban), None) => errs
            .check(&k("iban"), PaIban::new(iban.as_str()))
            .map(PaCreditAccount::Iban),
        (None, Some(s)) => resolve_stamp(&k("stamp"), s, errs).map(PaCreditAccount::Stamp),
        (None, None) => match beneficiary {
            Some(ec) => Some(PaCreditAccount::Iban(ec.iban(0))),
            None => errs.check(
                &k("iban"),
                Err(format!(
                    "required: {fiscal_code} is not a configured EC, so it has no default IBAN"
                )),
            ),
        },
    };
    let company = beneficiary.map_or_else(
        || format!("Ente creditore {fiscal_code}"),
        |e| e.company_name.to_string(),
    );
    let category = errs.check(
        &k("category"),
        Text140::new(t.category.as_deref().unwrap_or(DEFAULT_CATEGORY)),
    );
    let (amount, account, category) = (amount?, account?, category?);
    let remittance = match &t.remittance {
        Some(r) => errs.check(&k("remittance"), Text140::new(r.as_str()))?,
        None => remittance(d.iuv, amount, d.description),
    };
    Some(Transfer {
        fiscal_code,
        company_name: Text140::truncated(&company),
        amount,
        account,
        remittance,
        category,
    })
}

fn resolve_stamp(key: &str, s: &StampConfig, errs: &mut Errors) -> Option<RichiestaMarcaDaBollo> {
    let hash = errs.check(&format!("{key}.hash"), HashDocumento::new(&s.hash));
    let province = errs.check(
        &format!("{key}.province"),
        CountryCode::new(s.province.as_deref().unwrap_or("RM")),
    );
    Some(RichiestaMarcaDaBollo {
        hash_documento: hash?,
        tipo_bollo: TipoBollo::Ordinario,
        provincia_residenza: province?,
    })
}

fn resolve_service(key: &str, c: &ServiceConfig, ecs: &[Ec], errs: &mut Errors) -> Option<Service> {
    let k = |field: &str| format!("{key}.{field}");
    let id = errs.check(&k("id_servizio"), ServiceCode::new(c.id_servizio.as_str()));
    let ec = errs.check(&k("fiscal_code"), find_ec(ecs, c.fiscal_code.as_deref()));
    let segregation = c.segregation_code.clone().unwrap_or_else(|| "01".into());
    let segregation_ok = segregation.len() == 2 && segregation.bytes().all(|b| b.is_ascii_digit());
    let segregation_code = errs.check(
        &k("segregation_code"),
        if segregation_ok {
            Ok(segregation)
        } else {
            Err(format!("'{segregation}' is not two digits"))
        },
    );
    let amount = errs.check(
        &k("amount"),
        AmountNotZero::parse(c.amount.as_deref().unwrap_or("10.00")),
    );
    let text = c
        .description
        .clone()
        .unwrap_or_else(|| format!("Servizio {}", c.id_servizio));
    let description = errs.check(&k("description"), Text140::new(text));
    Some(Service {
        id: id?,
        fiscal_code: ec?.fiscal_code.clone(),
        segregation_code: segregation_code?,
        amount: amount?,
        description: description?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_the_example_ec_and_service() {
        let cfg = MockEcConfig::from_toml_str("[node]\nx = 1\n").unwrap();
        assert_eq!(cfg, MockEcConfig::default());
        let (resolved, errors) = cfg.resolve();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(resolved.registry.ecs.len(), 1);
        assert_eq!(
            resolved.registry.services[0].fiscal_code.as_str(),
            "77777777777"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad = r#"
            [mock_ec]
            [[mock_ec.ec]]
            fiscal_code = "123"
            [[mock_ec.position]]
            notice_number = "302000100000009424"
            amount = "10.5"
        "#;
        let err = MockEcConfig::from_toml_str(bad).unwrap_err().to_string();
        assert!(err.contains("mock_ec.ec[0].fiscal_code"), "{err}");
        let err = MockEcConfig::from_toml_str("[mock_ec]\nlisten_on = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_on"), "{err}");
        let two = r#"
            [[mock_ec.position]]
            notice_number = "302000100000009424"
            amount = "12.00"
            [[mock_ec.position.transfer]]
            amount = "10.00"
            [[mock_ec.position.transfer]]
            amount = "1.00"
            iban = "IT00"
        "#;
        let err = MockEcConfig::from_toml_str(two).unwrap_err().to_string();
        assert!(
            err.contains("mock_ec.position[0].amount: 12.00 differs"),
            "{err}"
        );
    }

    #[test]
    fn a_due_date_is_a_toml_date_or_a_string() {
        for due in ["2030-06-30", "\"2030-06-30\""] {
            let text = format!(
                "[[mock_ec.position]]\nnotice_number = \"302000100000009424\"\ndue_date = {due}\n"
            );
            let cfg = MockEcConfig::from_toml_str(&text).unwrap();
            assert_eq!(
                cfg.position[0].due_date.as_deref(),
                Some("2030-06-30"),
                "{due}"
            );
        }
    }
}
