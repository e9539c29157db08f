//! A replica's own snapshots reach the disk storage as local snapshots (written in the
//! background), and a crash while they are being written recovers a replica that has every
//! acknowledged command: the previous snapshot and the whole stored Raft log decode to a
//! valid peer (the log the storage keeps meanwhile is a superset of the compacted one).

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flotilla_node::{Ctx, Process};
use flotilla_raft::Config;
use flotilla_raft::NodeId;
use flotilla_rsm::{Msg, Replica, ReplicaConfig, Request, Response};
use flotilla_storage::{DiskStorage, FaultHook, Faults, FileOp, StorageOptions};

mod common;
use common::Sum;

type M = Msg<u64, u64>;

/// Holds every snapshot write at its first operation while closed.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl FaultHook for Gate {
    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        let path = match op {
            FileOp::Create { path } | FileOp::Sync { path, .. } | FileOp::Write { path, .. } => {
                path
            }
        };
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("snapshot-"))
        {
            let mut closed = self.closed.lock().unwrap();
            // Bounded so that a storage writing on the caller's thread fails, not hangs.
            for _ in 0..30 {
                if !*closed {
                    break;
                }
                closed = self
                    .opened
                    .wait_timeout(closed, Duration::from_secs(1))
                    .unwrap()
                    .0;
            }
        }
        Ok(())
    }
}

fn replica(storage_dir: &Path, gate: &Arc<Gate>) -> (Replica<Sum>, DiskStorage) {
    let opts = StorageOptions {
        faults: Faults::new(gate.clone()),
        ..StorageOptions::default()
    };
    let (storage, recovered) = DiskStorage::open(storage_dir, opts).expect("open");
    let cfg = ReplicaConfig {
        raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], 1),
        max_raft_state: Some(300),
        sessions: flotilla_rsm::SessionLimits::default(),
        snapshot_scales_with_state: false,
    };
    let r = Replica::restore(cfg, Sum::default(), &recovered.state, recovered.snapshot)
        .expect("restores");
    (r, storage)
}

/// Saves made, by kind: (appends, local snapshots, other snapshots).
#[derive(Debug, Default)]
struct Kinds(u64, u64, u64);

/// One input; its save staged and synced as the driver does. Returns what it sent.
fn input(
    r: &mut Replica<Sum>,
    storage: &mut DiskStorage,
    kinds: &mut Kinds,
    f: impl FnOnce(&mut Replica<Sum>, &mut Ctx<M, ()>),
) -> Vec<(NodeId, M)> {
    let mut ctx = Ctx::new(Duration::ZERO);
    f(r, &mut ctx);
    let (save, sends, _) = ctx.into_parts();
    if let Some(save) = save {
        match (save.append, &save.local_tail, &save.snapshot) {
            (true, _, _) => kinds.0 += 1,
            (false, Some(_), _) => kinds.1 += 1,
            (false, None, Some(_)) => kinds.2 += 1,
            (false, None, None) => {} // the first save of the log
        }
        storage.stage(&save).expect("stage");
    }
    storage.sync().expect("sync");
    sends
}

fn elect(r: &mut Replica<Sum>, storage: &mut DiskStorage, kinds: &mut Kinds) {
    for _ in 0..100 {
        input(r, storage, kinds, |r, ctx| r.on_tick(ctx));
    }
    assert!(r.raft().is_leader());
}

/// A replica restarted from a copy of `dir` (a crash now) has applied `total` once elected.
fn recovers(dir: &Path, total: u64, what: &str) {
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("crash");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let (mut r, mut storage) = replica(&copy, &Arc::new(Gate::default()));
    elect(&mut r, &mut storage, &mut Kinds::default());
    assert_eq!(r.state().machine().0, total, "{what}");
}

#[test]
fn a_crash_while_local_snapshots_are_written_recovers_every_acknowledged_command() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let (mut r, mut storage) = replica(tmp.path(), &gate);
    let mut kinds = Kinds::default();
    elect(&mut r, &mut storage, &mut kinds);
    *gate.closed.lock().unwrap() = true;
    for seq in 1..=150 {
        let sent = input(&mut r, &mut storage, &mut kinds, |r, ctx| {
            r.on_message(
                NodeId::new(9),
                Msg::Request(Request {
                    client: 1,
                    seq,
                    // Any time: only a stamp of 0 ("heard no time yet") is refused.
                    after_ms: 1,
                    cmd: 1,
                }),
                ctx,
            )
        });
        // Acknowledged (the sync returned before the answer would leave).
        assert!(sent.iter().any(|(_, m)| matches!(
            m,
            Msg::Response(Response { result: Ok(n), .. }) if *n == seq
        )));
        if seq % 50 == 0 {
            assert!(storage.has_background_snapshot(), "held at the gate");
            recovers(tmp.path(), seq, &format!("crash after {seq}, write held"));
        }
    }
    assert!(
        r.raft().log().snapshot_index() > 100,
        "the replica snapshotted"
    );
    assert!(kinds.1 > 0, "local snapshots: {kinds:?}");
    assert_eq!(kinds.2, 0, "no snapshot was saved synchronously: {kinds:?}");
    *gate.closed.lock().unwrap() = false;
    gate.opened.notify_all();
    storage.finish_background().expect("written");
    assert!(!storage.has_background_snapshot());
    recovers(tmp.path(), 150, "after the switch");
    let snapshots = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .count();
    assert_eq!(snapshots, 1);
}
