//! Injected I/O failures (through `StorageOptions::faults`): a failed fsync poisons the
//! storage and the next open rewrites what it recovers into a new generation, fsynced,
//! instead of trusting the page cache ("fsyncgate"); a full disk is an error the caller can
//! wait out (nothing durable changes, `sync` retries everything staged), never corruption.

mod common;

use std::fs;
use std::path::Path;

use common::hook::*;
use common::*;
use flotilla_node::Save;
use flotilla_storage::{DiskStorage, StorageError, StorageOptions};

fn rule(kind: Kind, name: &str, skip: usize, errno: i32) -> Rule {
    Rule {
        kind,
        name: name.to_string(),
        skip,
        times: 1,
        errno,
    }
}

/// A storage in `dir` with some synced appends; returns it and its state.
fn written(dir: &Path, opts: &StorageOptions) -> (DiskStorage, Vec<u8>) {
    let (mut storage, _) = open_opts(dir, opts);
    replace(&mut storage, b"base|", Some(b"snapshot"));
    let mut state = b"base|".to_vec();
    for i in 0..10 {
        append(&mut storage, &record(i));
        state.extend(record(i));
        if i % 3 == 0 {
            storage.sync().unwrap();
        }
    }
    storage.sync().unwrap();
    (storage, state)
}

fn generation_of(segment: &Path) -> String {
    segment.file_name().unwrap().to_str().unwrap()[4..20].to_string()
}

#[test]
fn a_failed_fsync_poisons_and_the_reopen_rewrites_a_new_generation() {
    let hook = Hook::new();
    let opts = with_hook(StorageOptions::default(), &hook);
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, state) = written(tmp.path(), &opts);
    let old_segment = storage.wal_tail().path;
    hook.fail(rule(Kind::Sync, "wal-", 0, EIO));
    append(&mut storage, b"never durable");
    let err = storage.sync().unwrap_err();
    assert!(
        matches!(err, StorageError::Io { .. }) && !err.is_disk_full(),
        "{err}"
    );
    assert!(hook.spent());
    assert!(storage.is_poisoned());
    // Every later call fails, even those that would write nothing.
    assert!(matches!(storage.sync(), Err(StorageError::Poisoned { .. })));
    let save = Save {
        state: b"x".to_vec(),
        snapshot: None,
        append: true,
        local_tail: None,
    };
    assert!(matches!(
        storage.stage(&save),
        Err(StorageError::Poisoned { .. })
    ));
    let replacement = Save {
        append: false,
        ..save
    };
    assert!(matches!(
        storage.stage(&replacement),
        Err(StorageError::Poisoned { .. })
    ));
    drop(storage);

    // The restart: the batch whose fsync failed is in the page cache, readable. The open
    // must not trust it: it writes what it recovered into a new file and fsyncs that.
    hook.take_log();
    let (storage, recovered) = open_opts(tmp.path(), &opts);
    assert!(
        recovered.state == [&state[..], b"never durable"].concat() || recovered.state == state,
        "recovered {} bytes",
        recovered.state.len()
    );
    assert_eq!(recovered.snapshot.to_bytes().unwrap().to_vec(), b"snapshot");
    let new_segment = storage.wal_tail().path;
    assert_ne!(new_segment, old_segment, "the old file is not reused");
    assert!(generation_of(&new_segment) > generation_of(&old_segment));
    assert!(new_segment.exists());
    assert!(!old_segment.exists(), "the old generation is removed");
    // Written in full and fsynced (as a .tmp, before its rename) during the open.
    let new_name = new_segment
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let tmp_name = format!("{new_name}.tmp");
    let log = hook.take_log();
    let written: u64 = log
        .iter()
        .filter(|s| s.kind == Kind::Write && s.name == tmp_name)
        .map(|s| s.len)
        .sum();
    assert!(written >= recovered.state.len() as u64, "{log:?}");
    let synced = log
        .iter()
        .position(|s| s.kind == Kind::Sync && s.name == tmp_name);
    let last_write = log
        .iter()
        .rposition(|s| s.kind == Kind::Write && s.name == tmp_name);
    assert!(synced > last_write, "fsynced after its last write: {log:?}");
    assert_eq!(
        names(tmp.path()),
        ["snapshot-0000000000000002.snap", new_name.as_str()]
    );
    drop(storage);
    assert_eq!(try_open(tmp.path()).unwrap().state, recovered.state);
}

#[test]
fn a_failed_write_that_is_not_disk_full_poisons() {
    let hook = Hook::new();
    let opts = with_hook(StorageOptions::default(), &hook);
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, state) = written(tmp.path(), &opts);
    hook.fail(rule(Kind::Write, "wal-", 0, EIO));
    append(&mut storage, b"lost");
    assert!(!storage.sync().unwrap_err().is_disk_full());
    assert!(matches!(storage.sync(), Err(StorageError::Poisoned { .. })));
    drop(storage);
    // The half-written batch reads as a torn tail.
    assert_eq!(open_opts(tmp.path(), &opts).1.state, state);
}

/// Fails one operation with `errno` (a full disk), expects `sync` to fail with a disk-full
/// error that leaves the storage usable, checks a crash at that point recovers the state of
/// the previous sync, then lets space return: the retried sync succeeds and a reopen
/// recovers everything staged. Returns false, having checked nothing, if the rule matched no
/// operation of the sync (a batch that does not extend the file makes one write, not two).
fn disk_full_then_space_returns(
    opts: &StorageOptions,
    hook: &Hook,
    fail: Rule,
    batch: usize,
) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, state) = written(tmp.path(), opts);
    let what = format!("{fail:?}, {opts:?}");
    hook.fail(fail);
    let mut staged = Vec::new();
    for i in 100..100 + batch {
        append(&mut storage, &record(i));
        staged.extend(record(i));
    }
    let err = match storage.sync() {
        Ok(_) if !hook.spent() => {
            hook.fail(Rule {
                times: 0,
                ..rule(Kind::Create, "", 0, 0)
            });
            return false;
        }
        Ok(stats) => panic!("{what}: the injected failure was ignored: {stats:?}"),
        Err(e) => e,
    };
    assert!(err.is_disk_full(), "{what}: {err}");
    assert!(hook.spent(), "{what}");
    assert!(!storage.is_poisoned(), "{what}");
    assert!(
        !names(tmp.path()).iter().any(|n| n.ends_with(".tmp")),
        "{what}: no partial file"
    );
    // A crash now (a copy of the files as they are): what was durable is there, and no
    // half-written batch reads as corruption. Whole batches of segments the failed sync
    // closed may be durable too: a prefix of the staged records.
    let elsewhere = tempfile::tempdir().unwrap();
    let crash = copy_dir(tmp.path(), &elsewhere.path().join("crash"));
    let recovered = try_open(&crash)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .state;
    assert!(recovered.starts_with(&state), "{what}");
    assert!(staged.starts_with(&recovered[state.len()..]), "{what}");
    // More is staged while the disk is full; then space returns.
    append(&mut storage, b"|while full");
    let stats = storage
        .sync()
        .unwrap_or_else(|e| panic!("{what}: retry: {e}"));
    assert_eq!(stats.records, batch as u64 + 1, "{what}");
    append(&mut storage, b"|after");
    storage.sync().unwrap();
    drop(storage);
    let all = [&state[..], &staged, b"|while full", b"|after"].concat();
    assert_eq!(open_opts(tmp.path(), opts).1.state, all, "{what}");
    true
}

#[test]
fn disk_full_on_a_write_or_an_fsync_is_retried_by_the_next_sync() {
    let mut applied = 0;
    for preallocate in [1 << 20, 0, 8192] {
        for errno in [ENOSPC, EDQUOT] {
            // The zeros extending the file, or the batch; its fdatasync.
            for (kind, skip) in [(Kind::Write, 0), (Kind::Write, 1), (Kind::Sync, 0)] {
                let hook = Hook::new();
                let opts = with_hook(opts_with(64 << 20, preallocate), &hook);
                // Small batches, and one that extends the preallocated space.
                for batch in [1, 5, 400] {
                    let fail = rule(kind, "wal-", skip, errno);
                    applied += usize::from(disk_full_then_space_returns(&opts, &hook, fail, batch));
                }
            }
        }
    }
    assert!(
        applied >= 40,
        "only {applied} cases hit the injected failure"
    );
}

#[test]
fn disk_full_while_creating_the_next_segment_is_retried_by_the_next_sync() {
    for preallocate in [4096, 0, 1 << 20] {
        let hook = Hook::new();
        // Small segments: the batch rotates through several.
        let opts = with_hook(opts_with(12 << 10, preallocate), &hook);
        // Creating the first or second new segment, writing its header, fsyncing it.
        for (kind, skip) in [
            (Kind::Create, 0),
            (Kind::Create, 1),
            (Kind::Write, 1),
            (Kind::Sync, 1),
        ] {
            let fail = rule(kind, ".log.tmp", skip, ENOSPC);
            let what = format!("{fail:?} {preallocate}");
            assert!(
                disk_full_then_space_returns(&opts, &hook, fail, 2000),
                "{what}"
            );
        }
    }
}

#[test]
fn disk_full_in_a_replacement_is_retried_by_the_next_sync() {
    for target in ["snapshot-", "wal-0000000000000004-0000000000000000"] {
        for kind in [Kind::Create, Kind::Write, Kind::Sync] {
            let hook = Hook::new();
            let opts = with_hook(StorageOptions::default(), &hook);
            let tmp = tempfile::tempdir().unwrap();
            let (mut storage, state) = written(tmp.path(), &opts);
            drop(storage);
            // Generation 3 after this open; the replacement writes generation 4.
            let (s, _) = open_opts(tmp.path(), &opts);
            storage = s;
            hook.fail(rule(kind, target, 0, ENOSPC));
            let save = Save {
                state: b"new base|".to_vec(),
                snapshot: Some(flotilla_node::Bytes::from_static(b"new snapshot").into()),
                append: false,
                local_tail: None,
            };
            let what = format!("{target} {kind:?}");
            let err = storage.stage(&save).unwrap_err();
            assert!(err.is_disk_full(), "{what}: {err}");
            assert!(!storage.is_poisoned());
            assert_eq!(
                storage.state_size(),
                9,
                "{what}: the replacement counts as staged"
            );
            let left = names(tmp.path());
            assert!(
                !left.iter().any(|n| n.contains("0000000000000004")),
                "{what}: {left:?}"
            );
            let elsewhere = tempfile::tempdir().unwrap();
            let crash = copy_dir(tmp.path(), &elsewhere.path().join("crash"));
            assert_eq!(try_open(&crash).unwrap().state, state, "{what}");
            append(&mut storage, b"after");
            storage.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
            drop(storage);
            let recovered = open_opts(tmp.path(), &opts).1;
            assert_eq!(recovered.state, b"new base|after", "{what}");
            assert_eq!(
                recovered.snapshot.to_bytes().unwrap().to_vec(),
                b"new snapshot",
                "{what}"
            );
        }
    }
}

#[test]
fn no_batch_write_touches_a_page_holding_synced_data() {
    // A torn rewrite of a page (or sector) that holds synced records could damage them:
    // batches start on a fresh page, and nothing else is written below it either.
    for preallocate in [0, 4096, 1 << 20] {
        let hook = Hook::new();
        let opts = with_hook(opts_with(64 << 20, preallocate), &hook);
        let tmp = tempfile::tempdir().unwrap();
        let (mut storage, _) = open_opts(tmp.path(), &opts);
        let mut seed = 7u64;
        for round in 0..300 {
            let tail = storage.wal_tail();
            let name = tail.path.file_name().unwrap().to_str().unwrap().to_string();
            let first_free_page = tail.synced_bytes.div_ceil(4096) * 4096;
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for i in 0..1 + (seed >> 60) as usize {
                let len = 1 + ((seed >> (i * 5 % 40)) % 3000) as usize;
                append(&mut storage, &vec![(round % 251) as u8 | 1; len]);
            }
            hook.take_log();
            storage.sync().unwrap();
            for w in hook
                .take_log()
                .iter()
                .filter(|s| s.kind == Kind::Write && s.name == name)
            {
                assert!(
                    w.offset >= first_free_page,
                    "round {round}, {preallocate}: a write at {} below page {first_free_page}, synced up to {}",
                    w.offset,
                    tail.synced_bytes
                );
            }
        }
    }
}

/// Builds, by hand, a directory of format 1 (what builds before batches wrote): generation
/// 2, a snapshot, segment 0 with the base record and two records, segment 1 with records,
/// a zero tail and a torn record.
fn format_1_directory(dir: &Path) -> Vec<u8> {
    fn header(generation: u64, seq: u64) -> Vec<u8> {
        let mut h = b"FLOTWAL\0".to_vec();
        h.extend(1u32.to_le_bytes());
        h.extend(generation.to_le_bytes());
        h.extend(seq.to_le_bytes());
        let crc = crc32c::crc32c(&h);
        h.extend(crc.to_le_bytes());
        h
    }
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend(crc32c::crc32c(payload).to_le_bytes());
        f.extend(payload);
        f
    }
    fs::create_dir_all(dir).unwrap();
    let mut snapshot = b"FLOTSNP\0".to_vec();
    snapshot.extend(1u32.to_le_bytes());
    snapshot.extend(2u64.to_le_bytes());
    let crc = crc32c::crc32c(&snapshot);
    snapshot.extend(crc.to_le_bytes());
    snapshot.extend(frame(b"old snapshot"));
    fs::write(dir.join("snapshot-0000000000000002.snap"), snapshot).unwrap();
    let base = [&2u64.to_le_bytes()[..], b"base|"].concat();
    let seg0 = [header(2, 0), frame(&base), frame(b"one|"), frame(b"two|")].concat();
    fs::write(dir.join("wal-0000000000000002-0000000000000000.log"), seg0).unwrap();
    let mut seg1 = [header(2, 1), frame(b"three|"), frame(b"four|")].concat();
    let torn = frame(b"torn, never synced");
    seg1.extend(&torn[..torn.len() - 3]);
    seg1.resize(4096, 0);
    fs::write(dir.join("wal-0000000000000002-0000000000000001.log"), seg1).unwrap();
    b"base|one|two|three|four|".to_vec()
}

#[test]
fn a_directory_of_format_1_opens_and_is_rewritten_as_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = format_1_directory(tmp.path());
    let (mut storage, recovered) = open(tmp.path());
    assert_eq!(recovered.state, expected);
    assert_eq!(
        recovered.snapshot.to_bytes().unwrap().to_vec(),
        b"old snapshot"
    );
    assert_eq!(
        names(tmp.path()),
        [
            "snapshot-0000000000000002.snap",
            "wal-0000000000000003-0000000000000000.log"
        ]
    );
    let segment = fs::read(tmp.path().join("wal-0000000000000003-0000000000000000.log")).unwrap();
    assert_eq!(segment[8..12], 2u32.to_le_bytes(), "written in format 2");
    append(&mut storage, b"five|");
    storage.sync().unwrap();
    drop(storage);
    assert_eq!(
        try_open(tmp.path()).unwrap().state,
        [&expected[..], b"five|"].concat()
    );
    // Damage in format 1 is still corruption.
    let tmp = tempfile::tempdir().unwrap();
    format_1_directory(tmp.path());
    let seg0 = tmp.path().join("wal-0000000000000002-0000000000000000.log");
    flip_bit(&seg0, 32 + 8 + 13 + 9, 0);
    assert_corrupt(try_open(tmp.path()), &seg0, 32 + 8 + 13);
}

#[test]
fn an_open_that_finds_the_disk_full_leaves_nothing_and_can_be_retried() {
    // The open rewrites the state, which needs room for one copy of it: with none, it fails
    // with a disk-full error, removes what it wrote, and a later open (space back) works.
    for kind in [Kind::Create, Kind::Write, Kind::Sync] {
        let hook = Hook::new();
        let opts = with_hook(StorageOptions::default(), &hook);
        let tmp = tempfile::tempdir().unwrap();
        let (storage, state) = written(tmp.path(), &opts);
        drop(storage);
        let before = names(tmp.path());
        hook.fail(rule(kind, ".log.tmp", 0, ENOSPC));
        let err = DiskStorage::open(tmp.path(), opts.clone()).unwrap_err();
        assert!(err.is_disk_full(), "{kind:?}: {err}");
        assert_eq!(names(tmp.path()), before, "{kind:?}: nothing left behind");
        let (_, recovered) = open_opts(tmp.path(), &opts);
        assert_eq!(recovered.state, state, "{kind:?}");
    }
}
