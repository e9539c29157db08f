//! The randomized key/value suite: random faults and clients, each seed reading through the
//! log, by ReadIndex or by lease; every history checked for linearizability, and every step for
//! read leases overlapping a newer leader. `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default
//! 20); `FLOTILLA_SEED=N` replays one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use flotilla_scenarios::kv_random::kv_random;
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_kv_random_linearizable() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 20);
    let ops = Cell::new(0usize);
    let modes = RefCell::new(BTreeMap::new());
    run_seed_list("kv_random", "test_kv_random_linearizable", &seeds, |seed| {
        let report = kv_random(seed, 10);
        assert!(report.faults > 0, "seed {seed} injected no faults");
        ops.set(ops.get() + report.operations);
        *modes
            .borrow_mut()
            .entry(format!("{:?}", report.read_mode))
            .or_insert(0) += 1;
    });
    let per_run = ops.get() / seeds.len();
    assert!(per_run > 50, "only {per_run} operations per run on average");
    let modes = modes.into_inner();
    eprintln!("seeds per read mode: {modes:?}");
    if seeds.len() >= 20 {
        assert_eq!(modes.len(), 3, "not every read mode was drawn: {modes:?}");
    }
}
