//! Core unit tests: each feeds one input and asserts the exact outputs. The doc line of each
//! test names the section of the extended Raft paper it checks.

use crate::*;

mod election;
mod membership;
mod read;
mod snapshot;
mod transfer;

fn cfg(id: NodeId, n: u64) -> Config {
    Config::new(id, (1..=n).map(NodeId::new).collect(), 42 + id.get())
}

fn elapse_election(r: &mut Raft) {
    for _ in 0..=r_max_ticks() {
        if r.role() == Role::Candidate {
            break;
        }
        r.tick();
    }
}

fn r_max_ticks() -> u32 {
    Config::new(NodeId::new(1), vec![NodeId::new(1)], 0).election_timeout_max_ticks
}

fn entry(term: u64, data: u8) -> Entry {
    Entry::command(term, vec![data])
}

/// Makes peer 1 of `n` the leader of term 1 by granting it every vote.
fn leader_of(n: u64) -> Raft {
    leader_with(cfg(NodeId::new(1), n))
}

/// Makes peer 1 the leader of term 1 under `cfg` (any pre-vote round granted by everyone).
fn leader_with(cfg: Config) -> Raft {
    let n = cfg.voters.len() as u64;
    let max_ticks = cfg.election_timeout_max_ticks;
    let mut r = Raft::new(cfg);
    for _ in 0..=max_ticks {
        if r.is_pre_candidate() || r.role() == Role::Candidate {
            break;
        }
        r.tick();
    }
    for p in 2..=n {
        r.step(
            NodeId::new(p),
            Message::PreVoteReply {
                term: 1,
                granted: true,
            },
        );
    }
    for p in 2..=n {
        r.step(
            NodeId::new(p),
            Message::RequestVoteReply {
                term: 1,
                granted: true,
            },
        );
    }
    assert!(r.is_leader() && r.term() == 1);
    r.ready();
    r
}

/// §5.2: a follower that hears nothing for an election timeout starts an election: it bumps
/// its term, votes for itself, persists that, and asks every other peer for a vote.
#[test]
fn follower_times_out_and_campaigns() {
    let mut r = Raft::new(cfg(NodeId::new(1), 3));
    elapse_election(&mut r);
    assert_eq!(
        (r.role(), r.term(), r.voted_for()),
        (Role::Candidate, 1, Some(NodeId::new(1)))
    );
    let ready = r.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            voted_for: Some(NodeId::new(1))
        })
    );
    let to: Vec<_> = ready.messages.iter().map(|m| m.to).collect();
    assert_eq!(to, vec![NodeId::new(2), NodeId::new(3)]);
    assert!(ready.messages.iter().all(|m| m.msg
        == Message::RequestVote {
            term: 1,
            last_log_index: 0,
            last_log_term: 0
        }));
}

/// §5.2: a peer grants at most one vote per term, first come first served.
#[test]
fn one_vote_per_term() {
    let mut r = Raft::new(cfg(NodeId::new(1), 3));
    r.step(
        NodeId::new(2),
        Message::RequestVote {
            term: 5,
            last_log_index: 0,
            last_log_term: 0,
        },
    );
    r.step(
        NodeId::new(3),
        Message::RequestVote {
            term: 5,
            last_log_index: 0,
            last_log_term: 0,
        },
    );
    let ready = r.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 5,
            voted_for: Some(NodeId::new(2))
        })
    );
    let replies: Vec<_> = ready
        .messages
        .iter()
        .map(|m| (m.to, m.msg.clone()))
        .collect();
    assert_eq!(
        replies,
        vec![
            (
                NodeId::new(2),
                Message::RequestVoteReply {
                    term: 5,
                    granted: true
                }
            ),
            (
                NodeId::new(3),
                Message::RequestVoteReply {
                    term: 5,
                    granted: false
                }
            ),
        ]
    );
}

/// §5.4.1: a vote is refused to a candidate whose log is less up to date than the voter's.
#[test]
fn vote_refused_to_stale_log() {
    let mut leader = leader_of(3);
    leader.propose(vec![1]).unwrap();
    let state = leader.persistent_state();
    let mut r = Raft::restore(cfg(NodeId::new(3), 3), state, Vec::new());
    r.step(
        NodeId::new(2),
        Message::RequestVote {
            term: 7,
            last_log_index: 5,
            last_log_term: 0,
        },
    );
    let ready = r.ready();
    assert_eq!(
        ready.messages[0].msg,
        Message::RequestVoteReply {
            term: 7,
            granted: false
        }
    );
    assert_eq!(r.voted_for(), None);
}

/// §5.2: a candidate with votes from a majority becomes leader and at once sends
/// AppendEntries (heartbeats) to every peer to assert its authority.
#[test]
fn majority_makes_leader_which_heartbeats() {
    let mut r = Raft::new(cfg(NodeId::new(1), 5));
    elapse_election(&mut r);
    r.ready();
    r.step(
        NodeId::new(2),
        Message::RequestVoteReply {
            term: 1,
            granted: true,
        },
    );
    assert_eq!(r.role(), Role::Candidate, "2 of 5 votes is not a majority");
    r.step(
        NodeId::new(3),
        Message::RequestVoteReply {
            term: 1,
            granted: false,
        },
    );
    r.step(
        NodeId::new(4),
        Message::RequestVoteReply {
            term: 1,
            granted: true,
        },
    );
    assert_eq!(r.role(), Role::Leader);
    let ready = r.ready();
    assert_eq!(ready.messages.len(), 4);
    assert!(ready.messages.iter().all(|m| matches!(m.msg,
        Message::AppendEntries { term: 1, prev_log_index: 0, ref entries, leader_commit: 0, .. } if entries.is_empty())));
}

/// §5.1: any message with a higher term turns a leader into a follower of that term.
#[test]
fn higher_term_deposes_leader() {
    let mut r = leader_of(3);
    r.step(
        NodeId::new(3),
        Message::AppendEntriesReply {
            term: 9,
            match_index: 0,
            conflict: None,
        },
    );
    assert_eq!(
        (r.role(), r.term(), r.voted_for()),
        (Role::Follower, 9, None)
    );
    assert_eq!(
        r.ready().hard_state,
        Some(HardState {
            term: 9,
            voted_for: None
        })
    );
}

/// §5.3: a follower whose entry at prev_log_index has another term refuses, and its hint names
/// that term, the term's first index and its log length.
#[test]
fn consistency_check_failure_returns_conflict_hint() {
    let mut r = Raft::new(cfg(NodeId::new(2), 3));
    r.step(
        NodeId::new(1),
        Message::AppendEntries {
            term: 2,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![entry(1, 1), entry(2, 2), entry(2, 3)],
            leader_commit: 0,
        },
    );
    r.ready();
    r.step(
        NodeId::new(3),
        Message::AppendEntries {
            term: 3,
            prev_log_index: 3,
            prev_log_term: 3,
            entries: vec![],
            leader_commit: 0,
        },
    );
    let ready = r.ready();
    let hint = ConflictHint {
        term: Some(2),
        first_index: 2,
        log_len: 4,
    };
    assert_eq!(
        ready.messages[0].msg,
        Message::AppendEntriesReply {
            term: 3,
            match_index: 0,
            conflict: Some(hint)
        }
    );
    r.step(
        NodeId::new(3),
        Message::AppendEntries {
            term: 3,
            prev_log_index: 9,
            prev_log_term: 3,
            entries: vec![],
            leader_commit: 0,
        },
    );
    let hint = ConflictHint {
        term: None,
        first_index: 0,
        log_len: 4,
    };
    assert_eq!(
        r.ready().messages[0].msg,
        Message::AppendEntriesReply {
            term: 3,
            match_index: 0,
            conflict: Some(hint)
        }
    );
}

/// §5.3 (fast backup): given a hint whose term the leader lacks, the leader jumps straight to
/// the follower's first index of that term, skipping the whole term in one round trip.
#[test]
fn leader_skips_a_term_per_round_trip() {
    let mut r = leader_of(3);
    for i in 0..5 {
        r.propose(vec![i]).unwrap();
    }
    r.ready();
    let hint = ConflictHint {
        term: Some(7),
        first_index: 3,
        log_len: 40,
    };
    r.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 0,
            conflict: Some(hint),
        },
    );
    let ready = r.ready();
    assert!(
        matches!(ready.messages[0].msg, Message::AppendEntries { prev_log_index: 2, ref entries, .. } if entries.len() == 3)
    );
}

/// §5.4.2 (Figure 8): a new leader does not commit an entry of an earlier term just because a
/// majority holds it; it commits once an entry of its own term reaches a majority.
#[test]
fn only_current_term_entries_commit_by_counting() {
    let mut old = leader_of(3);
    old.propose(vec![1]).unwrap();
    let state = old.persistent_state();
    let mut r = Raft::restore(cfg(NodeId::new(1), 3), state, Vec::new());
    elapse_election(&mut r);
    r.step(
        NodeId::new(2),
        Message::RequestVoteReply {
            term: 2,
            granted: true,
        },
    );
    assert!(r.is_leader());
    r.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 2,
            match_index: 1,
            conflict: None,
        },
    );
    assert_eq!(
        r.commit_index(),
        0,
        "index 1 is from term 1 and must not commit by counting"
    );
    r.propose(vec![2]).unwrap();
    r.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 2,
            match_index: 2,
            conflict: None,
        },
    );
    assert_eq!(r.commit_index(), 2);
    let applies = r.ready().applies;
    assert_eq!(applies.len(), 2);
    assert!(matches!(
        &applies[0],
        Apply::Command {
            index: 1,
            term: 1,
            ..
        }
    ));
}

/// §7: a leader whose follower is behind its snapshot sends InstallSnapshot; the follower
/// installs it, applies it as a snapshot, and keeps no stale entries.
#[test]
fn install_snapshot_catches_up_a_follower() {
    let mut l = leader_of(3);
    for i in 0..4 {
        l.propose(vec![i]).unwrap();
    }
    l.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 4,
            conflict: None,
        },
    );
    l.ready();
    l.snapshot(3, b"snap@3".to_vec());
    let ready = l.ready();
    assert_eq!(
        ready.snapshot.as_ref().map(|s| (s.index, s.term)),
        Some((3, 1))
    );
    let hint = ConflictHint {
        term: None,
        first_index: 0,
        log_len: 1,
    };
    l.step(
        NodeId::new(3),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 0,
            conflict: Some(hint),
        },
    );
    let msg = l.ready().messages.remove(0).msg;
    assert!(matches!(
        msg,
        Message::InstallSnapshot {
            last_included_index: 3,
            ..
        }
    ));

    let mut f = Raft::new(cfg(NodeId::new(3), 3));
    f.step(NodeId::new(1), msg);
    let ready = f.ready();
    assert_eq!(
        ready.applies,
        vec![Apply::Snapshot(Snapshot {
            index: 3,
            term: 1,
            data: Bytes::from_static(b"snap@3").into()
        })]
    );
    assert_eq!(
        ready.messages[0].msg,
        Message::InstallSnapshotReply {
            term: 1,
            last_included_index: 3,
            offset: 0,
            received: 6,
            done: true
        }
    );
    assert_eq!((f.commit_index(), f.log().last_index()), (3, 3));
}

/// Figure 2 ("persistent state"): what a peer persisted is exactly what it restarts with.
#[test]
fn persisted_state_round_trips() {
    let mut l = leader_of(3);
    l.propose(b"abc".to_vec()).unwrap();
    let bytes = l.encode_state();
    let back = PersistentState::decode(&bytes).unwrap();
    assert_eq!(back, l.persistent_state());
    assert!(
        PersistentState::decode(&[9, 9, 9]).is_err(),
        "an unknown version must be rejected"
    );
    let r = Raft::restore_from_bytes(cfg(NodeId::new(1), 3), &bytes, Vec::new()).unwrap();
    assert_eq!(
        (r.term(), r.voted_for(), r.log().last_index()),
        (1, Some(NodeId::new(1)), 1)
    );
}

/// §5.3: a follower never truncates entries because of a stale, shorter AppendEntries.
#[test]
fn stale_append_does_not_truncate() {
    let mut r = Raft::new(cfg(NodeId::new(2), 3));
    let ae = |entries| Message::AppendEntries {
        term: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries,
        leader_commit: 0,
    };
    r.step(NodeId::new(1), ae(vec![entry(1, 1), entry(1, 2)]));
    r.step(NodeId::new(1), ae(vec![entry(1, 1)]));
    assert_eq!(r.log().last_index(), 2);
}

/// §8: with `leader_noop`, a new leader appends an empty entry of its term, persists it and
/// sends it at once; one follower's acknowledgement (a majority of 3) commits it, and it is
/// applied as a `Command` with empty data.
#[test]
fn leader_noop_commits_at_once() {
    let mut r = Raft::new(Config {
        leader_noop: true,
        ..cfg(NodeId::new(1), 3)
    });
    elapse_election(&mut r);
    r.ready();
    r.step(
        NodeId::new(2),
        Message::RequestVoteReply {
            term: 1,
            granted: true,
        },
    );
    assert!(r.is_leader());
    let ready = r.ready();
    assert_eq!(
        ready.log_write,
        Some(LogWrite {
            from: 1,
            entries: vec![Entry::command(1, vec![])]
        })
    );
    assert_eq!(ready.messages.len(), 2);
    assert!(ready.messages.iter().all(|m| matches!(m.msg,
        Message::AppendEntries { term: 1, prev_log_index: 0, ref entries, .. } if entries.len() == 1)));
    r.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 1,
            conflict: None,
        },
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(
        r.ready().applies,
        vec![Apply::Command {
            index: 1,
            term: 1,
            data: bytes::Bytes::new()
        }]
    );
}

/// Persisted state written as a full encoding followed by appended change records decodes to
/// the same state as a full re-encoding, and records that do not fit the log are errors.
#[test]
fn appended_changes_replay_to_the_full_state() {
    let mut r = leader_of(3);
    let mut stored = r.encode_state();
    for i in 0..5u8 {
        r.propose(vec![i]).unwrap();
        let ready = r.ready();
        stored.extend(encode_changes(
            ready.hard_state.as_ref(),
            ready.log_write.as_ref(),
        ));
    }
    // A follower-style overwrite: truncate at 3 and append a newer entry.
    stored.extend(encode_changes(
        Some(&HardState {
            term: 2,
            voted_for: None,
        }),
        Some(&LogWrite {
            from: 3,
            entries: vec![entry(2, 9)],
        }),
    ));
    let decoded = PersistentState::decode(&stored).unwrap();
    assert_eq!(decoded.hard_state.term, 2);
    assert_eq!(decoded.log.last_index(), 3);
    assert_eq!(decoded.log.entry(3), Some(&entry(2, 9)));
    assert_eq!(decoded.log.entry(2).map(|e| e.data.to_vec()), Some(vec![1]));

    let mut gap = r.encode_state();
    gap.extend(encode_changes(
        None,
        Some(&LogWrite {
            from: 99,
            entries: vec![entry(1, 1)],
        }),
    ));
    assert!(matches!(
        PersistentState::decode(&gap),
        Err(DecodeError::LogWriteOutOfPlace { from: 99, .. })
    ));
    let mut future = r.encode_state();
    future[0] = 0xee;
    assert!(matches!(
        PersistentState::decode(&future),
        Err(DecodeError::UnknownVersion(0xee))
    ));
    let backwards = PersistentState {
        hard_state: HardState::default(),
        log: RaftLog::from_parts(0, 0, vec![entry(2, 1), entry(1, 2)]),
    };
    assert!(matches!(
        PersistentState::decode(&backwards.encode()),
        Err(DecodeError::Log(LogError::TermDecreases { index: 2, .. }))
    ));
    let mut torn = r.encode_state();
    torn.extend(
        &encode_changes(
            None,
            Some(&LogWrite {
                from: 1,
                entries: vec![entry(1, 1)],
            }),
        )[..2],
    );
    assert!(PersistentState::decode(&torn).is_err());
}

/// Pipelining (etcd's inflight window): once a follower has acknowledged, a leader with
/// `max_inflight_appends` 3 sends each new entry at once, each message starting where the
/// previous one ended, until 3 are unanswered; a conflict sends it back to one probe at a time.
#[test]
fn replication_pipelines_up_to_the_window() {
    let mut r = Raft::new(Config {
        max_inflight_appends: 3,
        ..cfg(NodeId::new(1), 3)
    });
    elapse_election(&mut r);
    let vote = Message::RequestVoteReply {
        term: 1,
        granted: true,
    };
    r.step(NodeId::new(2), vote);
    assert!(r.is_leader());
    r.ready();
    let ack = |m: u64| Message::AppendEntriesReply {
        term: 1,
        match_index: m,
        conflict: None,
    };
    let to2 = |ready: &Ready| -> Vec<(u64, usize)> {
        let appends = ready.messages.iter().filter(|m| m.to == NodeId::new(2));
        appends
            .filter_map(|m| match &m.msg {
                Message::AppendEntries {
                    prev_log_index,
                    entries,
                    ..
                } => Some((*prev_log_index, entries.len())),
                _ => None,
            })
            .collect()
    };
    // Probing: while the leader's first (empty) message is unanswered, proposals wait.
    r.propose(vec![1]).unwrap();
    r.propose(vec![2]).unwrap();
    assert_eq!(to2(&r.ready()), vec![]);
    r.step(NodeId::new(2), ack(0));
    assert_eq!(to2(&r.ready()), vec![(0, 2)]);
    r.step(NodeId::new(2), ack(2));
    assert_eq!(to2(&r.ready()), vec![]);
    // Replicating: each proposal is sent at once, until 3 are unanswered.
    for i in 3..=6 {
        r.propose(vec![i]).unwrap();
    }
    assert_eq!(to2(&r.ready()), vec![(2, 1), (3, 1), (4, 1)]);
    r.propose(vec![7]).unwrap();
    assert_eq!(to2(&r.ready()), vec![], "the window of 3 is full");
    r.step(NodeId::new(2), ack(3));
    let sent = to2(&r.ready());
    assert_eq!(sent, vec![(5, 2)], "a freed slot carries all that is new");
    // A conflict: back to probing from the hint.
    let hint = ConflictHint {
        term: None,
        first_index: 0,
        log_len: 4,
    };
    let conflict = Message::AppendEntriesReply {
        term: 1,
        match_index: 0,
        conflict: Some(hint),
    };
    r.step(NodeId::new(2), conflict);
    assert_eq!(to2(&r.ready()), vec![(3, 4)]);
    r.propose(vec![8]).unwrap();
    assert_eq!(to2(&r.ready()), vec![], "probing: one message at a time");
}

/// A proposed payload is held once: the log write for storage, the AppendEntries of every
/// follower and the apply all share the proposal's buffer (the same bytes at the same
/// address), so a leader replicating to N followers holds one copy, not N + 2.
#[test]
fn a_payload_is_shared_from_proposal_to_followers_and_apply() {
    let mut r = leader_of(3);
    let payload = vec![7u8; 1000];
    let at = payload.as_ptr();
    r.propose(payload).unwrap();
    let ready = r.ready();
    let written = ready.log_write.expect("the proposal is written");
    assert_eq!(written.entries.last().unwrap().data.as_ptr(), at);
    let ack = |m: u64| Message::AppendEntriesReply {
        term: 1,
        match_index: m,
        conflict: None,
    };
    for p in [2, 3] {
        r.step(NodeId::new(p), ack(0));
    }
    let ready = r.ready();
    let sent: Vec<*const u8> = (ready.messages.iter())
        .filter_map(|m| match &m.msg {
            Message::AppendEntries { entries, .. } => entries.last().map(|e| e.data.as_ptr()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![at, at], "one AppendEntries per follower");
    r.step(NodeId::new(2), ack(2));
    let applies = r.ready().applies;
    let applied: Vec<*const u8> = (applies.iter())
        .filter_map(|a| match a {
            Apply::Command { data, .. } if !data.is_empty() => Some(data.as_ptr()),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        vec![at],
        "the proposal is applied from its own buffer"
    );
}

/// A decoded entry (a follower's, out of a transport frame or a WAL segment) owns an exactly
/// sized buffer, not a view of the input, so a value a service keeps from it does not pin
/// the rest of the frame or segment (the invariant on [`Entry`]); and the encoding is the
/// byte string a `Vec<u8>` field had (a varint length, then the bytes).
#[test]
fn a_decoded_entry_owns_its_bytes() {
    let e = Entry::command(3, vec![9u8; 200]);
    let mut frame = postcard::to_allocvec(&e).unwrap();
    assert_eq!(
        frame[..5],
        [3, 0, 200, 1, 9],
        "term, kind, varint 200, bytes"
    );
    frame.extend_from_slice(&[0; 4096]);
    let input = bytes::Bytes::from(frame);
    let (decoded, _): (Entry, _) = postcard::take_from_bytes(&input).unwrap();
    assert_eq!(decoded, e);
    let range = input.as_ptr_range();
    assert!(
        !range.contains(&decoded.data.as_ptr()),
        "a copy, not a view"
    );
}
