//! Checks Raft's safety properties (Figure 3 of the extended paper) across the whole cluster
//! after every simulator step:
//!
//! * **Election safety**: at most one leader per term, ever.
//! * **Log matching**: if two logs hold an entry with the same index and term, they are
//!   identical up to it (checked on the logs' common, uncompacted range).
//! * **Leader completeness**: a leader's log holds every entry committed before its term began
//!   (checked when a peer is first seen leading a term).
//! * **State-machine safety**: no two peers commit different entries at one index (checked on
//!   every newly committed index against a global record).

use std::collections::BTreeMap;

use crate::raft_server::RaftServer;
use flotilla_raft::{Entry, RaftLog};
use flotilla_sim::Sim;

#[derive(Default)]
pub struct SafetyChecker {
    /// The one leader seen in each term.
    leaders: BTreeMap<u64, usize>,
    /// Every committed index, with the entry committed there.
    committed: BTreeMap<u64, Entry>,
    /// Per peer: commit index already recorded, to check only new commits each step.
    checked: Vec<u64>,
    steps: u64,
    /// Full pairwise log-matching checks run every this many steps (they cost O(n² · log)).
    pub matching_every: u64,
}

impl SafetyChecker {
    pub fn new() -> Self {
        SafetyChecker {
            matching_every: 16,
            ..Self::default()
        }
    }

    /// How many indices have been committed so far.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    pub fn check(&mut self, sim: &Sim<RaftServer>) {
        self.checked.resize(sim.len(), 0);
        for i in 0..sim.len() {
            let Some(p) = sim.process(i) else { continue };
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
                    Some(c) => assert_eq!(
                        c, e,
                        "state-machine safety: peer {i} commits another entry at {index}"
                    ),
                    None => {
                        self.committed.insert(index, e.clone());
                    }
                }
            }
            self.checked[i] = r.commit_index();
        }
        self.steps += 1;
        if self.steps.is_multiple_of(self.matching_every.max(1)) {
            check_log_matching(sim);
        }
    }

    fn check_leader_complete(&self, i: usize, term: u64, log: &RaftLog) {
        for (&index, e) in self.committed.range(log.first_index()..) {
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
        .filter_map(|i| sim.process(i).map(|p| (i, p.raft().log())))
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
