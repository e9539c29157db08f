//! The replica driver: a state machine replicated through the Raft core, as a process.
//!
//! Writes go through the log. Reads ([`StateMachine::is_read_only`]) go through the log too
//! with [`ReadMode::Log`]; otherwise the replica asks the core to confirm them
//! ([`flotilla_raft::Raft::read_index`]: ReadIndex, or a lease with [`ReadMode::Lease`]) and
//! answers each from the machine once it has applied through the read's index.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use bytes::Bytes;
use flotilla_node::{Ctx, NodeId, Offloaded, Process, Refusal};
use flotilla_raft::{
    Apply, Config, DecodeError, ProposeError, ReadMode, ReadState, SnapshotData, SnapshotSpool,
};

use crate::msg::{AdminError, AdminOp, AdminReply, AdminRequest, AdminResponse};

use crate::machine::{CheckDepth, SnapshotError, StateMachine};
use crate::msg::{ClientId, Msg, MsgOf, Request, Response, RsmError};
use crate::peer::RaftPeer;
use crate::session::{Applied, SessionLimits, Sessions, Stamp};
use crate::shared::decode_shared;

/// Settings of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The Raft peer's settings; services want `leader_noop` on ([`Config::for_service`]).
    /// Its `read_mode` says how the replica serves reads.
    pub raft: Config,
    /// Snapshot once the persisted Raft state reaches this many bytes; `None` never snapshots
    /// (the log then grows without bound).
    pub max_raft_state: Option<usize>,
    /// Let the log grow to the size of the last snapshot before taking the next: the
    /// threshold becomes `max(max_raft_state, last snapshot's bytes)`. Every snapshot encodes
    /// the whole state, so with a fixed threshold loading N bytes encodes and writes
    /// O(N² / max_raft_state) bytes of snapshots (1 GiB at 64 MiB: 16 snapshots, 8.5 GiB);
    /// growing with the state makes it O(N) (5 snapshots, 2 GiB), as Redis rewrites its AOF
    /// once it has doubled. The log on disk then stays within about the state's size. On for
    /// deployed replicas; off in the lab scenarios, whose bound is `max_raft_state` itself.
    pub snapshot_scales_with_state: bool,
    /// How long a client's session lives idle and how many the table keeps. This replica's
    /// values go into the entries it proposes as leader, so replicas configured differently
    /// still agree at every index (the `session` module's doc).
    pub sessions: SessionLimits,
}

/// The first byte of every entry a replica proposes: the layout of what follows. Entries of
/// another layout (a later build's) are skipped by every replica alike.
const ENTRY_VERSION: u8 = 2;

/// A client's (or the replica's own) command as it sits in the log, after [`ENTRY_VERSION`]:
/// the proposing leader's wall clock and session limits, then the request. Every replica
/// applies the same stamp at the same index.
#[derive(serde::Serialize)]
struct EntryRef<'a, C> {
    time_ms: u64,
    limits: SessionLimits,
    req: &'a Request<C>,
}

/// [`EntryRef`] decoded.
#[derive(serde::Deserialize)]
struct Entry<C> {
    time_ms: u64,
    limits: SessionLimits,
    req: Request<C>,
}

/// Milliseconds since the UNIX epoch on the driver's clock (virtual in the simulator).
fn wall_ms<M, E>(ctx: &Ctx<M, E>) -> u64 {
    u64::try_from(ctx.wall_clock().as_millis()).unwrap_or(u64::MAX)
}

/// Why a replica could not restart from what it persisted.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Raft(#[from] DecodeError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot read the snapshot: {0}")]
    Read(std::io::Error),
}

/// A client waiting for the entry proposed at some index.
#[derive(Clone, Debug)]
struct Waiter {
    /// The term the entry was proposed in: if the entry applied at that index has another
    /// term, a different leader overwrote ours and the client must retry.
    term: u64,
    from: NodeId,
    client: ClientId,
    seq: u64,
}

/// An operator waiting for the membership entry proposed at some index.
#[derive(Clone, Debug)]
struct AdminWaiter {
    term: u64,
    from: NodeId,
    id: u64,
}

/// A client waiting for a read outside the log.
#[derive(Clone, Debug)]
struct ReadWaiter<C> {
    /// The term of the leadership that registered it: a replica that no longer leads in it
    /// tells the client to retry.
    term: u64,
    from: NodeId,
    client: ClientId,
    seq: u64,
    cmd: C,
    /// The leader's clock when the read arrived: the time it reads at (with the replicated
    /// clock if that is ahead), so that a key expired by then is gone.
    at_ms: u64,
    /// The leader's last log index when the read arrived, if the machine says the read's
    /// answer may depend on the time ([`StateMachine::read_waits_for_proposals`]), else 0:
    /// the read waits until it is applied too, not only its read index. An entry proposed before the read arrived
    /// carries an earlier stamp; answered before it was applied, the read would have been
    /// placed at a time after a write that takes effect after it (a read seeing a key
    /// expired, then a write proposed earlier finding it still there).
    after: u64,
}

/// One replica of a [`StateMachine`]: proposes client requests to Raft, applies committed
/// entries in log order through the exactly-once table, answers clients, snapshots.
///
/// What it promises its clients:
/// * A client is answered with a write's reply only for an entry this replica applied, at the
///   index it was proposed at, with the term it was proposed in, carrying the client's
///   `(client, seq)`. Everything else gets `WrongLeader`, so a deposed leader never answers
///   for an entry it did not see committed.
/// * A read outside the log is answered only once the core confirmed it (`Ready::reads`) and
///   the machine has applied through its read index, from the machine's state, recording
///   nothing in the exactly-once table; reads the core failed, or held when this replica
///   stops leading, get `WrongLeader`.
///
/// Invariants kept after every input (see [`Replica::check_invariants`]), on which those
/// promises rest:
/// 1. `applied` is the index of the last entry or snapshot the machine reflects, and equals
///    the core's applied index: every entry the core hands out is applied at once, in log
///    order, each exactly once (an entry at `applied + 1`, a snapshot above `applied`).
/// 2. A client waiting for a write (`waiting`), or an operator for a membership change
///    (`changes`), waits at an index above `applied` and at most the last in the log, and
///    the log holds there an entry of the term it was proposed in: one at or below `applied`
///    was answered or rejected when its index was applied, so none waits forever.
/// 3. Every waiter (writes, changes, reads registered or confirmed) was added in the current
///    term while this replica led it, and only a leader holds any: they are added only while
///    leading and `reject_if_deposed` runs after every input, which is why it needs to look
///    at only one of each.
/// 4. Reads outside the log are held only when the read mode is not [`ReadMode::Log`];
///    registered reads have ids below `next_read` (each id names one read); a confirmed read
///    waits at an index above `applied` (one at or below was answered) and at or below the
///    last in the log (the larger of its read index, a commit index, and the leader's last
///    index when it arrived; a leader's log only grows while it leads, and reads do not
///    outlive its leadership, by 3).
/// 5. At most one snapshot is encoded off the event loop at a time: `encoding` is set only
///    when the driver offloads, at an index at or below `applied`, and offloaded work (at
///    most one job) waits only while it is set.
/// 6. The replicated state keeps its invariants ([`Sessions`]: its table's and the
///    machine's).
pub struct Replica<S: StateMachine> {
    peer: RaftPeer,
    state: Sessions<S>,
    /// Clients waiting for the entry at each index (only on the leader that proposed it).
    waiting: BTreeMap<u64, Waiter>,
    /// Reads registered with the core, by the `ctx` given to `read_index`, not yet confirmed.
    reads: BTreeMap<u64, ReadWaiter<S::Command>>,
    /// Confirmed reads waiting for the machine to apply through their index, by
    /// `(index, ctx)`.
    confirmed: BTreeMap<(u64, u64), ReadWaiter<S::Command>>,
    /// The `ctx` for the next read: unique within this incarnation, which is all the core
    /// (whose reads die with it) needs.
    next_read: u64,
    /// Operators waiting for membership entries, by index (leader only, like `waiting`).
    changes: BTreeMap<u64, AdminWaiter>,
    applied: u64,
    max_raft_state: Option<usize>,
    /// [`ReplicaConfig::snapshot_scales_with_state`].
    snapshot_scales_with_state: bool,
    /// Stamped into every entry this replica proposes.
    limits: SessionLimits,
    /// The driver runs offloaded work ([`Process::allow_offload`]): snapshots are then
    /// encoded off the event loop.
    offload: bool,
    /// The index of the snapshot being encoded off the loop, if one is (at most one at a
    /// time; forgotten by a crash, when the next threshold crossing starts another).
    encoding: Option<u64>,
    /// Offloaded work not yet taken by the driver.
    offloaded: Vec<Offloaded<Self>>,
    /// The persisted state's size when the last snapshot failed to be written (a spool or
    /// disk error), until one succeeds: the next attempt waits until the log has grown by
    /// another `max_raft_state`, rather than encoding the whole state again at every input.
    snapshot_failed_at: Option<usize>,
    /// The index of the housekeeping command this leader proposed and has not yet applied
    /// ([`StateMachine::housekeeping`]): one at a time.
    housekeeping_at: Option<u64>,
}

/// The buffer between a snapshot's encoder and its spool's writer: encoders write small
/// pieces (varints, keys), a file wants large writes.
const SNAPSHOT_WRITE_BUFFER: usize = 256 * 1024;

/// Writes a snapshot through `spool`: `encode` streams it into a new writer (reserving
/// `size_hint` bytes, 0 if unknown), which is then finished (for a file: made durable).
fn write_snapshot(
    spool: &dyn SnapshotSpool,
    size_hint: u64,
    encode: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<SnapshotData> {
    let mut writer = spool.create(size_hint)?;
    let mut buffered = BufWriter::with_capacity(SNAPSHOT_WRITE_BUFFER, &mut writer);
    encode(&mut buffered)?;
    buffered.flush()?;
    drop(buffered);
    writer.finish()
}

impl<S: StateMachine> Replica<S> {
    /// Restarts (or starts, from empty bytes) a replica from its persisted Raft state and
    /// snapshot; `machine` is the empty state the snapshot is restored into.
    pub fn restore(
        cfg: ReplicaConfig,
        machine: S,
        raft_state: &[u8],
        snapshot: SnapshotData,
    ) -> Result<Self, RestoreError> {
        let mut state = Sessions::new(machine);
        state.restore_from(&mut snapshot.reader())?;
        let peer = RaftPeer::restore(cfg.raft, raft_state, snapshot)?;
        let applied = peer.raft().log().snapshot_index();
        Ok(Replica {
            peer,
            state,
            waiting: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            next_read: 0,
            changes: BTreeMap::new(),
            applied,
            max_raft_state: cfg.max_raft_state,
            snapshot_scales_with_state: cfg.snapshot_scales_with_state,
            limits: cfg.sessions,
            offload: false,
            encoding: None,
            offloaded: Vec::new(),
            snapshot_failed_at: None,
            housekeeping_at: None,
        })
    }

    /// Makes the snapshots this replica takes, and those it receives, go through `spool`
    /// rather than memory: a deployed node's storage gives temporary files in its data
    /// directory, which it then installs by renaming, so a large snapshot is never held in
    /// memory.
    pub fn set_snapshot_spool(&mut self, spool: Arc<dyn SnapshotSpool>) {
        self.peer.raft_mut().set_snapshot_spool(spool);
    }

    pub fn raft(&self) -> &flotilla_raft::Raft {
        self.peer.raft()
    }

    pub fn state(&self) -> &Sessions<S> {
        &self.state
    }

    /// Index of the last entry applied to the machine.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Bytes of Raft state last persisted.
    pub fn raft_state_size(&self) -> usize {
        self.peer.state_size()
    }

    /// Proposes a command of the replica's own, not a client's (a shard group's next
    /// configuration, a shard's data received from its previous owner); nobody waits for its
    /// reply. Only for machines that filter duplicates themselves
    /// ([`StateMachine::REPLICA_SESSIONS`] false): the same command may be proposed again (by
    /// this leader or the next) and `apply` must make the repeat harmless. Returns the index it
    /// was proposed at.
    pub fn propose_own(
        &mut self,
        cmd: S::Command,
        ctx: &mut Ctx<MsgOf<S>, ()>,
    ) -> Result<u64, ProposeError> {
        assert!(
            !S::REPLICA_SESSIONS,
            "propose_own on a machine whose duplicates the replica's table filters"
        );
        let req = Request {
            client: 0,
            seq: 0,
            after_ms: 0,
            cmd,
        };
        let data = self.entry(&req, ctx);
        let (index, _) = self.peer.raft_mut().propose(data)?;
        self.drive(ctx);
        Ok(index)
    }

    /// Proposes the machine's housekeeping, if it has some due and this replica leads with
    /// none of its own still unapplied. Proposed like [`Replica::propose_own`], for any
    /// machine: the session table lets the replica's own client through.
    fn propose_housekeeping(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        if !self.peer.raft().is_leader() || self.housekeeping_at.is_some_and(|i| i > self.applied) {
            return;
        }
        self.housekeeping_at = None;
        let Some(cmd) = self.state.machine().housekeeping(wall_ms(ctx)) else {
            return;
        };
        let req = Request {
            client: crate::session::OWN_CLIENT,
            seq: 0,
            after_ms: 0,
            cmd,
        };
        let data = self.entry(&req, ctx);
        if let Ok((index, _)) = self.peer.raft_mut().propose(data) {
            self.housekeeping_at = Some(index);
        }
    }

    /// The log entry for `req`: stamped with this replica's clock and limits.
    fn entry(&self, req: &Request<S::Command>, ctx: &Ctx<MsgOf<S>, ()>) -> Vec<u8> {
        let entry = EntryRef {
            time_ms: wall_ms(ctx),
            limits: self.limits,
            req,
        };
        // Exactly sized: the buffer becomes the entry's (`Bytes` takes the Vec over as it is),
        // and a value applied from it is a view that keeps all of it alive, so spare
        // capacity from growing the Vec would stay allocated for as long as the value lives.
        let size =
            postcard::experimental::serialized_size(&entry).expect("a size pass cannot fail");
        let mut out = Vec::with_capacity(1 + size);
        out.push(ENTRY_VERSION);
        let out = postcard::to_extend(&entry, out).expect("encoding into a Vec cannot fail");
        debug_assert_eq!(
            out.len(),
            out.capacity(),
            "the entry's buffer is exactly sized"
        );
        out
    }

    fn on_request(&mut self, from: NodeId, req: Request<S::Command>, ctx: &mut Ctx<MsgOf<S>, ()>) {
        let (client, seq) = (req.client, req.seq);
        let now_ms = self.state.stamp_hint_ms();
        let answer = |result| {
            Msg::Response(Response {
                client,
                seq,
                now_ms,
                result,
            })
        };
        if let Err(reply) = S::validate(&req.cmd) {
            ctx.send(from, answer(Ok(reply)));
            return;
        }
        // A write that carries no time is never proposed (so never applied): the clerk
        // restamps it with this answer's clock, which is safe because no copy of it can have
        // been applied (the `session` module's doc).
        if S::REPLICA_SESSIONS && !S::is_read_only(&req.cmd) && req.after_ms == 0 {
            ctx.send(from, answer(Err(RsmError::Unstamped)));
            return;
        }
        let raft = self.peer.raft();
        if !raft.is_leader() {
            let hint = raft.leader();
            ctx.send(from, answer(Err(RsmError::WrongLeader { hint })));
            return;
        }
        if S::is_read_only(&req.cmd) && raft.read_mode() != ReadMode::Log {
            self.start_read(from, req, ctx);
            return;
        }
        // Already applied (the client's reply was lost): answer from the table. Applied
        // means committed, so this is safe even on a leader about to be deposed.
        if let Some(reply) = self.state.answered(client, seq) {
            ctx.send(from, answer(Ok(reply.clone())));
            return;
        }
        let data = self.entry(&req, ctx);
        match self.peer.raft_mut().propose(data) {
            Ok((index, term)) => {
                let waiter = Waiter {
                    term,
                    from,
                    client,
                    seq,
                };
                if let Some(old) = self.waiting.insert(index, waiter) {
                    // An entry of an older term at this index was overwritten.
                    reject(ctx, &old, None, now_ms);
                }
            }
            Err(ProposeError::NotLeader { hint }) => {
                ctx.send(from, answer(Err(RsmError::WrongLeader { hint })));
            }
            // The log's uncommitted tail is full (followers lag): the same transient answer as
            // a replica that cannot take the command now, so the clerk tries the others and
            // then backs off, instead of this leader's memory growing.
            Err(ProposeError::Busy { .. }) => {
                ctx.send(from, answer(Err(RsmError::WrongLeader { hint: None })));
            }
        }
    }

    /// An operator's request: a membership change (answered when committed) or a leader
    /// transfer (answered when started).
    fn on_admin(&mut self, from: NodeId, req: AdminRequest, ctx: &mut Ctx<MsgOf<S>, ()>) {
        let answer = |ctx: &mut Ctx<MsgOf<S>, ()>, result| {
            ctx.send(
                from,
                Msg::AdminResponse(AdminResponse { id: req.id, result }),
            );
        };
        let raft = self.peer.raft_mut();
        let result = match req.op {
            AdminOp::TransferLeader { to } => match raft.transfer_leadership(to) {
                Ok(()) => Ok(AdminReply::TransferStarted),
                Err(flotilla_raft::TransferError::NotLeader { hint }) => {
                    Err(AdminError::NotLeader { hint })
                }
                Err(e @ flotilla_raft::TransferError::InProgress { .. }) => {
                    Err(AdminError::Busy(e.to_string()))
                }
                Err(e) => Err(AdminError::Refused(e.to_string())),
            },
            AdminOp::Change(change) => match raft.propose_membership(change) {
                Ok((index, term)) => {
                    let w = AdminWaiter {
                        term,
                        from,
                        id: req.id,
                    };
                    if let Some(old) = self.changes.insert(index, w) {
                        reject_admin(ctx, &old);
                    }
                    return;
                }
                Err(flotilla_raft::MembershipError::NotLeader { hint }) => {
                    Err(AdminError::NotLeader { hint })
                }
                Err(
                    e @ (flotilla_raft::MembershipError::ChangeInProgress { .. }
                    | flotilla_raft::MembershipError::TermNotCommitted
                    | flotilla_raft::MembershipError::TransferInProgress { .. }
                    | flotilla_raft::MembershipError::LearnerBehind { .. }),
                ) => Err(AdminError::Busy(e.to_string())),
                Err(e) => Err(AdminError::Refused(e.to_string())),
            },
        };
        answer(ctx, result);
    }

    /// Registers a read with the core (this replica leads); it is answered in
    /// [`Replica::answer_reads`] once confirmed and applied.
    fn start_read(&mut self, from: NodeId, req: Request<S::Command>, ctx: &mut Ctx<MsgOf<S>, ()>) {
        let id = self.next_read;
        self.next_read += 1;
        let term = self.peer.raft().term();
        // A read whose answer may depend on the time waits for what was proposed before it
        // arrived (see `ReadWaiter::after`); other reads need only their read index.
        let after = match self.state.machine().read_waits_for_proposals(&req.cmd) {
            true => self.peer.raft().log().last_index(),
            false => 0,
        };
        match self.peer.raft_mut().read_index(id) {
            Ok(()) => {
                let w = ReadWaiter {
                    term,
                    from,
                    client: req.client,
                    seq: req.seq,
                    cmd: req.cmd,
                    at_ms: wall_ms(ctx),
                    after,
                };
                self.reads.insert(id, w);
            }
            Err(ProposeError::NotLeader { hint }) => {
                let now_ms = self.state.stamp_hint_ms();
                reject_to(ctx, from, req.client, req.seq, hint, now_ms);
            }
            // Reads add nothing to the log; should the core refuse one as busy, retry later.
            Err(ProposeError::Busy { .. }) => {
                let now_ms = self.state.stamp_hint_ms();
                reject_to(ctx, from, req.client, req.seq, None, now_ms);
            }
        }
    }

    /// Takes the core's verdicts on reads: failed ones are refused, confirmed ones wait for
    /// their index to be applied; then answers every confirmed read the machine has reached.
    fn settle_reads(
        &mut self,
        confirmed: Vec<ReadState>,
        failed: Vec<u64>,
        ctx: &mut Ctx<MsgOf<S>, ()>,
    ) {
        let now_ms = self.state.stamp_hint_ms();
        for id in failed {
            if let Some(w) = self.reads.remove(&id) {
                let hint = self.peer.raft().leader();
                reject_to(ctx, w.from, w.client, w.seq, hint, now_ms);
            }
        }
        for r in confirmed {
            if let Some(w) = self.reads.remove(&r.ctx) {
                self.confirmed.insert((r.index.max(w.after), r.ctx), w);
            }
        }
        self.answer_reads(ctx);
    }

    /// Answers the confirmed reads whose index the machine has applied, from its state now:
    /// that state is committed and at least as new as the read index, so the answer is
    /// linearizable (it reflects every write that completed before the read began, and only
    /// writes committed before it is sent).
    fn answer_reads(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        while let Some(entry) = self.confirmed.first_entry() {
            if entry.key().0 > self.applied {
                break;
            }
            let w = entry.remove();
            let reply = self.state.read(w.cmd, self.applied, w.at_ms);
            ctx.send(
                w.from,
                Msg::Response(Response {
                    client: w.client,
                    seq: w.seq,
                    now_ms: self.state.stamp_hint_ms(),
                    result: Ok(reply),
                }),
            );
        }
    }

    /// Persists and sends what the core produced, applies committed entries, answers clients,
    /// and snapshots when the persisted state has grown past `max_raft_state`.
    fn drive(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        loop {
            let flushed = self.peer.flush(ctx, Msg::Raft);
            for apply in flushed.applies {
                self.apply(apply, ctx);
            }
            self.settle_reads(flushed.reads, flushed.failed_reads, ctx);
            self.reject_if_deposed(ctx);
            if !self.snapshot_due() {
                return;
            }
            if self.offload {
                self.offload_snapshot();
                return;
            }
            let spool = self.peer.raft().snapshot_spool();
            let hint = self.state.snapshot_size_hint();
            match write_snapshot(&*spool, hint, |out| self.state.snapshot_into(out)) {
                Ok(data) => self.take_snapshot(self.applied, data),
                Err(e) => return self.snapshot_failed(self.applied, &e),
            }
            // Loop once more to persist the snapshot and the shorter log.
        }
    }

    /// Whether to snapshot now: the persisted state has reached its threshold and the
    /// machine has applied something the last snapshot does not hold.
    fn snapshot_due(&self) -> bool {
        let Some(max) = self.max_raft_state else {
            return false;
        };
        let mut threshold = if self.snapshot_scales_with_state {
            max.max(self.peer.raft().snapshot_data().len() as usize)
        } else {
            max
        };
        if let Some(at) = self.snapshot_failed_at {
            threshold = threshold.max(at.saturating_add(max));
        }
        self.peer.state_size() >= threshold
            && self.applied > self.peer.raft().log().snapshot_index()
    }

    /// Hands Raft the snapshot of the state at `index`.
    fn take_snapshot(&mut self, index: u64, data: SnapshotData) {
        self.snapshot_failed_at = None;
        self.peer.raft_mut().snapshot(index, data);
    }

    /// A snapshot could not be written (the spool's disk is full, say). Nothing is lost: the
    /// log still holds every entry. The next attempt waits for the log to grow by another
    /// threshold.
    fn snapshot_failed(&mut self, index: u64, e: &io::Error) {
        tracing::warn!(
            replica = self.peer.raft().id().get(),
            index,
            "cannot write a snapshot: {e}; the log keeps growing until the next attempt"
        );
        self.snapshot_failed_at = Some(self.peer.state_size());
    }

    /// Starts encoding a snapshot of the state as of `applied` off the event loop, unless
    /// one is being encoded: the machine gives a consistent view now
    /// ([`StateMachine::snapshot_job`]); the driver runs the job on a worker thread, which
    /// streams the view into a writer of the core's spool and finishes it (for a file:
    /// fsync, off the loop too); [`Replica::snapshot_encoded`] hands the result to Raft.
    /// Meanwhile the replica goes on applying and answering; the log grows past the
    /// threshold for that long.
    fn offload_snapshot(&mut self) {
        if self.encoding.is_some() {
            return;
        }
        let index = self.applied;
        let job = self.state.snapshot_job();
        let hint = self.state.snapshot_size_hint();
        let spool = self.peer.raft().snapshot_spool();
        self.encoding = Some(index);
        self.offloaded.push(Box::new(move || {
            let data = write_snapshot(&*spool, hint, job);
            Box::new(move |r: &mut Self, ctx: &mut Ctx<MsgOf<S>, ()>| {
                r.snapshot_encoded(index, data, ctx)
            })
        }));
    }

    /// The snapshot of the state at `index`, written off the loop (or why it could not be).
    /// Raft takes it unless it already holds one at or past `index` (one installed from a
    /// leader meanwhile); entries up to `index` are applied, hence committed, so they are
    /// still in the log otherwise.
    fn snapshot_encoded(
        &mut self,
        index: u64,
        data: io::Result<SnapshotData>,
        ctx: &mut Ctx<MsgOf<S>, ()>,
    ) {
        if self.encoding == Some(index) {
            self.encoding = None;
        }
        match data {
            Ok(data) if index > self.peer.raft().log().snapshot_index() => {
                self.take_snapshot(index, data)
            }
            Ok(_) => {}
            Err(e) => self.snapshot_failed(index, &e),
        }
        self.drive(ctx);
    }

    fn apply(&mut self, apply: Apply, ctx: &mut Ctx<MsgOf<S>, ()>) {
        match apply {
            Apply::Command { index, term, data } => self.apply_command(index, term, data, ctx),
            Apply::Membership {
                index,
                term,
                membership,
            } => {
                self.check_next_applied(index);
                self.applied = index;
                // Taken first: `reject_waiting_through` would tell it the change was lost.
                let waiter = self.changes.remove(&index);
                self.reject_waiting_through(index, ctx);
                if let Some(w) = waiter {
                    let result = if w.term == term {
                        Ok(AdminReply::Changed { index, membership })
                    } else {
                        Err(AdminError::Lost)
                    };
                    ctx.send(
                        w.from,
                        Msg::AdminResponse(AdminResponse { id: w.id, result }),
                    );
                }
            }
            Apply::Snapshot(snap) => {
                if let Err(e) = self.state.restore_from(&mut snap.data.reader()) {
                    // The leader sent a snapshot this build cannot read: continuing would
                    // diverge from the other replicas.
                    panic!(
                        "replica {}: cannot restore the leader's snapshot at {}: {e}",
                        self.peer.raft().id(),
                        snap.index
                    );
                }
                assert!(
                    snap.index > self.applied,
                    "replica {}, invariant 1: snapshot at {} applied after {}",
                    self.peer.raft().id(),
                    snap.index,
                    self.applied
                );
                self.applied = snap.index;
                self.reject_waiting_through(snap.index, ctx);
            }
        }
    }

    /// Applies the entry at `index` of `term` and answers the client waiting for it, if any.
    ///
    /// The command is decoded once, here, with [`decode_shared`]: its large byte strings
    /// (a Put's value) are views of the entry's buffer, which the state may keep.
    fn apply_command(&mut self, index: u64, term: u64, data: Bytes, ctx: &mut Ctx<MsgOf<S>, ()>) {
        self.check_next_applied(index);
        self.applied = index;
        let waiter = self.waiting.remove(&index);
        self.reject_waiting_through(index, ctx);
        // The leader's no-op of a new term (empty), or an entry this build cannot read: every
        // replica decodes the same bytes the same way, so skipping keeps them in step; it can
        // only mean a leader of another version wrote it.
        let entry = match data.split_first() {
            Some((&ENTRY_VERSION, _)) => decode_shared::<Entry<S::Command>>(&data.slice(1..)).ok(),
            _ => None,
        };
        let Some(entry) = entry else {
            if let Some(w) = waiter {
                reject(ctx, &w, None, self.state.stamp_hint_ms());
            }
            return;
        };
        let (client, seq) = (entry.req.client, entry.req.seq);
        let stamp = Stamp {
            time_ms: entry.time_ms,
            limits: entry.limits,
            index,
        };
        let applied = self.state.apply(entry.req, stamp);
        let Some(w) = waiter else { return };
        let now_ms = self.state.stamp_hint_ms();
        let ours = w.term == term && w.client == client && w.seq == seq;
        let result = match applied {
            _ if !ours => return reject(ctx, &w, None, now_ms),
            Applied::Fresh(r) | Applied::Duplicate(r) => Ok(r),
            Applied::Expired => Err(RsmError::SessionExpired),
            Applied::Unstamped => Err(RsmError::Unstamped),
            Applied::Stale => return reject(ctx, &w, None, now_ms),
        };
        let response = Response {
            client,
            seq,
            now_ms,
            result,
        };
        ctx.send(w.from, Msg::Response(response));
    }

    /// Invariant 1 at an entry's apply: it is the one right after the last applied.
    fn check_next_applied(&self, index: u64) {
        assert!(
            index == self.applied + 1,
            "replica {}, invariant 1: entry {index} applied after {}",
            self.peer.raft().id(),
            self.applied
        );
    }

    /// Checks the invariants in the type's doc after an input; panics with a sentence naming
    /// the replica and the broken invariant. [`CheckDepth::Quick`] reads the first and last
    /// waiter of each kind and the state's quick checks (O(1) for the table, the machine's
    /// own: O(shards) for a shard group); [`CheckDepth::Full`] reads every waiter and scans
    /// the replicated state.
    pub fn check_invariants(&self, depth: CheckDepth) {
        let raft = self.peer.raft();
        let id = raft.id();
        let (applied, last) = (self.applied, raft.log().last_index());
        assert_eq!(
            applied,
            raft.applied_index(),
            "replica {id}, invariant 1: the machine reflects entries through {applied}, the \
             core has handed out through {}",
            raft.applied_index()
        );
        let (leader, term) = (raft.is_leader(), raft.term());
        // Quick: the first and last of each map (the extremes bound the others' indexes, and
        // carry their term when invariant 3 holds), so O(1); full: every waiter.
        let full = depth == CheckDepth::Full;
        let writes = ends(self.waiting.iter(), full).map(|(&i, w)| ("write", i, w.term));
        let changes = ends(self.changes.iter(), full).map(|(&i, w)| ("change", i, w.term));
        for (what, index, t) in writes.chain(changes) {
            assert!(
                index > applied && index <= last && raft.log().term_at(index) == Some(t),
                "replica {id}, invariant 2: a {what} waits at {index} (term {t}), applied \
                 {applied}, last {last}, the log's term there {:?}",
                raft.log().term_at(index)
            );
        }
        let terms = (ends(self.waiting.values(), full).map(|w| w.term))
            .chain(ends(self.changes.values(), full).map(|w| w.term))
            .chain(ends(self.reads.values(), full).map(|w| w.term))
            .chain(ends(self.confirmed.values(), full).map(|w| w.term));
        for t in terms {
            assert!(
                leader && t == term,
                "replica {id}, invariant 3: a waiter of term {t} held in term {term} \
                 (leader: {leader})"
            );
        }
        let holds_reads = !self.reads.is_empty() || !self.confirmed.is_empty();
        assert!(
            !holds_reads || raft.read_mode() != ReadMode::Log,
            "replica {id}, invariant 4: reads held outside the log in read mode Log"
        );
        if let Some((&ctx, _)) = self.reads.last_key_value() {
            assert!(
                ctx < self.next_read,
                "replica {id}, invariant 4: read {ctx} registered, next id {}",
                self.next_read
            );
        }
        let lowest = self.confirmed.first_key_value().map(|(&(i, _), _)| i);
        let highest = self.confirmed.last_key_value().map(|(&(i, _), _)| i);
        if let (Some(lo), Some(hi)) = (lowest, highest) {
            assert!(
                lo > applied && hi <= last,
                "replica {id}, invariant 4: confirmed reads wait at {lo}..={hi}, applied \
                 {applied}, last log index {last}"
            );
        }
        if let Some(at) = self.encoding {
            assert!(
                self.offload && at <= applied,
                "replica {id}, invariant 5: a snapshot at {at} is encoded off the loop \
                 (offloading: {}), applied {applied}",
                self.offload
            );
        }
        assert!(
            self.offloaded.len() <= usize::from(self.encoding.is_some()),
            "replica {id}, invariant 5: {} jobs offloaded, encoding {:?}",
            self.offloaded.len(),
            self.encoding
        );
        self.state.check_invariants(depth);
    }

    /// Clients (and operators) waiting on entries at or below `index` that were not answered
    /// will never be.
    fn reject_waiting_through(&mut self, index: u64, ctx: &mut Ctx<MsgOf<S>, ()>) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let w = entry.remove();
            reject(ctx, &w, None, self.state.stamp_hint_ms());
        }
        while let Some(entry) = self.changes.first_entry() {
            if *entry.key() > index {
                break;
            }
            reject_admin(ctx, &entry.remove());
        }
    }

    /// A replica that is no longer leader of the term its waiters proposed in (or its reads
    /// were registered in) tells them to retry elsewhere at once, rather than leaving them to
    /// time out.
    ///
    /// Invariant (after every input): all waiters and reads were added in the current term by
    /// this replica as leader, since they are only added while leading and this runs after
    /// every input. So one of each tells whether they are all still ours.
    fn reject_if_deposed(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        let raft = self.peer.raft();
        let (leader, term) = (raft.is_leader(), raft.term());
        let ours = |t: u64| leader && t == term;
        let writes = self
            .waiting
            .first_key_value()
            .is_none_or(|(_, w)| ours(w.term));
        let reads = self.reads.values().next().is_none_or(|w| ours(w.term))
            && self.confirmed.values().next().is_none_or(|w| ours(w.term));
        let changes = (self.changes.values().next()).is_none_or(|w| ours(w.term));
        if writes && reads && changes {
            return;
        }
        let hint = raft.leader();
        for w in std::mem::take(&mut self.changes).into_values() {
            reject_admin(ctx, &w);
        }
        for w in std::mem::take(&mut self.waiting).into_values() {
            reject(ctx, &w, hint, self.state.stamp_hint_ms());
        }
        let reads = std::mem::take(&mut self.reads).into_values();
        for w in reads.chain(std::mem::take(&mut self.confirmed).into_values()) {
            reject_to(
                ctx,
                w.from,
                w.client,
                w.seq,
                hint,
                self.state.stamp_hint_ms(),
            );
        }
    }
}

/// What a check reads of `all`: every item when `full`, else the first and the last.
fn ends<I: DoubleEndedIterator + Clone>(all: I, full: bool) -> impl Iterator<Item = I::Item> {
    let (head, tail) = if full { (usize::MAX, 0) } else { (1, 1) };
    all.clone().take(head).chain(all.rev().take(tail))
}

/// Tells a waiting client to retry, with a leader hint if one is known.
fn reject<C, R>(ctx: &mut Ctx<Msg<C, R>, ()>, w: &Waiter, hint: Option<NodeId>, now_ms: u64) {
    reject_to(ctx, w.from, w.client, w.seq, hint, now_ms);
}

/// Tells a waiting operator its change's fate is unknown: this replica stopped leading, or
/// another entry took its index. The operator looks at the membership before retrying.
fn reject_admin<C, R>(ctx: &mut Ctx<Msg<C, R>, ()>, w: &AdminWaiter) {
    ctx.send(
        w.from,
        Msg::AdminResponse(AdminResponse {
            id: w.id,
            result: Err(AdminError::Lost),
        }),
    );
}

/// Tells client `(client, seq)` at `from` to retry, with a leader hint if one is known.
fn reject_to<C, R>(
    ctx: &mut Ctx<Msg<C, R>, ()>,
    from: NodeId,
    client: ClientId,
    seq: u64,
    hint: Option<NodeId>,
    now_ms: u64,
) {
    ctx.send(
        from,
        Msg::Response(Response {
            client,
            seq,
            now_ms,
            result: Err(RsmError::WrongLeader { hint }),
        }),
    );
}

impl<S: StateMachine> Process for Replica<S> {
    fn allow_offload(&mut self) {
        self.offload = true;
    }

    fn take_offloaded(&mut self) -> Vec<Offloaded<Self>> {
        std::mem::take(&mut self.offloaded)
    }

    type Msg = MsgOf<S>;
    type Event = ();

    fn on_tick(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        self.peer.raft_mut().tick();
        self.propose_housekeeping(ctx);
        self.drive(ctx);
    }

    /// Raft's clocks advance, its timers wait for the next tick ([`flotilla_raft::Raft::tick_missed`]).
    fn on_missed_tick(&mut self, ctx: &mut Ctx<MsgOf<S>, ()>) {
        self.peer.raft_mut().tick_missed();
        self.drive(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: MsgOf<S>, ctx: &mut Ctx<MsgOf<S>, ()>) {
        match msg {
            Msg::Raft(m) => self.peer.raft_mut().step(from, m),
            Msg::Request(req) => self.on_request(from, req, ctx),
            Msg::Admin(req) => self.on_admin(from, req, ctx),
            // Replicas send responses, never receive them.
            Msg::Response(_) | Msg::AdminResponse(_) => return,
        }
        self.drive(ctx);
    }

    fn is_reply(msg: &MsgOf<S>) -> bool {
        msg.is_reply()
    }

    /// A leader's AppendEntries and heartbeat rounds, and answers to clients: an answer
    /// reports applied (so committed) state, which needs no pending save of this replica's
    /// once commits rest on another voter's acknowledgement (see
    /// `Raft::commit_needs_peer_ack`).
    ///
    /// Answers to reads outside the log are such answers too. They report applied state (at
    /// or past the read index, itself a commit index), and what makes them current, the
    /// leadership confirmed by a majority's answers to a round or the lease those answers
    /// gave, rests on the followers' state, not on anything in this replica's pending save: a
    /// save pending on a leader holds new log entries, which no read reports until they
    /// commit, and a term or vote change, which would have failed the read. A lone voter
    /// (whose commits rest on its own save) still holds every answer for the save, reads
    /// included: its read index may cover an entry of this very input.
    fn may_send_before_save(&self, msg: &MsgOf<S>) -> bool {
        match msg {
            Msg::Raft(m) => self.peer.raft().may_send_early(m),
            Msg::Response(_) | Msg::AdminResponse(_) => self.peer.raft().commit_needs_peer_ack(),
            Msg::Request(_) | Msg::Admin(_) => false,
        }
    }

    /// A client's command and an operator's request hear why (their senders try another
    /// replica or report it); Raft traffic is dropped (peers resend it).
    fn refuse(&self, msg: &MsgOf<S>, why: Refusal) -> Option<MsgOf<S>> {
        let Refusal::DiskFull = why else { return None };
        match msg {
            Msg::Request(req) => Some(Msg::Response(Response {
                client: req.client,
                seq: req.seq,
                // Applied, so committed: it needs nothing of the unwritten saves.
                now_ms: self.state.stamp_hint_ms(),
                result: Err(RsmError::DiskFull),
            })),
            Msg::Admin(req) => Some(Msg::AdminResponse(AdminResponse {
                id: req.id,
                result: Err(AdminError::Busy(format!(
                    "node {}'s disk is full: it can write nothing until there is space",
                    self.peer.raft().id()
                ))),
            })),
            Msg::Raft(_) | Msg::Response(_) | Msg::AdminResponse(_) => None,
        }
    }
}

/// Each invariant of [`Replica`] broken on purpose, in a replica that kept them all: the
/// check names the one broken.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::ApplyCtx;

    /// A sum: commands add, replies are the new total.
    #[derive(Debug, Default)]
    struct Sum(u64);

    impl StateMachine for Sum {
        type Command = u64;
        type Reply = u64;
        fn apply(&mut self, cmd: u64, _at: &ApplyCtx) -> u64 {
            self.0 += cmd;
            self.0
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
            self.0 = match data {
                [] => 0,
                b => u64::from_le_bytes(b.try_into().map_err(|_| SnapshotError("len".into()))?),
            };
            Ok(())
        }
    }

    fn ctx() -> Ctx<MsgOf<Sum>, ()> {
        Ctx::new(Duration::ZERO).with_wall_clock(Duration::from_millis(1))
    }

    /// A single-voter replica (read mode ReadIndex), elected, with three writes applied;
    /// every invariant holds.
    fn leader() -> Replica<Sum> {
        let cfg = ReplicaConfig {
            raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], 1),
            max_raft_state: None,
            sessions: SessionLimits::default(),
            snapshot_scales_with_state: false,
        };
        let mut r =
            Replica::restore(cfg, Sum::default(), &[], SnapshotData::default()).expect("restores");
        for _ in 0..100 {
            r.on_tick(&mut ctx());
        }
        assert!(r.raft().is_leader());
        for seq in 1..=3 {
            let req = Request {
                client: 7,
                seq,
                after_ms: 1,
                cmd: seq,
            };
            r.on_message(NodeId::new(1), Msg::Request(req), &mut ctx());
        }
        assert_eq!(r.state().machine().0, 6);
        r.check_invariants(CheckDepth::Full);
        r
    }

    fn read(term: u64) -> ReadWaiter<u64> {
        ReadWaiter {
            term,
            from: NodeId::new(1),
            client: 8,
            seq: 1,
            cmd: 0,
            at_ms: 0,
            after: 0,
        }
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 1: the machine reflects")]
    fn invariant_1_applied_is_the_cores() {
        let mut r = leader();
        r.applied -= 1;
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 1: entry")]
    fn invariant_1_entries_apply_in_order() {
        let mut r = leader();
        let (index, term) = (r.applied + 2, r.raft().term());
        let data = Bytes::new();
        r.apply(Apply::Command { index, term, data }, &mut ctx());
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 2")]
    fn invariant_2_no_write_waits_at_an_applied_index() {
        let mut r = leader();
        let w = Waiter {
            term: r.raft().term(),
            from: NodeId::new(1),
            client: 7,
            seq: 9,
        };
        r.waiting.insert(r.applied, w);
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 2")]
    fn invariant_2_a_change_waits_for_an_entry_of_its_term() {
        let mut r = leader();
        let w = AdminWaiter {
            term: r.raft().term(),
            from: NodeId::new(1),
            id: 1,
        };
        // Above the log's last entry: no entry of that term is there.
        r.changes.insert(r.raft().log().last_index() + 1, w);
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 3")]
    fn invariant_3_waiters_belong_to_the_current_term() {
        let mut r = leader();
        let term = r.raft().term();
        r.reads.insert(0, read(term - 1));
        r.next_read = 1;
        r.check_invariants(CheckDepth::Quick);
    }

    /// A quick check reads the first and last waiters; a full one reads them all.
    #[test]
    #[should_panic(expected = "replica 0, invariant 3: a waiter of term 0")]
    fn invariant_3_a_full_check_reads_every_waiter() {
        let mut r = leader();
        let term = r.raft().term();
        r.reads.insert(0, read(term));
        r.reads.insert(1, read(0));
        r.reads.insert(2, read(term));
        r.next_read = 3;
        r.check_invariants(CheckDepth::Quick);
        r.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 4: confirmed reads")]
    fn invariant_4_confirmed_reads_wait_above_applied() {
        let mut r = leader();
        let term = r.raft().term();
        r.confirmed.insert((r.applied, 0), read(term));
        r.next_read = 1;
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 4: read 5 registered")]
    fn invariant_4_read_ids_are_below_the_next() {
        let mut r = leader();
        let term = r.raft().term();
        r.reads.insert(5, read(term));
        r.next_read = 5;
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 5")]
    fn invariant_5_snapshots_are_encoded_off_the_loop_only_when_offloading() {
        let mut r = leader();
        r.encoding = Some(r.applied);
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "replica 0, invariant 5")]
    fn invariant_5_an_encoding_is_of_an_applied_state() {
        let mut r = leader();
        r.offload = true;
        r.encoding = Some(r.applied + 1);
        r.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "session table, invariant 1")]
    fn invariant_6_the_replicated_state_is_checked() {
        let mut r = leader();
        r.state.table_mut().forget_activity(7);
        r.check_invariants(CheckDepth::Quick);
    }

    /// A replica offloading its snapshots keeps invariant 5 while one is encoded, and after.
    #[test]
    fn an_offloaded_snapshot_keeps_the_invariants() {
        let cfg = ReplicaConfig {
            raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], 1),
            max_raft_state: Some(1),
            sessions: SessionLimits::default(),
            snapshot_scales_with_state: false,
        };
        let mut r =
            Replica::restore(cfg, Sum::default(), &[], SnapshotData::default()).expect("restores");
        r.allow_offload();
        for _ in 0..100 {
            r.on_tick(&mut ctx());
        }
        assert!(r.encoding.is_some(), "the no-op's apply starts a snapshot");
        r.check_invariants(CheckDepth::Full);
        for job in r.take_offloaded() {
            let then = job();
            then(&mut r, &mut ctx());
            r.check_invariants(CheckDepth::Full);
        }
        assert_eq!(r.raft().log().snapshot_index(), r.applied());
    }
}
