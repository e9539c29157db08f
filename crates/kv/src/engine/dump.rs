//! DUMP and RESTORE, in Redis's own serialization, so that a value dumped from Redis restores
//! here and one dumped here restores into Redis 7.0.
//!
//! A payload is `[type][value][RDB version: u16 LE][CRC-64/Redis of all before: u64 LE]`,
//! the value as Redis's RDB file writes it. DUMP writes the plain forms every Redis since 2.x
//! loads: a string (type 0), a list (1), a set (2), a sorted set with binary scores (5), a
//! hash (4). RESTORE reads those, strings stored as integers or LZF-compressed (what Redis
//! writes for strings longer than 20 bytes), and Redis 7.0's compact forms: intsets (11),
//! listpacks of hashes (16) and sorted sets (17), and lists as quicklists of listpacks (18).
//! Streams are not serialized (DUMP answers an error naming the type).

use std::sync::Arc;

use flotilla_resp::Value;

use super::{int, is, syntax_error, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, Hash, List, Set};
use crate::zset::{Score, ZSet};

pub(super) const HANDLERS: &[(&str, Handler)] = &[("dump", dump), ("restore", restore)];

/// The RDB version of the payloads written: Redis 7.0's, the newest a 7.0 server restores.
const RDB_VERSION: u16 = 10;

const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;

/// `DUMP key`.
fn dump(r: &mut Run, a: &[Arg]) -> Value {
    let Some(slot) = r.kv.live(a[1].as_slice(), r.now) else {
        return Value::Null;
    };
    let mut out = Vec::new();
    match &slot.value {
        Data::Str(v) => {
            out.push(TYPE_STRING);
            put_string(&mut out, v);
        }
        Data::List(l) => {
            out.push(TYPE_LIST);
            put_len(&mut out, l.len() as u64);
            l.iter().for_each(|e| put_string(&mut out, e));
        }
        Data::Set(m) => {
            out.push(TYPE_SET);
            put_len(&mut out, m.len() as u64);
            m.iter().for_each(|e| put_string(&mut out, e));
        }
        Data::Hash(h) => {
            out.push(TYPE_HASH);
            put_len(&mut out, h.len() as u64);
            for (f, v) in h.iter() {
                put_string(&mut out, f);
                put_string(&mut out, v);
            }
        }
        Data::ZSet(z) => {
            out.push(TYPE_ZSET_2);
            put_len(&mut out, z.len() as u64);
            // Redis writes a sorted set from its highest score down, so that loading it
            // inserts at the head; the order is not part of the format's meaning.
            for (m, s) in z.iter().rev() {
                put_string(&mut out, m);
                out.extend_from_slice(&s.get().to_le_bytes());
            }
        }
        Data::Stream(_) => {
            return Value::error("ERR DUMP of a stream is not supported by flotilla");
        }
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = CRC.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Value::Bulk(out)
}

/// `RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]`.
fn restore(r: &mut Run, a: &[Arg]) -> Value {
    let (mut replace, mut absttl) = (false, false);
    let mut i = 4;
    while i < a.len() {
        if is(&a[i], "replace") {
            replace = true;
        } else if is(&a[i], "absttl") {
            absttl = true;
        } else if (is(&a[i], "idletime") || is(&a[i], "freq")) && i + 1 < a.len() {
            // Flotilla keeps no access times or frequencies: checked as Redis checks them,
            // then not kept.
            let n = match int(&a[i + 1]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            if is(&a[i], "idletime") && n < 0 {
                return Value::error("ERR Invalid IDLETIME value, must be >= 0");
            }
            if is(&a[i], "freq") && !(0..=255).contains(&n) {
                return Value::error("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let ttl = match int(&a[2]) {
        Ok(t) if t < 0 => return Value::error("ERR Invalid TTL value, must be >= 0"),
        Ok(t) => t as u64,
        Err(e) => return e,
    };
    if !replace && r.exists(&a[1]) {
        return Value::error("BUSYKEY Target key name already exists.");
    }
    let payload = a[3].as_slice();
    let Some(body) = verified_body(payload) else {
        return Value::error("ERR DUMP payload version or checksum are wrong");
    };
    let Some(value) = decode(body) else {
        return Value::error("ERR Bad data format");
    };
    let expire_at = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t,
        (t, false) => r.now.saturating_add(t),
    };
    // A TTL already past: the key is deleted (replaced by nothing), as Redis does.
    r.kv.remove(a[1].as_slice());
    r.store_data(&a[1], value, expire_at);
    Value::ok()
}

/// The payload without its footer, if its version is one this can read and its checksum
/// matches.
fn verified_body(payload: &[u8]) -> Option<&[u8]> {
    let (rest, crc) = payload.split_last_chunk::<8>()?;
    let (body, version) = rest.split_last_chunk::<2>()?;
    if u16::from_le_bytes(*version) > RDB_VERSION {
        return None;
    }
    (CRC.checksum(rest) == u64::from_le_bytes(*crc)).then_some(body)
}

fn decode(body: &[u8]) -> Option<Data> {
    let (&kind, mut rest) = body.split_first()?;
    let input = &mut rest;
    let value = match kind {
        TYPE_STRING => Data::Str(get_string(input)?.into()),
        TYPE_LIST => {
            let n = get_count(input)?;
            let l: List = (0..n).map(|_| get_string(input)).collect::<Option<_>>()?;
            Data::List(Arc::new(l))
        }
        TYPE_SET => {
            let n = get_count(input)?;
            let s: Set = (0..n).map(|_| get_string(input)).collect::<Option<_>>()?;
            Data::Set(Arc::new(s))
        }
        TYPE_HASH => {
            let n = get_count(input)?;
            let mut h = Hash::default();
            for _ in 0..n {
                let f = get_string(input)?;
                h.insert(f, get_string(input)?);
            }
            Data::Hash(Arc::new(h))
        }
        TYPE_ZSET_2 => {
            let n = get_count(input)?;
            let mut z = ZSet::new();
            for _ in 0..n {
                let m = get_string(input)?;
                let (bits, rest) = input.split_first_chunk::<8>()?;
                *input = rest;
                z.insert(m, Score::new(f64::from_le_bytes(*bits))?);
            }
            Data::ZSet(Arc::new(z))
        }
        TYPE_SET_INTSET => Data::Set(Arc::new(intset(&get_string(input)?)?)),
        TYPE_HASH_LISTPACK => {
            let items = listpack(&get_string(input)?)?;
            if items.len() % 2 != 0 {
                return None;
            }
            let h: Hash = (items.chunks_exact(2))
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            Data::Hash(Arc::new(h))
        }
        TYPE_ZSET_LISTPACK => {
            let items = listpack(&get_string(input)?)?;
            if items.len() % 2 != 0 {
                return None;
            }
            let mut z = ZSet::new();
            for p in items.chunks_exact(2) {
                let score = std::str::from_utf8(&p[1]).ok()?.parse::<f64>().ok()?;
                z.insert(p[0].clone(), Score::new(score)?);
            }
            Data::ZSet(Arc::new(z))
        }
        TYPE_LIST_QUICKLIST_2 => {
            let nodes = get_count(input)?;
            let mut l = List::new();
            for _ in 0..nodes {
                let container = get_len(input)?;
                let blob = get_string(input)?;
                match container {
                    // A plain node: one element, as it is.
                    1 => l.push_back(blob),
                    2 => l.extend(listpack(&blob)?),
                    _ => return None,
                }
            }
            Data::List(Arc::new(l))
        }
        _ => return None,
    };
    // An empty collection is no key in Redis; a payload saying otherwise is malformed.
    let empty = match &value {
        Data::List(l) => l.is_empty(),
        Data::Set(s) => s.is_empty(),
        Data::Hash(h) => h.is_empty(),
        Data::ZSet(z) => z.is_empty(),
        _ => false,
    };
    (rest.is_empty() && !empty).then_some(value)
}

/// Redis's length encoding: 6 bits, 14 bits, or a 32- or 64-bit big-endian number.
fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if n > input.len() {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// A length, or `Err` with the special encoding's number (strings stored otherwise).
fn get_len_or_special(input: &mut &[u8]) -> Option<Result<u64, u8>> {
    let first = *take(input, 1)?.first()?;
    Some(match first >> 6 {
        0 => Ok(u64::from(first & 0x3f)),
        1 => Ok((u64::from(first & 0x3f) << 8) | u64::from(*take(input, 1)?.first()?)),
        2 if first == 0x80 => Ok(u64::from(u32::from_be_bytes(
            take(input, 4)?.try_into().ok()?,
        ))),
        2 if first == 0x81 => Ok(u64::from_be_bytes(take(input, 8)?.try_into().ok()?)),
        3 => Err(first & 0x3f),
        _ => return None,
    })
}

fn get_len(input: &mut &[u8]) -> Option<u64> {
    get_len_or_special(input)?.ok()
}

/// A count of items that each take at least a byte: one past the input is malformed, refused
/// before it sizes anything.
fn get_count(input: &mut &[u8]) -> Option<u64> {
    let n = get_len(input)?;
    (n <= input.len() as u64).then_some(n)
}

/// A string: raw, an integer (8, 16 or 32 bits), or LZF-compressed.
fn get_string(input: &mut &[u8]) -> Option<Vec<u8>> {
    match get_len_or_special(input)? {
        Ok(n) => Some(take(input, usize::try_from(n).ok()?)?.to_vec()),
        Err(0) => Some((take(input, 1)?[0] as i8).to_string().into_bytes()),
        Err(1) => Some(
            i16::from_le_bytes(take(input, 2)?.try_into().ok()?)
                .to_string()
                .into_bytes(),
        ),
        Err(2) => Some(
            i32::from_le_bytes(take(input, 4)?.try_into().ok()?)
                .to_string()
                .into_bytes(),
        ),
        Err(3) => {
            let clen = usize::try_from(get_len(input)?).ok()?;
            let len = usize::try_from(get_len(input)?).ok()?;
            lzf_decompress(take(input, clen)?, len)
        }
        Err(_) => None,
    }
}

/// LZF decompression (what Redis compresses long strings with), into exactly `len` bytes.
/// Every back-reference and literal run is checked against the input and the output, and the
/// output is never larger than `len`, which a compressed input of `clen` bytes bounds (LZF
/// expands at most ~ 264× per byte): a hostile payload cannot make it allocate more.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    if len > input.len().saturating_mul(264) {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(i..i + run)?);
            i += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += *input.get(i)? as usize;
                i += 1;
            }
            run += 2;
            let back = ((ctrl & 0x1f) << 8) + *input.get(i)? as usize + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            for k in 0..run {
                out.push(out[start + k]);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// An intset: `[encoding: u32 LE (2, 4 or 8)][count: u32 LE][count × integer LE]`.
fn intset(blob: &[u8]) -> Option<Set> {
    let input = &mut &blob[..];
    let width = u32::from_le_bytes(take(input, 4)?.try_into().ok()?) as usize;
    let count = u32::from_le_bytes(take(input, 4)?.try_into().ok()?) as usize;
    if !matches!(width, 2 | 4 | 8) || input.len() != count.checked_mul(width)? {
        return None;
    }
    let mut set = Set::new();
    for chunk in input.chunks_exact(width) {
        let n: i64 = match width {
            2 => i16::from_le_bytes(chunk.try_into().ok()?).into(),
            4 => i32::from_le_bytes(chunk.try_into().ok()?).into(),
            _ => i64::from_le_bytes(chunk.try_into().ok()?),
        };
        set.insert(n.to_string().into_bytes());
    }
    Some(set)
}

/// A listpack's elements (integers as their decimal text):
/// `[total bytes: u32 LE][count: u16 LE][entries][0xFF]`, each entry its encoding and data,
/// then its own length backwards (skipped: read forwards).
fn listpack(blob: &[u8]) -> Option<Vec<Vec<u8>>> {
    let input = &mut &blob[..];
    let total = u32::from_le_bytes(take(input, 4)?.try_into().ok()?) as usize;
    take(input, 2)?;
    if total != blob.len() {
        return None;
    }
    let mut items = Vec::new();
    loop {
        let start = input.len();
        let b = *input.first()?;
        if b == 0xff {
            take(input, 1)?;
            break;
        }
        let item = if b & 0x80 == 0 {
            take(input, 1)?;
            u64::from(b & 0x7f).to_string().into_bytes()
        } else if b & 0xc0 == 0x80 {
            take(input, 1)?;
            take(input, (b & 0x3f) as usize)?.to_vec()
        } else if b & 0xe0 == 0xc0 {
            let h = take(input, 2)?;
            let v = ((u16::from(h[0] & 0x1f) << 8) | u16::from(h[1])) as i16;
            // 13-bit two's complement.
            ((v << 3) >> 3).to_string().into_bytes()
        } else if b & 0xf0 == 0xe0 {
            let h = take(input, 2)?;
            let n = (usize::from(h[0] & 0x0f) << 8) | usize::from(h[1]);
            take(input, n)?.to_vec()
        } else {
            take(input, 1)?;
            match b {
                0xf0 => {
                    let n = u32::from_le_bytes(take(input, 4)?.try_into().ok()?) as usize;
                    take(input, n)?.to_vec()
                }
                0xf1 => i16::from_le_bytes(take(input, 2)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
                0xf2 => {
                    let d = take(input, 3)?;
                    ((i32::from_le_bytes([0, d[0], d[1], d[2]])) >> 8)
                        .to_string()
                        .into_bytes()
                }
                0xf3 => i32::from_le_bytes(take(input, 4)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
                0xf4 => i64::from_le_bytes(take(input, 8)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
                _ => return None,
            }
        };
        // The entry's length backwards: 1 byte per 7 bits of (encoding + data).
        let entry = start - input.len();
        let backlen = match entry {
            0..=127 => 1,
            128..=16383 => 2,
            16384..=2097151 => 3,
            2097152..=268435455 => 4,
            _ => 5,
        };
        take(input, backlen)?;
        items.push(item);
    }
    input.is_empty().then_some(items)
}

#[cfg(test)]
#[path = "dump_tests.rs"]
mod tests;
