//! Property tests: whatever bytes arrive, decoding returns a value or a typed error and never
//! panics; and every message Flotilla sends survives a round trip.

use flotilla_mr::protocol::{Request, Response, Task};
use flotilla_raft::NodeId;
use flotilla_raft::{ConflictHint, Entry, EntryKind, Membership, Message};
use flotilla_wire::{decode, encode, DEFAULT_MAX_FRAME};
use proptest::prelude::*;

fn raft_message() -> impl Strategy<Value = Message> {
    let entries = prop::collection::vec(
        (
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(term, config, data)| Entry {
                term,
                kind: if config {
                    EntryKind::Membership
                } else {
                    EntryKind::Command
                },
                data: data.into(),
            })
            .collect::<Vec<_>>()
    });
    let membership = (
        prop::collection::btree_set(any::<u64>(), 0..5),
        prop::collection::btree_set(any::<u64>(), 0..3),
        prop::collection::btree_map(any::<u64>(), "[a-z0-9.:]{0,20}", 0..3),
    )
        .prop_map(|(voters, learners, addrs)| Membership {
            voters: voters.into_iter().map(NodeId::new).collect(),
            learners: learners.into_iter().map(NodeId::new).collect(),
            addrs: addrs
                .into_iter()
                .map(|(k, v)| (NodeId::new(k), v))
                .collect(),
        });
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(term, last_log_index, last_log_term)| Message::RequestVote {
                term,
                last_log_index,
                last_log_term
            }
        ),
        (any::<u64>(), any::<bool>())
            .prop_map(|(term, granted)| Message::RequestVoteReply { term, granted }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            entries,
            any::<u64>()
        )
            .prop_map(
                |(term, prev_log_index, prev_log_term, entries, leader_commit)| {
                    Message::AppendEntries {
                        term,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                    }
                }
            ),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of((
                proptest::option::of(any::<u64>()),
                any::<u64>(),
                any::<u64>()
            ))
        )
            .prop_map(|(term, match_index, c)| Message::AppendEntriesReply {
                term,
                match_index,
                conflict: c.map(|(term, first_index, log_len)| ConflictHint {
                    term,
                    first_index,
                    log_len
                }),
            }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(term, last_log_index, last_log_term)| Message::PreVote {
                term,
                last_log_index,
                last_log_term
            }
        ),
        (any::<u64>(), any::<bool>())
            .prop_map(|(term, granted)| Message::PreVoteReply { term, granted }),
        (any::<u64>(), any::<u64>()).prop_map(|(term, round)| Message::Heartbeat { term, round }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(term, round)| Message::HeartbeatReply { term, round }),
        any::<u64>().prop_map(|term| Message::TimeoutNow { term }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(term, last_log_index, last_log_term)| Message::TransferVote {
                term,
                last_log_index,
                last_log_term
            }
        ),
        (
            (any::<u64>(), any::<u64>(), any::<u64>()),
            membership,
            (any::<u64>(), any::<u64>()),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(
                |(
                    (term, last_included_index, last_included_term),
                    membership,
                    (total_len, offset),
                    data,
                )| {
                    Message::InstallSnapshot {
                        term,
                        last_included_index,
                        last_included_term,
                        membership,
                        total_len,
                        offset,
                        data: data.into(),
                    }
                }
            ),
        (
            (any::<u64>(), any::<u64>(), any::<u64>()),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|((term, last_included_index, offset), received, done)| {
                Message::InstallSnapshotReply {
                    term,
                    last_included_index,
                    offset,
                    received,
                    done,
                }
            }),
    ]
}

fn mr_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u64>(), ".{0,20}")
            .prop_map(|(worker, data_addr)| Request::GetTask { worker, data_addr }),
        (
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(worker, reduce, output)| Request::ReduceDone {
                worker,
                reduce,
                output
            }),
        (
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(".{0,12}", 0..4)
        )
            .prop_map(|(worker, reduce, holders)| Request::MapOutputLost {
                worker,
                reduce,
                holders
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(map, reduce)| Request::FetchBucket { map, reduce }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Message>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode::<Request>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode::<Response>(&bytes, DEFAULT_MAX_FRAME);
    }

    /// A valid header and checksum over arbitrary payload still only yields Ok or Err.
    #[test]
    fn arbitrary_payload_with_valid_checksum_never_panics(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let _ = decode::<Message>(&frame, DEFAULT_MAX_FRAME);
        let _ = decode::<Request>(&frame, DEFAULT_MAX_FRAME);
        let _ = decode::<Response>(&frame, DEFAULT_MAX_FRAME);
    }

    #[test]
    fn raft_messages_round_trip(m in raft_message()) {
        prop_assert_eq!(decode::<Message>(&encode(&m), DEFAULT_MAX_FRAME).unwrap(), m);
    }

    #[test]
    fn mr_requests_round_trip(r in mr_request()) {
        let back: Request = decode(&encode(&r), DEFAULT_MAX_FRAME).unwrap();
        prop_assert_eq!(format!("{back:?}"), format!("{r:?}"));
    }

    /// Flipping any one bit of a frame is detected (length, checksum or payload).
    #[test]
    fn single_bit_flips_are_detected(m in raft_message(), bit in any::<prop::sample::Index>()) {
        let mut frame = encode(&m);
        let b = bit.index(frame.len() * 8);
        frame[b / 8] ^= 1 << (b % 8);
        prop_assert!(decode::<Message>(&frame, DEFAULT_MAX_FRAME).is_err());
    }
}

#[test]
fn a_task_round_trips() {
    let t = Response::Task(Task::Map {
        map: 3,
        app: "wc".into(),
        name: "a".into(),
        path: "/a".into(),
        size: 9,
        n_reduce: 10,
    });
    let back: Response = decode(&encode(&t), DEFAULT_MAX_FRAME).unwrap();
    assert_eq!(format!("{back:?}"), format!("{t:?}"));
}
