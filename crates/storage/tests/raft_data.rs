//! Real Raft persisted state (a full encoding, then `encode_changes` records, with a
//! snapshot-driven replacement in between) survives a round trip through the disk and
//! decodes to the state that was persisted.

mod common;

use common::*;
use flotilla_raft::{encode_changes, Entry, HardState, LogWrite, Membership, PersistentState};

fn entry(term: u64, i: u64) -> Entry {
    Entry::command(term, format!("put k{i} v{i}").into_bytes())
}

fn hard(term: u64, voted_for: Option<u64>) -> HardState {
    HardState {
        term,
        voted_for: voted_for.map(flotilla_raft::NodeId::new),
    }
}

#[test]
fn raft_records_round_trip_and_decode() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, recovered) = open_with(tmp.path(), 1024);
    assert_eq!(
        PersistentState::decode(&recovered.state).unwrap(),
        PersistentState::default()
    );
    let mut model = PersistentState::default();
    replace(&mut storage, &model.encode(), None);

    // 300 entries over terms 1..=3, one input (and record) per 1-3 entries, synced in
    // batches; a snapshot at 100 once the log passes 160; a follower overwrite from 250 once
    // it passes 260.
    let (mut snapshotted, mut overwritten) = (false, false);
    let mut index = 1;
    while index <= 300 {
        let term = 1 + index / 120;
        let from = if !overwritten && index > 260 {
            250
        } else {
            index
        };
        overwritten |= from == 250;
        let entries: Vec<Entry> = (from..from + 1 + index % 3)
            .map(|i| entry(term, i))
            .collect();
        model.log.truncate_from(from);
        for e in &entries {
            model.log.append(e.clone());
        }
        let new_term = model.hard_state.term != term;
        model.hard_state = hard(term, Some(term % 3));
        let write = LogWrite { from, entries };
        append(
            &mut storage,
            &encode_changes(new_term.then_some(&model.hard_state), Some(&write)),
        );
        index = model.log.last_index() + 1;
        if index % 5 == 0 {
            storage.sync().unwrap();
        }
        if !snapshotted && index > 160 {
            // The log is compacted and the state rewritten in full, with the snapshot.
            snapshotted =
                model
                    .log
                    .compact_to(100, model.log.term_at(100).unwrap(), Membership::default());
            replace(&mut storage, &model.encode(), Some(b"kv snapshot at 100"));
        }
    }
    storage.sync().unwrap();
    drop(storage);
    assert!(segments(tmp.path()).len() > 2, "the log rotated");

    let (_, recovered) = open_with(tmp.path(), 1024);
    let decoded = PersistentState::decode(&recovered.state).unwrap();
    assert_eq!(decoded, model);
    assert_eq!(decoded.log.snapshot_index(), 100);
    assert_eq!(decoded.log.entry(255), Some(&entry(3, 255)));
    assert_eq!(
        recovered.snapshot.to_bytes().unwrap().to_vec(),
        b"kv snapshot at 100"
    );
}
