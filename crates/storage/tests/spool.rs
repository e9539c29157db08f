//! Snapshots built through the storage's spool (as one arriving from a leader is): written
//! to a temporary file in the directory, installed by renaming it (no copy), recovered from
//! the file without loading it, and never left behind unfinished.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::hook::{Hook, Kind, Rule, ENOSPC};
use common::*;
use flotilla_node::{Save, SnapshotData};
use flotilla_storage::{DiskStorage, Faults, StorageOptions};

/// Bytes that differ at every offset (a misplaced chunk shows), over several copy chunks.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Writes `bytes` through `storage`'s spool in uneven pieces, as chunks arrive.
fn spooled(storage: &DiskStorage, bytes: &[u8]) -> SnapshotData {
    let mut w = storage.spool().create(bytes.len() as u64).unwrap();
    for piece in bytes.chunks(100_003) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn replacement(state: &[u8], snapshot: Option<SnapshotData>) -> Save {
    Save {
        state: state.to_vec(),
        snapshot,
        append: false,
        local_tail: None,
    }
}

fn spool_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("spool-"))
        .collect()
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("snapshot-"))
        .collect()
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

#[test]
fn a_spool_snapshot_is_installed_by_renaming_and_recovered_from_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = payload(3 << 20);
    let (mut storage, _) = open(tmp.path());
    let data = spooled(&storage, &bytes);
    assert!(
        data.source().is_some(),
        "a spool snapshot is read from its file"
    );
    let temp = spool_files(tmp.path());
    assert_eq!(temp.len(), 1, "{:?}", names(tmp.path()));
    let temp_inode = inode(&tmp.path().join(&temp[0]));

    storage
        .stage(&replacement(b"state", Some(data.clone())))
        .unwrap();
    storage.sync().unwrap();
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());
    let snaps = snapshot_files(tmp.path());
    assert_eq!(snaps.len(), 1, "{:?}", names(tmp.path()));
    assert_eq!(
        inode(&tmp.path().join(&snaps[0])),
        temp_inode,
        "installed by renaming, not copied"
    );
    // The process's handle still reads the same bytes.
    assert_eq!(&data.to_bytes().unwrap()[..], &bytes[..]);
    drop(storage);

    let (storage, recovered) = open(tmp.path());
    assert!(
        recovered.snapshot.source().is_some(),
        "the recovered snapshot is backed by its file, not loaded"
    );
    assert_eq!(recovered.snapshot.len(), bytes.len() as u64);
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);
    assert_eq!(recovered.state, b"state");
    assert_eq!(storage.snapshot_size(), bytes.len() as u64);
    // The format did not change: the file is header, frame header, payload.
    let file = fs::read(tmp.path().join(&snapshot_files(tmp.path())[0])).unwrap();
    assert_eq!(&file[32..], &bytes[..]);
    assert_eq!(&file[24..28], &(bytes.len() as u32).to_le_bytes());
    assert_eq!(&file[28..32], &crc32c::crc32c(&bytes).to_le_bytes());
}

#[test]
fn an_empty_spool_snapshot_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    let data = spooled(&storage, b"");
    storage.stage(&replacement(b"s", Some(data))).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered) = open(tmp.path());
    assert!(recovered.snapshot.is_empty());
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_snapshot_from_memory_recovers_from_its_file_and_a_corrupt_byte_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = payload((2 << 20) + 12_345);
    let (mut storage, _) = open(tmp.path());
    storage
        .stage(&replacement(b"s", Some(bytes.clone().into())))
        .unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered) = open(tmp.path());
    assert!(recovered.snapshot.source().is_some());
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);
    drop(recovered);

    let snapshot = tmp.path().join(&snapshot_files(tmp.path())[0]);
    // A byte in the last chunk the verification reads.
    let at = 32 + bytes.len() as u64 - 10;
    flip_bit(&snapshot, at, 3);
    assert_corrupt(try_open(tmp.path()), &snapshot, 24);
}

#[test]
fn an_unfinished_or_unused_spool_file_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    append(&mut storage, b"kept");
    storage.sync().unwrap();

    // Dropped unfinished (a transfer abandoned).
    let mut w = storage.spool().create(1 << 20).unwrap();
    w.write_all(&payload(300_000)).unwrap();
    assert_eq!(spool_files(tmp.path()).len(), 1);
    drop(w);
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());

    // Finished but never stored (superseded before the storage saw it).
    let data = spooled(&storage, &payload(1000));
    assert_eq!(spool_files(tmp.path()).len(), 1);
    drop(data);
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());

    // A crash mid-write: the file stays, and the next open removes it as a leftover.
    let mut w = storage.spool().create(1 << 20).unwrap();
    w.write_all(&payload(300_000)).unwrap();
    std::mem::forget(w);
    let elsewhere = tempfile::tempdir().unwrap();
    let crashed = copy_dir(tmp.path(), &elsewhere.path().join("crash"));
    assert_eq!(spool_files(&crashed).len(), 1);
    let (_, recovered) = open(&crashed);
    assert_eq!(recovered.state, b"kept");
    assert!(recovered.snapshot.is_empty());
    assert_eq!(spool_files(&crashed), Vec::<String>::new());
}

#[test]
fn a_spool_snapshot_staged_twice_stays_where_the_generation_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = payload(1 << 20);
    let (mut storage, _) = open(tmp.path());
    let data = spooled(&storage, &bytes);
    let temp_inode = inode(&tmp.path().join(&spool_files(tmp.path())[0]));
    storage
        .stage(&replacement(b"first", Some(data.clone())))
        .unwrap();
    // The same snapshot again, with a new state: the new generation names the installed
    // file instead of renaming it or storing a copy.
    storage
        .stage(&replacement(b"second", Some(data.clone())))
        .unwrap();
    storage.sync().unwrap();
    let snaps = snapshot_files(tmp.path());
    assert_eq!(snaps.len(), 1, "{:?}", names(tmp.path()));
    assert_eq!(inode(&tmp.path().join(&snaps[0])), temp_inode, "not copied");
    drop(storage);
    let (mut storage, recovered) = open(tmp.path());
    assert_eq!(recovered.state, b"second");
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);

    // The recovered snapshot staged again is kept too.
    storage
        .stage(&replacement(b"third", Some(recovered.snapshot.clone())))
        .unwrap();
    drop(storage);
    let (_, again) = open(tmp.path());
    assert_eq!(again.state, b"third");
    assert_eq!(&again.snapshot.to_bytes().unwrap()[..], &bytes[..]);
    assert_eq!(snapshot_files(tmp.path()), snaps, "not copied");
}

#[test]
fn a_spool_snapshot_refused_for_lack_of_space_is_installed_by_the_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Hook::new();
    let opts = StorageOptions {
        faults: Faults::new(hook.clone()),
        ..StorageOptions::default()
    };
    let bytes = payload(1 << 20);
    let (mut storage, _) = open_opts(tmp.path(), &opts);
    let data = spooled(&storage, &bytes);
    let temp_inode = inode(&tmp.path().join(&spool_files(tmp.path())[0]));
    // The snapshot is installed, then segment 0 of the new generation finds the disk full.
    hook.fail(Rule {
        kind: Kind::Create,
        name: "wal-".into(),
        skip: 0,
        times: 2,
        errno: ENOSPC,
    });
    let err = storage
        .stage(&replacement(b"new", Some(data.clone())))
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    // Nothing names the snapshot: it is back under its temporary name, not removed.
    assert_eq!(snapshot_files(tmp.path()), Vec::<String>::new());
    assert_eq!(spool_files(tmp.path()).len(), 1, "{:?}", names(tmp.path()));
    assert!(storage.sync().unwrap_err().is_disk_full());
    assert!(hook.spent());
    storage.sync().unwrap();
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());
    let snaps = snapshot_files(tmp.path());
    assert_eq!(inode(&tmp.path().join(&snaps[0])), temp_inode, "not copied");
    drop(storage);
    let (_, recovered) = open(tmp.path());
    assert_eq!(recovered.state, b"new");
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);
    assert_eq!(&data.to_bytes().unwrap()[..], &bytes[..]);
}

/// A local snapshot installed in the background, then taken over by a replacement without
/// a snapshot of its own (which stores the newest local one): cancelled, renamed back, and
/// installed again for the replacement's generation.
#[test]
fn a_local_spool_snapshot_taken_over_by_a_replacement_is_installed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = payload(2 << 20);
    let (mut storage, _) = open(tmp.path());
    append(&mut storage, b"log|");
    storage.sync().unwrap();
    let data = spooled(&storage, &bytes);
    storage
        .stage(&Save {
            state: b"compacted|".to_vec(),
            snapshot: Some(data.clone()),
            append: false,
            local_tail: Some(b"tail|".to_vec()),
        })
        .unwrap();
    // An append staged keeps the written snapshot from being switched to.
    append(&mut storage, b"a|");
    storage.stage(&replacement(b"replaced", None)).unwrap();
    storage.sync().unwrap();
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());
    assert_eq!(
        snapshot_files(tmp.path()).len(),
        1,
        "{:?}",
        names(tmp.path())
    );
    drop(storage);
    let (_, recovered) = open(tmp.path());
    assert_eq!(recovered.state, b"replaced");
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);
}

/// The same, with the background write done (the file installed under its name) before the
/// replacement comes: the file is renamed back and installed again, not lost.
#[test]
fn a_written_local_spool_snapshot_taken_over_by_a_replacement_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = payload(2 << 20);
    let (mut storage, _) = open(tmp.path());
    append(&mut storage, b"log|");
    storage.sync().unwrap();
    let data = spooled(&storage, &bytes);
    let temp_inode = inode(&tmp.path().join(&spool_files(tmp.path())[0]));
    storage
        .stage(&Save {
            state: b"compacted|".to_vec(),
            snapshot: Some(data.clone()),
            append: false,
            local_tail: Some(b"tail|".to_vec()),
        })
        .unwrap();
    append(&mut storage, b"a|");
    // Wait for the writer thread to install it (the staged append holds off the switch).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while snapshot_files(tmp.path()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never installed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(spool_files(tmp.path()), Vec::<String>::new());
    storage.stage(&replacement(b"replaced", None)).unwrap();
    storage.sync().unwrap();
    let snaps = snapshot_files(tmp.path());
    assert_eq!(snaps.len(), 1, "{:?}", names(tmp.path()));
    assert_eq!(inode(&tmp.path().join(&snaps[0])), temp_inode, "not copied");
    drop(storage);
    let (_, recovered) = open(tmp.path());
    assert_eq!(recovered.state, b"replaced");
    assert_eq!(&recovered.snapshot.to_bytes().unwrap()[..], &bytes[..]);
}
