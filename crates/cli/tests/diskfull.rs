//! A full disk is an error, not a crash (issue 15, item 4).
//!
//! * A process whose own log cannot be written (stderr on a full disk) never panics for it.
//! * `disk_full_on_a_small_tmpfs_is_refused_and_outlived` (ignored: needs root to mount a
//!   tmpfs): `flotilla up --single` with its data on a 48 MB tmpfs, written until the disk is
//!   full. The router answers with an error naming the full disk, promptly; no replica exits
//!   (no restarts, no panics); once space is freed the cluster serves again by itself, and
//!   every acknowledged write reads back.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, BIN};

/// A replica's log is its stderr, a file in its data directory: on a full disk every write
/// to it fails. Logging (tracing's own error report of a failed write went to stderr through
/// `eprintln!`, which panics) and the final error message must shrug that off: the process
/// exits with its ordinary failure status (1), never a panic's (101).
#[test]
fn an_unwritable_log_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    // The metrics port is taken, so the replica fails after it has logged at info level.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let peer = format!("127.0.0.1:{}", free_ports(1));
    let status = Command::new(BIN)
        .args([
            "server",
            "--id",
            "0",
            "--peers",
            &peer,
            "--metrics",
            &metrics,
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .env("RUST_LOG", "info")
        .env("FLOTILLA_SECRET", "test-cluster-secret-0123")
        .stdout(Stdio::null())
        .stderr(File::options().write(true).open("/dev/full").unwrap())
        .status()
        .expect("flotilla runs");
    assert_eq!(
        status.code(),
        Some(1),
        "a failed start with an unwritable log must exit 1, not panic: {status}"
    );
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "cannot mount a tmpfs (this test needs root)");
        Tmpfs(dir)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The replicas' pids, from `ctl status` (every replica must answer).
fn replica_pids(dir: &std::path::Path) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = common::ctl_status(&["--dir".as_ref(), dir.as_os_str()]);
        let pids: Vec<i32> = st
            .iter()
            .flatten()
            .filter_map(|s| s["pid"].as_i64())
            .map(|p| p as i32)
            .collect();
        if pids.len() == 3 && st.iter().flatten().any(|s| s["role"] == "leader") {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not all answer: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root: mounts a tmpfs (run by .ci/run as root)"]
fn disk_full_on_a_small_tmpfs_is_refused_and_outlived() {
    let fs = Tmpfs::mount("48m");
    // Most of the space goes to a file this test removes to give the space back.
    let filler = fs.path().join("filler");
    let ok = Command::new("fallocate")
        .args(["-l", "28M"])
        .arg(&filler)
        .status()
        .expect("fallocate runs");
    assert!(ok.success());
    let dir = fs.path().join("data");
    let outside = tempfile::tempdir().unwrap();
    let up_log = outside.path().join("up.log");
    let (port, base) = (free_ports(1), free_ports(3));
    let mut up = Command::new(BIN)
        .args(["up", "--single", "--dir"])
        .arg(&dir)
        .args([
            "--port",
            &port.to_string(),
            "--base-port",
            &base.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(File::create(&up_log).unwrap())
        .spawn()
        .expect("flotilla up starts");
    let stop_up = scopeguard(up.id() as i32);
    let mut con = loop {
        if let Ok(mut c) = common::connect(port) {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                break c;
            }
        }
        assert!(up.try_wait().unwrap().is_none(), "up exited");
        std::thread::sleep(Duration::from_millis(100));
    };
    let pids = replica_pids(&dir);

    // Write 64 KiB values until the disk is full.
    let value = "v".repeat(64 * 1024);
    let mut acked = Vec::new();
    let started = Instant::now();
    let (first_error, took) = loop {
        let key = format!("k{}", acked.len());
        let t = Instant::now();
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
        match r {
            Ok(()) => acked.push(key),
            Err(e) => break (e.to_string(), t.elapsed()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the disk never filled"
        );
    };
    println!(
        "disk full after {} acknowledged 64 KiB writes; the failing SET was answered in {} ms: {first_error}",
        acked.len(),
        took.as_millis()
    );
    assert!(
        first_error.contains("disk full"),
        "the error names the cause: {first_error}"
    );
    // While the disk stays full, every write is refused the same way, never timed out (one
    // may still fit where a replica had space preallocated: then it is acknowledged).
    let mut worst = took;
    let mut refused = 0;
    for _ in 0..10 {
        let key = format!("k{}", acked.len());
        let t = Instant::now();
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
        worst = worst.max(t.elapsed());
        match r {
            Ok(()) => acked.push(key),
            Err(e) => {
                assert!(e.to_string().contains("disk full"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the disk stopped being full by itself");
    println!(
        "while full: {refused} of 10 writes refused; the slowest answer took {} ms",
        worst.as_millis()
    );
    for &p in &pids {
        assert!(pid_alive(p), "replica {p} exited on a full disk");
    }

    // Space comes back: the cluster resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    loop {
        let r: redis::RedisResult<()> = redis::cmd("SET").arg("after").arg("x").query(&mut con);
        if r.is_ok() {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(60),
            "never resumed: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "resumed {} ms after space came back",
        freed.elapsed().as_millis()
    );
    for k in &acked {
        let got: Option<String> = redis::cmd("GET").arg(k).query(&mut con).expect("GET");
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "acknowledged write of {k} lost"
        );
    }
    // Nobody restarted or panicked, and the replicas' logs name the cause.
    assert_eq!(
        replica_pids(&dir)
            .iter()
            .collect::<std::collections::BTreeSet<_>>(),
        pids.iter().collect()
    );
    let up_says = std::fs::read_to_string(&up_log).unwrap();
    assert!(
        !up_says.contains("restarting"),
        "a process restarted:\n{up_says}"
    );
    let mut named = false;
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.join(format!("node-{i}.log"))).unwrap_or_default();
        assert!(!log.contains("panicked"), "node {i} panicked:\n{log}");
        named |= log.contains("disk full");
    }
    assert!(named, "no replica's log says `disk full`");
    drop(stop_up);
    let _ = up.wait();
}

/// Stops `up` (SIGINT, as Ctrl-C) when dropped, also when the test fails.
fn scopeguard(pid: i32) -> impl Drop {
    struct Stop(i32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }
    Stop(pid)
}
