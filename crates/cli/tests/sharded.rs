//! The sharded deployment as real processes: `flotilla up` (a controller of 3, groups 1 and 2
//! of 3, the router), a third group started with `flotilla server --role shard`, clients
//! writing through the router while `flotilla ctl join` adds group 3 and `ctl leave` removes
//! group 1. Every acknowledged write must be read back (every acknowledged APPEND exactly
//! once), the history must be linearizable, and multi-key Redis commands must work across
//! groups before and after the changes.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    check_all_acked, connect, free_up_ports, start_writers, stop_writers, Recorder, TestDir, BIN,
};
use flotilla_check::{KvOp, KvOutput};

/// Child processes, stopped (SIGTERM, then SIGKILL) when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ctl(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("ctl")
        .args(args)
        .arg("--dir")
        .arg(data)
        .output()
        .expect("ctl runs")
}

/// Runs `ctl ARGS… --wait`, requires success, returns how long it took.
fn ctl_change(data: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let mut all = args.to_vec();
    all.extend(["--wait", "--timeout", "30s"]);
    let out = ctl(data, &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("settled"),
        "`ctl {}` failed:\n{text}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ctl {}:\n{text}", args.join(" "));
    t.elapsed()
}

fn acked(rec: &Recorder) -> usize {
    rec.acked.lock().unwrap().len()
}

/// Waits until the writers have had `more` more SETs acknowledged.
fn await_writes(rec: &Recorder, more: usize, when: &str) {
    let target = acked(rec) + more;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked(rec) < target {
        assert!(Instant::now() < deadline, "writes stalled {when}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// MSET of keys spread over every shard, then MGET (with a missing key) and DEL, checking
/// the replies come back in the keys' order.
fn multi_key_commands(port: u16, tag: &str) {
    let mut con = connect(port).expect("connect");
    let keys: Vec<String> = (0..20).map(|i| format!("mk-{tag}-{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for (i, k) in keys.iter().enumerate() {
        mset.arg(k).arg(format!("val-{i}"));
    }
    let ok: String = mset.query(&mut con).expect("MSET");
    assert_eq!(ok, "OK");
    let mut mget = redis::cmd("MGET");
    mget.arg(&keys).arg(format!("mk-{tag}-missing"));
    let got: Vec<Option<String>> = mget.query(&mut con).expect("MGET");
    let mut want: Vec<Option<String>> = (0..20).map(|i| Some(format!("val-{i}"))).collect();
    want.push(None);
    assert_eq!(got, want, "MGET after MSET ({tag})");
    let n: i64 = redis::cmd("DEL")
        .arg(&keys[..10])
        .arg("no-such-key")
        .query(&mut con)
        .expect("DEL");
    assert_eq!(n, 10);
    let n: i64 = redis::cmd("EXISTS")
        .arg(&keys)
        .query(&mut con)
        .expect("EXISTS");
    assert_eq!(n, 10);
}

#[test]
fn join_and_leave_under_load_lose_and_duplicate_nothing() {
    let tmp = TestDir::new();
    let data = tmp.path().join("data");
    let (port, base) = free_up_ports(12);
    let up = Command::new(BIN)
        .args(["up", "--dir"])
        .arg(&data)
        .args([
            "--port",
            &port.to_string(),
            "--base-port",
            &base.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flotilla up starts");
    let mut procs = Procs(vec![up]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = connect(port).ok().and_then(|mut c| {
            redis::cmd("SET")
                .arg("probe")
                .arg("1")
                .query::<String>(&mut c)
                .ok()
        });
        if ok.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the router did not serve a SET within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    multi_key_commands(port, "before");

    // Group 3, not yet joined: it serves nothing until the controller gives it shards.
    let g3: Vec<String> = (9..12).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let ctrlers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    for i in 0..3 {
        let log = std::fs::File::create(tmp.path().join(format!("group-3-{i}.log"))).unwrap();
        let child = Command::new(BIN)
            .args([
                "server",
                "--role",
                "shard",
                "--gid",
                "3",
                "--id",
                &i.to_string(),
            ])
            .args(["--peers", &g3.join(","), "--ctrlers", &ctrlers.join(",")])
            .arg("--data-dir")
            .arg(tmp.path().join(format!("group-3-{i}")))
            .arg("--secret-file")
            .arg(data.join("secret"))
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("a group 3 server starts");
        procs.0.push(child);
    }

    let rec = Recorder::new();
    let started = Instant::now();
    let (stop, writers) = start_writers(4, port, &rec);
    await_writes(&rec, 100, "before the join");
    let join = ctl_change(&data, &["join", "3", &g3.join(",")]);
    await_writes(&rec, 100, "after the join");
    let leave = ctl_change(&data, &["leave", "1"]);
    await_writes(&rec, 100, "after the leave");
    // The two groups left cannot both leave.
    let out = ctl(&data, &["leave", "2", "3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("last groups"), "{err}");
    stop_writers(stop, writers);
    let elapsed = started.elapsed();

    let ops = rec.ops.lock().unwrap().len();
    eprintln!(
        "join settled in {join:?}, leave in {leave:?} (ctl round trips included); {ops} \
         operations in {elapsed:?}: {:.0} ops/s through the router with 4 clients",
        ops as f64 / elapsed.as_secs_f64()
    );
    check_all_acked(port, &rec);
    // Every acknowledged APPEND exactly once in its key's value, any other at most once.
    let mut con = connect(port).expect("connect");
    let history = rec.ops.lock().unwrap().clone();
    let shared: std::collections::BTreeSet<&str> = (history.iter())
        .filter(|op| op.input.op == KvOp::Append)
        .map(|op| op.input.key.as_str())
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    let mut pieces = 0;
    for key in shared {
        let value: Option<String> = redis::cmd("GET").arg(key).query(&mut con).expect("GET");
        for p in value.unwrap_or_default().split_terminator(',') {
            *seen.entry((key, format!("{p},"))).or_insert(0) += 1;
            pieces += 1;
        }
    }
    let mut appended = 0;
    for op in &history {
        if op.input.op == KvOp::Append {
            let value = &op.input.value;
            let n = (seen.get(&(op.input.key.as_str(), value.clone())))
                .copied()
                .unwrap_or(0);
            if matches!(op.output, KvOutput::Done) {
                assert_eq!(n, 1, "acknowledged append {value} appears {n} times");
                appended += 1;
            } else {
                assert!(n <= 1, "append {value} appears {n} times");
            }
        }
    }
    assert!(appended > 50, "only {appended} appends acknowledged");
    assert!(
        pieces <= history.len(),
        "the shared values hold pieces no client appended"
    );
    rec.assert_linearizable();
    multi_key_commands(port, "after");

    // `ctl status` on a sharded directory shows each group's shards.
    let st = ctl(&data, &["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "{text}");
    for g in ["group 2", "group 3"] {
        assert!(text.contains(g), "ctl status does not show {g}:\n{text}");
    }
    assert!(!text.contains("group 1 "), "group 1 left:\n{text}");

    // Group 1 holds no shard any more: the router does not need it.
    let st = ctl(&data, &["shards", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("JSON");
    assert!(v["config"]["groups"].get("1").is_none(), "{v}");
}
