//! Lab 5A, the shard controller (`shardctrler`, 6.5840 2024; the 2020 `shardmaster` blocks are
//! the same checks): 3 controller replicas of [`Ctrler`] under `flotilla_rsm::Replica`, on the
//! simulated network, with the lab's assertions. `check(groups)`: the latest configuration
//! shows exactly these groups, every shard is on a live group, counts differ by at most one.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use flotilla_raft::Config;
use flotilla_rsm::{Replica, ReplicaConfig};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Ctrler, Gid, ShardConfig, DEFAULT_SHARDS};
use flotilla_sim::{NodeId, Persister};
use flotilla_testkit::ServiceTester;

type Svc = ServiceTester<Replica<Ctrler>, CtrlCommand, CtrlReply>;

const N: usize = 3;

fn controller(seed: u64) -> Rc<Svc> {
    let factory = Box::new(move |id: NodeId, p: &Persister, s: u64| {
        let cfg = ReplicaConfig {
            raft: Config::for_service(id, (0..N).map(NodeId::from_index).collect(), s),
            max_raft_state: None,
            sessions: flotilla_rsm::SessionLimits::default(),
            snapshot_scales_with_state: false,
        };
        Replica::restore(cfg, Ctrler::default(), p.state(), p.snapshot())
            .unwrap_or_else(|e| panic!("controller {id}: cannot restart: {e}"))
    });
    ServiceTester::replicas(N, false, seed, factory)
}

fn servers(g: Gid) -> Vec<String> {
    (0..3).map(|i| format!("server-{g}-{i}")).collect()
}

async fn run(svc: &Rc<Svc>, ck: u64, cmd: CtrlCommand) -> CtrlReply {
    match svc.call(ck, cmd.clone()).await {
        CtrlReply::Err(e) => panic!("{cmd:?} refused: {e}"),
        r => r,
    }
}

async fn join(svc: &Rc<Svc>, ck: u64, gids: &[Gid]) {
    let groups = gids.iter().map(|&g| (g, servers(g))).collect();
    run(svc, ck, CtrlCommand::Join(groups)).await;
}

async fn leave(svc: &Rc<Svc>, ck: u64, gids: &[Gid]) {
    run(svc, ck, CtrlCommand::Leave(gids.to_vec())).await;
}

async fn query(svc: &Rc<Svc>, ck: u64, num: Option<u64>) -> ShardConfig {
    match run(svc, ck, CtrlCommand::Query(num)).await {
        CtrlReply::Config(c) => c,
        other => panic!("query answered {other:?}"),
    }
}

/// The lab's `check`: exactly `gids`, every shard on one of them, balanced.
async fn check(svc: &Rc<Svc>, ck: u64, gids: &[Gid]) -> ShardConfig {
    let c = query(svc, ck, None).await;
    let want: BTreeSet<Gid> = gids.iter().copied().collect();
    assert_eq!(c.groups.keys().copied().collect::<BTreeSet<_>>(), want);
    for (s, g) in c.shards.iter().enumerate() {
        assert!(
            gids.is_empty() || want.contains(g),
            "shard {s} -> invalid group {g}"
        );
    }
    let counts = c.counts();
    if let (Some(min), Some(max)) = (counts.values().min(), counts.values().max()) {
        assert!(max - min <= 1, "max {max} too much larger than min {min}");
    }
    c
}

/// TestBasic "Basic leave/join" and "Historical queries": joins and leaves keep each
/// group's servers; every saved configuration is answered the same with each replica down in
/// turn, and Query(0) is the empty configuration.
pub fn basic_leave_join_and_history_5a(seed: u64) {
    let svc = controller(seed);
    let s = svc.clone();
    svc.run(async move {
        let ck = s.make_clerk(s.servers());
        let mut saved = vec![query(&s, ck, None).await];
        check(&s, ck, &[]).await;
        join(&s, ck, &[1]).await;
        saved.push(check(&s, ck, &[1]).await);
        join(&s, ck, &[2]).await;
        let c = check(&s, ck, &[1, 2]).await;
        assert_eq!(c.groups[&1], servers(1));
        assert_eq!(c.groups[&2], servers(2));
        saved.push(c);
        leave(&s, ck, &[1]).await;
        saved.push(check(&s, ck, &[2]).await);
        leave(&s, ck, &[2]).await;
        saved.push(check(&s, ck, &[]).await);
        assert_eq!(saved[0], ShardConfig::initial(DEFAULT_SHARDS));
        for down in 0..N {
            s.crash(NodeId::from_index(down));
            for c in &saved {
                assert_eq!(&query(&s, ck, Some(c.num)).await, c, "replica {down} down");
            }
            s.restart(NodeId::from_index(down));
        }
    });
}

/// TestBasic "Move": shards 0–4 to 503, 5–9 to 504; each Move that changes something makes a
/// new configuration, and the assignment ends exactly as moved.
pub fn basic_move_5a(seed: u64) {
    let svc = controller(seed);
    let s = svc.clone();
    svc.run(async move {
        let ck = s.make_clerk(s.servers());
        join(&s, ck, &[503, 504]).await;
        for shard in 0..DEFAULT_SHARDS {
            let before = query(&s, ck, None).await;
            let gid = if shard < DEFAULT_SHARDS / 2 { 503 } else { 504 };
            run(&s, ck, CtrlCommand::Move { shard, gid }).await;
            let after = query(&s, ck, None).await;
            if before.shards[shard] != gid {
                assert!(after.num > before.num, "Move should increase Num");
            }
        }
        let c = query(&s, ck, None).await;
        let want: Vec<Gid> = (0..DEFAULT_SHARDS)
            .map(|i| if i < DEFAULT_SHARDS / 2 { 503 } else { 504 })
            .collect();
        assert_eq!(c.shards, want);
    });
}

/// TestBasic / TestMulti "Concurrent leave/join": ten clerks at once each join two (or
/// three) groups and remove the extra ones; exactly the ten kept groups remain, balanced.
pub fn concurrent_leave_join_5a(seed: u64) {
    for multi in [false, true] {
        let svc = controller(seed);
        let s = svc.clone();
        svc.run(async move {
            let mut tasks = Vec::new();
            for i in 0..10u64 {
                let s2 = s.clone();
                tasks.push(s.rt.spawn(async move {
                    let ck = s2.make_clerk(s2.servers());
                    let g = 100 + 10 * i;
                    if multi {
                        join(&s2, ck, &[g, g + 1000, g + 2000]).await;
                        leave(&s2, ck, &[g + 1000, g + 2000]).await;
                    } else {
                        join(&s2, ck, &[g + 1000]).await;
                        join(&s2, ck, &[g]).await;
                        leave(&s2, ck, &[g + 1000]).await;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let ck = s.make_clerk(s.servers());
            let gids: Vec<Gid> = (0..10).map(|i| 100 + 10 * i).collect();
            check(&s, ck, &gids).await;
        });
    }
}

/// TestMinimalAgain, and the MinimalTransfer subtests made real (the lab's check only looks
/// at gids that are not live): after joins, a join moves shards only to the new group, at
/// most NShards / groups + 1; after a leave only the leaver's shards move.
pub fn minimal_transfer_5a(seed: u64) {
    let svc = controller(seed);
    let s = svc.clone();
    svc.run(async move {
        let ck = s.make_clerk(s.servers());
        join(&s, ck, &[1]).await;
        join(&s, ck, &[2]).await;
        let c1 = query(&s, ck, None).await;
        join(&s, ck, &[3]).await;
        let c2 = check(&s, ck, &[1, 2, 3]).await;
        let changed: Vec<usize> = (0..DEFAULT_SHARDS)
            .filter(|&i| c1.shards[i] != c2.shards[i])
            .collect();
        assert!(
            changed.iter().all(|&i| c2.shards[i] == 3),
            "a join moved a shard between old groups"
        );
        assert!(changed.len() <= DEFAULT_SHARDS / 3 + 1, "{changed:?}");
        leave(&s, ck, &[1]).await;
        let c3 = check(&s, ck, &[2, 3]).await;
        for i in 0..DEFAULT_SHARDS {
            if c2.shards[i] != 1 {
                assert_eq!(c3.shards[i], c2.shards[i], "shard {i} moved needlessly");
            }
        }
        // The lab's MinimalTransfer, on live groups: join 11..15 one by one, then leave them.
        let gids: Vec<Gid> = (11..=15).collect();
        for &g in &gids {
            let before = query(&s, ck, None).await;
            join(&s, ck, &[g]).await;
            let after = query(&s, ck, None).await;
            for i in 0..DEFAULT_SHARDS {
                assert!(
                    after.shards[i] == before.shards[i] || after.shards[i] == g,
                    "join {g}: shard {i} moved between old groups"
                );
            }
        }
        for &g in &gids {
            let before = query(&s, ck, None).await;
            leave(&s, ck, &[g]).await;
            let after = query(&s, ck, None).await;
            for i in 0..DEFAULT_SHARDS {
                assert!(
                    before.shards[i] == g || after.shards[i] == before.shards[i],
                    "leave {g}: shard {i} moved needlessly"
                );
            }
        }
        check(&s, ck, &[2, 3]).await;
    });
}

/// TestMulti "Multi-group join/leave": multi-group joins and leaves keep each group's servers.
pub fn multi_leave_join_5a(seed: u64) {
    let svc = controller(seed);
    let s = svc.clone();
    svc.run(async move {
        let ck = s.make_clerk(s.servers());
        join(&s, ck, &[1, 2]).await;
        check(&s, ck, &[1, 2]).await;
        join(&s, ck, &[3]).await;
        let c = check(&s, ck, &[1, 2, 3]).await;
        let want: BTreeMap<Gid, Vec<String>> = [1, 2, 3].map(|g| (g, servers(g))).into();
        assert_eq!(c.groups, want);
        leave(&s, ck, &[1, 3]).await;
        check(&s, ck, &[2]).await;
    });
}

/// TestMulti "Check Same config on servers": with the leader killed, the survivors answer
/// the configuration the leader had.
pub fn multi_agree_config_5a(seed: u64) {
    let svc = controller(seed);
    let s = svc.clone();
    svc.run(async move {
        let ck = s.make_clerk(s.servers());
        join(&s, ck, &[1, 2, 3]).await;
        let had = query(&s, ck, None).await;
        let leader = (0..N)
            .map(NodeId::from_index)
            .find(|&i| s.with_server(i, |r| r.raft().is_leader()) == Some(true))
            .expect("a leader answered");
        s.crash(leader);
        let survivors: Vec<NodeId> = (0..N)
            .map(NodeId::from_index)
            .filter(|&i| i != leader)
            .collect();
        let ck2 = s.make_clerk(survivors);
        assert_eq!(query(&s, ck2, None).await, had);
    });
}
