//! What operators see and set up. TLS: the node serves HTTPS from PEM files. Logs, from the real
//! binary: `--log-format json` writes one JSON object per line on
//! stderr (nothing on stdout), a request's lines carry the id its answer names in
//! `X-Request-Id`, the configuration's `[log] format` applies unless the flag says otherwise,
//! and text logs have no colour codes when stderr is not a terminal. The load generator:
//! progress while it runs, and a clear error when the node cannot be reached.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use pagonode::codec::write_envelope;
use pagonode::mock_ec::{MockEc, MockEcConfig, MockEcServer};

/// A node started from the binary, its stderr lines arriving on `lines`.
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

/// Starts `pagonode ARGS serve --config FILE`, FILE being the test configuration pointed at
/// `ec` plus `extra` TOML.
fn spawn(args: &[&str], ec: &MockEcServer, extra: &str) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    let text = CONFIG
        .replace("{EC_URL}", &ec.url())
        .replace("{DOWN_URL}", &closed_port_url())
        .replace("{DB}", dir.path().join("node.db").to_str().unwrap());
    std::fs::write(&config, format!("{text}\n{extra}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .args(args)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env_remove("PAGONODE_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    Spawned {
        child,
        lines,
        _dir: dir,
    }
}

impl Spawned {
    /// Lines until one containing `needle` (that line included).
    fn until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e}); lines:\n{}", seen.join("\n")),
            }
        }
    }

    /// Stops the node with SIGTERM (a graceful stop, which logs too): its remaining stderr
    /// lines and its whole stdout.
    fn stop(mut self) -> (Vec<String>, String) {
        // SAFETY: kill(2) on the child's pid, which has not been waited for yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        (self.lines.iter().collect(), stdout)
    }
}

async fn mock_ec() -> MockEcServer {
    pagonode::install_crypto_provider();
    MockEc::new(MockEcConfig::from_toml_str(CONFIG).unwrap())
        .start(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap()
}

fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(o)) => o,
        other => panic!("not a JSON object ({other:?}): {line}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_name_the_request() {
    let ec = mock_ec().await;
    let node = spawn(&["--log-format", "json"], &ec, "");
    let mut lines = node.until("node listening");
    let url = json(lines.last().unwrap())["url"]
        .as_str()
        .unwrap()
        .to_string();

    let body = write_envelope(&verify(&PSP1, EC, &notice("02", "00")));
    let answer = reqwest::Client::new()
        .post(&url)
        .header("SOAPAction", "verifyPaymentNotice")
        .body(body)
        .send()
        .await
        .unwrap();
    let id = answer.headers()["X-Request-Id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = answer.text().await.unwrap();
    assert!(text.contains("<outcome>OK</outcome>"), "{text}");
    lines.extend(node.until("nodeForPsp request answered"));
    let (rest, stdout) = node.stop();
    lines.extend(rest);

    assert_eq!(stdout, "", "logs go to stderr only");
    let objects: Vec<_> = lines.iter().map(|l| json(l)).collect();
    for o in &objects {
        for field in ["timestamp", "level", "message"] {
            assert!(o.contains_key(field), "no {field}: {o:?}");
        }
    }
    let of_request: Vec<&str> = objects
        .iter()
        .filter(|o| o.get("span").and_then(|s| s.get("request_id")) == Some(&id.clone().into()))
        .map(|o| o["message"].as_str().unwrap())
        .collect();
    assert!(
        of_request.contains(&"EC call answered")
            && of_request.contains(&"nodeForPsp request answered"),
        "lines of request {id}: {of_request:?}"
    );
    let answered = objects
        .iter()
        .find(|o| o["message"] == "nodeForPsp request answered")
        .unwrap();
    assert_eq!(answered["level"], "DEBUG");
    assert_eq!(answered["operation"], "verifyPaymentNotice");
    assert_eq!(answered["status"], 200);
    assert!(
        objects.iter().any(|o| o["message"] == "node stopped"),
        "{lines:?}"
    );
    ec.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_format_applies_unless_the_flag_overrides_it() {
    let ec = mock_ec().await;
    let log_json = "[log]\nformat = \"json\"\n";

    let node = spawn(&[], &ec, log_json);
    let lines = node.until("node listening");
    node.stop();
    for line in &lines {
        json(line);
    }

    let node = spawn(&["--log-format", "text"], &ec, log_json);
    let lines = node.until("node listening");
    node.stop();
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "colour codes on a pipe: {line:?}");
    }
    assert!(lines.last().unwrap().contains(" INFO "), "{lines:?}");
    ec.stop().await;
}

/// Runs `pagonode loadgen ARGS`: (success, stdout, stderr).
fn loadgen(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pagonode"))
        .arg("loadgen")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn loadgen_says_when_the_node_cannot_be_reached() {
    let url = format!("{}/node-for-psp/v1", closed_port_url());
    let started = std::time::Instant::now();
    let (ok, _, stderr) = loadgen(&["--node", &url, "--duration", "30"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot reach the node at {url}"))
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it gave up late"
    );
}

/// Failed flows fail the run (the CI load smoke relies on it), even when the others complete.
#[test]
fn loadgen_fails_when_any_flow_fails() {
    // The simulated EC refuses the first three paGetPaymentV2: three activations fail, the
    // flows after them complete.
    let config = format!(
        "{}\n[[mock_ec.script]]\nprimitive = \"paGetPaymentV2\"\naction = \"fault\"\ntimes = 3\n",
        include_str!("../pagonode.example.toml")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faulty-ec.toml");
    std::fs::write(&path, config).unwrap();
    let (ok, stdout, stderr) = loadgen(&[
        "--spawn",
        "--config",
        path.to_str().unwrap(),
        "--keep-dir",
        dir.path().to_str().unwrap(),
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "2",
    ]);
    assert!(!ok, "{stdout}{stderr}");
    assert!(stdout.contains("errors: 3"), "{stdout}");
    assert!(!stdout.contains(": 0 activate+outcome pairs"), "{stdout}");
    assert!(stderr.contains("3 flows failed"), "{stderr}");
}

#[test]
fn loadgen_reports_progress_while_it_runs() {
    let (ok, stdout, stderr) = loadgen(&[
        "--spawn",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--concurrency",
        "2",
        "--progress",
        "1",
    ]);
    assert!(ok, "{stdout}{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("loadgen "))
        .collect();
    assert!(progress.len() >= 2, "{stderr}");
    assert!(
        progress[0].contains("1 s (warm-up):") && progress[0].contains(" flows/s, 0 errors"),
        "{stderr}"
    );
    assert!(stdout.contains("errors: 0"), "{stdout}");
}

/// The report gives what a spawned node spent per flow (CPU, bytes written, store growth) and
/// its peak memory; a throughput under `--min-pairs-per-sec` fails the run, saying so.
#[test]
fn loadgen_reports_the_node_footprint_and_fails_under_its_floor() {
    let (ok, stdout, stderr) = loadgen(&[
        "--spawn",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "2",
        "--min-pairs-per-sec",
        "1000000",
    ]);
    assert!(!ok, "{stdout}{stderr}");
    assert!(stdout.contains("errors: 0"), "{stdout}");
    assert!(
        stderr.contains("below the floor of 1000000 (--min-pairs-per-sec)"),
        "{stderr}"
    );
    // Each figure is read back and must be plausible: a payment writes and stores something,
    // and a node takes at least a few MB.
    let figure = |prefix: &str, unit: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"));
        let rest = &line.trim_start()[prefix.len()..];
        rest[..rest.find(unit).unwrap_or_else(|| panic!("{line}"))]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    assert!(figure("node 0: ", "KB written per flow") > 0.5, "{stdout}");
    let memory = stdout.split("peak resident memory ").nth(1).unwrap_or("");
    let memory: f64 = memory[..memory.find(" MB").unwrap_or(0)]
        .parse()
        .unwrap_or(0.0);
    assert!(memory >= 4.0, "{stdout}");
    assert!(figure("store growth: ", "KB per payment") > 0.1, "{stdout}");
    assert!(figure("cpu node 0: ", "s total") > 0.0, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_https_from_pem_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");
    let h = Harness::start_with(|c| {
        c.node.tls_cert = Some(format!("{dir}/cert.pem").into());
        c.node.tls_key = Some(format!("{dir}/key.pem").into());
    })
    .await;
    let cert = std::fs::read(format!("{dir}/cert.pem")).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/node-for-psp/v1?wsdl",
        h.node().addr.port()
    );
    let wsdl = https.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(wsdl.contains("wsdl:definitions"), "{wsdl}");
    h.stop().await;

    // A key file without a key is refused at start, naming the file.
    let mut config = pagonode::config::Config::example();
    config.node.tls_cert = Some(format!("{dir}/cert.pem").into());
    config.node.tls_key = Some(format!("{dir}/cert.pem").into());
    let tmp = tempfile::tempdir().unwrap();
    config.node.database = pagonode::config::Database::Sqlite(tmp.path().join("node.db"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = pagonode::server::RunningNode::start(config, Some(listener), None)
        .await
        .err()
        .expect("no private key: no node")
        .to_string();
    assert!(
        err.ends_with("cert.pem: no private key in PEM form"),
        "{err}"
    );
}
