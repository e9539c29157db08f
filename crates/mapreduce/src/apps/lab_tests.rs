//! The MIT lab's test apps, which prove parallelism, exactly-once execution, no early exit and
//! crash recovery. They observe each other through files in the worker's current directory, as
//! the lab's do, so every worker of a test must share one directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{App, Registry};

pub(super) fn register(r: &mut Registry) {
    r.add("mtiming", MapTiming);
    r.add("rtiming", ReduceTiming);
    r.add("jobcount", JobCount);
    r.add("early_exit", EarlyExit);
    r.add("crash", Crash { crashes: true });
    r.add("nocrash", Crash { crashes: false });
}

/// Randomness for the test apps: real processes, so entropy from the clock and pid is fine.
fn rng() -> ChaCha8Rng {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    ChaCha8Rng::seed_from_u64(nanos ^ (u64::from(std::process::id()) << 32))
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How many workers are in `phase` right now: announce ourselves with a file, count the files
/// of live processes, hold for a second so overlapping workers see each other, then leave.
fn nparallel(phase: &str) -> usize {
    let me = format!("mr-worker-{phase}-{}", std::process::id());
    std::fs::write(&me, "x").unwrap_or_else(|e| panic!("cannot create {me}: {e}"));
    let prefix = format!("mr-worker-{phase}-");
    let mut n = 0;
    for entry in std::fs::read_dir(".")
        .expect("read the current directory")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid_alive(pid) {
                n += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::fs::remove_file(&me);
    n
}

/// `mtiming`: each map reports its pid, start time and how many maps ran alongside it.
struct MapTiming;
impl App for MapTiming {
    fn map(&self, _: &str, _: &str, emit: &mut dyn FnMut(String, String)) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let pid = std::process::id();
        let n = nparallel("map");
        emit(format!("times-{pid}"), format!("{ts:.1}"));
        emit(format!("parallel-{pid}"), n.to_string());
    }
    fn reduce(&self, _: &str, mut values: Vec<String>) -> String {
        values.sort();
        values.join(" ")
    }
}

/// `rtiming`: every map emits keys a..j; each reduce reports how many reduces ran alongside it.
struct ReduceTiming;
impl App for ReduceTiming {
    fn map(&self, _: &str, _: &str, emit: &mut dyn FnMut(String, String)) {
        for k in 'a'..='j' {
            emit(k.to_string(), "1".to_string());
        }
    }
    fn reduce(&self, _: &str, _: Vec<String>) -> String {
        nparallel("reduce").to_string()
    }
}

/// Per-process count of jobcount map invocations.
static JOBCOUNT_CALLS: AtomicU64 = AtomicU64::new(0);

/// `jobcount`: each map invocation leaves a file; the reduce counts them, so the output is the
/// number of map executions (8 for 8 inputs if no task ran twice).
struct JobCount;
impl App for JobCount {
    fn map(&self, _: &str, _: &str, emit: &mut dyn FnMut(String, String)) {
        let n = JOBCOUNT_CALLS.fetch_add(1, Ordering::SeqCst);
        let f = format!("mr-worker-jobcount-{}-{n}", std::process::id());
        std::fs::write(&f, "x").unwrap_or_else(|e| panic!("cannot create {f}: {e}"));
        std::thread::sleep(Duration::from_millis(2000 + rng().gen_range(0..3000)));
        emit("a".to_string(), "x".to_string());
    }
    fn reduce(&self, _: &str, _: Vec<String>) -> String {
        let n = std::fs::read_dir(".")
            .expect("read the current directory")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("mr-worker-jobcount")
            })
            .count();
        n.to_string()
    }
}

/// `early_exit`: reduces for keys containing "sherlock" or "tom" take 3 s, to catch a worker or
/// coordinator that exits before all output is written.
struct EarlyExit;
impl App for EarlyExit {
    fn map(&self, filename: &str, _: &str, emit: &mut dyn FnMut(String, String)) {
        emit(filename.to_string(), "1".to_string());
    }
    fn reduce(&self, key: &str, values: Vec<String>) -> String {
        if key.contains("sherlock") || key.contains("tom") {
            std::thread::sleep(Duration::from_secs(3));
        }
        values.len().to_string()
    }
}

/// `crash` / `nocrash`: each call may (a third of the time) kill the worker, or (another third)
/// stall it for up to 10 s. The output itself is deterministic; `nocrash` never crashes.
struct Crash {
    crashes: bool,
}

impl Crash {
    fn maybe_crash(&self) {
        if !self.crashes {
            return;
        }
        let mut rng = rng();
        let r = rng.gen_range(0..1000);
        if r < 330 {
            std::process::exit(1);
        } else if r < 660 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..10_000)));
        }
    }
}

impl App for Crash {
    fn map(&self, filename: &str, contents: &str, emit: &mut dyn FnMut(String, String)) {
        self.maybe_crash();
        emit("a".to_string(), filename.to_string());
        emit("b".to_string(), filename.len().to_string());
        emit("c".to_string(), contents.len().to_string());
        emit("d".to_string(), "xyzzy".to_string());
    }
    fn reduce(&self, _: &str, mut values: Vec<String>) -> String {
        self.maybe_crash();
        values.sort();
        values.join(" ")
    }
}
