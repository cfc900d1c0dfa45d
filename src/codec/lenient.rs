//! A lenient tag scanner, for what must be found in a document the reader may reject: the
//! operation a request meant, its idempotency key, the passwords to mask before it is stored.
//!
//! It knows just enough XML to find tags where a parser would: comments, CDATA sections,
//! processing instructions and declarations are skipped whole, and a `>` inside a quoted
//! attribute value does not end a tag. Anything else that is not a tag is text. It never fails:
//! an unterminated construct runs to the end of the document.
//!
//! Every search starts where the previous one stopped, so a document is scanned once, whatever
//! it holds: [`Tags::scanned`] counts the bytes examined, which the tests bound.

use memchr::{memchr, memmem};

/// A tag found by [`Tags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag<'a> {
    /// `<name …>` or `<name …/>`.
    Start {
        /// The qualified name, as written.
        name: &'a str,
        /// Where the name ends (and the attributes, if any, begin).
        name_end: usize,
        /// Just after the tag's `>`, or where an unterminated tag stops (a `<` or the end of
        /// the document).
        end: usize,
        /// `<name …/>`.
        empty: bool,
    },
    /// `</name …>`.
    End {
        name: &'a str,
        /// At the tag's `<`.
        start: usize,
        /// As for a start tag.
        end: usize,
    },
}

impl<'a> Tag<'a> {
    /// The local name (after the prefix, if any).
    pub fn local(&self) -> &'a str {
        let (Tag::Start { name, .. } | Tag::End { name, .. }) = self;
        local_name(name)
    }

    /// Where the tag ends (see the variants).
    pub fn end(&self) -> usize {
        match *self {
            Tag::Start { end, .. } | Tag::End { end, .. } => end,
        }
    }
}

/// The local part of a qualified name.
pub fn local_name(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

/// The tags of a document, in order.
pub struct Tags<'a> {
    doc: &'a str,
    pos: usize,
    scanned: usize,
}

impl<'a> Tags<'a> {
    pub fn new(doc: &'a str) -> Self {
        Tags {
            doc,
            pos: 0,
            scanned: 0,
        }
    }

    /// The bytes examined so far: at most a few more than the document's length.
    pub fn scanned(&self) -> usize {
        self.scanned
    }

    fn bytes(&self) -> &'a [u8] {
        self.doc.as_bytes()
    }

    /// Moves just past the next `needle` from `from` on, or to the end of the document.
    fn skip_past(&mut self, from: usize, needle: &[u8]) {
        let hay = &self.bytes()[from.min(self.doc.len())..];
        let to = memmem::find(hay, needle).map_or(self.doc.len(), |i| from + i + needle.len());
        self.scanned += to.saturating_sub(from);
        self.pos = to;
    }

    /// From `from` (just after a tag's name) to just after its `>`, or to where an unterminated
    /// tag stops: a `<` outside a quoted value, or the end of the document. A quote opens a value
    /// only after `=`, so a stray apostrophe in a broken tag does not swallow the document.
    fn tag_end(&mut self, from: usize) -> usize {
        let b = self.bytes();
        let (mut i, mut after_eq) = (from, false);
        let end = loop {
            let Some(&c) = b.get(i) else { break b.len() };
            match c {
                b'>' => break i + 1,
                b'<' => break i,
                b'=' => after_eq = true,
                b'"' | b'\'' if after_eq => {
                    match memchr(c, &b[i + 1..]) {
                        Some(j) => i += 1 + j,
                        None => break b.len(),
                    }
                    after_eq = false;
                }
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ => after_eq = false,
            }
            i += 1;
        };
        self.scanned += end - from;
        self.pos = end;
        end
    }
}

fn ends_name(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'>' | b'/' | b'<')
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let (doc, b) = (self.doc, self.bytes());
        loop {
            let from = self.pos;
            let Some(off) = memchr(b'<', b.get(from..)?) else {
                self.scanned += b.len() - from;
                self.pos = b.len();
                return None;
            };
            let lt = from + off;
            self.scanned += off + 1;
            let rest = &b[lt + 1..];
            if rest.starts_with(b"!--") {
                self.skip_past(lt + 4, b"-->");
            } else if rest.starts_with(b"![CDATA[") {
                self.skip_past(lt + 9, b"]]>");
            } else if rest.starts_with(b"?") {
                self.skip_past(lt + 2, b"?>");
            } else if rest.starts_with(b"!") {
                self.skip_past(lt + 2, b">");
            } else {
                let closing = rest.first() == Some(&b'/');
                let name_start = lt + 1 + usize::from(closing);
                let name_len = b[name_start..]
                    .iter()
                    .position(|&c| ends_name(c))
                    .unwrap_or(b.len() - name_start);
                self.scanned += name_len;
                let name_end = name_start + name_len;
                self.pos = name_end;
                if name_len == 0 {
                    // `<` not opening a tag (`< x`, `<<`): text.
                    continue;
                }
                let name = &doc[name_start..name_end];
                let end = self.tag_end(name_end);
                return Some(if closing {
                    Tag::End {
                        name,
                        start: lt,
                        end,
                    }
                } else {
                    Tag::Start {
                        name,
                        name_end,
                        end,
                        empty: end >= 2 && b[end - 1] == b'>' && b[end - 2] == b'/',
                    }
                });
            }
        }
    }
}

/// The text of the first element named `name` (prefix ignored), trimmed, up to its next tag.
pub fn first_text<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    Tags::new(doc).find_map(|t| match t {
        Tag::Start {
            end, empty: false, ..
        } if t.local() == name => {
            let text = &doc[end..];
            Some(text[..text.find('<').unwrap_or(text.len())].trim())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(doc: &str) -> Vec<String> {
        Tags::new(doc)
            .map(|t| match t {
                Tag::Start { name, empty, .. } => format!("{name}{}", if empty { "/" } else { "" }),
                Tag::End { name, .. } => format!("/{name}"),
            })
            .collect()
    }

    #[test]
    fn tags_are_found_where_a_parser_finds_them() {
        assert_eq!(
            names(
                "<?xml version='1.0'?><!DOCTYPE x><a:b c='>' d=\"<e>\"><!-- <f> --><![CDATA[<g>]]><?pi <h>?><i/></a:b >"
            ),
            ["a:b", "i/", "/a:b"]
        );
        // Broken documents: a stray `<`, an apostrophe that is not a value, unterminated tags.
        assert_eq!(names("< x><<y>z<don't><w"), ["y", "don't", "w"]);
        assert_eq!(names("<a b='x"), ["a"]);
        assert_eq!(names("<a<b>"), ["a", "b"]);
        assert_eq!(names("<!-- <a>"), Vec::<String>::new());
    }

    #[test]
    fn first_text_is_lenient() {
        let doc = "<x><!-- <idPSP>no</idPSP> --><p:idPSP a='1'> 600 </p:idPSP><idPSP>2</idPSP>";
        assert_eq!(first_text(doc, "idPSP"), Some("600"));
        assert_eq!(first_text("<idPSP/><idPSP>x", "idPSP"), Some("x"));
        assert_eq!(first_text("<idPSPX>x</idPSPX>", "idPSP"), None);
    }

    /// Inputs that made earlier scanners (a search from every `<`, a look back from every name)
    /// quadratic: the scanner examines each byte about once, whatever the input.
    #[test]
    fn every_document_is_scanned_once() {
        let n = 20_000;
        let inputs = [
            "<".repeat(n),
            "<a".repeat(n),
            "<a x='".repeat(n),
            "<a x=".repeat(n),
            "<!--".repeat(n),
            "<![CDATA[".repeat(n),
            "<?".repeat(n),
            "</".repeat(n),
            format!("<!-- {}", "Body".repeat(n)),
            format!("<x>{}", "password".repeat(n)),
            "<password".repeat(n),
            "<password>".repeat(n),
            "<password/>".repeat(n),
            format!("<a {}>", "b='>' ".repeat(n)),
        ];
        for doc in &inputs {
            let mut tags = Tags::new(doc);
            let count = tags.by_ref().count();
            assert!(
                tags.scanned() <= 2 * doc.len() + 16,
                "{}…: {} bytes scanned for {} ({count} tags)",
                &doc[..20],
                tags.scanned(),
                doc.len()
            );
        }
    }
}
