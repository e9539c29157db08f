//! Randomized fault runs: each seed draws a cluster size, snapshots on or off, instant or slow
//! disk syncs, pre-vote and check-quorum each on or off, and a schedule of mixed faults (partitions, crashes and restarts, unreliable and
//! reordering networks) under client load, while [`SafetyChecker`] checks election safety, log matching, leader
//! completeness and state-machine safety after every simulator step. At the end the network
//! heals and the cluster must commit again (liveness).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use flotilla_raft::Config;
use flotilla_raft::NodeId;
use flotilla_testkit::raft_tester::RaftTester;
use flotilla_testkit::SafetyChecker;

/// A sync's duration in the runs that model one: from instant to longer than a heartbeat
/// round trip, so that messages, ticks and crashes all land inside syncs.
pub const SYNC_LATENCY: (Duration, Duration) = (Duration::ZERO, Duration::from_millis(15));

/// What one random run did, for reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomRunReport {
    pub trace_hash: u64,
    pub committed: usize,
    pub faults: usize,
    /// Snapshots peers installed that spanned several chunks.
    pub chunked_installs: usize,
}

/// One randomized run for `seed`, with `rounds` fault rounds of 100–600 ms each.
pub fn random_faults(seed: u64, rounds: usize) -> RandomRunReport {
    random_faults_with(seed, rounds, false)
}

/// As [`random_faults`]; `early_acks` breaks the peers on purpose (votes and acknowledgements
/// sent before they are durable), which only the slow-disk runs can expose.
pub fn random_faults_with(seed: u64, rounds: usize, early_acks: bool) -> RandomRunReport {
    // The configuration is drawn from the seed too, through the simulator's generator.
    let probe = RaftTester::new(1, false, false, seed);
    let n = [3usize, 5, 5, 7][probe.rand(4) as usize];
    let snapshots = probe.rand(2) == 0;
    // Two runs in three pipeline replication (several AppendEntries in flight per follower).
    let window = [1, 4, 16][probe.rand(3) as usize];
    // Half the runs model a disk whose syncs take time, so a crash can catch a leader whose
    // AppendEntries left before its own log was durable (see `Sim::set_sync_latency`).
    let slow_disk = probe.rand(2) == 0;
    // Drawn after the draws above, so that each seed keeps its earlier choices.
    let pre_vote = probe.rand(2) == 0;
    let check_quorum = probe.rand(2) == 0;
    let (chunk, chunks_in_flight) = snapshot_chunks(&probe);
    drop(probe);

    let modify = move |cfg: &mut Config| {
        cfg.max_inflight_appends = window;
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.snapshot_chunk_bytes = chunk;
        cfg.max_snapshot_inflight_bytes = chunks_in_flight * chunk;
    };
    let t = if early_acks {
        RaftTester::with_early_acks(n, false, snapshots, seed, modify)
    } else {
        RaftTester::with_config(n, false, snapshots, seed, modify)
    };
    if slow_disk {
        t.sim.borrow_mut().set_sync_latency(Some(SYNC_LATENCY));
    }
    let checker = Rc::new(RefCell::new(SafetyChecker::new()));
    let ch = checker.clone();
    t.set_step_check(Box::new(move |sim| ch.borrow_mut().check(sim)));
    let c = t.clone();
    let faults = t.run(async move {
        let stop = Rc::new(Cell::new(false));
        let load = c.rt.spawn(client_load(c.clone(), stop.clone()));
        let faults = fault_rounds(&c, n, rounds).await;
        stop.set(true);
        load.await;
        c.one(c.rand_cmd(), n, true).await;
        faults
    });
    let committed = checker.borrow().committed_len();
    RandomRunReport {
        trace_hash: t.trace_hash(),
        committed,
        faults,
        chunked_installs: t.chunked_installs(chunk),
    }
}

/// Draws a snapshot chunk size small enough that every snapshot of the labs' applier (a few
/// hundred bytes and more) spans several chunks, and a window of 1 to 4 chunks in flight.
pub fn snapshot_chunks(probe: &RaftTester) -> (usize, usize) {
    let chunk = [64, 128, 256][probe.rand(3) as usize];
    let in_flight = [1, 2, 4][probe.rand(3) as usize];
    (chunk, in_flight)
}

/// Applies one random fault; returns 1 if it did anything.
fn inject_fault(c: &RaftTester, n: usize) -> usize {
    let i = c.rand(n as u64) as usize;
    let leader = (0..n).find(|&k| {
        c.get_state(NodeId::from_index(k)).is_some_and(|(_, l)| l)
            && c.is_connected(NodeId::from_index(k))
    });
    match c.rand(14) {
        10 | 11 => match leader {
            Some(l) => c.crash1(NodeId::from_index(l)),
            None => return 0,
        },
        12 => match leader {
            Some(l) => c.disconnect(NodeId::from_index(l)),
            None => return 0,
        },
        13 => {
            // Restart a crashed peer so crashes do not pile up.
            match (0..n).find(|&k| !c.is_alive(NodeId::from_index(k))) {
                Some(k) => {
                    c.start1(NodeId::from_index(k));
                    c.connect(NodeId::from_index(k));
                }
                None => return 0,
            }
        }
        0 | 1 => c.disconnect(NodeId::from_index(i)),
        2 | 3 => c.connect(NodeId::from_index(i)),
        4 => {
            if c.is_alive(NodeId::from_index(i)) {
                c.crash1(NodeId::from_index(i));
            }
        }
        5 | 6 => {
            c.revive(NodeId::from_index(i));
        }
        7 => {
            // A random two-way partition.
            let mut sim = c.sim.borrow_mut();
            let cut: Vec<bool> = (0..n)
                .map(|_| rand::Rng::gen_bool(sim.rng(), 0.5))
                .collect();
            let a: Vec<NodeId> = (0..n).filter(|&k| cut[k]).map(NodeId::from_index).collect();
            let b: Vec<NodeId> = (0..n)
                .filter(|&k| !cut[k])
                .map(NodeId::from_index)
                .collect();
            sim.partition(&[a, b]);
        }
        8 => c.set_unreliable(c.rand(2) == 0),
        _ => c.set_long_reordering(c.rand(4) == 0),
    }
    1
}

/// Proposes a command on every live peer every 5–50 ms until stopped, with idle gaps of up to
/// 1 s: a new leader that gets no proposal for a while must not commit old-term entries by
/// counting (Figure 8), and only idle gaps expose that.
pub async fn client_load(c: Rc<RaftTester>, stop: Rc<Cell<bool>>) {
    while !stop.get() {
        for i in 0..c.n() {
            c.start(NodeId::from_index(i), c.rand_cmd());
        }
        let ms = if c.rand(8) == 0 {
            c.rand(1000)
        } else {
            5 + c.rand(45)
        };
        c.sleep(Duration::from_millis(ms)).await;
    }
}

/// `rounds` rounds of one random fault each over slots `0..n`, mostly quick (as Figure 8's
/// 0–12 ms), sometimes long enough to elect; then everything healed, so the cluster must make
/// progress again. Returns how many faults were injected.
pub async fn fault_rounds(c: &RaftTester, n: usize, rounds: usize) -> usize {
    let mut faults = 0;
    for _ in 0..rounds {
        faults += inject_fault(c, n);
        let ms = if c.rand(3) == 0 {
            100 + c.rand(500)
        } else {
            c.rand(13)
        };
        c.sleep(Duration::from_millis(ms)).await;
    }
    c.set_unreliable(false);
    c.set_long_reordering(false);
    c.heal_all();
    faults
}
