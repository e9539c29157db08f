//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP, SRANDMEMBER,
//! SMOVE, SINTER, SUNION, SDIFF, their STORE forms, SINTERCARD, SSCAN. A set left with no
//! member is deleted, as in Redis; a write that changes nothing (SADD of members already
//! there, SREM of absent ones) leaves the key, its version included, untouched.
//!
//! Random picks (SPOP, SRANDMEMBER) index the members in byte order with [`Run::draw`], so
//! every replica applying the same SPOP removes the same members.

use std::sync::Arc;

use flotilla_resp::Value;

use super::keyspace::{parse_scan_options, scan_page};
use super::{int, is, not_integer, syntax_error, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, Set};

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("sadd", sadd),
    ("srem", srem),
    ("smembers", smembers),
    ("sismember", sismember),
    ("smismember", smismember),
    ("scard", scard),
    ("spop", spop),
    ("srandmember", srandmember),
    ("smove", smove),
    ("sinter", |r, a| combine(r, a, Op::Inter, None)),
    ("sunion", |r, a| combine(r, a, Op::Union, None)),
    ("sdiff", |r, a| combine(r, a, Op::Diff, None)),
    ("sinterstore", |r, a| combine(r, a, Op::Inter, Some(&a[1]))),
    ("sunionstore", |r, a| combine(r, a, Op::Union, Some(&a[1]))),
    ("sdiffstore", |r, a| combine(r, a, Op::Diff, Some(&a[1]))),
    ("sintercard", sintercard),
    ("sscan", sscan),
];

impl Run<'_> {
    /// The key's set if it exists now; WRONGTYPE if it holds another type.
    fn members(&self, key: &Arg) -> Result<Option<&Arc<Set>>, Value> {
        match self.kv.live(key.as_slice(), self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::Set(m)) => Ok(Some(m)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// The sets of `keys` (a missing key as `None`), or WRONGTYPE if any holds another
    /// type: Redis checks every key before it computes, whatever the others hold.
    fn all_members(&self, keys: &[Arg]) -> Result<Vec<Option<Arc<Set>>>, Value> {
        keys.iter()
            .map(|k| self.members(k).map(|m| m.cloned()))
            .collect()
    }

    /// Changes the key's set (created empty if absent) with `f`, keeping its TTL; deletes the
    /// key if no member is left. WRONGTYPE if it holds another type.
    fn with_members<T>(&mut self, key: &Arg, f: impl FnOnce(&mut Set) -> T) -> Result<T, Value> {
        let (mut set, expire_at) = match self.kv.live(key.as_slice(), self.now) {
            None => (Arc::new(Set::new()), 0),
            Some(s) => match &s.value {
                Data::Set(m) => (Arc::clone(m), s.expire_at),
                _ => return Err(wrong_type()),
            },
        };
        // Dropped from the store first, so that `make_mut` copies the set only when a
        // snapshot view still holds it.
        self.kv.remove(key.as_slice());
        let out = f(Arc::make_mut(&mut set));
        if !set.is_empty() {
            self.store_data(key, Data::Set(set), expire_at);
        }
        Ok(out)
    }

    /// Replaces `dst` (of any type, its TTL dropped) with `set`, or deletes it if `set` is
    /// empty, as the STORE commands do.
    fn store_set(&mut self, dst: &Arg, set: Set) {
        if set.is_empty() {
            self.delete(dst.as_slice());
        } else {
            self.store_data(dst, Data::Set(Arc::new(set)), 0);
        }
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

/// Members as RESP3 sets them (`~`; an array in RESP2), as SMEMBERS, SINTER … reply.
fn set_reply<'a>(members: impl Iterator<Item = &'a Vec<u8>>) -> Value {
    Value::Set(members.map(|m| bulk(m)).collect())
}

/// The member at `i` (`i < set.len()`) in byte order, walked to from the nearer end.
fn nth(set: &Set, i: usize) -> Option<&Vec<u8>> {
    if i < set.len() / 2 {
        set.iter().nth(i)
    } else {
        set.iter().nth_back(set.len().checked_sub(i + 1)?)
    }
}

fn sadd(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => return e,
        // Nothing new: no write, as Redis does not touch the key either.
        Ok(Some(m)) if a[2..].iter().all(|x| m.contains(x.as_slice())) => return Value::Integer(0),
        Ok(_) => {}
    }
    let added = r.with_members(&a[1], |m| {
        a[2..]
            .iter()
            .filter(|x| m.insert(x.as_slice().to_vec()))
            .count()
    });
    added.map_or_else(|e| e, |n| Value::Integer(n as i64))
}

fn srem(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => return e,
        Ok(Some(m)) if a[2..].iter().any(|x| m.contains(x.as_slice())) => {}
        Ok(_) => return Value::Integer(0),
    }
    let removed = r.with_members(&a[1], |m| {
        a[2..].iter().filter(|x| m.remove(x.as_slice())).count()
    });
    removed.map_or_else(|e| e, |n| Value::Integer(n as i64))
}

fn smembers(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => e,
        Ok(m) => set_reply(m.into_iter().flat_map(|m| m.iter())),
    }
}

fn sismember(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => e,
        Ok(m) => Value::Integer(i64::from(m.is_some_and(|m| m.contains(a[2].as_slice())))),
    }
}

fn smismember(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => e,
        Ok(m) => Value::Array(
            a[2..]
                .iter()
                .map(|x| Value::Integer(i64::from(m.is_some_and(|m| m.contains(x.as_slice())))))
                .collect(),
        ),
    }
}

fn scard(r: &mut Run, a: &[Arg]) -> Value {
    match r.members(&a[1]) {
        Err(e) => e,
        Ok(m) => Value::Integer(m.map_or(0, |m| m.len() as i64)),
    }
}

/// `SPOP key [count]`.
fn spop(r: &mut Run, a: &[Arg]) -> Value {
    let count = match a.len() {
        2 => None,
        3 => match int(&a[2]) {
            Ok(n) if n >= 0 => Some(n as u64),
            _ => return Value::error("ERR value is out of range, must be positive"),
        },
        _ => return syntax_error(),
    };
    let set = match r.members(&a[1]) {
        Err(e) => return e,
        Ok(None) => return count.map_or(Value::Null, |_| Value::Set(Vec::new())),
        Ok(Some(m)) => Arc::clone(m),
    };
    let Some(count) = count else {
        let i = r.draw(a[1].as_slice()).next(set.len());
        let Some(member) = nth(&set, i).cloned() else {
            return Value::Null;
        };
        let popped = r.with_members(&a[1], |m| m.remove(&member));
        return popped.map_or_else(|e| e, |_| Value::Bulk(member));
    };
    if count == 0 {
        return Value::Set(Vec::new());
    }
    if count >= set.len() as u64 {
        // Everything: the key goes.
        drop(set);
        let Some(Data::Set(all)) = r.kv.remove(a[1].as_slice()).map(|s| s.value) else {
            return Value::Set(Vec::new());
        };
        return set_reply(all.iter());
    }
    let mut draw = r.draw(a[1].as_slice());
    let members: Vec<&Vec<u8>> = set.iter().collect();
    let picked: Vec<Vec<u8>> = draw
        .distinct(members.len(), count as usize)
        .into_iter()
        .map(|i| members[i].clone())
        .collect();
    drop(members);
    drop(set);
    let popped = r.with_members(&a[1], |m| {
        for p in &picked {
            m.remove(p);
        }
    });
    popped.map_or_else(|e| e, |()| set_reply(picked.iter()))
}

/// The most members one SRANDMEMBER with a negative count returns (as HRANDFIELD's bound):
/// the reply is built whole, so a larger count is refused rather than allocated.
const MAX_RANDOM_MEMBERS: u64 = 10_000_000;

/// `SRANDMEMBER key [count]`.
fn srandmember(r: &mut Run, a: &[Arg]) -> Value {
    let count = match a.len() {
        2 => None,
        3 => match int(&a[2]) {
            Ok(i64::MIN) => {
                return Value::error(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                )
            }
            Ok(n) if n < 0 && n.unsigned_abs() > MAX_RANDOM_MEMBERS => {
                return Value::error("ERR value is out of range")
            }
            Ok(n) => Some(n),
            Err(_) => return not_integer(),
        },
        _ => return syntax_error(),
    };
    let set = match r.members(&a[1]) {
        Err(e) => return e,
        Ok(None) => return count.map_or(Value::Null, |_| Value::Array(Vec::new())),
        Ok(Some(m)) => Arc::clone(m),
    };
    let mut draw = r.draw(a[1].as_slice());
    let Some(n) = count else {
        return nth(&set, draw.next(set.len())).map_or(Value::Null, |m| bulk(m));
    };
    if n == 0 {
        return Value::Array(Vec::new());
    }
    let members: Vec<&Vec<u8>> = set.iter().collect();
    let picked = draw.picks(members.len(), n);
    Value::Array(picked.into_iter().map(|i| bulk(members[i])).collect())
}

/// `SMOVE source destination member`.
fn smove(r: &mut Run, a: &[Arg]) -> Value {
    let (src, dst, member) = (&a[1], &a[2], a[3].as_slice());
    // A missing source moves nothing, whatever the destination holds (Redis checks types only
    // after).
    let has = match r.members(src) {
        Err(e) => return e,
        Ok(None) => return Value::Integer(0),
        Ok(Some(m)) => m.contains(member),
    };
    let dst_has = match r.members(dst) {
        Err(e) => return e,
        Ok(m) => m.is_some_and(|m| m.contains(member)),
    };
    if !has {
        return Value::Integer(0);
    }
    if src.as_slice() == dst.as_slice() {
        return Value::Integer(1);
    }
    if let Err(e) = r.with_members(src, |m| m.remove(member)) {
        return e;
    }
    // A destination that has the member already is not written (nor its version raised:
    // Redis signals it only when the member is added).
    if !dst_has {
        if let Err(e) = r.with_members(dst, |m| m.insert(member.to_vec())) {
            return e;
        }
    }
    Value::Integer(1)
}

#[derive(Clone, Copy)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The members of `sets` combined by `op`. A missing set (`None`) is empty.
fn compute(sets: &[Option<Arc<Set>>], op: Op) -> Set {
    match op {
        Op::Inter => {
            let mut present: Vec<&Set> = Vec::with_capacity(sets.len());
            for s in sets {
                match s {
                    Some(s) => present.push(s),
                    None => return Set::new(),
                }
            }
            // Walk the smallest, look the others up.
            present.sort_by_key(|s| s.len());
            let Some((first, rest)) = present.split_first() else {
                return Set::new();
            };
            first
                .iter()
                .filter(|m| rest.iter().all(|s| s.contains(*m)))
                .cloned()
                .collect()
        }
        Op::Union => {
            let mut out = Set::new();
            for s in sets.iter().flatten() {
                out.extend(s.iter().cloned());
            }
            out
        }
        Op::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Set::new();
            };
            first
                .iter()
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(*m)))
                .cloned()
                .collect()
        }
    }
}

/// SINTER, SUNION, SDIFF (the members) and their STORE forms (`dst`: the cardinality).
fn combine(r: &mut Run, a: &[Arg], op: Op, dst: Option<&Arg>) -> Value {
    let keys = if dst.is_some() { &a[2..] } else { &a[1..] };
    let sets = match r.all_members(keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let result = compute(&sets, op);
    drop(sets);
    match dst {
        None => set_reply(result.iter()),
        Some(dst) => {
            let n = result.len() as i64;
            r.store_set(dst, result);
            Value::Integer(n)
        }
    }
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]`: the intersection's size, counted no
/// further than a non-zero LIMIT.
fn sintercard(r: &mut Run, a: &[Arg]) -> Value {
    let numkeys = match int(&a[1]) {
        Ok(n) if n >= 1 => n as u64,
        _ => return Value::error("ERR numkeys should be greater than 0"),
    };
    if numkeys > (a.len() - 2) as u64 {
        return Value::error("ERR Number of keys can't be greater than number of args");
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0u64;
    let mut i = end;
    while i < a.len() {
        if is(&a[i], "limit") && i + 1 < a.len() {
            match int(&a[i + 1]) {
                Ok(n) if n >= 0 => limit = n as u64,
                _ => return Value::error("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return syntax_error();
        }
    }
    let sets = match r.all_members(&a[2..end]) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut present: Vec<&Set> = Vec::with_capacity(sets.len());
    for s in &sets {
        match s {
            Some(s) => present.push(s),
            None => return Value::Integer(0),
        }
    }
    present.sort_by_key(|s| s.len());
    let Some((first, rest)) = present.split_first() else {
        return Value::Integer(0);
    };
    let mut n = 0u64;
    for m in first.iter() {
        if rest.iter().all(|s| s.contains(m)) {
            n += 1;
            if n == limit {
                break;
            }
        }
    }
    Value::Integer(n as i64)
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: members in the order of their hash, as
/// SCAN visits keys (`keyspace.rs`), so the same promise holds.
fn sscan(r: &mut Run, a: &[Arg]) -> Value {
    let options = match parse_scan_options(&a[2..], false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let set = match r.members(&a[1]) {
        Err(e) => return e,
        Ok(m) => m.cloned().unwrap_or_default(),
    };
    let (next, members) = scan_page(set.iter().map(Vec::as_slice), set.len(), &options);
    Value::Array(vec![
        Value::Bulk(next.to_string().into_bytes()),
        Value::Array(members.into_iter().map(bulk).collect()),
    ])
}

#[cfg(test)]
#[path = "sets_tests.rs"]
mod tests;
