//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Between MULTI and EXEC a connection's commands are queued (`+QUEUED`), not run. EXEC sends
//! the queued key/value commands as one [`KvCommand::Multi`]: one log entry, applied at one
//! index with nothing between them, after checking the versions of the WATCHed keys (taken
//! by WATCH with [`KvCommand::Versions`]); if one changed, nothing runs and EXEC answers a
//! null array. A command refused while queueing (unknown, wrong arity, keys of another shard)
//! makes EXEC discard everything (`EXECABORT`), as in Redis: a transaction is applied whole
//! or not at all. Commands the router answers itself (PING, ECHO …) are answered at EXEC, in
//! their place among the replies.
//!
//! Memory and replica limits (`limits.rs`) refuse a command when it is queued, and the whole
//! transaction at EXEC.
//!
//! In a sharded cluster every key of a transaction, watched keys included, must be in one
//! shard (hash tags: `{user:1}.name`), else CROSSSLOT; keyless commands cannot be queued.

use flotilla_kv::{Arg, KvCommand};
use flotilla_resp::{Command, Value};

use super::data::{crossslot, redis_reply};
use super::Reply;
use crate::conn::{Conn, Transaction};
use crate::listener::Router;

/// `MULTI`.
pub(super) fn multi(conn: &mut Conn) -> Reply {
    if conn.tx.is_some() {
        return Err(Value::error("ERR MULTI calls can not be nested"));
    }
    conn.tx = Some(Transaction::default());
    Ok(Value::ok())
}

/// `DISCARD`.
pub(super) fn discard(conn: &mut Conn) -> Reply {
    if conn.tx.take().is_none() {
        return Err(Value::error("ERR DISCARD without MULTI"));
    }
    conn.watched.clear();
    Ok(Value::ok())
}

/// Queues `cmd` in the open transaction; an error reply (and the transaction marked to be
/// discarded) if it cannot be part of one.
pub(super) async fn queue(r: &Router, conn: &mut Conn, cmd: Command) -> Value {
    if let Command::Data { args, .. } = &cmd {
        if let Some(refused) = super::limits::refusal(r, conn, super::limits::flags_of(args)).await
        {
            conn.tx.as_mut().expect("inside MULTI").failed = true;
            return refused;
        }
    }
    let tx = conn.tx.as_mut().expect("queue is called inside MULTI");
    if let Command::Data { name, .. } = &cmd {
        if r.nshards().is_some() {
            let spec = flotilla_resp::find_command(name.as_bytes()).expect("parsed");
            if !spec.has_keys() {
                tx.failed = true;
                return Value::error(format!(
                    "ERR {} cannot run inside MULTI on a sharded cluster (it spans every shard)",
                    name.to_uppercase()
                ));
            }
            let mut shards = r.shards_of(cmd.keys().into_iter());
            shards.extend(tx.shard);
            shards.sort_unstable();
            shards.dedup();
            if shards.len() > 1 {
                tx.failed = true;
                return crossslot();
            }
            tx.shard = shards.first().copied();
        }
    }
    tx.queued.push(cmd);
    Value::simple("QUEUED")
}

/// `WATCH key [key ...]`: remembers each key's version now. The keys may be in several
/// shards (EXEC says what a transaction can then do).
pub(super) async fn watch(r: &Router, conn: &mut Conn, keys: Vec<Vec<u8>>) -> Reply {
    if conn.tx.is_some() {
        return Err(Value::error("ERR WATCH inside MULTI is not allowed"));
    }
    let versions = versions(r, conn, &keys).await?;
    for (k, v) in keys.into_iter().zip(versions) {
        if !conn.watched.iter().any(|(w, _)| *w == k) {
            conn.watched.push((k, v));
        }
    }
    Ok(Value::ok())
}

/// The versions of `keys` now, asked of each shard they are in.
async fn versions(r: &Router, conn: &mut Conn, keys: &[Vec<u8>]) -> Result<Vec<u64>, Value> {
    let mut out = vec![0; keys.len()];
    let shards = r.shards_of(keys.iter().map(Vec::as_slice));
    for shard in shards {
        let part: Vec<usize> = (0..keys.len())
            .filter(|&i| r.shard_of(&keys[i]) == shard)
            .collect();
        let cmd = KvCommand::Versions {
            keys: part.iter().map(|&i| Arg::from(keys[i].clone())).collect(),
        };
        match r.call(conn, cmd).await? {
            flotilla_kv::KvReply::Versions(v) if v.len() == part.len() => {
                for (i, v) in part.into_iter().zip(v) {
                    out[i] = v;
                }
            }
            other => return Err(super::unexpected(other)),
        }
    }
    Ok(out)
}

/// `UNWATCH`.
pub(super) fn unwatch(conn: &mut Conn) -> Reply {
    conn.watched.clear();
    Ok(Value::ok())
}

/// `EXEC`.
pub(super) async fn exec(r: &Router, conn: &mut Conn) -> Reply {
    let Some(tx) = conn.tx.take() else {
        return Err(Value::error("ERR EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut conn.watched);
    // The limits again, over every queued command's flags: memory or replicas may have
    // changed since they were queued.
    let mut flags: Vec<&str> = Vec::new();
    for cmd in &tx.queued {
        if let Command::Data { args, .. } = cmd {
            flags.extend(super::limits::flags_of(args));
        }
    }
    if let Some(refused) = super::limits::refusal(r, conn, &flags).await {
        let why = match &refused {
            Value::Error(e) => e.clone(),
            other => format!("{other:?}"),
        };
        return Err(Value::error(format!(
            "EXECABORT Transaction discarded because of: {why}"
        )));
    }
    if tx.failed {
        return Err(Value::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    let mut shards = r.shards_of(watched.iter().map(|(k, _)| k.as_slice()));
    shards.extend(tx.shard);
    shards.sort_unstable();
    shards.dedup();
    let has_data = tx.queued.iter().any(|c| matches!(c, Command::Data { .. }));
    let mut watched = watched;
    if shards.len() > 1 {
        // Writes are checked against the watched keys in the same entry, so they must share
        // its shard. A transaction that writes nothing only needs to know whether a watched
        // key changed: each shard is asked, and nothing is applied either way.
        if has_data {
            return Err(crossslot());
        }
        let keys: Vec<Vec<u8>> = watched.iter().map(|(k, _)| k.clone()).collect();
        let now = versions(r, conn, &keys).await?;
        if watched.iter().zip(now).any(|((_, then), now)| *then != now) {
            return Ok(Value::NullArray);
        }
        watched.clear();
    }
    let mut data = Vec::new();
    let mut local = Vec::new();
    let mut woken: Vec<Vec<u8>> = Vec::new();
    for (i, cmd) in tx.queued.into_iter().enumerate() {
        match cmd {
            Command::Data { args, .. } => {
                woken.extend(super::wakes(r, &args).into_iter().flatten());
                data.push(args.into_iter().map(Arg::from).collect())
            }
            other => local.push((i, other)),
        }
    }
    let mut results = if data.is_empty() && watched.is_empty() {
        Vec::new()
    } else {
        let multi = KvCommand::Multi {
            watch: (watched.into_iter())
                .map(|(k, v)| (Arg::from(k), v))
                .collect(),
            cmds: data,
        };
        match redis_reply(r.call(conn, multi).await?) {
            Ok(Value::Array(results)) => results,
            Ok(Value::NullArray) => return Ok(Value::NullArray),
            Ok(other) => return Err(super::unexpected(flotilla_kv::KvReply::Redis(other))),
            Err(e) => return Err(e),
        }
    };
    r.wakeups.wake(woken.iter().map(Vec::as_slice));
    for (i, cmd) in local {
        let (reply, _) = Box::pin(super::dispatch(r, conn, cmd)).await;
        results.insert(i.min(results.len()), reply);
    }
    Ok(Value::Array(results))
}
