//! The engine against Redis's documented behaviour (replies word for word).

use flotilla_resp::Value;
use flotilla_rsm::{ApplyCtx, StateMachine};

use crate::command::{Arg, KvCommand, KvReply};
use crate::engine::test_support::*;
use crate::store::Kv;

#[test]
fn set_options() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "SET k v NX"), Value::ok());
    assert_eq!(run(kv, "SET k w NX"), Value::Null);
    assert_eq!(run(kv, "SET k w XX GET"), bulk("v"));
    assert_eq!(run(kv, "SET nokey w XX"), Value::Null);
    assert_eq!(run(kv, "GET nokey"), Value::Null);
    assert_eq!(run(kv, "SET k v NX XX"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "SET k v EX 0"),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(run(kv, "SET k v EX 10"), Value::ok());
    assert_eq!(at(kv, 1000, "TTL k"), Value::Integer(10));
    assert_eq!(at(kv, 1000, "PTTL k"), Value::Integer(10_000));
    assert_eq!(run(kv, "SET k v2 KEEPTTL"), Value::ok());
    assert_eq!(at(kv, 2000, "PTTL k"), Value::Integer(9000));
    assert_eq!(run(kv, "SET k v3"), Value::ok());
    assert_eq!(run(kv, "TTL k"), Value::Integer(-1));
    assert_eq!(run(kv, "TTL nokey"), Value::Integer(-2));
    // An absolute time already past: the key is gone at once.
    assert_eq!(run(kv, "SET k v PXAT 500"), Value::ok());
    assert_eq!(run(kv, "EXISTS k"), Value::Integer(0));
}

#[test]
fn keys_expire_by_the_replicated_clock() {
    let kv = &mut Kv::default();
    at(kv, 1000, "SET a 1 PX 100");
    at(kv, 1000, "SETEX b 1 2");
    at(kv, 1000, "PSETEX c 5000 3");
    assert_eq!(at(kv, 1099, "GET a"), bulk("1"));
    assert_eq!(at(kv, 1100, "GET a"), Value::Null, "gone at its expiry");
    assert_eq!(at(kv, 1100, "DBSIZE"), Value::Integer(2));
    assert_eq!(
        at(kv, 2000, "MGET a b c"),
        Value::Array(vec![Value::Null, Value::Null, bulk("3")])
    );
    // A write entry sweeps what expired, so the map does not keep it.
    at(kv, 2000, "SET other x");
    assert_eq!((kv.len(), kv.expiring()), (2, 1));
    kv.check_expiry_index();
    assert_eq!(at(kv, 2000, "PERSIST c"), Value::Integer(1));
    assert_eq!(at(kv, 9000, "GET c"), bulk("3"));
    assert_eq!(at(kv, 9000, "EXPIRE c 10 XX"), Value::Integer(0));
    assert_eq!(at(kv, 9000, "EXPIRE c 10 NX"), Value::Integer(1));
    assert_eq!(at(kv, 9000, "EXPIRE c 5 GT"), Value::Integer(0));
    assert_eq!(at(kv, 9000, "EXPIRE c 5 LT"), Value::Integer(1));
    assert_eq!(at(kv, 9000, "EXPIRETIME c"), Value::Integer(14));
    assert_eq!(
        at(kv, 9000, "EXPIRE c 5 NX GT"),
        err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(at(kv, 9000, "EXPIRE c -1"), Value::Integer(1));
    assert_eq!(at(kv, 9000, "EXISTS c"), Value::Integer(0));
    kv.check_expiry_index();
}

#[test]
fn a_snapshot_keeps_expiry_and_versions() {
    let kv = &mut Kv::default();
    at(kv, 1000, "SET a 1 PX 5000");
    at(kv, 1001, "SET b 2");
    let mut back = Kv::default();
    back.restore(&kv.snapshot()).unwrap();
    assert_eq!(at(&mut back, 1000, "PTTL a"), Value::Integer(5000));
    assert_eq!(back.live(b"b", 0).map(|s| s.version), Some(1001));
    back.check_expiry_index();
    assert_eq!(back.snapshot(), kv.snapshot());
}

#[test]
fn string_commands() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "SETNX k a"), Value::Integer(1));
    assert_eq!(run(kv, "SETNX k b"), Value::Integer(0));
    assert_eq!(run(kv, "GETSET k c"), bulk("a"));
    assert_eq!(run(kv, "APPEND k de"), Value::Integer(3));
    assert_eq!(run(kv, "STRLEN k"), Value::Integer(3));
    assert_eq!(run(kv, "GETRANGE k 0 -1"), bulk("cde"));
    assert_eq!(run(kv, "GETRANGE k -2 100"), bulk("de"));
    assert_eq!(run(kv, "GETRANGE k 2 1"), bulk(""));
    assert_eq!(run(kv, "GETRANGE nokey 0 -1"), bulk(""));
    assert_eq!(run(kv, "SETRANGE k 5 X"), Value::Integer(6));
    assert_eq!(run(kv, "GET k"), Value::Bulk(b"cde\0\0X".to_vec()));
    assert_eq!(
        run(kv, "SETRANGE k -1 X"),
        err("ERR offset is out of range")
    );
    assert_eq!(run(kv, "GETDEL k"), Value::Bulk(b"cde\0\0X".to_vec()));
    assert_eq!(run(kv, "GETDEL k"), Value::Null);
    assert_eq!(run(kv, "MSETNX a 1 b 2"), Value::Integer(1));
    assert_eq!(run(kv, "MSETNX b 3 c 4"), Value::Integer(0));
    assert_eq!(run(kv, "EXISTS c"), Value::Integer(0));
    assert_eq!(
        run(kv, "MSET a 1 b"),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(run(kv, "GETEX a PX 100"), bulk("1"));
    assert_eq!(run(kv, "PTTL a"), Value::Integer(100));
    assert_eq!(run(kv, "GETEX a PERSIST"), bulk("1"));
    assert_eq!(run(kv, "TTL a"), Value::Integer(-1));
    assert_eq!(run(kv, "GETEX a BOGUS"), err("ERR syntax error"));
}

#[test]
fn integers_and_floats_as_redis_reads_them() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "INCR n"), Value::Integer(1));
    assert_eq!(run(kv, "INCRBY n -5"), Value::Integer(-4));
    assert_eq!(run(kv, "DECRBY n 6"), Value::Integer(-10));
    for bad in ["INCRBY n x", "INCRBY n 01", "INCRBY n 9223372036854775808"] {
        assert_eq!(
            run(kv, bad),
            err("ERR value is not an integer or out of range"),
            "{bad}"
        );
    }
    assert_eq!(
        run(kv, "DECRBY n -9223372036854775808"),
        err("ERR decrement would overflow")
    );
    run(kv, "SET n 0123");
    assert_eq!(
        run(kv, "INCR n"),
        err("ERR value is not an integer or out of range")
    );
    run(kv, "SET n 9223372036854775807");
    assert_eq!(
        run(kv, "INCR n"),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(run(kv, "INCRBYFLOAT f 1"), bulk("1"));
    assert_eq!(run(kv, "INCRBYFLOAT f 0.25"), bulk("1.25"));
    assert_eq!(run(kv, "INCRBYFLOAT f -1.25"), bulk("0"));
    run(kv, "SET f 17179869184");
    assert_eq!(run(kv, "INCRBYFLOAT f 1.5"), bulk("17179869185.5"));
    assert_eq!(
        run(kv, "INCRBYFLOAT f +inf"),
        err("ERR increment would produce NaN or Infinity")
    );
    assert_eq!(
        run(kv, "INCRBYFLOAT f x"),
        err("ERR value is not a valid float")
    );
    run(kv, "SET f 1x");
    assert_eq!(
        run(kv, "INCRBYFLOAT f 1"),
        err("ERR value is not a valid float")
    );
}

#[test]
fn keys_rename_copy_type() {
    let kv = &mut Kv::default();
    run(kv, "MSET a 1 b 2 ab 3");
    assert_eq!(
        run(kv, "KEYS a*"),
        Value::Array(vec![bulk("a"), bulk("ab")])
    );
    assert_eq!(run(kv, "TYPE a"), Value::simple("string"));
    assert_eq!(run(kv, "TYPE zz"), Value::simple("none"));
    run(kv, "EXPIRE a 100");
    assert_eq!(run(kv, "RENAME a z"), Value::ok());
    assert_eq!(
        run(kv, "TTL z"),
        Value::Integer(100),
        "the TTL moves with the value"
    );
    assert_eq!(run(kv, "RENAME a z"), err("ERR no such key"));
    assert_eq!(run(kv, "RENAMENX z b"), Value::Integer(0));
    assert_eq!(run(kv, "COPY z c"), Value::Integer(1));
    assert_eq!(run(kv, "COPY z c"), Value::Integer(0));
    assert_eq!(run(kv, "COPY z c REPLACE"), Value::Integer(1));
    assert_eq!(run(kv, "DEL z c nokey"), Value::Integer(2));
    assert_eq!(run(kv, "EXISTS b b ab"), Value::Integer(3));
    assert_eq!(run(kv, "FLUSHALL"), Value::ok());
    assert_eq!(run(kv, "DBSIZE"), Value::Integer(0));
    assert_eq!(run(kv, "FLUSHALL later"), err("ERR syntax error"));
}

/// SCAN returns every key present for the whole scan, also when keys are added and removed
/// between calls, whatever COUNT is.
#[test]
fn scan_misses_no_key_that_stays() {
    let kv = &mut Kv::default();
    for i in 0..500 {
        run(kv, &format!("SET stay{i} v"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_owned();
    let mut calls = 0;
    loop {
        let Value::Array(reply) = run(kv, &format!("SCAN {cursor} COUNT 7")) else {
            panic!("an array")
        };
        let (Value::Bulk(next), Value::Array(keys)) = (&reply[0], &reply[1]) else {
            panic!("cursor and keys")
        };
        for k in keys {
            let Value::Bulk(k) = k else { panic!() };
            seen.insert(String::from_utf8(k.clone()).unwrap());
        }
        run(kv, &format!("SET churn{calls} v"));
        run(kv, &format!("DEL churn{}", calls / 2));
        calls += 1;
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    for i in 0..500 {
        assert!(seen.contains(&format!("stay{i}")), "stay{i} missed");
    }
    assert!(
        calls > 10,
        "COUNT 7 over 500 keys takes many calls, took {calls}"
    );
}

#[test]
fn a_transaction_applies_whole_or_not_at_all() {
    let kv = &mut Kv::default();
    let ctx = |now| ApplyCtx {
        now_ms: now,
        index: now,
        ..ApplyCtx::zero()
    };
    let cmd = |line: &str| line.split(' ').map(Arg::from).collect::<Vec<_>>();
    run(kv, "SET w 1");
    let version = kv.live(b"w", 1000).unwrap().version;
    let tx = |v| KvCommand::Multi {
        watch: vec![(Arg::from("w"), v)],
        cmds: vec![cmd("INCR x"), cmd("SET y 5 BOGUS"), cmd("INCR x")],
    };
    assert_eq!(
        kv.apply(tx(version), &ctx(2000)),
        KvReply::Redis(Value::Array(vec![
            Value::Integer(1),
            err("ERR syntax error"),
            Value::Integer(2)
        ]))
    );
    at(kv, 3000, "SET w 2");
    assert_eq!(
        kv.apply(tx(version), &ctx(4000)),
        KvReply::Redis(Value::NullArray)
    );
    assert_eq!(
        run(kv, "GET x"),
        bulk("2"),
        "the aborted transaction changed nothing"
    );
}

/// Every key/value command in the protocol crate's table has a handler here.
#[test]
fn every_data_command_has_a_handler() {
    let all = flotilla_resp::all_commands().flat_map(|s| std::iter::once(s).chain(s.subcommands));
    for spec in all.filter(|s| s.is_data()) {
        assert!(
            super::handler(spec.name).is_some(),
            "{} has no handler",
            spec.name
        );
    }
}

#[test]
fn lcs_as_redis_documents_it() {
    let kv = &mut Kv::default();
    run(kv, "MSET key1 ohmytext key2 mynewtext");
    assert_eq!(run(kv, "LCS key1 key2"), bulk("mytext"));
    assert_eq!(run(kv, "LCS key1 key2 LEN"), Value::Integer(6));
    assert_eq!(run(kv, "LCS key1 nokey"), bulk(""));
    let range = |s: i64, e: i64| Value::Array(vec![Value::Integer(s), Value::Integer(e)]);
    let m = |a: (i64, i64), b: (i64, i64), len: Option<i64>| {
        let mut v = vec![range(a.0, a.1), range(b.0, b.1)];
        v.extend(len.map(Value::Integer));
        Value::Array(v)
    };
    let idx = |matches: Vec<Value>, len: i64| {
        Value::Map(vec![
            (bulk("matches"), Value::Array(matches)),
            (bulk("len"), Value::Integer(len)),
        ])
    };
    // What Redis 7.0.15 answers, ranges last to first.
    assert_eq!(
        run(kv, "LCS key1 key2 IDX"),
        idx(vec![m((4, 7), (5, 8), None), m((2, 3), (0, 1), None)], 6)
    );
    assert_eq!(
        run(kv, "LCS key1 key2 IDX MINMATCHLEN 3 WITHMATCHLEN"),
        idx(vec![m((4, 7), (5, 8), Some(4))], 6)
    );
    assert_eq!(
        run(kv, "LCS key1 key2 LEN IDX"),
        err("ERR If you want both the length and indexes, please just use IDX.")
    );
    assert_eq!(
        run(kv, "LCS key1 key2 MINMATCHLEN"),
        err("ERR syntax error")
    );
    // Among equally long subsequences, Redis's pick.
    run(kv, "MSET a abcbdab b bdcaba c xaybzc d abcxyz");
    assert_eq!(run(kv, "LCS a b"), bulk("bdab"));
    assert_eq!(
        run(kv, "LCS a b IDX WITHMATCHLEN"),
        idx(
            vec![m((5, 6), (3, 4), Some(2)), m((3, 4), (0, 1), Some(2))],
            4
        )
    );
    assert_eq!(run(kv, "LCS c d"), bulk("abc"));
    assert_eq!(
        run(kv, "LCS c d IDX WITHMATCHLEN"),
        idx(
            vec![
                m((5, 5), (2, 2), Some(1)),
                m((3, 3), (1, 1), Some(1)),
                m((1, 1), (0, 0), Some(1))
            ],
            3
        )
    );
}

#[test]
fn hashes() {
    let kv = &mut Kv::default();
    // Fields answer in the order they were added, as Redis answers a small hash; an update
    // keeps a field's place, a delete closes the gap.
    run(kv, "HSET order z 1 a 2 m 3");
    run(kv, "HDEL order a");
    run(kv, "HSET order b 4 z 5");
    assert_eq!(
        run(kv, "HKEYS order"),
        Value::Array(vec![bulk("z"), bulk("m"), bulk("b")])
    );
    assert_eq!(run(kv, "HSET h a 1 b 2"), Value::Integer(2));
    assert_eq!(run(kv, "HSET h a 3 c 4"), Value::Integer(1));
    assert_eq!(run(kv, "HMSET h d 5"), Value::ok());
    assert_eq!(
        run(kv, "HSET h a"),
        err("ERR wrong number of arguments for 'hset' command")
    );
    assert_eq!(run(kv, "HGET h a"), bulk("3"));
    assert_eq!(run(kv, "HGET h zz"), Value::Null);
    assert_eq!(
        run(kv, "HMGET h a zz"),
        Value::Array(vec![bulk("3"), Value::Null])
    );
    assert_eq!(run(kv, "HLEN h"), Value::Integer(4));
    assert_eq!(run(kv, "HSETNX h a 9"), Value::Integer(0));
    assert_eq!(run(kv, "HSETNX h e 9"), Value::Integer(1));
    assert_eq!(run(kv, "HEXISTS h e"), Value::Integer(1));
    assert_eq!(run(kv, "HSTRLEN h e"), Value::Integer(1));
    assert_eq!(
        run(kv, "HKEYS h"),
        Value::Array(["a", "b", "c", "d", "e"].map(bulk).to_vec())
    );
    assert_eq!(run(kv, "HINCRBY h a 10"), Value::Integer(13));
    assert_eq!(run(kv, "HINCRBYFLOAT h a 0.5"), bulk("13.5"));
    assert_eq!(
        run(kv, "HINCRBYFLOAT h a +inf"),
        err("ERR value is NaN or Infinity")
    );
    assert_eq!(
        run(kv, "HINCRBY h a 1"),
        err("ERR hash value is not an integer")
    );
    assert_eq!(run(kv, "TYPE h"), Value::simple("hash"));
    assert_eq!(run(kv, "HDEL h a b c d e nope"), Value::Integer(5));
    assert_eq!(
        run(kv, "EXISTS h"),
        Value::Integer(0),
        "an emptied hash is deleted"
    );
    assert_eq!(run(kv, "HGETALL h"), Value::Map(vec![]));
}

#[test]
fn types_do_not_mix() {
    let kv = &mut Kv::default();
    run(kv, "HSET h f v");
    run(kv, "SET s v");
    let wrong = err("WRONGTYPE Operation against a key holding the wrong kind of value");
    for line in [
        "GET h",
        "INCR h",
        "APPEND h x",
        "STRLEN h",
        "GETRANGE h 0 1",
        "SET h v GET",
    ] {
        assert_eq!(run(kv, line), wrong, "{line}");
    }
    for line in ["HGET s f", "HSET s f v", "HLEN s", "HINCRBY s f 1"] {
        assert_eq!(run(kv, line), wrong, "{line}");
    }
    assert_eq!(
        run(kv, "MGET h s"),
        Value::Array(vec![Value::Null, bulk("v")])
    );
    // SET replaces a value of any type.
    assert_eq!(run(kv, "SET h now-a-string"), Value::ok());
    assert_eq!(run(kv, "TYPE h"), Value::simple("string"));
    run(kv, "HSET h2 f v");
    assert_eq!(
        run(kv, "SCAN 0 TYPE hash"),
        Value::Array(vec![bulk("0"), Value::Array(vec![bulk("h2")])])
    );
}

/// A hash survives a snapshot and a shard page (its record), with its TTL; a snapshot job
/// taken before a write keeps the hash as it was.
#[test]
fn hashes_travel_in_snapshots_and_records() {
    let kv = &mut Kv::default();
    run(kv, "HSET h a 1 b 2");
    run(kv, "PEXPIRE h 5000");
    let job = kv.snapshot_job();
    run(kv, "HSET h c 3");
    let mut old = Vec::new();
    job(&mut old).unwrap();
    let mut back = Kv::default();
    back.restore(&old).unwrap();
    assert_eq!(run(&mut back, "HLEN h"), Value::Integer(2));
    assert_eq!(run(&mut back, "PTTL h"), Value::Integer(5000));
    let slot = kv.live(b"h", 0).unwrap().clone();
    assert_eq!(
        crate::Slot::from_record(slot.to_record().into()),
        Some(slot)
    );
}

#[test]
fn hscan_and_hrandfield() {
    let kv = &mut Kv::default();
    let mut line = "HSET h".to_owned();
    for i in 0..100 {
        line.push_str(&format!(" f{i} v{i}"));
    }
    run(kv, &line);
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_owned();
    loop {
        let Value::Array(reply) = run(kv, &format!("HSCAN h {cursor} COUNT 7")) else {
            panic!()
        };
        let (Value::Bulk(next), Value::Array(items)) = (&reply[0], &reply[1]) else {
            panic!()
        };
        for pair in items.chunks(2) {
            seen.insert(format!("{:?}", pair[0]));
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 100);
    let Value::Array(five) = run(kv, "HRANDFIELD h 5") else {
        panic!()
    };
    let distinct: std::collections::BTreeSet<_> = five.iter().map(|v| format!("{v:?}")).collect();
    assert_eq!((five.len(), distinct.len()), (5, 5));
    let Value::Pairs(many) = run(kv, "HRANDFIELD h -300 WITHVALUES") else {
        panic!()
    };
    assert_eq!(many.len(), 300);
    assert_eq!(run(kv, "HRANDFIELD nokey 3"), Value::Array(vec![]));
    assert_eq!(run(kv, "HRANDFIELD nokey"), Value::Null);
}

#[test]
fn memory_usage_grows_with_the_value() {
    let kv = &mut Kv::default();
    run(kv, "SET small x");
    run(kv, &format!("SET big {}", "x".repeat(1000)));
    let (Value::Integer(small), Value::Integer(big)) = (
        run(kv, "MEMORY USAGE small"),
        run(kv, "MEMORY USAGE big SAMPLES 5"),
    ) else {
        panic!("integers")
    };
    assert!(small > 0 && big > small + 900, "{small} {big}");
    assert_eq!(run(kv, "MEMORY USAGE nokey"), Value::Null);
}

#[test]
fn bits() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "SETBIT b 7 1"), Value::Integer(0));
    assert_eq!(run(kv, "GET b"), Value::Bulk(vec![1]));
    assert_eq!(run(kv, "SETBIT b 7 0"), Value::Integer(1));
    assert_eq!(run(kv, "SETBIT b 8 1"), Value::Integer(0));
    assert_eq!(run(kv, "GET b"), Value::Bulk(vec![0, 0x80]));
    assert_eq!(run(kv, "GETBIT b 8"), Value::Integer(1));
    assert_eq!(run(kv, "GETBIT b 100"), Value::Integer(0));
    assert_eq!(
        run(kv, "SETBIT b 4294967296 1"),
        err("ERR bit offset is not an integer or out of range")
    );
    assert_eq!(
        run(kv, "SETBIT b 0 2"),
        err("ERR bit is not an integer or out of range")
    );
    run(kv, "SET s foobar");
    assert_eq!(run(kv, "BITCOUNT s"), Value::Integer(26));
    assert_eq!(run(kv, "BITCOUNT s 1 1"), Value::Integer(6));
    assert_eq!(run(kv, "BITCOUNT s 5 30 BIT"), Value::Integer(17));
    assert_eq!(run(kv, "OBJECT ENCODING s"), bulk("embstr"));
    run(kv, "SET n 12345");
    assert_eq!(run(kv, "OBJECT ENCODING n"), bulk("int"));
    assert_eq!(run(kv, "OBJECT REFCOUNT n"), Value::Integer(1));
    assert_eq!(run(kv, "OBJECT REFCOUNT nokey"), Value::Null);
    run(kv, "HSET h f v");
    assert_eq!(run(kv, "OBJECT ENCODING h"), bulk("listpack"));
    assert_eq!(run(kv, "OBJECT ENCODING nokey"), Value::Null);
}

/// Requests that would make the serving replica allocate without bound are refused.
#[test]
fn huge_requests_are_refused_not_allocated() {
    let kv = &mut Kv::default();
    run(kv, "HSET h f v");
    assert_eq!(
        run(kv, "HRANDFIELD h -4000000000000000000"),
        err("ERR value is out of range")
    );
    run(
        kv,
        &format!("MSET a {} b {}", "x".repeat(20_000), "y".repeat(20_000)),
    );
    assert_eq!(
        run(kv, "LCS a b"),
        err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    );
}
