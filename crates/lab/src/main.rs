//! `flotilla-lab`: the lab harness, apart from the shipped `flotilla` binary. It runs the
//! simulated Raft demo, the MIT 6.5840 scenarios on the deterministic simulator, the
//! linearizability checker over history files, and the simulation benchmarks. Each
//! subcommand parses its arguments and calls the lab crates (scenarios, testkit, check).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod demo;
mod scenario;

#[derive(Parser)]
#[command(
    name = "flotilla-lab",
    version,
    about = "Flotilla's lab harness: simulated Raft, the 6.5840 scenarios, the linearizability checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local simulated Raft cluster under faults and show it working.
    Demo(demo::DemoArgs),
    /// Run MIT 6.5840 lab scenarios on the deterministic simulator (all, or those named).
    Scenario(scenario::ScenarioArgs),
    /// Check key/value histories (JSON Lines, as tests write them into FLOTILLA_HISTORY_DIR)
    /// for linearizability.
    Check(check::CheckArgs),
    /// Print benchmark figures of the simulated services.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Raft: scenario-suite wall time, core entries/s and messages per entry.
    Raft {
        /// Seeds per scenario for the suite timing.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
    },
    /// Key/value: operations per virtual and wall second in simulation with 1 and 10
    /// clients, and the linearizability checker's time on a 10 000-operation history.
    Kv,
    /// Sharded key/value in simulation: operations per virtual second with 1, 2 and 3 groups
    /// (uniform keys, a per-message service time on every group server).
    Shards,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Scenario(args) => scenario::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench { what } => {
            bench(what);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            // Not `eprintln!`: it panics when stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "flotilla-lab: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn bench(what: BenchWhat) {
    match what {
        BenchWhat::Raft { seeds } => flotilla_scenarios::bench::print_raft_report(seeds),
        BenchWhat::Kv => {
            flotilla_scenarios::kv_bench::print_kv_report();
            println!();
            print!("{}", flotilla_check::bench_report());
        }
        BenchWhat::Shards => flotilla_scenarios::shard_bench::print_shard_report(),
    }
}
