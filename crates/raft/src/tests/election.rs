//! Unit tests of pre-vote (Ongaro's thesis §9.6), check-quorum (thesis §6.2) and leader
//! stickiness (thesis §4.2.3): each feeds one input and asserts the exact outputs.

use super::{cfg, leader_of, leader_with, r_max_ticks};
use crate::*;

fn with_pre_vote(id: NodeId, n: u64) -> Config {
    Config {
        pre_vote: true,
        ..cfg(id, n)
    }
}

fn with_check_quorum(id: NodeId, n: u64) -> Config {
    Config {
        check_quorum: true,
        ..cfg(id, n)
    }
}

fn min_ticks() -> u32 {
    cfg(NodeId::new(1), 1).election_timeout_min_ticks
}

fn pre_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::PreVote {
        term,
        last_log_index,
        last_log_term,
    }
}

fn request_vote(term: u64) -> Message {
    Message::RequestVote {
        term,
        last_log_index: 0,
        last_log_term: 0,
    }
}

fn heartbeat(term: u64) -> Message {
    Message::AppendEntries {
        term,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
    }
}

/// Ticks a pre-vote peer until its election timer fires and it asks for pre-votes.
fn elapse_pre_election(r: &mut Raft) {
    for _ in 0..=r_max_ticks() {
        if r.is_pre_candidate() {
            return;
        }
        r.tick();
    }
    panic!("raft {} never became a pre-candidate", r.id());
}

/// The replies peer `to` got in this `Ready`.
fn replies_to(ready: &Ready, to: NodeId) -> Vec<Message> {
    let msgs = ready.messages.iter().filter(|m| m.to == to);
    msgs.map(|m| m.msg.clone()).collect()
}

/// §9.6: with pre-vote, a follower whose election timer fires asks every voter for a pre-vote
/// in the next term, without raising its own term, voting, or persisting anything.
#[test]
fn pre_vote_timeout_asks_without_raising_term() {
    let mut r = Raft::new(with_pre_vote(NodeId::new(1), 3));
    elapse_pre_election(&mut r);
    assert_eq!(
        (r.role(), r.term(), r.voted_for(), r.leader()),
        (Role::Follower, 0, None, None)
    );
    let ready = r.ready();
    assert!(!ready.must_persist(), "a pre-vote round persists nothing");
    let sent: Vec<_> = ready
        .messages
        .iter()
        .map(|m| (m.to, m.msg.clone()))
        .collect();
    assert_eq!(
        sent,
        vec![
            (NodeId::new(2), pre_vote(1, 0, 0)),
            (NodeId::new(3), pre_vote(1, 0, 0))
        ]
    );
}

/// §9.6: a pre-candidate does not adopt the (higher, proposed) term of a grant; only a
/// majority of grants starts the real election: term + 1, a vote for itself, RequestVote.
#[test]
fn pre_vote_majority_starts_the_real_election() {
    let mut r = Raft::new(with_pre_vote(NodeId::new(1), 5));
    elapse_pre_election(&mut r);
    r.ready();
    let grant = Message::PreVoteReply {
        term: 1,
        granted: true,
    };
    r.step(NodeId::new(2), grant.clone());
    let refusal = Message::PreVoteReply {
        term: 0,
        granted: false,
    };
    r.step(NodeId::new(3), refusal);
    // A grant for another round (a term we do not propose) counts for nothing.
    let stale = Message::PreVoteReply {
        term: 3,
        granted: true,
    };
    r.step(NodeId::new(5), stale);
    assert!(r.is_pre_candidate(), "2 grants of 5 (self included)");
    assert_eq!((r.term(), r.voted_for()), (0, None));
    assert!(r.ready().is_empty());
    r.step(NodeId::new(4), grant);
    assert_eq!(
        (r.role(), r.is_pre_candidate(), r.term(), r.voted_for()),
        (Role::Candidate, false, 1, Some(NodeId::new(1)))
    );
    let ready = r.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            voted_for: Some(NodeId::new(1))
        })
    );
    assert_eq!(ready.messages.len(), 4);
    assert!(ready.messages.iter().all(|m| m.msg == request_vote(1)));
}

/// §9.6: granting a pre-vote changes nothing at the voter: no term, no vote (so it grants a
/// second asker too), nothing to persist, and its election timer keeps running.
#[test]
fn pre_vote_grant_changes_nothing() {
    let fixed = Config {
        election_timeout_min_ticks: 30,
        election_timeout_max_ticks: 30,
        ..with_pre_vote(NodeId::new(1), 3)
    };
    let mut r = Raft::new(fixed);
    for _ in 0..29 {
        r.tick();
    }
    r.step(NodeId::new(2), pre_vote(1, 0, 0));
    r.step(NodeId::new(3), pre_vote(1, 0, 0));
    let ready = r.ready();
    assert_eq!(ready.hard_state, None);
    let grant = Message::PreVoteReply {
        term: 1,
        granted: true,
    };
    assert_eq!(replies_to(&ready, NodeId::new(2)), vec![grant.clone()]);
    assert_eq!(replies_to(&ready, NodeId::new(3)), vec![grant]);
    assert_eq!((r.term(), r.voted_for(), r.leader()), (0, None, None));
    r.tick();
    assert!(
        r.is_pre_candidate(),
        "the grants did not restart the election timer (30 ticks in all)"
    );
}

/// §9.6 with §5.4.1: a pre-vote is refused to a log less up to date than the voter's; the
/// refusal carries the voter's term, which it keeps.
#[test]
fn pre_vote_refused_to_stale_log() {
    let mut leader = leader_of(3);
    leader.propose(vec![1]).unwrap();
    let mut r = Raft::restore(
        with_pre_vote(NodeId::new(3), 3),
        leader.persistent_state(),
        Vec::new(),
    );
    r.step(NodeId::new(2), pre_vote(7, 5, 0));
    let refusal = Message::PreVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(replies_to(&r.ready(), NodeId::new(2)), vec![refusal]);
    assert_eq!((r.term(), r.voted_for()), (1, Some(NodeId::new(1))));
}

/// §9.6: a follower that heard from its leader less than the minimum election timeout ago
/// refuses pre-votes (even with check-quorum off), keeping its term; once that long has passed
/// without the leader, it grants.
#[test]
fn pre_vote_refused_while_the_leader_is_live() {
    let mut r = Raft::new(with_pre_vote(NodeId::new(1), 3));
    r.step(NodeId::new(2), heartbeat(1));
    r.ready();
    for _ in 0..min_ticks() - 1 {
        r.tick();
    }
    r.step(NodeId::new(3), pre_vote(2, 0, 0));
    let refusal = Message::PreVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(replies_to(&r.ready(), NodeId::new(3)), vec![refusal]);
    assert_eq!((r.term(), r.leader()), (1, Some(NodeId::new(2))));
    r.tick();
    r.step(NodeId::new(3), pre_vote(2, 0, 0));
    let grant = Message::PreVoteReply {
        term: 2,
        granted: true,
    };
    assert_eq!(replies_to(&r.ready(), NodeId::new(3)), vec![grant]);
    assert_eq!(r.term(), 1);
}

/// §9.6: a leader (even one without pre-vote itself) refuses a pre-vote for a higher term and
/// does not adopt that term: a rejoining peer cannot depose it this way.
#[test]
fn pre_vote_request_does_not_bump_a_leaders_term() {
    let mut r = leader_of(3);
    r.step(NodeId::new(3), pre_vote(2, 0, 0));
    assert_eq!((r.role(), r.term()), (Role::Leader, 1));
    let ready = r.ready();
    assert_eq!(ready.hard_state, None);
    let refusal = Message::PreVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(replies_to(&ready, NodeId::new(3)), vec![refusal]);
}

/// §9.6 (as etcd): a pre-vote for a term below the voter's is refused with the voter's term,
/// and a pre-candidate refused from a higher term adopts it, so a peer with a stale term
/// catches up instead of asking for a term that cannot win.
#[test]
fn pre_vote_refusal_from_a_higher_term_is_adopted() {
    let stale_term = PersistentState {
        hard_state: HardState {
            term: 5,
            voted_for: None,
        },
        ..PersistentState::default()
    };
    let mut voter = Raft::restore(with_pre_vote(NodeId::new(2), 3), stale_term, Vec::new());
    voter.step(NodeId::new(1), pre_vote(3, 0, 0));
    let refusal = voter.ready().messages.remove(0).msg;
    assert_eq!(
        refusal,
        Message::PreVoteReply {
            term: 5,
            granted: false
        }
    );
    let mut r = Raft::new(with_pre_vote(NodeId::new(1), 3));
    elapse_pre_election(&mut r);
    r.ready();
    r.step(NodeId::new(2), refusal);
    assert_eq!(
        (r.role(), r.is_pre_candidate(), r.term(), r.voted_for()),
        (Role::Follower, false, 5, None)
    );
    assert_eq!(
        r.ready().hard_state,
        Some(HardState {
            term: 5,
            voted_for: None
        })
    );
}

/// §9.6 (as etcd): a candidate whose election timed out goes through pre-vote again, for the
/// term after the one it is in, without raising its term a second time.
#[test]
fn timed_out_candidate_asks_for_pre_votes_again() {
    let mut r = Raft::new(with_pre_vote(NodeId::new(1), 3));
    elapse_pre_election(&mut r);
    let grant = Message::PreVoteReply {
        term: 1,
        granted: true,
    };
    r.step(NodeId::new(2), grant);
    assert_eq!((r.role(), r.term()), (Role::Candidate, 1));
    r.ready();
    elapse_pre_election(&mut r);
    assert_eq!(
        (r.role(), r.term(), r.voted_for()),
        (Role::Follower, 1, Some(NodeId::new(1)))
    );
    let ready = r.ready();
    assert_eq!(ready.hard_state, None);
    assert!(ready.messages.iter().all(|m| m.msg == pre_vote(2, 0, 0)));
}

/// §9.6: a lone voter needs no pre-votes: its election timer makes it leader at once.
#[test]
fn lone_voter_with_pre_vote_elects_itself() {
    let mut r = Raft::new(Config::for_service(NodeId::new(1), vec![NodeId::new(1)], 7));
    for _ in 0..r_max_ticks() {
        r.tick();
    }
    assert_eq!((r.role(), r.term()), (Role::Leader, 1));
}

/// §4.2.3 (leader stickiness, with check-quorum): a follower that heard from a live leader
/// less than the minimum election timeout ago ignores a RequestVote of a higher term: no
/// reply, no new term, no vote. Without check-quorum the same request is granted.
#[test]
fn sticky_follower_ignores_request_vote() {
    let mut r = Raft::new(with_check_quorum(NodeId::new(1), 3));
    r.step(NodeId::new(2), heartbeat(1));
    r.ready();
    r.step(NodeId::new(3), request_vote(2));
    let ready = r.ready();
    assert!(ready.is_empty(), "ignored entirely: {ready:?}");
    assert_eq!(
        (r.term(), r.voted_for(), r.leader()),
        (1, None, Some(NodeId::new(2)))
    );

    let mut plain = Raft::new(cfg(NodeId::new(1), 3));
    plain.step(NodeId::new(2), heartbeat(1));
    plain.step(NodeId::new(3), request_vote(2));
    assert_eq!((plain.term(), plain.voted_for()), (2, Some(NodeId::new(3))));
}

/// §4.2.3: stickiness lasts one minimum election timeout after the leader was last heard;
/// then the follower adopts the candidate's term and grants as usual.
#[test]
fn stickiness_ends_after_the_minimum_election_timeout() {
    let mut r = Raft::new(with_check_quorum(NodeId::new(1), 3));
    r.step(NodeId::new(2), heartbeat(1));
    for _ in 0..min_ticks() - 1 {
        r.tick();
    }
    r.step(NodeId::new(3), request_vote(2));
    assert_eq!(r.term(), 1, "still in the lease");
    r.tick();
    r.step(NodeId::new(3), request_vote(2));
    assert_eq!((r.term(), r.voted_for()), (2, Some(NodeId::new(3))));
}

/// §4.2.3: a check-quorum leader ignores a RequestVote of a higher term too, and refuses one
/// of its own term from a peer that knows its leader.
#[test]
fn sticky_leader_and_followers_refuse_votes() {
    let mut l = leader_with(with_check_quorum(NodeId::new(1), 3));
    l.step(NodeId::new(3), request_vote(2));
    assert_eq!((l.role(), l.term()), (Role::Leader, 1));
    assert!(l.ready().is_empty());

    let mut f = Raft::new(with_check_quorum(NodeId::new(2), 3));
    f.step(NodeId::new(1), heartbeat(1));
    f.ready();
    f.step(NodeId::new(3), request_vote(1));
    let refusal = Message::RequestVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(replies_to(&f.ready(), NodeId::new(3)), vec![refusal]);
    assert_eq!(f.voted_for(), None);
}

/// Thesis §6.2: a check-quorum leader that hears from no majority for the minimum election
/// timeout steps down at that tick, to follower in the same term (nothing to persist).
#[test]
fn check_quorum_leader_steps_down_without_a_majority() {
    let mut l = leader_with(with_check_quorum(NodeId::new(1), 3));
    for _ in 0..min_ticks() - 1 {
        l.tick();
    }
    assert!(l.is_leader() && l.quorum_active());
    l.ready();
    l.tick();
    assert!(!l.quorum_active());
    assert_eq!(
        (l.role(), l.term(), l.leader(), l.voted_for()),
        (Role::Follower, 1, None, Some(NodeId::new(1)))
    );
    let ready = l.ready();
    assert!(ready.is_empty(), "stepping down sends and persists nothing");
    assert!(l.propose(vec![1]).is_err());
}

/// Thesis §6.2: replies of the leader's term from one follower (with the leader, a majority of
/// 3) keep it leading indefinitely; replies of an older term do not count.
#[test]
fn check_quorum_counts_replies_of_the_leaders_term() {
    let mut l = leader_with(with_check_quorum(NodeId::new(1), 3));
    let ack = |term| Message::AppendEntriesReply {
        term,
        match_index: 0,
        conflict: None,
    };
    for _ in 0..10 * min_ticks() {
        l.tick();
        l.step(NodeId::new(2), ack(1));
    }
    assert!(l.is_leader() && l.quorum_active());
    for _ in 0..min_ticks() {
        l.tick();
        l.step(NodeId::new(2), ack(0));
    }
    assert_eq!(l.role(), Role::Follower, "stale replies kept the leader");
}

/// Without check-quorum (the labs' Raft) a leader that hears nothing keeps leading; the
/// accessor still reports that its quorum is not active.
#[test]
fn without_check_quorum_a_lone_leader_keeps_leading() {
    let mut l = leader_of(3);
    for _ in 0..10 * r_max_ticks() {
        l.tick();
    }
    assert!(l.is_leader());
    assert!(!l.quorum_active());
}

/// Wire compatibility: the pre-vote variants come after the six older ones, whose postcard
/// encoding (variant index first) is unchanged; they are classified as request and reply, and
/// neither may leave before the save.
#[test]
fn pre_vote_messages_keep_the_wire_format() {
    let index = |m: &Message| postcard::to_allocvec(m).unwrap()[0];
    assert_eq!(index(&request_vote(1)), 0);
    assert_eq!(index(&heartbeat(1)), 2);
    let reply = Message::PreVoteReply {
        term: 4,
        granted: true,
    };
    assert_eq!((index(&pre_vote(4, 0, 0)), index(&reply)), (6, 7));
    assert!(!pre_vote(4, 0, 0).is_reply() && reply.is_reply());
    assert_eq!((pre_vote(4, 2, 1).term(), reply.term()), (4, 4));
    assert!(!pre_vote(4, 0, 0).may_precede_persist() && !reply.may_precede_persist());
    let bytes = postcard::to_allocvec(&reply).unwrap();
    assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), reply);
}

/// §9.6: a pre-vote for the term the voter is already in is granted only as a vote in it
/// would be: refused if the voter voted for another, granted to the one it voted for.
#[test]
fn pre_vote_for_the_current_term_follows_the_vote() {
    let voted = PersistentState {
        hard_state: HardState {
            term: 2,
            voted_for: Some(NodeId::new(3)),
        },
        ..PersistentState::default()
    };
    let mut r = Raft::restore(with_pre_vote(NodeId::new(1), 3), voted, Vec::new());
    r.step(NodeId::new(2), pre_vote(2, 0, 0));
    r.step(NodeId::new(3), pre_vote(2, 0, 0));
    let ready = r.ready();
    let reply = |granted| Message::PreVoteReply { term: 2, granted };
    assert_eq!(replies_to(&ready, NodeId::new(2)), vec![reply(false)]);
    assert_eq!(replies_to(&ready, NodeId::new(3)), vec![reply(true)]);
    assert_eq!(ready.hard_state, None);
}

/// §9.6: a leader refuses pre-votes however long its election took (its election timer stops
/// while it leads, possibly past the minimum timeout).
#[test]
fn slow_elected_leader_refuses_pre_votes() {
    let mut r = Raft::new(Config {
        election_timeout_max_ticks: 1000,
        ..cfg(NodeId::new(1), 3)
    });
    while r.role() != Role::Candidate {
        r.tick();
    }
    for _ in 0..min_ticks() + 10 {
        r.tick();
    }
    assert_eq!(
        r.role(),
        Role::Candidate,
        "precondition: the seeded timeout outlasts the wait"
    );
    let vote = Message::RequestVoteReply {
        term: 1,
        granted: true,
    };
    r.step(NodeId::new(2), vote);
    assert!(r.is_leader());
    r.ready();
    r.step(NodeId::new(3), pre_vote(2, 0, 0));
    let refusal = Message::PreVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(replies_to(&r.ready(), NodeId::new(3)), vec![refusal]);
}
