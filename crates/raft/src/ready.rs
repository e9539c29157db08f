//! The outputs of the core after some input, collected by [`crate::Raft::ready`].

use bytes::Bytes;

use crate::{Entry, Envelope, HardState, SnapshotData};

/// A snapshot: the service state after applying every entry up to `index`. `data` is shared
/// with the core (a reference-counted view, no copy): the core keeps the same bytes to send to
/// followers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub data: SnapshotData,
}

/// An overwrite of the stored log: discard every stored entry with index `>= from`, then
/// append `entries` (the first of which, if any, has index `from`). The entries share their
/// bytes with the log (no payload is copied to build a `LogWrite`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogWrite {
    pub from: u64,
    pub entries: Vec<Entry>,
}

/// Something the service must apply, in order. A `Command` at index `i` always follows the
/// command or snapshot at `i - 1`. Its `data` is the log entry's own buffer, shared (not a
/// copy): a service may keep slices of it ([`Bytes::slice_ref`]) as its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Apply {
    Command {
        index: u64,
        term: u64,
        data: Bytes,
    },
    /// Replace the service state with this snapshot (sent by the leader, §7).
    Snapshot(Snapshot),
    /// A membership change committed at `index` (the core already uses it; services record
    /// it, e.g. to learn new members' addresses, and count the index as applied).
    Membership {
        index: u64,
        term: u64,
        membership: crate::Membership,
    },
}

impl Apply {
    /// The log index this apply brings the service to.
    pub fn index(&self) -> u64 {
        match self {
            Apply::Command { index, .. } | Apply::Membership { index, .. } => *index,
            Apply::Snapshot(s) => s.index,
        }
    }
}

/// A read the leader confirmed ([`crate::Raft::read_index`]): the service may answer the read
/// identified by `ctx` from its state once it has applied at least `index` (any later applied
/// state will do too: it is committed state, newer than the read's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The service's identifier of the read, as passed to `read_index`.
    pub ctx: u64,
    /// The leader's commit index when the read was registered (its read index).
    pub index: u64,
}

/// What the driver must do after an input, **in this order**:
///
/// 1. Make `snapshot`, `log_write` and `hard_state` durable (atomically, or snapshot first,
///    then log, then hard state). [`crate::Raft::persistent_state`] gives the whole state for
///    drivers that rewrite everything, as the labs' persister does.
/// 2. Only then send `messages`: a vote or an acknowledgement must never outlive a crash
///    that forgot what it promised.
/// 3. Hand `applies` to the service in order. Committed entries are durable on a majority,
///    so they may be applied in parallel with step 1.
/// 4. Answer `reads` once the service has applied through their index, and `failed_reads`
///    with "not leader". Like answers computed from applied entries, a confirmed read's answer
///    shows only committed state, and the leadership it rests on was confirmed by a majority
///    without this input's save; so it may leave before step 1 completes under the same
///    condition as they may ([`crate::Raft::commit_needs_peer_ack`]).
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub log_write: Option<LogWrite>,
    /// A new snapshot to store (taken by the service or received from the leader); stored
    /// entries up to its index may be discarded.
    pub snapshot: Option<Snapshot>,
    pub messages: Vec<Envelope>,
    pub applies: Vec<Apply>,
    /// Reads confirmed since the last `ready()`, in the order they were confirmed.
    pub reads: Vec<ReadState>,
    /// The `ctx` of reads this peer gave up on: it stopped leading (or its term changed), or
    /// it could not confirm them within an election timeout. The service answers "not
    /// leader"; the client retries.
    pub failed_reads: Vec<u64>,
}

impl Ready {
    /// True if step 1 has anything to write.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.log_write.is_some() || self.snapshot.is_some()
    }

    pub fn is_empty(&self) -> bool {
        !self.must_persist()
            && self.messages.is_empty()
            && self.applies.is_empty()
            && self.reads.is_empty()
            && self.failed_reads.is_empty()
    }
}
