//! The power-loss tier (issue 15): `flotilla up --single` and the sharded `flotilla up` with
//! their --dir on faultfs, a FUSE file system that keeps every write not yet fsynced in its
//! own cache and forgets it at a simulated power loss (crate `flotilla-faultfs`).
//!
//! Each round, under writing clients: every process (`up` and each of its children) is
//! killed at the same instant (`up` is stopped first so it cannot restart anyone, then all
//! get SIGKILL), the power loss drops what was not fsynced (in some rounds torn: a random
//! subset of the unsynced pages survives), and `flotilla up` is started again with no manual
//! step. It must come back; every acknowledged write must read back; at the end the whole
//! history (across every crash) must be linearizable.
//!
//! Ten power losses: seven on one group (one in the middle of writing a snapshot, one in the
//! middle of writing a big WAL batch, one with a big batch written but not fsynced, one with
//! a batch of several records written but not fsynced, each caught by a faultfs trip on a
//! write to or fsync of such a file),
//! three on the sharded cluster (one right after `ctl move` committed a new configuration,
//! while the groups move the shard).
//!
//! Torn crashes' seeds are fixed, offset by `FLOTILLA_POWERLOSS_SEED` if set (each round's
//! line, printed with `--nocapture` and in a failure's message, shows the seed used).
//!
//! By default names created since their directory's last fsync are lost too (faultfs's
//! strict names); `FLOTILLA_POWERLOSS_LAX_NAMES=1` keeps every name, to look at data alone.
//!
//! Needs root and /dev/fuse: `#[ignore]`d, run by `.ci/run` as
//! `cargo test --release -p flotilla --test powerloss -- --ignored`.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_writers, stop_writers, Recorder, TestDir, BIN};
use faultfs::{CrashMode, Mount, Options, Trip};
use flotilla_check::{KvInput, KvOutput};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A torn crash whose seed is `n` plus `FLOTILLA_POWERLOSS_SEED` (default 0), so other
/// page choices can be tried without editing the test.
fn torn(n: u64) -> CrashMode {
    let base = std::env::var("FLOTILLA_POWERLOSS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    CrashMode::Torn {
        seed: base.wrapping_add(n),
    }
}

/// The two tests share 2 cores with everything else: one cluster at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Size of each bulk value: 16 keys of 1 MiB make a 16 MiB state, and 64 SETs reach the
/// replicas' default snapshot threshold (64 MiB of Raft state; `up` has no flag for it).
const BULK: usize = 1 << 20;
const BULK_KEYS: usize = 16;

/// One cluster on faultfs, and what a failure report needs.
struct Rig {
    /// Before `tmp`: fields drop in order, and the mount must go before its directory.
    mount: Mount,
    tmp: TestDir,
    data: PathBuf,
    /// `flotilla up` arguments after `--dir D`.
    args: Vec<String>,
    port: u16,
    up: Option<Child>,
    /// The running `up`'s pid, for the trip's hook (0: none).
    up_pid: Arc<AtomicI32>,
    round: usize,
    /// What each round did, for failure messages.
    story: Vec<String>,
}

impl Rig {
    fn new(args: Vec<String>, port: u16) -> Option<Rig> {
        if !faultfs::fuse_available() {
            eprintln!("SKIPPED: /dev/fuse is absent; the power-loss tier needs FUSE (and root)");
            return None;
        }
        // The backing directory in memory: it stands for the disk, and a real fsync there
        // would only slow every round (the power loss is faultfs's, not the host's).
        let tmp = TestDir::in_memory();
        let (backing, mnt) = (tmp.path().join("backing"), tmp.path().join("mnt"));
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        fs::create_dir(tmp.path().join("logs")).unwrap();
        let lax = std::env::var_os("FLOTILLA_POWERLOSS_LAX_NAMES").is_some();
        let mount = Mount::new(&backing, &mnt, Options { strict_names: !lax })
            .expect("faultfs mounts (needs /dev/fuse and root, or fusermount3)");
        // The data directory exists, durably, before `up` runs: the machine's own setup.
        let data = mnt.join("data");
        fs::create_dir(&data).unwrap();
        fs::File::open(&mnt).unwrap().sync_all().unwrap();
        Some(Rig {
            mount,
            tmp,
            data,
            args,
            port,
            up: None,
            up_pid: Arc::new(AtomicI32::new(0)),
            round: 0,
            story: Vec::new(),
        })
    }

    fn logs(&self) -> PathBuf {
        self.tmp.path().join("logs")
    }

    /// Starts `flotilla up` (its own output goes outside the mount, so it survives crashes).
    fn start(&mut self) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs().join("up.out"))
            .unwrap();
        use std::io::Write;
        writeln!(&out, "==== start after round {}", self.round).unwrap();
        let child = Command::new(BIN)
            .arg("up")
            .arg("--dir")
            .arg(&self.data)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("flotilla up starts");
        self.up_pid.store(child.id() as i32, Ordering::SeqCst);
        self.up = Some(child);
    }

    /// Waits until the router answers a SET: the cluster is back.
    fn await_serving(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = common::connect(self.port).ok().and_then(|mut c| {
                redis::cmd("SET")
                    .arg("probe")
                    .arg("1")
                    .query::<String>(&mut c)
                    .ok()
            });
            if ok.is_some() {
                break;
            }
            if let Some(Ok(Some(status))) = self.up.as_mut().map(|c| c.try_wait()) {
                self.fail(&format!(
                    "{what}: `flotilla up` exited ({status}) instead of serving"
                ));
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "{what}: the router did not serve a SET within 90 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // `up` says "restarted" when it found the directory's cluster, "started" when it
        // made a new one (which would serve, empty).
        let banner = |s: &Self| {
            let out = fs::read_to_string(s.logs().join("up.out")).unwrap_or_default();
            let since = out
                .rsplit("==== start")
                .next()
                .unwrap_or_default()
                .to_owned();
            ["flotilla: restarted", "flotilla: started"]
                .into_iter()
                .find(|b| since.contains(b))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while banner(self).is_none() {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "{what}: `flotilla up` printed no banner within 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.round > 0 && banner(self) != Some("flotilla: restarted") {
            self.fail(&format!(
                "{what}: `flotilla up` did not find its cluster in the data directory and \
                 started a new, empty one"
            ));
        }
    }

    /// Kills `up` and all its descendants at once, waits until they are gone, and saves the
    /// processes' logs (which live on the mount, so the crash will cut them).
    fn kill_all(&mut self) {
        self.check_no_restarts("before the kill");
        let pids = kill_tree(self.up_pid.swap(0, Ordering::SeqCst));
        self.reap(pids);
    }

    fn reap(&mut self, pids: Vec<i32>) {
        if let Some(mut up) = self.up.take() {
            let _ = up.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while pids.iter().any(|&p| alive(p)) {
            if Instant::now() > deadline {
                self.fail("killed processes did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let saved = self.logs().join(format!("round-{}", self.round));
        fs::create_dir_all(&saved).unwrap();
        for e in fs::read_dir(&self.data).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                let _ = fs::copy(e.path(), saved.join(e.file_name()));
            }
        }
    }

    /// The power loss, then `up` again; checks every acknowledged write.
    fn crash_and_restart(&mut self, mode: CrashMode, why: &str, rec: &Recorder) {
        let report = match self.mount.crash(mode) {
            Ok(r) => r,
            Err(e) => self.fail(&format!("the power loss itself failed: {e}")),
        };
        let line = format!(
            "round {} ({why}, {mode:?}) at {:.1} s: {report}",
            self.round,
            rec.start.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        self.story.push(line);
        self.start();
        self.await_serving(&format!("round {} ({why}, {mode:?})", self.round));
        self.check_acked(rec, why);
        self.check_no_restarts("after the restart");
    }

    /// Fails if `up` has had to restart any process since it last started: a replica that
    /// cannot recover its directory exits, and `up` restarts it every second, while the
    /// others serve without it.
    ///
    /// One exit whose log ends in "Address already in use" is tolerated (said, not failed):
    /// a port taken for a moment by another connection's source port is the host's doing.
    fn check_no_restarts(&self, when: &str) {
        let out = fs::read_to_string(self.logs().join("up.out")).unwrap_or_default();
        let since = out.rsplit("==== start").next().unwrap_or_default();
        let mut exits = std::collections::BTreeMap::new();
        for line in since.lines().filter(|l| l.contains(" exited (")) {
            let name = line
                .split(" exited (")
                .next()
                .unwrap_or_default()
                .to_owned();
            let log = line
                .rsplit_once("(see ")
                .map(|(_, l)| l.trim_end_matches(')'));
            let why = log.map(|l| tail(Path::new(l), 3)).unwrap_or_default();
            let n = exits.entry(name).or_insert(0);
            *n += 1;
            if *n > 1 || !why.contains("Address already in use") {
                self.fail(&format!("{when}, round {}: {line}\n{why}", self.round));
            }
            eprintln!("round {}: tolerated: {line}: {}", self.round, why.trim());
        }
    }

    /// A round whose kill is done by a faultfs trip, at the first write matching `trip`.
    /// `stop`, if given, is set right after the kill (clients that should write no more).
    fn trip_round(
        &mut self,
        trip: Trip,
        mode: CrashMode,
        why: &str,
        rec: &Recorder,
        stop: Option<Arc<AtomicBool>>,
    ) {
        self.round += 1;
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = self.up_pid.clone();
        self.mount.arm_trip(trip, move |path| {
            let pids = kill_tree(pid.swap(0, Ordering::SeqCst));
            if let Some(stop) = stop {
                stop.store(true, Ordering::Relaxed);
            }
            let _ = tx.send((path.to_path_buf(), pids));
        });
        let (path, pids) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(x) => x,
            Err(_) => self.fail(&format!(
                "round {}: no write {why} within 120 s",
                self.round
            )),
        };
        eprintln!(
            "round {}: killed at a write to {}",
            self.round,
            path.display()
        );
        self.reap(pids);
        self.check_no_restarts("before the trip's kill");
        self.crash_and_restart(mode, why, rec);
    }

    /// Every acknowledged SET reads back, with its value.
    fn check_acked(&self, rec: &Recorder, why: &str) {
        let acked = rec.acked.lock().unwrap().clone();
        let mut con = self.connection();
        for (k, v) in &acked {
            let mut tries = 0;
            let got: Option<String> = loop {
                match redis::cmd("GET").arg(k).query(&mut con) {
                    Ok(got) => break got,
                    Err(e) if tries < 5 => {
                        eprintln!("GET {k} failed ({e}); retrying");
                        tries += 1;
                        con = self.connection();
                    }
                    Err(e) => self.fail(&format!("round {}: GET {k} failed: {e}", self.round)),
                }
            };
            if got.as_deref() != Some(v.as_str()) {
                let short = |s: &str| format!("{:?} ({} bytes)", &s[..s.len().min(40)], s.len());
                let (v, got) = (short(v), got.as_deref().map(short));
                self.fail(&format!(
                    "round {} ({why}): acknowledged SET {k} = {v} reads back as {got:?} \
                     ({} acknowledged SETs checked before it)",
                    self.round,
                    acked.iter().position(|a| a.0 == *k).unwrap_or(0)
                ));
            }
        }
        eprintln!(
            "round {}: all {} acknowledged SETs read back",
            self.round,
            acked.len()
        );
    }

    fn connection(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match common::connect(self.port) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    self.fail(&format!("cannot connect to the router: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Fails the test with the rounds so far and the tails of every log.
    fn fail(&self, msg: &str) -> ! {
        let mut text = format!("POWER-LOSS TIER FAILED: {msg}\nrounds:\n");
        for s in &self.story {
            text += &format!("  {s}\n");
        }
        let mut logs = vec![self.logs().join("up.out")];
        if let Ok(rd) = fs::read_dir(&self.data) {
            logs.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log")),
            );
        }
        // The last crash cut the logs on the mount: show them as they were before it too.
        if let Ok(rd) = fs::read_dir(self.logs().join(format!("round-{}", self.round))) {
            logs.extend(rd.flatten().map(|e| e.path()));
        }
        logs.sort();
        for p in logs {
            text += &format!("---- last lines of {}\n{}", p.display(), tail(&p, 15));
        }
        text += &format!(
            "(each round's process logs, as they were before its crash: {})\n",
            self.logs().display()
        );
        if let Some(pid) = self.up.as_ref().map(|c| c.id() as i32) {
            kill_tree(pid);
        }
        panic!("{text}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Leave no process behind (they would hold the mount busy).
        let pid = self.up_pid.swap(0, Ordering::SeqCst);
        if pid != 0 {
            for p in kill_tree(pid) {
                while alive(p) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if let Some(mut up) = self.up.take() {
            let _ = up.wait();
        }
    }
}

fn tail(p: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    // A torn crash can leave zeros in a log: drop them, and blank lines, so the tail
    // shows the last words.
    let s = s.replace('\0', "");
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// `pid`'s children (from /proc).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether any thread of `pid` still runs (a zombie holds no file or port).
fn alive(pid: i32) -> bool {
    // Every thread counts, not only the process's first: once killed, that thread may show
    // as a zombie while others are still exiting, and those still hold the process's files
    // (a data directory's lock among them). Gone means: no thread that is not a zombie.
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
    })
}

/// Stops `root` (so it restarts nobody), finds its descendants, and SIGKILLs them all, one
/// right after the other; returns their pids. Safe to call from faultfs's thread (it reads
/// only /proc).
fn kill_tree(root: i32) -> Vec<i32> {
    if root == 0 {
        return Vec::new();
    }
    let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let kids = children(all[i]);
        all.extend(kids);
        i += 1;
    }
    for &p in all.iter().rev() {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    all
}

/// Waits until the writers have `more` more acknowledged SETs.
fn await_writes(rig: &Rig, rec: &Recorder, more: usize) {
    let target = rec.acked.lock().unwrap().len() + more;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.acked.lock().unwrap().len() < target {
        if Instant::now() > deadline {
            rig.fail(&format!("writes stalled in round {}", rig.round));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client overwriting `BULK_KEYS` keys with 1 MiB values (the letter of a tag repeated),
/// recorded in the history under the tag, until `stop`: it grows the Raft log to the
/// snapshot threshold with a state big enough that a snapshot takes a while to write.
fn bulk_writer(port: u16, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let mut con = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            con = common::connect(port).ok();
            if con.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = format!("big-{}", n % BULK_KEYS as u64);
        let tag = format!("b{n}");
        let call = rec.now();
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(bulk_value(&tag)).query(c);
        let out = r.as_ref().ok().map(|_| KvOutput::Done);
        rec.record(100, KvInput::put(&key, &tag), call, out);
        if r.is_err() {
            con = None;
        }
        n += 1;
    }
}

/// A client SETting fresh keys to 3 KB values until `stop` (acknowledged ones are checked
/// like the small writers').
fn medium_writer(id: u64, port: u16, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let mut con = None;
    let mut j = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            con = common::connect(port).ok();
            if con.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = format!("mid-{id}-{j}");
        let mut value = format!("m{id}-{j}/");
        value.extend(std::iter::repeat_n('.', 3000 - value.len()));
        let call = rec.now();
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(c);
        let out = r.as_ref().ok().map(|_| KvOutput::Done);
        rec.record(id, KvInput::put(&key, &value), call, out);
        match r {
            Ok(()) => rec.acked.lock().unwrap().push((key, value)),
            Err(_) => con = None,
        }
        j += 1;
    }
}

/// A bulk value: `tag` followed by `.` padding to `BULK` bytes.
fn bulk_value(tag: &str) -> String {
    let mut v = String::with_capacity(BULK);
    v.push_str(tag);
    v.push('/');
    while v.len() < BULK {
        v.push('.');
    }
    v
}

/// Reads every bulk key back into the history (as its tag); a value that is not a whole
/// bulk value (torn, mixed) fails the test.
fn read_bulk(rig: &Rig, rec: &Recorder) {
    let mut con = rig.connection();
    for i in 0..BULK_KEYS {
        let key = format!("big-{i}");
        let call = rec.now();
        let got: Option<String> = match redis::cmd("GET").arg(&key).query(&mut con) {
            Ok(v) => v,
            Err(e) => rig.fail(&format!("GET {key}: {e}")),
        };
        let tag = match &got {
            None => String::new(),
            Some(v) => {
                let tag = v.split('/').next().unwrap_or_default().to_owned();
                if *v != bulk_value(&tag) {
                    rig.fail(&format!(
                        "{key} holds a damaged value ({} bytes, starting {:?})",
                        v.len(),
                        &v[..v.len().min(40)]
                    ));
                }
                tag
            }
        };
        rec.record(101, KvInput::get(&key), call, Some(KvOutput::value(tag)));
    }
}

fn check_history(rig: &Rig, rec: &Recorder) {
    let history = rec.ops.lock().unwrap().clone();
    match flotilla_check::check_kv(&history, Some(Duration::from_secs(60))) {
        flotilla_check::CheckResult::Illegal(e) => rig.fail(&format!(
            "the history ({} operations) is not linearizable:\n{e}",
            history.len()
        )),
        flotilla_check::CheckResult::Unknown => eprintln!("linearizability check timed out"),
        flotilla_check::CheckResult::Ok => {}
    }
    eprintln!("history of {} operations is linearizable", history.len());
}

#[test]
#[ignore = "needs root and /dev/fuse; run by .ci/run"]
fn single_group_survives_power_losses() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (port, base) = cluster_ports(3);
    let args = vec![
        "--single".to_owned(),
        "--port".into(),
        port.to_string(),
        "--base-port".into(),
        base.to_string(),
    ];
    let Some(mut rig) = Rig::new(args, port) else {
        return;
    };
    rig.start();
    rig.await_serving("first start");
    let rec = Recorder::new();
    let (stop, writers) = start_writers(3, port, &rec);
    let rounds = [
        ("under load", CrashMode::Drop),
        ("under load", torn(11)),
        ("under load", CrashMode::Drop),
    ];
    for (why, mode) in rounds {
        rig.round += 1;
        await_writes(&rig, &rec, 40);
        rig.kill_all();
        rig.crash_and_restart(mode, why, &rec);
    }

    // Bulk writes grow the log to the snapshot threshold.
    let bulk_stop = Arc::new(AtomicBool::new(false));
    let bulk = {
        let (rec, stop) = (rec.clone(), bulk_stop.clone());
        std::thread::spawn(move || bulk_writer(port, rec, stop))
    };
    // A power loss while a snapshot is being written: killed at the first write 1 MiB into
    // a snapshot's temporary file (a spool file: snapshots are encoded straight into one,
    // then renamed into place as `snapshot-<generation>.snap`).
    let snapshot = Trip {
        name_prefix: "spool-".into(),
        name_suffix: ".tmp".into(),
        min_offset: 1 << 20,
        ..Trip::default()
    };
    rig.trip_round(snapshot, torn(23), "while writing a snapshot", &rec, None);
    // A power loss in the middle of a big WAL batch (1 MiB values: each batch is several
    // FUSE writes of up to 128 KiB): killed right after one of them reached the cache, so
    // the torn crash keeps some of the batch's pages and loses others, the earlier ones
    // included.
    let batch = Trip {
        name_prefix: "wal-".into(),
        name_suffix: ".log".into(),
        min_len: 64 << 10,
        ..Trip::default()
    };
    rig.trip_round(batch, torn(31), "in the middle of a WAL batch", &rec, None);
    // A power loss with a whole big batch written and its fsync not done: killed at the
    // fsync of a WAL segment holding 512 KiB or more unsynced. The torn crash keeps a
    // random subset of the batch's pages, so a hole can precede whole records: the batch's
    // framing must make that a torn tail, not corruption.
    let unsynced = Trip {
        name_prefix: "wal-".into(),
        name_suffix: ".log".into(),
        min_len: 512 << 10,
        at_fsync: true,
        ..Trip::default()
    };
    let why = "with a whole WAL batch unsynced";
    rig.trip_round(unsynced, torn(47), why, &rec, Some(bulk_stop.clone()));
    bulk_stop.store(true, Ordering::Relaxed);
    bulk.join().unwrap();

    // A torn batch of several records: 3 KB values from 4 more clients make group-commit
    // batches of a few records over a few pages; killed at the fsync of one holding 3 pages
    // or more, the torn crash can keep a later record whole after losing an earlier page.
    let medium_stop = Arc::new(AtomicBool::new(false));
    let medium: Vec<_> = (0..4)
        .map(|id| {
            let (rec, stop) = (rec.clone(), medium_stop.clone());
            std::thread::spawn(move || medium_writer(200 + id, port, rec, stop))
        })
        .collect();
    let several = Trip {
        name_prefix: "wal-".into(),
        name_suffix: ".log".into(),
        min_len: 3 * faultfs::PAGE as usize,
        at_fsync: true,
        ..Trip::default()
    };
    let why = "with a batch of several records unsynced";
    rig.trip_round(several, torn(53), why, &rec, Some(medium_stop));
    for t in medium {
        t.join().unwrap();
    }

    await_writes(&rig, &rec, 40);
    stop_writers(stop, writers);
    rig.check_acked(&rec, "at the end");
    rig.check_no_restarts("at the end");
    read_bulk(&rig, &rec);
    check_history(&rig, &rec);
    eprintln!("{} power losses survived:", rig.round);
    for s in &rig.story {
        eprintln!("  {s}");
    }
}

#[test]
#[ignore = "needs root and /dev/fuse; run by .ci/run"]
fn sharded_cluster_survives_power_losses() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (port, base) = cluster_ports(9);
    let args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--base-port".into(),
        base.to_string(),
    ];
    let Some(mut rig) = Rig::new(args, port) else {
        return;
    };
    rig.start();
    rig.await_serving("first start");
    let rec = Recorder::new();
    let (stop, writers) = start_writers(3, port, &rec);

    rig.round += 1;
    await_writes(&rig, &rec, 40);
    rig.kill_all();
    rig.crash_and_restart(CrashMode::Drop, "under load", &rec);

    // A power loss while a shard moves: the controller has committed the configuration that
    // gives shard 0 to the other group; the groups are moving it when everything dies.
    rig.round += 1;
    await_writes(&rig, &rec, 40);
    let from = shard_owner(&rig, 0);
    let to = if from == 1 { 2 } else { 1 };
    let out = Command::new(BIN)
        .args(["ctl", "move", "0", &to.to_string(), "--dir"])
        .arg(&rig.data)
        .output()
        .expect("ctl runs");
    if !out.status.success() {
        rig.fail(&format!(
            "ctl move 0 {to}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    rig.kill_all();
    rig.crash_and_restart(
        torn(5),
        &format!("during the move of shard 0 from group {from} to {to}"),
        &rec,
    );
    // The move finishes after the restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    while shard_owner(&rig, 0) != to {
        if Instant::now() > deadline {
            rig.fail(&format!(
                "shard 0's move was lost: the configuration does not give it to group {to}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    rig.round += 1;
    await_writes(&rig, &rec, 40);
    rig.kill_all();
    rig.crash_and_restart(torn(99), "under load", &rec);

    await_writes(&rig, &rec, 40);
    stop_writers(stop, writers);
    rig.check_acked(&rec, "at the end");
    rig.check_no_restarts("at the end");
    check_history(&rig, &rec);
    eprintln!("{} power losses survived:", rig.round);
    for s in &rig.story {
        eprintln!("  {s}");
    }
}

/// Ports for `n` servers and a router, all below the kernel's ephemeral range (which starts
/// at 32768): a restart binds every port again while the processes starting with it dial
/// out, and an outgoing connection's source port must not take a server's. Returns
/// (router port, base port); checked free: base..base+n, their metrics ports (+100), the
/// router's port and its metrics port (+1).
fn cluster_ports(n: u16) -> (u16, u16) {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let base = 10_000 + (common::rand_u32() % 22_000) as u16;
        let (router, needed) = (base + n, base..base + n + 2);
        if needed.clone().all(free) && (base + 100..base + 100 + n).all(free) {
            return (router, base);
        }
    }
    panic!("no free ports below 32768");
}

/// The group the latest configuration gives `shard` to (from `ctl shards --json`).
fn shard_owner(rig: &Rig, shard: usize) -> u64 {
    let out = Command::new(BIN)
        .args(["ctl", "shards", "--json", "--dir"])
        .arg(&rig.data)
        .output()
        .expect("ctl runs");
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => rig.fail(&format!(
            "ctl shards --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    };
    match v["config"]["shards"][shard].as_u64() {
        Some(g) => g,
        None => rig.fail(&format!("no owner for shard {shard} in {}", v["config"])),
    }
}
