//! Sorted set commands against Redis 7.0's replies (checked on a real redis-server).

use std::sync::Arc;

use flotilla_resp::Value;

use crate::engine::test_support::*;
use crate::slot::Data;
use crate::store::Kv;

/// A flat reply of members and (as RESP2 prints them) scores.
fn items(kv: &mut Kv, line: &str) -> Vec<String> {
    match run(kv, line) {
        Value::Pairs(v) => v
            .into_iter()
            .flat_map(|(m, s)| [m, s])
            .map(|x| match x {
                Value::Bulk(b) => String::from_utf8(b).unwrap(),
                Value::Double(d) => flotilla_resp::format_double(d),
                other => panic!("{line}: {other:?}"),
            })
            .collect(),
        Value::Array(v) => v
            .into_iter()
            .map(|x| match x {
                Value::Bulk(b) => String::from_utf8(b).unwrap(),
                Value::Double(d) => flotilla_resp::format_double(d),
                other => panic!("{line}: {other:?}"),
            })
            .collect(),
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn zadd_options_and_errors() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "ZADD z 1 a 2 b"), int(2));
    assert_eq!(run(kv, "ZADD z NX 5 a 3 c"), int(1));
    assert_eq!(run(kv, "ZSCORE z a"), Value::Double(1.0));
    assert_eq!(run(kv, "ZADD z XX CH 5 a 9 d"), int(1));
    assert_eq!(run(kv, "ZSCORE z d"), Value::Null);
    assert_eq!(run(kv, "ZADD z GT CH 1 a 6 b"), int(1));
    assert_eq!(run(kv, "ZADD z LT CH 0 a 7 b"), int(1));
    assert_eq!(run(kv, "ZADD z INCR 2 a"), Value::Double(2.0));
    assert_eq!(run(kv, "ZADD z INCR GT -1 a"), Value::Null);
    assert_eq!(run(kv, "ZADD nokey XX INCR 1 a"), Value::Null);
    assert_eq!(
        run(kv, "ZADD z NX XX 1 a"),
        err("ERR XX and NX options at the same time are not compatible")
    );
    assert_eq!(
        run(kv, "ZADD z GT LT 1 a"),
        err("ERR GT, LT, and/or NX options at the same time are not compatible")
    );
    assert_eq!(
        run(kv, "ZADD z INCR 1 a 2 b"),
        err("ERR INCR option supports a single increment-element pair")
    );
    assert_eq!(run(kv, "ZADD z 1 a 2"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "ZADD z nan a"),
        err("ERR value is not a valid float")
    );
    assert_eq!(run(kv, "ZADD z +inf a"), int(0));
    assert_eq!(
        run(kv, "ZINCRBY z -inf a"),
        err("ERR resulting score is not a number (NaN)")
    );
    assert_eq!(run(kv, "SET s x"), Value::ok());
    assert_eq!(
        run(kv, "ZADD s 1 a"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(
        items(kv, "ZRANGE z 0 -1 WITHSCORES"),
        ["c", "3", "b", "6", "a", "inf"]
    );
}

#[test]
fn a_zadd_that_changes_nothing_keeps_the_version() {
    let kv = &mut Kv::default();
    assert_eq!(at(kv, 1000, "ZADD z 1 a"), int(1));
    let v = kv.live(b"z", 1000).unwrap().version;
    assert_eq!(at(kv, 2000, "ZADD z NX 2 a"), int(0));
    assert_eq!(kv.live(b"z", 2000).unwrap().version, v);
    assert_eq!(at(kv, 3000, "ZADD z 2 a"), int(0));
    assert!(kv.live(b"z", 3000).unwrap().version > v);
}

#[test]
fn ranges_by_rank_score_and_lex() {
    let kv = &mut Kv::default();
    run(kv, "ZADD z 1 a 2 b 3 c 4 d");
    assert_eq!(items(kv, "ZRANGE z 1 -2"), ["b", "c"]);
    assert_eq!(
        items(kv, "ZREVRANGE z 0 1 WITHSCORES"),
        ["d", "4", "c", "3"]
    );
    assert_eq!(items(kv, "ZRANGEBYSCORE z (1 3"), ["b", "c"]);
    assert_eq!(
        items(kv, "ZREVRANGEBYSCORE z +inf -inf LIMIT 1 2"),
        ["c", "b"]
    );
    assert_eq!(items(kv, "ZRANGE z (4 1 BYSCORE REV"), ["c", "b", "a"]);
    assert_eq!(
        items(kv, "ZRANGEBYSCORE z -inf +inf LIMIT -1 5"),
        Vec::<String>::new()
    );
    assert_eq!(run(kv, "ZCOUNT z (1 +inf"), int(3));
    assert_eq!(
        run(kv, "ZCOUNT z a b"),
        err("ERR min or max is not a float")
    );
    run(kv, "ZADD l 0 a 0 b 0 c 0 d");
    assert_eq!(items(kv, "ZRANGEBYLEX l [b (d"), ["b", "c"]);
    assert_eq!(items(kv, "ZREVRANGEBYLEX l + (b"), ["d", "c"]);
    assert_eq!(run(kv, "ZLEXCOUNT l - +"), int(4));
    assert_eq!(
        run(kv, "ZRANGEBYLEX l a b"),
        err("ERR min or max not valid string range item")
    );
    assert_eq!(
        run(kv, "ZRANGE z 0 -1 LIMIT 0 1"),
        err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    );
    assert_eq!(
        run(kv, "ZRANGE l - + BYLEX WITHSCORES"),
        err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    );
    assert_eq!(run(kv, "ZRANGE z 0 -1 REV REV"), err("ERR syntax error"));
    assert_eq!(run(kv, "ZRANGESTORE d z 1 2"), int(2));
    assert_eq!(items(kv, "ZRANGE d 0 -1 WITHSCORES"), ["b", "2", "c", "3"]);
    assert_eq!(run(kv, "ZRANGESTORE d nokey 0 -1"), int(0));
    assert_eq!(run(kv, "EXISTS d"), int(0));
    assert_eq!(run(kv, "ZREMRANGEBYSCORE z (1 2"), int(1));
    assert_eq!(run(kv, "ZREMRANGEBYRANK z 0 0"), int(1));
    assert_eq!(run(kv, "ZREMRANGEBYLEX l - [b"), int(2));
    assert_eq!(items(kv, "ZRANGE z 0 -1"), ["c", "d"]);
    assert_eq!(run(kv, "ZRANK z d"), int(1));
    assert_eq!(run(kv, "ZREVRANK z d"), int(0));
    assert_eq!(run(kv, "ZREM z c d x"), int(2));
    assert_eq!(run(kv, "EXISTS z"), int(0));
}

#[test]
fn pops_and_their_blocking_forms() {
    let kv = &mut Kv::default();
    run(kv, "ZADD z 0 a 1 b 2 c 3 d");
    assert_eq!(items(kv, "ZPOPMIN z"), ["a", "0"]);
    assert_eq!(items(kv, "ZPOPMAX z 2"), ["d", "3", "c", "2"]);
    assert_eq!(
        run(kv, "ZPOPMIN z -1"),
        err("ERR value is out of range, must be positive")
    );
    assert_eq!(run(kv, "ZPOPMIN nokey"), Value::Array(vec![]));
    assert_eq!(run(kv, "ZMPOP 1 nokey MIN"), Value::NullArray);
    assert_eq!(
        run(kv, "ZMPOP 0 z MIN"),
        err("ERR numkeys should be greater than 0")
    );
    assert_eq!(
        run(kv, "ZMPOP 1 z MIN COUNT 0"),
        err("ERR count should be greater than 0")
    );
    assert_eq!(
        run(kv, "ZMPOP 2 nokey z MIN COUNT 5"),
        Value::Array(vec![
            bulk("z"),
            Value::Array(vec![Value::Array(vec![bulk("b"), Value::Double(1.0)])])
        ])
    );
    assert_eq!(run(kv, "EXISTS z"), int(0));
    assert_eq!(run(kv, "BZPOPMIN z 0"), Value::NullArray);
    assert_eq!(run(kv, "BZPOPMIN z -1"), err("ERR timeout is negative"));
    assert_eq!(
        run(kv, "BZPOPMIN z x"),
        err("ERR timeout is not a float or out of range")
    );
    run(kv, "ZADD z 5 e");
    assert_eq!(
        run(kv, "BZPOPMAX nokey z 0"),
        Value::Array(vec![bulk("z"), bulk("e"), Value::Double(5.0)])
    );
    assert_eq!(run(kv, "BZMPOP 0 1 z MIN"), Value::NullArray);
}

#[test]
fn set_operations() {
    let kv = &mut Kv::default();
    run(kv, "ZADD a 1 x 2 y 3 z");
    run(kv, "ZADD b 4 y 5 z 6 w");
    // A plain set is an input with every member scored 1 (built directly: SADD is another
    // family's).
    let set = crate::slot::Set::from([b"x".to_vec()]);
    kv.put_data(b"s".to_vec(), Data::Set(Arc::new(set)), 0, 1);
    assert_eq!(
        items(kv, "ZUNION 2 a b WITHSCORES"),
        ["x", "1", "w", "6", "y", "6", "z", "8"]
    );
    assert_eq!(
        items(kv, "ZINTER 2 a b WEIGHTS 2 3 WITHSCORES"),
        ["y", "16", "z", "21"]
    );
    assert_eq!(
        items(kv, "ZINTER 2 a b AGGREGATE MAX WITHSCORES"),
        ["y", "4", "z", "5"]
    );
    assert_eq!(items(kv, "ZDIFF 2 a b WITHSCORES"), ["x", "1"]);
    assert_eq!(run(kv, "ZINTERSTORE d 2 a s"), int(1));
    assert_eq!(items(kv, "ZRANGE d 0 -1 WITHSCORES"), ["x", "2"]);
    assert_eq!(run(kv, "ZINTERCARD 2 a b LIMIT 1"), int(1));
    assert_eq!(
        run(kv, "ZINTERCARD 1 a LIMIT -1"),
        err("ERR LIMIT can't be negative")
    );
    assert_eq!(
        run(kv, "ZUNIONSTORE d 0 a"),
        err("ERR at least 1 input key is needed for 'zunionstore' command")
    );
    assert_eq!(run(kv, "ZUNION 2 a"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "ZINTER 1 a WEIGHTS x"),
        err("ERR weight value is not a float")
    );
    assert_eq!(run(kv, "ZDIFF 1 a WEIGHTS 1"), err("ERR syntax error"));
    assert_eq!(run(kv, "SET str v"), Value::ok());
    assert_eq!(
        run(kv, "ZUNION 1 str FOO"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(run(kv, "ZUNIONSTORE d 1 nokey"), int(0));
    assert_eq!(run(kv, "EXISTS d"), int(0));
    // inf * 0 is 0, inf + -inf is 0, as Redis makes them.
    run(kv, "ZADD i +inf m");
    run(kv, "ZADD j -inf m");
    assert_eq!(items(kv, "ZUNION 2 i j WITHSCORES"), ["m", "0"]);
    assert_eq!(items(kv, "ZUNION 1 i WEIGHTS 0 WITHSCORES"), ["m", "0"]);
}

#[test]
fn randmember_and_scan() {
    let kv = &mut Kv::default();
    run(kv, "ZADD z 1 a 2 b 3 c");
    assert_eq!(items(kv, "ZRANDMEMBER z 5").len(), 3);
    assert_eq!(items(kv, "ZRANDMEMBER z -5 WITHSCORES").len(), 10);
    assert_eq!(run(kv, "ZRANDMEMBER nokey"), Value::Null);
    assert_eq!(run(kv, "ZRANDMEMBER z -9223372036854775808"), err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"));
    assert_eq!(
        run(kv, "ZRANDMEMBER z -4611686018427387904"),
        err("ERR value is out of range")
    );
    assert_eq!(
        run(kv, "ZRANDMEMBER z 1 WITHSCORE"),
        err("ERR syntax error")
    );
    // ZSCAN: scores as bulk strings (also in RESP3, as Redis), every pair in one page here.
    run(kv, "ZADD z 1.5 d");
    let Value::Array(reply) = run(kv, "ZSCAN z 0") else {
        panic!("ZSCAN reply")
    };
    assert_eq!(reply[0], bulk("0"));
    let Value::Array(flat) = &reply[1] else {
        panic!("ZSCAN page")
    };
    let mut pairs: Vec<(Value, Value)> = flat
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    pairs.sort_by_key(|(m, _)| match m {
        Value::Bulk(b) => b.clone(),
        other => panic!("member {other:?}"),
    });
    let want = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "1.5")];
    assert_eq!(pairs, want.map(|(m, s)| (bulk(m), bulk(s))));
}
