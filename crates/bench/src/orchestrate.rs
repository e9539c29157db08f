//! `flotilla-bench all`: Flotilla, Redis and etcd, one after the other on this machine, each
//! started in a temporary directory on 127.0.0.1, swept, and stopped; then the report and chart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cpu::{self, CpuMeter};
use crate::report::{self, Report, SystemResult, ETCD, FLOTILLA, REDIS};
use crate::service::{self, Service};
use crate::svg;
use crate::sweep::{self, SweepSpec};

pub const FLOTILLA_PORT: u16 = 6390;
pub const FLOTILLA_BASE_PORT: u16 = 7201;
pub const REDIS_PORT: u16 = 6391;
/// (client, peer) ports of the three etcd members (not 2379/2380, where a packaged etcd
/// service may listen).
pub const ETCD_PORTS: [(u16, u16); 3] = [(12379, 12380), (22379, 22380), (32379, 32380)];
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Options {
    pub out: PathBuf,
    /// Sweep of the Redis-protocol systems (Flotilla, Redis).
    pub resp: SweepSpec,
    /// Sweep of etcd (its own request count: it is much slower).
    pub etcd: SweepSpec,
    pub flotilla_bin: PathBuf,
    /// Which systems to run, by lower-case name.
    pub systems: Vec<String>,
}

/// Runs every selected system and writes `report.md`, `report.json` and `kv-bench.svg`.
pub fn all(opts: &Options) -> Result<Report, String> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let want = |name: &str| opts.systems.iter().any(|s| s.eq_ignore_ascii_case(name));
    let mut systems = Vec::new();
    if want(FLOTILLA) {
        systems.push(run_flotilla(opts, &tmp.path().join("flotilla")));
    }
    if want(REDIS) {
        systems.push(run_redis(opts, &tmp.path().join("redis")));
    }
    if want(ETCD) {
        systems.push(run_etcd(opts, &tmp.path().join("etcd")));
    }
    let report = Report {
        machine: machine(tmp.path()),
        value_size: opts.resp.value_size,
        systems,
    };
    write_outputs(&report, &opts.out)?;
    Ok(report)
}

fn write_outputs(report: &Report, out: &Path) -> Result<(), String> {
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("report.md", report::markdown(report))?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| format!("cannot encode the report as JSON: {e}"))?;
    write("report.json", json + "\n")?;
    write("kv-bench.svg", svg::render(&svg::panels(report)))
}

/// "2 CPUs (model), Linux x.y; data in /tmp/…" for the report's heading.
fn machine(data: &Path) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), Linux {}; data under {}",
        kernel.trim(),
        data.display()
    )
}

/// The first line `program --version` prints, or why it cannot be run.
fn version(program: &str) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|e| format!("{program} is not installed or cannot run ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// A system's result, or a skip that says why, printed as it happens.
fn finish(
    name: &str,
    setup: String,
    result: Result<Vec<crate::report::Point>, String>,
) -> SystemResult {
    match result {
        Ok(points) => SystemResult {
            name: name.into(),
            setup,
            points,
            skipped: None,
        },
        Err(why) => {
            eprintln!("{name}: skipped: {why}");
            SystemResult::skipped(name, &setup, why)
        }
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Whether `bin` has the `up` and `router` subcommands with the flags used here.
fn flotilla_available(bin: &Path) -> Result<(), String> {
    let help = |sub: &str| {
        Command::new(bin)
            .args([sub, "--help"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let up = help("up").ok_or_else(|| {
        format!(
            "{} has no working `up` command yet (build it with `cargo build --release -p flotilla`)",
            bin.display()
        )
    })?;
    if !up.contains("--base-port") || !up.contains("--dir") || !up.contains("--port") {
        return Err(format!(
            "`{} up` lacks --dir, --port or --base-port",
            bin.display()
        ));
    }
    help("router")
        .map(drop)
        .ok_or_else(|| format!("{} has no `router` command yet", bin.display()))
}

fn run_flotilla(opts: &Options, dir: &Path) -> SystemResult {
    let setup = format!(
        "`flotilla up`: 3 replicas (127.0.0.1:{FLOTILLA_BASE_PORT}…) and the router on \
         127.0.0.1:{FLOTILLA_PORT}, WAL fsync on (its default); redis-benchmark; CPU of `up` and \
         all its child processes"
    );
    eprintln!("Flotilla: starting 3 replicas and the router");
    let result = flotilla_available(&opts.flotilla_bin).and_then(|()| {
        mkdir(dir)?;
        service::ensure_port_free(FLOTILLA_PORT)?;
        for i in 0..3 {
            service::ensure_port_free(FLOTILLA_BASE_PORT + i)?;
        }
        let mut cmd = Command::new(&opts.flotilla_bin);
        cmd.arg("up")
            .arg("--dir")
            .arg(dir.join("data"))
            .args(["--port", &FLOTILLA_PORT.to_string()])
            .args(["--base-port", &FLOTILLA_BASE_PORT.to_string()]);
        let mut svc = Service::start("flotilla up", &mut cmd, &dir.join("up.log"))?
            .with_stop_signal(Signal::SIGINT);
        service::wait_resp_ready(&mut svc, FLOTILLA_PORT, READY_TIMEOUT)?;
        let tree = cpu::process_tree(svc.pid());
        svc.set_tree(&tree);
        eprintln!(
            "Flotilla: ready; CPU measured over {} processes",
            tree.len()
        );
        let meter = CpuMeter::new(tree);
        let points = sweep::redis(FLOTILLA, FLOTILLA_PORT, &opts.resp, Some(&meter));
        svc.check_running()?;
        svc.stop();
        points
    });
    finish(FLOTILLA, setup, result)
}

fn run_redis(opts: &Options, dir: &Path) -> SystemResult {
    let v = version("redis-server");
    let setup = format!(
        "{}, appendonly yes, appendfsync always, no RDB saves; redis-benchmark; CPU of \
         redis-server",
        v.as_deref().unwrap_or("redis-server")
    );
    eprintln!("Redis: starting redis-server (appendfsync always)");
    let result = v.and_then(|_| {
        mkdir(dir)?;
        service::ensure_port_free(REDIS_PORT)?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &REDIS_PORT.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no"]);
        let mut svc = Service::start("redis-server", &mut cmd, &dir.join("redis.log"))?;
        service::wait_resp_ready(&mut svc, REDIS_PORT, READY_TIMEOUT)?;
        let meter = CpuMeter::new(vec![svc.pid()]);
        let points = sweep::redis(REDIS, REDIS_PORT, &opts.resp, Some(&meter));
        svc.check_running()?;
        points
    });
    finish(REDIS, setup, result)
}

fn etcd_command(dir: &Path, i: usize) -> Command {
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let cluster: Vec<String> = ETCD_PORTS
        .iter()
        .enumerate()
        .map(|(j, &(_, peer))| format!("m{j}={}", url(peer)))
        .collect();
    let (client, peer) = ETCD_PORTS[i];
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", &format!("m{i}")])
        .arg("--data-dir")
        .arg(dir.join(format!("m{i}")))
        .args(["--listen-client-urls", &url(client)])
        .args(["--advertise-client-urls", &url(client)])
        .args(["--listen-peer-urls", &url(peer)])
        .args(["--initial-advertise-peer-urls", &url(peer)])
        .args(["--initial-cluster", &cluster.join(",")])
        .args(["--initial-cluster-token", "flotilla-bench"])
        .args(["--initial-cluster-state", "new"]);
    cmd
}

fn run_etcd(opts: &Options, dir: &Path) -> SystemResult {
    let v = version("etcd");
    let setup = format!(
        "{}, 3 members on 127.0.0.1 (fsync on, its default); flotilla-bench's etcd-client \
         generator: puts of distinct keys, then linearizable gets; CPU of the 3 etcd processes",
        v.as_deref().unwrap_or("etcd")
    );
    eprintln!("etcd: starting 3 members");
    let result = v.and_then(|_| {
        if !sweep::HAS_ETCD {
            return Err(sweep::NO_ETCD.to_string());
        }
        mkdir(dir)?;
        let mut members = Vec::new();
        for (i, &(client, peer)) in ETCD_PORTS.iter().enumerate() {
            service::ensure_port_free(client)?;
            service::ensure_port_free(peer)?;
            let log = dir.join(format!("m{i}.log"));
            members.push(Service::start(
                &format!("etcd m{i}"),
                &mut etcd_command(dir, i),
                &log,
            )?);
        }
        let endpoints: Vec<String> = ETCD_PORTS
            .iter()
            .map(|(c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        wait_etcd(&endpoints, &mut members)?;
        let meter = CpuMeter::new(members.iter().map(Service::pid).collect());
        let points = sweep::etcd(&endpoints, &opts.etcd, Some(&meter));
        for m in &mut members {
            m.check_running()?;
        }
        points
    });
    finish(ETCD, setup, result)
}

#[cfg(feature = "etcd")]
fn wait_etcd(endpoints: &[String], members: &mut [Service]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let healthy = rt.block_on(crate::etcd::wait_healthy(endpoints, READY_TIMEOUT));
    for m in members.iter_mut() {
        m.check_running()?;
    }
    healthy
}

#[cfg(not(feature = "etcd"))]
fn wait_etcd(_endpoints: &[String], _members: &mut [Service]) -> Result<(), String> {
    Err(sweep::NO_ETCD.into())
}
