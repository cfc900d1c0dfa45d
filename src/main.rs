//! The `pagonode` command: the node, the simulated creditor entity and the integrators' tools.
//! Without a subcommand it runs the demo: a node with the example configuration, an embedded
//! SQLite database and the simulated EC.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pagonode::config::Config;
use pagonode::mock_ec::{MockEc, MockEcConfig};
use pagonode::server::RunningNode;

#[derive(Parser)]
#[command(
    name = "pagonode",
    version,
    about = "An open-source pagoPA payment node (Nodo dei Pagamenti)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: a node with the example configuration and the simulated EC (the default).
    Demo {
        /// The database file (created if missing).
        #[arg(long, default_value = "pagonode-demo.db")]
        database: PathBuf,
    },
    /// Run the node.
    Serve {
        /// The configuration file (default: the example configuration).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the simulated creditor entity (the `[mock_ec]` table of the configuration).
    MockEc {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Drive load against a node (or a spawned node + simulated EC) and report throughput and latency.
    Loadgen(pagonode::loadgen::LoadArgs),
    /// Replay traces (PSP/EC conversations, `docs/traces.md`) against a node; fails unless all pass.
    Replay(pagonode::replay::ReplayArgs),
    /// Read the event journal from a node's database (read-only): rows, a payment's story, a trace.
    Journal(Box<pagonode::journal::cli::JournalArgs>),
    /// Receipt delivery on a running node (admin listener): list FAILED copies, re-send.
    Receipts(pagonode::delivery::cli::ReceiptsArgs),
    /// Check SOAP messages (files, or `-` for stdin) against the nodeForPsp/paForNode contract.
    Validate {
        /// Envelope files to check; `-` reads one from stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string()),
        None => Ok(Config::example()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Validate { files }) => return validate(files),
        Some(Command::Replay(args)) => return pagonode::replay::main(args),
        Some(Command::Journal(args)) => {
            return pagonode::journal::cli::main(args, pagonode::replay::export::export);
        }
        _ => {}
    }
    init_logging();
    pagonode::failpoints::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Demo {
            database: PathBuf::from("pagonode-demo.db"),
        }) {
            Command::Demo { database } => demo(database).await,
            Command::Serve { config } => serve(load_config(config.as_ref())?).await,
            Command::MockEc { config } => mock_ec(config.as_ref()).await,
            Command::Loadgen(args) => pagonode::loadgen::run(args).await,
            Command::Receipts(args) => pagonode::delivery::cli::run(args).await,
            Command::Validate { .. } | Command::Replay(_) | Command::Journal(_) => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagonode: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let node = RunningNode::start(config, None, None).await?;
    tracing::info!(url = %node.url(), admin = ?node.admin_url(), "node listening");
    node.run_until_signal().await;
    Ok(())
}

async fn mock_ec(path: Option<&PathBuf>) -> Result<(), String> {
    let cfg = match path {
        Some(p) => MockEcConfig::from_file(p)?,
        None => MockEcConfig::from_toml_str(pagonode::config::EXAMPLE)?,
    };
    pagonode::mock_ec::run(cfg).await.map_err(|e| e.to_string())
}

/// The demo: the simulated EC and a node with the example configuration, in one process.
async fn demo(database: PathBuf) -> Result<(), String> {
    let mut config = Config::example();
    config.node.database = database;
    let mock_cfg = MockEcConfig::from_toml_str(pagonode::config::EXAMPLE)?;
    let mock_addr = mock_cfg.listen.clone();
    let listener = std::net::TcpListener::bind(&mock_addr)
        .map_err(|e| format!("cannot listen on {mock_addr}: {e}"))?;
    let ec = MockEc::new(mock_cfg)
        .start(listener)
        .await
        .map_err(|e| e.to_string())?;
    let node = RunningNode::start(config.clone(), None, None).await?;
    let channel = &config.channel[0];
    println!();
    println!("pagonode demo is running.");
    println!(
        "  nodeForPsp:      {}   (WSDL: {}?wsdl)",
        node.url(),
        node.url()
    );
    if let Some(admin) = node.admin_url() {
        println!("  admin:           {admin}/admin/journal");
    }
    println!(
        "  simulated EC:    {}   (receipts: {}/receipts)",
        ec.url(),
        ec.url()
    );
    println!("  database:        {}", config.node.database.display());
    println!(
        "  PSP credentials: idPSP={} idBrokerPSP={} idChannel={} password={}",
        channel.psps[0], channel.broker, channel.id, channel.password
    );
    println!("  try: README.md, \"A first payment\". Stop with Ctrl-C.");
    println!();
    node.run_until_signal().await;
    ec.stop().await;
    Ok(())
}

/// `pagonode validate`: one line per message and a summary; success only if all are valid.
fn validate(files: &[String]) -> ExitCode {
    let mut failed = 0;
    for name in files {
        let data = if name == "-" {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).map(|_| v)
        } else {
            std::fs::read(name)
        };
        let verdict = match data {
            Err(e) => Err(format!("cannot read: {e}")),
            Ok(bytes) => pagonode::codec::read_any(&bytes)
                .map(|_| ())
                .map_err(|v| v.to_string()),
        };
        match verdict {
            Ok(()) => println!("VALID   {name}"),
            Err(reason) => {
                failed += 1;
                println!("INVALID {name}  {reason}");
            }
        }
    }
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
