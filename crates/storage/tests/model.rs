//! Random sequences of appends, replacements, syncs and crashes against an in-memory model.
//!
//! A crash drops the storage and cuts its last segment anywhere after the synced length
//! (the OS lost some unsynced writes). After reopening, the state must be the model's durable
//! state followed by some prefix, in whole records, of the unsynced appends; the snapshot
//! must be the model's.

mod common;

use common::*;
use flotilla_storage::DiskStorage;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Replace(Vec<u8>, Option<Vec<u8>>),
    Sync,
    /// Crash, keeping this fraction (of `u16::MAX`) of the unsynced bytes.
    Crash(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        8 => bytes(48).prop_map(Op::Append),
        1 => (bytes(200), proptest::option::of(bytes(64))).prop_map(|(s, p)| Op::Replace(s, p)),
        3 => Just(Op::Sync),
        2 => any::<u16>().prop_map(Op::Crash),
    ]
}

/// What must survive a crash, and what may.
#[derive(Debug, Default)]
struct Model {
    durable: Vec<u8>,
    unsynced: Vec<Vec<u8>>,
    snapshot: Vec<u8>,
}

impl Model {
    fn size(&self) -> u64 {
        (self.durable.len() + self.unsynced.iter().map(Vec::len).sum::<usize>()) as u64
    }

    /// Checks a recovered state and makes it the new durable state.
    fn recover(&mut self, state: Vec<u8>, snapshot: Vec<u8>) -> Result<(), TestCaseError> {
        prop_assert_eq!(&snapshot, &self.snapshot);
        prop_assert!(state.starts_with(&self.durable), "lost durable data");
        let mut rest = &state[self.durable.len()..];
        for record in &self.unsynced {
            match rest.strip_prefix(record.as_slice()) {
                Some(r) => rest = r,
                None => break,
            }
        }
        prop_assert!(
            rest.is_empty(),
            "recovered bytes that are not a prefix of whole appends"
        );
        *self = Model {
            durable: state,
            unsynced: Vec::new(),
            snapshot,
        };
        Ok(())
    }
}

fn crash(storage: DiskStorage, keep: u16, segment_bytes: u64) -> (DiskStorage, Vec<u8>, Vec<u8>) {
    let dir = storage.dir().to_path_buf();
    let tail = storage.wal_tail();
    drop(storage);
    let unsynced = tail.written_bytes - tail.synced_bytes;
    truncate(
        &tail.path,
        tail.synced_bytes + unsynced * u64::from(keep) / u64::from(u16::MAX),
    );
    let (storage, recovered) = open_with(&dir, segment_bytes);
    (storage, recovered.state, recovered.snapshot)
}

fn run(ops: Vec<Op>, segment_bytes: u64) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_with(tmp.path(), segment_bytes);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append(bytes) => {
                append(&mut storage, &bytes);
                if !bytes.is_empty() {
                    model.unsynced.push(bytes);
                }
            }
            Op::Replace(state, snapshot) => {
                replace(&mut storage, &state, snapshot.as_deref());
                model.snapshot = snapshot.unwrap_or(std::mem::take(&mut model.snapshot));
                model.durable = state;
                model.unsynced.clear();
            }
            Op::Sync => {
                storage.sync().unwrap();
                model.durable.extend(model.unsynced.drain(..).flatten());
            }
            Op::Crash(keep) => {
                let (s, state, snapshot) = crash(storage, keep, segment_bytes);
                storage = s;
                model.recover(state, snapshot)?;
            }
        }
        prop_assert_eq!(storage.state_size(), model.size());
        prop_assert_eq!(storage.snapshot_size(), model.snapshot.len() as u64);
    }
    let (_, state, snapshot) = crash(storage, 0, segment_bytes);
    model.recover(state, snapshot)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn recovery_matches_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        segment_bytes in prop_oneof![Just(64u64), 65u64..400, Just(64 << 20)],
    ) {
        run(ops, segment_bytes)?;
    }
}
