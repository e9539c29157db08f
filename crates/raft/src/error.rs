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
