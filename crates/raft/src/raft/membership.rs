//! Membership changes (Ongaro's thesis §4.1–§4.2): single-server changes, learners, and
//! where each peer finds the membership it uses. The rules are in [`crate::membership`]'s
//! docs; this is how the core keeps them:
//!
//! * **In use**: `Raft::membership` is the latest membership entry in the log, else the
//!   snapshot's, else the boot configuration ([`Config::voters`](crate::Config::voters)).
//!   [`Raft::refresh_membership`] recomputes it after every log change that can move it
//!   (appending or truncating a membership entry, compaction, a snapshot install) and when
//!   its entry commits.
//! * **Who gets entries**: every other member; while the membership's entry is uncommitted,
//!   also the members of the previous one, so that a removed peer receives the entry that
//!   removes it (and then, no longer a voter, stops campaigning) and a leader keeps feeding
//!   the voters that may still be needed to commit it.
//! * **Who votes and commits**: voters of the membership in use, including for the entry
//!   that sets it. Learners, removed peers and peers waiting to join never campaign.
//! * **Proposing**: leader only, one change at a time (the previous one committed), after an
//!   entry of its own term is committed, never during a leader transfer, never removing
//!   itself, and promoting only a learner that holds everything committed.

use std::collections::BTreeSet;

use super::{Progress, Raft};
use crate::config::sabotaged;
use crate::membership::{Membership, MembershipChange, MembershipError};
use crate::message::{Entry, EntryKind};
use crate::{NodeId, Role};

impl Raft {
    /// The membership this peer uses: the latest in its log, committed or not.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The log index of the entry that set [`Raft::membership`] (0 for the boot
    /// configuration; at most the snapshot index for a snapshot's).
    pub fn membership_index(&self) -> u64 {
        self.membership_index
    }

    /// Whether this peer is a voter of the membership it uses.
    pub fn is_voter(&self) -> bool {
        self.membership.is_voter(self.cfg.id)
    }

    /// Proposes one membership change (see the module docs of `raft/membership.rs` for
    /// when a leader accepts one). Returns the index and term of its entry; the change takes
    /// effect on each peer as it appends that entry, and is done once that entry commits
    /// ([`crate::Apply::Membership`]). A peer that appended it and then lost it to a new
    /// leader falls back to the membership before it, as does the whole cluster then.
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<(u64, u64), MembershipError> {
        if self.role != Role::Leader {
            return Err(MembershipError::NotLeader { hint: self.leader });
        }
        if let Some(target) = self.transfer_target() {
            return Err(MembershipError::TransferInProgress { target });
        }
        let concurrent = sabotaged!(self.cfg, ConcurrentMembershipChanges);
        if self.membership_index > self.commit && !concurrent {
            return Err(MembershipError::ChangeInProgress {
                index: self.membership_index,
            });
        }
        let early = sabotaged!(self.cfg, MembershipChangeBeforeTermCommit);
        if self.log.term_at(self.commit) != Some(self.hard.term) && !early {
            return Err(MembershipError::TermNotCommitted);
        }
        match change {
            MembershipChange::Remove { id } if id == self.cfg.id => {
                return Err(MembershipError::RemovesLeader);
            }
            MembershipChange::Promote { id } if self.membership.is_learner(id) => {
                let matched = self.progress.get(&id).map_or(0, |p| p.matched);
                if matched < self.commit {
                    return Err(MembershipError::LearnerBehind {
                        id,
                        matched,
                        needed: self.commit,
                    });
                }
            }
            _ => {}
        }
        let next = self.membership.apply(&change)?;
        let data = next.encode();
        self.uncommitted_bytes += data.len();
        let index = self.log.append(Entry {
            term: self.hard.term,
            kind: EntryKind::Membership,
            data: data.into(),
        });
        self.mark_unstable(index);
        self.refresh_membership();
        for p in self.peers.clone() {
            if self.can_send(p) {
                self.send_append(p);
            }
        }
        // Fewer voters may make a majority at once.
        self.maybe_commit();
        self.check_invariants();
        Ok((index, self.hard.term))
    }

    /// The other voters of the membership in use (whom elections and heartbeat rounds ask).
    pub(super) fn voter_peers(&self) -> Vec<NodeId> {
        (self.membership.voters.iter())
            .copied()
            .filter(|&v| v != self.cfg.id)
            .collect()
    }

    /// The membership as of log index `index` (at or after the snapshot point, at most the
    /// last index): the latest membership entry at or below it, else the snapshot's.
    pub(super) fn membership_at(&self, index: u64) -> Membership {
        match self
            .log
            .membership_indices()
            .iter()
            .rev()
            .find(|&&i| i <= index)
        {
            Some(&i) => self.membership_entry(i),
            None => self.base_membership(),
        }
    }

    /// The membership at the snapshot point: the snapshot's, or the boot configuration.
    fn base_membership(&self) -> Membership {
        self.log
            .snapshot_membership()
            .cloned()
            .unwrap_or_else(|| Membership::with_voters(self.cfg.voters.iter().copied()))
    }

    fn membership_entry(&self, index: u64) -> Membership {
        let e = self
            .log
            .entry(index)
            .expect("indexed membership entry is held");
        Membership::decode(&e.data).expect("membership entries are validated when appended")
    }

    /// Recomputes the membership in use and the peers to replicate to (module docs), and on
    /// a leader starts or stops tracking peers to match.
    pub(super) fn refresh_membership(&mut self) {
        let latest = self.log.membership_indices().last().copied();
        let (index, membership, previous) = match latest {
            Some(i) => {
                let previous = (i > self.commit).then(|| self.membership_at(i - 1));
                (i, self.membership_entry(i), previous)
            }
            None => {
                let index = match self.log.snapshot_membership() {
                    Some(_) => self.log.snapshot_index(),
                    None => 0,
                };
                (index, self.base_membership(), None)
            }
        };
        let mut targets: BTreeSet<NodeId> = membership.members();
        if let Some(p) = previous {
            targets.extend(p.members());
        }
        targets.remove(&self.cfg.id);
        self.membership = membership;
        self.membership_index = index;
        self.peers = targets.into_iter().collect();
        if self.role == Role::Leader {
            let (next, now) = (self.log.last_index() + 1, self.ticks);
            let peers = &self.peers;
            self.progress.retain(|p, _| peers.contains(p));
            for &p in &self.peers {
                self.progress
                    .entry(p)
                    .or_insert_with(|| Progress::new(next, now));
            }
        }
    }
}
