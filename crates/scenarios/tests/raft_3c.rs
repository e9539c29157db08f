//! Lab 3C (persistence, Figure 8, churn).
use flotilla_scenarios::{lab_tests, raft_3c};

lab_tests!("raft_3c";
    test_persist1_3c => raft_3c::persist1,
    test_persist2_3c => raft_3c::persist2,
    test_persist3_3c => raft_3c::persist3,
    test_figure8_3c => raft_3c::figure8,
    test_unreliable_agree_3c => raft_3c::unreliable_agree,
    test_figure8_unreliable_3c => raft_3c::figure8_unreliable,
    test_reliable_churn_3c => raft_3c::reliable_churn,
    test_unreliable_churn_3c => raft_3c::unreliable_churn,
);
