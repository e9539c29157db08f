//! The trait a replicated service implements.

use std::fmt::Debug;
use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::session::SessionLimits;

/// Restoring a snapshot failed: its bytes were not written by this service's `snapshot`.
#[derive(Debug, thiserror::Error)]
#[error("corrupt snapshot: {0}")]
pub struct SnapshotError(pub String);

/// What a machine may know about the entry it applies, beyond the command: the same on every
/// replica at the same index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyCtx {
    /// The replicated clock, in ms since the UNIX epoch (virtual time in the simulator): the
    /// highest leader's clock stamped into the log so far, never decreasing
    /// (the `session` module's doc says what it may and may not be trusted for).
    pub now_ms: u64,
    /// The log index of the entry (for a read outside the log: of the last entry applied).
    pub index: u64,
    /// The leader's session limits, for machines that keep their own exactly-once records
    /// ([`StateMachine::REPLICA_SESSIONS`] false) and expire them as the replica's table does.
    pub limits: SessionLimits,
}

impl ApplyCtx {
    /// A context at time 0, index 0, default limits: for tests and for machines applied
    /// outside a replica.
    pub fn zero() -> Self {
        ApplyCtx {
            now_ms: 0,
            index: 0,
            limits: SessionLimits::default(),
        }
    }
}

/// How much of a state an invariant check reads ([`StateMachine::check_invariants`],
/// [`crate::Replica::check_invariants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDepth {
    /// Only what costs O(1), O(pending requests) or O(shards): cheap enough to run after
    /// every input of every process in a long simulation.
    Quick,
    /// Everything, including scans of the whole state (every session, every key): for unit
    /// tests, debug builds, and a sample of the simulator's steps.
    Full,
}

/// Writes a snapshot taken earlier to the writer given ([`StateMachine::snapshot_job`]).
pub type SnapshotJob = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// [`StateMachine::snapshot`] for a machine that streams its snapshot: `snapshot_into` a
/// buffer of the size hint (no reallocation when the hint is exact).
pub fn snapshot_to_vec<M: StateMachine + ?Sized>(machine: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(machine.snapshot_size_hint() as usize);
    machine
        .snapshot_into(&mut out)
        .expect("writing into a Vec cannot fail");
    out
}

/// A deterministic service state replicated through the Raft log.
///
/// # Correctness
/// * `apply` must be a pure function of the state, the command and the [`ApplyCtx`]: every
///   replica applies the same commands in the same order and must reach the same state and
///   reply. No clocks but `ApplyCtx::now_ms`, no randomness, no iteration over hash-map
///   order.
/// * `restore(snapshot())` must give back an equal state; `snapshot_into` writes the bytes
///   `snapshot` returns and `restore_from` reads them as `restore` does.
/// * Exactly-once is not the machine's concern: [`crate::Sessions`] filters duplicates before
///   `apply` sees them, unless the machine keeps its own records
///   ([`StateMachine::REPLICA_SESSIONS`] false).
/// * `snapshot_job`'s job must encode exactly what `snapshot` returned when the job was made.
pub trait StateMachine: 'static {
    type Command: Clone + Debug + Serialize + DeserializeOwned;
    type Reply: Clone + Debug + Serialize + DeserializeOwned;

    /// Whether the replica's exactly-once table filters this machine's commands (by the
    /// request's client and sequence number). A machine whose exactly-once records must move
    /// with parts of its state (a shard group hands each shard's records to the shard's next
    /// owner) sets it false, carries the client's tag inside its commands and filters
    /// duplicates itself (with a [`crate::SessionTable`] per part, expired by
    /// [`ApplyCtx::now_ms`] and [`ApplyCtx::limits`]); every command then reaches `apply`,
    /// including a replica's own ([`crate::Replica::propose_own`]).
    const REPLICA_SESSIONS: bool = true;

    /// Applies a committed command and returns the reply for the client that sent it. `at`
    /// gives the replicated time and index of its entry.
    fn apply(&mut self, cmd: Self::Command, at: &ApplyCtx) -> Self::Reply;

    /// True for commands that change nothing (reads). Their replies are not remembered in the
    /// session table: re-executing them is harmless, and remembering them would make memory
    /// grow with every client that only reads.
    fn is_read_only(_cmd: &Self::Command) -> bool {
        false
    }

    /// Checks a command before it is proposed. An `Err` is sent back to the client as the
    /// command's reply without touching the log (oversized or malformed requests).
    fn validate(_cmd: &Self::Command) -> Result<(), Self::Reply> {
        Ok(())
    }

    /// The whole state, encoded. A machine that streams ([`StateMachine::snapshot_into`])
    /// implements it with [`snapshot_to_vec`].
    fn snapshot(&self) -> Vec<u8>;

    /// [`StateMachine::snapshot`], written to `out`. The replica streams its snapshot into
    /// the writer its Raft core's spool gives (its own header, then the machine's bytes): a
    /// machine with a large state encodes straight into it, record by record, so a snapshot
    /// is never a second copy of the state in memory (with a spool of files, not at all).
    fn snapshot_into(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.snapshot())
    }

    /// The length of [`StateMachine::snapshot`] of the state now, if it is cheap to know
    /// (without encoding), else 0. A spool may reserve it: it must not be more than the
    /// snapshot's length.
    fn snapshot_size_hint(&self) -> u64 {
        0
    }

    /// [`StateMachine::snapshot_into`] of the state as it is now, done later, possibly on
    /// another thread while this machine goes on applying: a machine that can take a cheap
    /// consistent view of itself (copy-on-write values, say) returns a job that encodes the
    /// view, so that a replica's event loop is not blocked for the encoding of a large
    /// state. Default: encode now; the job only copies the bytes.
    fn snapshot_job(&self) -> SnapshotJob {
        let bytes = self.snapshot();
        Box::new(move |out: &mut dyn Write| out.write_all(&bytes))
    }

    /// Replaces the state with one encoded by [`StateMachine::snapshot`].
    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError>;

    /// [`StateMachine::restore`] from a stream that holds the machine's bytes to its end. A
    /// machine with a large state decodes record by record, never holding the encoded bytes
    /// beside the state. Malformed or truncated input is a [`SnapshotError`] (never a panic,
    /// nor an allocation of a size read from the stream that the stream does not back); the
    /// state is then unspecified, and the caller discards it. Default: read everything, then
    /// [`StateMachine::restore`].
    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), SnapshotError> {
        let mut data = Vec::new();
        r.read_to_end(&mut data)
            .map_err(|e| SnapshotError(format!("cannot read it: {e}")))?;
        self.restore(&data)
    }

    /// Whether a read outside the log of `cmd` must wait for every entry proposed before it
    /// arrived, not only for its read index. Needed when the answer depends on the time (a
    /// key's expiry): the read is answered at the leader's clock when it arrived, and an entry
    /// proposed earlier carries an earlier stamp; answered before that entry applies, the read
    /// would be placed after a write that takes effect after it (a key seen expired, then
    /// found present by a write proposed before the read). Costs the read the commit of the
    /// writes in flight, so machines say it only where time matters.
    fn read_waits_for_proposals(&self, _cmd: &Self::Command) -> bool {
        false
    }

    /// Work that time made due (keys past their expiry): a command the leader proposes of its
    /// own, at most one at a time, when this returns one at its clock `now_ms`. It goes
    /// through the log like any command (so every replica does the work at the same index),
    /// bypassing the exactly-once table, and may be proposed again by this leader or the
    /// next, so applying it twice must be harmless. Called on every tick of a leader: O(1).
    fn housekeeping(&self, _now_ms: u64) -> Option<Self::Command> {
        None
    }

    /// For a machine that keeps its own exactly-once records (`REPLICA_SESSIONS` false): the
    /// highest watermark of its tables ([`crate::SessionTable::expired_through_ms`]), so that
    /// the time replicas tell clerks to stamp with is above it (see
    /// [`crate::Sessions::stamp_hint_ms`]). `None`: nothing was ever removed.
    fn expired_through_ms(&self) -> Option<u64> {
        None
    }

    /// Checks the machine's own invariants, panicking with a sentence that names the broken
    /// one; run after every input in the simulator (through
    /// [`crate::Replica::check_invariants`]), so a [`CheckDepth::Quick`] check must not scan
    /// the state. Default: none.
    fn check_invariants(&self, _depth: CheckDepth) {}
}
