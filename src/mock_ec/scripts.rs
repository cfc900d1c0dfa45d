//! Scripted answers: rules that override what the mock would answer, so tests and demos can
//! make the EC slow, faulty or broken on demand.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::faults::PAA_SYSTEM_ERROR;
use crate::codec::Operation;
use crate::codec::types::NoticeNumber;

/// The operations the mock serves, which rules may name.
pub(crate) const SERVED: [Operation; 6] = [
    Operation::PaVerifyPaymentNotice,
    Operation::PaGetPayment,
    Operation::PaGetPaymentV2,
    Operation::PaSendRt,
    Operation::PaSendRtV2,
    Operation::PaDemandPaymentNotice,
];

/// What `delay` waits when the rule gives no `delay_ms`: longer than the node's usual timeout.
const DEFAULT_DELAY_MS: u64 = 10_000;

/// What a matching rule makes the mock do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptAction {
    /// `outcome=KO` with `fault_code` (default `PAA_SYSTEM_ERROR`).
    Fault,
    /// Wait `delay_ms` (default 10 s), then answer normally.
    Delay,
    /// A body that is not XML.
    Garbage,
    /// A schema-invalid response (the request is processed normally first).
    Invalid,
    /// A SOAP 1.1 `soapenv:Fault`, HTTP 500.
    SoapFault,
    /// HTTP 500 with an empty body.
    #[serde(rename = "http_500")]
    Http500,
    /// The normal answer, even for a notice whose scenario digits say otherwise.
    Ok,
}

/// A scripted answer. The first rule matching a request wins; a rule with `times` is removed
/// after that many uses. `delay_ms` on any action waits that long before acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRule {
    /// `*` or an operation's SOAPAction (`paGetPayment`, `paSendRTV2`, ...).
    #[serde(default = "any_primitive")]
    pub primitive: String,
    /// Only requests for this notice (verify, paGetPayment, receipts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_number: Option<String>,
    /// Only requests with this `idStation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// What to do.
    pub action: ScriptAction,
    /// The code of a `fault` answer (default `PAA_SYSTEM_ERROR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_code: Option<String>,
    /// Wait before acting (`delay`: default 10 000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Uses left; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

fn any_primitive() -> String {
    "*".into()
}

impl ScriptRule {
    /// A rule for `primitive` (`*` for every operation), with no other condition.
    pub fn new(primitive: &str, action: ScriptAction) -> Self {
        ScriptRule {
            primitive: primitive.to_string(),
            notice_number: None,
            station: None,
            action,
            fault_code: None,
            delay_ms: None,
            times: None,
        }
    }

    /// Only for this notice number.
    pub fn for_notice(mut self, notice_number: &str) -> Self {
        self.notice_number = Some(notice_number.to_string());
        self
    }

    /// Only for this station.
    pub fn for_station(mut self, station: &str) -> Self {
        self.station = Some(station.to_string());
        self
    }

    /// The fault code of a `fault` rule.
    pub fn with_fault_code(mut self, code: &str) -> Self {
        self.fault_code = Some(code.to_string());
        self
    }

    /// Waits this long before acting.
    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    /// Removed after `n` uses.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Checks the rule; the error names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.primitive != "*" && self.operation().is_none() {
            let names: Vec<&str> = SERVED.iter().map(|op| op.soap_action()).collect();
            return Err(format!(
                "primitive: '{}' is neither \"*\" nor one of {}",
                self.primitive,
                names.join(", ")
            ));
        }
        if let Some(n) = &self.notice_number {
            NoticeNumber::new(n.as_str()).map_err(|e| format!("notice_number: {e}"))?;
        }
        if self.station.as_deref() == Some("") {
            return Err("station: must not be empty".into());
        }
        match (&self.fault_code, self.action) {
            (Some(c), ScriptAction::Fault) if c.is_empty() => {
                return Err("fault_code: must not be empty".into());
            }
            (Some(_), action) if action != ScriptAction::Fault => {
                return Err("fault_code: only meaningful with action = \"fault\"".into());
            }
            _ => {}
        }
        if self.times == Some(0) {
            return Err("times: must be at least 1".into());
        }
        Ok(())
    }

    /// The operation `primitive` names, if it names a served one.
    fn operation(&self) -> Option<Operation> {
        Operation::from_soap_action(&self.primitive).filter(|op| SERVED.contains(op))
    }

    fn matches(&self, op: Operation, notice: Option<&str>, station: Option<&str>) -> bool {
        (self.primitive == "*" || self.operation() == Some(op))
            && self
                .notice_number
                .as_deref()
                .is_none_or(|n| Some(n) == notice)
            && self.station.as_deref().is_none_or(|s| Some(s) == station)
    }

    fn decision(&self) -> Decision {
        let delay_ms = match self.action {
            ScriptAction::Delay => Some(self.delay_ms.unwrap_or(DEFAULT_DELAY_MS)),
            _ => self.delay_ms,
        };
        let plan = match self.action {
            ScriptAction::Fault => Plan::Fault(
                self.fault_code
                    .clone()
                    .unwrap_or_else(|| PAA_SYSTEM_ERROR.into()),
            ),
            ScriptAction::Delay | ScriptAction::Ok => Plan::Normal,
            ScriptAction::Garbage => Plan::Garbage,
            ScriptAction::Invalid => Plan::Invalid,
            ScriptAction::SoapFault => Plan::SoapFault,
            ScriptAction::Http500 => Plan::Http500,
        };
        Decision {
            plan,
            delay: delay_ms.map(Duration::from_millis),
        }
    }
}

/// How to answer a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// What the EC's state says.
    Normal,
    /// `outcome=KO` with this code.
    Fault(String),
    Garbage,
    /// The normal answer, made schema-invalid.
    Invalid,
    SoapFault,
    Http500,
}

/// A plan, and how long to wait before carrying it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub plan: Plan,
    pub delay: Option<Duration>,
}

impl Decision {
    pub fn normal() -> Self {
        Decision {
            plan: Plan::Normal,
            delay: None,
        }
    }

    /// The normal answer, after `ms` milliseconds.
    pub fn delayed(ms: u64) -> Self {
        Decision {
            plan: Plan::Normal,
            delay: Some(Duration::from_millis(ms)),
        }
    }
}

/// The first rule matching the request, counted down (and removed once spent).
pub(crate) fn take_match(
    rules: &mut Vec<ScriptRule>,
    op: Operation,
    notice: Option<&str>,
    station: Option<&str>,
) -> Option<Decision> {
    let i = rules.iter().position(|r| r.matches(op, notice, station))?;
    let rule = rules.get_mut(i)?;
    let decision = rule.decision();
    if let Some(left) = rule.times.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            rules.remove(i);
        }
    }
    Some(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_times_count_down() {
        let mut rules = vec![
            ScriptRule::new("paGetPayment", ScriptAction::Garbage)
                .for_notice("302000000000000001")
                .times(1),
            ScriptRule::new("*", ScriptAction::Http500),
        ];
        let hit = |rules: &mut Vec<ScriptRule>| {
            take_match(
                rules,
                Operation::PaGetPayment,
                Some("302000000000000001"),
                Some("s"),
            )
            .map(|d| d.plan)
        };
        assert_eq!(hit(&mut rules), Some(Plan::Garbage));
        assert_eq!(hit(&mut rules), Some(Plan::Http500));
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            ScriptRule::new("paFoo", ScriptAction::Ok)
                .validate()
                .unwrap_err()
                .starts_with("primitive")
        );
        let r = ScriptRule::new("*", ScriptAction::Delay).with_fault_code("X");
        assert!(r.validate().unwrap_err().starts_with("fault_code"));
        assert!(
            ScriptRule::new("*", ScriptAction::Ok)
                .times(0)
                .validate()
                .is_err()
        );
        let json = r#"{"primitive":"paSendRT","action":"http_500","times":2}"#;
        let rule: ScriptRule = serde_json::from_str(json).unwrap();
        assert_eq!(
            rule,
            ScriptRule::new("paSendRT", ScriptAction::Http500).times(2)
        );
    }
}
