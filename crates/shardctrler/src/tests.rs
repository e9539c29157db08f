//! The rebalancer's properties over random join / leave / move sequences, and the state
//! machine's commands, errors, history and snapshots.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_rsm::{ApplyCtx, StateMachine};
use proptest::prelude::*;

use crate::*;

fn join(gids: &[Gid]) -> CtrlCommand {
    CtrlCommand::Join(gids.iter().map(|&g| (g, vec![format!("s-{g}")])).collect())
}

fn latest(c: &mut Ctrler) -> ShardConfig {
    match c.apply(CtrlCommand::Query(None), &ApplyCtx::zero()) {
        CtrlReply::Config(cfg) => cfg,
        other => panic!("query answered {other:?}"),
    }
}

/// Even, every shard on a live group (or none without groups).
fn assert_balanced(cfg: &ShardConfig) {
    let counts = cfg.counts();
    if cfg.groups.is_empty() {
        assert!(cfg.shards.iter().all(|&g| g == 0), "{cfg:?}");
        return;
    }
    assert!(
        cfg.shards.iter().all(|g| cfg.groups.contains_key(g)),
        "{cfg:?}"
    );
    let (min, max) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(max - min <= 1, "uneven: {counts:?}");
}

#[derive(Clone, Debug)]
enum Op {
    Join(Vec<Gid>),
    Leave(Vec<Gid>),
    Move(usize, Gid),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(1..20u64, 1..4).prop_map(Op::Join),
        prop::collection::vec(1..20u64, 1..4).prop_map(Op::Leave),
        (0..DEFAULT_SHARDS, 1..20u64).prop_map(|(s, g)| Op::Move(s, g)),
    ]
}

proptest! {
    /// Over any sequence of joins, leaves and moves (refused ones included): after each Join
    /// or Leave the assignment is even and on live groups, it moved exactly the minimum number
    /// of shards, and a replica replaying the same commands reaches the same configurations.
    #[test]
    fn rebalancing_is_even_minimal_and_deterministic(ops in prop::collection::vec(op(), 1..30)) {
        let (mut a, mut b) = (Ctrler::default(), Ctrler::default());
        for op in ops {
            let before = latest(&mut a);
            let cmd = match &op {
                Op::Join(g) => join(g),
                Op::Leave(g) => CtrlCommand::Leave(g.clone()),
                Op::Move(s, g) => CtrlCommand::Move { shard: *s, gid: *g },
            };
            let reply = a.apply(cmd.clone(), &ApplyCtx::zero());
            prop_assert_eq!(&reply, &b.apply(cmd, &ApplyCtx::zero()));
            let after = latest(&mut a);
            if matches!(reply, CtrlReply::Err(_)) {
                prop_assert_eq!(&after, &before, "a refused command changed nothing");
                continue;
            }
            if !matches!(op, Op::Move(..)) {
                assert_balanced(&after);
                let live: BTreeSet<Gid> = after.groups.keys().copied().collect();
                let moved = (before.shards.iter().zip(&after.shards)).filter(|(x, y)| x != y).count();
                prop_assert_eq!(moved, min_moves(&before.shards, &live));
            }
        }
        prop_assert_eq!(a, b);
    }
}

/// The lab's TestMinimalAgain in miniature: joining a third group moves only shards to it,
/// at most NShards/3 + 1; a leave moves only the leaver's shards.
#[test]
fn join_and_leave_move_only_what_they_must() {
    let mut c = Ctrler::default();
    c.apply(join(&[1]), &ApplyCtx::zero());
    c.apply(join(&[2]), &ApplyCtx::zero());
    let before = latest(&mut c);
    c.apply(join(&[3]), &ApplyCtx::zero());
    let after = latest(&mut c);
    let changed: Vec<usize> = (0..DEFAULT_SHARDS)
        .filter(|&s| before.shards[s] != after.shards[s])
        .collect();
    assert!(changed.iter().all(|&s| after.shards[s] == 3));
    assert!(changed.len() <= DEFAULT_SHARDS / 3 + 1);
    c.apply(CtrlCommand::Leave(vec![1]), &ApplyCtx::zero());
    let left = latest(&mut c);
    assert!((0..DEFAULT_SHARDS).all(|s| after.shards[s] == 1 || after.shards[s] == left.shards[s]));
    assert_balanced(&left);
}

/// Configurations are numbered from 0 (empty); a change that changes nothing makes no new
/// one; Query of a number not reached yet gives the latest; history is kept.
#[test]
fn numbering_history_and_queries() {
    let mut c = Ctrler::new(4);
    assert_eq!(latest(&mut c), ShardConfig::initial(4));
    assert_eq!(
        c.apply(join(&[5]), &ApplyCtx::zero()),
        CtrlReply::Done { num: 1 }
    );
    assert_eq!(latest(&mut c).shards, vec![5; 4]);
    assert_eq!(
        c.apply(CtrlCommand::Move { shard: 0, gid: 5 }, &ApplyCtx::zero()),
        CtrlReply::Done { num: 1 }
    );
    c.apply(join(&[6]), &ApplyCtx::zero());
    assert_eq!(
        c.apply(CtrlCommand::Move { shard: 0, gid: 6 }, &ApplyCtx::zero()),
        CtrlReply::Done { num: 3 }
    );
    assert_eq!(
        c.apply(CtrlCommand::Query(Some(0)), &ApplyCtx::zero()),
        CtrlReply::Config(ShardConfig::initial(4))
    );
    let CtrlReply::Config(one) = c.apply(CtrlCommand::Query(Some(1)), &ApplyCtx::zero()) else {
        panic!()
    };
    assert_eq!((one.num, one.groups.len()), (1, 1));
    let CtrlReply::Config(far) = c.apply(CtrlCommand::Query(Some(99)), &ApplyCtx::zero()) else {
        panic!()
    };
    assert_eq!(far.num, 3);
    c.apply(CtrlCommand::Leave(vec![5, 6]), &ApplyCtx::zero());
    assert_eq!(latest(&mut c).shards, vec![0; 4], "no groups: no owners");
}

/// Bad commands are refused with a reason and change nothing.
#[test]
fn bad_commands_are_refused() {
    let mut c = Ctrler::default();
    c.apply(join(&[1]), &ApplyCtx::zero());
    let cases = [
        (join(&[0]), CtrlError::ZeroGid),
        (join(&[1]), CtrlError::AlreadyJoined(1)),
        (
            CtrlCommand::Join(BTreeMap::from([(2, vec![])])),
            CtrlError::NoServers(2),
        ),
        (CtrlCommand::Join(BTreeMap::new()), CtrlError::Empty),
        (CtrlCommand::Leave(vec![9]), CtrlError::UnknownGroup(9)),
        (
            CtrlCommand::Move { shard: 10, gid: 1 },
            CtrlError::NoSuchShard {
                shard: 10,
                shards: 10,
            },
        ),
        (
            CtrlCommand::Move { shard: 0, gid: 9 },
            CtrlError::UnknownGroup(9),
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(c.apply(cmd, &ApplyCtx::zero()), CtrlReply::Err(err));
    }
    assert_eq!(latest(&mut c).num, 1);
}

/// A snapshot restores every configuration; garbage is an error.
#[test]
fn snapshots_round_trip() {
    let mut c = Ctrler::default();
    c.apply(join(&[1, 2]), &ApplyCtx::zero());
    c.apply(CtrlCommand::Move { shard: 3, gid: 1 }, &ApplyCtx::zero());
    let mut r = Ctrler::default();
    r.restore(&c.snapshot()).unwrap();
    assert_eq!(r, c);
    assert!(r.restore(&[0xff, 0xff]).is_err());
    r.restore(&[]).unwrap();
    assert_eq!(r, Ctrler::default());
    assert!(Ctrler::is_read_only(&CtrlCommand::Query(None)));
    assert!(!Ctrler::is_read_only(&join(&[3])));
}

/// The fewest moves of any even assignment of `shards` over `groups`, by trying them all.
fn brute_force_min_moves(shards: &[Gid], groups: &[Gid]) -> usize {
    let (n, g) = (shards.len(), groups.len());
    let mut best = usize::MAX;
    for code in 0..g.pow(n as u32) {
        let mut counts = vec![0usize; g];
        let mut c = code;
        let mut moves = 0;
        for &old in shards {
            let owner = c % g;
            c /= g;
            counts[owner] += 1;
            moves += usize::from(groups[owner] != old);
        }
        if counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1 {
            best = best.min(moves);
        }
    }
    best
}

proptest! {
    /// `min_moves` (which the rebalancer meets) is the true minimum, checked against every
    /// even assignment of up to 7 shards over up to 3 groups.
    #[test]
    fn min_moves_is_the_true_minimum(
        shards in prop::collection::vec(0..5u64, 1..8),
        groups in prop::collection::btree_set(1..5u64, 1..4),
    ) {
        let gs: Vec<Gid> = groups.iter().copied().collect();
        let out = rebalance(&shards, &groups);
        let moved = shards.iter().zip(&out).filter(|(a, b)| a != b).count();
        prop_assert_eq!(moved, brute_force_min_moves(&shards, &gs));
        prop_assert_eq!(min_moves(&shards, &groups), moved);
    }
}
