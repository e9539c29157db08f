//! Hash commands: HSET, HMSET, HSETNX, HGET, HMGET, HDEL, HGETALL, HKEYS, HVALS, HLEN,
//! HEXISTS, HSTRLEN, HINCRBY, HINCRBYFLOAT, HSCAN, HRANDFIELD. A hash left with no field is
//! deleted, as in Redis.

use std::sync::Arc;

use flotilla_resp::Value;

use super::keyspace::{parse_scan_options, scan_page};
use super::strings::{format_float, parse_float};
use super::{int, is, wrong_arity, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, Hash};

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("hset", |r, a| hset(r, a, "hset")),
    ("hmset", |r, a| hset(r, a, "hmset")),
    ("hsetnx", hsetnx),
    ("hget", hget),
    ("hmget", hmget),
    ("hdel", hdel),
    ("hgetall", |r, a| hlist(r, a, true, true)),
    ("hkeys", |r, a| hlist(r, a, true, false)),
    ("hvals", |r, a| hlist(r, a, false, true)),
    ("hlen", hlen),
    ("hexists", hexists),
    ("hstrlen", hstrlen),
    ("hincrby", hincrby),
    ("hincrbyfloat", hincrbyfloat),
    ("hscan", hscan),
    ("hrandfield", hrandfield),
];

impl Run<'_> {
    /// The key's hash if it exists now; WRONGTYPE if it holds another type.
    fn hash(&self, key: &Arg) -> Result<Option<&Arc<Hash>>, Value> {
        match self.kv.live(key.as_slice(), self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Changes the key's hash (created empty if absent) with `f`, keeping its TTL; deletes
    /// the key if no field is left. WRONGTYPE if it holds another type.
    fn with_hash<T>(&mut self, key: &Arg, f: impl FnOnce(&mut Hash) -> T) -> Result<T, Value> {
        let (mut hash, expire_at) = match self.kv.live(key.as_slice(), self.now) {
            None => (Arc::new(Hash::default()), 0),
            Some(s) => match &s.value {
                Data::Hash(h) => (Arc::clone(h), s.expire_at),
                _ => return Err(wrong_type()),
            },
        };
        // Dropped from the store first, so that `make_mut` copies the hash only when a
        // snapshot view still holds it.
        self.kv.remove(key.as_slice());
        let out = f(Arc::make_mut(&mut hash));
        if !hash.is_empty() {
            self.store_data(key, Data::Hash(hash), expire_at);
        }
        Ok(out)
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

/// HSET (the number of new fields) and HMSET (OK).
fn hset(r: &mut Run, a: &[Arg], name: &str) -> Value {
    if !a.len().is_multiple_of(2) {
        return wrong_arity(name);
    }
    let added = r.with_hash(&a[1], |h| {
        let mut added = 0;
        for fv in a[2..].chunks_exact(2) {
            if h.insert(fv[0].as_slice().to_vec(), fv[1].as_slice().to_vec())
                .is_none()
            {
                added += 1;
            }
        }
        added
    });
    match (added, name) {
        (Err(e), _) => e,
        (Ok(_), "hmset") => Value::ok(),
        (Ok(n), _) => Value::Integer(n),
    }
}

fn hsetnx(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(Some(h)) if h.contains_key(a[2].as_slice()) => return Value::Integer(0),
        Ok(_) => {}
    }
    let set = r.with_hash(&a[1], |h| {
        h.insert(a[2].as_slice().to_vec(), a[3].as_slice().to_vec());
    });
    set.map_or_else(|e| e, |()| Value::Integer(1))
}

fn hget(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(h) => h
            .and_then(|h| h.get(a[2].as_slice()))
            .map_or(Value::Null, |v| bulk(v)),
    }
}

fn hmget(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(h) => Value::Array(
            a[2..]
                .iter()
                .map(|f| {
                    h.and_then(|h| h.get(f.as_slice()))
                        .map_or(Value::Null, |v| bulk(v))
                })
                .collect(),
        ),
    }
}

fn hdel(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::Integer(0),
        Ok(Some(_)) => {}
    }
    let removed = r.with_hash(&a[1], |h| {
        a[2..]
            .iter()
            .filter(|f| h.shift_remove(f.as_slice()).is_some())
            .count()
    });
    removed.map_or_else(|e| e, |n| Value::Integer(n as i64))
}

/// HGETALL (fields and values), HKEYS, HVALS.
fn hlist(r: &mut Run, a: &[Arg], fields: bool, values: bool) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(None) if fields && values => Value::Map(Vec::new()),
        Ok(None) => Value::Array(Vec::new()),
        Ok(Some(h)) if fields && values => {
            Value::Map(h.iter().map(|(f, v)| (bulk(f), bulk(v))).collect())
        }
        Ok(Some(h)) => Value::Array(
            h.iter()
                .map(|(f, v)| bulk(if fields { f } else { v }))
                .collect(),
        ),
    }
}

fn hlen(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(h) => Value::Integer(h.map_or(0, |h| h.len() as i64)),
    }
}

fn hexists(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(h) => Value::Integer(i64::from(
            h.is_some_and(|h| h.contains_key(a[2].as_slice())),
        )),
    }
}

fn hstrlen(r: &mut Run, a: &[Arg]) -> Value {
    match r.hash(&a[1]) {
        Err(e) => e,
        Ok(h) => Value::Integer(
            h.and_then(|h| h.get(a[2].as_slice()))
                .map_or(0, |v| v.len() as i64),
        ),
    }
}

fn hincrby(r: &mut Run, a: &[Arg]) -> Value {
    let by = match int(&a[3]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let old = match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(h) => h.and_then(|h| h.get(a[2].as_slice())).cloned(),
    };
    let old = match old {
        None => 0,
        Some(v) => match flotilla_resp::parse_i64(&v) {
            Some(n) => n,
            None => return Value::error("ERR hash value is not an integer"),
        },
    };
    let Some(new) = old.checked_add(by) else {
        return Value::error("ERR increment or decrement would overflow");
    };
    let set = r.with_hash(&a[1], |h| {
        h.insert(a[2].as_slice().to_vec(), new.to_string().into_bytes());
    });
    set.map_or_else(|e| e, |()| Value::Integer(new))
}

fn hincrbyfloat(r: &mut Run, a: &[Arg]) -> Value {
    let Some(by) = parse_float(a[3].as_slice()) else {
        return Value::error("ERR value is not a valid float");
    };
    // Redis's HINCRBYFLOAT refuses an infinite increment before it reads the field.
    if by.is_infinite() {
        return Value::error("ERR value is NaN or Infinity");
    }
    let old = match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(h) => h.and_then(|h| h.get(a[2].as_slice())).cloned(),
    };
    let old = match old {
        None => 0.0,
        Some(v) => match parse_float(&v) {
            Some(n) => n,
            None => return Value::error("ERR hash value is not a float"),
        },
    };
    let new = old + by;
    if !new.is_finite() {
        return Value::error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(new);
    let set = r.with_hash(&a[1], |h| {
        h.insert(a[2].as_slice().to_vec(), text.clone().into_bytes());
    });
    set.map_or_else(|e| e, |()| Value::Bulk(text.into_bytes()))
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]`: fields in the order of their hash, as
/// SCAN visits keys (`keyspace.rs`), so the same promise holds.
fn hscan(r: &mut Run, a: &[Arg]) -> Value {
    let options = match parse_scan_options(&a[2..], false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let h = match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(h) => h.cloned().unwrap_or_default(),
    };
    let (next, fields) = scan_page(h.keys().map(Vec::as_slice), h.len(), &options);
    let mut items = Vec::with_capacity(fields.len() * 2);
    for f in fields {
        items.push(bulk(f));
        items.push(bulk(&h[f]));
    }
    Value::Array(vec![
        Value::Bulk(next.to_string().into_bytes()),
        Value::Array(items),
    ])
}

/// The most fields one HRANDFIELD with a negative count returns.
const MAX_RANDOM_FIELDS: i64 = 10_000_000;

/// `HRANDFIELD key [count [WITHVALUES]]`.
fn hrandfield(r: &mut Run, a: &[Arg]) -> Value {
    let (count, with_values) = match a.len() {
        2 => (None, false),
        3 => match int(&a[2]) {
            Ok(n) => (Some(n), false),
            Err(e) => return e,
        },
        4 if is(&a[3], "withvalues") => match int(&a[2]) {
            Ok(n) => (Some(n), true),
            Err(e) => return e,
        },
        _ => return super::syntax_error(),
    };
    if count.is_some_and(|n| !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n)) {
        return Value::error("ERR value is out of range");
    }
    // A negative count repeats fields: the reply is built whole, so a count that would take
    // more than Redis's largest bulk reply's worth of elements is refused, not allocated (a
    // bad request must not take the serving replica's memory).
    if count.is_some_and(|n| n < -MAX_RANDOM_FIELDS) {
        return Value::error("ERR value is out of range");
    }
    let h = match r.hash(&a[1]) {
        Err(e) => return e,
        Ok(None) => {
            return if count.is_some() {
                Value::Array(Vec::new())
            } else {
                Value::Null
            }
        }
        Ok(Some(h)) => Arc::clone(h),
    };
    let fields: Vec<(&Vec<u8>, &Vec<u8>)> = h.iter().collect();
    let mut draw = r.draw(a[1].as_slice());
    let Some(n) = count else {
        return bulk(fields[draw.next(fields.len())].0);
    };
    let picked = draw.picks(fields.len(), n);
    if with_values {
        let pairs = picked
            .into_iter()
            .map(|i| (bulk(fields[i].0), bulk(fields[i].1)));
        return Value::Pairs(pairs.collect());
    }
    Value::Array(picked.into_iter().map(|i| bulk(fields[i].0)).collect())
}
