//! Lab 4B (the Raft-replicated key/value service with snapshots).
use flotilla_scenarios::{kvraft, lab_tests};

lab_tests!("kvraft_4b";
    test_snapshot_rpc_4b => kvraft::snapshot_rpc_4b,
    test_snapshot_size_4b => kvraft::snapshot_size_4b,
    test_speed_4b => kvraft::speed_4b,
    test_snapshot_recover_4b => kvraft::snapshot_recover_4b,
    test_snapshot_recover_many_clients_4b => kvraft::snapshot_recover_many_clients_4b,
    test_snapshot_unreliable_4b => kvraft::snapshot_unreliable_4b,
    test_snapshot_unreliable_recover_4b => kvraft::snapshot_unreliable_recover_4b,
    test_snapshot_unreliable_recover_concurrent_partition_4b => kvraft::snapshot_unreliable_recover_concurrent_partition_4b,
    test_snapshot_unreliable_recover_concurrent_partition_linearizable_4b => kvraft::snapshot_unreliable_recover_concurrent_partition_linearizable_4b,
);
