//! Lab 5A/5B, sharded key/value (6.5840 2024 `shardkv`, and the 2020 challenge tests).
use flotilla_scenarios::{lab_tests, shardkv};

lab_tests!("shardkv";
    test_static_shards_5a => shardkv::static_shards_5a,
    test_rejection_5a => shardkv::rejection_5a,
    test_join_leave_5b => shardkv::join_leave_5b,
    test_snapshot_5b => shardkv::snapshot_5b,
    test_miss_change_5b => shardkv::miss_change_5b,
    test_concurrent1_5b => shardkv::concurrent1_5b,
    test_concurrent2_5b => shardkv::concurrent2_5b,
    test_concurrent3_5b => shardkv::concurrent3_5b,
    test_unreliable1_5b => shardkv::unreliable1_5b,
    test_unreliable2_5b => shardkv::unreliable2_5b,
    test_unreliable3_5b => shardkv::unreliable3_5b,
    test_challenge1_delete => shardkv::challenge1_delete,
    test_challenge2_unaffected => shardkv::challenge2_unaffected,
    test_challenge2_partial => shardkv::challenge2_partial,
);
