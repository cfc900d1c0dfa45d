//! The fuzz oracle (`fuzz/oracle.rs`) over every XSD fixture, every example and every input in
//! `fuzz/regressions/` (the attacks of issue 12, `issue12-*`, and every input the fuzzer found
//! failing, kept as found): what `fuzz/run` checks millions of times is checked on these at every
//! `cargo test`.

#[path = "../fuzz/oracle.rs"]
mod oracle;

use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

fn check_all(dirs: &[&str]) -> usize {
    let mut n = 0;
    for path in dirs.iter().flat_map(|d| files(d)) {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| oracle::check(&data));
        assert!(outcome.is_ok(), "{} fails the oracle", path.display());
        n += 1;
    }
    n
}

#[test]
fn every_regression_input_stays_fixed() {
    let n = check_all(&["fuzz/regressions"]);
    assert!(n > 0, "no regression inputs");
}

#[test]
fn every_fixture_passes_the_oracle() {
    let n = check_all(&["xsd-fixtures/valid", "xsd-fixtures/invalid", "examples"]);
    assert!(n > 1000, "only {n} fixtures");
}
