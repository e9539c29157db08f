//! String commands: GET, SET (NX/XX/GET/EX/PX/EXAT/PXAT/KEEPTTL), SETNX, SETEX, PSETEX,
//! GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, APPEND, STRLEN, SETRANGE, GETRANGE, SUBSTR,
//! INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, LCS.

use flotilla_resp::{Expiry, SetCondition, SetOptions, Value};

use super::{int, is, not_integer, reply, syntax_error, wrong_arity, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::Data;
use crate::store::Value as Bytes;

/// Redis's `proto-max-bulk-len` default: the longest string SETRANGE may build.
const MAX_STRING: u64 = 512 * 1024 * 1024;

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("get", get),
    ("set", set),
    ("setnx", setnx),
    ("setex", |r, a| set_with_ttl(r, a, 1000, "setex")),
    ("psetex", |r, a| set_with_ttl(r, a, 1, "psetex")),
    ("getset", getset),
    ("getdel", getdel),
    ("getex", getex),
    ("mget", mget),
    ("mset", mset),
    ("msetnx", msetnx),
    ("append", append),
    ("strlen", strlen),
    ("setrange", setrange),
    ("getrange", getrange),
    ("substr", getrange),
    ("incr", |r, a| incr_by(r, &a[1], 1)),
    ("decr", |r, a| incr_by(r, &a[1], -1)),
    ("incrby", |r, a| {
        reply(int(&a[2]).map(|by| incr_by(r, &a[1], by)))
    }),
    ("decrby", decrby),
    ("incrbyfloat", incrbyfloat),
    ("lcs", lcs),
];

impl Run<'_> {
    /// The key's string if it exists now; WRONGTYPE if it holds another type.
    pub(crate) fn string(&self, key: &Arg) -> Result<Option<&Bytes>, Value> {
        match self.kv.live(key.as_slice(), self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::Str(v)) => Ok(Some(v)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Whether the key exists now (of any type).
    pub(crate) fn exists(&self, key: &Arg) -> bool {
        self.kv.live(key.as_slice(), self.now).is_some()
    }

    /// The key's expiry if it exists now (0: none).
    pub(crate) fn expiry(&self, key: &Arg) -> Option<u64> {
        self.kv.live(key.as_slice(), self.now).map(|s| s.expire_at)
    }

    /// Sets a value and expiry (0: none); an expiry already past deletes the key instead, as
    /// Redis does (the key would be invisible anyway).
    pub(crate) fn store(&mut self, key: &Arg, value: Bytes, expire_at: u64) {
        self.store_data(key, Data::Str(value), expire_at)
    }

    /// [`Run::store`] for a value of any type.
    pub(crate) fn store_data(&mut self, key: &Arg, value: Data, expire_at: u64) {
        if expire_at != 0 && expire_at <= self.now {
            self.kv.remove(key.as_slice());
        } else {
            self.kv
                .put_data(key.as_slice().to_vec(), value, expire_at, self.index);
        }
    }

    /// Removes the key if it exists now; whether it did.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        self.kv.remove_if_expired(key, self.now);
        self.kv.remove(key).is_some()
    }
}

fn bulk_or_null(v: Option<&Bytes>) -> Value {
    v.map_or(Value::Null, |v| Value::Bulk(v.to_vec()))
}

fn get(r: &mut Run, a: &[Arg]) -> Value {
    match r.string(&a[1]) {
        Ok(v) => bulk_or_null(v),
        Err(e) => e,
    }
}

/// An expiry option's absolute time: `n` units from now, or an absolute time; `None` if it
/// overflows (Redis's "invalid expire time").
fn absolute(now: u64, expiry: Expiry, current: u64) -> Option<u64> {
    match expiry {
        Expiry::Seconds(s) => s.checked_mul(1000)?.checked_add(now),
        Expiry::Millis(ms) => ms.checked_add(now),
        Expiry::UnixSeconds(s) => s.checked_mul(1000),
        Expiry::UnixMillis(ms) => Some(ms),
        Expiry::KeepTtl => Some(current),
    }
    .filter(|&t| t <= i64::MAX as u64)
}

fn set(r: &mut Run, a: &[Arg]) -> Value {
    let options = match SetOptions::parse(&a[3..]) {
        Ok(o) => o,
        Err(e) => return e.to_value(),
    };
    let key = &a[1];
    // SET replaces a value of any type; with GET the old value must be a string.
    let old = match options.get {
        true => match r.string(key) {
            Ok(v) => v.cloned(),
            Err(e) => return e,
        },
        false => None,
    };
    let exists = r.exists(key);
    let current = r.expiry(key).unwrap_or(0);
    let expire_at = match options.expiry {
        None => 0,
        Some(e) => match absolute(r.now, e, current) {
            Some(t) => t,
            None => return Value::error("ERR invalid expire time in 'set' command"),
        },
    };
    let go = match options.condition {
        None => true,
        Some(SetCondition::IfAbsent) => !exists,
        Some(SetCondition::IfPresent) => exists,
    };
    if go {
        r.store(key, a[2].0.clone(), expire_at);
    }
    match (options.get, go) {
        (true, _) => bulk_or_null(old.as_ref()),
        (false, true) => Value::ok(),
        (false, false) => Value::Null,
    }
}

fn setnx(r: &mut Run, a: &[Arg]) -> Value {
    if r.exists(&a[1]) {
        return Value::Integer(0);
    }
    r.store(&a[1], a[2].0.clone(), 0);
    Value::Integer(1)
}

/// SETEX (seconds, `unit` 1000) and PSETEX (milliseconds).
fn set_with_ttl(r: &mut Run, a: &[Arg], unit: i64, name: &str) -> Value {
    let n = match int(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let at = (n > 0)
        .then(|| n.checked_mul(unit))
        .flatten()
        .and_then(|ms| (ms as u64).checked_add(r.now))
        .filter(|&t| t <= i64::MAX as u64);
    match at {
        Some(at) => {
            r.store(&a[1], a[3].0.clone(), at);
            Value::ok()
        }
        None => Value::error(format!("ERR invalid expire time in '{name}' command")),
    }
}

fn getset(r: &mut Run, a: &[Arg]) -> Value {
    let old = match r.string(&a[1]) {
        Ok(v) => v.cloned(),
        Err(e) => return e,
    };
    r.store(&a[1], a[2].0.clone(), 0);
    bulk_or_null(old.as_ref())
}

fn getdel(r: &mut Run, a: &[Arg]) -> Value {
    let old = match r.string(&a[1]) {
        Ok(v) => v.cloned(),
        Err(e) => return e,
    };
    if old.is_some() {
        r.delete(a[1].as_slice());
    }
    bulk_or_null(old.as_ref())
}

/// `GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]`.
fn getex(r: &mut Run, a: &[Arg]) -> Value {
    enum Change {
        Keep,
        Persist,
        At(Expiry),
    }
    let mut change = Change::Keep;
    let mut i = 2;
    while i < a.len() {
        let has_value = i + 1 < a.len();
        let unit = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|u| is(&a[i], u));
        if is(&a[i], "persist") && matches!(change, Change::Keep) {
            change = Change::Persist;
        } else if let Some(unit) = unit.filter(|_| has_value && !matches!(change, Change::Persist))
        {
            let n = match int(&a[i + 1]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            if n <= 0 {
                return Value::error("ERR invalid expire time in 'getex' command");
            }
            let n = n as u64;
            change = Change::At(match unit {
                "ex" => Expiry::Seconds(n),
                "px" => Expiry::Millis(n),
                "exat" => Expiry::UnixSeconds(n),
                _ => Expiry::UnixMillis(n),
            });
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let value = match r.string(&a[1]) {
        Ok(Some(v)) => v.clone(),
        Ok(None) => return Value::Null,
        Err(e) => return e,
    };
    match change {
        Change::Keep => {}
        Change::Persist => {
            r.kv.set_expiry(a[1].as_slice(), 0, r.index);
        }
        Change::At(e) => match absolute(r.now, e, 0) {
            Some(at) if at <= r.now => {
                r.delete(a[1].as_slice());
            }
            Some(at) => {
                r.kv.set_expiry(a[1].as_slice(), at, r.index);
            }
            None => return Value::error("ERR invalid expire time in 'getex' command"),
        },
    }
    Value::Bulk(value.to_vec())
}

fn mget(r: &mut Run, a: &[Arg]) -> Value {
    // A key of another type reads as nil here, as in Redis.
    let values = a[1..]
        .iter()
        .map(|k| bulk_or_null(r.string(k).ok().flatten()));
    Value::Array(values.collect())
}

fn mset(r: &mut Run, a: &[Arg]) -> Value {
    if a.len().is_multiple_of(2) {
        return wrong_arity("mset");
    }
    for kv in a[1..].chunks_exact(2) {
        r.store(&kv[0], kv[1].0.clone(), 0);
    }
    Value::ok()
}

fn msetnx(r: &mut Run, a: &[Arg]) -> Value {
    if a.len().is_multiple_of(2) {
        return wrong_arity("msetnx");
    }
    if a[1..].chunks_exact(2).any(|kv| r.exists(&kv[0])) {
        return Value::Integer(0);
    }
    for kv in a[1..].chunks_exact(2) {
        r.store(&kv[0], kv[1].0.clone(), 0);
    }
    Value::Integer(1)
}

fn append(r: &mut Run, a: &[Arg]) -> Value {
    let key = a[1].as_slice();
    let old = match r.string(&a[1]) {
        Ok(v) => v.cloned().unwrap_or_default(),
        Err(e) => return e,
    };
    let expire_at = r.expiry(&a[1]).unwrap_or(0);
    // Removed first, so that `old` is the value's only holder and grows in place.
    r.kv.remove(key);
    let new = crate::store::append_to(old, a[2].as_slice());
    let len = new.len();
    r.kv.put(key.to_vec(), new, expire_at, r.index);
    Value::Integer(len as i64)
}

fn strlen(r: &mut Run, a: &[Arg]) -> Value {
    match r.string(&a[1]) {
        Ok(v) => Value::Integer(v.map_or(0, |v| v.len() as i64)),
        Err(e) => e,
    }
}

fn setrange(r: &mut Run, a: &[Arg]) -> Value {
    let offset = match int(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if offset < 0 {
        return Value::error("ERR offset is out of range");
    }
    let part = a[3].as_slice();
    let old = match r.string(&a[1]) {
        Ok(v) => v.cloned(),
        Err(e) => return e,
    };
    if part.is_empty() {
        // Nothing to write: the key is not created, its length is the answer.
        return Value::Integer(old.map_or(0, |v| v.len() as i64));
    }
    let offset = offset as u64;
    if offset + part.len() as u64 > MAX_STRING {
        return Value::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    let expire_at = r.expiry(&a[1]).unwrap_or(0);
    let mut v = old.map(|v| v.to_vec()).unwrap_or_default();
    let end = offset as usize + part.len();
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset as usize..end].copy_from_slice(part);
    let len = v.len();
    r.store(&a[1], Bytes::from(v), expire_at);
    Value::Integer(len as i64)
}

/// GETRANGE (and SUBSTR): Redis's index rules, negative from the end, clamped.
fn getrange(r: &mut Run, a: &[Arg]) -> Value {
    let (start, end) = match (int(&a[2]), int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        _ => return not_integer(),
    };
    let v = match r.string(&a[1]) {
        Ok(v) => v.cloned().unwrap_or_default(),
        Err(e) => return e,
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Value::Bulk(Vec::new());
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0);
    let end = end.min(len - 1);
    if start > end || len == 0 {
        return Value::Bulk(Vec::new());
    }
    Value::Bulk(v[start as usize..=end as usize].to_vec())
}

/// INCR, DECR, INCRBY: adds `by` to the key's integer (absent: 0); the key keeps its TTL.
fn incr_by(r: &mut Run, key: &Arg, by: i64) -> Value {
    let old = match r.string(key) {
        Ok(None) => 0,
        Ok(Some(v)) => match flotilla_resp::parse_i64(v) {
            Some(n) => n,
            None => return not_integer(),
        },
        Err(e) => return e,
    };
    let Some(new) = old.checked_add(by) else {
        return Value::error("ERR increment or decrement would overflow");
    };
    let expire_at = r.expiry(key).unwrap_or(0);
    r.store(key, Bytes::from(new.to_string().into_bytes()), expire_at);
    Value::Integer(new)
}

fn decrby(r: &mut Run, a: &[Arg]) -> Value {
    match int(&a[2]) {
        Ok(i64::MIN) => Value::error("ERR decrement would overflow"),
        Ok(by) => incr_by(r, &a[1], -by),
        Err(e) => e,
    }
}

/// A float as Redis's `string2ld` reads one: no spaces, nothing after the number, not NaN.
pub(super) fn parse_float(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    if s.is_empty() || s.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A float as Redis prints INCRBYFLOAT's result: plain decimal, no exponent, no trailing
/// zeros, and never "-0". (Redis computes in `long double`; this in `f64`, printed as the
/// shortest decimal that reads back the same, which is what Redis's output rounds to for
/// every sum of short decimals.)
pub(crate) fn format_float(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    format!("{v}")
}

fn incrbyfloat(r: &mut Run, a: &[Arg]) -> Value {
    let Some(by) = parse_float(a[2].as_slice()) else {
        return Value::error("ERR value is not a valid float");
    };
    let old = match r.string(&a[1]) {
        Ok(None) => 0.0,
        Ok(Some(v)) => match parse_float(v) {
            Some(n) => n,
            None => return Value::error("ERR value is not a valid float"),
        },
        Err(e) => return e,
    };
    let new = old + by;
    if !new.is_finite() {
        return Value::error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(new);
    let expire_at = r.expiry(&a[1]).unwrap_or(0);
    r.store(&a[1], Bytes::from(text.clone().into_bytes()), expire_at);
    Value::Bulk(text.into_bytes())
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: the longest common
/// subsequence of two strings, its length, or the ranges where it matches each string. By
/// Redis's algorithm step for step (its table of prefix lengths, walked back from the ends,
/// ties going along the second string), so that the subsequence picked among equally long
/// ones, and the ranges, are Redis's.
fn lcs(r: &mut Run, a: &[Arg]) -> Value {
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0u64);
    let mut opts = a[3..].iter();
    while let Some(opt) = opts.next() {
        if is(opt, "len") {
            len_only = true;
        } else if is(opt, "idx") {
            idx = true;
        } else if is(opt, "withmatchlen") {
            with_len = true;
        } else if is(opt, "minmatchlen") {
            let Some(n) = opts.next() else {
                return syntax_error();
            };
            match int(n) {
                Ok(n) => min_len = n.max(0) as u64,
                Err(e) => return e,
            }
        } else {
            return syntax_error();
        }
    }
    if len_only && idx {
        return Value::error("ERR If you want both the length and indexes, please just use IDX.");
    }
    let (x, y) = match (r.string(&a[1]), r.string(&a[2])) {
        (Ok(x), Ok(y)) => (
            x.cloned().unwrap_or_default(),
            y.cloned().unwrap_or_default(),
        ),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    // t[i][j]: the LCS length of x[..i] and y[..j]; (|x|+1) × (|y|+1) cells, Redis's bound.
    let (n, m) = (x.len(), y.len());
    let cells = (n as u64 + 1).saturating_mul(m as u64 + 1);
    if cells.saturating_mul(4) > MAX_STRING {
        return Value::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in 1..=n {
        for j in 1..=m {
            t[at(i, j)] = if x[i - 1] == y[j - 1] {
                t[at(i - 1, j - 1)] + 1
            } else {
                t[at(i - 1, j)].max(t[at(i, j - 1)])
            };
        }
    }
    let total = t[at(n, m)];
    if len_only {
        return Value::Integer(i64::from(total));
    }
    let mut out = vec![0u8; total as usize];
    let mut k = total as usize;
    let mut matches = Vec::new();
    // The range being grown backwards: x[xs..=xe] matches y[ys..=ye]; `xs == n`: none.
    let (mut xs, mut xe, mut ys, mut ye) = (n, 0, 0, 0);
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        let mut emit = false;
        if x[i - 1] == y[j - 1] {
            out[k - 1] = x[i - 1];
            if xs == n {
                (xs, xe, ys, ye) = (i - 1, i - 1, j - 1, j - 1);
            } else if xs == i && ys == j {
                xs -= 1;
                ys -= 1;
            } else {
                emit = true;
            }
            if xs == 0 || ys == 0 {
                emit = true;
            }
            k -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t[at(i - 1, j)] > t[at(i, j - 1)] {
                i -= 1;
            } else {
                j -= 1;
            }
            if xs != n {
                emit = true;
            }
        }
        if emit {
            let len = (xe - xs + 1) as u64;
            if min_len == 0 || len >= min_len {
                let pair = |s: usize, e: usize| {
                    Value::Array(vec![Value::Integer(s as i64), Value::Integer(e as i64)])
                };
                let mut item = vec![pair(xs, xe), pair(ys, ye)];
                if with_len {
                    item.push(Value::Integer(len as i64));
                }
                matches.push(Value::Array(item));
            }
            xs = n;
        }
    }
    if idx {
        return Value::Map(vec![
            (Value::bulk("matches"), Value::Array(matches)),
            (Value::bulk("len"), Value::Integer(i64::from(total))),
        ]);
    }
    Value::Bulk(out)
}
