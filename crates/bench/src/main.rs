//! `flotilla-bench`: see the library's documentation and `flotilla-bench --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flotilla_bench::cpu::{self, CpuMeter};
use flotilla_bench::orchestrate::{self, Options};
use flotilla_bench::report::{self, Report, SystemResult};
use flotilla_bench::service;
use flotilla_bench::sweep::{self, SweepSpec};

/// Why a command failed: the library's [`flotilla_bench::BenchError`] or a sentence of the
/// binary's own; `main` prints it as a sentence.
type Failure = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "flotilla-bench",
    about = "Key/value benchmark: Flotilla's router against Redis and etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// redis-benchmark SET and GET against a Redis-protocol server already running.
    Redis(RedisArgs),
    /// The etcd-client load generator (put, then get) against an etcd already running.
    Etcd(EtcdArgs),
    /// Start Flotilla (one group, then sharded at 1, 2 and 3 groups), Redis and etcd in turn,
    /// sweep each, time a shard move, write the report and chart.
    All(AllArgs),
    /// Big state (issue 16): load gigabytes through `flotilla up`, then optionally add a
    /// replica to the loaded group or move the loaded shard; prints time, latency, elections,
    /// refused frames and each replica's peak RSS.
    BigState(BigStateArgs),
}

#[derive(Args)]
struct BigStateArgs {
    /// Values to write.
    #[arg(long, default_value_t = 10_000)]
    values: u32,
    /// Bytes per value.
    #[arg(long, default_value_t = 100_000)]
    value_size: usize,
    /// Writing connections.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// After the load, add a fourth replica to the group and time its catch-up.
    #[arg(long)]
    add_replica: bool,
    /// Run the default sharded `up`, load one shard, and move it to the other group.
    #[arg(long, conflicts_with = "add_replica")]
    shard_move: bool,
    /// Instead of the load: this many distinct clients (a new session each) write once,
    /// against `up --single --max-sessions <MAX_SESSIONS>`; prints the largest session table
    /// and snapshot any replica reported.
    #[arg(long, conflicts_with_all = ["add_replica", "shard_move"])]
    clients: Option<u32>,
    /// The session limit for --clients.
    #[arg(long, default_value_t = 10_000)]
    max_sessions: u64,
    /// Router port; replicas listen on --base-port and after.
    #[arg(long, default_value_t = 6390)]
    port: u16,
    #[arg(long, default_value_t = 7301)]
    base_port: u16,
    /// The flotilla binary.
    #[arg(long, default_value = "target/release/flotilla")]
    flotilla_bin: PathBuf,
    /// Data directory (default: a new temporary one, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct Load {
    /// Client counts to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<u32>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: u32,
}

#[derive(Args, Clone)]
struct Cpu {
    /// Measure the CPU time of these processes (comma-separated pids).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Measure the CPU time of the processes whose command line matches (as `pgrep -f`).
    #[arg(long)]
    pgrep: Option<String>,
}

#[derive(Args)]
struct RedisArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// Requests per operation and client count.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Keys drawn at random from this many (redis-benchmark -r); 0 for a single key.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// Name of the system in the report.
    #[arg(long, default_value = "server")]
    name: String,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    cpu: Cpu,
}

#[derive(Args)]
struct EtcdArgs {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Puts (and then gets) per client count.
    #[arg(long, default_value_t = 5_000)]
    requests: u64,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    cpu: Cpu,
}

#[derive(Args)]
struct AllArgs {
    /// Directory for report.md, report.json and kv-bench.svg.
    #[arg(long, default_value = "target/bench-kv")]
    out: PathBuf,
    /// Requests per operation and client count for Flotilla and Redis, up to 16 clients;
    /// more clients get proportionally more (64 clients: 4×), so every point lasts seconds.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Puts (and then gets) per client count for etcd, scaled the same way.
    #[arg(long, default_value_t = 5_000)]
    etcd_requests: u64,
    /// Keys drawn at random from this many (redis-benchmark -r); 0 for a single key.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// The flotilla binary.
    #[arg(long, default_value = "target/release/flotilla")]
    flotilla_bin: PathBuf,
    /// Systems to run, comma-separated: flotilla (`up --single`), sharded (`up --groups G`
    /// for G = 1, 2, 3, and the time to move a 1 MB shard), redis, etcd.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "flotilla,sharded,redis,etcd"
    )]
    systems: Vec<String>,
    #[command(flatten)]
    load: Load,
}

fn meter(cpu: &Cpu) -> Result<Option<CpuMeter>, Failure> {
    let mut pids = cpu.pids.clone();
    if let Some(pattern) = &cpu.pgrep {
        let found = cpu::pgrep(pattern)?;
        if found.is_empty() {
            return Err(format!("no process matches {pattern:?}").into());
        }
        pids.extend(found);
    }
    Ok((!pids.is_empty()).then(|| CpuMeter::new(pids)))
}

fn print_one(name: &str, points: Vec<report::Point>, value_size: u32) {
    let r = Report {
        machine: String::new(),
        value_size,
        systems: vec![SystemResult {
            name: name.into(),
            setup: String::new(),
            points,
            skipped: None,
        }],
        shard_move: None,
    };
    print!("{}", report::table(&r));
}

fn redis(a: RedisArgs) -> Result<(), Failure> {
    let spec = SweepSpec {
        clients: a.load.clients,
        requests: a.requests,
        value_size: a.load.value_size,
        keyspace: a.keyspace,
    };
    let m = meter(&a.cpu)?;
    let points = sweep::redis(&a.name, a.port, &spec, m.as_ref())?;
    print_one(&a.name, points, a.load.value_size);
    Ok(())
}

fn etcd(a: EtcdArgs) -> Result<(), Failure> {
    let spec = SweepSpec {
        clients: a.load.clients,
        requests: a.requests,
        value_size: a.load.value_size,
        keyspace: 0,
    };
    let m = meter(&a.cpu)?;
    let points = sweep::etcd(&a.endpoints, &spec, m.as_ref())?;
    print_one("etcd", points, a.load.value_size);
    Ok(())
}

fn all(a: AllArgs) -> Result<(), Failure> {
    let spec = |requests| SweepSpec {
        clients: a.load.clients.clone(),
        requests,
        value_size: a.load.value_size,
        keyspace: a.keyspace,
    };
    let opts = Options {
        out: a.out.clone(),
        resp: spec(a.requests),
        etcd: spec(a.etcd_requests),
        flotilla_bin: a.flotilla_bin,
        systems: a.systems,
    };
    let r = orchestrate::all(&opts)?;
    println!("{}", report::markdown(&r));
    for name in ["report.md", "report.json", "kv-bench.svg"] {
        println!("wrote {}", a.out.join(name).display());
    }
    Ok(())
}

fn big_state(a: BigStateArgs) -> Result<(), Failure> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().join("up"));
    flotilla_bench::bigstate::run(&flotilla_bench::bigstate::BigOptions {
        bin: a.flotilla_bin,
        values: a.values,
        value_size: a.value_size,
        connections: a.connections,
        port: a.port,
        base_port: a.base_port,
        add_replica: a.add_replica,
        shard_move: a.shard_move,
        clients: a.clients,
        max_sessions: a.max_sessions,
        dir,
    })?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = service::install_signal_handler()
        .map_err(Failure::from)
        .and_then(|()| match cli.command {
            Cmd::Redis(a) => redis(a),
            Cmd::Etcd(a) => etcd(a),
            Cmd::All(a) => all(a),
            Cmd::BigState(a) => big_state(a),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
