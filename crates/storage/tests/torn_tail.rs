//! A crash tears the tail of the last segment: recovery keeps exactly the records wholly
//! before the damage, truncates the rest away, and later appends follow valid data. Each
//! test runs with preallocation on (the default) and off, and the tear either cuts the file
//! short or zeroes it from the cut on (a crash inside preallocated space keeps the length).

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

/// A directory holding a replacement then `count` or more synced appends, the last three in
/// one segment.
struct Written {
    base: Vec<u8>,
    /// (segment, start, end) of each append, in order.
    records: Vec<(PathBuf, u64, u64)>,
}

fn write(dir: &Path, opts: &StorageOptions, count: usize) -> Written {
    let (mut storage, _) = open_opts(dir, opts);
    let base = b"BASE".to_vec();
    replace(&mut storage, &base, Some(b"snapshot"));
    let mut records: Vec<(PathBuf, u64, u64)> = Vec::new();
    // At least `count` records, and the last three in one segment.
    let last_three_together =
        |r: &[(PathBuf, u64, u64)]| r.len() >= 3 && r[r.len() - 3].0 == r[r.len() - 1].0;
    for i in 0.. {
        if i >= count && last_three_together(&records) {
            break;
        }
        append(&mut storage, &record(i));
        let tail = storage.wal_tail();
        let start = tail.written_bytes - 8 - record(i).len() as u64;
        records.push((tail.path, start, tail.written_bytes));
    }
    storage.sync().unwrap();
    Written { base, records }
}

fn expected_state(w: &Written, kept: usize) -> Vec<u8> {
    let appended: Vec<u8> = (0..kept).flat_map(record).collect();
    [w.base.clone(), appended].concat()
}

/// Tears a copy of the directory's last segment at every offset from the start of its
/// third-to-last record to its end, and checks what a reopen recovers and leaves on disk.
fn check_every_cut(opts: &StorageOptions, tear: Tear, count: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let w = write(&original, opts, count);
    let count = w.records.len();
    let last = w.records.last().unwrap().0.clone();
    let in_last: Vec<usize> = (0..count).filter(|&i| w.records[i].0 == last).collect();
    assert!(
        in_last.len() >= 3,
        "the last segment holds {} records",
        in_last.len()
    );
    let first_cut = w.records[in_last[in_last.len() - 3]].1;
    let end = w.records[count - 1].2;
    let original_bytes = fs::read(original.join(last.file_name().unwrap())).unwrap();
    for cut in first_cut..=end {
        let what = format!("{tear:?} at {cut}, {opts:?}");
        let dir = copy_dir(&original, &tmp.path().join(format!("cut-{cut}")));
        let segment = dir.join(last.file_name().unwrap());
        tear.apply(&segment, cut);
        let torn_len = file_len(&segment);
        // A record survives if the tear left it whole: it ends before the cut, or (zeroed)
        // the bytes the tear zeroed were zeros already.
        let survives = |(path, _, end): &(PathBuf, u64, u64)| {
            let zeroed = || {
                original_bytes[cut as usize..*end as usize]
                    .iter()
                    .all(|&b| b == 0)
            };
            *path != last || *end <= cut || (tear == Tear::ZeroFill && zeroed())
        };
        let kept = w.records.iter().take_while(|r| survives(r)).count();
        let (mut storage, recovered) = open_opts(&dir, opts);
        assert_eq!(recovered.state, expected_state(&w, kept), "{what}");
        assert_eq!(recovered.snapshot, b"snapshot");
        // The end of its last whole record (or where its first one started).
        let valid_end = match &w.records[kept - 1] {
            (path, _, end) if *path == last => *end,
            _ => first_cut,
        };
        // Zeros after it are free space, kept; a torn record is cut off with whatever
        // follows it.
        let expected_len = if valid_end >= cut {
            torn_len
        } else {
            valid_end
        };
        assert_eq!(file_len(&segment), expected_len, "{what}");
        // New appends follow valid data.
        append(&mut storage, b"after the crash");
        storage.sync().unwrap();
        drop(storage);
        let after = [expected_state(&w, kept), b"after the crash".to_vec()].concat();
        let (_, recovered) = open_opts(&dir, opts);
        assert_eq!(recovered.state, after, "{what}, then appended");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_cut_in_the_last_three_records_recovers_the_whole_records_before_it() {
    for (opts, tear) in settings(64 << 20) {
        check_every_cut(&opts, tear, 12);
    }
}

#[test]
fn every_cut_in_the_last_three_records_of_a_rotated_log() {
    // Segments of ~5 records: the cut is in the last of several segments.
    for (opts, tear) in settings(200) {
        check_every_cut(&opts, tear, 43);
    }
}

/// Writes `count` records, then replaces the end of the last segment from the start of the
/// last record on with `tail` bytes (as a crash that extended the size before the data can
/// leave).
fn with_tail(opts: &StorageOptions, count: usize, tail: &[u8]) -> (tempfile::TempDir, Written) {
    let tmp = tempfile::tempdir().unwrap();
    let w = write(tmp.path(), opts, count);
    let (segment, start, _) = w.records[count - 1].clone();
    truncate(&segment, start);
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(tail);
    fs::write(&segment, bytes).unwrap();
    (tmp, w)
}

#[test]
fn a_zero_tail_is_free_space_and_a_garbage_tail_is_cut_off() {
    for opts in PREALLOCATIONS.map(|p| opts_with(64 << 20, p)) {
        for tail in [vec![0u8; 4096], vec![0xff; 4096], vec![0xff; 5], vec![0; 1]] {
            let what = format!("tail {:?} x {}, {opts:?}", tail[0], tail.len());
            let (tmp, w) = with_tail(&opts, 10, &tail);
            let (mut storage, recovered) = open_opts(tmp.path(), &opts);
            assert_eq!(recovered.state, expected_state(&w, 9), "{what}");
            let (segment, start, _) = &w.records[9];
            let kept_len = if tail[0] == 0 {
                start + tail.len() as u64
            } else {
                *start
            };
            assert_eq!(file_len(segment), kept_len, "{what}");
            append(&mut storage, b"next");
            storage.sync().unwrap();
            drop(storage);
            let after = [expected_state(&w, 9), b"next".to_vec()].concat();
            assert_eq!(open_opts(tmp.path(), &opts).1.state, after, "{what}");
        }
    }
}

#[test]
fn damage_in_the_final_record_reads_as_a_torn_write() {
    for preallocate in PREALLOCATIONS {
        let opts = opts_with(64 << 20, preallocate);
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        let w = write(&original, &opts, 10);
        let (segment, start, end) = w.records[9].clone();
        // Every bit of the final record: length, checksum and payload.
        for byte in start..end {
            for bit in 0..8 {
                let dir = copy_dir(&original, &tmp.path().join("flipped"));
                flip_bit(&dir.join(segment.file_name().unwrap()), byte, bit);
                let recovered = DiskStorage::open(&dir, opts.clone())
                    .unwrap_or_else(|e| panic!("{byte}.{bit}, {opts:?}: {e}"))
                    .1;
                assert_eq!(recovered.state, expected_state(&w, 9), "{byte}.{bit}");
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
        assert_eq!(last, w.records.last().unwrap().0);
        for cut in [0, 1, 31] {
            truncate(&last, cut);
            assert_corrupt(try_open(tmp.path()), &last, 0);
        }
    }
}
