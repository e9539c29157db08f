//! Key/value benchmarks that print figures (never asserted): operations per virtual second
//! and per wall-clock second through the simulated replicated service, and how long the
//! linearizability checker takes on the resulting history.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_kv::KvReplica;
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

/// The KV report `flotilla bench kv` prints.
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
}
