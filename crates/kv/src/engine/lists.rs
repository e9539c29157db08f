//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LRANGE, LINDEX, LSET, LREM,
//! LTRIM, LINSERT, LPOS, LMOVE, RPOPLPUSH, LMPOP, and the blocking BLPOP, BRPOP, BLMOVE,
//! BRPOPLPUSH, BLMPOP.
//!
//! Invariant: a stored list is never empty; a command that empties one deletes the key, as
//! Redis does. (Handlers still treat an empty list as absent rather than rely on it, so a
//! malformed record cannot make one panic.)
//!
//! The blocking commands behave as Redis runs them inside MULTI: they pop if there is
//! something to pop, else answer at once what Redis answers on a timeout. Waiting is not a
//! replicated state machine's to do (an entry is applied once, at one point of the log); a
//! front end that blocks would retry the command when a key it names changes.

use std::sync::Arc;

use flotilla_resp::{parse_i64, Value};

use super::strings::parse_float;
use super::{int, is, reply, syntax_error, wrong_arity, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, List};

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("lpush", |r, a| push(r, a, End::Left, false)),
    ("rpush", |r, a| push(r, a, End::Right, false)),
    ("lpushx", |r, a| push(r, a, End::Left, true)),
    ("rpushx", |r, a| push(r, a, End::Right, true)),
    ("lpop", |r, a| pop(r, a, End::Left, "lpop")),
    ("rpop", |r, a| pop(r, a, End::Right, "rpop")),
    ("llen", llen),
    ("lrange", lrange),
    ("lindex", lindex),
    ("lset", lset),
    ("lrem", lrem),
    ("ltrim", ltrim),
    ("linsert", linsert),
    ("lpos", lpos),
    ("lmove", lmove),
    ("rpoplpush", |r, a| {
        move_element(r, &a[1], &a[2], End::Right, End::Left)
    }),
    ("lmpop", lmpop),
    ("blpop", |r, a| bpop(r, a, End::Left)),
    ("brpop", |r, a| bpop(r, a, End::Right)),
    ("blmove", blmove),
    ("brpoplpush", brpoplpush),
    ("blmpop", blmpop),
];

/// An end of a list: LEFT is the head, RIGHT the tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` or `RIGHT`, in any case; else Redis's syntax error.
    fn parse(arg: &Arg) -> Result<End, Value> {
        if is(arg, "left") {
            Ok(End::Left)
        } else if is(arg, "right") {
            Ok(End::Right)
        } else {
            Err(syntax_error())
        }
    }
}

fn push_end(l: &mut List, end: End, v: Vec<u8>) {
    match end {
        End::Left => l.push_front(v),
        End::Right => l.push_back(v),
    }
}

fn pop_end(l: &mut List, end: End) -> Option<Vec<u8>> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

/// Pops up to `n` elements from `end`, in the order they are popped (from the tail: last
/// first). Never more than the list holds, whatever `n` a request gave.
fn pop_many(l: &mut List, end: End, n: i64) -> Vec<Vec<u8>> {
    let n = usize::try_from(n).unwrap_or(0).min(l.len());
    match end {
        End::Left => l.drain(..n).collect(),
        End::Right => l.drain(l.len() - n..).rev().collect(),
    }
}

fn bulk_array(items: Vec<Vec<u8>>) -> Value {
    Value::Array(items.into_iter().map(Value::Bulk).collect())
}

/// A Redis index (negative: counted from the tail, -1 the last) as a position in a list of
/// `len` elements, if it falls inside it.
fn position(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { index + len } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// LRANGE's and LTRIM's reading of `start stop` (inclusive, negative from the tail, clamped
/// to the list): the positions of the first and last element, or `None` for none.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    let start = if start < 0 { start + len } else { start }.max(0);
    let stop = if stop < 0 { stop + len } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

impl Run<'_> {
    /// The key's list if it exists now; WRONGTYPE if it holds another type.
    fn list(&self, key: &Arg) -> Result<Option<&Arc<List>>, Value> {
        match self.kv.live(key.as_slice(), self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::List(l)) => Ok(Some(l)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// The key's list if it exists now and holds an element.
    fn nonempty_list(&self, key: &Arg) -> Result<Option<&Arc<List>>, Value> {
        Ok(self.list(key)?.filter(|l| !l.is_empty()))
    }

    /// Changes the key's list (created empty if absent) with `f`, keeping its TTL; deletes
    /// the key if no element is left. WRONGTYPE if it holds another type.
    fn with_list<T>(&mut self, key: &Arg, f: impl FnOnce(&mut List) -> T) -> Result<T, Value> {
        let (mut list, expire_at) = match self.kv.live(key.as_slice(), self.now) {
            None => (Arc::new(List::new()), 0),
            Some(s) => match &s.value {
                Data::List(l) => (Arc::clone(l), s.expire_at),
                _ => return Err(wrong_type()),
            },
        };
        // Dropped from the store first, so that `make_mut` copies the list only when a
        // snapshot view still holds it.
        self.kv.remove(key.as_slice());
        let out = f(Arc::make_mut(&mut list));
        if !list.is_empty() {
            self.store_data(key, Data::List(list), expire_at);
        }
        Ok(out)
    }
}

/// LPUSH, RPUSH (the list created if absent), LPUSHX, RPUSHX (`only_existing`: 0 if absent):
/// the length after.
fn push(r: &mut Run, a: &[Arg], end: End, only_existing: bool) -> Value {
    if only_existing {
        match r.list(&a[1]) {
            Err(e) => return e,
            Ok(None) => return Value::Integer(0),
            Ok(Some(_)) => {}
        }
    }
    let len = r.with_list(&a[1], |l| {
        for v in &a[2..] {
            push_end(l, end, v.as_slice().to_vec());
        }
        l.len()
    });
    reply(len.map(|n| Value::Integer(n as i64)))
}

/// `LPOP key [count]`, `RPOP key [count]`: without a count, an element (nil if none); with
/// one, an array (a null array if the key is absent, as Redis 7.0 answers).
fn pop(r: &mut Run, a: &[Arg], end: End, name: &str) -> Value {
    if a.len() > 3 {
        return wrong_arity(name);
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => match parse_i64(c.as_slice()) {
            Some(n) if n >= 0 => Some(n),
            _ => return Value::error("ERR value is out of range, must be positive"),
        },
    };
    match r.nonempty_list(&a[1]) {
        Err(e) => return e,
        Ok(None) if count.is_some() => return Value::NullArray,
        Ok(None) => return Value::Null,
        Ok(Some(_)) => {}
    }
    match count {
        // Redis's fast exit: nothing popped, the key not touched.
        Some(0) => Value::Array(Vec::new()),
        None => reply(
            r.with_list(&a[1], |l| pop_end(l, end))
                .map(|v| v.map_or(Value::Null, Value::Bulk)),
        ),
        Some(n) => reply(r.with_list(&a[1], |l| bulk_array(pop_many(l, end, n)))),
    }
}

fn llen(r: &mut Run, a: &[Arg]) -> Value {
    match r.list(&a[1]) {
        Err(e) => e,
        Ok(l) => Value::Integer(l.map_or(0, |l| l.len() as i64)),
    }
}

/// `LRANGE key start stop`: the indices are read before the key, as Redis does.
fn lrange(r: &mut Run, a: &[Arg]) -> Value {
    let (start, stop) = match (int(&a[2]), int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let l = match r.list(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::Array(Vec::new()),
        Ok(Some(l)) => l,
    };
    match range(start, stop, l.len()) {
        None => Value::Array(Vec::new()),
        Some((s, e)) => Value::Array(l.range(s..=e).map(|v| Value::Bulk(v.clone())).collect()),
    }
}

/// `LINDEX key index`: the key is looked up before the index is read (an absent key is nil
/// whatever the index), as Redis does.
fn lindex(r: &mut Run, a: &[Arg]) -> Value {
    let l = match r.list(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::Null,
        Ok(Some(l)) => l,
    };
    match int(&a[2]) {
        Err(e) => e,
        Ok(i) => position(i, l.len()).map_or(Value::Null, |p| Value::Bulk(l[p].clone())),
    }
}

fn lset(r: &mut Run, a: &[Arg]) -> Value {
    let len = match r.nonempty_list(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::error("ERR no such key"),
        Ok(Some(l)) => l.len(),
    };
    let at = match int(&a[2]) {
        Err(e) => return e,
        Ok(i) => match position(i, len) {
            Some(p) => p,
            None => return Value::error("ERR index out of range"),
        },
    };
    let set = r.with_list(&a[1], |l| l[at] = a[3].as_slice().to_vec());
    reply(set.map(|()| Value::ok()))
}

/// `LREM key count element`: the first `count` matches from the head (from the tail if
/// negative; all if 0). A list with no match is not written (its version stays).
fn lrem(r: &mut Run, a: &[Arg]) -> Value {
    let count = match int(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let elem = a[3].as_slice();
    let matches = match r.list(&a[1]) {
        Err(e) => return e,
        Ok(l) => l.map_or(0, |l| l.iter().filter(|e| e.as_slice() == elem).count()),
    };
    let limit = match count {
        0 => matches,
        n => usize::try_from(n.unsigned_abs()).map_or(matches, |n| n.min(matches)),
    };
    if limit == 0 {
        return Value::Integer(0);
    }
    // From the tail, the last `limit` matches go: the first `matches - limit` stay.
    let keep_first = if count < 0 { matches - limit } else { 0 };
    let removed = r.with_list(&a[1], |l| {
        let (mut seen, mut removed) = (0, 0);
        l.retain(|e| {
            if e.as_slice() != elem {
                return true;
            }
            seen += 1;
            if seen <= keep_first || removed == limit {
                return true;
            }
            removed += 1;
            false
        });
        removed
    });
    reply(removed.map(|n| Value::Integer(n as i64)))
}

/// `LTRIM key start stop`: keeps the range LRANGE would give; an empty range deletes the key.
fn ltrim(r: &mut Run, a: &[Arg]) -> Value {
    let (start, stop) = match (int(&a[2]), int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match r.list(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::ok(),
        Ok(Some(_)) => {}
    }
    let trimmed = r.with_list(&a[1], |l| match range(start, stop, l.len()) {
        None => l.clear(),
        Some((s, e)) => {
            l.truncate(e + 1);
            l.drain(..s);
        }
    });
    reply(trimmed.map(|()| Value::ok()))
}

/// `LINSERT key BEFORE|AFTER pivot element`: the length after, 0 if the key is absent, -1 if
/// the pivot is not in the list.
fn linsert(r: &mut Run, a: &[Arg]) -> Value {
    let after = if is(&a[2], "after") {
        true
    } else if is(&a[2], "before") {
        false
    } else {
        return syntax_error();
    };
    let pivot = match r.list(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::Integer(0),
        Ok(Some(l)) => l.iter().position(|e| e.as_slice() == a[3].as_slice()),
    };
    let Some(pivot) = pivot else {
        return Value::Integer(-1);
    };
    let len = r.with_list(&a[1], |l| {
        l.insert(pivot + usize::from(after), a[4].as_slice().to_vec());
        l.len()
    });
    reply(len.map(|n| Value::Integer(n as i64)))
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`: the options are read
/// before the key, as Redis does.
fn lpos(r: &mut Run, a: &[Arg]) -> Value {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if is(&a[j], "rank") && more {
            rank = match int(&a[j + 1]) {
                Err(e) => return e,
                Ok(0) => {
                    return Value::error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from \
                         the second ... or use negative to start from the end of the list",
                    )
                }
                Ok(n) => n,
            };
        } else if is(&a[j], "count") && more {
            count = match parse_i64(a[j + 1].as_slice()) {
                Some(n) if n >= 0 => Some(n),
                _ => return Value::error("ERR COUNT can't be negative"),
            };
        } else if is(&a[j], "maxlen") && more {
            maxlen = match parse_i64(a[j + 1].as_slice()) {
                Some(n) if n >= 0 => n,
                _ => return Value::error("ERR MAXLEN can't be negative"),
            };
        } else {
            return syntax_error();
        }
        j += 2;
    }
    let l = match r.list(&a[1]) {
        Err(e) => return e,
        Ok(None) if count.is_some() => return Value::Array(Vec::new()),
        Ok(None) => return Value::Null,
        Ok(Some(l)) => l,
    };
    let elem = a[2].as_slice();
    let len = l.len();
    let from_tail = rank < 0;
    // Matches passed over before the first one reported. Redis 7.0 negates RANK in a C long:
    // -LONG_MIN stays negative, so that rank reports every match from the tail, unbounded
    // by COUNT (what 7.0.15 answers).
    let (skip, unbounded) = match rank {
        i64::MIN => (0, true),
        n => (n.unsigned_abs() - 1, false),
    };
    let scanned = match usize::try_from(maxlen) {
        Ok(0) | Err(_) => len,
        Ok(m) => m.min(len),
    };
    let order: Box<dyn Iterator<Item = usize>> = if from_tail {
        Box::new((len - scanned..len).rev())
    } else {
        Box::new(0..scanned)
    };
    // COUNT 0: every match; the number of positions is bounded by the list's length.
    let wanted = match count {
        None => 1,
        Some(0) => u64::MAX,
        Some(_) if unbounded => u64::MAX,
        Some(n) => n as u64,
    };
    let mut found = Vec::new();
    let mut matches = 0u64;
    for i in order {
        if l[i].as_slice() != elem {
            continue;
        }
        matches += 1;
        if matches > skip {
            found.push(Value::Integer(i as i64));
            if found.len() as u64 >= wanted {
                break;
            }
        }
    }
    match count {
        Some(_) => Value::Array(found),
        None => found.pop().unwrap_or(Value::Null),
    }
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`.
fn lmove(r: &mut Run, a: &[Arg]) -> Value {
    match (End::parse(&a[3]), End::parse(&a[4])) {
        (Ok(from), Ok(to)) => move_element(r, &a[1], &a[2], from, to),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// Pops from `src`'s `from` end and pushes onto `dst`'s `to` end: the element, nil if `src`
/// has none. Both keys' types are checked before either changes; `src` may be `dst` (a
/// rotation).
fn move_element(r: &mut Run, src: &Arg, dst: &Arg, from: End, to: End) -> Value {
    match r.nonempty_list(src) {
        Err(e) => return e,
        Ok(None) => return Value::Null,
        Ok(Some(_)) => {}
    }
    if let Err(e) = r.list(dst) {
        return e;
    }
    if src.as_slice() == dst.as_slice() {
        return reply(r.with_list(src, |l| match pop_end(l, from) {
            None => Value::Null,
            Some(v) => {
                push_end(l, to, v.clone());
                Value::Bulk(v)
            }
        }));
    }
    let v = match r.with_list(src, |l| pop_end(l, from)) {
        Err(e) => return e,
        Ok(None) => return Value::Null,
        Ok(Some(v)) => v,
    };
    reply(
        r.with_list(dst, |l| push_end(l, to, v.clone()))
            .map(|()| Value::Bulk(v)),
    )
}

/// LMPOP's and BLMPOP's arguments after the name (and timeout): `numkeys key... LEFT|RIGHT
/// [COUNT count]`, `numkeys` at `at`.
struct Mpop<'a> {
    keys: &'a [Arg],
    end: End,
    count: i64,
}

fn parse_mpop(a: &[Arg], at: usize) -> Result<Mpop<'_>, Value> {
    let numkeys = match parse_i64(a[at].as_slice()) {
        Some(n) if n >= 1 => n,
        _ => return Err(Value::error("ERR numkeys should be greater than 0")),
    };
    let first = at + 1;
    let where_at = (usize::try_from(numkeys).ok())
        .and_then(|n| first.checked_add(n))
        .filter(|&w| w < a.len())
        .ok_or_else(syntax_error)?;
    let end = End::parse(&a[where_at])?;
    let mut count = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && is(&a[j], "count") && j + 1 < a.len() {
            count = match parse_i64(a[j + 1].as_slice()) {
                Some(n) if n >= 1 => Some(n),
                _ => return Err(Value::error("ERR count should be greater than 0")),
            };
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(Mpop {
        keys: &a[first..where_at],
        end,
        count: count.unwrap_or(1),
    })
}

/// Pops from the first of `keys` that holds a list with elements: `[key, [elements]]` with
/// up to `count` of them, or `[key, element]` for one without `count` (BLPOP); a null array
/// if none has any. A key of another type before that one is WRONGTYPE (one after it is not
/// looked at, as in Redis).
fn pop_first(r: &mut Run, keys: &[Arg], end: End, count: Option<i64>) -> Value {
    for key in keys {
        match r.nonempty_list(key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let popped = r.with_list(key, |l| match count {
            None => pop_end(l, end).map_or(Value::Null, Value::Bulk),
            Some(n) => bulk_array(pop_many(l, end, n)),
        });
        return reply(popped.map(|v| Value::Array(vec![Value::Bulk(key.as_slice().to_vec()), v])));
    }
    Value::NullArray
}

fn lmpop(r: &mut Run, a: &[Arg]) -> Value {
    match parse_mpop(a, 1) {
        Err(e) => e,
        Ok(m) => pop_first(r, m.keys, m.end, Some(m.count)),
    }
}

/// A blocking command's timeout (seconds, a float), checked as Redis 7.0 checks it: not a
/// float, or negative once in milliseconds, is an error. Its value does not matter beyond
/// that: the command never waits.
fn check_timeout(arg: &Arg) -> Result<(), Value> {
    let Some(secs) = parse_float(arg.as_slice()) else {
        return Err(Value::error("ERR timeout is not a float or out of range"));
    };
    // Redis converts `secs * 1000` to a C long long; one out of its range (inf, 1e300)
    // becomes LLONG_MIN on the machines Redis runs on, hence "negative". A tiny negative
    // truncates to 0, which is no error.
    let ms = secs * 1000.0;
    let in_range = ms.is_finite() && ms.abs() < i64::MAX as f64; // 2^63 as a float
    if !in_range || (ms as i64) < 0 {
        return Err(Value::error("ERR timeout is negative"));
    }
    Ok(())
}

/// `BLPOP key... timeout`, `BRPOP key... timeout`: `[key, element]`, else (nothing to pop)
/// the null array Redis answers on a timeout.
fn bpop(r: &mut Run, a: &[Arg], end: End) -> Value {
    let Some((timeout, keys)) = a[1..].split_last() else {
        return wrong_arity(if end == End::Left { "blpop" } else { "brpop" });
    };
    match check_timeout(timeout) {
        Err(e) => e,
        Ok(()) => pop_first(r, keys, end, None),
    }
}

/// `BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT count]`: its other arguments are read
/// before the timeout, as Redis does.
fn blmpop(r: &mut Run, a: &[Arg]) -> Value {
    let m = match parse_mpop(a, 2) {
        Err(e) => return e,
        Ok(m) => m,
    };
    match check_timeout(&a[1]) {
        Err(e) => e,
        Ok(()) => pop_first(r, m.keys, m.end, Some(m.count)),
    }
}

/// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`: LMOVE, nil (Redis's timeout
/// answer) if the source is empty.
fn blmove(r: &mut Run, a: &[Arg]) -> Value {
    let (from, to) = match (End::parse(&a[3]), End::parse(&a[4])) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match check_timeout(&a[5]) {
        Err(e) => e,
        Ok(()) => move_element(r, &a[1], &a[2], from, to),
    }
}

fn brpoplpush(r: &mut Run, a: &[Arg]) -> Value {
    match check_timeout(&a[3]) {
        Err(e) => e,
        Ok(()) => move_element(r, &a[1], &a[2], End::Right, End::Left),
    }
}

#[cfg(test)]
#[path = "lists_tests.rs"]
mod tests;
