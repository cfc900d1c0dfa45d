//! `pagonode journal` on the databases of replayed traces: rows filtered and printed, a payment's
//! classified story, the database left untouched, and `journal export` producing a trace that
//! replays green on a fresh node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pagonode::replay::{self, Target};

const EC: &str = "77777777777";
const NOTICE: &str = "302000000000000001";

fn trace(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(format!("{name}.toml"))
}

/// Replays traces, keeping each node's database in `dir` (as `<trace>.db`).
async fn replay_keeping(dir: &Path, names: &[&str]) {
    let files: Vec<PathBuf> = names.iter().map(|n| trace(n)).collect();
    let target = Target {
        keep_databases: Some(dir.to_path_buf()),
        ..Target::default()
    };
    let reports = replay::run_files(
        &files,
        &BTreeMap::new(),
        &target,
        replay::DEFAULT_JOBS,
        |_| {},
    )
    .await;
    for r in &reports {
        assert!(r.passed(), "{}", replay::render(r));
    }
}

/// Runs `pagonode journal ARGS`: (success, stdout, stderr).
fn journal(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .arg("journal")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn db(dir: &Path, name: &str) -> String {
    dir.join(format!("{name}.db"))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_filtered_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    replay_keeping(dir.path(), &["flow_notice_v2"]).await;
    let db = db(dir.path(), "flow_notice_v2");
    let (ok, all, err) = journal(&["--database", &db, "--notice", NOTICE]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("OUTCOME"),
        "a header names the columns: {all}"
    );
    let times: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(times.is_sorted(), "rows in time order: {all}");
    // verify, activate, outcome: 2 rows each with the PSP, 2 with the EC (receipt included),
    // plus the state changes.
    assert!(lines.len() >= 16, "{all}");
    let receipt_req = lines
        .iter()
        .find(|l| l.contains("paSendRTV2") && l.contains(" REQ "))
        .expect(&all);
    for field in [
        "paForNode",
        NOTICE,
        "60000000001",
        "77777777777_01",
        "INVIATA",
    ] {
        assert!(
            receipt_req.contains(field),
            "{field} missing in {receipt_req}"
        );
    }
    let token = receipt_req.split_whitespace().nth(5).unwrap().to_string();
    assert_eq!(token.len(), 32, "{receipt_req}");

    let (_, sent, _) = journal(&[
        "query",
        "--database",
        &db,
        "--primitive",
        "paSendRTV2",
        "--payload",
    ]);
    let rows: Vec<&str> = sent
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(rows.len(), 2, "{sent}");
    // (The RESP's outcome is not checked: on an overloaded machine the node may time out an
    // answer the EC gave, which the replayer already counted.)
    assert!(
        rows[0].contains(" REQ ") && rows[1].contains(" RESP "),
        "{sent}"
    );
    assert!(
        sent.contains(&format!("<receiptId>{token}</receiptId>")),
        "--payload prints the messages: {sent}"
    );

    let (_, by_token, _) = journal(&["--database", &db, "--token", &token, "--json"]);
    for line in by_token.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["codiceContestoPagamento"], token.as_str());
        assert!(row["payload"].is_null(), "no messages without --payload");
        assert!(row["dataOraEvento"].as_str().unwrap().ends_with('Z'));
    }
    let (_, limited, _) = journal(&[
        "--database",
        &db,
        "--ec",
        EC,
        "--psp",
        "60000000001",
        "--outcome",
        "OK",
        "--limit",
        "3",
    ]);
    assert_eq!(
        limited.lines().count(),
        1 + 3,
        "a header and 3 rows: {limited}"
    );
    let (_, future, _) = journal(&["--database", &db, "--from", "2999-01-01T00:00:00Z"]);
    assert!(future.is_empty(), "{future}");
    let (_, past, _) = journal(&["--database", &db, "--to", "1000"]);
    assert!(past.is_empty(), "{past}");

    // --config: the database its node section names.
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, format!("[node]\ndatabase = {:?}\n", db)).unwrap();
    let (ok, via_config, err) = journal(&["--config", &cfg.to_string_lossy(), "--notice", NOTICE]);
    assert!(ok, "{err}");
    assert_eq!(via_config, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_classifies_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    replay_keeping(
        dir.path(),
        &[
            "expiry_reactivation",
            "fault_stazione_timeout",
            "flow_outcome_ko",
            "expiry_token_scaduto_ko",
        ],
    )
    .await;
    let story = |name: &str| {
        let (ok, out, err) = journal(&["story", "--database", &db(dir.path(), name), EC, NOTICE]);
        assert!(ok, "{err}");
        let classes: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("  #"))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect();
        (classes, out)
    };
    // Expired without an accepted outcome (the late OK was refused as a duplicate), then paid.
    let (classes, out) = story("expiry_reactivation");
    assert_eq!(classes, ["TO_VERIFY", "POSITIVE"], "{out}");
    assert!(
        out.contains("<faultCode>PPT_PAGAMENTO_DUPLICATO</faultCode>"),
        "the messages are in the story: {out}"
    );
    assert!(out.contains("EXPIRED"), "{out}");
    // A refused activation, then one waiting for its outcome.
    let (classes, out) = story("fault_stazione_timeout");
    assert_eq!(classes, ["NEGATIVE", "IN_PROGRESS"], "{out}");
    assert!(
        out.contains("activation refused: PPT_STAZIONE_INT_PA_TIMEOUT"),
        "{out}"
    );
    // Outcome KO on an expired token (accepted: the notice was free), then a new activation.
    let (classes, out) = story("expiry_token_scaduto_ko");
    assert_eq!(classes, ["NEGATIVE", "IN_PROGRESS"], "{out}");
    // Outcome KO, then an OK for the same token ("Esito discorde": the PSP may have taken the
    // money), then a new activation paid.
    let (classes, out) = story("flow_outcome_ko");
    assert_eq!(classes, ["TO_VERIFY", "POSITIVE"], "{out}");

    let (_, json, _) = journal(&[
        "story",
        "--json",
        "--database",
        &db(dir.path(), "expiry_token_scaduto_ko"),
        EC,
        NOTICE,
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["classification"], "NEGATIVE");
    assert!(attempts[1]["journalIds"].as_array().unwrap().len() > 4);
    assert!(!v["journal"].as_array().unwrap().is_empty());
    // The status histories, read from the database too: the late KO's 3 payment rows, the
    // notice freed by the expiry and taken by the new activation.
    let statuses = |h: &serde_json::Value| -> Vec<String> {
        h.as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_string())
            .collect()
    };
    let h = &v["statusHistory"];
    assert_eq!(
        statuses(&h["POSITION_STATUS"]),
        ["PAYING", "INSERTED", "PAYING"]
    );
    let payments = h["POSITION_PAYMENT_STATUS"].as_array().unwrap();
    assert_eq!(payments[0]["paymentToken"], attempts[0]["paymentToken"]);
    assert_eq!(
        statuses(&payments[0]["history"]),
        ["PAYING", "CANCELLED", "FAILED"]
    );
    assert_eq!(statuses(&payments[1]["history"]), ["PAYING"]);
    let (_, text) = story("expiry_token_scaduto_ko");
    assert!(
        text.contains("status history:") && text.contains("POSITION_PAYMENT_STATUS"),
        "{text}"
    );
}

/// Every file under a directory (the journal segments are in a directory of their own) with
/// its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for p in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            files.extend(
                snapshot(&p)
                    .into_iter()
                    .map(|(k, v)| (format!("{name}/{k}"), v)),
            );
        } else {
            files.insert(name, std::fs::read(&p).unwrap());
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_leaves_the_database_untouched() {
    let dir = tempfile::tempdir().unwrap();
    replay_keeping(dir.path(), &["flow_notice_v2"]).await;
    let before = snapshot(dir.path());
    let db = db(dir.path(), "flow_notice_v2");
    assert!(journal(&["--database", &db]).0);
    assert!(journal(&["story", "--database", &db, EC, NOTICE]).0);
    assert!(
        journal(&[
            "export",
            "--database",
            &db,
            "--payment",
            &format!("{EC}/{NOTICE}")
        ])
        .0
    );
    assert!(
        before == snapshot(dir.path()),
        "files created or changed: {:?} → {:?}",
        before.keys(),
        snapshot(dir.path()).keys()
    );
}

#[test]
fn errors_are_messages() {
    let (ok, _, err) = journal(&["--database", "/no/such/node.db"]);
    assert!(
        !ok && err.contains("/no/such/node.db: no such database"),
        "{err}"
    );
    let (ok, _, err) = journal(&[
        "export",
        "--database",
        "/no/such/node.db",
        "--payment",
        "77777777777",
    ]);
    assert!(
        !ok && err.contains("expected <fiscal code>/<notice number>"),
        "{err}"
    );
    let (ok, _, err) = journal(&["story", "77777777777", NOTICE]);
    assert!(
        !ok && err.contains("--database FILE|URL or --config FILE"),
        "{err}"
    );
    let (ok, _, err) = journal(&["--database", "/no/such/node.db", "--from", "yesterday"]);
    assert!(!ok && !err.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exported_traces_replay_green_on_a_fresh_node() {
    // A notice flow, a spontaneous one (the EC's demand exchange is part of the payment), a
    // receipt retry, a fan-out, an idempotent replay, a late outcome (exported with its wait),
    // and refused activations (an EC silent or too slow).
    let names = [
        "flow_notice_v2",
        "flow_spontaneous",
        "retry_receipt_garbage",
        "fanout_multi_beneficiary",
        "idempotency_replay",
        "expiry_token_scaduto",
        "fault_stazione_timeout",
    ];
    let recorded = tempfile::tempdir().unwrap();
    replay_keeping(recorded.path(), &names).await;
    let exported = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in names {
        let payment = if name == "flow_spontaneous" {
            "88888888888/302000000000000099".to_string()
        } else {
            format!("{EC}/{NOTICE}")
        };
        let (ok, text, err) = journal(&[
            "export",
            "--database",
            &db(recorded.path(), name),
            "--payment",
            &payment,
        ]);
        assert!(ok, "{name}: {err}");
        assert!(
            text.contains("<paymentToken>{{token}}</paymentToken>")
                || name == "fault_stazione_timeout",
            "{name}: the token is captured\n{text}"
        );
        let file = exported.path().join(format!("{name}.toml"));
        std::fs::write(&file, &text).unwrap();
        files.push(file);
    }
    let reports = replay::run_files(
        &files,
        &BTreeMap::new(),
        &Target::default(),
        replay::DEFAULT_JOBS,
        |_| {},
    )
    .await;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "{}\n{}",
                replay::render(r),
                std::fs::read_to_string(&r.path).unwrap()
            )
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
