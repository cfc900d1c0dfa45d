//! Semantic XML comparison with placeholders, for traces.
//!
//! Two documents are equal when their element trees are: names compared by namespace URI and
//! local name (prefixes do not matter), attributes compared as sets (namespace declarations
//! ignored), children compared in order, and text compared with leading and trailing whitespace
//! trimmed (whitespace-only text between elements is insignificant).
//!
//! Expected text may hold placeholders: `{{*}}` matches anything (as the whole content of an
//! element it also matches child elements), `{{name}}` captures what it matches the first time and
//! must match the same value afterwards. Placeholders may stand for the whole text of an element
//! or for part of it (`<description>Esito concorde: {{*}}</description>`).

use std::collections::BTreeMap;
use std::fmt;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::codec::envelope::NS_SOAP;

/// Values captured by placeholders, by name.
pub type Captures = BTreeMap<String, String>;

/// The wildcard placeholder.
pub const ANY: &str = "*";

/// An element of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The namespace URI ("" for none).
    pub ns: String,
    /// The local name.
    pub local: String,
    /// Attributes but namespace declarations, sorted by (namespace, name).
    pub attrs: Vec<(String, String, String)>,
    /// The child elements, in order.
    pub children: Vec<Element>,
    /// The element's own text (all its text nodes joined), trimmed.
    pub text: String,
}

impl Element {
    /// `local`, or `{ns}local` when the namespace is what differs.
    fn qualified(&self) -> String {
        if self.ns.is_empty() {
            self.local.clone()
        } else {
            format!("{{{}}}{}", self.ns, self.local)
        }
    }

    /// A one-line rendering for diffs, cut at `max` characters.
    pub fn summary(&self, max: usize) -> String {
        let mut s = String::new();
        self.render(&mut s);
        if s.chars().count() > max {
            s = s.chars().take(max).collect::<String>() + "…";
        }
        s
    }

    fn render(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.local);
        for (_, name, value) in &self.attrs {
            out.push_str(&format!(" {name}=\"{value}\""));
        }
        if self.children.is_empty() && self.text.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        out.push_str(&self.text);
        for c in &self.children {
            c.render(out);
        }
        out.push_str(&format!("</{}>", self.local));
    }

    /// The payload of a SOAP envelope (the first element of its Body), or `self` if this is not
    /// an envelope.
    fn payload(&self) -> &Element {
        if self.ns == NS_SOAP && self.local == "Envelope" {
            let body = self
                .children
                .iter()
                .find(|c| c.ns == NS_SOAP && c.local == "Body");
            if let Some(first) = body.and_then(|b| b.children.first()) {
                return first;
            }
        }
        self
    }

    fn is_envelope(&self) -> bool {
        self.ns == NS_SOAP && self.local == "Envelope"
    }
}

/// Parses a document into an element tree, no deeper than the codec's default limit (the tree is
/// then walked recursively: the limit bounds the recursion, whoever wrote the document).
pub fn parse(doc: &str) -> Result<Element, String> {
    let max_depth = crate::codec::Limits::DEFAULT.max_depth;
    let mut reader = NsReader::from_str(doc);
    let cfg = reader.config_mut();
    cfg.expand_empty_elements = true;
    cfg.check_end_names = true;
    cfg.trim_text(false);
    let mut stack: Vec<(Element, String)> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                return Err(format!(
                    "not well-formed XML at byte {}: {e}",
                    reader.error_position()
                ));
            }
        };
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.as_ref().to_string()),
            ResolveResult::Unbound => Some(String::new()),
            ResolveResult::Unknown(p) => return Err(format!("unbound namespace prefix '{}'", p)),
        };
        match event {
            Event::Start(_) if stack.len() >= max_depth => {
                return Err(format!("elements nested deeper than {max_depth} levels"));
            }
            Event::Start(start) => {
                let local = start.local_name().as_ref().to_string();
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|e| format!("bad attribute in <{local}>: {e}"))?;
                    if a.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (res, name) = reader.resolver().resolve_attribute(a.key);
                    let ans = match res {
                        ResolveResult::Bound(ns) => ns.as_ref().to_string(),
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(p) => {
                            return Err(format!("unbound attribute prefix '{}'", p));
                        }
                    };
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| format!("bad attribute value in <{local}>: {e}"))?
                        .into_owned();
                    attrs.push((ans, name.as_ref().to_string(), value));
                }
                attrs.sort();
                let el = Element {
                    ns: ns.unwrap_or_default(),
                    local,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                };
                stack.push((el, String::new()));
            }
            Event::End(_) => {
                let Some((mut el, text)) = stack.pop() else {
                    return Err("unbalanced end tag".into());
                };
                el.text = text.trim().to_string();
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                match stack.last_mut() {
                    Some((_, acc)) => acc.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(c) => {
                if let Some((_, acc)) = stack.last_mut() {
                    acc.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let raw = format!("&{};", &*r);
                let c = quick_xml::escape::unescape(&raw)
                    .map_err(|e| format!("bad reference {raw}: {e}"))?;
                if let Some((_, acc)) = stack.last_mut() {
                    acc.push_str(&c);
                }
            }
            Event::Eof => break,
            Event::Empty(_)
            | Event::Comment(_)
            | Event::PI(_)
            | Event::Decl(_)
            | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("premature end of document".into());
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// Where two documents first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Slash-separated local names from the root (`name[2]` for the second of several siblings).
    pub path: String,
    /// What was expected there.
    pub expected: String,
    /// What came instead.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {}\n  expected: {}\n  actual:   {}",
            self.path, self.expected, self.actual
        )
    }
}

/// A piece of expected text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Any,
    Named(&'a str),
}

/// Whether `s` is a placeholder name: letters, digits, `_`, `-`, `.`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Every `{{…}}` placeholder in `text`: (byte range, name or `*`). Braces around anything else
/// (JSON in a fault description, say) are plain text.
pub fn placeholders(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("{{") {
        let start = from + i;
        let Some(j) = text[start + 2..].find("}}") else {
            break;
        };
        let inner = text[start + 2..start + 2 + j].trim();
        let end = start + 2 + j + 2;
        if inner == ANY || is_name(inner) {
            found.push((start..end, inner));
            from = end;
        } else {
            from = start + 2;
        }
    }
    found
}

fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    for (range, name) in placeholders(text) {
        if range.start > at {
            out.push(Piece::Literal(&text[at..range.start]));
        }
        out.push(if name == ANY {
            Piece::Any
        } else {
            Piece::Named(name)
        });
        at = range.end;
    }
    if at < text.len() || out.is_empty() {
        out.push(Piece::Literal(&text[at..]));
    }
    out
}

/// Matches `actual` against a pattern of pieces, capturing unknown names (shortest match first).
fn match_pieces(pieces: &[Piece<'_>], actual: &str, caps: &mut Captures) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match first {
        Piece::Literal(l) => actual
            .strip_prefix(l)
            .is_some_and(|tail| match_pieces(rest, tail, caps)),
        Piece::Named(name) if caps.contains_key(*name) => {
            let known = caps[*name].clone();
            actual
                .strip_prefix(known.as_str())
                .is_some_and(|tail| match_pieces(rest, tail, caps))
        }
        Piece::Any | Piece::Named(_) => {
            let ends: Vec<usize> = actual
                .char_indices()
                .map(|(i, _)| i)
                .chain([actual.len()])
                .collect();
            // The last piece takes everything; otherwise try the shortest match first.
            let ends = if rest.is_empty() {
                vec![actual.len()]
            } else {
                ends
            };
            for end in ends {
                if let Piece::Named(name) = first {
                    caps.insert(name.to_string(), actual[..end].to_string());
                }
                if match_pieces(rest, &actual[end..], caps) {
                    return true;
                }
                if let Piece::Named(name) = first {
                    caps.remove(*name);
                }
            }
            false
        }
    }
}

/// Matches a text against a pattern with placeholders, capturing into `caps`.
pub fn match_text(pattern: &str, actual: &str, caps: &mut Captures) -> bool {
    match_pieces(&pieces(pattern), actual, caps)
}

/// Compares an expected document with an actual one. An expected document that is not a SOAP
/// envelope is compared with the actual envelope's payload (the first element of its Body).
/// On success `caps` holds the values captured; on failure it may hold partial captures, so
/// callers compare against a copy.
pub fn compare_documents(
    expected: &str,
    actual: &str,
    caps: &mut Captures,
) -> Result<(), Mismatch> {
    let expected = parse(expected).map_err(|e| Mismatch {
        path: "/".into(),
        expected: "a well-formed expected document".into(),
        actual: e,
    })?;
    let actual_tree = parse(actual).map_err(|e| Mismatch {
        path: "/".into(),
        expected: expected.summary(120),
        actual: format!("not XML ({e}): {}", abbreviate(actual, 200)),
    })?;
    let actual_root = if expected.is_envelope() {
        &actual_tree
    } else {
        actual_tree.payload()
    };
    compare(&expected, actual_root, caps)
}

/// The first `max` characters of `s`, on one line.
pub fn abbreviate(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        flat.chars().take(max).collect::<String>() + "…"
    } else {
        flat
    }
}

/// Compares two element trees.
pub fn compare(expected: &Element, actual: &Element, caps: &mut Captures) -> Result<(), Mismatch> {
    let path = format!("/{}", expected.local);
    if (expected.ns.as_str(), expected.local.as_str())
        != (actual.ns.as_str(), actual.local.as_str())
    {
        return Err(Mismatch {
            path,
            expected: format!("element {}", expected.qualified()),
            actual: format!("element {}", actual.qualified()),
        });
    }
    compare_content(expected, actual, &path, caps)
}

fn compare_content(
    e: &Element,
    a: &Element,
    path: &str,
    caps: &mut Captures,
) -> Result<(), Mismatch> {
    // `<x>{{*}}</x>` accepts any content, elements included.
    if e.children.is_empty() && e.attrs.is_empty() && e.text == format!("{{{{{ANY}}}}}") {
        return Ok(());
    }
    if e.attrs.len() != a.attrs.len()
        || e.attrs
            .iter()
            .zip(&a.attrs)
            .any(|(x, y)| x.0 != y.0 || x.1 != y.1)
    {
        let names = |el: &Element| {
            el.attrs
                .iter()
                .map(|(_, n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Mismatch {
            path: path.into(),
            expected: format!("attributes [{}]", names(e)),
            actual: format!("attributes [{}]", names(a)),
        });
    }
    for (x, y) in e.attrs.iter().zip(&a.attrs) {
        if !match_text(&x.2, &y.2, caps) {
            return Err(Mismatch {
                path: format!("{path}/@{}", x.1),
                expected: x.2.clone(),
                actual: y.2.clone(),
            });
        }
    }
    for i in 0..e.children.len().max(a.children.len()) {
        match (e.children.get(i), a.children.get(i)) {
            (Some(ec), Some(ac)) => {
                let child_path = format!("{path}/{}", step(&e.children, i));
                if (ec.ns.as_str(), ec.local.as_str()) != (ac.ns.as_str(), ac.local.as_str()) {
                    return Err(Mismatch {
                        path: child_path,
                        expected: ec.summary(200),
                        actual: ac.summary(200),
                    });
                }
                compare_content(ec, ac, &child_path, caps)?;
            }
            (Some(ec), None) => {
                return Err(Mismatch {
                    path: format!("{path}/{}", step(&e.children, i)),
                    expected: ec.summary(200),
                    actual: "(missing)".into(),
                });
            }
            (None, Some(ac)) => {
                return Err(Mismatch {
                    path: format!("{path}/{}", step(&a.children, i)),
                    expected: "(nothing)".into(),
                    actual: ac.summary(200),
                });
            }
            (None, None) => {}
        }
    }
    if !match_text(&e.text, &a.text, caps) {
        let shown = |t: &str| {
            if t.is_empty() {
                "(empty)".to_string()
            } else {
                t.to_string()
            }
        };
        return Err(Mismatch {
            path: path.into(),
            expected: shown(&e.text),
            actual: shown(&a.text),
        });
    }
    Ok(())
}

/// The path step of `siblings[i]`: its local name, indexed when several siblings share it.
fn step(siblings: &[Element], i: usize) -> String {
    let name = &siblings[i].local;
    let same = siblings.iter().filter(|s| &s.local == name).count();
    if same > 1 {
        let nth = siblings[..=i].iter().filter(|s| &s.local == name).count();
        format!("{name}[{nth}]")
    } else {
        name.clone()
    }
}

/// Replaces the captured placeholders of a message to send. `{{*}}` and names not yet captured
/// are errors: a request cannot be sent with a hole in it.
pub fn substitute(text: &str, caps: &Captures) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, name) in placeholders(text) {
        out.push_str(&text[at..range.start]);
        match caps.get(name) {
            Some(v) => out.push_str(&quick_xml::escape::escape(v.as_str())),
            None if name == ANY => return Err("{{*}} can only be used in expected messages".into()),
            None => {
                return Err(format!(
                    "{{{{{name}}}}} is used before any expected message captured it"
                ));
            }
        }
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFP: &str = "http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd";

    fn envelope(prefix: &str, inner: &str) -> String {
        format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP}\"><soapenv:Body><{prefix}:activatePaymentNoticeV2Response xmlns:{prefix}=\"{NFP}\">{inner}</{prefix}:activatePaymentNoticeV2Response></soapenv:Body></soapenv:Envelope>"
        )
    }

    #[test]
    fn prefixes_and_whitespace_do_not_matter() {
        let a = envelope(
            "nfp",
            "<outcome>OK</outcome><paymentToken>abc</paymentToken>",
        );
        let b = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\">\n  <s:Body>\n    <x:activatePaymentNoticeV2Response xmlns:x=\"{NFP}\">\n      <outcome> OK </outcome>\n      <paymentToken>abc</paymentToken>\n    </x:activatePaymentNoticeV2Response>\n  </s:Body>\n</s:Envelope>"
        );
        assert_eq!(compare_documents(&b, &a, &mut Captures::new()), Ok(()));
    }

    #[test]
    fn namespaces_are_compared_by_uri() {
        let a = envelope("nfp", "<outcome>OK</outcome>");
        let b = a.replace(NFP, "http://example.org/other");
        let m = compare_documents(&b, &a, &mut Captures::new()).unwrap_err();
        assert_eq!(m.path, "/Envelope/Body/activatePaymentNoticeV2Response");
    }

    #[test]
    fn order_is_significant_and_the_path_names_the_first_difference() {
        let a = envelope(
            "nfp",
            "<outcome>KO</outcome><fault><faultCode>PPT_A</faultCode><faultString>x</faultString></fault>",
        );
        let b = envelope(
            "nfp",
            "<outcome>KO</outcome><fault><faultCode>PPT_B</faultCode><faultString>x</faultString></fault>",
        );
        let m = compare_documents(&b, &a, &mut Captures::new()).unwrap_err();
        assert_eq!(
            (m.path.as_str(), m.expected.as_str(), m.actual.as_str()),
            (
                "/Envelope/Body/activatePaymentNoticeV2Response/fault/faultCode",
                "PPT_B",
                "PPT_A"
            )
        );
        let swapped = envelope(
            "nfp",
            "<fault><faultCode>PPT_A</faultCode><faultString>x</faultString></fault><outcome>KO</outcome>",
        );
        assert!(compare_documents(&swapped, &a, &mut Captures::new()).is_err());
    }

    #[test]
    fn missing_and_extra_elements_are_reported() {
        let a = envelope("nfp", "<outcome>OK</outcome>");
        let b = envelope("nfp", "<outcome>OK</outcome><paymentToken>t</paymentToken>");
        let m = compare_documents(&b, &a, &mut Captures::new()).unwrap_err();
        assert_eq!(
            (m.path.as_str(), m.actual.as_str()),
            (
                "/Envelope/Body/activatePaymentNoticeV2Response/paymentToken",
                "(missing)"
            )
        );
        let m = compare_documents(&a, &b, &mut Captures::new()).unwrap_err();
        assert_eq!(m.expected, "(nothing)");
    }

    #[test]
    fn placeholders_capture_then_must_match() {
        let mut caps = Captures::new();
        let pattern = envelope(
            "nfp",
            "<outcome>OK</outcome><paymentToken>{{token}}</paymentToken>",
        );
        assert_eq!(
            compare_documents(
                &pattern,
                &envelope("a", "<outcome>OK</outcome><paymentToken>t1</paymentToken>"),
                &mut caps
            ),
            Ok(())
        );
        assert_eq!(caps["token"], "t1");
        assert!(
            compare_documents(
                &pattern,
                &envelope("a", "<outcome>OK</outcome><paymentToken>t2</paymentToken>"),
                &mut caps.clone()
            )
            .is_err()
        );
        assert_eq!(
            substitute("<paymentToken>{{token}}</paymentToken>", &caps).unwrap(),
            "<paymentToken>t1</paymentToken>"
        );
        assert!(substitute("{{other}}", &caps).is_err());
        assert!(substitute("{{*}}", &caps).is_err());
    }

    #[test]
    fn wildcards_match_text_or_whole_subtrees() {
        let a = envelope(
            "nfp",
            "<outcome>KO</outcome><fault><faultCode>X</faultCode><description>Esito concorde: {\"a\":1}</description></fault>",
        );
        let any = envelope("nfp", "<outcome>KO</outcome><fault>{{*}}</fault>");
        assert_eq!(compare_documents(&any, &a, &mut Captures::new()), Ok(()));
        let partial = envelope(
            "nfp",
            "<outcome>KO</outcome><fault><faultCode>{{code}}</faultCode><description>Esito concorde: {{*}}</description></fault>",
        );
        let mut caps = Captures::new();
        assert_eq!(compare_documents(&partial, &a, &mut caps), Ok(()));
        assert_eq!(caps["code"], "X");
    }

    #[test]
    fn a_fragment_is_compared_with_the_payload() {
        let a = envelope("nfp", "<outcome>OK</outcome>");
        let fragment = format!(
            "<r:activatePaymentNoticeV2Response xmlns:r=\"{NFP}\"><outcome>OK</outcome></r:activatePaymentNoticeV2Response>"
        );
        assert_eq!(
            compare_documents(&fragment, &a, &mut Captures::new()),
            Ok(())
        );
    }

    #[test]
    fn garbage_is_a_mismatch_not_a_panic() {
        let m = compare_documents(
            &envelope("a", "<outcome>OK</outcome>"),
            "<<not xml",
            &mut Captures::new(),
        )
        .unwrap_err();
        assert!(m.actual.starts_with("not XML"), "{m}");
        let m = compare_documents("<a><b></a>", "<a/>", &mut Captures::new()).unwrap_err();
        assert!(m.expected.contains("well-formed"), "{m}");
    }

    #[test]
    fn deep_documents_are_refused_not_walked() {
        let depth = 100_000;
        let deep = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let m = compare_documents(&deep, &deep, &mut Captures::new()).unwrap_err();
        assert!(m.actual.contains("nested deeper than 64"), "{m}");
        let ok = 64;
        let deep = format!("{}{}", "<a>".repeat(ok), "</a>".repeat(ok));
        assert_eq!(
            compare_documents(&deep, &deep, &mut Captures::new()),
            Ok(())
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_are_text() {
        assert!(match_text(
            "{\"a\":{{*}}}",
            "{\"a\":1}",
            &mut Captures::new()
        ));
        assert!(placeholders("{{not a name}}").is_empty());
    }
}
