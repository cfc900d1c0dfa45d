//! The trace format (TOML, documented in `docs/traces.md`): reading a file, checking it, and
//! the node configuration it runs with.
//!
//! A trace is an ordered list of steps. A step is one of: PSP request(s) with the expected
//! answer(s), and the EC exchanges that happen while they are in flight; EC exchanges that
//! happen asynchronously (receipts); a wait; the receipts each station must have received.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::compare::{self, ANY};
use crate::codec::{Direction, Interface, Operation};

/// The configuration traces run with unless they say otherwise.
pub const DEFAULT_CONFIG: &str = include_str!("../../tests/traces/node.toml");

/// How long an asynchronous EC step or a receipts step waits by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most requests one step sends at once.
const MAX_CONCURRENT: usize = 6;

/// Values substituted (textually) wherever `{{name}}` appears, before anything else.
type Vars = BTreeMap<String, String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceFile {
    name: Option<String>,
    /// A node configuration file replacing the default one (relative to the trace).
    base_config: Option<PathBuf>,
    /// Tables merged into the node configuration (`[config.timings]`, …).
    config: Option<toml::Table>,
    /// Files whose `[vars]` this trace uses (relative to the trace).
    #[serde(default)]
    include: Vec<PathBuf>,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    step: Vec<StepFile>,
}

/// A file named by `include`: variables only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludeFile {
    #[serde(default)]
    vars: Vars,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: Option<String>,
    send: Option<OneOrMany>,
    soap_action: Option<String>,
    expect: Option<OneOrMany>,
    http_status: Option<u16>,
    #[serde(default)]
    ec: Vec<ExchangeFile>,
    wait_ms: Option<u64>,
    receipts: Option<BTreeMap<String, usize>>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeFile {
    station: String,
    operation: Option<String>,
    expect: Option<String>,
    reply: Option<String>,
    http_status: Option<u16>,
    delay_ms: Option<u64>,
    #[serde(default)]
    silence: bool,
    #[serde(default)]
    close: bool,
}

/// A checked trace, ready to run.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The file it was read from.
    pub path: PathBuf,
    /// `name`, else the file's stem.
    pub name: String,
    /// The leading comment of the file: what the trace proves.
    pub description: String,
    base_config: Option<String>,
    overrides: Option<toml::Table>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Every scripted EC exchange, in file order; steps refer to them by index.
    pub exchanges: Vec<Exchange>,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// `name`, else a description of what the step does.
    pub label: String,
    /// What the step does.
    pub kind: StepKind,
}

/// The four kinds of step. Exchanges are indices into [`Trace::exchanges`].
#[derive(Debug, Clone)]
pub enum StepKind {
    /// PSP requests (several: sent at once) and the EC exchanges made while they are in flight.
    Psp {
        requests: Vec<PspRequest>,
        exchanges: Vec<usize>,
    },
    /// EC exchanges the node makes on its own (receipts, retries), within `timeout`.
    Ec {
        exchanges: Vec<usize>,
        timeout: Duration,
    },
    /// A pause.
    Wait(Duration),
    /// Receipts acknowledged by each station since the trace started: exactly these counts,
    /// reached within `timeout`.
    Receipts {
        expected: BTreeMap<String, usize>,
        timeout: Duration,
    },
}

/// A request to the node and the answer expected.
#[derive(Debug, Clone)]
pub struct PspRequest {
    /// The request, placeholders still to fill in.
    pub body: String,
    /// The SOAPAction header (None: no header).
    pub soap_action: Option<String>,
    /// The answer expected (an envelope, or its payload).
    pub expect: String,
    /// The HTTP status expected.
    pub http_status: u16,
}

/// A call the node must make to a station, and how the EC answers it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The station called (the last segment of the URL called).
    pub station: String,
    /// The paForNode operation called.
    pub operation: Operation,
    /// The request expected (None: any request of the operation).
    pub expect: Option<String>,
    /// How the EC answers.
    pub answer: Answer,
    /// How long the EC waits before answering.
    pub delay: Duration,
}

/// How an EC answers a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This body (placeholders still to fill in), with this HTTP status.
    Reply { body: String, status: u16 },
    /// Never answer: the node's timeout fires.
    Silence,
    /// Drop the connection without a complete answer.
    Close,
}

/// Reads and checks a trace. `overrides` are variables given on the command line; they win
/// over the trace's own.
pub fn load(path: &Path, overrides: &Vars) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(path, &text, overrides)
}

/// Parses and checks a trace's text (`path` names it in errors and anchors relative paths).
pub fn parse(path: &Path, text: &str, overrides: &Vars) -> Result<Trace, String> {
    let file: TraceFile = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut vars = Vars::new();
    for inc in &file.include {
        let p = dir.join(inc);
        let t = std::fs::read_to_string(&p)
            .map_err(|e| format!("{}: include {}: {e}", path.display(), p.display()))?;
        let f: IncludeFile = toml::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?;
        vars.extend(f.vars);
    }
    vars.extend(file.vars);
    vars.extend(overrides.clone());
    for name in vars.keys() {
        if !compare::is_name(name) {
            return Err(format!(
                "{}: variable name '{name}': use letters, digits, '_', '-', '.'",
                path.display()
            ));
        }
    }
    let base_config = match &file.base_config {
        Some(p) => Some(std::fs::read_to_string(dir.join(p)).map_err(|e| {
            format!(
                "{}: base_config {}: {e}",
                path.display(),
                dir.join(p).display()
            )
        })?),
        None => None,
    };
    let mut trace = Trace {
        path: path.to_path_buf(),
        name: file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        description: leading_comment(text),
        base_config,
        overrides: file.config,
        steps: Vec::new(),
        exchanges: Vec::new(),
    };
    if file.step.is_empty() {
        return Err(format!("{}: no [[step]]", path.display()));
    }
    for (i, s) in file.step.into_iter().enumerate() {
        let where_ = format!(
            "{}: step {} ({})",
            path.display(),
            i + 1,
            s.name.as_deref().unwrap_or("unnamed")
        );
        let step = check_step(&mut trace, s, &vars).map_err(|e| format!("{where_}: {e}"))?;
        trace.steps.push(step);
    }
    Ok(trace)
}

/// The `#` lines the file starts with, without the `#`.
fn leading_comment(text: &str) -> String {
    text.lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| l.trim_start().trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// Substitutes variables (recursively: a variable may use others).
fn expand(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = text.to_string();
    for _ in 0..16 {
        let found: Vec<_> = compare::placeholders(&out)
            .into_iter()
            .filter(|(_, n)| vars.contains_key(*n))
            .map(|(r, n)| (r, n.to_string()))
            .collect();
        if found.is_empty() {
            return Ok(out);
        }
        for (range, name) in found.into_iter().rev() {
            out.replace_range(range, &vars[&name]);
        }
    }
    Err("variables nest more than 16 deep (a variable uses itself?)".into())
}

/// An expected message: variables substituted, well-formed, placeholders where they can capture.
fn expected_xml(text: &str, vars: &Vars, what: &str) -> Result<String, String> {
    let text = expand(text, vars)?;
    compare::parse(&text).map_err(|e| format!("{what} is not well-formed XML: {e}"))?;
    Ok(text)
}

/// The operation of a message's root (request or response), leniently.
fn root_operation(text: &str) -> Option<(Operation, Direction)> {
    crate::codec::envelope::sniff_root(text.as_bytes())
}

fn check_step(trace: &mut Trace, s: StepFile, vars: &Vars) -> Result<Step, String> {
    let kinds = [
        s.send.is_some(),
        s.wait_ms.is_some(),
        s.receipts.is_some(),
        s.send.is_none() && !s.ec.is_empty(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("a step has exactly one of: `send` (with `expect`, and [[step.ec]] in flight), [[step.ec]] alone, `wait_ms`, `receipts`".into());
    }
    let timeout = s
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut exchanges = Vec::new();
    for (j, x) in s.ec.into_iter().enumerate() {
        let x = check_exchange(x, vars).map_err(|e| format!("[[step.ec]] {}: {e}", j + 1))?;
        exchanges.push(trace.exchanges.len());
        trace.exchanges.push(x);
    }
    let ec_label = |ids: &[usize], trace: &Trace| {
        ids.iter()
            .map(|&i| {
                format!(
                    "{} → {}",
                    trace.exchanges[i].operation.soap_action(),
                    trace.exchanges[i].station
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(ms) = s.wait_ms {
        if s.expect.is_some() || s.timeout_ms.is_some() {
            return Err("`wait_ms` takes no `expect` or `timeout_ms`".into());
        }
        return Ok(Step {
            label: s.name.unwrap_or_else(|| format!("wait {ms} ms")),
            kind: StepKind::Wait(Duration::from_millis(ms)),
        });
    }
    if let Some(expected) = s.receipts {
        if s.expect.is_some() {
            return Err("`receipts` takes no `expect`".into());
        }
        return Ok(Step {
            label: s.name.unwrap_or_else(|| "receipts".into()),
            kind: StepKind::Receipts { expected, timeout },
        });
    }
    let Some(send) = s.send else {
        if s.expect.is_some() || s.soap_action.is_some() || s.http_status.is_some() {
            return Err("`expect`, `soap_action` and `http_status` belong with `send`".into());
        }
        let label = s
            .name
            .unwrap_or_else(|| format!("EC {}", ec_label(&exchanges, trace)));
        return Ok(Step {
            label,
            kind: StepKind::Ec { exchanges, timeout },
        });
    };
    if s.timeout_ms.is_some() {
        return Err("`timeout_ms` is for asynchronous EC steps and receipts".into());
    }
    let sends = send.into_vec();
    let expects = s
        .expect
        .ok_or("`send` needs `expect` (use {{*}} to accept anything)")?
        .into_vec();
    if sends.is_empty() || sends.len() != expects.len() {
        return Err(format!(
            "{} request(s) but {} expected answer(s)",
            sends.len(),
            expects.len()
        ));
    }
    // Answers are matched to expectations in any order: n! tries.
    if sends.len() > MAX_CONCURRENT {
        return Err(format!("at most {MAX_CONCURRENT} requests at once"));
    }
    let mut requests = Vec::new();
    for (k, (body, expect)) in sends.into_iter().zip(expects).enumerate() {
        let body = expand(&body, vars)?;
        let soap_action = match &s.soap_action {
            Some(a) if a.is_empty() => None,
            Some(a) => Some(a.clone()),
            None => match root_operation(&body) {
                Some((op, Direction::Request)) if op.interface() == Interface::NodeForPsp => {
                    Some(op.soap_action().to_string())
                }
                _ => {
                    return Err(format!(
                        "request {}: cannot tell its operation from the body; set `soap_action` (\"\" for none)",
                        k + 1
                    ));
                }
            },
        };
        let expect = expected_xml(&expect, vars, &format!("expect {}", k + 1))?;
        requests.push(PspRequest {
            body,
            soap_action,
            expect,
            http_status: s.http_status.unwrap_or(200),
        });
    }
    let ops: Vec<&str> = requests
        .iter()
        .map(|r| r.soap_action.as_deref().unwrap_or("(no SOAPAction)"))
        .collect();
    let label = s.name.unwrap_or_else(|| {
        if requests.len() > 1 {
            format!("{} at once", ops.join(" + "))
        } else {
            ops[0].to_string()
        }
    });
    Ok(Step {
        label,
        kind: StepKind::Psp {
            requests,
            exchanges,
        },
    })
}

fn check_exchange(x: ExchangeFile, vars: &Vars) -> Result<Exchange, String> {
    let expect = x
        .expect
        .as_deref()
        .map(|e| expected_xml(e, vars, "expect"))
        .transpose()?;
    let from_expect = expect
        .as_deref()
        .and_then(root_operation)
        .filter(|(op, dir)| *dir == Direction::Request && op.interface() == Interface::PaForNode);
    let operation = match (&x.operation, from_expect) {
        (Some(name), found) => {
            let op = Operation::from_soap_action(name)
                .filter(|op| op.interface() == Interface::PaForNode)
                .ok_or_else(|| format!("'{name}' is not a paForNode operation"))?;
            if found.is_some_and(|(f, _)| f != op) {
                return Err(format!(
                    "`operation` {name} but `expect` is a {} request",
                    found.map(|(f, _)| f.soap_action()).unwrap_or_default()
                ));
            }
            op
        }
        (None, Some((op, _))) => op,
        (None, None) => {
            return Err("set `operation`, or an `expect` whose root is a paForNode request".into());
        }
    };
    let answer = match (x.reply, x.silence, x.close) {
        (Some(body), false, false) => {
            let body = expand(&body, vars)?;
            if body.contains(&format!("{{{{{ANY}}}}}")) {
                return Err("{{*}} cannot be sent in a reply".into());
            }
            Answer::Reply {
                body,
                status: x.http_status.unwrap_or(200),
            }
        }
        (None, true, false) => Answer::Silence,
        (None, false, true) => Answer::Close,
        _ => {
            return Err(
                "an EC answers with exactly one of `reply`, `silence = true`, `close = true`"
                    .into(),
            );
        }
    };
    if x.http_status.is_some() && !matches!(answer, Answer::Reply { .. }) {
        return Err("`http_status` goes with `reply`".into());
    }
    Ok(Exchange {
        station: x.station,
        operation,
        expect,
        answer,
        delay: Duration::from_millis(x.delay_ms.unwrap_or(0)),
    })
}

impl Trace {
    /// The node configuration (TOML, with `{EC_URL}`, `{DOWN_URL}` and `{DB}` still to fill
    /// in): the trace's `base_config`, else `default`, with the trace's `[config]` merged in.
    pub fn config_text(&self, default: &str) -> Result<String, String> {
        let base = self.base_config.as_deref().unwrap_or(default);
        let Some(overrides) = &self.overrides else {
            return Ok(base.to_string());
        };
        let mut table: toml::Table = toml::from_str(base)
            .map_err(|e| format!("{}: base configuration: {e}", self.path.display()))?;
        merge(&mut table, overrides.clone());
        toml::to_string(&table).map_err(|e| format!("{}: configuration: {e}", self.path.display()))
    }
}

/// Merges `over` into `base`: tables recursively, anything else (arrays included) replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Trace, String> {
        parse(Path::new("t.toml"), text, &Vars::new())
    }

    const ACTIVATE: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nfp="http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd"><soapenv:Body><nfp:activatePaymentNoticeReq><idPSP>{{psp}}</idPSP></nfp:activatePaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#;

    #[test]
    fn steps_are_checked_with_their_location() {
        let text = format!(
            "# proves a thing\n[vars]\npsp = \"1\"\n[[step]]\nsend = '{ACTIVATE}'\nexpect = '<a>{{{{*}}}}</a>'\n[[step]]\nwait_ms = 5\n"
        );
        let t = load_str(&text).unwrap();
        assert_eq!(t.description, "proves a thing");
        let StepKind::Psp { requests, .. } = &t.steps[0].kind else {
            panic!()
        };
        assert_eq!(
            requests[0].soap_action.as_deref(),
            Some("activatePaymentNotice")
        );
        assert!(requests[0].body.contains("<idPSP>1</idPSP>"));
        let err = load_str("[[step]]\nwait_ms = 5\nreceipts = {}\n").unwrap_err();
        assert!(
            err.starts_with("t.toml: step 1 (unnamed): a step has exactly one of"),
            "{err}"
        );
        let err = load_str(&format!(
            "[[step]]\nname = \"x\"\nsend = '{ACTIVATE}'\nexpect = '<a>'\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("step 1 (x): expect 1 is not well-formed XML"),
            "{err}"
        );
        let err = load_str("[[step]]\n[[step.ec]]\nstation = \"s\"\nreply = \"x\"\n").unwrap_err();
        assert!(err.contains("[[step.ec]] 1: set `operation`"), "{err}");
        assert!(
            load_str("nonsense = 1\n")
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn config_overrides_merge_into_the_default() {
        let t = load_str("[config.timings]\nec_timeout_ms = 5\n[[step]]\nwait_ms = 1\n").unwrap();
        let cfg: toml::Table = toml::from_str(&t.config_text(DEFAULT_CONFIG).unwrap()).unwrap();
        assert_eq!(cfg["timings"]["ec_timeout_ms"].as_integer(), Some(5));
        assert!(
            cfg["timings"].get("token_max_ms").is_some(),
            "other keys kept"
        );
        assert!(!cfg["station"].as_array().unwrap().is_empty());
    }

    #[test]
    fn variables_nest_but_not_forever() {
        let mut vars = Vars::new();
        vars.insert("a".into(), "<{{b}}>".into());
        vars.insert("b".into(), "x".into());
        assert_eq!(expand("{{a}}{{token}}", &vars).unwrap(), "<x>{{token}}");
        vars.insert("b".into(), "{{a}}".into());
        assert!(expand("{{a}}", &vars).is_err());
    }
}
