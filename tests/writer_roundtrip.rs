//! Every valid fixture, read and written again, reads back to the same value: the writers emit
//! what the readers accept (optional elements omitted when absent, text escaped, schema order).
//! With `PAGONODE_DUMP_DIR` set, the written envelopes are saved (in its `rewritten-fixtures/`)
//! for the official XSD check; being rewritten fixtures, not messages the node emitted in a
//! run, they do not count toward the check's gate.

use pagonode::codec::{Body, Limits, read_any};

#[test]
fn every_valid_fixture_round_trips_through_the_writer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("xsd-fixtures");
    let manifest = std::fs::read_to_string(root.join("manifest.tsv")).unwrap();
    let dump = std::env::var("PAGONODE_DUMP_DIR")
        .ok()
        .map(|d| std::path::PathBuf::from(d).join("rewritten-fixtures"));
    if let Some(d) = &dump {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.get(1) != Some(&"valid") {
            continue;
        }
        let bytes = std::fs::read(root.join(cols[0])).unwrap();
        let Body::Message(first) =
            read_any(&bytes, Limits::DEFAULT).unwrap_or_else(|v| panic!("{}: {v}", cols[0]))
        else {
            continue;
        };
        let written = first.to_envelope();
        let Body::Message(again) = read_any(written.as_bytes(), Limits::DEFAULT)
            .unwrap_or_else(|v| panic!("{}: rewritten form invalid: {v}\n{written}", cols[0]))
        else {
            panic!("{}: rewritten as a fault", cols[0]);
        };
        assert_eq!(
            first, again,
            "{}: the value changed through the writer",
            cols[0]
        );
        assert_eq!(
            written,
            again.to_envelope(),
            "{}: writing is not deterministic",
            cols[0]
        );
        if let Some(d) = &dump {
            let name = std::path::Path::new(cols[0]).file_name().unwrap();
            std::fs::write(
                d.join(format!("written-{}", name.to_string_lossy())),
                &written,
            )
            .unwrap();
        }
        checked += 1;
    }
    assert!(checked >= 26, "only {checked} fixtures checked");
}
