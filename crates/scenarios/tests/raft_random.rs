//! Randomized fault runs with Raft's safety properties checked after every simulator step.
//! `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default 200); `FLOTILLA_SEED=N` replays one.

use flotilla_scenarios::raft_random::random_faults;
use flotilla_testkit::seeds::run_seeds_n;

#[test]
fn test_random_faults_safety() {
    let count = std::env::var("FLOTILLA_RANDOM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let committed = std::cell::Cell::new(0usize);
    run_seeds_n("raft_random", "test_random_faults_safety", count, |seed| {
        let report = random_faults(seed, 100);
        assert!(report.faults > 0, "seed {seed} injected no faults");
        committed.set(committed.get() + report.committed);
    });
    // Liveness across the runs: the cluster kept committing under faults, not just at the end.
    assert!(
        committed.get() as u64 > 10 * count.min(1000),
        "only {} entries committed",
        committed.get()
    );
}
