//! The trace suite: every trace of `tests/traces/` replayed against an in-process node of its
//! own (several at once), and the replayer's own behaviour on bad traces, wrong expectations,
//! unexpected EC calls and a node given by URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pagonode::replay::{self, Target, TraceReport, Verdict};

mod common;

fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces")
}

async fn run(files: &[PathBuf], target: &Target) -> Vec<TraceReport> {
    replay::run_files(
        files,
        &BTreeMap::new(),
        target,
        replay::DEFAULT_JOBS,
        |_| {},
    )
    .await
}

/// Writes a trace into `dir`; it can include the shipped `common.toml` by absolute path.
fn write_trace(dir: &Path, name: &str, body: &str) -> PathBuf {
    let common = traces_dir().join("common.toml");
    let text = format!(
        "# {name}\ninclude = [{:?}]\n{body}",
        common.to_string_lossy()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const ENVELOPE_OPEN: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nfp="http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd"><soapenv:Body>"#;
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";
const AUTH: &str = "<idPSP>60000000001</idPSP><idBrokerPSP>60000000001</idBrokerPSP><idChannel>60000000001_01</idChannel><password>pwdpwdpwd</password>";

fn activate(notice: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}<nfp:activatePaymentNoticeV2Request>{AUTH}<qrCode><fiscalCode>77777777777</fiscalCode><noticeNumber>{notice}</noticeNumber></qrCode><amount>10.00</amount></nfp:activatePaymentNoticeV2Request>{ENVELOPE_CLOSE}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_trace_replays_green() {
    let files = replay::collect(&[traces_dir()]).unwrap();
    assert!(files.len() >= 40, "only {} traces", files.len());
    let t0 = std::time::Instant::now();
    // For the contract check (`.ci/run`): the nodes' databases kept, their journals exported.
    let kept = std::env::var_os("PAGONODE_DUMP_DIR").map(|_| tempfile::tempdir().unwrap());
    let target = Target {
        keep_databases: kept.as_ref().map(|d| d.path().to_path_buf()),
        ..Target::default()
    };
    let reports = run(&files, &target).await;
    if let Some(dir) = &kept {
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "db") {
                common::export_journal(&pagonode::config::Database::Sqlite(path), "traces");
            }
        }
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(replay::render)
        .collect();
    assert!(
        failed.is_empty(),
        "{}\n{}",
        failed.join("\n"),
        replay::summary(&reports)
    );
    println!(
        "{} in {:.1} s",
        replay::summary(&reports),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn every_trace_says_what_it_proves() {
    for f in replay::collect(&[traces_dir()]).unwrap() {
        let t = replay::load(&f, &BTreeMap::new()).unwrap();
        assert!(
            t.description.starts_with("Proves"),
            "{}: the file must start with a comment saying what it proves",
            f.display()
        );
    }
}

#[tokio::test]
async fn broken_traces_are_reported_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write_trace(dir.path(), "not_toml", "[[step]\n"),
        write_trace(
            dir.path(),
            "two_kinds",
            "[[step]]\nwait_ms = 1\n[[step]]\nname = \"both\"\nwait_ms = 1\nreceipts = {}\n",
        ),
        write_trace(
            dir.path(),
            "bad_expect",
            &format!(
                "[[step]]\nsend = '{}'\nexpect = '<unclosed>'\n",
                activate("302000000000000001")
            ),
        ),
        write_trace(
            dir.path(),
            "no_operation",
            "[[step]]\nsend = '<a/>'\nexpect = '<b/>'\n",
        ),
        write_trace(
            dir.path(),
            "hole_in_request",
            &format!(
                "[[step]]\nsend = '{}'\nexpect = '<b/>'\n",
                activate("{{notice}}")
            ),
        ),
    ];
    let reports = run(&files, &Target::default()).await;
    let error = |name: &str| {
        let r = reports
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no report for {name}"));
        assert!(!r.passed());
        r.failure().unwrap()
    };
    assert!(
        error("not_toml").contains("not_toml.toml"),
        "{}",
        error("not_toml")
    );
    assert!(
        error("two_kinds").contains("step 2 (both): a step has exactly one of"),
        "{}",
        error("two_kinds")
    );
    assert!(
        error("bad_expect").contains("step 1 (unnamed): expect 1 is not well-formed XML"),
        "{}",
        error("bad_expect")
    );
    assert!(
        error("no_operation").contains("cannot tell its operation"),
        "{}",
        error("no_operation")
    );
    // Loads fine (an unknown name may be captured later), fails when sent.
    assert!(
        error("hole_in_request")
            .contains("step 1 activatePaymentNoticeV2: request 1: {{notice}} is used before"),
        "{}",
        error("hole_in_request")
    );
}

#[tokio::test]
async fn a_wrong_expectation_fails_with_the_first_difference() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[step]]\nsend = '{}'\nexpect = '<r:activatePaymentNoticeV2Response xmlns:r=\"http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd\"><outcome>KO</outcome><fault>{{{{*}}}}</fault></r:activatePaymentNoticeV2Response>'\n[[step.ec]]\nstation = \"77777777777_01\"\noperation = \"paGetPaymentV2\"\nreply = \"{{{{pa_get_payment_v2_ok}}}}\"\n[[step]]\nwait_ms = 1\n",
        activate("302000000000000001")
    );
    let file = write_trace(dir.path(), "wrong", &body);
    let reports = run(&[file], &Target::default()).await;
    let r = &reports[0];
    let Verdict::Fail(why) = &r.steps[0].verdict else {
        panic!("{}", replay::render(r))
    };
    assert!(why.contains("answer differs at /activatePaymentNoticeV2Response/outcome\n  expected: KO\n  actual:   OK"), "{why}");
    assert_eq!(r.steps[1].verdict, Verdict::Skipped);
    let junit = replay::junit::report(&reports);
    assert!(
        junit.contains("failures=\"1\"") && junit.contains("expected: KO"),
        "{junit}"
    );
}

#[tokio::test]
async fn an_unscripted_ec_call_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[step]]\nsend = '{}'\nexpect = '<r:activatePaymentNoticeV2Response xmlns:r=\"http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd\">{{{{*}}}}</r:activatePaymentNoticeV2Response>'\n",
        activate("302000000000000001")
    );
    let file = write_trace(dir.path(), "unscripted", &body);
    let reports = run(&[file], &Target::default()).await;
    let failure = reports[0].failure().unwrap();
    assert!(
        failure.contains("unexpected paGetPaymentV2 to station 77777777777_01"),
        "{failure}"
    );
}

/// `--node URL --ec-listen ADDR`: a node started elsewhere, whose stations point at the player.
#[tokio::test]
async fn a_trace_replays_against_a_node_at_a_url() {
    pagonode::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ec_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = replay::trace::DEFAULT_CONFIG
        .replace("{EC_URL}", &format!("http://{ec_addr}"))
        .replace("{DOWN_URL}", "http://127.0.0.1:9")
        .replace("{DB}", &dir.path().join("node.db").to_string_lossy());
    let config = pagonode::config::Config::from_toml_str(&text).unwrap();
    let node = pagonode::server::RunningNode::start(
        config,
        Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        None,
    )
    .await
    .unwrap();
    let target = Target {
        node_url: Some(node.url()),
        ec_listen: Some(ec_addr.to_string()),
        ..Target::default()
    };
    // One node for both, so they pay different notices; one EC player port, so one at a time.
    for name in ["flow_notice_v2", "flow_notice_v1"] {
        let t = replay::load(&traces_dir().join(format!("{name}.toml")), &BTreeMap::new()).unwrap();
        let r = replay::run_trace(&t, &target).await;
        assert!(r.passed(), "{}", replay::render(&r));
    }
    node.stop().await;
}

#[test]
fn the_command_line_prints_steps_summary_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .args(["replay", "--junit"])
        .arg(&junit)
        .arg(traces_dir().join("flow_notice_v2.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASS   3 outcome OK"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("1 passed, 0 failed"),
        "{stdout}"
    );
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains("<testcase name=\"flow_notice_v2\""),
        "{report}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .args(["replay", "no/such/trace.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stdout).contains("0 passed, 1 failed"));
}
