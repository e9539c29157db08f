//! Checks Raft's safety properties (Figure 3 of the extended paper) across the whole cluster
//! after every simulator step:
//!
//! * **Election safety**: at most one leader per term, ever.
//! * **Log matching**: if two logs hold an entry with the same index and term, they are
//!   identical up to it (checked on the logs' common, uncompacted range).
//! * **Leader completeness**: a leader's log holds every entry committed in an earlier term
//!   (checked when a peer is first seen leading a term). An entry counts as committed in the
//!   term of the peer first seen committing it (the leader that committed it). A leader of an
//!   older term can be elected after a newer one committed entries (its last vote arrived
//!   late), and need not hold those: it will meet the newer term before committing anything.
//! * **State-machine safety**: no two peers commit different entries at one index (checked on
//!   every newly committed index against a global record).
//! * **One membership change at a time** (thesis §4.1): no log holds two membership entries
//!   above the highest index committed anywhere. A leader proposes a change only once the
//!   membership entry before it in its log is committed, so of the membership entries no peer
//!   has committed yet, a log holds at most the last. Two changes in flight could together
//!   move the majority by two voters; [`SafetyChecker::single_change`] turns this check off to
//!   let a scenario show what that leads to.

use std::collections::BTreeMap;

use crate::raft_server::RaftServer;
use flotilla_raft::{Entry, EntryKind, NodeId, RaftLog};
use flotilla_sim::Sim;

#[derive(Default)]
pub struct SafetyChecker {
    /// The one leader seen in each term.
    leaders: BTreeMap<u64, usize>,
    /// Every committed index, with the entry committed there and the term it was committed
    /// in (the term of the first peer seen committing it).
    committed: BTreeMap<u64, (Entry, u64)>,
    /// Per peer: commit index already recorded, to check only new commits each step.
    checked: Vec<u64>,
    steps: u64,
    /// Full pairwise log-matching checks run every this many steps (they cost O(n² · log)).
    pub matching_every: u64,
    /// Check that membership changes are made one at a time (module docs); on by default.
    pub single_change: bool,
}

impl SafetyChecker {
    pub fn new() -> Self {
        SafetyChecker {
            matching_every: 16,
            single_change: true,
            ..Self::default()
        }
    }

    /// How many indices have been committed so far.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// How many of the committed entries are membership changes.
    pub fn committed_memberships(&self) -> usize {
        (self.committed.values())
            .filter(|(e, _)| e.kind == EntryKind::Membership)
            .count()
    }

    pub fn check(&mut self, sim: &Sim<RaftServer>) {
        self.checked.resize(sim.len(), 0);
        for i in 0..sim.len() {
            let Some(p) = sim.process(NodeId::from_index(i)) else {
                continue;
            };
            let r = p.raft();
            if r.is_leader() {
                match self.leaders.get(&r.term()) {
                    Some(&l) => assert_eq!(
                        l,
                        i,
                        "election safety: term {} has leaders {l} and {i}",
                        r.term()
                    ),
                    None => {
                        self.leaders.insert(r.term(), i);
                        self.check_leader_complete(i, r.term(), r.log());
                    }
                }
            }
            // A lone voter commits an entry in the very input that appends it, before the
            // save is durable; it acts on the commit (applies, answers, AppendEntries) only
            // once the save is, and a crash meanwhile takes both back. So with a sync in
            // flight its commit index does not count yet. (Any other peer commits only on
            // acknowledgements, which wait for its own sync.)
            if sim.is_syncing(NodeId::from_index(i)) && !r.commit_needs_peer_ack() {
                continue;
            }
            // A restarted peer's commit index starts at its snapshot; re-check from there.
            let from = self.checked[i]
                .min(r.commit_index())
                .max(r.log().snapshot_index());
            for index in from + 1..=r.commit_index() {
                let e = r
                    .log()
                    .entry(index)
                    .expect("committed index above snapshot is held");
                match self.committed.get(&index) {
                    Some((c, _)) => assert_eq!(
                        c, e,
                        "state-machine safety: peer {i} commits another entry at {index}"
                    ),
                    None => {
                        self.committed.insert(index, (e.clone(), r.term()));
                    }
                }
            }
            self.checked[i] = r.commit_index();
        }
        if self.single_change {
            self.check_single_change(sim);
        }
        self.steps += 1;
        if self.steps.is_multiple_of(self.matching_every.max(1)) {
            check_log_matching(sim);
        }
    }

    fn check_single_change(&self, sim: &Sim<RaftServer>) {
        // Counting the commit indices not recorded yet (a lone voter's during its sync): a
        // leader proposes on its own commit index, and loses what it proposed on it if it
        // crashes before the sync.
        let live_commits = (0..sim.len()).filter_map(|i| {
            sim.process(NodeId::from_index(i))
                .map(|p| p.raft().commit_index())
        });
        let recorded = self.committed.keys().next_back().copied().unwrap_or(0);
        let committed = live_commits.fold(recorded, u64::max);
        for i in 0..sim.len() {
            let Some(p) = sim.process(NodeId::from_index(i)) else {
                continue;
            };
            let pending: Vec<u64> = (p.raft().log().membership_indices().iter())
                .copied()
                .filter(|&k| k > committed)
                .collect();
            assert!(
                pending.len() <= 1,
                "one membership change at a time: peer {i} holds membership entries at {pending:?}, \
                 all above the highest committed index {committed}"
            );
        }
    }

    fn check_leader_complete(&self, i: usize, term: u64, log: &RaftLog) {
        let earlier = (self.committed.range(log.first_index()..)).filter(|(_, (_, t))| *t < term);
        for (&index, (e, _)) in earlier {
            let held = log.entry(index);
            assert!(
                held == Some(e),
                "leader completeness: leader {i} of term {term} lacks committed index {index}"
            );
        }
    }
}

/// Log matching over every pair of live peers.
pub fn check_log_matching(sim: &Sim<RaftServer>) {
    let logs: Vec<(usize, &RaftLog)> = (0..sim.len())
        .filter_map(|i| {
            sim.process(NodeId::from_index(i))
                .map(|p| (i, p.raft().log()))
        })
        .collect();
    for (x, &(i, a)) in logs.iter().enumerate() {
        for &(j, b) in &logs[x + 1..] {
            let lo = a.first_index().max(b.first_index());
            let hi = a.last_index().min(b.last_index());
            // The highest common index where the terms agree: everything from lo to it must match.
            let Some(top) = (lo..=hi).rev().find(|&k| a.term_at(k) == b.term_at(k)) else {
                continue;
            };
            for k in lo..=top {
                assert!(
                    a.entry(k) == b.entry(k),
                    "log matching: peers {i} and {j} agree at index {top} but differ at {k}"
                );
            }
        }
    }
}
