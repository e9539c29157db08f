//! # flotilla-scenarios: the MIT 6.5840 lab test scenarios on the deterministic simulator
//!
//! Each scenario is a function `fn(seed) -> trace_hash` with the same servers, faults,
//! assertions and bounds as the lab test it is named after (see `LABS.md` in the project's
//! shared notes). The integration tests in `tests/` run them over seeds from the environment;
//! the `raft` bench times the whole suite. The returned trace hash lets a test check that a
//! seed replays bit for bit.

pub mod bench;
pub mod kv_bench;
pub mod kv_broken;
pub mod kv_common;
pub mod kv_random;
pub mod kv_reads;
pub mod kv_sessions;
pub mod kvraft;
pub mod kvsrv;
pub mod membership;
pub mod membership_broken;
pub mod membership_random;
pub mod raft_3a;
pub mod raft_3b;
pub mod raft_3c;
pub mod raft_3d;
pub mod raft_prod;
pub mod raft_random;
pub mod redis_mix;
pub mod shard_bench;
pub mod shardctrler;
pub mod shardkv;
pub mod shardkv_random;

/// A scenario: runs one seed, panics on failure, returns the simulation's trace hash.
pub type Scenario = fn(u64) -> u64;

/// Every Raft lab scenario, by its lab name.
pub const RAFT_SCENARIOS: &[(&str, Scenario)] = &[
    ("TestInitialElection3A", raft_3a::initial_election),
    ("TestReElection3A", raft_3a::re_election),
    ("TestManyElections3A", raft_3a::many_elections),
    ("TestBasicAgree3B", raft_3b::basic_agree),
    ("TestRPCBytes3B", raft_3b::rpc_bytes),
    ("TestFollowerFailure3B", raft_3b::follower_failure),
    ("TestLeaderFailure3B", raft_3b::leader_failure),
    ("TestFailAgree3B", raft_3b::fail_agree),
    ("TestFailNoAgree3B", raft_3b::fail_no_agree),
    ("TestConcurrentStarts3B", raft_3b::concurrent_starts),
    ("TestRejoin3B", raft_3b::rejoin),
    ("TestBackup3B", raft_3b::backup),
    ("TestCount3B", raft_3b::count),
    ("TestPersist13C", raft_3c::persist1),
    ("TestPersist23C", raft_3c::persist2),
    ("TestPersist33C", raft_3c::persist3),
    ("TestFigure83C", raft_3c::figure8),
    ("TestUnreliableAgree3C", raft_3c::unreliable_agree),
    ("TestFigure8Unreliable3C", raft_3c::figure8_unreliable),
    ("TestReliableChurn3C", raft_3c::reliable_churn),
    ("TestUnreliableChurn3C", raft_3c::unreliable_churn),
    ("TestSnapshotBasic3D", raft_3d::snapshot_basic),
    ("TestSnapshotInstall3D", raft_3d::snapshot_install),
    (
        "TestSnapshotInstallUnreliable3D",
        raft_3d::snapshot_install_unreliable,
    ),
    (
        "TestSnapshotInstallCrash3D",
        raft_3d::snapshot_install_crash,
    ),
    (
        "TestSnapshotInstallUnCrash3D",
        raft_3d::snapshot_install_uncrash,
    ),
    ("TestSnapshotAllCrash3D", raft_3d::snapshot_all_crash),
    ("TestSnapshotInit3D", raft_3d::snapshot_init),
];

/// Every kvsrv lab scenario but the memory tests (which need their own process to measure
/// the heap: `tests/kvsrv_mem.rs`), by its lab name.
pub const KVSRV_SCENARIOS: &[(&str, Scenario)] = &[
    ("TestBasic2", kvsrv::basic_2),
    ("TestConcurrent2", kvsrv::concurrent_2),
    ("TestUnreliable2", kvsrv::unreliable_2),
    ("TestUnreliableOneKey2", kvsrv::unreliable_one_key_2),
];

/// Every kvraft lab scenario (parts 4A and 4B), by its lab name.
pub const KVRAFT_SCENARIOS: &[(&str, Scenario)] = &[
    ("TestBasic4A", kvraft::basic_4a),
    ("TestSpeed4A", kvraft::speed_4a),
    ("TestConcurrent4A", kvraft::concurrent_4a),
    ("TestUnreliable4A", kvraft::unreliable_4a),
    ("TestUnreliableOneKey4A", kvraft::unreliable_one_key_4a),
    ("TestOnePartition4A", kvraft::one_partition_4a),
    (
        "TestManyPartitionsOneClient4A",
        kvraft::many_partitions_one_client_4a,
    ),
    (
        "TestManyPartitionsManyClients4A",
        kvraft::many_partitions_many_clients_4a,
    ),
    ("TestPersistOneClient4A", kvraft::persist_one_client_4a),
    ("TestPersistConcurrent4A", kvraft::persist_concurrent_4a),
    (
        "TestPersistConcurrentUnreliable4A",
        kvraft::persist_concurrent_unreliable_4a,
    ),
    ("TestPersistPartition4A", kvraft::persist_partition_4a),
    (
        "TestPersistPartitionUnreliable4A",
        kvraft::persist_partition_unreliable_4a,
    ),
    (
        "TestPersistPartitionUnreliableLinearizable4A",
        kvraft::persist_partition_unreliable_linearizable_4a,
    ),
    ("TestSnapshotRPC4B", kvraft::snapshot_rpc_4b),
    ("TestSnapshotSize4B", kvraft::snapshot_size_4b),
    ("TestSpeed4B", kvraft::speed_4b),
    ("TestSnapshotRecover4B", kvraft::snapshot_recover_4b),
    (
        "TestSnapshotRecoverManyClients4B",
        kvraft::snapshot_recover_many_clients_4b,
    ),
    ("TestSnapshotUnreliable4B", kvraft::snapshot_unreliable_4b),
    (
        "TestSnapshotUnreliableRecover4B",
        kvraft::snapshot_unreliable_recover_4b,
    ),
    (
        "TestSnapshotUnreliableRecoverConcurrentPartition4B",
        kvraft::snapshot_unreliable_recover_concurrent_partition_4b,
    ),
    (
        "TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable4B",
        kvraft::snapshot_unreliable_recover_concurrent_partition_linearizable_4b,
    ),
];

/// Every shardkv lab scenario (5A, 5B and the challenges), by its lab name.
pub const SHARDKV_SCENARIOS: &[(&str, Scenario)] = &[
    ("TestStaticShards5A", shardkv::static_shards_5a),
    ("TestRejection5A", shardkv::rejection_5a),
    ("TestJoinLeave5B", shardkv::join_leave_5b),
    ("TestSnapshot5B", shardkv::snapshot_5b),
    ("TestMissChange5B", shardkv::miss_change_5b),
    ("TestConcurrent1_5B", shardkv::concurrent1_5b),
    ("TestConcurrent2_5B", shardkv::concurrent2_5b),
    ("TestConcurrent3_5B", shardkv::concurrent3_5b),
    ("TestUnreliable1_5B", shardkv::unreliable1_5b),
    ("TestUnreliable2_5B", shardkv::unreliable2_5b),
    ("TestUnreliable3_5B", shardkv::unreliable3_5b),
    ("TestChallenge1Delete", shardkv::challenge1_delete),
    ("TestChallenge2Unaffected", shardkv::challenge2_unaffected),
    ("TestChallenge2Partial", shardkv::challenge2_partial),
];

/// Every lab scenario that runs by seed: Raft, kvsrv, kvraft, shardkv.
pub fn all_scenarios() -> impl Iterator<Item = &'static (&'static str, Scenario)> {
    RAFT_SCENARIOS
        .iter()
        .chain(KVSRV_SCENARIOS)
        .chain(KVRAFT_SCENARIOS)
        .chain(SHARDKV_SCENARIOS)
}

/// Declares one `#[test]` per scenario, each run over the environment's seeds with a replay
/// line on failure. `target` is the integration-test file's name.
#[macro_export]
macro_rules! lab_tests {
    ($target:literal; $($name:ident => $scenario:path),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                flotilla_testkit::run_seeds($target, stringify!($name), |seed| {
                    $scenario(seed);
                });
            }
        )+
    };
}
