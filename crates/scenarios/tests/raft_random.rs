//! Randomized fault runs with Raft's safety properties checked after every simulator step.
//! `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default 200); `FLOTILLA_SEED=N` replays one.

use std::cell::Cell;

use flotilla_scenarios::raft_random::random_faults;
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_random_faults_safety() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 200);
    let committed = Cell::new(0usize);
    run_seed_list("raft_random", "test_random_faults_safety", &seeds, |seed| {
        let report = random_faults(seed, 100);
        assert!(report.faults > 0, "seed {seed} injected no faults");
        committed.set(committed.get() + report.committed);
    });
    // Liveness across the runs: the clusters kept committing under faults, not just at the end.
    let per_run = committed.get() / seeds.len();
    assert!(
        per_run > 10,
        "only {per_run} entries committed per run on average"
    );
}
