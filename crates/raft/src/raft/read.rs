//! Reads without the log: ReadIndex (Ongaro's thesis §6.4) and lease reads (§6.4.1).
//!
//! The service registers a read with [`Raft::read_index`]; the leader reports it confirmed in
//! [`crate::Ready::reads`] with its read index, or failed in [`crate::Ready::failed_reads`].
//!
//! The rules, on a leader:
//! * **Its term's entry first.** Until an entry of the leader's term is committed, its commit
//!   index may lag entries earlier leaders committed; reads wait in `awaiting_commit` (the
//!   leader no-op, [`crate::Config::leader_noop`], commits one at once).
//! * **Read index.** A read registered after that gets `index = commit`.
//! * **Rounds.** Leadership is confirmed by numbered heartbeat rounds ([`Message::Heartbeat`]
//!   to every follower). A read needs a majority, the leader included, to have answered a
//!   round sent *after* it was registered: the round after the latest one sent. At most one
//!   round is outstanding at a time: reads that arrive while one is in flight wait for its
//!   answers and then share the next round, so one round serves every read that arrived since
//!   the previous one. A heartbeat tick resends a round if reads still wait (answers lost).
//! * **Round numbers only grow** (over the whole incarnation, not per term), and a follower's
//!   acknowledged round only moves forward: a late or duplicated answer to an older round
//!   counts for that round only, never for a newer one.
//! * **Lease** ([`crate::ReadMode::Lease`]): the lease runs from the tick at which the leader
//!   sent the newest round a majority answered, for [`crate::Config::lease_ticks`]. While it
//!   lasts (and its term's entry is committed) a read is confirmed at once at `commit`. The
//!   leader sends a round at its election and at every heartbeat to keep it.
//!   A leader that sent a `TimeoutNow` (leader transfer) has no lease for the rest of its
//!   term: the target's forced election is heard by followers in the lease. Otherwise reads
//!   are unaffected by a transfer in progress (ReadIndex rounds still confirm leadership).
//! * **Giving up.** A leader that stops leading, or changes term, fails every read it holds;
//!   so does a leader that could not confirm a read within `election_timeout_max_ticks`
//!   (possible only without check-quorum, which deposes such a leader sooner). Failed reads
//!   are retried by the client elsewhere.
//!
//! Every read is linearizable: its index covers every write committed before it arrived, and
//! a majority answering a later round shows that no other leader had committed anything by
//! then (any such leader's majority overlaps this one, whose members would have had its
//! newer term).

use std::collections::VecDeque;

use super::Raft;
use crate::config::sabotaged;
use crate::message::Message;
use crate::ready::ReadState;
use crate::{NodeId, ProposeError, ReadMode, Role};

/// A read waiting for a heartbeat round.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The commit index when it was registered: its read index.
    index: u64,
    /// The first round sent after it was registered: a majority must answer this round or a
    /// later one.
    round: u64,
    /// The tick at which the service asked, to give up after an election timeout.
    since: u64,
}

/// A leader's reads and heartbeat rounds. All but `round` is reset when leadership ends.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// The latest round sent, in this incarnation (never reset: round numbers only grow).
    round: u64,
    /// The newest round a majority, this leader included, has answered (`<= round`); rounds
    /// above it are outstanding.
    quorum_round: u64,
    /// `(round, tick sent)` of the rounds above `quorum_round` sent within the last minimum
    /// election timeout, oldest first: the lease starts at the send tick of the round that
    /// reaches a majority.
    sent_at: VecDeque<(u64, u64)>,
    /// The tick at which the newest round a majority answered was sent.
    lease_from: Option<u64>,
    /// `(ctx, tick asked)` of reads waiting for an entry of this term to commit.
    awaiting_commit: VecDeque<(u64, u64)>,
    /// Reads waiting for their round, in registration order (so rounds and ticks ascend).
    pending: VecDeque<PendingRead>,
    /// Confirmed reads, drained by `ready()`.
    pub(super) ready: Vec<ReadState>,
    /// Failed reads' ctx, drained by `ready()`.
    pub(super) failed: Vec<u64>,
}

impl Raft {
    /// Registers a read identified by `ctx` (the service's own id for it, reported back as is).
    /// On the leader the read is confirmed later in [`crate::Ready::reads`] with the index the
    /// service must have applied before answering it, or failed in
    /// [`crate::Ready::failed_reads`]; see the module docs of `raft/read.rs` for the rules.
    /// A peer that does not lead answers `NotLeader` with the leader it knows.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { hint: self.leader });
        }
        let now = self.ticks;
        if self.term_committed() {
            self.register_read(ctx, now);
        } else {
            self.reads.awaiting_commit.push_back((ctx, now));
        }
        Ok(())
    }

    /// Whether this peer leads with a read lease ([`crate::ReadMode::Lease`]) that has not run
    /// out: it may confirm reads without a round (once its term's entry is committed).
    pub fn has_read_lease(&self) -> bool {
        let lease = u64::from(self.cfg.lease_ticks());
        self.cfg.read_mode == ReadMode::Lease
            && self.role == Role::Leader
            && !self.lease_revoked
            && self
                .reads
                .lease_from
                .is_some_and(|t| self.ticks < t + lease)
    }

    /// Reads this leader holds that are not yet confirmed or failed.
    pub fn pending_reads(&self) -> usize {
        self.reads.awaiting_commit.len() + self.reads.pending.len()
    }

    /// The latest heartbeat round this peer sent (0 before the first).
    pub fn read_round(&self) -> u64 {
        self.reads.round
    }

    /// Whether an entry of this leader's term is committed, so `commit` covers every entry
    /// committed by earlier leaders (§6.4 step 1).
    fn term_committed(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.hard.term)
    }

    /// A read on a leader whose term's entry is committed: confirmed at once under a lease
    /// (or when sabotaged), otherwise queued for the next round.
    fn register_read(&mut self, ctx: u64, since: u64) {
        let index = self.commit;
        if self.has_read_lease() || sabotaged!(self.cfg, ReadsWithoutRound) {
            self.reads.ready.push(ReadState { ctx, index });
            return;
        }
        self.reads.pending.push_back(PendingRead {
            ctx,
            index,
            round: self.reads.round + 1,
            since,
        });
        self.maybe_start_round();
    }

    /// Sends the next round if reads wait for it and none is outstanding.
    fn maybe_start_round(&mut self) {
        let r = &self.reads;
        let wanted = r.pending.back().is_some_and(|p| p.round > r.round);
        if wanted && r.quorum_round == r.round {
            self.send_round();
        }
    }

    /// Sends heartbeat round `round + 1` to every follower.
    fn send_round(&mut self) {
        self.reads.round += 1;
        let round = self.reads.round;
        self.reads.sent_at.push_back((round, self.ticks));
        let msg = Message::Heartbeat {
            term: self.hard.term,
            round,
        };
        for p in self.voter_peers() {
            self.send(p, msg.clone());
        }
        // A lone voter is its own majority.
        self.confirm_reads();
    }

    /// Advances `quorum_round` to the newest round a majority answered, starts the lease from
    /// its send tick, and confirms the reads it covers.
    fn confirm_reads(&mut self) {
        let (me, round) = (self.cfg.id, self.reads.round);
        let q = self.membership.quorum_index(|v| {
            if v == me {
                round
            } else {
                self.progress.get(&v).map_or(0, |p| p.acked_round)
            }
        });
        let r = &mut self.reads;
        if q <= r.quorum_round {
            return;
        }
        r.quorum_round = q;
        while let Some(&(round, sent)) = r.sent_at.front() {
            if round > q {
                break;
            }
            if round == q {
                r.lease_from = Some(sent);
            }
            r.sent_at.pop_front();
        }
        // A renewed lease confirms every waiting read: it shows no other leader could be
        // elected before it ends, nor (its round having this term's answers) before it began.
        let all = self.has_read_lease();
        let r = &mut self.reads;
        while r.pending.front().is_some_and(|p| all || p.round <= q) {
            let p = r.pending.pop_front().expect("checked above");
            r.ready.push(ReadState {
                ctx: p.ctx,
                index: p.index,
            });
        }
    }

    /// Once this leader's term has an entry committed: the reads that waited for it.
    pub(super) fn on_term_committed(&mut self) {
        while let Some((ctx, since)) = self.reads.awaiting_commit.pop_front() {
            self.register_read(ctx, since);
        }
    }

    /// A leader's per-tick read work: give up on reads that waited an election timeout, forget
    /// rounds too old to start a lease, and at a heartbeat send a round if reads wait (answers
    /// may have been lost) or, in lease mode, to renew the lease.
    pub(super) fn tick_reads(&mut self, heartbeat: bool) {
        let now = self.ticks;
        let limit = u64::from(self.cfg.election_timeout_max_ticks);
        let r = &mut self.reads;
        while r
            .awaiting_commit
            .front()
            .is_some_and(|&(_, t)| now - t >= limit)
        {
            let (ctx, _) = r.awaiting_commit.pop_front().expect("checked above");
            r.failed.push(ctx);
        }
        while r.pending.front().is_some_and(|p| now - p.since >= limit) {
            let p = r.pending.pop_front().expect("checked above");
            r.failed.push(p.ctx);
        }
        let window = u64::from(self.cfg.election_timeout_min_ticks);
        while r.sent_at.front().is_some_and(|&(_, t)| now - t >= window) {
            r.sent_at.pop_front();
        }
        if heartbeat && (self.cfg.read_mode == ReadMode::Lease || !r.pending.is_empty()) {
            self.send_round();
        }
    }

    /// A new leader: no lease and no outstanding round yet. In lease mode it starts a round at
    /// once rather than at the first heartbeat, to get its lease sooner.
    pub(super) fn start_reads_as_leader(&mut self) {
        let r = &mut self.reads;
        r.quorum_round = r.round;
        r.lease_from = None;
        r.sent_at.clear();
        if self.cfg.read_mode == ReadMode::Lease {
            self.send_round();
        }
    }

    /// Leadership ended (or the term changed): every read held fails.
    pub(super) fn fail_reads(&mut self) {
        let r = &mut self.reads;
        r.failed
            .extend(r.awaiting_commit.drain(..).map(|(ctx, _)| ctx));
        r.failed.extend(r.pending.drain(..).map(|p| p.ctx));
        r.quorum_round = r.round;
        r.lease_from = None;
        r.sent_at.clear();
    }

    /// A follower's side of a round: follow the leader as for any heartbeat and echo `round`.
    pub(super) fn on_heartbeat(&mut self, from: NodeId, term: u64, round: u64) {
        let stale = Message::HeartbeatReply {
            term: self.hard.term,
            round,
        };
        if !self.follow_leader(from, term, stale) {
            return;
        }
        let reply = Message::HeartbeatReply {
            term: self.hard.term,
            round,
        };
        self.send(from, reply);
    }

    /// `from` answered round `round` of this leader's term: it counts for that round and every
    /// older one, never a newer one.
    pub(super) fn on_heartbeat_reply(&mut self, from: NodeId, term: u64, round: u64) {
        if self.role != Role::Leader || term != self.hard.term || round > self.reads.round {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        self.confirm_reads();
        self.maybe_start_round();
    }

    /// The read invariants of [`Raft::check_invariants`].
    pub(super) fn check_read_invariants(&self) {
        let id = self.cfg.id;
        let r = &self.reads;
        if self.role != Role::Leader {
            assert!(
                r.pending.is_empty() && r.awaiting_commit.is_empty(),
                "raft {id}: a {:?} holds reads",
                self.role
            );
            return;
        }
        assert!(
            r.quorum_round <= r.round,
            "raft {id}: round {} answered by a majority but only {} sent",
            r.quorum_round,
            r.round
        );
        for (p, pr) in &self.progress {
            assert!(
                pr.acked_round <= r.round,
                "raft {id}: peer {p} answered round {} of {}",
                pr.acked_round,
                r.round
            );
        }
        let mut last = (r.quorum_round + 1, 0);
        for p in &r.pending {
            assert!(
                p.round >= last.0 && p.round <= r.round + 1 && p.since >= last.1,
                "raft {id}: pending read {} waits for round {} (quorum {}, sent {})",
                p.ctx,
                p.round,
                r.quorum_round,
                r.round
            );
            assert!(
                p.index <= self.commit,
                "raft {id}: read index {} above commit",
                p.index
            );
            last = (p.round, p.since);
        }
    }
}
