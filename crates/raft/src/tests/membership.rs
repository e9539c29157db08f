//! Unit tests of membership change (Ongaro's thesis §4.1–§4.2): single-server changes,
//! learners, the leader's rules for proposing, and where a peer finds its membership (log,
//! snapshot, restart). Peers are wired by hand with the service's settings; ids `1..=voters`
//! boot as the cluster, higher ids boot empty (joining).

use super::cfg;
use super::transfer::{peer, settle, tick_all};
use crate::*;

fn prod(id: NodeId, voters: u64) -> Config {
    Config {
        pre_vote: true,
        check_quorum: true,
        leader_noop: true,
        ..cfg(id, voters)
    }
}

/// `voters` founding peers and `spares` joining ones (empty boot configuration).
fn cluster(voters: u64, spares: u64) -> Vec<Raft> {
    (1..=voters + spares)
        .map(|id| {
            let mut c = prod(NodeId::new(id), voters);
            if id > voters {
                c.voters = Vec::new();
            }
            Raft::new(c)
        })
        .collect()
}

/// Ticks until some peer leads and every voter it knows follows it; returns its id.
fn elect(peers: &mut [Raft]) -> NodeId {
    for _ in 0..1000 {
        tick_all(peers, &[]);
        if let Some(p) = peers.iter().find(|p| p.is_leader()) {
            let (l, voters) = (p.id(), p.membership().voters.clone());
            if voters
                .iter()
                .all(|&v| peers[v.index() - 1].leader() == Some(l))
            {
                return l;
            }
        }
    }
    panic!("no leader elected");
}

fn add_learner(id: NodeId) -> MembershipChange {
    MembershipChange::AddLearner {
        id,
        addr: format!("10.0.0.{id}:7000"),
    }
}

/// Runs `change` on the leader and delivers everything until it commits on every peer not
/// in `cut`.
fn change(peers: &mut [Raft], leader: NodeId, c: MembershipChange) -> u64 {
    let (index, _) = peer(peers, leader).propose_membership(c).unwrap();
    settle_all(peers);
    assert!(peer(peers, leader).commit_index() >= index);
    index
}

/// Delivers everything, then one heartbeat interval, so every follower also learns the
/// leader's latest commit index.
fn settle_all(peers: &mut [Raft]) {
    settle(peers, &[]);
    for _ in 0..cfg(NodeId::new(1), 1).heartbeat_ticks {
        tick_all(peers, &[]);
    }
}

fn voters(r: &Raft) -> Vec<NodeId> {
    r.membership().voters.iter().copied().collect()
}

fn learners(r: &Raft) -> Vec<NodeId> {
    r.membership().learners.iter().copied().collect()
}

/// §4.2.1: a learner receives the log and the membership naming it, but neither votes nor
/// campaigns, even when it hears from no leader for many election timeouts.
#[test]
fn learner_gets_the_log_but_never_campaigns() {
    let mut peers = cluster(3, 1);
    let l = elect(&mut peers);
    peer(&mut peers, l).propose(vec![7]).unwrap();
    let index = change(&mut peers, l, add_learner(NodeId::new(4)));
    let learner = peer(&mut peers, NodeId::new(4));
    assert_eq!(
        (voters(learner), learners(learner)),
        (
            vec![NodeId::new(1), NodeId::new(2), NodeId::new(3)],
            vec![NodeId::new(4)]
        )
    );
    assert!(!learner.is_voter());
    assert_eq!(learner.commit_index(), index, "it has the whole log");
    assert_eq!(
        learner
            .membership()
            .addrs
            .get(&NodeId::new(4))
            .map(String::as_str),
        Some("10.0.0.4:7000")
    );
    let term = learner.term();
    for _ in 0..10 * r_max() {
        learner.tick();
    }
    assert_eq!(
        (learner.term(), learner.role(), learner.is_pre_candidate()),
        (term, Role::Follower, false)
    );
    assert!(learner.ready().messages.is_empty(), "not even a pre-vote");
}

fn r_max() -> u32 {
    cfg(NodeId::new(1), 1).election_timeout_max_ticks
}

/// §4.2.1: only voters count toward a commit: an entry that only the leader and a learner
/// hold stays uncommitted.
#[test]
fn learners_do_not_count_toward_commits() {
    let mut peers = cluster(3, 1);
    let l = elect(&mut peers);
    change(&mut peers, l, add_learner(NodeId::new(4)));
    let before = peer(&mut peers, l).commit_index();
    let (index, _) = peer(&mut peers, l).propose(vec![9]).unwrap();
    let followers: Vec<NodeId> = (1..=3).map(NodeId::new).filter(|&p| p != l).collect();
    super::transfer::settle(&mut peers, &followers);
    assert_eq!(
        peer(&mut peers, NodeId::new(4)).log().last_index(),
        index,
        "the learner has it"
    );
    assert_eq!(
        peer(&mut peers, l).commit_index(),
        before,
        "but it is not committed"
    );
    settle_all(&mut peers);
    assert_eq!(peer(&mut peers, l).commit_index(), index);
}

/// §4.1: a leader accepts one change at a time: the next waits until the previous one is
/// committed (unless sabotaged, for the tests that show why).
#[test]
fn one_change_at_a_time() {
    for sabotage in [None, Some(Sabotage::ConcurrentMembershipChanges)] {
        let mut peers: Vec<Raft> = cluster(3, 2)
            .into_iter()
            .map(|r| {
                let mut c = r.config().clone();
                c.sabotage = sabotage;
                Raft::new(c)
            })
            .collect();
        let l = elect(&mut peers);
        let (first, _) = peer(&mut peers, l)
            .propose_membership(add_learner(NodeId::new(4)))
            .unwrap();
        let second = peer(&mut peers, l).propose_membership(add_learner(NodeId::new(5)));
        if sabotage.is_none() {
            assert_eq!(
                second,
                Err(MembershipError::ChangeInProgress { index: first })
            );
            settle(&mut peers, &[]);
            peer(&mut peers, l)
                .propose_membership(add_learner(NodeId::new(5)))
                .unwrap();
        } else {
            assert_eq!(second.map(|(i, _)| i), Ok(first + 1));
        }
        settle(&mut peers, &[]);
        assert_eq!(
            learners(peer(&mut peers, NodeId::new(1))),
            vec![NodeId::new(4), NodeId::new(5)]
        );
    }
}

/// The thesis's 2015 correction to §4.1: a new leader proposes no change until an entry of
/// its own term is committed (here without the leader no-op, so it must commit a command).
#[test]
fn new_leader_commits_its_term_before_a_change() {
    let mut peers: Vec<Raft> = (1..=3)
        .map(|id| {
            Raft::new(Config {
                leader_noop: false,
                ..prod(NodeId::new(id), 3)
            })
        })
        .collect();
    let l = elect(&mut peers);
    assert_eq!(
        peer(&mut peers, l).propose_membership(add_learner(NodeId::new(4))),
        Err(MembershipError::TermNotCommitted)
    );
    peer(&mut peers, l).propose(vec![1]).unwrap();
    settle(&mut peers, &[]);
    assert!(peer(&mut peers, l)
        .propose_membership(add_learner(NodeId::new(4)))
        .is_ok());
}

/// §4.2.1: a learner is promoted only once it holds everything committed; the leader does
/// not remove itself; changes that make no sense are refused.
#[test]
fn leader_refuses_changes_that_do_not_fit() {
    let mut peers = cluster(3, 1);
    let l = elect(&mut peers);
    // The learner is cut off, so it cannot catch up.
    peer(&mut peers, l)
        .propose_membership(add_learner(NodeId::new(4)))
        .unwrap();
    settle_cut(&mut peers, &[NodeId::new(4)]);
    peer(&mut peers, l).propose(vec![1]).unwrap();
    settle_cut(&mut peers, &[NodeId::new(4)]);
    let commit = peer(&mut peers, l).commit_index();
    let leader = peer(&mut peers, l);
    assert_eq!(
        leader.propose_membership(MembershipChange::Promote { id: NodeId::new(4) }),
        Err(MembershipError::LearnerBehind {
            id: NodeId::new(4),
            matched: 0,
            needed: commit
        })
    );
    assert_eq!(
        leader.propose_membership(MembershipChange::Remove { id: l }),
        Err(MembershipError::RemovesLeader)
    );
    assert_eq!(
        leader.propose_membership(add_learner(NodeId::new(4))),
        Err(MembershipError::AlreadyMember(NodeId::new(4)))
    );
    assert_eq!(
        leader.propose_membership(MembershipChange::Promote { id: NodeId::new(9) }),
        Err(MembershipError::NotALearner(NodeId::new(9)))
    );
    assert_eq!(
        leader.propose_membership(MembershipChange::Remove { id: NodeId::new(9) }),
        Err(MembershipError::NotAMember(NodeId::new(9)))
    );
    let f = if l == NodeId::new(1) { 2 } else { 1 };
    assert_eq!(
        peer(&mut peers, NodeId::new(f))
            .propose_membership(MembershipChange::Remove { id: NodeId::new(3) }),
        Err(MembershipError::NotLeader { hint: Some(l) })
    );
    // Once it catches up, the promotion goes through and it votes.
    for _ in 0..cfg(NodeId::new(1), 1).heartbeat_ticks {
        tick_all(&mut peers, &[]);
    }
    change(
        &mut peers,
        l,
        MembershipChange::Promote { id: NodeId::new(4) },
    );
    assert_eq!(
        voters(peer(&mut peers, NodeId::new(4))),
        vec![
            NodeId::new(1),
            NodeId::new(2),
            NodeId::new(3),
            NodeId::new(4)
        ]
    );
    assert!(peer(&mut peers, NodeId::new(4)).is_voter());
}

fn settle_cut(peers: &mut [Raft], cut: &[NodeId]) {
    super::transfer::settle(peers, cut);
}

/// §4.1: a peer uses a membership from the moment it appends it, committed or not, and falls
/// back to the one before if the entry is truncated by a new leader.
#[test]
fn membership_applies_on_append_and_rolls_back_on_truncation() {
    let mut f = Raft::new(prod(NodeId::new(2), 3));
    let m = Membership {
        learners: [NodeId::new(4)].into(),
        ..Membership::with_voters([1, 2, 3].map(NodeId::new))
    };
    let config_entry = Entry {
        term: 1,
        kind: EntryKind::Membership,
        data: postcard::to_allocvec(&m).unwrap().into(),
    };
    f.step(
        NodeId::new(1),
        Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![super::entry(1, 0), config_entry],
            leader_commit: 1,
        },
    );
    assert_eq!(f.membership(), &m, "in use before it commits");
    assert_eq!(f.membership_index(), 2);
    // A leader of term 2 overwrites index 2 with a command.
    f.step(
        NodeId::new(3),
        Message::AppendEntries {
            term: 2,
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![super::entry(2, 5)],
            leader_commit: 1,
        },
    );
    assert_eq!(
        f.membership(),
        &Membership::with_voters([1, 2, 3].map(NodeId::new))
    );
    assert_eq!(f.membership_index(), 0);
}

/// A membership entry that does not decode cannot come from a correct leader: the whole
/// AppendEntries is dropped, unanswered.
#[test]
fn undecodable_membership_entry_is_dropped() {
    let mut f = Raft::new(prod(NodeId::new(2), 3));
    f.step(
        NodeId::new(1),
        Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                term: 1,
                kind: EntryKind::Membership,
                data: vec![0xff; 3].into(),
            }],
            leader_commit: 0,
        },
    );
    assert_eq!(f.log().last_index(), 0);
    assert!(f.ready().messages.is_empty());
}

/// §4.2.2: a removed voter receives the entry that removes it (the leader keeps replicating
/// to it until that entry commits) and, no longer a voter, never campaigns again; the rest
/// commit with the smaller majority.
#[test]
fn removed_voter_learns_it_and_stays_quiet() {
    let mut peers = cluster(3, 0);
    let l = elect(&mut peers);
    let gone = if l == NodeId::new(3) { 2 } else { 3 };
    change(
        &mut peers,
        l,
        MembershipChange::Remove {
            id: NodeId::new(gone),
        },
    );
    let r = peer(&mut peers, NodeId::new(gone));
    assert!(!r.is_voter() && !r.membership().contains(NodeId::new(gone)));
    let term = r.term();
    for _ in 0..10 * r_max() {
        r.tick();
    }
    assert_eq!(r.term(), term);
    assert!(r.ready().messages.is_empty());
    // Two voters left: both are needed, and the removed peer gets nothing new.
    let (index, _) = peer(&mut peers, l).propose(vec![3]).unwrap();
    settle(&mut peers, &[]);
    assert_eq!(peer(&mut peers, l).commit_index(), index);
    assert!(peer(&mut peers, NodeId::new(gone)).log().last_index() < index);
}

/// §4.1 with §7: a snapshot carries the membership as of its index, so a peer that joins
/// after the log was compacted learns the membership from the snapshot; and a restarted
/// peer finds its membership in its persisted log and snapshot.
#[test]
fn snapshot_and_restart_keep_the_membership() {
    let mut peers = cluster(3, 2);
    let l = elect(&mut peers);
    change(&mut peers, l, add_learner(NodeId::new(4)));
    change(
        &mut peers,
        l,
        MembershipChange::Promote { id: NodeId::new(4) },
    );
    let applied = peer(&mut peers, l).applied_index();
    peer(&mut peers, l).snapshot(applied, b"state".to_vec());
    assert_eq!(peer(&mut peers, l).log().snapshot_index(), applied);
    change(&mut peers, l, add_learner(NodeId::new(5)));
    let joiner = peer(&mut peers, NodeId::new(5));
    assert_eq!(joiner.log().snapshot_index(), applied, "joined by snapshot");
    assert_eq!(
        (voters(joiner), learners(joiner)),
        (
            vec![
                NodeId::new(1),
                NodeId::new(2),
                NodeId::new(3),
                NodeId::new(4)
            ],
            vec![NodeId::new(5)]
        )
    );
    // Restart every peer from its persisted state: the membership is the same.
    for p in peers.iter_mut() {
        let before = p.membership().clone();
        let cfg = p.config().clone();
        let state = p.encode_state();
        let snap = p.snapshot_data().to_bytes().unwrap().to_vec();
        *p = Raft::restore_from_bytes(cfg, &state, snap).unwrap();
        assert_eq!(p.membership(), &before, "peer {}", p.id());
    }
    // The restarted cluster elects among the voters {1, 2, 3, 4} and keeps committing.
    let l = elect(&mut peers);
    assert!((NodeId::new(1)..=NodeId::new(4)).contains(&l));
    let (index, _) = peer(&mut peers, l).propose(vec![4]).unwrap();
    settle_all(&mut peers);
    assert!(peers
        .iter()
        .all(|p| p.commit_index() >= index || p.id() == NodeId::new(5)));
}

/// A lone voter commits in the input that appends, so its AppendEntries (to a learner) must
/// wait for the save; with another voter, they may leave early.
#[test]
fn lone_voter_with_a_learner_sends_nothing_early() {
    let mut peers = cluster(1, 1);
    let l = elect(&mut peers);
    assert_eq!(l, NodeId::new(1));
    change(&mut peers, NodeId::new(1), add_learner(NodeId::new(2)));
    let leader = peer(&mut peers, NodeId::new(1));
    assert!(!leader.commit_needs_peer_ack());
    leader.propose(vec![1]).unwrap();
    let sent = leader.ready().messages;
    assert!(sent
        .iter()
        .any(|m| matches!(m.msg, Message::AppendEntries { .. })));
    assert!(sent.iter().all(|m| !leader.may_send_early(&m.msg)));
    for m in sent {
        peer(&mut peers, m.to).step(m.from, m.msg);
    }
    settle_all(&mut peers);
    change(
        &mut peers,
        NodeId::new(1),
        MembershipChange::Promote { id: NodeId::new(2) },
    );
    let leader = peer(&mut peers, NodeId::new(1));
    assert!(leader.commit_needs_peer_ack());
    leader.propose(vec![2]).unwrap();
    let sent = leader.ready().messages;
    assert!(!sent.is_empty() && sent.iter().all(|m| leader.may_send_early(&m.msg)));
}

/// Growing a cluster one server at a time and shrinking it back keeps electing and
/// committing, with the majority following the membership (2 of 3, 3 of 5, 2 of 3).
#[test]
fn grow_three_to_five_and_shrink_back() {
    let mut peers = cluster(3, 2);
    let mut l = elect(&mut peers);
    for id in [4, 5] {
        change(&mut peers, l, add_learner(NodeId::new(id)));
        change(
            &mut peers,
            l,
            MembershipChange::Promote {
                id: NodeId::new(id),
            },
        );
    }
    assert!(peers.iter().all(|p| voters(p)
        == vec![
            NodeId::new(1),
            NodeId::new(2),
            NodeId::new(3),
            NodeId::new(4),
            NodeId::new(5)
        ]));
    // Two peers down: three of five still commit.
    let cut = [other_than(l, 1), other_than(l, 2)];
    let (index, _) = peer(&mut peers, l).propose(vec![5]).unwrap();
    settle_cut(&mut peers, &cut);
    assert_eq!(peer(&mut peers, l).commit_index(), index);
    settle(&mut peers, &[]);
    // Shrink by removing 1 and 2, handing leadership off first if needed.
    for gone in [1, 2].map(NodeId::new) {
        if gone == l {
            let to = (1..=5)
                .map(NodeId::new)
                .find(|&p| p != l && p > NodeId::new(2))
                .unwrap();
            peer(&mut peers, l).transfer_leadership(to).unwrap();
            settle(&mut peers, &[]);
            l = to;
            assert!(peer(&mut peers, l).is_leader());
            peer(&mut peers, l).propose(vec![6]).unwrap();
            settle(&mut peers, &[]);
        }
        change(&mut peers, l, MembershipChange::Remove { id: gone });
    }
    for id in 3..=5 {
        assert_eq!(
            voters(peer(&mut peers, NodeId::new(id))),
            vec![NodeId::new(3), NodeId::new(4), NodeId::new(5)]
        );
    }
    let (index, _) = peer(&mut peers, l).propose(vec![7]).unwrap();
    settle_all(&mut peers);
    assert!((3..=5).all(|id| peers[id as usize - 1].commit_index() == index));
}

/// The `k`-th voter after `l` among 1..=5.
fn other_than(l: NodeId, k: u64) -> NodeId {
    NodeId::new((l.get() - 1 + k) % 5 + 1)
}

/// Persisted state written before entry kinds existed (format 1, with records appended by
/// that build and then by this one) still decodes, as commands.
#[test]
fn format_1_state_still_decodes() {
    // Format 1: version byte 1, then postcard of (hard state, snapshot index, snapshot term,
    // entries as (term, data)); records: variant 0 hard state, variant 1 log write.
    let mut bytes = vec![1u8];
    let hard = HardState {
        term: 3,
        voted_for: Some(NodeId::new(2)),
    };
    let entries: Vec<(u64, Vec<u8>)> = vec![(1, b"a".to_vec()), (3, b"b".to_vec())];
    bytes.extend(postcard::to_allocvec(&(hard, 0u64, 0u64, entries)).unwrap());
    // A format-1 log write record: variant 1, from 3, one entry (3, "c").
    bytes.extend(postcard::to_allocvec(&(1u32, 3u64, vec![(3u64, b"c".to_vec())])).unwrap());
    // And a record of this build.
    let w = LogWrite {
        from: 4,
        entries: vec![Entry::command(3, b"d".to_vec())],
    };
    bytes.extend(encode_changes(None, Some(&w)));
    let s = PersistentState::decode(&bytes).unwrap();
    assert_eq!(s.hard_state, hard);
    let data: Vec<&[u8]> = (1..=4)
        .map(|i| s.log.entry(i).unwrap().data.as_ref())
        .collect();
    assert_eq!(data, vec![b"a", b"b", b"c", b"d"]);
    assert!((1..=4).all(|i| s.log.entry(i).unwrap().kind == EntryKind::Command));
    assert_eq!(s.log.snapshot_membership(), None);
}
