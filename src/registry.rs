//! The configured parties and the checks the node runs on every request, in the official order
//! (official BDD tests `demandPaymentNotice_semantic_ko.feature`,
//! `activatePaymentNotice_semantic_ko.feature`): PSP → PSP broker → channel → password → relationships →
//! creditor entity → station routing. Pure lookups: no I/O.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use crate::codec::common::QrCode;
use crate::codec::types::{FiscalCode, NoticeNumber, Password};
use crate::config::{
    ATTIVATO_PRESSO_PSP, ChannelConfig, Config, EcConfig, PspBrokerConfig, PspConfig,
    ServiceConfig, ServiceProviderConfig, StationConfig, StationLinkConfig, Timings,
};
use crate::fault::NodeFault;

/// The authentication block every nodeForPsp request starts with.
#[derive(Debug, Clone, Copy)]
pub struct PspCredentials<'a> {
    pub id_psp: &'a str,
    pub id_broker_psp: &'a str,
    pub id_channel: &'a str,
    pub password: &'a Password,
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'r> {
    pub psp: &'r PspConfig,
    pub broker: &'r PspBrokerConfig,
    pub channel: &'r ChannelConfig,
}

/// Where a notice goes: its EC, the station serving it and the station's broker.
#[derive(Debug, Clone, Copy)]
pub struct Route<'r> {
    pub ec: &'r EcConfig,
    pub station: &'r StationConfig,
}

/// A spontaneous-payment service resolved from `idSoggettoServizio`.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRoute<'r> {
    pub service: &'r ServiceConfig,
    pub provider: &'r ServiceProviderConfig,
    pub route: Route<'r>,
}

/// The registry: the configuration indexed for the checks.
#[derive(Debug)]
pub struct Registry {
    config: Config,
    psps: HashMap<String, usize>,
    psp_brokers: HashMap<String, usize>,
    channels: HashMap<String, usize>,
    ecs: HashMap<String, usize>,
    ec_brokers: HashMap<String, usize>,
    stations: HashMap<String, usize>,
    /// (EC, aux digit, code) → link. Aux digits 1 and 2 have no code ("").
    links: HashMap<(String, u8, String), usize>,
    providers: HashMap<String, (usize, usize)>,
}

fn index<T>(items: &[T], id: impl Fn(&T) -> &str) -> HashMap<String, usize> {
    items
        .iter()
        .enumerate()
        .map(|(i, t)| (id(t).to_string(), i))
        .collect()
}

impl Registry {
    /// Indexes a configuration that passed [`Config::from_toml_str`]'s checks.
    pub fn new(config: Config) -> Registry {
        let links = config
            .station_link
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let code = l
                    .segregation_code
                    .clone()
                    .or_else(|| l.application_code.clone())
                    .unwrap_or_default();
                ((l.ec.clone(), l.aux_digit, code), i)
            })
            .collect();
        let providers = config
            .service
            .iter()
            .enumerate()
            .flat_map(|(s, svc)| {
                svc.provider
                    .iter()
                    .enumerate()
                    .map(move |(p, prov)| (prov.id.clone(), (s, p)))
            })
            .collect();
        Registry {
            psps: index(&config.psp, |p| &p.id),
            psp_brokers: index(&config.psp_broker, |b| &b.id),
            channels: index(&config.channel, |c| &c.id),
            ecs: index(&config.ec, |e| &e.fiscal_code),
            ec_brokers: index(&config.ec_broker, |b| &b.id),
            stations: index(&config.station, |s| &s.id),
            links,
            providers,
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn timings(&self) -> &Timings {
        &self.config.timings
    }

    pub fn psp(&self, id: &str) -> Option<&PspConfig> {
        self.psps.get(id).map(|&i| &self.config.psp[i])
    }

    pub fn psp_broker(&self, id: &str) -> Option<&PspBrokerConfig> {
        self.psp_brokers
            .get(id)
            .map(|&i| &self.config.psp_broker[i])
    }

    pub fn ec(&self, fiscal_code: &str) -> Option<&EcConfig> {
        self.ecs.get(fiscal_code).map(|&i| &self.config.ec[i])
    }

    pub fn station(&self, id: &str) -> Option<&StationConfig> {
        self.stations.get(id).map(|&i| &self.config.station[i])
    }

    /// PSP, broker, channel, password and their relationships, in this order.
    pub fn authenticate(&self, cred: PspCredentials<'_>) -> Result<Caller<'_>, NodeFault> {
        let psp = self.psp(cred.id_psp).ok_or(NodeFault::PspSconosciuto)?;
        if !psp.enabled {
            return Err(NodeFault::PspDisabilitato);
        }
        let broker = self
            .psp_broker(cred.id_broker_psp)
            .ok_or(NodeFault::IntermediarioPspSconosciuto)?;
        if !broker.enabled {
            return Err(NodeFault::IntermediarioPspDisabilitato);
        }
        let channel = self
            .channels
            .get(cred.id_channel)
            .map(|&i| &self.config.channel[i])
            .ok_or(NodeFault::CanaleSconosciuto)?;
        if !channel.enabled {
            return Err(NodeFault::CanaleDisabilitato);
        }
        // Constant time, so response timing does not leak how much of a guess was right.
        let ok: bool = channel
            .password
            .as_bytes()
            .ct_eq(cred.password.expose().as_bytes())
            .into();
        if !ok {
            return Err(NodeFault::Autenticazione);
        }
        let psp_allowed = if channel.psps.is_empty() {
            channel.broker == psp.id
        } else {
            channel.psps.iter().any(|p| p == &psp.id)
        };
        if channel.broker != broker.id || !psp_allowed {
            return Err(NodeFault::Autorizzazione(
                "Configurazione intermediario-canale non corretta".into(),
            ));
        }
        Ok(Caller {
            psp,
            broker,
            channel,
        })
    }

    /// The payment model verify and activate need (`ATTIVATO_PRESSO_PSP`).
    pub fn require_psp_activation(&self, caller: &Caller<'_>) -> Result<(), NodeFault> {
        if caller
            .channel
            .payment_models
            .iter()
            .any(|m| m == ATTIVATO_PRESSO_PSP)
        {
            Ok(())
        } else {
            Err(NodeFault::Autorizzazione(
                "Il canale non è di tipo 'ATTIVATO_PRESSO_PSP'".into(),
            ))
        }
    }

    /// The EC (`qrCode.fiscalCode`), then the station its notice routes to (official BDD tests
    /// `activatePaymentNotice_semantic_ko.feature`, `verifyPaymentNotice_semantic_ko.feature`): aux digit 3 by segregation code, 0 by application code, 1 and 2 by the digit alone.
    pub fn route_notice(&self, qr: &QrCode) -> Result<Route<'_>, NodeFault> {
        let ec = self.enabled_ec(&qr.fiscal_code)?;
        let link = self
            .link_for(&qr.fiscal_code, &qr.notice_number)
            .ok_or(NodeFault::StazioneIntPaSconosciuta)?;
        let station = self
            .station(&link.station)
            .ok_or(NodeFault::StazioneIntPaSconosciuta)?;
        self.usable_station(station)?;
        Ok(Route { ec, station })
    }

    fn enabled_ec(&self, fiscal_code: &str) -> Result<&EcConfig, NodeFault> {
        let ec = self.ec(fiscal_code).ok_or(NodeFault::DominioSconosciuto)?;
        if !ec.enabled {
            return Err(NodeFault::DominioDisabilitato);
        }
        Ok(ec)
    }

    fn usable_station(&self, station: &StationConfig) -> Result<(), NodeFault> {
        let broker = self
            .ec_brokers
            .get(&station.broker)
            .map(|&i| &self.config.ec_broker[i]);
        match broker {
            None => Err(NodeFault::IntermediarioPaSconosciuto),
            Some(b) if !b.enabled => Err(NodeFault::IntermediarioPaDisabilitato),
            Some(_) if !station.enabled => Err(NodeFault::StazioneIntPaDisabilitata),
            Some(_) => Ok(()),
        }
    }

    fn link_for(&self, ec: &FiscalCode, notice: &NoticeNumber) -> Option<&StationLinkConfig> {
        let aux = notice.aux_digit();
        let code = match aux {
            0 | 3 => notice.routing_code().to_string(),
            1 | 2 => String::new(),
            _ => return None,
        };
        self.links
            .get(&(ec.to_string(), aux, code))
            .map(|&i| &self.config.station_link[i])
    }

    /// Resolves `idSoggettoServizio` through the catalogue (official BDD test
    /// `demandPaymentNotice_semantic_ko.feature`): service,
    /// validity on `today`, version, EC, station enabled for spontaneous payments.
    pub fn resolve_service(
        &self,
        id_soggetto_servizio: &str,
        today: chrono::NaiveDate,
    ) -> Result<ServiceRoute<'_>, NodeFault> {
        let &(s, p) = self
            .providers
            .get(id_soggetto_servizio)
            .ok_or(NodeFault::ServizioSconosciuto)?;
        let service = &self.config.service[s];
        let provider = &service.provider[p];
        if today < provider.valid_from || provider.valid_to.is_some_and(|to| today > to) {
            return Err(NodeFault::ServizioNonAttivo);
        }
        if service.version < 2 {
            return Err(NodeFault::VersioneServizio);
        }
        let ec = self.enabled_ec(&provider.ec)?;
        let station = match &provider.station {
            Some(id) => self.station(id),
            None => self.spontaneous_station_of(&provider.ec),
        }
        .ok_or(NodeFault::StazioneIntPaSconosciuta)?;
        self.usable_station(station)?;
        if !station.spontaneous {
            return Err(NodeFault::StazioneIntPaSconosciuta);
        }
        Ok(ServiceRoute {
            service,
            provider,
            route: Route { ec, station },
        })
    }

    fn spontaneous_station_of(&self, ec: &str) -> Option<&StationConfig> {
        self.config
            .station_link
            .iter()
            .filter(|l| l.ec == ec)
            .filter_map(|l| self.station(&l.station))
            .find(|s| s.spontaneous)
    }

    /// Stations that get a copy of a receipt where `ec` is a secondary beneficiary: every station
    /// linked to it with the broadcast flag (official BDD tests F_DPNR_10/16/18,
    /// PSRTV2_ACTV1_24), each once.
    pub fn broadcast_stations(&self, ec: &str) -> Vec<&StationConfig> {
        let mut out: Vec<&StationConfig> = Vec::new();
        for l in self
            .config
            .station_link
            .iter()
            .filter(|l| l.ec == ec && l.broadcast)
        {
            if let Some(st) = self.station(&l.station)
                && !out.iter().any(|s| s.id == st.id)
            {
                out.push(st);
            }
        }
        out
    }

    /// Whether `iban` is registered for the EC (an EC with no registered IBANs is not checked).
    pub fn iban_registered(&self, ec: &EcConfig, iban: &str) -> bool {
        ec.ibans.is_empty() || ec.ibans.iter().any(|i| i.eq_ignore_ascii_case(iban))
    }

    /// The spontaneous-payment catalogue, for nodoChiediCatalogoServiziV2.
    pub fn services(&self) -> &[ServiceConfig] {
        &self.config.service
    }

    /// The timeout of synchronous calls to a station.
    pub fn station_timeout_ms(&self, station: &StationConfig) -> u64 {
        station
            .timeout_ms
            .unwrap_or(self.config.timings.ec_timeout_ms)
    }

    /// The timeout of receipt deliveries to a station.
    pub fn receipt_timeout_ms(&self, station: &StationConfig) -> u64 {
        station
            .receipt_timeout_ms
            .unwrap_or(self.config.timings.receipt_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::types::NoticeNumber;

    fn reg() -> Registry {
        Registry::new(Config::example())
    }

    fn cred<'a>(
        psp: &'a str,
        broker: &'a str,
        ch: &'a str,
        pwd: &'a Password,
    ) -> PspCredentials<'a> {
        PspCredentials {
            id_psp: psp,
            id_broker_psp: broker,
            id_channel: ch,
            password: pwd,
        }
    }

    #[test]
    fn checks_run_in_order() {
        let r = reg();
        let good = Password::new("pwdpwdpwd").unwrap();
        let bad = Password::new("wrongpwd1").unwrap();
        assert!(
            r.authenticate(cred("60000000001", "60000000001", "60000000001_01", &good))
                .is_ok()
        );
        let code = |c: PspCredentials<'_>| r.authenticate(c).unwrap_err().code();
        assert_eq!(code(cred("6", "6", "6", &bad)), "PPT_PSP_SCONOSCIUTO");
        assert_eq!(
            code(cred("60000000001", "6", "6", &bad)),
            "PPT_INTERMEDIARIO_PSP_SCONOSCIUTO"
        );
        assert_eq!(
            code(cred("60000000001", "60000000001", "6", &bad)),
            "PPT_CANALE_SCONOSCIUTO"
        );
        assert_eq!(
            code(cred("60000000001", "60000000001", "60000000001_01", &bad)),
            "PPT_AUTENTICAZIONE"
        );
        let second = Password::new("secondpwd2").unwrap();
        assert_eq!(
            code(cred(
                "60000000001",
                "60000000001",
                "60000000002_01",
                &second
            )),
            "PPT_AUTORIZZAZIONE"
        );
    }

    #[test]
    fn routing() {
        let r = reg();
        let qr = |fc: &str, n: &str| QrCode {
            fiscal_code: FiscalCode::new(fc).unwrap(),
            notice_number: NoticeNumber::new(n).unwrap(),
        };
        assert_eq!(
            r.route_notice(&qr("77777777777", "302000100000009424"))
                .unwrap()
                .station
                .id,
            "77777777777_01"
        );
        assert_eq!(
            r.route_notice(&qr("77777777777", "301000100000009424"))
                .unwrap()
                .station
                .id,
            "77777777777_05"
        );
        assert_eq!(
            r.route_notice(&qr("12345678901", "302000100000009424"))
                .unwrap_err()
                .code(),
            "PPT_DOMINIO_SCONOSCIUTO"
        );
        assert_eq!(
            r.route_notice(&qr("77777777777", "311000100000009424"))
                .unwrap_err()
                .code(),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA"
        );
        assert_eq!(
            r.route_notice(&qr("77777777777", "502000100000009424"))
                .unwrap_err()
                .code(),
            "PPT_STAZIONE_INT_PA_SCONOSCIUTA"
        );
        let svc = r
            .resolve_service(
                "00042",
                chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            )
            .unwrap();
        assert_eq!(svc.route.station.id, "88888888888_01");
        assert_eq!(
            r.resolve_service("00099", chrono::NaiveDate::MIN)
                .unwrap_err()
                .code(),
            "PPT_SERVIZIO_SCONOSCIUTO"
        );
        assert_eq!(r.broadcast_stations("99999999999").len(), 1);
    }
}
