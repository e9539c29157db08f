//! The randomized key/value suite: random faults and clients, each seed reading through the
//! log, by ReadIndex or by lease; every history checked for linearizability, and every step for
//! read leases overlapping a newer leader. `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default
//! 20); `FLOTILLA_SEED=N` replays one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use flotilla_scenarios::kv_random::{kv_random, kv_random_strict};
use flotilla_scenarios::redis_mix::MixStats;
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_kv_random_linearizable() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 20);
    let ops = Cell::new(0usize);
    let modes = RefCell::new(BTreeMap::new());
    let mix = RefCell::new(MixStats::default());
    run_seed_list("kv_random", "test_kv_random_linearizable", &seeds, |seed| {
        let report = kv_random(seed, 10);
        assert!(report.faults > 0, "seed {seed} injected no faults");
        ops.set(ops.get() + report.operations);
        mix.borrow_mut().add(&report.mix);
        *modes
            .borrow_mut()
            .entry(format!("{:?}", report.read_mode))
            .or_insert(0) += 1;
    });
    let per_run = ops.get() / seeds.len();
    assert!(per_run > 50, "only {per_run} operations per run on average");
    let modes = modes.into_inner();
    eprintln!("seeds per read mode: {modes:?}");
    let mix = mix.into_inner();
    eprintln!("{} seeds, the Redis mix: {mix}", seeds.len());
    // The new operations must exercise what they are there for: keys expiring under the
    // clients, conditions failing, WATCH aborting (each happens several times a run).
    if seeds.len() >= 20 {
        assert!(mix.expired_seen > 0, "no key was seen expired");
        assert!(mix.aborted > 0, "no transaction was aborted by WATCH");
        assert!(mix.committed > 0, "no transaction applied");
    }
    if seeds.len() >= 20 {
        assert_eq!(modes.len(), 3, "not every read mode was drawn: {modes:?}");
    }
}

/// Every run checked by the strict Redis model, reads outside the log included. Fails today
/// (seed 5, by lease; seed 8, by ReadIndex): a read answered at the leader's clock sees a key
/// expired, and a write proposed just before it, stamped with an earlier time and applied
/// after the read, finds the key present and keeps it alive (SET XX, PERSIST, PEXPIREAT).
/// Ignored until reads outside the log no longer run ahead of entries proposed before them.
#[test]
#[ignore = "known: reads outside the log run ahead of writes proposed before them (seeds 5, 8)"]
fn test_kv_random_strict_expiry() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 20);
    run_seed_list(
        "kv_random",
        "test_kv_random_strict_expiry",
        &seeds,
        |seed| {
            kv_random_strict(seed, 10);
        },
    );
}
