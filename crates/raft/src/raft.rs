//! The Raft state machine (Figure 2 and §5–§7 of the extended paper). Elections, pre-vote
//! and check-quorum live in [`election`]; ReadIndex and lease reads in [`read`]; replication
//! and snapshots here.
//!
//! Invariants kept after every public call (see [`Raft::check_invariants`]):
//! 1. `snapshot_index <= applied <= commit <= last_index`.
//! 2. A leader's `progress[p].matched < progress[p].next <= last_index + 1`.
//! 3. `commit` only moves forward and only past an entry of the current term that a majority
//!    holds (§5.4.2); earlier entries are committed indirectly.
//! 4. An entry at or below `commit` is never truncated (a leader that tries to is a bug).
//! 5. A vote or term change is reported in the same `Ready` as the messages that depend on it.
//! 6. A pre-candidate is a follower that knows no leader (`pre_candidate` implies
//!    `role == Follower` and `leader == None`).
//! 7. Only a leader holds reads; its heartbeat rounds are answered up to at most the latest
//!    sent, and reads wait for rounds above the one a majority answered, in order (see
//!    [`read`]).
//! 8. Only a leader has a leader transfer in progress, and its target is another voter (see
//!    [`transfer`]).
//! 9. `membership` is the latest membership in the log (or the snapshot's, or the boot
//!    configuration), and `peers` is every other member, plus, while that membership's entry
//!    is uncommitted, every other member of the one before it (see [`membership`]). A leader
//!    is a voter and tracks exactly `peers`.
//! 10. A leader sends a follower at most one snapshot at a time: its transfer names a snapshot
//!     at or below the leader's (a newer one restarts it from byte 0), with
//!     `acked <= sent <= total` (the length of that snapshot when it is the current one), the
//!     follower's `matched` below the snapshot's index and its `next` at or below it; no
//!     AppendEntries goes to it meanwhile (see [`snapshot`]).
//! 11. A follower's partial snapshot (chunks received so far) belongs to its current term, is
//!     incomplete (a complete one is installed at once) and lies above its commit index (one
//!     the log caught up with is dropped); only a follower holds one, and a term change or a
//!     restart forgets it.
//! 12. A leader's `uncommitted_bytes` is the data of its entries above `commit`, and the
//!     bytes it counts in flight to a follower are those of AppendEntries it sent that carry
//!     entries above the follower's `matched`; a new proposal is refused while the former
//!     exceeds `max_uncommitted_bytes` (unless it is 0).

mod election;
mod membership;
mod read;
mod snapshot;
mod transfer;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::log::RaftLog;
use crate::message::{ConflictHint, Entry, EntryKind, Envelope, Message};
use crate::ready::{Apply, LogWrite, Ready, Snapshot};
use crate::rng::SplitMix64;
use crate::state::{DecodeError, HardState, PersistentState};
use crate::{
    Config, Membership, MemorySpool, NodeId, ProposeError, ReadMode, SnapshotData, SnapshotSpool,
};

/// The role a peer plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader, or waits for one; a pre-candidate ([`Raft::is_pre_candidate`]) too,
    /// since it has started no election.
    Follower,
    Candidate,
    Leader,
}

/// What a leader knows of one follower (§5.3).
#[derive(Clone, Debug)]
struct Progress {
    /// Next index to send.
    next: u64,
    /// Highest index known to be replicated there.
    matched: u64,
    /// AppendEntries / InstallSnapshot messages outstanding. New proposals are sent at once
    /// only while this is below the window (`max_inflight_appends`, 1 while probing);
    /// otherwise they wait for a reply or the next heartbeat and go in one message.
    inflight: u32,
    /// The follower's match point is unknown (new leader, after a conflict, after a snapshot):
    /// one message at a time, and `next` moves only on replies. Otherwise (replicating) each
    /// AppendEntries advances `next` past what it carries, so several can be in flight.
    probing: bool,
    /// The leader's tick (`Raft::ticks`) at which it last received a reply of its own term
    /// from this follower; set to the election's tick when it becomes leader. Check-quorum
    /// counts the followers heard from within the minimum election timeout.
    last_heard: u64,
    /// The newest heartbeat round ([`Message::Heartbeat`]) this follower answered in this
    /// leader's term; only moves forward.
    acked_round: u64,
    /// `(last index, payload bytes)` of the AppendEntries with entries sent and not yet
    /// covered by `matched`, oldest first (invariant 12); a window restart forgets them.
    sent_appends: VecDeque<(u64, usize)>,
    /// The sum of `sent_appends`' bytes, bounded by `max_inflight_bytes` (plus one entry).
    inflight_bytes: usize,
    /// `matched` at the previous heartbeat: a pipelined follower whose `matched` moved since
    /// is receiving, so its window is not restarted (nothing is resent).
    matched_at_heartbeat: u64,
    /// The snapshot transfer to this follower, if one is under way (invariant 10).
    snapshot: Option<snapshot::SnapshotSend>,
}

impl Progress {
    /// A peer this leader has just started tracking at `ticks`: probing from `next`, and
    /// counted as heard from now (a new leader, or a new member, gets one minimum election
    /// timeout before check-quorum counts it as silent).
    fn new(next: u64, ticks: u64) -> Self {
        Progress {
            next,
            matched: 0,
            inflight: 0,
            probing: true,
            last_heard: ticks,
            acked_round: 0,
            sent_appends: VecDeque::new(),
            inflight_bytes: 0,
            matched_at_heartbeat: 0,
            snapshot: None,
        }
    }
}

/// One Raft peer. Drive it with [`Raft::tick`], [`Raft::step`], [`Raft::propose`] and
/// [`Raft::snapshot`], then drain [`Raft::ready`] and act on it as [`Ready`] documents.
///
/// ```
/// use flotilla_raft::{Config, NodeId, Raft, Role};
///
/// // A single-voter cluster elects itself once its election timeout passes.
/// let me = NodeId::new(1);
/// let mut raft = Raft::new(Config::new(me, vec![me], 7));
/// for _ in 0..60 {
///     raft.tick();
/// }
/// assert_eq!(raft.role(), Role::Leader);
/// let (index, _term) = raft.propose(b"x=1".to_vec()).unwrap();
/// let ready = raft.ready();
/// assert!(ready.must_persist());
/// assert_eq!(ready.applies.len(), 1, "alone, a proposal commits at once (index {index})");
/// ```
#[derive(Debug)]
pub struct Raft {
    cfg: Config,
    /// The peers this one replicates to when it leads: every other member (see invariant 9).
    peers: Vec<NodeId>,
    /// The membership in use: the latest in the log, committed or not (thesis §4.1).
    membership: Membership,
    /// The index of the entry that set `membership` (0 for the boot configuration, the
    /// snapshot index for a snapshot's).
    membership_index: u64,
    hard: HardState,
    log: RaftLog,
    /// The latest snapshot's data, kept to send to followers that are behind it. Shared: the
    /// `Ready`, the service's `Apply` and every chunk sent are views of it (or reads of the
    /// driver's file holding it), never copies of the whole.
    snapshot_data: SnapshotData,
    /// Where a snapshot arriving in chunks is assembled (memory unless the driver gives a
    /// spool of its own, [`Raft::set_snapshot_spool`]).
    spool: Arc<dyn SnapshotSpool>,
    /// A follower's partial snapshot from its leader (invariant 11; see [`snapshot`]).
    incoming: Option<snapshot::Incoming>,
    /// A leader's bytes of entry data above `commit` (invariant 12); 0 on other peers.
    uncommitted_bytes: usize,
    commit: u64,
    /// Highest index handed to the service in `Ready::applies`.
    applied: u64,
    role: Role,
    /// A follower collecting pre-votes (thesis §9.6): it asked for them without raising its
    /// term, and starts a real election once a majority grants. Always a `Follower`.
    pre_candidate: bool,
    leader: Option<NodeId>,
    /// Grants collected in the current (pre-)election, this peer's own included.
    votes: BTreeSet<NodeId>,
    progress: BTreeMap<NodeId, Progress>,
    /// Ticks since this peer last heard from its leader, granted a vote or started a
    /// (pre-)election: the election timer.
    election_elapsed: u32,
    /// The tick (of `ticks`) at which this peer last heard from a leader of its term (an
    /// AppendEntries, InstallSnapshot or heartbeat round it accepted). Until
    /// `election_timeout_min_ticks` after it the peer is in that leader's lease, whatever it
    /// has learned since (a higher term forgets `leader`, not this; see [`Raft::in_lease`]).
    leader_contact: Option<u64>,
    election_timeout: u32,
    heartbeat_elapsed: u32,
    /// Ticks since this incarnation started: the clock check-quorum measures contact with.
    ticks: u64,
    /// In lease mode, a peer restarted with a term grants no (pre-)vote before this tick: it
    /// may have answered a leader's round, and so renewed its read lease, before the crash
    /// (see [`Raft::in_lease`]). 0 otherwise.
    no_votes_before: u64,
    /// ReadIndex and lease reads (leader only, but for the round counter).
    reads: read::Reads,
    /// The leader transfer in progress (leader only; see [`transfer`]).
    transfer: Option<transfer::Transfer>,
    /// This leader sent a `TimeoutNow` in its term: a forced election may elect another
    /// leader at any time, so its read lease is void until it leads again.
    lease_revoked: bool,
    rng: SplitMix64,
    // Pending outputs, drained by `ready()`.
    hard_dirty: bool,
    /// The lowest log index changed since the last `ready()`.
    unstable_from: Option<u64>,
    snapshot_dirty: bool,
    msgs: Vec<Envelope>,
    applies: Vec<Apply>,
}

impl Raft {
    /// A fresh peer with an empty log.
    pub fn new(cfg: Config) -> Self {
        Self::restore(cfg, PersistentState::default(), SnapshotData::default())
    }

    /// A peer restarted from what an earlier incarnation persisted: the encoded state from
    /// [`Raft::persistent_state`] and the last snapshot's data. The service is expected to
    /// restore its own state from the same snapshot, so nothing is re-applied below it.
    pub fn restore(
        cfg: Config,
        state: PersistentState,
        snapshot_data: impl Into<SnapshotData>,
    ) -> Self {
        cfg.validate();
        let mut rng = SplitMix64::new(cfg.seed);
        let election_timeout = rng.between(
            cfg.election_timeout_min_ticks,
            cfg.election_timeout_max_ticks,
        );
        state.log.check();
        let base = state.log.snapshot_index();
        let no_votes_before = if cfg.read_mode == ReadMode::Lease && state.hard_state.term > 0 {
            u64::from(cfg.election_timeout_min_ticks)
        } else {
            0
        };
        let mut raft = Raft {
            peers: Vec::new(),
            membership: Membership::default(),
            membership_index: 0,
            hard: state.hard_state,
            log: state.log,
            snapshot_data: snapshot_data.into(),
            spool: Arc::new(MemorySpool),
            incoming: None,
            uncommitted_bytes: 0,
            commit: base,
            applied: base,
            role: Role::Follower,
            pre_candidate: false,
            leader: None,
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            election_elapsed: 0,
            leader_contact: None,
            election_timeout,
            heartbeat_elapsed: 0,
            ticks: 0,
            no_votes_before,
            reads: read::Reads::default(),
            transfer: None,
            lease_revoked: false,
            rng,
            hard_dirty: false,
            unstable_from: None,
            snapshot_dirty: false,
            msgs: Vec::new(),
            applies: Vec::new(),
            cfg,
        };
        raft.refresh_membership();
        raft.check_invariants();
        raft
    }

    /// Like [`Raft::restore`], decoding bytes written from [`Raft::persistent_state`].
    pub fn restore_from_bytes(
        cfg: Config,
        state: &[u8],
        snapshot_data: impl Into<SnapshotData>,
    ) -> Result<Self, DecodeError> {
        Ok(Self::restore(
            cfg,
            PersistentState::decode(state)?,
            snapshot_data,
        ))
    }

    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    /// The configuration this peer was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn term(&self) -> u64 {
        self.hard.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// True while this peer collects pre-votes ([`Config::pre_vote`]); its role is then
    /// `Follower`, as it has not started an election.
    pub fn is_pre_candidate(&self) -> bool {
        self.pre_candidate
    }
    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.hard.voted_for
    }
    pub fn commit_index(&self) -> u64 {
        self.commit
    }
    /// How the service is configured to serve reads ([`Config::read_mode`]).
    pub fn read_mode(&self) -> ReadMode {
        self.cfg.read_mode
    }
    /// True if every commit this peer can make rests on another voter's acknowledgement (it
    /// is not the only voter). Then, under the driver condition of
    /// [`Message::may_precede_persist`], everything committed is durable on a majority
    /// without this peer's pending save, and answers computed from applied entries may leave
    /// before that save is durable too.
    pub fn commit_needs_peer_ack(&self) -> bool {
        self.membership.voters.iter().any(|&v| v != self.cfg.id)
    }

    /// Whether a driver may send `msg`, which this peer produced, before the save of the same
    /// input is durable: [`Message::may_precede_persist`], and only while commits rest on
    /// another voter's acknowledgement. A lone voter commits an entry in the very input that
    /// appends it, so an AppendEntries of its (to a learner) would carry a commit index its
    /// own crash could take back.
    pub fn may_send_early(&self, msg: &Message) -> bool {
        msg.may_precede_persist() && self.commit_needs_peer_ack()
    }
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn snapshot_data(&self) -> &SnapshotData {
        &self.snapshot_data
    }
    /// Makes snapshots arriving from a leader in chunks go to `spool` (a driver's
    /// temporary files) rather than memory. A partial one under way is dropped (the leader
    /// resends it from the start).
    pub fn set_snapshot_spool(&mut self, spool: Arc<dyn SnapshotSpool>) {
        self.spool = spool;
        self.incoming = None;
    }
    /// The spool snapshots are assembled in (for a service writing its own snapshots to
    /// the same place).
    pub fn snapshot_spool(&self) -> Arc<dyn SnapshotSpool> {
        Arc::clone(&self.spool)
    }
    /// Everything to persist but the snapshot data, for drivers that rewrite it whole.
    pub fn persistent_state(&self) -> PersistentState {
        PersistentState {
            hard_state: self.hard,
            log: self.log.clone(),
        }
    }
    /// [`Raft::persistent_state`], encoded.
    pub fn encode_state(&self) -> Vec<u8> {
        crate::state::encode_parts(&self.hard, &self.log)
    }

    // ----- inputs -----

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            if self.cfg.check_quorum && !self.quorum_active() {
                self.step_down();
                return;
            }
            self.tick_transfer();
            self.heartbeat_elapsed += 1;
            let heartbeat = self.heartbeat_elapsed >= self.cfg.heartbeat_ticks;
            if heartbeat {
                self.heartbeat_elapsed = 0;
                for p in self.peers.clone() {
                    self.heartbeat_to(p);
                }
                self.resend_timeout_now();
            }
            self.tick_reads(heartbeat);
        } else {
            self.election_elapsed += 1;
            // Only voters campaign: a learner, a removed peer or one waiting to join waits.
            if self.election_elapsed >= self.election_timeout && self.is_voter() {
                if self.cfg.pre_vote {
                    self.pre_campaign();
                } else {
                    self.campaign();
                }
            }
        }
    }

    /// A tick that passed while the driver could not run this peer (a stall; see
    /// `flotilla_node::Process::on_missed_tick`): every clock advances as with
    /// [`Raft::tick`] — the read lease and the promise not to vote ([`Raft::in_lease`]) are
    /// measured by `ticks`, and must not outlast real time — but no timer acts: no
    /// check-quorum step-down, election or heartbeat. The next `tick` acts on what is due,
    /// after the driver has fed the messages that queued during the stall, so a leader is
    /// credited with its followers' answers before check-quorum looks. Deferring that is
    /// safe: check-quorum only steers clients away from a cut-off leader; no read rests on
    /// it (a lease runs from when its round was *sent*, a ReadIndex read needs a round).
    pub fn tick_missed(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_transfer();
            self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
        }
    }

    /// Proposes a command. On the leader, returns the index and term it will have if it
    /// commits; it may still be lost if this leader is deposed first.
    ///
    /// While a leader transfer is in progress ([`Raft::transfer_target`]) the leader refuses
    /// proposals with `NotLeader` hinting at the target, which is about to lead (thesis
    /// §3.10: new entries would only delay the target's catching up).
    ///
    /// `data` becomes the entry's buffer as it is (a `Vec` is taken over without a copy):
    /// every later holder of the entry shares it.
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<(u64, u64), ProposeError> {
        let data = data.into();
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { hint: self.leader });
        }
        if let Some(target) = self.transfer_target() {
            return Err(ProposeError::NotLeader { hint: Some(target) });
        }
        let limit = self.cfg.max_uncommitted_bytes;
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + data.len() > limit {
            return Err(ProposeError::Busy {
                uncommitted: self.uncommitted_bytes,
                limit,
            });
        }
        self.uncommitted_bytes += data.len();
        let index = self.log.append(Entry::command(self.hard.term, data));
        self.mark_unstable(index);
        for p in self.peers.clone() {
            if self.can_send(p) {
                self.send_append(p);
            }
        }
        self.maybe_commit();
        Ok((index, self.hard.term))
    }

    /// The service has a snapshot of its state through `index` (which it has applied): the log
    /// up to there may be discarded. Stale requests (at or below the current snapshot) are
    /// ignored. Transfers of an older snapshot to followers restart with this one.
    pub fn snapshot(&mut self, index: u64, data: impl Into<SnapshotData>) {
        if index <= self.log.snapshot_index() {
            return;
        }
        assert!(
            index <= self.applied,
            "raft {}: snapshot at {index} but only {} has been applied",
            self.cfg.id,
            self.applied
        );
        let term = self
            .log
            .term_at(index)
            .expect("applied index is in the log");
        let membership = self.membership_at(index);
        self.log.compact_to(index, term, membership);
        self.refresh_membership();
        self.snapshot_data = data.into();
        self.snapshot_dirty = true;
        self.check_invariants();
    }

    /// Handles a message from peer `from`. A higher-term RequestVote that leader stickiness
    /// ignores ([`Config::check_quorum`]) is dropped. Messages from peers outside the
    /// membership are handled like any other: a new member may hear from a leader it does not
    /// know yet, and a candidate may hold a newer membership than this peer (thesis §4.1);
    /// only votes from voters count, and a leader ignores replies from peers it does not track.
    pub fn step(&mut self, from: NodeId, msg: Message) {
        if from == self.cfg.id {
            return;
        }
        if !self.observe_term(from, &msg) {
            return;
        }
        self.note_contact(from, &msg);
        match msg {
            Message::RequestVote {
                term,
                last_log_index,
                last_log_term,
            } => self.on_request_vote(from, term, last_log_index, last_log_term),
            Message::RequestVoteReply { term, granted } => self.on_vote_reply(from, term, granted),
            Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => self.on_append(
                from,
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            ),
            Message::AppendEntriesReply {
                term,
                match_index,
                conflict,
            } => self.on_append_reply(from, term, match_index, conflict),
            Message::InstallSnapshot {
                term,
                last_included_index,
                last_included_term,
                membership,
                total_len,
                offset,
                data,
            } => self.on_install_snapshot(
                from,
                term,
                (last_included_index, last_included_term),
                membership,
                (total_len, offset),
                data,
            ),
            Message::InstallSnapshotReply {
                term,
                last_included_index,
                offset,
                received,
                done,
            } => self.on_install_snapshot_reply(
                from,
                term,
                last_included_index,
                (offset, received),
                done,
            ),
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => self.on_pre_vote(from, term, last_log_index, last_log_term),
            Message::PreVoteReply { term, granted } => self.on_pre_vote_reply(from, term, granted),
            Message::Heartbeat { term, round } => self.on_heartbeat(from, term, round),
            Message::HeartbeatReply { term, round } => self.on_heartbeat_reply(from, term, round),
            Message::TimeoutNow { term } => self.on_timeout_now(from, term),
            Message::TransferVote {
                term,
                last_log_index,
                last_log_term,
            } => self.on_transfer_vote(from, term, last_log_index, last_log_term),
        }
        self.check_invariants();
    }

    /// Takes everything the driver must act on since the last call.
    pub fn ready(&mut self) -> Ready {
        let mut ready = Ready {
            hard_state: self.hard_dirty.then_some(self.hard),
            messages: std::mem::take(&mut self.msgs),
            applies: std::mem::take(&mut self.applies),
            reads: std::mem::take(&mut self.reads.ready),
            failed_reads: std::mem::take(&mut self.reads.failed),
            ..Ready::default()
        };
        if self.snapshot_dirty {
            ready.snapshot = Some(Snapshot {
                index: self.log.snapshot_index(),
                term: self.log.snapshot_term(),
                // A second reference to the same bytes, not a copy.
                data: self.snapshot_data.clone(),
            });
        }
        if let Some(from) = self.unstable_from.take() {
            let from = from.max(self.log.first_index());
            ready.log_write = Some(LogWrite {
                from,
                entries: self.log.tail_from(from),
            });
        }
        self.hard_dirty = false;
        self.snapshot_dirty = false;
        ready
    }

    // ----- replication (§5.3) -----

    /// Sends `peer` the entries from its `next` index, as many as its byte budget allows
    /// (`max_append_bytes`, and what is left of `max_inflight_bytes`; always one entry), or
    /// continues its snapshot transfer if they were compacted (see [`snapshot`]).
    fn send_append(&mut self, peer: NodeId) {
        let next = self.progress[&peer].next;
        if next <= self.log.snapshot_index() {
            self.send_snapshot(peer, false);
            return;
        }
        let window = self.cfg.max_inflight_appends.max(1);
        let p = self
            .progress
            .get_mut(&peer)
            .expect("leader tracks every peer");
        // The entries suffice now: a transfer still recorded is over.
        p.snapshot = None;
        if p.probing || window == 1 {
            // One message at a time: the previous one was answered or is presumed lost (a
            // heartbeat resends what is unacknowledged).
            p.sent_appends.clear();
            p.inflight_bytes = 0;
        }
        let budget = (self.cfg.max_inflight_bytes.saturating_sub(p.inflight_bytes))
            .min(self.cfg.max_append_bytes);
        let prev = next - 1;
        let entries = self.log.entries_from(next, budget);
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        let last = prev + entries.len() as u64;
        p.inflight = (p.inflight + 1).min(window);
        if !entries.is_empty() {
            p.sent_appends.push_back((last, bytes));
            p.inflight_bytes += bytes;
        }
        if window > 1 && !p.probing {
            p.next = last + 1;
        }
        let msg = Message::AppendEntries {
            term: self.hard.term,
            prev_log_index: prev,
            prev_log_term: self
                .log
                .term_at(prev)
                .expect("prev is at or after the snapshot"),
            entries,
            leader_commit: self.commit,
        };
        self.send(peer, msg);
    }

    /// Whether another AppendEntries may go to `peer` now (see [`Progress::inflight`]).
    fn can_send(&self, peer: NodeId) -> bool {
        let p = &self.progress[&peer];
        if p.snapshot.is_some() {
            // Chunks go on replies and heartbeats, not on proposals.
            return false;
        }
        let window = if p.probing {
            1
        } else {
            self.cfg.max_inflight_appends.max(1)
        };
        p.inflight < window && p.inflight_bytes < self.cfg.max_inflight_bytes
    }

    /// A leader's heartbeat to `peer`: continues a snapshot transfer (see [`snapshot`]), or
    /// sends an AppendEntries from `next`. A pipelined follower whose `matched` moved since
    /// the previous heartbeat is receiving what is in flight: it gets new entries if its
    /// window has room, else nothing (the messages in flight keep its election timer, and
    /// their replies send more). Otherwise its window restarts from `matched`.
    fn heartbeat_to(&mut self, peer: NodeId) {
        let p = self
            .progress
            .get_mut(&peer)
            .expect("leader tracks every peer");
        let progressed = p.matched > p.matched_at_heartbeat;
        p.matched_at_heartbeat = p.matched;
        let pipelined = self.cfg.max_inflight_appends > 1 && !p.probing;
        if p.snapshot.is_some() || p.next <= self.log.snapshot_index() {
            self.heartbeat_snapshot(peer);
        } else if pipelined && progressed {
            if self.can_send(peer) {
                self.send_append(peer);
            }
        } else {
            self.restart_window(peer);
            self.send_append(peer);
        }
    }

    /// At a heartbeat, a replicating peer with a window > 1 starts again from what it has
    /// acknowledged: a message or reply lost on the way would otherwise leave its window full
    /// (and its `next` past entries it never got) until a conflict shows up.
    fn restart_window(&mut self, peer: NodeId) {
        if self.cfg.max_inflight_appends <= 1 {
            return;
        }
        let p = self
            .progress
            .get_mut(&peer)
            .expect("leader tracks every peer");
        if !p.probing {
            p.inflight = 0;
            p.next = p.matched + 1;
            p.sent_appends.clear();
            p.inflight_bytes = 0;
        }
    }

    fn on_append(
        &mut self,
        from: NodeId,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let stale = Message::AppendEntriesReply {
            term: self.hard.term,
            match_index: 0,
            conflict: None,
        };
        // A membership entry that does not decode cannot come from a correct leader: drop the
        // whole message rather than hold an entry this peer could not act on.
        let undecodable = entries
            .iter()
            .any(|e| e.kind == EntryKind::Membership && Membership::decode(&e.data).is_none());
        if undecodable || !self.follow_leader(from, term, stale) {
            return;
        }

        // Entries the snapshot already covers are committed, hence identical: skip them.
        let (prev_index, prev_term, entries) = if prev_index < self.log.snapshot_index() {
            let skip = (self.log.snapshot_index() - prev_index) as usize;
            if skip >= entries.len() {
                let matched = prev_index + entries.len() as u64;
                self.reply_append_ok(from, matched);
                return;
            }
            (
                self.log.snapshot_index(),
                self.log.snapshot_term(),
                entries[skip..].to_vec(),
            )
        } else {
            (prev_index, prev_term, entries)
        };

        // The consistency check (§5.3); on failure, a hint that lets the leader skip a term.
        let log_len = self.log.last_index() + 1;
        let conflict = match self.log.term_at(prev_index) {
            Some(t) if t == prev_term => None,
            Some(t) => Some(ConflictHint {
                term: Some(t),
                first_index: self.log.first_index_of_term_at(prev_index),
                log_len,
            }),
            None => Some(ConflictHint {
                term: None,
                first_index: 0,
                log_len,
            }),
        };
        if conflict.is_some() {
            let reply = Message::AppendEntriesReply {
                term: self.hard.term,
                match_index: 0,
                conflict,
            };
            self.send(from, reply);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        self.merge_entries(prev_index + 1, entries);
        if leader_commit > self.commit {
            self.advance_commit(leader_commit.min(last_new));
        }
        self.reply_append_ok(from, last_new);
    }

    /// The common start of AppendEntries and InstallSnapshot, which only a leader of `term`
    /// sends: a stale leader gets `stale_reply` (carrying our term, so it steps down); otherwise
    /// this peer follows `from` and restarts its election timer. Returns false to ignore.
    fn follow_leader(&mut self, from: NodeId, term: u64, stale_reply: Message) -> bool {
        if term < self.hard.term {
            self.send(from, stale_reply);
            return false;
        }
        if self.role == Role::Leader {
            // Two leaders in one term cannot happen with a correct quorum; drop and say so.
            debug_assert!(
                false,
                "raft {}: leader message from {from} in my own term {term}",
                self.cfg.id
            );
            return false;
        }
        self.become_follower(term, Some(from));
        self.reset_election_timer();
        self.leader_contact = Some(self.ticks);
        true
    }

    /// Appends `entries` starting at `first`, truncating our log at the first conflict only
    /// (a stale, shorter AppendEntries must not cut entries a newer one already added).
    fn merge_entries(&mut self, first: u64, entries: Vec<Entry>) {
        let memberships_before = self.log.membership_indices().len();
        let mut truncated = false;
        for (i, e) in entries.into_iter().enumerate() {
            let index = first + i as u64;
            match self.log.term_at(index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        index > self.commit,
                        "raft {}: leader overwrites committed index {index} (commit {})",
                        self.cfg.id,
                        self.commit
                    );
                    self.log.truncate_from(index);
                    truncated = true;
                    self.log.append(e);
                    self.mark_unstable(index);
                }
                None => {
                    self.log.append(e);
                    self.mark_unstable(index);
                }
            }
        }
        if truncated || self.log.membership_indices().len() != memberships_before {
            self.refresh_membership();
        }
    }

    fn reply_append_ok(&mut self, to: NodeId, match_index: u64) {
        self.send(
            to,
            Message::AppendEntriesReply {
                term: self.hard.term,
                match_index,
                conflict: None,
            },
        );
    }

    fn on_append_reply(
        &mut self,
        from: NodeId,
        term: u64,
        match_index: u64,
        conflict: Option<ConflictHint>,
    ) {
        if self.role != Role::Leader || term != self.hard.term {
            return;
        }
        let last = self.log.last_index();
        let next = match conflict {
            None => match self.record_match(from, match_index) {
                Some(next) => next,
                None => return,
            },
            Some(hint) => {
                // Skip the follower's whole conflicting term, or to its log end (§5.3 fast backup).
                let next = match hint.term {
                    None => hint.log_len,
                    Some(t) => match self.log.last_index_of_term(t) {
                        Some(i) => i + 1,
                        None => hint.first_index,
                    },
                };
                let Some(p) = self.progress.get_mut(&from) else {
                    return;
                };
                if p.snapshot.is_some() {
                    // A late answer to an AppendEntries sent before the transfer began: the
                    // follower is known to be behind the snapshot.
                    return;
                }
                p.next = next.clamp(p.matched + 1, last + 1);
                p.inflight = 0;
                p.probing = true;
                p.sent_appends.clear();
                p.inflight_bytes = 0;
                p.next
            }
        };
        if conflict.is_some() || (next <= last && self.can_send(from)) {
            self.send_append(from);
        }
    }

    /// Commits the highest index of the current term that a majority of voters holds
    /// (§5.4.2), counting with the membership in use (thesis §4.1: even for its own entry).
    fn maybe_commit(&mut self) {
        let (me, last) = (self.cfg.id, self.log.last_index());
        let quorum_index = self.membership.quorum_index(|v| {
            if v == me {
                last
            } else {
                self.progress.get(&v).map_or(0, |p| p.matched)
            }
        });
        if quorum_index > self.commit && self.log.term_at(quorum_index) == Some(self.hard.term) {
            self.advance_commit(quorum_index);
            self.on_term_committed();
        }
    }

    fn advance_commit(&mut self, to: u64) {
        if to <= self.commit {
            return;
        }
        let membership_committed =
            self.commit < self.membership_index && self.membership_index <= to;
        if self.role == Role::Leader {
            // Invariant 12: each newly committed entry leaves the uncommitted tail once, here
            // (a leader holds every entry above its commit index).
            for i in self.commit + 1..=to {
                let len = self.log.entry(i).map_or(0, |e| e.data.len());
                self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(len);
            }
        }
        self.commit = to;
        if self.incoming.as_ref().is_some_and(|i| i.index() <= to) {
            // Invariant 11: the log now holds what that snapshot would have brought.
            self.incoming = None;
        }
        while self.applied < self.commit {
            self.applied += 1;
            let e = self
                .log
                .entry(self.applied)
                .expect("committed entry above snapshot is held");
            let (index, term) = (self.applied, e.term);
            self.applies.push(match e.kind {
                EntryKind::Command => Apply::Command {
                    index,
                    term,
                    // A second reference to the entry's bytes, not a copy.
                    data: e.data.clone(),
                },
                EntryKind::Membership => Apply::Membership {
                    index,
                    term,
                    membership: Membership::decode(&e.data).expect("validated when appended"),
                },
            });
        }
        if membership_committed {
            // The previous membership's leavers need no more entries (invariant 9).
            self.refresh_membership();
        }
    }

    /// A follower acknowledged holding everything up to `index`: advance its progress (never
    /// backwards: replies may be reordered), commit what a majority now holds, and return the
    /// next index to send it (`None` for a peer this leader does not track).
    fn record_match(&mut self, from: NodeId, index: u64) -> Option<u64> {
        let last = self.log.last_index();
        let p = self.progress.get_mut(&from)?;
        p.matched = p.matched.max(index.min(last));
        p.next = p.next.max(p.matched + 1);
        p.inflight = p.inflight.saturating_sub(1);
        p.probing = false;
        while let Some(&(end, bytes)) = p.sent_appends.front() {
            if end > p.matched {
                break;
            }
            p.sent_appends.pop_front();
            p.inflight_bytes -= bytes;
        }
        if p.snapshot.as_ref().is_some_and(|s| p.matched >= s.index) {
            // It holds the snapshot's index (installed, or by entries): the transfer is over.
            p.snapshot = None;
        }
        let next = p.next;
        self.maybe_commit();
        self.maybe_send_timeout_now(from);
        Some(next)
    }

    // ----- plumbing -----

    fn send(&mut self, to: NodeId, msg: Message) {
        self.msgs.push(Envelope {
            from: self.cfg.id,
            to,
            msg,
        });
    }

    fn mark_unstable(&mut self, index: u64) {
        self.unstable_from = Some(self.unstable_from.map_or(index, |u| u.min(index)));
    }

    /// Checks the invariants in the module docs; panics with a sentence naming the peer.
    pub fn check_invariants(&self) {
        let id = self.cfg.id;
        let (s, a, c, l) = (
            self.log.snapshot_index(),
            self.applied,
            self.commit,
            self.log.last_index(),
        );
        assert!(
            s <= a && a <= c && c <= l,
            "raft {id}: need snapshot {s} <= applied {a} <= commit {c} <= last {l}"
        );
        assert!(
            !self.pre_candidate || (self.role == Role::Follower && self.leader.is_none()),
            "raft {id}: pre-candidate with role {:?} and leader {:?}",
            self.role,
            self.leader
        );
        if self.role == Role::Leader {
            assert!(
                self.is_voter() && self.progress.keys().eq(self.peers.iter()),
                "raft {id}: leader of membership {:?} tracks {:?}, peers {:?}",
                self.membership,
                self.progress.keys().collect::<Vec<_>>(),
                self.peers
            );
            for (p, pr) in &self.progress {
                assert!(
                    pr.matched < pr.next && pr.next <= l + 1,
                    "raft {id}: progress of {p} is matched {} next {} with last {l}",
                    pr.matched,
                    pr.next
                );
                let sent: usize = pr.sent_appends.iter().map(|&(_, b)| b).sum();
                assert!(
                    sent == pr.inflight_bytes
                        && pr.sent_appends.iter().all(|&(end, _)| end > pr.matched),
                    "raft {id}: {} bytes in flight to {p} but {:?} sent above matched {}",
                    pr.inflight_bytes,
                    pr.sent_appends,
                    pr.matched
                );
                self.check_snapshot_send(*p, pr);
            }
            if cfg!(any(test, debug_assertions)) {
                let tail: usize = (c + 1..=l)
                    .map(|i| self.log.entry(i).map_or(0, |e| e.data.len()))
                    .sum();
                assert_eq!(
                    tail, self.uncommitted_bytes,
                    "raft {id}: uncommitted tail ({c}, {l}] holds {tail} bytes, counted {}",
                    self.uncommitted_bytes
                );
            }
        } else {
            assert_eq!(
                self.uncommitted_bytes, 0,
                "raft {id}: a {:?} counts uncommitted bytes",
                self.role
            );
        }
        self.check_incoming();
        if let Some(target) = self.transfer_target() {
            assert!(
                self.role == Role::Leader && self.membership.is_voter(target) && target != id,
                "raft {id}: transfer to {target} with role {:?}",
                self.role
            );
        }
        self.check_read_invariants();
        if cfg!(debug_assertions) {
            self.log.check();
        }
    }
}
