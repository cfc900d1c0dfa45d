//! The `pagonode` command: the node, the simulated creditor entity and the integrators' tools.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pagonode", version, about = "An open-source pagoPA payment node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check SOAP messages (files, or `-` for stdin) against the nodeForPsp/paForNode contract.
    Validate {
        /// Envelope files to check; `-` reads one from stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
    }
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
            Ok(bytes) => pagonode::codec::read_any(&bytes).map(|_| ()).map_err(|v| v.to_string()),
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
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
