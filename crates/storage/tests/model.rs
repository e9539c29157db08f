//! Random sequences of appends, replacements, syncs and crashes against an in-memory model.
//!
//! A crash drops the storage and leaves its last segment holding, after the synced length,
//! any prefix of the unsynced batch (the OS lost the rest of it), followed by what was there
//! (zeros, preallocated or not) or by the end of the file. After reopening, the state must be
//! the model's durable state followed by some prefix, in whole records, of the unsynced
//! appends; the snapshot must be the model's. Runs with preallocation off, in chunks smaller
//! than a segment (so that batches extend it often), and by default.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use flotilla_storage::{DiskStorage, StorageOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Replace(Vec<u8>, Option<Vec<u8>>),
    Sync,
    /// Crash, keeping this fraction (of `u16::MAX`) of the unsynced bytes; with `true`, the
    /// file ends there (its new length reached the disk, the rest did not).
    Crash(u16, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        8 => bytes(48).prop_map(Op::Append),
        1 => (bytes(200), proptest::option::of(bytes(64))).prop_map(|(s, p)| Op::Replace(s, p)),
        3 => Just(Op::Sync),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(k, t)| Op::Crash(k, t)),
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

/// The frame the storage writes for `payload`: length, CRC32C, payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let header = [
        (payload.len() as u32).to_le_bytes(),
        crc32c::crc32c(payload).to_le_bytes(),
    ];
    [header.concat(), payload.to_vec()].concat()
}

/// Drops the storage as a crash would, with a prefix of the batch it had not synced yet on
/// disk (the storage writes a batch only when syncing it, so the crash writes that prefix
/// itself), and reopens it.
fn crash(
    storage: DiskStorage,
    unsynced: &[Vec<u8>],
    keep: u16,
    cut: bool,
    opts: &StorageOptions,
) -> (DiskStorage, Vec<u8>, Vec<u8>) {
    let dir = storage.dir().to_path_buf();
    let tail = storage.wal_tail();
    drop(storage);
    // The batch in the last segment: the latest unsynced appends (earlier ones may have gone
    // to a segment that rotation closed, durably).
    let in_last = tail.written_bytes - tail.synced_bytes;
    let (mut frames, mut covered) = (Vec::new(), 0);
    for record in unsynced.iter().rev() {
        if covered >= in_last {
            break;
        }
        covered += 8 + record.len() as u64;
        frames.insert(0, frame(record));
    }
    assert_eq!(covered, in_last, "the unsynced frames add up");
    let batch = frames.concat();
    let kept = in_last * u64::from(keep) / u64::from(u16::MAX);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&tail.path)
        .unwrap();
    file.write_all_at(&batch[..kept as usize], tail.synced_bytes)
        .unwrap();
    if cut {
        file.set_len(tail.synced_bytes + kept).unwrap();
    }
    drop(file);
    let (storage, recovered) = open_opts(&dir, opts);
    (storage, recovered.state, recovered.snapshot)
}

fn run(ops: Vec<Op>, opts: StorageOptions) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_opts(tmp.path(), &opts);
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
            Op::Crash(keep, cut) => {
                let (s, state, snapshot) = crash(storage, &model.unsynced, keep, cut, &opts);
                storage = s;
                model.recover(state, snapshot)?;
            }
        }
        prop_assert_eq!(storage.state_size(), model.size());
        prop_assert_eq!(storage.snapshot_size(), model.snapshot.len() as u64);
    }
    let (_, state, snapshot) = crash(storage, &model.unsynced, 0, false, &opts);
    model.recover(state, snapshot)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn recovery_matches_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        segment_bytes in prop_oneof![Just(64u64), 65u64..400, Just(64 << 20)],
        preallocate_bytes in prop_oneof![Just(0u64), 1u64..300, Just(1 << 20)],
    ) {
        run(ops, opts_with(segment_bytes, preallocate_bytes))?;
    }
}
