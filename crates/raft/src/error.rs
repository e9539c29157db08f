//! Errors the core returns to its caller. Programmer errors (a snapshot beyond what was
//! applied, a message from an unknown peer in a debug build) panic instead.

use crate::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `hint` is the leader this peer last heard from.
    #[error("not the leader (last known leader: {hint:?})")]
    NotLeader { hint: Option<NodeId> },
    /// The leader's uncommitted log tail holds more than
    /// [`crate::Config::max_uncommitted_bytes`] of data: its followers lag. Transient: the
    /// caller retries later (or elsewhere), once entries have committed.
    #[error("busy: {uncommitted} bytes of the log are uncommitted (limit {limit})")]
    Busy { uncommitted: usize, limit: usize },
}

/// Why [`crate::Raft::transfer_leadership`] refused to start a leader transfer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can hand its leadership over; `hint` is the leader this peer knows.
    #[error("not the leader (last known leader: {hint:?})")]
    NotLeader { hint: Option<NodeId> },
    /// The target is this peer itself.
    #[error("cannot transfer leadership to myself")]
    ToSelf,
    /// The target is not another voter of the cluster.
    #[error("{0} is not a voter of this cluster")]
    NotAVoter(NodeId),
    /// A transfer to `target` is already under way; it completes or is abandoned first.
    #[error("a transfer to {target} is already in progress")]
    InProgress { target: NodeId },
}

/// Why [`crate::Config::check`] refused a configuration: the rule it breaks, with the values
/// that break it, so a driver can report the user's setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The peer's own id is missing from a non-empty voter list.
    #[error("raft config: id {id} is not among the voters {voters:?}")]
    NotAVoter { id: NodeId, voters: Vec<NodeId> },
    /// The timers break `heartbeat_ticks < election_timeout_min_ticks <=
    /// election_timeout_max_ticks` (see the module docs of `config`).
    #[error(
        "raft config: need heartbeat_ticks ({heartbeat_ticks}) < election_timeout_min_ticks \
         ({election_timeout_min_ticks}) <= election_timeout_max_ticks \
         ({election_timeout_max_ticks})"
    )]
    Timers {
        heartbeat_ticks: u32,
        election_timeout_min_ticks: u32,
        election_timeout_max_ticks: u32,
    },
    /// A byte limit that must be positive is zero; `setting` names the field.
    #[error("raft config: {setting} must be positive")]
    ZeroLimit { setting: &'static str },
    /// The voter list names a peer twice.
    #[error("raft config: duplicate voters {voters:?}")]
    DuplicateVoters { voters: Vec<NodeId> },
    /// [`crate::ReadMode::Lease`] without check-quorum.
    #[error(
        "raft config: lease reads need check_quorum: without leader stickiness a follower \
         that renewed the lease may vote for another leader at once"
    )]
    LeaseWithoutCheckQuorum,
    /// [`crate::ReadMode::Lease`] with a drift margin outside `1..election_timeout_min_ticks`.
    #[error(
        "raft config: lease reads need 1 <= lease_drift_margin_ticks \
         ({lease_drift_margin_ticks}) < election_timeout_min_ticks \
         ({election_timeout_min_ticks})"
    )]
    LeaseDriftMargin {
        lease_drift_margin_ticks: u32,
        election_timeout_min_ticks: u32,
    },
}

/// A broken invariant of a [`crate::RaftLog`], found by [`crate::RaftLog::validate`] (a
/// decoded log that no correct peer wrote).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Invariant 2: the entry at `index` has a lower term than the one before it (or the
    /// snapshot's).
    #[error("log term decreases at index {index}: {term} after {previous_term}")]
    TermDecreases {
        index: u64,
        term: u64,
        previous_term: u64,
    },
    /// The membership entry at `index` holds bytes that are no membership.
    #[error("membership entry at index {index} does not decode")]
    BadMembership { index: u64 },
}
