//! Failpoints: named places in the node's crash windows (a commit made and not yet answered, a
//! receipt acknowledged by its EC and not yet committed as such, ...) where the crash and
//! power-cut tests stop the node, to kill it or cut its power at exactly that point.
//!
//! They exist only with the `failpoints` feature, which `cargo test` turns on (the package's
//! dev-dependency on itself) and a build of the node never does: without it [`failpoint!`]
//! expands to nothing. With it, `FAILPOINTS="<name>=<n>*off->return"` (the `fail` crate's
//! syntax, read at start-up by [`setup`]) makes the process stop itself with SIGSTOP the
//! `n+1`-th time it passes `<name>`: the test sees a stopped process and acts on it. One
//! failpoint returns an error instead: `store.commit_io_error` fails the store's commits (see
//! `tests/commit_failure.rs`).

/// Marks a failpoint: `failpoint!("name")`, or `failpoint!("name", condition)` to pass it only
/// when the condition holds.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| $crate::failpoints::stop_here($name));
    };
    ($name:literal, $cond:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, $cond, |_| $crate::failpoints::stop_here($name));
    };
}
pub(crate) use failpoint;

/// Reads the failpoints' configuration from `FAILPOINTS` (a no-op without the feature).
pub fn setup() {
    // The scenario lives as long as the process.
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

/// Stops the whole process (every thread) where it stands; the test kills it.
#[cfg(feature = "failpoints")]
pub fn stop_here(name: &str) -> ! {
    eprintln!("failpoint {name}: process stopped");
    loop {
        // SAFETY: raise(2) with a valid signal number; no memory is involved.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}
