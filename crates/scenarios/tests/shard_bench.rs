//! The simulated sharded benchmark's one deterministic claim, in virtual time (not a timing
//! test): with a per-message cost on every group server, 3 groups carry at least twice the
//! operations per virtual second of 1 group, and the histories stay linearizable.

use flotilla_scenarios::shard_bench::shard_throughput;

#[test]
fn three_groups_carry_at_least_twice_one_group() {
    let one = shard_throughput(1, 200, 2, 1);
    let three = shard_throughput(3, 200, 2, 1);
    eprintln!(
        "1 group: {:.0} ops/virtual s, 3 groups: {:.0}",
        one.ops_per_virtual_sec(),
        three.ops_per_virtual_sec()
    );
    assert!(one.operations > 100, "{one:?}");
    assert!(
        three.ops_per_virtual_sec() >= 2.0 * one.ops_per_virtual_sec(),
        "3 groups {three:?} vs 1 group {one:?}"
    );
}
