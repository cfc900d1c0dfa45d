//! Turns one payment's journal into a trace: the PSP requests with the answers the node gave,
//! the EC requests with the answers the ECs gave (in flight or asynchronous, as they happened),
//! the waits between requests and the receipts delivered. Volatile values become placeholders:
//! each token is captured from its activation answer and reused; node-made timestamps and
//! receipt ids match anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::codec::Operation;
use crate::journal::JournalRow;
use crate::journal::Subtype;

/// What the journal writes instead of a password.
const MASKED: &str = crate::codec::mask::MASKED;

/// A gap between two requests longer than this becomes a `wait_ms` step (shorter ones too when
/// a token expired in between).
const WAIT_THRESHOLD_MS: u64 = 1000;

/// One request/response pair of the journal.
#[derive(Debug, Clone)]
struct Exchange {
    component: String,
    primitive: String,
    station: Option<String>,
    start: u64,
    end: u64,
    request: String,
    response: Option<String>,
    outcome: Option<String>,
}

impl Exchange {
    fn is_psp(&self) -> bool {
        self.component == "nodeForPsp"
    }

    fn operation(&self) -> Option<Operation> {
        Operation::from_soap_action(&self.primitive)
    }

    /// EC calls the node makes while a PSP request waits (the others are asynchronous).
    fn is_synchronous_ec(&self) -> bool {
        !self.is_psp()
            && !matches!(
                self.operation(),
                Some(Operation::PaSendRt | Operation::PaSendRtV2)
            )
    }
}

/// Pairs each REQ row with the next RESP row of the same exchange (ids order the journal, but
/// rows of other exchanges may come between).
fn exchanges(rows: &[JournalRow]) -> Vec<Exchange> {
    let mut rows: Vec<&JournalRow> = rows
        .iter()
        .filter(|r| matches!(r.entry.component.as_str(), "nodeForPsp" | "paForNode"))
        .collect();
    rows.sort_by_key(|r| r.id);
    let mut used = vec![false; rows.len()];
    let mut out = Vec::new();
    for i in 0..rows.len() {
        let req = &rows[i].entry;
        if used[i] || req.subtype != Some(Subtype::Req) {
            continue;
        }
        let same = |e: &crate::journal::JournalEntry| {
            e.subtype == Some(Subtype::Resp)
                && e.component == req.component
                && e.primitive == req.primitive
                && e.station == req.station
                && e.caller == req.caller
        };
        let Some(j) = (i + 1..rows.len()).find(|&j| !used[j] && same(&rows[j].entry)) else {
            continue;
        };
        used[i] = true;
        used[j] = true;
        let resp = &rows[j].entry;
        out.push(Exchange {
            component: req.component.clone(),
            primitive: req.primitive.clone(),
            station: req.station.clone(),
            start: req.at,
            end: resp.at,
            request: req.payload.clone().unwrap_or_default(),
            response: resp.payload.clone(),
            outcome: resp.outcome.clone(),
        });
    }
    out.sort_by_key(|x| x.start);
    out
}

/// The text of the first `<name>…</name>` element (unprefixed, as pagoPA payloads write it).
fn element_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")? + start;
    Some(&xml[start..end])
}

/// `2024-05-01T10:00:00` and longer: a timestamp the node made up.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
}

/// Replaces the text of elements matching `volatile` (simple content only) with `{{*}}`.
fn wildcard_elements(xml: &str, volatile: impl Fn(&str, &str) -> bool) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        let (before, tag) = rest.split_at(lt);
        out.push_str(before);
        let Some(gt) = tag.find('>') else {
            rest = tag;
            break;
        };
        let open = &tag[..=gt];
        out.push_str(open);
        rest = &tag[gt + 1..];
        let name = open
            .trim_start_matches('<')
            .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .next()
            .unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if open.starts_with("</")
            || open.ends_with("/>")
            || open.starts_with("<?")
            || open.starts_with("<!")
        {
            continue;
        }
        if let Some(end) = rest.find('<')
            && rest[end..].starts_with(&format!("</{name}>"))
            && volatile(local, &rest[..end])
        {
            out.push_str("{{*}}");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The export's placeholders: token values by name, in order of issue, and the channels whose
/// passwords the journal masked.
struct Placeholders {
    tokens: Vec<(String, String)>,
    channels: Vec<String>,
}

/// The variable standing for a channel's password.
fn password_var(channel: &str) -> String {
    format!("password_{channel}")
}

/// The channels' passwords in the trace configuration: the journal masks passwords, and an
/// export must not copy a real node's configuration into a file, so exported traces use the
/// test credentials (editable in their `[vars]`).
fn trace_passwords() -> BTreeMap<String, String> {
    let cfg: toml::Table = super::trace::DEFAULT_CONFIG.parse().unwrap_or_default();
    let channels = cfg
        .get("channel")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    channels
        .iter()
        .filter_map(|c| {
            Some((
                c.get("id")?.as_str()?.to_string(),
                c.get("password")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

impl Placeholders {
    fn new(exchanges: &[Exchange]) -> Placeholders {
        let mut tokens: Vec<(String, String)> = Vec::new();
        for x in exchanges
            .iter()
            .filter(|x| x.is_psp() && x.primitive.starts_with("activatePaymentNotice"))
        {
            if let Some(t) = x
                .response
                .as_deref()
                .and_then(|r| element_text(r, "paymentToken"))
                && !t.is_empty()
                && !tokens.iter().any(|(_, v)| v == t)
            {
                let name = if tokens.is_empty() {
                    "token".to_string()
                } else {
                    format!("token_{}", tokens.len() + 1)
                };
                tokens.push((name, t.to_string()));
            }
        }
        let mut channels: Vec<String> = exchanges
            .iter()
            .filter(|x| x.is_psp() && x.request.contains(MASKED))
            .filter_map(|x| element_text(&x.request, "idChannel").map(str::to_string))
            .collect();
        channels.sort();
        channels.dedup();
        Placeholders { tokens, channels }
    }

    /// A message the trace sends (a PSP request, an EC answer): tokens replaced.
    fn sent(&self, text: &str) -> String {
        self.tokens
            .iter()
            .fold(text.to_string(), |t, (name, value)| {
                t.replace(value.as_str(), &format!("{{{{{name}}}}}"))
            })
    }

    /// A PSP request: tokens replaced, and the masked password by its channel's variable.
    fn psp_request(&self, text: &str) -> String {
        let text = self.sent(text);
        match element_text(&text, "idChannel") {
            Some(channel) if text.contains(MASKED) => {
                text.replace(MASKED, &format!("{{{{{}}}}}", password_var(channel)))
            }
            _ => text,
        }
    }

    /// A message the node makes (its answers, its EC requests): tokens, receipt ids and
    /// timestamps replaced.
    fn made_by_node(&self, text: &str) -> String {
        let loose = wildcard_elements(text, |name, value| {
            name == "receiptId" || is_timestamp(value.trim())
        });
        self.sent(&loose)
    }
}

/// A TOML string: a multi-line literal when the text allows it (readable XML), else a basic
/// string with escapes.
fn toml_string(s: &str) -> String {
    let literal_ok = !s.contains("'''")
        && !s.ends_with('\'')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    if literal_ok {
        format!("'''\n{s}'''")
    } else {
        toml::Value::String(s.to_string()).to_string()
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn write_ec(out: &mut String, x: &Exchange, p: &Placeholders) {
    let _ = writeln!(
        out,
        "\n[[step.ec]]\nstation = {}",
        quoted(x.station.as_deref().unwrap_or(""))
    );
    let _ = writeln!(out, "expect = {}", toml_string(&p.made_by_node(&x.request)));
    match (&x.response, x.outcome.as_deref()) {
        (Some(body), _) => {
            let _ = writeln!(out, "reply = {}", toml_string(&p.sent(body)));
        }
        (None, Some("PPT_STAZIONE_INT_PA_TIMEOUT")) => {
            out.push_str("# The EC did not answer in time.\nsilence = true\n")
        }
        (None, outcome) => {
            let _ = writeln!(
                out,
                "# The exchange failed without an answer ({}): the connection is dropped.\nclose = true",
                outcome.unwrap_or("no outcome")
            );
        }
    }
}

/// The trace of one payment (`fiscal_code`/`notice_number`) from its journal rows; `origin`
/// says where they come from, for the header comment.
pub fn export(
    rows: &[JournalRow],
    fiscal_code: &str,
    notice_number: &str,
    origin: &str,
) -> Result<String, String> {
    let rows: Vec<JournalRow> = rows
        .iter()
        .filter(|r| {
            r.entry.notice_number.as_deref() == Some(notice_number)
                && r.entry
                    .fiscal_code
                    .as_deref()
                    .is_none_or(|f| f == fiscal_code)
        })
        .cloned()
        .collect();
    let all = exchanges(&rows);
    let psp: Vec<&Exchange> = all.iter().filter(|x| x.is_psp()).collect();
    if psp.is_empty() {
        return Err(format!(
            "the journal has no PSP request for payment {fiscal_code}/{notice_number}"
        ));
    }
    let p = Placeholders::new(&all);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Payment {fiscal_code}/{notice_number}, exported from the journal of {origin}."
    );
    out.push_str("# What it proves: the conversation recorded for this payment (PSP requests and the node's\n");
    out.push_str("# answers, EC requests and the ECs' answers, receipts) replays identically on a fresh node.\n");
    out.push_str("# It runs with the default trace configuration: add base_config or [config] if the recorded\n");
    out.push_str("# node was configured differently (stations, timings).\n");
    let _ = writeln!(
        out,
        "name = {}",
        quoted(&format!("export {fiscal_code}/{notice_number}"))
    );
    if !p.channels.is_empty() {
        let known = trace_passwords();
        out.push_str("\n# The journal does not keep passwords: these are the trace configuration's.\n[vars]\n");
        for c in &p.channels {
            let _ = writeln!(
                out,
                "{} = {}",
                password_var(c),
                quoted(known.get(c).map_or("CHANGE-ME", String::as_str))
            );
        }
    }
    // An EC call belongs to the PSP request it happened during; the others are asynchronous.
    let inside = |ec: &Exchange, x: &Exchange| {
        ec.is_synchronous_ec() && ec.start >= x.start && ec.end <= x.end
    };
    // A token expiring between two requests makes the second one depend on the wait.
    let expiries: Vec<u64> = rows
        .iter()
        .filter(|r| {
            r.entry.category == Some(crate::journal::Category::Internal)
                && r.entry.primitive == "EXPIRED"
        })
        .map(|r| r.entry.at)
        .collect();
    let mut receipts: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_end: Option<u64> = None;
    let mut async_open = false;
    for x in &all {
        if x.is_psp() {
            if let Some(prev) = last_end
                && (x.start > prev + WAIT_THRESHOLD_MS
                    || expiries.iter().any(|&at| at > prev && at <= x.start))
            {
                let gap = (x.start - prev).div_ceil(100) * 100;
                let _ = writeln!(out, "\n[[step]]\nwait_ms = {gap}");
            }
            let _ = writeln!(out, "\n[[step]]\nname = {}", quoted(&x.primitive));
            // The SOAPAction is not journaled: say it only when the body does not (a mismatch,
            // an unreadable request).
            let from_body =
                crate::codec::envelope::sniff_root(x.request.as_bytes()).map(|(op, _)| op);
            if from_body != x.operation() {
                let _ = writeln!(out, "soap_action = {}", quoted(&x.primitive));
            }
            let _ = writeln!(out, "send = {}", toml_string(&p.psp_request(&x.request)));
            let _ = writeln!(
                out,
                "expect = {}",
                toml_string(&p.made_by_node(x.response.as_deref().unwrap_or("")))
            );
            for ec in all.iter().filter(|ec| inside(ec, x)) {
                write_ec(&mut out, ec, &p);
            }
            last_end = Some(x.end);
            async_open = false;
        } else if !psp.iter().any(|q| inside(x, q)) {
            if !async_open {
                let wait = last_end.map(|e| x.end.saturating_sub(e)).unwrap_or(0);
                let timeout = (wait + 5000).max(10_000);
                let _ = writeln!(
                    out,
                    "\n[[step]]\nname = \"the node calls the EC on its own\"\ntimeout_ms = {timeout}"
                );
                async_open = true;
            }
            write_ec(&mut out, x, &p);
            if matches!(
                x.operation(),
                Some(Operation::PaSendRt | Operation::PaSendRtV2)
            ) && x.outcome.as_deref() == Some("OK")
            {
                *receipts
                    .entry(x.station.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            last_end = Some(x.end);
        }
    }
    if !receipts.is_empty() {
        let list: Vec<String> = receipts
            .iter()
            .map(|(s, n)| format!("{} = {n}", quoted(s)))
            .collect();
        let _ = writeln!(out, "\n[[step]]\nreceipts = {{ {} }}", list.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_receipt_ids_become_wildcards() {
        let xml = "<a><receiptId>abc</receiptId><paymentDateTime>2024-05-01T10:00:00.123</paymentDateTime><applicationDate>2024-05-01</applicationDate><b x=\"1\"/><ns:c>2024-05-01T10:00:00Z</ns:c></a>";
        let out = wildcard_elements(xml, |name, value| {
            name == "receiptId" || is_timestamp(value)
        });
        assert_eq!(
            out,
            "<a><receiptId>{{*}}</receiptId><paymentDateTime>{{*}}</paymentDateTime><applicationDate>2024-05-01</applicationDate><b x=\"1\"/><ns:c>{{*}}</ns:c></a>"
        );
    }

    #[test]
    fn toml_strings_round_trip() {
        for s in [
            "<a>\n  <b/>\n</a>",
            "it's '''odd'''",
            "tab\tcr\r\n",
            "ends with '",
        ] {
            let doc = format!("v = {}", toml_string(s));
            let t: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(t["v"].as_str(), Some(s), "{doc}");
        }
    }
}
