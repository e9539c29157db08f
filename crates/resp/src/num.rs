//! Strict decimal integers, as Redis's `string2ll` reads them.

/// Parses a decimal `i64` the way Redis does (`string2ll`): an optional `-`, then digits with
/// no leading zero (except `0` itself); no `+`, no spaces, no `-0`, no overflow. Being as strict
/// as Redis keeps `INCRBY k 010` and `$03` errors here too, not silently accepted.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so that i64::MIN (whose magnitude exceeds i64::MAX)
    // parses without a special case.
    let mut acc: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    /// The cases of Redis's own `string2ll` tests (src/util.c), then a few more.
    #[test]
    fn reads_integers_as_redis_string2ll_does() {
        for (s, n) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("01", None),
            ("+1", None),
            ("-0", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("1a", None),
            // More of the same rule.
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("1024", Some(1024)),
            ("-", None),
            ("00", None),
            ("-01", None),
            ("0123", None),
            ("+5", None),
            ("1.5", None),
            ("-9223372036854775809", None),
            ("99999999999999999999999", None),
        ] {
            assert_eq!(parse_i64(s.as_bytes()), n, "{s:?}");
        }
    }
}
