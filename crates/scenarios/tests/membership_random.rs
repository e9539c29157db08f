//! The randomized suites with membership changes and leader transfers: Raft runs checked for
//! Raft's safety properties (and one change at a time) after every step, KV runs checked for
//! linearizability and read leases. `FLOTILLA_RANDOM_SEEDS=K` runs K seeds of each (default
//! 50 Raft runs and 10 KV runs); `FLOTILLA_SEED=N` replays one, and `FLOTILLA_TRACE_PEERS=1`
//! prints its peers' states and the operator's actions as they change.

use std::cell::RefCell;

use flotilla_scenarios::membership_random::{
    kv_membership_random, raft_membership_random, MembershipRunReport,
};
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

/// Runs `run` over the seeds, then checks that the runs did change memberships, commit work
/// and transfer leadership (so a suite that silently stopped changing anything fails).
fn run_all(test: &str, default: u64, run: impl Fn(u64) -> MembershipRunReport) {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", default);
    let reports = RefCell::new(Vec::new());
    run_seed_list("membership_random", test, &seeds, |seed| {
        let r = run(seed);
        assert!(r.faults > 0, "seed {seed} injected no faults");
        reports.borrow_mut().push(r);
    });
    let reports = reports.into_inner();
    let n = reports.len();
    let changes: usize = reports.iter().map(|r| r.changes).sum();
    let work: usize = reports.iter().map(|r| r.work).sum();
    let transfers: usize = reports.iter().map(|r| r.ops.transfers).sum();
    let chunked: usize = reports.iter().map(|r| r.chunked_installs).sum();
    let mut refused = std::collections::BTreeMap::new();
    for r in &reports {
        for (k, v) in &r.ops.refused {
            *refused.entry(k.clone()).or_insert(0) += v;
        }
    }
    eprintln!(
        "{test}: {n} runs, {changes} changes committed, {work} entries/operations, \
         {transfers} transfers, {chunked} multi-chunk snapshot installs; refusals {refused:?}"
    );
    // Over enough runs (a replayed seed may well change nothing).
    if n >= 10 {
        assert!(
            2 * changes >= n,
            "only {changes} membership changes in {n} runs"
        );
        assert!(
            work / n > 10,
            "only {} entries or operations per run",
            work / n
        );
        assert!(transfers > 0, "no leader transfer in {n} runs");
        // The Raft-level runs count installs (the KV level reports none): snapshots, new
        // members and lagging followers make some transfers span several chunks.
        if test.contains("raft") {
            assert!(chunked > 0, "no multi-chunk snapshot installed in {n} runs");
        }
    }
}

#[test]
fn test_raft_membership_random_safety() {
    run_all("test_raft_membership_random_safety", 50, |seed| {
        raft_membership_random(seed, 100)
    });
}

#[test]
fn test_kv_membership_random_linearizable() {
    run_all("test_kv_membership_random_linearizable", 10, |seed| {
        kv_membership_random(seed, 10)
    });
}
