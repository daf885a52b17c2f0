//! The `revkv` command: inspect, maintain and measure a revkv database.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "revkv",
    version,
    about = "Inspect, maintain and measure a revkv database"
)]
struct Cli {
    /// The database file.
    #[arg(long, global = true, default_value = "revkv.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one benchmark phase of the etcd peer's workload and prints one
    /// JSON line: load N VALUE_SIZE, open, range, first, paged LIMIT,
    /// get M, txn M, churn VALUE_SIZE.
    Bench {
        /// The phase.
        phase: String,
        /// The phase's arguments.
        args: Vec<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench { phase, args } => bench::run(&cli.db, &phase, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
