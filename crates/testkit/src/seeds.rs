//! Seed selection and replay.
//!
//! * `FLOTILLA_SEED=N`: run exactly seed N (the replay command a failure prints).
//! * `FLOTILLA_SEEDS=K` (default 1) and `FLOTILLA_SEED_BASE=B` (default 1): run seeds B..B+K.

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
    if let Some(seed) = env_u64("FLOTILLA_SEED") {
        return vec![seed];
    }
    let count = env_u64("FLOTILLA_SEEDS").unwrap_or(default_count);
    let base = env_u64("FLOTILLA_SEED_BASE").unwrap_or(1);
    (base..base + count).collect()
}

/// Runs `body` once per seed from the environment (one seed by default). If a seed fails, prints
/// it with the command that replays it, then fails the test with the original panic.
/// `test` is the test function's name, `target` the integration-test file that holds it.
pub fn run_seeds(target: &str, test: &str, body: impl Fn(u64)) {
    run_seeds_n(target, test, 1, body)
}

/// As [`run_seeds`], with `default_count` seeds unless the environment says otherwise.
pub fn run_seeds_n(target: &str, test: &str, default_count: u64, body: impl Fn(u64)) {
    for seed in seeds_from_env(default_count) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(seed))) {
            eprintln!(
                "\n{test}: FAILED with seed {seed}\n  replay: FLOTILLA_SEED={seed} cargo test --release -p flotilla-scenarios --test {target} -- --exact {test}\n"
            );
            resume_unwind(panic);
        }
    }
}
