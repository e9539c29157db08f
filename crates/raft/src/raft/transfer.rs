//! Leader transfer (Ongaro's thesis §3.10).
//!
//! The rules:
//! * **Start** ([`Raft::transfer_leadership`]): only a leader, to another voter, one transfer
//!   at a time. From then until it ends the leader refuses proposals (`NotLeader`, hinting at
//!   the target), so the target's log can catch up and stay caught up. Reads are unaffected,
//!   but for the lease (below).
//! * **Catch up, then TimeoutNow**: the target is brought up to date by normal replication;
//!   once it has acknowledged the leader's last index the leader sends it
//!   [`Message::TimeoutNow`], and again at each heartbeat while the transfer lasts (in case
//!   it was lost). From the first one on, the leader holds no read lease in this term.
//! * **Target**: a follower that gets `TimeoutNow` from its leader in its term campaigns at
//!   once in the next term, skipping pre-vote, asking with [`Message::TransferVote`].
//! * **Voters** treat `TransferVote` as `RequestVote` (log check, one vote per term) except
//!   that leader stickiness does not apply (`ignores_vote_requests(true)`): the old leader
//!   and the followers in its lease hear it. The old leader, seeing the higher term, steps
//!   down, which ends the transfer.
//! * **Abandon**: a transfer not completed within `election_timeout_max_ticks` is abandoned
//!   and the leader accepts proposals again; stepping down or a term change also ends it.
//!   (A late `TimeoutNow` may still start an election afterwards; that is just an election,
//!   safe as any other.)

use super::Raft;
use crate::config::sabotaged;
use crate::message::Message;
use crate::{NodeId, Role, TransferError};

/// A leader transfer in progress.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    target: NodeId,
    /// Leader ticks since the transfer started.
    elapsed: u32,
    /// Whether `TimeoutNow` was sent at least once.
    sent: bool,
}

impl Raft {
    /// Starts handing this leader's leadership over to voter `to` (see the module docs of
    /// `raft/transfer.rs`). Errors if this peer does not lead, `to` is itself or not a voter,
    /// or a transfer is already in progress.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { hint: self.leader });
        }
        if to == self.cfg.id {
            return Err(TransferError::ToSelf);
        }
        if !self.membership.is_voter(to) {
            return Err(TransferError::NotAVoter(to));
        }
        if let Some(t) = self.transfer {
            return Err(TransferError::InProgress { target: t.target });
        }
        self.transfer = Some(Transfer {
            target: to,
            elapsed: 0,
            sent: false,
        });
        if self.progress[&to].matched >= self.log.last_index() {
            self.send_timeout_now();
        } else if self.can_send(to) {
            self.send_append(to);
        }
        self.check_invariants();
        Ok(())
    }

    /// The target of the leader transfer in progress, if any (leader only).
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.target)
    }

    /// Whether a `TransferVote` is heard in a lease (false only when sabotaged).
    pub(super) fn transfer_vote_forced(&self) -> bool {
        !sabotaged!(self.cfg, TransferVoteNotForced)
    }

    /// A leader tick: abandons a transfer that has run for an election timeout.
    pub(super) fn tick_transfer(&mut self) {
        if let Some(t) = self.transfer.as_mut() {
            t.elapsed += 1;
            if t.elapsed >= self.cfg.election_timeout_max_ticks {
                self.transfer = None;
            }
        }
    }

    /// At a heartbeat: sends `TimeoutNow` again if the target is caught up.
    pub(super) fn resend_timeout_now(&mut self) {
        if let Some(t) = self.transfer {
            if self.progress[&t.target].matched >= self.log.last_index() {
                self.send_timeout_now();
            }
        }
    }

    /// After `from` acknowledged entries: the first `TimeoutNow` if it is the transfer's
    /// target and now caught up.
    pub(super) fn maybe_send_timeout_now(&mut self, from: NodeId) {
        if let Some(t) = self.transfer {
            if t.target == from && !t.sent && self.progress[&from].matched >= self.log.last_index()
            {
                self.send_timeout_now();
            }
        }
    }

    fn send_timeout_now(&mut self) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        t.sent = true;
        let target = t.target;
        self.lease_revoked = true;
        let term = self.hard.term;
        self.send(target, Message::TimeoutNow { term });
    }

    /// `TimeoutNow` from `from`: if it is our leader in our term, campaign at once.
    pub(super) fn on_timeout_now(&mut self, from: NodeId, term: u64) {
        let follows = self.role == Role::Follower && self.leader == Some(from);
        if term == self.hard.term && follows && self.is_voter() {
            self.campaign_with(true);
        }
    }

    /// A leader transfer's request for a vote: a `RequestVote` that stickiness lets through.
    pub(super) fn on_transfer_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
    ) {
        let force = self.transfer_vote_forced();
        self.answer_vote(from, term, last_index, last_term, force);
    }
}
