//! Seed selection and replay.
//!
//! * `FLOTILLA_SEED=N`: run exactly seed N (the replay command a failure prints).
//! * `FLOTILLA_SEEDS=K` (default 1) and `FLOTILLA_SEED_BASE=B` (default 1): run seeds B..B+K.
//!   Suites with their own count variable (the random fault runs' `FLOTILLA_RANDOM_SEEDS`)
//!   use [`seeds_from_env_var`].

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a non-negative integer"),
    }
}

/// The seeds to run, as the environment asks (see the module docs).
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    seeds_from_env_var("FLOTILLA_SEEDS", default_count)
}

/// As [`seeds_from_env`], with the count read from `count_var` instead of `FLOTILLA_SEEDS`.
pub fn seeds_from_env_var(count_var: &str, default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("FLOTILLA_SEED") {
        return vec![seed];
    }
    let count = env_u64(count_var).unwrap_or(default_count);
    let base = env_u64("FLOTILLA_SEED_BASE").unwrap_or(1);
    (base..base + count).collect()
}

/// Runs `body` once per seed from the environment (one seed by default). If a seed fails, prints
/// it with the command that replays it, then fails the test with the original panic.
/// `test` is the test function's name, `target` the integration-test file that holds it.
pub fn run_seeds(target: &str, test: &str, body: impl Fn(u64)) {
    run_seed_list(target, test, &seeds_from_env(1), body)
}

/// As [`run_seeds`] over the given seeds.
pub fn run_seed_list(target: &str, test: &str, seeds: &[u64], body: impl Fn(u64)) {
    for &seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(seed))) {
            eprintln!(
                "\n{test}: FAILED with seed {seed}\n  replay: FLOTILLA_SEED={seed} cargo test --release -p flotilla-scenarios --test {target} -- --exact {test}\n"
            );
            resume_unwind(panic);
        }
    }
}
