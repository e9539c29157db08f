//! String commands: GET, SET, APPEND, INCR, INCRBY, DECR, DECRBY, MGET, MSET (and, next,
//! SETNX, GETSET, GETDEL, STRLEN, GETRANGE, SETRANGE, INCRBYFLOAT, MSETNX …).

use flotilla_kv::{KvCommand, KvReply};
use flotilla_resp::{SetOptions, Value};

use super::{unexpected, Reply};
use crate::conn::Conn;
use crate::listener::Router;

/// `GET key`.
pub(super) async fn get(r: &Router, conn: &mut Conn, key: Vec<u8>) -> Reply {
    Ok(value_reply(r.call(conn, KvCommand::Get { key }).await?))
}

/// `SET key value`; none of its options yet.
pub(super) async fn set(
    r: &Router,
    conn: &mut Conn,
    key: Vec<u8>,
    value: Vec<u8>,
    options: SetOptions,
) -> Reply {
    if options != SetOptions::default() {
        return Err(Value::error("ERR SET options (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL) are not supported by flotilla yet"));
    }
    let put = KvCommand::Put {
        key,
        value: value.into(),
    };
    r.call(conn, put).await?;
    Ok(Value::ok())
}

/// `APPEND key value`: the value's new length.
pub(super) async fn append(r: &Router, conn: &mut Conn, key: Vec<u8>, value: Vec<u8>) -> Reply {
    let append = KvCommand::Append {
        key,
        value: value.into(),
    };
    Ok(match r.call(conn, append).await? {
        KvReply::Len(n) => Value::Integer(n as i64),
        other => unexpected(other),
    })
}

/// `INCR`, `DECR`, `INCRBY`: adds `by` to the key's integer.
pub(super) async fn incr_by(r: &Router, conn: &mut Conn, key: Vec<u8>, by: i64) -> Reply {
    Ok(match r.call(conn, KvCommand::Incr { key, by }).await? {
        KvReply::Int(n) => Value::Integer(n),
        other => unexpected(other),
    })
}

/// `DECRBY key delta`.
pub(super) async fn decr_by(r: &Router, conn: &mut Conn, key: Vec<u8>, delta: i64) -> Reply {
    match delta.checked_neg() {
        Some(by) => incr_by(r, conn, key, by).await,
        // The parser refuses i64::MIN already; kept so that no delta can overflow here.
        None => Err(Value::error("ERR decrement would overflow")),
    }
}

/// `MGET key [key …]`: the values in the order of the keys (split by group when sharded).
pub(super) async fn mget(r: &Router, conn: &mut Conn, keys: Vec<Vec<u8>>) -> Reply {
    let gets = keys.into_iter().map(|key| KvCommand::Get { key });
    let replies = r.call_many(conn, gets.collect()).await?;
    Ok(Value::Array(replies.into_iter().map(value_reply).collect()))
}

/// `MSET key value [key value …]`: not atomic across groups (a part applied stays applied).
pub(super) async fn mset(r: &Router, conn: &mut Conn, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Reply {
    let puts = (pairs.into_iter()).map(|(key, value)| KvCommand::Put {
        key,
        value: value.into(),
    });
    r.call_many(conn, puts.collect()).await?;
    Ok(Value::ok())
}

/// A stored value (or its absence) as a reply.
fn value_reply(r: KvReply) -> Value {
    match r {
        KvReply::Value(Some(v)) => Value::Bulk(v),
        KvReply::Value(None) => Value::Null,
        other => unexpected(other),
    }
}
