//! Property tests: whatever bytes arrive, the decoders return a request, `None` or a typed
//! error, never panic and never claim more bytes than they were given; requests and replies
//! survive an encode/decode round trip.

use flotilla_resp::{decode_value, Command, Decoder, Limits, Protocol, Value};
use proptest::prelude::*;

/// Small limits, so that random input also reaches the limit checks.
fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_array_len: 8,
        max_inline_len: 64,
    }
}

/// Bytes that look a bit like RESP as often as like noise.
fn resp_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\\x4".to_vec()),
        (0u8..20).prop_map(|n| n.to_string().into_bytes()),
        Just(b"-1".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// Any argument vector, encoded as a multibulk request.
fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    Value::bulk_array(args.iter().cloned()).to_bytes(Protocol::Resp2)
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,12}".prop_map(Value::Simple),
        "ERR [a-z ]{0,12}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bulk),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(Value::Double),
        "-?[1-9][0-9]{0,40}".prop_map(Value::BigNumber),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|text| Value::Verbatim {
            format: *b"txt",
            text
        }),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Push),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics_nor_overconsumes(
        bytes in prop_oneof![resp_ish(), prop::collection::vec(any::<u8>(), 0..200)],
    ) {
        for limits in [small_limits(), Limits::default()] {
            let mut decoder = Decoder::new(limits);
            let mut rest = &bytes[..];
            while let Ok(Some((args, used))) = decoder.decode(rest) {
                prop_assert!(used >= 1 && used <= rest.len(), "used {} of {}", used, rest.len());
                prop_assert!(!args.is_empty());
                let _ = Command::from_args(args);
                rest = &rest[used..];
            }
            let _ = decode_value(&bytes, &limits);
        }
    }

    #[test]
    fn decoder_never_consumes_more_than_it_was_given(
        bytes in resp_ish(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        // Feed growing prefixes, as a socket would deliver them.
        let mut ends: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(bytes.len());
        let mut decoder = Decoder::new(small_limits());
        let mut start = 0;
        for end in ends {
            while start <= end {
                match decoder.decode(&bytes[start..end]) {
                    Ok(Some((_, used))) => {
                        prop_assert!(used <= end - start);
                        start += used;
                    }
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
        }
    }

    #[test]
    fn multibulk_requests_decode_to_themselves(
        requests in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6),
            1..5,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        let input: Vec<u8> = requests.iter().flat_map(|r| multibulk(r)).collect();
        let mut buf = input[..cut.index(input.len() + 1)].to_vec();
        let mut decoder = Decoder::new(Limits::default());
        let mut got = Vec::new();
        let mut fed = buf.len();
        loop {
            match decoder.decode(&buf).expect("valid RESP") {
                Some((args, used)) => {
                    got.push(args);
                    buf.drain(..used);
                }
                None if fed < input.len() => {
                    buf.extend_from_slice(&input[fed..]);
                    fed = input.len();
                }
                None => break,
            }
        }
        prop_assert_eq!(got, requests);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn replies_round_trip_in_resp3(v in value()) {
        let bytes = v.to_bytes(Protocol::Resp3);
        let decoded = decode_value(&bytes, &Limits::default());
        prop_assert_eq!(decoded, Ok(Some((v, bytes.len()))));
    }

    #[test]
    fn resp2_replies_decode_completely(v in value()) {
        let bytes = v.to_bytes(Protocol::Resp2);
        let (_, used) = decode_value(&bytes, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_value(&bytes[..cut], &Limits::default()), Ok(None));
        }
    }
}
