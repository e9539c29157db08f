//! A crash at any point of a replacement recovers either the old generation or the new one,
//! whole, and the next open cleans up what the replacement left.
//!
//! The intermediate directories are built from the files before and after a real
//! replacement, following the documented steps: (1) snapshot to `.tmp`, renamed; (2) segment
//! 0 of the new generation to `.tmp`, renamed (the commit point); (3) the old generation's
//! files removed one by one. A `.tmp` may be empty, partly or wholly written. Segments carry
//! their preallocated zeros (by default up to `SEGMENT_BYTES`; or in smaller chunks; or none).
//!
//! Format 2: every open rewrites what it recovered as a new generation, so the files left
//! after recovery are that generation's one segment and the snapshot that goes with it,
//! under new names (the checks compare those, not the names of the old or new directory).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use flotilla_storage::StorageOptions;

/// A page for the header and one for a batch: format 2 starts each batch on a page, so
/// each batch gets a segment of its own.
const SEGMENT_BYTES: u64 = 8192;

/// Preallocation by default (capped at the segment size), in chunks smaller than a segment,
/// and off.
fn settings() -> [StorageOptions; 3] {
    [
        opts(SEGMENT_BYTES),
        opts_with(SEGMENT_BYTES, 48),
        opts_with(SEGMENT_BYTES, 0),
    ]
}

/// One crash state: files taken from the old or new directory, some under a `.tmp` name
/// and cut to a prefix.
struct State {
    what: String,
    /// (name in the source directory, from the new directory?, name to give, bytes to keep)
    files: Vec<(String, bool, String, Option<usize>)>,
    expect_new: bool,
}

fn state(what: &str, expect_new: bool) -> State {
    State {
        what: what.to_string(),
        files: Vec::new(),
        expect_new,
    }
}

impl State {
    fn with(mut self, name: &str, from_new: bool) -> Self {
        self.files.push((name.into(), from_new, name.into(), None));
        self
    }

    fn with_temp(mut self, name: &str, keep: usize) -> Self {
        self.files
            .push((name.into(), true, format!("{name}.tmp"), Some(keep)));
        self
    }

    fn build(&self, old: &Path, new: &Path, at: &Path) {
        fs::create_dir_all(at).unwrap();
        for (name, from_new, as_name, keep) in &self.files {
            let bytes = fs::read(if *from_new { new } else { old }.join(name)).unwrap();
            let keep = keep.unwrap_or(bytes.len()).min(bytes.len());
            fs::write(at.join(as_name), &bytes[..keep]).unwrap();
        }
    }
}

/// The crash states of the replacement that turned `old` into `new`, in step order.
fn crash_states(old: &Path, new: &Path) -> Vec<State> {
    let (old_names, new_names): (BTreeSet<_>, BTreeSet<_>) = (
        names(old).into_iter().collect(),
        names(new).into_iter().collect(),
    );
    let old_only: Vec<&String> = old_names.difference(&new_names).collect();
    let added: Vec<&String> = new_names.difference(&old_names).collect();
    let snapshot = added.iter().find(|n| n.starts_with("snapshot-"));
    let segment = added
        .iter()
        .find(|n| n.starts_with("wal-"))
        .expect("a new segment");
    let base = |what: &str, expect_new| {
        old_names
            .iter()
            .fold(state(what, expect_new), |s, n| s.with(n, false))
    };
    let mut states = vec![base("nothing written", false)];
    let mut before_segment = base("", false);
    if let Some(snap) = snapshot {
        for keep in [0, 20, usize::MAX] {
            states
                .push(base(&format!("snapshot .tmp of {keep} bytes"), false).with_temp(snap, keep));
        }
        states.push(base("snapshot renamed", false).with(snap, true));
        before_segment = before_segment.with(snap, true);
    }
    for keep in [0, 10, 40, usize::MAX] {
        let mut s = base(&format!("segment .tmp of {keep} bytes"), false).with_temp(segment, keep);
        s.files
            .extend(before_segment.files.iter().filter(|f| f.1).cloned());
        states.push(s);
    }
    // Step 3: every subset of the old-only files already removed.
    for removed in 0..1u32 << old_only.len() {
        let keep_old = old_names.iter().filter(|n| {
            old_only
                .iter()
                .position(|o| o == n)
                .is_none_or(|i| removed & (1 << i) == 0)
        });
        let s = keep_old.fold(
            state(&format!("committed, removed set {removed:#b}"), true),
            |s, n| s.with(n, false),
        );
        states.push(added.iter().fold(s, |s, n| s.with(n, true)));
    }
    states
}

/// Runs every crash state of the replacement `make_new` applies to the directory `make_old`
/// builds, checking the recovered pair, the files left, and that appending then works.
fn check_replacement(
    make_old: impl Fn(&Path, &StorageOptions) -> Pair,
    replace_state: &[u8],
    snapshot: Option<&[u8]>,
) {
    for opts in settings() {
        check_replacement_with(&opts, &make_old, replace_state, snapshot);
    }
}

fn check_replacement_with(
    opts: &StorageOptions,
    make_old: impl Fn(&Path, &StorageOptions) -> Pair,
    replace_state: &[u8],
    snapshot: Option<&[u8]>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    let old_pair = make_old(&old, opts);
    copy_dir(&old, &new);
    let (mut storage, _) = open_opts(&new, opts);
    replace(&mut storage, replace_state, snapshot);
    drop(storage);
    let new_pair = Pair {
        state: replace_state.to_vec(),
        snapshot: snapshot.map_or(old_pair.snapshot.clone(), <[u8]>::to_vec),
    };
    for (i, s) in crash_states(&old, &new).iter().enumerate() {
        let dir = tmp.path().join(format!("state-{i}"));
        s.build(&old, &new, &dir);
        let (mut storage, recovered) = open_opts(&dir, opts);
        let (expected, files) = if s.expect_new {
            (&new_pair, names(&new))
        } else {
            (&old_pair, names(&old))
        };
        assert_eq!(&Pair::from(recovered), expected, "{}, {opts:?}", s.what);
        // Left-overs removed: the snapshot that goes with the state, and the generation
        // the open rewrote the state into (one segment holding it as its base record).
        let snapshots = |n: Vec<String>| -> Vec<String> {
            n.into_iter()
                .filter(|n| n.starts_with("snapshot-"))
                .collect()
        };
        let left = names(&dir);
        assert_eq!(snapshots(left.clone()), snapshots(files), "{}", s.what);
        let wal: Vec<&String> = left.iter().filter(|n| n.starts_with("wal-")).collect();
        assert_eq!(wal.len(), 1, "{}: {left:?}", s.what);
        assert!(
            wal[0].ends_with("-0000000000000000.log"),
            "{}: {left:?}",
            s.what
        );
        append(&mut storage, b"+after");
        storage.sync().unwrap();
        drop(storage);
        let state = [expected.state.clone(), b"+after".to_vec()].concat();
        assert_eq!(try_open(&dir).unwrap().state, state, "{}", s.what);
    }
}

/// An old generation with a snapshot and several segments.
fn old_with_snapshot(dir: &Path, opts: &StorageOptions) -> Pair {
    let (mut storage, _) = open_opts(dir, opts);
    replace(&mut storage, b"old base|", Some(b"old snapshot"));
    let records: Vec<Vec<u8>> = (0..12).map(record).collect();
    for (i, r) in records.iter().enumerate() {
        append(&mut storage, r);
        if i % 4 == 3 {
            storage.sync().unwrap();
        }
    }
    assert!(segments(dir).len() >= 3);
    Pair {
        state: [b"old base|".to_vec(), records.concat()].concat(),
        snapshot: b"old snapshot".to_vec(),
    }
}

/// A new directory's first generation, with appends and no snapshot.
fn old_without_snapshot(dir: &Path, opts: &StorageOptions) -> Pair {
    let (mut storage, _) = open_opts(dir, opts);
    append(&mut storage, b"first|");
    append(&mut storage, b"second|");
    storage.sync().unwrap();
    Pair {
        state: b"first|second|".to_vec(),
        snapshot: Vec::new(),
    }
}

#[test]
fn a_crash_in_a_replacement_with_a_snapshot_recovers_old_or_new() {
    check_replacement(
        old_with_snapshot,
        b"new base",
        Some(b"new snapshot, longer than the old one"),
    );
}

#[test]
fn a_crash_in_a_replacement_keeping_the_snapshot_recovers_old_or_new() {
    check_replacement(old_with_snapshot, b"new base", None);
}

#[test]
fn a_crash_in_the_first_replacement_recovers_old_or_new() {
    check_replacement(old_without_snapshot, b"new base", Some(b"first snapshot"));
    check_replacement(old_without_snapshot, &[9; 300], None);
}

#[test]
fn a_crash_while_starting_a_segment_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = old_with_snapshot(tmp.path(), &opts(SEGMENT_BYTES));
    let last = segments(tmp.path()).pop().unwrap();
    let name = last.file_name().unwrap().to_str().unwrap();
    // The next seq's segment, caught before its rename.
    let seq = u64::from_str_radix(&name[21..37], 16).unwrap();
    let next = format!("{}{:016x}.log.tmp", &name[..21], seq + 1);
    fs::write(tmp.path().join(&next), b"FLOTWAL").unwrap();
    let (_, recovered) = open_with(tmp.path(), SEGMENT_BYTES);
    assert_eq!(Pair::from(recovered), expected);
    assert!(!names(tmp.path()).contains(&next));
}

/// Makes one step of the real replacement code fail, by putting a directory where it
/// writes or renames a file: the step's error must leave the old generation whole (nothing
/// removed or committed early), poison the storage, and a reopen recover the old pair.
#[test]
fn a_failed_replacement_step_leaves_the_old_generation() {
    // Generation 2 is the old one; the open rewrites it as 3; the replacement writes 4.
    let blockers = [
        "snapshot-0000000000000004.snap.tmp",
        "snapshot-0000000000000004.snap",
        "wal-0000000000000004-0000000000000000.log.tmp",
        "wal-0000000000000004-0000000000000000.log",
    ];
    for blocker in blockers {
        let tmp = tempfile::tempdir().unwrap();
        let expected = old_with_snapshot(tmp.path(), &opts(SEGMENT_BYTES));
        let (mut storage, _) = open_with(tmp.path(), SEGMENT_BYTES);
        // A non-empty directory: neither a file create nor a rename can replace it.
        fs::create_dir_all(tmp.path().join(blocker).join("x")).unwrap();
        let save = flotilla_node::Save {
            state: b"new".to_vec(),
            snapshot: Some(flotilla_node::Bytes::from_static(b"new snapshot").into()),
            append: false,
            local_tail: None,
        };
        let err = storage.stage(&save).unwrap_err();
        assert!(
            matches!(err, flotilla_storage::StorageError::Io { .. }),
            "{blocker}: {err}"
        );
        assert!(storage.sync().is_err(), "{blocker}: poisoned");
        drop(storage);
        fs::remove_dir_all(tmp.path().join(blocker)).unwrap();
        // Nothing of the failed replacement is left.
        let left = names(tmp.path());
        assert!(
            left.iter().all(|n| !n.contains("0000000000000004")),
            "{blocker}: {left:?}"
        );
        let (_, recovered) = open_with(tmp.path(), SEGMENT_BYTES);
        assert_eq!(Pair::from(recovered), expected, "{blocker}");
    }
}
