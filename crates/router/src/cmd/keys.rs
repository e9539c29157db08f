//! Commands on keys whatever their values: DEL, EXISTS (and, next, KEYS, SCAN, TYPE, RENAME,
//! EXPIRE, TTL …).

use flotilla_kv::{KvCommand, KvReply};
use flotilla_resp::Value;

use super::Reply;
use crate::conn::Conn;
use crate::listener::Router;

/// `DEL key [key …]`: how many of the keys existed.
pub(super) async fn del(r: &Router, conn: &mut Conn, keys: Vec<Vec<u8>>) -> Reply {
    let dels = keys.into_iter().map(|key| KvCommand::Delete { key });
    let replies = r.call_many(conn, dels.collect()).await?;
    let n = (replies.iter())
        .filter(|r| matches!(r, KvReply::Deleted(true)))
        .count();
    Ok(Value::Integer(n as i64))
}

/// `EXISTS key [key …]`: how many of the keys exist, a key named twice counting twice.
pub(super) async fn exists(r: &Router, conn: &mut Conn, keys: Vec<Vec<u8>>) -> Reply {
    let gets = keys.into_iter().map(|key| KvCommand::Get { key });
    let replies = r.call_many(conn, gets.collect()).await?;
    let n = (replies.iter())
        .filter(|r| matches!(r, KvReply::Value(Some(_))))
        .count();
    Ok(Value::Integer(n as i64))
}
