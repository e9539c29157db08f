//! What replicas and clerks send each other.

use serde::{Deserialize, Serialize};

use flotilla_node::NodeId;

use crate::StateMachine;

/// A clerk's identity; unique among every clerk that ever talks to a service (drivers pick
/// random 64-bit ids, the simulator seeded ones).
pub type ClientId = u64;

/// A client's command with its exactly-once tag: `seq` grows by one per operation of `client`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request<C> {
    pub client: ClientId,
    pub seq: u64,
    pub cmd: C,
}

/// The answer to the request `(client, seq)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response<R> {
    pub client: ClientId,
    pub seq: u64,
    pub result: Result<R, RsmError>,
}

/// Why a replica did not answer a request with a reply. Each means "try again": the command
/// took effect at most once, and a retry with the same `seq` is safe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RsmError {
    /// This replica is not the leader, or lost leadership before the command committed;
    /// `hint` is the leader it last heard from.
    #[error("not the leader (try {hint:?})")]
    WrongLeader { hint: Option<NodeId> },
    /// The request is older than the client's latest answered one: a delayed duplicate
    /// whose answer the client no longer waits for.
    #[error("stale request")]
    Stale,
}

/// Every message of a replicated service: Raft traffic between replicas, and requests and
/// responses between clerks and replicas. One type, so one transport carries both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg<C, R> {
    Raft(flotilla_raft::Message),
    Request(Request<C>),
    Response(Response<R>),
}

impl<C, R> Msg<C, R> {
    /// Replies, for drivers that count RPCs or fault replies separately.
    pub fn is_reply(&self) -> bool {
        match self {
            Msg::Raft(m) => m.is_reply(),
            Msg::Request(_) => false,
            Msg::Response(_) => true,
        }
    }
}

/// The message type of the service whose state machine is `S`.
pub type MsgOf<S> = Msg<<S as StateMachine>::Command, <S as StateMachine>::Reply>;
