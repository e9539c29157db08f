//! The service messages fit the transport's frames.
//!
//! `flotilla-transport` caps frames ([`MAX_FRAME`]) and batches ([`BATCH_BYTES`]) without
//! knowing what it carries; this module, which knows the messages, checks at compile time that
//! every message a client's command or a snapshot transfer makes fits, so a writer never has
//! to refuse one.

use flotilla_transport::frame::MAX_FRAME;
use flotilla_transport::transport::BATCH_BYTES;

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
const _: () =
    assert!(flotilla_raft::DEFAULT_SNAPSHOT_CHUNK_BYTES + CHUNK_ENVELOPE_ROOM <= BATCH_BYTES);

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_kv::{KvCommand, KvReply, MAX_KEY_BYTES, MAX_VALUE_BYTES};
    use flotilla_raft::NodeId;
    use flotilla_rsm::{Msg, Request};
    use flotilla_transport::Frame;

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
            membership.voters.insert(NodeId::new(u64::MAX - id));
            membership
                .addrs
                .insert(NodeId::new(u64::MAX - id), "a".repeat(255));
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
        assert!(len <= BATCH_BYTES, "{len} bytes");
    }
}
