//! The `uno` command: wiring only. Each subcommand loads configuration,
//! builds the parts from the library crates and runs them.

mod cli;
mod config;
mod database;
mod delete;
mod export;
mod import;
mod keys;
mod migrate;
mod retention;
mod route;
mod serve;
mod snapshot;
mod table;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An OpenAI-compatible LLM proxy that learns from its users' feedback.
#[derive(Debug, Parser)]
#[command(name = "uno", version, about, long_about = None)]
struct Cli {
    /// TOML config file (every key is documented in config/uno.example.toml).
    #[arg(long, short, global = true, env = "UNO_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API, forwarding to the configured upstream.
    Serve(serve::ServeArgs),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Apply pending database migrations to database.url (DATABASE_URL).
    Migrate,
    /// Create, list and revoke client API keys.
    Keys(keys::KeysArgs),
    /// Load existing chat logs (OpenAI chat or MemoryBench JSONL) as
    /// interactions and feedback to learn from.
    Import(import::ImportArgs),
    /// Write rated interactions as SFT or DPO training data (JSONL).
    Export(export::ExportArgs),
    /// Delete an end user's data, or a whole tenant's.
    Delete(delete::DeleteArgs),
    /// Remove data older than the retention policy, now.
    Retention(retention::RetentionArgs),
    /// List, inspect, compare, activate and roll back published snapshots.
    Snapshot(snapshot::SnapshotArgs),
    /// Explain how a tenant's active snapshot would serve a text: the
    /// routing text, each cluster's distance and threshold, the path, the block.
    Route(route::RouteArgs),
    /// Run the learning worker: logged feedback to published experience.
    Worker(worker::WorkerArgs),
}

/// mimalloc instead of glibc's malloc: the request path allocates per
/// request on every worker thread and the log writer frees on its own,
/// which glibc's arenas handle poorly (see README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(cli.config.as_deref(), args),
        Command::Config => config::print(cli.config.as_deref()),
        Command::Migrate => migrate::run(cli.config.as_deref()),
        Command::Keys(args) => keys::run(cli.config.as_deref(), args),
        Command::Import(args) => import::run(cli.config.as_deref(), args),
        Command::Export(args) => export::run(cli.config.as_deref(), args),
        Command::Delete(args) => delete::run(cli.config.as_deref(), args),
        Command::Retention(args) => retention::run(cli.config.as_deref(), args),
        Command::Snapshot(args) => snapshot::run(cli.config.as_deref(), args),
        Command::Route(args) => route::run(cli.config.as_deref(), args),
        Command::Worker(args) => worker::run(cli.config.as_deref(), args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
