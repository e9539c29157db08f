//! Sharded throughput in the simulator: operations per virtual second with 1, 2 and 3 groups
//! under uniformly random keys, each group server costing [`SERVICE_TIME`] of virtual time
//! per message it handles (the simulator's service-time mode, a model of a server's CPU).
//! Without that cost a closed loop of clients is limited only by latency, whatever the number
//! of groups; with it each group's leader has a ceiling, and more groups raise the system's.
//! Figures are printed, never asserted on wall time.
//!
//! Scaling is below linear for a reason of the model's own: a saturated leader batches more
//! entries per AppendEntries, so one group carrying all the load spends fewer messages per
//! operation than each of three groups carrying a third of it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_testkit::{ShardTester, ShardTesterConfig};

/// Virtual time a group server spends on each message it handles.
pub const SERVICE_TIME: Duration = Duration::from_micros(100);
/// Keys the clients draw from, uniformly.
pub const KEYS: usize = 3000;
/// Shards: divisible by 1, 2 and 3, so every group holds the same number.
pub const SHARDS: usize = 30;

/// Figures from one [`shard_throughput`] run.
#[derive(Debug, Clone, Copy)]
pub struct ShardThroughput {
    pub groups: usize,
    pub clients: usize,
    /// Operations completed in the measured window.
    pub operations: usize,
    pub window: Duration,
    pub wall: Duration,
    /// Wall time of the linearizability check of the whole history.
    pub check: Duration,
}

impl ShardThroughput {
    pub fn ops_per_virtual_sec(&self) -> f64 {
        self.operations as f64 / self.window.as_secs_f64()
    }
}

/// `clients` closed-loop clients on `groups` joined groups of 3 ([`SHARDS`] shards, reliable
/// network, snapshots at 64 KiB), each doing 50% Get, 25% Put, 25% Append of 100-byte values on keys drawn
/// uniformly from [`KEYS`]; measured over `seconds` of virtual time after a second of
/// warm-up. The history is checked for linearizability.
pub fn shard_throughput(groups: usize, clients: usize, seconds: u64, seed: u64) -> ShardThroughput {
    let cfg = ShardTesterConfig {
        groups,
        max_raft_state: Some(64 << 10),
        nshards: SHARDS,
        ..ShardTesterConfig::lab(3, false, None)
    };
    let t = ShardTester::new("ShardBench", seed, cfg);
    let servers = t.group_nodes();
    t.sim
        .borrow_mut()
        .set_service_time(&servers, Some(SERVICE_TIME));
    let started = Instant::now();
    let t2 = t.clone();
    let (operations, window) = t.run_for(Duration::from_secs(seconds + 60), async move {
        let t = t2;
        t.joinm(&(0..groups).collect::<Vec<_>>()).await;
        let stop = Rc::new(Cell::new(false));
        let load: Vec<_> = (0..clients)
            .map(|_| {
                let (t, stop) = (t.clone(), stop.clone());
                t.rt.clone().spawn(async move {
                    let ck = t.make_client();
                    let value = "v".repeat(100);
                    while !stop.get() {
                        let key = format!("key-{}", t.rand(KEYS as u64));
                        match t.rand(4) {
                            0 | 1 => {
                                ck.get(&key).await;
                            }
                            2 => ck.put(&key, &value).await,
                            _ => ck.append(&key, &value).await,
                        }
                    }
                })
            })
            .collect();
        t.sleep(Duration::from_secs(1)).await;
        let (from, at) = (t.history_len(), t.now());
        t.sleep(Duration::from_secs(seconds)).await;
        let measured = (t.history_len() - from, t.now() - at);
        stop.set(true);
        for h in load {
            h.await;
        }
        measured
    });
    let wall = started.elapsed();
    let checked = Instant::now();
    t.check_linearizable();
    ShardThroughput {
        groups,
        clients,
        operations,
        window,
        wall,
        check: checked.elapsed(),
    }
}

/// Prints throughput with 1, 2 and 3 groups and the speed-up over one group.
pub fn print_shard_report() {
    let (clients, seconds) = (300, 5);
    println!(
        "Sharded KV in the simulator: {clients} closed-loop clients, keys uniform over {KEYS}, \
         {SHARDS} shards, {} µs of service time per message on every group server, {seconds} s \
         measured",
        SERVICE_TIME.as_micros()
    );
    println!("| groups | ops | ops/virtual s | speed-up | wall s | check s |");
    println!("|--:|--:|--:|--:|--:|--:|");
    let mut base = None;
    for groups in 1..=3 {
        let r = shard_throughput(groups, clients, seconds, 1);
        let rate = r.ops_per_virtual_sec();
        let base = *base.get_or_insert(rate);
        println!(
            "| {} | {} | {:.0} | {:.2}× | {:.2} | {:.2} |",
            groups,
            r.operations,
            rate,
            rate / base,
            r.wall.as_secs_f64(),
            r.check.as_secs_f64()
        );
    }
}
