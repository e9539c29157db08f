//! The servers' invariants, checked after every simulator step: the Raft core's checks itself
//! after every call; the testers add the replicas' ([`flotilla_rsm::Replica::check_invariants`],
//! which runs the state machine's too: a shard group's [`flotilla_shardkv::ShardKv`]), at the
//! depth a [`CheckSampler`] chooses.

use std::cell::Cell;

use flotilla_rsm::CheckDepth;

/// In release builds, one check in this many reads the whole state ([`CheckDepth::Full`]).
/// A full check costs O(state) (every key of a shard group, every session); run after each of
/// a run's hundreds of thousands of steps it would make a large state's scenario quadratic.
/// One in 64 keeps its cost below that of the quick checks on the lab scenarios' states,
/// while a state that breaks an invariant for good is still caught within 64 steps.
pub const FULL_CHECK_EVERY: u64 = 64;

/// Chooses the depth of each check: full at every step in debug builds; in release builds
/// quick at every step and full at one in [`FULL_CHECK_EVERY`], counted over the whole
/// simulation (deterministic, so a replayed seed checks the same steps).
#[derive(Debug, Default)]
pub struct CheckSampler {
    checks: Cell<u64>,
}

impl CheckSampler {
    /// The depth of the next check.
    pub fn next(&self) -> CheckDepth {
        let n = self.checks.get();
        self.checks.set(n.wrapping_add(1));
        if cfg!(debug_assertions) || n.is_multiple_of(FULL_CHECK_EVERY) {
            CheckDepth::Full
        } else {
            CheckDepth::Quick
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_in_every_64_is_full_in_release() {
        let s = CheckSampler::default();
        let full = (0..640).filter(|_| s.next() == CheckDepth::Full).count();
        assert_eq!(full, if cfg!(debug_assertions) { 640 } else { 10 });
    }
}
