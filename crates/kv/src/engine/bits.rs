//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT. Bit 0 is the most significant bit of
//! the first byte, as in Redis.

use flotilla_resp::Value;

use super::{int, is, syntax_error, Handler, Run};
use crate::command::Arg;
use crate::store::Value as Bytes;

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("setbit", setbit),
    ("getbit", getbit),
    ("bitcount", bitcount),
];

/// Redis's largest bit offset: a string of at most 512 MiB.
const MAX_BIT_OFFSET: i64 = 512 * 1024 * 1024 * 8 - 1;

fn offset(arg: &Arg) -> Result<usize, Value> {
    match flotilla_resp::parse_i64(arg.as_slice()) {
        Some(n) if (0..=MAX_BIT_OFFSET).contains(&n) => Ok(n as usize),
        _ => Err(Value::error(
            "ERR bit offset is not an integer or out of range",
        )),
    }
}

fn setbit(r: &mut Run, a: &[Arg]) -> Value {
    let at = match offset(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let on = match a[3].as_slice() {
        b"1" => true,
        b"0" => false,
        _ => return Value::error("ERR bit is not an integer or out of range"),
    };
    let old = match r.string(&a[1]) {
        Ok(v) => v.cloned(),
        Err(e) => return e,
    };
    let expire_at = r.expiry(&a[1]).unwrap_or(0);
    let mut v = old.map(|v| v.to_vec()).unwrap_or_default();
    let (byte, mask) = (at / 8, 0x80u8 >> (at % 8));
    if v.len() <= byte {
        v.resize(byte + 1, 0);
    }
    let was = v[byte] & mask != 0;
    if on {
        v[byte] |= mask;
    } else {
        v[byte] &= !mask;
    }
    r.store(&a[1], Bytes::from(v), expire_at);
    Value::Integer(i64::from(was))
}

fn getbit(r: &mut Run, a: &[Arg]) -> Value {
    let at = match offset(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    match r.string(&a[1]) {
        Err(e) => e,
        Ok(v) => {
            let byte = v.and_then(|v| v.get(at / 8)).copied().unwrap_or(0);
            Value::Integer(i64::from(byte & (0x80 >> (at % 8)) != 0))
        }
    }
}

/// `BITCOUNT key [start end [BYTE | BIT]]`: set bits, in a range of bytes (or bits), negative
/// indices from the end, as GETRANGE counts them.
fn bitcount(r: &mut Run, a: &[Arg]) -> Value {
    let v = match r.string(&a[1]) {
        Ok(v) => v.cloned().unwrap_or_default(),
        Err(e) => return e,
    };
    let (range, bits) = match a.len() {
        2 => (None, false),
        4 | 5 => {
            let (s, e) = match (int(&a[2]), int(&a[3])) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            let bits = match a.get(4) {
                None => false,
                Some(m) if is(m, "byte") => false,
                Some(m) if is(m, "bit") => true,
                Some(_) => return syntax_error(),
            };
            (Some((s, e)), bits)
        }
        _ => return syntax_error(),
    };
    let Some((start, end)) = range else {
        return Value::Integer(v.iter().map(|b| b.count_ones() as i64).sum());
    };
    let len = if bits {
        v.len() as i64 * 8
    } else {
        v.len() as i64
    };
    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (norm(start), norm(end).min(len - 1));
    if len == 0 || start > end {
        return Value::Integer(0);
    }
    let n: i64 = if bits {
        (start..=end)
            .filter(|&i| v[(i / 8) as usize] & (0x80 >> (i % 8)) != 0)
            .count() as i64
    } else {
        v[start as usize..=end as usize]
            .iter()
            .map(|b| b.count_ones() as i64)
            .sum()
    };
    Value::Integer(n)
}
