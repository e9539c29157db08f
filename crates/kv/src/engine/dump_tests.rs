//! DUMP and RESTORE: payloads Redis 7.0.15 wrote restore to the same values here, ours
//! restore to what was dumped, and damaged ones are refused.

use flotilla_resp::Value;

use crate::command::Arg;
use crate::engine::test_support::*;
use crate::store::Kv;

fn restore(kv: &mut Kv, key: &str, payload: &[u8], opts: &str) -> Value {
    let mut args: Vec<Arg> = ["RESTORE", key, "0"].into_iter().map(Arg::from).collect();
    args.push(Arg::from(payload.to_vec()));
    args.extend(opts.split(' ').filter(|o| !o.is_empty()).map(Arg::from));
    call(kv, args, NOW, NOW)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn bulks(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| bulk(s)).collect())
}

/// Payloads `DUMP` gave on Redis 7.0.15 (integer, LZF and raw strings; a listpack hash, an
/// intset, a listpack sorted set, a quicklist), and the values they hold.
#[test]
fn payloads_from_redis_restore() {
    let kv = &mut Kv::default();
    let cases = [
        ("s1", "00c139300a009d94ea2793fc08b9"),
        ("s2", "00c30b3c0361626361e02d020162630a006f6029e4afd764ac"),
        ("s3", "000568656c6c6f0a006372df766534200a"),
        ("s4", "00c09c0a00ff77a3b766addee4"),
        (
            "h",
            "101d1d000000060081610201018162028568656c6c6f06816302f1a8e403ff0a00e66e377cd80d918d",
        ),
        (
            "si",
            "0b180400000004000000fdffffff0100000002000000a08601000a00e56f68d5ee10feb5",
        ),
        (
            "z",
            "111a1a0000000600816302dffd0281610283312e35048162020201ff0a0088c4c030f0ae8276",
        ),
        (
            "l",
            "12010216160000000500816102010182626203c12c02dffe02ff0a005df62f3b32409207",
        ),
    ];
    for (key, payload) in cases {
        assert_eq!(restore(kv, key, &hex(payload), ""), Value::ok(), "{key}");
    }
    assert_eq!(run(kv, "GET s1"), bulk("12345"));
    assert_eq!(run(kv, "GET s2"), bulk(&"abc".repeat(20)));
    assert_eq!(run(kv, "GET s3"), bulk("hello"));
    assert_eq!(run(kv, "GET s4"), bulk("-100"));
    assert_eq!(run(kv, "HMGET h a b c"), bulks(&["1", "hello", "-7000"]));
    assert_eq!(run(kv, "HLEN h"), Value::Integer(3));
    assert_eq!(run(kv, "TYPE si"), Value::simple("set"));
    assert_eq!(run(kv, "TYPE z"), Value::simple("zset"));
    assert_eq!(run(kv, "TYPE l"), Value::simple("list"));
    // Our DUMP of what Redis dumped restores to the same value (the list's and sets' order
    // and members are compared through a second key).
    for key in ["s1", "s2", "h", "si", "z", "l"] {
        let Value::Bulk(ours) = run(kv, &format!("DUMP {key}")) else {
            panic!("{key}: no dump")
        };
        let copy = format!("{key}-copy");
        assert_eq!(restore(kv, &copy, &ours, ""), Value::ok());
        assert_eq!(
            run(kv, &format!("DUMP {copy}")),
            Value::Bulk(ours),
            "{key} round trip"
        );
    }
    // And what it holds is what Redis held: the quicklist's elements, in order (our DUMP
    // writes a plain list: type 1, a count, each element).
    let Value::Bulk(l) = run(kv, "DUMP l") else {
        panic!()
    };
    assert_eq!(l[..l.len() - 10], *b"\x01\x05\x01a\x011\x02bb\x03300\x02-2");
    let Value::Bulk(si) = run(kv, "DUMP si") else {
        panic!()
    };
    assert_eq!(si[..si.len() - 10], *b"\x02\x04\x02-3\x011\x06100000\x012");
}

#[test]
fn restore_follows_redis_rules() {
    let kv = &mut Kv::default();
    run(kv, "SET k hello");
    let Value::Bulk(payload) = run(kv, "DUMP k") else {
        panic!()
    };
    // A payload Redis 7.0 also restores: its own DUMP of "hello".
    assert_eq!(payload, hex("000568656c6c6f0a006372df766534200a"));
    assert_eq!(
        restore(kv, "k", &payload, ""),
        Value::error("BUSYKEY Target key name already exists.")
    );
    assert_eq!(restore(kv, "k", &payload, "REPLACE"), Value::ok());
    let mut bad = payload.clone();
    bad[3] ^= 1;
    assert_eq!(
        restore(kv, "x", &bad, ""),
        Value::error("ERR DUMP payload version or checksum are wrong")
    );
    assert_eq!(
        restore(kv, "x", &payload[..5], ""),
        Value::error("ERR DUMP payload version or checksum are wrong")
    );
    assert_eq!(
        restore(kv, "x", &payload, "NOSUCH"),
        Value::error("ERR syntax error")
    );
    let mut args: Vec<Arg> = ["RESTORE", "x", "-1"].into_iter().map(Arg::from).collect();
    args.push(Arg::from(payload.clone()));
    assert_eq!(
        call(kv, args, NOW, NOW),
        Value::error("ERR Invalid TTL value, must be >= 0")
    );
    let mut args: Vec<Arg> = ["RESTORE", "t", "5000"]
        .into_iter()
        .map(Arg::from)
        .collect();
    args.push(Arg::from(payload.clone()));
    assert_eq!(call(kv, args, NOW, NOW), Value::ok());
    assert_eq!(run(kv, "PTTL t"), Value::Integer(5000));
    assert_eq!(run(kv, "DUMP nokey"), Value::Null);
}

/// A payload whose checksum is right but whose counts lie is refused, not trusted: a count
/// past the end, an LZF string claiming a huge length, a back-reference before the start.
#[test]
fn malformed_bodies_are_refused() {
    let kv = &mut Kv::default();
    let seal = |body: &[u8]| {
        let mut p = body.to_vec();
        p.extend_from_slice(&10u16.to_le_bytes());
        let crc = super::CRC.checksum(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    };
    for body in [
        &[1u8, 0x80, 0xff, 0xff, 0xff, 0xff][..],
        &[0, 0xc3, 2, 0x81, 0, 0, 0, 1, 0, 0, 0, 0, 0x00, b'a'],
        &[0, 0xc3, 2, 4, 0x20, 0x05],
        &[2, 0],
        &[9, 1, 1],
        &[0, 1, b'a', b'b'],
    ] {
        assert_eq!(
            restore(kv, "x", &seal(body), ""),
            Value::error("ERR Bad data format"),
            "{body:?}"
        );
    }
    assert_eq!(run(kv, "EXISTS x"), Value::Integer(0));
}
