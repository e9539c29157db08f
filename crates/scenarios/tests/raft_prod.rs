//! Raft for production: pre-vote, check-quorum and leader stickiness, each shown to work and
//! shown to be needed (the same scenario without the feature, or with it broken on purpose,
//! fails the check). `FLOTILLA_SEEDS=K` runs K seeds (default 1); `FLOTILLA_SEED=N` replays one.

use flotilla_raft::Sabotage;
use flotilla_scenarios::raft_prod::{
    follower_cut_from_leader, isolated_leader_steps_down, leader_failover,
    leader_transfer_under_load, rejoining_follower, Features, STEP_DOWN_BOUND, TRANSFER_BOUND,
};
use flotilla_testkit::run_seeds;

const TARGET: &str = "raft_prod";

/// Pre-vote (thesis §9.6): a follower cut off for 5 s and reconnected leaves the leader
/// leading in its term, with pre-vote alone and with both features (the service's setting).
#[test]
fn test_prevote_rejoining_node_does_not_disrupt() {
    run_seeds(
        TARGET,
        "test_prevote_rejoining_node_does_not_disrupt",
        |seed| {
            for f in [Features::PRE_VOTE, Features::BOTH] {
                let d = rejoining_follower(seed, f);
                assert!(
                    !d.disrupted(),
                    "{f:?}: the rejoining follower disrupted: {d:?}"
                );
            }
        },
    );
}

/// The same scenario without pre-vote: the cut-off follower raised its term, and on its
/// return the leader loses its term (so the scenario can fail).
#[test]
fn test_without_prevote_rejoining_node_disrupts() {
    run_seeds(
        TARGET,
        "test_without_prevote_rejoining_node_disrupts",
        |seed| {
            let d = rejoining_follower(seed, Features::NONE);
            assert!(
                d.disrupted() && d.term_after > d.term_before,
                "no disruption without pre-vote: {d:?}"
            );
        },
    );
}

/// Pre-vote (thesis §9.6): a follower that loses only its link to the leader cannot get
/// pre-votes from the other follower, which still hears the leader.
#[test]
fn test_prevote_follower_cut_from_leader_does_not_disrupt() {
    run_seeds(
        TARGET,
        "test_prevote_follower_cut_from_leader_does_not_disrupt",
        |seed| {
            for f in [Features::PRE_VOTE, Features::BOTH] {
                let d = follower_cut_from_leader(seed, f);
                assert!(
                    !d.disrupted(),
                    "{f:?}: the cut-off follower disrupted: {d:?}"
                );
            }
        },
    );
}

/// Leader stickiness (thesis §4.2.3, check-quorum without pre-vote): the follower cut from the
/// leader campaigns for real, and the other follower, in the leader's lease, ignores it.
/// Without check-quorum the same scenario loses the leader (so it can fail).
#[test]
fn test_check_quorum_sticky_followers() {
    run_seeds(TARGET, "test_check_quorum_sticky_followers", |seed| {
        let d = follower_cut_from_leader(seed, Features::CHECK_QUORUM);
        assert!(!d.disrupted(), "a sticky follower was disrupted: {d:?}");
        let d = follower_cut_from_leader(seed, Features::NONE);
        assert!(d.disrupted(), "no disruption without stickiness: {d:?}");
    });
}

/// Check-quorum (thesis §6.2): a leader cut off alone (3 peers) or with one follower (5 peers)
/// steps down, in its term, within `STEP_DOWN_BOUND` (one minimum election timeout, 300 ms,
/// plus two ticks); the majority elects and commits; after healing everyone commits.
#[test]
fn test_check_quorum_isolated_leader_steps_down() {
    run_seeds(
        TARGET,
        "test_check_quorum_isolated_leader_steps_down",
        |seed| {
            for (n, f) in [
                (3, Features::CHECK_QUORUM),
                (3, Features::BOTH),
                (5, Features::BOTH),
            ] {
                let led_for = isolated_leader_steps_down(seed, n, f);
                assert!(
                    led_for.is_some_and(|d| d <= STEP_DOWN_BOUND),
                    "{n} peers, {f:?}: the cut-off leader led for {led_for:?} \
                 (bound {STEP_DOWN_BOUND:?})"
                );
            }
        },
    );
}

/// Without check-quorum the cut-off leader goes on leading for the whole 5 s (so the test
/// above can fail).
#[test]
fn test_without_check_quorum_isolated_leader_keeps_leading() {
    run_seeds(
        TARGET,
        "test_without_check_quorum_isolated_leader_keeps_leading",
        |seed| {
            for f in [Features::NONE, Features::PRE_VOTE] {
                let led_for = isolated_leader_steps_down(seed, 3, f);
                assert_eq!(led_for, None, "{f:?}: the leader stepped down");
            }
        },
    );
}

/// Broken on purpose: a pre-vote that makes its receiver adopt the proposed term (as a
/// RequestVote would). The follower cut from the leader then raises the other follower's term
/// and the leader is deposed: the scenario catches it.
#[test]
fn test_broken_prevote_that_bumps_terms_is_caught() {
    run_seeds(
        TARGET,
        "test_broken_prevote_that_bumps_terms_is_caught",
        |seed| {
            let d = follower_cut_from_leader(seed, Features::broken(Sabotage::PreVoteBumpsTerm));
            assert!(
                d.disrupted(),
                "pre-votes that bump terms went unnoticed: {d:?}"
            );
        },
    );
}

/// Broken on purpose: voters that grant pre-votes on the log check alone, while they hear from
/// a live leader. The follower cut from the leader wins the pre-vote and then the election.
#[test]
fn test_broken_prevote_that_ignores_the_lease_is_caught() {
    run_seeds(
        TARGET,
        "test_broken_prevote_that_ignores_the_lease_is_caught",
        |seed| {
            let f = Features::broken(Sabotage::PreVoteIgnoresLease);
            let d = follower_cut_from_leader(seed, f);
            assert!(
                d.disrupted(),
                "pre-votes granted in a lease went unnoticed: {d:?}"
            );
        },
    );
}

/// Liveness: with every combination of the features, repeated leader crashes and cut-offs
/// are followed by a new leader within the labs' bound and by commits.
#[test]
fn test_prevote_and_check_quorum_keep_electing_leaders() {
    run_seeds(
        TARGET,
        "test_prevote_and_check_quorum_keep_electing_leaders",
        |seed| {
            for f in [
                Features::NONE,
                Features::PRE_VOTE,
                Features::CHECK_QUORUM,
                Features::BOTH,
            ] {
                leader_failover(seed, f);
            }
        },
    );
}

/// Leader transfer (thesis §3.10) with pre-vote and check-quorum on, under load: with 3 and 5
/// peers, 3 transfers in a row to random followers each make the target lead in the next term
/// within `TRANSFER_BOUND`, the old leader follows it, the old leader refused proposals
/// meanwhile, and every command committed agrees (the tester's check).
#[test]
fn test_leader_transfer_hands_off_under_load() {
    run_seeds(
        TARGET,
        "test_leader_transfer_hands_off_under_load",
        |seed| {
            for n in [3, 5] {
                let rounds = leader_transfer_under_load(seed, n, Features::BOTH, 3);
                assert_eq!(rounds.len(), 3, "{n} peers: {rounds:?}");
                for r in &rounds {
                    assert!(
                        r.led_after.is_some_and(|d| d <= TRANSFER_BOUND),
                        "{n} peers: transfer did not complete in {TRANSFER_BOUND:?}: {r:?}"
                    );
                    assert!(
                        r.refused > 0,
                        "{n} peers: the old leader took proposals during the transfer: {r:?}"
                    );
                }
            }
        },
    );
}

/// Broken on purpose: the target's TransferVote is handled as an ordinary RequestVote, which
/// the followers in the old leader's lease (and the old leader) ignore under check-quorum. The
/// transfer never completes, and the scenario catches it.
#[test]
fn test_broken_transfer_vote_not_forced_is_caught() {
    run_seeds(
        TARGET,
        "test_broken_transfer_vote_not_forced_is_caught",
        |seed| {
            for n in [3, 5] {
                let f = Features {
                    sabotage: Some(Sabotage::TransferVoteNotForced),
                    ..Features::BOTH
                };
                let rounds = leader_transfer_under_load(seed, n, f, 3);
                assert!(
                    rounds.iter().any(|r| r.led_after.is_none()),
                    "{n} peers: transfers completed with unforced votes: {rounds:?}"
                );
            }
        },
    );
}
