//! Membership change on the simulated key/value service (Ongaro's thesis §4.1–§4.2):
//! learners that catch up (by snapshot when the log is compacted) before promotion, growing
//! and shrinking a group under load, removing the leader by handing leadership off first,
//! a removed server that cannot disrupt, the membership surviving restarts, and replacing a
//! dead server. Changes are made as an operator makes them (`flotilla_testkit::membership`:
//! admin requests over the network, retried); every history is checked for linearizability,
//! and clients that append to their own keys check at the end that no acknowledged write was
//! lost. Scenarios panic with a sentence on failure and return the trace hash.
//!
//! The simulator's slots are fixed: a "new machine" is a slot that boots joining (no boot
//! voters), a "removed machine" a slot that stays up but is no longer a member (or is crashed).
//! The deliberately broken cores (two concurrent changes, a change before the new leader's
//! term is committed) are in [`crate::membership_broken`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use flotilla_kv::KvReplica;
use flotilla_raft::{Config, Membership, MembershipChange, Role};
use flotilla_rsm::{AdminError, AdminOp};
use flotilla_sim::{JoinHandle, NodeId};
use flotilla_testkit::kv_tester::read_mode_from_env;
use flotilla_testkit::membership as ops;
use flotilla_testkit::service::SimNode;
use flotilla_testkit::KvTester;

use crate::kv_common::{append_value, check_client_appends};
use crate::raft_prod::TRANSFER_BOUND;

type Tester = Rc<KvTester<KvReplica>>;

/// How long an operator's change may take before the scenario fails: generous, since on the
/// unreliable network requests, answers and elections are lost and retried.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(20);

/// A group of `slots` KV servers of which `0..voters` found it, reading as
/// `FLOTILLA_READ_MODE` says (by default as services do).
fn group(
    name: &str,
    seed: u64,
    (slots, voters): (usize, usize),
    unreliable: bool,
    max_raft_state: Option<usize>,
) -> Tester {
    let mode = read_mode_from_env();
    KvTester::kvraft_members(
        name,
        seed,
        slots,
        voters,
        unreliable,
        max_raft_state,
        move |cfg| {
            if let Some(m) = mode {
                cfg.read_mode = m;
            }
        },
    )
}

fn add(id: NodeId) -> MembershipChange {
    MembershipChange::AddLearner {
        id,
        addr: format!("sim-{id}"),
    }
}

fn promote(id: NodeId) -> MembershipChange {
    MembershipChange::Promote { id }
}

/// The simulator's processes `r`.
fn nodes(r: std::ops::Range<usize>) -> impl Iterator<Item = NodeId> {
    r.map(NodeId::from_index)
}

fn ids(set: impl IntoIterator<Item = NodeId>) -> BTreeSet<NodeId> {
    set.into_iter().collect()
}

/// Runs `f` on live server `i`'s Raft core.
fn raft<T>(t: &Tester, i: NodeId, f: impl FnOnce(&flotilla_raft::Raft) -> T) -> Option<T> {
    t.svc.with_server(i, |r| f(r.raft()))
}

// ----- load -----

/// Clients that write continuously: client `c` appends `append_value(c, j)` to its own key
/// `k{c}` (so the final value shows every acknowledged append, once, in order), and every
/// fourth operation puts or gets the shared key `x` (so the checker has concurrent operations
/// to order). No operation gives up: each is acknowledged before the next.
struct Load {
    stop: Rc<Cell<bool>>,
    /// Appends acknowledged, per client.
    acked: Rc<RefCell<Vec<usize>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(t: &Tester, clients: usize) -> Load {
        let stop = Rc::new(Cell::new(false));
        let acked = Rc::new(RefCell::new(vec![0; clients]));
        let clients = (0..clients)
            .map(|cli| {
                let (t2, stop, acked) = (t.clone(), stop.clone(), acked.clone());
                t.svc.rt.spawn(async move {
                    let t = t2;
                    let ck = t.make_client();
                    let mut j = 0;
                    while !stop.get() {
                        ck.append(&format!("k{cli}"), &append_value(cli, j)).await;
                        j += 1;
                        acked.borrow_mut()[cli] = j;
                        if j % 4 == 0 {
                            if t.svc.rand(2) == 0 {
                                ck.put("x", &format!("{cli}.{j}")).await;
                            } else {
                                ck.get("x").await;
                            }
                        }
                        t.svc.sleep(Duration::from_millis(t.svc.rand(10))).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            clients,
        }
    }

    fn acked(&self) -> usize {
        self.acked.borrow().iter().sum()
    }

    /// Stops the clients, then reads every client's key: each acknowledged append is there.
    async fn finish(self, t: &Tester) {
        self.stop.set(true);
        for h in self.clients {
            h.await;
        }
        let reader = t.make_client();
        let acked = self.acked.borrow().clone();
        for (cli, &count) in acked.iter().enumerate() {
            let v = reader.get(&format!("k{cli}")).await;
            check_client_appends(cli, &v, count);
        }
    }
}

/// Waits (polling every 10 ms, up to `limit`) until `cond` holds; panics with `what` if not.
async fn wait_until(t: &Tester, limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let t0 = t.svc.now();
    while !cond() {
        assert!(
            t.svc.now() - t0 < limit,
            "{what}: not within {limit:?}:{}",
            ops::describe(&t.svc)
        );
        t.svc.sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 5 s) for a server to lead; returns it.
async fn await_leader(t: &Tester) -> NodeId {
    let limit = Duration::from_secs(5);
    wait_until(t, limit, "a leader", || ops::leader(&t.svc).is_some()).await;
    ops::leader(&t.svc).expect("checked")
}

/// Every server in `members` uses `m`.
fn assert_members_use(t: &Tester, members: impl IntoIterator<Item = NodeId>, m: &Membership) {
    for s in members {
        let got = ops::membership_of(&t.svc, s);
        assert_eq!(got.as_ref(), Some(m), "server {s} uses another membership");
    }
}

// ----- scenarios -----

/// What a watch on one slot saw, after every input it handled.
#[derive(Default, Debug)]
struct SlotWatch {
    /// While not a voter: it started an election or a pre-vote round.
    campaigned_as_non_voter: bool,
    /// While not a voter: it voted.
    voted_as_non_voter: bool,
    /// Its snapshot index and commit index when its commit index first left 0.
    first_commit: Option<(u64, u64)>,
}

/// Watches slot `slot` after every input it handles (besides the replicas' invariant checks).
fn watch_slot(t: &Tester, slot: NodeId) -> Rc<RefCell<SlotWatch>> {
    let watch = Rc::new(RefCell::new(SlotWatch::default()));
    let w = watch.clone();
    t.svc.sim.borrow_mut().add_checker(Box::new(move |i, node| {
        let SimNode::Server(r) = node else { return };
        if i != slot {
            return;
        }
        let (raft, mut w) = (r.raft(), w.borrow_mut());
        if !raft.is_voter() {
            w.campaigned_as_non_voter |= raft.role() != Role::Follower || raft.is_pre_candidate();
            w.voted_as_non_voter |= raft.voted_for().is_some();
        }
        if w.first_commit.is_none() && raft.commit_index() > 0 {
            w.first_commit = Some((raft.log().snapshot_index(), raft.commit_index()));
        }
    }));
    watch
}

/// Three voters and a joining slot (3), with a small `max_raft_state` so logs are compacted.
/// After 100 writes the leader's log starts after a snapshot; slot 3 is added as a learner,
/// and its first committed state must come from the leader's snapshot (InstallSnapshot: its
/// snapshot index equals its commit index, at or past the leader's snapshot point when it was
/// added); it then reaches the leader's commit index. While a learner it neither campaigns
/// nor votes, and no server's term moves. Promoted, it takes leadership by transfer and
/// serves writes and reads; every server then uses voters {0,1,2,3}.
pub fn learner_catches_up_by_snapshot(seed: u64) -> u64 {
    let t = group("LearnerBySnapshot", seed, (4, 3), false, Some(1000));
    let learner = NodeId::new(3);
    let watch = watch_slot(&t, learner);
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let ck = t.make_client();
        for i in 0..100 {
            ck.put(&format!("k{}", i % 5), &format!("v{i}")).await;
        }
        let l = ops::leader(&t.svc).expect("a leader answered the puts");
        let (snap, commit, term) = raft(&t, l, |r| {
            (r.log().snapshot_index(), r.commit_index(), r.term())
        })
        .expect("alive");
        assert!(snap > 0, "leader {l} has not compacted its log");
        let m = ops::change(&t.svc, add(learner), CHANGE_DEADLINE).await;
        assert!(m.is_learner(learner), "{m:?}");
        wait_until(&t, Duration::from_secs(2), "the learner catches up", || {
            raft(&t, learner, |r| r.commit_index()).unwrap_or(0) >= commit
        })
        .await;
        let (first_snap, first_commit) = watch.borrow().first_commit.expect("it committed");
        assert!(
            first_snap > 0 && first_snap == first_commit && first_snap >= snap,
            "the learner's first state (snapshot {first_snap}, commit {first_commit}) did not \
             come from the leader's snapshot at {snap}"
        );
        let m = ops::change(&t.svc, promote(learner), CHANGE_DEADLINE).await;
        assert_eq!(m.voters, ids(nodes(0..4)));
        for s in 0..4 {
            let now = raft(&t, NodeId::new(s), |r| r.term()).expect("alive");
            assert_eq!(
                now, term,
                "server {s}'s term moved while {learner} was a learner"
            );
        }
        let (campaigned, voted) = {
            let w = watch.borrow();
            (w.campaigned_as_non_voter, w.voted_as_non_voter)
        };
        assert!(!campaigned, "the learner campaigned");
        assert!(!voted, "the learner voted");
        ops::transfer(&t.svc, learner, Duration::from_secs(2)).await;
        ck.put("after", "promotion").await;
        assert_eq!(ck.get("after").await, "promotion");
        let m = ops::settled(&t.svc, Duration::from_secs(2)).await;
        assert_members_use(&t, nodes(0..4), &m);
    });
    t.finish()
}

/// Three voters and two joining slots on the unreliable network, with snapshots, under five
/// writing clients: slots 3 and 4 are added as learners, then promoted, one change at a
/// time. Writes go on throughout; at the end every acknowledged append is readable, the
/// history is linearizable, and every server uses voters {0,1,2,3,4} with no learners.
pub fn grow_3_to_5_under_load(seed: u64) -> u64 {
    let t = group("Grow3To5", seed, (5, 3), true, Some(2000));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let load = Load::start(&t, 5);
        t.svc.sleep(Duration::from_secs(1)).await;
        for id in [3, 4] {
            ops::change(&t.svc, add(NodeId::new(id)), CHANGE_DEADLINE).await;
        }
        for id in [3, 4] {
            ops::change(&t.svc, promote(NodeId::new(id)), CHANGE_DEADLINE).await;
        }
        let acked = load.acked();
        t.svc.sleep(Duration::from_secs(2)).await;
        assert!(
            load.acked() > acked,
            "no write acknowledged after the growth"
        );
        load.finish(&t).await;
        let m = ops::settled(&t.svc, Duration::from_secs(10)).await;
        assert_eq!(m.voters, ids(nodes(0..5)), "{m:?}");
        assert!(m.learners.is_empty(), "{m:?}");
        assert_members_use(&t, nodes(0..5), &m);
    });
    t.finish()
}

/// Five voters on the unreliable network, with snapshots, under five writing clients:
/// servers 3 and 4 are removed (leadership handed off first if one of them leads). Writes go
/// on; at the end every acknowledged append is readable, the history is linearizable, servers
/// 0–2 use voters {0,1,2}, and the removed servers (still up) do not lead.
pub fn shrink_5_to_3_under_load(seed: u64) -> u64 {
    let t = group("Shrink5To3", seed, (5, 5), true, Some(2000));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let load = Load::start(&t, 5);
        t.svc.sleep(Duration::from_secs(1)).await;
        for id in [3, 4] {
            ops::remove(&t.svc, NodeId::new(id), CHANGE_DEADLINE).await;
        }
        let acked = load.acked();
        t.svc.sleep(Duration::from_secs(2)).await;
        assert!(
            load.acked() > acked,
            "no write acknowledged after the shrink"
        );
        load.finish(&t).await;
        let m = ops::settled(&t.svc, Duration::from_secs(10)).await;
        assert_eq!(m.voters, ids(nodes(0..3)), "{m:?}");
        assert!(m.learners.is_empty(), "{m:?}");
        assert_members_use(&t, nodes(0..3), &m);
        for s in [3, 4] {
            assert_eq!(
                raft(&t, NodeId::new(s), |r| r.is_leader()),
                Some(false),
                "removed {s} leads"
            );
        }
    });
    t.finish()
}

/// Three voters under three writing clients. Asked to remove itself, the leader refuses
/// (transfer leadership first); leadership is handed to another voter, which leads in the
/// next term within the transfer bound; the old leader is then removed. The two remaining
/// voters keep committing, the new leader keeps its term (the removed one does not disrupt),
/// and the history is linearizable with every acknowledged append readable.
pub fn remove_leader_by_transfer(seed: u64) -> u64 {
    let t = group("RemoveLeader", seed, (3, 3), false, None);
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let load = Load::start(&t, 3);
        let old = await_leader(&t).await;
        let term = raft(&t, old, |r| r.term()).expect("alive");
        let remove_self = AdminOp::Change(MembershipChange::Remove { id: old });
        let mut answer = ops::ask(&t.svc, old, remove_self.clone()).await;
        // A leader that has not yet committed an entry of its term refuses every change
        // for now; ask again once it has.
        while let Some(Err(AdminError::Busy(_))) = answer {
            t.svc.sleep(Duration::from_millis(10)).await;
            answer = ops::ask(&t.svc, old, remove_self.clone()).await;
        }
        match answer {
            Some(Err(AdminError::Refused(why))) => {
                assert!(why.contains("transfer leadership first"), "refused: {why}")
            }
            other => panic!("the leader asked to remove itself answered {other:?}"),
        }
        let to = NodeId::from_index((old.index() + 1 + t.svc.rand(2) as usize) % 3);
        let t0 = t.svc.now();
        ops::transfer(&t.svc, to, Duration::from_secs(2)).await;
        let took = t.svc.now() - t0;
        assert!(took <= TRANSFER_BOUND, "the hand-off took {took:?}");
        let new_term = raft(&t, to, |r| r.term()).expect("alive");
        assert_eq!(
            new_term,
            term + 1,
            "the hand-off took more than one election"
        );
        let m = ops::change(
            &t.svc,
            MembershipChange::Remove { id: old },
            CHANGE_DEADLINE,
        )
        .await;
        let rest: Vec<NodeId> = (0..3)
            .map(NodeId::from_index)
            .filter(|&s| s != old)
            .collect();
        assert_eq!(m.voters, ids(rest.clone()), "{m:?}");
        let acked = load.acked();
        t.svc.sleep(Duration::from_secs(2)).await;
        assert!(
            load.acked() > acked + 10,
            "the two voters stopped committing"
        );
        assert_eq!(
            ops::leader(&t.svc),
            Some(to),
            "leadership moved after the removal"
        );
        assert_eq!(raft(&t, to, |r| r.term()), Some(new_term), "the term moved");
        load.finish(&t).await;
        let m = ops::settled(&t.svc, Duration::from_secs(2)).await;
        assert_members_use(&t, rest, &m);
    });
    t.finish()
}

/// What [`removed_node_disruption`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedOutcome {
    pub leader: NodeId,
    pub removed: NodeId,
    /// The removed server still counted itself a voter when its links healed (it never
    /// learned of its removal, as the scenario intends).
    pub removed_thought_voter: bool,
    /// After the heal it started elections or pre-vote rounds (its timer kept firing).
    pub removed_campaigned: bool,
    pub term_before: u64,
    /// The leader's `(term, is_leader)` at the end.
    pub leader_after: (u64, bool),
    /// The highest term among the remaining members at the end.
    pub term_after: u64,
}

impl RemovedOutcome {
    pub fn disrupted(&self) -> bool {
        self.leader_after != (self.term_before, true) || self.term_after != self.term_before
    }
}

/// How long the removed server stays connected to the others: many election timeouts.
pub const REMOVED_WATCH: Duration = Duration::from_secs(5);

/// Three voters under two writing clients, with pre-vote and check-quorum as given. A
/// follower is cut off from the other servers and removed while cut off, so it never learns
/// of its removal; after 1 s its links heal and it stays connected for [`REMOVED_WATCH`],
/// its election timer firing (it hears from no leader: it is no member of the leader's).
/// Reports whether the leader and the remaining members' term moved. The clients' history is
/// checked and their appends read back at the end either way.
pub fn removed_node_disruption(seed: u64, pre_vote: bool, check_quorum: bool) -> RemovedOutcome {
    let t = KvTester::kvraft_members(
        "RemovedNode",
        seed,
        3,
        3,
        false,
        None,
        move |cfg: &mut Config| {
            cfg.pre_vote = pre_vote;
            cfg.check_quorum = check_quorum;
        },
    );
    let campaigned = Rc::new(Cell::new(false));
    let watching: Rc<Cell<Option<NodeId>>> = Rc::new(Cell::new(None));
    let (c, w) = (campaigned.clone(), watching.clone());
    t.svc.sim.borrow_mut().add_checker(Box::new(move |i, node| {
        if let (SimNode::Server(r), Some(removed)) = (node, w.get()) {
            let raft = r.raft();
            if i == removed && (raft.role() == Role::Candidate || raft.is_pre_candidate()) {
                c.set(true);
            }
        }
    }));
    let t2 = t.clone();
    let outcome = t.svc.run(async move {
        let t = t2;
        let load = Load::start(&t, 2);
        let leader = await_leader(&t).await;
        let removed = NodeId::from_index((leader.index() + 1) % 3);
        let other = NodeId::from_index((leader.index() + 2) % 3);
        t.svc.partition(&[vec![removed], vec![leader, other]]);
        let change = MembershipChange::Remove { id: removed };
        let m = ops::change(&t.svc, change, CHANGE_DEADLINE).await;
        assert_eq!(m.voters, ids([leader, other]));
        let term_before = raft(&t, leader, |r| r.term()).expect("alive");
        t.svc.sleep(Duration::from_secs(1)).await;
        let removed_thought_voter = raft(&t, removed, |r| r.is_voter()).expect("alive");
        t.svc.heal();
        watching.set(Some(removed));
        t.svc.sleep(REMOVED_WATCH).await;
        let leader_after = raft(&t, leader, |r| (r.term(), r.is_leader())).expect("alive");
        let term_after = [leader, other]
            .iter()
            .filter_map(|&s| raft(&t, s, |r| r.term()))
            .max()
            .expect("alive");
        load.finish(&t).await;
        RemovedOutcome {
            leader,
            removed,
            removed_thought_voter,
            removed_campaigned: campaigned.get(),
            term_before,
            leader_after,
            term_after,
        }
    });
    t.check_linearizable();
    outcome
}

/// Five slots, voters {0,1,2} at boot, with a small `max_raft_state`: slots 3 and 4 are added
/// and 3 promoted; 100 writes follow (every server snapshots past those changes); then 4 is
/// promoted and 0 removed (handing leadership off first if it leads), and a few writes follow.
/// Every server is crashed and restarted from its persister: each comes back with the
/// membership it had (the joining slots, which boot with no voters, from their own log or
/// snapshot); some server's snapshot holds a membership with 3 as a voter; the group elects a
/// leader among {1,2,3,4} and serves writes; restarting the removed server 0 then changes
/// neither the leader nor its term.
pub fn membership_survives_restart(seed: u64) -> u64 {
    let t = group("MembershipRestart", seed, (5, 3), false, Some(1000));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let ck = t.make_client();
        ck.put("a", "0").await;
        ops::change(&t.svc, add(NodeId::new(3)), CHANGE_DEADLINE).await;
        ops::change(&t.svc, add(NodeId::new(4)), CHANGE_DEADLINE).await;
        ops::change(&t.svc, promote(NodeId::new(3)), CHANGE_DEADLINE).await;
        for i in 0..100 {
            ck.append("a", &format!(" {i}")).await;
        }
        ops::change(&t.svc, promote(NodeId::new(4)), CHANGE_DEADLINE).await;
        let final_m = ops::remove(&t.svc, NodeId::new(0), CHANGE_DEADLINE).await;
        assert_eq!(final_m.voters, ids(nodes(1..5)));
        for i in 0..3 {
            ck.put("b", &i.to_string()).await;
        }
        ops::settled(&t.svc, Duration::from_secs(2)).await;
        let before: Vec<Membership> = (0..5)
            .map(|s| ops::membership_of(&t.svc, NodeId::new(s)).expect("alive"))
            .collect();
        let snapshotted = (0..5).any(|s| {
            raft(&t, NodeId::new(s), |r| {
                r.log()
                    .snapshot_membership()
                    .is_some_and(|m| m.is_voter(NodeId::new(3)))
            })
            .unwrap_or(false)
        });
        assert!(
            snapshotted,
            "no snapshot holds a membership with 3 as a voter"
        );
        for s in 0..5 {
            t.svc.crash(NodeId::new(s));
        }
        for s in 0..5 {
            t.svc.restart(NodeId::new(s));
        }
        for (s, m) in before.iter().enumerate() {
            let after = ops::membership_of(&t.svc, NodeId::from_index(s)).expect("restarted");
            assert_eq!(&after, m, "server {s} restarted with another membership");
        }
        let l = await_leader(&t).await;
        assert!(
            final_m.is_voter(l),
            "{l} leads but is no voter of {final_m:?}"
        );
        ck.put("b", "after restart").await;
        let term = raft(&t, l, |r| r.term()).expect("alive");
        t.svc.restart(NodeId::new(0));
        t.svc.sleep(Duration::from_secs(2)).await;
        assert_eq!(
            ops::leader(&t.svc),
            Some(l),
            "restarting the removed server moved the leader"
        );
        assert_eq!(
            raft(&t, l, |r| r.term()),
            Some(term),
            "restarting the removed server moved the term"
        );
        assert_eq!(ck.get("b").await, "after restart");
    });
    t.finish()
}

/// Three voters and a joining slot on the unreliable network, with snapshots, under five
/// writing clients. One of the voters (perhaps the leader) crashes for good; slot 3 is added
/// as a learner, promoted, and the dead server removed. Writes go on; at the end every
/// acknowledged append is readable, the history is linearizable, and the three live servers
/// use the membership of themselves.
pub fn replace_crashed_node(seed: u64) -> u64 {
    let t = group("ReplaceCrashed", seed, (4, 3), true, Some(2000));
    let t2 = t.clone();
    t.svc.run(async move {
        let t = t2;
        let load = Load::start(&t, 5);
        t.svc.sleep(Duration::from_secs(1)).await;
        let dead = NodeId::new(t.svc.rand(3));
        t.svc.crash(dead);
        ops::change(&t.svc, add(NodeId::new(3)), CHANGE_DEADLINE).await;
        ops::change(&t.svc, promote(NodeId::new(3)), CHANGE_DEADLINE).await;
        let change = MembershipChange::Remove { id: dead };
        let m = ops::change(&t.svc, change, CHANGE_DEADLINE).await;
        let live: Vec<NodeId> = (0..4)
            .map(NodeId::from_index)
            .filter(|&s| s != dead)
            .collect();
        assert_eq!(m.voters, ids(live.clone()), "{m:?}");
        let acked = load.acked();
        t.svc.sleep(Duration::from_secs(2)).await;
        assert!(
            load.acked() > acked,
            "no write acknowledged after the replacement"
        );
        load.finish(&t).await;
        let m = ops::settled(&t.svc, Duration::from_secs(10)).await;
        assert_members_use(&t, live, &m);
    });
    t.finish()
}
