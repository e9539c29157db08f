//! How command handlers run key/value operations: on the connection's clerk (one operation
//! at a time), within the command timeout; a multi-key command split by group, the groups'
//! parts at once on clerks of their own.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use flotilla_kv::{KvCommand, KvError, KvReply};
use flotilla_resp::Value;
use flotilla_rsm::ClientId;

use crate::conn::Conn;
use crate::listener::Router;

impl Router {
    /// How many shards, for a sharded cluster (`None`: one group).
    pub(crate) fn nshards(&self) -> Option<usize> {
        self.kv.nshards()
    }

    /// The shard of `key` (0 on a single group).
    pub(crate) fn shard_of(&self, key: &[u8]) -> usize {
        self.nshards()
            .map_or(0, |n| flotilla_shardkv::key_shard(key, n))
    }

    /// The distinct shards of `keys`, in order of first appearance.
    pub(crate) fn shards_of<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> Vec<usize> {
        let mut shards = Vec::new();
        for k in keys {
            let s = self.shard_of(k);
            if !shards.contains(&s) {
                shards.push(s);
            }
        }
        shards
    }

    /// The key that routes a keyless command to `shard` (computed once per shard).
    pub(crate) fn route_key(&self, shard: usize) -> Vec<u8> {
        let n = self.nshards().unwrap_or(1);
        let mut keys = self.route_keys.lock().expect("route keys lock");
        if keys.len() != n {
            *keys = (0..n).map(|s| crate::backend::route_key(s, n)).collect();
        }
        keys[shard].clone()
    }

    /// A clerk for a connection: an idle one, else a new one.
    async fn clerk(&self) -> ClientId {
        let reused = self.idle_clerks.lock().expect("idle clerks lock").pop();
        match reused {
            Some(c) => c,
            None => self.kv.new_clerk().await,
        }
    }

    /// Runs one service operation on the connection's clerk. `Err` is the error reply: the
    /// service's error, or no answer in time.
    pub(crate) async fn call(&self, conn: &mut Conn, cmd: KvCommand) -> Result<KvReply, Value> {
        self.call_within(conn, cmd, self.cfg.command_timeout).await
    }

    /// As [`Router::call`], with a time limit of its own: for what must answer promptly even
    /// when the cluster cannot (INFO's key count).
    pub(crate) async fn call_within(
        &self,
        conn: &mut Conn,
        cmd: KvCommand,
        limit: Duration,
    ) -> Result<KvReply, Value> {
        let clerk = match conn.clerk {
            Some(c) => c,
            None => {
                let c = self.clerk().await;
                conn.clerk = Some(c);
                c
            }
        };
        self.call_on_within(clerk, cmd, limit).await
    }

    /// Runs operations on many keys, in the order given when they go to one group. With
    /// shards, the keys are split by the group the connection's clerk last saw holding them;
    /// each group's part runs on a clerk of its own, all at once, and the replies come back
    /// in the order of `cmds`. (A stale split costs only speed: every clerk finds each key's
    /// group itself.) The first error ends the command; parts already applied stay applied.
    pub(crate) async fn call_many(
        &self,
        conn: &mut Conn,
        cmds: Vec<KvCommand>,
    ) -> Result<Vec<KvReply>, Value> {
        if !self.kv.sharded() {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                out.push(self.call(conn, c).await?);
            }
            return Ok(out);
        }
        let mut cmds = cmds.into_iter();
        let mut out = Vec::with_capacity(cmds.len());
        let Some(first) = cmds.next() else {
            return Ok(out);
        };
        // The first key goes alone: it gives a new clerk its first configuration.
        out.push(self.call(conn, first).await?);
        let main = conn
            .clerk
            .expect("the connection's clerk exists after a call");
        let placement = self.kv.placement(main).await;
        let mut parts: Vec<(u64, Vec<(usize, KvCommand)>)> = Vec::new();
        for (i, c) in cmds.enumerate() {
            let gid = placement.group(c.key());
            match parts.iter_mut().find(|(g, _)| *g == gid) {
                Some((_, p)) => p.push((i + 1, c)),
                None => parts.push((gid, vec![(i + 1, c)])),
            }
        }
        while conn.extra.len() + 1 < parts.len() {
            let c = self.clerk().await;
            conn.extra.push(c);
        }
        let clerks = std::iter::once(main).chain(conn.extra.iter().copied());
        let runs: Vec<_> = (parts.into_iter().zip(clerks))
            .map(|((_, part), clerk)| async move {
                let mut done = Vec::with_capacity(part.len());
                for (i, c) in part {
                    done.push((i, self.call_on(clerk, c).await?));
                }
                Ok::<_, Value>(done)
            })
            .collect();
        let mut replies: Vec<(usize, KvReply)> = Vec::new();
        for r in join_all(runs).await {
            replies.extend(r?);
        }
        replies.sort_by_key(|(i, _)| *i);
        out.extend(replies.into_iter().map(|(_, r)| r));
        Ok(out)
    }

    /// Runs one operation on `clerk`, within the command timeout.
    async fn call_on(&self, clerk: ClientId, cmd: KvCommand) -> Result<KvReply, Value> {
        self.call_on_within(clerk, cmd, self.cfg.command_timeout)
            .await
    }

    /// Runs one operation on `clerk`, within `limit`; past it, the clerk abandons the
    /// operation (it may still be applied), so that the clerk is free for the next.
    async fn call_on_within(
        &self,
        clerk: ClientId,
        cmd: KvCommand,
        limit: Duration,
    ) -> Result<KvReply, Value> {
        match tokio::time::timeout(limit, self.kv.call(clerk, cmd)).await {
            Ok(Some(KvReply::Error(e))) => Err(kv_error(&e)),
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(Value::error(
                "ERR internal error: the connection's client is gone",
            )),
            Err(_) => {
                self.kv.abandon(clerk);
                Err(Value::error(format!(
                    "ERR no answer from the cluster within {} s (is a majority of replicas up?); the command may or may not have been applied",
                    limit.as_secs_f64()
                )))
            }
        }
    }
}

/// The service's error as a reply.
fn kv_error(e: &KvError) -> Value {
    Value::error(format!("ERR {e}"))
}

/// Runs `futs` at once (on this task) and returns their outputs in order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *o = Some(v);
                }
            }
        }
        if out.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
