//! Big state: what a user loading gigabytes sees. `flotilla-bench big-state` starts `flotilla up`
//! in a temporary directory and measures, printing figures (never asserting a speed):
//!
//! * **load**: `--values` values of `--value-size` bytes written through the router over
//!   `--connections` connections (one group: `up --single`): time, MB/s, SET latency, writes
//!   not acknowledged, leadership changes (the highest Raft term any replica reached, sampled
//!   every 250 ms from the metrics endpoints), frames refused as over the cap and event-loop
//!   stalls (counted in the replicas' logs), and each replica's peak RSS (`VmHWM`) against the
//!   state size + 256 MiB that issue 16 allows;
//! * **add-replica** (`--add-replica`): a fourth server joins the loaded group with `flotilla ctl
//!   add-node`; the time until it has caught up and is a voter, against copying the same bytes
//!   over loopback into a file and fsyncing it, and the SET latency a client sees meanwhile;
//! * **shard-move** (`--shard-move`, on the default sharded `up`): one shard filled with the
//!   values (keys share a hash tag), then `ctl move SHARD G --wait` timed while a client writes
//!   to other shards, and a sample of the moved keys read back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cpu::process_tree;
use crate::service::{self, Service};
use crate::sharded::Resp;
use crate::BenchError;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BigOptions {
    pub bin: PathBuf,
    pub values: u32,
    pub value_size: usize,
    pub connections: u32,
    /// Router port; replicas on `base_port` and after (metrics 100 ports up).
    pub port: u16,
    pub base_port: u16,
    pub add_replica: bool,
    pub shard_move: bool,
    /// Instead of the load: this many distinct clients, each writing once through a clerk
    /// of its own, against `up --single --max-sessions <max_sessions>`.
    pub clients: Option<u32>,
    pub max_sessions: u64,
    /// Where `up` keeps its data (removed at the end unless `keep`).
    pub dir: PathBuf,
}

/// Latency figures of a run of requests.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.count, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// The key of value `i` (a hash tag keeps every key in one shard when sharded).
fn key(i: u32) -> String {
    format!("{{big}}:{i}")
}

/// Value `i`: `size` bytes, different for every key, cheap to make and to check.
fn value(i: u32, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let seed = i.wrapping_mul(2_654_435_761);
    for (j, b) in v.iter_mut().enumerate() {
        *b = b'a' + ((seed as usize).wrapping_add(j * 7) % 26) as u8;
    }
    v
}

/// The gauges [`Sampler`] follows: the highest value any replica reported of each.
const SAMPLED: [&str; 3] = [
    "flotilla_raft_term",
    "flotilla_sessions",
    "flotilla_snapshot_bytes",
];

/// Samples, every 250 ms until stopped, the [`SAMPLED`] gauges of every replica, keeping the
/// highest value of each.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<[u64; SAMPLED.len()]>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(metrics_ports: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new([0; SAMPLED.len()]));
        let (s, t) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for &p in &metrics_ports {
                    for (i, name) in SAMPLED.iter().enumerate() {
                        if let Some(v) = metric(p, name) {
                            let mut m = t.lock().unwrap_or_else(|e| e.into_inner());
                            m[i] = m[i].max(v as u64);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Sampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn max_of(&self, name: &str) -> u64 {
        let i = SAMPLED
            .iter()
            .position(|n| *n == name)
            .expect("a sampled gauge");
        self.max.lock().unwrap_or_else(|e| e.into_inner())[i]
    }

    fn max_term(&self) -> u64 {
        self.max_of("flotilla_raft_term")
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One gauge from a process's Prometheus endpoint on 127.0.0.1:`port` (first sample).
fn metric(port: u16, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Peak and current resident set of `pid` in bytes (`VmHWM`, `VmRSS`).
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The `flotilla server` processes below `root`.
fn servers(root: u32) -> Vec<u32> {
    process_tree(root)
        .into_iter()
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|a| a == b"server"))
                .unwrap_or(false)
        })
        .collect()
}

/// Lines of the logs in `dir` (`*.log`) that contain `needle`.
fn count_in_logs(dir: &Path, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

/// SET on the connection in `conn`, connecting first if there is none; after an error the
/// connection is dropped (its reply may be half read) and the next call starts afresh.
fn set_on(conn: &mut Option<Resp>, port: u16, key: &str, value: &[u8]) -> Result<(), BenchError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Resp::connect(port)?),
    };
    let r = c.set(key, value);
    if r.is_err() {
        *conn = None;
    }
    r
}

/// Writes values `range` over `connections` connections; returns the latencies and the
/// writes that were not acknowledged (with the first error).
fn write_values(
    port: u16,
    range: std::ops::Range<u32>,
    size: usize,
    connections: u32,
) -> (Vec<Duration>, usize, Option<BenchError>) {
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let range = range.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                let mut first_err = None;
                let mut conn = None;
                for i in range.filter(|i| i % connections == c) {
                    let v = value(i, size);
                    let started = Instant::now();
                    match set_on(&mut conn, port, &key(i), &v) {
                        Ok(()) => lat.push(started.elapsed()),
                        Err(e) => {
                            failed += 1;
                            first_err.get_or_insert(e);
                        }
                    }
                }
                (lat, failed, first_err)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = 0;
    let mut first = None;
    for t in threads {
        let (l, f, e) = t.join().unwrap_or_default();
        all.extend(l);
        failed += f;
        if first.is_none() {
            first = e;
        }
    }
    (all, failed, first)
}

/// A client writing small values to keys outside the big set until stopped: the latency the
/// rest of the users see while something big happens.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Vec<Duration>, usize)>>,
}

impl Probe {
    /// Starts SETting small values to keys `probe:0..1000`, leaving out those of shard
    /// `avoid.0` of `avoid.1` (the shard being moved, unavailable until it is installed: a
    /// write to it waits for the move, by design).
    fn start(port: u16, avoid: Option<(usize, usize)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut failed = 0;
            let mut conn: Option<Resp> = None;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("probe:{}", i % 1000);
                let moving = |(shard, n)| flotilla_shardkv::key_shard(key.as_bytes(), n) == shard;
                if avoid.is_some_and(moving) {
                    continue;
                }
                let started = Instant::now();
                match set_on(&mut conn, port, &key, b"small value") {
                    Ok(()) => lat.push(started.elapsed()),
                    Err(_) => {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            (lat, failed)
        });
        Probe {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (Latency, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let (lat, failed) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        (Latency::of(lat), failed)
    }
}

/// Copies `bytes` over a loopback TCP connection into a file in `dir` and fsyncs it: the floor
/// for a replica catching up on that much state.
fn loopback_copy(dir: &Path, bytes: u64) -> Result<f64, BenchError> {
    let failed = |action, addr: &str, source| BenchError::Connection {
        action,
        addr: addr.into(),
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed("cannot listen on", "127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| failed("cannot ask the address of", "127.0.0.1:0", e))?;
    let path = dir.join("loopback-copy.bin");
    let started = Instant::now();
    let p = path.clone();
    let receiver = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut f = std::fs::File::create(&p)?;
        std::io::copy(&mut s, &mut f)?;
        f.sync_all()
    });
    let mut s =
        TcpStream::connect(addr).map_err(|e| failed("cannot connect to", &addr.to_string(), e))?;
    let chunk = vec![b'x'; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])
            .map_err(|e| failed("cannot send to", &addr.to_string(), e))?;
        left -= n as u64;
    }
    drop(s);
    receiver
        .join()
        .map_err(|_| BenchError::Panicked {
            what: "the copy's receiver",
        })?
        .map_err(|e| BenchError::io("copy over loopback into", &path, e))?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    Ok(secs)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Runs `flotilla ctl ARGS --dir DIR`, returning its stdout, or an error with its output.
fn ctl(bin: &Path, dir: &Path, args: &[&str]) -> Result<String, BenchError> {
    let out = Command::new(bin)
        .arg("ctl")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .map_err(|source| BenchError::Run {
            command: format!("{} ctl", bin.display()),
            hint: "",
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(BenchError::Failed {
            command: format!("ctl {}", args.join(" ")),
            status: Some(out.status),
            output: format!(
                "{}{}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(stdout)
}

/// Runs every measurement the options ask for, printing figures as it goes.
pub fn run(opts: &BigOptions) -> Result<(), BenchError> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| BenchError::io("create", &opts.dir, e))?;
    let sharded = opts.shard_move;
    let nreplicas: u16 = 3;
    // Sharded: the controller's replicas come first, then each group's.
    let nservers = if sharded { nreplicas * 3 } else { nreplicas };
    for p in std::iter::once(opts.port).chain((0..nservers).map(|i| opts.base_port + i)) {
        service::ensure_port_free(p)?;
    }
    let mut up_cmd = Command::new(&opts.bin);
    up_cmd
        .arg("up")
        .arg("--dir")
        .arg(&opts.dir)
        .args(["--port", &opts.port.to_string()])
        .args(["--base-port", &opts.base_port.to_string()]);
    if !sharded {
        up_cmd.arg("--single");
    }
    if opts.clients.is_some() {
        up_cmd.args(["--max-sessions", &opts.max_sessions.to_string()]);
    }
    let mut up = Service::start("flotilla up", &mut up_cmd, &opts.dir.join("up.out"))?;
    service::wait_resp_ready(&mut up, opts.port, Duration::from_secs(60))?;
    let replicas = servers(up.pid());
    up.set_tree(&process_tree(up.pid()));
    let metrics: Vec<u16> = (0..nservers).map(|i| opts.base_port + i + 100).collect();
    let sampler = Sampler::start(metrics.clone());
    let term_before = metrics
        .iter()
        .filter_map(|&p| metric(p, "flotilla_raft_term"))
        .fold(0.0, f64::max) as u64;

    if let Some(n) = opts.clients {
        let result = many_clients(opts, n, &sampler);
        drop(sampler);
        up.stop();
        return result;
    }

    let state = u64::from(opts.values) * opts.value_size as u64;
    println!(
        "load: {} values of {} B ({:.0} MiB) over {} connections, {}",
        opts.values,
        opts.value_size,
        mib(state),
        opts.connections,
        if sharded {
            "into one shard of the default sharded `up`"
        } else {
            "`up --single`"
        }
    );
    let started = Instant::now();
    let (lat, failed, first_err) =
        write_values(opts.port, 0..opts.values, opts.value_size, opts.connections);
    let secs = started.elapsed().as_secs_f64();
    up.check_running()?;
    println!(
        "  {:.1} s, {:.1} MB/s; SET {}; not acknowledged: {failed}{}",
        secs,
        state as f64 / 1e6 / secs,
        Latency::of(lat),
        first_err.map_or(String::new(), |e| format!(" (first: {e})"))
    );
    println!(
        "  Raft term: {term_before} before, {} at most during the load (each change of term is an election)",
        sampler.max_term()
    );
    report_logs(&opts.dir);
    report_rss(&replicas, state);

    if opts.add_replica && !sharded {
        add_replica(opts, &mut up, state)?;
        report_logs(&opts.dir);
    }
    if sharded {
        shard_move(opts, state)?;
        report_logs(&opts.dir);
        report_rss(&servers(up.pid()), state);
    }
    println!("  Raft term at the end: {}", sampler.max_term());
    drop(sampler);
    up.stop();
    Ok(())
}

fn report_logs(dir: &Path) {
    println!(
        "  logs: {} messages refused as over the frame cap, {} event-loop stalls logged",
        count_in_logs(dir, "frame limit"),
        count_in_logs(dir, "stalled")
    );
}

fn report_rss(pids: &[u32], state: u64) {
    let allowed = state + (256 << 20);
    for &p in pids {
        if let Some((peak, now)) = rss(p) {
            println!(
                "  replica pid {p}: peak RSS {:.0} MiB (state + 256 MiB = {:.0} MiB: {}), now {:.0} MiB",
                mib(peak),
                mib(allowed),
                if peak <= allowed { "within" } else { "OVER" },
                mib(now)
            );
        }
    }
}

/// `n` distinct clients, each a new clerk (a new session) writing once, 64 at a time, through
/// the library's client; then the replicas' session tables and snapshots against the limit.
fn many_clients(opts: &BigOptions, n: u32, sampler: &Sampler) -> Result<(), BenchError> {
    use flotilla_client::GroupClient;
    use flotilla_kv::{KvCommand, KvReply};
    let layout_path = opts.dir.join("cluster.json");
    let layout: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&layout_path).map_err(|e| BenchError::io("read", &layout_path, e))?,
    )
    .map_err(|source| BenchError::Json {
        what: layout_path.display().to_string(),
        source,
    })?;
    let servers: Vec<String> = (layout["servers"].as_array())
        .ok_or_else(|| {
            BenchError::parse(layout_path.display().to_string(), "no servers named", "")
        })?
        .iter()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let secret_path = opts.dir.join("secret");
    let secret = std::fs::read_to_string(&secret_path)
        .map_err(|e| BenchError::io("read", &secret_path, e))?;
    let secret =
        flotilla_transport::auth::Secret::new(&secret).map_err(|source| BenchError::Secret {
            path: secret_path.clone(),
            source,
        })?;
    println!(
        "sessions: {n} distinct clients, one write each, against --max-sessions {}",
        opts.max_sessions
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "the clients' runtime",
            source,
        })?;
    let started = Instant::now();
    let (done, failed) = rt.block_on(async {
        let clients: Arc<GroupClient<KvCommand, KvReply>> = GroupClient::connect(&servers, secret);
        let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (clients, next) = (clients.clone(), next.clone());
                tokio::spawn(async move {
                    let (mut done, mut failed) = (0u32, 0u32);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return (done, failed);
                        }
                        let clerk = clients.new_clerk().await;
                        let put = KvCommand::Put {
                            key: format!("client:{}", i % 1000).into_bytes(),
                            value: i.to_le_bytes().to_vec().into(),
                        };
                        match clients.call(clerk, put).await {
                            Some(Ok(_)) => done += 1,
                            _ => failed += 1,
                        }
                        clients.remove_clerk(clerk);
                    }
                })
            })
            .collect();
        let (mut done, mut failed) = (0, 0);
        for t in tasks {
            let (d, f) = t.await.unwrap_or((0, 0));
            done += d;
            failed += f;
        }
        (done, failed)
    });
    let secs = started.elapsed().as_secs_f64();
    // One more sample after the last write: the sampler runs every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    println!(
        "  {done} clients wrote, {failed} failed, in {secs:.1} s ({:.0} new clients/s)",
        f64::from(done) / secs
    );
    println!(
        "  largest session table on any replica: {} (limit {}); largest snapshot: {:.1} MiB",
        sampler.max_of("flotilla_sessions"),
        opts.max_sessions,
        mib(sampler.max_of("flotilla_snapshot_bytes"))
    );
    Ok(())
}

/// A fourth replica joins the loaded single group; times its catch-up.
fn add_replica(opts: &BigOptions, up: &mut Service, state: u64) -> Result<(), BenchError> {
    let id = 3u16;
    let addr = format!("127.0.0.1:{}", opts.base_port + id);
    service::ensure_port_free(opts.base_port + id)?;
    let data = opts.dir.join("node-3-joined");
    let mut cmd = Command::new(&opts.bin);
    cmd.args(["server", "--id", "3", "--join", "--listen", &addr])
        .arg("--data-dir")
        .arg(&data)
        .arg("--secret-file")
        .arg(opts.dir.join("secret"))
        .args([
            "--metrics",
            &format!("127.0.0.1:{}", opts.base_port + id + 100),
        ]);
    let mut joined = Service::start("joined replica", &mut cmd, &opts.dir.join("node-3.log"))?;
    println!(
        "add-replica: server 3 joins the group holding {:.0} MiB",
        mib(state)
    );
    let probe = Probe::start(opts.port, None);
    let started = Instant::now();
    let result = ctl(
        &opts.bin,
        &opts.dir,
        &["add-node", "3", &addr, "--timeout", "600s"],
    );
    let secs = started.elapsed().as_secs_f64();
    let (lat, failed) = probe.finish();
    joined.check_running()?;
    up.check_running()?;
    result?;
    let floor = loopback_copy(&opts.dir, state)?;
    println!(
        "  caught up and promoted in {secs:.1} s (copying {:.0} MiB over loopback + fsync: {floor:.1} s)",
        mib(state)
    );
    println!("  a client's SETs meanwhile: {lat}; failed: {failed}");
    report_rss(&[joined.pid()], state);
    joined.stop();
    Ok(())
}

/// Moves the shard holding the loaded values to another group while a client writes.
fn shard_move(opts: &BigOptions, state: u64) -> Result<(), BenchError> {
    let (owners, groups) = crate::sharded::query(&opts.bin, &opts.dir)?;
    let shard = flotilla_shardkv::key_shard(key(0).as_bytes(), owners.len());
    let from = owners[shard];
    let to = *groups
        .iter()
        .find(|&&g| g != from)
        .ok_or(BenchError::SingleGroup)?;
    println!(
        "shard-move: shard {shard} ({:.0} MiB) from group {from} to group {to}",
        mib(state)
    );
    let probe = Probe::start(opts.port, Some((shard, owners.len())));
    let started = Instant::now();
    let result = ctl(
        &opts.bin,
        &opts.dir,
        &[
            "move",
            &shard.to_string(),
            &to.to_string(),
            "--wait",
            "--timeout",
            "600s",
        ],
    );
    let secs = started.elapsed().as_secs_f64();
    let (lat, failed) = probe.finish();
    result?;
    println!(
        "  moved in {secs:.1} s; a client's SETs to other shards meanwhile: {lat}; failed: {failed}"
    );
    let mut c = Resp::connect(opts.port)?;
    let step = (opts.values / 20).max(1);
    for i in (0..opts.values).step_by(step as usize) {
        match c.get(&key(i))? {
            Some(v) if v == value(i, opts.value_size) => {}
            found => {
                return Err(BenchError::ValueLost {
                    key: key(i),
                    found: found.map(|v| v.len()),
                })
            }
        }
    }
    println!("  every 1 in {step} of the moved keys read back intact");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_and_have_their_size() {
        assert_eq!(value(3, 100).len(), 100);
        assert_ne!(value(1, 64), value(2, 64));
        assert_eq!(key(7), "{big}:7");
    }

    #[test]
    fn latency_percentiles() {
        let l = Latency::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 51.0).abs() < 1e-9, "{l}");
        assert!((l.p99_ms - 100.0).abs() < 1e-9, "{l}");
        assert!((l.max_ms - 100.0).abs() < 1e-9);
        assert_eq!(Latency::of(Vec::new()).count, 0);
    }
}
