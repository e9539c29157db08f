//! Benchmarks that print figures (never asserted): the wall time of the Raft scenario suite,
//! and the core's own ceiling — committed entries per second and messages per entry through an
//! in-process 3-node cluster with no I/O, no simulator and no encoding.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flotilla_raft::NodeId;
use flotilla_raft::{Config, Envelope, Raft};

use crate::RAFT_SCENARIOS;

/// Wall time of each Raft lab scenario over `seeds`, in suite order.
pub fn suite_wall_time(seeds: std::ops::Range<u64>) -> Vec<(&'static str, Duration)> {
    RAFT_SCENARIOS
        .iter()
        .map(|&(name, scenario)| {
            let t0 = Instant::now();
            for seed in seeds.clone() {
                scenario(seed);
            }
            (name, t0.elapsed())
        })
        .collect()
}

/// Figures from [`core_throughput`].
#[derive(Debug, Clone, Copy)]
pub struct CoreFigures {
    pub entries: u64,
    pub batch: u64,
    pub elapsed: Duration,
    pub messages: u64,
}

impl CoreFigures {
    pub fn entries_per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
    pub fn messages_per_entry(&self) -> f64 {
        self.messages as f64 / self.entries as f64
    }
}

/// Commits `entries` commands of `payload` bytes through 3 in-process peers, proposing `batch`
/// at a time and delivering every message at once (a perfect, instant network). The service
/// snapshots every 10,000 entries so memory stays bounded. Messages count requests and replies.
pub fn core_throughput(entries: u64, batch: u64, payload: usize) -> CoreFigures {
    let mut peers: Vec<Raft> = (0..3)
        .map(|id| {
            Raft::new(Config::new(
                NodeId::new(id),
                vec![NodeId::new(0), NodeId::new(1), NodeId::new(2)],
                100 + id,
            ))
        })
        .collect();
    let mut queue: VecDeque<Envelope> = VecDeque::new();
    let mut applied = [0u64; 3];
    let mut messages = 0u64;
    // Elect a leader by ticking; not timed.
    let leader = loop {
        for p in peers.iter_mut() {
            p.tick();
        }
        pump(&mut peers, &mut queue, &mut applied, &mut messages);
        if let Some(l) = peers.iter().position(|p| p.is_leader()) {
            break l;
        }
    };
    messages = 0;
    let data = vec![0xAB; payload];
    let start = applied[leader];
    let t0 = Instant::now();
    while applied[leader] - start < entries {
        for _ in 0..batch {
            peers[leader]
                .propose(data.clone())
                .expect("leader stays leader on a perfect network");
        }
        pump(&mut peers, &mut queue, &mut applied, &mut messages);
    }
    CoreFigures {
        entries: applied[leader] - start,
        batch,
        elapsed: t0.elapsed(),
        messages,
    }
}

/// Delivers messages until the cluster is quiet; counts applies; snapshots every 10,000.
fn pump(
    peers: &mut [Raft],
    queue: &mut VecDeque<Envelope>,
    applied: &mut [u64; 3],
    messages: &mut u64,
) {
    loop {
        for (i, p) in peers.iter_mut().enumerate() {
            let ready = p.ready();
            queue.extend(ready.messages);
            for a in ready.applies {
                applied[i] = a.index();
            }
            if applied[i] >= p.log().snapshot_index() + 10_000 {
                p.snapshot(applied[i], applied[i].to_le_bytes().to_vec());
            }
        }
        let Some(m) = queue.pop_front() else { break };
        *messages += 1;
        peers[m.to.index()].step(m.from, m.msg);
    }
}

/// Prints every Raft figure; used by `cargo bench` and `flotilla-lab bench raft`.
pub fn print_raft_report(seeds: u64) {
    println!("Raft scenario suite, {seeds} seed(s) each (wall time):");
    let times = suite_wall_time(1..1 + seeds);
    for (name, d) in &times {
        println!("  {name:<36} {:>9.1} ms", d.as_secs_f64() * 1e3);
    }
    let total: Duration = times.iter().map(|(_, d)| *d).sum();
    println!(
        "  {:<36} {:>9.1} ms",
        "TOTAL (28 scenarios)",
        total.as_secs_f64() * 1e3
    );
    println!();
    println!("Raft core, 3 in-process peers, no I/O, 64-byte commands:");
    for batch in [1, 16, 256] {
        let f = core_throughput(200_000, batch, 64);
        println!(
            "  batch {:>3}: {:>10.0} entries/s, {:>6.3} messages/entry ({} entries in {:.2} s)",
            f.batch,
            f.entries_per_sec(),
            f.messages_per_entry(),
            f.entries,
            f.elapsed.as_secs_f64()
        );
    }
}
