//! Lab 4A (the Raft-replicated key/value service, without snapshots).
use flotilla_scenarios::{kvraft, lab_tests};

lab_tests!("kvraft_4a";
    test_basic_4a => kvraft::basic_4a,
    test_speed_4a => kvraft::speed_4a,
    test_concurrent_4a => kvraft::concurrent_4a,
    test_unreliable_4a => kvraft::unreliable_4a,
    test_unreliable_one_key_4a => kvraft::unreliable_one_key_4a,
    test_one_partition_4a => kvraft::one_partition_4a,
    test_many_partitions_one_client_4a => kvraft::many_partitions_one_client_4a,
    test_many_partitions_many_clients_4a => kvraft::many_partitions_many_clients_4a,
    test_persist_one_client_4a => kvraft::persist_one_client_4a,
    test_persist_concurrent_4a => kvraft::persist_concurrent_4a,
    test_persist_concurrent_unreliable_4a => kvraft::persist_concurrent_unreliable_4a,
    test_persist_partition_4a => kvraft::persist_partition_4a,
    test_persist_partition_unreliable_4a => kvraft::persist_partition_unreliable_4a,
    test_persist_partition_unreliable_linearizable_4a => kvraft::persist_partition_unreliable_linearizable_4a,
);
