//! The codec against the XSD fixture corpus (`xsd-fixtures/`, see its README).
//!
//! Every envelope listed in `xsd-fixtures/manifest.tsv` is read with `codec::read_any`. A `valid`
//! row must read; an `invalid` row must be rejected, and the violation must blame the manifest's
//! `field` exactly (`Violation::field()`, the last step of its path), or carry an empty path when
//! the field is `-` (envelope-level and not-well-formed violations). All mismatches are collected
//! and reported together. The corpus itself is checked too: its layout, its size, and that each of
//! the 26 nodeForPsp/paForNode messages has at least one valid fixture.
//!
//! The corpus and the manifest are written by `xsd-fixtures/generate.py`; this test needs neither
//! Python nor the official XSDs.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use pagonode::codec::{Body, Limits, read_any};

const COLUMNS: [&str; 8] = [
    "file", "verdict", "rule", "field", "fault", "oracle", "libxml2", "note",
];

/// The message roots in scope: every one needs a valid fixture.
const ROOTS: [&str; 26] = [
    "demandPaymentNoticeRequest",
    "demandPaymentNoticeResponse",
    "verifyPaymentNoticeReq",
    "verifyPaymentNoticeRes",
    "activatePaymentNoticeReq",
    "activatePaymentNoticeRes",
    "activatePaymentNoticeV2Request",
    "activatePaymentNoticeV2Response",
    "sendPaymentOutcomeReq",
    "sendPaymentOutcomeRes",
    "sendPaymentOutcomeV2Request",
    "sendPaymentOutcomeV2Response",
    "nodoChiediCatalogoServiziV2Request",
    "nodoChiediCatalogoServiziV2Response",
    "paDemandPaymentNoticeRequest",
    "paDemandPaymentNoticeResponse",
    "paVerifyPaymentNoticeReq",
    "paVerifyPaymentNoticeRes",
    "paGetPaymentReq",
    "paGetPaymentRes",
    "paGetPaymentV2Request",
    "paGetPaymentV2Response",
    "paSendRTReq",
    "paSendRTRes",
    "paSendRTV2Request",
    "paSendRTV2Response",
];

const MIN_VALID: usize = 26;
const MIN_INVALID: usize = 300;
const FAULTS: [&str; 3] = [
    "-",
    "PPT_SINTASSI_EXTRAXSD",
    "PPT_STAZIONE_INT_PA_ERRORE_RESPONSE",
];

struct Row<'m> {
    line: usize,
    file: &'m str,
    verdict: &'m str,
    rule: &'m str,
    field: &'m str,
    fault: &'m str,
    oracle: &'m str,
    libxml2: &'m str,
    note: &'m str,
}

fn parse_manifest<'m>(text: &'m str, problems: &mut Vec<String>) -> Vec<Row<'m>> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split('\t').collect())
        .unwrap_or_default();
    assert_eq!(header, COLUMNS, "manifest.tsv header");
    let mut rows = Vec::new();
    for (i, line) in lines {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() != COLUMNS.len() {
            problems.push(format!(
                "manifest line {}: {} columns, expected {}",
                i + 1,
                c.len(),
                COLUMNS.len()
            ));
            continue;
        }
        rows.push(Row {
            line: i + 1,
            file: c[0],
            verdict: c[1],
            rule: c[2],
            field: c[3],
            fault: c[4],
            oracle: c[5],
            libxml2: c[6],
            note: c[7],
        });
    }
    rows
}

/// The manifest's own rules: what each column may hold.
fn check_row(r: &Row<'_>, problems: &mut Vec<String>) {
    let mut bad =
        |what: String| problems.push(format!("manifest line {} ({}): {what}", r.line, r.file));
    for (name, v) in [
        ("verdict", r.verdict),
        ("oracle", r.oracle),
        ("libxml2", r.libxml2),
    ] {
        if v != "valid" && v != "invalid" {
            bad(format!("{name} must be valid or invalid, found {v:?}"));
        }
    }
    if !r.file.starts_with(&format!("{}/", r.verdict)) || !r.file.ends_with(".xml") {
        bad(format!("file must be {}/*.xml", r.verdict));
    }
    if !FAULTS.contains(&r.fault) {
        bad(format!("unknown fault {:?}", r.fault));
    }
    if r.verdict == "valid" && (r.rule != "-" || r.field != "-" || r.fault != "-") {
        bad("a valid row has rule, field and fault '-'".into());
    }
    if r.verdict == "invalid" && r.rule == "-" {
        bad("an invalid row names the rule it breaks".into());
    }
    if (r.verdict != r.oracle || r.verdict != r.libxml2) && r.note.len() < 10 {
        bad(
            "a verdict that differs from the oracle or from libxml2 must be explained in the note"
                .into(),
        );
    }
}

#[test]
fn codec_agrees_with_the_xsd_fixture_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xsd-fixtures");
    let manifest = fs::read_to_string(dir.join("manifest.tsv")).expect("xsd-fixtures/manifest.tsv");
    let mut problems = Vec::new();
    let rows = parse_manifest(&manifest, &mut problems);

    let mut listed = BTreeSet::new();
    let mut valid_roots = BTreeSet::new();
    let (mut n_valid, mut n_invalid) = (0, 0);
    for r in &rows {
        check_row(r, &mut problems);
        if !listed.insert(r.file) {
            problems.push(format!("{}: listed twice", r.file));
        }
        match r.verdict {
            "valid" => n_valid += 1,
            _ => n_invalid += 1,
        }
        let bytes = match fs::read(dir.join(r.file)) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", r.file));
                continue;
            }
        };
        match (r.verdict, read_any(&bytes, Limits::DEFAULT)) {
            ("valid", Ok(body)) => {
                if let Body::Message(m) = body {
                    valid_roots.insert(m.root());
                }
            }
            ("valid", Err(v)) => {
                problems.push(format!("{}: expected valid, rejected: {v}", r.file))
            }
            (_, Ok(_)) => problems.push(format!(
                "{}: expected invalid ({}), accepted",
                r.file, r.rule
            )),
            (_, Err(v)) => {
                if r.field == "-" {
                    if !v.path.is_empty() {
                        problems.push(format!(
                            "{}: expected an envelope-level violation (no path), got {v}",
                            r.file
                        ));
                    }
                } else if v.field() != r.field {
                    problems.push(format!(
                        "{}: expected a violation of '{}', got '{}': {v}",
                        r.file,
                        r.field,
                        v.field()
                    ));
                }
            }
        }
    }

    // Every fixture on disk is in the manifest.
    for sub in ["valid", "invalid"] {
        let entries =
            fs::read_dir(dir.join(sub)).unwrap_or_else(|e| panic!("xsd-fixtures/{sub}: {e}"));
        for e in entries {
            let name = format!(
                "{sub}/{}",
                e.expect("directory entry").file_name().to_string_lossy()
            );
            if name.ends_with(".xml") && !listed.contains(name.as_str()) {
                problems.push(format!("{name}: not in the manifest"));
            }
        }
    }
    if n_valid < MIN_VALID {
        problems.push(format!(
            "only {n_valid} valid fixtures, expected at least {MIN_VALID}"
        ));
    }
    if n_invalid < MIN_INVALID {
        problems.push(format!(
            "only {n_invalid} invalid fixtures, expected at least {MIN_INVALID}"
        ));
    }
    for root in ROOTS {
        if !valid_roots.contains(root) {
            problems.push(format!("no valid fixture reads as a {root}"));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s) over {} fixtures ({n_valid} valid, {n_invalid} invalid):\n{}",
        problems.len(),
        rows.len(),
        problems.join("\n")
    );
}
