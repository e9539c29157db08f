//! Real network partitions, the Jepsen way: each replica process runs in its own network
//! namespace, joined to the others by veth pairs on a bridge in the root namespace, where the
//! router and the test's clients run. A partition between two replicas is a pair of blackhole
//! routes (one in each namespace), so the router keeps reaching every replica, as a client
//! load balancer would, while the replicas cannot reach each other.
//!
//! The scenarios, repeated: the leader cut off from the majority (it must step down within the
//! check-quorum bound and answer no read, while the majority elects and keeps writing); a
//! follower cut off and healed (it must not raise the term when it returns: pre-vote); every
//! replica cut off from every other (nothing commits); and at the end every acknowledged write
//! is readable and the whole history is linearizable.
//!
//! Namespaces need root. This tier is `#[ignore]`d in the default test run and run by CI with
//! `cargo test --release -p flotilla --test netns -- --ignored`; without root it fails saying
//! so, rather than passing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    check_all_acked, connect, ctl_status, free_ports, start_writers, stop_writers, Recorder,
    TestDir, BIN,
};

/// Replicas' port inside their namespaces.
const PORT: u16 = 7000;

/// How long an isolated leader may go on leading: check-quorum steps it down one minimum
/// election timeout (300 ms with the server's defaults) after it last heard from a majority,
/// checked every tick; the rest is slack for `ctl status` and scheduling.
const STEP_DOWN_BOUND: Duration = Duration::from_millis(1500);

/// The namespaces, veths and bridge of one test, removed on drop (even when the test fails).
struct Net {
    /// Short and unique per test process: interface names are limited to 15 bytes.
    tag: String,
    /// Third byte of the 10.x.y.0/24 subnet.
    subnet: u8,
    n: usize,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"))
}

/// Runs `ip args…` and fails the test, with ip's words, if it fails.
fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Net {
    fn create(n: usize) -> Net {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test tier makes network namespaces, which needs root: run it as root \
             (CI does), or leave it out (it is #[ignore]d by default)"
        );
        let id = std::process::id() % 10_000;
        let net = Net {
            tag: format!("fl{id}"),
            subnet: (id % 200) as u8 + 20,
            n,
        };
        net.remove();
        ip_ok(&["link", "add", &net.bridge(), "type", "bridge"]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", net.host_ip(1)),
            "dev",
            &net.bridge(),
        ]);
        ip_ok(&["link", "set", &net.bridge(), "up"]);
        for i in 0..n {
            let (ns, veth) = (net.ns(i), net.veth(i));
            ip_ok(&["netns", "add", &ns]);
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
            ip_ok(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip_ok(&["link", "set", &veth, "master", &net.bridge()]);
            ip_ok(&["link", "set", &veth, "up"]);
            let addr = format!("{}/24", net.replica_ip(i));
            ip_ok(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }
    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }
    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }
    fn host_ip(&self, last: u8) -> String {
        format!("10.231.{}.{last}", self.subnet)
    }
    fn replica_ip(&self, i: usize) -> String {
        self.host_ip(10 + i as u8)
    }
    fn peers(&self) -> String {
        (0..self.n)
            .map(|i| format!("{}:{PORT}", self.replica_ip(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts `a` and `b` off from each other (both directions).
    fn cut(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let dst = format!("{}/32", self.replica_ip(to));
            ip_ok(&["-n", &self.ns(from), "route", "add", "blackhole", &dst]);
        }
    }

    /// Cuts `i` off from every other replica.
    fn isolate(&self, i: usize) {
        for j in (0..self.n).filter(|&j| j != i) {
            self.cut(i, j);
        }
    }

    /// Every replica cut off from every other.
    fn split_all(&self) {
        for a in 0..self.n {
            for b in a + 1..self.n {
                self.cut(a, b);
            }
        }
    }

    fn heal(&self) {
        for i in 0..self.n {
            ip_ok(&["-n", &self.ns(i), "route", "flush", "type", "blackhole"]);
        }
    }

    /// Removes whatever this tag left (ignoring what does not exist).
    fn remove(&self) {
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.ns(i)]);
            let _ = ip(&["link", "del", &self.veth(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Child processes killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    // Info: replicas log every change of term, role and leader, which a failure is read from.
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// A replica's role and term, as `ctl status` reports them.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    role: String,
    term: u64,
}

struct Cluster<'a> {
    net: &'a Net,
    secret: std::path::PathBuf,
}

impl Cluster<'_> {
    fn status(&self) -> Vec<Option<Seen>> {
        let peers = self.net.peers();
        let rows = ctl_status(&[
            "--servers".as_ref(),
            peers.as_ref(),
            "--secret-file".as_ref(),
            self.secret.as_os_str(),
        ]);
        rows.into_iter()
            .map(|r| {
                r.map(|r| Seen {
                    role: r["role"].as_str().unwrap_or("?").to_owned(),
                    term: r["term"].as_u64().unwrap_or(0),
                })
            })
            .collect()
    }

    /// Waits until `pred` holds of the status; returns it, or fails after `limit`.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&[Option<Seen>]) -> bool,
    ) -> Vec<Option<Seen>> {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.status();
            if pred(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last status {st:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for exactly one leader among `among`, the highest term; returns it and its term.
    fn leader_among(&self, among: &[usize]) -> (usize, u64) {
        let st = self.wait_for("a leader", Duration::from_secs(10), |st| {
            among
                .iter()
                .filter(|&&i| st[i].as_ref().is_some_and(|s| s.role == "leader"))
                .count()
                == 1
        });
        let l = *among
            .iter()
            .find(|&&i| st[i].as_ref().is_some_and(|s| s.role == "leader"))
            .unwrap();
        (l, st[l].as_ref().unwrap().term)
    }
}

impl Cluster<'_> {
    /// After a heal: waits until every replica is back in one term under one leader, then a
    /// little longer, so the next fault starts from a settled cluster.
    fn settle(&self) {
        self.wait_for("the cluster settles", Duration::from_secs(10), |st| {
            let terms: Vec<u64> = st.iter().flatten().map(|s| s.term).collect();
            let leaders = st.iter().flatten().filter(|s| s.role == "leader").count();
            terms.len() == st.len() && terms.iter().all(|&t| t == terms[0]) && leaders == 1
        });
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where each replica's log ended at a moment, to read what the replicas logged since.
struct LogMarks(Vec<(PathBuf, usize)>);

impl LogMarks {
    fn now(logs: &[PathBuf]) -> LogMarks {
        LogMarks(
            logs.iter()
                .map(|p| (p.clone(), std::fs::read(p).map_or(0, |b| b.len())))
                .collect(),
        )
    }

    /// The stalls of 200 ms or more that replicas' event loops logged since the mark, as
    /// (replica, milliseconds late).
    fn stalls(&self) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for (i, (path, from)) in self.0.iter().enumerate() {
            let bytes = std::fs::read(path).unwrap_or_default();
            let text = String::from_utf8_lossy(bytes.get(*from..).unwrap_or_default());
            for (_, rest) in text
                .lines()
                .filter_map(|l| l.split_once("stalled: late_ms="))
            {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(ms) = digits.parse() {
                    out.push((i, ms));
                }
            }
        }
        out
    }
}

fn acked(rec: &Recorder) -> usize {
    rec.acked.lock().unwrap().len()
}

/// Acknowledged writes keep arriving: at least one more within `limit`.
fn assert_writes_progress(rec: &Recorder, limit: Duration, when: &str) {
    let before = acked(rec);
    let deadline = Instant::now() + limit;
    while acked(rec) == before {
        assert!(
            Instant::now() < deadline,
            "{when}: no write was acknowledged within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root for network namespaces; CI runs it with --ignored"]
fn netns_partitions_keep_the_service_safe_and_available() {
    let net = Net::create(3);
    // Data and logs in memory: the partitions are the subject, and the term checks below
    // (a returning follower must not disturb the leader) would otherwise also catch elections
    // that this VM's disk causes: a run failed when the leader and a follower each spent
    // 433 ms in one fsync, longer than the 300 ms election timeout, so check-quorum stepped
    // the leader down and it was re-elected in the next term.
    let tmp = TestDir::in_memory();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "netns-test-cluster-secret\n").unwrap();
    let mut procs = Procs(Vec::new());
    for i in 0..net.n {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns(i), BIN, "server"])
            .args(["--id", &i.to_string(), "--peers", &net.peers()])
            .arg("--data-dir")
            .arg(tmp.path().join(format!("node-{i}")))
            .arg("--secret-file")
            .arg(&secret);
        procs.0.push(spawn_logged(
            &mut cmd,
            &tmp.path().join(format!("node-{i}.log")),
        ));
    }
    // The router answers after 1 s when the cluster cannot: writers then record an unknown
    // outcome and go on, instead of hanging through a partition.
    let port = free_ports(1);
    // A pinned router talks to its --servers only, never to other members it learns of.
    let router = |servers: &str, pinned: bool, port: u16, log: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args(["router", "--servers", servers])
            .args(pinned.then_some("--pin-servers"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--command-timeout", "1s", "--secret-file"])
            .arg(&secret);
        spawn_logged(&mut cmd, &tmp.path().join(log))
    };
    procs
        .0
        .push(router(&net.peers(), false, port, "router.log"));
    let cluster = Cluster {
        net: &net,
        secret: secret.clone(),
    };
    let logs: Vec<PathBuf> = (0..net.n)
        .map(|i| tmp.path().join(format!("node-{i}.log")))
        .collect();
    let all: Vec<usize> = (0..net.n).collect();
    cluster.leader_among(&all);

    let rec = Recorder::new();
    let (stop, writers) = start_writers(3, port, &rec);
    assert_writes_progress(&rec, Duration::from_secs(10), "at start");

    for round in 0..2 {
        // 1. The leader cut off from the majority.
        let (old, term) = cluster.leader_among(&all);
        let rest: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
        net.isolate(old);
        let cut_at = Instant::now();
        cluster.wait_for("the isolated leader steps down", STEP_DOWN_BOUND, |st| {
            st[old].as_ref().is_some_and(|s| s.role != "leader")
        });
        eprintln!(
            "round {round}: isolated leader {old} stepped down after {:?}",
            cut_at.elapsed()
        );
        let (new, new_term) = cluster.leader_among(&rest);
        assert!(
            new_term > term,
            "the majority elected {new} in term {new_term} <= {term}"
        );
        assert_writes_progress(&rec, Duration::from_secs(5), "majority side");
        // A client that can reach only the old leader gets no read.
        let lone_port = free_ports(1);
        let lone = format!("{}:{PORT}", net.replica_ip(old));
        let mut lone_router = Procs(vec![router(&lone, true, lone_port, "lone-router.log")]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut con = loop {
            if let Ok(c) = connect(lone_port) {
                break c;
            }
            assert!(Instant::now() < deadline, "the lone router did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let read: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg("shared-0").query(&mut con);
        assert!(
            read.is_err(),
            "the cut-off old leader answered a read: {read:?}"
        );
        drop(con);
        lone_router.0[0].kill().unwrap();
        net.heal();
        cluster.settle();

        // 2. A follower cut off (2 | 1), then healed: with pre-vote it does not raise the term
        // while cut off, so when it returns the leader keeps leading in the same term.
        let (leader, term) = cluster.leader_among(&all);
        let follower = (leader + 1) % net.n;
        let marks = LogMarks::now(&logs);
        net.isolate(follower);
        let cut_term = cluster.status()[follower].as_ref().map(|s| s.term);
        std::thread::sleep(Duration::from_secs(3));
        assert_writes_progress(&rec, Duration::from_secs(5), "2 | 1");
        // Nothing but its own elections can change the term of a replica that hears no one.
        let st = cluster.status();
        assert_eq!(
            st[follower].as_ref().map(|s| s.term),
            cut_term,
            "the isolated follower raised its term while cut off: {st:?}"
        );
        net.heal();
        std::thread::sleep(Duration::from_secs(2));
        let st = cluster.status();
        let undisturbed = st[leader]
            == Some(Seen {
                role: "leader".into(),
                term,
            })
            && st[follower].as_ref().map(|s| s.term) == Some(term);
        if !undisturbed {
            // The leader's or the other follower's event loop stalling past an election
            // timeout (this VM stalls whole, every process at once, for up to half a second)
            // may legitimately cost the leader its term; the replicas log every such stall.
            // Without one, the returning follower is to blame. (Its own stalls excuse nothing:
            // the other two, hearing from each other, refuse its pre-votes.)
            let stalls: Vec<(usize, u64)> = (marks.stalls().into_iter())
                .filter(|&(i, _)| i != follower)
                .collect();
            assert!(
                !stalls.is_empty(),
                "a follower returning from isolation disturbed the leader (term {term}), \
                 and neither the leader nor the other follower logged a stall: {st:?}"
            );
            eprintln!(
                "round {round}: the leader of term {term} did not last across stalls \
                 (replica, ms) {stalls:?}: {st:?}"
            );
            cluster.settle();
        }

        // 3. Every replica alone (1 | 1 | 1): nothing commits; then heal and writes resume.
        net.split_all();
        std::thread::sleep(Duration::from_millis(1500));
        let during = acked(&rec);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            acked(&rec),
            during,
            "a write was acknowledged with every replica alone"
        );
        net.heal();
        cluster.settle();
        assert_writes_progress(&rec, Duration::from_secs(10), "after healing 1 | 1 | 1");
    }

    stop_writers(stop, writers);
    check_all_acked(port, &rec);
    rec.assert_linearizable();
    eprintln!(
        "{} operations, {} acknowledged writes",
        rec.ops.lock().unwrap().len(),
        acked(&rec)
    );
}
