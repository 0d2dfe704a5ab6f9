//! The `strata` binary.

mod broker;
mod clock;
mod compaction;
mod config;
mod connection;
mod flusher;
mod garbage_collector;
mod group_coordinator;
mod handlers;
mod http;
mod metered_store;
mod metrics;
mod partition;
mod retention;
mod standalone;
#[cfg(test)]
mod test_support;

use clap::Parser;
use config::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => standalone::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
