//! Unit tests of ReadIndex (Ongaro's thesis §6.4) and lease reads (§6.4.1): each feeds one
//! input and asserts the exact outputs.

use std::collections::BTreeMap;

use super::{cfg, elapse_election, leader_with};
use crate::*;

fn with_reads(n: u64, mode: ReadMode) -> Config {
    Config {
        leader_noop: true,
        read_mode: mode,
        check_quorum: mode == ReadMode::Lease,
        ..cfg(NodeId::new(1), n)
    }
}

/// Follower `from` acknowledges the log through `index` (term 1).
fn ack(r: &mut Raft, from: NodeId, index: u64) {
    r.step(
        from,
        Message::AppendEntriesReply {
            term: 1,
            match_index: index,
            conflict: None,
        },
    );
}

/// A leader of `n` peers whose no-op (index 1) is committed, with everything drained.
fn committed_leader(n: u64, mode: ReadMode) -> Raft {
    let mut r = leader_with(with_reads(n, mode));
    for p in 2..=n / 2 + 1 {
        ack(&mut r, NodeId::new(p), 1);
    }
    assert_eq!(r.commit_index(), 1);
    r.ready();
    r
}

fn answer(term: u64, round: u64) -> Message {
    Message::HeartbeatReply { term, round }
}

/// The `(to, round)` of every heartbeat round message in `ready`.
fn rounds(ready: &Ready) -> Vec<(NodeId, u64)> {
    let mut out = Vec::new();
    for m in &ready.messages {
        if let Message::Heartbeat { round, .. } = m.msg {
            out.push((m.to, round));
        }
    }
    out
}

fn read(ctx: u64, index: u64) -> ReadState {
    ReadState { ctx, index }
}

fn heartbeat_ticks() -> u32 {
    cfg(NodeId::new(1), 1).heartbeat_ticks
}

/// §6.4 step 1: a new leader's commit index may lag what earlier leaders committed, so a read
/// waits, sending nothing, until an entry of its term (the no-op) is committed; then one round
/// goes out, and the read is confirmed at the no-op's index once a majority answers it.
#[test]
fn no_read_before_the_terms_entry_commits() {
    let mut r = leader_with(with_reads(3, ReadMode::ReadIndex));
    r.read_index(7).unwrap();
    let ready = r.ready();
    assert!(ready.messages.is_empty() && ready.reads.is_empty());
    assert_eq!(r.pending_reads(), 1);
    ack(&mut r, NodeId::new(2), 1);
    assert_eq!(r.commit_index(), 1);
    let ready = r.ready();
    assert_eq!(
        rounds(&ready),
        vec![(NodeId::new(2), 1), (NodeId::new(3), 1)]
    );
    assert!(
        ready.reads.is_empty(),
        "confirmed before any round was answered"
    );
    r.step(NodeId::new(3), answer(1, 1));
    assert_eq!(r.ready().reads, vec![read(7, 1)]);
    assert_eq!(r.pending_reads(), 0);
}

/// §6.4 step 3, batched: the first read starts a round at once; the reads that arrive while it
/// is in flight send nothing and all share the next round, which starts when the first is
/// answered. Each read keeps the commit index of the moment it arrived.
#[test]
fn reads_batch_into_one_round() {
    let mut r = committed_leader(3, ReadMode::ReadIndex);
    r.read_index(1).unwrap();
    assert_eq!(
        rounds(&r.ready()),
        vec![(NodeId::new(2), 1), (NodeId::new(3), 1)]
    );
    for ctx in 2..=10 {
        r.read_index(ctx).unwrap();
    }
    r.propose(vec![9]).unwrap();
    ack(&mut r, NodeId::new(2), 2);
    assert_eq!(r.commit_index(), 2);
    for ctx in 11..=20 {
        r.read_index(ctx).unwrap();
    }
    let ready = r.ready();
    assert_eq!(rounds(&ready), vec![], "a round per read");
    assert!(ready.reads.is_empty());
    r.step(NodeId::new(2), answer(1, 1));
    let ready = r.ready();
    assert_eq!(ready.reads, vec![read(1, 1)]);
    assert_eq!(
        rounds(&ready),
        vec![(NodeId::new(2), 2), (NodeId::new(3), 2)],
        "one round for 19 reads"
    );
    r.step(NodeId::new(3), answer(1, 2));
    let mut want: Vec<ReadState> = (2..=10).map(|c| read(c, 1)).collect();
    want.extend((11..=20).map(|c| read(c, 2)));
    assert_eq!(r.ready().reads, want);
    assert_eq!(r.read_round(), 2);
}

/// Rounds only move forward: an answer counts for its round and older ones, never a newer one,
/// however late, duplicated or reordered; answers to rounds never sent and of other terms are
/// ignored. Five peers: a majority is the leader and two followers.
#[test]
fn stale_round_replies_do_not_confirm() {
    let mut r = committed_leader(5, ReadMode::ReadIndex);
    r.read_index(1).unwrap();
    assert_eq!(
        rounds(&r.ready()),
        [2, 3, 4, 5].map(|p| (NodeId::new(p), 1)).to_vec()
    );
    r.read_index(2).unwrap();
    for _ in 0..heartbeat_ticks() {
        r.tick();
    }
    // Read 2 waits for round 2, which the heartbeat sent because round 1 was unanswered.
    assert_eq!(
        rounds(&r.ready()),
        [2, 3, 4, 5].map(|p| (NodeId::new(p), 2)).to_vec()
    );
    assert_eq!(r.read_round(), 2);
    r.step(NodeId::new(2), answer(1, 1));
    r.step(NodeId::new(3), answer(1, 1));
    assert_eq!(r.ready().reads, vec![read(1, 1)]);
    for m in [answer(1, 1), answer(1, 1), answer(1, 99), answer(0, 2)] {
        r.step(NodeId::new(4), m.clone());
        r.step(NodeId::new(5), m);
    }
    r.step(NodeId::new(2), answer(1, 2));
    r.step(NodeId::new(3), answer(1, 1));
    assert!(r.ready().reads.is_empty(), "old answers confirmed round 2");
    r.step(NodeId::new(5), answer(1, 2));
    assert_eq!(r.ready().reads, vec![read(2, 1)]);
}

/// A leader that stops leading fails every read it holds, whether it waited for its term's
/// entry or for a round: deposed by a higher term (here a follower's answer to a round).
#[test]
fn pending_reads_fail_on_step_down() {
    let mut r = leader_with(with_reads(3, ReadMode::ReadIndex));
    r.read_index(1).unwrap();
    ack(&mut r, NodeId::new(2), 1);
    r.read_index(2).unwrap();
    r.ready();
    assert_eq!(r.pending_reads(), 2);
    r.step(NodeId::new(3), answer(5, 1));
    assert_eq!((r.role(), r.term()), (Role::Follower, 5));
    let ready = r.ready();
    assert_eq!(ready.failed_reads, vec![1, 2]);
    assert!(ready.reads.is_empty());
    assert_eq!(r.pending_reads(), 0);
    // Later answers to its old rounds change nothing.
    r.step(NodeId::new(2), answer(1, 1));
    assert!(r.ready().is_empty());
}

/// Check-quorum's step-down (same term) fails the reads too, as does a new leader's append.
#[test]
fn pending_reads_fail_when_check_quorum_steps_down() {
    let mut r = committed_leader(3, ReadMode::Lease);
    r.read_index(4).unwrap();
    assert_eq!(r.ready().reads, vec![], "no lease before any answer");
    for _ in 0..cfg(NodeId::new(1), 1).election_timeout_min_ticks {
        r.tick();
    }
    assert_eq!((r.role(), r.term()), (Role::Follower, 1));
    assert_eq!(r.ready().failed_reads, vec![4]);
}

/// A peer that does not lead refuses at once, naming the leader it follows.
#[test]
fn follower_refuses_reads_with_a_hint() {
    let mut r = Raft::new(with_reads(3, ReadMode::ReadIndex));
    assert_eq!(r.read_index(1), Err(ProposeError::NotLeader { hint: None }));
    r.step(NodeId::new(2), Message::Heartbeat { term: 1, round: 4 });
    assert_eq!(
        r.read_index(1),
        Err(ProposeError::NotLeader {
            hint: Some(NodeId::new(2))
        })
    );
}

/// A follower treats a round as a heartbeat (follows the leader, restarts its election timer)
/// and echoes its number; one from a stale leader gets the follower's newer term.
#[test]
fn follower_answers_a_round_and_restarts_its_timer() {
    let mut r = Raft::new(with_reads(3, ReadMode::ReadIndex));
    let min = cfg(NodeId::new(1), 1).election_timeout_min_ticks;
    for _ in 0..min - 1 {
        r.tick();
    }
    r.step(NodeId::new(2), Message::Heartbeat { term: 3, round: 4 });
    let ready = r.ready();
    assert_eq!(ready.messages.len(), 1);
    assert_eq!(ready.messages[0].msg, answer(3, 4));
    assert_eq!((r.term(), r.leader()), (3, Some(NodeId::new(2))));
    for _ in 0..min - 1 {
        r.tick();
    }
    assert_eq!(
        r.role(),
        Role::Follower,
        "the round did not restart the timer"
    );
    r.step(NodeId::new(3), Message::Heartbeat { term: 2, round: 9 });
    assert_eq!(r.ready().messages[0].msg, answer(3, 9));
}

/// A lone voter is its own majority: once its no-op commits (at its election), a read is
/// confirmed at once, with nothing sent.
#[test]
fn lone_voter_reads_at_once() {
    let mut r = leader_with(with_reads(1, ReadMode::ReadIndex));
    assert_eq!(r.commit_index(), 1);
    r.read_index(5).unwrap();
    let ready = r.ready();
    assert_eq!(ready.reads, vec![read(5, 1)]);
    assert!(ready.messages.is_empty());
}

/// Without check-quorum a leader cut off from everyone keeps leading; its read is retried in
/// a new round at every heartbeat, and failed after the maximum election timeout.
#[test]
fn unconfirmed_reads_fail_after_an_election_timeout() {
    let mut r = committed_leader(3, ReadMode::ReadIndex);
    r.read_index(3).unwrap();
    let mut sent = rounds(&r.ready()).len();
    for _ in 0..cfg(NodeId::new(1), 1).election_timeout_max_ticks - 1 {
        r.tick();
        let ready = r.ready();
        sent += rounds(&ready).len();
        assert!(ready.failed_reads.is_empty());
    }
    let heartbeats = (cfg(NodeId::new(1), 1).election_timeout_max_ticks - 1) / heartbeat_ticks();
    assert_eq!(sent, 2 * (1 + heartbeats as usize));
    r.tick();
    assert!(r.is_leader());
    assert_eq!(r.ready().failed_reads, vec![3]);
}

/// §6.4.1: once a majority answered a round, a lease leader confirms reads at its commit index
/// at once, sending nothing.
#[test]
fn lease_confirms_reads_without_a_round() {
    let mut r = leader_with(with_reads(3, ReadMode::Lease));
    // The new leader started round 1 at its election; its no-op commits.
    assert_eq!(r.read_round(), 1);
    ack(&mut r, NodeId::new(2), 1);
    r.step(NodeId::new(2), answer(1, 1));
    assert!(r.has_read_lease());
    r.ready();
    r.read_index(8).unwrap();
    let ready = r.ready();
    assert_eq!(ready.reads, vec![read(8, 1)]);
    assert!(ready.messages.is_empty());
}

/// The lease runs from when the leader *sent* the round a majority answered, not from when the
/// answer came: round 1, sent at the election, answered 20 ticks later, gives a lease of
/// `lease_ticks` (25) from the election. A read after that waits for a round; the answer to a
/// round sent at tick 20 renews the lease (to tick 45) and confirms it.
#[test]
fn lease_runs_from_the_send_tick() {
    let mut r = leader_with(with_reads(3, ReadMode::Lease));
    let lease = r_cfg_lease();
    ack(&mut r, NodeId::new(2), 1);
    for _ in 0..20 {
        r.tick();
    }
    assert_eq!(
        r.read_round(),
        3,
        "rounds at the election and at two heartbeats"
    );
    r.step(NodeId::new(2), answer(1, 1));
    assert!(r.has_read_lease());
    for _ in 20..lease - 1 {
        r.tick();
    }
    assert!(r.has_read_lease());
    r.tick();
    assert!(!r.has_read_lease(), "the lease counted from the answer");
    r.ready();
    r.read_index(6).unwrap();
    assert_eq!(r.ready().reads, vec![]);
    r.step(NodeId::new(3), answer(1, 3));
    assert!(r.has_read_lease());
    assert_eq!(r.ready().reads, vec![read(6, 1)]);
    for _ in lease..20 + lease {
        r.tick();
        r.step(NodeId::new(2), answer(1, 1));
    }
    assert!(!r.has_read_lease(), "old rounds' answers renewed the lease");
}

fn r_cfg_lease() -> u32 {
    with_reads(3, ReadMode::Lease).lease_ticks()
}

/// A peer restarted with a term in lease mode grants no pre-vote and ignores requests for
/// votes for its first minimum election timeout: it may have renewed a lease before its crash.
/// In ReadIndex mode it grants at once.
#[test]
fn restarted_peer_waits_before_voting_in_lease_mode() {
    let state = PersistentState {
        hard_state: HardState {
            term: 3,
            voted_for: None,
        },
        ..PersistentState::default()
    };
    let request = |term| Message::RequestVote {
        term,
        last_log_index: 0,
        last_log_term: 0,
    };
    let pre_vote = Message::PreVote {
        term: 4,
        last_log_index: 0,
        last_log_term: 0,
    };
    let mut lease = Raft::restore(with_reads(3, ReadMode::Lease), state.clone(), Vec::new());
    lease.step(NodeId::new(2), pre_vote.clone());
    lease.step(NodeId::new(2), request(4));
    let ready = lease.ready();
    let refusal = Message::PreVoteReply {
        term: 3,
        granted: false,
    };
    assert_eq!(ready.messages.len(), 1);
    assert_eq!(ready.messages[0].msg, refusal);
    assert_eq!(lease.term(), 3);
    for _ in 0..cfg(NodeId::new(1), 1).election_timeout_min_ticks {
        lease.tick();
    }
    lease.step(NodeId::new(2), request(100));
    assert_eq!(lease.voted_for(), Some(NodeId::new(2)));

    let mut read_index = Raft::restore(with_reads(3, ReadMode::ReadIndex), state, Vec::new());
    read_index.step(NodeId::new(2), request(4));
    assert_eq!(read_index.voted_for(), Some(NodeId::new(2)));
}

/// Lease reads rest on check-quorum's stickiness: a lease without it is refused.
#[test]
fn lease_needs_check_quorum() {
    let bad = Config {
        check_quorum: false,
        ..with_reads(3, ReadMode::Lease)
    };
    assert_eq!(bad.check(), Err(ConfigError::LeaseWithoutCheckQuorum));
    assert!(std::panic::catch_unwind(|| Raft::new(bad.clone())).is_err());
    let no_margin = Config {
        lease_drift_margin_ticks: 0,
        ..with_reads(3, ReadMode::Lease)
    };
    assert_eq!(
        no_margin.check(),
        Err(ConfigError::LeaseDriftMargin {
            lease_drift_margin_ticks: 0,
            election_timeout_min_ticks: 30
        })
    );
    let sabotaged = Config {
        sabotage: Some(Sabotage::LeaseWithoutCheckQuorum),
        ..bad
    };
    assert!(sabotaged.check().is_ok());
    assert!(with_reads(3, ReadMode::Lease).check().is_ok());
    assert_eq!(
        Config::for_service(NodeId::new(1), vec![NodeId::new(1)], 0).read_mode,
        ReadMode::ReadIndex
    );
}

/// Broken on purpose: without the round, a leader confirms a read at once (what the scenarios
/// show to be unsafe).
#[test]
fn sabotaged_reads_skip_the_round() {
    let mut r = committed_leader(3, ReadMode::ReadIndex);
    let mut broken = Raft::restore(
        Config {
            sabotage: Some(Sabotage::ReadsWithoutRound),
            ..with_reads(3, ReadMode::ReadIndex)
        },
        r.persistent_state(),
        Vec::new(),
    );
    r.read_index(1).unwrap();
    assert_eq!(r.ready().reads, vec![]);
    // The broken peer is not leader yet; make it one, then commit its term's entry.
    elapse_election(&mut broken);
    for p in [2, 3] {
        broken.step(
            NodeId::new(p),
            Message::RequestVoteReply {
                term: 2,
                granted: true,
            },
        );
    }
    ack_term(&mut broken, NodeId::new(2), 2, 2);
    broken.ready();
    broken.read_index(1).unwrap();
    let ready = broken.ready();
    assert_eq!(ready.reads, vec![read(1, 2)]);
    assert!(rounds(&ready).is_empty());
}

fn ack_term(r: &mut Raft, from: NodeId, term: u64, index: u64) {
    r.step(
        from,
        Message::AppendEntriesReply {
            term,
            match_index: index,
            conflict: None,
        },
    );
}

/// Wire compatibility: the round pair comes after the eight older variants, whose postcard
/// encoding is unchanged; the round may leave before the leader's save (it promises nothing
/// about its disk), its answer may not.
#[test]
fn round_messages_keep_the_wire_format() {
    let index = |m: &Message| postcard::to_allocvec(m).unwrap()[0];
    let hb = Message::Heartbeat { term: 2, round: 7 };
    let reply = answer(2, 7);
    assert_eq!((index(&hb), index(&reply)), (8, 9));
    let vote = Message::PreVoteReply {
        term: 1,
        granted: true,
    };
    assert_eq!(index(&vote), 7);
    assert!(!hb.is_reply() && reply.is_reply());
    assert!(hb.may_precede_persist() && !reply.may_precede_persist());
    assert_eq!((hb.term(), reply.term()), (2, 2));
    assert_eq!(postcard::to_allocvec(&hb).unwrap(), vec![8, 2, 7]);
    let bytes = postcard::to_allocvec(&reply).unwrap();
    assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), reply);
}

/// Three peers under [`Config::for_service`] in lease mode, whose messages the test carries.
struct Trio {
    peers: BTreeMap<NodeId, Raft>,
    /// Messages sent and not yet delivered, in order.
    wire: Vec<Envelope>,
}

impl Trio {
    fn new() -> Self {
        let peers = (1..=3)
            .map(NodeId::new)
            .map(|id| (id, Raft::new(lease_cfg(id))))
            .collect();
        Trio {
            peers,
            wire: Vec::new(),
        }
    }

    fn peer(&mut self, id: NodeId) -> &mut Raft {
        self.peers.get_mut(&id).expect("a peer of the trio")
    }

    /// Collects what every peer sent (persistence is instant here).
    fn collect(&mut self) {
        for r in self.peers.values_mut() {
            self.wire.extend(r.ready().messages);
        }
    }

    /// Delivers messages until none is left, dropping those to or from a peer in `cut`.
    fn settle(&mut self, cut: &[NodeId]) {
        self.collect();
        while !self.wire.is_empty() {
            for m in std::mem::take(&mut self.wire) {
                if !cut.contains(&m.from) && !cut.contains(&m.to) {
                    self.peer(m.to).step(m.from, m.msg);
                }
            }
            self.collect();
        }
    }
}

fn lease_cfg(id: NodeId) -> Config {
    Config {
        read_mode: ReadMode::Lease,
        ..Config::for_service(
            id,
            vec![NodeId::new(1), NodeId::new(2), NodeId::new(3)],
            42 + id.get(),
        )
    }
}

/// Thesis §6.4.1 (and §9.6's reason for it): a leader's read lease holds because a follower
/// that answered its round votes for nobody until a minimum election timeout after it last
/// heard from the leader, *whatever else it learns meanwhile*. Here F (2), in L's (1) lease,
/// adopts a higher term from X's (3) delayed refusal of an old pre-vote, which forgets who
/// leads; it must still refuse X's pre-vote and vote, or X leads while L serves lease reads.
#[test]
fn a_higher_term_does_not_end_a_followers_lease_promise() {
    let mut t = Trio::new();
    // L leads term 1; its no-op commits and F confirms a round: L holds a lease.
    while !t.peer(NodeId::new(1)).is_pre_candidate() {
        t.peer(NodeId::new(1)).tick();
    }
    t.settle(&[]);
    assert!(t.peer(NodeId::new(1)).is_leader());
    for _ in 0..heartbeat_ticks() {
        t.peer(NodeId::new(1)).tick();
    }
    t.settle(&[NodeId::new(3)]);
    assert!(
        t.peer(NodeId::new(1)).has_read_lease(),
        "F answered L's round"
    );
    // X ran for term 2 earlier and lost; cut off, it restarts in term 2 with L's log.
    let mut state = t.peer(NodeId::new(3)).persistent_state();
    state.hard_state = HardState {
        term: 2,
        voted_for: Some(NodeId::new(3)),
    };
    *t.peer(NodeId::new(3)) = Raft::restore(lease_cfg(NodeId::new(3)), state, Vec::new());
    // F receives X's refusal of a pre-vote F once asked for, delayed until now.
    let refusal = Message::PreVoteReply {
        term: 2,
        granted: false,
    };
    t.peer(NodeId::new(2)).step(NodeId::new(3), refusal);
    assert_eq!(
        t.peer(NodeId::new(2)).term(),
        2,
        "a refused pre-vote's higher term is adopted"
    );
    // X's election timer fires; L is now cut off, F and X talk.
    while !t.peer(NodeId::new(3)).is_pre_candidate() {
        t.peer(NodeId::new(3)).tick();
    }
    t.settle(&[NodeId::new(1)]);
    assert!(
        !(t.peer(NodeId::new(3)).is_leader() && t.peer(NodeId::new(1)).has_read_lease()),
        "X leads term {} while L still holds its read lease in term 1",
        t.peer(NodeId::new(3)).term()
    );
    assert!(!t.peer(NodeId::new(3)).is_leader(), "F voted in L's lease");
}

/// Ticks missed in a driver stall (`Raft::tick_missed`) advance the lease's clock — a lease
/// must not outlast real time — but hold check-quorum until the next `tick`, which then
/// counts the answers that queued during the stall (thesis §6.2 measures contact, and the
/// driver could not read any).
#[test]
fn missed_ticks_end_the_lease_but_wait_for_queued_answers() {
    let mut r = committed_leader(3, ReadMode::Lease);
    for _ in 0..heartbeat_ticks() {
        r.tick();
    }
    let round = r.read_round();
    r.step(NodeId::new(2), answer(1, round));
    assert!(r.has_read_lease());
    r.ready();
    let stall = cfg(NodeId::new(1), 1).election_timeout_min_ticks + 10;
    for _ in 0..stall {
        r.tick_missed();
    }
    assert!(!r.has_read_lease(), "the lease outlasted the stall");
    assert!(r.is_leader(), "a missed tick acted on check-quorum");
    assert!(
        r.ready().messages.is_empty(),
        "a missed tick sent something"
    );
    // Follower 2's answer queued during the stall; then the acting tick.
    ack(&mut r, NodeId::new(2), 1);
    r.tick();
    assert!(r.is_leader(), "deposed although a majority answered");
    // Without the answer, the acting tick deposes it.
    for _ in 0..stall {
        r.tick_missed();
    }
    r.tick();
    assert_eq!((r.role(), r.term()), (Role::Follower, 1));
}
