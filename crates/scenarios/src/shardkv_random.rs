//! The randomized sharded key/value suite: each seed draws a system (3 groups of 3, with or
//! without snapshots, 4 or 10 shards, shards pulled in pages of 40, 80 or 200 bytes, so a
//! transfer spans many pages under every fault below) and runs clients doing random Get /
//! Put / Append on keys spread over the shards, and the Redis mix of [`crate::redis_mix`]
//! (conditional SET, expiry, transactions with WATCH on hash-tagged keys of one shard) for
//! 20% of their operations, while a nemesis joins, leaves and moves groups
//! and shards, crashes and restarts servers (whole groups too), cuts servers off, toggles an
//! unreliable network, and after half the reconfigurations crashes the leader of a group
//! mid-pull. Some client operations give up after a deadline, so the history has operations
//! of unknown outcome. At the end everything heals; then
//!
//! * every group reaches the latest configuration with nothing pending, and between them the
//!   groups hold every assigned shard exactly once and nothing else (handed-off shards were
//!   deleted);
//! * every client reads every key, and the whole history is linearizable;
//! * every server's persisted Raft state is within 8 × maxraftstate;
//! * with the small session limits a third of the seeds draw (records idle 1.5 s expire, at
//!   most 4 per shard; issue 16), every shard keeps at most 4 records, and operations
//!   refused as "session expired" count as of unknown outcome.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use flotilla_check::RedisModel;
use flotilla_raft::NodeId;
use flotilla_rsm::SessionLimits;
use flotilla_shardctrler::Gid;
use flotilla_shardkv::ShardState;
use flotilla_testkit::{ShardTester, ShardTesterConfig};

use crate::redis_mix::{note_lab_read, note_lab_write, redis_step, MixEnv, MixStats};

/// What one random run did, for reports.
#[derive(Debug, Clone, Default)]
pub struct ShardRandomReport {
    /// What the clients' operations did.
    pub mix: MixStats,
    pub trace_hash: u64,
    pub operations: usize,
    pub faults: usize,
    /// Join, Leave and Move commands the controller applied.
    pub reconfigurations: usize,
    /// The latest configuration's number at the end.
    pub configs: u64,
    /// Pages proposed that were not the first of their shard's transfer.
    pub later_pages: u64,
    /// Of those, pages that resumed a transfer after a leadership change or a crash.
    pub resumed_pages: u64,
}

/// One randomized run of `seconds` virtual seconds of load under faults and reconfigurations.
///
/// Checked by the strict Redis model (see [`crate::kv_random::kv_random`]).
pub fn shardkv_random(seed: u64, seconds: u64) -> ShardRandomReport {
    shardkv_random_with(seed, seconds, true)
}

/// Keys of the Redis mix's transactions: pairs sharing a hash tag, so each pair is in one
/// shard (the shards of different pairs are whatever the hash gives).
pub const TX_KEYS: [[&str; 2]; 3] = [["{g0}a", "{g0}b"], ["{g1}a", "{g1}b"], ["{g2}a", "{g2}b"]];

fn shardkv_random_with(seed: u64, seconds: u64, strict: bool) -> ShardRandomReport {
    let cfg = {
        let probe = ShardTester::new("probe", seed, ShardTesterConfig::lab(3, false, None));
        ShardTesterConfig {
            max_raft_state: [None, Some(1000), Some(4000)][probe.rand(3) as usize],
            nshards: [4, 10, 10][probe.rand(3) as usize],
            page_bytes: Some([40, 80, 200][probe.rand(3) as usize]),
            // Drawn after the others, so every seed keeps its earlier choices.
            sessions: match probe.rand(3) {
                0 => SMALL_SESSIONS,
                _ => SessionLimits::default(),
            },
            ..ShardTesterConfig::lab(3, false, None)
        }
    };
    let small = cfg.sessions == SMALL_SESSIONS;
    let mrs = cfg.max_raft_state;
    let t = ShardTester::new("ShardKvRandom", seed, cfg);
    if !strict {
        t.set_redis_model(RedisModel::reads_run_ahead());
    }
    let clients = 3 + t.rand(5) as usize;
    let keys: Rc<Vec<String>> = Rc::new((0..12).map(|i| format!("key-{i}")).collect());
    let stats = Rc::new(RefCell::new(MixStats::default()));
    let stats2 = stats.clone();
    let t2 = t.clone();
    let (faults, reconfigurations, configs) =
        t.run_for(Duration::from_secs(seconds + 120), async move {
            let t = t2;
            let first = 1 + t.rand(3) as usize;
            t.joinm(&(0..first).collect::<Vec<_>>()).await;
            let stop = Rc::new(Cell::new(false));
            let load: Vec<_> = (0..clients)
                .map(|_| {
                    let c = client(t.clone(), keys.clone(), stop.clone(), small, stats2.clone());
                    t.rt.spawn(c)
                })
                .collect();
            let counts = nemesis(&t, Duration::from_secs(seconds)).await;
            heal_everything(&t);
            stop.set(true);
            for h in load {
                h.await;
            }
            let configs = settle(&t).await;
            let ck = t.make_client();
            for k in keys.iter() {
                ck.get(k).await;
            }
            read_tx_keys(&ck).await;
            (counts.0, counts.1, configs)
        });
    for node in t.group_nodes() {
        let (state, _) = t.persisted_sizes(node);
        if let Some(max) = mrs {
            assert!(
                state <= 8 * max,
                "seed {seed}: node {node} holds {state} bytes of Raft state > 8 × {max}"
            );
        }
    }
    t.check_linearizable();
    ShardRandomReport {
        mix: stats.take(),
        trace_hash: t.trace_hash(),
        operations: t.history_len(),
        faults,
        reconfigurations,
        configs,
        later_pages: t.pull_stats().later_pages,
        resumed_pages: t.pull_stats().resumed,
    }
}

/// A GET of every transaction key: with every key read at the end, the history shows each
/// key's final state.
async fn read_tx_keys(ck: &flotilla_testkit::ShardClient) {
    for k in TX_KEYS.iter().flatten() {
        let get = flotilla_check::RedisCmd::Get { key: k.to_string() };
        ck.try_redis(flotilla_check::RedisOp::Cmd(get), None).await;
    }
}

/// Per-shard records that expire while their clients are live (issue 16).
const SMALL_SESSIONS: SessionLimits = SessionLimits {
    idle_ms: 1_500,
    max_sessions: 4,
};

/// Random operations on random keys until told to stop; a third of them with a deadline
/// (all of them, if sessions may expire: a refusal as expired then ends one as unknown).
async fn client(
    t: Rc<ShardTester>,
    keys: Rc<Vec<String>>,
    stop: Rc<Cell<bool>>,
    small: bool,
    stats: Rc<RefCell<MixStats>>,
) {
    let ck = t.make_client();
    let all: Vec<String> = (keys.iter().cloned())
        .chain(TX_KEYS.iter().flatten().map(|k| k.to_string()))
        .collect();
    let groups: Vec<Vec<String>> = (TX_KEYS.iter())
        .map(|g| g.iter().map(|k| k.to_string()).collect())
        .collect();
    let now_ms = || t.now().as_millis() as u64;
    let rand = |n| t.rand(n);
    while !stop.get() {
        let k = &keys[t.rand(keys.len() as u64) as usize];
        let limit = (t.rand(3) == 0).then(|| Duration::from_millis(200 + t.rand(1000)));
        let limit = limit.or(small.then_some(Duration::from_secs(10)));
        let call_ms = now_ms();
        match t.rand(20) {
            0..=5 => {
                if let Some(v) = ck.try_get(k, limit).await {
                    note_lab_read(&stats, k, &v, call_ms);
                }
            }
            6..=10 => {
                if ck.try_put(k, &t.randstring(3), limit).await.is_some() {
                    note_lab_write(&stats, k, now_ms());
                }
            }
            11..=15 => {
                ck.try_append(k, &t.randstring(3), limit).await;
            }
            _ => {
                let env = MixEnv {
                    rand: &rand,
                    now_ms: &now_ms,
                    keys: &all,
                    groups: &groups,
                };
                let value = t.randstring(3);
                redis_step(&ck, &env, &value, limit, &stats).await;
            }
        }
        if t.rand(4) == 0 {
            t.sleep(Duration::from_millis(t.rand(50))).await;
        }
    }
}

/// Faults and reconfigurations every 50–600 ms for `duration`; returns how many of each.
async fn nemesis(t: &Rc<ShardTester>, duration: Duration) -> (usize, usize) {
    let end = t.now() + duration;
    let groups = t.config().groups;
    let n = t.config().n;
    let (mut faults, mut reconfigurations) = (0, 0);
    while t.now() < end {
        t.sleep(Duration::from_millis(50 + t.rand(550))).await;
        match t.rand(10) {
            // Reconfigure: join, leave or move, whatever the latest configuration allows.
            0..=3 => {
                let latest = t.query().await;
                let joined: Vec<usize> = (0..groups)
                    .filter(|&g| latest.groups.contains_key(&t.gid(g)))
                    .collect();
                let absent: Vec<usize> = (0..groups).filter(|g| !joined.contains(g)).collect();
                match t.rand(3) {
                    0 if !absent.is_empty() => {
                        let g = absent[t.rand(absent.len() as u64) as usize];
                        t.join(g).await;
                    }
                    // Never the last group: its shards would have nowhere to go.
                    1 if joined.len() > 1 => {
                        let g = joined[t.rand(joined.len() as u64) as usize];
                        t.leave(g).await;
                    }
                    _ => {
                        let g = joined[t.rand(joined.len() as u64) as usize];
                        let shard = t.rand(t.config().nshards as u64) as usize;
                        t.move_shard(shard, g).await;
                    }
                }
                reconfigurations += 1;
                // Half the time, once a group starts pulling, its leader crashes mid-transfer.
                if t.rand(2) == 0 && crash_a_pulling_leader(t).await {
                    faults += 1;
                }
            }
            4 | 5 => {
                let (g, i) = (t.rand(groups as u64) as usize, t.rand(n as u64) as usize);
                t.shutdown_server(g, i);
                faults += 1;
            }
            6 => {
                let (g, i) = (t.rand(groups as u64) as usize, t.rand(n as u64) as usize);
                t.start_server(g, i);
            }
            7 => {
                // A whole group down for a while, then back.
                let g = t.rand(groups as u64) as usize;
                t.shutdown_group(g);
                t.sleep(Duration::from_millis(t.rand(1000))).await;
                t.start_group(g);
                faults += 1;
            }
            8 => {
                // One server cut off from every other server.
                let victim = t.group_nodes()[t.rand((groups * n) as u64) as usize];
                let rest: Vec<NodeId> = (0..t.sim.borrow().len())
                    .map(NodeId::from_index)
                    .filter(|&i| i != victim)
                    .collect();
                t.partition(&[rest, vec![victim]]);
                faults += 1;
            }
            _ => {
                if t.rand(2) == 0 {
                    t.heal();
                }
                t.set_unreliable(t.rand(2) == 0);
                faults += 1;
            }
        }
    }
    (faults, reconfigurations)
}

/// Waits up to 500 ms for a group's leader to be pulling a shard, lets it go on for up to
/// 30 ms, and crashes it: a transfer cut mid-way, to be resumed by the next leader (or by
/// this one, restarted). Whether it crashed one.
async fn crash_a_pulling_leader(t: &Rc<ShardTester>) -> bool {
    for _ in 0..50 {
        if let Some((g, i)) = pulling_leader(t) {
            t.sleep(Duration::from_millis(t.rand(30))).await;
            t.shutdown_server(g, i);
            return true;
        }
        t.sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A live server (group, index) leading a group that is pulling a shard.
fn pulling_leader(t: &ShardTester) -> Option<(usize, usize)> {
    let (groups, n) = (t.config().groups, t.config().n);
    (0..groups)
        .flat_map(|g| (0..n).map(move |i| (g, i)))
        .find(|&(g, i)| {
            t.with_server(t.node(g, i), |s| {
                s.raft().is_leader() && !s.machine().pull_cursors().is_empty()
            })
            .unwrap_or(false)
        })
}

/// Every server up, every link up, a reliable network.
fn heal_everything(t: &ShardTester) {
    for g in 0..t.config().groups {
        for i in 0..t.config().n {
            if !t.sim.borrow().is_alive(t.node(g, i)) {
                t.start_server(g, i);
            }
        }
    }
    t.heal();
    t.set_unreliable(false);
}

/// Waits until every group's replicas all reached the latest configuration with nothing
/// pending, then checks that between them the groups hold each assigned shard exactly once.
/// Returns the configuration's number.
async fn settle(t: &Rc<ShardTester>) -> u64 {
    let latest = t.query().await;
    let deadline = t.now() + Duration::from_secs(30);
    loop {
        let views: Vec<(u64, bool)> = (t.group_nodes().into_iter())
            .map(|node| {
                t.with_server(node, |s| (s.machine().config().num, s.machine().settled()))
                    .expect("every server is up")
            })
            .collect();
        if views
            .iter()
            .all(|&(num, settled)| num == latest.num && settled)
        {
            break;
        }
        assert!(
            t.now() < deadline,
            "groups did not settle on configuration {} within 30 s: {views:?}",
            latest.num
        );
        t.sleep(Duration::from_millis(100)).await;
    }
    let max = t.config().sessions.max_sessions as usize;
    for node in t.group_nodes() {
        let records = t.with_server(node, |s| s.machine().shard_sessions());
        let records = records.expect("up");
        assert!(
            records.values().all(|&n| n <= max),
            "node {node} keeps more than {max} records in a shard: {records:?}"
        );
    }
    for g in 0..t.config().groups {
        for i in 0..t.config().n {
            let held: BTreeMap<usize, ShardState> = t
                .with_server(t.node(g, i), |s| s.machine().shard_states())
                .expect("up");
            let owned: BTreeMap<usize, ShardState> = (latest.shards.iter().enumerate())
                .filter(|(_, &o)| o == t.gid(g))
                .map(|(s, _)| (s, ShardState::Serving))
                .collect();
            assert_eq!(
                held,
                owned,
                "group {} replica {i} holds other shards than configuration {} gives it",
                t.gid(g) as Gid,
                latest.num
            );
        }
    }
    latest.num
}
