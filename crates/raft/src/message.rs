//! The messages Raft peers exchange (Figure 2 of the extended Raft paper, plus the
//! fast back-tracking hint of §5.3, InstallSnapshot of §7, the pre-vote of Ongaro's
//! thesis §9.6 and the numbered heartbeat rounds of ReadIndex, thesis §6.4).
//!
//! Every request names the sender's term; every reply carries the receiver's term so a
//! stale leader or candidate learns it is behind and steps down. The pre-vote pair is the
//! exception, documented on its variants: its request names a term the sender has not
//! entered, and a granted reply echoes it.
//!
//! Wire compatibility: drivers encode these with postcard, which numbers variants by their
//! position, so new variants go at the end. Changing an existing variant's fields (as
//! membership changes did to `Entry` and `InstallSnapshot`) breaks compatibility between
//! builds: drivers bump their protocol version then, so a mixed cluster refuses to connect
//! instead of misreading messages.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One log entry: the term in which a leader created it, what kind of entry it is, and its
/// bytes. Its index is implied by its position in the log.
///
/// `data` is a shared buffer: the log, the [`crate::LogWrite`] handed to storage, every
/// AppendEntries that carries the entry and the [`crate::Apply`] that delivers it hold
/// references to the same bytes (a clone is a reference count, never a copy of the payload),
/// and a service may keep slices of it as its state (the KV store keeps a value as a view
/// of its entry, so the log and the store hold one copy between them).
///
/// Invariant (what makes keeping such slices cheap): `data` is an allocation of its own, or a
/// view of one holding this entry's payload only. A decoded entry (a follower's, from a
/// transport frame; a restarted peer's, from a WAL segment) is copied out of the frame or
/// segment into an exactly sized buffer ([`serde_bytes_compat`]), so a value kept from it
/// never pins the megabytes of other entries (or of a whole segment) that arrived with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub kind: EntryKind,
    #[serde(with = "serde_bytes_compat")]
    pub data: Bytes,
}

/// What an entry's bytes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// The service's opaque command (empty: a leader's no-op).
    #[default]
    Command,
    /// A [`crate::Membership`] (postcard), which the core interprets itself.
    Membership,
}

impl Entry {
    /// A command entry.
    pub fn command(term: u64, data: impl Into<Bytes>) -> Self {
        Entry {
            term,
            kind: EntryKind::Command,
            data: data.into(),
        }
    }
}

/// Where a follower's log disagrees with an AppendEntries' consistency check, so the leader can
/// skip a whole term per round trip instead of one entry (the "fast backup" of §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at `prev_log_index`, or `None` if its log is too short.
    pub term: Option<u64>,
    /// The first index the follower holds with `term` (meaningless when `term` is `None`).
    pub first_index: u64,
    /// One past the follower's last log index.
    pub log_len: u64,
}

/// A Raft RPC request or reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    RequestVote {
        term: u64,
        last_log_index: u64,
        last_log_term: u64,
    },
    RequestVoteReply {
        term: u64,
        granted: bool,
    },
    AppendEntries {
        term: u64,
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    },
    AppendEntriesReply {
        term: u64,
        /// On success, the highest index now known to match the leader's log.
        match_index: u64,
        /// `None` on success; where the consistency check failed otherwise.
        conflict: Option<ConflictHint>,
    },
    /// One chunk of the leader's snapshot through `last_included_index` (§7, Figure 13's
    /// offset and done): bytes `offset..offset + data.len()` of its `total_len` bytes. The
    /// follower assembles the chunks of one snapshot in order and installs it once it holds
    /// all `total_len` bytes (done). A chunk with empty `data` carries nothing but the
    /// leader's heartbeat and asks for the follower's progress. Every chunk names the
    /// snapshot and its membership, so each is self-describing (a few dozen bytes).
    InstallSnapshot {
        term: u64,
        last_included_index: u64,
        last_included_term: u64,
        /// The membership as of `last_included_index` (the latest one at or below it).
        membership: crate::Membership,
        /// Length of the whole snapshot's data.
        total_len: u64,
        /// Where `data` starts in the snapshot's data.
        offset: u64,
        /// At most [`crate::Config::snapshot_chunk_bytes`] bytes: a view of the leader's
        /// snapshot, not a copy.
        data: bytes::Bytes,
    },
    /// The answer to an [`Message::InstallSnapshot`] chunk.
    InstallSnapshotReply {
        term: u64,
        /// The snapshot (its last included index) the answered chunk belonged to.
        last_included_index: u64,
        /// The answered chunk's `offset`: with `received` below it, the chunk came after a
        /// gap (a lost chunk, or a follower that restarted) and was not taken.
        offset: u64,
        /// Bytes of that snapshot the follower holds contiguously from its start: where the
        /// leader resumes.
        received: u64,
        /// The follower holds everything up to `last_included_index` (it installed the
        /// snapshot now, or already had it): the transfer is over, and everything up to that
        /// index matches the leader.
        done: bool,
    },
    /// "Would you vote for me in `term`?", asked by a pre-candidate before it starts a real
    /// election (thesis §9.6). `term` is the sender's current term + 1: the term it would
    /// campaign in. Neither the sender nor any receiver changes its term, vote or timer because
    /// of it (a receiver never adopts this `term`).
    PreVote {
        term: u64,
        last_log_index: u64,
        last_log_term: u64,
    },
    /// The answer to a [`Message::PreVote`]. On a grant, `term` is the request's `term` (so the
    /// pre-candidate can tell which round it answers, even when the voter's own term is lower;
    /// it never adopts it). On a refusal, `term` is the voter's current term, so a pre-candidate
    /// behind the cluster adopts it and can campaign in a term that can win (etcd does the
    /// same; without it, a node with a stale term and the best log could never be elected).
    PreVoteReply {
        term: u64,
        granted: bool,
    },
    /// A leader's heartbeat round `round`, sent to every follower to confirm that a majority
    /// still follows it (ReadIndex, thesis §6.4; and the renewal of a read lease). A follower
    /// treats it as a heartbeat (it follows `term`'s leader and restarts its election timer)
    /// and echoes `round`. Rounds are numbered in the order the leader sends them and never
    /// go back, so an answer to an older round can never pass for a newer one. Carries no log
    /// information: the periodic AppendEntries still do that.
    Heartbeat {
        term: u64,
        round: u64,
    },
    /// The answer to a [`Message::Heartbeat`]: the follower's term and the round it answers.
    /// A follower of a newer term answers with its term, which deposes the sender.
    HeartbeatReply {
        term: u64,
        round: u64,
    },
    /// Leader transfer (thesis §3.10): the leader of `term` tells the target, whose log it has
    /// brought up to date, to start an election at once. A follower of that leader in `term`
    /// campaigns in `term + 1` without a pre-vote round, asking with [`Message::TransferVote`].
    /// Has no reply; anything else (a stale term, another sender) is ignored.
    TimeoutNow {
        term: u64,
    },
    /// A [`Message::RequestVote`] (same fields, same meaning, answered with an ordinary
    /// [`Message::RequestVoteReply`]) from a candidate that the leader itself asked to
    /// campaign with [`Message::TimeoutNow`]. Voters still check the log and vote once per
    /// term, but leader stickiness does not apply: a follower in the old leader's lease, and
    /// the old leader itself, hear it (the leader gave up its lease when it sent TimeoutNow).
    TransferVote {
        term: u64,
        last_log_index: u64,
        last_log_term: u64,
    },
}

impl Message {
    /// The sender's current term; for the pre-vote pair, the term their variants document
    /// (the term proposed by a request or a grant).
    pub fn term(&self) -> u64 {
        match self {
            Message::RequestVote { term, .. }
            | Message::RequestVoteReply { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendEntriesReply { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotReply { term, .. }
            | Message::PreVote { term, .. }
            | Message::PreVoteReply { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatReply { term, .. }
            | Message::TimeoutNow { term }
            | Message::TransferVote { term, .. } => *term,
        }
    }

    /// True for the messages only a leader sends (AppendEntries, heartbeats included, the
    /// numbered `Heartbeat` rounds, and InstallSnapshot): they promise nothing about the
    /// sender's own disk, so a driver may send them while the save of the same input is still
    /// being made durable (Ongaro's thesis §10.2.1: the leader writes its log in parallel with
    /// replicating it).
    ///
    /// Safe on one condition, which the driver must keep: the leader counts its own copy of
    /// an entry toward a commit only once that copy is durable. A driver that makes each
    /// batch durable before it feeds the next input keeps it, because a follower's
    /// acknowledgement of an entry can only arrive in a batch after the one that appended it;
    /// a lone voter commits without acknowledgements but sends no AppendEntries. Every other
    /// message (votes, acknowledgements, requests for votes, pre-votes and heartbeat replies)
    /// waits for the save. (A `HeartbeatReply` might safely leave early too, since it promises
    /// nothing a crash could make its sender forget that the lease rules do not already
    /// cover; it waits anyway, as the conservative default. So does a `TimeoutNow`, though
    /// it only relays what the target already holds durably; and a `TransferVote` must wait,
    /// as a `RequestVote` does, for the candidate's persisted vote for itself.)
    pub fn may_precede_persist(&self) -> bool {
        matches!(
            self,
            Message::AppendEntries { .. }
                | Message::InstallSnapshot { .. }
                | Message::Heartbeat { .. }
        )
    }

    /// True for replies; drivers that model RPCs (request, then reply) use it, e.g. to
    /// count RPCs or to delay only replies when reordering.
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Message::RequestVoteReply { .. }
                | Message::AppendEntriesReply { .. }
                | Message::InstallSnapshotReply { .. }
                | Message::PreVoteReply { .. }
                | Message::HeartbeatReply { .. }
        )
    }
}

/// A message with its addresses, as returned in [`crate::Ready::messages`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

/// Serialises an entry's bytes as one byte string rather than a sequence of u8, which keeps
/// self-describing formats compact; postcard encodes both the same way (a varint length, then
/// the bytes), so the wire and disk formats are those of the `Vec<u8>` this field once was.
///
/// Decoding copies the bytes into a buffer of exactly their size, owned by the entry alone,
/// rather than taking a view of the input (which [`Bytes::slice_ref`] could, for input held
/// in a `Bytes`). The input is a transport frame (a batch of AppendEntries, up to
/// `max_append_bytes` of other entries) or a WAL segment (up to 64 MiB) or the whole
/// recovered state; a view would keep all of it alive for as long as any value applied from
/// any of its entries lives in the service's state, long after the log dropped the entries
/// and the keys of the others were overwritten. One copy per entry at receipt costs what
/// reading it off the socket does; the leader, which builds its entries itself, makes none.
mod serde_bytes_compat {
    use bytes::Bytes;
    use serde::Deserializer;

    pub use crate::bytes_field::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        // Exactly `v.len()` bytes, never a view of the input (see the module doc).
        crate::bytes_field::deserialize_owned(d, Bytes::copy_from_slice)
    }
}
