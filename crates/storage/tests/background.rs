//! Local snapshots ([`Save::local_tail`]) are written on another thread while appends keep
//! being staged and synced to the current generation; once the snapshot is durable the
//! storage switches to a generation based on it. A crash or a failed write or fsync at any
//! step recovers a valid pair: the previous snapshot with the whole log (every append,
//! those made during the write included), or the new snapshot with the compacted state and
//! the appends since.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::*;
use flotilla_node::{Bytes, Save};
use flotilla_storage::{DiskStorage, FaultHook, Faults, FileOp, StorageError, StorageOptions};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// The generation `written` leaves: opened once (1), replaced (2), reopened (3).
const GEN: u64 = 3;

fn snapshot_file(generation: u64) -> String {
    format!("snapshot-{generation:016x}.snap")
}

fn segment0(generation: u64) -> String {
    format!("wal-{generation:016x}-0000000000000000.log")
}

/// A recognisable snapshot of `len` bytes (more than one write chunk when large).
fn snapshot_bytes(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i % 251) as u8 ^ seed)
            .collect::<Vec<u8>>(),
    )
}

fn local(state: &[u8], snapshot: &Bytes, tail: &[u8]) -> Save {
    Save {
        state: state.to_vec(),
        snapshot: Some(snapshot.clone().into()),
        append: false,
        local_tail: Some(tail.to_vec()),
    }
}

/// Which operations the hook acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Write,
    Sync,
}

#[derive(Default)]
struct State {
    /// While set, the first operation on a snapshot file waits (in the thread doing it)
    /// until the test opens the gate.
    gate_closed: bool,
    /// The thread of every operation on a snapshot file.
    snapshot_threads: Vec<ThreadId>,
    /// Fails the `skip`-th next operation of `kind` on a file whose name contains the string.
    fail: Option<(Kind, String, usize, i32)>,
    /// Copies the directory before every operation into `crashes/<n>` while set.
    crash_copies: Option<PathBuf>,
    /// Every operation seen: kind and file name.
    log: Vec<(Kind, String)>,
}

/// A fault hook that can hold the snapshot writer, fail a chosen operation, and copy the
/// directory before each operation (a crash there).
#[derive(Default)]
struct Hook {
    dir: PathBuf,
    state: Mutex<State>,
    opened: Condvar,
    copies: AtomicUsize,
}

impl Hook {
    fn new(dir: &Path) -> Arc<Hook> {
        Arc::new(Hook {
            dir: dir.to_path_buf(),
            ..Hook::default()
        })
    }

    fn opts(self: &Arc<Self>) -> StorageOptions {
        StorageOptions {
            faults: Faults::new(self.clone()),
            ..StorageOptions::default()
        }
    }

    fn close_gate(&self) {
        self.state.lock().unwrap().gate_closed = true;
    }

    fn open_gate(&self) {
        self.state.lock().unwrap().gate_closed = false;
        self.opened.notify_all();
    }

    fn fail(&self, kind: Kind, name: &str, skip: usize, errno: i32) {
        self.state.lock().unwrap().fail = Some((kind, name.to_string(), skip, errno));
    }

    fn spent(&self) -> bool {
        self.state.lock().unwrap().fail.is_none()
    }

    /// Waits until the failure has been injected (by the writer thread).
    fn wait_spent(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.spent() {
            assert!(
                std::time::Instant::now() < deadline,
                "the failure never came"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn snapshot_threads(&self) -> Vec<ThreadId> {
        self.state.lock().unwrap().snapshot_threads.clone()
    }

    fn take_log(&self) -> Vec<(Kind, String)> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }
}

impl FaultHook for Hook {
    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        let (kind, path) = match op {
            FileOp::Create { path } => (Kind::Create, path),
            FileOp::Write { path, .. } => (Kind::Write, path),
            FileOp::Sync { path, .. } => (Kind::Sync, path),
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut state = self.state.lock().unwrap();
        state.log.push((kind, name.clone()));
        if name.starts_with("snapshot-") {
            state.snapshot_threads.push(std::thread::current().id());
            // Held until the test opens the gate. The wait is bounded only so that a
            // storage writing snapshots on the caller's thread (the bug these tests catch)
            // fails the thread assertions instead of hanging the test.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while state.gate_closed && std::time::Instant::now() < deadline {
                state = self
                    .opened
                    .wait_timeout(state, Duration::from_secs(1))
                    .unwrap()
                    .0;
            }
        }
        if let Some(to) = &state.crash_copies {
            let n = self.copies.fetch_add(1, Ordering::SeqCst);
            copy_dir(&self.dir, &to.join(format!("{n:03}-{kind:?}-{name}")));
        }
        if let Some((k, n, skip, errno)) = &mut state.fail {
            if *k == kind && name.contains(n.as_str()) {
                if *skip == 0 {
                    let errno = *errno;
                    state.fail = None;
                    return Err(io::Error::from_raw_os_error(errno));
                }
                *skip -= 1;
            }
        }
        Ok(())
    }
}

/// A directory at generation [`GEN`] holding snapshot `old-snap` and a log; returns the
/// storage and the state stored.
fn written(dir: &Path, opts: &StorageOptions) -> (DiskStorage, Vec<u8>) {
    let (mut storage, _) = open_opts(dir, opts);
    replace(&mut storage, b"base|", Some(b"old-snap"));
    let mut state = b"base|".to_vec();
    for i in 0..5 {
        append(&mut storage, &record(i));
        state.extend(record(i));
    }
    storage.sync().unwrap();
    drop(storage);
    let (storage, recovered) = open_opts(dir, opts);
    assert_eq!(recovered.state, state);
    (storage, state)
}

/// Recovers a copy of `dir` (as a crash would leave it; the original is untouched).
fn recover_copy(dir: &Path) -> Pair {
    let elsewhere = tempfile::tempdir().unwrap();
    Pair::from(try_open(&copy_dir(dir, &elsewhere.path().join("crash"))).expect("recovers"))
}

fn pair(state: &[u8], snapshot: &[u8]) -> Pair {
    Pair {
        state: state.to_vec(),
        snapshot: snapshot.to_vec(),
    }
}

/// The stage of a local snapshot returns before the snapshot is written, which happens on
/// another thread; appends are staged and synced meanwhile, and a crash then recovers the
/// old snapshot with every append. Once the write is done the storage switches to it.
#[test]
fn a_local_snapshot_is_written_on_another_thread_while_appends_are_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Hook::new(tmp.path());
    let (mut storage, old_state) = written(tmp.path(), &hook.opts());
    let snap = snapshot_bytes(9 << 20, 1);
    hook.state.lock().unwrap().snapshot_threads.clear(); // the setup's replacement
    hook.close_gate();
    storage
        .stage(&local(b"compacted|", &snap, b"tail|"))
        .expect("stage");
    // Back here while the writer waits at its first operation (or has not started).
    assert!(
        !tmp.path().join(snapshot_file(GEN + 1)).exists(),
        "the snapshot was written during stage"
    );
    assert!(storage.has_background_snapshot());
    append(&mut storage, b"during|");
    storage
        .sync()
        .expect("appends sync while the snapshot is being written");
    let full = [&old_state[..], b"tail|during|"].concat();
    assert_eq!(recover_copy(tmp.path()), pair(&full, b"old-snap"));
    hook.open_gate();
    append(&mut storage, b"after|");
    storage.finish_background().expect("the write completes");
    let threads = hook.snapshot_threads();
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|t| *t != std::thread::current().id()),
        "every snapshot write and fsync happened on another thread"
    );
    assert!(!storage.has_background_snapshot());
    assert_eq!(
        names(tmp.path()),
        [snapshot_file(GEN + 1), segment0(GEN + 1)],
        "switched to the new generation, the old one removed"
    );
    assert_eq!(storage.snapshot_size(), snap.len() as u64);
    let new_state = b"compacted|during|after|";
    assert_eq!(storage.state_size(), new_state.len() as u64);
    append(&mut storage, b"later|");
    storage.sync().unwrap();
    drop(storage);
    let recovered = try_open(tmp.path()).unwrap();
    assert_eq!(recovered.state, [&new_state[..], b"later|"].concat());
    assert!(recovered.snapshot.to_bytes().unwrap().to_vec() == snap[..]);
}

/// A sync after the write ended switches without being asked to wait; so does
/// `poll_background` when nothing was staged.
#[test]
fn a_sync_or_a_poll_switches_once_the_write_is_done() {
    for poll in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (mut storage, _) = written(tmp.path(), &StorageOptions::default());
        let snap = snapshot_bytes(1000, 2);
        storage.stage(&local(b"c|", &snap, b"")).unwrap();
        // Written within a moment; each call below waits for nothing.
        let mut rounds = 0;
        while storage.has_background_snapshot() {
            if poll {
                storage.poll_background().unwrap();
            } else {
                append(&mut storage, b"x");
                storage.sync().unwrap();
            }
            rounds += 1;
            std::thread::yield_now();
            assert!(rounds < 10_000_000, "never switched");
        }
        // (The old files may still be being removed, on another thread.)
        assert!(names(tmp.path()).contains(&snapshot_file(GEN + 1)));
        drop(storage);
        let recovered = try_open(tmp.path()).unwrap();
        assert!(recovered.state.starts_with(b"c|"));
        assert_eq!(recovered.snapshot.to_bytes().unwrap().to_vec(), &snap[..]);
    }
}

/// A crash before each file operation of the background write and of the switch, and just
/// after the switch's rename (old generation not yet removed), recovers the old pair or the
/// new one, whole; the old one up to the switch's commit point.
#[test]
fn a_crash_at_any_step_of_a_background_snapshot_recovers_a_valid_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let crashes = tmp.path().join("crashes");
    let hook = Hook::new(&dir);
    let (mut storage, old_state) = written(&dir, &hook.opts());
    let snap = snapshot_bytes(5 << 20, 3);
    hook.close_gate();
    storage
        .stage(&local(b"compacted|", &snap, b"tail|"))
        .unwrap();
    append(&mut storage, b"during|");
    storage.sync().unwrap();
    let before_switch = tmp.path().join("before-switch");
    hook.state.lock().unwrap().crash_copies = Some(crashes.clone());
    hook.open_gate();
    storage.finish_background().unwrap();
    hook.state.lock().unwrap().crash_copies = None;
    drop(storage);
    // The last copy before the switch's rename holds the old generation and the durable
    // new snapshot: with the new segment 0 added, it is the state right after the rename.
    let mut copies: Vec<PathBuf> = std::fs::read_dir(&crashes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    copies.sort();
    let last = copies.last().expect("copies").clone();
    copy_dir(&last, &before_switch);
    std::fs::copy(
        dir.join(segment0(GEN + 1)),
        before_switch.join(segment0(GEN + 1)),
    )
    .unwrap();
    copies.push(before_switch);
    let old = pair(&[&old_state[..], b"tail|during|"].concat(), b"old-snap");
    let new = pair(b"compacted|during|", &snap);
    let mut saw_snapshot_durable = false;
    for (i, copy) in copies.iter().enumerate() {
        let what = copy.file_name().unwrap().to_string_lossy().into_owned();
        saw_snapshot_durable |= copy.join(snapshot_file(GEN + 1)).exists();
        let recovered = Pair::from(try_open(copy).unwrap_or_else(|e| panic!("{what}: {e}")));
        if i + 1 == copies.len() {
            assert!(recovered == new, "{what}: the new pair after the rename");
        } else {
            assert!(recovered == old, "{what}: the old pair before the rename");
        }
    }
    assert!(copies.len() >= 8, "{copies:?}");
    assert!(saw_snapshot_durable, "a copy between snapshot and switch");
}

/// Which operation of the background protocol to fail.
fn steps() -> Vec<(Kind, &'static str, usize)> {
    vec![
        (Kind::Create, "snapshot-", 0),
        (Kind::Write, "snapshot-", 0),
        (Kind::Write, "snapshot-", 2),
        // The fdatasync after the first 16 MiB (of 20), and the final fsync.
        (Kind::Sync, "snapshot-", 0),
        (Kind::Sync, "snapshot-", 1),
        // The switch: the new generation's segment 0.
        (Kind::Create, ".log.tmp", 0),
        (Kind::Write, ".log.tmp", 0),
        (Kind::Sync, ".log.tmp", 0),
    ]
}

/// A write or fsync that fails (not for lack of space) at any step poisons the storage
/// (fsyncgate: the pages may be lost), and the reopen recovers the old snapshot with the
/// whole log, appends made during the write included.
#[test]
fn a_failed_write_or_fsync_in_the_background_poisons_and_recovery_keeps_the_log() {
    for (kind, name, skip) in steps() {
        let what = format!("{kind:?} {name} {skip}");
        let tmp = tempfile::tempdir().unwrap();
        let hook = Hook::new(tmp.path());
        let opts = hook.opts();
        let (mut storage, old_state) = written(tmp.path(), &opts);
        let snap = snapshot_bytes(20 << 20, 4);
        hook.close_gate();
        storage
            .stage(&local(b"compacted|", &snap, b"tail|"))
            .unwrap();
        append(&mut storage, b"during|");
        storage.sync().unwrap();
        hook.fail(kind, name, skip, EIO);
        hook.open_gate();
        let err = storage.finish_background().unwrap_err();
        assert!(hook.spent(), "{what}");
        assert!(!err.is_disk_full(), "{what}: {err}");
        assert!(storage.is_poisoned(), "{what}");
        assert!(
            matches!(storage.sync(), Err(StorageError::Poisoned { .. })),
            "{what}"
        );
        drop(storage);
        let (_, recovered) = open_opts(tmp.path(), &opts);
        let full = [&old_state[..], b"tail|during|"].concat();
        assert_eq!(Pair::from(recovered), pair(&full, b"old-snap"), "{what}");
        assert!(
            !names(tmp.path()).contains(&snapshot_file(GEN + 1)),
            "{what}: the unused snapshot is removed"
        );
    }
}

/// Lack of space at any step does not poison: what was written is removed, the log keeps
/// everything, and the write is tried again (here at once, by `finish_background`).
#[test]
fn lack_of_space_in_the_background_is_retried() {
    for (kind, name, skip) in steps() {
        let what = format!("{kind:?} {name} {skip}");
        let tmp = tempfile::tempdir().unwrap();
        let hook = Hook::new(tmp.path());
        let opts = hook.opts();
        let (mut storage, old_state) = written(tmp.path(), &opts);
        let snap = snapshot_bytes(20 << 20, 5);
        // Held, so that the failure meets `finish_background`, which reports it.
        hook.close_gate();
        storage
            .stage(&local(b"compacted|", &snap, b"tail|"))
            .unwrap();
        append(&mut storage, b"during|");
        storage.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
        hook.fail(kind, name, skip, ENOSPC);
        hook.open_gate();
        if name.starts_with("snapshot-") {
            // The order CI once met: the write has failed before `finish_background` starts,
            // whose own sync must not swallow (and at once retry) the failure.
            hook.wait_spent();
        }
        let err = storage.finish_background().unwrap_err();
        assert!(hook.spent(), "{what}");
        assert!(err.is_disk_full(), "{what}: {err}");
        assert!(!storage.is_poisoned(), "{what}");
        assert!(
            !names(tmp.path()).iter().any(|n| n.ends_with(".tmp")),
            "{what}: no partial file"
        );
        let full = [&old_state[..], b"tail|during|"].concat();
        assert_eq!(recover_copy(tmp.path()), pair(&full, b"old-snap"), "{what}");
        // Appends go on meanwhile; then space is back.
        append(&mut storage, b"full|");
        storage.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
        storage
            .finish_background()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        drop(storage);
        let recovered = try_open(tmp.path()).unwrap();
        assert_eq!(recovered.state, b"compacted|during|full|", "{what}");
        assert!(
            recovered.snapshot.to_bytes().unwrap().to_vec() == snap[..],
            "{what}"
        );
    }
}

/// A snapshot taken while another is being written waits for it (the one in flight is
/// never cancelled for a newer one, so one completes every write time however often they
/// are taken); a third replaces the second in the queue, which is never written.
#[test]
fn a_newer_local_snapshot_waits_and_only_the_newest_queued_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Hook::new(tmp.path());
    let (mut storage, _) = written(tmp.path(), &hook.opts());
    let (s1, s2, s3) = (
        snapshot_bytes(3 << 20, 6),
        snapshot_bytes(3 << 20, 7),
        snapshot_bytes(3 << 20, 8),
    );
    hook.take_log();
    hook.close_gate();
    storage.stage(&local(b"one|", &s1, b"t1|")).unwrap();
    append(&mut storage, b"a|");
    storage.stage(&local(b"two|", &s2, b"t2|")).unwrap();
    append(&mut storage, b"b|");
    storage.sync().unwrap();
    storage.stage(&local(b"three|", &s3, b"t3|")).unwrap();
    append(&mut storage, b"c|");
    storage.sync().unwrap();
    hook.open_gate();
    storage.finish_background().unwrap();
    let snapshots_written: Vec<String> = hook
        .take_log()
        .into_iter()
        .filter(|(k, n)| *k == Kind::Create && n.starts_with("snapshot-"))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        snapshots_written,
        [
            format!("{}.tmp", snapshot_file(GEN + 1)),
            format!("{}.tmp", snapshot_file(GEN + 2))
        ]
    );
    assert_eq!(
        names(tmp.path()),
        [snapshot_file(GEN + 2), segment0(GEN + 2)]
    );
    drop(storage);
    let recovered = try_open(tmp.path()).unwrap();
    assert_eq!(recovered.state, b"three|c|");
    assert!(recovered.snapshot.to_bytes().unwrap().to_vec() == s3[..]);
}

/// A replacement written at once (a snapshot installed from the leader) supersedes a local
/// snapshot in the background, wherever its write is; a replacement without a snapshot of
/// its own goes with the newest local one.
#[test]
fn a_replacement_supersedes_the_snapshot_in_the_background() {
    for installed in [true, false] {
        for size in [10, 9 << 20] {
            let what = format!("installed {installed}, {size} bytes");
            let tmp = tempfile::tempdir().unwrap();
            let (mut storage, _) = written(tmp.path(), &StorageOptions::default());
            let ours = snapshot_bytes(size, 9);
            storage.stage(&local(b"ours|", &ours, b"t|")).unwrap();
            append(&mut storage, b"a|");
            let theirs = Bytes::from_static(b"installed snapshot");
            let save = Save {
                state: b"replaced|".to_vec(),
                snapshot: installed.then(|| theirs.clone().into()),
                append: false,
                local_tail: None,
            };
            storage.stage(&save).unwrap();
            assert!(!storage.has_background_snapshot(), "{what}");
            append(&mut storage, b"b|");
            storage.sync().unwrap();
            let expected = if installed { &theirs[..] } else { &ours[..] };
            assert_eq!(
                names(tmp.path()).len(),
                2,
                "{what}: one snapshot, one segment: {:?}",
                names(tmp.path())
            );
            drop(storage);
            let recovered = try_open(tmp.path()).unwrap();
            assert_eq!(recovered.state, b"replaced|b|", "{what}");
            assert!(
                recovered.snapshot.to_bytes().unwrap().to_vec() == expected,
                "{what}"
            );
        }
    }
}

/// Dropping the storage (a stop) with a write in flight stops it; the reopen recovers the
/// old snapshot and the whole log, and removes whatever the write left.
#[test]
fn a_drop_during_the_write_recovers_the_old_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, old_state) = written(tmp.path(), &StorageOptions::default());
    let snap = snapshot_bytes(9 << 20, 10);
    storage.stage(&local(b"c|", &snap, b"t|")).unwrap();
    append(&mut storage, b"a|");
    storage.sync().unwrap();
    drop(storage);
    let recovered = Pair::from(open(tmp.path()).1);
    // The old pair, unless the write was done by the sync above, which then switched.
    let old = pair(&[&old_state[..], b"t|a|"].concat(), b"old-snap");
    assert!(recovered == old || recovered == pair(b"c|a|", &snap));
    assert_eq!(names(tmp.path()).len(), 2, "{:?}", names(tmp.path()));
}
