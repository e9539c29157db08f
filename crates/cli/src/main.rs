//! `flotilla`: the production binary, thin subcommands that parse arguments and call the
//! library crates. The lab harness (simulated demo, lab scenarios, history checker, simulation
//! benchmarks) is the separate `flotilla-lab` binary (crates/lab), so this one carries none of
//! the lab crates.
//!
//! Modules use each other in one direction only, downwards here (tests/module_order.rs
//! checks that no circle forms):
//!
//! ```text
//! main
//! ctl: mod -> status -> shards; status, members -> group     mr: mod -> bench -> local
//! up, router, server
//! layout, auth, process, storage, units                       (use no module of this crate)
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod auth;
mod ctl;
mod layout;
mod mr;
mod process;
mod router;
mod server;
mod storage;
mod units;
mod up;
mod words;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Flotilla: a distributed key/value stack built on Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local sharded KV cluster (a shard controller of 3 replicas, two shard groups of
    /// 3 (`--groups`), joined) and a Redis-protocol router on port 6380, as separate
    /// processes, with data under ./flotilla-data (`--single`: one replicated group instead);
    /// Ctrl-C stops it.
    Up(up::UpArgs),
    /// Run one replica of the replicated KV service.
    Server(server::ServerArgs),
    /// Serve the Redis protocol, forwarding each command to the replicated KV service.
    Router(router::RouterArgs),
    /// Operate a running cluster.
    Ctl {
        #[command(subcommand)]
        command: ctl::CtlCommand,
    },
    /// MapReduce: run jobs, coordinators and workers; generate corpora; benchmark.
    Mr {
        #[command(subcommand)]
        command: mr::MrCommand,
    },
}

fn main() -> ExitCode {
    // Logs go to stderr; RUST_LOG selects them (e.g. RUST_LOG=flotilla_mr=info). Default: warnings.
    // A log that cannot be written (a replica's stderr is a file on its data disk, which may
    // be full) loses the line: tracing must not report that with `eprintln!`, which panics.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::up(args),
        Command::Server(args) => server::server(args),
        Command::Router(args) => router::router(args),
        Command::Ctl { command } => ctl::ctl(command),
        Command::Mr { command } => mr::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            // Not `eprintln!`: it panics when stderr cannot be written (a full disk).
            let _ = writeln!(std::io::stderr(), "flotilla: {msg}");
            ExitCode::FAILURE
        }
    }
}
