//! Measures the codec against its target: reading and validating a message (`read_any`) costs at
//! most 2× a bare quick-xml tokenization of the same bytes.
//!
//! Run with `cargo bench --bench codec`, then `python3 benches/codec_report.py` for the table.
//!
//! For each of the 26 nodeForPsp/paForNode messages the node serves, two valid fixtures from
//! `xsd-fixtures/valid/`: `all_optional` (the typical message: every optional element once, as in
//! the reference examples) and, where the corpus has one, `maximal` (lists at their maximum
//! cardinality). Each message is one criterion group, `<root>`, with three benchmarks per fixture:
//!
//! * `baseline/<case>`: `std::str::from_utf8` plus a quick-xml `read_event` loop to `Eof` with the
//!   codec's reader configuration (end names and comments checked): the floor any XML reader pays;
//! * `parse/<case>`: `pagonode::codec::read_any` (decode, well-formedness, namespaces, envelope,
//!   schema, typed values);
//! * `write/<case>`: `write_envelope` of the typed message read from the fixture.
//!
//! Throughput is the fixture's size in bytes. Estimates land in
//! `target/criterion/<root>/<bench>/<case>/new/estimates.json`. One benchmark alone:
//! `cargo bench --bench codec -- 'paGetPaymentRes/parse/maximal'`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pagonode::codec::{AnyMessage, Body, Operation, read_any};
use quick_xml::Reader;
use quick_xml::events::Event;

/// Fixture cases benchmarked per message, when the corpus has them.
const CASES: [&str; 2] = ["all_optional", "maximal"];

/// The raw tokenization floor: UTF-8 validation and every quick-xml event, configured as the
/// codec configures its reader (`XmlReader::new`).
fn tokenize(bytes: &[u8]) -> usize {
    let doc = std::str::from_utf8(bytes).expect("UTF-8 fixture");
    let mut r = Reader::from_str(doc);
    let cfg = r.config_mut();
    cfg.check_end_names = true;
    cfg.check_comments = true;
    cfg.expand_empty_elements = false;
    cfg.trim_text(false);
    let mut events = 0;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => return events,
            Ok(ev) => {
                black_box(&ev);
                events += 1;
            }
            Err(e) => panic!("fixture not well-formed: {e}"),
        }
    }
}

fn read(bytes: &[u8]) -> AnyMessage {
    match read_any(bytes) {
        Ok(Body::Message(m)) => m,
        Ok(Body::Fault(f)) => panic!("a fixture holds a SOAP Fault: {f:?}"),
        Err(v) => panic!("a valid fixture was rejected: {v}"),
    }
}

/// The message roots of the 26 served operations' requests and responses, in operation order.
fn roots() -> Vec<&'static str> {
    Operation::ALL
        .iter()
        .filter(|op| op.served())
        .flat_map(|op| [op.request_root(), op.response_root()])
        .collect()
}

fn codec(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xsd-fixtures/valid");
    let roots = roots();
    assert_eq!(roots.len(), 26, "the node serves 26 messages");
    for root in roots {
        let mut group = c.benchmark_group(root);
        for case in CASES {
            let Ok(bytes) = std::fs::read(dir.join(format!("{root}__{case}.xml"))) else {
                assert_ne!(case, "all_optional", "every message has an all_optional fixture");
                continue;
            };
            // What is measured must be what the node does: the fixture reads back, and what the
            // writer emits reads back as the same message.
            let msg = read(&bytes);
            assert_eq!(read(msg.to_envelope().as_bytes()), msg, "{root}__{case}");

            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(format!("baseline/{case}"), |b| {
                b.iter(|| tokenize(black_box(&bytes)))
            });
            group.bench_function(format!("parse/{case}"), |b| {
                b.iter(|| read_any(black_box(&bytes)).is_ok())
            });
            group.bench_function(format!("write/{case}"), |b| {
                b.iter(|| black_box(&msg).to_envelope())
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    // 26 messages × up to 2 fixtures × 3 benchmarks: short windows keep the run near 5 minutes.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec
}
criterion_main!(benches);
