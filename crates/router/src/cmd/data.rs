//! Key/value commands (every [`Command::Data`](flotilla_resp::Command::Data)): sent to the
//! service as their arguments, where the engine (`flotilla_kv::engine`) runs them. What the
//! router decides is where each runs:
//!
//! * a command on keys of one shard (or any command on a single group) runs as it is, in one
//!   entry, so a multi-key command is atomic;
//! * MGET, MSET, DEL, UNLINK, EXISTS, TOUCH on keys of several shards run as one command per
//!   shard (each atomic), their answers combined;
//! * any other command on keys of several shards is refused with Redis Cluster's CROSSSLOT;
//! * a keyless command (KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHALL, FLUSHDB) runs once per shard
//!   in a sharded cluster, its `route` naming the shard, the answers combined; SCAN's cursor
//!   keeps the shard above the shard's own cursor
//!   ([`flotilla_kv::engine::SCAN_CURSOR_BITS`]).

use flotilla_kv::engine::SCAN_CURSOR_BITS;
use flotilla_kv::{Arg, KvCommand, KvReply};
use flotilla_resp::{find_command, Value};

use super::{unexpected, Reply};
use crate::conn::Conn;
use crate::listener::Router;

/// Multi-key commands that may be split by shard, and how their answers combine.
const SPLITTABLE: &[&str] = &["mget", "mset", "del", "unlink", "exists", "touch"];

/// Redis Cluster's refusal of a command whose keys are in different slots.
pub(super) fn crossslot() -> Value {
    Value::error("CROSSSLOT Keys in request don't hash to the same slot")
}

/// Runs the data command `name` with `args` (name first).
pub(super) async fn run(r: &Router, conn: &mut Conn, name: &str, args: Vec<Vec<u8>>) -> Reply {
    let spec = find_command(name.as_bytes()).expect("a parsed command has a spec");
    let args: Vec<Arg> = args.into_iter().map(Arg::from).collect();
    if !spec.has_keys() {
        return keyless(r, conn, name, args).await;
    }
    let shards = r.shards_of(
        spec.key_positions(&args)
            .into_iter()
            .map(|i| args[i].as_slice()),
    );
    if shards.len() <= 1 {
        return one(r, conn, args, None).await;
    }
    if !SPLITTABLE.contains(&name) {
        return Err(crossslot());
    }
    split(r, conn, name, args, shards).await
}

/// Runs one command as one entry.
async fn one(r: &Router, conn: &mut Conn, args: Vec<Arg>, route: Option<Vec<u8>>) -> Reply {
    redis_reply(r.call(conn, KvCommand::Redis { args, route }).await?)
}

/// The engine's answer (its errors included) as a reply.
pub(super) fn redis_reply(reply: KvReply) -> Reply {
    match reply {
        KvReply::Redis(Value::Error(e)) => Err(Value::Error(e)),
        KvReply::Redis(v) => Ok(v),
        other => Err(unexpected(other)),
    }
}

/// A splittable command on keys of several shards: one command per shard, answers combined
/// in the order of the keys.
async fn split(
    r: &Router,
    conn: &mut Conn,
    name: &str,
    args: Vec<Arg>,
    shards: Vec<usize>,
) -> Reply {
    let step = if name == "mset" { 2 } else { 1 };
    let items: Vec<&[Arg]> = args[1..].chunks(step).collect();
    if name == "mset" && items.last().is_some_and(|i| i.len() != 2) {
        return Err(super::wrong_arity("mset"));
    }
    // Each shard's part, with the positions its keys had.
    let mut parts: Vec<(usize, Vec<usize>, Vec<Arg>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let s = r.shard_of(item[0].as_slice());
        let part = match parts.iter_mut().find(|(shard, _, _)| *shard == s) {
            Some(p) => p,
            None => {
                parts.push((s, Vec::new(), vec![args[0].clone()]));
                parts.last_mut().expect("just pushed")
            }
        };
        part.1.push(i);
        part.2.extend(item.iter().cloned());
    }
    debug_assert_eq!(parts.len(), shards.len());
    let cmds = (parts.iter())
        .map(|(_, _, a)| KvCommand::Redis {
            args: a.clone(),
            route: None,
        })
        .collect();
    let replies = r.call_many(conn, cmds).await?;
    let mut values = Vec::with_capacity(replies.len());
    for reply in replies {
        values.push(redis_reply(reply)?);
    }
    Ok(match name {
        "mget" => {
            let mut out = vec![Value::Null; items.len()];
            for ((_, positions, _), v) in parts.iter().zip(values) {
                let Value::Array(got) = v else {
                    return Err(Value::error(
                        "ERR internal error: MGET answered a non-array",
                    ));
                };
                for (&p, g) in positions.iter().zip(got) {
                    out[p] = g;
                }
            }
            Value::Array(out)
        }
        "mset" => Value::ok(),
        _ => sum_integers(&values),
    })
}

/// A keyless command: on a single group, one command; sharded, one per shard.
async fn keyless(r: &Router, conn: &mut Conn, name: &str, args: Vec<Arg>) -> Reply {
    let Some(n) = r.nshards() else {
        return one(r, conn, args, None).await;
    };
    if name == "scan" {
        return scan(r, conn, args, n).await;
    }
    // Those answered from every shard; any other keyless command (XINFO HELP …) reads no key
    // and is answered by one.
    if !["dbsize", "keys", "randomkey", "flushall", "flushdb"].contains(&name) {
        return one(r, conn, args, Some(r.route_key(0))).await;
    }
    // RANDOMKEY asks the shards in turn from a random one, until one has a key: from shard 0
    // every time, a key of a later shard would come back only when the earlier ones are empty
    // (Redis's test sets two keys and expects both back over 100 calls). The router's own
    // randomness is fine here: nothing replicated depends on it.
    let first = if name == "randomkey" {
        rand::random::<usize>() % n
    } else {
        0
    };
    let mut values = Vec::with_capacity(n);
    for s in (0..n).map(|i| (first + i) % n) {
        let route = Some(r.route_key(s));
        values.push(one(r, conn, args.clone(), route).await?);
        if name == "randomkey" && values.last() != Some(&Value::Null) {
            break;
        }
    }
    Ok(match name {
        "dbsize" => sum_integers(&values),
        "keys" => Value::Array(
            values
                .into_iter()
                .flat_map(|v| match v {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                })
                .collect(),
        ),
        "randomkey" => values.pop().unwrap_or(Value::Null),
        _ => Value::ok(),
    })
}

/// SCAN over shards: the cursor's high bits are the shard, the low bits that shard's cursor.
async fn scan(r: &Router, conn: &mut Conn, mut args: Vec<Arg>, nshards: usize) -> Reply {
    let Some(cursor) = flotilla_kv::engine::parse_cursor(args[1].as_slice()) else {
        return Err(Value::error("ERR invalid cursor"));
    };
    let (shard, inner) = (
        cursor >> SCAN_CURSOR_BITS,
        cursor & ((1 << SCAN_CURSOR_BITS) - 1),
    );
    if shard as usize >= nshards {
        return Ok(Value::Array(vec![
            Value::bulk("0"),
            Value::Array(Vec::new()),
        ]));
    }
    args[1] = Arg::from(inner.to_string().into_bytes());
    let route = Some(r.route_key(shard as usize));
    let Value::Array(mut answer) = one(r, conn, args, route).await? else {
        return Err(Value::error(
            "ERR internal error: SCAN answered a non-array",
        ));
    };
    let next_inner = match answer.first() {
        Some(Value::Bulk(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|c| c.parse::<u64>().ok()),
        _ => None,
    }
    .ok_or_else(|| Value::error("ERR internal error: SCAN answered no cursor"))?;
    let next = if next_inner != 0 {
        (shard << SCAN_CURSOR_BITS) | next_inner
    } else if shard as usize + 1 < nshards {
        (shard + 1) << SCAN_CURSOR_BITS
    } else {
        0
    };
    answer[0] = Value::Bulk(next.to_string().into_bytes());
    Ok(Value::Array(answer))
}

/// The sum of the integer answers of a command's parts (DEL's, EXISTS's, DBSIZE's counts).
fn sum_integers(values: &[Value]) -> Value {
    let sum = values.iter().map(|v| match v {
        Value::Integer(n) => *n,
        _ => 0,
    });
    Value::Integer(sum.sum())
}
