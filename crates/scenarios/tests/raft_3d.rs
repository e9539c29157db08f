//! Lab 3D (snapshots).
use flotilla_scenarios::{lab_tests, raft_3d};

lab_tests!("raft_3d";
    test_snapshot_basic_3d => raft_3d::snapshot_basic,
    test_snapshot_install_3d => raft_3d::snapshot_install,
    test_snapshot_install_unreliable_3d => raft_3d::snapshot_install_unreliable,
    test_snapshot_install_crash_3d => raft_3d::snapshot_install_crash,
    test_snapshot_install_uncrash_3d => raft_3d::snapshot_install_uncrash,
    test_snapshot_all_crash_3d => raft_3d::snapshot_all_crash,
    test_snapshot_init_3d => raft_3d::snapshot_init,
);
