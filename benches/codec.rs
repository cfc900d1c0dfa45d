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
//!
//! The three benchmarks of a fixture run one after the other, each in its own time window: on a
//! machine busy with other work (or a virtual machine whose host is) the ratio can drift by more
//! than the optimizations it is meant to judge. So, before criterion's benchmarks, every fixture is
//! also measured interleaved: 500 pairs of alternating batches (about 50 µs each) of tokenization
//! and `read_any`, in 3 passes over the corpus, keeping the fastest batch of each kind, so that
//! both see the same machine. Those figures go to `target/criterion/codec-interleaved.tsv`
//! (`root case bytes baseline_ns parse_ns`), which the report shows next to criterion's; they take
//! a few seconds. `CODEC_INTERLEAVED=0` skips them (they are also skipped under `--profile-time`,
//! `--test`, `--list`, and when not benchmarking).
//!
//! Some messages carry a second document in base64 (`datiSpecificiServizio`, `MBDAttachment`,
//! `xmlCatalogoServizi`): `read_any` decodes it (and parses and validates the service document of
//! `demandPaymentNotice`/`paDemandPaymentNotice`), work the baseline, which only tokenizes the
//! envelope, never does. Their ratio is above the others' for that reason.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pagonode::codec::{AnyMessage, Body, Limits, Operation, read_any};
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
    match read_any(bytes, Limits::DEFAULT) {
        Ok(Body::Message(m)) => m,
        Ok(Body::Fault(f)) => panic!("a fixture holds a SOAP Fault: {f:?}"),
        Err(v) => panic!("a valid fixture was rejected: {v}"),
    }
}

/// Mean time of `n` runs of `f`, in ns.
fn batch(f: impl Fn(), n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

/// Baseline and `read_any` times of `bytes`, in ns, from 500 pairs of alternating batches of
/// about 50 µs: the fastest batch of each kind. Whatever else the machine does meanwhile, both
/// kinds of batch meet it alike.
fn interleaved(bytes: &[u8]) -> (f64, f64) {
    let parse = || {
        black_box(read_any(black_box(bytes), Limits::DEFAULT).is_ok());
    };
    let base = || {
        black_box(tokenize(black_box(bytes)));
    };
    let n = (50_000.0 / batch(parse, 20)).clamp(1.0, 1000.0) as u32;
    let (mut base_ns, mut parse_ns) = (f64::MAX, f64::MAX);
    for _ in 0..500 {
        base_ns = base_ns.min(batch(base, n));
        parse_ns = parse_ns.min(batch(parse, n));
    }
    (base_ns, parse_ns)
}

/// The interleaved figures of every fixture: 3 passes over the corpus, a few seconds apart, so a
/// slow spell of the machine during one fixture's turn is outvoted; the fastest of each kind.
fn measure_interleaved(fixtures: &[Fixture]) {
    let mut best = vec![(f64::MAX, f64::MAX); fixtures.len()];
    for _ in 0..3 {
        for (f, best) in fixtures.iter().zip(&mut best) {
            let (base_ns, parse_ns) = interleaved(&f.bytes);
            *best = (best.0.min(base_ns), best.1.min(parse_ns));
        }
    }
    let mut tsv = String::new();
    for (f, (base_ns, parse_ns)) in fixtures.iter().zip(best) {
        println!(
            "{}/{}: interleaved baseline {base_ns:.0} ns, parse {parse_ns:.0} ns, ratio {:.2}",
            f.root,
            f.case,
            parse_ns / base_ns
        );
        let _ = writeln!(
            tsv,
            "{}\t{}\t{}\t{base_ns:.1}\t{parse_ns:.1}",
            f.root,
            f.case,
            f.bytes.len()
        );
    }
    let dir = criterion_dir();
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("codec-interleaved.tsv"), tsv));
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", dir.display());
    }
}

/// Whether to measure interleaved: when benchmarking (not `cargo test --benches`, `--test`,
/// `--list`), not profiling, and not turned off with `CODEC_INTERLEAVED=0`.
fn interleaved_wanted() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a.split('=').next() == Some(flag));
    has("--bench")
        && !has("--test")
        && !has("--list")
        && !has("--profile-time")
        && std::env::var("CODEC_INTERLEAVED").map_or(true, |v| v != "0")
}

/// Where criterion writes its figures (its own rule: `CRITERION_HOME`, else the target directory).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The message roots of the 26 served operations' requests and responses, in operation order.
fn roots() -> Vec<&'static str> {
    Operation::ALL
        .iter()
        .filter(|op| op.served())
        .flat_map(|op| [op.request_root(), op.response_root()])
        .collect()
}

/// A valid fixture of one message, with the typed message it holds.
struct Fixture {
    root: &'static str,
    case: &'static str,
    bytes: Vec<u8>,
    msg: AnyMessage,
}

/// The fixtures benchmarked, message by message, in operation order.
fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xsd-fixtures/valid");
    let roots = roots();
    assert_eq!(roots.len(), 26, "the node serves 26 messages");
    let mut out = Vec::new();
    for root in roots {
        for case in CASES {
            let Ok(bytes) = std::fs::read(dir.join(format!("{root}__{case}.xml"))) else {
                assert_ne!(
                    case, "all_optional",
                    "every message has an all_optional fixture"
                );
                continue;
            };
            // What is measured must be what the node does: the fixture reads back, and what the
            // writer emits reads back as the same message.
            let msg = read(&bytes);
            assert_eq!(read(msg.to_envelope().as_bytes()), msg, "{root}__{case}");
            out.push(Fixture {
                root,
                case,
                bytes,
                msg,
            });
        }
    }
    out
}

fn codec(c: &mut Criterion) {
    let fixtures = fixtures();
    if interleaved_wanted() {
        measure_interleaved(&fixtures);
    }
    for message in fixtures.chunk_by(|a, b| a.root == b.root) {
        let mut group = c.benchmark_group(message[0].root);
        for f in message {
            let (bytes, msg) = (&f.bytes, &f.msg);
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(BenchmarkId::new("baseline", f.case), |b| {
                b.iter(|| tokenize(black_box(bytes)))
            });
            group.bench_function(BenchmarkId::new("parse", f.case), |b| {
                b.iter(|| read_any(black_box(bytes), Limits::DEFAULT).is_ok())
            });
            group.bench_function(BenchmarkId::new("write", f.case), |b| {
                b.iter(|| black_box(msg).to_envelope())
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
