//! Reply encoding: exact bytes for well-known replies, the RESP2 rendering of RESP3 types, and
//! encode → decode round trips for every type in both protocols.

use flotilla_resp::{decode_value, encode, format_double, Limits, Protocol, Value};
use Protocol::{Resp2, Resp3};

fn bytes(value: &Value, proto: Protocol) -> String {
    String::from_utf8(value.to_bytes(proto)).expect("test replies are ASCII")
}

/// One of every type, with the RESP2 value it turns into.
fn every_type() -> Vec<(Value, Value)> {
    let s = Value::simple;
    vec![
        (s("OK"), s("OK")),
        (Value::error("ERR boom"), Value::error("ERR boom")),
        (Value::Integer(-42), Value::Integer(-42)),
        (
            Value::bulk(&b"bin\0\r\nary"[..]),
            Value::bulk(&b"bin\0\r\nary"[..]),
        ),
        (Value::bulk(""), Value::bulk("")),
        (Value::Null, Value::Null),
        (Value::NullArray, Value::NullArray),
        (Value::Array(vec![]), Value::Array(vec![])),
        (
            Value::Array(vec![Value::Integer(1), Value::bulk("x"), Value::Null]),
            Value::Array(vec![Value::Integer(1), Value::bulk("x"), Value::Null]),
        ),
        (
            Value::Map(vec![
                (s("a"), Value::Integer(1)),
                (s("b"), Value::Boolean(true)),
            ]),
            Value::Array(vec![s("a"), Value::Integer(1), s("b"), Value::Integer(1)]),
        ),
        (
            Value::Set(vec![Value::bulk("m")]),
            Value::Array(vec![Value::bulk("m")]),
        ),
        (Value::Double(1.5), Value::bulk("1.5")),
        (Value::Double(f64::INFINITY), Value::bulk("inf")),
        (
            Value::Double(-1e300),
            Value::bulk("-1.0000000000000001e+300"),
        ),
        (Value::Boolean(true), Value::Integer(1)),
        (Value::Boolean(false), Value::Integer(0)),
        (
            Value::BigNumber("-3492890328409238509324850943850943825024385".into()),
            Value::bulk("-3492890328409238509324850943850943825024385"),
        ),
        (
            Value::Verbatim {
                format: *b"txt",
                text: b"Some string".to_vec(),
            },
            Value::bulk("Some string"),
        ),
        (
            Value::Push(vec![Value::bulk("message"), Value::bulk("chan")]),
            Value::Array(vec![Value::bulk("message"), Value::bulk("chan")]),
        ),
        // Attributes: RESP2 has none, only the reply they come with.
        (
            Value::Attribute {
                attrs: vec![(Value::bulk("key-popularity"), Value::Integer(90))],
                value: Box::new(Value::bulk("reply")),
            },
            Value::bulk("reply"),
        ),
    ]
}

fn decode_all(buf: &[u8]) -> Value {
    let (value, used) = decode_value(buf, &Limits::default())
        .expect("valid reply")
        .expect("complete reply");
    assert_eq!(
        used,
        buf.len(),
        "decoding {:?} left bytes over",
        String::from_utf8_lossy(buf)
    );
    value
}

#[test]
fn well_known_replies_have_redis_bytes() {
    assert_eq!(bytes(&Value::ok(), Resp2), "+OK\r\n");
    assert_eq!(bytes(&Value::Null, Resp2), "$-1\r\n");
    assert_eq!(bytes(&Value::NullArray, Resp2), "*-1\r\n");
    assert_eq!(bytes(&Value::Integer(1), Resp2), ":1\r\n");
    assert_eq!(
        bytes(&Value::Integer(i64::MIN), Resp2),
        ":-9223372036854775808\r\n"
    );
    assert_eq!(
        bytes(&Value::error("ERR unknown command 'x'"), Resp2),
        "-ERR unknown command 'x'\r\n"
    );
    assert_eq!(bytes(&Value::bulk("bar"), Resp2), "$3\r\nbar\r\n");
    assert_eq!(
        bytes(&Value::bulk_array(["a", "bc"]), Resp2),
        "*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
    );
    assert_eq!(bytes(&Value::Null, Resp3), "_\r\n");
    assert_eq!(bytes(&Value::NullArray, Resp3), "_\r\n");
    let map = Value::Map(vec![(Value::simple("server"), Value::bulk("flotilla"))]);
    assert_eq!(bytes(&map, Resp3), "%1\r\n+server\r\n$8\r\nflotilla\r\n");
    assert_eq!(bytes(&map, Resp2), "*2\r\n+server\r\n$8\r\nflotilla\r\n");
    // XREAD: a map in RESP3, [key, value] arrays in RESP2.
    let streams = Value::KeyedPairs(vec![(Value::bulk("s"), Value::Integer(1))]);
    assert_eq!(bytes(&streams, Resp3), "%1\r\n$1\r\ns\r\n:1\r\n");
    assert_eq!(bytes(&streams, Resp2), "*1\r\n*2\r\n$1\r\ns\r\n:1\r\n");
    // HRANDFIELD … WITHVALUES, ZRANGE … WITHSCORES: pairs in RESP3, flat in RESP2.
    let pairs = Value::Pairs(vec![
        (Value::bulk("a"), Value::Double(1.5)),
        (Value::bulk("b"), Value::Double(2.0)),
    ]);
    assert_eq!(
        bytes(&pairs, Resp3),
        "*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(
        bytes(&pairs, Resp2),
        "*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(bytes(&Value::Boolean(true), Resp3), "#t\r\n");
    assert_eq!(bytes(&Value::Double(3.0), Resp3), ",3\r\n");
    assert_eq!(bytes(&Value::Double(f64::NEG_INFINITY), Resp3), ",-inf\r\n");
    assert_eq!(
        bytes(&Value::Set(vec![Value::Integer(7)]), Resp3),
        "~1\r\n:7\r\n"
    );
    assert_eq!(bytes(&Value::Push(vec![]), Resp3), ">0\r\n");
    assert_eq!(
        bytes(&Value::BigNumber("12345".into()), Resp3),
        "(12345\r\n"
    );
    let verbatim = Value::Verbatim {
        format: *b"txt",
        text: b"Some string".to_vec(),
    };
    assert_eq!(bytes(&verbatim, Resp3), "=15\r\ntxt:Some string\r\n");
    let attribute = Value::Attribute {
        attrs: vec![(Value::bulk("a"), Value::Integer(1))],
        value: Box::new(Value::Integer(2)),
    };
    assert_eq!(bytes(&attribute, Resp3), "|1\r\n$1\r\na\r\n:1\r\n:2\r\n");
}

#[test]
fn resp3_types_take_their_resp2_shape() {
    for (value, resp2) in every_type() {
        assert_eq!(value.to_bytes(Resp2), resp2.to_bytes(Resp2), "{value:?}");
        assert_eq!(decode_all(&value.to_bytes(Resp2)), resp2, "{value:?}");
    }
}

#[test]
fn every_type_round_trips_in_resp3() {
    for (value, _) in every_type() {
        // RESP3 has one null; the RESP2 distinction between null bulk and null array is gone.
        let expected = if value == Value::NullArray {
            Value::Null
        } else {
            value.clone()
        };
        assert_eq!(decode_all(&value.to_bytes(Resp3)), expected, "{value:?}");
    }
}

#[test]
fn nan_round_trips_as_nan() {
    let decoded = decode_all(&Value::Double(f64::NAN).to_bytes(Resp3));
    assert!(
        matches!(decoded, Value::Double(d) if d.is_nan()),
        "{decoded:?}"
    );
    assert_eq!(bytes(&Value::Double(f64::NAN), Resp2), "$3\r\nnan\r\n");
}

#[test]
fn doubles_print_like_redis() {
    for (d, text) in [
        (0.0, "0"),
        (1.5, "1.5"),
        (-2.25, "-2.25"),
        (3.0, "3"),
        (0.1, "0.10000000000000001"),
        (1.1, "1.1000000000000001"),
        (0.0001, "0.0001"),
        (1e-5, "1.0000000000000001e-05"),
        (123456789012345678.0, "1.2345678901234568e+17"),
        (1e20, "1e+20"),
        (1e300, "1.0000000000000001e+300"),
        (1.5e-7, "1.4999999999999999e-07"),
        (2.675, "2.6749999999999998"),
        (f64::INFINITY, "inf"),
    ] {
        assert_eq!(format_double(d), text);
        assert_eq!(text.parse::<f64>().ok(), Some(d), "{text} reads back");
    }
}

#[test]
fn line_breaks_in_simple_strings_and_errors_cannot_break_framing() {
    let value = Value::error("ERR unknown command 'a\r\n+OK'");
    assert_eq!(bytes(&value, Resp2), "-ERR unknown command 'a  +OK'\r\n");
    assert_eq!(bytes(&Value::simple("x\ny"), Resp3), "+x y\r\n");
}

#[test]
fn encode_appends_to_the_buffer() {
    let mut out = b"+first\r\n".to_vec();
    encode(&Value::Integer(2), Resp2, &mut out);
    assert_eq!(out, b"+first\r\n:2\r\n");
}

#[test]
fn reply_decoding_waits_for_every_byte() {
    let (value, _) = every_type().swap_remove(9);
    let full = value.to_bytes(Resp3);
    for cut in 0..full.len() {
        assert_eq!(
            decode_value(&full[..cut], &Limits::default()),
            Ok(None),
            "cut at {cut}"
        );
    }
}

#[test]
fn reply_decoding_rejects_garbage() {
    let limits = Limits {
        max_array_len: 4,
        ..Limits::default()
    };
    for bad in [
        &b"?\r\n"[..],
        b":12a\r\n",
        b"#x\r\n",
        b",1.2.3\r\n",
        b"_x\r\n",
        b"(12a\r\n",
        b"=2\r\nab\r\n",
        b"=5\r\ntxt-a\r\n",
        b"$3\r\nabcd\r\n",
        b"*5\r\n",
        b"+OK\rX",
        b"$-2\r\n",
    ] {
        assert!(
            decode_value(bad, &limits).is_err(),
            "{:?} should be rejected",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = "*1\r\n".repeat(200);
    assert!(decode_value(deep.as_bytes(), &Limits::default()).is_err());
}

#[test]
fn pairs_are_nested_in_resp3_and_flat_in_resp2() {
    let pairs = Value::Pairs(vec![(Value::bulk("a"), Value::Double(1.5))]);
    assert_eq!(bytes(&pairs, Resp2), "*2\r\n$1\r\na\r\n$3\r\n1.5\r\n");
    assert_eq!(bytes(&pairs, Resp3), "*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n");
}
