//! The Raft core as a process's component: the glue every driver of the core needs once.

use flotilla_node::Ctx;
use flotilla_raft::{
    encode_changes, Apply, Config, DecodeError, Message, Raft, ReadState, SnapshotData,
};

/// A Raft peer inside a [`flotilla_node::Process`]. Peer ids are node ids.
///
/// Persistence: the stored state is one byte string, the full encoding of term, vote and log
/// followed by change records ([`flotilla_raft::encode_changes`]). An input that changed term,
/// vote or log appends one record, so a save costs what changed, not the whole log; a
/// snapshot rewrites the string in full (compacting away the records). The length of that
/// string is the labs' `RaftStateSize`, which `max_raft_state` is compared with: records that
/// were since overwritten count until the next snapshot, so snapshots come a little early,
/// never late.
#[derive(Debug)]
pub struct RaftPeer {
    raft: Raft,
    /// Bytes of the last state saved (or restored): the labs' `RaftStateSize`.
    state_size: usize,
}

impl RaftPeer {
    /// Restarts a peer from what it persisted (both empty for a new peer).
    pub fn restore(cfg: Config, state: &[u8], snapshot: SnapshotData) -> Result<Self, DecodeError> {
        let raft = Raft::restore_from_bytes(cfg, state, snapshot)?;
        Ok(RaftPeer {
            raft,
            state_size: state.len(),
        })
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The core, for inputs (`tick`, `step`, `propose`, `snapshot`). Call [`RaftPeer::flush`]
    /// after each.
    pub fn raft_mut(&mut self) -> &mut Raft {
        &mut self.raft
    }

    pub fn state_size(&self) -> usize {
        self.state_size
    }

    /// Acts on the core's `Ready` in the order it requires: persist, then send (each message
    /// wrapped by `wrap`). Returns what is left for the caller: the entries to apply, in
    /// order, then the reads to answer.
    pub fn flush<M, E>(&mut self, ctx: &mut Ctx<M, E>, wrap: impl Fn(Message) -> M) -> Flushed {
        let ready = self.raft.ready();
        if ready.must_persist() {
            // A snapshot this peer took of its own log (not one installed from the leader,
            // which the service is told to apply, and which may discard the log) leaves the
            // stored log a valid recovery point: the storage may write it in the background
            // (`Save::local_tail`). With a log write in the same `Ready` the write may have
            // been cut at the new snapshot, so the stored log would miss entries: saved as is.
            let local = ready.snapshot.is_some()
                && self.state_size != 0
                && ready.log_write.is_none()
                && !ready
                    .applies
                    .iter()
                    .any(|a| matches!(a, Apply::Snapshot(_)));
            if local {
                let changes = encode_changes(ready.hard_state.as_ref(), None);
                if !changes.is_empty() {
                    ctx.append_state(&changes);
                }
                let state = self.raft.encode_state();
                self.state_size = state.len();
                let data = ready.snapshot.expect("checked").data;
                ctx.save_local_snapshot(state, data);
            } else if ready.snapshot.is_some() || self.state_size == 0 {
                let state = self.raft.encode_state();
                self.state_size = state.len();
                ctx.save(state, ready.snapshot.map(|s| s.data));
            } else {
                let changes = encode_changes(ready.hard_state.as_ref(), ready.log_write.as_ref());
                self.state_size += changes.len();
                ctx.append_state(&changes);
            }
        }
        for m in ready.messages {
            ctx.send(m.to, wrap(m.msg));
        }
        Flushed {
            applies: ready.applies,
            reads: ready.reads,
            failed_reads: ready.failed_reads,
        }
    }
}

/// The part of a `Ready` that [`RaftPeer::flush`] leaves to its caller, to act on in this
/// order: apply `applies`, then answer `reads` once applied through their index, and
/// `failed_reads` with "not leader".
#[derive(Debug, Default)]
pub struct Flushed {
    /// Committed entries, in order.
    pub applies: Vec<Apply>,
    /// Reads the leader confirmed ([`flotilla_raft::Ready::reads`]).
    pub reads: Vec<ReadState>,
    /// Reads the leader gave up on ([`flotilla_raft::Ready::failed_reads`]).
    pub failed_reads: Vec<u64>,
}
