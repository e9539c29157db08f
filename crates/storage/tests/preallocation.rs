//! The zero tail: the last segment runs ahead of its records with preallocated zeros, grown a
//! chunk at a time; recovery reads zeros after the records as free space, a torn batch in
//! them as a torn tail, and zeros inside durable data as corruption.

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
fn a_torn_batch_in_the_preallocated_space_is_cut_off() {
    // Chunks of 512 bytes and a batch of ~800: the batch crosses chunk boundaries, so the
    // crash also catches it while the next chunk is being added.
    let opts = opts_with(64 << 20, 512);
    let tmp = tempfile::tempdir().unwrap();
    let before = tmp.path().join("before");
    let (mut storage, _) = open_opts(&before, &opts);
    replace(&mut storage, b"base|", None);
    let durable = sized_records(0, 10, 30);
    append_batch(&mut storage, &durable);
    let synced = storage.wal_tail().synced_bytes;
    drop(storage);
    // The same directory once the next batch is synced: where its bytes go.
    let after = copy_dir(&before, &tmp.path().join("after"));
    let (mut storage, _) = open_opts(&after, &opts);
    let batch = sized_records(10, 20, 33);
    append_batch(&mut storage, &batch);
    let written = storage.wal_tail().written_bytes;
    drop(storage);
    let name = last_segment(&before).file_name().unwrap().to_owned();
    let (old_file, new_file) = (
        fs::read(before.join(&name)).unwrap(),
        fs::read(after.join(&name)).unwrap(),
    );
    assert_eq!(old_file.len() as u64 % 512, 0);
    assert!(
        new_file.len() > old_file.len(),
        "the batch extended the file"
    );
    assert!(old_file[synced as usize..].iter().all(|&b| b == 0));
    let base_state = [b"base|".to_vec(), durable.concat()].concat();
    for kept in 1..written - synced {
        let end = (synced + kept) as usize;
        // Part of the batch, then zeros: in the file's old length (the new length did not
        // reach the disk, or writes past it were lost), or in its new one.
        let old_length = [&new_file[..end], &old_file[end.min(old_file.len())..]].concat();
        let mut new_length = new_file.clone();
        new_length[end..].fill(0);
        for (what, bytes) in [("old length", old_length), ("new length", new_length)] {
            let what = format!("{what}, {kept} bytes of the batch");
            let dir = tmp.path().join("crash");
            copy_dir(&before, &dir);
            fs::write(dir.join(&name), &bytes).unwrap();
            let whole = batch
                .iter()
                .scan(synced, |at, r| {
                    *at += 8 + r.len() as u64;
                    Some(*at)
                })
                .take_while(|&record_end| record_end <= synced + kept)
                .count();
            let expected = [base_state.clone(), batch[..whole].concat()].concat();
            let (mut storage, recovered) = open_opts(&dir, &opts);
            assert_eq!(recovered.state, expected, "{what}");
            // Torn: cut back to the last whole record; at a record boundary: all kept.
            let valid_end = storage.wal_tail().written_bytes;
            let len = file_len(&dir.join(&name));
            if valid_end == synced + kept {
                assert_eq!(len, bytes.len() as u64, "{what}: free space kept");
            } else {
                assert_eq!(len, valid_end, "{what}: torn tail cut off");
            }
            // Appends after the crash follow the valid records, over a chunk boundary.
            let more = sized_records(100, 30, 21);
            append_batch(&mut storage, &more);
            drop(storage);
            let (mut storage, recovered) = open_opts(&dir, &opts);
            assert_eq!(recovered.state, [expected.clone(), more.concat()].concat());
            append(&mut storage, b"|last");
            storage.sync().unwrap();
            drop(storage);
            let recovered = open_opts(&dir, &opts).1;
            let all = [expected, more.concat(), b"|last".to_vec()].concat();
            assert_eq!(recovered.state, all, "{what}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn records_ending_exactly_at_a_chunk_boundary() {
    let opts = opts_with(64 << 20, 4096);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dir");
    let (mut storage, _) = open_opts(&dir, &opts);
    let segment = last_segment(&dir);
    // A new directory's segment: header (32) and an empty base record (16), then zeros.
    assert_eq!(storage.wal_tail().written_bytes, 48);
    assert_eq!(file_len(&segment), 4096);
    let first = vec![7u8; 4096 - 48 - 8];
    append(&mut storage, &first);
    storage.sync().unwrap();
    assert_eq!(storage.wal_tail().written_bytes, 4096);
    assert_eq!(
        file_len(&segment),
        4096,
        "no zeros needed past the boundary"
    );
    drop(storage);
    let (mut storage, recovered) = open_opts(&dir, &opts);
    assert_eq!(recovered.state, first);
    // A crash while writing the next batch past the end of the file.
    let torn = copy_dir(&dir, &tmp.path().join("torn"));
    let torn_segment = torn.join(segment.file_name().unwrap());
    let bytes = fs::read(&torn_segment).unwrap();
    fs::write(&torn_segment, [&bytes[..], &[5, 0, 0, 0, 9]].concat()).unwrap();
    let (_, recovered) = open_opts(&torn, &opts);
    assert_eq!(recovered.state, first);
    assert_eq!(file_len(&torn_segment), 4096);
    // The next record starts the next chunk.
    append(&mut storage, b"second");
    storage.sync().unwrap();
    assert_eq!(file_len(&segment), 8192);
    drop(storage);
    let (_, recovered) = open_opts(&dir, &opts);
    assert_eq!(recovered.state, [&first[..], b"second"].concat());
}

#[test]
fn reopening_and_appending_across_chunk_extensions() {
    const CHUNK: u64 = 1024;
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
            let written = storage.wal_tail().written_bytes;
            let len = file_len(&segment);
            // Grown only when the batch did not fit, to the chunk boundary after it.
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
    assert!(file_len(&last_segment(tmp.path())) >= 5 * CHUNK);
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
            starts.push(storage.wal_tail().written_bytes);
            append(&mut storage, &record);
        }
        // The last payload ends in zeros, which run into the zero tail if there is one: the
        // last record is found past the end of the non-zero data.
        let last_start = storage.wal_tail().written_bytes;
        append(&mut storage, b"last record\0\0\0\0\0\0\0\0\0\0\0\0");
        storage.sync().unwrap();
        drop(storage);
        let segment = last_segment(tmp.path());
        let original = fs::read(&segment).unwrap();
        for (i, &start) in starts.iter().enumerate() {
            for (from, len) in [
                (0, 4),
                (0, 8),
                (0, 64),
                (0, 200),
                (3, 8),
                (9, 120),
                (40, 64),
            ] {
                let (a, b) = (start + from, start + from + len);
                if b > last_start {
                    continue; // zeros to the end of the data read as free space: a blind spot
                }
                let mut bytes = original.clone();
                bytes[a as usize..b as usize].fill(0);
                fs::write(&segment, &bytes).unwrap();
                let what = format!("record {i}, zeros at {a}..{b}, preallocate {preallocate}");
                let result = DiskStorage::open(tmp.path(), opts_with(64 << 20, preallocate));
                match &result {
                    Err(e) => assert!(e.to_string().contains("valid record follows"), "{e}"),
                    Ok(_) => panic!("{what}: opened"),
                }
                assert_corrupt(result.map(|_| ()), &segment, start);
            }
        }
        fs::write(&segment, &original).unwrap();
        assert_eq!(try_open(tmp.path()).unwrap().state.len(), 4 + 12 * 70 + 23);
    }
}

#[test]
fn closed_segments_are_trimmed_and_no_zeros_go_past_the_segment_size() {
    let opts = opts_with(1000, 256);
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_opts(tmp.path(), &opts);
    let mut ends = std::collections::BTreeMap::new();
    let mut expected = Vec::new();
    for batch in 0..40 {
        let records = sized_records(batch * 4, 4, 30 + batch % 5);
        for r in &records {
            append(&mut storage, r);
            let tail = storage.wal_tail();
            ends.insert(tail.path, tail.written_bytes);
        }
        storage.sync().unwrap();
        expected.extend(records.concat());
    }
    drop(storage);
    let segs = segments(tmp.path());
    assert!(segs.len() > 5);
    for s in &segs[..segs.len() - 1] {
        assert_eq!(file_len(s), ends[s], "{} ends at its records", s.display());
    }
    let last = segs.last().unwrap();
    let len = file_len(last);
    assert!(
        len <= 1000 && (len.is_multiple_of(256) || len == 1000),
        "{len}"
    );
    assert!(len > ends[last], "the last segment has a zero tail");
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
        let written = storage.wal_tail().written_bytes;
        let len = file_len(&segment);
        match (opts.preallocate_bytes, round) {
            // Preallocated to the first chunk boundary.
            (0, 0) => assert_eq!(len, written, "round {round}"),
            (0, _) => assert_eq!(len, len_before, "round {round}: writes into the zeros"),
            (_, _) => assert_eq!(len, 1 << 20, "round {round}"),
        }
    }
    assert_eq!(open_opts(tmp.path(), &on).1.state, expected);
}
