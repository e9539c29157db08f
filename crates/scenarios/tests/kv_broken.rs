//! Broken servers are caught: their histories are not linearizable, while the same
//! scenarios on the correct servers are.

use flotilla_scenarios::kv_broken::{
    duplicate_appends, lone_replica_early_replies, stale_follower_reads,
};
use flotilla_testkit::run_seeds;

#[test]
fn test_duplicate_appends_are_caught() {
    run_seeds("kv_broken", "test_duplicate_appends_are_caught", |seed| {
        let verdict = duplicate_appends(seed, false);
        assert!(
            verdict.is_illegal(),
            "a server applying retried appends twice passed: {verdict}"
        );
        eprintln!("the checker's explanation:\n{verdict}");
        let verdict = duplicate_appends(seed, true);
        assert!(verdict.is_ok(), "the correct server failed: {verdict}");
    });
}

#[test]
fn test_stale_follower_reads_are_caught() {
    run_seeds(
        "kv_broken",
        "test_stale_follower_reads_are_caught",
        |seed| {
            let verdict = stale_follower_reads(seed, true);
            assert!(
                verdict.is_illegal(),
                "a server answering reads from a cut-off follower passed: {verdict}"
            );
            eprintln!("the checker's explanation:\n{verdict}");
            let verdict = stale_follower_reads(seed, false);
            assert!(verdict.is_ok(), "the correct server failed: {verdict}");
        },
    );
}

#[test]
fn test_replies_before_the_save_are_caught() {
    run_seeds(
        "kv_broken",
        "test_replies_before_the_save_are_caught",
        |seed| {
            let verdict = lone_replica_early_replies(seed, true);
            assert!(
                verdict.is_illegal(),
                "a lone replica answering before its save was durable passed: {verdict}"
            );
            eprintln!("the checker's explanation:\n{verdict}");
            let verdict = lone_replica_early_replies(seed, false);
            assert!(verdict.is_ok(), "the correct replica failed: {verdict}");
        },
    );
}
