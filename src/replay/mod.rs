//! `pagonode replay`: runs traces — recorded or hand-written PSP/EC conversations — against a
//! node and says, step by step, whether it behaves as they expect. The format is documented in
//! `docs/traces.md`.
//!
//! - [`trace`]: the TOML format, read and checked;
//! - [`compare`]: semantic XML comparison with capturing placeholders;
//! - [`ec`]: the EC player, which plays every station of a trace;
//! - [`runner`]: runs a trace against an in-process node or a node at a URL;
//! - [`junit`]: the JUnit report;
//! - [`export`]: one payment's journal as a trace.

pub mod compare;
pub mod ec;
pub mod export;
pub mod junit;
pub mod runner;
pub mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures_util::StreamExt;

pub use runner::{Target, TraceReport, Verdict, run_trace};
pub use trace::{Trace, load};

/// In-process traces replayed at once by default.
pub const DEFAULT_JOBS: usize = 8;

/// `pagonode replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Trace files, or directories (every `.toml` in them with a `[[step]]`).
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Replay against the node at this nodeForPsp URL instead of an in-process node per trace.
    #[arg(long, value_name = "URL")]
    pub node: Option<String>,
    /// With --node: where the replayer plays the ECs; the node's station URLs must point here
    /// and end with the station id (`http://ADDR/pa/77777777777_01`).
    #[arg(long, value_name = "ADDR")]
    pub ec_listen: Option<String>,
    /// The configuration in-process nodes start from (default: the shipped trace configuration,
    /// `tests/traces/node.toml`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sets a trace variable, overriding the trace's own (`--var notice=302000000000000042`).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Writes a JUnit XML report (one test case per trace).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Keeps each in-process node's database as DIR/<trace>.db (for `pagonode journal`).
    #[arg(long, value_name = "DIR")]
    pub keep_databases: Option<PathBuf>,
    /// Traces replayed at once (in-process only, default 8; against --node they run one at a time).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}': expected NAME=VALUE"))
}

/// Whether a file is a trace (it has steps) rather than a configuration or an include file.
fn is_trace(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("step"))
}

/// The trace files named: files as given, directories expanded (sorted, not recursive).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml") && is_trace(f))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Loads and runs traces, `jobs` at a time, calling `done` as each finishes. A trace that
/// cannot be loaded is reported as an error, and the others still run.
pub async fn run_files(
    files: &[PathBuf],
    vars: &BTreeMap<String, String>,
    target: &Target,
    jobs: usize,
    mut done: impl FnMut(&TraceReport),
) -> Vec<TraceReport> {
    let runs = files.iter().map(|f| async move {
        match trace::load(f, vars) {
            Ok(t) => run_trace(&t, target).await,
            Err(e) => TraceReport {
                name: f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: f.display().to_string(),
                description: String::new(),
                steps: Vec::new(),
                error: Some(e),
                elapsed: std::time::Duration::ZERO,
            },
        }
    });
    let mut stream = futures_util::stream::iter(runs).buffer_unordered(jobs.max(1));
    let mut reports = Vec::new();
    while let Some(r) = stream.next().await {
        done(&r);
        reports.push(r);
    }
    reports
}

/// A trace's report as text: one line per step, the diff under a failing step.
pub fn render(r: &TraceReport) -> String {
    let mut out = format!("{}  ({})\n", r.name, r.path);
    if let Some(e) = &r.error {
        out.push_str(&format!("   ERROR {}\n", e.replace('\n', "\n         ")));
    }
    for (i, s) in r.steps.iter().enumerate() {
        let (tag, why) = match &s.verdict {
            Verdict::Pass => ("PASS", None),
            Verdict::Fail(why) => ("FAIL", Some(why)),
            Verdict::Skipped => ("SKIP", None),
        };
        out.push_str(&format!(
            "   {tag}  {:>2} {} ({} ms)\n",
            i + 1,
            s.label,
            s.elapsed.as_millis()
        ));
        if let Some(why) = why {
            for line in why.lines() {
                out.push_str(&format!("         {line}\n"));
            }
        }
    }
    out.push_str(&format!(
        "{} {} ({:.2} s)\n",
        if r.passed() { "PASSED" } else { "FAILED" },
        r.name,
        r.elapsed.as_secs_f64()
    ));
    out
}

/// The last line: `N passed, N failed` (traces).
pub fn summary(reports: &[TraceReport]) -> String {
    let passed = reports.iter().filter(|r| r.passed()).count();
    format!("{passed} passed, {} failed", reports.len() - passed)
}

/// `pagonode replay`: prints each trace's steps, the summary, writes the JUnit report; fails
/// unless every trace passed.
pub fn main(args: &ReplayArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pagonode replay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(replay(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pagonode replay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn replay(args: &ReplayArgs) -> Result<bool, String> {
    let files = collect(&args.traces)?;
    if files.is_empty() {
        return Err("no trace files".into());
    }
    let base_config = args
        .config
        .as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    if let Some(dir) = &args.keep_databases {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let target = Target {
        node_url: args.node.clone(),
        ec_listen: args.ec_listen.clone(),
        base_config,
        keep_databases: args.keep_databases.clone(),
    };
    // One EC player port for a remote node: its traces run one after the other. In-process
    // traces mostly wait (timeouts, retries, expiries), so more run at once than there are CPUs.
    let jobs = if args.node.is_some() {
        1
    } else {
        args.jobs.unwrap_or(DEFAULT_JOBS)
    };
    let vars: BTreeMap<String, String> = args.vars.iter().cloned().collect();
    let reports = run_files(&files, &vars, &target, jobs, |r| print!("{}", render(r))).await;
    println!("{}", summary(&reports));
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::report(&reports))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(reports.iter().all(TraceReport::passed))
}
