//! Commands on keys whatever their values: DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME,
//! RENAMENX, COPY, and expiry: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME,
//! PEXPIRETIME, PERSIST.

use flotilla_resp::Value;

use super::{int, is, syntax_error, Handler, Run};
use crate::command::Arg;

pub(super) const HANDLERS: &[(&str, Handler)] = &[
    ("del", del),
    ("unlink", del),
    ("exists", exists),
    ("touch", exists),
    ("type", key_type),
    ("rename", |r, a| rename(r, a, false)),
    ("renamenx", |r, a| rename(r, a, true)),
    ("copy", copy),
    ("expire", |r, a| expire(r, a, Base::Now, 1000, "expire")),
    ("pexpire", |r, a| expire(r, a, Base::Now, 1, "pexpire")),
    ("expireat", |r, a| {
        expire(r, a, Base::Epoch, 1000, "expireat")
    }),
    ("pexpireat", |r, a| {
        expire(r, a, Base::Epoch, 1, "pexpireat")
    }),
    ("ttl", |r, a| ttl(r, a, Show::Remaining(1000))),
    ("pttl", |r, a| ttl(r, a, Show::Remaining(1))),
    ("expiretime", |r, a| ttl(r, a, Show::At(1000))),
    ("pexpiretime", |r, a| ttl(r, a, Show::At(1))),
    ("persist", persist),
    ("object|encoding", object_encoding),
    ("object|refcount", object_refcount),
];

fn del(r: &mut Run, a: &[Arg]) -> Value {
    let n = a[1..].iter().filter(|k| r.delete(k.as_slice())).count();
    Value::Integer(n as i64)
}

/// EXISTS and TOUCH: how many of the keys exist, a key named twice counting twice.
fn exists(r: &mut Run, a: &[Arg]) -> Value {
    let n = a[1..].iter().filter(|k| r.exists(k)).count();
    Value::Integer(n as i64)
}

fn key_type(r: &mut Run, a: &[Arg]) -> Value {
    let slot = r.kv.live(a[1].as_slice(), r.now);
    Value::simple(slot.map_or("none", |s| s.value.type_name()))
}

/// RENAME and RENAMENX: the value moves with its TTL.
fn rename(r: &mut Run, a: &[Arg], nx: bool) -> Value {
    let (src, dst) = (&a[1], &a[2]);
    let Some(slot) = r.kv.live(src.as_slice(), r.now).cloned() else {
        return Value::error("ERR no such key");
    };
    if nx && r.exists(dst) {
        return Value::Integer(0);
    }
    if src != dst {
        r.kv.remove(src.as_slice());
        r.store_data(dst, slot.value, slot.expire_at);
    }
    if nx {
        Value::Integer(1)
    } else {
        Value::ok()
    }
}

/// `COPY source destination [DB n] [REPLACE]`: only the one database exists.
fn copy(r: &mut Run, a: &[Arg]) -> Value {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "replace") {
            replace = true;
        } else if is(&a[i], "db") && i + 1 < a.len() {
            match int(&a[i + 1]) {
                Ok(0) => {}
                Ok(_) => return Value::error("ERR DB index is out of range"),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let (src, dst) = (&a[1], &a[2]);
    if src == dst {
        return Value::error("ERR source and destination objects are the same");
    }
    let Some(slot) = r.kv.live(src.as_slice(), r.now).cloned() else {
        return Value::Integer(0);
    };
    if r.exists(dst) && !replace {
        return Value::Integer(0);
    }
    r.store_data(dst, slot.value, slot.expire_at);
    Value::Integer(1)
}

#[derive(Clone, Copy, PartialEq)]
enum Base {
    /// EXPIRE, PEXPIRE: relative to the replicated clock.
    Now,
    /// EXPIREAT, PEXPIREAT: an absolute time.
    Epoch,
}

/// `EXPIRE key n [NX | XX | GT | LT]` and its three siblings, with Redis 7's conditions: NX
/// only without a TTL, XX only with one, GT only to a later time, LT only to an earlier
/// one (no TTL counts as forever). A time already past deletes the key.
fn expire(r: &mut Run, a: &[Arg], base: Base, unit: i64, name: &str) -> Value {
    let n = match int(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[3..] {
        match () {
            _ if is(opt, "nx") => nx = true,
            _ if is(opt, "xx") => xx = true,
            _ if is(opt, "gt") => gt = true,
            _ if is(opt, "lt") => lt = true,
            _ => {
                return Value::error(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(opt.as_slice())
                ))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Value::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Value::error("ERR GT and LT options at the same time are not compatible");
    }
    let invalid = || Value::error(format!("ERR invalid expire time in '{name}' command"));
    let Some(ms) = n.checked_mul(unit) else {
        return invalid();
    };
    let at = match base {
        Base::Now => ms.checked_add(r.now as i64),
        Base::Epoch => Some(ms),
    };
    let Some(at) = at else {
        return invalid();
    };
    let Some(current) = r.expiry(&a[1]) else {
        return Value::Integer(0);
    };
    let forever = current == 0;
    let allowed = (!nx || forever)
        && (!xx || !forever)
        && (!gt || (!forever && at > current as i64))
        && (!lt || forever || at < current as i64);
    if !allowed {
        return Value::Integer(0);
    }
    if at <= r.now as i64 {
        r.delete(a[1].as_slice());
    } else {
        r.kv.set_expiry(a[1].as_slice(), at as u64, r.index);
    }
    Value::Integer(1)
}

#[derive(Clone, Copy)]
enum Show {
    /// TTL, PTTL: time left, in this many ms a unit (seconds rounded as Redis does).
    Remaining(u64),
    /// EXPIRETIME, PEXPIRETIME: the absolute time.
    At(u64),
}

/// -2 for a missing key, -1 for one without a TTL.
fn ttl(r: &mut Run, a: &[Arg], show: Show) -> Value {
    let Some(at) = r.expiry(&a[1]) else {
        return Value::Integer(-2);
    };
    if at == 0 {
        return Value::Integer(-1);
    }
    Value::Integer(match show {
        Show::Remaining(1) => at - r.now,
        Show::Remaining(unit) => (at - r.now + unit / 2) / unit,
        Show::At(unit) => at / unit,
    } as i64)
}

fn persist(r: &mut Run, a: &[Arg]) -> Value {
    match r.expiry(&a[1]) {
        Some(at) if at != 0 => {
            r.kv.set_expiry(a[1].as_slice(), 0, r.index);
            Value::Integer(1)
        }
        _ => Value::Integer(0),
    }
}

/// Whether a set member is one Redis keeps in an intset: an integer in canonical form.
fn is_intset_member(m: &[u8]) -> bool {
    flotilla_resp::parse_i64(m).is_some()
}

/// `OBJECT REFCOUNT key`: 1 for a key that exists. Flotilla shares no values between keys
/// (Redis shares small integers, and answers more for them), so each value has one holder.
fn object_refcount(r: &mut Run, a: &[Arg]) -> Value {
    match r.kv.live(a[2].as_slice(), r.now) {
        Some(_) => Value::Integer(1),
        None => Value::Null,
    }
}

/// `OBJECT ENCODING key`: the encoding Redis would use for the value, by Redis's default
/// thresholds (Flotilla has one encoding per type; clients and tests read this name).
fn object_encoding(r: &mut Run, a: &[Arg]) -> Value {
    use crate::slot::Data;
    let Some(slot) = r.kv.live(a[2].as_slice(), r.now) else {
        return Value::Null;
    };
    let name = match &slot.value {
        Data::Str(v) if v.len() <= 20 && flotilla_resp::parse_i64(v).is_some() => "int",
        Data::Str(v) if v.len() <= 44 => "embstr",
        Data::Str(_) => "raw",
        Data::Hash(h)
            if h.len() <= 128 && h.iter().all(|(f, v)| f.len() <= 64 && v.len() <= 64) =>
        {
            "listpack"
        }
        Data::Hash(_) => "hashtable",
        Data::List(l) if l.len() <= 128 && l.iter().all(|e| e.len() <= 64) => "listpack",
        Data::List(_) => "quicklist",
        Data::Set(m) if m.len() <= 512 && m.iter().all(|e| is_intset_member(e)) => "intset",
        Data::Set(m) if m.len() <= 128 && m.iter().all(|e| e.len() <= 64) => "listpack",
        Data::Set(_) => "hashtable",
        Data::ZSet(z) if z.len() <= 128 && z.by_member().all(|(m, _)| m.len() <= 64) => "listpack",
        Data::ZSet(_) => "skiplist",
        Data::Stream(_) => "stream",
    };
    Value::bulk(name)
}
