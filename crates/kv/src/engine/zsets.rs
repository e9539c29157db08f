//! Sorted set commands: ZADD (NX/XX/GT/LT/CH/INCR), ZINCRBY, ZSCORE, ZMSCORE, ZCARD, ZCOUNT,
//! ZLEXCOUNT, ZRANK, ZREVRANK, ZREM, the ZRANGE family (by rank, score or lex, REV, LIMIT,
//! WITHSCORES, ZRANGESTORE), ZREMRANGEBY*, the pops (ZPOPMIN/MAX, ZMPOP and their blocking
//! forms, which never block here: they answer as Redis does inside MULTI), ZRANDMEMBER, ZSCAN
//! and the set operations (ZUNION/ZINTER/ZDIFF[STORE], ZINTERCARD). A sorted set left with no
//! member is deleted, as in Redis. Scores are replied as doubles ([`Value::Double`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_resp::Value;

use super::keyspace::{parse_scan_options, scan_page};
use super::strings::parse_float;
use super::{int, is, syntax_error, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, Set, Slot};
use crate::zset::{Score, ZSet};

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("zadd", zadd),
    ("zincrby", zincrby),
    ("zscore", zscore),
    ("zmscore", zmscore),
    ("zcard", zcard),
    ("zcount", zcount),
    ("zlexcount", zlexcount),
    ("zrank", |r, a| zrank(r, a, false)),
    ("zrevrank", |r, a| zrank(r, a, true)),
    ("zrem", zrem),
    ("zrange", |r, a| zrange(r, a, None, None, None)),
    ("zrangestore", |r, a| {
        let dst = a[1].clone();
        zrange(r, &a[1..], Some(&dst), None, None)
    }),
    ("zrevrange", |r, a| {
        zrange(r, a, None, Some(Kind::Rank), Some(true))
    }),
    ("zrangebyscore", |r, a| {
        zrange(r, a, None, Some(Kind::Score), Some(false))
    }),
    ("zrevrangebyscore", |r, a| {
        zrange(r, a, None, Some(Kind::Score), Some(true))
    }),
    ("zrangebylex", |r, a| {
        zrange(r, a, None, Some(Kind::Lex), Some(false))
    }),
    ("zrevrangebylex", |r, a| {
        zrange(r, a, None, Some(Kind::Lex), Some(true))
    }),
    ("zremrangebyrank", |r, a| zremrange(r, a, Kind::Rank)),
    ("zremrangebyscore", |r, a| zremrange(r, a, Kind::Score)),
    ("zremrangebylex", |r, a| zremrange(r, a, Kind::Lex)),
    ("zpopmin", |r, a| zpop(r, a, false)),
    ("zpopmax", |r, a| zpop(r, a, true)),
    ("zmpop", |r, a| zmpop(r, a, 1)),
    ("bzmpop", bzmpop),
    ("bzpopmin", |r, a| bzpop(r, a, false)),
    ("bzpopmax", |r, a| bzpop(r, a, true)),
    ("zrandmember", zrandmember),
    ("zscan", zscan),
    ("zunionstore", |r, a| setop(r, a, Op::Union, true, false)),
    ("zinterstore", |r, a| setop(r, a, Op::Inter, true, false)),
    ("zdiffstore", |r, a| setop(r, a, Op::Diff, true, false)),
    ("zunion", |r, a| setop(r, a, Op::Union, false, false)),
    ("zinter", |r, a| setop(r, a, Op::Inter, false, false)),
    ("zdiff", |r, a| setop(r, a, Op::Diff, false, false)),
    ("zintercard", |r, a| setop(r, a, Op::Inter, false, true)),
];

impl Run<'_> {
    /// The key's sorted set if it exists now; WRONGTYPE if it holds another type.
    fn zset(&self, key: &[u8]) -> Result<Option<&Arc<ZSet>>, Value> {
        match self.kv.live(key, self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Changes the key's sorted set (created empty if absent) with `f`, which says whether it
    /// changed anything; keeps the TTL, and deletes the key if no member is left. A call that
    /// changed nothing leaves the key as it was, version included (WATCH does not fire, as
    /// in Redis, which signals a key only when a command modified it).
    fn with_zset<T>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&mut ZSet) -> (T, bool),
    ) -> Result<T, Value> {
        self.zset(key)?;
        // Expired but not yet removed: gone, as for every read.
        self.kv.remove_if_expired(key, self.now);
        let old = self.kv.remove(key);
        let (mut z, expire_at, version) = match old {
            None => (Arc::new(ZSet::new()), 0, None),
            Some(Slot {
                value: Data::ZSet(z),
                expire_at,
                version,
            }) => (z, expire_at, Some(version)),
            Some(_) => unreachable!("type checked above"),
        };
        // Dropped from the store first, so that `make_mut` copies the set only when a
        // snapshot view still holds it.
        let (out, changed) = f(Arc::make_mut(&mut z));
        match version {
            Some(version) if !changed => {
                let slot = Slot {
                    value: Data::ZSet(z),
                    expire_at,
                    version,
                };
                self.kv.insert_slot(key.to_vec(), slot);
            }
            _ if !z.is_empty() => {
                self.kv
                    .put_data(key.to_vec(), Data::ZSet(z), expire_at, self.index)
            }
            _ => {}
        }
        Ok(out)
    }

    /// Stores `z` as the key's new value (no TTL), or deletes the key if `z` is empty: what
    /// the STORE commands do.
    fn put_zset(&mut self, key: &[u8], z: ZSet) {
        self.kv.remove(key);
        if !z.is_empty() {
            self.kv
                .put_data(key.to_vec(), Data::ZSet(Arc::new(z)), 0, self.index);
        }
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

fn double(s: Score) -> Value {
    Value::Double(s.get())
}

fn err(msg: &str) -> Value {
    Value::error(msg)
}

/// Members, or with `withscores` (member, score) pairs: a flat array in RESP2, an array of
/// pairs in RESP3, as Redis 7 replies them.
fn flat<'a>(items: impl IntoIterator<Item = (&'a [u8], Score)>, withscores: bool) -> Value {
    if withscores {
        Value::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (bulk(m), double(s)))
                .collect(),
        )
    } else {
        Value::Array(items.into_iter().map(|(m, _)| bulk(m)).collect())
    }
}

fn not_float() -> Value {
    err("ERR value is not a valid float")
}

/// A score argument as Redis reads one (strtod, whole string, not NaN).
fn parse_score(a: &Arg) -> Option<f64> {
    parse_float(a.as_slice())
}

// ---------------------------------------------------------------------------------------
// ZADD, ZINCRBY

#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

fn zadd(r: &mut Run, a: &[Arg]) -> Value {
    let mut f = AddFlags::default();
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if is(o, "nx") {
            f.nx = true;
        } else if is(o, "xx") {
            f.xx = true;
        } else if is(o, "gt") {
            f.gt = true;
        } else if is(o, "lt") {
            f.lt = true;
        } else if is(o, "ch") {
            f.ch = true;
        } else if is(o, "incr") {
            f.incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return syntax_error();
    }
    if f.nx && f.xx {
        return err("ERR XX and NX options at the same time are not compatible");
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && rest.len() > 2 {
        return err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks_exact(2) {
        match parse_score(&p[0]) {
            Some(s) => pairs.push((s, p[1].as_slice())),
            None => return not_float(),
        }
    }
    zadd_pairs(r, &a[1], &pairs, &f)
}

fn zadd_pairs(r: &mut Run, key: &Arg, pairs: &[(f64, &[u8])], f: &AddFlags) -> Value {
    let none = || {
        if f.incr {
            Value::Null
        } else {
            Value::Integer(0)
        }
    };
    let cur = match r.zset(key.as_slice()) {
        Err(e) => return e,
        Ok(None) if f.xx => return none(),
        Ok(z) => z.and_then(|z| z.score(pairs[0].1)),
    };
    // INCR's only pair: a NaN sum is refused before anything changes.
    if f.incr {
        if let Some(cur) = cur {
            if (cur.get() + pairs[0].0).is_nan() {
                return err("ERR resulting score is not a number (NaN)");
            }
        }
    }
    let outcome = r.with_zset(key.as_slice(), |z| {
        let (mut added, mut updated) = (0i64, 0i64);
        let mut result = None;
        for &(score, member) in pairs {
            match z.score(member) {
                Some(cur) => {
                    if f.nx {
                        continue;
                    }
                    let cur = cur.get();
                    let new = if f.incr { cur + score } else { score };
                    if (f.lt && new >= cur) || (f.gt && new <= cur) {
                        continue;
                    }
                    result = Some(new);
                    if new != cur {
                        z.insert(member.to_vec(), Score::new(new).expect("checked not NaN"));
                        updated += 1;
                    }
                }
                None => {
                    if f.xx {
                        continue;
                    }
                    z.insert(member.to_vec(), Score::new(score).expect("parsed not NaN"));
                    added += 1;
                    result = Some(score);
                }
            }
        }
        ((added, updated, result), added + updated > 0)
    });
    match outcome {
        Err(e) => e,
        Ok((_, _, result)) if f.incr => result.map_or(Value::Null, |s| Value::Double(s + 0.0)),
        Ok((added, updated, _)) => Value::Integer(if f.ch { added + updated } else { added }),
    }
}

fn zincrby(r: &mut Run, a: &[Arg]) -> Value {
    let Some(by) = parse_score(&a[2]) else {
        return not_float();
    };
    let f = AddFlags {
        incr: true,
        ..AddFlags::default()
    };
    zadd_pairs(r, &a[1], &[(by, a[3].as_slice())], &f)
}

// ---------------------------------------------------------------------------------------
// Simple reads

fn zscore(r: &mut Run, a: &[Arg]) -> Value {
    match r.zset(a[1].as_slice()) {
        Err(e) => e,
        Ok(z) => z
            .and_then(|z| z.score(a[2].as_slice()))
            .map_or(Value::Null, double),
    }
}

fn zmscore(r: &mut Run, a: &[Arg]) -> Value {
    match r.zset(a[1].as_slice()) {
        Err(e) => e,
        Ok(z) => Value::Array(
            a[2..]
                .iter()
                .map(|m| {
                    z.and_then(|z| z.score(m.as_slice()))
                        .map_or(Value::Null, double)
                })
                .collect(),
        ),
    }
}

fn zcard(r: &mut Run, a: &[Arg]) -> Value {
    match r.zset(a[1].as_slice()) {
        Err(e) => e,
        Ok(z) => Value::Integer(z.map_or(0, |z| z.len() as i64)),
    }
}

fn zrank(r: &mut Run, a: &[Arg], rev: bool) -> Value {
    match r.zset(a[1].as_slice()) {
        Err(e) => e,
        Ok(None) => Value::Null,
        Ok(Some(z)) => match z.rank(a[2].as_slice()) {
            None => Value::Null,
            Some(n) if rev => Value::Integer((z.len() - 1 - n) as i64),
            Some(n) => Value::Integer(n as i64),
        },
    }
}

fn zrem(r: &mut Run, a: &[Arg]) -> Value {
    match r.zset(a[1].as_slice()) {
        Err(e) => return e,
        Ok(None) => return Value::Integer(0),
        Ok(Some(_)) => {}
    }
    let removed = r.with_zset(a[1].as_slice(), |z| {
        let n = a[2..]
            .iter()
            .filter(|m| z.remove(m.as_slice()).is_some())
            .count();
        (n, n > 0)
    });
    removed.map_or_else(|e| e, |n| Value::Integer(n as i64))
}

// ---------------------------------------------------------------------------------------
// Ranges

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// A score interval, as Redis's `zrangespec`.
#[derive(Clone, Copy)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &Arg, max: &Arg) -> Result<ScoreRange, Value> {
        let bound = |a: &Arg| -> Option<(f64, bool)> {
            match a.as_slice().split_first() {
                Some((b'(', rest)) => parse_float(rest).map(|v| (v, true)),
                _ => parse_float(a.as_slice()).map(|v| (v, false)),
            }
        };
        match (bound(min), bound(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
                min,
                max,
                minex,
                maxex,
            }),
            _ => Err(err("ERR min or max is not a float")),
        }
    }

    fn above_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn below_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }
}

/// One end of a lexicographic interval: `-`, `+`, `[member` or `(member`.
#[derive(Clone)]
enum Lex {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

#[derive(Clone)]
struct LexRange {
    min: Lex,
    max: Lex,
}

impl LexRange {
    fn parse(min: &Arg, max: &Arg) -> Result<LexRange, Value> {
        let item = |a: &Arg| match a.as_slice() {
            b"+" => Some(Lex::Max),
            b"-" => Some(Lex::Min),
            [b'[', rest @ ..] => Some(Lex::Incl(rest.to_vec())),
            [b'(', rest @ ..] => Some(Lex::Excl(rest.to_vec())),
            _ => None,
        };
        match (item(min), item(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(err("ERR min or max not valid string range item")),
        }
    }

    fn above_min(&self, m: &[u8]) -> bool {
        match &self.min {
            Lex::Min => true,
            Lex::Max => false,
            Lex::Incl(v) => m >= v.as_slice(),
            Lex::Excl(v) => m > v.as_slice(),
        }
    }

    fn below_max(&self, m: &[u8]) -> bool {
        match &self.max {
            Lex::Min => false,
            Lex::Max => true,
            Lex::Incl(v) => m <= v.as_slice(),
            Lex::Excl(v) => m < v.as_slice(),
        }
    }
}

/// A parsed range of any kind.
enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

impl Range {
    fn parse(kind: Kind, min: &Arg, max: &Arg) -> Result<Range, Value> {
        Ok(match kind {
            Kind::Rank => Range::Rank(int(min)?, int(max)?),
            Kind::Score => Range::Score(ScoreRange::parse(min, max)?),
            Kind::Lex => Range::Lex(LexRange::parse(min, max)?),
        })
    }

    /// The members in the range, in ascending order (`rev`: descending), after skipping
    /// `offset` and taking at most `limit` (negative: all), as Redis walks its skiplist: from
    /// the first member past the start bound while members stay within the end bound.
    fn select<'z>(
        &self,
        z: &'z ZSet,
        rev: bool,
        offset: i64,
        limit: i64,
    ) -> Vec<(&'z [u8], Score)> {
        if offset < 0 || limit == 0 {
            return Vec::new();
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let it: Box<dyn Iterator<Item = (&[u8], Score)>> = if rev {
            Box::new(z.iter().rev())
        } else {
            Box::new(z.iter())
        };
        match self {
            Range::Rank(start, end) => {
                let len = z.len() as i64;
                let (mut start, mut end) = (*start, *end);
                if start < 0 {
                    start += len;
                }
                if end < 0 {
                    end += len;
                }
                if start < 0 {
                    start = 0;
                }
                if start > end || start >= len {
                    return Vec::new();
                }
                if end >= len {
                    end = len - 1;
                }
                it.skip(start as usize)
                    .take((end - start + 1) as usize)
                    .collect()
            }
            Range::Score(s) => {
                let s = *s;
                // Walking up: start past min, stop past max; walking down, the other way.
                let first = |v: f64| if rev { s.below_max(v) } else { s.above_min(v) };
                let last = |v: f64| if rev { s.above_min(v) } else { s.below_max(v) };
                it.skip_while(|(_, v)| !first(v.get()))
                    .take_while(|(_, v)| last(v.get()))
                    .skip(offset)
                    .take(limit)
                    .collect()
            }
            Range::Lex(l) => it
                .skip_while(|(m, _)| {
                    if rev {
                        !l.below_max(m)
                    } else {
                        !l.above_min(m)
                    }
                })
                .take_while(|(m, _)| if rev { l.above_min(m) } else { l.below_max(m) })
                .skip(offset)
                .take(limit)
                .collect(),
        }
    }
}

/// ZRANGE and its older forms. `a` starts at the command name (ZRANGESTORE: at its
/// destination, so the source key is `a[1]` for every form); `kind`/`rev` are fixed by the
/// older forms, chosen by options for ZRANGE.
fn zrange(
    r: &mut Run,
    a: &[Arg],
    store: Option<&Arg>,
    fixed_kind: Option<Kind>,
    fixed_rev: Option<bool>,
) -> Value {
    reply_of(zrange_inner(r, a, store, fixed_kind, fixed_rev))
}

fn reply_of(r: Result<Value, Value>) -> Value {
    r.unwrap_or_else(|e| e)
}

fn zrange_inner(
    r: &mut Run,
    a: &[Arg],
    store: Option<&Arg>,
    fixed_kind: Option<Kind>,
    fixed_rev: Option<bool>,
) -> Result<Value, Value> {
    let mut kind = fixed_kind;
    let mut rev = fixed_rev;
    let mut withscores = false;
    let mut limit: Option<(i64, i64)> = None;
    let mut j = 4;
    while j < a.len() {
        let left = a.len() - j - 1;
        if store.is_none() && is(&a[j], "withscores") {
            withscores = true;
        } else if is(&a[j], "limit") && left >= 2 {
            limit = Some((int(&a[j + 1])?, int(&a[j + 2])?));
            j += 2;
        } else if rev.is_none() && is(&a[j], "rev") {
            rev = Some(true);
        } else if fixed_kind.is_none() && kind.is_none() && is(&a[j], "bylex") {
            kind = Some(Kind::Lex);
        } else if fixed_kind.is_none() && kind.is_none() && is(&a[j], "byscore") {
            kind = Some(Kind::Score);
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    let kind = kind.unwrap_or(Kind::Rank);
    let rev = rev.unwrap_or(false);
    if limit.is_some() && kind == Kind::Rank {
        return Err(err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == Kind::Lex {
        return Err(err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (min, max) = if rev && kind != Kind::Rank {
        (&a[3], &a[2])
    } else {
        (&a[2], &a[3])
    };
    let range = Range::parse(kind, min, max)?;
    let (offset, count) = limit.unwrap_or((0, -1));
    let src = a[1].as_slice();
    let z = r.zset(src)?.cloned();
    let picked = z
        .as_deref()
        .map(|z| range.select(z, rev, offset, count))
        .unwrap_or_default();
    match store {
        Some(dst) => {
            let mut out = ZSet::new();
            for (m, s) in &picked {
                out.insert(m.to_vec(), *s);
            }
            let n = out.len();
            r.put_zset(dst.as_slice(), out);
            Ok(Value::Integer(n as i64))
        }
        None => Ok(flat(picked, withscores)),
    }
}

fn zcount(r: &mut Run, a: &[Arg]) -> Value {
    reply_of((|| {
        let range = Range::Score(ScoreRange::parse(&a[2], &a[3])?);
        let z = r.zset(a[1].as_slice())?;
        Ok(Value::Integer(
            z.map_or(0, |z| range.select(z, false, 0, -1).len()) as i64,
        ))
    })())
}

fn zlexcount(r: &mut Run, a: &[Arg]) -> Value {
    reply_of((|| {
        let range = Range::Lex(LexRange::parse(&a[2], &a[3])?);
        let z = r.zset(a[1].as_slice())?;
        Ok(Value::Integer(
            z.map_or(0, |z| range.select(z, false, 0, -1).len()) as i64,
        ))
    })())
}

fn zremrange(r: &mut Run, a: &[Arg], kind: Kind) -> Value {
    reply_of((|| {
        let range = Range::parse(kind, &a[2], &a[3])?;
        let members: Vec<Vec<u8>> = match r.zset(a[1].as_slice())? {
            None => return Ok(Value::Integer(0)),
            Some(z) => (range.select(z, false, 0, -1).into_iter())
                .map(|(m, _)| m.to_vec())
                .collect(),
        };
        if members.is_empty() {
            return Ok(Value::Integer(0));
        }
        r.with_zset(a[1].as_slice(), |z| {
            for m in &members {
                z.remove(m);
            }
            ((), true)
        })?;
        Ok(Value::Integer(members.len() as i64))
    })())
}

// ---------------------------------------------------------------------------------------
// Pops

/// Popped members and their scores, in pop order.
type Popped = Vec<(Vec<u8>, Score)>;

/// Pops up to `count` members from the first of `keys` that holds a sorted set: that key
/// and the pairs, or `None` if no key holds one. WRONGTYPE at the first key of another type.
fn pop_first_of(
    r: &mut Run,
    keys: &[Arg],
    max: bool,
    count: usize,
) -> Result<Option<(Arg, Popped)>, Value> {
    for key in keys {
        if r.zset(key.as_slice())?.is_none() {
            continue;
        }
        let popped = r.with_zset(key.as_slice(), |z| {
            let mut out = Vec::new();
            while out.len() < count {
                let next = if max { z.pop_max() } else { z.pop_min() };
                match next {
                    Some(p) => out.push(p),
                    None => break,
                }
            }
            let changed = !out.is_empty();
            (out, changed)
        })?;
        return Ok(Some((key.clone(), popped)));
    }
    Ok(None)
}

fn pairs(popped: &[(Vec<u8>, Score)]) -> Value {
    Value::Array(
        popped
            .iter()
            .map(|(m, s)| Value::Array(vec![bulk(m), double(*s)]))
            .collect(),
    )
}

/// `ZPOPMIN|ZPOPMAX key [count]`.
fn zpop(r: &mut Run, a: &[Arg], max: bool) -> Value {
    reply_of((|| {
        if a.len() > 3 {
            return Err(syntax_error());
        }
        let count = match a.get(2) {
            None => 1,
            Some(c) => match flotilla_resp::parse_i64(c.as_slice()) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(err("ERR value is out of range, must be positive")),
            },
        };
        if r.zset(a[1].as_slice())?.is_none() || count == 0 {
            return Ok(Value::Array(Vec::new()));
        }
        let popped = pop_first_of(r, &a[1..2], max, count)?;
        let popped = popped.map(|(_, p)| p).unwrap_or_default();
        if a.len() == 3 {
            // With a count: pairs (nested in RESP3); without, one flat pair in both.
            return Ok(flat(popped.iter().map(|(m, s)| (m.as_slice(), *s)), true));
        }
        let mut out = Vec::with_capacity(2);
        for (m, s) in &popped {
            out.push(bulk(m));
            out.push(double(*s));
        }
        Ok(Value::Array(out))
    })())
}

/// A blocking command's timeout, checked as Redis checks it.
fn timeout(a: &Arg) -> Result<(), Value> {
    match parse_float(a.as_slice()) {
        Some(t) if t.is_finite() && t < 0.0 => Err(err("ERR timeout is negative")),
        Some(t) if t.is_finite() => Ok(()),
        _ => Err(err("ERR timeout is not a float or out of range")),
    }
}

/// `BZPOPMIN|BZPOPMAX key [key ...] timeout`: never blocks (a replicated state machine cannot
/// wait); answers as Redis does inside MULTI: the first non-empty key's pop, or a null array.
fn bzpop(r: &mut Run, a: &[Arg], max: bool) -> Value {
    reply_of((|| {
        timeout(&a[a.len() - 1])?;
        match pop_first_of(r, &a[1..a.len() - 1], max, 1)? {
            Some((key, popped)) if !popped.is_empty() => {
                let (m, s) = &popped[0];
                Ok(Value::Array(vec![
                    bulk(key.as_slice()),
                    bulk(m),
                    double(*s),
                ]))
            }
            _ => Ok(Value::NullArray),
        }
    })())
}

/// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]` with numkeys at `a[idx]`.
fn zmpop(r: &mut Run, a: &[Arg], idx: usize) -> Value {
    reply_of((|| {
        let numkeys = match flotilla_resp::parse_i64(a[idx].as_slice()) {
            Some(n) if n >= 1 => n as usize,
            _ => return Err(err("ERR numkeys should be greater than 0")),
        };
        let where_idx = idx.saturating_add(numkeys).saturating_add(1);
        if where_idx >= a.len() {
            return Err(syntax_error());
        }
        let max = if is(&a[where_idx], "min") {
            false
        } else if is(&a[where_idx], "max") {
            true
        } else {
            return Err(syntax_error());
        };
        let mut count = None;
        let mut j = where_idx + 1;
        while j < a.len() {
            if count.is_none() && is(&a[j], "count") && j + 1 < a.len() {
                match flotilla_resp::parse_i64(a[j + 1].as_slice()) {
                    Some(n) if n >= 1 => count = Some(n as usize),
                    _ => return Err(err("ERR count should be greater than 0")),
                }
                j += 2;
            } else {
                return Err(syntax_error());
            }
        }
        let keys = &a[idx + 1..where_idx];
        match pop_first_of(r, keys, max, count.unwrap_or(1))? {
            Some((key, popped)) => Ok(Value::Array(vec![bulk(key.as_slice()), pairs(&popped)])),
            None => Ok(Value::NullArray),
        }
    })())
}

/// `BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]`: ZMPOP, never blocking.
fn bzmpop(r: &mut Run, a: &[Arg]) -> Value {
    if let Err(e) = timeout(&a[1]) {
        return e;
    }
    zmpop(r, a, 2)
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER, ZSCAN

/// The most members one ZRANDMEMBER with a negative count returns (as HRANDFIELD's bound).
const MAX_RANDOM_MEMBERS: i64 = 10_000_000;

/// `ZRANDMEMBER key [count [WITHSCORES]]`.
fn zrandmember(r: &mut Run, a: &[Arg]) -> Value {
    reply_of((|| {
        let (count, withscores) = match a.len() {
            2 => (None, false),
            3 => (Some(&a[2]), false),
            4 if is(&a[3], "withscores") => (Some(&a[2]), true),
            _ => return Err(syntax_error()),
        };
        let count = match count {
            None => None,
            Some(c) => match int(c)? {
                i64::MIN => {
                    return Err(err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
                }
                // Redis refuses counts beyond ±LONG_MAX/2; a negative count repeats members and
                // the reply is built whole, so a huge one is refused, not allocated.
                n if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) || n < -MAX_RANDOM_MEMBERS => {
                    return Err(err("ERR value is out of range"))
                }
                n => Some(n),
            },
        };
        let z = match r.zset(a[1].as_slice())? {
            None => {
                return Ok(if count.is_some() {
                    Value::Array(Vec::new())
                } else {
                    Value::Null
                })
            }
            Some(z) => Arc::clone(z),
        };
        let members: Vec<(&[u8], Score)> = z.iter().collect();
        let mut draw = r.draw(a[1].as_slice());
        let Some(n) = count else {
            return Ok(bulk(members[draw.next(members.len())].0));
        };
        let picked = draw.picks(members.len(), n);
        Ok(flat(picked.into_iter().map(|i| members[i]), withscores))
    })())
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: members in the order of their hash, as
/// SCAN visits keys (`keyspace.rs`), so the same promise holds. Scores are bulk strings
/// even in RESP3, as Redis sends them.
fn zscan(r: &mut Run, a: &[Arg]) -> Value {
    let options = match parse_scan_options(&a[2..], false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let z = match r.zset(a[1].as_slice()) {
        Err(e) => return e,
        Ok(z) => z.cloned().unwrap_or_default(),
    };
    let (next, members) = scan_page(z.by_member().map(|(m, _)| m), z.len(), &options);
    let mut items = Vec::with_capacity(members.len() * 2);
    for m in members {
        items.push(bulk(m));
        let s = z.score(m).expect("member of the set");
        items.push(Value::Bulk(
            flotilla_resp::format_double(s.get()).into_bytes(),
        ));
    }
    Value::Array(vec![
        Value::Bulk(next.to_string().into_bytes()),
        Value::Array(items),
    ])
}

// ---------------------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF (and STORE), ZINTERCARD

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, target: &mut f64, v: f64) {
        match self {
            Aggregate::Sum => {
                *target += v;
                // inf + -inf: Redis makes it 0.
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if v < *target {
                    *target = v;
                }
            }
            Aggregate::Max => {
                if v > *target {
                    *target = v;
                }
            }
        }
    }
}

/// An input of a set operation: a sorted set, a set (every member scored 1), or nothing.
enum Src {
    None,
    Z(Arc<ZSet>),
    S(Arc<Set>),
}

impl Src {
    fn len(&self) -> usize {
        match self {
            Src::None => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }

    fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::None => None,
            Src::Z(z) => z.score(m).map(Score::get),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }

    fn items(&self) -> Vec<(&[u8], f64)> {
        match self {
            Src::None => Vec::new(),
            Src::Z(z) => z.iter().map(|(m, s)| (m, s.get())).collect(),
            Src::S(s) => s.iter().map(|m| (m.as_slice(), 1.0)).collect(),
        }
    }
}

/// A weighted score; a NaN (inf × 0) is 0, as in Redis.
fn weighted(w: f64, s: f64) -> f64 {
    let v = w * s;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// The set operations: `store` for the STORE forms (`dst numkeys key …`), `card` for
/// ZINTERCARD; else `numkeys key …`.
fn setop(r: &mut Run, a: &[Arg], op: Op, store: bool, card: bool) -> Value {
    reply_of(setop_inner(r, a, op, store, card))
}

fn setop_inner(r: &mut Run, a: &[Arg], op: Op, store: bool, card: bool) -> Result<Value, Value> {
    let name = String::from_utf8_lossy(a[0].as_slice()).to_lowercase();
    let idx = if store { 2 } else { 1 };
    let numkeys = int(&a[idx])?;
    if numkeys < 1 {
        return Err(err(&format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    if numkeys as u64 > (a.len() - idx - 1) as u64 {
        return Err(syntax_error());
    }
    let numkeys = numkeys as usize;
    let mut srcs = Vec::with_capacity(numkeys);
    for key in &a[idx + 1..idx + 1 + numkeys] {
        srcs.push(match r.kv.live(key.as_slice(), r.now).map(|s| &s.value) {
            None => Src::None,
            Some(Data::ZSet(z)) => Src::Z(Arc::clone(z)),
            Some(Data::Set(s)) => Src::S(Arc::clone(s)),
            Some(_) => return Err(wrong_type()),
        });
    }
    let mut weights = vec![1.0; numkeys];
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0usize;
    let mut j = idx + 1 + numkeys;
    while j < a.len() {
        let remaining = a.len() - j;
        if op != Op::Diff && !card && remaining > numkeys && is(&a[j], "weights") {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = parse_float(a[j + 1 + i].as_slice())
                    .ok_or_else(|| err("ERR weight value is not a float"))?;
            }
            j += 1 + numkeys;
        } else if op != Op::Diff && !card && remaining >= 2 && is(&a[j], "aggregate") {
            agg = if is(&a[j + 1], "sum") {
                Aggregate::Sum
            } else if is(&a[j + 1], "min") {
                Aggregate::Min
            } else if is(&a[j + 1], "max") {
                Aggregate::Max
            } else {
                return Err(syntax_error());
            };
            j += 2;
        } else if !store && !card && is(&a[j], "withscores") {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(&a[j], "limit") {
            limit = match flotilla_resp::parse_i64(a[j + 1].as_slice()) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(err("ERR LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }

    let mut acc: BTreeMap<Vec<u8>, f64> = BTreeMap::new();
    match op {
        Op::Inter => {
            if srcs.iter().all(|s| !matches!(s, Src::None)) {
                // Smallest input first, as Redis iterates (the sum's order follows it).
                let mut order: Vec<usize> = (0..numkeys).collect();
                order.sort_by_key(|&i| srcs[i].len());
                let first = order[0];
                'members: for (m, s) in srcs[first].items() {
                    let mut score = weighted(weights[first], s);
                    for &o in &order[1..] {
                        match srcs[o].score(m) {
                            Some(v) => agg.apply(&mut score, weighted(weights[o], v)),
                            None => continue 'members,
                        }
                    }
                    acc.insert(m.to_vec(), score);
                    if card && limit != 0 && acc.len() >= limit {
                        break;
                    }
                }
            }
        }
        Op::Union => {
            let mut order: Vec<usize> = (0..numkeys).collect();
            order.sort_by_key(|&i| srcs[i].len());
            for &o in &order {
                for (m, s) in srcs[o].items() {
                    let v = weighted(weights[o], s);
                    match acc.get_mut(m) {
                        Some(t) => agg.apply(t, v),
                        None => {
                            acc.insert(m.to_vec(), v);
                        }
                    }
                }
            }
        }
        Op::Diff => {
            for (m, s) in srcs[0].items() {
                if !srcs[1..].iter().any(|o| o.score(m).is_some()) {
                    acc.insert(m.to_vec(), s);
                }
            }
        }
    }
    if card {
        return Ok(Value::Integer(acc.len() as i64));
    }
    let mut out = ZSet::new();
    for (m, s) in acc {
        out.insert(
            m,
            Score::new(s).unwrap_or(Score::new(0.0).expect("0 is a number")),
        );
    }
    if store {
        let n = out.len();
        r.put_zset(a[1].as_slice(), out);
        return Ok(Value::Integer(n as i64));
    }
    Ok(flat(out.iter(), withscores))
}

#[cfg(test)]
#[path = "zsets_tests.rs"]
mod tests;
