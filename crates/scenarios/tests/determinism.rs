//! The same seed replays the same run bit for bit; another seed does not.

use flotilla_scenarios::{
    kv_random, kvraft, kvsrv, membership, membership_random, raft_3c, raft_3d, raft_random,
    shardkv, shardkv_random,
};

fn assert_replays(name: &str, scenario: fn(u64) -> u64) {
    let (a, b) = (scenario(7), scenario(7));
    assert_eq!(a, b, "{name}: seed 7 produced two different traces");
    assert_ne!(
        a,
        scenario(8),
        "{name}: seeds 7 and 8 produced the same trace"
    );
}

#[test]
fn test_same_seed_same_trace_figure8_unreliable() {
    assert_replays("figure8_unreliable", raft_3c::figure8_unreliable);
}

#[test]
fn test_same_seed_same_trace_unreliable_churn() {
    assert_replays("unreliable_churn", raft_3c::unreliable_churn);
}

#[test]
fn test_same_seed_same_trace_snapshot_install_uncrash() {
    assert_replays(
        "snapshot_install_uncrash",
        raft_3d::snapshot_install_uncrash,
    );
}

#[test]
fn test_same_seed_same_trace_random_faults() {
    assert_replays("random_faults", |s| {
        raft_random::random_faults(s, 20).trace_hash
    });
}

#[test]
fn test_same_seed_same_trace_kvraft_partition_linearizable() {
    assert_replays(
        "kvraft linearizable",
        kvraft::snapshot_unreliable_recover_concurrent_partition_linearizable_4b,
    );
}

#[test]
fn test_same_seed_same_trace_kvsrv_unreliable() {
    assert_replays("kvsrv unreliable", kvsrv::unreliable_2);
}

#[test]
fn test_same_seed_same_trace_kv_random() {
    assert_replays("kv_random", |s| kv_random::kv_random(s, 5).trace_hash);
}

#[test]
fn test_same_seed_same_trace_raft_membership_random() {
    assert_replays("raft_membership_random", |s| {
        membership_random::raft_membership_random(s, 20).trace_hash
    });
}

#[test]
fn test_same_seed_same_trace_kv_membership_random() {
    assert_replays("kv_membership_random", |s| {
        membership_random::kv_membership_random(s, 5).trace_hash
    });
}

#[test]
fn test_same_seed_same_trace_grow_under_load() {
    assert_replays("grow_3_to_5_under_load", membership::grow_3_to_5_under_load);
}

#[test]
fn test_same_seed_same_trace_shardkv_concurrent3() {
    assert_replays("shardkv concurrent3", shardkv::concurrent3_5b);
}

#[test]
fn test_same_seed_same_trace_shardkv_random() {
    assert_replays("shardkv_random", |s| {
        shardkv_random::shardkv_random(s, 5).trace_hash
    });
}
