//! Process-level fault tests: a real `flotilla up` cluster (3 replica processes and the
//! router) on loopback, written through the Redis protocol by several clients while replica
//! processes are `kill -9`ed, the whole cluster is restarted from disk, and a WAL tail is
//! corrupted. Every acknowledged write must stay readable, and the whole history must be
//! linearizable (the project's checker).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    check_all_acked, connect, ctl_status, free_ports, free_up_ports, kill9, start_writers,
    stop_writers, Recorder, TestDir, BIN,
};

struct Cluster {
    dir: PathBuf,
    port: u16,
    base: u16,
    up: Option<Child>,
}

impl Cluster {
    fn start(dir: &Path, port: u16, base: u16) -> Cluster {
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            port,
            base,
            up: None,
        };
        c.launch();
        c
    }

    fn launch(&mut self) {
        // Beside the data directory, so that a failed test keeps it with the replicas' logs.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_file_name("up.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["up", "--single", "--dir"])
            .arg(&self.dir)
            .args([
                "--port",
                &self.port.to_string(),
                "--base-port",
                &self.base.to_string(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("flotilla up starts");
        self.up = Some(child);
        // Up when the router answers and so does every replica: `up` starts them all at once,
        // and the router answers PING on its own, often before the replicas listen (a test
        // asking replica 0 at once found nothing there).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pong = (self.conn().ok())
                .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok());
            // Only then does cluster.json surely exist whole: `up` writes it before it starts
            // the router.
            let st = if pong { self.status() } else { Vec::new() };
            if pong && st.iter().all(Option::is_some) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not come up within 30 s: PING answered: {pong}; replicas: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        connect(self.port)
    }

    /// Stops `up` with SIGINT (as Ctrl-C) and waits for it.
    fn stop(&mut self) {
        if let Some(mut up) = self.up.take() {
            let pid = nix::unistd::Pid::from_raw(up.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let status = up.wait().expect("up exits");
            assert!(status.success(), "flotilla up exited with {status}");
        }
    }

    /// Each replica's status (None if unreachable), from `flotilla ctl status --json`.
    fn status(&self) -> Vec<Option<serde_json::Value>> {
        ctl_status(&["--dir".as_ref(), self.dir.as_os_str()])
    }

    /// Waits until one replica leads and returns (leader pid, a follower pid).
    fn pids(&self) -> (i32, i32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let st = self.status();
            let leader = st.iter().flatten().find(|s| s["role"] == "leader");
            let follower = st.iter().flatten().find(|s| s["role"] == "follower");
            if let (Some(l), Some(f)) = (leader, follower) {
                return (
                    l["pid"].as_i64().unwrap() as i32,
                    f["pid"].as_i64().unwrap() as i32,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no leader with a follower within 15 s");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn kill_restart_and_corruption_lose_no_acknowledged_write() {
    let tmp = TestDir::new();
    let dir = tmp.path().join("data");
    let (port, base) = free_up_ports(3);
    let mut cluster = Cluster::start(&dir, port, base);
    let rec = Recorder::new();
    let (stop, writers) = start_writers(4, port, &rec);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, follower) = cluster.pids();
    kill9(follower);
    std::thread::sleep(Duration::from_millis(2000));
    let (leader, _) = cluster.pids();
    kill9(leader);
    std::thread::sleep(Duration::from_millis(3000));
    stop_writers(stop, writers);
    check_all_acked(cluster.port, &rec);
    rec.assert_linearizable();

    // A full restart from disk finds every acknowledged write.
    cluster.stop();
    cluster.launch();
    check_all_acked(cluster.port, &rec);

    // A torn WAL tail (a crash mid-write) is cut off on restart; nothing acknowledged is lost.
    cluster.stop();
    let wal = newest_wal(&dir.join("node-1"));
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0x17, 0, 0, 0, 0xde, 0xad]);
    std::fs::write(&wal, bytes).unwrap();
    cluster.launch();
    check_all_acked(cluster.port, &rec);
    let st = cluster.status();
    assert!(
        st.iter().all(Option::is_some),
        "a replica did not come back: {st:?}"
    );
}

fn newest_wal(dir: &Path) -> PathBuf {
    let mut wals: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    wals.sort();
    wals.pop().expect("a WAL segment")
}

#[test]
fn a_process_without_the_secret_is_refused() {
    let tmp = TestDir::new();
    let dir = tmp.path().join("data");
    let (port, base) = free_up_ports(3);
    let cluster = Cluster::start(&dir, port, base);
    let wrong = tmp.path().join("wrong-secret");
    std::fs::write(&wrong, "this-is-not-the-cluster-secret\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "ctl",
            "status",
            "--servers",
            &format!("127.0.0.1:{base}"),
            "--secret-file",
        ])
        .arg(&wrong)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unreachable") && text.contains("secret"),
        "{text}"
    );
    // With the right secret, the same node answers.
    let st = cluster.status();
    assert!(st[0].is_some());
}

#[test]
fn a_second_replica_on_the_same_data_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
    let data = tmp.path().join("node");
    let server = |port: u16| {
        Command::new(BIN)
            .args([
                "server",
                "--id",
                "0",
                "--peers",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            .arg("--secret-file")
            .arg(&secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = server(free_ports(1));
    std::thread::sleep(Duration::from_millis(500));
    let second = server(free_ports(1)).wait_with_output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_replica_runs_from_a_config_file_and_a_bad_one_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
    let port = free_ports(1);
    let config = tmp.path().join("node.toml");
    let text = format!(
        "id = 0\npeers = [\"127.0.0.1:{port}\"]\ndata_dir = {:?}\nmax_raft_state = \"1MiB\"\nread_mode = \"lease\"\nsecret_file = {:?}\n",
        tmp.path().join("data"),
        secret
    );
    std::fs::write(&config, text).unwrap();
    let mut server = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut led = false;
    while !led && Instant::now() < deadline {
        let out = Command::new(BIN)
            .args([
                "ctl",
                "status",
                "--json",
                "--servers",
                &format!("127.0.0.1:{port}"),
                "--secret-file",
            ])
            .arg(&secret)
            .output()
            .unwrap();
        led = String::from_utf8_lossy(&out.stdout).contains("\"role\":\"leader\"");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(led, "the single replica from the config file never led");
    std::fs::write(&config, "id = 0\npeer = []\n").unwrap();
    let out = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `peer`"), "{err}");
    // Timers that cannot work together are refused with the rule they break.
    std::fs::write(
        &config,
        "id = 0\npeers = [\"127.0.0.1:1\"]\nheartbeat = \"100ms\"\nelection_timeout = \"200ms\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("timers"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be at least three heartbeat intervals"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["server", "--id", "0", "--peers", "127.0.0.1:1"])
        .args(["--read-mode", "dirty"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use read-index, lease or log"), "{err}");
    // A replica id in the clients' range (where a router's random id could meet it) is
    // refused, by the server and by `ctl add-node`, before anything starts.
    let out = Command::new(BIN)
        .args([
            "server",
            "--id",
            "4294967296",
            "--join",
            "--listen",
            // Unbindable: a build without the check fails here instead of serving.
            "256.0.0.1:1",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("big-id"))
        .arg("--secret-file")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replica id 4294967296 is too large"), "{err}");
    assert!(!tmp.path().join("big-id").exists(), "nothing was created");
    let out = Command::new(BIN)
        .args(["ctl", "add-node", "4294967296", "127.0.0.1:1"])
        .args(["--servers", "127.0.0.1:1", "--secret-file"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replica id 4294967296 is too large"), "{err}");
}

/// Sends `bytes` on a fresh connection to the router and returns what it answers before
/// closing (or within 2 s).
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_input_gets_errors_and_the_router_keeps_serving() {
    let tmp = TestDir::new();
    let (port, base) = free_up_ports(3);
    let cluster = Cluster::start(&tmp.path().join("data"), port, base);
    // Malformed framing: an error, then the connection closes.
    let r = raw_exchange(port, b"*2\r\n$3\r\nGET\r\n$x\r\n");
    assert!(r.starts_with("-ERR Protocol error"), "{r:?}");
    // A bulk string over the limit is refused before it is read, in plain words.
    let r = raw_exchange(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999\r\n");
    assert!(
        r.starts_with("-ERR Protocol error") && r.contains("exceeds"),
        "{r:?}"
    );
    // One over what Redis itself accepts (512 MiB) gets Redis's words.
    let r = raw_exchange(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999999\r\n");
    assert_eq!(r, "-ERR Protocol error: invalid bulk length\r\n");
    // Unknown commands and wrong arity: errors, and the connection goes on (pipelined).
    let r = raw_exchange(port, b"FOO bar\r\nGET\r\nPING\r\nQUIT\r\n");
    assert!(r.contains("-ERR unknown command 'FOO'"), "{r:?}");
    assert!(
        r.contains("-ERR wrong number of arguments for 'get' command"),
        "{r:?}"
    );
    assert!(r.contains("+PONG") && r.ends_with("+OK\r\n"), "{r:?}");
    // Binary garbage does not take the router down.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = raw_exchange(port, &garbage);
    let mut con = cluster.conn().unwrap();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_command_the_cluster_cannot_answer_times_out_with_an_error() {
    let tmp = TestDir::new();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
    let (port, dead) = (free_ports(1), free_ports(1));
    let mut router = Command::new(BIN)
        .args(["router", "--servers", &format!("127.0.0.1:{dead}")])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--command-timeout",
            "1s",
        ])
        .arg("--secret-file")
        .arg(&secret)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("router.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reply = String::new();
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let started = Instant::now();
            reply = raw_exchange(port, b"SET k v\r\nQUIT\r\n");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "took {:?}",
                started.elapsed()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = router.try_wait().unwrap();
    router.kill().unwrap();
    router.wait().unwrap();
    assert!(
        reply.starts_with("-ERR no answer from the cluster within 1 s"),
        "{reply:?} port {port} dead {dead} exited {alive:?}; log:\n{}",
        std::fs::read_to_string(tmp.path().join("router.log")).unwrap()
    );
}
