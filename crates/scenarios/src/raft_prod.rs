//! Raft for production, on the simulator: pre-vote (Ongaro's thesis §9.6), check-quorum
//! (thesis §6.2), leader stickiness (thesis §4.2.3) and leader transfer (thesis §3.10).
//!
//! Each scenario takes the [`Features`] its peers run with, so a test can run it with a
//! feature, without it, and with it broken on purpose ([`Sabotage`]), and show that the
//! scenario tells them apart. Peers otherwise use the labs' `Config::new` (no leader no-op,
//! one AppendEntries in flight), on a reliable network, so the outcomes are the features'
//! doing: the disruption scenarios are deterministic in what they report, whatever the seed.

use std::rc::Rc;
use std::time::Duration;

use flotilla_raft::NodeId;
use flotilla_raft::{Config, Sabotage};
use flotilla_testkit::raft_tester::{int_cmd, RaftTester, ELECTION_TIMEOUT, TICK};

/// The production features the peers run with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Breaks a feature on purpose (test-only).
    pub sabotage: Option<Sabotage>,
}

impl Features {
    /// The labs' Raft (`Config::new`).
    pub const NONE: Features = Features {
        pre_vote: false,
        check_quorum: false,
        sabotage: None,
    };
    pub const PRE_VOTE: Features = Features {
        pre_vote: true,
        ..Features::NONE
    };
    pub const CHECK_QUORUM: Features = Features {
        check_quorum: true,
        ..Features::NONE
    };
    /// Both, as a service runs (`Config::for_service`).
    pub const BOTH: Features = Features {
        pre_vote: true,
        check_quorum: true,
        sabotage: None,
    };

    /// Pre-vote on, broken as `sabotage` says.
    pub fn broken(sabotage: Sabotage) -> Features {
        Features {
            sabotage: Some(sabotage),
            ..Features::PRE_VOTE
        }
    }

    fn apply(self, cfg: &mut Config) {
        cfg.pre_vote = self.pre_vote;
        cfg.check_quorum = self.check_quorum;
        cfg.sabotage = self.sabotage;
    }
}

/// How long the disruption scenarios keep a peer cut off: many election timeouts (the
/// longest is 600 ms), so a peer that would raise its term does so several times.
pub const CUT_OFF: Duration = Duration::from_secs(5);

/// The check-quorum bound: a leader steps down at the first tick at which it has had no reply
/// from a majority for the minimum election timeout (300 ms with `Config::new`'s 30 ticks of
/// 10 ms). Its last reply came before it was cut off, so it steps down at most 300 ms after;
/// the scenario polls every tick, which adds up to one more, and one tick of slack.
pub const STEP_DOWN_BOUND: Duration = Duration::from_millis(300 + 2 * 10);

fn tester(n: usize, seed: u64, f: Features) -> Rc<RaftTester> {
    RaftTester::with_config(n, false, false, seed, move |cfg| f.apply(cfg))
}

/// What a disruption scenario saw: whether the leader from before the fault still leads, in
/// the same term, and whether the peers that matter stayed in that term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disruption {
    pub leader: usize,
    pub term_before: u64,
    /// The old leader's `(term, is_leader)` at the end.
    pub leader_after: (u64, bool),
    /// The highest term among the watched peers at the end.
    pub term_after: u64,
}

impl Disruption {
    /// True if the leader lost its leadership or any watched peer's term moved.
    pub fn disrupted(&self) -> bool {
        self.leader_after != (self.term_before, true) || self.term_after != self.term_before
    }
}

/// Elects a leader, commits one command on every peer, and returns the leader and its term,
/// which every peer then shares.
async fn settled_leader(c: &RaftTester) -> (usize, u64) {
    c.one(int_cmd(1), c.n(), true).await;
    let leader = c.check_one_leader().await;
    let term = c.check_terms();
    (leader.index(), term)
}

fn max_term(c: &RaftTester, peers: impl Iterator<Item = usize>) -> u64 {
    peers
        .filter_map(|i| c.get_state(NodeId::from_index(i)).map(|(t, _)| t))
        .max()
        .expect("a live peer")
}

/// Pre-vote's rejoining peer (thesis §9.6): one follower of three is cut off from everyone for
/// [`CUT_OFF`], then reconnected for 2 s. Its log is as up to date as the others' (nothing is
/// proposed meanwhile), so only the pre-vote rules keep it from disrupting. Watches every peer.
pub fn rejoining_follower(seed: u64, f: Features) -> Disruption {
    let n = 3;
    let t = tester(n, seed, f);
    let c = t.clone();
    t.run(async move {
        let (leader, term_before) = settled_leader(&c).await;
        let follower = (leader + 1) % n;
        c.disconnect(NodeId::from_index(follower));
        c.sleep(CUT_OFF).await;
        c.connect(NodeId::from_index(follower));
        c.sleep(2 * ELECTION_TIMEOUT).await;
        Disruption {
            leader,
            term_before,
            leader_after: c
                .get_state(NodeId::from_index(leader))
                .expect("leader alive"),
            term_after: max_term(&c, 0..n),
        }
    })
}

/// A partial partition: one follower of three loses its link to the leader only, for
/// [`CUT_OFF`]; it still reaches the other follower, which still hears the leader. With
/// pre-vote, its pre-votes are refused (the other follower is in the leader's lease); with
/// check-quorum alone, its real RequestVotes are ignored (stickiness). Without either, it
/// wins the other follower's vote and deposes the leader. Watches the leader and the other
/// follower (the cut-off one may raise its own term without effect).
pub fn follower_cut_from_leader(seed: u64, f: Features) -> Disruption {
    let n = 3;
    let t = tester(n, seed, f);
    let c = t.clone();
    t.run(async move {
        let (leader, term_before) = settled_leader(&c).await;
        let follower = (leader + 1) % n;
        c.set_link(
            NodeId::from_index(leader),
            NodeId::from_index(follower),
            false,
        );
        c.sleep(CUT_OFF).await;
        Disruption {
            leader,
            term_before,
            leader_after: c
                .get_state(NodeId::from_index(leader))
                .expect("leader alive"),
            term_after: max_term(&c, (0..n).filter(|&i| i != follower)),
        }
    })
}

/// Check-quorum (thesis §6.2): the leader of `n` peers is cut off from the majority (alone for
/// 3 peers; with one follower for 5). Returns how long it went on leading, or `None` if it
/// still led after [`CUT_OFF`]. When it steps down, it must do so in its own term (not
/// deposed by a higher one); then the majority must elect a leader and commit, and after the
/// partition heals every peer must commit again.
pub fn isolated_leader_steps_down(seed: u64, n: usize, f: Features) -> Option<Duration> {
    let t = tester(n, seed, f);
    let c = t.clone();
    t.run(async move {
        let (leader, term) = settled_leader(&c).await;
        let minority: Vec<NodeId> = (0..(n - 1) / 2)
            .map(|k| NodeId::from_index((leader + k) % n))
            .collect();
        let majority: Vec<NodeId> = (0..n)
            .map(NodeId::from_index)
            .filter(|i| !minority.contains(i))
            .collect();
        c.partition(&[minority, majority.clone()]);
        let t0 = c.rt.now();
        let mut led_for = None;
        while c.rt.now() - t0 < CUT_OFF {
            c.sleep(TICK).await;
            let (t, is_leader) = c
                .get_state(NodeId::from_index(leader))
                .expect("leader alive");
            if !is_leader {
                assert_eq!(t, term, "the cut-off leader was deposed by a higher term");
                led_for = Some(c.rt.now() - t0);
                break;
            }
        }
        if led_for.is_some() {
            let new = c.check_one_leader().await;
            assert!(majority.contains(&new), "leader {new} is in the minority");
            c.one(int_cmd(2), majority.len(), true).await;
            for i in 0..n {
                c.connect(NodeId::from_index(i));
            }
            c.one(int_cmd(3), n, true).await;
        }
        led_for
    })
}

/// Liveness with the features on: 5 peers, 8 rounds in which the leader crashes, or is cut
/// off (alone or with another peer). Each time the rest must elect a new leader within the
/// labs' `check_one_leader` bound (about 5 s) and commit; then everyone comes back and must
/// commit again. Pre-vote and stickiness delay elections (a peer in a lease refuses), and the
/// cut-off leader must rejoin without blocking anyone.
pub fn leader_failover(seed: u64, f: Features) -> u64 {
    let n = 5;
    let t = tester(n, seed, f);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(1), n, true).await;
        for round in 0..8u64 {
            let leader = c.check_one_leader().await;
            let other =
                NodeId::from_index((leader.index() + 1 + c.rand(n as u64 - 1) as usize) % n);
            match c.rand(3) {
                0 => c.crash1(leader),
                1 => c.disconnect(leader),
                _ => {
                    c.disconnect(leader);
                    c.disconnect(other);
                }
            }
            let new = c.check_one_leader().await;
            assert_ne!(
                new, leader,
                "round {round}: the cut-off leader still counts"
            );
            let up = (0..n)
                .filter(|&i| c.is_connected(NodeId::from_index(i)))
                .count();
            c.one(int_cmd(10 + round), up, true).await;
            c.heal_all();
            c.one(int_cmd(100 + round), n, true).await;
        }
    });
    t.trace_hash()
}

/// The leader-transfer bound: from the leader's `transfer_leadership` to the target leading in
/// the next term. The transfer needs the target to catch up (one round trip: the leader
/// refuses new proposals meanwhile), `TimeoutNow` and one vote round trip, all far below the
/// minimum election timeout (300 ms), which is the bound; an election that a timer started
/// instead would have to wait out the lease first, and under pre-vote would be in a later term.
pub const TRANSFER_BOUND: Duration = Duration::from_millis(300);

/// What one leader transfer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRound {
    pub old: usize,
    pub target: usize,
    pub term_before: u64,
    /// How long after the request the target led in `term_before + 1`, or `None` if it did
    /// not within [`TRANSFER_BOUND`].
    pub led_after: Option<Duration>,
    /// Proposals the old leader refused while it still led (the transfer in progress).
    pub refused: u64,
}

/// Leader transfer (thesis §3.10) under load: `n` peers running `f`; in each of `rounds`
/// rounds the leader is asked to hand over to a random follower while commands keep arriving
/// (a few at once, then one per tick to whichever peer accepts). Records when the target
/// leads in the next term; if it does, the old leader must follow it within the bound, and a
/// command must then commit on every peer (the tester checks that every applied command
/// agrees). Stops at the first round that does not complete; at the end, the cluster must
/// still commit a command on every peer.
pub fn leader_transfer_under_load(
    seed: u64,
    n: usize,
    f: Features,
    rounds: usize,
) -> Vec<TransferRound> {
    let t = tester(n, seed, f);
    let c = t.clone();
    t.run(async move {
        let mut out = Vec::new();
        let mut cmd = 1000;
        let mut next_cmd = || {
            cmd += 1;
            int_cmd(cmd)
        };
        c.one(next_cmd(), n, true).await;
        for _ in 0..rounds {
            let old = c.check_one_leader().await;
            let (term_before, _) = c.get_state(old).expect("leader alive");
            let target = NodeId::from_index((old.index() + 1 + c.rand(n as u64 - 1) as usize) % n);
            for _ in 0..5 {
                c.start(old, next_cmd());
            }
            let asked = c.transfer_leadership(old, target).expect("leader alive");
            assert_eq!(asked, Ok(()), "the leader refused the transfer");
            let t0 = c.rt.now();
            let mut led_after = None;
            let mut refused = 0;
            while c.rt.now() - t0 <= TRANSFER_BOUND {
                if c.get_state(target) == Some((term_before + 1, true)) {
                    led_after = Some(c.rt.now() - t0);
                    break;
                }
                for i in (0..n).map(NodeId::from_index) {
                    match c.start(i, next_cmd()) {
                        Some((_, _, true)) => break,
                        _ if i == old && c.get_state(old) == Some((term_before, true)) => {
                            refused += 1
                        }
                        _ => {}
                    }
                }
                c.sleep(TICK).await;
            }
            out.push(TransferRound {
                old: old.index(),
                target: target.index(),
                term_before,
                led_after,
                refused,
            });
            if led_after.is_none() {
                break;
            }
            let t1 = c.rt.now();
            while c.with_raft(old, |r| r.leader()) != Some(Some(target)) {
                assert!(
                    c.rt.now() - t1 <= TRANSFER_BOUND,
                    "the old leader {old} does not follow {target}"
                );
                c.sleep(TICK).await;
            }
            assert_eq!(c.get_state(old), Some((term_before + 1, false)));
            c.one(next_cmd(), n, true).await;
        }
        c.one(next_cmd(), n, true).await;
        out
    })
}
