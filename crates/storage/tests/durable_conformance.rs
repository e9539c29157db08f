//! The conformance suite of `flotilla_node::Durable`: one set of properties, each a generic
//! function written once, run against every implementation (the memory one and the disk one)
//! by the `conformance!` macro at the bottom. A new implementation adds one [`Subject`] and
//! one macro line.
//!
//! What a property checks is what a restart would recover ([`Subject::reopen`]): for the disk,
//! the directory reopened after the storage is dropped; for the memory, what it holds (it
//! has no restart; what it holds is what the process reads back).
//!
//! The recovered state is compared as `snapshot ++ state`: the saves below encode a log whose
//! snapshot holds the compacted prefix, so a local snapshot ([`Save::local_tail`]) recovers
//! to an *equivalent* state whether the storage switched to the new snapshot yet or not (the
//! old snapshot with the old log and the tail, or the new snapshot with the compacted log).
//!
//! Running out of space only happens to a storage with a disk: the disk-full properties
//! run against implementations that can be made to fail ([`Faultable`]).

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use flotilla_node::{Durable, DurableError, MemoryDurable, Save, SnapshotData};
use flotilla_storage::{DiskDurable, FaultHook, Faults, FileOp, OpenError, StorageOptions};
use tempfile::TempDir;

/// One implementation under test, and how to see what it recovers.
trait Subject: Sized {
    type D: Durable;
    /// A fresh, empty storage.
    fn fresh() -> Self;
    fn durable(&mut self) -> &mut Self::D;
    /// What a restart would recover: (state, snapshot's bytes).
    fn reopen(&mut self) -> (Vec<u8>, Vec<u8>);
}

/// A [`Subject`] whose writes can be made to fail.
trait Faultable: Subject {
    /// From now on, writes fail as `fault` says.
    fn inject(&mut self, fault: Fault);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    None = 0,
    /// ENOSPC on every create and write: the device is full.
    NoSpace = 1,
    /// EIO on every create, write and fsync: the device is failing.
    Broken = 2,
}

// ---- The properties ----

fn append(bytes: &[u8]) -> Save {
    Save {
        state: bytes.to_vec(),
        snapshot: None,
        append: true,
        local_tail: None,
    }
}

fn replace(state: &[u8], snapshot: Option<&[u8]>) -> Save {
    Save {
        state: state.to_vec(),
        snapshot: snapshot.map(|s| SnapshotData::from(s.to_vec())),
        append: false,
        local_tail: None,
    }
}

fn stage_all<S: Subject>(s: &mut S, saves: &[Save]) {
    for save in saves {
        s.durable().stage(save).expect("stage");
    }
}

fn sync<S: Subject>(s: &mut S) {
    s.durable().sync().expect("sync");
}

/// A storage nothing was saved to recovers nothing.
fn a_fresh_storage_recovers_nothing<S: Subject>() {
    let mut s = S::fresh();
    assert_eq!(s.reopen(), (vec![], vec![]));
}

/// A replacement with a snapshot and appends after it, staged and then synced, recover as
/// staged.
fn staged_then_synced_saves_are_recovered<S: Subject>() {
    let mut s = S::fresh();
    stage_all(
        &mut s,
        &[
            replace(b"base", Some(b"snap")),
            append(b"+a"),
            append(b"+b"),
        ],
    );
    sync(&mut s);
    assert_eq!(s.reopen(), (b"base+a+b".to_vec(), b"snap".to_vec()));
}

/// Appends accumulate across syncs, and across restarts.
fn appends_accumulate<S: Subject>() {
    let mut s = S::fresh();
    let mut expected = Vec::new();
    for batch in 0..5u8 {
        for i in 0..=batch {
            let bytes = [b'a' + batch, b'0' + i];
            s.durable().stage(&append(&bytes)).expect("stage");
            expected.extend_from_slice(&bytes);
        }
        sync(&mut s);
        if batch == 2 {
            assert_eq!(s.reopen().0, expected, "after a restart in the middle");
        }
    }
    assert_eq!(s.reopen(), (expected, vec![]));
}

/// A replacement supersedes every append before it (in earlier batches and in its own), and
/// appends after it extend it.
fn a_replacement_supersedes_appends<S: Subject>() {
    let mut s = S::fresh();
    stage_all(&mut s, &[append(b"old1"), append(b"old2")]);
    sync(&mut s);
    stage_all(
        &mut s,
        &[append(b"old3"), replace(b"new", None), append(b"+c")],
    );
    sync(&mut s);
    assert_eq!(s.reopen(), (b"new+c".to_vec(), vec![]));
}

/// A replacement without a snapshot keeps the stored snapshot, whether it comes in a later
/// batch, in the same batch, or after a restart.
fn a_missing_snapshot_keeps_the_earlier_one<S: Subject>() {
    let mut s = S::fresh();
    stage_all(
        &mut s,
        &[replace(b"s1", Some(b"snap1")), replace(b"s2", None)],
    );
    sync(&mut s);
    assert_eq!(s.reopen(), (b"s2".to_vec(), b"snap1".to_vec()));
    stage_all(&mut s, &[replace(b"s3", None), append(b"+d")]);
    sync(&mut s);
    assert_eq!(s.reopen(), (b"s3+d".to_vec(), b"snap1".to_vec()));
    // And a later snapshot replaces it.
    stage_all(&mut s, &[replace(b"s4", Some(b"snap2"))]);
    sync(&mut s);
    assert_eq!(s.reopen(), (b"s4".to_vec(), b"snap2".to_vec()));
}

/// The log the saves below encode: `snapshot ++ state` is everything the process stored.
fn logical((state, snapshot): (Vec<u8>, Vec<u8>)) -> Vec<u8> {
    [snapshot, state].concat()
}

/// A local snapshot (the process compacting its own log) recovers to an equivalent state,
/// whenever the restart comes: before the storage switched to it, or after; and appends
/// staged after it are kept either way.
fn a_local_snapshot_recovers_an_equivalent_state<S: Subject>() {
    let mut s = S::fresh();
    // Snapshot "ab", log "cdef".
    stage_all(&mut s, &[replace(b"cdef", Some(b"ab"))]);
    sync(&mut s);
    // One input appends "gh" and then compacts everything up to "f" into the snapshot: the
    // new state is the log compacted ("gh"), the tail what this input appended.
    let local = Save {
        state: b"gh".to_vec(),
        snapshot: Some(SnapshotData::from(b"abcdef".to_vec())),
        append: false,
        local_tail: Some(b"gh".to_vec()),
    };
    stage_all(&mut s, &[local, append(b"ij")]);
    sync(&mut s);
    let _ = s.durable().poll();
    assert_eq!(logical(s.reopen()), b"abcdefghij");
    stage_all(&mut s, &[append(b"kl")]);
    sync(&mut s);
    let _ = s.durable().poll();
    assert_eq!(logical(s.reopen()), b"abcdefghijkl");
}

/// A snapshot built in the storage's spool (`Durable::snapshot_spool`), as one arriving from
/// a leader is, is installed by a replacement and recovered.
fn a_spooled_snapshot_is_installed<S: Subject>() {
    let mut s = S::fresh();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = s
        .durable()
        .snapshot_spool()
        .create(bytes.len() as u64)
        .expect("create");
    for chunk in bytes.chunks(7_000) {
        w.write_all(chunk).expect("write");
    }
    let snapshot = w.finish().expect("finish");
    let save = Save {
        state: b"after".to_vec(),
        snapshot: Some(snapshot),
        append: false,
        local_tail: None,
    };
    stage_all(&mut s, &[save]);
    sync(&mut s);
    assert_eq!(s.reopen(), (b"after".to_vec(), bytes));
}

/// A full disk is `DiskFull`, not fatal: the sync that failed kept what it had staged, a
/// later sync once there is space makes it durable, and what was durable before stayed so.
fn a_full_disk_is_waited_out<S: Faultable>() {
    let mut s = S::fresh();
    stage_all(&mut s, &[replace(b"base", Some(b"snap")), append(b"+a")]);
    sync(&mut s);
    s.inject(Fault::NoSpace);
    // The storage may report the lack of space at `stage` (which then staged nothing, and is
    // staged again, as the driver does) or at `sync`.
    let save = append(b"+b");
    let mut staged = false;
    let mut reports = 0;
    for _ in 0..3 {
        let r = if staged {
            s.durable().sync()
        } else {
            s.durable().stage(&save).map(|()| staged = true)
        };
        match r {
            Err(DurableError::DiskFull(_)) => reports += 1,
            Err(e) => panic!("a full disk must be DiskFull, not {e:?}"),
            Ok(()) => {}
        }
    }
    assert!(reports >= 1, "nothing reported the full disk");
    s.inject(Fault::None);
    if !staged {
        s.durable().stage(&save).expect("stage once there is space");
    }
    sync(&mut s);
    assert_eq!(s.reopen(), (b"base+a+b".to_vec(), b"snap".to_vec()));
}

/// A failing device is `Fatal`, and what was durable before it failed is recovered.
fn a_failing_device_is_fatal<S: Faultable>() {
    let mut s = S::fresh();
    stage_all(&mut s, &[replace(b"base", Some(b"snap")), append(b"+a")]);
    sync(&mut s);
    s.inject(Fault::Broken);
    let r = s
        .durable()
        .stage(&append(b"+b"))
        .and_then(|()| s.durable().sync());
    assert!(matches!(r, Err(DurableError::Fatal(_))), "{r:?}");
    s.inject(Fault::None);
    assert_eq!(s.reopen(), (b"base+a".to_vec(), b"snap".to_vec()));
}

// ---- The implementations ----

struct Memory(MemoryDurable);

impl Subject for Memory {
    type D = MemoryDurable;
    fn fresh() -> Self {
        Memory(MemoryDurable::default())
    }
    fn durable(&mut self) -> &mut MemoryDurable {
        &mut self.0
    }
    fn reopen(&mut self) -> (Vec<u8>, Vec<u8>) {
        (self.0.state.clone(), self.0.snapshot.clone())
    }
}

/// Fails the storage's file operations as the current [`Fault`] says.
#[derive(Default)]
struct Switch(AtomicU8);

impl FaultHook for Switch {
    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        const ENOSPC: i32 = 28;
        const EIO: i32 = 5;
        let sync = matches!(op, FileOp::Sync { .. });
        match self.0.load(Ordering::SeqCst) {
            x if x == Fault::NoSpace as u8 && !sync => Err(io::Error::from_raw_os_error(ENOSPC)),
            x if x == Fault::Broken as u8 => Err(io::Error::from_raw_os_error(EIO)),
            _ => Ok(()),
        }
    }
}

struct Disk {
    dir: TempDir,
    switch: Arc<Switch>,
    disk: Option<DiskDurable>,
}

impl Disk {
    fn open(dir: &Path, switch: &Arc<Switch>) -> (DiskDurable, (Vec<u8>, Vec<u8>)) {
        let opts = StorageOptions {
            faults: Faults::new(switch.clone()),
            ..StorageOptions::default()
        };
        let (disk, rec) = DiskDurable::open(dir, opts).expect("open");
        let snapshot = rec.snapshot.to_bytes().expect("snapshot readable").to_vec();
        (disk, (rec.state, snapshot))
    }
}

impl Subject for Disk {
    type D = DiskDurable;
    fn fresh() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let switch = Arc::new(Switch::default());
        let (disk, _) = Disk::open(dir.path(), &switch);
        Disk {
            dir,
            switch,
            disk: Some(disk),
        }
    }
    fn durable(&mut self) -> &mut DiskDurable {
        self.disk.as_mut().expect("open")
    }
    fn reopen(&mut self) -> (Vec<u8>, Vec<u8>) {
        // Dropped first: the directory's lock admits one storage at a time.
        self.disk = None;
        let (disk, recovered) = Disk::open(self.dir.path(), &self.switch);
        self.disk = Some(disk);
        recovered
    }
}

impl Faultable for Disk {
    fn inject(&mut self, fault: Fault) {
        self.switch.0.store(fault as u8, Ordering::SeqCst);
    }
}

/// One test per property for `$subject`, in a module named `$name`.
macro_rules! conformance {
    ($name:ident, $subject:ty $(, faultable: $($faulty:ident),*)?) => {
        mod $name {
            use super::*;
            #[test]
            fn a_fresh_storage_recovers_nothing() {
                super::a_fresh_storage_recovers_nothing::<$subject>();
            }
            #[test]
            fn staged_then_synced_saves_are_recovered() {
                super::staged_then_synced_saves_are_recovered::<$subject>();
            }
            #[test]
            fn appends_accumulate() {
                super::appends_accumulate::<$subject>();
            }
            #[test]
            fn a_replacement_supersedes_appends() {
                super::a_replacement_supersedes_appends::<$subject>();
            }
            #[test]
            fn a_missing_snapshot_keeps_the_earlier_one() {
                super::a_missing_snapshot_keeps_the_earlier_one::<$subject>();
            }
            #[test]
            fn a_local_snapshot_recovers_an_equivalent_state() {
                super::a_local_snapshot_recovers_an_equivalent_state::<$subject>();
            }
            #[test]
            fn a_spooled_snapshot_is_installed() {
                super::a_spooled_snapshot_is_installed::<$subject>();
            }
            $($(
                #[test]
                fn $faulty() {
                    super::$faulty::<$subject>();
                }
            )*)?
        }
    };
}

conformance!(memory, Memory);
conformance!(disk, Disk, faultable: a_full_disk_is_waited_out, a_failing_device_is_fatal);

/// The disk's own: a directory is one process's. A second open while the first storage
/// holds it is refused, and succeeds once the first is dropped.
#[test]
fn disk_a_locked_directory_is_refused_to_a_second_open() {
    let mut s = Disk::fresh();
    match DiskDurable::open(s.dir.path(), StorageOptions::default()) {
        Err(OpenError::InUse { .. }) => {}
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("a second storage opened a locked directory"),
    }
    s.disk = None;
    DiskDurable::open(s.dir.path(), StorageOptions::default()).expect("unlocked");
}
