//! A crash tears the tail of the last segment: recovery keeps exactly the records wholly
//! before the damage, truncates the rest away, and later appends follow valid data.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A directory holding a replacement then `count` or more synced appends, the last three in
/// one segment.
struct Written {
    base: Vec<u8>,
    /// (segment, start, end) of each append, in order.
    records: Vec<(PathBuf, u64, u64)>,
}

fn write(dir: &Path, segment_bytes: u64, count: usize) -> Written {
    let (mut storage, _) = open_with(dir, segment_bytes);
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

/// Cuts a copy of the directory's last segment at every offset from the start of its
/// third-to-last record to its end, and checks what a reopen recovers and leaves on disk.
fn check_every_cut(segment_bytes: u64, count: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let w = write(&original, segment_bytes, count);
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
    for cut in first_cut..=end {
        let dir = copy_dir(&original, &tmp.path().join(format!("cut-{cut}")));
        let segment = dir.join(last.file_name().unwrap());
        truncate(&segment, cut);
        let kept = w
            .records
            .iter()
            .take_while(|r| r.0 != last || r.2 <= cut)
            .count();
        let (mut storage, recovered) = open_with(&dir, segment_bytes);
        assert_eq!(recovered.state, expected_state(&w, kept), "cut at {cut}");
        assert_eq!(recovered.snapshot, b"snapshot");
        // Truncated to the end of its last whole record (or where its first one started).
        let valid_end = match &w.records[kept - 1] {
            (path, _, end) if *path == last => *end,
            _ => first_cut,
        };
        assert_eq!(
            fs::metadata(&segment).unwrap().len(),
            valid_end,
            "cut at {cut}"
        );
        // New appends follow valid data.
        append(&mut storage, b"after the crash");
        storage.sync().unwrap();
        drop(storage);
        let after = [expected_state(&w, kept), b"after the crash".to_vec()].concat();
        assert_eq!(
            try_open(&dir).unwrap().state,
            after,
            "cut at {cut}, then appended"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_cut_in_the_last_three_records_recovers_the_whole_records_before_it() {
    check_every_cut(64 << 20, 12);
}

#[test]
fn every_cut_in_the_last_three_records_of_a_rotated_log() {
    // Segments of ~5 records: the cut is in the last of several segments.
    check_every_cut(200, 43);
}

/// Writes `count` records, then replaces the end of the last segment from `offset` on with
/// `tail` bytes (as a crash that extended the size before the data can leave).
fn with_tail(count: usize, tail: &[u8]) -> (tempfile::TempDir, Written) {
    let tmp = tempfile::tempdir().unwrap();
    let w = write(tmp.path(), 64 << 20, count);
    let (segment, start, _) = w.records[count - 1].clone();
    truncate(&segment, start);
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(tail);
    fs::write(&segment, bytes).unwrap();
    (tmp, w)
}

#[test]
fn a_zero_filled_or_garbage_tail_is_cut_off() {
    for tail in [vec![0u8; 4096], vec![0xff; 4096], vec![0xff; 5], vec![0; 1]] {
        let (tmp, w) = with_tail(10, &tail);
        let (_, recovered) = open(tmp.path());
        assert_eq!(
            recovered.state,
            expected_state(&w, 9),
            "tail {:?}",
            &tail[..1]
        );
        let segment = &w.records[9].0;
        assert_eq!(fs::metadata(segment).unwrap().len(), w.records[9].1);
    }
}

#[test]
fn damage_in_the_final_record_reads_as_a_torn_write() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let w = write(&original, 64 << 20, 10);
    let (segment, start, end) = w.records[9].clone();
    // Every bit of the final record: length, checksum and payload.
    for byte in start..end {
        for bit in 0..8 {
            let dir = copy_dir(&original, &tmp.path().join("flipped"));
            flip_bit(&dir.join(segment.file_name().unwrap()), byte, bit);
            let recovered = try_open(&dir).unwrap_or_else(|e| panic!("{byte}.{bit}: {e}"));
            assert_eq!(recovered.state, expected_state(&w, 9), "{byte}.{bit}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn a_cut_in_the_header_of_the_last_segment_is_corruption() {
    // Segments appear under their final name complete, so a short header is not a crash.
    let tmp = tempfile::tempdir().unwrap();
    let w = write(tmp.path(), 100, 20);
    let last = segments(tmp.path()).pop().unwrap();
    assert_eq!(last, w.records.last().unwrap().0);
    for cut in [0, 1, 31] {
        truncate(&last, cut);
        assert_corrupt(try_open(tmp.path()), &last, 0);
    }
}
