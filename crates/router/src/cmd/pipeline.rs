//! Pipelining: a run of a connection's requests already received together becomes one log
//! entry, rather than one entry (and one round trip through the group) each.
//!
//! `session.rs` gathers consecutive requests of the connection's input into a [`Batch`] while
//! each is *batchable*: a key/value command ([`Command::Data`]) that does not block, outside
//! MULTI, on a connection that is authenticated, naming keys all of one shard, and not refused
//! by the limits (`limits.rs`). A batch is bounded ([`MAX_COMMANDS`], [`MAX_BYTES`]) and holds
//! commands of one shard: the first command that does not fit ends it, and the batch runs
//! before that command; one that is not batchable at all then runs the ordinary way
//! (`Router::request`), one of another shard starts the next batch.
//!
//! Sharded, a batch is of one *shard* (not group): a shard group keeps each shard's store and
//! sessions apart (`flotilla_shardkv`), so one entry cannot span shards. A pipeline on keys
//! of many shards (redis-benchmark `-r`) therefore forms runs of one or two commands and
//! gains little; batching by group would take a group command that applies ops of several of
//! its shards in one entry.
//!
//! A batch runs as [`KvCommand::Multi`] without watched keys: the engine applies the commands
//! in order, in one entry, nothing between them, and answers one reply each; an error in one
//! does not stop the others. So every reply is the one the command would have had alone, in
//! order, and the connection's effects are in order, as in Redis, where a connection's
//! commands run one after another too. What differs is only what no client can tell: other
//! connections' commands cannot run between the batch's (in Redis they could, but need not).
//!
//! Reads: a `Multi` is a write (a log entry, `KvCommand::is_read_only`), and a read alone is
//! served by ReadIndex, cheaper than an entry. So a batch starts only at a write: a read with
//! no write before it in the batch runs alone, as before (a pipeline of reads only gains
//! nothing, nor loses). A read after a write of the batch joins it: it would have had to wait
//! for that write to be applied anyway, and in the entry it is still linearizable, in its
//! place among the writes. (This also keeps a pipeline of large reads from being answered all
//! at once: replies are held until their batch is answered, so a client that does not read
//! its replies makes the router hold one batch's replies at most.)
//!
//! Each command is counted as if it ran alone: `total_commands_processed`, commandstats,
//! errorstats, latency (the batch's, from the command's arrival), and its write wakes the
//! clients blocked on its keys.

use std::sync::atomic::Ordering;
use std::time::Instant;

use flotilla_kv::{Arg, KvCommand, KvReply};
use flotilla_resp::{find_command, Command, Value};

use super::data::redis_reply;
use crate::conn::Conn;
use crate::listener::Router;
use crate::stats::Outcome;

/// The most commands in one batch: a large entry delays the entries after it, and its replies
/// are held until it is applied.
pub(crate) const MAX_COMMANDS: usize = 256;
/// The most argument bytes in one batch (one command larger than this runs alone).
pub(crate) const MAX_BYTES: usize = 1 << 20;

/// One batchable command.
pub(crate) struct Batched {
    name: &'static str,
    args: Vec<Vec<u8>>,
    /// When its request was decoded, for its latency.
    started: Instant,
    shard: usize,
    write: bool,
    /// Its arguments' bytes.
    bytes: usize,
}

impl Batched {
    /// When its request was decoded.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The command, to run alone.
    pub(crate) fn into_command(self) -> Command {
        Command::Data {
            name: self.name,
            args: self.args,
        }
    }
}

/// A run of batchable commands of one connection, of one shard, in the order received.
#[derive(Default)]
pub(crate) struct Batch {
    items: Vec<Batched>,
    /// The arguments' bytes of `items`.
    bytes: usize,
    /// The bytes of their requests in the connection's input, given back once answered.
    request_bytes: usize,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `item` may join the batch: same shard, within the bounds; a batch starts with
    /// a write.
    pub(crate) fn admits(&self, item: &Batched) -> bool {
        match self.items.first() {
            None => item.write,
            Some(first) => {
                first.shard == item.shard
                    && self.items.len() < MAX_COMMANDS
                    && self.bytes + item.bytes <= MAX_BYTES
            }
        }
    }

    /// Adds `item`, whose request took `request_bytes` of the input.
    pub(crate) fn push(&mut self, item: Batched, request_bytes: usize) {
        self.bytes += item.bytes;
        self.request_bytes += request_bytes;
        self.items.push(item);
    }

    /// The input bytes of the requests batched.
    pub(crate) fn request_bytes(&self) -> usize {
        self.request_bytes
    }
}

impl Router {
    /// `cmd` as a member of a batch, or `Err(cmd)` if it must run the ordinary way.
    pub(crate) async fn batchable(
        &self,
        conn: &Conn,
        cmd: Command,
        started: Instant,
    ) -> Result<Batched, Command> {
        if conn.tx.is_some() || !conn.authenticated {
            return Err(cmd);
        }
        let Command::Data { name, args } = cmd else {
            return Err(cmd);
        };
        let alone = |args| Err(Command::Data { name, args });
        if super::blocking::blocks(&args) {
            return alone(args);
        }
        let Some(spec) = find_command(name.as_bytes()) else {
            return alone(args);
        };
        if !spec.has_keys() {
            // Keyless commands run on every shard (`data.rs`).
            return alone(args);
        }
        let shards = self.shards_of(
            spec.key_positions(&args)
                .into_iter()
                .map(|i| args[i].as_slice()),
        );
        // No key (an optional key range left empty) or keys of several shards: `data.rs`
        // decides (split, CROSSSLOT …).
        let [shard] = shards[..] else {
            return alone(args);
        };
        let flags = super::limits::flags_of(&args);
        if super::limits::refusal(self, conn, flags).await.is_some() {
            // Refused again, and counted, when it runs alone.
            return alone(args);
        }
        let write = flags.contains(&"write");
        let bytes = args.iter().map(Vec::len).sum();
        Ok(Batched {
            name,
            args,
            started,
            shard,
            write,
            bytes,
        })
    }

    /// Runs the batch (emptying it); the replies, one per command, in order.
    pub(crate) async fn run_batch(&self, conn: &mut Conn, batch: &mut Batch) -> Vec<Value> {
        let mut items = std::mem::take(batch).items;
        if items.len() < 2 {
            // One command: as it would run alone.
            let Some(i) = items.pop() else {
                return Vec::new();
            };
            let started = i.started;
            return vec![self.run_command(conn, i.into_command(), started).await.0];
        }
        let n = items.len();
        let mut woken: Vec<Vec<u8>> = Vec::new();
        let mut cmds = Vec::with_capacity(n);
        let mut counted = Vec::with_capacity(n);
        for i in items {
            self.commands_processed.fetch_add(1, Ordering::Relaxed);
            woken.extend(super::wakes(self, &i.args).into_iter().flatten());
            cmds.push(i.args.into_iter().map(Arg::from).collect());
            counted.push((i.name, i.started));
        }
        let multi = KvCommand::Multi {
            watch: Vec::new(),
            cmds,
        };
        // An error of the call itself (no answer in time, session expired …) is every
        // command's: as for a command alone, whether it was applied is unknown.
        let replies = match self.call(conn, multi).await.and_then(redis_reply) {
            Ok(Value::Array(replies)) if replies.len() == n => replies,
            Ok(other) => vec![super::unexpected(KvReply::Redis(other)); n],
            Err(e) => vec![e; n],
        };
        if !woken.is_empty() {
            self.wakeups.wake(woken.iter().map(Vec::as_slice));
        }
        self.pipelined_batches.fetch_add(1, Ordering::Relaxed);
        self.pipelined_commands
            .fetch_add(n as u64, Ordering::Relaxed);
        for ((name, started), reply) in counted.into_iter().zip(&replies) {
            let error = matches!(reply, Value::Error(_));
            let outcome = match error {
                true => Outcome::Failed,
                false => Outcome::Ok,
            };
            self.observe(name, started, error);
            self.count(Some(name), outcome, started, reply);
        }
        replies
    }
}
