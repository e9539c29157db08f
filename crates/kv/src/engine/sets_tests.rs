//! Set commands against Redis 7.0's replies (taken from a real redis-server, word for word).

use std::collections::BTreeSet;

use flotilla_resp::Value;

use crate::engine::test_support::*;
use crate::store::Kv;

/// A set reply's members, as text.
fn members(v: Value) -> Vec<String> {
    let (Value::Set(items) | Value::Array(items)) = v else {
        panic!("not a set or array: {v:?}")
    };
    items
        .into_iter()
        .map(|i| match i {
            Value::Bulk(b) => String::from_utf8(b).unwrap(),
            other => panic!("not a bulk: {other:?}"),
        })
        .collect()
}

fn sorted(v: Value) -> Vec<String> {
    let mut m = members(v);
    m.sort();
    m
}

fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[test]
fn add_remove_and_membership() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "SADD s a b c a"), int(3));
    assert_eq!(run(kv, "SADD s a d"), int(1));
    assert_eq!(run(kv, "SCARD s"), int(4));
    assert_eq!(run(kv, "SISMEMBER s a"), int(1));
    assert_eq!(run(kv, "SISMEMBER s z"), int(0));
    assert_eq!(
        run(kv, "SMISMEMBER s z a"),
        Value::Array(vec![int(0), int(1)])
    );
    assert_eq!(
        run(kv, "SMISMEMBER nokey a b"),
        Value::Array(vec![int(0), int(0)])
    );
    assert_eq!(run(kv, "TYPE s"), Value::Simple("set".into()));
    // SMEMBERS is a set in RESP3 (`~`), as Redis answers.
    assert_eq!(
        run(kv, "SMEMBERS s"),
        Value::Set(vec![bulk("a"), bulk("b"), bulk("c"), bulk("d")])
    );
    assert_eq!(run(kv, "SMEMBERS nokey"), Value::Set(vec![]));
    assert_eq!(run(kv, "SREM s a z"), int(1));
    assert_eq!(run(kv, "SREM nokey a"), int(0));
    assert_eq!(run(kv, "SREM s b c d"), int(3));
    assert_eq!(run(kv, "EXISTS s"), int(0), "an emptied set is deleted");
    assert_eq!(run(kv, "SCARD s"), int(0));
}

/// A write that changes nothing does not write: WATCH sees the same version, as in Redis
/// (which signals a modified key only when members were added or removed).
#[test]
fn writes_that_change_nothing_keep_the_version() {
    let kv = &mut Kv::default();
    at_index(kv, 1000, 10, "SADD s a b");
    let version = |kv: &Kv| kv.live(b"s", 1000).unwrap().version;
    assert_eq!(version(kv), 10);
    assert_eq!(at_index(kv, 1000, 11, "SADD s a b"), int(0));
    assert_eq!(at_index(kv, 1000, 12, "SREM s z"), int(0));
    assert_eq!(at_index(kv, 1000, 13, "SMOVE s t z"), int(0));
    assert_eq!(version(kv), 10);
    assert_eq!(at_index(kv, 1000, 14, "SADD s c"), int(1));
    assert_eq!(version(kv), 14);
}

/// SMOVE of a member the destination already has changes only the source: a transaction
/// watching the destination still commits (Redis's "SMOVE only notify dstset when the
/// addition is successful").
#[test]
fn smove_into_a_set_that_has_the_member_leaves_it_untouched() {
    let kv = &mut Kv::default();
    at_index(kv, 1000, 10, "SADD src a b");
    at_index(kv, 1000, 11, "SADD dst a");
    assert_eq!(at_index(kv, 1000, 12, "SMOVE src dst a"), int(1));
    assert_eq!(kv.live(b"dst", 1000).unwrap().version, 11);
    assert_eq!(kv.live(b"src", 1000).unwrap().version, 12);
    assert_eq!(at_index(kv, 1000, 13, "SMOVE src dst b"), int(1));
    assert_eq!(kv.live(b"dst", 1000).unwrap().version, 13);
}

#[test]
fn writes_keep_the_ttl() {
    let kv = &mut Kv::default();
    run(kv, "SADD s a b");
    run(kv, "EXPIRE s 10");
    run(kv, "SADD s c");
    run(kv, "SREM s a");
    run(kv, "SPOP s");
    assert_eq!(run(kv, "TTL s"), int(10));
    assert_eq!(at_index(kv, 11_000, 2000, "SCARD s"), int(0), "expired");
    // A set that expired is gone: SADD starts a new one, without the old TTL.
    assert_eq!(at_index(kv, 11_000, 2001, "SADD s x"), int(1));
    assert_eq!(at_index(kv, 11_000, 2002, "TTL s"), int(-1));
}

#[test]
fn every_command_refuses_another_type_and_changes_nothing() {
    let kv = &mut Kv::default();
    run(kv, "SET str x");
    run(kv, "SADD s a b");
    for line in [
        "SADD str a",
        "SREM str a",
        "SMEMBERS str",
        "SISMEMBER str a",
        "SMISMEMBER str a",
        "SCARD str",
        "SPOP str",
        "SPOP str 0",
        "SRANDMEMBER str",
        "SRANDMEMBER str 0",
        "SMOVE str s a",
        "SMOVE s str a",
        "SMOVE s str zz",
        "SINTER nokey str",
        "SINTER s nokey str",
        "SUNION nokey str",
        "SDIFF nokey str",
        "SDIFF s str",
        "SINTERSTORE d nokey str",
        "SUNIONSTORE d s str",
        "SDIFFSTORE s s str",
        "SINTERCARD 2 nokey str",
        "SINTERCARD 1 str LIMIT 1",
        "SSCAN str 0",
    ] {
        assert_eq!(run(kv, line), err(WRONGTYPE), "{line}");
    }
    assert_eq!(run(kv, "GET str"), bulk("x"));
    assert_eq!(sorted(run(kv, "SMEMBERS s")), words("a b"));
    assert_eq!(run(kv, "EXISTS d"), int(0));
    // A missing source moves nothing, whatever the destination holds (Redis's order).
    assert_eq!(run(kv, "SMOVE nokey str a"), int(0));
}

#[test]
fn intersection_union_difference() {
    let kv = &mut Kv::default();
    run(kv, "SADD a 1 2 3 4");
    run(kv, "SADD b 3 4 5");
    run(kv, "SADD c 4 5 6");
    assert_eq!(sorted(run(kv, "SINTER a b")), words("3 4"));
    assert_eq!(sorted(run(kv, "SINTER a b c")), words("4"));
    assert_eq!(run(kv, "SINTER a nokey"), Value::Set(vec![]));
    assert_eq!(sorted(run(kv, "SUNION a nokey c")), words("1 2 3 4 5 6"));
    assert_eq!(sorted(run(kv, "SDIFF a b")), words("1 2"));
    assert_eq!(sorted(run(kv, "SDIFF a nokey c")), words("1 2 3"));
    assert_eq!(run(kv, "SDIFF a a"), Value::Set(vec![]));
    assert_eq!(run(kv, "SDIFF nokey a"), Value::Set(vec![]));
    assert_eq!(sorted(run(kv, "SINTER a a a")), words("1 2 3 4"));
}

#[test]
fn store_forms_replace_or_delete_the_destination() {
    let kv = &mut Kv::default();
    run(kv, "SADD a 1 2 3");
    run(kv, "SADD b 2 3 4");
    // The destination may hold any type, and its TTL goes with it.
    run(kv, "SET d x EX 100");
    assert_eq!(run(kv, "SINTERSTORE d a b"), int(2));
    assert_eq!(run(kv, "TYPE d"), Value::Simple("set".into()));
    assert_eq!(run(kv, "TTL d"), int(-1));
    assert_eq!(sorted(run(kv, "SMEMBERS d")), words("2 3"));
    assert_eq!(run(kv, "SUNIONSTORE d a b"), int(4));
    assert_eq!(run(kv, "SDIFFSTORE d a b"), int(1));
    assert_eq!(sorted(run(kv, "SMEMBERS d")), words("1"));
    // A destination among the sources is read before it is replaced.
    assert_eq!(run(kv, "SUNIONSTORE a a b"), int(4));
    assert_eq!(sorted(run(kv, "SMEMBERS a")), words("1 2 3 4"));
    // An empty result deletes the destination.
    assert_eq!(run(kv, "SINTERSTORE d a nokey"), int(0));
    assert_eq!(run(kv, "EXISTS d"), int(0));
    run(kv, "SET d x");
    assert_eq!(run(kv, "SDIFFSTORE d a a"), int(0));
    assert_eq!(run(kv, "EXISTS d"), int(0));
    run(kv, "SET d x");
    assert_eq!(run(kv, "SUNIONSTORE d nokey"), int(0));
    assert_eq!(run(kv, "EXISTS d"), int(0));
}

#[test]
fn sintercard_arguments_and_limit() {
    let kv = &mut Kv::default();
    run(kv, "SADD a 1 2 3 4");
    run(kv, "SADD b 2 3 4 5");
    assert_eq!(run(kv, "SINTERCARD 2 a b"), int(3));
    assert_eq!(run(kv, "SINTERCARD 2 a b LIMIT 0"), int(3));
    assert_eq!(run(kv, "SINTERCARD 2 a b LIMIT 2"), int(2));
    assert_eq!(run(kv, "SINTERCARD 2 a b limit 9 LIMIT 1"), int(1));
    assert_eq!(run(kv, "SINTERCARD 1 nokey"), int(0));
    assert_eq!(run(kv, "SINTERCARD 2 a nokey LIMIT 1"), int(0));
    let numkeys = err("ERR numkeys should be greater than 0");
    assert_eq!(run(kv, "SINTERCARD 0 a"), numkeys);
    assert_eq!(run(kv, "SINTERCARD -1 a"), numkeys);
    assert_eq!(run(kv, "SINTERCARD x a"), numkeys);
    assert_eq!(
        run(kv, "SINTERCARD 3 a b"),
        err("ERR Number of keys can't be greater than number of args")
    );
    assert_eq!(run(kv, "SINTERCARD 1 a b"), err("ERR syntax error"));
    assert_eq!(run(kv, "SINTERCARD 1 a LIMIT"), err("ERR syntax error"));
    let limit = err("ERR LIMIT can't be negative");
    assert_eq!(run(kv, "SINTERCARD 1 a LIMIT -1"), limit);
    assert_eq!(run(kv, "SINTERCARD 1 a LIMIT x"), limit);
    assert_eq!(
        run(kv, "SINTERCARD 1"),
        err("ERR wrong number of arguments for 'sintercard' command")
    );
}

#[test]
fn smove_moves_one_member() {
    let kv = &mut Kv::default();
    run(kv, "SADD src a b");
    run(kv, "SADD dst c");
    run(kv, "EXPIRE dst 50");
    assert_eq!(run(kv, "SMOVE src dst a"), int(1));
    assert_eq!(sorted(run(kv, "SMEMBERS src")), words("b"));
    assert_eq!(sorted(run(kv, "SMEMBERS dst")), words("a c"));
    assert_eq!(run(kv, "TTL dst"), int(50), "the destination keeps its TTL");
    assert_eq!(run(kv, "SMOVE src dst zz"), int(0));
    // Already in the destination: still removed from the source.
    run(kv, "SADD src c");
    assert_eq!(run(kv, "SMOVE src dst c"), int(1));
    // The source's last member: the source goes, a missing destination is created.
    assert_eq!(run(kv, "SMOVE src new b"), int(1));
    assert_eq!(run(kv, "EXISTS src"), int(0));
    assert_eq!(sorted(run(kv, "SMEMBERS new")), words("b"));
    assert_eq!(run(kv, "SMOVE nokey dst a"), int(0));
    // Same key: whether the member is there.
    assert_eq!(run(kv, "SMOVE dst dst a"), int(1));
    assert_eq!(run(kv, "SMOVE dst dst zz"), int(0));
    assert_eq!(sorted(run(kv, "SMEMBERS dst")), words("a c"));
}

/// SPOP removes members picked by the entry alone: two replicas applying the same entries
/// pop the same members, and the members popped are distinct and were in the set.
#[test]
fn spop_is_deterministic_per_entry() {
    let apply_all = || {
        let kv = &mut Kv::default();
        let mut line = "SADD s".to_owned();
        for i in 0..50 {
            line.push_str(&format!(" m{i}"));
        }
        at_index(kv, 1000, 1, &line);
        let mut popped = Vec::new();
        for i in 0..10u64 {
            popped.push(members(Value::Array(vec![at_index(
                kv,
                1000 + i,
                2 + i,
                "SPOP s",
            )])));
        }
        popped.push(members(at_index(kv, 2000, 20, "SPOP s 15")));
        (popped, sorted(at_index(kv, 2000, 21, "SMEMBERS s")))
    };
    let (popped, left) = apply_all();
    assert_eq!((popped.clone(), left.clone()), apply_all());
    let all: BTreeSet<String> = popped
        .iter()
        .flatten()
        .cloned()
        .chain(left.clone())
        .collect();
    assert_eq!(all.len(), 50, "every member popped once or left");
    assert_eq!(left.len(), 25);
    // The picks are spread over the set, not always its first members.
    assert_ne!(popped[0], popped[1]);
}

#[test]
fn spop_counts_and_errors() {
    let kv = &mut Kv::default();
    run(kv, "SADD s a b c d e");
    assert_eq!(run(kv, "SPOP s 0"), Value::Set(vec![]));
    assert_eq!(members(run(kv, "SPOP s 2")).len(), 2);
    assert_eq!(run(kv, "SCARD s"), int(3));
    assert_eq!(members(run(kv, "SPOP s 1")).len(), 1);
    // More than there are: all of them, and the key goes.
    assert_eq!(members(run(kv, "SPOP s 9223372036854775807")).len(), 2);
    assert_eq!(run(kv, "EXISTS s"), int(0));
    assert_eq!(run(kv, "SPOP s"), Value::Null);
    assert_eq!(run(kv, "SPOP s 3"), Value::Set(vec![]));
    run(kv, "SADD one x");
    assert_eq!(run(kv, "SPOP one"), bulk("x"));
    assert_eq!(run(kv, "EXISTS one"), int(0));
    let positive = err("ERR value is out of range, must be positive");
    assert_eq!(run(kv, "SPOP s -1"), positive);
    assert_eq!(run(kv, "SPOP s x"), positive);
    assert_eq!(run(kv, "SPOP s 1 2"), err("ERR syntax error"));
}

#[test]
fn srandmember_counts() {
    let kv = &mut Kv::default();
    let mut line = "SADD s".to_owned();
    for i in 0..20 {
        line.push_str(&format!(" m{i}"));
    }
    run(kv, &line);
    let five = members(run(kv, "SRANDMEMBER s 5"));
    assert_eq!(five.iter().collect::<BTreeSet<_>>().len(), 5, "distinct");
    // A count past the size: the whole set, once each (the huge count is not allocated).
    assert_eq!(
        members(run(kv, "SRANDMEMBER s 9223372036854775807")).len(),
        20
    );
    // A negative count repeats members.
    let many = members(run(kv, "SRANDMEMBER s -300"));
    assert_eq!(many.len(), 300);
    let seen: BTreeSet<_> = many.iter().collect();
    assert!(seen.len() > 15, "spread over the set: {}", seen.len());
    assert_eq!(run(kv, "SRANDMEMBER s 0"), Value::Array(vec![]));
    assert_eq!(run(kv, "SRANDMEMBER nokey 5"), Value::Array(vec![]));
    assert_eq!(run(kv, "SRANDMEMBER nokey"), Value::Null);
    let Value::Bulk(one) = run(kv, "SRANDMEMBER s") else {
        panic!()
    };
    assert!(one.starts_with(b"m"));
    assert_eq!(run(kv, "SCARD s"), int(20), "SRANDMEMBER removes nothing");
    assert_eq!(
        run(kv, "SRANDMEMBER s -9223372036854775808"),
        err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
    );
    // A repeat count too large to build a reply of is refused, not allocated.
    assert_eq!(
        run(kv, "SRANDMEMBER s -9223372036854775807"),
        err("ERR value is out of range")
    );
    assert_eq!(
        run(kv, "SRANDMEMBER s x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(run(kv, "SRANDMEMBER s 1 2"), err("ERR syntax error"));
}

/// Reads are answered by one replica and pick afresh each time (Redis's suite measures
/// SRANDMEMBER's spread over calls at one instant).
#[test]
fn srandmember_picks_differ_between_reads() {
    let kv = &mut Kv::default();
    run(kv, "SADD s a b c d e f g h i j");
    let picks: BTreeSet<String> = (0..50)
        .flat_map(|_| members(Value::Array(vec![run(kv, "SRANDMEMBER s")])))
        .collect();
    assert_eq!(picks.len(), 10);
}

#[test]
fn sscan_visits_every_member() {
    let kv = &mut Kv::default();
    let mut line = "SADD s".to_owned();
    for i in 0..200 {
        line.push_str(&format!(" m{i}"));
    }
    run(kv, &line);
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_owned();
    let mut calls = 0;
    loop {
        let Value::Array(reply) = run(kv, &format!("SSCAN s {cursor} COUNT 7")) else {
            panic!()
        };
        let (Value::Bulk(next), items) = (&reply[0], reply[1].clone()) else {
            panic!()
        };
        seen.extend(members(items));
        cursor = String::from_utf8(next.clone()).unwrap();
        calls += 1;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(calls > 1, "COUNT pages the scan");
    let Value::Array(reply) = run(kv, "SSCAN s 0 MATCH m1? COUNT 1000") else {
        panic!()
    };
    assert_eq!(members(reply[1].clone()).len(), 10);
    assert_eq!(
        run(kv, "SSCAN nokey 0"),
        Value::Array(vec![bulk("0"), Value::Array(vec![])])
    );
    assert_eq!(run(kv, "SSCAN s x"), err("ERR invalid cursor"));
    // Redis reads cursors with strtoul: -1 is the largest, after which there is nothing.
    assert_eq!(
        run(kv, "SSCAN s -1"),
        Value::Array(vec![bulk("0"), Value::Array(vec![])])
    );
    assert_eq!(
        run(kv, "SSCAN s 18446744073709551616"),
        err("ERR invalid cursor")
    );
    assert_eq!(run(kv, "SSCAN s -"), err("ERR invalid cursor"));
    assert_eq!(run(kv, "SSCAN s 0 COUNT 0"), err("ERR syntax error"));
    assert_eq!(run(kv, "SSCAN s 0 MATCH"), err("ERR syntax error"));
}

/// A set survives the record encoding (snapshots, shard moves) with its TTL.
#[test]
fn a_set_round_trips_its_record() {
    let kv = &mut Kv::default();
    run(kv, "SADD s b a c");
    run(kv, "PEXPIRE s 5000");
    let slot = kv.live(b"s", 1000).unwrap().clone();
    assert_eq!(
        crate::Slot::from_record(slot.to_record().into()),
        Some(slot)
    );
}
