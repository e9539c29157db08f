//! Damage no crash explains is reported as `Corrupt`, naming the file and byte offset, and
//! nothing is dropped silently. The WAL tests run with preallocation on (the default) and
//! off.
//!
//! Format 2: each append is synced as a batch of its own (to know where each batch starts),
//! the offsets are the batches' (header 16 bytes, then a 4-byte length per record), and a
//! closed segment ends on the page after its last batch. Damage to the last batch reads as
//! a torn batch, as damage to the last record did.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use flotilla_storage::{BatchError, Corruption, FrameError, HeaderError};

/// A replacement and `count` appends, each synced as a batch of its own; each batch's
/// (segment, start offset).
fn write(dir: &Path, segment_bytes: u64, preallocate: u64, count: usize) -> Vec<(PathBuf, u64)> {
    let (mut storage, _) = open_opts(dir, &opts_with(segment_bytes, preallocate));
    replace(&mut storage, b"BASE", Some(b"the snapshot"));
    let mut starts = Vec::new();
    for i in 0..count {
        append(&mut storage, &record(i));
        storage.sync().unwrap();
        let tail = storage.wal_tail();
        starts.push((tail.path, tail.synced_bytes - 20 - record(i).len() as u64));
    }
    starts
}

/// Flips each given bit in place, expects `Corrupt` at `offset` of `file`, flips it back.
fn expect_corrupt_for_flips(
    dir: &Path,
    file: &Path,
    offset: u64,
    bits: impl Iterator<Item = (u64, u8)>,
) {
    for (byte, bit) in bits {
        flip_bit(file, byte, bit);
        assert_corrupt(try_open(dir), file, offset);
        flip_bit(file, byte, bit);
    }
}

/// Every bit of a one-record batch's header (length and checksums) and record length, and
/// of the first and last payload bytes.
fn record_bits(start: u64, payload_len: usize) -> impl Iterator<Item = (u64, u8)> {
    let last = start + 20 + payload_len as u64 - 1;
    let bytes = (start..start + 21).chain([last]);
    bytes.flat_map(|byte| (0..8).map(move |bit| (byte, bit)))
}

#[test]
fn a_flip_in_any_batch_but_the_last_of_the_last_segment_is_corruption() {
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        let starts = write(tmp.path(), 64 << 20, preallocate, 10);
        for (i, (segment, start)) in starts.iter().enumerate().take(9) {
            expect_corrupt_for_flips(
                tmp.path(),
                segment,
                *start,
                record_bits(*start, record(i).len()),
            );
        }
        // Every record read back intact once the flips are undone.
        let expected = [b"BASE".to_vec(), (0..10).flat_map(record).collect()].concat();
        assert_eq!(try_open(tmp.path()).unwrap().state, expected);
    }
}

#[test]
fn a_flip_or_cut_in_a_segment_before_the_last_is_corruption() {
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        let starts = write(tmp.path(), 150, preallocate, 30);
        let last = &starts[29].0;
        // Every record of an earlier segment, its own last record included.
        for (i, (segment, start)) in starts.iter().enumerate().filter(|(_, (s, _))| s != last) {
            expect_corrupt_for_flips(
                tmp.path(),
                segment,
                *start,
                record_bits(*start, record(i).len()),
            );
        }
        let (segment, start) = &starts[3];
        assert_ne!(segment, last);
        truncate(segment, start + 5);
        // The cut goes through the batch's 16-byte header.
        let reason = assert_corrupt(try_open(tmp.path()), segment, *start);
        assert_eq!(
            reason,
            Corruption::BatchBeforeLastSegment(BatchError::Header)
        );
    }
}

#[test]
fn zeros_after_the_records_of_a_segment_before_the_last_are_corruption() {
    // Rotation trims the zero tail before the next segment exists, so zeros there are
    // damage: records replaced by zeros would otherwise vanish from the middle of the state.
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        let starts = write(tmp.path(), 150, preallocate, 30);
        let segs = segments(tmp.path());
        assert!(segs.len() >= 3);
        // Trimmed to its records: it ends where its last record does.
        let (i, (_, last_start)) = starts
            .iter()
            .enumerate()
            .rfind(|(_, (s, _))| *s == segs[1])
            .unwrap();
        // Trimmed on the page boundary after its last batch.
        let end = (last_start + 20 + record(i).len() as u64).div_ceil(4096) * 4096;
        assert_eq!(file_len(&segs[1]), end);
        let bytes = fs::read(&segs[1]).unwrap();
        fs::write(&segs[1], [&bytes[..], &[0; 100]].concat()).unwrap();
        let reason = assert_corrupt(try_open(tmp.path()), &segs[1], end);
        assert_eq!(
            reason,
            Corruption::BatchBeforeLastSegment(BatchError::Header)
        );
        // Or zeros in place of its last record.
        fs::write(&segs[1], &bytes).unwrap();
        zero_from(&segs[1], *last_start);
        let reason = assert_corrupt(try_open(tmp.path()), &segs[1], *last_start);
        assert_eq!(
            reason,
            Corruption::BatchBeforeLastSegment(BatchError::Header)
        );
    }
}

#[test]
fn a_flip_in_a_segment_header_is_corruption() {
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 150, preallocate, 30);
        let segs = segments(tmp.path());
        for segment in [&segs[0], &segs[2], segs.last().unwrap()] {
            let bits = (0..32).flat_map(|byte| (0..8).map(move |bit| (byte, bit)));
            expect_corrupt_for_flips(tmp.path(), segment, 0, bits);
        }
        flip_bit(&segs[2], 13, 0);
        let reason = assert_corrupt(try_open(tmp.path()), &segs[2], 0);
        assert!(
            matches!(reason, Corruption::Header(HeaderError::Checksum { .. })),
            "{reason:?}"
        );
    }
}

#[test]
fn the_base_record_is_never_taken_for_a_torn_tail() {
    // With no appends, the base record is the last record of the last segment; it was
    // durable before the file got its name, so damage to it (or zeros in its place) is
    // corruption.
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 64 << 20, preallocate, 0);
        let segment = segments(tmp.path()).pop().unwrap();
        // Header, frame header, snapshot generation, "BASE"; zeros after it if preallocated.
        let end = 32 + 8 + 8 + 4;
        let expected_len = if preallocate > 0 { preallocate } else { 4096 };
        assert_eq!(file_len(&segment), expected_len);
        let bits = (32..end).flat_map(|byte| (0..8).map(move |bit| (byte, bit)));
        expect_corrupt_for_flips(tmp.path(), &segment, 32, bits);
        let bytes = fs::read(&segment).unwrap();
        zero_from(&segment, 32);
        let reason = assert_corrupt(try_open(tmp.path()), &segment, 32);
        assert_eq!(reason, Corruption::BaseRecord(FrameError::ZeroLength));
        fs::write(&segment, &bytes).unwrap();
        truncate(&segment, end - 1);
        let reason = assert_corrupt(try_open(tmp.path()), &segment, 32);
        assert_eq!(
            reason,
            Corruption::BaseRecord(FrameError::PastEnd { len: 12 })
        );
    }
}

#[test]
fn a_missing_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 150, 1 << 20, 30);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 4);
    let last_seq = segs.len() as u64 - 1;
    fs::remove_file(&segs[2]).unwrap();
    let reason = assert_corrupt(try_open(tmp.path()), &segs[2], 0);
    assert_eq!(reason, Corruption::MissingSegment { last_seq });
    fs::remove_file(&segs[0]).unwrap();
    let reason = assert_corrupt(try_open(tmp.path()), &segs[0], 0);
    assert_eq!(reason, Corruption::MissingSegment { last_seq });
}

#[test]
fn a_damaged_or_missing_snapshot_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 64 << 20, 1 << 20, 3);
    let snapshot = tmp.path().join("snapshot-0000000000000002.snap");
    let len = fs::metadata(&snapshot).unwrap().len();
    for byte in 0..len {
        flip_bit(&snapshot, byte, (byte % 8) as u8);
        let offset = if byte < 24 { 0 } else { 24 };
        let reason = assert_corrupt(try_open(tmp.path()), &snapshot, offset);
        let in_header = matches!(reason, Corruption::Header(_));
        assert_eq!(in_header, byte < 24, "byte {byte}: {reason:?}");
        flip_bit(&snapshot, byte, (byte % 8) as u8);
    }
    let bytes = fs::read(&snapshot).unwrap();
    fs::write(&snapshot, [&bytes[..], b"x"].concat()).unwrap();
    let reason = assert_corrupt(try_open(tmp.path()), &snapshot, len);
    assert_eq!(reason, Corruption::SnapshotTrailingBytes { count: 1 });
    fs::write(&snapshot, &bytes[..bytes.len() - 1]).unwrap();
    let reason = assert_corrupt(try_open(tmp.path()), &snapshot, 24);
    assert!(
        matches!(
            reason,
            Corruption::SnapshotFrame(FrameError::PastEnd { .. })
        ),
        "{reason:?}"
    );
    fs::remove_file(&snapshot).unwrap();
    let reason = assert_corrupt(try_open(tmp.path()), &snapshot, 0);
    assert_eq!(reason, Corruption::SnapshotMissing);
}

#[test]
fn a_snapshot_without_any_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 64 << 20, 1 << 20, 3);
    for segment in segments(tmp.path()) {
        fs::remove_file(segment).unwrap();
    }
    let snapshot = tmp.path().join("snapshot-0000000000000002.snap");
    let reason = assert_corrupt(try_open(tmp.path()), &snapshot, 0);
    assert_eq!(reason, Corruption::SnapshotWithoutWal);
}
