//! Secrets never stored: the copy of a request the journal keeps has the content of every
//! password element replaced by [`MASKED`].
//!
//! For a request the reader accepted, the content replaced is exactly what the reader read as the
//! password (or skipped as an element of that name, in a SOAP Header, say): the byte ranges it
//! recorded, however the value was spelled (CDATA sections, references, comments inside it). For
//! a request it could not read, the [lenient scanner](super::lenient) finds the password
//! elements and everything from such a start tag to its end tag, or to the end of the document,
//! is replaced.

use std::ops::Range;

use super::lenient::{Tag, Tags};
use super::xml::decode_document;

/// What the journal stores instead of a password.
pub const MASKED: &str = "********";

/// Whether an element of this local name holds a secret: the channel `password` of nodeForPsp
/// (`stPassword`), and any element so named (WS-Security's `Password`, say).
pub fn is_secret_name(local: &str) -> bool {
    local.eq_ignore_ascii_case("password")
}

/// Where a request keeps its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets(Option<Vec<Range<usize>>>);

impl Secrets {
    /// The byte ranges of the request holding a secret, in document order (from the reader).
    pub fn at(ranges: Vec<Range<usize>>) -> Secrets {
        Secrets(Some(ranges))
    }

    /// Not known: the request was not read.
    pub fn unknown() -> Secrets {
        Secrets(None)
    }

    /// The request as the journal keeps it: its text, every secret replaced by [`MASKED`].
    pub fn mask(&self, request: &[u8]) -> String {
        match (&self.0, std::str::from_utf8(request)) {
            // Ranges are of the request's bytes, which the reader reads as they are when UTF-8.
            (Some(ranges), Ok(text)) => replace(text, ranges),
            (None, Ok(text)) => mask_unread(text),
            // Another encoding the reader decodes (ISO-8859-1): the copy is the decoded text,
            // declared UTF-8 as it now is, so that it reads as the request did.
            (_, Err(_)) => match decode_document(request) {
                Ok(text) => mask_unread(&declared_utf8(&text)),
                Err(_) => mask_unread(&String::from_utf8_lossy(request)),
            },
        }
    }
}

/// `doc` with the encoding of its XML declaration, if it names one, replaced by UTF-8.
fn declared_utf8(doc: &str) -> String {
    let decl_end = match doc.strip_prefix("<?xml").and_then(|_| doc.find("?>")) {
        Some(end) => end,
        None => return doc.to_string(),
    };
    let value = doc[..decl_end].find("encoding").and_then(|at| {
        let after = at + "encoding".len();
        let rest = &doc[after..decl_end];
        let eq = rest.find('=')?;
        let open = after + eq + 1 + rest[eq + 1..].find(['"', '\''])?;
        let quote = doc[open..].chars().next()?;
        let close = open + 1 + doc[open + 1..decl_end].find(quote)?;
        Some(open + 1..close)
    });
    match value {
        Some(v) => format!("{}UTF-8{}", &doc[..v.start], &doc[v.end..]),
        None => doc.to_string(),
    }
}

/// `text` with each of `ranges` (in order, not overlapping) replaced by [`MASKED`].
fn replace(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for r in ranges {
        out.push_str(&text[copied..r.start]);
        out.push_str(MASKED);
        copied = r.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks a document the reader did not accept. From a password start tag to its end tag (the
/// one that balances it, if password elements nest), or to the end of the document; the start
/// tag's attributes too when the tag itself is unterminated; and for an end tag that no start
/// tag opened, the text just before it.
pub fn mask_unread(doc: &str) -> String {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    // The open password element: where its masked content starts, and how many password
    // elements are open inside it.
    let mut open: Option<(usize, usize)> = None;
    let mut last_tag_end = 0;
    for tag in Tags::new(doc) {
        let secret = is_secret_name(tag.local());
        match (tag, &mut open) {
            (Tag::Start { empty: true, .. }, _) => {}
            (Tag::Start { .. }, Some((_, nested))) if secret => *nested += 1,
            (Tag::Start { name_end, end, .. }, None) if secret => {
                let terminated = doc.as_bytes()[..end].ends_with(b">");
                open = Some((if terminated { end } else { name_end }, 0));
            }
            (Tag::End { start, .. }, Some((from, nested))) if secret => {
                if *nested == 0 {
                    ranges.push(*from..start);
                    open = None;
                } else {
                    *nested -= 1;
                }
            }
            (Tag::End { start, .. }, None) if secret && last_tag_end < start => {
                ranges.push(last_tag_end..start);
            }
            _ => {}
        }
        last_tag_end = tag.end();
    }
    if let Some((from, _)) = open {
        ranges.push(from..doc.len());
    }
    replace(doc, &ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_documents_lose_every_password() {
        for (doc, masked) in [
            (
                "<a><password>secret123</password></a>",
                "<a><password>********</password></a>",
            ),
            (
                "<nfp:password >x</nfp:password><password/>",
                "<nfp:password >********</nfp:password><password/>",
            ),
            (
                "<passwordX>keep</passwordX><password>cut",
                "<passwordX>keep</passwordX><password>********",
            ),
            (
                "<d>my password</d><p>password</p><x/password>",
                "<d>my password</d><p>password</p><x/password>",
            ),
            ("<password", "<password********"),
            ("password><password>", "password><password>********"),
            (
                "<password>a<!-- </password> -->b</password>",
                "<password>********</password>",
            ),
            (
                "<password>a<password>b</password>c</password>d",
                "<password>********</password>d",
            ),
            (
                "<password x='>'>s</password>",
                "<password x='>'>********</password>",
            ),
            (
                "<password secret</password>",
                "<password********</password>",
            ),
            ("< password>secret</password>", "********</password>"),
            (
                "<x>1</x>< password>secret</password>",
                "<x>1</x>********</password>",
            ),
            ("<Password>s</Password>", "<Password>********</Password>"),
        ] {
            assert_eq!(mask_unread(doc), masked, "{doc}");
        }
    }

    #[test]
    fn read_documents_lose_exactly_their_recorded_ranges() {
        let doc = "<a><password><![CDATA[pwd]]>pwd</password><b>pwd</b><c>pwd</c></a>";
        let range = |from: &str, to: &str| doc.find(from).unwrap()..doc.find(to).unwrap();
        assert_eq!(
            Secrets::at(vec![range("<![", "</password>"), range("pwd</c>", "</c>")])
                .mask(doc.as_bytes()),
            "<a><password>********</password><b>pwd</b><c>********</c></a>"
        );
        // Not UTF-8: the ranges cannot be trusted, the document is masked as unread.
        let latin1 = b"<a>\xe0<password>x</password></a>";
        assert_eq!(
            Secrets::at(vec![0..1, 2..3]).mask(latin1),
            "<a>\u{FFFD}<password>********</password></a>"
        );
        // Declared ISO-8859-1: the copy is the text the reader read, declared UTF-8.
        let latin1 =
            b"<?xml version='1.0' encoding='ISO-8859-1'?><a>\xe0<password>x</password></a>";
        assert_eq!(
            Secrets::unknown().mask(latin1),
            "<?xml version='1.0' encoding='UTF-8'?><a>\u{e0}<password>********</password></a>"
        );
    }
}
