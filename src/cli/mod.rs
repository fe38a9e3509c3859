//! The command line: `runboard <subcommand>`.

mod events;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A live console for LLM generation runs.
#[derive(Debug, Parser)]
#[command(name = "runboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow any Server-Sent Events URL and print one JSON line per event
    Events(events::EventsArgs),
}

/// Parses the command line, runs the subcommand and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runboard: error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Events(args) => runtime.block_on(events::run(args)),
    }
}
