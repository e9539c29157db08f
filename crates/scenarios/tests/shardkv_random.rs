//! The randomized sharded key/value suite: random joins, leaves and moves under crashes,
//! partitions and an unreliable network, with clients on keys over every shard; every history
//! checked for linearizability, and at the end every shard held exactly once. Shards move in
//! pages of a few dozen bytes, so transfers span many pages; most runs must show it.
//! `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default 10); `FLOTILLA_SEED=N` replays one.

use std::cell::{Cell, RefCell};

use flotilla_scenarios::redis_mix::MixStats;
use flotilla_scenarios::shardkv_random::shardkv_random;
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_shardkv_random_linearizable() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 10);
    let (ops, reconfigs, configs) = (Cell::new(0usize), Cell::new(0usize), Cell::new(0u64));
    let (later_pages, paged_runs, resumed) = (Cell::new(0u64), Cell::new(0usize), Cell::new(0));
    let mix = RefCell::new(MixStats::default());
    run_seed_list(
        "shardkv_random",
        "test_shardkv_random_linearizable",
        &seeds,
        |seed| {
            let r = shardkv_random(seed, 10);
            assert!(r.faults > 0, "seed {seed} injected no faults");
            ops.set(ops.get() + r.operations);
            mix.borrow_mut().add(&r.mix);
            reconfigs.set(reconfigs.get() + r.reconfigurations);
            configs.set(configs.get() + r.configs);
            later_pages.set(later_pages.get() + r.later_pages);
            paged_runs.set(paged_runs.get() + usize::from(r.later_pages > 0));
            resumed.set(resumed.get() + r.resumed_pages);
        },
    );
    let runs = seeds.len();
    eprintln!(
        "{runs} seeds: {} operations, {} reconfiguration commands, {} configurations reached, \
         {} pages past a shard's first in {} runs, {} of them resuming a transfer",
        ops.get(),
        reconfigs.get(),
        configs.get(),
        later_pages.get(),
        paged_runs.get(),
        resumed.get()
    );
    let mix = mix.into_inner();
    eprintln!("{runs} seeds, the Redis mix: {mix}");
    // The new operations must exercise what they are there for: keys expiring under the
    // clients, WATCH aborting (each happens several times a run).
    if runs >= 10 {
        assert!(mix.expired_seen > 0, "no key was seen expired");
        assert!(mix.aborted > 0, "no transaction was aborted by WATCH");
        assert!(mix.committed > 0, "no transaction applied");
    }
    // Shards must really move in many pages, or the faults never hit a transfer mid-way.
    // (Some runs move no data; a single replayed seed may be one of them.)
    assert!(
        runs < 10 || paged_runs.get() * 2 > runs,
        "only {} of {runs} runs pulled a shard in more than one page",
        paged_runs.get()
    );
    // And some transfers must be cut by a crash or a leadership change and resumed (about
    // one run in three does; a short run may see none).
    assert!(
        runs < 100 || resumed.get() > 0,
        "no transfer was resumed in {runs} runs"
    );
    assert!(
        ops.get() / runs > 50,
        "only {} operations per run",
        ops.get() / runs
    );
    assert!(
        configs.get() as usize > 3 * runs,
        "too few configurations: {}",
        configs.get()
    );
}
