//! Stream commands against Redis 7.0's replies (checked against a real redis-server).

use flotilla_resp::Value;

use crate::engine::test_support::*;
use crate::store::Kv;

/// An entry as XRANGE replies it.
fn entry(id: &str, fields: &[&str]) -> Value {
    Value::Array(vec![
        bulk(id),
        Value::Array(fields.iter().map(|f| bulk(f)).collect()),
    ])
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

#[test]
fn xadd_ids_come_from_the_replicated_clock() {
    let kv = &mut Kv::default();
    assert_eq!(at(kv, 5000, "XADD s * a 1"), bulk("5000-0"));
    assert_eq!(at(kv, 5000, "XADD s * a 2"), bulk("5000-1"));
    // A clock behind the last ID: the sequence grows instead.
    assert_eq!(at(kv, 4000, "XADD s * a 3"), bulk("5000-2"));
    assert_eq!(at(kv, 6000, "XADD s * a 4"), bulk("6000-0"));
    assert_eq!(run(kv, "XLEN s"), int(4));
    assert_eq!(run(kv, "TYPE s"), Value::simple("stream"));
}

#[test]
fn xadd_explicit_ids_and_their_errors() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "XADD s 123-456 f v"), bulk("123-456"));
    assert_eq!(run(kv, "XADD s 123-* f v"), bulk("123-457"));
    assert_eq!(run(kv, "XADD s 789-* f v"), bulk("789-0"));
    assert_eq!(run(kv, "XADD s 790 f v"), bulk("790-0"));
    let smaller =
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item");
    assert_eq!(run(kv, "XADD s 790 f v"), smaller);
    assert_eq!(run(kv, "XADD s 42-* f v"), smaller);
    assert_eq!(
        run(kv, "XADD s2 0-0 f v"),
        err("ERR The ID specified in XADD must be greater than 0-0")
    );
    assert_eq!(run(kv, "EXISTS s2"), int(0));
    assert_eq!(run(kv, "XADD s2 0-* f v"), bulk("0-1"));
    assert_eq!(
        run(kv, "XADD s abc f v"),
        err("ERR Invalid stream ID specified as stream command argument")
    );
    assert_eq!(
        run(kv, "XADD s * f"),
        err("ERR wrong number of arguments for 'xadd' command")
    );
    assert_eq!(
        run(kv, "XADD s MAXLEN -1 * f v"),
        err("ERR The MAXLEN argument must be >= 0.")
    );
    assert_eq!(
        run(kv, "XADD s MAXLEN 1 MINID 1 * f v"),
        err("ERR syntax error, MAXLEN and MINID options at the same time are not compatible")
    );
    assert_eq!(
        run(kv, "XADD s MAXLEN 1 LIMIT 5 * f v"),
        err("ERR syntax error, LIMIT cannot be used without the special ~ option")
    );
    assert_eq!(
        run(kv, "XADD s LIMIT 5 * f v"),
        err("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
    );
    // A failed XADD changed nothing.
    assert_eq!(run(kv, "XLEN s"), int(4));
    run(kv, "SET str x");
    assert_eq!(
        run(kv, "XADD str * f v"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
}

#[test]
fn xadd_at_the_last_ids() {
    let kv = &mut Kv::default();
    run(kv, "XADD s 18446744073709551615-18446744073709551615 a b");
    assert_eq!(
        run(kv, "XADD s * c d"),
        err("ERR The stream has exhausted the last possible ID, unable to add more items")
    );
    run(kv, "XADD t 1-18446744073709551615 a b");
    assert_eq!(
        run(kv, "XADD t 1-* c d"),
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
    // `*` past a last ID in the future: the next millisecond.
    run(kv, "XADD u 2577343934890-18446744073709551615 f v");
    assert_eq!(run(kv, "XADD u * f2 v2"), bulk("2577343934891-0"));
}

#[test]
fn nomkstream_and_trimming() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "XADD s NOMKSTREAM * f v"), Value::Null);
    assert_eq!(run(kv, "EXISTS s"), int(0));
    for i in 1..=1000 {
        run(kv, &format!("XADD s MAXLEN ~ 555 {i} f v"));
    }
    // Whole nodes of 100 only: Redis's figure.
    assert_eq!(run(kv, "XLEN s"), int(600));
    assert_eq!(run(kv, "XTRIM s MAXLEN 10"), int(590));
    assert_eq!(run(kv, "XLEN s"), int(10));
    assert_eq!(run(kv, "XTRIM s MINID = 995"), int(4));
    assert_eq!(
        run(kv, "XRANGE s - + COUNT 1"),
        arr(vec![entry("995-0", &["f", "v"])])
    );
    assert_eq!(run(kv, "XTRIM nokey MAXLEN 1"), int(0));
    assert_eq!(
        run(kv, "XTRIM s"),
        err("ERR wrong number of arguments for 'xtrim' command")
    );
    assert_eq!(run(kv, "XTRIM s FOO 1"), err("ERR syntax error"));
    // A stream trimmed to nothing stays, with its last ID.
    assert_eq!(run(kv, "XADD e MAXLEN 0 5-5 a b"), bulk("5-5"));
    assert_eq!(run(kv, "XLEN e"), int(0));
    assert_eq!(run(kv, "EXISTS e"), int(1));
    assert_eq!(
        run(kv, "XADD e 5-5 a b"),
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
}

#[test]
fn xrange_bounds_count_and_reverse() {
    let kv = &mut Kv::default();
    for id in [
        "0-1",
        "1-0",
        "42-0",
        "42-42",
        "18446744073709551615-18446744073709551615",
    ] {
        run(kv, &format!("XADD s {id} foo bar"));
    }
    let all = run(kv, "XRANGE s - +");
    let Value::Array(items) = &all else {
        panic!("{all:?}")
    };
    assert_eq!(items.len(), 5);
    assert_eq!(
        run(kv, "XRANGE s (0-1 (42-0"),
        arr(vec![entry("1-0", &["foo", "bar"])])
    );
    assert_eq!(run(kv, "XRANGE s 42 42"), arr(items[2..4].to_vec()));
    assert_eq!(
        run(kv, "XREVRANGE s + - COUNT 2"),
        arr(vec![items[4].clone(), items[3].clone()])
    );
    assert_eq!(run(kv, "XRANGE s - + COUNT 0"), Value::NullArray);
    assert_eq!(run(kv, "XRANGE nokey - + COUNT 0"), arr(vec![]));
    assert_eq!(
        run(kv, "XRANGE s (- +"),
        err("ERR Invalid stream ID specified as stream command argument")
    );
    assert_eq!(
        run(kv, "XRANGE s (18446744073709551615-18446744073709551615 +"),
        err("ERR invalid start ID for the interval")
    );
    assert_eq!(
        run(kv, "XRANGE s - (0-0"),
        err("ERR invalid end ID for the interval")
    );
    assert_eq!(run(kv, "XRANGE s - + COUNT"), err("ERR syntax error"));
    assert_eq!(run(kv, "XRANGE s + -"), arr(vec![]));
}

#[test]
fn xdel_and_the_recorded_ids() {
    let kv = &mut Kv::default();
    for i in 1..=3 {
        run(kv, &format!("XADD s {i}-0 data a"));
    }
    assert_eq!(
        run(kv, "XDEL s 2-0 bad"),
        err("ERR Invalid stream ID specified as stream command argument")
    );
    assert_eq!(run(kv, "XLEN s"), int(3), "a bad ID deletes nothing");
    assert_eq!(run(kv, "XDEL s 2-0 9-0 2-0"), int(1));
    assert_eq!(run(kv, "XDEL s 1-0"), int(1));
    assert_eq!(run(kv, "XDEL nokey 1-0"), int(0));
    let Value::Map(info) = run(kv, "XINFO STREAM s") else {
        panic!()
    };
    let get = |k: &str| {
        info.iter()
            .find(|(n, _)| *n == bulk(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("length"), Some(int(1)));
    assert_eq!(get("max-deleted-entry-id"), Some(bulk("2-0")));
    assert_eq!(get("recorded-first-entry-id"), Some(bulk("3-0")));
    assert_eq!(get("entries-added"), Some(int(3)));
    assert_eq!(get("last-generated-id"), Some(bulk("3-0")));
    assert_eq!(get("first-entry"), Some(entry("3-0", &["data", "a"])));
    assert_eq!(run(kv, "XINFO STREAM nokey"), err("ERR no such key"));
    assert_eq!(
        run(kv, "XINFO STREAM s FULLX"),
        err("ERR unknown subcommand or wrong number of arguments for 'STREAM'. Try XINFO HELP.")
    );
}

#[test]
fn xread_answers_at_once() {
    let kv = &mut Kv::default();
    run(kv, "XADD a 1-1 f v");
    run(kv, "XADD a 1-18446744073709551615 f v");
    run(kv, "XADD a 2-1 f v");
    assert_eq!(
        run(kv, "XREAD BLOCK 0 STREAMS a 1-18446744073709551615"),
        Value::KeyedPairs(vec![(bulk("a"), arr(vec![entry("2-1", &["f", "v"])]))])
    );
    assert_eq!(
        run(kv, "XREAD COUNT 1 STREAMS nokey a 0 0"),
        Value::KeyedPairs(vec![(bulk("a"), arr(vec![entry("1-1", &["f", "v"])]))])
    );
    assert_eq!(run(kv, "XREAD STREAMS a $"), Value::NullArray);
    assert_eq!(
        run(kv, "XREAD BLOCK 100 STREAMS a nokey $ $"),
        Value::NullArray
    );
    assert_eq!(
        run(kv, "XREAD STREAMS a b 0"),
        err("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.")
    );
    assert_eq!(run(kv, "XREAD COUNT 1 a 0"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "XREAD BLOCK -1 STREAMS a 0"),
        err("ERR timeout is negative")
    );
    assert_eq!(
        run(kv, "XREAD STREAMS a >"),
        err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.")
    );
}

#[test]
fn xsetid_checks_then_sets() {
    let kv = &mut Kv::default();
    assert_eq!(run(kv, "XSETID s 1-1"), err("ERR no such key"));
    assert_eq!(run(kv, "XSETID s 1-1 0"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "XSETID s 1-1 ENTRIESADDED -1 MAXDELETEDID 0-0"),
        err("ERR entries_added must be positive")
    );
    run(kv, "XADD s 5-0 a b");
    assert_eq!(
        run(kv, "XSETID s 4-0"),
        err("ERR The ID specified in XSETID is smaller than the target stream top item")
    );
    assert_eq!(
        run(kv, "XSETID s 5-0 ENTRIESADDED 0 MAXDELETEDID 0-0"),
        err("ERR The entries_added specified in XSETID is smaller than the target stream length")
    );
    assert_eq!(
        run(kv, "XSETID s 5-0 ENTRIESADDED 1 MAXDELETEDID 6-0"),
        err("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id")
    );
    assert_eq!(run(kv, "XSETID s 200-0"), Value::ok());
    assert_eq!(
        run(kv, "XADD s 100-0 a b"),
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
}

/// A command that changes nothing leaves the key's version (what WATCH compares) alone.
#[test]
fn a_write_that_changes_nothing_keeps_the_version() {
    let kv = &mut Kv::default();
    at(kv, 1000, "XADD s 1-0 a b");
    let version = |kv: &Kv| kv.live(b"s", 0).map(|s| s.version);
    let before = version(kv);
    at(kv, 2000, "XDEL s 9-0");
    at(kv, 3000, "XTRIM s MAXLEN 5");
    assert_eq!(version(kv), before);
    at(kv, 4000, "XDEL s 1-0");
    assert_ne!(version(kv), before);
}

#[test]
fn help_lists_the_subcommands() {
    let kv = &mut Kv::default();
    let Value::Array(lines) = run(kv, "XINFO HELP") else {
        panic!()
    };
    assert_eq!(
        lines[0],
        Value::simple("XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    );
    assert_eq!(lines.last(), Some(&Value::simple("    Print this help.")));
}

/// A group's life, replies as a real redis-server 7.0 gave them for the same commands.
#[test]
fn consumer_groups_deliver_track_and_claim() {
    let kv = &mut Kv::default();
    for i in 1..=3 {
        run(kv, &format!("XADD s {i}-0 a {i}"));
    }
    assert_eq!(run(kv, "XGROUP CREATE s g 0"), Value::ok());
    assert_eq!(
        run(kv, "XGROUP CREATE s g 0"),
        err("BUSYGROUP Consumer Group name already exists")
    );
    let first_two = Value::KeyedPairs(vec![(
        bulk("s"),
        arr(vec![entry("1-0", &["a", "1"]), entry("2-0", &["a", "2"])]),
    )]);
    assert_eq!(
        run(kv, "XREADGROUP GROUP g alice COUNT 2 STREAMS s >"),
        first_two
    );
    assert_eq!(
        run(kv, "XPENDING s g"),
        arr(vec![
            int(2),
            bulk("1-0"),
            bulk("2-0"),
            arr(vec![arr(vec![bulk("alice"), bulk("2")])])
        ])
    );
    assert_eq!(run(kv, "XREADGROUP GROUP g alice STREAMS s 0"), first_two);
    assert_eq!(run(kv, "XACK s g 1-0 9-0"), int(1));
    assert_eq!(
        at(kv, 1500, "XCLAIM s g bob 0 2-0 JUSTID"),
        arr(vec![bulk("2-0")])
    );
    // Delivered twice (the history read counts, JUSTID does not), idle since the claim.
    assert_eq!(
        at(kv, 1700, "XPENDING s g - + 10"),
        arr(vec![arr(vec![bulk("2-0"), bulk("bob"), int(200), int(2)])])
    );
    let Value::Array(groups) = run(kv, "XINFO GROUPS s") else {
        panic!()
    };
    assert_eq!(
        groups[0],
        Value::Map(vec![
            (bulk("name"), bulk("g")),
            (bulk("consumers"), int(2)),
            (bulk("pending"), int(1)),
            (bulk("last-delivered-id"), bulk("2-0")),
            (bulk("entries-read"), int(2)),
            (bulk("lag"), int(1)),
        ])
    );
    // A pending message whose entry was deleted is dropped by the claim, not claimed.
    run(kv, "XDEL s 2-0");
    assert_eq!(
        run(kv, "XAUTOCLAIM s g carol 0 0 COUNT 1"),
        arr(vec![bulk("0-0"), arr(vec![]), arr(vec![bulk("2-0")])])
    );
    assert_eq!(
        run(kv, "XPENDING s g"),
        arr(vec![int(0), Value::Null, Value::Null, Value::NullArray])
    );
    assert_eq!(run(kv, "XGROUP DELCONSUMER s g carol"), int(0));
    assert_eq!(run(kv, "XGROUP CREATECONSUMER s g dave"), int(1));
    assert_eq!(run(kv, "XGROUP CREATECONSUMER s g dave"), int(0));
    assert_eq!(
        run(kv, "XGROUP SETID s nog 0"),
        err("NOGROUP No such consumer group 'nog' for key name 's'")
    );
    assert_eq!(
        run(kv, "XGROUP CREATE nokey g 0"),
        err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.")
    );
    assert_eq!(run(kv, "XGROUP CREATE nokey g $ MKSTREAM"), Value::ok());
    assert_eq!(run(kv, "XLEN nokey"), int(0));
    assert_eq!(
        run(kv, "XREADGROUP GROUP nog c STREAMS s >"),
        err("NOGROUP No such key 's' or consumer group 'nog' in XREADGROUP with GROUP option")
    );
    assert_eq!(
        run(kv, "XCLAIM s g bob 0 1-0 FOO"),
        err("ERR Unrecognized XCLAIM option 'FOO'")
    );
    assert_eq!(
        run(kv, "XAUTOCLAIM s g bob 0 0 COUNT 0"),
        err("ERR COUNT must be > 0")
    );
    assert_eq!(run(kv, "XPENDING s g IDLE 5 - +"), err("ERR syntax error"));
    assert_eq!(
        run(kv, "XGROUP CREATE s g2 0 ENTRIESREAD -2"),
        err("ERR value for ENTRIESREAD must be positive or -1")
    );
    assert_eq!(run(kv, "XGROUP DESTROY s g"), int(1));
    assert_eq!(run(kv, "XGROUP DESTROY s g"), int(0));
}

/// Groups travel with the stream: a snapshot record of it decodes to the same state.
#[test]
fn groups_survive_the_record_encoding() {
    let kv = &mut Kv::default();
    run(kv, "XADD s 1-0 a 1");
    run(kv, "XGROUP CREATE s g 0");
    run(kv, "XREADGROUP GROUP g alice STREAMS s >");
    let Some(slot) = kv.live(b"s", 0) else {
        panic!()
    };
    let crate::slot::Data::Stream(s) = &slot.value else {
        panic!()
    };
    let mut out = Vec::new();
    s.write_payload(&mut out).unwrap();
    let back = crate::stream::Stream::read_payload(&mut &out[..]).expect("decodes");
    assert_eq!(&back, &**s);
    assert_eq!(back.groups[&b"g"[..]].pel.len(), 1);
}
