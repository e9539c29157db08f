//! Hand-made histories for the Redis model: expiry read at the right and the wrong time,
//! conditional SET, PERSIST and PEXPIREAT, transactions applied whole, half or not at all,
//! WATCH, unknown outcomes. Each wrong answer must be rejected.

use std::time::Duration;

use flotilla_check::{
    check_redis, CheckResult, RedisCmd, RedisInput, RedisModel, RedisOp, RedisOperation,
    RedisOutput, RedisReply, SetCond,
};

const MS: u64 = 1_000_000;

/// An operation called at `call` ms that returned `reply` at `ret` ms.
fn op(client: u64, call: u64, ret: u64, op: RedisOp, reply: RedisReply) -> RedisOperation {
    RedisOperation {
        client,
        input: RedisInput { call_ms: call, op },
        call: call * MS,
        output: RedisOutput { ret_ms: ret, reply },
        ret: Some(ret * MS),
    }
}

fn unknown(client: u64, call: u64, o: RedisOp) -> RedisOperation {
    RedisOperation {
        client,
        input: RedisInput {
            call_ms: call,
            op: o,
        },
        call: call * MS,
        output: RedisOutput::unknown(),
        ret: None,
    }
}

fn set(key: &str, value: &str, cond: SetCond, px_at: Option<u64>) -> RedisOp {
    RedisOp::Cmd(set_cmd(key, value, cond, px_at))
}

fn set_cmd(key: &str, value: &str, cond: SetCond, px_at: Option<u64>) -> RedisCmd {
    RedisCmd::Set {
        key: key.into(),
        value: value.into(),
        cond,
        px_at,
    }
}

fn get(key: &str) -> RedisOp {
    RedisOp::Cmd(RedisCmd::Get { key: key.into() })
}

fn bulk(v: Option<&str>) -> RedisReply {
    RedisReply::Bulk(v.map(str::to_owned))
}

fn check(history: &[RedisOperation]) -> CheckResult {
    let strict = check_redis(RedisModel::strict(), history, Some(Duration::from_secs(10)));
    // The relaxed model accepts at least what the strict one does.
    if strict.is_ok() {
        let relaxed = check_redis(RedisModel::reads_run_ahead(), history, None);
        assert!(relaxed.is_ok(), "{relaxed}");
    }
    strict
}

fn assert_ok(history: &[RedisOperation]) {
    let r = check(history);
    assert_eq!(r, CheckResult::Ok, "{r}");
}

fn assert_illegal(history: &[RedisOperation]) {
    let r = check(history);
    assert!(r.is_illegal(), "accepted: {history:#?}");
    // The explanation names operations and states readably.
    assert!(!r.to_string().is_empty());
}

#[test]
fn a_key_is_gone_from_its_expiry_on() {
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, Some(100)),
        RedisReply::Ok,
    );
    // Read wholly before the expiry: present.
    assert_ok(&[put.clone(), op(1, 20, 30, get("k"), bulk(Some("v")))]);
    assert_illegal(&[put.clone(), op(1, 20, 30, get("k"), bulk(None))]);
    // Wholly after: gone.
    assert_ok(&[put.clone(), op(1, 100, 130, get("k"), bulk(None))]);
    assert_illegal(&[put.clone(), op(1, 100, 130, get("k"), bulk(Some("v")))]);
    // Across the expiry: either.
    assert_ok(&[put.clone(), op(1, 90, 110, get("k"), bulk(Some("v")))]);
    assert_ok(&[put.clone(), op(1, 90, 110, get("k"), bulk(None))]);
    // The labs' get reads an expired key as "".
    assert_ok(&[
        put.clone(),
        op(1, 120, 130, get("k"), RedisReply::Text(String::new())),
    ]);
    assert_illegal(&[put, op(1, 120, 130, get("k"), RedisReply::Text("v".into()))]);
}

#[test]
fn time_never_goes_back_between_operations() {
    // Both reads straddle the expiry. Alone each is fine; but the first is over before the
    // second begins and saw the key gone, so the second cannot see it back.
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, Some(100)),
        RedisReply::Ok,
    );
    let gone = op(1, 90, 105, get("k"), bulk(None));
    let back = op(2, 95, 120, get("k"), bulk(Some("v")));
    assert_ok(&[put.clone(), gone.clone(), back.clone()]);
    let late_back = op(2, 106, 120, get("k"), bulk(Some("v")));
    assert_illegal(&[put.clone(), gone.clone(), late_back]);
    // Concurrent operations: a read that saw the key expired and a PERSIST that found it
    // present, with a later read of the persisted key. PERSIST must go before the read that
    // saw it gone (it found the key), but then that read would see it persisted: a key that
    // came back from expiry. Not linearizable.
    let persist = op(
        3,
        90,
        110,
        RedisOp::Cmd(RedisCmd::Persist { key: "k".into() }),
        RedisReply::Int(1),
    );
    let after = op(4, 130, 140, get("k"), bulk(Some("v")));
    assert_illegal(&[put.clone(), gone.clone(), persist.clone(), after.clone()]);
    // Without the read that saw it gone, fine.
    assert_ok(&[put, persist, after]);
}

/// What Flotilla's replicas do when they answer reads outside the log (ReadIndex, leases):
/// a read at the leader's clock sees a key expired, while a write proposed a moment before,
/// stamped earlier, is still on its way; applied, it finds the key present and keeps it
/// alive. The strict model rejects it; the one for such services accepts it, and still
/// rejects a read that no instant in its window explains.
#[test]
fn reads_may_run_ahead_of_writes_proposed_before_them() {
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, Some(100)),
        RedisReply::Ok,
    );
    let read = op(1, 101, 103, get("k"), bulk(None));
    let xx = op(
        2,
        95,
        110,
        set("k", "w", SetCond::IfPresent, None),
        RedisReply::Ok,
    );
    let later = op(3, 120, 130, get("k"), bulk(Some("w")));
    let history = [put.clone(), read, xx.clone(), later.clone()];
    assert!(check_redis(RedisModel::strict(), &history, None).is_illegal());
    let relaxed = check_redis(RedisModel::reads_run_ahead(), &history, None);
    assert_eq!(relaxed, CheckResult::Ok, "{relaxed}");
    // A read whose whole window is before the expiry must still see the key.
    let early = op(1, 50, 60, get("k"), bulk(None));
    let bad = [put, early, xx, later];
    assert!(check_redis(RedisModel::reads_run_ahead(), &bad, None).is_illegal());
}

#[test]
fn conditional_set_and_expiry() {
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, Some(100)),
        RedisReply::Ok,
    );
    // NX before the expiry fails, after it succeeds.
    assert_ok(&[
        put.clone(),
        op(
            1,
            20,
            30,
            set("k", "w", SetCond::IfAbsent, None),
            RedisReply::Nil,
        ),
    ]);
    assert_illegal(&[
        put.clone(),
        op(
            1,
            20,
            30,
            set("k", "w", SetCond::IfAbsent, None),
            RedisReply::Ok,
        ),
    ]);
    assert_ok(&[
        put.clone(),
        op(
            1,
            100,
            110,
            set("k", "w", SetCond::IfAbsent, None),
            RedisReply::Ok,
        ),
    ]);
    // XX the other way round.
    assert_ok(&[
        put.clone(),
        op(
            1,
            20,
            30,
            set("k", "w", SetCond::IfPresent, None),
            RedisReply::Ok,
        ),
    ]);
    assert_illegal(&[
        put.clone(),
        op(
            1,
            100,
            110,
            set("k", "w", SetCond::IfPresent, None),
            RedisReply::Ok,
        ),
    ]);
    // A successful XX drops the expiry: the key outlives it.
    let xx = op(
        1,
        20,
        30,
        set("k", "w", SetCond::IfPresent, None),
        RedisReply::Ok,
    );
    assert_ok(&[
        put.clone(),
        xx.clone(),
        op(2, 200, 210, get("k"), bulk(Some("w"))),
    ]);
    assert_illegal(&[put, xx, op(2, 200, 210, get("k"), bulk(None))]);
    // A PXAT already past deletes.
    let past = op(
        0,
        50,
        60,
        set("k", "v", SetCond::Always, Some(40)),
        RedisReply::Ok,
    );
    assert_illegal(&[past, op(1, 70, 80, get("k"), bulk(Some("v")))]);
}

#[test]
fn pexpireat_and_persist() {
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, None),
        RedisReply::Ok,
    );
    let expire = |at, reply| {
        op(
            1,
            20,
            30,
            RedisOp::Cmd(RedisCmd::PExpireAt {
                key: "k".into(),
                at,
            }),
            RedisReply::Int(reply),
        )
    };
    let persist = |call, ret, reply| {
        op(
            2,
            call,
            ret,
            RedisOp::Cmd(RedisCmd::Persist { key: "k".into() }),
            RedisReply::Int(reply),
        )
    };
    assert_ok(&[
        put.clone(),
        expire(100, 1),
        op(3, 150, 160, get("k"), bulk(None)),
    ]);
    assert_illegal(&[
        put.clone(),
        expire(100, 1),
        op(3, 150, 160, get("k"), bulk(Some("v"))),
    ]);
    // On an absent key it answers 0 and changes nothing.
    assert_illegal(&[expire(100, 1)]);
    assert_ok(&[expire(100, 0)]);
    // PERSIST before the expiry keeps the key; after it, there is nothing to persist.
    assert_ok(&[
        put.clone(),
        expire(100, 1),
        persist(40, 50, 1),
        op(3, 150, 160, get("k"), bulk(Some("v"))),
    ]);
    assert_illegal(&[put.clone(), expire(100, 1), persist(120, 130, 1)]);
    assert_ok(&[put.clone(), expire(100, 1), persist(120, 130, 0)]);
    // PERSIST of a key without an expiry: 0.
    assert_illegal(&[put, persist(40, 50, 1)]);
}

fn multi(watch: &[(&str, u64)], cmds: Vec<RedisCmd>) -> RedisOp {
    RedisOp::Multi {
        watch: watch.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
        cmds,
    }
}

#[test]
fn a_transaction_applies_whole_or_not_at_all() {
    let tx = multi(
        &[],
        vec![
            set_cmd("{t}a", "1", SetCond::Always, None),
            set_cmd("{t}b", "2", SetCond::Always, None),
        ],
    );
    let applied = op(
        0,
        0,
        10,
        tx.clone(),
        RedisReply::Array(vec![RedisReply::Ok; 2]),
    );
    assert_ok(&[
        applied.clone(),
        op(1, 20, 30, get("{t}a"), bulk(Some("1"))),
        op(1, 40, 50, get("{t}b"), bulk(Some("2"))),
    ]);
    // Half applied: one key written, the other not.
    assert_illegal(&[
        applied.clone(),
        op(1, 20, 30, get("{t}a"), bulk(Some("1"))),
        op(1, 40, 50, get("{t}b"), bulk(None)),
    ]);
    // Torn: a reader concurrent with it must not see one write and miss the other.
    let slow = op(
        0,
        0,
        100,
        tx.clone(),
        RedisReply::Array(vec![RedisReply::Ok; 2]),
    );
    assert_illegal(&[
        slow.clone(),
        op(1, 20, 30, get("{t}a"), bulk(Some("1"))),
        op(1, 40, 50, get("{t}b"), bulk(None)),
    ]);
    // Unknown outcome: all or nothing too.
    let lost = unknown(0, 0, tx);
    assert_ok(&[lost.clone(), op(1, 20, 30, get("{t}a"), bulk(None))]);
    assert_ok(&[
        lost.clone(),
        op(1, 20, 30, get("{t}a"), bulk(Some("1"))),
        op(1, 40, 50, get("{t}b"), bulk(Some("2"))),
    ]);
    assert_illegal(&[
        lost,
        op(1, 20, 30, get("{t}a"), bulk(Some("1"))),
        op(1, 40, 50, get("{t}b"), bulk(None)),
    ]);
    // A command's reply inside the transaction is checked too: NX on a key just set.
    let nx = multi(
        &[],
        vec![
            set_cmd("{t}a", "1", SetCond::Always, None),
            set_cmd("{t}a", "2", SetCond::IfAbsent, None),
        ],
    );
    assert_ok(&[op(
        0,
        0,
        10,
        nx.clone(),
        RedisReply::Array(vec![RedisReply::Ok, RedisReply::Nil]),
    )]);
    assert_illegal(&[op(
        0,
        0,
        10,
        nx,
        RedisReply::Array(vec![RedisReply::Ok, RedisReply::Ok]),
    )]);
}

#[test]
fn watch_aborts_exactly_when_a_watched_key_changed() {
    let put = op(
        0,
        0,
        10,
        set("{t}a", "1", SetCond::Always, None),
        RedisReply::Ok,
    );
    let versions = op(
        1,
        20,
        30,
        RedisOp::Versions {
            keys: vec!["{t}a".into()],
        },
        RedisReply::Versions(vec![7]),
    );
    let tx = multi(
        &[("{t}a", 7)],
        vec![set_cmd("{t}a", "2", SetCond::Always, None)],
    );
    let applied = op(
        1,
        60,
        70,
        tx.clone(),
        RedisReply::Array(vec![RedisReply::Ok]),
    );
    let aborted = op(1, 60, 70, tx, RedisReply::Aborted);
    // Nothing in between: it applies.
    assert_ok(&[put.clone(), versions.clone(), applied.clone()]);
    assert_illegal(&[put.clone(), versions.clone(), aborted.clone()]);
    // A write in between: it aborts, and applies nothing.
    let write = op(
        2,
        40,
        50,
        set("{t}a", "x", SetCond::Always, None),
        RedisReply::Ok,
    );
    assert_ok(&[
        put.clone(),
        versions.clone(),
        write.clone(),
        aborted.clone(),
    ]);
    assert_illegal(&[
        put.clone(),
        versions.clone(),
        write.clone(),
        applied.clone(),
    ]);
    assert_illegal(&[
        put.clone(),
        versions.clone(),
        write.clone(),
        aborted.clone(),
        op(3, 80, 90, get("{t}a"), bulk(Some("2"))),
    ]);
    // A failed conditional write is no write.
    let nx = op(
        2,
        40,
        50,
        set("{t}a", "x", SetCond::IfAbsent, None),
        RedisReply::Nil,
    );
    assert_ok(&[put.clone(), versions.clone(), nx, applied.clone()]);
    // Expiry counts as a change.
    let expiring = op(
        0,
        0,
        10,
        set("{t}a", "1", SetCond::Always, Some(55)),
        RedisReply::Ok,
    );
    assert_ok(&[expiring.clone(), versions.clone(), aborted]);
    assert_illegal(&[expiring, versions.clone(), applied]);
    // Two reads of one version of a key must agree; an absent key has version 0.
    let other = op(
        2,
        40,
        50,
        RedisOp::Versions {
            keys: vec!["{t}a".into()],
        },
        RedisReply::Versions(vec![8]),
    );
    assert_illegal(&[put.clone(), versions.clone(), other]);
    let absent = op(
        2,
        0,
        5,
        RedisOp::Versions {
            keys: vec!["{t}z".into()],
        },
        RedisReply::Versions(vec![3]),
    );
    assert_illegal(&[absent]);
}

#[test]
fn unknown_writes_may_take_effect_late_or_never() {
    let put = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, None),
        RedisReply::Ok,
    );
    let lost_expire = unknown(
        1,
        20,
        RedisOp::Cmd(RedisCmd::PExpireAt {
            key: "k".into(),
            at: 100,
        }),
    );
    assert_ok(&[
        put.clone(),
        lost_expire.clone(),
        op(2, 150, 160, get("k"), bulk(None)),
    ]);
    assert_ok(&[
        put.clone(),
        lost_expire.clone(),
        op(2, 150, 160, get("k"), bulk(Some("v"))),
    ]);
    // An unknown APPEND may find the key expired (and start afresh) or not.
    let expiring = op(
        0,
        0,
        10,
        set("k", "v", SetCond::Always, Some(100)),
        RedisReply::Ok,
    );
    let append = unknown(
        1,
        20,
        RedisOp::Cmd(RedisCmd::Append {
            key: "k".into(),
            value: "w".into(),
        }),
    );
    assert_ok(&[
        expiring.clone(),
        append.clone(),
        op(2, 50, 60, get("k"), bulk(Some("vw"))),
    ]);
    assert_ok(&[
        expiring.clone(),
        append.clone(),
        op(2, 150, 160, get("k"), bulk(Some("w"))),
    ]);
    assert_illegal(&[
        expiring,
        append,
        op(2, 150, 160, get("k"), bulk(Some("vw"))),
    ]);
}

#[test]
fn independent_keys_are_checked_apart() {
    // Many concurrent operations on many keys: each key its own partition, so quick.
    let mut history = Vec::new();
    for k in 0..50 {
        let key = format!("k{k}");
        history.push(op(
            0,
            0,
            10,
            set(&key, "v", SetCond::Always, Some(100)),
            RedisReply::Ok,
        ));
        for c in 0..8 {
            let reply = if c % 2 == 0 {
                bulk(Some("v"))
            } else {
                bulk(None)
            };
            history.push(op(c + 1, 90, 110, get(&key), reply));
        }
    }
    assert_ok(&history);
    history.push(op(9, 200, 210, get("k7"), bulk(Some("v"))));
    assert_illegal(&history);
}
