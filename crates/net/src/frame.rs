//! What travels on a Flotilla connection.

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
/// `transport::write_loop`). Raft snapshots travel in chunks well below it (see below).
pub const MAX_FRAME: usize = 256 << 20;

/// Room in a frame for everything of a message but a command's key and value: the message's
/// own fields, a clerk's tag, Raft's entry fields (all a few dozen bytes).
const ENVELOPE_ROOM: usize = 1 << 20;

// Every message a client's command makes fits in a frame, so the writer never has to refuse
// one: a request (a key and a value at the limits the router and the servers enforce), and an
// AppendEntries carrying it (Raft's byte budget, past which it adds at most one entry).
const _: () = assert!(
    flotilla_kv::MAX_KEY_BYTES
        + flotilla_kv::MAX_VALUE_BYTES
        + ENVELOPE_ROOM
        + flotilla_raft::DEFAULT_MAX_APPEND_BYTES
        <= MAX_FRAME
);

/// Room in a batch for everything of an InstallSnapshot chunk but its data: terms, indices,
/// offset and length (a few dozen bytes), the message wrappers, and the membership, whose
/// member addresses are the only part that grows (100 members with 255-byte addresses take
/// about 27 KiB; `tests::a_snapshot_chunk_fits_in_a_batch` measures it).
const CHUNK_ENVELOPE_ROOM: usize = 32 << 10;

// A snapshot chunk of Raft's default size, with its message, fits in one transport batch
// (`transport::BATCH_BYTES`): a chunk never needs a frame beyond the batch budget, and other
// messages wait behind at most one chunk.
const _: () = assert!(
    flotilla_raft::DEFAULT_SNAPSHOT_CHUNK_BYTES + CHUNK_ENVELOPE_ROOM
        <= crate::transport::BATCH_BYTES
);

/// One frame. The first three open a connection (see [`crate::auth`]); after that, service
/// messages flow in batches, and clients may ask for a node's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Frame<M> {
    /// Dialer → acceptor: who is calling, and a fresh nonce.
    Hello {
        version: u32,
        from: u64,
        nonce: [u8; 32],
    },
    /// Acceptor → dialer: its node id, its own nonce, and its proof that it knows the secret.
    /// The id lets a dialer notice that an address now belongs to another node (a replaced
    /// machine reusing the old one's address) instead of taking one node's answers for
    /// another's.
    Welcome {
        id: u64,
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
    pub id: u64,
    /// The process id, for operators (and fault tests) that need to signal it.
    pub pid: u32,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
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
    pub voters: Vec<u64>,
    /// Learners: members that receive the log but neither vote nor count toward commits.
    pub learners: Vec<u64>,
    /// Each member's address as this node knows it (from the membership, else from its
    /// `--peers`); a member missing here is one this node reaches only when it dials in.
    pub addrs: BTreeMap<u64, String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_kv::{KvCommand, KvReply, MAX_KEY_BYTES, MAX_VALUE_BYTES};
    use flotilla_rsm::{Msg, Request};

    /// The largest request a client may make (what `ENVELOPE_ROOM` is reckoned for) fits in a
    /// frame with the envelope's room to spare.
    #[test]
    fn the_largest_request_fits_in_a_frame() {
        let put = KvCommand::Put {
            key: vec![7; MAX_KEY_BYTES],
            value: vec![7; MAX_VALUE_BYTES].into(),
        };
        put.validate().expect("at the limits, not past them");
        let msg: Msg<KvCommand, KvReply> = Msg::Request(Request {
            client: u64::MAX,
            seq: u64::MAX,
            after_ms: 1,
            cmd: put,
        });
        let frame = Frame::Msgs(vec![msg]);
        let len = flotilla_wire::payload_len(&frame).unwrap();
        assert!(
            len <= MAX_KEY_BYTES + MAX_VALUE_BYTES + ENVELOPE_ROOM,
            "{len} bytes"
        );
        assert!(len <= MAX_FRAME);
    }

    /// A snapshot chunk of the default size, from a cluster of 100 members with 255-byte
    /// addresses, fits in `CHUNK_ENVELOPE_ROOM` beyond its data, hence in one batch.
    #[test]
    fn a_snapshot_chunk_fits_in_a_batch() {
        let mut membership = flotilla_raft::Membership::default();
        for id in 0..100u64 {
            membership.voters.insert(u64::MAX - id);
            membership.addrs.insert(u64::MAX - id, "a".repeat(255));
        }
        let chunk = flotilla_raft::DEFAULT_SNAPSHOT_CHUNK_BYTES;
        let msg: Msg<KvCommand, KvReply> = Msg::Raft(flotilla_raft::Message::InstallSnapshot {
            term: u64::MAX,
            last_included_index: u64::MAX,
            last_included_term: u64::MAX,
            membership,
            total_len: u64::MAX,
            offset: u64::MAX,
            data: vec![7; chunk].into(),
        });
        let len = flotilla_wire::payload_len(&Frame::Msgs(vec![msg])).unwrap();
        assert!(len <= chunk + CHUNK_ENVELOPE_ROOM, "{len} bytes");
        assert!(len <= crate::transport::BATCH_BYTES, "{len} bytes");
    }
}
