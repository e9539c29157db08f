//! Lab 3B (log replication).
use flotilla_scenarios::{lab_tests, raft_3b};

lab_tests!("raft_3b";
    test_basic_agree_3b => raft_3b::basic_agree,
    test_rpc_bytes_3b => raft_3b::rpc_bytes,
    test_follower_failure_3b => raft_3b::follower_failure,
    test_leader_failure_3b => raft_3b::leader_failure,
    test_fail_agree_3b => raft_3b::fail_agree,
    test_fail_no_agree_3b => raft_3b::fail_no_agree,
    test_concurrent_starts_3b => raft_3b::concurrent_starts,
    test_rejoin_3b => raft_3b::rejoin,
    test_backup_3b => raft_3b::backup,
    test_count_3b => raft_3b::count,
);
