//! Elections (§5.2 of the extended paper), pre-vote (Ongaro's thesis §9.6), and check-quorum
//! with leader stickiness (thesis §6.2 and §4.2.3).
//!
//! The rules, with [`Config::pre_vote`](crate::Config::pre_vote) and
//! [`Config::check_quorum`](crate::Config::check_quorum) on:
//! * **Term adoption** ([`Raft::observe_term`]): a message with a higher term makes its
//!   receiver adopt that term and follow (§5.1), except (a) a `PreVote`, whose term is only
//!   proposed; (b) a granted `PreVoteReply`, which echoes that proposed term; (c) a
//!   `RequestVote` that stickiness ignores. A *refused* `PreVoteReply` from a higher term is
//!   adopted, so a pre-candidate behind the cluster catches up.
//! * **Pre-vote** ([`Raft::on_pre_vote`]): granted to a proposed term that is higher than
//!   ours (or equal, if we have neither voted for another nor know a leader in it), when the
//!   asker's log is at least as up to date and we are not in a live leader's lease. Granting
//!   changes nothing here: no term, vote or timer.
//! * **Lease** ([`Raft::in_lease`]): a leader, or a peer that heard from a leader less than
//!   `election_timeout_min_ticks` ago, even if it has adopted a higher term since. Refuses
//!   pre-votes always, and with check-quorum ignores `RequestVote` too (stickiness).
//! * **Check-quorum** ([`Raft::quorum_active`]): a leader steps down (same term) at the first
//!   tick at which fewer than a majority of voters, itself included, have sent it a reply of
//!   its term within the last `election_timeout_min_ticks`.
//!
//! With both off, elections are exactly the paper's (the labs' scenarios rely on it).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::{Progress, Raft};
use crate::config::sabotaged;
use crate::message::{Entry, Message};
use crate::state::HardState;
use crate::{NodeId, Role};

impl Raft {
    // ----- terms (§5.1) -----

    /// Applies the term rules (see the module docs) to a message from `from` before it is
    /// handled. Returns false if the message must be dropped without an answer.
    pub(super) fn observe_term(&mut self, from: NodeId, msg: &Message) -> bool {
        let term = msg.term();
        if term <= self.hard.term {
            return true;
        }
        match msg {
            // Stickiness: a live leader's follower neither adopts the term nor answers, so a
            // peer that lost only its link to the leader cannot depose it.
            Message::RequestVote { .. } if self.ignores_vote_requests(false) => return false,
            // A leader transfer's election is heard in the lease (unless sabotaged).
            Message::TransferVote { .. }
                if self.ignores_vote_requests(self.transfer_vote_forced()) =>
            {
                return false
            }
            // A proposed term: adopting it would let a rejected pre-candidate raise everyone's
            // term, which is what pre-vote exists to prevent.
            Message::PreVote { .. } if !sabotaged!(self.cfg, PreVoteBumpsTerm) => {}
            // A grant echoes the term the pre-candidate proposed; it enters it by campaigning.
            Message::PreVoteReply { granted: true, .. } => {}
            Message::AppendEntries { .. }
            | Message::InstallSnapshot { .. }
            | Message::Heartbeat { .. }
            | Message::TimeoutNow { .. } => self.become_follower(term, Some(from)),
            _ => self.become_follower(term, None),
        }
        true
    }

    /// Whether this peer is within a live leader's lease: it is the leader, or it heard from
    /// a leader less than the minimum election timeout ago. No peer's election timer fires
    /// sooner than that after hearing from the leader, so a request for votes meanwhile comes
    /// from a peer that lost its link to a leader the rest of the cluster still follows.
    ///
    /// The promise runs from the last contact, not from what `leader` says now: adopting a
    /// higher term from a message that names no leader (a refused `PreVoteReply`, a stale
    /// reply) forgets the leader, but the leader's read lease (thesis §6.4.1) still counts
    /// on this peer's answer to its round, so the peer must not vote before the promise
    /// runs out. Invariant: a peer that accepted a leader's message at tick `c` grants no
    /// (pre-)vote before tick `c + election_timeout_min_ticks`, except to a leader transfer's
    /// election (`TransferVote`, which the leader itself started and whose lease it voided).
    ///
    /// In [`ReadMode::Lease`](crate::ReadMode::Lease), also during the first minimum election
    /// timeout of a peer restarted with a term: before its crash it may have answered a
    /// round that renewed a leader's read lease, and that lease relies on its not voting.
    pub(super) fn in_lease(&self) -> bool {
        self.role == Role::Leader
            || (self.leader_contact)
                .is_some_and(|c| self.ticks < c + u64::from(self.cfg.election_timeout_min_ticks))
            || self.ticks < self.no_votes_before
    }

    /// Leader stickiness (check-quorum only): whether to ignore a `RequestVote` because this
    /// peer is in a live leader's lease.
    ///
    /// `force` is the hook for leader transfer (thesis §3.10): an election the leader itself
    /// asked for (its `TimeoutNow`) must be heard by followers in its lease, or no transfer
    /// could succeed. Such a candidate's request comes as its own message variant,
    /// [`Message::TransferVote`] (a field on `RequestVote` would change its wire format),
    /// handled with `force = true`; ordinary `RequestVote`s pass false.
    pub(super) fn ignores_vote_requests(&self, force: bool) -> bool {
        self.cfg.check_quorum && !force && self.in_lease()
    }

    fn log_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.log.last_term()
            || (last_term == self.log.last_term() && last_index >= self.log.last_index())
    }

    // ----- elections (§5.2) -----

    pub(super) fn campaign(&mut self) {
        self.campaign_with(false);
    }

    /// Starts an election in the next term. `transfer`: the leader asked for it with
    /// `TimeoutNow`, so the votes are requested with [`Message::TransferVote`].
    pub(super) fn campaign_with(&mut self, transfer: bool) {
        self.hard.term += 1;
        // Invariant 11: a partial snapshot belongs to the term it was received in.
        self.incoming = None;
        self.hard.voted_for = Some(self.cfg.id);
        self.hard_dirty = true;
        self.role = Role::Candidate;
        self.pre_candidate = false;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id]);
        self.reset_election_timer();
        if self.membership.is_quorum(&self.votes) {
            self.become_leader();
            return;
        }
        let (term, last_log_index, last_log_term) =
            (self.hard.term, self.log.last_index(), self.log.last_term());
        let msg = if transfer {
            Message::TransferVote {
                term,
                last_log_index,
                last_log_term,
            }
        } else {
            Message::RequestVote {
                term,
                last_log_index,
                last_log_term,
            }
        };
        for p in self.voter_peers() {
            self.send(p, msg.clone());
        }
    }

    pub(super) fn on_request_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
    ) {
        self.answer_vote(from, term, last_index, last_term, false);
    }

    /// Answers a request for a vote; `force` for a leader transfer's ([`Raft::ignores_vote_requests`]).
    pub(super) fn answer_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        force: bool,
    ) {
        // A higher-term request in a lease was dropped by `observe_term`; one of our own term
        // is refused here, since this peer already follows a live leader in it.
        let granted = term == self.hard.term
            && self.hard.voted_for.is_none_or(|v| v == from)
            && self.log_up_to_date(last_index, last_term)
            && !self.ignores_vote_requests(force);
        if granted {
            if self.hard.voted_for != Some(from) {
                self.hard.voted_for = Some(from);
                self.hard_dirty = true;
            }
            self.reset_election_timer();
        }
        self.send(
            from,
            Message::RequestVoteReply {
                term: self.hard.term,
                granted,
            },
        );
    }

    pub(super) fn on_vote_reply(&mut self, from: NodeId, term: u64, granted: bool) {
        if self.role != Role::Candidate || term != self.hard.term || !granted {
            return;
        }
        self.votes.insert(from);
        if self.membership.is_quorum(&self.votes) {
            self.become_leader();
        }
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.hard.term {
            self.hard = HardState {
                term,
                voted_for: None,
            };
            self.hard_dirty = true;
            // Invariant 11: another term's leader may hold other bytes for the same index.
            self.incoming = None;
        }
        self.uncommitted_bytes = 0;
        if self.role == Role::Leader {
            self.fail_reads();
        }
        self.transfer = None;
        self.role = Role::Follower;
        self.pre_candidate = false;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
    }

    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.transfer = None;
        self.lease_revoked = false;
        self.incoming = None;
        // Invariant 12: what earlier leaders left uncommitted counts toward the limit too.
        self.uncommitted_bytes = (self.commit + 1..=self.log.last_index())
            .map(|i| self.log.entry(i).map_or(0, |e| e.data.len()))
            .sum();
        let next = self.log.last_index() + 1;
        if self.cfg.leader_noop {
            let index = self.log.append(Entry::command(self.hard.term, Vec::new()));
            self.mark_unstable(index);
        }
        // Every follower starts as heard from now: a new leader gets one minimum election
        // timeout to hear from a majority before check-quorum can depose it.
        self.progress = self
            .peers
            .iter()
            .map(|&p| (p, Progress::new(next, self.ticks)))
            .collect();
        for p in self.peers.clone() {
            self.send_append(p);
        }
        self.start_reads_as_leader();
        // A lone voter commits on its own.
        self.maybe_commit();
    }

    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self.rng.between(
            self.cfg.election_timeout_min_ticks,
            self.cfg.election_timeout_max_ticks,
        );
    }

    // ----- pre-vote (thesis §9.6) -----

    /// The election timer fired with pre-vote on: ask every voter for a pre-vote in the next
    /// term, changing neither term nor vote. A candidate whose election timed out comes here
    /// too (as etcd does), so a split vote does not raise the term again without a majority's
    /// grants. The timer restarts, so an unanswered round is retried.
    pub(super) fn pre_campaign(&mut self) {
        self.role = Role::Follower;
        self.pre_candidate = true;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id]);
        self.reset_election_timer();
        if self.membership.is_quorum(&self.votes) {
            self.campaign();
            return;
        }
        let msg = Message::PreVote {
            term: self.hard.term + 1,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for p in self.voter_peers() {
            self.send(p, msg.clone());
        }
    }

    /// Answers a pre-vote for `term` without changing any state of this peer (§9.6).
    pub(super) fn on_pre_vote(&mut self, from: NodeId, term: u64, last_index: u64, last_term: u64) {
        let free = match term.cmp(&self.hard.term) {
            Ordering::Greater => true,
            // The asker proposes the term we are in: grant as we would a vote in it.
            Ordering::Equal => {
                self.leader.is_none() && self.hard.voted_for.is_none_or(|v| v == from)
            }
            Ordering::Less => false,
        };
        let lease = self.in_lease() && !sabotaged!(self.cfg, PreVoteIgnoresLease);
        let granted = free && !lease && self.log_up_to_date(last_index, last_term);
        let reply_term = if granted { term } else { self.hard.term };
        self.send(
            from,
            Message::PreVoteReply {
                term: reply_term,
                granted,
            },
        );
    }

    /// Counts a pre-vote grant for the current round (`term` is the one it proposed); a
    /// majority starts the real election. Refusals from a higher term were adopted by
    /// `observe_term`; others change nothing (the round is retried when the timer fires).
    pub(super) fn on_pre_vote_reply(&mut self, from: NodeId, term: u64, granted: bool) {
        if !self.pre_candidate || !granted || term != self.hard.term + 1 {
            return;
        }
        self.votes.insert(from);
        if self.membership.is_quorum(&self.votes) {
            self.campaign();
        }
    }

    // ----- check-quorum (thesis §6.2) -----

    /// Whether this peer leads and has received a reply of its term from a majority of voters,
    /// itself included, within the last `election_timeout_min_ticks` (a new leader counts
    /// every follower as heard at its election). Tracked whether or not
    /// [`Config::check_quorum`](crate::Config::check_quorum) is on; with it on, a leader
    /// steps down at the first tick this is false. False on followers and candidates.
    ///
    /// Only replies count: they answer this leader's own messages, so they show the link
    /// works both ways, and having this leader's term they were sent during its leadership.
    pub fn quorum_active(&self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let window = u64::from(self.cfg.election_timeout_min_ticks);
        let recent = (self.progress.iter())
            .filter(|(_, p)| self.ticks - p.last_heard < window)
            .map(|(id, _)| id);
        self.membership
            .is_quorum(recent.chain(std::iter::once(&self.cfg.id)))
    }

    /// Records, on a leader, that `from` replied in this leader's term (for check-quorum).
    pub(super) fn note_contact(&mut self, from: NodeId, msg: &Message) {
        if self.role != Role::Leader || !msg.is_reply() || msg.term() != self.hard.term {
            return;
        }
        if let Some(p) = self.progress.get_mut(&from) {
            p.last_heard = self.ticks;
        }
    }

    /// Check-quorum found no majority: stop leading, in the same term. The election timer
    /// restarts, so this peer does not campaign at once either.
    pub(super) fn step_down(&mut self) {
        self.become_follower(self.hard.term, None);
        self.reset_election_timer();
    }
}
