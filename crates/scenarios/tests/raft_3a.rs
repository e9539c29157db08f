//! Lab 3A (leader election), as `cargo test -p flotilla-scenarios --test raft_3a`.
use flotilla_scenarios::{lab_tests, raft_3a};

lab_tests!("raft_3a";
    test_initial_election_3a => raft_3a::initial_election,
    test_re_election_3a => raft_3a::re_election,
    test_many_elections_3a => raft_3a::many_elections,
);
