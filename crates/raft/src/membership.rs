//! Cluster membership: which peers vote, which only learn, and the single-server changes
//! between them (Ongaro's thesis §4.1 and §4.2.1).
//!
//! A membership travels as a log entry of kind [`EntryKind::Membership`](crate::EntryKind),
//! and the membership as of a snapshot's index travels with the snapshot. Every peer uses the
//! **latest membership in its log, committed or not**, from the moment it appends it (thesis
//! §4.1), and falls back to the previous one if that entry is truncated; a peer restarted from
//! disk therefore finds it again in its log or snapshot.
//!
//! Safety rests on each change adding or removing at most one voter, so that any majority of
//! the old voters and any majority of the new ones share a peer; and on a leader proposing a
//! change only when (a) the previous change is committed and (b) an entry of its own term is
//! committed (the thesis's correction of 2015: without it, a change proposed by a new leader
//! can be undone by a leader of an older membership whose majority does not overlap it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The members of a cluster. Voters elect leaders and count toward commits; learners
/// receive the log (by snapshot when they are far behind) but do neither, so a new peer can
/// catch up without weakening the cluster's majority (thesis §4.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Per-member data the core carries but never reads: the TCP server keeps each member's
    /// address here, so every replica (and one restarted from disk) can reach members added
    /// after it started. Holds only members; the simulator leaves it empty.
    pub addrs: BTreeMap<NodeId, String>,
}

/// One single-server membership change ([`crate::Raft::propose_membership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A new learner, reachable at `addr` (opaque to the core, see [`Membership::addrs`]).
    AddLearner { id: NodeId, addr: String },
    /// A learner becomes a voter. The leader accepts it only once the learner has caught up
    /// (holds everything the leader has committed), so the new voter does not stall commits.
    Promote { id: NodeId },
    /// A voter or learner leaves. A leader does not remove itself: transfer leadership first.
    Remove { id: NodeId },
}

/// Why a membership change was refused. Nothing was proposed; each can be retried once its
/// condition is gone (`NotLeader` elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("not the leader (last known leader: {hint:?})")]
    NotLeader { hint: Option<NodeId> },
    /// The previous change (at `index`) is not committed yet: one change at a time.
    #[error("the membership change at index {index} is not committed yet")]
    ChangeInProgress { index: u64 },
    /// This leader has not yet committed an entry of its own term (thesis §4.1's fix).
    #[error("the new leader has not committed an entry of its term yet")]
    TermNotCommitted,
    /// A leader transfer is under way.
    #[error("a leader transfer to {target} is in progress")]
    TransferInProgress { target: NodeId },
    #[error("{0} is already a member")]
    AlreadyMember(NodeId),
    #[error("{0} is not a member")]
    NotAMember(NodeId),
    #[error("{0} is not a learner")]
    NotALearner(NodeId),
    /// The learner holds only `matched` of the `needed` committed entries.
    #[error("learner {id} has not caught up ({matched} of {needed} entries)")]
    LearnerBehind {
        id: NodeId,
        matched: u64,
        needed: u64,
    },
    /// The leader would remove itself: transfer leadership to another voter first.
    #[error("the leader cannot remove itself: transfer leadership first")]
    RemovesLeader,
}

impl Membership {
    /// A membership of voters only (how a cluster boots).
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters and learners, in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.learners).copied().collect()
    }

    /// Whether `ids` include a majority of the voters (ids that are not voters do not count).
    pub fn is_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let n = ids
            .into_iter()
            .filter(|id| self.voters.contains(id))
            .count();
        n > self.voters.len() / 2
    }

    /// The highest index that a majority of voters hold, given each voter's match index
    /// (`matched(voter)`); 0 without voters.
    pub fn quorum_index(&self, matched: impl Fn(NodeId) -> u64) -> u64 {
        let mut m: Vec<u64> = self.voters.iter().map(|&v| matched(v)).collect();
        m.sort_unstable_by(|a, b| b.cmp(a));
        m.get(self.voters.len() / 2).copied().unwrap_or(0)
    }

    /// The membership after `change`, if `change` makes sense for this one (leader rules such
    /// as "one change at a time" are checked by the caller).
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner { id, addr } => {
                if self.contains(*id) {
                    return Err(MembershipError::AlreadyMember(*id));
                }
                next.learners.insert(*id);
                next.addrs.insert(*id, addr.clone());
            }
            MembershipChange::Promote { id } => {
                if !next.learners.remove(id) {
                    return Err(if self.is_voter(*id) {
                        MembershipError::AlreadyMember(*id)
                    } else {
                        MembershipError::NotALearner(*id)
                    });
                }
                next.voters.insert(*id);
            }
            MembershipChange::Remove { id } => {
                if !next.voters.remove(id) && !next.learners.remove(id) {
                    return Err(MembershipError::NotAMember(*id));
                }
                next.addrs.remove(id);
            }
        }
        Ok(next)
    }

    /// The bytes of a membership entry.
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Decodes a membership entry's bytes; `None` if they are not one.
    pub fn decode(data: &[u8]) -> Option<Membership> {
        postcard::from_bytes(data).ok()
    }
}

impl MembershipChange {
    /// The member the change is about.
    pub fn id(&self) -> NodeId {
        match self {
            MembershipChange::AddLearner { id, .. }
            | MembershipChange::Promote { id }
            | MembershipChange::Remove { id } => *id,
        }
    }
}
