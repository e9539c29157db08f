//! What the process-level test files share: ports, a history recorder, the writer clients,
//! and the acknowledged-write check.

#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_check::{check_kv, CheckResult, KvInput, KvOperation, KvOutput, Operation};

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// A free port and the `n - 1` after it (best effort: probed by binding).
pub fn free_ports(n: u16) -> u16 {
    free_port_set(&(0..n).collect::<Vec<_>>())
}

/// Ports for `flotilla up` with `replicas` replica processes in all: (the router's port, the
/// base port), every port `up` derives from them free: the router's metrics (port + 1), the
/// replicas' ports (base and after) and their metrics (base + 100 and after).
pub fn free_up_ports(replicas: u16) -> (u16, u16) {
    let base: Vec<u16> = (0..replicas).chain(100..100 + replicas).collect();
    (free_port_set(&[0, 1]), free_port_set(&base))
}

/// A port `p` with `p + o` free for every offset `o`, outside the kernel's range of ephemeral
/// ports. A port in that range, free when probed, can be taken before the process meant to
/// listen on it binds it (or, for a restarted process, while it is down), as the source port
/// of any outgoing connection on the machine; the process then fails with "address in use".
/// (That made the process tests flaky: a replica of `up` that never came back, a router that
/// never listened, while other tests' processes dialed each other.)
fn free_port_set(offsets: &[u16]) -> u16 {
    let span = u32::from(offsets.iter().max().copied().unwrap_or(0));
    let (low, high) = ephemeral_ports();
    // Candidates: [10000, low) and (high, 65535], less room for the offsets.
    let below = low.saturating_sub(10_000).saturating_sub(span);
    let above = (65_535 - high).saturating_sub(span);
    assert!(
        below + above > 0,
        "no ports outside the ephemeral range {low}-{high}"
    );
    for _ in 0..200 {
        let r = rand_u32() % (below + above);
        let base = if r < below {
            10_000 + r
        } else {
            high + 1 + (r - below)
        } as u16;
        if (offsets.iter()).all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

/// The kernel's range of ephemeral ports (Linux's default where it cannot be read).
fn ephemeral_ports() -> (u32, u32) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut nums = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u32>().ok());
    match (nums.next(), nums.next()) {
        (Some(low), Some(high)) if low <= high => (low, high),
        _ => (32_768, 60_999),
    }
}

pub fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761)
}

pub fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

/// A history shared by the writer threads, in ns since `start`.
pub struct Recorder {
    pub start: Instant,
    pub ops: Mutex<Vec<KvOperation>>,
    /// Acknowledged SETs: key → value (each key is written once).
    pub acked: Mutex<Vec<(String, String)>>,
}

impl Recorder {
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    pub fn record(&self, client: u64, input: KvInput, call: u64, output: Option<KvOutput>) {
        let ret = output.as_ref().map(|_| self.now());
        self.ops.lock().unwrap().push(Operation {
            client,
            input,
            call,
            output: output.unwrap_or(KvOutput::Unknown),
            ret,
        });
    }
}

/// One client: SETs fresh keys, APPENDs to keys all clients share, reads back, until `stop`.
pub fn writer(id: u64, cluster_port: u16, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let open = || -> redis::Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{cluster_port}/")).unwrap();
        loop {
            if let Ok(c) = client.get_connection_with_timeout(Duration::from_secs(2)) {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut con = open();
    let mut j = 0;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("c{id}-{j}"), format!("v{id}-{j}"));
        let call = rec.now();
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
        rec.record(
            id,
            KvInput::put(&key, &value),
            call,
            r.as_ref().ok().map(|_| KvOutput::Done),
        );
        if r.is_ok() {
            rec.acked.lock().unwrap().push((key.clone(), value.clone()));
        } else {
            con = open();
        }
        let piece = format!("x{id}.{j},");
        // A new shared key every 64 rounds: the checker keeps the key's whole value in each
        // state it explores, and one key appended to for a whole run (tens of thousands of
        // times in the network-partition test) outgrew its memory budget ("linearizability
        // check timed out").
        let shared = format!("shared-{}", j / 64);
        let call = rec.now();
        let r: redis::RedisResult<i64> = redis::cmd("APPEND")
            .arg(&shared)
            .arg(&piece)
            .query(&mut con);
        rec.record(
            id,
            KvInput::append(&shared, &piece),
            call,
            r.as_ref().ok().map(|_| KvOutput::Done),
        );
        if r.is_err() {
            con = open();
        }
        let call = rec.now();
        let r: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query(&mut con);
        let out = r
            .as_ref()
            .ok()
            .map(|v| KvOutput::value(v.clone().unwrap_or_default()));
        rec.record(id, KvInput::get(&key), call, out);
        if r.is_err() {
            con = open();
        }
        j += 1;
    }
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
        })
    }

    /// Fails the test if the history so far is not linearizable (a check that runs out of
    /// time is reported, not failed: the checker's "unknown").
    pub fn assert_linearizable(&self) {
        let history = self.ops.lock().unwrap().clone();
        match check_kv(&history, Some(Duration::from_secs(60))) {
            CheckResult::Illegal(e) => panic!("the history is not linearizable:\n{e}"),
            CheckResult::Unknown => eprintln!("linearizability check timed out"),
            CheckResult::Ok => {}
        }
    }
}

/// Starts `n` writer threads on the router at `port`; stop them with the returned flag.
pub fn start_writers(
    n: u64,
    port: u16,
    rec: &Arc<Recorder>,
) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..n)
        .map(|id| {
            let (rec, stop) = (rec.clone(), stop.clone());
            std::thread::spawn(move || writer(id, port, rec, stop))
        })
        .collect();
    (stop, threads)
}

/// Stops the writers and waits for them.
pub fn stop_writers(stop: Arc<AtomicBool>, threads: Vec<std::thread::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

/// A connection to the router at `port`, reads timing out after 10 s.
pub fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(c)
}

/// Every acknowledged SET is readable through the router at `port`.
pub fn check_all_acked(port: u16, rec: &Recorder) {
    let mut con = connect(port).expect("connect");
    let acked = rec.acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} writes were acknowledged",
        acked.len()
    );
    for (k, v) in &acked {
        let got: Option<String> = redis::cmd("GET").arg(k).query(&mut con).expect("GET");
        assert_eq!(
            got.as_deref(),
            Some(v.as_str()),
            "acknowledged write of {k} lost"
        );
    }
}

/// Each replica's status (None if unreachable), from `flotilla ctl status --json ARGS…`.
pub fn ctl_status(args: &[&std::ffi::OsStr]) -> Vec<Option<serde_json::Value>> {
    let out = std::process::Command::new(BIN)
        .args(["ctl", "status", "--json"])
        .args(args)
        .output()
        .expect("ctl runs");
    assert!(
        out.status.success(),
        "ctl status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ctl prints JSON")
}

/// A test's temporary directory (data directories and process logs) that is kept, and its
/// path printed, when the test fails, so a failure can be read from the logs.
pub struct TestDir(pub tempfile::TempDir);

impl TestDir {
    pub fn new() -> Self {
        TestDir(tempfile::tempdir().unwrap())
    }

    /// A directory in memory (`/dev/shm`, where it exists), where an fsync costs nothing: for
    /// tests whose subject is the network, so that the disk's stalls (this VM's shared disk
    /// holds an fsync for up to half a second, longer than an election timeout) cause no
    /// elections of their own.
    pub fn in_memory() -> Self {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            TestDir(tempfile::tempdir_in(shm).unwrap())
        } else {
            TestDir::new()
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!("logs kept in {}", self.0.path().display());
        }
    }
}
