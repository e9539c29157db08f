//! What travels on a Flotilla connection.

use flotilla_id::NodeId;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped whenever [`Frame`] or a service message changes incompatibly; both ends of a
/// connection must speak the same version. `Hello` and `Refused` must keep their shape across
/// versions, so that an acceptor can read any dialer's version and refuse it in words.
///
/// 2: membership change (Raft entries and snapshots carry a membership; admin messages;
/// `Welcome` names the acceptor; [`NodeStatus`] shows the membership).
/// 3: sharding (the sharded system's message type; [`NodeStatus::shard`]).
/// 4: snapshots in chunks (`InstallSnapshot` carries an offset and the total length, its
/// reply the bytes received and whether the transfer is done).
pub const PROTOCOL_VERSION: u32 = 4;

/// Frames before authentication are tiny; a larger one is an attack or a mistake.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;

/// Largest frame an authenticated peer may send; writers never build a larger one (see
/// `transport::write_loop`). Raft snapshots travel in chunks well below it (`flotilla-server`
/// checks at compile time that every message a client's command makes fits).
pub const MAX_FRAME: usize = 256 << 20;

/// One frame. The first three open a connection (see [`crate::auth`]); after that, service
/// messages flow in batches, and clients may ask for a node's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Frame<M> {
    /// Dialer → acceptor: who is calling, and a fresh nonce.
    Hello {
        version: u32,
        from: NodeId,
        nonce: [u8; 32],
    },
    /// Acceptor → dialer: its node id, its own nonce, and its proof that it knows the secret.
    /// The id lets a dialer notice that an address now belongs to another node (a replaced
    /// machine reusing the old one's address) instead of taking one node's answers for
    /// another's.
    Welcome {
        id: NodeId,
        nonce: [u8; 32],
        proof: [u8; 32],
    },
    /// Dialer → acceptor: the dialer's proof.
    Auth {
        proof: [u8; 32],
    },
    /// Either side: the handshake failed, and why (the connection closes).
    Refused {
        reason: String,
    },
    /// Service messages, in order.
    Msgs(Vec<M>),
    /// Asks the node for a [`NodeStatus`].
    StatusRequest,
    Status(NodeStatus),
}

/// What `flotilla ctl status` shows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// The process id, for operators (and fault tests) that need to signal it.
    pub pid: u32,
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    /// Bytes of persisted Raft state (log and hard state).
    pub state_bytes: u64,
    /// Bytes of the persisted snapshot.
    pub snapshot_bytes: u64,
    /// Where the node serves Prometheus metrics, if it does.
    pub metrics: Option<String>,
    /// This node's place in the membership it uses: `voter`, `learner`, or `none` (waiting
    /// to be added, or removed).
    pub member: String,
    /// The membership this node uses (the latest in its log, committed or not): voters.
    pub voters: Vec<NodeId>,
    /// Learners: members that receive the log but neither vote nor count toward commits.
    pub learners: Vec<NodeId>,
    /// Each member's address as this node knows it (from the membership, else from its
    /// `--peers`); a member missing here is one this node reaches only when it dials in.
    pub addrs: BTreeMap<NodeId, String>,
    /// Log index of the entry that set the membership (0: the boot configuration).
    pub membership_index: u64,
    /// A node of a sharded deployment: what it knows of the shard configurations.
    pub shard: Option<Box<ShardView>>,
}

/// What a node of a sharded deployment shows `flotilla ctl shards`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// `ctrler` (a controller replica) or `group` (a shard group's replica).
    pub kind: String,
    /// The node's group (0 for a controller).
    pub gid: u64,
    /// A controller's latest configuration number; a group's current one (as applied here).
    pub config_num: u64,
    /// A group's shards by number: `Serving`, `Pulling`, `Notify` or `Handoff`.
    pub states: BTreeMap<usize, String>,
    /// Keys held in each of those shards.
    pub keys: BTreeMap<usize, usize>,
}

impl NodeStatus {
    /// Whether the membership this node uses is committed (as far as it knows).
    pub fn membership_committed(&self) -> bool {
        self.membership_index <= self.commit_index
    }
}
