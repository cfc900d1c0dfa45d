//! The nodeForPsp WSDL the node serves at `?wsdl`: the contract file (`wsdl/nodeForPsp.wsdl`,
//! equivalent to the official one) reduced to the operations the node answers, its
//! `soap:address` the URL the WSDL was asked on (or `node.public_url`). A client generated from
//! it offers no operation the node would refuse.

use std::sync::OnceLock;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, Writer};

use crate::codec::{Interface, Operation};

/// The contract's nodeForPsp WSDL, every operation.
pub const CONTRACT: &str = include_str!("../wsdl/nodeForPsp.wsdl");

/// Stands for the address until a request says it.
const ADDRESS: &str = "pagonode:address";

/// The WSDL for a client of the node at `address`.
pub fn served_node_for_psp(address: &str) -> String {
    static REDUCED: OnceLock<String> = OnceLock::new();
    REDUCED
        .get_or_init(|| reduce(CONTRACT).expect("the contract WSDL is well-formed"))
        .replace(ADDRESS, &quick_xml::escape::escape(address))
}

/// Operations of nodeForPsp the node does not answer.
fn unserved(name: &str) -> bool {
    Operation::ALL.iter().any(|op| {
        op.interface() == Interface::NodeForPsp && !op.served() && op.soap_action() == name
    })
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// `wsdl` without the unserved operations (portType and binding), their messages, the schema
/// they need (`ppt`), its namespace declaration and the comments (which describe the whole
/// contract); the address replaced by [`ADDRESS`].
fn reduce(wsdl: &str) -> Result<String, quick_xml::Error> {
    // The messages of the unserved operations, from their portType entries.
    let mut messages = Vec::new();
    let mut reader = Reader::from_str(wsdl);
    let mut in_unserved = false;
    loop {
        match reader.read_event()? {
            Event::Start(e) if e.local_name().as_ref() == "operation" => {
                in_unserved = attr(&e, "name").is_some_and(|n| unserved(&n));
            }
            Event::Empty(e)
                if in_unserved && matches!(e.local_name().as_ref(), "input" | "output") =>
            {
                if let Some(m) = attr(&e, "message") {
                    messages.push(m.rsplit(':').next().unwrap_or(&m).to_string());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let dropped = |e: &BytesStart<'_>| match e.local_name().as_ref() {
        "operation" => attr(e, "name").is_some_and(|n| unserved(&n)),
        "message" => attr(e, "name").is_some_and(|n| messages.contains(&n)),
        "import" => attr(e, "namespace").as_deref() == Some("http://ws.pagamenti.telematici.gov/"),
        _ => false,
    };
    let mut reader = Reader::from_str(wsdl);
    let mut out = Writer::new(Vec::new());
    // Depth inside a dropped element (0: not in one).
    let mut skipping = 0usize;
    loop {
        let event = reader.read_event()?;
        if skipping > 0 {
            match event {
                Event::Start(_) => skipping += 1,
                Event::End(_) => skipping -= 1,
                _ => {}
            }
            continue;
        }
        match event {
            Event::Eof => break,
            Event::Comment(_) => {}
            Event::Start(e) if dropped(&e) => skipping = 1,
            Event::Empty(e) if dropped(&e) => {}
            Event::Start(e) if e.local_name().as_ref() == "definitions" => {
                let mut root = e.to_owned();
                root.clear_attributes();
                root.extend_attributes(
                    e.attributes()
                        .flatten()
                        .filter(|a| a.key.as_ref() != "xmlns:ppt"),
                );
                out.write_event(Event::Start(root))?;
            }
            Event::Empty(e) if e.local_name().as_ref() == "address" => {
                let mut address = e.to_owned();
                address.clear_attributes();
                address.push_attribute(("location", ADDRESS));
                out.write_event(Event::Empty(address))?;
            }
            other => out.write_event(other)?,
        }
    }
    // The lines left blank by what was dropped go too.
    let text = String::from_utf8(out.into_inner()).expect("written from a str");
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_operations_and_the_given_address() {
        let w = served_node_for_psp("https://node.example.org/a&b?x=\"1\"");
        for op in Operation::ALL
            .iter()
            .filter(|o| o.interface() == Interface::NodeForPsp)
        {
            let declared = w.contains(&format!("soapAction=\"{}\"", op.soap_action()));
            assert_eq!(declared, op.served(), "{}", op.soap_action());
        }
        for gone in ["ppt:", "xmlns:ppt", "nodoPerPsp.xsd", "<!--", "localhost"] {
            assert!(!w.contains(gone), "{gone} in\n{w}");
        }
        assert!(
            w.contains(r#"location="https://node.example.org/a&amp;b?x=&quot;1&quot;""#),
            "{w}"
        );
        assert!(w.contains("<wsdl:message name=\"demandPaymentNoticeResponse\">"));
        assert!(!w.contains("verificaBollettino"));
    }
}
