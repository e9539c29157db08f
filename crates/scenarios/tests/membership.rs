//! Membership change (Ongaro's thesis §4.1–§4.2): learners, growing and shrinking under load,
//! removing the leader by transfer, removed servers, restarts, replacing a dead server; and
//! the two rules of single-server changes, each broken on purpose and caught by the safety
//! checker. `FLOTILLA_SEEDS=K` runs K seeds (default 1); `FLOTILLA_SEED=N` replays one.

use flotilla_raft::MembershipError;
use flotilla_scenarios::membership::{
    grow_3_to_5_under_load, learner_catches_up_by_snapshot, membership_survives_restart,
    remove_leader_by_transfer, removed_node_disruption, replace_crashed_node,
    shrink_5_to_3_under_load,
};
use flotilla_scenarios::membership_broken::{change_before_term_commit, concurrent_promotions};
use flotilla_testkit::run_seeds;

const TARGET: &str = "membership";

/// A learner added to a group whose logs are compacted gets the leader's snapshot, catches
/// up to the leader's commit index without voting, campaigning or moving any term, and once
/// promoted can lead.
#[test]
fn test_learner_catches_up_by_snapshot() {
    run_seeds(TARGET, "test_learner_catches_up_by_snapshot", |seed| {
        learner_catches_up_by_snapshot(seed);
    });
}

/// 3 → 5 voters (two learners added, then promoted) under load on the unreliable network:
/// linearizable, no acknowledged write lost, every server ends with voters {0..4}.
#[test]
fn test_grow_3_to_5_under_load() {
    run_seeds(TARGET, "test_grow_3_to_5_under_load", |seed| {
        grow_3_to_5_under_load(seed);
    });
}

/// 5 → 3 voters under load on the unreliable network (a leader to remove hands off first):
/// linearizable, no acknowledged write lost, the remaining servers end with voters {0,1,2}.
#[test]
fn test_shrink_5_to_3_under_load() {
    run_seeds(TARGET, "test_shrink_5_to_3_under_load", |seed| {
        shrink_5_to_3_under_load(seed);
    });
}

/// A leader refuses to remove itself; after a transfer (one election, within the transfer
/// bound) it is removed, and the rest keep committing under the same leader and term.
#[test]
fn test_remove_leader_by_transfer() {
    run_seeds(TARGET, "test_remove_leader_by_transfer", |seed| {
        remove_leader_by_transfer(seed);
    });
}

/// A server removed while cut off never learns of it; reconnected for 5 s, its election timer
/// keeps firing, yet with pre-vote and check-quorum (as services run) the leader and term do
/// not move. Without either, the same scenario deposes the leader (so it can fail).
#[test]
fn test_removed_node_cannot_disrupt() {
    run_seeds(TARGET, "test_removed_node_cannot_disrupt", |seed| {
        let o = removed_node_disruption(seed, true, true);
        assert!(
            o.removed_thought_voter,
            "the removed server learned of it: {o:?}"
        );
        assert!(
            o.removed_campaigned,
            "the removed server's timer never fired: {o:?}"
        );
        assert!(
            !o.disrupted(),
            "the removed server disrupted the group: {o:?}"
        );
        let o = removed_node_disruption(seed, false, false);
        assert!(
            o.removed_thought_voter,
            "the removed server learned of it: {o:?}"
        );
        assert!(
            o.disrupted() && o.term_after > o.term_before,
            "no disruption without pre-vote and check-quorum: {o:?}"
        );
    });
}

/// After several changes, some covered by snapshots, every server restarts with its
/// membership; the group elects among the new voters; the removed server's restart changes
/// nothing.
#[test]
fn test_membership_survives_restart() {
    run_seeds(TARGET, "test_membership_survives_restart", |seed| {
        membership_survives_restart(seed);
    });
}

/// A voter dies for good; a fresh server is added, promoted, and the dead one removed, under
/// load on the unreliable network: linearizable, no acknowledged write lost.
#[test]
fn test_replace_crashed_node() {
    run_seeds(TARGET, "test_replace_crashed_node", |seed| {
        replace_crashed_node(seed);
    });
}

/// Broken on purpose: a leader that accepts a second promotion while the first is
/// uncommitted commits with a majority of a membership two voters away, while the old
/// membership's majority elects a leader that lacks them and commits other entries: the
/// checker reports leader completeness or state-machine safety broken (or, with its
/// one-change-at-a-time check on, the second change itself). Kept, the
/// second promotion is refused and the same script is safe.
#[test]
fn test_two_concurrent_changes_are_caught() {
    run_seeds(TARGET, "test_two_concurrent_changes_are_caught", |seed| {
        let o = concurrent_promotions(seed, false, true);
        assert!(o.violation.is_none(), "the correct core failed: {o:?}");
        assert!(
            matches!(o.refused, Some(MembershipError::ChangeInProgress { .. })),
            "{o:?}"
        );
        let o = concurrent_promotions(seed, true, false);
        assert_eq!(o.refused, None, "the broken core refused: {o:?}");
        let v = o.violation.expect("two concurrent changes went unnoticed");
        let diverged = [
            "state-machine safety",
            "leader completeness",
            "log matching",
        ];
        assert!(
            diverged.iter().any(|p| v.contains(p)),
            "caught otherwise: {v}"
        );
        let o = concurrent_promotions(seed, true, true);
        let v = o.violation.expect("two concurrent changes went unnoticed");
        assert!(
            v.contains("one membership change at a time"),
            "caught otherwise: {v}"
        );
    });
}

/// Broken on purpose: a new leader that changes the membership before committing an entry of
/// its term commits a change that a leader of an older, uncommitted membership then lacks:
/// the checker reports leader completeness broken. Kept, the change is refused
/// (`TermNotCommitted`) and the same script is safe.
#[test]
fn test_change_before_term_commit_is_caught() {
    run_seeds(TARGET, "test_change_before_term_commit_is_caught", |seed| {
        let o = change_before_term_commit(seed, false);
        assert!(o.violation.is_none(), "the correct core failed: {o:?}");
        assert_eq!(o.refused, Some(MembershipError::TermNotCommitted), "{o:?}");
        let o = change_before_term_commit(seed, true);
        assert_eq!(o.refused, None, "the broken core refused: {o:?}");
        let v = o.violation.expect("the early change went unnoticed");
        assert!(v.contains("leader completeness"), "caught otherwise: {v}");
    });
}
