//! Random sequences of appends, replacements, syncs, full disks and crashes against an
//! in-memory model.
//!
//! A crash drops the storage and leaves its last segment holding, where the next batch
//! would start, any prefix of the unsynced batch (the OS lost the rest of it), followed by
//! what was there (zeros, preallocated or not) or by the end of the file. After reopening,
//! the state must be exactly the model's durable state (format 2: an unsynced batch is
//! dropped whole; format 1 kept a prefix of whole records of it); the snapshot must be the
//! model's. A sync may also meet a full disk (an injected ENOSPC on one of its writes or
//! fsyncs): it must fail with a disk-full error, leave the storage usable, and the appends
//! stay staged for the next sync; a crash after it may recover whole appends of it too (the
//! batches of segments it closed). Runs with preallocation off, in chunks smaller than a
//! segment (so that batches extend it often), and by default.

mod common;

use std::os::unix::fs::FileExt;

use common::hook::*;
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
    /// A sync while the disk is full: the write (or, with `true`, the fsync) numbered
    /// `skip` of it fails with ENOSPC; the staged appends stay staged for the next sync.
    DiskFull(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        8 => bytes(48).prop_map(Op::Append),
        1 => (bytes(200), proptest::option::of(bytes(64))).prop_map(|(s, p)| Op::Replace(s, p)),
        3 => Just(Op::Sync),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(k, t)| Op::Crash(k, t)),
        2 => (0u8..4, any::<bool>()).prop_map(|(n, f)| Op::DiskFull(n, f)),
    ]
}

/// What must survive a crash, and what may.
#[derive(Debug, Default)]
struct Model {
    durable: Vec<u8>,
    unsynced: Vec<Vec<u8>>,
    snapshot: Vec<u8>,
    /// A sync failed for lack of space since the last successful one: it may have made a
    /// prefix of the unsynced appends durable (whole batches of segments it closed).
    partial: bool,
}

impl Model {
    fn size(&self) -> u64 {
        (self.durable.len() + self.unsynced.iter().map(Vec::len).sum::<usize>()) as u64
    }

    /// Checks a recovered state and makes it the new durable state.
    fn recover(&mut self, state: Vec<u8>, snapshot: Vec<u8>) -> Result<(), TestCaseError> {
        prop_assert_eq!(&snapshot, &self.snapshot);
        prop_assert!(state.starts_with(&self.durable), "lost durable data");
        // Format 2: a batch is all or nothing, and an unsynced one never complete; only a
        // sync that failed for lack of space may have made some of its batches durable.
        let mut rest = &state[self.durable.len()..];
        for record in self.unsynced.iter().take_while(|_| self.partial) {
            match rest.strip_prefix(record.as_slice()) {
                Some(r) => rest = r,
                None => break,
            }
        }
        prop_assert!(
            rest.is_empty(),
            "recovered bytes that are not durable (nor, after a disk-full sync, whole appends)"
        );
        *self = Model {
            durable: state,
            unsynced: Vec::new(),
            snapshot,
            partial: false,
        };
        Ok(())
    }
}

/// Drops the storage as a crash would: staged appends are only in memory (a sync writes
/// them), so the crash writes, where the next batch would start, a prefix of what that sync
/// would have written (a batch header that never got its checksum right, then the records),
/// as a sync interrupted by the crash can leave; then reopens.
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
    let mut batch = vec![0xa5; 16];
    for record in unsynced {
        batch.extend_from_slice(&(record.len() as u32).to_le_bytes());
        batch.extend_from_slice(record);
    }
    let kept = batch.len() as u64 * u64::from(keep) / u64::from(u16::MAX);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&tail.path)
        .unwrap();
    if !unsynced.is_empty() {
        file.write_all_at(&batch[..kept as usize], tail.next_batch)
            .unwrap();
        if cut {
            file.set_len(tail.next_batch + kept).unwrap();
        }
    }
    drop(file);
    let (storage, recovered) = open_opts(&dir, opts);
    (
        storage,
        recovered.state,
        recovered.snapshot.to_bytes().unwrap().to_vec(),
    )
}

fn run(ops: Vec<Op>, opts: StorageOptions) -> Result<(), TestCaseError> {
    let hook = Hook::new();
    let opts = with_hook(opts, &hook);
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
                model.partial = false;
            }
            Op::DiskFull(skip, fsync) => {
                let kind = if fsync { Kind::Sync } else { Kind::Write };
                hook.fail(Rule {
                    kind,
                    name: "wal-".into(),
                    skip: skip.into(),
                    times: 1,
                    errno: ENOSPC,
                });
                match storage.sync() {
                    Ok(_) => {
                        model.durable.extend(model.unsynced.drain(..).flatten());
                        model.partial = false;
                    }
                    Err(e) => {
                        prop_assert!(e.is_disk_full(), "{e}");
                        prop_assert!(!storage.is_poisoned());
                        model.partial = true;
                    }
                }
                // Space returns (the rule, if the sync did not reach it, is dropped).
                hook.fail(Rule {
                    kind,
                    name: String::new(),
                    skip: 0,
                    times: 0,
                    errno: 0,
                });
            }
            Op::Sync => {
                storage.sync().unwrap();
                model.durable.extend(model.unsynced.drain(..).flatten());
                model.partial = false;
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
