//! List commands against Redis 7.0's replies, word for word (each expected reply was read
//! from a real redis-server 7.0.15, or is one Redis's own unit/type/list asserts).

use flotilla_resp::{Protocol, Value};
use flotilla_rsm::StateMachine;

use crate::command::Arg;
use crate::engine::test_support::*;
use crate::store::Kv;

fn int(n: i64) -> Value {
    Value::Integer(n)
}

/// An array of bulk strings, from words split on spaces ("" for an empty array).
fn list(words: &str) -> Value {
    Value::Array(
        words
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(bulk)
            .collect(),
    )
}

fn ints(ns: &[i64]) -> Value {
    Value::Array(ns.iter().map(|&n| int(n)).collect())
}

/// `[key, [elements]]`, as LMPOP and BLMPOP answer.
fn popped(key: &str, words: &str) -> Value {
    Value::Array(vec![bulk(key), list(words)])
}

/// `[key, element]`, as BLPOP and BRPOP answer.
fn popped_one(key: &str, elem: &str) -> Value {
    Value::Array(vec![bulk(key), bulk(elem)])
}

fn wrong_type() -> Value {
    err("WRONGTYPE Operation against a key holding the wrong kind of value")
}

fn exists(kv: &mut Kv, key: &str) -> bool {
    run(kv, &format!("EXISTS {key}")) == int(1)
}

fn version(kv: &Kv, key: &str) -> u64 {
    kv.live(key.as_bytes(), NOW).expect("key exists").version
}

/// What `redis-benchmark`'s default run sends: LPUSH, RPUSH, LPOP, RPOP, LRANGE (its
/// LRANGE_100 … _600 read a list LPUSHed full first).
#[test]
fn benchmark_commands() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "LPUSH mylist xxx"), int(1));
    assert_eq!(run(kv, "RPUSH mylist yyy"), int(2));
    assert_eq!(run(kv, "LPUSH mylist a b c"), int(5));
    assert_eq!(run(kv, "RPUSH mylist 0 1 2 3"), int(9));
    assert_eq!(run(kv, "LRANGE mylist 0 -1"), list("c b a xxx yyy 0 1 2 3"));
    assert_eq!(run(kv, "LRANGE mylist 0 2"), list("c b a"));
    assert_eq!(run(kv, "LPOP mylist"), bulk("c"));
    assert_eq!(run(kv, "RPOP mylist"), bulk("3"));
    assert_eq!(run(kv, "LLEN mylist"), int(7));
    assert_eq!(run(kv, "TYPE mylist"), Value::simple("list"));
    assert_eq!(
        run(kv, "LPUSH"),
        err("ERR wrong number of arguments for 'lpush' command")
    );
    assert_eq!(
        run(kv, "RPUSH mylist"),
        err("ERR wrong number of arguments for 'rpush' command")
    );
}

/// LPOP/RPOP with a count, and Redis 7.0's replies for what there is not: nil without a
/// count, a null array (`*-1` in RESP2) with one, an empty array for a count of 0 on a list.
#[test]
fn pop_counts_and_their_empty_replies() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "LPUSH listcount aa bb cc dd ee ff gg"), int(7));
    assert_eq!(run(kv, "LPOP listcount 1"), list("gg"));
    assert_eq!(run(kv, "LPOP listcount 2"), list("ff ee"));
    assert_eq!(run(kv, "RPOP listcount 2"), list("aa bb"));
    assert_eq!(run(kv, "RPOP listcount 1"), list("cc"));
    assert_eq!(run(kv, "LPOP listcount 0"), list(""));
    assert_eq!(run(kv, "RPOP listcount 123"), list("dd"));
    assert!(!exists(kv, "listcount"), "an emptied list is deleted");

    assert_eq!(run(kv, "LPOP none"), Value::Null);
    assert_eq!(run(kv, "RPOP none"), Value::Null);
    for line in ["LPOP none 0", "LPOP none 1", "RPOP none 0", "RPOP none 1"] {
        assert_eq!(run(kv, line), Value::NullArray, "{line}");
    }
    assert_eq!(Value::NullArray.to_bytes(Protocol::Resp2), b"*-1\r\n");
    assert_eq!(Value::Null.to_bytes(Protocol::Resp2), b"$-1\r\n");

    let positive = err("ERR value is out of range, must be positive");
    for line in ["LPOP none -123", "LPOP none x", "RPOP none 1.5"] {
        assert_eq!(run(kv, line), positive, "{line}");
    }
    assert_eq!(
        run(kv, "LPOP key 1 1"),
        err("ERR wrong number of arguments for 'lpop' command")
    );
    assert_eq!(
        run(kv, "RPOP key 2 2"),
        err("ERR wrong number of arguments for 'rpop' command")
    );
    // A count far past the list pops what is there, and allocates for no more.
    run(kv, "RPUSH l a b");
    assert_eq!(run(kv, "RPOP l 9223372036854775807"), list("b a"));
}

#[test]
fn push_x_only_to_existing_lists() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "LPUSHX xlist a"), int(0));
    assert_eq!(run(kv, "RPUSHX xlist a"), int(0));
    assert!(!exists(kv, "xlist"));
    run(kv, "RPUSH xlist b c");
    assert_eq!(run(kv, "RPUSHX xlist d"), int(3));
    assert_eq!(run(kv, "LPUSHX xlist a"), int(4));
    assert_eq!(run(kv, "RPUSHX xlist 42 x"), int(6));
    assert_eq!(run(kv, "LPUSHX xlist y3 y2 y1"), int(9));
    assert_eq!(run(kv, "LRANGE xlist 0 -1"), list("y1 y2 y3 a b c d 42 x"));
}

#[test]
fn indices_and_ranges() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH mylist big 1 2 3 4 5 6 7 8 9");
    assert_eq!(run(kv, "LRANGE mylist 1 -2"), list("1 2 3 4 5 6 7 8"));
    assert_eq!(run(kv, "LRANGE mylist -3 -1"), list("7 8 9"));
    assert_eq!(run(kv, "LRANGE mylist 4 4"), list("4"));
    assert_eq!(run(kv, "LRANGE mylist 6 2"), list(""));
    assert_eq!(run(kv, "LRANGE mylist -1 -2"), list(""));
    let all = run(kv, "LRANGE mylist 0 -1");
    assert_eq!(run(kv, "LRANGE mylist -1000 1000"), all);
    assert_eq!(
        run(kv, "LRANGE mylist -9223372036854775808 9223372036854775807"),
        all
    );
    assert_eq!(run(kv, "LRANGE mylist 0 -10"), list("big"));
    assert_eq!(run(kv, "LRANGE mylist 0 -11"), list(""));
    assert_eq!(run(kv, "LRANGE nosuchkey 0 1"), list(""));

    assert_eq!(run(kv, "LINDEX mylist 0"), bulk("big"));
    assert_eq!(run(kv, "LINDEX mylist -1"), bulk("9"));
    assert_eq!(run(kv, "LINDEX mylist -10"), bulk("big"));
    assert_eq!(run(kv, "LINDEX mylist 10"), Value::Null);
    assert_eq!(run(kv, "LINDEX mylist -11"), Value::Null);
    assert_eq!(run(kv, "LINDEX mylist -9223372036854775808"), Value::Null);
    // The key is looked up before the index is read; LRANGE reads its indices first.
    assert_eq!(run(kv, "LINDEX nokey x"), Value::Null);
    let not_int = err("ERR value is not an integer or out of range");
    assert_eq!(run(kv, "LINDEX mylist x"), not_int);
    assert_eq!(run(kv, "LRANGE nokey x 1"), not_int);
    run(kv, "SET s x");
    assert_eq!(run(kv, "LINDEX s x"), wrong_type());
    assert_eq!(run(kv, "LRANGE s x 1"), not_int);
}

#[test]
fn lset_ltrim_lrem_linsert() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH mylist 99 98 big 96 95");
    assert_eq!(run(kv, "LSET mylist 1 foo"), Value::ok());
    assert_eq!(run(kv, "LSET mylist -1 bar"), Value::ok());
    assert_eq!(run(kv, "LRANGE mylist 0 -1"), list("99 foo big 96 bar"));
    assert_eq!(run(kv, "LSET mylist 10 foo"), err("ERR index out of range"));
    assert_eq!(run(kv, "LSET nosuchkey 10 foo"), err("ERR no such key"));
    assert_eq!(
        run(kv, "LSET mylist x v"),
        err("ERR value is not an integer or out of range")
    );

    for (start, stop, left) in [
        (0, 0, "1"),
        (0, 1, "1 2"),
        (1, -1, "2 3 4 big"),
        (1, -2, "2 3 4"),
        (-2, -1, "4 big"),
        (-1, -1, "big"),
        (-10, 10, "1 2 3 4 big"),
        (0, -5, "1"),
        (0, -6, ""),
        (3, 1, ""),
    ] {
        run(kv, "DEL t");
        run(kv, "RPUSH t 1 2 3 4 big");
        assert_eq!(run(kv, &format!("LTRIM t {start} {stop}")), Value::ok());
        assert_eq!(run(kv, "LRANGE t 0 -1"), list(left), "LTRIM {start} {stop}");
        assert_eq!(
            exists(kv, "t"),
            !left.is_empty(),
            "an emptied list is deleted"
        );
    }
    assert_eq!(run(kv, "LTRIM nokey 0 1"), Value::ok());

    run(kv, "RPUSH r e foo bar foobar foobared zap bar test foo");
    assert_eq!(run(kv, "LREM r 0 bar"), int(2));
    assert_eq!(
        run(kv, "LRANGE r 0 -1"),
        list("e foo foobar foobared zap test foo")
    );
    assert_eq!(run(kv, "LREM r 1 foo"), int(1));
    assert_eq!(run(kv, "LREM r 1 nosuchelement"), int(0));
    assert_eq!(
        run(kv, "LRANGE r 0 -1"),
        list("e foobar foobared zap test foo")
    );
    run(kv, "DEL r");
    run(kv, "RPUSH r e foo bar foobar foobared zap bar test foo foo");
    assert_eq!(run(kv, "LREM r -1 bar"), int(1));
    assert_eq!(
        run(kv, "LRANGE r 0 -1"),
        list("e foo bar foobar foobared zap test foo foo")
    );
    assert_eq!(run(kv, "LREM r -2 foo"), int(2));
    assert_eq!(
        run(kv, "LRANGE r 0 -1"),
        list("e foo bar foobar foobared zap test")
    );
    assert_eq!(run(kv, "LREM r -9223372036854775808 foo"), int(1));
    assert_eq!(run(kv, "LREM nokey 0 a"), int(0));
    run(kv, "RPUSH one a a");
    assert_eq!(run(kv, "LREM one 0 a"), int(2));
    assert!(!exists(kv, "one"));

    run(kv, "RPUSH xlist a big c d");
    assert_eq!(run(kv, "LINSERT xlist before c zz"), int(5));
    assert_eq!(run(kv, "LINSERT xlist after c yy"), int(6));
    assert_eq!(run(kv, "LINSERT xlist after d dd"), int(7));
    assert_eq!(run(kv, "LINSERT xlist after bad ddd"), int(-1));
    assert_eq!(run(kv, "LINSERT xlist BEFORE a aa"), int(8));
    assert_eq!(run(kv, "LRANGE xlist 0 10"), list("aa a big zz c yy d dd"));
    assert_eq!(
        run(kv, "LINSERT xlist aft3r aa 42"),
        err("ERR syntax error")
    );
    assert_eq!(run(kv, "LINSERT nokey bad a b"), err("ERR syntax error"));
    assert_eq!(run(kv, "LINSERT nokey before a b"), int(0));
    assert!(!exists(kv, "nokey"));
}

/// LPOS as Redis's unit/type/list asserts it, and its errors as redis-server 7.0.15 words
/// them.
#[test]
fn lpos_options() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH mylist a b c 1 2 3 c c");
    assert_eq!(run(kv, "LPOS mylist a"), int(0));
    assert_eq!(run(kv, "LPOS mylist c"), int(2));
    assert_eq!(run(kv, "LPOS mylist c RANK 1"), int(2));
    assert_eq!(run(kv, "LPOS mylist c RANK 2"), int(6));
    assert_eq!(run(kv, "LPOS mylist c RANK 4"), Value::Null);
    assert_eq!(run(kv, "LPOS mylist c RANK -1"), int(7));
    assert_eq!(run(kv, "LPOS mylist c RANK -2"), int(6));
    assert_eq!(
        run(kv, "LPOS mylist c RANK 0"),
        err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
    );
    assert_eq!(run(kv, "LPOS mylist c COUNT 0"), ints(&[2, 6, 7]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 1"), ints(&[2]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 2"), ints(&[2, 6]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 100"), ints(&[2, 6, 7]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 0 RANK 2"), ints(&[6, 7]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 2 RANK -1"), ints(&[7, 6]));
    assert_eq!(run(kv, "LPOS mylistxxx c COUNT 0 RANK 2"), ints(&[]));
    assert_eq!(run(kv, "LPOS mylistxxx c"), Value::Null);
    assert_eq!(run(kv, "LPOS mylist x COUNT 2 RANK -1"), ints(&[]));
    assert_eq!(run(kv, "LPOS mylist x RANK -1"), Value::Null);
    assert_eq!(run(kv, "LPOS mylist a COUNT 0 MAXLEN 1"), ints(&[0]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 0 MAXLEN 1"), ints(&[]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 0 MAXLEN 3"), ints(&[2]));
    assert_eq!(
        run(kv, "LPOS mylist c COUNT 0 MAXLEN 3 RANK -1"),
        ints(&[7, 6])
    );
    assert_eq!(run(kv, "LPOS mylist c COUNT 0 MAXLEN 7 RANK 2"), ints(&[6]));
    assert_eq!(run(kv, "LPOS mylist c COUNT 10 RANK 5"), ints(&[]));
    // Redis 7.0 negates RANK in a C long: the most negative one reports every match from
    // the tail, whatever COUNT says.
    assert_eq!(run(kv, "LPOS mylist c RANK -9223372036854775808"), int(7));
    assert_eq!(
        run(kv, "LPOS mylist c RANK -9223372036854775808 COUNT 1"),
        ints(&[7, 6, 2])
    );
    assert_eq!(
        run(kv, "LPOS mylist a rank x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        run(kv, "LPOS mylist a count -1"),
        err("ERR COUNT can't be negative")
    );
    assert_eq!(
        run(kv, "LPOS mylist a count x"),
        err("ERR COUNT can't be negative")
    );
    assert_eq!(
        run(kv, "LPOS mylist a maxlen x"),
        err("ERR MAXLEN can't be negative")
    );
    assert_eq!(run(kv, "LPOS mylist a bad"), err("ERR syntax error"));
    assert_eq!(run(kv, "LPOS mylist a rank"), err("ERR syntax error"));
    run(kv, "SET s x");
    assert_eq!(run(kv, "LPOS s a"), wrong_type());
    // Options are read before the key.
    assert_eq!(run(kv, "LPOS s a bad"), err("ERR syntax error"));
}

#[test]
fn lmove_and_rpoplpush() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH src a big c d");
    assert_eq!(run(kv, "RPOPLPUSH src dst"), bulk("d"));
    assert_eq!(run(kv, "RPOPLPUSH src dst"), bulk("c"));
    assert_eq!(run(kv, "LRANGE src 0 -1"), list("a big"));
    assert_eq!(run(kv, "LRANGE dst 0 -1"), list("c d"));
    assert_eq!(run(kv, "LMOVE src dst LEFT RIGHT"), bulk("a"));
    assert_eq!(run(kv, "LMOVE src dst left left"), bulk("big"));
    assert_eq!(run(kv, "LRANGE dst 0 -1"), list("big c d a"));
    assert!(!exists(kv, "src"), "the emptied source is deleted");
    assert_eq!(run(kv, "RPOPLPUSH src dst"), Value::Null);
    assert_eq!(run(kv, "LMOVE src other left left"), Value::Null);
    assert!(!exists(kv, "src") && !exists(kv, "other"));
    assert_eq!(run(kv, "LMOVE dst x up left"), err("ERR syntax error"));
    assert_eq!(run(kv, "LMOVE nokey x left down"), err("ERR syntax error"));

    // The same list as source and destination: a rotation (or nothing, same ends).
    run(kv, "RPUSH m a big c");
    assert_eq!(run(kv, "RPOPLPUSH m m"), bulk("c"));
    assert_eq!(run(kv, "LRANGE m 0 -1"), list("c a big"));
    assert_eq!(run(kv, "LMOVE m m left right"), bulk("c"));
    assert_eq!(run(kv, "LRANGE m 0 -1"), list("a big c"));
    assert_eq!(run(kv, "LMOVE m m right right"), bulk("c"));
    assert_eq!(run(kv, "LMOVE m m left left"), bulk("a"));
    assert_eq!(run(kv, "LRANGE m 0 -1"), list("a big c"));
    run(kv, "RPUSH single only");
    assert_eq!(run(kv, "LMOVE single single left right"), bulk("only"));
    assert_eq!(run(kv, "LRANGE single 0 -1"), list("only"));
}

/// A write that fails on a key's type changes nothing, whichever of its keys is the wrong
/// one.
#[test]
fn wrong_types_change_nothing() {
    let kv = &mut Kv::default();
    run(kv, "SET s x");
    run(kv, "RPUSH l a b c d");
    for line in [
        "LPUSH s 0",
        "RPUSH s 0",
        "LPUSHX s 0",
        "RPUSHX s 0",
        "LPOP s",
        "RPOP s 0",
        "LLEN s",
        "LRANGE s 0 1",
        "LINDEX s 0",
        "LSET s 0 foo",
        "LREM s 0 a",
        "LTRIM s 0 1",
        "LINSERT s before a b",
        "LPOS s a",
        "RPOPLPUSH s l",
        "RPOPLPUSH l s",
        "LMOVE l s left left",
        "LMPOP 1 s left",
        "LMPOP 2 nokey s right count 10",
        "BLPOP s 0",
        "BRPOP nokey s 0.001",
        "BLMOVE l s left left 0",
        "BRPOPLPUSH s l 0",
        "BLMPOP 0 2 nokey s left count 1",
    ] {
        assert_eq!(run(kv, line), wrong_type(), "{line}");
    }
    assert_eq!(run(kv, "GET s"), bulk("x"));
    assert_eq!(run(kv, "LRANGE l 0 -1"), list("a b c d"));
    // A source with nothing to move is nil before the destination's type is looked at.
    assert_eq!(run(kv, "RPOPLPUSH nokey s"), Value::Null);
    // LMPOP stops at the first list with elements: a wrong type after it is not seen.
    assert_eq!(run(kv, "LMPOP 2 l s left"), popped("l", "a"));
}

#[test]
fn lmpop_arguments_and_replies() {
    let kv = &mut Kv::default();
    for (line, reply) in [
        ("LMPOP", "ERR wrong number of arguments for 'lmpop' command"),
        (
            "LMPOP 1",
            "ERR wrong number of arguments for 'lmpop' command",
        ),
        (
            "LMPOP 1 l",
            "ERR wrong number of arguments for 'lmpop' command",
        ),
        ("LMPOP 0 l LEFT", "ERR numkeys should be greater than 0"),
        ("LMPOP a l LEFT", "ERR numkeys should be greater than 0"),
        ("LMPOP -1 l RIGHT", "ERR numkeys should be greater than 0"),
        (
            "LMPOP 99999999999999999999 l left",
            "ERR numkeys should be greater than 0",
        ),
        ("LMPOP 9223372036854775807 l left", "ERR syntax error"),
        ("LMPOP 5 l left", "ERR syntax error"),
        ("LMPOP 1 l bad_where", "ERR syntax error"),
        ("LMPOP 1 l LEFT bar_arg", "ERR syntax error"),
        ("LMPOP 1 l RIGHT LEFT", "ERR syntax error"),
        ("LMPOP 1 l COUNT", "ERR syntax error"),
        ("LMPOP 1 l LEFT COUNT 1 COUNT 2", "ERR syntax error"),
        ("LMPOP 2 l l2 bad_arg", "ERR syntax error"),
        (
            "LMPOP 1 l LEFT COUNT 0",
            "ERR count should be greater than 0",
        ),
        (
            "LMPOP 1 l RIGHT COUNT a",
            "ERR count should be greater than 0",
        ),
        (
            "LMPOP 1 l LEFT COUNT -1",
            "ERR count should be greater than 0",
        ),
        (
            "LMPOP 2 l l2 RIGHT COUNT -1",
            "ERR count should be greater than 0",
        ),
    ] {
        assert_eq!(run(kv, line), err(reply), "{line}");
    }

    run(kv, "RPUSH l a b c d e f");
    assert_eq!(run(kv, "LMPOP 2 l l left count 2"), popped("l", "a b"));
    assert_eq!(run(kv, "LMPOP 2 l l right count 2"), popped("l", "f e"));
    assert_eq!(run(kv, "LLEN l"), int(2));
    assert_eq!(run(kv, "LMPOP 1 l left"), popped("l", "c"));
    run(kv, "RPUSH l2 1 2 3 4 5");
    assert_eq!(run(kv, "LMPOP 2 l l2 right count 10"), popped("l", "d"));
    assert_eq!(run(kv, "LMPOP 2 l l2 left count 3"), popped("l2", "1 2 3"));
    assert_eq!(
        run(kv, "LMPOP 2 l l2 right count 9223372036854775807"),
        popped("l2", "5 4")
    );
    assert!(!exists(kv, "l") && !exists(kv, "l2"));
    assert_eq!(run(kv, "LMPOP 2 l l2 right count 1"), Value::NullArray);
}

/// The blocking commands answer at once, as Redis runs them inside MULTI: a pop if there is
/// one, else Redis's timeout reply (a null array for the pops, nil for the moves). Their
/// timeouts are still checked as Redis checks them.
#[test]
fn blocking_commands_answer_at_once() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH blist a b c d");
    assert_eq!(run(kv, "BLPOP blist 1"), popped_one("blist", "a"));
    assert_eq!(run(kv, "BRPOP blist 1"), popped_one("blist", "d"));
    assert_eq!(run(kv, "BLPOP empty blist 0"), popped_one("blist", "b"));
    assert_eq!(
        run(kv, "BLMPOP 0 2 empty blist right count 5"),
        popped("blist", "c")
    );
    assert!(!exists(kv, "blist"));
    assert_eq!(run(kv, "BLPOP blist 0"), Value::NullArray);
    assert_eq!(run(kv, "BRPOP blist other 0.001"), Value::NullArray);
    assert_eq!(run(kv, "BLMPOP 0 1 blist left"), Value::NullArray);
    assert_eq!(run(kv, "BRPOPLPUSH blist target 0"), Value::Null);
    assert_eq!(run(kv, "BLMOVE blist target left right 0"), Value::Null);
    assert!(!exists(kv, "blist") && !exists(kv, "target"));

    run(kv, "RPUSH src a b c");
    run(kv, "RPUSH target bar");
    assert_eq!(run(kv, "BRPOPLPUSH src target 1"), bulk("c"));
    assert_eq!(run(kv, "BLMOVE src target left right 1"), bulk("a"));
    assert_eq!(run(kv, "LRANGE target 0 -1"), list("c bar a"));
    assert_eq!(run(kv, "BRPOPLPUSH src src 0"), bulk("b"));

    for (line, reply) in [
        ("BLPOP src x", "ERR timeout is not a float or out of range"),
        (
            "BLPOP src nan",
            "ERR timeout is not a float or out of range",
        ),
        ("BLPOP src -1", "ERR timeout is negative"),
        ("BRPOP src inf", "ERR timeout is negative"),
        ("BRPOP src -inf", "ERR timeout is negative"),
        ("BRPOP src 1e300", "ERR timeout is negative"),
        ("BLMOVE src t up left x", "ERR syntax error"),
        (
            "BLMOVE src t left left x",
            "ERR timeout is not a float or out of range",
        ),
        (
            "BRPOPLPUSH src t x",
            "ERR timeout is not a float or out of range",
        ),
        (
            "BLMPOP x 1 src left",
            "ERR timeout is not a float or out of range",
        ),
        (
            "BLMPOP 0 0 src left",
            "ERR numkeys should be greater than 0",
        ),
        ("BLMPOP x 1 src up", "ERR syntax error"),
        (
            "BLMPOP -1 1 src left count 0",
            "ERR count should be greater than 0",
        ),
        ("BLMPOP -1 1 src left count 1", "ERR timeout is negative"),
    ] {
        assert_eq!(run(kv, line), err(reply), "{line}");
    }
    assert_eq!(
        run(kv, "LRANGE src 0 -1"),
        list("b"),
        "no failed command popped"
    );
    // A tiny negative timeout is 0 ms once truncated, as in Redis: no error.
    assert_eq!(run(kv, "BLPOP src -0.0001"), popped_one("src", "b"));
}

/// Redis's "BRPOPLPUSH inside a transaction" and "BLPOP inside a transaction".
#[test]
fn blocking_commands_in_a_transaction() {
    let kv = &mut Kv::default();
    run(kv, "LPUSH xlist foo");
    run(kv, "LPUSH xlist bar");
    let cmds: Vec<Vec<Arg>> = [
        "BRPOPLPUSH xlist target 0",
        "BRPOPLPUSH xlist target 0",
        "BRPOPLPUSH xlist target 0",
        "LRANGE xlist 0 -1",
        "LRANGE target 0 -1",
    ]
    .map(args)
    .to_vec();
    assert_eq!(
        super::super::multi(kv, &[], &cmds, &ctx(NOW)),
        Value::Array(vec![
            bulk("foo"),
            bulk("bar"),
            Value::Null,
            list(""),
            list("bar foo"),
        ])
    );
    run(kv, "LPUSH xlist foo bar");
    let cmds: Vec<Vec<Arg>> = ["BLPOP xlist 0", "BLPOP xlist 0", "BLPOP xlist 0"]
        .map(args)
        .to_vec();
    assert_eq!(
        super::super::multi(kv, &[], &cmds, &ctx(NOW)),
        Value::Array(vec![
            popped_one("xlist", "bar"),
            popped_one("xlist", "foo"),
            Value::NullArray,
        ])
    );
}

/// A list keeps its TTL through writes, and an expired one is gone for every command.
#[test]
fn lists_keep_their_expiry() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH l a b c");
    assert_eq!(run(kv, "PEXPIRE l 5000"), int(1));
    run(kv, "LPUSH l z");
    run(kv, "RPOP l");
    run(kv, "LSET l 0 y");
    run(kv, "RPOPLPUSH l l");
    assert_eq!(run(kv, "PTTL l"), int(5000));
    assert_eq!(at(kv, NOW + 5000, "LLEN l"), int(0));
    assert_eq!(at(kv, NOW + 5000, "LPUSHX l a"), int(0));
    assert_eq!(at(kv, NOW + 5000, "RPUSH l fresh"), int(1));
    assert_eq!(at(kv, NOW + 5000, "PTTL l"), int(-1));
}

/// Redis marks a key changed (what WATCH sees) only when a command changed it: an LREM,
/// LINSERT or pop that finds nothing leaves the version alone.
#[test]
fn no_op_writes_keep_the_version() {
    let kv = &mut Kv::default();
    at(kv, 10, "RPUSH l a b c");
    let v = version(kv, "l");
    for line in [
        "LREM l 0 zz",
        "LINSERT l before zz x",
        "LPOP l 0",
        "LPUSHX nokey a",
        "LMPOP 1 nokey left",
        "BLPOP nokey 0",
        "LMOVE nokey l left left",
        "LSET l 9 x",
    ] {
        run(kv, line);
        assert_eq!(version(kv, "l"), v, "{line}");
    }
    run(kv, "LREM l 1 a");
    assert_ne!(version(kv, "l"), v, "a removal is a change");
}

/// A list survives a snapshot and a shard page (its record), with its TTL; a snapshot job
/// taken before a write keeps the list as it was.
#[test]
fn lists_travel_in_snapshots_and_records() {
    let kv = &mut Kv::default();
    run(kv, "RPUSH l a b");
    run(kv, "PEXPIRE l 5000");
    let job = kv.snapshot_job();
    run(kv, "RPUSH l c");
    run(kv, "LSET l 0 changed");
    let mut old = Vec::new();
    job(&mut old).unwrap();
    let mut back = Kv::default();
    back.restore(&old).unwrap();
    assert_eq!(run(&mut back, "LRANGE l 0 -1"), list("a b"));
    assert_eq!(run(&mut back, "PTTL l"), int(5000));
    let slot = kv.live(b"l", 0).unwrap().clone();
    assert_eq!(
        crate::Slot::from_record(slot.to_record().into()),
        Some(slot)
    );
}
