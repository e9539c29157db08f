//! The 6.5840 (2024) kvraft lab, parts 4A and 4B: the Raft-replicated key/value service.
//!
//! Each scenario keeps the lab test's servers, clients, faults, timing and assertions (see
//! LABS.md §1c), in virtual time. Every history is checked for linearizability at the end.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use flotilla_kv::KvReplica;
use flotilla_raft::NodeId;
use flotilla_testkit::KvTester;

use crate::kv_common::{append_value, check_client_appends, check_concurrent_appends};

/// The labs' election-timeout constant.
const ET: Duration = Duration::from_secs(1);

type Tester = Rc<KvTester<KvReplica>>;

/// The parameters of the lab's `GenericTest`.
pub struct Generic {
    pub name: &'static str,
    pub clients: usize,
    pub servers: usize,
    pub unreliable: bool,
    pub crash: bool,
    pub partitions: bool,
    /// The lab's maxraftstate; `None` is -1 (never snapshot).
    pub max_raft_state: Option<usize>,
    pub random_keys: bool,
}

macro_rules! generic {
    ($fn:ident, $name:literal, $clients:expr, $servers:expr, unreliable=$u:expr, crash=$c:expr, partitions=$p:expr, mrs=$m:expr, random_keys=$r:expr) => {
        #[doc = concat!("The lab's `", $name, "`.")]
        pub fn $fn(seed: u64) -> u64 {
            const G: Generic = Generic {
                name: $name,
                clients: $clients,
                servers: $servers,
                unreliable: $u,
                crash: $c,
                partitions: $p,
                max_raft_state: $m,
                random_keys: $r,
            };
            generic(seed, &G)
        }
    };
}

generic!(
    basic_4a,
    "TestBasic4A",
    1,
    5,
    unreliable = false,
    crash = false,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    concurrent_4a,
    "TestConcurrent4A",
    5,
    5,
    unreliable = false,
    crash = false,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    unreliable_4a,
    "TestUnreliable4A",
    5,
    5,
    unreliable = true,
    crash = false,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    many_partitions_one_client_4a,
    "TestManyPartitionsOneClient4A",
    1,
    5,
    unreliable = false,
    crash = false,
    partitions = true,
    mrs = None,
    random_keys = false
);
generic!(
    many_partitions_many_clients_4a,
    "TestManyPartitionsManyClients4A",
    5,
    5,
    unreliable = false,
    crash = false,
    partitions = true,
    mrs = None,
    random_keys = false
);
generic!(
    persist_one_client_4a,
    "TestPersistOneClient4A",
    1,
    5,
    unreliable = false,
    crash = true,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    persist_concurrent_4a,
    "TestPersistConcurrent4A",
    5,
    5,
    unreliable = false,
    crash = true,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    persist_concurrent_unreliable_4a,
    "TestPersistConcurrentUnreliable4A",
    5,
    5,
    unreliable = true,
    crash = true,
    partitions = false,
    mrs = None,
    random_keys = false
);
generic!(
    persist_partition_4a,
    "TestPersistPartition4A",
    5,
    5,
    unreliable = false,
    crash = true,
    partitions = true,
    mrs = None,
    random_keys = false
);
generic!(
    persist_partition_unreliable_4a,
    "TestPersistPartitionUnreliable4A",
    5,
    5,
    unreliable = true,
    crash = true,
    partitions = true,
    mrs = None,
    random_keys = false
);
generic!(
    persist_partition_unreliable_linearizable_4a,
    "TestPersistPartitionUnreliableLinearizable4A",
    15,
    7,
    unreliable = true,
    crash = true,
    partitions = true,
    mrs = None,
    random_keys = true
);
generic!(
    snapshot_recover_4b,
    "TestSnapshotRecover4B",
    1,
    5,
    unreliable = false,
    crash = true,
    partitions = false,
    mrs = Some(1000),
    random_keys = false
);
generic!(
    snapshot_recover_many_clients_4b,
    "TestSnapshotRecoverManyClients4B",
    20,
    5,
    unreliable = false,
    crash = true,
    partitions = false,
    mrs = Some(1000),
    random_keys = false
);
generic!(
    snapshot_unreliable_4b,
    "TestSnapshotUnreliable4B",
    5,
    5,
    unreliable = true,
    crash = false,
    partitions = false,
    mrs = Some(1000),
    random_keys = false
);
generic!(
    snapshot_unreliable_recover_4b,
    "TestSnapshotUnreliableRecover4B",
    5,
    5,
    unreliable = true,
    crash = true,
    partitions = false,
    mrs = Some(1000),
    random_keys = false
);
generic!(
    snapshot_unreliable_recover_concurrent_partition_4b,
    "TestSnapshotUnreliableRecoverConcurrentPartition4B",
    5,
    5,
    unreliable = true,
    crash = true,
    partitions = true,
    mrs = Some(1000),
    random_keys = false
);
generic!(
    snapshot_unreliable_recover_concurrent_partition_linearizable_4b,
    "TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable4B",
    15,
    7,
    unreliable = true,
    crash = true,
    partitions = true,
    mrs = Some(1000),
    random_keys = true
);

/// The lab's `GenericTest`: three rounds of clients appending and reading (on their own key,
/// or random keys with some puts), optionally under an unreliable network, a partitioner that
/// reshuffles the servers into two halves every ET + 0–200 ms, and a crash of every server
/// after each round. Each client's key must hold its appends in order without duplicates; the
/// persisted Raft state must respect `8 · maxraftstate` (or there must be no snapshot); the
/// whole history must be linearizable.
pub fn generic(seed: u64, g: &'static Generic) -> u64 {
    let t = KvTester::kvraft(g.name, seed, g.servers, g.unreliable, g.max_raft_state);
    let script = generic_script(t.clone(), g);
    t.svc.run(script);
    t.finish()
}

async fn generic_script(t: Tester, g: &'static Generic) {
    let ck = t.make_client();
    for _round in 0..3 {
        let done = Rc::new(Cell::new(false));
        let clients: Vec<_> = (0..g.clients)
            .map(|cli| t.svc.rt.spawn(client_loop(t.clone(), g, cli, done.clone())))
            .collect();
        let partitioner = if g.partitions {
            t.svc.sleep(Duration::from_secs(1)).await;
            Some(t.svc.rt.spawn(partitioner(t.clone(), done.clone())))
        } else {
            None
        };
        t.svc.sleep(Duration::from_secs(5)).await;
        done.set(true);
        if let Some(p) = partitioner {
            p.await;
            t.svc.heal();
            t.svc.sleep(ET).await;
        }
        if g.crash {
            for i in 0..g.servers {
                t.svc.crash(NodeId::from_index(i));
            }
            t.svc.sleep(ET).await;
            for i in 0..g.servers {
                t.svc.restart(NodeId::from_index(i));
            }
            t.svc.heal();
        }
        for (cli, h) in clients.into_iter().enumerate() {
            let j = h.await;
            let v = ck.get(&cli.to_string()).await;
            if !g.random_keys {
                check_client_appends(cli, &v, j);
            }
        }
        check_persisted_sizes(&t, g.max_raft_state);
    }
}

/// One client of `GenericTest`: returns how many appends (and puts) it made.
async fn client_loop(t: Tester, g: &'static Generic, cli: usize, done: Rc<Cell<bool>>) -> usize {
    let ck = t.make_client();
    let mut j = 0;
    let mut last = String::new();
    let own_key = cli.to_string();
    if !g.random_keys {
        ck.put(&own_key, "").await;
    }
    while !done.get() {
        let key = if g.random_keys {
            t.svc.rand(g.clients as u64).to_string()
        } else {
            own_key.clone()
        };
        let nv = append_value(cli, j);
        if t.svc.rand(1000) < 500 {
            ck.append(&key, &nv).await;
            if !g.random_keys {
                last.push_str(&nv);
            }
            j += 1;
        } else if g.random_keys && t.svc.rand(1000) < 100 {
            ck.put(&key, &nv).await;
            j += 1;
        } else {
            let v = ck.get(&key).await;
            if !g.random_keys {
                assert_eq!(v, last, "get wrong value, key {key}");
            }
        }
    }
    j
}

/// Every ET + 0–200 ms, puts each server in one of two random halves.
async fn partitioner(t: Tester, done: Rc<Cell<bool>>) {
    let n = t.svc.n();
    while !done.get() {
        let mut halves = [Vec::new(), Vec::new()];
        for s in 0..n {
            halves[t.svc.rand(2) as usize].push(NodeId::from_index(s));
        }
        t.svc.partition(&halves);
        let extra = Duration::from_millis(t.svc.rand(200));
        t.svc.sleep(ET + extra).await;
    }
}

/// The lab's bounds: with maxraftstate, every server's persisted Raft state is at most 8
/// times it; without, no server has a snapshot.
fn check_persisted_sizes(t: &Tester, max_raft_state: Option<usize>) {
    for s in 0..t.svc.n() {
        let (state, snapshot) = t.svc.persisted_sizes(NodeId::from_index(s));
        match max_raft_state {
            Some(m) => assert!(
                state <= 8 * m,
                "server {s}: logs were not trimmed ({state} > 8*{m})"
            ),
            None => assert_eq!(
                snapshot, 0,
                "server {s}: snapshot of {snapshot} bytes with maxraftstate -1"
            ),
        }
    }
}

/// The lab's `GenericTestSpeed`: 1000 sequential appends on 3 servers must average under
/// 33.3 ms each (3 per 100 ms heartbeat interval), so the leader must not wait for a
/// heartbeat to replicate.
fn speed(name: &'static str, seed: u64, max_raft_state: Option<usize>) -> u64 {
    const OPS: usize = 1000;
    let t = KvTester::kvraft(name, seed, 3, false, max_raft_state);
    let t2 = t.clone();
    t.svc.run(async move {
        let ck = t2.make_client();
        // The first answer means a leader is elected and serving.
        ck.get("x").await;
        let start = t2.svc.now();
        for i in 0..OPS {
            ck.append("x", &append_value(0, i)).await;
        }
        let took = t2.svc.now() - start;
        let v = ck.get("x").await;
        check_client_appends(0, &v, OPS);
        let limit = Duration::from_millis(100) / 3 * OPS as u32;
        assert!(
            took <= limit,
            "operations completed too slowly: {:?} per op (limit {:?})",
            took / OPS as u32,
            limit / OPS as u32
        );
    });
    t.finish()
}

/// The lab's `TestSpeed4A`.
pub fn speed_4a(seed: u64) -> u64 {
    speed("TestSpeed4A", seed, None)
}

/// The lab's `TestSpeed4B`.
pub fn speed_4b(seed: u64) -> u64 {
    speed("TestSpeed4B", seed, Some(1000))
}

/// The lab's `TestUnreliableOneKey4A`: 5 clients × 10 appends to one key on an unreliable
/// network; every element appears once, in each client's order.
pub fn unreliable_one_key_4a(seed: u64) -> u64 {
    const CLIENTS: usize = 5;
    const UPTO: usize = 10;
    let t = KvTester::kvraft("TestUnreliableOneKey4A", seed, 3, true, None);
    let t2 = t.clone();
    t.svc.run(async move {
        let ck = t2.make_client();
        ck.put("k", "").await;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|me| {
                let t = t2.clone();
                t2.svc.rt.spawn(async move {
                    let ck = t.make_client();
                    for n in 0..UPTO {
                        ck.append("k", &append_value(me, n)).await;
                    }
                })
            })
            .collect();
        for c in clients {
            c.await;
        }
        let v = ck.get("k").await;
        check_concurrent_appends(&v, &[UPTO; CLIENTS]);
    });
    t.finish()
}

/// The lab's `TestOnePartition4A`: the leader and one follower in a minority of 5. The
/// majority makes progress; a Put and a Get in the minority do not complete within 1 s;
/// after healing the Put completes within 3 s and its value is visible.
pub fn one_partition_4a(seed: u64) -> u64 {
    let t = KvTester::kvraft("TestOnePartition4A", seed, 5, false, None);
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let ck = t.make_client();
        ck.put("1", "13").await;
        let leader = t.leader().expect("a leader answered the first put");
        // make_partition: the leader and one other server in the minority.
        let others: Vec<NodeId> = (0..5)
            .map(NodeId::from_index)
            .filter(|&s| s != leader)
            .collect();
        let p1 = others[1..].to_vec();
        let p2 = vec![leader, others[0]];
        t.svc.partition(&[p1.clone(), p2.clone()]);
        let ckp1 = t.make_client_to(p1);
        let ckp2a = Rc::new(t.make_client_to(p2.clone()));
        let ckp2b = Rc::new(t.make_client_to(p2));
        ckp1.put("1", "14").await;
        assert_eq!(ckp1.get("1").await, "14");

        // No progress in the minority.
        let done0 = Rc::new(Cell::new(false));
        let done1 = Rc::new(Cell::new(false));
        let put = {
            let (c, d) = (ckp2a.clone(), done0.clone());
            t.svc.rt.spawn(async move {
                c.put("1", "15").await;
                d.set(true);
            })
        };
        let _get = {
            let (c, d) = (ckp2b.clone(), done1.clone());
            t.svc.rt.spawn(async move {
                c.get("1").await;
                d.set(true);
            })
        };
        t.svc.sleep(Duration::from_secs(1)).await;
        assert!(!done0.get(), "Put in minority completed");
        assert!(!done1.get(), "Get in minority completed");
        assert_eq!(ckp1.get("1").await, "14");
        ckp1.put("1", "16").await;
        assert_eq!(ckp1.get("1").await, "16");

        // Completion after heal.
        t.svc.heal();
        ckp2a.connect(t.svc.servers());
        ckp2b.connect(t.svc.servers());
        t.svc.sleep(ET).await;
        let deadline = t.svc.now() + Duration::from_millis(3000);
        while !done0.get() && t.svc.now() < deadline {
            t.svc.sleep(Duration::from_millis(10)).await;
        }
        assert!(done0.get(), "Put did not complete");
        put.await;
        assert_eq!(ck.get("1").await, "15");
    });
    t.finish()
}

/// The lab's `TestSnapshotRPC4B`: 50 puts in a majority {0,1} trim the log to 8·1000 bytes;
/// then server 2, far behind, must catch up by InstallSnapshot for {0,2} to make progress.
pub fn snapshot_rpc_4b(seed: u64) -> u64 {
    const MRS: usize = 1000;
    let t = KvTester::kvraft("TestSnapshotRPC4B", seed, 3, false, Some(MRS));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let ck = t.make_client();
        ck.put("a", "A").await;
        assert_eq!(ck.get("a").await, "A");
        t.svc
            .partition(&[vec![NodeId::new(0), NodeId::new(1)], vec![NodeId::new(2)]]);
        {
            let ck1 = t.make_client_to(vec![NodeId::new(0), NodeId::new(1)]);
            for i in 0..50 {
                ck1.put(&i.to_string(), &i.to_string()).await;
            }
            t.svc.sleep(ET).await;
            ck1.put("b", "B").await;
        }
        let sz = (0..3)
            .map(|s| t.svc.persisted_sizes(NodeId::new(s)).0)
            .max()
            .unwrap_or(0);
        assert!(sz <= 8 * MRS, "logs were not trimmed ({sz} > 8*{MRS})");
        t.svc
            .partition(&[vec![NodeId::new(0), NodeId::new(2)], vec![NodeId::new(1)]]);
        {
            let ck1 = t.make_client_to(vec![NodeId::new(0), NodeId::new(2)]);
            ck1.put("c", "C").await;
            ck1.put("d", "D").await;
            for (k, v) in [("a", "A"), ("b", "B"), ("1", "1"), ("49", "49")] {
                assert_eq!(ck1.get(k).await, v, "key {k}");
            }
        }
        t.svc.heal();
        ck.put("e", "E").await;
        for (k, v) in [("c", "C"), ("e", "E"), ("1", "1")] {
            assert_eq!(ck.get(k).await, v, "key {k}");
        }
    });
    t.finish()
}

/// The lab's `TestSnapshotSize4B`: 800 operations on one key; the persisted Raft state stays
/// within 8·1000 bytes and the snapshot within 500 bytes.
pub fn snapshot_size_4b(seed: u64) -> u64 {
    const MRS: usize = 1000;
    const MAX_SNAPSHOT: usize = 500;
    let t = KvTester::kvraft("TestSnapshotSize4B", seed, 3, false, Some(MRS));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let ck = t.make_client();
        for _ in 0..200 {
            for v in ["0", "1"] {
                ck.put("x", v).await;
                assert_eq!(ck.get("x").await, v);
            }
        }
        for s in 0..3 {
            let (state, snapshot) = t.svc.persisted_sizes(NodeId::new(s));
            assert!(
                state <= 8 * MRS,
                "server {s}: logs were not trimmed ({state} > 8*{MRS})"
            );
            assert!(
                snapshot <= MAX_SNAPSHOT,
                "server {s}: snapshot too large ({snapshot} > {MAX_SNAPSHOT})"
            );
        }
    });
    t.finish()
}
