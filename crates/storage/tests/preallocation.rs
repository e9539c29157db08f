//! The zero tail: the last segment runs ahead of its batches with preallocated zeros, grown a
//! chunk at a time (and to a page boundary); recovery reads zeros after the batches as free
//! space, and zeros inside durable data as corruption. (Torn batches in the zeros:
//! `batch_pages.rs` and `torn_tail.rs`; format 2 moved the v1 tests of torn records there.)

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use flotilla_storage::{DiskStorage, StorageOptions};

/// Appends `records` as one batch and syncs it.
fn append_batch(storage: &mut DiskStorage, records: &[Vec<u8>]) {
    records.iter().for_each(|r| append(storage, r));
    storage.sync().unwrap();
}

/// Records of `len` bytes each, distinct.
fn sized_records(from: usize, count: usize, len: usize) -> Vec<Vec<u8>> {
    (from..from + count)
        .map(|i| (0..len).map(|j| (i * 13 + j) as u8 | 1).collect())
        .collect()
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().unwrap()
}

#[test]
fn reopening_and_appending_across_chunk_extensions() {
    const CHUNK: u64 = 16 << 10;
    let opts = opts_with(64 << 20, CHUNK);
    let tmp = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut next = 0;
    for round in 0..6 {
        let (mut storage, recovered) = open_opts(tmp.path(), &opts);
        assert_eq!(recovered.state, expected, "round {round}");
        let segment = storage.wal_tail().path;
        for _ in 0..5 {
            let records = sized_records(next, 3, 40 + round * 7);
            next += 3;
            let before = file_len(&segment);
            append_batch(&mut storage, &records);
            expected.extend(records.concat());
            let written = storage.wal_tail().next_batch;
            let len = file_len(&segment);
            // Grown only when the batch (to its page's end) did not fit, to the chunk
            // boundary after it.
            if written <= before {
                assert_eq!(
                    len, before,
                    "round {round}: a batch that fits grows nothing"
                );
            } else {
                assert_eq!(len, written.div_ceil(CHUNK) * CHUNK, "round {round}");
            }
        }
        // Staged but never synced: lost at the reopen, harmlessly.
        append(&mut storage, b"never synced");
    }
    assert_eq!(open_opts(tmp.path(), &opts).1.state, expected);
}

#[test]
fn a_zeroed_block_in_durable_data_followed_by_valid_records_is_corruption() {
    for preallocate in PREALLOCATIONS {
        let tmp = tempfile::tempdir().unwrap();
        let (mut storage, _) = open_opts(tmp.path(), &opts_with(64 << 20, preallocate));
        replace(&mut storage, b"base", None);
        let mut starts = Vec::new();
        for record in sized_records(0, 12, 70) {
            starts.push(storage.wal_tail().next_batch);
            append(&mut storage, &record);
            storage.sync().unwrap();
        }
        // The last payload ends in zeros, which run into the zero tail if there is one.
        let last_start = storage.wal_tail().next_batch;
        append(&mut storage, b"last record\0\0\0\0\0\0\0\0\0\0\0\0");
        storage.sync().unwrap();
        drop(storage);
        let segment = last_segment(tmp.path());
        let original = fs::read(&segment).unwrap();
        for (i, &start) in starts.iter().enumerate() {
            for (from, len) in [
                (0, 4),
                (0, 16),
                (0, 64),
                (0, 4096),
                (3, 8),
                (9, 60),
                (40, 40),
            ] {
                let (a, b) = (start + from, start + from + len);
                if b > last_start {
                    continue; // damage to the last batch reads as a torn batch: a blind spot
                }
                let mut bytes = original.clone();
                bytes[a as usize..b as usize].fill(0);
                fs::write(&segment, &bytes).unwrap();
                let what = format!("record {i}, zeros at {a}..{b}, preallocate {preallocate}");
                let result = DiskStorage::open(tmp.path(), opts_with(64 << 20, preallocate));
                match &result {
                    Err(e) => assert!(e.to_string().contains("valid batch follows"), "{e}"),
                    Ok(_) => panic!("{what}: opened"),
                }
                assert_corrupt(result.map(|_| ()), &segment, start);
            }
        }
        fs::write(&segment, &original).unwrap();
        assert_eq!(try_open(tmp.path()).unwrap().state.len(), 4 + 12 * 70 + 23);
        // (The open rewrote the directory as a new generation, so it is the last one here.)
    }
}

#[test]
fn closed_segments_are_trimmed_and_no_zeros_go_past_the_segment_size() {
    let opts = opts_with(20_000, 6000);
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_opts(tmp.path(), &opts);
    let mut ends = std::collections::BTreeMap::new();
    let mut expected = Vec::new();
    for batch in 0..40 {
        let records = sized_records(batch * 4, 4, 300 + batch % 5);
        for r in &records {
            append(&mut storage, r);
        }
        storage.sync().unwrap();
        let tail = storage.wal_tail();
        ends.insert(tail.path, tail.next_batch);
        expected.extend(records.concat());
    }
    drop(storage);
    let segs = segments(tmp.path());
    assert!(segs.len() > 5);
    for s in &segs[..segs.len() - 1] {
        assert_eq!(
            file_len(s),
            ends[s],
            "{} ends at its batches' page",
            s.display()
        );
    }
    let last = segs.last().unwrap();
    let len = file_len(last);
    // Up to the segment size, or the end of the page a batch that fits it ends in.
    assert!(len <= 20_480 && len.is_multiple_of(4096), "{len}");
    assert!(
        len >= ends[last],
        "the last segment ends at or after its batches' page"
    );
    assert_eq!(open_opts(tmp.path(), &opts).1.state, expected);
}

#[test]
fn directories_switch_between_preallocation_on_and_off() {
    let (on, off) = (StorageOptions::default(), opts_with(64 << 20, 0));
    let tmp = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    // Written without a zero tail (as before preallocation existed), then alternately.
    for (round, opts) in [&off, &on, &off, &on, &off].into_iter().enumerate() {
        let (mut storage, recovered) = open_opts(tmp.path(), opts);
        assert_eq!(recovered.state, expected, "round {round}");
        let segment = storage.wal_tail().path;
        let len_before = file_len(&segment);
        let records = sized_records(round * 10, 10, 50);
        append_batch(&mut storage, &records);
        expected.extend(records.concat());
        let written = storage.wal_tail().next_batch;
        let len = file_len(&segment);
        // Each open starts a new generation: its segment is preallocated, or not.
        match opts.preallocate_bytes {
            0 => assert_eq!(len, written, "round {round}: to the batch's page"),
            _ => assert_eq!(len, 1 << 20, "round {round}: to the first chunk boundary"),
        }
        assert!(len_before <= len);
    }
    assert_eq!(open_opts(tmp.path(), &on).1.state, expected);
}
