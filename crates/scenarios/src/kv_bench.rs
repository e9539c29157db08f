//! Key/value benchmarks that print figures (never asserted): operations per virtual second
//! and per wall-clock second through the simulated replicated service, how long the
//! linearizability checker takes on the resulting history, and Get throughput and latency
//! with each way of serving reads ([`ReadMode`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_check::KvOp;
use flotilla_kv::KvReplica;
use flotilla_raft::ReadMode;
use flotilla_testkit::KvTester;

/// Figures from one [`kv_throughput`] run.
#[derive(Debug, Clone, Copy)]
pub struct KvThroughput {
    pub clients: usize,
    pub operations: usize,
    pub virtual_time: Duration,
    pub wall: Duration,
    /// Wall time of the linearizability check of the run's history.
    pub check: Duration,
}

impl KvThroughput {
    pub fn ops_per_virtual_sec(&self) -> f64 {
        self.operations as f64 / self.virtual_time.as_secs_f64()
    }
    pub fn ops_per_wall_sec(&self) -> f64 {
        self.operations as f64 / self.wall.as_secs_f64()
    }
}

/// `clients` clients on 3 replicas (reliable network, snapshots at 64 KiB) doing a mix of
/// 50% Get, 25% Put, 25% Append of 100-byte values on 10 keys, back to back, for `seconds`
/// of virtual time.
pub fn kv_throughput(clients: usize, seconds: u64, seed: u64) -> KvThroughput {
    let t: Rc<KvTester<KvReplica>> = KvTester::kvraft("KvBench", seed, 3, false, Some(64 << 10));
    let t2 = t.clone();
    let t0 = Instant::now();
    let virtual_time = t
        .svc
        .run_for(Duration::from_secs(seconds + 60), async move {
            let t = t2;
            // Wait for a leader before timing.
            t.make_client().get("warm-up").await;
            let start = t.svc.now();
            let stop = Rc::new(Cell::new(false));
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    let (t, stop) = (t.clone(), stop.clone());
                    t.svc.rt.clone().spawn(async move {
                        let ck = t.make_client();
                        let value = "v".repeat(100);
                        while !stop.get() {
                            let key = format!("key{}", t.svc.rand(10));
                            match t.svc.rand(4) {
                                0 => ck.put(&key, &value).await,
                                1 => {
                                    ck.append(&key, &value).await;
                                }
                                _ => {
                                    ck.get(&key).await;
                                }
                            }
                        }
                    })
                })
                .collect();
            t.svc.sleep(Duration::from_secs(seconds)).await;
            stop.set(true);
            for h in handles {
                h.await;
            }
            t.svc.now() - start
        });
    let wall = t0.elapsed();
    let c0 = Instant::now();
    let verdict = t.verdict();
    let check = c0.elapsed();
    assert!(
        !verdict.is_illegal(),
        "benchmark history not linearizable: {verdict}"
    );
    KvThroughput {
        clients,
        operations: t.history_len(),
        virtual_time,
        wall,
        check,
    }
}

/// Figures from one [`kv_get_throughput`] run.
#[derive(Debug, Clone, Copy)]
pub struct KvGets {
    pub mode: ReadMode,
    pub clients: usize,
    pub gets: usize,
    pub virtual_time: Duration,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Entries the leader appended to its log during the run.
    pub log_entries: u64,
    /// Messages sent during the run, clients' included.
    pub messages: u64,
}

impl KvGets {
    pub fn gets_per_virtual_sec(&self) -> f64 {
        self.gets as f64 / self.virtual_time.as_secs_f64()
    }
}

/// `clients` clients on 3 replicas reading by `mode` (reliable network; every disk sync
/// takes a time drawn from `sync`, or none), each doing back-to-back Gets of 10 keys holding
/// 100-byte values, for `seconds` of virtual time. Latency is a Get's virtual time from call
/// to answer.
pub fn kv_get_throughput(
    mode: ReadMode,
    clients: usize,
    seconds: u64,
    sync: Option<(Duration, Duration)>,
    seed: u64,
) -> KvGets {
    let t: Rc<KvTester<KvReplica>> =
        KvTester::kvraft_with("KvGets", seed, 3, false, Some(64 << 10), move |cfg| {
            cfg.read_mode = mode
        });
    t.svc.sim.borrow_mut().set_sync_latency(sync);
    let t2 = t.clone();
    let (virtual_time, start, log_entries, messages) =
        t.svc
            .run_for(Duration::from_secs(seconds + 60), async move {
                let t = t2;
                let ck = t.make_client();
                let value = "v".repeat(100);
                for k in 0..10 {
                    ck.put(&format!("key{k}"), &value).await;
                }
                let leader = t.leader().expect("a leader answered");
                let last_index = |t: &KvTester<KvReplica>| {
                    t.svc
                        .with_server(leader, |r| r.raft().log().last_index())
                        .expect("the leader stays up")
                };
                let entries0 = last_index(&t);
                let messages0 = t.svc.sim.borrow().stats().messages_sent;
                let start = t.svc.now();
                let stop = Rc::new(Cell::new(false));
                let handles: Vec<_> = (0..clients)
                    .map(|_| {
                        let (t, stop) = (t.clone(), stop.clone());
                        t.svc.rt.clone().spawn(async move {
                            let ck = t.make_client();
                            while !stop.get() {
                                ck.get(&format!("key{}", t.svc.rand(10))).await;
                            }
                        })
                    })
                    .collect();
                t.svc.sleep(Duration::from_secs(seconds)).await;
                stop.set(true);
                for h in handles {
                    h.await;
                }
                let messages = t.svc.sim.borrow().stats().messages_sent - messages0;
                (
                    t.svc.now() - start,
                    start,
                    last_index(&t) - entries0,
                    messages,
                )
            });
    let verdict = t.verdict();
    assert!(
        !verdict.is_illegal(),
        "benchmark history not linearizable: {verdict}"
    );
    let (gets, mean, p50, p99) = get_latencies(&t, start);
    KvGets {
        mode,
        clients,
        gets,
        virtual_time,
        mean,
        p50,
        p99,
        log_entries,
        messages,
    }
}

/// The number of Gets called from `start` on that completed, and their mean, median and 99th
/// percentile latency.
fn get_latencies(
    t: &KvTester<KvReplica>,
    start: Duration,
) -> (usize, Duration, Duration, Duration) {
    let from = start.as_nanos() as u64;
    let history = t.history();
    let mut lat: Vec<u64> = history
        .operations()
        .iter()
        .filter(|o| o.input.op == KvOp::Get && o.call >= from)
        .filter_map(|o| o.ret.map(|r| r - o.call))
        .collect();
    assert!(!lat.is_empty(), "no Get completed");
    lat.sort_unstable();
    let at = |q: f64| Duration::from_nanos(lat[((lat.len() - 1) as f64 * q) as usize]);
    let mean = Duration::from_nanos(lat.iter().sum::<u64>() / lat.len() as u64);
    (lat.len(), mean, at(0.5), at(0.99))
}

/// Get throughput and latency side by side for the three read modes (part of the KV report).
pub fn print_read_mode_report() {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (disk, sync) in [
        ("instant disk syncs", None),
        (
            "disk syncs of 1-3 ms",
            Some((Duration::from_millis(1), Duration::from_millis(3))),
        ),
    ] {
        println!();
        println!(
            "Gets only, by read mode (3 replicas, reliable network, 0.5-3 ms latency, {disk})"
        );
        println!(
            "mode      | clients | gets/virtual s | mean ms | p50 ms | p99 ms | log entries/1k gets | msgs/get"
        );
        for clients in [1, 10] {
            for mode in [ReadMode::Log, ReadMode::ReadIndex, ReadMode::Lease] {
                let f = kv_get_throughput(mode, clients, 5, sync, 1);
                println!(
                    "{:9} | {:7} | {:14.0} | {:7.2} | {:6.2} | {:6.2} | {:19.0} | {:8.2}",
                    format!("{mode:?}"),
                    f.clients,
                    f.gets_per_virtual_sec(),
                    ms(f.mean),
                    ms(f.p50),
                    ms(f.p99),
                    f.log_entries as f64 * 1000.0 / f.gets as f64,
                    f.messages as f64 / f.gets as f64
                );
            }
        }
    }
}

/// The KV report `flotilla-lab bench kv` prints.
pub fn print_kv_report() {
    println!("KV service in simulation (3 replicas, reliable network, 0.5-3 ms latency)");
    println!("clients |    ops | ops/virtual s | ops/wall s | history check");
    for clients in [1, 10] {
        let f = kv_throughput(clients, 10, 1);
        println!(
            "{:7} | {:6} | {:13.0} | {:10.0} | {:.3} s",
            f.clients,
            f.operations,
            f.ops_per_virtual_sec(),
            f.ops_per_wall_sec(),
            f.check.as_secs_f64()
        );
    }
    print_read_mode_report();
}
