//! The `strata` binary.

mod authorizer;
mod background;
mod broker;
mod clock;
mod commands;
mod config;
mod connection;
mod fetch_memory;
mod handlers;
mod http;
mod in_flight_objects;
mod inter_broker;
mod limits;
mod listeners;
mod metered_store;
mod metrics;
mod partition;
mod quotas;
mod sasl;
mod server;
#[cfg(test)]
mod test_support;
mod tls;
mod transaction_coordinator;

use std::io::IsTerminal;

use clap::Parser;
use config::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// glibc's defaults let the broker's resident memory run far above its heap; fixed here
/// before any threads start:
/// - The dynamic mmap threshold rises to the largest buffer freed, after which big flush
///   and segment buffers come from the heap and stay resident after use. Fixed thresholds
///   instead: buffers of 8 MiB and more (flush objects, segments) are mapped and handed back
///   when freed; smaller ones (fetch responses, request frames) reuse heap memory, trimmed
///   only past 64 MiB free, so they do not page-fault afresh on every request.
/// - Each thread that allocates may get an arena of its own (up to 8 per core), and each
///   arena keeps up to the trim threshold free. Under full acks=all load, two arenas held
///   peak RSS at 339–425 MiB where glibc's default reached 403–559 MiB (bench/RESULTS.md).
fn bound_allocator_memory() {
    const MMAP_THRESHOLD: libc::c_int = 8 * 1024 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 64 * 1024 * 1024;
    const ARENA_MAX: libc::c_int = 2;
    // SAFETY: mallopt only sets allocator parameters; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

fn main() -> std::process::ExitCode {
    bound_allocator_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
        .block_on(run())
}

async fn run() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        // Colour only on a terminal: escape codes make logs in files and collectors unreadable.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => commands::standalone::run(args).await,
        Command::Gateway(args) => commands::gateway::run(args).await,
        Command::Coordinator(args) => commands::coordinator::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
