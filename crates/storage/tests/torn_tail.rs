//! A crash tears the last batch of the last segment: recovery drops that batch whole and
//! keeps every earlier one, and later appends follow. Each test runs with preallocation on
//! (the default) and off, and the tear either cuts the file short or zeroes it from the cut
//! on (a crash inside preallocated space keeps the length). Any subset of the batch's pages
//! is `batch_pages.rs`; this one cuts at every byte.
//!
//! Format 2 changed these tests: a torn batch used to keep its whole records before the
//! tear (a prefix of it), now it is all or nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use flotilla_storage::{DiskStorage, StorageOptions};

/// How a crash loses the unsynced end of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tear {
    /// The file ends at the cut: an appending writer's, or a new length that never reached
    /// the disk.
    Truncate,
    /// Zeros from the cut to the end of the file, which keeps its length: writes into
    /// preallocated space that never reached the disk.
    ZeroFill,
}

impl Tear {
    fn apply(self, path: &Path, cut: u64) {
        match self {
            Tear::Truncate => truncate(path, cut),
            Tear::ZeroFill => zero_from(path, cut),
        }
    }
}

/// Every preallocation setting with every kind of tear.
fn settings(segment_bytes: u64) -> Vec<(StorageOptions, Tear)> {
    PREALLOCATIONS
        .iter()
        .flat_map(|&p| [Tear::Truncate, Tear::ZeroFill].map(|t| (opts_with(segment_bytes, p), t)))
        .collect()
}

/// A directory holding a replacement, `count` appends synced in batches of three, then one
/// more batch of three: its segment, where it starts and ends, and the states without and
/// with it.
struct Written {
    segment: PathBuf,
    start: u64,
    end: u64,
    before: Vec<u8>,
    after: Vec<u8>,
}

fn write(dir: &Path, opts: &StorageOptions, count: usize) -> Written {
    let (mut storage, _) = open_opts(dir, opts);
    replace(&mut storage, b"BASE", Some(b"snapshot"));
    let mut state = b"BASE".to_vec();
    for i in 0..count {
        append(&mut storage, &record(i));
        state.extend(record(i));
        if i % 3 == 2 {
            storage.sync().unwrap();
        }
    }
    storage.sync().unwrap();
    let before = state.clone();
    for i in count..count + 3 {
        append(&mut storage, &record(i));
        state.extend(record(i));
    }
    storage.sync().unwrap();
    let tail = storage.wal_tail();
    let body: u64 = (count..count + 3).map(|i| 4 + record(i).len() as u64).sum();
    let start = tail.synced_bytes - 16 - body;
    Written {
        segment: tail.path,
        start,
        end: tail.synced_bytes,
        before,
        after: state,
    }
}

/// Tears a copy of the directory's last segment at every offset of its last batch, and
/// checks what a reopen recovers.
fn check_every_cut(opts: &StorageOptions, tear: Tear, count: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let w = write(&original, opts, count);
    assert_eq!(w.start % 4096, 0, "a batch starts on a page");
    let name = w.segment.file_name().unwrap();
    for cut in w.start..=w.end {
        let what = format!("{tear:?} at {cut}, {opts:?}");
        let dir = copy_dir(&original, &tmp.path().join(format!("cut-{cut}")));
        tear.apply(&dir.join(name), cut);
        let expected = if cut == w.end { &w.after } else { &w.before };
        let (mut storage, recovered) = open_opts(&dir, opts);
        assert_eq!(&recovered.state, expected, "{what}");
        assert_eq!(recovered.snapshot.to_bytes().unwrap().to_vec(), b"snapshot");
        // New appends follow valid data.
        append(&mut storage, b"after the crash");
        storage.sync().unwrap();
        drop(storage);
        let after = [&expected[..], b"after the crash"].concat();
        assert_eq!(
            open_opts(&dir, opts).1.state,
            after,
            "{what}, then appended"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_cut_in_the_last_batch_drops_it_whole() {
    for (opts, tear) in settings(64 << 20) {
        check_every_cut(&opts, tear, 12);
    }
}

#[test]
fn every_cut_in_the_last_batch_of_a_rotated_log() {
    // A page for the header and one for a batch: a segment per batch, so the cut is in the
    // last of several segments.
    for (opts, tear) in settings(8192) {
        check_every_cut(&opts, tear, 43);
    }
}

#[test]
fn a_zero_tail_is_free_space_and_a_garbage_tail_is_dropped() {
    for opts in PREALLOCATIONS.map(|p| opts_with(64 << 20, p)) {
        for tail in [vec![0u8; 4096], vec![0xff; 4096], vec![0xff; 5], vec![0; 1]] {
            let what = format!("tail {:?} x {}, {opts:?}", tail[0], tail.len());
            let tmp = tempfile::tempdir().unwrap();
            let w = write(tmp.path(), &opts, 10);
            // Garbage where the next batch would start (the padding after the last batch is
            // never read).
            let mut bytes = fs::read(&w.segment).unwrap();
            let next = w.end.div_ceil(4096) as usize * 4096;
            bytes.resize(bytes.len().max(next + tail.len()), 0);
            bytes[next..next + tail.len()].copy_from_slice(&tail);
            fs::write(&w.segment, bytes).unwrap();
            let (mut storage, recovered) = open_opts(tmp.path(), &opts);
            assert_eq!(recovered.state, w.after, "{what}");
            append(&mut storage, b"next");
            storage.sync().unwrap();
            drop(storage);
            let after = [&w.after[..], b"next"].concat();
            assert_eq!(open_opts(tmp.path(), &opts).1.state, after, "{what}");
        }
    }
}

#[test]
fn damage_anywhere_in_the_last_batch_reads_as_a_torn_batch() {
    for preallocate in PREALLOCATIONS {
        let opts = opts_with(64 << 20, preallocate);
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        let w = write(&original, &opts, 10);
        let name = w.segment.file_name().unwrap();
        // Every bit of the last batch: its header, record lengths and payloads.
        for byte in w.start..w.end {
            for bit in 0..8 {
                let dir = copy_dir(&original, &tmp.path().join("flipped"));
                flip_bit(&dir.join(name), byte, bit);
                let recovered = DiskStorage::open(&dir, opts.clone())
                    .unwrap_or_else(|e| panic!("{byte}.{bit}, {opts:?}: {e}"))
                    .1;
                assert_eq!(recovered.state, w.before, "{byte}.{bit}");
                fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
}

#[test]
fn a_cut_in_the_header_of_the_last_segment_is_corruption() {
    // Segments appear under their final name complete, so a short header is not a crash.
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        let w = write(tmp.path(), &opts_with(100, preallocate), 20);
        let last = segments(tmp.path()).pop().unwrap();
        assert_eq!(last, w.segment);
        for cut in [0, 1, 31] {
            truncate(&last, cut);
            assert_corrupt(try_open(tmp.path()), &last, 0);
        }
    }
}
