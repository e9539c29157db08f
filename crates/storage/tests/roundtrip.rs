//! What is staged and synced comes back on reopen, across replacements and segment rotation,
//! and superseded files are removed.

mod common;

use common::*;
use flotilla_node::Save;
use flotilla_storage::{Recovered, StorageError};

#[test]
fn a_new_directory_is_created_and_recovers_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/replica");
    let (storage, recovered) = open(&dir);
    assert_eq!(recovered, Recovered::default());
    assert_eq!((storage.state_size(), storage.snapshot_size()), (0, 0));
    assert_eq!(storage.dir(), dir);
    assert_eq!(names(&dir), ["wal-0000000000000001-0000000000000000.log"]);
    drop(storage);
    assert_eq!(try_open(&dir).unwrap(), Recovered::default());
}

#[test]
fn appends_before_any_replacement_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    append(&mut storage, b"hello ");
    append(&mut storage, b"world");
    storage.sync().unwrap();
    drop(storage);
    let recovered = try_open(tmp.path()).unwrap();
    assert_eq!(recovered.state, b"hello world");
    assert!(recovered.snapshot.is_empty());
}

#[test]
fn replacement_then_appends_round_trip_and_appends_continue_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    append(&mut storage, b"superseded");
    replace(&mut storage, b"base|", Some(b"snap-1"));
    append(&mut storage, b"a|");
    append(&mut storage, b"b|");
    assert_eq!((storage.state_size(), storage.snapshot_size()), (9, 6));
    storage.sync().unwrap();
    drop(storage);

    let (mut storage, recovered) = open(tmp.path());
    assert_eq!(recovered.state, b"base|a|b|");
    assert_eq!(recovered.snapshot.to_bytes().unwrap().to_vec(), b"snap-1");
    append(&mut storage, b"c|");
    storage.sync().unwrap();
    drop(storage);
    assert_eq!(try_open(tmp.path()).unwrap().state, b"base|a|b|c|");
}

#[test]
fn a_replacement_without_snapshot_keeps_the_previous_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    replace(&mut storage, b"one", Some(b"S1"));
    replace(&mut storage, b"two", None);
    assert_eq!(storage.snapshot_size(), 2);
    drop(storage);
    let (mut storage, recovered) = open(tmp.path());
    assert_eq!(
        (
            recovered.state.as_slice(),
            &recovered.snapshot.to_bytes().unwrap()[..]
        ),
        (&b"two"[..], &b"S1"[..])
    );
    replace(&mut storage, b"three", Some(b""));
    drop(storage);
    let recovered = try_open(tmp.path()).unwrap();
    assert_eq!(
        (
            recovered.state.as_slice(),
            &recovered.snapshot.to_bytes().unwrap()[..]
        ),
        (&b"three"[..], &b""[..])
    );
}

#[test]
fn many_generations_round_trip_and_leave_one_generation_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    for g in 0..6u8 {
        let (mut storage, recovered) = open_with(tmp.path(), 200);
        if g > 0 {
            let expected_state: Vec<u8> = [
                vec![g - 1; 10],
                (0..30).map(record).collect::<Vec<_>>().concat(),
            ]
            .concat();
            assert_eq!(recovered.state, expected_state, "generation {g}");
            assert_eq!(
                recovered.snapshot.to_bytes().unwrap().to_vec(),
                vec![100 + (g - 1) / 2 * 2; 50]
            );
        }
        // A snapshot every other generation, the rest keep the previous one.
        let snapshot = (g % 2 == 0).then(|| vec![100 + g; 50]);
        replace(&mut storage, &[g; 10], snapshot.as_deref());
        for i in 0..30 {
            append(&mut storage, &record(i));
        }
        storage.sync().unwrap();
        let files = names(tmp.path());
        let snapshots: Vec<_> = files
            .iter()
            .filter(|n| n.starts_with("snapshot-"))
            .collect();
        assert_eq!(snapshots.len(), 1, "{files:?}");
        // Each open starts a generation (it rewrites what it recovered), as does the
        // replacement.
        let generation = format!("wal-{:016x}-", u64::from(g) * 2 + 2);
        assert!(
            files
                .iter()
                .all(|n| n.starts_with(&generation) || n.starts_with("snapshot-")),
            "{files:?}"
        );
    }
}

#[test]
fn segments_rotate_and_read_back_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_with(tmp.path(), 128);
    replace(&mut storage, b"base", None);
    let mut expected = b"base".to_vec();
    for i in 0..200 {
        append(&mut storage, &record(i));
        expected.extend(record(i));
        if i % 7 == 0 {
            storage.sync().unwrap();
        }
    }
    // A record larger than a segment still fits, alone in one.
    append(&mut storage, &[7; 1000]);
    expected.extend([7; 1000]);
    storage.sync().unwrap();
    drop(storage);
    let segs = segments(tmp.path());
    assert!(segs.len() > 20, "{} segments", segs.len());
    // Batches start on a page: a segment smaller than two pages holds its header's page
    // and one batch (which may be larger than the segment size, alone).
    for s in &segs[..segs.len() - 1] {
        assert!(
            std::fs::metadata(s).unwrap().len() <= 8192,
            "{}",
            s.display()
        );
    }
    let (mut storage, recovered) = open_with(tmp.path(), 128);
    assert_eq!(recovered.state, expected);
    // Appending after reopen goes to the generation the open wrote.
    append(&mut storage, b"after");
    storage.sync().unwrap();
    drop(storage);
    expected.extend(b"after");
    assert_eq!(try_open(tmp.path()).unwrap().state, expected);
}

#[test]
fn old_generation_files_are_deleted_after_a_replacement() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open_with(tmp.path(), 64);
    replace(&mut storage, b"g2", Some(b"snap2"));
    for i in 0..20 {
        append(&mut storage, &record(i));
        storage.sync().unwrap();
    }
    assert!(segments(tmp.path()).len() > 3);
    replace(&mut storage, b"g3", Some(b"snap3"));
    assert_eq!(
        names(tmp.path()),
        [
            "snapshot-0000000000000003.snap",
            "wal-0000000000000003-0000000000000000.log"
        ]
    );
    replace(&mut storage, b"g4", None);
    assert_eq!(
        names(tmp.path()),
        [
            "snapshot-0000000000000003.snap",
            "wal-0000000000000004-0000000000000000.log"
        ]
    );
}

#[test]
fn sync_reports_what_it_covered() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    let stats = storage.sync().unwrap();
    assert_eq!(
        (stats.records, stats.bytes, stats.fsync.is_zero()),
        (0, 0, true)
    );
    append(&mut storage, b"abc");
    append(&mut storage, b"");
    append(&mut storage, b"de");
    let before = storage.wal_tail();
    assert_eq!(before.staged_bytes, 5, "the empty append stages nothing");
    let stats = storage.sync().unwrap();
    assert_eq!((stats.records, stats.bytes), (2, 5));
    let tail = storage.wal_tail();
    // One batch at the next page: its header, then each record's length and payload.
    assert_eq!(tail.synced_bytes, before.next_batch + 16 + 4 + 3 + 4 + 2);
    assert_eq!(tail.staged_bytes, 0);
    assert_eq!(storage.sync().unwrap().records, 0);
}

#[test]
fn files_of_other_programs_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("NOTES"), b"mine").unwrap();
    let (mut storage, _) = open(tmp.path());
    replace(&mut storage, b"x", Some(b"y"));
    drop(storage);
    try_open(tmp.path()).unwrap();
    assert!(names(tmp.path()).contains(&"NOTES".to_string()));
}

#[test]
fn an_io_error_poisons_the_storage() {
    // The directory vanishes under it: the replacement cannot be written, and everything
    // after fails with Poisoned, naming the directory.
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path());
    std::fs::remove_dir_all(tmp.path()).unwrap();
    let save = Save {
        state: b"r".to_vec(),
        snapshot: Some(flotilla_node::Bytes::from_static(b"s").into()),
        append: false,
        local_tail: None,
    };
    assert!(matches!(storage.stage(&save), Err(StorageError::Io { .. })));
    let err = storage.sync().unwrap_err();
    assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()));
}
