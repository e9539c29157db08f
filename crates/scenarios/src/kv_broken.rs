//! The key/value scenarios run against deliberately broken servers: the checker must call
//! their histories not linearizable. Each scenario also runs on the correct server, whose
//! history must pass, so a checker that rejects everything fails too.

use std::rc::Rc;
use std::time::Duration;

use flotilla_check::CheckResult;
use flotilla_kv::{Kv, KvReplica};

use flotilla_raft::Config;
use flotilla_rsm::ReplicaConfig;
use flotilla_sim::{NodeId, Persister, Process};
use flotilla_testkit::broken::{EarlyReplyReplica, LocalReadReplica, NoDedupServer};
use flotilla_testkit::KvTester;

use crate::kv_common::append_value;

type KvMsg = flotilla_kv::KvMsg;

/// Five clients append to one key and read it on an unreliable network (a tenth of the
/// replies are lost, so many requests are retried). With `dedup` off, the server applies
/// retried Appends again.
pub fn duplicate_appends(seed: u64, dedup: bool) -> CheckResult {
    fn run<Srv: Process<Msg = KvMsg> + 'static>(t: Rc<KvTester<Srv>>) -> CheckResult {
        let t2 = t.clone();
        t.svc.run(async move {
            let clients: Vec<_> = (0..5)
                .map(|me| {
                    let t = t2.clone();
                    t2.svc.rt.spawn(async move {
                        let ck = t.make_client();
                        for n in 0..20 {
                            ck.append("k", &append_value(me, n)).await;
                            ck.get("k").await;
                        }
                    })
                })
                .collect();
            for c in clients {
                c.await;
            }
        });
        t.verdict()
    }
    if dedup {
        run(KvTester::kvsrv("DuplicateAppends", seed, true))
    } else {
        let t = KvTester::custom(
            "DuplicateAppendsNoDedup",
            seed,
            1,
            true,
            Box::new(|_, _, _| NoDedupServer::default()),
        );
        run(t)
    }
}

/// Five replicas; one follower is cut off while a writer keeps writing through the majority
/// and a reader that can reach only the cut-off follower reads. With `local_reads`, replicas
/// answer Gets from their own state, so the reader sees old values after newer writes
/// completed.
pub fn stale_follower_reads(seed: u64, local_reads: bool) -> CheckResult {
    fn factory(n: usize) -> impl FnMut(NodeId, &Persister, u64) -> KvReplica {
        move |id, p, s| {
            let cfg = ReplicaConfig {
                raft: Config::for_service(id, (0..n).map(NodeId::from_index).collect(), s),
                max_raft_state: None,
                sessions: flotilla_rsm::SessionLimits::default(),
                snapshot_scales_with_state: false,
            };
            KvReplica::restore(cfg, Kv::default(), p.state(), p.snapshot())
                .expect("fresh persister")
        }
    }
    fn run<Srv: Process<Msg = KvMsg> + 'static>(
        t: Rc<KvTester<Srv>>,
        leader: impl Fn(&KvTester<Srv>) -> Option<NodeId> + 'static,
    ) -> CheckResult {
        let t2 = t.clone();
        t.svc.run(async move {
            let writer = t2.make_client();
            writer.put("x", "0").await;
            t2.svc.sleep(Duration::from_millis(500)).await;
            let l = leader(&t2).expect("a leader served the first put");
            let cut = NodeId::from_index((l.index() + 1) % 5);
            let majority: Vec<NodeId> = (0..5)
                .map(NodeId::from_index)
                .filter(|&s| s != cut)
                .collect();
            t2.svc.partition(&[majority, vec![cut]]);
            let reader = t2.make_client_to(vec![cut]);
            for i in 1..=10 {
                writer.put("x", &i.to_string()).await;
                // The reader may not complete at all against a correct server (the cut-off
                // follower cannot commit): give it a deadline.
                reader.try_get("x", Some(Duration::from_millis(300))).await;
            }
        });
        t.verdict()
    }
    if local_reads {
        let mut f = factory(5);
        let t = KvTester::custom(
            "StaleFollowerReads",
            seed,
            5,
            false,
            Box::new(move |id, p, s| LocalReadReplica { inner: f(id, p, s) }),
        );
        run(t, |t| {
            (0..5).map(NodeId::from_index).find(|&s| {
                t.svc
                    .with_server(s, |r| r.inner.raft().is_leader())
                    .unwrap_or(false)
            })
        })
    } else {
        let t = KvTester::custom("FollowerReads", seed, 5, false, Box::new(factory(5)));
        run(t, |t| t.leader())
    }
}

/// One replica on a slow disk (every sync takes 5–15 ms); a writer puts increasing values and
/// the replica is killed and restarted right after each put is acknowledged, then the value is
/// read back. With `early_replies`, the replica acknowledges before its save is durable, so a
/// kill inside the sync forgets an acknowledged put.
pub fn lone_replica_early_replies(seed: u64, early_replies: bool) -> CheckResult {
    fn replica(p: &Persister, s: u64) -> KvReplica {
        let cfg = ReplicaConfig {
            raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], s),
            max_raft_state: None,
            sessions: flotilla_rsm::SessionLimits::default(),
            snapshot_scales_with_state: false,
        };
        KvReplica::restore(cfg, Kv::default(), p.state(), p.snapshot())
            .expect("a replica restarts from what it persisted")
    }
    fn run<Srv: Process<Msg = KvMsg> + 'static>(t: Rc<KvTester<Srv>>) -> CheckResult {
        t.svc
            .sim
            .borrow_mut()
            .set_sync_latency(Some((Duration::from_millis(5), Duration::from_millis(15))));
        let t2 = t.clone();
        t.svc.run(async move {
            let ck = t2.make_client();
            for i in 1..=10 {
                ck.put("x", &i.to_string()).await;
                t2.svc.crash(NodeId::new(0));
                t2.svc.restart(NodeId::new(0));
                ck.get("x").await;
            }
        });
        t.verdict()
    }
    if early_replies {
        run(KvTester::custom(
            "LoneReplicaEarlyReplies",
            seed,
            1,
            false,
            Box::new(|_, p, s| EarlyReplyReplica {
                inner: replica(p, s),
            }),
        ))
    } else {
        run(KvTester::custom(
            "LoneReplica",
            seed,
            1,
            false,
            Box::new(|_, p, s| replica(p, s)),
        ))
    }
}
