//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod hook;

use std::fs;
use std::path::{Path, PathBuf};

use flotilla_node::Save;
use flotilla_storage::{Corruption, DiskStorage, Recovered, StorageError, StorageOptions};

/// `segment_bytes`, and the default preallocation.
pub fn opts(segment_bytes: u64) -> StorageOptions {
    StorageOptions {
        segment_bytes,
        ..StorageOptions::default()
    }
}

pub fn opts_with(segment_bytes: u64, preallocate_bytes: u64) -> StorageOptions {
    StorageOptions {
        segment_bytes,
        preallocate_bytes,
        ..StorageOptions::default()
    }
}

/// Preallocation settings tests run under: the default, and off (files grow with each sync).
pub const PREALLOCATIONS: [u64; 2] = [1 << 20, 0];

pub fn open(dir: &Path) -> (DiskStorage, Recovered) {
    DiskStorage::open(dir, StorageOptions::default()).expect("open")
}

pub fn open_with(dir: &Path, segment_bytes: u64) -> (DiskStorage, Recovered) {
    DiskStorage::open(dir, opts(segment_bytes)).expect("open")
}

pub fn open_opts(dir: &Path, opts: &StorageOptions) -> (DiskStorage, Recovered) {
    DiskStorage::open(dir, opts.clone()).expect("open")
}

pub fn try_open(dir: &Path) -> Result<Recovered, StorageError> {
    DiskStorage::open(dir, StorageOptions::default()).map(|(_, r)| r)
}

pub fn append(storage: &mut DiskStorage, bytes: &[u8]) {
    let save = Save {
        state: bytes.to_vec(),
        snapshot: None,
        append: true,
        local_tail: None,
    };
    storage.stage(&save).expect("stage append");
}

pub fn replace(storage: &mut DiskStorage, state: &[u8], snapshot: Option<&[u8]>) {
    let save = Save {
        state: state.to_vec(),
        snapshot: snapshot.map(|s| flotilla_node::SnapshotData::from(s.to_vec())),
        append: false,
        local_tail: None,
    };
    storage.stage(&save).expect("stage replacement");
}

/// A distinct, recognisable record for index `i` (lengths vary from 1 to 40 bytes).
pub fn record(i: usize) -> Vec<u8> {
    (0..1 + i * 7 % 40).map(|j| (i * 31 + j) as u8).collect()
}

/// The file names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

/// The WAL segments in `dir`, in (generation, seq) order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("wal-") && n.ends_with(".log"))
        .map(|n| dir.join(n))
        .collect()
}

/// Copies every file of `from` into `to` (created), returning `to`.
pub fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to).expect("create copy");
    for name in names(from) {
        fs::copy(from.join(&name), to.join(&name)).expect("copy file");
    }
    to.to_path_buf()
}

pub fn truncate(path: &Path, len: u64) {
    let file = fs::OpenOptions::new().write(true).open(path).expect("open");
    file.set_len(len).expect("truncate");
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// Overwrites bytes from `offset` to the end of the file with zeros, keeping its length:
/// what a crash leaves of writes into preallocated space that never reached the disk.
pub fn zero_from(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize..].fill(0);
    fs::write(path, bytes).expect("write");
}

pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 1 << bit;
    fs::write(path, bytes).expect("write");
}

/// Asserts `result` is `Corrupt` naming `file` at `offset`, and that its message does too;
/// returns what it found wrong.
pub fn assert_corrupt<T: std::fmt::Debug>(
    result: Result<T, StorageError>,
    file: &Path,
    offset: u64,
) -> Corruption {
    match result {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt {
                file: f,
                offset: o,
                reason,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((f.as_path(), *o), (file, offset), "{e}");
            let message = e.to_string();
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("offset {offset}")), "{message}");
            reason.clone()
        }
        other => panic!(
            "expected Corrupt in {} at {offset}, got {other:?}",
            file.display()
        ),
    }
}

/// What an open recovered, as bytes: a recovered snapshot is backed by its file, and
/// snapshots in files compare by identity, not content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pair {
    pub state: Vec<u8>,
    pub snapshot: Vec<u8>,
}

impl From<Recovered> for Pair {
    fn from(r: Recovered) -> Pair {
        let snapshot = r.snapshot.to_bytes().expect("read the snapshot").to_vec();
        Pair {
            state: r.state,
            snapshot,
        }
    }
}
