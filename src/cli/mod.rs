//! The command line: `runboard <subcommand>`.

mod bench;
mod events;
mod format;
#[cfg(feature = "gui")]
mod gui;
mod inspect;
mod launch;
mod logging;
mod models;
mod output;
mod record;
mod remote;
mod replay;
mod seconds;
mod serve;
mod tail;
mod tail_worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A live console for LLM generation runs.
#[derive(Debug, Parser)]
#[command(name = "runboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How logs are written to stderr: text for people, json for log collectors (one object
    /// per line); what is logged is set with `RUST_LOG`
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    /// Trust this certificate authority (PEM) for `https://` servers besides the system's:
    /// a private CA, or a server's self-signed certificate
    #[arg(long, global = true, env = "RUNBOARD_CA_CERT", value_name = "PEM")]
    ca_cert: Option<std::path::PathBuf>,
    /// With no subcommand: the console window
    #[cfg(feature = "gui")]
    #[command(flatten)]
    gui: gui::GuiArgs,
}

// Parsed once at start; boxing a variant would only add noise at the match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference runs-API server (synthetic runs, `SQLite` store)
    Serve(serve::ServeArgs),
    /// Submit N runs of a task, staggered, and print their ids
    Launch(launch::LaunchArgs),
    /// List runs, newest first
    Runs(inspect::RunsArgs),
    /// Show one run with its whole event chain
    Show(inspect::ShowArgs),
    /// Follow a run: its narration, then a final status line
    Tail(tail::TailArgs),
    /// Follow any Server-Sent Events URL and print one JSON line per event
    Events(events::EventsArgs),
    /// List the server's models: a table for people, or the data with --json
    Models(models::ModelsArgs),
    /// Start a benchmark or follow one, with a progress bar
    Bench(bench::BenchArgs),
    /// Record a server's runs into a file that `--replay` plays back
    Record(record::RecordArgs),
}

/// Parses the command line, runs the subcommand and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    if let Some(path) = &cli.ca_cert {
        let trusted = std::fs::read(path)
            .map_err(|error| error.to_string())
            .and_then(|pem| runboard_sse::http::trust_ca_pem(&pem));
        if let Err(error) = trusted {
            eprintln!("runboard: error: --ca-cert {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    let Some(command) = cli.command else {
        return without_subcommand(cli);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runboard-io")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runboard: error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve::run(args).await,
            Command::Launch(args) => launch::run(args).await,
            Command::Runs(args) => inspect::runs(args).await,
            Command::Show(args) => inspect::show(args).await,
            Command::Tail(args) if args.worker.is_some() => tail_worker::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Events(args) => events::run(args).await,
            Command::Models(args) => models::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Record(args) => record::run(args).await,
        }
    });
    // Do not wait for background tasks (open streams, idle connections) on the way out.
    runtime.shutdown_background();
    code
}

/// With no subcommand: the console window, which must own the main thread and so runs outside
/// any async runtime.
#[cfg(feature = "gui")]
fn without_subcommand(cli: Cli) -> ExitCode {
    gui::run(cli.gui)
}

/// With no subcommand in a headless build: there is no window to open, so say what there is.
#[cfg(not(feature = "gui"))]
fn without_subcommand(_cli: Cli) -> ExitCode {
    eprintln!(
        "runboard: this build has no console window (built without the `gui` feature); \
         run `runboard serve` for the server, or `runboard --help` for the commands"
    );
    ExitCode::from(2)
}
