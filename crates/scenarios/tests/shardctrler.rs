//! Lab 5A, the shard controller (6.5840 2024 `shardctrler`, and the 2020 `shardmaster`
//! TestBasic / TestMulti blocks, whose checks these cover).
use flotilla_scenarios::{lab_tests, shardctrler};

lab_tests!("shardctrler";
    test_basic_leave_join_and_history_5a => shardctrler::basic_leave_join_and_history_5a,
    test_basic_move_5a => shardctrler::basic_move_5a,
    test_concurrent_leave_join_5a => shardctrler::concurrent_leave_join_5a,
    test_minimal_transfer_5a => shardctrler::minimal_transfer_5a,
    test_multi_leave_join_5a => shardctrler::multi_leave_join_5a,
    test_multi_agree_config_5a => shardctrler::multi_agree_config_5a,
);
