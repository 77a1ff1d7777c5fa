//! The `uno` command: wiring only. Each subcommand loads configuration,
//! builds the parts from the library crates and runs them.

mod config;
mod serve;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(cli.config.as_deref(), args),
        Command::Config => config::print(cli.config.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
