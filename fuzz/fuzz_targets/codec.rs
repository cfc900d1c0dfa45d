//! The codec under libFuzzer: every input goes through the oracle the regression test uses.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
