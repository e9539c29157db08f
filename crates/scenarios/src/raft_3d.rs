//! Lab 3D: snapshots and log compaction.

use flotilla_raft::NodeId;
use flotilla_testkit::raft_tester::{RaftTester, SNAPSHOT_INTERVAL};

/// The labs' MAXLOGSIZE: the persisted Raft state must stay below this with snapshots on.
pub const MAX_LOG_SIZE: usize = 2000;

/// The labs' snapcommon: 30 iterations; each optionally disconnects or crashes a victim, sends
/// enough Starts to trigger a snapshot, checks the persisted state stays < 2000 B, then brings
/// the victim back, which catches up by InstallSnapshot or by restarting from its snapshot.
fn snapcommon(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, !reliable, true, seed);
    let c = t.clone();
    t.run(async move {
        c.one(c.rand_cmd(), n, true).await;
        let mut leader1 = c.check_one_leader().await;
        for i in 0..30 {
            let (mut victim, mut sender) = (NodeId::from_index((leader1.index() + 1) % n), leader1);
            if i % 3 == 1 {
                sender = NodeId::from_index((leader1.index() + 1) % n);
                victim = leader1;
            }
            if disconnect {
                c.disconnect(victim);
                c.one(c.rand_cmd(), n - 1, true).await;
            }
            if crash {
                c.crash1(victim);
                c.one(c.rand_cmd(), n - 1, true).await;
            }
            // Perhaps send enough to get a snapshot.
            let nn = SNAPSHOT_INTERVAL / 2 + c.rand(SNAPSHOT_INTERVAL);
            for _ in 0..nn {
                c.start(sender, c.rand_cmd());
            }
            // Let applier threads catch up with the Start()s.
            if !disconnect && !crash {
                // Make sure all followers have caught up, so that an InstallSnapshot RPC
                // isn't required for TestSnapshotBasic3D.
                c.one(c.rand_cmd(), n, true).await;
            } else {
                c.one(c.rand_cmd(), n - 1, true).await;
            }
            let size = c.log_size();
            assert!(size < MAX_LOG_SIZE, "Log size too large: {size} bytes");
            if disconnect {
                // Reconnect a follower, who maybe behind and needs a snapshot to catch up.
                c.connect(victim);
                c.one(c.rand_cmd(), n, true).await;
                leader1 = c.check_one_leader().await;
            }
            if crash {
                c.start1(victim);
                c.connect(victim);
                c.one(c.rand_cmd(), n, true).await;
                leader1 = c.check_one_leader().await;
            }
        }
    });
    t.trace_hash()
}

/// TestSnapshotBasic3D.
pub fn snapshot_basic(seed: u64) -> u64 {
    snapcommon(seed, false, true, false)
}

/// TestSnapshotInstall3D.
pub fn snapshot_install(seed: u64) -> u64 {
    snapcommon(seed, true, true, false)
}

/// TestSnapshotInstallUnreliable3D.
pub fn snapshot_install_unreliable(seed: u64) -> u64 {
    snapcommon(seed, true, false, false)
}

/// TestSnapshotInstallCrash3D.
pub fn snapshot_install_crash(seed: u64) -> u64 {
    snapcommon(seed, false, true, true)
}

/// TestSnapshotInstallUnCrash3D.
pub fn snapshot_install_uncrash(seed: u64) -> u64 {
    snapcommon(seed, false, false, true)
}

/// TestSnapshotAllCrash3D: 5 times, commit a few, crash and restart all peers; the index after
/// restart must be beyond the index before.
pub fn snapshot_all_crash(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, true, seed);
    let c = t.clone();
    t.run(async move {
        c.one(c.rand_cmd(), n, true).await;
        for _ in 0..5 {
            // Perhaps enough to get a snapshot.
            let nn = SNAPSHOT_INTERVAL / 2 + c.rand(SNAPSHOT_INTERVAL);
            for _ in 0..nn {
                c.one(c.rand_cmd(), n, true).await;
            }
            let index1 = c.one(c.rand_cmd(), n, true).await;
            for i in 0..n {
                c.crash1(NodeId::from_index(i));
            }
            for i in 0..n {
                c.start1(NodeId::from_index(i));
                c.connect(NodeId::from_index(i));
            }
            let index2 = c.one(c.rand_cmd(), n, true).await;
            assert!(index2 > index1, "index decreased from {index1} to {index2}");
        }
    });
    t.trace_hash()
}

/// TestSnapshotInit3D: after a crash the in-memory snapshot must come from the persister, or
/// the next persist would lose it.
pub fn snapshot_init(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, true, seed);
    let c = t.clone();
    t.run(async move {
        c.one(c.rand_cmd(), n, true).await;
        // Enough ops to make a snapshot.
        for _ in 0..=SNAPSHOT_INTERVAL {
            c.one(c.rand_cmd(), n, true).await;
        }
        c.crash_and_restart_all();
        // A single op, to get something to be written back to persistent storage.
        c.one(c.rand_cmd(), n, true).await;
        c.crash_and_restart_all();
        // Do another op to trigger a potential bug.
        c.one(c.rand_cmd(), n, true).await;
    });
    t.trace_hash()
}
