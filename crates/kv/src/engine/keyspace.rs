//! Commands on the whole keyspace: KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHALL, FLUSHDB. In a
//! sharded cluster the router runs each once per shard (the command's `route` names the
//! shard) and combines the answers; here they see one store.
//!
//! # SCAN's cursor
//! Keys are visited in the order of a 48-bit hash of their bytes ([`scan_hash`]), and the
//! cursor is the hash to resume from. The order does not depend on the map's layout, on
//! writes, or on which group holds the shard, so a key present for the whole scan is
//! returned (at least once) whatever happens between calls, as Redis promises; a page ends
//! only between keys of different hashes, so keys sharing a hash are never split.

use flotilla_resp::Value;

use super::{int, is, syntax_error, Handler, Run};
use crate::command::Arg;

/// Bits of a store's SCAN cursor; a sharded router keeps the shard above them.
pub const SCAN_CURSOR_BITS: u32 = 48;

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("keys", keys),
    ("scan", scan),
    ("dbsize", dbsize),
    ("randomkey", randomkey),
    ("flushall", flush),
    ("flushdb", flush),
    ("memory|usage", memory_usage),
];

/// Where a key sits in SCAN's order: FNV-1a, cut to [`SCAN_CURSOR_BITS`].
pub fn scan_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> (64 - SCAN_CURSOR_BITS)
}

fn live_keys<'a>(r: &'a Run) -> impl Iterator<Item = &'a [u8]> + 'a {
    let now = r.now;
    r.kv.iter()
        .filter(move |(_, s)| !s.expired(now))
        .map(|(k, _)| k)
}

fn keys(r: &mut Run, a: &[Arg]) -> Value {
    let pattern = a[1].as_slice();
    let mut found: Vec<&[u8]> = live_keys(r)
        .filter(|k| pattern == b"*" || super::glob_match(pattern, k))
        .collect();
    found.sort_unstable();
    Value::Array(found.into_iter().map(|k| Value::Bulk(k.to_vec())).collect())
}

/// SCAN's (and HSCAN's) options after the command's key: the cursor, MATCH, COUNT, TYPE.
pub(super) struct ScanOptions<'a> {
    cursor: u64,
    pattern: Option<&'a [u8]>,
    count: usize,
    kind: Option<&'a Arg>,
}

/// A SCAN cursor as Redis reads it (C's `strtoul`): decimal digits after an optional sign, a
/// negative one wrapping around (`-1` is the largest cursor, which has nothing after it), the
/// empty string 0; `None` (Redis's "invalid cursor") for anything else or past 2⁶⁴ − 1.
pub fn parse_cursor(c: &[u8]) -> Option<u64> {
    let (negative, digits) = match c.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, c),
    };
    if digits.is_empty() {
        return c.is_empty().then_some(0);
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Parses `cursor [MATCH pattern] [COUNT count] [TYPE type]` (TYPE only if `with_type`).
pub(super) fn parse_scan_options(a: &[Arg], with_type: bool) -> Result<ScanOptions<'_>, Value> {
    let cursor = parse_cursor(a[0].as_slice()).ok_or_else(|| Value::error("ERR invalid cursor"))?;
    let mut o = ScanOptions {
        cursor,
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = 1;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(syntax_error());
        }
        if is(&a[i], "match") {
            o.pattern = Some(a[i + 1].as_slice());
        } else if is(&a[i], "count") {
            match int(&a[i + 1])? {
                n if n >= 1 => o.count = n as usize,
                _ => return Err(syntax_error()),
            }
        } else if with_type && is(&a[i], "type") {
            o.kind = Some(&a[i + 1]);
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok(o)
}

/// One page of `items` (of `total` in the whole collection) from the options' cursor: the
/// next cursor (0 at the end) and the items in it that MATCH.
pub(super) fn scan_page<'a>(
    items: impl Iterator<Item = &'a [u8]>,
    total: usize,
    o: &ScanOptions,
) -> (u64, Vec<&'a [u8]>) {
    let mut page: Vec<(u64, &[u8])> = items
        .map(|k| (scan_hash(k), k))
        .filter(|(h, _)| *h >= o.cursor)
        .collect();
    // A large collection is scanned in at most ~64 calls whatever COUNT says (a hint in
    // Redis too): each call costs a pass over it.
    let take = o.count.max(total / 64);
    let next = if page.len() > take {
        page.select_nth_unstable(take - 1);
        let last = page[take - 1].0;
        page.retain(|(h, _)| *h <= last);
        last + 1
    } else {
        0
    };
    page.sort_unstable();
    let found = page
        .into_iter()
        .filter(|(_, k)| o.pattern.is_none_or(|p| super::glob_match(p, k)))
        .map(|(_, k)| k)
        .collect();
    (next, found)
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
fn scan(r: &mut Run, a: &[Arg]) -> Value {
    let o = match parse_scan_options(&a[1..], true) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let now = r.now;
    let kind = o.kind;
    let keys = r
        .kv
        .iter()
        .filter(move |(_, s)| !s.expired(now) && kind.is_none_or(|t| is(t, s.value.type_name())));
    let (next, keys) = scan_page(keys.map(|(k, _)| k), r.kv.len(), &o);
    Value::Array(vec![
        Value::Bulk(next.to_string().into_bytes()),
        Value::Array(keys.into_iter().map(|k| Value::Bulk(k.to_vec())).collect()),
    ])
}

/// Keys that exist now: the map's size less the keys expired but not yet removed.
fn dbsize(r: &mut Run, _: &[Arg]) -> Value {
    Value::Integer((r.kv.len() - r.kv.expired_count(r.now)) as i64)
}

/// A key chosen by the clock and the state (no hidden randomness): the same state at the
/// same time gives the same key.
fn randomkey(r: &mut Run, _: &[Arg]) -> Value {
    let n = r.kv.len() - r.kv.expired_count(r.now);
    if n == 0 {
        return Value::Null;
    }
    let pick = (r.now.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17) as usize % n;
    live_keys(r)
        .nth(pick)
        .map_or(Value::Null, |k| Value::Bulk(k.to_vec()))
}

/// FLUSHALL, FLUSHDB `[ASYNC | SYNC]`.
fn flush(r: &mut Run, a: &[Arg]) -> Value {
    match a {
        [_] => {}
        [_, mode] if is(mode, "sync") || is(mode, "async") => {}
        _ => return syntax_error(),
    }
    r.kv.clear();
    Value::ok()
}

/// `MEMORY USAGE key [SAMPLES n]`: an estimate in bytes, the key and its record plus the
/// map's bookkeeping (Flotilla's allocator is not Redis's, so the figures differ from
/// Redis's; they are of the same order and grow with the value).
fn memory_usage(r: &mut Run, a: &[Arg]) -> Value {
    match a.len() {
        3 => {}
        5 if is(&a[3], "samples") => {
            if let Err(e) = int(&a[4]) {
                return e;
            }
        }
        _ => return syntax_error(),
    }
    match r.kv.live(a[2].as_slice(), r.now) {
        None => Value::Null,
        Some(slot) => {
            Value::Integer((a[2].as_slice().len() as u64 + slot.record_len() + 48) as i64)
        }
    }
}
