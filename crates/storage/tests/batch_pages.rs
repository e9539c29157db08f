//! A group-commit batch is all or nothing across a power loss: whatever subset of the 4 KiB
//! pages of the last, unsynced batch reached the disk (a file system persists the pages of an
//! overwrite in any order), recovery gives exactly the state of the previous sync, or the
//! whole batch when every page is there. Never corruption, never part of the batch.
//!
//! The crash states are built from the directory before the batch (as of the previous sync)
//! and after it: each page the batch changed comes from one or the other. Exhaustive for
//! batches of up to 10 pages; random subsets (seeded) for larger ones.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use flotilla_storage::StorageOptions;

const PAGE: usize = 4096;

/// `count` distinct records of `len` bytes, none of them zero bytes (a torn page of them
/// could otherwise pass for free space).
fn records(from: usize, count: usize, len: usize) -> Vec<Vec<u8>> {
    (from..from + count)
        .map(|i| (0..len).map(|j| (i * 13 + j * 7) as u8 | 1).collect())
        .collect()
}

/// The two files of the last segment, and the states, before and after the last batch.
struct Crash {
    name: std::ffi::OsString,
    before: Vec<u8>,
    after: Vec<u8>,
    before_state: Vec<u8>,
    after_state: Vec<u8>,
    /// Indexes of the pages the batch changed.
    pages: Vec<usize>,
}

/// Writes some synced batches into `dir`, copies it to `before`, then syncs one more batch of
/// `batch` records of `len` bytes.
fn setup(dir: &Path, before_dir: &Path, opts: &StorageOptions, batch: usize, len: usize) -> Crash {
    let (mut storage, _) = open_opts(dir, opts);
    replace(&mut storage, b"base|", Some(b"snapshot"));
    let mut state = b"base|".to_vec();
    for b in 0..3 {
        for r in records(b * 10, 3 + b, 50 + b * 100) {
            append(&mut storage, &r);
            state.extend_from_slice(&r);
        }
        storage.sync().unwrap();
    }
    drop(storage);
    // Reopen (what a restart does) so that the batch goes to the segment appends continue in.
    let (mut storage, recovered) = open_opts(dir, opts);
    assert_eq!(recovered.state, state);
    let name = storage.wal_tail().path.file_name().unwrap().to_owned();
    copy_dir(dir, before_dir);
    let before_state = state.clone();
    for r in records(1000, batch, len) {
        append(&mut storage, &r);
        state.extend_from_slice(&r);
    }
    storage.sync().unwrap();
    assert_eq!(storage.wal_tail().path.file_name().unwrap(), name);
    drop(storage);
    let before = fs::read(before_dir.join(&name)).unwrap();
    let after = fs::read(dir.join(&name)).unwrap();
    let pages = (0..after.len().max(before.len()).div_ceil(PAGE))
        .filter(|&p| page(&before, p) != page(&after, p))
        .collect();
    Crash {
        name,
        before,
        after,
        before_state,
        after_state: state,
        pages,
    }
}

/// Page `p` of `bytes`, zero-filled past its end (what a file grown over it reads).
fn page(bytes: &[u8], p: usize) -> Vec<u8> {
    let mut out = vec![0; PAGE];
    let (start, end) = (
        (p * PAGE).min(bytes.len()),
        ((p + 1) * PAGE).min(bytes.len()),
    );
    out[..end - start].copy_from_slice(&bytes[start..end]);
    out
}

/// Opens the crash state keeping the pages of `kept` (a bit per entry of `pages`); with
/// `old_length`, the file keeps its length from before the batch (the new length was lost).
fn check(
    crash: &Crash,
    tmp: &Path,
    before_dir: &Path,
    opts: &StorageOptions,
    kept: u64,
    old_length: bool,
) {
    let len = if old_length {
        crash.before.len()
    } else {
        crash.after.len()
    };
    let mut bytes = crash.before.clone();
    bytes.resize(crash.after.len().max(crash.before.len()), 0);
    for (i, &p) in crash.pages.iter().enumerate() {
        if kept & (1 << i) != 0 {
            let end = ((p + 1) * PAGE).min(bytes.len());
            bytes[p * PAGE..end].copy_from_slice(&page(&crash.after, p)[..end - p * PAGE]);
        }
    }
    bytes.truncate(len);
    let dir = copy_dir(before_dir, &tmp.join("crash"));
    fs::write(dir.join(&crash.name), &bytes).unwrap();
    let all = kept == (1 << crash.pages.len()) - 1 && !old_length;
    let expected = if all || bytes == crash.after {
        &crash.after_state
    } else {
        &crash.before_state
    };
    let what = format!(
        "kept pages {kept:#b} of {:?}, old length {old_length}, {opts:?}",
        crash.pages
    );
    match flotilla_storage::DiskStorage::open(&dir, opts.clone()) {
        Ok((mut storage, recovered)) => {
            assert!(
                recovered.state == *expected,
                "{what}: recovered {} bytes, expected {} (before {}, after {})",
                recovered.state.len(),
                expected.len(),
                crash.before_state.len(),
                crash.after_state.len()
            );
            assert_eq!(
                recovered.snapshot.to_bytes().unwrap().to_vec(),
                b"snapshot",
                "{what}"
            );
            // Appends after the crash follow the recovered state.
            append(&mut storage, b"after the crash");
            storage.sync().unwrap();
            drop(storage);
            let again = open_opts(&dir, opts).1.state;
            assert_eq!(
                again,
                [&expected[..], b"after the crash"].concat(),
                "{what}"
            );
        }
        Err(e) => panic!("{what}: {e}"),
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// A small deterministic generator for the random subsets (xorshift64*).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn run(opts: &StorageOptions, batch: usize, len: usize, random: Option<usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let crash = setup(
        &tmp.path().join("dir"),
        &tmp.path().join("before"),
        opts,
        batch,
        len,
    );
    let n = crash.pages.len();
    assert!(n >= 1);
    let masks: Vec<u64> = match random {
        None => {
            assert!(n <= 10, "{n} pages: too many for every subset");
            (0..1u64 << n).collect()
        }
        Some(count) => {
            let mut seed = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
            let full = if n >= 64 { u64::MAX } else { (1 << n) - 1 };
            let mut m: Vec<u64> = (0..count).map(|_| next(&mut seed) & full).collect();
            // Every page but one, and one page alone: the cases most likely to mislead.
            m.extend((0..n).map(|i| full & !(1 << i)));
            m.extend((0..n).map(|i| 1 << i));
            m.extend([0, full]);
            m
        }
    };
    let lengths: &[bool] = if opts.preallocate_bytes == 0 {
        &[false, true]
    } else {
        &[false]
    };
    for &kept in &masks {
        for &old_length in lengths {
            check(
                &crash,
                tmp.path(),
                &tmp.path().join("before"),
                opts,
                kept,
                old_length,
            );
        }
    }
}

#[test]
fn every_subset_of_the_pages_of_a_small_last_batch_is_all_or_nothing() {
    for preallocate in PREALLOCATIONS {
        let opts = opts_with(64 << 20, preallocate);
        // One page, a few, and ~9 pages of records crossing page boundaries.
        run(&opts, 3, 100, None);
        run(&opts, 20, 700, None);
        run(&opts, 40, 850, None);
    }
}

#[test]
fn random_subsets_of_the_pages_of_a_large_last_batch_are_all_or_nothing() {
    for preallocate in PREALLOCATIONS {
        let opts = opts_with(64 << 20, preallocate);
        run(&opts, 120, 1500, Some(150));
    }
}
