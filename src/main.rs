//! The `pagonode` command: the node, the simulated creditor entity and the integrators' tools.
//! Without a subcommand it runs the demo: a node with the example configuration, an embedded
//! SQLite database and the simulated EC.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pagonode::config::Config;
use pagonode::logging::{LogFormat, LogSection};
use pagonode::mock_ec::{MockEc, MockEcConfig};
use pagonode::server::RunningNode;

#[derive(Parser)]
#[command(
    name = "pagonode",
    version,
    about = "An open-source pagoPA payment node (Nodo dei Pagamenti)"
)]
struct Cli {
    /// Log lines on stderr as `text` or `json` (one object per line); default: the
    /// configuration's `[log] format`, else text.
    #[arg(long, global = true, value_enum, env = "PAGONODE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
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
        /// Start from nothing: delete the database and its journal first.
        #[arg(long)]
        fresh: bool,
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
    /// Drive load against a node (or a spawned node + simulated EC) and report throughput and
    /// latency; fails if any flow failed.
    Loadgen(pagonode::loadgen::LoadArgs),
    /// Replay traces (PSP/EC conversations, `docs/traces.md`) against a node; fails unless all pass.
    Replay(pagonode::replay::ReplayArgs),
    /// Read the event journal from a node's database (read-only): rows, a payment's story, a trace.
    Journal(Box<pagonode::cli::journal::JournalArgs>),
    /// Receipt delivery on a running node (admin listener): list FAILED copies, re-send.
    Receipts(pagonode::delivery::cli::ReceiptsArgs),
    /// Check SOAP messages (files, or `-` for stdin) against the nodeForPsp/paForNode contract.
    Validate {
        /// Envelope files to check; `-` reads one from stdin.
        #[arg(required = true)]
        files: Vec<String>,
        /// Deepest element nesting accepted (the node's `max_xml_depth`).
        #[arg(long, default_value_t = pagonode::codec::Limits::DEFAULT.max_depth)]
        max_depth: usize,
    },
}

/// Why a command failed (printed as `pagonode: …`).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Config(#[from] pagonode::config::ConfigError),
    #[error(transparent)]
    MockConfig(#[from] pagonode::mock_ec::MockConfigError),
    #[error(transparent)]
    Start(#[from] pagonode::server::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot delete {}: {source}", path.display())]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Receipts(#[from] pagonode::delivery::cli::ReceiptsError),
    /// The load generator's own report.
    #[error("{0}")]
    Tool(String),
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Ok(Config::from_file(p)?),
        None => Ok(Config::example()),
    }
}

// glibc's malloc took about a tenth of the node's CPU under load (perf); mimalloc keeps
// per-thread heaps for the many short-lived buffers of a request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Validate { files, max_depth }) => {
            return validate(
                files,
                pagonode::codec::Limits {
                    max_depth: *max_depth,
                },
            );
        }
        Some(Command::Replay(args)) => return pagonode::replay::main(args),
        Some(Command::Journal(args)) => {
            return pagonode::cli::journal::main(args, pagonode::replay::export::export);
        }
        _ => {}
    }
    let config_file = match &cli.command {
        Some(Command::Serve { config } | Command::MockEc { config }) => config.as_ref(),
        _ => None,
    };
    pagonode::logging::init(
        cli.log_format,
        &config_file
            .map(|p| LogSection::from_file(p))
            .unwrap_or_default(),
    );
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
            fresh: false,
        }) {
            Command::Demo { database, fresh } => demo(database, fresh).await,
            Command::Serve { config } => {
                let mut config = load_config(config.as_ref())?;
                config.apply_env();
                serve(config).await
            }
            Command::MockEc { config } => mock_ec(config.as_ref()).await,
            Command::Loadgen(args) => pagonode::loadgen::run(args).await.map_err(Failure::Tool),
            Command::Receipts(args) => Ok(pagonode::delivery::cli::run(args).await?),
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

async fn serve(config: Config) -> Result<(), Failure> {
    let signal = pagonode::server::shutdown_signal();
    let node = RunningNode::start(config, None, None).await?;
    match node.admin_url() {
        Some(admin) => tracing::info!(url = %node.url(), %admin, "node listening"),
        None => tracing::info!(url = %node.url(), "node listening (admin listener off)"),
    }
    node.run_until(signal).await;
    Ok(())
}

async fn mock_ec(path: Option<&PathBuf>) -> Result<(), Failure> {
    let cfg = match path {
        Some(p) => MockEcConfig::from_file(p)?,
        None => MockEcConfig::from_toml_str(pagonode::config::EXAMPLE)?,
    };
    Ok(pagonode::mock_ec::run(cfg).await?)
}

/// The demo: the simulated EC and a node with the example configuration, in one process.
async fn demo(database: PathBuf, fresh: bool) -> Result<(), Failure> {
    let mut config = Config::example();
    config.node.database = pagonode::config::Database::Sqlite(database.clone());
    let mock_cfg = MockEcConfig::from_toml_str(pagonode::config::EXAMPLE)?;
    let mock_addr = mock_cfg.listen.clone();
    let listener = std::net::TcpListener::bind(&mock_addr).map_err(|source| Failure::Listen {
        addr: mock_addr.clone(),
        source,
    })?;
    // Only now: a demo already running holds the port above, and keeps its database.
    if fresh {
        remove_database(&database)?;
    }
    let ec = MockEc::new(mock_cfg).start(listener).await?;
    let signal = pagonode::server::shutdown_signal();
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
    println!("  database:        {}", config.node.database);
    println!(
        "  PSP credentials: idPSP={} idBrokerPSP={} idChannel={} password={}",
        channel.psps[0], channel.broker, channel.id, channel.password
    );
    println!("  try: README.md, \"A first payment\". Stop with Ctrl-C.");
    println!();
    node.run_until(signal).await;
    ec.stop().await;
    Ok(())
}

/// Deletes a database, its WAL files and its journal directory (`<stem>.journal/`), whichever
/// exist.
fn remove_database(database: &std::path::Path) -> Result<(), Failure> {
    let with_suffix = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let files = [
        database.to_path_buf(),
        with_suffix("-wal"),
        with_suffix("-shm"),
    ];
    let journal = pagonode::journal::writer::journal_dir(database);
    for file in &files {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Failure::Delete {
                    path: file.clone(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    match std::fs::remove_dir_all(&journal) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Failure::Delete {
            path: journal,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// `pagonode validate`: one line per message and a summary; success only if all are valid.
fn validate(files: &[String], limits: pagonode::codec::Limits) -> ExitCode {
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
            Ok(bytes) => pagonode::codec::read_any(&bytes, limits)
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
