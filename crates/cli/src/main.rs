//! `flotilla`: one binary, thin subcommands that parse arguments and call the library crates.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster;
mod demo;
mod members;
mod mr;
mod mr_bench;
mod router;
mod shards;
mod storage;
mod units;
mod up;

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
    Server(cluster::ServerArgs),
    /// Serve the Redis protocol, forwarding each command to the replicated KV service.
    Router(router::RouterArgs),
    /// Operate a running cluster.
    Ctl {
        #[command(subcommand)]
        command: cluster::CtlCommand,
    },
    /// Run a local simulated Raft cluster under faults and show it working.
    Demo(demo::DemoArgs),
    /// Run MIT 6.5840 lab scenarios on the deterministic simulator (all, or those named).
    Scenario {
        /// Scenario names (e.g. TestFigure8Unreliable3C, TestUnreliable2, TestSnapshotRPC4B); none
        /// runs them all. `list` lists them.
        names: Vec<String>,
        /// Run exactly this seed (replays a failure).
        #[arg(long)]
        seed: Option<u64>,
        /// Run this many consecutive seeds, from 1.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
    },
    /// Check key/value histories (JSON Lines, as tests write them into FLOTILLA_HISTORY_DIR)
    /// for linearizability.
    Check {
        /// History files, one operation a line.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Give up on a file after this many seconds (the verdict is then "unknown").
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// MapReduce: run jobs, coordinators and workers; generate corpora; benchmark.
    Mr {
        #[command(subcommand)]
        command: mr::MrCommand,
    },
    /// Print benchmark figures.
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
        Command::Demo(args) => demo::run(args),
        Command::Up(args) => up::up(args),
        Command::Server(args) => cluster::server(args),
        Command::Router(args) => router::router(args),
        Command::Ctl { command } => cluster::ctl(command),
        Command::Mr { command } => mr::run(command),
        Command::Scenario { names, seed, seeds } => run_scenarios(&names, seed, seeds),
        Command::Check { files, timeout } => check_histories(&files, timeout),
        Command::Bench {
            what: BenchWhat::Raft { seeds },
        } => {
            flotilla_scenarios::bench::print_raft_report(seeds);
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Kv,
        } => {
            flotilla_scenarios::kv_bench::print_kv_report();
            println!();
            print!("{}", flotilla_check::bench_report());
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Shards,
        } => {
            flotilla_scenarios::shard_bench::print_shard_report();
            Ok(())
        }
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

/// Checks each history file; fails if any is not linearizable or cannot be read.
fn check_histories(files: &[std::path::PathBuf], timeout: u64) -> Result<(), String> {
    use flotilla_check::CheckResult;
    let mut bad = 0;
    for f in files {
        let history = flotilla_check::read_jsonl(f)
            .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let t0 = std::time::Instant::now();
        let verdict =
            flotilla_check::check_kv(&history, Some(std::time::Duration::from_secs(timeout)));
        let took = t0.elapsed().as_secs_f64();
        let ops = history.len();
        match verdict {
            CheckResult::Ok => println!(
                "{}: linearizable ({ops} operations, {took:.3} s)",
                f.display()
            ),
            CheckResult::Unknown => println!(
                "{}: unknown: no verdict within {timeout} s ({ops} operations)",
                f.display()
            ),
            illegal => {
                bad += 1;
                println!(
                    "{}: NOT linearizable ({ops} operations)\n{illegal}",
                    f.display()
                );
            }
        }
    }
    if bad > 0 {
        Err(format!(
            "{bad} of {} histories are not linearizable",
            files.len()
        ))
    } else {
        Ok(())
    }
}

fn run_scenarios(names: &[String], seed: Option<u64>, seeds: u64) -> Result<(), String> {
    let scenarios: Vec<_> = flotilla_scenarios::all_scenarios().collect();
    if names.iter().any(|n| n == "list") {
        for (name, _) in &scenarios {
            println!("{name}");
        }
        return Ok(());
    }
    for n in names {
        if !scenarios
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(n))
        {
            return Err(format!(
                "unknown scenario {n:?}; `flotilla scenario list` lists them"
            ));
        }
    }
    let chosen: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| names.is_empty() || names.iter().any(|n| name.eq_ignore_ascii_case(n)))
        .collect();
    let seed_list: Vec<u64> = match seed {
        Some(s) => vec![s],
        None => (1..=seeds).collect(),
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in chosen {
        for &s in &seed_list {
            let t0 = std::time::Instant::now();
            let outcome = std::panic::catch_unwind(|| scenario(s));
            match outcome {
                Ok(hash) => {
                    passed += 1;
                    println!(
                        "ok     {name} seed {s} ({:.0} ms, trace {hash:016x})",
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                }
                Err(_) => {
                    failed += 1;
                    println!("FAILED {name} seed {s}; replay: flotilla scenario {name} --seed {s}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        Err(format!("{failed} scenario run(s) failed"))
    } else {
        Ok(())
    }
}
