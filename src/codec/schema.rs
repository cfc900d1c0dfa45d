//! The schema machinery: how XSD content models map to Rust types.
//!
//! * A [`Simple`] type is an `xsd:simpleType` (facets checked in `parse`).
//! * A [`Content`] type is what an element holds: a simple value or a `complexType` sequence.
//! * A [`Particle`] is one step of a sequence: `T` is `minOccurs=1`, `Option<T>` is `0..1`,
//!   [`Bounded<T, MIN, MAX>`] is `MIN..MAX`, and choice enums implement it by hand.
//!
//! Because every pagoPA content model is a sequence of distinct names (the schemas obey unique
//! particle attribution), reading it greedily in order is exactly what an XSD validator does.

use super::xml::{AttrPolicy, Violation, XmlReader, XmlWriter, any_byte};

/// An `xsd:simpleType`: parsing checks every facet, writing emits the lexical form.
pub trait Simple: Sized {
    /// Parses the element's text (EOL-normalized, references resolved). The type applies its own
    /// whitespace facet: `xsd:string` types keep whitespace, others collapse it.
    fn parse(text: &str) -> Result<Self, String>;
    /// Writes the lexical form through `w` (which escapes what needs escaping).
    fn write(&self, w: &mut XmlWriter);
}

/// What an element holds. Reading starts after the start tag and consumes the end tag.
pub trait Content: Sized {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation>;
    /// Writes the content only; the caller writes the tags.
    fn write(&self, w: &mut XmlWriter);
}

impl<T: Simple> Content for T {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        let text = r.read_text()?;
        match T::parse(&text) {
            Ok(v) => {
                r.close_simple();
                Ok(v)
            }
            Err(reason) => Err(r.invalid(reason)),
        }
    }

    fn write(&self, w: &mut XmlWriter) {
        Simple::write(self, w)
    }
}

/// One particle of a sequence, named `name` (unqualified unless the reader says otherwise).
pub trait Particle: Sized {
    fn read_particle(r: &mut XmlReader<'_>, name: &'static str) -> Result<Self, Violation>;
    fn write_particle(&self, w: &mut XmlWriter, name: &'static str);
}

/// Whether the next child of the current element is `name`. A same-named child in the wrong
/// namespace is reported as such: that is the commonest mistake integrators make.
pub fn next_is(r: &mut XmlReader<'_>, name: &str) -> Result<bool, Violation> {
    let child_ns = r.child_ns;
    match r.peek_child()? {
        Some(c) if c.is(child_ns, name) => Ok(true),
        Some(c) if c.local == name => {
            let why = if child_ns.is_empty() {
                format!(
                    "element '{}' must be unqualified (no namespace), found namespace '{}'",
                    name, c.ns
                )
            } else {
                format!(
                    "element '{}' must be in namespace '{}', found '{}'",
                    name, child_ns, c.ns
                )
            };
            Err(r.invalid_child(name, why))
        }
        _ => Ok(false),
    }
}

/// Reads the child element `name` (already peeked) as `T`.
pub fn read_element<T: Content>(r: &mut XmlReader<'_>) -> Result<T, Violation> {
    let child = r
        .take_child()
        .expect("read_element after a successful next_is");
    r.enter(child, AttrPolicy::None)?;
    T::read(r)
}

/// The violation for a required element that is absent (or replaced by another).
pub fn missing(r: &mut XmlReader<'_>, name: &str) -> Violation {
    match r.peek_child() {
        Ok(Some(c)) => {
            let found = c.display_name();
            let local = c.local;
            r.invalid_child(
                local,
                format!("element '{found}' is not expected; expected '{name}'"),
            )
        }
        Ok(None) => r.invalid_child(name, format!("missing required element '{name}'")),
        Err(e) => e,
    }
}

pub fn write_element<T: Content>(v: &T, w: &mut XmlWriter, name: &str) {
    w.open(name);
    v.write(w);
    w.close(name);
}

impl<T: Content> Particle for T {
    fn read_particle(r: &mut XmlReader<'_>, name: &'static str) -> Result<Self, Violation> {
        if next_is(r, name)? {
            read_element(r)
        } else {
            Err(missing(r, name))
        }
    }

    fn write_particle(&self, w: &mut XmlWriter, name: &'static str) {
        write_element(self, w, name)
    }
}

impl<T: Content> Particle for Option<T> {
    fn read_particle(r: &mut XmlReader<'_>, name: &'static str) -> Result<Self, Violation> {
        if next_is(r, name)? {
            read_element(r).map(Some)
        } else {
            Ok(None)
        }
    }

    fn write_particle(&self, w: &mut XmlWriter, name: &'static str) {
        if let Some(v) = self {
            write_element(v, w, name)
        }
    }
}

/// A repeated element, `minOccurs=MIN maxOccurs=MAX`. Construction enforces the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<T, const MIN: usize, const MAX: usize>(Vec<T>);

impl<T, const MIN: usize, const MAX: usize> Bounded<T, MIN, MAX> {
    /// `None` if `items.len()` is outside `MIN..=MAX`.
    pub fn new(items: Vec<T>) -> Option<Self> {
        (MIN..=MAX).contains(&items.len()).then_some(Bounded(items))
    }

    /// A list of exactly one item (always within bounds for every pagoPA list).
    pub fn one(item: T) -> Self {
        assert!(MIN <= 1 && 1 <= MAX);
        Bounded(vec![item])
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T, const MIN: usize, const MAX: usize> std::ops::Deref for Bounded<T, MIN, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'s, T, const MIN: usize, const MAX: usize> IntoIterator for &'s Bounded<T, MIN, MAX> {
    type Item = &'s T;
    type IntoIter = std::slice::Iter<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Content, const MIN: usize, const MAX: usize> Particle for Bounded<T, MIN, MAX> {
    fn read_particle(r: &mut XmlReader<'_>, name: &'static str) -> Result<Self, Violation> {
        let mut items = Vec::with_capacity(MIN.max(1));
        while next_is(r, name)? {
            if items.len() == MAX {
                return Err(
                    r.invalid_child(name, format!("too many '{name}' elements (at most {MAX})"))
                );
            }
            items.push(read_element(r)?);
        }
        if items.len() < MIN {
            return Err(missing(r, name));
        }
        Ok(Bounded(items))
    }

    fn write_particle(&self, w: &mut XmlWriter, name: &'static str) {
        for v in &self.0 {
            write_element(v, w, name)
        }
    }
}

/// Checks a string's length, in characters as XSD counts them, against `min..=max`.
pub fn check_length(s: &str, min: usize, max: usize) -> Result<(), String> {
    // Fast path: ASCII length equals char count.
    let n = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    if n < min {
        if min == max {
            Err(format!("length {n} is not the required {min}"))
        } else {
            Err(format!("length {n} is below the minimum {min}"))
        }
    } else if n > max {
        if min == max {
            Err(format!("length {n} is not the required {min}"))
        } else {
            Err(format!("length {n} exceeds the maximum {max}"))
        }
    } else {
        Ok(())
    }
}

/// Rejects characters that cannot appear in an XML document, for values built in code.
pub fn check_xml_chars(s: &str) -> Result<(), String> {
    // Fast path, one vectorized pass: ASCII text without C0 controls (tab, LF, CR aside) is all
    // XML characters. Identifiers and tokens are checked here on every read; the `char` check
    // below is for the rest.
    let suspect = |b: u8| ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')) | (b >= 0x80);
    if !any_byte(s.as_bytes(), suspect) {
        return Ok(());
    }
    match s.chars().find(|&c| !super::xml::is_xml_char(c)) {
        Some(c) => Err(format!("character U+{:04X} cannot appear in XML", c as u32)),
        None => Ok(()),
    }
}

/// Collapses XML whitespace (the `collapse` whitespace facet) and returns the trimmed value when
/// no internal run needs rewriting; non-string built-ins never accept internal spaces anyway.
pub fn collapse(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// The full `collapse` whitespace facet: trims, and turns every internal run of XML whitespace into
/// one space. Needed where a facet measures the collapsed lexical form (`stBase64Binary72`).
pub fn collapse_runs(s: &str) -> std::borrow::Cow<'_, str> {
    let t = collapse(s);
    let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    if !t.contains(['\t', '\n', '\r']) && !t.contains("  ") {
        return std::borrow::Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len());
    let mut in_run = false;
    for c in t.chars() {
        if ws(c) {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Defines a `complexType` with a sequence content model: the struct, its reader and writer.
///
/// Each field is `name: Type = "xmlName"`; the field's type gives its cardinality (see
/// [`Particle`]). Choices are fields whose type implements `Particle` itself; their literal is
/// documentation only.
#[macro_export]
macro_rules! xml_sequence {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $xml:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::codec::schema::Content for $name {
            #[allow(unused_variables)]
            fn read(r: &mut $crate::codec::xml::XmlReader<'_>) -> Result<Self, $crate::codec::xml::Violation> {
                let v = $name {
                    $( $field: <$ty as $crate::codec::schema::Particle>::read_particle(r, $xml)?, )*
                };
                r.end_element()?;
                Ok(v)
            }

            #[allow(unused_variables)]
            fn write(&self, w: &mut $crate::codec::xml::XmlWriter) {
                $( $crate::codec::schema::Particle::write_particle(&self.$field, w, $xml); )*
            }
        }
    };
}

/// Defines a string enumeration (`xsd:string` + `xsd:enumeration`): whitespace is significant.
#[macro_export]
macro_rules! xml_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $lit:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The lexical value.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $lit, )+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $lit => Ok($name::$variant), )+
                    _ => Err(format!(
                        "value '{}' is not one of {}",
                        s,
                        [$( $lit ),+].join(", ")
                    )),
                }
            }
        }

        impl $crate::codec::schema::Simple for $name {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse()
            }
            fn write(&self, w: &mut $crate::codec::xml::XmlWriter) {
                w.raw(self.as_str())
            }
        }
    };
}

/// Defines an `xsd:choice` between single elements: the enum and its particle readers, for the
/// required choice (`Enum`) and the optional one (`Option<Enum>`).
#[macro_export]
macro_rules! xml_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $xml:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name { $( $(#[$vmeta])* $variant($ty), )+ }

        impl $name {
            fn read_choice(r: &mut $crate::codec::xml::XmlReader<'_>) -> Result<Option<Self>, $crate::codec::xml::Violation> {
                $(
                    if $crate::codec::schema::next_is(r, $xml)? {
                        return $crate::codec::schema::read_element::<$ty>(r).map(|v| Some($name::$variant(v)));
                    }
                )+
                Ok(None)
            }
        }

        impl $crate::codec::schema::Particle for $name {
            fn read_particle(r: &mut $crate::codec::xml::XmlReader<'_>, _: &'static str) -> Result<Self, $crate::codec::xml::Violation> {
                match $name::read_choice(r)? {
                    Some(v) => Ok(v),
                    None => Err($crate::codec::schema::missing(r, concat!($( $xml, " | " ),+).trim_end_matches(" | "))),
                }
            }
            fn write_particle(&self, w: &mut $crate::codec::xml::XmlWriter, _: &'static str) {
                match self { $( $name::$variant(v) => $crate::codec::schema::write_element(v, w, $xml), )+ }
            }
        }

        impl $crate::codec::schema::Particle for Option<$name> {
            fn read_particle(r: &mut $crate::codec::xml::XmlReader<'_>, _: &'static str) -> Result<Self, $crate::codec::xml::Violation> {
                $name::read_choice(r)
            }
            fn write_particle(&self, w: &mut $crate::codec::xml::XmlWriter, name: &'static str) {
                if let Some(v) = self { $crate::codec::schema::Particle::write_particle(v, w, name) }
            }
        }
    };
}

/// Writes `v` as the unqualified element `<name>…</name>`: how the store keeps complex values.
pub fn to_fragment<T: Content>(name: &str, v: &T) -> String {
    let mut w = XmlWriter::with_capacity(512);
    write_element(v, &mut w, name);
    w.into_string()
}

/// Reads a value written by [`to_fragment`], checking it as the schema does.
pub fn from_fragment<T: Content>(xml: &str) -> Result<T, Violation> {
    let mut r = XmlReader::new(xml, super::xml::Limits::DEFAULT);
    let root = r.root()?;
    r.set_path_base();
    r.enter(root, AttrPolicy::None)?;
    let v = T::read(&mut r)?;
    r.finish_document()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_characters_are_checked_on_both_paths() {
        for ok in [
            "",
            "abc",
            "tab\there\r\n",
            &"x".repeat(40),
            "città",
            "\u{10000}",
        ] {
            assert!(check_xml_chars(ok).is_ok(), "{ok:?}");
        }
        let long = "y".repeat(37);
        for bad in [
            "\u{1}",
            &format!("{long}\u{1f}"),
            &format!("{long}\u{0}{long}"),
            "città\u{1}",
            "\u{FFFE}",
        ] {
            assert!(check_xml_chars(bad).is_err(), "{bad:?}");
        }
    }
}
