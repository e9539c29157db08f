//! `flotilla-bench all`: Flotilla (one replicated group), Flotilla sharded (1, 2 and 3 groups,
//! and a shard move), Redis and etcd, one after the other on this machine, each started in a
//! temporary directory on 127.0.0.1, swept, and stopped; then the report and chart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cpu::{self, CpuMeter};
use crate::report::{self, MoveResult, Report, SystemResult, ETCD, FLOTILLA, REDIS, SHARDED};
use crate::service::{self, Service};
use crate::sharded;
use crate::svg;
use crate::sweep::{self, SweepSpec};
use crate::BenchError;

pub const FLOTILLA_PORT: u16 = 6390;
pub const FLOTILLA_BASE_PORT: u16 = 7201;
/// The sharded cluster's router, and its controller's first port (its groups' follow).
pub const SHARDED_PORT: u16 = 6392;
pub const SHARDED_BASE_PORT: u16 = 7401;
/// Replicas of the controller and of each group.
const REPLICAS: u16 = 3;
/// Group counts the sharded system is swept at.
pub const SHARDED_GROUPS: [usize; 3] = [1, 2, 3];
/// How far above a process's port `flotilla up` puts its metrics endpoint (replica, router).
const METRICS_OFFSET: (u16, u16) = (100, 1);
pub const REDIS_PORT: u16 = 6391;
/// (client, peer) ports of the three etcd members (not 2379/2380, where a packaged etcd
/// service may listen).
pub const ETCD_PORTS: [(u16, u16); 3] = [(12379, 12380), (22379, 22380), (32379, 32380)];
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Options {
    pub out: PathBuf,
    /// Sweep of the Redis-protocol systems (Flotilla, sharded Flotilla, Redis).
    pub resp: SweepSpec,
    /// Sweep of etcd (its own request count: it is much slower).
    pub etcd: SweepSpec,
    pub flotilla_bin: PathBuf,
    /// Which systems to run, by lower-case name.
    pub systems: Vec<String>,
}

/// Runs every selected system and writes `report.md`, `report.json` and `kv-bench.svg`.
pub fn all(opts: &Options) -> Result<Report, BenchError> {
    mkdir(&opts.out)?;
    let tmp = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir()
        .map_err(|e| BenchError::io("create a temporary directory in", std::env::temp_dir(), e))?;
    let want = |name: &str| opts.systems.iter().any(|s| s.eq_ignore_ascii_case(name));
    let mut systems = Vec::new();
    if want(FLOTILLA) {
        systems.push(run_flotilla(opts, &tmp.path().join("flotilla")));
    }
    let mut shard_move = None;
    if want(SHARDED) {
        for g in SHARDED_GROUPS {
            systems.push(run_sharded(
                opts,
                &tmp.path().join(format!("sharded-{g}")),
                g,
            ));
        }
        shard_move = Some(run_shard_move(opts, &tmp.path().join("shard-move")));
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
        shard_move,
    };
    if let Some(m) = &report.shard_move {
        eprintln!("{}", report::move_line(Some(m)));
    }
    write_outputs(&report, &opts.out)?;
    Ok(report)
}

fn write_outputs(report: &Report, out: &Path) -> Result<(), BenchError> {
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| BenchError::io("write", p, e))
    };
    write("report.md", report::markdown(report))?;
    let json = serde_json::to_string_pretty(report).map_err(BenchError::Encode)?;
    write("report.json", json + "\n")?;
    let notes: Vec<String> = (report.shard_move.as_ref())
        .map(|m| report::move_line(Some(m)))
        .into_iter()
        .collect();
    write(
        "kv-bench.svg",
        svg::render_with_notes(&svg::panels(report), &notes),
    )
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
fn version(program: &str) -> Result<String, BenchError> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|source| BenchError::NotInstalled {
            program: program.into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// A system's result, or a skip that says why, printed as it happens.
fn finish(
    name: &str,
    setup: String,
    result: Result<Vec<crate::report::Point>, BenchError>,
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
            SystemResult::skipped(name, &setup, why.to_string())
        }
    }
}

fn mkdir(dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io("create", dir, e))
}

/// Whether `bin` has the `up` and `router` subcommands with the flags used here (and `ctl`,
/// for a sharded cluster).
fn flotilla_available(bin: &Path, sharded: bool) -> Result<(), BenchError> {
    let lacks = |what: String| BenchError::BinaryLacks {
        bin: bin.into(),
        what,
    };
    let help = |sub: &str| {
        Command::new(bin)
            .args([sub, "--help"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let up = help("up").ok_or_else(|| lacks("a working `up` command".into()))?;
    let flags: &[&str] = if sharded {
        &["--base-port", "--dir", "--port", "--groups"]
    } else {
        &["--base-port", "--dir", "--port", "--single"]
    };
    if let Some(f) = flags.iter().find(|f| !up.contains(*f)) {
        return Err(lacks(format!("`up {f}`")));
    }
    if sharded && !help("ctl").is_some_and(|h| h.contains("move")) {
        return Err(lacks("a `ctl move` command".into()));
    }
    help("router")
        .map(drop)
        .ok_or_else(|| lacks("a `router` command".into()))
}

/// Every port a `flotilla up` uses: the router's, `replicas` replica ports from `base`, and
/// each one's metrics port.
pub fn up_ports(router: u16, base: u16, replicas: u16) -> Vec<u16> {
    let mut ports = vec![router, router + METRICS_OFFSET.1];
    for i in 0..replicas {
        ports.extend([base + i, base + i + METRICS_OFFSET.0]);
    }
    ports
}

/// Starts `flotilla up ARGS` with its data in `dir/data`, once all its ports are free, and
/// waits until its router answers on `port`.
fn start_up(
    opts: &Options,
    dir: &Path,
    args: &[String],
    port: u16,
    ports: &[u16],
) -> Result<Service, BenchError> {
    mkdir(dir)?;
    for &p in ports {
        service::ensure_port_free(p)?;
    }
    let mut cmd = Command::new(&opts.flotilla_bin);
    cmd.arg("up").arg("--dir").arg(dir.join("data")).args(args);
    let mut svc = Service::start("flotilla up", &mut cmd, &dir.join("up.log"))?
        .with_stop_signal(Signal::SIGINT);
    service::wait_resp_ready(&mut svc, port, READY_TIMEOUT)?;
    Ok(svc)
}

/// Sweeps a started `flotilla up` with redis-benchmark, measuring the CPU of `up` and all its
/// child processes, then stops it.
fn sweep_up(
    opts: &Options,
    name: &str,
    mut svc: Service,
    port: u16,
) -> Result<Vec<report::Point>, BenchError> {
    let tree = cpu::process_tree(svc.pid());
    svc.set_tree(&tree);
    eprintln!("{name}: ready; CPU measured over {} processes", tree.len());
    let meter = CpuMeter::new(tree);
    let points = sweep::redis(name, port, &opts.resp, Some(&meter));
    svc.check_running()?;
    svc.stop();
    points
}

fn run_flotilla(opts: &Options, dir: &Path) -> SystemResult {
    let setup = format!(
        "`flotilla up --single`: one group of 3 replicas (127.0.0.1:{FLOTILLA_BASE_PORT}…) and \
         the router on 127.0.0.1:{FLOTILLA_PORT}, WAL fsync on (its default); redis-benchmark; \
         CPU of `up` and all its child processes"
    );
    eprintln!("Flotilla: starting 3 replicas and the router");
    let result = flotilla_available(&opts.flotilla_bin, false).and_then(|()| {
        let args: Vec<String> = vec![
            "--single".into(),
            "--port".into(),
            FLOTILLA_PORT.to_string(),
            "--base-port".into(),
            FLOTILLA_BASE_PORT.to_string(),
        ];
        let ports = up_ports(FLOTILLA_PORT, FLOTILLA_BASE_PORT, REPLICAS);
        let svc = start_up(opts, dir, &args, FLOTILLA_PORT, &ports)?;
        sweep_up(opts, FLOTILLA, svc, FLOTILLA_PORT)
    });
    finish(FLOTILLA, setup, result)
}

/// `flotilla up --groups G` on the sharded ports: the controller's 3 replicas, then G groups
/// of 3.
fn sharded_args(groups: usize) -> (Vec<String>, Vec<u16>) {
    let args = vec![
        "--groups".into(),
        groups.to_string(),
        "--port".into(),
        SHARDED_PORT.to_string(),
        "--base-port".into(),
        SHARDED_BASE_PORT.to_string(),
    ];
    let replicas = REPLICAS * (1 + groups as u16);
    (args, up_ports(SHARDED_PORT, SHARDED_BASE_PORT, replicas))
}

fn run_sharded(opts: &Options, dir: &Path, groups: usize) -> SystemResult {
    let name = report::sharded_name(groups);
    let last = SHARDED_BASE_PORT + REPLICAS * (1 + groups as u16) - 1;
    let setup = format!(
        "`flotilla up --groups {groups}`: a controller of 3 replicas and {groups} shard \
         group{} of 3 (127.0.0.1:{SHARDED_BASE_PORT}–{last}, 10 shards), the router on \
         127.0.0.1:{SHARDED_PORT}, WAL fsync on; redis-benchmark with uniform keys \
         (`key:__rand_int__`, spread over all shards); CPU of `up` and all its child processes",
        if groups == 1 { "" } else { "s" }
    );
    eprintln!(
        "{name}: starting a controller and {groups} group{} of 3, and the router",
        if groups == 1 { "" } else { "s" }
    );
    let result = flotilla_available(&opts.flotilla_bin, true).and_then(|()| {
        let (args, ports) = sharded_args(groups);
        let svc = start_up(opts, dir, &args, SHARDED_PORT, &ports)?;
        sweep_up(opts, &name, svc, SHARDED_PORT)
    });
    finish(&name, setup, result)
}

/// The number of shards of the cluster in `data` (its cluster.json).
fn cluster_shards(data: &Path) -> Result<usize, BenchError> {
    let p = data.join("cluster.json");
    let text = std::fs::read_to_string(&p).map_err(|e| BenchError::io("read", &p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| BenchError::Json {
        what: p.display().to_string(),
        source,
    })?;
    (v["sharded"]["shards"].as_u64())
        .map(|n| n as usize)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            BenchError::parse(p.display().to_string(), "no sharded cluster described", "")
        })
}

/// On a fresh `up --groups 2`: about 1 MB into one shard, then `ctl move --wait` timed,
/// back and forth.
fn run_shard_move(opts: &Options, dir: &Path) -> MoveResult {
    let setup = format!(
        "`flotilla up --groups 2` (fresh); {} SETs of {} KiB values on keys sharing the hash \
         tag {{{}}} through the router, then `flotilla ctl move SHARD GID --wait` {} times, \
         back and forth between the groups, each timed from the command's start until every \
         group involved settled, and a key read back through the router after each",
        sharded::MOVE_KEYS,
        sharded::MOVE_VALUE_SIZE / 1024,
        sharded::MOVE_TAG,
        sharded::MOVES
    );
    eprintln!("Shard move: starting a controller and 2 groups of 3, and the router");
    let result = flotilla_available(&opts.flotilla_bin, true).and_then(|()| {
        let (args, ports) = sharded_args(2);
        let mut svc = start_up(opts, dir, &args, SHARDED_PORT, &ports)?;
        let tree = cpu::process_tree(svc.pid());
        svc.set_tree(&tree);
        let data = dir.join("data");
        let shard = sharded::move_shard(cluster_shards(&data)?);
        let bytes = sharded::fill_shard(SHARDED_PORT)?;
        eprintln!(
            "Shard move: {bytes} bytes in shard {shard}; moving it {} times",
            sharded::MOVES
        );
        let moves = sharded::time_moves(&opts.flotilla_bin, &data, SHARDED_PORT, shard)?;
        svc.check_running()?;
        svc.stop();
        Ok(MoveResult {
            setup: setup.clone(),
            shard,
            bytes,
            keys: sharded::MOVE_KEYS,
            moves,
            skipped: None,
        })
    });
    result.unwrap_or_else(|why| {
        eprintln!("Shard move: skipped: {why}");
        MoveResult::skipped(&setup, why.to_string())
    })
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
            return Err(BenchError::NoEtcd);
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
fn wait_etcd(endpoints: &[String], members: &mut [Service]) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "a runtime to wait for etcd",
            source,
        })?;
    let healthy = rt.block_on(crate::etcd::wait_healthy(endpoints, READY_TIMEOUT));
    for m in members.iter_mut() {
        m.check_running()?;
    }
    healthy
}

#[cfg(not(feature = "etcd"))]
fn wait_etcd(_endpoints: &[String], _members: &mut [Service]) -> Result<(), BenchError> {
    Err(BenchError::NoEtcd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_ports_cover_the_controller_every_group_and_the_router() {
        let (args, ports) = sharded_args(3);
        assert_eq!(args[..2], ["--groups".to_string(), "3".to_string()]);
        // Router and its metrics, 12 replicas and their metrics.
        assert_eq!(ports.len(), 2 + 2 * 12);
        assert!(ports.contains(&SHARDED_PORT) && ports.contains(&(SHARDED_PORT + 1)));
        assert!(ports.contains(&(SHARDED_BASE_PORT + 11)));
        assert!(!ports.contains(&(SHARDED_BASE_PORT + 12)));
        assert!(ports.contains(&(SHARDED_BASE_PORT + 111)));
        // No port shared with the single group's or Redis's.
        let single = up_ports(FLOTILLA_PORT, FLOTILLA_BASE_PORT, REPLICAS);
        assert!(ports
            .iter()
            .all(|p| !single.contains(p) && *p != REDIS_PORT));
    }

    /// A `--flotilla-bin` that does not exist, or an old binary without `up --groups`.
    #[test]
    fn a_flotilla_without_the_commands_is_refused_with_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("flotilla");
        let e = flotilla_available(&missing, false).unwrap_err();
        assert!(
            matches!(&e, BenchError::BinaryLacks { bin, what } if *bin == missing && what == "a working `up` command"),
            "{e:?}"
        );
        // `up --help` without --groups: fine for one group, refused for a sharded cluster.
        let old = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/old-flotilla"
        ));
        flotilla_available(old, false).unwrap();
        let e = flotilla_available(old, true).unwrap_err();
        assert!(
            matches!(&e, BenchError::BinaryLacks { what, .. } if what == "`up --groups`"),
            "{e:?}"
        );
    }

    #[test]
    fn a_missing_program_is_not_installed() {
        let e = version("flotilla-bench-no-such-program").unwrap_err();
        assert!(
            matches!(&e, BenchError::NotInstalled { program, .. } if program == "flotilla-bench-no-such-program"),
            "{e:?}"
        );
    }

    #[test]
    fn a_cluster_json_without_shards_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = cluster_shards(dir.path()).unwrap_err();
        assert!(matches!(&e, BenchError::Io { action: "read", .. }), "{e:?}");
        std::fs::write(dir.path().join("cluster.json"), "{\"servers\": [").unwrap();
        let e = cluster_shards(dir.path()).unwrap_err();
        assert!(matches!(&e, BenchError::Json { .. }), "{e:?}");
        std::fs::write(dir.path().join("cluster.json"), "{\"servers\": []}").unwrap();
        let e = cluster_shards(dir.path()).unwrap_err();
        assert!(matches!(&e, BenchError::Parse { .. }), "{e:?}");
    }
}
