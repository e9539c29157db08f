//! Sessions that expire, under faults (issue 16): `FLOTILLA_RANDOM_SEEDS=K` runs K seeds
//! (default 10); `FLOTILLA_SEED=N` replays one.

use std::cell::Cell;

use flotilla_scenarios::kv_sessions::{kv_sessions, MAX_SESSIONS};
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_kv_sessions_bounded_and_linearizable() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 10);
    let (clients, unknown) = (Cell::new(0), Cell::new(0));
    run_seed_list(
        "kv_sessions",
        "test_kv_sessions_bounded_and_linearizable",
        &seeds,
        |seed| {
            let r = kv_sessions(seed, 20);
            assert!(r.faults > 0, "seed {seed} injected no faults");
            assert!(r.max_table as u64 <= MAX_SESSIONS);
            clients.set(clients.get() + r.clients);
            unknown.set(unknown.get() + r.unknown);
        },
    );
    eprintln!(
        "{} seeds: {} clients, {} operations of unknown outcome",
        seeds.len(),
        clients.get(),
        unknown.get()
    );
}
