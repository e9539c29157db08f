//! Errors the core returns to its caller. Programmer errors (a snapshot beyond what was
//! applied, a message from an unknown peer in a debug build) panic instead.

use crate::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `hint` is the leader this peer last heard from.
    #[error("not the leader (last known leader: {hint:?})")]
    NotLeader { hint: Option<NodeId> },
}
