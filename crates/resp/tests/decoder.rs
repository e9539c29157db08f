//! The request decoder: multibulk and inline requests, pipelining, input split anywhere,
//! limits, and malformed input.

use flotilla_resp::{Decoder, Limits, RespError};

/// A request's arguments.
type Args = Vec<Vec<u8>>;

/// Decodes every request in `buf`, as a router would: call, drop what was used, repeat.
/// Returns the requests and the bytes left over (an incomplete request).
fn decode_all(decoder: &mut Decoder, buf: &[u8]) -> Result<(Vec<Args>, usize), RespError> {
    let mut rest = buf;
    let mut requests = Vec::new();
    while let Some((args, used)) = decoder.decode(rest)? {
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        requests.push(args);
        rest = &rest[used..];
    }
    Ok((requests, rest.len()))
}

fn requests(buf: &[u8]) -> Vec<Vec<String>> {
    let (reqs, left) = decode_all(&mut Decoder::new(Limits::default()), buf).expect("valid");
    assert_eq!(
        left,
        0,
        "incomplete request left in {:?}",
        String::from_utf8_lossy(buf)
    );
    reqs.into_iter()
        .map(|args| {
            args.into_iter()
                .map(|a| String::from_utf8(a).expect("utf-8"))
                .collect()
        })
        .collect()
}

fn error(buf: &[u8], limits: Limits) -> String {
    match decode_all(&mut Decoder::new(limits), buf) {
        Err(e) => e.to_string(),
        Ok(r) => panic!("{:?} decoded as {r:?}", String::from_utf8_lossy(buf)),
    }
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n\
PING\r\n\
*2\r\n$3\r\nGET\r\n$0\r\n\r\n\
*0\r\n\
\r\n\
set \"a b\" 'c d'\n\
*1\r\n$4\r\nPING\r\n";

fn pipeline_requests() -> Vec<Vec<String>> {
    vec![
        words(&["SET", "key", "value"]),
        words(&["PING"]),
        words(&["GET", ""]),
        words(&["set", "a b", "c d"]),
        words(&["PING"]),
    ]
}

#[test]
fn pipelined_requests_decode_in_order() {
    assert_eq!(requests(PIPELINE), pipeline_requests());
}

/// Feeds `PIPELINE` in two pieces, cut at every offset; and one byte at a time.
#[test]
fn any_split_of_the_input_gives_the_same_requests() {
    for cut in 0..=PIPELINE.len() {
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = PIPELINE[..cut].to_vec();
        let mut got = drain(&mut decoder, &mut buf);
        buf.extend_from_slice(&PIPELINE[cut..]);
        got.extend(drain(&mut decoder, &mut buf));
        assert_eq!(got, pipeline_requests(), "cut at {cut}");
        assert!(buf.is_empty());
    }
    let mut decoder = Decoder::new(Limits::default());
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    for &b in PIPELINE {
        buf.push(b);
        got.extend(drain(&mut decoder, &mut buf));
    }
    assert_eq!(got, pipeline_requests(), "byte by byte");
}

/// Decodes what `buf` holds, removing the bytes used, as a router does with its read buffer.
fn drain(decoder: &mut Decoder, buf: &mut Vec<u8>) -> Vec<Vec<String>> {
    let mut got = Vec::new();
    while let Some((args, used)) = decoder.decode(buf).expect("valid") {
        buf.drain(..used);
        got.push(
            args.into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect(),
        );
    }
    got
}

#[test]
fn bulk_arguments_are_binary_safe() {
    let buf = b"*2\r\n$4\r\nECHO\r\n$6\r\n\0\r\n\xff*$\r\n";
    let (reqs, _) = decode_all(&mut Decoder::new(Limits::default()), buf).unwrap();
    assert_eq!(reqs, vec![vec![b"ECHO".to_vec(), b"\0\r\n\xff*$".to_vec()]]);
}

#[test]
fn inline_commands_split_like_redis() {
    assert_eq!(requests(b"PING\r\n"), vec![words(&["PING"])]);
    assert_eq!(
        requests(b"PING\n"),
        vec![words(&["PING"])],
        "bare LF, as nc sends"
    );
    assert_eq!(
        requests(b"  set  k \t v  \r\n"),
        vec![words(&["set", "k", "v"])]
    );
    assert_eq!(
        requests(b"set k \"a\\x41\\n\\\"b\"\r\n"),
        vec![words(&["set", "k", "aA\n\"b"])]
    );
    assert_eq!(
        requests(b"echo 'it\\'s' \"\"\r\n"),
        vec![words(&["echo", "it's", ""])]
    );
    assert_eq!(
        requests(b"echo a\"b c\"\r\n"),
        vec![words(&["echo", "ab c"])]
    );
    assert_eq!(
        requests(b"echo a\0b c\r\nPING\r\n"),
        vec![words(&["echo", "a"]), words(&["PING"])]
    );
    assert_eq!(
        requests(b"\r\n \r\n\nPING\r\n"),
        vec![words(&["PING"])],
        "blank lines skipped"
    );
}

#[test]
fn incomplete_requests_wait_and_report_nothing_used() {
    let mut decoder = Decoder::new(Limits::default());
    for partial in [
        &b"*"[..],
        b"*2",
        b"*2\r",
        b"*2\r\n$3\r\nGET\r\n$5\r\nab",
        b"PIN",
        b"*0\r\n",
    ] {
        assert_eq!(
            Decoder::new(Limits::default()).decode(partial),
            Ok(None),
            "{partial:?}"
        );
    }
    assert_eq!(decoder.decode(b""), Ok(None));
}

#[test]
fn skipped_empty_requests_count_in_the_next_request() {
    let mut decoder = Decoder::new(Limits::default());
    assert_eq!(decoder.decode(b"*0\r\n\r\n"), Ok(None));
    let (args, used) = decoder.decode(b"*0\r\n\r\nPING\r\nECHO").unwrap().unwrap();
    assert_eq!((args, used), (vec![b"PING".to_vec()], 12));
}

/// Where Redis itself refuses a length (tests/unit/protocol.tcl), its words, not the limit's;
/// checked before the limits, also before authentication, as Redis orders them.
#[test]
fn lengths_redis_refuses_get_redis_words() {
    let multibulk = "Protocol error: invalid multibulk length";
    let bulk = "Protocol error: invalid bulk length";
    let decoders: [fn() -> Decoder; 2] = [
        || Decoder::new(Limits::default()),
        || Decoder::before_auth(Limits::default(), Limits::UNAUTHENTICATED),
    ];
    for new_decoder in decoders {
        for (buf, message) in [
            (&b"*3000000000\r\n"[..], multibulk),
            (b"*2147483648\r\n", multibulk),
            (b"*x\r\n", multibulk),
            (b"*+1\r\n", multibulk),
            (b"*01\r\n", multibulk),
            (b"*1\r\n$2000000000\r\n", bulk),
            (b"*1\r\n$536870913\r\n", bulk),
            (b"*1\r\n$-10\r\n", bulk),
            (b"*1\r\n$blabla\r\n", bulk),
            (b"*1\r\n$01\r\n", bulk),
        ] {
            let e = decode_all(&mut new_decoder(), buf).unwrap_err();
            assert_eq!(e.to_string(), message, "{:?}", String::from_utf8_lossy(buf));
        }
    }
}

#[test]
fn limits_are_enforced_with_plain_words() {
    let limits = Limits {
        max_bulk_len: 33_554_432,
        max_array_len: 3,
        max_inline_len: 16,
    };
    assert_eq!(
        error(b"*2\r\n$3\r\nSET\r\n$99999999\r\n", limits),
        "Protocol error: bulk length 99999999 exceeds the limit of 33554432 bytes"
    );
    assert_eq!(
        error(b"*4\r\n", limits),
        "Protocol error: multibulk length 4 exceeds the limit of 3 arguments"
    );
    assert!(error(b"SET key a-long-value\r\n", limits).contains("too big inline request"));
    assert!(
        error(&[b'x'; 17], limits).contains("too big inline request"),
        "no newline yet"
    );
    // At the limits exactly, all is well.
    let ok = b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\nSET key 123456\r\n";
    assert_eq!(
        decode_all(&mut Decoder::new(limits), ok).unwrap().0.len(),
        2
    );
}

#[test]
fn huge_declared_lengths_allocate_nothing() {
    // A header claiming the maximum must not reserve memory before data arrives.
    let mut decoder = Decoder::new(Limits::default());
    assert_eq!(decoder.decode(b"*1048576\r\n$536870912\r\nab"), Ok(None));
}

#[test]
fn malformed_requests_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"*1\r\nx\r\n", "Protocol error: expected '$', got 'x'"),
        (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n\x01", "Protocol error: expected '$', got '\\x01'"),
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*1x\r\n", "Protocol error: invalid multibulk length"),
        (b"*\r\n", "Protocol error: invalid multibulk length"),
        (b"*01\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$+3\r\nabc\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$3\r\nabcd\r\n",
            "Protocol error: expected CRLF after bulk data",
        ),
        (
            b"*1\r\n$3\r\nabc\n\r",
            "Protocol error: expected CRLF after bulk data",
        ),
        (b"*1\rx", "Protocol error: expected CRLF after length"),
        (
            b"*1\r\n$3\rabc",
            "Protocol error: expected CRLF after length",
        ),
        (
            b"*11111111111111111111111111111111111",
            "Protocol error: too big mbulk count string",
        ),
        (
            b"*1\r\n$0000000000000000000000000000000000",
            "Protocol error: too big bulk count string",
        ),
        (
            b"set k \"abc\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"set k \"abc\"def\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"set k 'abc\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(
            error(input, Limits::default()),
            *message,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn errors_become_err_replies() {
    let e = Decoder::new(Limits::default())
        .decode(b"*1\r\nx")
        .unwrap_err();
    assert_eq!(
        e.to_value().to_bytes(Default::default()),
        b"-ERR Protocol error: expected '$', got 'x'\r\n"
    );
}

#[test]
fn a_large_bulk_in_many_pieces_is_not_rescanned() {
    // 8 MiB fed 1 KiB at a time: 8192 calls. Re-parsing from scratch would scan ~32 GiB; this
    // must stay quick even in an unoptimised build.
    let value = vec![b'v'; 8 << 20];
    let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
    input.extend_from_slice(&value);
    input.extend_from_slice(b"\r\n");
    let mut decoder = Decoder::new(Limits::default());
    let mut fed = 0;
    let found = loop {
        fed = (fed + 1024).min(input.len());
        if let Some(found) = decoder.decode(&input[..fed]).unwrap() {
            break found;
        }
    };
    assert_eq!(found.1, input.len());
    assert_eq!(found.0[2], value);
}

#[test]
#[should_panic(expected = "buffer shrank")]
fn dropping_unconsumed_bytes_is_a_programmer_error() {
    let mut decoder = Decoder::new(Limits::default());
    assert_eq!(decoder.decode(b"*2\r\n$3\r\nGET\r\n"), Ok(None));
    let _ = decoder.decode(b"$1\r\nk\r\n");
}

/// A decoder for a client that has not authenticated, over the default limits.
fn before_auth() -> Decoder {
    Decoder::before_auth(Limits::default(), Limits::UNAUTHENTICATED)
}

#[test]
fn before_auth_requests_are_limited_in_redis_words() {
    // The attack of issue 15 (9): a 32 MiB bulk declared before AUTH is refused at its header,
    // not buffered.
    let header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$33554432\r\n";
    let e = decode_all(&mut before_auth(), header).unwrap_err();
    assert_eq!(e.to_string(), "Protocol error: unauthenticated bulk length");
    assert_eq!(
        e.to_value(),
        flotilla_resp::Value::Error("ERR Protocol error: unauthenticated bulk length".into())
    );
    let e = decode_all(&mut before_auth(), b"*11\r\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Protocol error: unauthenticated multibulk length"
    );
    // At the limits exactly (10 arguments, 16 KiB), all is well: a long password still gets
    // to AUTH (and its WRONGPASS).
    let mut big = b"*10\r\n$4\r\nAUTH\r\n$16384\r\n".to_vec();
    big.extend([b'p'; 16384]);
    big.extend(b"\r\n");
    for _ in 0..8 {
        big.extend(b"$1\r\nx\r\n");
    }
    let (reqs, left) = decode_all(&mut before_auth(), &big).unwrap();
    assert_eq!(
        (reqs.len(), reqs[0].len(), reqs[0][1].len(), left),
        (1, 10, 16384, 0)
    );
    // The same decoder with full limits (no password configured) accepts the big header.
    let mut full = Decoder::new(Limits::default());
    assert_eq!(full.decode(header), Ok(None));
}

#[test]
fn authenticating_lifts_the_limits_for_the_next_request() {
    // AUTH, then a pipelined SET with a value over 16 KiB: decoded after the AUTH ran.
    let mut buf =
        b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n".to_vec();
    buf.extend([b'v'; 20000]);
    buf.extend(b"\r\n");
    let mut decoder = before_auth();
    let (auth, used) = decoder.decode(&buf).unwrap().unwrap();
    assert_eq!(auth[0], b"AUTH");
    decoder.authenticated();
    let (set, rest) = decoder.decode(&buf[used..]).unwrap().unwrap();
    assert_eq!((set[2].len(), used + rest), (20000, buf.len()));
    assert_eq!(decoder.limits(), &Limits::default());
    // Not authenticated: the same stream fails at the SET's value.
    let mut decoder = before_auth();
    let (_, used) = decoder.decode(&buf).unwrap().unwrap();
    assert_eq!(
        decoder.decode(&buf[used..]),
        Err(RespError::UnauthenticatedBulkLength {
            len: 20000,
            max: 16384
        })
    );
}
