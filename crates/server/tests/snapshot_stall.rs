//! How long one snapshot of a large state blocks a replica's event loop, step by step: the
//! state machine's serialization, the copy Raft's `Ready` makes, and the storage's write and
//! fsync, written synchronously (a snapshot installed from a leader; every snapshot before
//! local ones were written in the background) or in the background (a local snapshot), with
//! the appends synced meanwhile. A measurement, not a test: it asserts nothing about time.
//!
//! ```text
//! FLOTILLA_STALL_MIB=1024 cargo test --release -p flotilla-server --test snapshot_stall \
//!     -- --ignored --nocapture
//! ```
//! (default 256 MiB; the directory is under `TMPDIR`, which should be a real disk.)

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_kv::{Kv, KvCommand};
use flotilla_node::{Bytes, Save};
use flotilla_rsm::{ApplyCtx, StateMachine};
use flotilla_storage::{DiskStorage, FaultHook, Faults, FileOp, StorageOptions};

const VALUE_BYTES: usize = 100 << 10;

/// Remembers when each file operation began, by file name.
#[derive(Default)]
struct Clock(Mutex<Vec<(Instant, &'static str, String)>>);

impl FaultHook for Clock {
    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        let (what, path) = match op {
            FileOp::Create { path } => ("create", path),
            FileOp::Write { path, .. } => ("write", path),
            FileOp::Sync { path, .. } => ("sync", path),
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        self.0.lock().unwrap().push((Instant::now(), what, name));
        Ok(())
    }
}

impl Clock {
    /// When the first operation `what` on a file whose name starts with `prefix` began.
    fn first(&self, what: &str, prefix: &str) -> Option<Instant> {
        let ops = self.0.lock().unwrap();
        ops.iter()
            .find(|(_, w, n)| *w == what && n.starts_with(prefix))
            .map(|(t, _, _)| *t)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn open(dir: &Path, clock: &Arc<Clock>) -> DiskStorage {
    let opts = StorageOptions {
        faults: Faults::new(clock.clone()),
        ..StorageOptions::default()
    };
    let (mut storage, _) = DiskStorage::open(dir, opts).expect("open");
    // A log of some size before the snapshot, as a replica has.
    for _ in 0..256 {
        storage
            .stage(&Save {
                state: vec![7; 4096],
                append: true,
                ..Save::default()
            })
            .unwrap();
    }
    storage.sync().unwrap();
    clock.0.lock().unwrap().clear();
    storage
}

fn append_4k(storage: &mut DiskStorage) -> Duration {
    let t = Instant::now();
    storage
        .stage(&Save {
            state: vec![9; 4096],
            append: true,
            ..Save::default()
        })
        .unwrap();
    storage.sync().unwrap();
    t.elapsed()
}

#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
fn snapshot_stall() {
    let mib: usize = std::env::var("FLOTILLA_STALL_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let values = (mib << 20) / VALUE_BYTES;
    println!("state: {values} values of {VALUE_BYTES} bytes ({mib} MiB)");

    // 1. Serialization, by the state machine (`StateMachine::snapshot`).
    let mut kv = Kv::default();
    for i in 0..values {
        let value = vec![(i % 251) as u8; VALUE_BYTES];
        kv.apply(
            KvCommand::Put {
                key: format!("key-{i:08}").into_bytes(),
                value: value.into(),
            },
            &ApplyCtx::zero(),
        );
    }
    let t = Instant::now();
    let data = kv.snapshot();
    let serialize = t.elapsed();
    drop(kv);
    println!(
        "serialize (Kv::snapshot, {} bytes): {}",
        data.len(),
        ms(serialize)
    );

    // 2. The whole copy Raft's `Ready` makes of its snapshot while it is a Vec.
    let t = Instant::now();
    let copy = data.clone();
    let copied = t.elapsed();
    drop(copy);
    println!("copy (Ready's clone of a Vec snapshot): {}", ms(copied));
    let data = Bytes::from(data);

    // 3a. Written on the loop, as an installed snapshot is (and every one was before).
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(Clock::default());
    let mut storage = open(&tmp.path().join("sync"), &clock);
    let t = Instant::now();
    storage
        .stage(&Save {
            state: vec![1; 64 << 10],
            snapshot: Some(data.clone().into()),
            ..Save::default()
        })
        .unwrap();
    let end = Instant::now();
    let blocked = end - t;
    let first_write = clock.first("write", "snapshot-").unwrap();
    let segment = clock.first("create", "wal-").unwrap();
    println!(
        "synchronous save: loop blocked {} = snapshot file {} (writes, and an fdatasync every \
         16 MiB, then fsync and rename) + new generation {}",
        ms(blocked),
        ms(segment - first_write),
        ms(end - segment),
    );
    drop(storage);

    // 3b. In the background, while 4 KiB appends are synced one after another.
    let clock = Arc::new(Clock::default());
    let mut storage = open(&tmp.path().join("background"), &clock);
    // Twice: the second switch also removes the first one's snapshot file.
    for round in ["first", "second"] {
        let t = Instant::now();
        storage
            .stage(&Save {
                state: vec![1; 64 << 10],
                snapshot: Some(data.clone().into()),
                local_tail: Some(Vec::new()),
                ..Save::default()
            })
            .unwrap();
        let staged = t.elapsed();
        let mut syncs = Vec::new();
        while storage.has_background_snapshot() {
            syncs.push(append_4k(&mut storage));
        }
        let total = t.elapsed();
        // The last sync made the switch (new generation's segment 0, removal of the old one).
        let switch = syncs.pop().unwrap_or_default();
        syncs.sort();
        let p = |q: f64| {
            syncs
                .get(((syncs.len() as f64 - 1.0) * q) as usize)
                .copied()
        };
        println!(
            "{round} background save: stage {}; {} syncs of 4 KiB during the {} write: p50 {}, p99 {}, max {}; \
             the sync that switched: {}",
            ms(staged),
            syncs.len(),
            ms(total),
            ms(p(0.5).unwrap_or_default()),
            ms(p(0.99).unwrap_or_default()),
            ms(syncs.last().copied().unwrap_or_default()),
            ms(switch),
        );
    }
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(append_4k(&mut storage));
    }
    idle.sort();
    println!(
        "4 KiB syncs without a snapshot being written: p50 {}, p99 {}",
        ms(idle[100]),
        ms(idle[198])
    );
}
