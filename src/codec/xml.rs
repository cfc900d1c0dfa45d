//! A namespace-aware pull reader over quick-xml that enforces XML well-formedness and the
//! element-level rules of the pagoPA schemas, and the writer that mirrors it.
//!
//! quick-xml tokenizes; everything a schema validator needs on top of that (namespace resolution,
//! prefix binding errors, illegal characters, text in element-only content, unexpected attributes,
//! content after the root) is done here, in one pass, without building a tree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use quick_xml::{Reader, XmlVersion};

use super::envelope::NS_SOAP;
use quick_xml::events::{BytesStart, Event};

/// The XML Schema instance namespace (`xsi:`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// What kind of rule a message broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// Not well-formed XML, or an encoding the node does not read.
    NotWellFormed,
    /// Well-formed, but the SOAP 1.1 envelope is wrong.
    Envelope,
    /// The payload breaks its XSD (order, cardinality, facets, namespaces).
    Schema,
    /// A base64 service document (`datiSpecificiServizio`) is undecodable or breaks its schema.
    ServicePayload,
    /// Beyond a bound the node sets on every document ([`Limits`]): elements nested too deep.
    Limit,
}

/// Bounds on what a document may make a reader do, whoever sent it. Every element, wherever it
/// is (SOAP Header, payload, after the Body, fault detail, base64 service document), counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The deepest element nesting accepted, the root element being level 1. The deepest pagoPA
    /// message needs 9 levels (`Envelope/Body/paSendRTV2Request/receipt/transferList/transfer/
    /// metadata/mapEntry/key`).
    pub max_depth: usize,
}

impl Limits {
    /// Generous for real messages, small enough to keep every tree walk shallow.
    pub const DEFAULT: Limits = Limits { max_depth: 64 };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a message is rejected: where (`path`, from the payload root) and what rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// Slash-separated local names from the message root to the offending element.
    pub path: String,
    pub reason: String,
}

impl Violation {
    pub fn new(kind: ViolationKind, path: impl Into<String>, reason: impl Into<String>) -> Self {
        Violation {
            kind,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The offending element's local name (the last step of the path).
    pub fn field(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for Violation {}

/// A child element that has been read (and its namespace resolved) but not yet entered.
#[derive(Debug)]
pub struct Child<'a> {
    pub local: &'a str,
    pub ns: Cow<'a, str>,
    start: BytesStart<'a>,
    empty: bool,
    /// Whether the start tag has attributes other than namespace declarations: only those are
    /// checked against the attribute policy when the element is entered.
    has_attributes: bool,
}

impl Child<'_> {
    /// True when this is the element `name` in namespace `ns` ("" for unqualified).
    #[inline]
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.local == name && self.ns == ns
    }

    /// Qualified name for messages, `{ns}local` or `local`.
    pub fn display_name(&self) -> String {
        if self.ns.is_empty() {
            self.local.to_string()
        } else {
            format!("{{{}}}{}", self.ns, self.local)
        }
    }
}

/// Which attributes an element may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrPolicy {
    /// Payload elements: no attributes but namespace declarations and xsi schema hints.
    None,
    /// `xs:anyAttribute namespace="##other"` of `other_than`: qualified, not in that namespace.
    Other(&'static str),
    /// `xs:anyAttribute namespace="##any"`.
    Any,
}

/// Up to this many declarations in scope, prefixes are looked up by a search.
const FEW_BINDINGS: usize = 8;

/// A namespace declaration in scope.
struct Binding<'a> {
    prefix: &'a str,
    ns: Cow<'a, str>,
    /// The depth of the element that declares it.
    depth: u32,
    /// The binding of the same prefix it hides, restored when it goes out of scope (kept for
    /// the default namespace, and for prefixes once they are in the map).
    shadows: Option<usize>,
}

/// The pull reader. One per document; not reusable.
pub struct XmlReader<'a> {
    doc: &'a str,
    src: Reader<&'a [u8]>,
    limits: Limits,
    /// Every declaration in scope, innermost last.
    bindings: Vec<Binding<'a>>,
    /// The index in `bindings` of the binding in scope of each prefix, once more than
    /// [`FEW_BINDINGS`] are in scope (a search of so few is cheaper than hashing): a lookup then
    /// costs the same however many declarations a document makes.
    prefixes: Option<HashMap<&'a str, usize>>,
    /// The index in `bindings` of the default namespace's binding in scope.
    default_ns: Option<usize>,
    stack: Vec<&'a str>,
    /// The content of every password element read or skipped, as byte ranges of the document.
    secrets: Vec<Range<usize>>,
    path_base: usize,
    peeked: Option<Child<'a>>,
    current_empty: bool,
    /// Namespace of child elements: "" for unqualified locals (every pagoPA SOAP payload),
    /// the target namespace for `elementFormDefault="qualified"` schemas (service payloads).
    pub child_ns: &'static str,
    seen_first_event: bool,
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// True if `s` holds only XML whitespace.
pub fn is_blank(s: &str) -> bool {
    s.bytes().all(is_xml_space)
}

/// Rejects characters outside the XML 1.0 `Char` production (C0 controls but tab, LF, CR;
/// U+FFFE, U+FFFF). One vectorized pass over a clean document.
pub fn check_chars(doc: &str) -> Result<(), Violation> {
    let bytes = doc.as_bytes();
    // Fast path for the common case of a clean document, in one vectorized pass (the two
    // per-byte `position` scans below cost a tenth of `read_any`). A byte is suspect if it is a C0
    // control (tab, LF, CR aside) or 0xEF, the lead byte of U+FFFE/U+FFFF. Any suspect byte sends
    // the document through the exact scans, which find and report the first offender.
    let suspect = |b: u8| ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')) | (b == 0xEF);
    if !any_byte(bytes, suspect) {
        return Ok(());
    }
    let bad = |b: &u8| *b < 0x20 && !matches!(*b, b'\t' | b'\n' | b'\r');
    if let Some(i) = bytes.iter().position(bad) {
        return Err(not_wf(format!(
            "illegal character U+{:04X} at byte {i}",
            bytes[i]
        )));
    }
    // U+FFFE and U+FFFF are EF BF BE / EF BF BF in UTF-8.
    let mut from = 0;
    while let Some(off) = bytes[from..].iter().position(|&b| b == 0xEF) {
        let i = from + off;
        if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) {
            return Err(not_wf(format!(
                "illegal character (noncharacter U+FFFE/U+FFFF) at byte {i}"
            )));
        }
        from = i + 1;
    }
    Ok(())
}

/// True for an XML 1.0 (5th edition) `NCName`: a `Name` without colons.
pub fn is_ncname(s: &str) -> bool {
    // Fast path: names are ASCII in practice; the `char` tables below are for the rest.
    if s.is_ascii() {
        return is_ascii_ncname(s.as_bytes());
    }
    let start = |c: char| {
        matches!(c, 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
            | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
            | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
            | '\u{10000}'..='\u{EFFFF}')
    };
    let rest = |c: char| {
        start(c)
            || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
    };
    let mut cs = s.chars();
    cs.next().is_some_and(start) && cs.all(rest)
}

/// Classes of bytes in names: [`NAME_START`] may begin an NCName, [`NAME_CHAR`] may follow. Only
/// ASCII bytes have a class; names with other characters take the exact `char` checks.
const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() || c == b'_' {
            NAME_START | NAME_CHAR
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            NAME_CHAR
        } else {
            0
        };
        b += 1;
    }
    t
};

/// True if `b` is an all-ASCII NCName. The tail is checked without an early exit: a table load
/// and an `and` per byte.
fn is_ascii_ncname(b: &[u8]) -> bool {
    match b.split_first() {
        Some((&first, rest)) => {
            NAME_CLASS[first as usize] & NAME_START != 0
                && rest
                    .iter()
                    .fold(NAME_CHAR, |acc, &c| acc & NAME_CLASS[c as usize])
                    != 0
        }
        None => false,
    }
}

/// Splits a qualified name `prefix:local` (or `local`, prefix "") if it is well-formed: both
/// parts NCNames, at most one colon. Every start tag goes through here, so all-ASCII names are
/// checked with a table; anything else takes the exact `char` checks.
fn split_qname(name: &str) -> Option<(&str, &str)> {
    let b = name.as_bytes();
    if is_ascii_ncname(b) {
        return Some(("", name));
    }
    if let Some(i) = b.iter().position(|&c| c == b':')
        && is_ascii_ncname(&b[..i])
        && is_ascii_ncname(&b[i + 1..])
    {
        return Some((&name[..i], &name[i + 1..]));
    }
    let (prefix, local) = name.split_once(':').unwrap_or(("", name));
    (is_ncname(local) && (prefix.is_empty() || is_ncname(prefix)) && !name.starts_with(':'))
        .then_some((prefix, local))
}

/// True if every character of `s` is allowed by the XML 1.0 `Char` production. ASCII text (every
/// namespace name in practice) takes one vectorized pass: only C0 controls but tab, LF, CR are out.
fn all_xml_chars(s: &str) -> bool {
    let suspect = |b: u8| ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')) | (b >= 0x80);
    !any_byte(s.as_bytes(), suspect) || s.chars().all(is_xml_char)
}

/// True for characters allowed by the XML 1.0 `Char` production.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether character data holds `]]>`, which may only close a CDATA section (XML 1.0
/// `CharData`). Most text has no `]` at all: a byte search for it (memchr) is much cheaper than
/// setting up a substring search on every text event.
fn has_cdata_close(text: &str) -> bool {
    text.as_bytes().contains(&b']') && text.contains("]]>")
}

/// Whether `text` holds a CR or a `]`, in one pass (values run from a few bytes to kilobytes of
/// base64).
#[inline]
fn has_cr_or_bracket(text: &[u8]) -> bool {
    any_byte(text, |b| (b == b'\r') | (b == b']'))
}

/// Whether any byte of `bytes` satisfies `pred` (which should be branch-free). Each 16-byte chunk
/// is or-ed together without an early exit, which the compiler vectorizes; a plain `any` stops to
/// test every byte. Only the tail is scanned bytewise.
#[inline]
pub fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    chunks
        .by_ref()
        .any(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | pred(b) as u8) != 0)
        || chunks.remainder().iter().any(|&b| pred(b))
}

fn cdata_close_in_text() -> Violation {
    not_wf("']]>' is not allowed in character data")
}

fn not_wf(reason: impl Into<String>) -> Violation {
    Violation::new(ViolationKind::NotWellFormed, "", reason)
}

/// Checks the XML declaration's pseudo-attributes: `version` first and `1.x`, a well-formed
/// encoding name, `standalone` `yes` or `no`.
fn check_declaration(d: &quick_xml::events::BytesDecl<'_>) -> Result<(), Violation> {
    let bad = |what: &str| not_wf(format!("malformed XML declaration: {what}"));
    let version = d.version().map_err(|e| bad(&e.to_string()))?;
    let v = version.strip_prefix("1.").unwrap_or("");
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&format!("version '{version}'")));
    }
    if let Some(enc) = d.encoding() {
        let enc = enc.map_err(|e| bad(&e.to_string()))?;
        let mut cs = enc.chars();
        let ok = cs.next().is_some_and(|c| c.is_ascii_alphabetic())
            && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(bad(&format!("encoding '{enc}'")));
        }
    }
    if let Some(sa) = d.standalone() {
        let sa = sa.map_err(|e| bad(&e.to_string()))?;
        if sa != "yes" && sa != "no" {
            return Err(bad(&format!("standalone '{sa}'")));
        }
    }
    Ok(())
}

/// Turns raw message bytes into UTF-8 text: strips a UTF-8 BOM, honours the declared encoding
/// (UTF-8, US-ASCII, ISO-8859-1), rejects anything else and invalid byte sequences.
pub fn decode_document(bytes: &[u8]) -> Result<Cow<'_, str>, Violation> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(not_wf("UTF-16 documents are not accepted; send UTF-8"));
    }
    match declared_encoding(bytes) {
        None => {}
        Some(enc) => {
            let enc = enc.to_ascii_lowercase();
            match enc.as_str() {
                "utf-8" | "utf8" => {}
                "us-ascii" | "ascii" => {
                    if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
                        return Err(not_wf(format!(
                            "non-ASCII byte at {i} in a document declared US-ASCII"
                        )));
                    }
                }
                "iso-8859-1" | "latin1" | "iso_8859-1" | "latin-1" => {
                    return Ok(Cow::Owned(bytes.iter().map(|&b| b as char).collect()));
                }
                other => return Err(not_wf(format!("unsupported document encoding '{other}'"))),
            }
        }
    }
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|e| not_wf(format!("invalid UTF-8 at byte {}", e.valid_up_to())))
}

/// The `encoding` pseudo-attribute of a leading XML declaration, if any.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(b"<?xml") {
        return None;
    }
    let end = bytes.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&bytes[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let rest = &rest[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

impl<'a> XmlReader<'a> {
    /// A reader over a decoded document (see [`decode_document`]).
    pub fn new(doc: &'a str, limits: Limits) -> Self {
        let mut src = Reader::from_str(doc);
        let cfg = src.config_mut();
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.expand_empty_elements = false;
        cfg.trim_text(false);
        XmlReader {
            doc,
            src,
            limits,
            bindings: Vec::new(),
            prefixes: None,
            default_ns: None,
            stack: Vec::with_capacity(16),
            secrets: Vec::new(),
            path_base: 0,
            peeked: None,
            current_empty: false,
            child_ns: "",
            seen_first_event: false,
        }
    }

    // Inlined into its few callers: it runs once per event, and as a call its prologue and the
    // moves of the returned event cost about as much as the checks it makes.
    #[inline(always)]
    fn next_event(&mut self) -> Result<Event<'a>, Violation> {
        let first = !self.seen_first_event;
        self.seen_first_event = true;
        match self.src.read_event() {
            Ok(Event::Decl(_)) if !first => {
                Err(not_wf("XML declaration not at the start of the document"))
            }
            Ok(Event::Decl(d)) => check_declaration(&d).map(|_| Event::Decl(d)),
            // `]]>` in text (XML 1.0 `CharData`) is checked by the callers, on the text they do
            // not already know to be blank: whitespace between elements need not be scanned twice.
            Ok(Event::PI(pi)) if pi.target().eq_ignore_ascii_case("xml") => {
                Err(not_wf("XML declaration not at the start of the document"))
            }
            Ok(ev) => Ok(ev),
            Err(e) => Err(not_wf(format!("not well-formed XML: {e}"))),
        }
    }

    /// Makes paths in violations start at the current depth + 1 (the payload root).
    pub fn set_path_base(&mut self) {
        self.path_base = self.stack.len();
    }

    /// The slash-separated path of the current element.
    pub fn path(&self) -> String {
        self.stack[self.path_base.min(self.stack.len())..].join("/")
    }

    fn path_with(&self, child: &str) -> String {
        let p = self.path();
        if p.is_empty() {
            child.to_string()
        } else {
            format!("{p}/{child}")
        }
    }

    /// A schema violation at the current element.
    pub fn invalid(&self, reason: impl Into<String>) -> Violation {
        Violation::new(ViolationKind::Schema, self.path(), reason)
    }

    /// A schema violation at a named child of the current element.
    pub fn invalid_child(&self, child: &str, reason: impl Into<String>) -> Violation {
        Violation::new(ViolationKind::Schema, self.path_with(child), reason)
    }

    /// Whether `prefix` is bound to a namespace at the current element (for QName values).
    pub fn is_bound(&self, prefix: &str) -> bool {
        self.resolve(prefix).is_some()
    }

    fn resolve(&self, prefix: &str) -> Option<Cow<'a, str>> {
        let at = match (prefix, &self.prefixes) {
            ("", _) => self.default_ns,
            ("xml", _) => return Some(Cow::Borrowed(XML_NS)),
            (_, Some(map)) => map.get(prefix).copied(),
            (_, None) => self.bindings.iter().rposition(|b| b.prefix == prefix),
        };
        at.map(|i| self.bindings[i].ns.clone())
    }

    /// Brings a declaration into scope, hiding the one it overrides.
    fn bind(&mut self, prefix: &'a str, ns: Cow<'a, str>, depth: u32) {
        let at = self.bindings.len();
        if self.prefixes.is_none() && at >= FEW_BINDINGS {
            let mut map = HashMap::with_capacity(2 * FEW_BINDINGS);
            for (i, b) in self.bindings.iter_mut().enumerate() {
                if !b.prefix.is_empty() {
                    b.shadows = map.insert(b.prefix, i);
                }
            }
            self.prefixes = Some(map);
        }
        let shadows = match (prefix, &mut self.prefixes) {
            ("", _) => self.default_ns.replace(at),
            (_, Some(map)) => map.insert(prefix, at),
            (_, None) => None,
        };
        self.bindings.push(Binding {
            prefix,
            ns,
            depth,
            shadows,
        });
    }

    /// Binds the namespace declarations of a start tag and resolves its name.
    fn open_child(&mut self, start: BytesStart<'a>, empty: bool) -> Result<Child<'a>, Violation> {
        let has_attributes = if start.attributes_raw().trim_ascii().is_empty() {
            false
        } else {
            self.bind_namespaces(&start)?
        };
        let name = self.borrow_from_doc(start.name().0)?;
        let Some((prefix, local)) = split_qname(name) else {
            return Err(not_wf(format!("malformed element name '{name}'")));
        };
        let ns = match self.resolve(prefix) {
            Some(ns) => ns,
            None if prefix.is_empty() => Cow::Borrowed(""),
            None => {
                return Err(not_wf(format!(
                    "unbound namespace prefix '{prefix}' on element '{name}'"
                )));
            }
        };
        Ok(Child {
            local,
            ns,
            start,
            empty,
            has_attributes,
        })
    }

    /// The attribute half of [`open_child`](Self::open_child): checks every attribute (syntax,
    /// duplicates, values) and binds the namespace declarations. Returns whether there are other
    /// attributes. Out of line: payload elements have no attributes, and keeping this code apart
    /// keeps the per-element path small.
    #[inline(never)]
    fn bind_namespaces(&mut self, start: &BytesStart<'a>) -> Result<bool, Violation> {
        let depth = self.stack.len() as u32 + 1;
        let mut qualified_attrs: Vec<(&str, &str)> = Vec::new();
        let mut others = false;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| not_wf(format!("bad attribute: {e}")))?;
            let key = attr.key.0;
            // Every attribute value must be well-formed: no '<', known references, XML characters.
            // Fast path, one vectorized pass: a value without `<`, `&`, C0 controls or non-ASCII
            // bytes is all that, and normalization (which replaces references, tab, LF and CR)
            // leaves it unchanged. Every namespace name is such a value in practice.
            let special = |b: u8| (b == b'<') | (b == b'&') | !(0x20..0x80).contains(&b);
            let value = if !any_byte(attr.value.as_bytes(), special) {
                attr.value.clone()
            } else {
                if attr.value.contains('<') {
                    return Err(not_wf(format!("'<' in the value of attribute '{key}'")));
                }
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| not_wf(format!("bad value of attribute '{key}': {e}")))?;
                if !all_xml_chars(&value) {
                    return Err(not_wf(format!(
                        "illegal character in the value of attribute '{key}'"
                    )));
                }
                value
            };
            let prefix = if key == "xmlns" {
                ""
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                p
            } else {
                others = true;
                if let Some((p, l)) = key.split_once(':') {
                    qualified_attrs.push((p, l));
                }
                continue;
            };
            // The value normalized above: a declaration is checked like any attribute.
            let uri = self.doc_cow(value);
            if !prefix.is_empty() && uri.is_empty() {
                return Err(not_wf(format!(
                    "namespace prefix '{prefix}' bound to the empty name"
                )));
            }
            if prefix == "xmlns" || (prefix == "xml") != (uri == XML_NS) || uri == XMLNS_NS {
                return Err(not_wf(format!(
                    "illegal binding of the reserved prefix or namespace '{prefix}'"
                )));
            }
            let prefix = if prefix.is_empty() {
                ""
            } else {
                self.borrow_from_doc(prefix)?
            };
            self.bind(prefix, uri, depth);
        }
        // Namespaces in XML: no two attributes with the same expanded name (`a:x` and `b:x` with
        // `a` and `b` bound to one URI). Sorted, not compared pairwise: a start tag may carry
        // thousands of attributes.
        if qualified_attrs.len() > 1 {
            let mut expanded = Vec::with_capacity(qualified_attrs.len());
            for (p, l) in qualified_attrs {
                let ns = self.resolve(p).ok_or_else(|| {
                    not_wf(format!(
                        "unbound namespace prefix '{p}' on attribute '{p}:{l}'"
                    ))
                })?;
                expanded.push((ns, l));
            }
            expanded.sort_unstable();
            if let Some(pair) = expanded.windows(2).find(|w| w[0] == w[1]) {
                let (ns, l) = &pair[0];
                return Err(not_wf(format!(
                    "attribute '{l}' in namespace '{ns}' appears twice"
                )));
            }
        }
        Ok(others)
    }

    fn doc_cow(&self, s: Cow<'_, str>) -> Cow<'a, str> {
        match s {
            Cow::Borrowed(b) => self
                .borrow_from_doc(b)
                .map(Cow::Borrowed)
                .unwrap_or_else(|_| Cow::Owned(b.to_string())),
            Cow::Owned(o) => Cow::Owned(o),
        }
    }

    /// Re-borrows `part` (a name quick-xml sliced out of the input) for the document's lifetime,
    /// by its offset in the document: names then live as long as the input, without copies.
    fn borrow_from_doc(&self, part: &str) -> Result<&'a str, Violation> {
        let start = (part.as_ptr() as usize).wrapping_sub(self.doc.as_ptr() as usize);
        self.doc
            .get(start..start + part.len())
            .filter(|s| s.as_ptr() == part.as_ptr())
            .ok_or_else(|| not_wf("element name not found in the input"))
    }

    /// Reads up to the root element of the document.
    pub fn root(&mut self) -> Result<Child<'a>, Violation> {
        loop {
            match self.next_event()? {
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::Text(t) if is_blank(&t) => {}
                Event::Text(t) if has_cdata_close(&t) => return Err(cdata_close_in_text()),
                Event::DocType(_) => {
                    return Err(not_wf(
                        "document type declarations are not allowed in SOAP messages",
                    ));
                }
                Event::Start(s) => return self.open_child(s, false),
                Event::Empty(s) => return self.open_child(s, true),
                Event::Eof => return Err(not_wf("no root element")),
                _ => return Err(not_wf("content before the root element")),
            }
        }
    }

    /// Checks that nothing but comments, processing instructions and whitespace follow the root.
    pub fn finish_document(&mut self) -> Result<(), Violation> {
        loop {
            match self.next_event()? {
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(t) if is_blank(&t) => {}
                Event::Text(t) if has_cdata_close(&t) => return Err(cdata_close_in_text()),
                Event::Eof => return Ok(()),
                _ => return Err(not_wf("content after the root element")),
            }
        }
    }

    /// Enters a child returned by [`peek_child`](Self::peek_child) or [`root`](Self::root),
    /// checking its attributes against `policy`.
    pub fn enter(&mut self, child: Child<'a>, policy: AttrPolicy) -> Result<(), Violation> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(Violation::new(
                ViolationKind::Limit,
                "",
                format!(
                    "elements nested deeper than {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        self.stack.push(child.local);
        self.current_empty = child.empty;
        if child.has_attributes {
            self.check_attributes(&child.start, policy)?;
        }
        Ok(())
    }

    fn check_attributes(
        &self,
        start: &BytesStart<'a>,
        policy: AttrPolicy,
    ) -> Result<(), Violation> {
        for attr in start.attributes() {
            let attr = attr.map_err(|e| not_wf(format!("bad attribute: {e}")))?;
            let key = attr.key.0;
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let (ns, local) = match key.split_once(':') {
                Some((p, l)) => match self.resolve(p) {
                    Some(ns) => (ns, l),
                    None => {
                        return Err(not_wf(format!(
                            "unbound namespace prefix '{p}' on attribute '{key}'"
                        )));
                    }
                },
                None => (Cow::Borrowed(""), key),
            };
            let ok = if ns == XSI {
                // Schema location hints are always allowed; xsi:type and xsi:nil are not:
                // no pagoPA element is nillable and no type is meant to be substituted.
                matches!(local, "schemaLocation" | "noNamespaceSchemaLocation")
            } else if policy == AttrPolicy::Any && ns == NS_SOAP && local == "mustUnderstand" {
                // SOAP 1.1's global attribute is validated even under lax wildcards: `0|1` only.
                let v = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| not_wf(format!("bad attribute value: {e}")))?;
                if !matches!(
                    v.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')),
                    "0" | "1"
                ) {
                    return Err(
                        self.invalid(format!("attribute '{key}' must be 0 or 1, found '{v}'"))
                    );
                }
                true
            } else {
                match policy {
                    AttrPolicy::None => false,
                    AttrPolicy::Other(target) => !ns.is_empty() && ns != target,
                    AttrPolicy::Any => true,
                }
            };
            if !ok {
                return Err(self.invalid(format!("attribute '{key}' is not allowed")));
            }
        }
        Ok(())
    }

    /// The attribute `local` in namespace `ns` of a start tag, unescaped.
    pub fn attribute(
        &self,
        child: &Child<'a>,
        ns: &str,
        local: &str,
    ) -> Result<Option<String>, Violation> {
        for attr in child.start.attributes() {
            let attr = attr.map_err(|e| not_wf(format!("bad attribute: {e}")))?;
            let key = attr.key.0;
            let (ans, alocal) = match key.split_once(':') {
                Some(("xmlns", _)) => continue,
                Some((p, l)) => (self.resolve(p).unwrap_or_default(), l),
                None => (Cow::Borrowed(""), key),
            };
            if ans == ns && alocal == local {
                let v = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| not_wf(format!("bad attribute value: {e}")))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    }

    fn pop_element(&mut self) {
        let depth = self.stack.len() as u32;
        while let Some(b) = self.bindings.pop_if(|b| b.depth >= depth) {
            match (b.prefix, &mut self.prefixes) {
                ("", _) => self.default_ns = b.shadows,
                (prefix, Some(map)) => {
                    if let Some(at) = b.shadows {
                        map.insert(prefix, at);
                    } else {
                        map.remove(prefix);
                    }
                }
                (_, None) => {}
            }
        }
        self.stack.pop();
    }

    /// Peeks at the next child element of the current element, skipping whitespace, comments and
    /// processing instructions. `None` at the end of the current element. Character data in
    /// element-only content is a violation.
    pub fn peek_child(&mut self) -> Result<Option<&Child<'a>>, Violation> {
        if self.peeked.is_none() {
            if self.current_empty {
                return Ok(None);
            }
            loop {
                match self.next_event()? {
                    Event::Start(s) => {
                        self.peeked = Some(self.open_child(s, false)?);
                        break;
                    }
                    Event::Empty(s) => {
                        self.peeked = Some(self.open_child(s, true)?);
                        break;
                    }
                    Event::End(_) => {
                        // Mark the end as seen: `end_element` then only pops.
                        self.current_empty = true;
                        return Ok(None);
                    }
                    Event::Comment(_) | Event::PI(_) => {}
                    // Whitespace is allowed in element-only content however it is written: as
                    // text, in a CDATA section, or as character references (`&#32;`).
                    Event::Text(t) if is_blank(&t) => {}
                    Event::CData(c) if is_blank(&c) => {}
                    Event::GeneralRef(r) => {
                        // An undefined entity is a well-formedness error wherever it appears.
                        if !matches!(resolve_reference(&r)?, ' ' | '\t' | '\n' | '\r') {
                            return Err(self.invalid(
                                "character data is not allowed here (element-only content)",
                            ));
                        }
                    }
                    Event::Text(t) if has_cdata_close(&t) => return Err(cdata_close_in_text()),
                    Event::Text(_) | Event::CData(_) => {
                        return Err(self
                            .invalid("character data is not allowed here (element-only content)"));
                    }
                    Event::Eof => {
                        return Err(not_wf(format!(
                            "premature end of document inside '{}'",
                            self.path()
                        )));
                    }
                    Event::Decl(_) | Event::DocType(_) => {
                        return Err(not_wf("misplaced declaration"));
                    }
                }
            }
        }
        Ok(self.peeked.as_ref())
    }

    /// Takes the peeked child (after a successful [`peek_child`](Self::peek_child)).
    pub fn take_child(&mut self) -> Option<Child<'a>> {
        self.peeked.take()
    }

    /// Peeks and takes the next child element, if any.
    pub fn next_child(&mut self) -> Result<Option<Child<'a>>, Violation> {
        self.peek_child()?;
        Ok(self.take_child())
    }

    /// Ends the current element: any further child element is unexpected.
    pub fn end_element(&mut self) -> Result<(), Violation> {
        if let Some(c) = self.peek_child()? {
            let (name, local) = (c.display_name(), c.local);
            return Err(self.invalid_child(local, format!("element '{name}' is not expected here")));
        }
        self.current_empty = false;
        self.pop_element();
        Ok(())
    }

    /// Reads the character content of the current (simple-typed) element, EOL-normalized and with
    /// references resolved, up to and including its end tag. The element stays current (so a
    /// violation of its value is reported at its path) until [`close_simple`](Self::close_simple).
    /// Child elements are a violation.
    pub fn read_text(&mut self) -> Result<Cow<'a, str>, Violation> {
        if self.current_empty {
            // `<x/>`: no end tag to consume. The element is popped by `close_simple`, as for `<x></x>`.
            self.current_empty = false;
            return Ok(Cow::Borrowed(""));
        }
        // Fast path: almost every value is one text event without a CR or a `]` (so with no end
        // of line to normalize and no `]]>`), then the end tag. Such text is returned as it lies
        // in the document; anything else goes through the general loop.
        let (acc, event) = match self.next_event()? {
            Event::End(_) => return Ok(Cow::Borrowed("")),
            Event::Text(t) if !has_cr_or_bracket(t.as_bytes()) => {
                let text = t.into_inner();
                match self.next_event()? {
                    Event::End(_) => return Ok(text),
                    event => (Some(text), event),
                }
            }
            event => (None, event),
        };
        self.read_text_from(acc, event)
    }

    /// [`read_text`](Self::read_text) from `event` on, with the text read so far in `acc`.
    #[inline(never)]
    fn read_text_from(
        &mut self,
        mut acc: Option<Cow<'a, str>>,
        mut event: Event<'a>,
    ) -> Result<Cow<'a, str>, Violation> {
        let push = |acc: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>| match acc {
            None => *acc = Some(piece),
            Some(a) => a.to_mut().push_str(&piece),
        };
        loop {
            match event {
                Event::Text(t) => {
                    // One pass over the value decides both checks. Without a CR there is no end
                    // of line to normalize (`xml10_content` would return the text unchanged), and
                    // without a `]` there can be no `]]>`.
                    let piece = if has_cr_or_bracket(t.as_bytes()) {
                        if has_cdata_close(&t) {
                            return Err(cdata_close_in_text());
                        }
                        t.xml10_content()
                    } else {
                        t.into_inner()
                    };
                    push(&mut acc, piece)
                }
                Event::CData(c) => push(&mut acc, c.xml10_content()),
                Event::GeneralRef(r) => {
                    let c = resolve_reference(&r)?;
                    let mut buf = [0u8; 4];
                    push(&mut acc, Cow::Owned(c.encode_utf8(&mut buf).to_string()));
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::End(_) => break,
                Event::Start(s) | Event::Empty(s) => {
                    // Resolve it first: a malformed name or an unbound prefix is a well-formedness error.
                    let child = self.open_child(s, false)?;
                    let name = child.display_name();
                    return Err(
                        self.invalid(format!("element '{name}' is not allowed in simple content"))
                    );
                }
                Event::Eof => {
                    return Err(not_wf(format!(
                        "premature end of document inside '{}'",
                        self.path()
                    )));
                }
                Event::Decl(_) | Event::DocType(_) => return Err(not_wf("misplaced declaration")),
            }
            event = self.next_event()?;
        }
        Ok(acc.unwrap_or(Cow::Borrowed("")))
    }

    /// Finishes a simple-typed element whose text was read: pops it from the path.
    pub fn close_simple(&mut self) {
        self.pop_element();
    }

    /// Skips the content of the current element (lax wildcard content: any elements, any text),
    /// still checking well-formedness and namespace prefixes, and ends it. Iterative: the depth
    /// a document can reach is bounded by [`Limits::max_depth`], not by the stack.
    pub fn skip_content(&mut self) -> Result<(), Violation> {
        if self.current_empty {
            self.current_empty = false;
            self.pop_element();
            return Ok(());
        }
        let base = self.stack.len();
        // The password element being skipped, if any: (its depth, where its content starts).
        let mut secret = self
            .stack
            .last()
            .filter(|local| super::mask::is_secret_name(local))
            .map(|_| (base, self.position()));
        self.skip_from(base, &mut secret).map_err(|v| match secret {
            Some(_) => secret_violation(v),
            None => v,
        })
    }

    /// [`skip_content`](Self::skip_content)'s loop, down to depth `base`; `secret` is the
    /// password element open at each step.
    fn skip_from(
        &mut self,
        base: usize,
        secret: &mut Option<(usize, usize)>,
    ) -> Result<(), Violation> {
        loop {
            match self.next_event()? {
                Event::Start(s) => {
                    let c = self.open_child(s, false)?;
                    let starts_secret = secret.is_none() && super::mask::is_secret_name(c.local);
                    self.enter(c, AttrPolicy::Any)?;
                    if starts_secret {
                        *secret = Some((self.stack.len(), self.position()));
                    }
                }
                Event::Empty(s) => {
                    let c = self.open_child(s, true)?;
                    self.enter(c, AttrPolicy::Any)?;
                    self.current_empty = false;
                    self.pop_element();
                }
                Event::GeneralRef(r) => {
                    resolve_reference(&r)?;
                }
                Event::End(_) => {
                    if let Some((depth, start)) = *secret
                        && depth == self.stack.len()
                    {
                        self.secrets.push(start..self.end_tag_start());
                        *secret = None;
                    }
                    self.pop_element();
                    if self.stack.len() < base {
                        return Ok(());
                    }
                }
                Event::Text(t) if has_cdata_close(&t) => return Err(cdata_close_in_text()),
                Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => {
                    return Err(not_wf(format!(
                        "premature end of document inside '{}'",
                        self.path()
                    )));
                }
                Event::Decl(_) | Event::DocType(_) => return Err(not_wf("misplaced declaration")),
            }
        }
    }

    /// [`read_text`](Self::read_text) for a secret: the content's place in the document is kept
    /// (see [`take_secrets`](Self::take_secrets)), so that a copy of the document can be stored
    /// without it.
    pub fn read_secret_text(&mut self) -> Result<Cow<'a, str>, Violation> {
        let (empty, start) = (self.current_empty, self.position());
        let text = self.read_text().map_err(secret_violation)?;
        if !empty {
            self.secrets.push(start..self.end_tag_start());
        }
        Ok(text)
    }

    /// The byte ranges of the document holding the content of every password element read or
    /// skipped so far (the typed `password` and any element of that name in lax content).
    pub fn take_secrets(&mut self) -> Vec<Range<usize>> {
        std::mem::take(&mut self.secrets)
    }

    /// The limits this reader enforces (for a document nested in this one).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Where the next event starts, in bytes from the start of the document.
    fn position(&self) -> usize {
        self.src.buffer_position() as usize
    }

    /// Where the end tag just read starts: an end tag holds no `<`.
    fn end_tag_start(&self) -> usize {
        self.doc[..self.position()].rfind('<').unwrap_or(0)
    }
}

/// A violation found inside a password, without what it quotes: an undefined entity, a
/// reference or a tag in a password is part of the secret, and the violation's text reaches the
/// fault the PSP gets (and the journal's copy of it).
fn secret_violation(v: Violation) -> Violation {
    Violation::new(
        v.kind,
        v.path,
        "the password is not well-formed character data (its content is not quoted)",
    )
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, Violation> {
    if r.is_char_ref() {
        match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(not_wf(format!("illegal character reference '&{};'", &**r))),
        }
    } else {
        match &**r {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            other => Err(not_wf(format!("undefined entity '&{other};'"))),
        }
    }
}

/// Builds XML text. Element names are trusted (they come from the codec's static tables); text is
/// escaped so that any validated value round-trips exactly, carriage returns included.
#[derive(Debug, Default)]
pub struct XmlWriter {
    pub buf: String,
}

impl XmlWriter {
    pub fn with_capacity(n: usize) -> Self {
        XmlWriter {
            buf: String::with_capacity(n),
        }
    }

    #[inline]
    pub fn open(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    #[inline]
    pub fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Appends escaped character data.
    pub fn text(&mut self, s: &str) {
        let mut last = 0;
        for (i, b) in s.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'\r' => "&#13;",
                _ => continue,
            };
            self.buf.push_str(&s[last..i]);
            self.buf.push_str(rep);
            last = i + 1;
        }
        self.buf.push_str(&s[last..]);
    }

    /// Appends text known to need no escaping (numbers, enumerations).
    #[inline]
    pub fn raw(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    pub fn into_string(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(doc: &str) -> Result<(), Violation> {
        let mut r = XmlReader::new(doc, Limits::DEFAULT);
        let root = r.root()?;
        r.enter(root, AttrPolicy::Any)?;
        r.skip_content()?;
        r.finish_document()
    }

    #[test]
    fn names() {
        for ok in ["a", "_a", "a-b.c1", "città", "\u{10000}x"] {
            assert!(is_ncname(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a:b", "a$b", ".a"] {
            assert!(!is_ncname(bad), "{bad}");
        }
    }

    #[test]
    fn well_formedness_beyond_quick_xml() {
        assert!(read_all("<?xml version='1.0' standalone='yes'?><a/>").is_ok());
        // Attribute values off the fast path: references, whitespace, non-ASCII.
        assert!(read_all("<a xmlns:p='urn:a&amp;b' p:c='x&#9;y\tz' d='città'/>").is_ok());
        for bad in [
            "<?xml version='1.0' standalone='maybe'?><a/>",
            "<?xml encoding='UTF-8'?><a/>",
            "<a>x]]>y</a>",
            "<a b='<'/>",
            "<a b='&nope;'/>",
            "<a b='x&#1;'/>",
            "<a xmlns:p='&#0;'/>",
            "<a b='1' b='2'/>",
            "<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>",
            "<a xmlns:p='http://www.w3.org/2000/xmlns/'/>",
            "<a><1b/></a>",
        ] {
            assert_eq!(
                read_all(bad).map_err(|v| v.kind),
                Err(ViolationKind::NotWellFormed),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_cdata_and_references_are_whitespace_in_element_only_content() {
        let mut r = XmlReader::new("<a><![CDATA[ ]]>&#32;<b/>&#x9;</a>", Limits::DEFAULT);
        let root = r.root().unwrap();
        r.enter(root, AttrPolicy::None).unwrap();
        let b = r.next_child().unwrap().expect("b");
        assert_eq!(b.local, "b");
        r.enter(b, AttrPolicy::None).unwrap();
        r.end_element().unwrap();
        assert!(r.next_child().unwrap().is_none());
    }

    #[test]
    fn qualified_names_split_as_the_char_checks_do() {
        fn reference(name: &str) -> Option<(&str, &str)> {
            let (p, l) = name.split_once(':').unwrap_or(("", name));
            (is_ncname(l) && (p.is_empty() || is_ncname(p)) && !name.starts_with(':'))
                .then_some((p, l))
        }
        for name in [
            "a",
            "a:b",
            "soapenv:Envelope",
            "_x-1.2",
            "a.b:c_d",
            ":a",
            "a:",
            "a:b:c",
            "1a",
            "a:1b",
            "",
            ":",
            "-a",
            "a$",
            "città",
            "p:città",
            "é:x",
            "a:\u{10000}",
        ] {
            assert_eq!(split_qname(name), reference(name), "{name}");
        }
    }

    #[test]
    fn character_checks_find_offenders_in_every_chunk_and_the_tail() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 70] {
            let clean = "a".repeat(len);
            assert!(check_chars(&clean).is_ok());
            for at in 0..len {
                let mut bad = clean.clone().into_bytes();
                bad[at] = 0x01;
                assert!(
                    check_chars(std::str::from_utf8(&bad).unwrap()).is_err(),
                    "{len} {at}"
                );
            }
            for at in 0..=len {
                let (head, tail) = clean.split_at(at);
                assert!(
                    check_chars(&format!("{head}\u{FFFF}{tail}")).is_err(),
                    "{len} {at}"
                );
                // Same lead byte 0xEF, allowed character.
                assert!(check_chars(&format!("{head}\u{FEFF}\t\n\r{tail}")).is_ok());
            }
        }
    }

    #[test]
    fn simple_content_is_normalized_and_checked_whatever_its_length() {
        let text = |doc: &str| {
            let mut r = XmlReader::new(doc, Limits::DEFAULT);
            let root = r.root()?;
            r.enter(root, AttrPolicy::None)?;
            r.read_text().map(|t| t.into_owned())
        };
        for pad in [0, 5, 16, 40] {
            let p = "x".repeat(pad);
            assert_eq!(text(&format!("<a>{p}</a>")).unwrap(), p);
            assert_eq!(
                text(&format!("<a>{p}\r\ny\rz</a>")).unwrap(),
                format!("{p}\ny\nz")
            );
            assert_eq!(
                text(&format!("<a>{p}]]&gt;</a>")).unwrap(),
                format!("{p}]]>")
            );
            assert_eq!(
                text(&format!("<a>{p}]<![CDATA[]>]]>&#13;</a>")).unwrap(),
                format!("{p}]]>\r")
            );
            assert_eq!(
                text(&format!("<a>{p}]]>{p}</a>")).map_err(|v| v.kind),
                Err(ViolationKind::NotWellFormed)
            );
            assert_eq!(
                text(&format!("<a>{p}<b/></a>")).map_err(|v| v.kind),
                Err(ViolationKind::Schema)
            );
        }
        assert_eq!(text("<a></a>").unwrap(), "");
        assert_eq!(text("<a/>").unwrap(), "");
    }

    #[test]
    fn namespace_scopes_hold_however_many_declarations_are_in_scope() {
        for declared in [1, FEW_BINDINGS - 2, FEW_BINDINGS, 3 * FEW_BINDINGS] {
            let decls: String = (0..declared)
                .map(|i| format!(" xmlns:p{i}='urn:{i}'"))
                .collect();
            let doc = format!(
                "<r{decls}><p0:a xmlns:p0='urn:in' xmlns='urn:d' xmlns:q='urn:q'><p0:b/><c/><q:d/></p0:a><p0:e/><f/></r>"
            );
            let mut r = XmlReader::new(&doc, Limits::DEFAULT);
            let root = r.root().unwrap();
            r.enter(root, AttrPolicy::Any).unwrap();
            let mut seen = Vec::new();
            while let Some(c) = r.next_child().unwrap() {
                seen.push(c.display_name());
                r.enter(c, AttrPolicy::Any).unwrap();
                while let Some(g) = r.next_child().unwrap() {
                    seen.push(g.display_name());
                    r.enter(g, AttrPolicy::Any).unwrap();
                    r.skip_content().unwrap();
                }
                r.end_element().unwrap();
            }
            assert_eq!(
                seen,
                [
                    "{urn:in}a",
                    "{urn:in}b",
                    "{urn:d}c",
                    "{urn:q}d",
                    "{urn:0}e",
                    "f"
                ],
                "{declared}"
            );
            let out_of_scope = doc.replace("<f/>", "<q:f/>");
            let mut r = XmlReader::new(&out_of_scope, Limits::DEFAULT);
            let root = r.root().unwrap();
            r.enter(root, AttrPolicy::Any).unwrap();
            let v = r.skip_content().unwrap_err();
            assert!(v.reason.contains("unbound namespace prefix 'q'"), "{v}");
        }
    }

    #[test]
    fn an_empty_simple_element_stays_current_until_closed() {
        let mut r = XmlReader::new(
            "<a xmlns='urn:x'><b xmlns=''><c/><d/></b></a>",
            Limits::DEFAULT,
        );
        let root = r.root().unwrap();
        r.enter(root, AttrPolicy::None).unwrap();
        let b = r.next_child().unwrap().unwrap();
        r.enter(b, AttrPolicy::None).unwrap();
        let c = r.next_child().unwrap().unwrap();
        r.enter(c, AttrPolicy::None).unwrap();
        assert_eq!(r.read_text().unwrap(), "");
        assert_eq!(r.path(), "a/b/c");
        r.close_simple();
        // `d` is still in no namespace: the `xmlns=''` of `b` is still in scope.
        let d = r.next_child().unwrap().unwrap();
        assert!(d.is("", "d"));
    }
}
