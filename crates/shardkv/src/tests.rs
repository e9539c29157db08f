//! The shard group's state machine, one command at a time: configurations, hand-over of
//! shards with their exactly-once records, deletion, and what is served when.

use std::collections::BTreeMap;

use flotilla_kv::{KvCommand, KvReply};
use flotilla_rsm::{ApplyCtx, SessionLimits, StateMachine};
use flotilla_shardctrler::{Gid, ShardConfig};

use crate::{key_shard, ShardCommand, ShardKv, ShardReply, ShardState};

const NSHARDS: usize = 4;

fn config(num: u64, shards: [Gid; NSHARDS]) -> ShardConfig {
    let mut groups = BTreeMap::new();
    for &g in &shards {
        if g != 0 {
            groups.insert(g, vec![format!("server-{g}-0")]);
        }
    }
    ShardConfig {
        num,
        shards: shards.to_vec(),
        groups,
    }
}

/// A key in shard `s`.
fn key_in(s: usize) -> Vec<u8> {
    (0..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| key_shard(k, NSHARDS) == s)
        .unwrap()
}

fn op(client: u64, seq: u64, op: KvCommand) -> ShardCommand {
    ShardCommand::Op {
        client,
        seq,
        after_ms: 1,
        op,
    }
}

fn append(s: usize, v: &str) -> KvCommand {
    KvCommand::Append {
        key: key_in(s),
        value: v.into(),
    }
}

fn get(s: usize) -> KvCommand {
    KvCommand::Get { key: key_in(s) }
}

fn value(r: ShardReply) -> Vec<u8> {
    match r {
        ShardReply::Kv(KvReply::Value(v)) => v.unwrap_or_default(),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Groups 1 and 2 after configuration 1 (everything on group 1), then configuration 2 moving
/// shards 2 and 3 to group 2.
fn two_groups_after_move() -> (ShardKv, ShardKv) {
    let (mut a, mut b) = (ShardKv::new(1, NSHARDS), ShardKv::new(2, NSHARDS));
    let c1 = config(1, [1, 1, 1, 1]);
    let c2 = config(2, [1, 1, 2, 2]);
    for m in [&mut a, &mut b] {
        assert_eq!(
            m.apply(ShardCommand::Config(c1.clone()), &ApplyCtx::zero()),
            ShardReply::Done
        );
    }
    assert_eq!(
        a.apply(op(7, 1, append(2, "x")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    for m in [&mut a, &mut b] {
        assert_eq!(
            m.apply(ShardCommand::Config(c2.clone()), &ApplyCtx::zero()),
            ShardReply::Done
        );
    }
    (a, b)
}

#[test]
fn hash_tags_keep_related_keys_in_one_shard() {
    let n = 1024;
    assert_eq!(
        key_shard(b"{user:7}.name", n),
        key_shard(b"{user:7}.mail", n)
    );
    assert_eq!(key_shard(b"{user:7}.name", n), key_shard(b"user:7", n));
    // An empty tag is no tag: the whole key is hashed.
    assert_ne!(key_shard(b"{}a", n), key_shard(b"{}b", n));
    // Plain keys spread: 1000 keys over 10 shards leave none empty.
    let mut counts = [0; 10];
    for i in 0..1000 {
        counts[key_shard(format!("key:{i}").as_bytes(), 10)] += 1;
    }
    assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
}

#[test]
fn the_first_configuration_serves_empty_shards_at_once() {
    let mut a = ShardKv::new(1, NSHARDS);
    assert_eq!(
        a.apply(op(1, 1, get(0)), &ApplyCtx::zero()),
        ShardReply::WrongGroup
    );
    a.apply(
        ShardCommand::Config(config(1, [1, 1, 1, 1])),
        &ApplyCtx::zero(),
    );
    assert!(a.settled());
    assert_eq!(value(a.apply(op(1, 1, get(0)), &ApplyCtx::zero())), b"");
}

#[test]
fn a_moved_shard_is_frozen_at_the_old_owner_and_not_served_at_the_new_one_until_installed() {
    let (mut a, mut b) = two_groups_after_move();
    assert_eq!(a.shard_states()[&2], ShardState::Handoff);
    assert_eq!(b.shard_states()[&2], ShardState::Pulling);
    // Never served after it was given away, nor before it arrived.
    assert_eq!(
        a.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::WrongGroup
    );
    assert_eq!(
        b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(
        b.apply(op(8, 1, get(2)), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    // Shards the change did not move are served throughout.
    assert_eq!(
        a.apply(op(7, 3, append(0, "z")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert!(!a.settled() && !b.settled());
    // Neither may move on while its hand-over is pending.
    let c3 = config(3, [1, 1, 1, 1]);
    assert_eq!(
        a.apply(ShardCommand::Config(c3.clone()), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(
        b.apply(ShardCommand::Config(c3), &ApplyCtx::zero()),
        ShardReply::NotReady
    );
    assert_eq!(a.config().num, 2);
}

#[test]
fn a_shard_moves_with_its_exactly_once_records() {
    let (a, mut b) = two_groups_after_move();
    assert_eq!(b.pulls(), BTreeMap::from([(1, vec![2, 3])]));
    // Nothing before the old owner reaches the configuration; then exactly the frozen shards.
    assert!(a.handoff(1, &[2, 3]).is_empty());
    let blobs = a.handoff(2, &[0, 2, 3]);
    assert_eq!(blobs.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    b.apply(
        ShardCommand::Install {
            num: 2,
            shards: blobs,
        },
        &ApplyCtx::zero(),
    );
    assert_eq!(b.shard_states()[&2], ShardState::Notify);
    // The client's append (7, 1) went through group 1; retried at group 2 it is answered from
    // the records that came with the shard, not applied again.
    assert_eq!(
        b.apply(op(7, 1, append(2, "x")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert_eq!(value(b.apply(op(9, 1, get(2)), &ApplyCtx::zero())), b"x");
    // An older operation of that client is stale, a newer one applies.
    assert_eq!(
        b.apply(op(7, 0, append(2, "old")), &ApplyCtx::zero()),
        ShardReply::Stale
    );
    assert_eq!(
        b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero()),
        ShardReply::Kv(KvReply::Len(2))
    );
}

#[test]
fn the_old_copy_is_deleted_only_when_the_new_owner_has_it_and_then_both_settle() {
    let (mut a, mut b) = two_groups_after_move();
    assert!(!a.deleted(2, &[2, 3]));
    // A repeated or late Install changes nothing once installed.
    let blobs = a.handoff(2, &[2, 3]);
    b.apply(
        ShardCommand::Install {
            num: 2,
            shards: blobs.clone(),
        },
        &ApplyCtx::zero(),
    );
    b.apply(op(7, 2, append(2, "y")), &ApplyCtx::zero());
    b.apply(
        ShardCommand::Install {
            num: 2,
            shards: blobs,
        },
        &ApplyCtx::zero(),
    );
    assert_eq!(value(b.apply(op(9, 1, get(2)), &ApplyCtx::zero())), b"xy");
    assert_eq!(b.notices(), BTreeMap::from([(1, vec![2, 3])]));
    a.apply(
        ShardCommand::Delete {
            num: 2,
            shards: vec![2, 3],
        },
        &ApplyCtx::zero(),
    );
    assert!(a.deleted(2, &[2, 3]));
    assert!(a.settled());
    assert_eq!(a.shard_states().len(), 2, "the handed-off data is gone");
    b.apply(
        ShardCommand::Confirmed {
            num: 2,
            shards: vec![2, 3],
        },
        &ApplyCtx::zero(),
    );
    assert!(b.settled());
    // Both may now move on, in order only.
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(4, [1, 1, 1, 1])),
            &ApplyCtx::zero()
        ),
        ShardReply::NotReady
    );
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(3, [1, 1, 1, 2])),
            &ApplyCtx::zero()
        ),
        ShardReply::Done
    );
    assert!(
        a.deleted(2, &[2, 3]),
        "a later configuration implies deleted"
    );
}

#[test]
fn a_configuration_that_would_orphan_a_held_shard_is_refused() {
    let mut a = ShardKv::new(1, NSHARDS);
    a.apply(
        ShardCommand::Config(config(1, [1, 1, 1, 1])),
        &ApplyCtx::zero(),
    );
    assert_eq!(
        a.apply(
            ShardCommand::Config(config(2, [0, 0, 0, 0])),
            &ApplyCtx::zero()
        ),
        ShardReply::NotReady
    );
    assert_eq!(a.config().num, 1);
    assert!(a.apply(op(1, 1, get(0)), &ApplyCtx::zero()) != ShardReply::WrongGroup);
}

#[test]
fn snapshots_mid_migration_restore_the_same_state() {
    let (a, mut b) = two_groups_after_move();
    b.apply(
        ShardCommand::Install {
            num: 2,
            shards: a.handoff(2, &[2]),
        },
        &ApplyCtx::zero(),
    );
    for m in [&a, &b] {
        let mut r = ShardKv::new(m.gid(), NSHARDS);
        r.restore(&m.snapshot()).unwrap();
        assert_eq!(r.snapshot(), m.snapshot());
        assert_eq!(r.shard_states(), m.shard_states());
        assert_eq!(r.config(), m.config());
        assert_eq!(r.prev(), m.prev());
    }
    let mut r = ShardKv::new(2, NSHARDS);
    assert!(r.restore(b"garbage").is_err());
}

/// An entry applied at replicated time `now_ms`, with an idle limit of 1 s and at most `max`
/// records per shard.
fn at(now_ms: u64, max: u64) -> ApplyCtx {
    ApplyCtx {
        now_ms,
        index: 0,
        limits: SessionLimits {
            idle_ms: 1_000,
            max_sessions: max,
        },
    }
}

fn stamped(client: u64, seq: u64, after_ms: u64, op: KvCommand) -> ShardCommand {
    ShardCommand::Op {
        client,
        seq,
        after_ms,
        op,
    }
}

/// Issue 16: a shard's exactly-once records expire by the replicated clock (idle past the
/// limit, or least recently active past the maximum), and a retry from a client whose record
/// expired is refused, not applied a second time, here or at the shard's next owner (the
/// shard's watermark moves with it).
#[test]
fn per_shard_records_expire_and_an_expired_client_is_refused() {
    let mut a = ShardKv::new(1, NSHARDS);
    a.apply(ShardCommand::Config(config(1, [1, 1, 1, 1])), &at(0, 10));
    assert_eq!(
        a.apply(stamped(7, 1, 10, append(2, "x")), &at(10, 10)),
        ShardReply::Kv(KvReply::Len(1))
    );
    assert_eq!(a.shard_sessions()[&2], 1);
    // Client 8 writes shard 0 two seconds later: client 7's record (idle 2 s) goes, from
    // shard 2 although nothing touched it.
    let r = a.apply(stamped(8, 1, 2_000, append(0, "y")), &at(2_010, 10));
    assert_eq!(r, ShardReply::Kv(KvReply::Len(1)));
    assert_eq!(a.shard_sessions()[&2], 0);
    // Client 7's retry of its append (reply lost): refused, the value is unchanged.
    let retry = stamped(7, 1, 10, append(2, "x"));
    assert_eq!(a.apply(retry.clone(), &at(2_020, 10)), ShardReply::Expired);
    assert_eq!(
        a.apply(stamped(7, 1, 0, append(2, "x")), &at(2_020, 10)),
        ShardReply::Unstamped
    );
    assert_eq!(value(a.apply(op(9, 1, get(2)), &at(2_020, 10))), b"x");
    // The shard moves to group 2 with its watermark: the retry is refused there too.
    let mut b = ShardKv::new(2, NSHARDS);
    b.apply(ShardCommand::Config(config(1, [1, 1, 1, 1])), &at(0, 10));
    let c2 = config(2, [1, 1, 2, 1]);
    a.apply(ShardCommand::Config(c2.clone()), &at(2_030, 10));
    b.apply(ShardCommand::Config(c2), &at(2_030, 10));
    let shards = a.handoff(2, &[2]);
    b.apply(ShardCommand::Install { num: 2, shards }, &at(2_040, 10));
    assert_eq!(b.apply(retry, &at(2_050, 10)), ShardReply::Expired);
    // A new operation stamped with a time heard since starts a new record.
    let r = b.apply(stamped(7, 2, 2_040, append(2, "z")), &at(2_050, 10));
    assert_eq!(r, ShardReply::Kv(KvReply::Len(2)));
    // Past the maximum, the least recently active record of the shard goes.
    for c in 20..23 {
        b.apply(stamped(c, 1, 2_060 + c, append(2, "w")), &at(2_060 + c, 2));
    }
    assert_eq!(b.shard_sessions()[&2], 2);
}
