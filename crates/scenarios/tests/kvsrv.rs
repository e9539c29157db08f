//! Lab 2 (the single-node key/value server with at-most-once semantics).
use flotilla_scenarios::{kvsrv, lab_tests};

lab_tests!("kvsrv";
    test_basic_2 => kvsrv::basic_2,
    test_concurrent_2 => kvsrv::concurrent_2,
    test_unreliable_2 => kvsrv::unreliable_2,
    test_unreliable_one_key_2 => kvsrv::unreliable_one_key_2,
);
