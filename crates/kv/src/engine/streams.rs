//! Stream commands: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD, XSETID, XINFO, and
//! consumer groups: XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM. Delivery and
//! seen times are the replicated clock's, as IDs are. Unlike the other collections, a stream left empty
//! stays (Redis keeps its last ID, so that IDs keep growing).
//!
//! IDs given by `*` come from the replicated clock ([`Run::now`]), so every replica gives the
//! same. XREAD never blocks here: with BLOCK it answers what it would answer at once, as
//! Redis does inside MULTI (a null array when nothing is new); waiting is the router's.

use std::sync::Arc;

use flotilla_resp::Value;

use super::{int, is, syntax_error, wrong_arity, wrong_type, Handler, Run};
use crate::command::Arg;
use crate::slot::{Data, Slot};
use crate::stream::{Group, Stream, StreamId, Trim, NODE_MAX_ENTRIES};

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("xadd", xadd),
    ("xlen", xlen),
    ("xrange", |r, a| xrange(r, a, false)),
    ("xrevrange", |r, a| xrange(r, a, true)),
    ("xdel", xdel),
    ("xtrim", xtrim),
    ("xread", |r, a| xread(r, a, false)),
    ("xreadgroup", |r, a| xread(r, a, true)),
    ("xack", xack),
    ("xpending", xpending),
    ("xclaim", xclaim),
    ("xautoclaim", xautoclaim),
    ("xgroup|create", xgroup),
    ("xgroup|setid", xgroup),
    ("xgroup|destroy", xgroup),
    ("xgroup|createconsumer", xgroup),
    ("xgroup|delconsumer", xgroup),
    ("xinfo|groups", xinfo_groups),
    ("xinfo|consumers", xinfo_consumers),
    ("xsetid", xsetid),
    ("xinfo|stream", xinfo_stream),
    ("xinfo|help", |_, _| help("XINFO", XINFO_HELP)),
    ("xgroup|help", |_, _| help("XGROUP", XGROUP_HELP)),
];

impl Run<'_> {
    /// The key's stream if it exists now; WRONGTYPE if it holds another type.
    fn stream(&self, key: &Arg) -> Result<Option<&Arc<Stream>>, Value> {
        match self.kv.live(key.as_slice(), self.now).map(|s| &s.value) {
            None => Ok(None),
            Some(Data::Stream(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Changes the key's stream with `f`, which says whether it changed anything: if so the
    /// key's version rises (WATCH sees a write), else the key is left as it was. An absent
    /// key is created empty if `create`, else `f` does not run (`Ok(None)`). A stream left
    /// empty stays. WRONGTYPE if the key holds another type.
    fn with_stream<T>(
        &mut self,
        key: &Arg,
        create: bool,
        f: impl FnOnce(&mut Stream) -> (T, bool),
    ) -> Result<Option<T>, Value> {
        self.kv.remove_if_expired(key.as_slice(), self.now);
        let old = match self.kv.live(key.as_slice(), self.now) {
            None if !create => return Ok(None),
            None => None,
            Some(s) => match &s.value {
                Data::Stream(_) => Some((s.expire_at, s.version)),
                _ => return Err(wrong_type()),
            },
        };
        // Taken out of the store first, so that `make_mut` copies the stream only when a
        // snapshot view still holds it.
        let mut stream = match self.kv.remove(key.as_slice()).map(|s| s.value) {
            Some(Data::Stream(s)) => s,
            _ => Arc::new(Stream::new()),
        };
        let (out, changed) = f(Arc::make_mut(&mut stream));
        match old {
            Some((expire_at, version)) if !changed => {
                let slot = Slot {
                    value: Data::Stream(stream),
                    expire_at,
                    version,
                };
                self.kv.insert_slot(key.as_slice().to_vec(), slot);
            }
            old => {
                let expire_at = old.map_or(0, |(e, _)| e);
                self.store_data(key, Data::Stream(stream), expire_at);
            }
        }
        Ok(Some(out))
    }
}

fn invalid_id() -> Value {
    Value::error("ERR Invalid stream ID specified as stream command argument")
}

/// A number as Redis's `string2ull` reads it: a canonical non-negative integer, or what C's
/// `strtoull` takes whole (leading blanks, a `+`, leading zeros).
fn parse_u64(s: &[u8]) -> Option<u64> {
    let t = s.trim_ascii_start();
    let t = t.strip_prefix(b"+").unwrap_or(t);
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// An ID argument as Redis's `streamGenericParseIDOrReply` reads it: `ms-seq`, or `ms` with
/// `missing_seq`; `-` and `+` the least and greatest unless `strict`. With `seq_given`, the
/// form `ms-*` is accepted (`Ok((id with seq 0, false))`).
fn parse_id(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    allow_auto_seq: bool,
) -> Result<(StreamId, bool), Value> {
    if arg.len() > 127 {
        return Err(invalid_id());
    }
    match arg {
        b"-" | b"+" if strict => return Err(invalid_id()),
        b"-" => return Ok((StreamId::MIN, true)),
        b"+" => return Ok((StreamId::MAX, true)),
        _ => {}
    }
    let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
        None => (arg, None),
        Some(dash) => (&arg[..dash], Some(&arg[dash + 1..])),
    };
    let ms = parse_u64(ms).ok_or_else(invalid_id)?;
    match seq {
        None => Ok((
            StreamId {
                ms,
                seq: missing_seq,
            },
            true,
        )),
        Some(b"*") if allow_auto_seq => Ok((StreamId { ms, seq: 0 }, false)),
        Some(seq) => Ok((
            StreamId {
                ms,
                seq: parse_u64(seq).ok_or_else(invalid_id)?,
            },
            true,
        )),
    }
}

/// A strict ID (no `-`, `+` or `ms-*`).
fn strict_id(arg: &Arg) -> Result<StreamId, Value> {
    parse_id(arg.as_slice(), 0, true, false).map(|(id, _)| id)
}

fn id_value(id: StreamId) -> Value {
    Value::Bulk(id.to_string().into_bytes())
}

/// An entry as Redis replies it: its ID, then its fields and values.
fn entry_value(id: StreamId, fields: &[Vec<u8>]) -> Value {
    Value::Array(vec![
        id_value(id),
        Value::Array(fields.iter().map(|f| Value::Bulk(f.clone())).collect()),
    ])
}

/// The entries from `start` to `end` (inclusive), at most `count` of them (0: all), last
/// first if `rev`.
fn range_value(s: &Stream, start: StreamId, end: StreamId, count: usize, rev: bool) -> Value {
    if start > end {
        return Value::Array(Vec::new());
    }
    let range = s.entries.range(start..=end);
    let take = if count == 0 { usize::MAX } else { count };
    let items: Vec<Value> = if rev {
        range
            .rev()
            .take(take)
            .map(|(id, f)| entry_value(*id, f))
            .collect()
    } else {
        range
            .take(take)
            .map(|(id, f)| entry_value(*id, f))
            .collect()
    };
    Value::Array(items)
}

/// XADD's and XTRIM's options (Redis's `streamAddTrimArgs`).
#[derive(Default)]
struct TrimArgs {
    /// The trim rule, if any.
    rule: Option<Trim>,
    /// `~`: whole nodes only.
    approx: bool,
    /// The most entries a trim may remove (0: no limit).
    limit: u64,
    /// XADD's NOMKSTREAM.
    no_mkstream: bool,
    /// XADD's ID: `None` for `*`; else the ID and whether its sequence was given (not
    /// `ms-*`).
    id: Option<(StreamId, bool)>,
    /// XADD: the index of the first field.
    fields_at: usize,
}

/// The start of a MAXLEN or MINID option at `a[i]` (with `more` arguments after it): refused
/// if a rule was given already; its optional `~` (approximate) or `=` taken. Returns the
/// index of the argument before the rule's value.
fn trim_operator(t: &mut TrimArgs, a: &[Arg], mut i: usize, more: usize) -> Result<usize, Value> {
    if t.rule.is_some() {
        return Err(Value::error(
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
        ));
    }
    t.approx = false;
    let next = a[i + 1].as_slice();
    if more >= 2 && next == b"~" {
        t.approx = true;
        i += 1;
    } else if more >= 2 && next == b"=" {
        i += 1;
    }
    Ok(i)
}

/// Parses XADD's (`xadd`) or XTRIM's options from argument 2 on, as Redis's
/// `streamParseAddOrTrimArgsOrReply`, in the order it checks them.
fn parse_trim_args(a: &[Arg], xadd: bool) -> Result<TrimArgs, Value> {
    let mut t = TrimArgs::default();
    let mut limit_given = false;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        if xadd && opt.as_slice() == b"*" {
            break;
        } else if is(opt, "maxlen") && more > 0 {
            i = trim_operator(&mut t, a, i, more)?;
            let n = int(&a[i + 1])?;
            if n < 0 {
                return Err(Value::error("ERR The MAXLEN argument must be >= 0."));
            }
            i += 1;
            t.rule = Some(Trim::MaxLen(n as u64));
        } else if is(opt, "minid") && more > 0 {
            i = trim_operator(&mut t, a, i, more)?;
            let id = strict_id(&a[i + 1])?;
            i += 1;
            t.rule = Some(Trim::MinId(id));
        } else if is(opt, "limit") && more > 0 {
            let n = int(&a[i + 1])?;
            if n < 0 {
                return Err(Value::error("ERR The LIMIT argument must be >= 0."));
            }
            t.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            t.no_mkstream = true;
        } else if xadd {
            t.id = Some(parse_id(opt.as_slice(), 0, true, true)?);
            break;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    t.fields_at = i + 1;
    if t.limit != 0 && t.rule.is_none() {
        return Err(Value::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.rule.is_none() {
        return Err(Value::error(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !t.approx {
            return Err(Value::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        // Redis's default: at most 100 nodes' worth of work.
        t.limit = 100 * NODE_MAX_ENTRIES;
    } else {
        t.limit = 0;
    }
    Ok(t)
}

/// `XADD key [NOMKSTREAM] [(MAXLEN|MINID) [=|~] threshold [LIMIT count]] (*|id) field value
/// [field value …]`.
fn xadd(r: &mut Run, a: &[Arg]) -> Value {
    let t = match parse_trim_args(a, true) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let nfields = a.len().saturating_sub(t.fields_at);
    if nfields < 2 || !nfields.is_multiple_of(2) {
        return wrong_arity("xadd");
    }
    if let Some((StreamId { ms: 0, seq: 0 }, true)) = t.id {
        return Value::error("ERR The ID specified in XADD must be greater than 0-0");
    }
    let last = match r.stream(&a[1]) {
        Err(e) => return e,
        Ok(None) if t.no_mkstream => return Value::Null,
        Ok(s) => s.map_or(StreamId::MIN, |s| s.last_id),
    };
    if last == StreamId::MAX {
        return Value::error(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        );
    }
    // The new ID, from the state and the replicated clock only (Redis's streamNextID and
    // streamAppendItem).
    let id = match t.id {
        None if r.now > last.ms => Some(StreamId { ms: r.now, seq: 0 }),
        None => last.next(),
        Some((id, true)) => Some(id),
        Some((id, false)) if id.ms == last.ms => last.next().filter(|n| n.ms == last.ms),
        Some((id, false)) => Some(id),
    };
    let Some(id) = id.filter(|id| *id > last) else {
        return Value::error(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        );
    };
    let fields: Vec<Vec<u8>> = a[t.fields_at..]
        .iter()
        .map(|f| f.as_slice().to_vec())
        .collect();
    let added = r.with_stream(&a[1], true, |s| {
        s.append(id, fields);
        if let Some(rule) = t.rule {
            s.trim(rule, t.approx, t.limit);
        }
        ((), true)
    });
    match added {
        Err(e) => e,
        Ok(_) => id_value(id),
    }
}

fn xlen(r: &mut Run, a: &[Arg]) -> Value {
    match r.stream(&a[1]) {
        Err(e) => e,
        Ok(s) => Value::Integer(s.map_or(0, |s| s.len() as i64)),
    }
}

/// An interval bound: `(id` exclusive (then strict), else as [`parse_id`] reads it.
fn bound(arg: &Arg, missing_seq: u64) -> Result<(StreamId, bool), Value> {
    let b = arg.as_slice();
    if b.len() > 1 && b[0] == b'(' {
        parse_id(&b[1..], missing_seq, true, false).map(|(id, _)| (id, true))
    } else {
        parse_id(b, missing_seq, false, false).map(|(id, _)| (id, false))
    }
}

/// `XRANGE key start end [COUNT n]`, `XREVRANGE key end start [COUNT n]`.
fn xrange(r: &mut Run, a: &[Arg], rev: bool) -> Value {
    super::reply((|| {
        let (start_arg, end_arg) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
        let (mut start, ex) = bound(start_arg, 0)?;
        if ex {
            start = start
                .next()
                .ok_or_else(|| Value::error("ERR invalid start ID for the interval"))?;
        }
        let (mut end, ex) = bound(end_arg, u64::MAX)?;
        if ex {
            end = end
                .prev()
                .ok_or_else(|| Value::error("ERR invalid end ID for the interval"))?;
        }
        let mut count: Option<i64> = None;
        let mut j = 4;
        while j < a.len() {
            if is(&a[j], "count") && j + 1 < a.len() {
                count = Some(int(&a[j + 1])?.max(0));
                j += 2;
            } else {
                return Err(syntax_error());
            }
        }
        let Some(s) = r.stream(&a[1])? else {
            return Ok(Value::Array(Vec::new()));
        };
        // COUNT 0 answers a null array (Redis's `addReplyNullArray`); no COUNT, every entry.
        match count {
            Some(0) => Ok(Value::NullArray),
            Some(n) => Ok(range_value(s, start, end, n as usize, rev)),
            None => Ok(range_value(s, start, end, 0, rev)),
        }
    })())
}

/// `XDEL key id [id …]`.
fn xdel(r: &mut Run, a: &[Arg]) -> Value {
    match r.stream(&a[1]) {
        Err(e) => return e,
        Ok(None) => return Value::Integer(0),
        Ok(Some(_)) => {}
    }
    // Every ID is checked before any is deleted: a bad one deletes nothing.
    let ids = match a[2..].iter().map(strict_id).collect::<Result<Vec<_>, _>>() {
        Ok(ids) => ids,
        Err(e) => return e,
    };
    let deleted = r.with_stream(&a[1], false, |s| {
        let mut n = 0;
        for id in ids {
            if s.delete(id) {
                s.max_deleted_id = s.max_deleted_id.max(id);
                n += 1;
            }
        }
        (n, n > 0)
    });
    match deleted {
        Err(e) => e,
        Ok(n) => Value::Integer(n.unwrap_or(0)),
    }
}

/// `XTRIM key (MAXLEN|MINID) [=|~] threshold [LIMIT count]`.
fn xtrim(r: &mut Run, a: &[Arg]) -> Value {
    let t = match parse_trim_args(a, false) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let rule = t.rule.expect("XTRIM's options name a rule");
    match r.with_stream(&a[1], false, |s| {
        let n = s.trim(rule, t.approx, t.limit);
        (n, n > 0)
    }) {
        Err(e) => e,
        Ok(n) => Value::Integer(n.unwrap_or(0) as i64),
    }
}

fn lossy(a: &Arg) -> String {
    String::from_utf8_lossy(a.as_slice()).into_owned()
}

/// Where a stream of an XREAD or XREADGROUP is read from.
#[derive(Clone, Copy)]
enum ReadFrom {
    /// Entries above this ID.
    After(StreamId),
    /// XREADGROUP's `>`: entries the group was not given yet.
    New,
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS key [key …] id [id …]` and `XREADGROUP GROUP g c
/// [COUNT n] [BLOCK ms] [NOACK] STREAMS key [key …] id [id …]`, as Redis's `xreadCommand`:
/// every argument is checked before anything is read. With BLOCK, what it would answer at
/// once (see the module's note).
fn xread(r: &mut Run, a: &[Arg], readgroup: bool) -> Value {
    super::reply((|| {
        let mut count: i64 = 0;
        let mut streams_at = 0;
        let mut group: Option<(&Arg, &Arg)> = None;
        let mut noack = false;
        let mut i = 1;
        while i < a.len() {
            let more = a.len() - 1 - i;
            let o = &a[i];
            if is(o, "block") && more > 0 {
                i += 1;
                let ms = flotilla_resp::parse_i64(a[i].as_slice())
                    .ok_or_else(|| Value::error("ERR timeout is not an integer or out of range"))?;
                if ms < 0 {
                    return Err(Value::error("ERR timeout is negative"));
                }
            } else if is(o, "count") && more > 0 {
                i += 1;
                count = int(&a[i])?.max(0);
            } else if is(o, "streams") && more > 0 {
                streams_at = i + 1;
                if !(a.len() - streams_at).is_multiple_of(2) {
                    return Err(Value::error(
                        "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                    ));
                }
                break;
            } else if is(o, "group") && more >= 2 {
                if !readgroup {
                    return Err(Value::error(
                        "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                    ));
                }
                group = Some((&a[i + 1], &a[i + 2]));
                i += 2;
            } else if is(o, "noack") {
                if !readgroup {
                    return Err(Value::error(
                        "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                    ));
                }
                noack = true;
            } else {
                return Err(syntax_error());
            }
            i += 1;
        }
        if streams_at == 0 {
            return Err(syntax_error());
        }
        if readgroup && group.is_none() {
            return Err(Value::error("ERR Missing GROUP option for XREADGROUP"));
        }
        let n = (a.len() - streams_at) / 2;
        let (keys, id_args) = a[streams_at..].split_at(n);
        let mut from = Vec::with_capacity(n);
        for (key, id) in keys.iter().zip(id_args) {
            let s = r.stream(key)?;
            if let Some((g, _)) = group {
                if s.is_none_or(|s| !s.groups.contains_key(g.as_slice())) {
                    return Err(Value::error(format!(
                        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                        lossy(key),
                        lossy(g)
                    )));
                }
            }
            from.push(match id.as_slice() {
                b"$" if readgroup => {
                    return Err(Value::error(
                        "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                    ))
                }
                b"$" => ReadFrom::After(s.map_or(StreamId::MIN, |s| s.last_id)),
                b">" if readgroup => ReadFrom::New,
                b">" => {
                    return Err(Value::error(
                        "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                    ))
                }
                _ => ReadFrom::After(strict_id(id)?),
            });
        }
        let count = usize::try_from(count).unwrap_or(0);
        let mut out = Vec::new();
        for (key, from) in keys.iter().zip(from) {
            let entries = match group {
                None => read_plain(r, key, from, count)?,
                Some((g, c)) => read_group(r, key, g, c, from, count, noack)?,
            };
            if let Some(entries) = entries {
                out.push((Value::Bulk(key.as_slice().to_vec()), entries));
            }
        }
        // A map in RESP3, an array of [key, entries] in RESP2, as Redis 7 answers.
        Ok(if out.is_empty() {
            Value::NullArray
        } else {
            Value::KeyedPairs(out)
        })
    })())
}

/// XREAD of one stream: its entries after the ID, `None` if there are none.
fn read_plain(r: &Run, key: &Arg, from: ReadFrom, count: usize) -> Result<Option<Value>, Value> {
    let (Some(s), ReadFrom::After(gt)) = (r.stream(key)?, from) else {
        return Ok(None);
    };
    let Some(start) = gt.next() else {
        return Ok(None);
    };
    if s.entries.range(start..).next().is_none() {
        return Ok(None);
    }
    Ok(Some(range_value(s, start, StreamId::MAX, count, false)))
}

/// XREADGROUP of one stream (its group exists): with `>`, entries the group was not given
/// yet, now pending with the consumer unless NOACK (`None` if there are none); with an ID,
/// the consumer's own pending entries above it, each delivered once more (a deleted one
/// as its ID and a null).
fn read_group(
    r: &mut Run,
    key: &Arg,
    group: &Arg,
    consumer: &Arg,
    from: ReadFrom,
    count: usize,
    noack: bool,
) -> Result<Option<Value>, Value> {
    let now = r.now;
    let take = if count == 0 { usize::MAX } else { count };
    let (g, c) = (group.as_slice(), consumer.as_slice());
    let served = r.with_stream(key, false, |s| {
        let Some(last_delivered) = s.groups.get(g).map(|g| g.last_id) else {
            return (None, false);
        };
        match from {
            ReadFrom::After(gt) => {
                let grp = s.groups.get_mut(g).expect("looked up above");
                grp.touch_consumer(c, now);
                let Some(start) = gt.next() else {
                    return (Some(Value::Array(Vec::new())), true);
                };
                let ids: Vec<StreamId> = (grp.consumers[c].pel.range(start..))
                    .take(take)
                    .copied()
                    .collect();
                let mut items = Vec::with_capacity(ids.len());
                for id in ids {
                    match s.entries.get(&id) {
                        Some(f) => {
                            items.push(entry_value(id, f));
                            let p = grp
                                .pel
                                .get_mut(&id)
                                .expect("a consumer's ID is the group's");
                            p.delivery_time = now;
                            p.delivery_count = p.delivery_count.saturating_add(1);
                        }
                        None => items.push(Value::Array(vec![id_value(id), Value::NullArray])),
                    }
                }
                (Some(Value::Array(items)), true)
            }
            ReadFrom::New => {
                let new: Vec<StreamId> = (s.entries.range(last_delivered..))
                    .map(|(id, _)| *id)
                    .filter(|id| *id > last_delivered)
                    .take(take)
                    .collect();
                if new.is_empty() {
                    return (None, false);
                }
                let mut items = Vec::with_capacity(new.len());
                for id in new {
                    let read = {
                        let grp = &s.groups[g];
                        match grp.entries_read {
                            Some(n) if !s.range_has_tombstones(id, StreamId::MAX) => {
                                Some(n.saturating_add(1))
                            }
                            _ if s.entries_added > 0 => s.entries_read_at(id),
                            other => other,
                        }
                    };
                    items.push(entry_value(id, &s.entries[&id]));
                    let grp = s.groups.get_mut(g).expect("looked up above");
                    grp.entries_read = read;
                    grp.last_id = id;
                    grp.touch_consumer(c, now);
                    if !noack {
                        let p = grp.assign(id, c, now);
                        p.delivery_time = now;
                        p.delivery_count = 1;
                    }
                }
                (Some(Value::Array(items)), true)
            }
        }
    })?;
    Ok(served.flatten())
}

fn no_group(key: &Arg, group: &Arg) -> Value {
    Value::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        lossy(key),
        lossy(group)
    ))
}

/// The key's group, for a read.
fn group_of<'a>(r: &'a Run, key: &Arg, group: &Arg) -> Result<&'a Group, Value> {
    r.stream(key)?
        .and_then(|s| s.groups.get(group.as_slice()))
        .ok_or_else(|| no_group(key, group))
}

/// `XACK key group id [id …]`.
fn xack(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        let exists = r
            .stream(&a[1])?
            .is_some_and(|s| s.groups.contains_key(a[2].as_slice()));
        if !exists {
            return Ok(Value::Integer(0));
        }
        let ids = a[3..]
            .iter()
            .map(strict_id)
            .collect::<Result<Vec<_>, _>>()?;
        let acked = r.with_stream(&a[1], false, |s| {
            let g = s.groups.get_mut(a[2].as_slice()).expect("checked above");
            let n = ids.into_iter().filter(|id| g.ack(*id)).count();
            (n, n > 0)
        })?;
        Ok(Value::Integer(acked.unwrap_or(0) as i64))
    })())
}

/// `XPENDING key group [[IDLE min-idle] start end count [consumer]]`.
fn xpending(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        if a.len() != 3 && !(6..=9).contains(&a.len()) {
            return Err(syntax_error());
        }
        let mut range = None;
        if a.len() >= 6 {
            let mut at = 3;
            let mut min_idle = 0i64;
            if is(&a[3], "idle") {
                min_idle = int(&a[4])?;
                if a.len() < 8 {
                    return Err(syntax_error());
                }
                at += 2;
            }
            let count = int(&a[at + 2])?.max(0);
            let (mut start, ex) = bound(&a[at], 0)?;
            if ex {
                start = start
                    .next()
                    .ok_or_else(|| Value::error("ERR invalid start ID for the interval"))?;
            }
            let (mut end, ex) = bound(&a[at + 1], u64::MAX)?;
            if ex {
                end = end
                    .prev()
                    .ok_or_else(|| Value::error("ERR invalid end ID for the interval"))?;
            }
            range = Some((min_idle, start, end, count as u64, a.get(at + 3)));
        }
        let now = r.now;
        let g = group_of(r, &a[1], &a[2])?;
        let Some((min_idle, start, end, count, consumer)) = range else {
            let (Some(first), Some(last)) = (g.pel.keys().next(), g.pel.keys().next_back()) else {
                return Ok(Value::Array(vec![
                    Value::Integer(0),
                    Value::Null,
                    Value::Null,
                    Value::NullArray,
                ]));
            };
            let per_consumer = (g.consumers.iter())
                .filter(|(_, c)| !c.pel.is_empty())
                .map(|(n, c)| {
                    Value::Array(vec![
                        Value::Bulk(n.clone()),
                        Value::Bulk(c.pel.len().to_string().into_bytes()),
                    ])
                })
                .collect();
            return Ok(Value::Array(vec![
                Value::Integer(g.pel.len() as i64),
                id_value(*first),
                id_value(*last),
                Value::Array(per_consumer),
            ]));
        };
        let ids: Box<dyn Iterator<Item = StreamId>> = match consumer {
            Some(c) => match g.consumers.get(c.as_slice()) {
                None => return Ok(Value::Array(Vec::new())),
                Some(c) => Box::new(c.pel.iter().copied()),
            },
            None => Box::new(g.pel.keys().copied()),
        };
        if start > end || count == 0 {
            return Ok(Value::Array(Vec::new()));
        }
        let mut out = Vec::new();
        for id in ids.skip_while(|id| *id < start).take_while(|id| *id <= end) {
            if out.len() as u64 >= count {
                break;
            }
            let p = &g.pel[&id];
            let idle = now.saturating_sub(p.delivery_time);
            if min_idle > 0 && (idle as i64) < min_idle {
                continue;
            }
            out.push(Value::Array(vec![
                id_value(id),
                Value::Bulk(p.consumer.clone()),
                Value::Integer(idle as i64),
                Value::Integer(p.delivery_count as i64),
            ]));
        }
        Ok(Value::Array(out))
    })())
}

/// An integer argument with Redis's message for it when it is not one.
fn int_or(arg: &Arg, message: &str) -> Result<i64, Value> {
    flotilla_resp::parse_i64(arg.as_slice()).ok_or_else(|| Value::error(format!("ERR {message}")))
}

/// `XCLAIM key group consumer min-idle id [id …] [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id]`.
fn xclaim(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        group_of(r, &a[1], &a[2])?;
        let min_idle = int_or(&a[4], "Invalid min-idle-time argument for XCLAIM")?.max(0) as u64;
        // The IDs run until the first argument that is not one; the options follow.
        let mut ids = Vec::new();
        let mut j = 5;
        while j < a.len() {
            match strict_id(&a[j]) {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
            j += 1;
        }
        let now = r.now;
        let (mut force, mut justid) = (false, false);
        let mut delivery: Option<i64> = None;
        let mut retry: Option<i64> = None;
        let mut last_id = StreamId::MIN;
        while j < a.len() {
            let more = a.len() - 1 - j;
            let o = &a[j];
            if is(o, "force") {
                force = true;
            } else if is(o, "justid") {
                justid = true;
            } else if is(o, "idle") && more > 0 {
                j += 1;
                let idle = int_or(&a[j], "Invalid IDLE option argument for XCLAIM")?;
                delivery = Some((now as i64).saturating_sub(idle));
            } else if is(o, "time") && more > 0 {
                j += 1;
                delivery = Some(int_or(&a[j], "Invalid TIME option argument for XCLAIM")?);
            } else if is(o, "retrycount") && more > 0 {
                j += 1;
                retry = Some(int_or(
                    &a[j],
                    "Invalid RETRYCOUNT option argument for XCLAIM",
                )?);
            } else if is(o, "lastid") && more > 0 {
                j += 1;
                last_id = strict_id(&a[j])?;
            } else {
                return Err(Value::error(format!(
                    "ERR Unrecognized XCLAIM option '{}'",
                    lossy(o)
                )));
            }
            j += 1;
        }
        let delivery = match delivery {
            Some(t) if t >= 0 && (t as u64) <= now => t as u64,
            _ => now,
        };
        let (g, c) = (a[2].as_slice(), a[3].as_slice());
        let out = r.with_stream(&a[1], false, |s| {
            let mut changed = false;
            let grp = s.groups.get_mut(g).expect("checked above");
            if last_id > grp.last_id {
                grp.last_id = last_id;
                changed = true;
            }
            let mut out = Vec::new();
            for id in ids {
                let grp = s.groups.get_mut(g).expect("checked above");
                let pending = grp.pel.get(&id).map(|p| p.delivery_time);
                if !s.entries.contains_key(&id) {
                    // A pending message whose entry is gone is dropped.
                    if pending.is_some() {
                        grp.ack(id);
                        changed = true;
                    }
                    continue;
                }
                match pending {
                    Some(t) if min_idle > 0 && now.saturating_sub(t) < min_idle => continue,
                    Some(_) => {}
                    None if force => {}
                    None => continue,
                }
                grp.touch_consumer(c, now);
                let created = pending.is_none();
                let p = grp.assign(id, c, now);
                if created {
                    // Redis's new NACK starts at one delivery.
                    p.delivery_count = 1;
                }
                p.delivery_time = delivery;
                match retry {
                    Some(n) if n >= 0 => p.delivery_count = n as u64,
                    _ if !justid => p.delivery_count += 1,
                    _ => {}
                }
                changed = true;
                out.push(if justid {
                    id_value(id)
                } else {
                    entry_value(id, &s.entries[&id])
                });
            }
            (Value::Array(out), changed)
        })?;
        Ok(out.unwrap_or_else(|| Value::Array(Vec::new())))
    })())
}

/// The most entries one XAUTOCLAIM may claim (Redis's bound, so that `count × 10` attempts
/// cannot overflow).
const MAX_AUTOCLAIM: i64 = i64::MAX / 16;

/// `XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]`.
fn xautoclaim(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        let min_idle =
            int_or(&a[4], "Invalid min-idle-time argument for XAUTOCLAIM")?.max(0) as u64;
        let (mut start, ex) = bound(&a[5], 0)?;
        if ex {
            start = start
                .next()
                .ok_or_else(|| Value::error("ERR invalid start ID for the interval"))?;
        }
        let mut count: i64 = 100;
        let mut justid = false;
        let mut j = 6;
        while j < a.len() {
            let more = a.len() - 1 - j;
            if is(&a[j], "count") && more > 0 {
                count = flotilla_resp::parse_i64(a[j + 1].as_slice())
                    .filter(|n| (1..=MAX_AUTOCLAIM).contains(n))
                    .ok_or_else(|| Value::error("ERR COUNT must be > 0"))?;
                j += 1;
            } else if is(&a[j], "justid") {
                justid = true;
            } else {
                return Err(syntax_error());
            }
            j += 1;
        }
        group_of(r, &a[1], &a[2])?;
        let now = r.now;
        let (g, c) = (a[2].as_slice(), a[3].as_slice());
        let out = r.with_stream(&a[1], false, |s| {
            let mut count = count as u64;
            let mut attempts = count.saturating_mul(10);
            let mut claimed = Vec::new();
            let mut deleted = Vec::new();
            let mut cursor = start;
            let mut next = StreamId::MIN;
            loop {
                let grp = s.groups.get_mut(g).expect("checked above");
                let Some(id) = grp.pel.range(cursor..).next().map(|(id, _)| *id) else {
                    break;
                };
                if attempts == 0 || count == 0 {
                    next = id;
                    break;
                }
                attempts -= 1;
                cursor = match id.next() {
                    Some(n) => n,
                    None => StreamId::MAX,
                };
                if !s.entries.contains_key(&id) {
                    grp.ack(id);
                    deleted.push(id_value(id));
                    count -= 1;
                    if id == StreamId::MAX {
                        break;
                    }
                    continue;
                }
                if min_idle > 0 && now.saturating_sub(grp.pel[&id].delivery_time) < min_idle {
                    if id == StreamId::MAX {
                        break;
                    }
                    continue;
                }
                grp.touch_consumer(c, now);
                let p = grp.assign(id, c, now);
                p.delivery_time = now;
                if !justid {
                    p.delivery_count = p.delivery_count.saturating_add(1);
                }
                claimed.push(if justid {
                    id_value(id)
                } else {
                    entry_value(id, &s.entries[&id])
                });
                count -= 1;
                if id == StreamId::MAX {
                    break;
                }
            }
            let changed = !claimed.is_empty() || !deleted.is_empty();
            (
                Value::Array(vec![
                    id_value(next),
                    Value::Array(claimed),
                    Value::Array(deleted),
                ]),
                changed,
            )
        })?;
        Ok(out.expect("checked above"))
    })())
}

fn xgroup_syntax_error(a: &[Arg]) -> Value {
    subcommand_syntax_error(a)
}

/// `XGROUP CREATE key group (id|$) [MKSTREAM] [ENTRIESREAD n]`, `XGROUP SETID key group
/// (id|$) [ENTRIESREAD n]`, `XGROUP DESTROY key group`, `XGROUP CREATECONSUMER key group
/// consumer`, `XGROUP DELCONSUMER key group consumer`, as Redis's `xgroupCommand`.
fn xgroup(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        let sub = String::from_utf8_lossy(a[1].as_slice()).to_ascii_lowercase();
        let mut mkstream = false;
        let mut entries_read: Option<u64> = None;
        let mut i = 5;
        while i < a.len() {
            if sub == "create" && is(&a[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if (sub == "create" || sub == "setid")
                && is(&a[i], "entriesread")
                && i + 1 < a.len()
            {
                let n = int(&a[i + 1])?;
                if n < -1 {
                    return Err(Value::error(
                        "ERR value for ENTRIESREAD must be positive or -1",
                    ));
                }
                entries_read = u64::try_from(n).ok();
                i += 2;
            } else {
                return Err(xgroup_syntax_error(a));
            }
        }
        let (key, name) = (&a[2], a[3].as_slice());
        let s = r.stream(key)?;
        let exists = s.is_some_and(|s| s.groups.contains_key(name));
        if !mkstream {
            if s.is_none() {
                return Err(Value::error(
                    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
                ));
            }
            if !exists && matches!(sub.as_str(), "setid" | "createconsumer" | "delconsumer") {
                return Err(Value::error(format!(
                    "NOGROUP No such consumer group '{}' for key name '{}'",
                    lossy(&a[3]),
                    lossy(key)
                )));
            }
        }
        let last = s.map_or(StreamId::MIN, |s| s.last_id);
        let now = r.now;
        match (sub.as_str(), a.len()) {
            ("create", 5..=8) => {
                let id = match a[4].as_slice() {
                    b"$" => last,
                    _ => strict_id(&a[4])?,
                };
                if exists {
                    return Err(Value::error("BUSYGROUP Consumer Group name already exists"));
                }
                r.with_stream(key, true, |s| {
                    let g = Group {
                        last_id: id,
                        entries_read,
                        ..Group::default()
                    };
                    s.groups.insert(name.to_vec(), g);
                    ((), true)
                })?;
                Ok(Value::ok())
            }
            ("setid", 5 | 7) => {
                let id = match a[4].as_slice() {
                    b"$" => last,
                    _ => parse_id(a[4].as_slice(), 0, false, false)?.0,
                };
                r.with_stream(key, false, |s| {
                    let g = s.groups.get_mut(name).expect("checked above");
                    g.last_id = id;
                    g.entries_read = entries_read;
                    ((), true)
                })?;
                Ok(Value::ok())
            }
            ("destroy", 4) => {
                let gone = r.with_stream(key, false, |s| {
                    let gone = s.groups.remove(name).is_some();
                    (gone, gone)
                })?;
                Ok(Value::Integer(i64::from(gone == Some(true))))
            }
            ("createconsumer", 5) => {
                let created = r.with_stream(key, false, |s| {
                    let g = s.groups.get_mut(name).expect("checked above");
                    if g.consumers.contains_key(a[4].as_slice()) {
                        return (false, false);
                    }
                    g.touch_consumer(a[4].as_slice(), now);
                    (true, true)
                })?;
                Ok(Value::Integer(i64::from(created == Some(true))))
            }
            ("delconsumer", 5) => {
                let pending = r.with_stream(key, false, |s| {
                    let g = s.groups.get_mut(name).expect("checked above");
                    match g.remove_consumer(a[4].as_slice()) {
                        Some(n) => (n, true),
                        None => (0, false),
                    }
                })?;
                Ok(Value::Integer(pending.unwrap_or(0) as i64))
            }
            _ => Err(xgroup_syntax_error(a)),
        }
    })())
}

/// `XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]`.
fn xsetid(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        let id = strict_id(&a[2])?;
        let mut entries_added: Option<u64> = None;
        let mut max_deleted = StreamId::MIN;
        let mut i = 3;
        while i < a.len() {
            let more = a.len() - 1 - i;
            if is(&a[i], "entriesadded") && more > 0 {
                let n = int(&a[i + 1])?;
                if n < 0 {
                    return Err(Value::error("ERR entries_added must be positive"));
                }
                entries_added = Some(n as u64);
            } else if is(&a[i], "maxdeletedid") && more > 0 {
                max_deleted = strict_id(&a[i + 1])?;
                if id < max_deleted {
                    return Err(Value::error(
                        "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                    ));
                }
            } else {
                return Err(syntax_error());
            }
            i += 2;
        }
        let Some(s) = r.stream(&a[1])? else {
            return Err(Value::error("ERR no such key"));
        };
        if let Some(top) = s.entries.keys().next_back() {
            if id < *top {
                return Err(Value::error(
                    "ERR The ID specified in XSETID is smaller than the target stream top item",
                ));
            }
            if entries_added.is_some_and(|n| (s.len() as u64) > n) {
                return Err(Value::error(
                    "ERR The entries_added specified in XSETID is smaller than the target stream length",
                ));
            }
        }
        r.with_stream(&a[1], false, |s| {
            s.last_id = id;
            if let Some(n) = entries_added {
                s.entries_added = n;
            }
            if max_deleted != StreamId::MIN {
                s.max_deleted_id = max_deleted;
            }
            ((), true)
        })?;
        Ok(Value::ok())
    })())
}

fn subcommand_syntax_error(a: &[Arg]) -> Value {
    Value::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(&a[1].as_slice()[..a[1].as_slice().len().min(128)]),
        String::from_utf8_lossy(a[0].as_slice()).to_uppercase()
    ))
}

/// `XINFO STREAM key [FULL [COUNT n]]`.
fn xinfo_stream(r: &mut Run, a: &[Arg]) -> Value {
    super::reply((|| {
        let opts = &a[3..];
        let mut full = false;
        let mut count: i64 = 10;
        if !opts.is_empty() {
            if (opts.len() != 1 && opts.len() != 3) || !is(&opts[0], "full") {
                return Err(subcommand_syntax_error(a));
            }
            full = true;
            if opts.len() == 3 {
                if !is(&opts[1], "count") {
                    return Err(subcommand_syntax_error(a));
                }
                count = int(&opts[2])?;
                if count < 0 {
                    count = 10;
                }
            }
        }
        let Some(s) = r.stream(&a[2])? else {
            return Err(Value::error("ERR no such key"));
        };
        let b = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let mut map = vec![
            (b("length"), Value::Integer(s.len() as i64)),
            (b("radix-tree-keys"), Value::Integer(s.nodes.len() as i64)),
            // Redis counts its radix tree's inner nodes too; one per key and a root here.
            (
                b("radix-tree-nodes"),
                Value::Integer(s.nodes.len() as i64 + 1),
            ),
            (b("last-generated-id"), id_value(s.last_id)),
            (b("max-deleted-entry-id"), id_value(s.max_deleted_id)),
            (b("entries-added"), Value::Integer(s.entries_added as i64)),
            (b("recorded-first-entry-id"), id_value(s.first_id())),
        ];
        if full {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            map.push((
                b("entries"),
                range_value(s, StreamId::MIN, StreamId::MAX, count, false),
            ));
            let groups = (s.groups.iter())
                .map(|(name, g)| group_full(s, name, g, count))
                .collect();
            map.push((b("groups"), Value::Array(groups)));
        } else {
            let edge = |rev: bool| {
                let e = if rev {
                    s.entries.iter().next_back()
                } else {
                    s.entries.iter().next()
                };
                e.map_or(Value::Null, |(id, f)| entry_value(*id, f))
            };
            map.push((b("groups"), Value::Integer(s.groups.len() as i64)));
            map.push((b("first-entry"), edge(false)));
            map.push((b("last-entry"), edge(true)));
        }
        Ok(Value::Map(map))
    })())
}

fn b(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn entries_read_value(g: &Group) -> Value {
    g.entries_read
        .map_or(Value::Null, |n| Value::Integer(n as i64))
}

fn lag_value(s: &Stream, g: &Group) -> Value {
    s.lag(g).map_or(Value::Null, |n| Value::Integer(n as i64))
}

/// A group in XINFO STREAM FULL: its pending messages and each consumer's, at most `count`
/// of each (0: all).
fn group_full(s: &Stream, name: &[u8], g: &Group, count: usize) -> Value {
    let take = if count == 0 { usize::MAX } else { count };
    let pending = (g.pel.iter().take(take))
        .map(|(id, p)| {
            Value::Array(vec![
                id_value(*id),
                Value::Bulk(p.consumer.clone()),
                Value::Integer(p.delivery_time as i64),
                Value::Integer(p.delivery_count as i64),
            ])
        })
        .collect();
    let consumers = (g.consumers.iter())
        .map(|(n, c)| {
            let pending = (c.pel.iter().take(take))
                .map(|id| {
                    let p = &g.pel[id];
                    Value::Array(vec![
                        id_value(*id),
                        Value::Integer(p.delivery_time as i64),
                        Value::Integer(p.delivery_count as i64),
                    ])
                })
                .collect();
            Value::Map(vec![
                (b("name"), Value::Bulk(n.clone())),
                (b("seen-time"), Value::Integer(c.seen_time as i64)),
                (b("pel-count"), Value::Integer(c.pel.len() as i64)),
                (b("pending"), Value::Array(pending)),
            ])
        })
        .collect();
    Value::Map(vec![
        (b("name"), Value::Bulk(name.to_vec())),
        (b("last-delivered-id"), id_value(g.last_id)),
        (b("entries-read"), entries_read_value(g)),
        (b("lag"), lag_value(s, g)),
        (b("pel-count"), Value::Integer(g.pel.len() as i64)),
        (b("pending"), Value::Array(pending)),
        (b("consumers"), Value::Array(consumers)),
    ])
}

/// `XINFO GROUPS key`.
fn xinfo_groups(r: &mut Run, a: &[Arg]) -> Value {
    match r.stream(&a[2]) {
        Err(e) => e,
        Ok(None) => Value::error("ERR no such key"),
        Ok(Some(s)) => Value::Array(
            (s.groups.iter())
                .map(|(name, g)| {
                    Value::Map(vec![
                        (b("name"), Value::Bulk(name.clone())),
                        (b("consumers"), Value::Integer(g.consumers.len() as i64)),
                        (b("pending"), Value::Integer(g.pel.len() as i64)),
                        (b("last-delivered-id"), id_value(g.last_id)),
                        (b("entries-read"), entries_read_value(g)),
                        (b("lag"), lag_value(s, g)),
                    ])
                })
                .collect(),
        ),
    }
}

/// `XINFO CONSUMERS key group`.
fn xinfo_consumers(r: &mut Run, a: &[Arg]) -> Value {
    let now = r.now;
    let s = match r.stream(&a[2]) {
        Err(e) => return e,
        Ok(None) => return Value::error("ERR no such key"),
        Ok(Some(s)) => s,
    };
    let Some(g) = s.groups.get(a[3].as_slice()) else {
        return Value::error(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            lossy(&a[3]),
            lossy(&a[2])
        ));
    };
    Value::Array(
        (g.consumers.iter())
            .map(|(n, c)| {
                Value::Map(vec![
                    (b("name"), Value::Bulk(n.clone())),
                    (b("pending"), Value::Integer(c.pel.len() as i64)),
                    (
                        b("idle"),
                        Value::Integer(now.saturating_sub(c.seen_time) as i64),
                    ),
                ])
            })
            .collect(),
    )
}

const XINFO_HELP: &[&str] = &[
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
];

const XGROUP_HELP: &[&str] = &[
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
];

/// Redis's `addReplyHelp`: a title line, the lines, then HELP's own.
fn help(command: &str, lines: &[&str]) -> Value {
    let mut out = vec![Value::simple(format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    out.extend(lines.iter().map(|l| Value::simple(*l)));
    out.push(Value::simple("HELP"));
    out.push(Value::simple("    Print this help."));
    Value::Array(out)
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
