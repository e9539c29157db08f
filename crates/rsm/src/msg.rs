//! What replicas and clerks send each other.

use serde::{Deserialize, Serialize};

use flotilla_node::NodeId;
use flotilla_raft::{Membership, MembershipChange};

use crate::StateMachine;

/// A clerk's identity; unique among every clerk that ever talks to a service (drivers pick
/// random 64-bit ids, the simulator seeded ones).
pub type ClientId = u64;

/// A client's command with its exactly-once tag: `seq` grows by one per operation of `client`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request<C> {
    pub client: ClientId,
    pub seq: u64,
    /// A replicated time (ms) the operation cannot be applied before: the highest replica
    /// clock the clerk had heard when it started the operation, the same in every copy; 0
    /// if it had heard none. How expiry tells a new client from a forgotten one rests on it
    /// (`session.rs`'s module doc).
    pub after_ms: u64,
    pub cmd: C,
}

/// The answer to the request `(client, seq)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response<R> {
    pub client: ClientId,
    pub seq: u64,
    /// The answering replica's replicated clock (ms): what the clerk stamps its next
    /// operations with ([`Request::after_ms`]).
    pub now_ms: u64,
    pub result: Result<R, RsmError>,
}

/// Why a replica did not answer a request with a reply. Each but `SessionExpired` means "try
/// again": the command took effect at most once, and a retry with the same `seq` is safe.
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
    /// The replica's disk is full: it takes no request until it can write again. Another
    /// replica may still serve it; once a majority's disks are full, the group cannot commit
    /// anything and a clerk reports this to its caller (the outcome of its command is then
    /// unknown: an earlier copy may have reached a leader before it stalled).
    #[error("disk full: the replicas cannot write their logs (no space left on device)")]
    DiskFull,
    /// The client's session expired (idle too long, or evicted as least recently active
    /// when the table was full) and the request cannot be told from a retry of one applied
    /// before: it was not applied now, but an earlier copy may have been. The clerk reports
    /// it to its caller and goes on with a fresh stamp (a new session) for later commands.
    #[error("session expired: the command may or may not have been applied")]
    SessionExpired,
    /// The request carries no time (`after_ms` 0) and the group forgets sessions: the clerk
    /// stamps it with the response's `now_ms` and resends. Never reported to a caller.
    #[error("request not stamped with a time")]
    Unstamped,
}

/// An operator's request about the replica group itself (`flotilla ctl add-node` …), sent to
/// its leader. `id` is the caller's, echoed in the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRequest {
    pub id: u64,
    pub op: AdminOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    /// One membership change; answered once its entry is committed.
    Change(MembershipChange),
    /// Start handing leadership to voter `to`; answered at once (the caller watches the
    /// group's status for the new leader).
    TransferLeader { to: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminResponse {
    pub id: u64,
    pub result: Result<AdminReply, AdminError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    /// The change committed at `index`; the group's membership is now `membership`.
    Changed { index: u64, membership: Membership },
    /// The leader started the transfer.
    TransferStarted,
}

/// Why an admin request was not carried out. `NotLeader` and `Lost` mean "try again" (at the
/// hinted leader); `Busy` says why the leader would not *yet* (a change in progress, a
/// learner still catching up, a new leader's first commit, a leader transfer), so the same
/// request may succeed later; `Refused` says why it never will as asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    #[error("not the leader (try {hint:?})")]
    NotLeader { hint: Option<NodeId> },
    #[error("{0}")]
    Refused(String),
    /// The leader lost leadership before the change committed; it may or may not take
    /// effect (a new leader may still commit it): look at the membership before retrying.
    #[error("leadership changed before the change committed; check the membership")]
    Lost,
    /// Refused for now (the reason says why); the same request may succeed later.
    #[error("{0}")]
    Busy(String),
}

/// Every message of a replicated service: Raft traffic between replicas, requests and
/// responses between clerks and replicas, and operators' admin requests. One type, so one
/// transport carries all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg<C, R> {
    Raft(flotilla_raft::Message),
    Request(Request<C>),
    Response(Response<R>),
    Admin(AdminRequest),
    AdminResponse(AdminResponse),
}

impl<C, R> Msg<C, R> {
    /// Replies, for drivers that count RPCs or fault replies separately.
    pub fn is_reply(&self) -> bool {
        match self {
            Msg::Raft(m) => m.is_reply(),
            Msg::Request(_) | Msg::Admin(_) => false,
            Msg::Response(_) | Msg::AdminResponse(_) => true,
        }
    }
}

/// The message type of the service whose state machine is `S`.
pub type MsgOf<S> = Msg<<S as StateMachine>::Command, <S as StateMachine>::Reply>;
