//! Unit tests of leader transfer (Ongaro's thesis §3.10): a few peers wired by hand, with
//! pre-vote and check-quorum on (the service's setting), so the transfer must get past leader
//! stickiness.

use super::cfg;
use crate::*;

fn prod(id: NodeId, n: u64) -> Config {
    Config {
        pre_vote: true,
        check_quorum: true,
        ..cfg(id, n)
    }
}

/// `n` peers (ids 1..=n, at index id - 1) with the production features.
fn cluster(n: u64) -> Vec<Raft> {
    (1..=n)
        .map(|id| Raft::new(prod(NodeId::new(id), n)))
        .collect()
}

/// Delivers every message until the cluster is quiet; messages to or from a peer in `cut`
/// are lost. `on_deliver` sees each delivered envelope first, with the peers.
pub(super) fn settle_with(
    peers: &mut [Raft],
    cut: &[NodeId],
    mut on_deliver: impl FnMut(&[Raft], &Envelope),
) {
    loop {
        let mut sent = Vec::new();
        for p in peers.iter_mut() {
            sent.extend(p.ready().messages);
        }
        if sent.is_empty() {
            return;
        }
        for m in sent {
            if cut.contains(&m.to) || cut.contains(&m.from) {
                continue;
            }
            on_deliver(peers, &m);
            peers[m.to.index() - 1].step(m.from, m.msg);
        }
    }
}

pub(super) fn settle(peers: &mut [Raft], cut: &[NodeId]) {
    settle_with(peers, cut, |_, _| {});
}

pub(super) fn tick_all(peers: &mut [Raft], cut: &[NodeId]) {
    for p in peers.iter_mut() {
        p.tick();
    }
    settle(peers, cut);
}

/// Ticks until the cluster has a leader every other peer follows; returns its id.
pub(super) fn elect(peers: &mut [Raft]) -> NodeId {
    for _ in 0..1000 {
        tick_all(peers, &[]);
        if let Some(l) = peers.iter().find(|p| p.is_leader()).map(|p| p.id()) {
            if peers.iter().all(|p| p.leader() == Some(l)) {
                return l;
            }
        }
    }
    panic!("no leader elected");
}

pub(super) fn peer(peers: &mut [Raft], id: NodeId) -> &mut Raft {
    &mut peers[id.index() - 1]
}

fn other(leader: NodeId, k: u64, n: u64) -> NodeId {
    NodeId::new((leader.get() - 1 + k) % n + 1)
}

/// §3.10: a transfer to a follower whose log is up to date sends it `TimeoutNow` at once;
/// it campaigns in term + 1 without pre-vote, followers in the leader's lease vote for it,
/// and the old leader follows it.
#[test]
fn transfer_to_up_to_date_follower_elects_it_in_next_term() {
    for n in [3, 5] {
        let mut peers = cluster(n);
        let old = elect(&mut peers);
        let term = peer(&mut peers, old).term();
        peer(&mut peers, old).propose(vec![1]).unwrap();
        settle(&mut peers, &[]);
        let target = other(old, 1, n);
        peer(&mut peers, old).transfer_leadership(target).unwrap();
        assert_eq!(peer(&mut peers, old).transfer_target(), Some(target));
        let sent = peer(&mut peers, old).ready().messages;
        assert_eq!(
            sent.iter()
                .map(|m| (m.to, m.msg.clone()))
                .collect::<Vec<_>>(),
            vec![(target, Message::TimeoutNow { term })]
        );
        peer(&mut peers, target).step(old, sent[0].msg.clone());
        let t = peer(&mut peers, target);
        assert_eq!(
            (t.role(), t.term()),
            (Role::Candidate, term + 1),
            "no pre-vote round"
        );
        settle(&mut peers, &[]);
        let t = peer(&mut peers, target);
        assert!(
            t.is_leader() && t.term() == term + 1,
            "{n} peers: target leads"
        );
        let o = peer(&mut peers, old);
        assert_eq!(
            (o.role(), o.term(), o.leader(), o.transfer_target()),
            (Role::Follower, term + 1, Some(target), None)
        );
        // The new leader commits, and everyone applies the same log.
        peer(&mut peers, target).propose(vec![2]).unwrap();
        settle(&mut peers, &[]);
        for _ in 0..cfg(NodeId::new(1), 1).heartbeat_ticks {
            tick_all(&mut peers, &[]);
        }
        assert!(peers.iter().all(|p| p.commit_index() == 2));
    }
}

/// §3.10: a lagging target is first brought up to date by normal replication; `TimeoutNow`
/// reaches it only once its log matches the leader's.
#[test]
fn transfer_to_lagging_follower_waits_until_it_catches_up() {
    let n = 3;
    let mut peers = cluster(n);
    let old = elect(&mut peers);
    let target = other(old, 1, n);
    for i in 0..3 {
        peer(&mut peers, old).propose(vec![i]).unwrap();
        settle(&mut peers, &[target]);
    }
    let last = peer(&mut peers, old).log().last_index();
    assert!(peer(&mut peers, target).log().last_index() < last);
    peer(&mut peers, old).transfer_leadership(target).unwrap();
    let mut timeout_nows = 0;
    for _ in 0..100 {
        for p in peers.iter_mut() {
            p.tick();
        }
        settle_with(&mut peers, &[], |peers, m| {
            if matches!(m.msg, Message::TimeoutNow { .. }) {
                timeout_nows += 1;
                let t = &peers[m.to.index() - 1];
                assert_eq!(t.log().last_index(), last, "TimeoutNow before catching up");
            }
        });
        if peer(&mut peers, target).is_leader() {
            break;
        }
    }
    assert!(timeout_nows >= 1);
    assert!(peer(&mut peers, target).is_leader());
    assert_eq!(peer(&mut peers, old).leader(), Some(target));
}

/// While a transfer is in progress the leader refuses proposals (hinting at the target) and
/// a second transfer; bad targets and non-leaders are refused at once.
#[test]
fn proposals_refused_during_transfer() {
    let n = 3;
    let mut peers = cluster(n);
    let old = elect(&mut peers);
    let (target, third) = (other(old, 1, n), other(old, 2, n));
    assert_eq!(
        peer(&mut peers, third).transfer_leadership(target),
        Err(TransferError::NotLeader { hint: Some(old) })
    );
    let l = peer(&mut peers, old);
    assert_eq!(l.transfer_leadership(old), Err(TransferError::ToSelf));
    assert_eq!(
        l.transfer_leadership(NodeId::new(9)),
        Err(TransferError::NotAVoter(NodeId::new(9)))
    );
    l.transfer_leadership(target).unwrap();
    assert_eq!(
        l.propose(vec![1]),
        Err(ProposeError::NotLeader { hint: Some(target) })
    );
    assert_eq!(
        l.transfer_leadership(third),
        Err(TransferError::InProgress { target })
    );
    assert!(l.is_leader());
}

/// §3.10: a transfer that does not complete within an election timeout is abandoned (here
/// the target is cut off) and the leader accepts proposals again.
#[test]
fn transfer_abandoned_after_election_timeout() {
    let n = 3;
    let mut peers = cluster(n);
    let old = elect(&mut peers);
    let target = other(old, 1, n);
    let term = peer(&mut peers, old).term();
    peer(&mut peers, old).transfer_leadership(target).unwrap();
    let max = cfg(NodeId::new(1), 1).election_timeout_max_ticks;
    for _ in 1..max {
        tick_all(&mut peers, &[target]);
    }
    let l = peer(&mut peers, old);
    assert_eq!(l.transfer_target(), Some(target));
    assert!(l.propose(vec![1]).is_err());
    tick_all(&mut peers, &[target]);
    let l = peer(&mut peers, old);
    assert_eq!(
        (l.transfer_target(), l.term(), l.is_leader()),
        (None, term, true)
    );
    assert!(l.propose(vec![1]).is_ok());
}

/// Stepping down ends a transfer.
#[test]
fn transfer_ends_when_the_leader_steps_down() {
    let n = 3;
    let mut peers = cluster(n);
    let old = elect(&mut peers);
    let target = other(old, 1, n);
    let term = peer(&mut peers, old).term();
    peer(&mut peers, old).transfer_leadership(target).unwrap();
    peer(&mut peers, old).ready();
    let reply = Message::AppendEntriesReply {
        term: term + 3,
        match_index: 0,
        conflict: None,
    };
    peer(&mut peers, old).step(target, reply);
    let l = peer(&mut peers, old);
    assert_eq!((l.is_leader(), l.transfer_target()), (false, None));
}

fn follower_of_1_in_term_1(cfg: Config) -> Raft {
    let mut r = Raft::new(cfg);
    r.step(
        NodeId::new(1),
        Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
        },
    );
    r.ready();
    r
}

/// Leader stickiness vs transfer: a follower in its leader's lease (check-quorum on) ignores
/// an ordinary RequestVote of a higher term but grants a TransferVote with the same fields;
/// one vote per term and the log check still hold. Sabotaged, the TransferVote is ignored too.
#[test]
fn forced_vote_granted_in_lease_ordinary_ignored() {
    let (li, lt) = (0, 0);
    let rv = Message::RequestVote {
        term: 2,
        last_log_index: li,
        last_log_term: lt,
    };
    let tv = |term| Message::TransferVote {
        term,
        last_log_index: li,
        last_log_term: lt,
    };
    let mut f = follower_of_1_in_term_1(prod(NodeId::new(3), 3));
    f.step(NodeId::new(2), rv);
    assert!(f.ready().messages.is_empty(), "sticky: ignored");
    assert_eq!((f.term(), f.leader()), (1, Some(NodeId::new(1))));
    f.step(NodeId::new(2), tv(2));
    let ready = f.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 2,
            voted_for: Some(NodeId::new(2))
        })
    );
    assert_eq!(
        ready.messages[0].msg,
        Message::RequestVoteReply {
            term: 2,
            granted: true
        }
    );
    // One vote per term: another transfer candidate in term 2 is refused.
    f.step(NodeId::new(1), tv(2));
    assert_eq!(
        f.ready().messages[0].msg,
        Message::RequestVoteReply {
            term: 2,
            granted: false
        }
    );
    // The log check: a forced vote for a stale log is refused.
    let mut g = follower_of_1_in_term_1(prod(NodeId::new(3), 3));
    g.step(
        NodeId::new(1),
        Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![super::entry(1, 7)],
            leader_commit: 0,
        },
    );
    g.ready();
    g.step(NodeId::new(2), tv(2));
    assert_eq!(
        g.ready().messages[0].msg,
        Message::RequestVoteReply {
            term: 2,
            granted: false
        }
    );
    // Sabotaged: the TransferVote is treated as an ordinary RequestVote and ignored.
    let mut s = follower_of_1_in_term_1(Config {
        sabotage: Some(Sabotage::TransferVoteNotForced),
        ..prod(NodeId::new(3), 3)
    });
    s.step(NodeId::new(2), tv(2));
    assert!(s.ready().messages.is_empty());
    assert_eq!(s.term(), 1);
}

/// §3.10: only the current leader's TimeoutNow in the follower's term starts an election,
/// and that election skips pre-vote.
#[test]
fn timeout_now_only_from_the_leader_in_its_term() {
    let mut f = follower_of_1_in_term_1(prod(NodeId::new(2), 3));
    f.step(NodeId::new(3), Message::TimeoutNow { term: 1 });
    f.step(NodeId::new(1), Message::TimeoutNow { term: 0 });
    assert_eq!((f.role(), f.term()), (Role::Follower, 1));
    assert!(f.ready().messages.is_empty());
    f.step(NodeId::new(1), Message::TimeoutNow { term: 1 });
    assert_eq!(
        (f.role(), f.term(), f.voted_for()),
        (Role::Candidate, 2, Some(NodeId::new(2)))
    );
    let sent: Vec<_> = f.ready().messages.into_iter().map(|m| m.msg).collect();
    let tv = Message::TransferVote {
        term: 2,
        last_log_index: 0,
        last_log_term: 0,
    };
    assert_eq!(sent, vec![tv.clone(), tv]);
}

/// A leader that sent TimeoutNow gives up its read lease for the rest of its term.
#[test]
fn timeout_now_revokes_the_read_lease() {
    let n = 3;
    let mut peers: Vec<Raft> = (1..=n)
        .map(|id| {
            Raft::new(Config {
                read_mode: ReadMode::Lease,
                leader_noop: true,
                ..prod(NodeId::new(id), n)
            })
        })
        .collect();
    let old = elect(&mut peers);
    for _ in 0..20 {
        tick_all(&mut peers, &[]);
    }
    assert!(peer(&mut peers, old).has_read_lease());
    let target = other(old, 1, n);
    peer(&mut peers, old).transfer_leadership(target).unwrap();
    assert!(!peer(&mut peers, old).has_read_lease());
}
