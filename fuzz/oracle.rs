//! What must hold for any input, however hostile: the fuzz target checks it on every input it
//! generates, and `tests/fuzz_regressions.rs` on every fixture and every input the fuzzer ever
//! found failing. Beyond "no panic, no stack overflow":
//!
//! * a message read back from what the writer made of it is the same message;
//! * the journal copy of a read request masks exactly what the lenient scanner masks in an
//!   unread one, and still reads;
//! * a document accepted under a lower depth limit is accepted under the default one;
//! * the lenient scanner examines each byte about once;
//! * the typed readers the node uses for station answers agree with `read_any`.

use pagonode::codec::lenient::Tags;
use pagonode::codec::pa_for_node::*;
use pagonode::codec::service::ServicePayload;
use pagonode::codec::{
    AnyMessage, Body, Limits, Message, Secrets, Violation, detect_operation, read_any,
    read_message, read_request,
};
use pagonode::replay::compare;

pub fn check(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let (read, secrets) = read_request(data, limits);

    if let Ok(Body::Message(m)) = &read {
        let written = m.to_envelope();
        match read_any(written.as_bytes(), limits) {
            Ok(Body::Message(again)) => assert_eq!(&again, m, "round trip of {written}"),
            other => panic!("the writer's output does not read back: {other:?}\n{written}"),
        }
        agrees::<PaGetPaymentRes>(data, m);
        agrees::<PaGetPaymentV2Response>(data, m);
        agrees::<PaSendRtRes>(data, m);
        agrees::<PaSendRtV2Response>(data, m);
        agrees::<PaVerifyPaymentNoticeRes>(data, m);
        agrees::<PaDemandPaymentNoticeResponse>(data, m);
    }

    let masked = secrets.mask(data);
    if read.is_ok() {
        assert_eq!(
            masked,
            Secrets::unknown().mask(data),
            "the reader's ranges and the scanner disagree"
        );
        let again = read_any(masked.as_bytes(), limits);
        assert!(again.is_ok(), "the masked copy does not read: {again:?}");
    }

    if read_any(data, Limits { max_depth: 16 }).is_ok() {
        assert!(read.is_ok(), "accepted at depth 16, refused at 64");
    }

    let text = String::from_utf8_lossy(data);
    let mut tags = Tags::new(&text);
    let found = tags.by_ref().count();
    assert!(
        tags.scanned() <= 2 * text.len() + 16,
        "{} bytes scanned for {} ({found} tags)",
        tags.scanned(),
        text.len()
    );
    let _ = detect_operation(None, None, data);

    let _ = ServicePayload::from_document(data.to_vec(), limits);
    if let Ok(tree) = compare::parse(&text) {
        let _ = tree.summary(200);
        let _ = compare::compare_documents(&text, &text, &mut compare::Captures::new());
    }
}

/// `read_message::<M>` reads what `read_any` read as an `M`, and refuses any other message.
fn agrees<M: Message + std::fmt::Debug>(data: &[u8], any: &AnyMessage) {
    let typed: Result<Body<M>, Violation> = read_message(data, Limits::DEFAULT);
    let same = any.operation() == M::OPERATION && any.direction() == M::DIRECTION;
    assert_eq!(
        typed.is_ok(),
        same,
        "read_message::<{}> disagrees with read_any ({}): {typed:?}",
        M::root(),
        any.root()
    );
}
