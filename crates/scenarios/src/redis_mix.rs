//! The Redis part of the random suites' operation mix: conditional SET (`NX`, `XX`), expiry
//! at absolute times near the current virtual time (`SET … PXAT`, `PEXPIREAT`, `PERSIST`), so
//! keys expire while the run goes on, and transactions of 2–3 commands on keys sharing a hash
//! tag, half of them watching their keys at the versions a read returned just before. The
//! histories are checked by [`flotilla_check::RedisModel`], which knows all of it.
//!
//! Relative expiry (`EX`, `PX`) stays out: the model would have to know the instant the
//! command took effect to know the expiry it set (see the model's docs); the engine's unit
//! tests cover it.
//!
//! [`MixStats`] counts what the operations did, so a run shows that they exercised
//! something: keys seen expired, conditions that held and failed, transactions aborted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use flotilla_check::{RedisCmd, RedisOp, RedisReply, SetCond};

/// A client that can run Redis-model operations (the KV and the sharded testers' clients).
pub trait MixClient {
    /// Runs `op`; its reply, `None` if the outcome is unknown.
    fn redis(
        &self,
        op: RedisOp,
        limit: Option<Duration>,
    ) -> impl std::future::Future<Output = Option<RedisReply>>;
}

impl MixClient for flotilla_testkit::KvClient<flotilla_kv::KvReplica> {
    async fn redis(&self, op: RedisOp, limit: Option<Duration>) -> Option<RedisReply> {
        self.try_redis(op, limit).await
    }
}

impl MixClient for flotilla_testkit::ShardClient {
    async fn redis(&self, op: RedisOp, limit: Option<Duration>) -> Option<RedisReply> {
        self.try_redis(op, limit).await
    }
}

/// Counts of what the mix's operations did, over one run or many.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Completed operations by kind and outcome (`"SET NX -> nil"`, `"MULTI -> aborted"` …).
    pub ops: BTreeMap<String, usize>,
    /// Operations that gave up (outcome unknown).
    pub unknown: usize,
    /// Reads, NX/XX sets, PERSISTs and PEXPIREATs that found a key absent whose last write
    /// acknowledged before they were sent had set an expiry already past: keys seen expired.
    pub expired_seen: usize,
    /// Transactions that applied nothing because a watched key changed.
    pub aborted: usize,
    /// Transactions that applied.
    pub committed: usize,
    /// Per key, the expiry the last acknowledged write set (0: none) and when it was
    /// acknowledged, for `expired_seen`.
    last_write: BTreeMap<String, (u64, u64)>,
}

impl MixStats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &MixStats) {
        for (k, n) in &other.ops {
            *self.ops.entry(k.clone()).or_default() += n;
        }
        self.unknown += other.unknown;
        self.expired_seen += other.expired_seen;
        self.aborted += other.aborted;
        self.committed += other.committed;
    }

    /// Completed operations of every kind.
    pub fn completed(&self) -> usize {
        self.ops.values().sum()
    }

    fn count(&mut self, kind: String) {
        *self.ops.entry(kind).or_default() += 1;
    }

    /// Notes a write to `key` acknowledged at `now_ms` that left it expiring at `expire_at`
    /// (0: never; or gone).
    fn wrote(&mut self, key: &str, expire_at: u64, now_ms: u64) {
        self.last_write.insert(key.to_owned(), (expire_at, now_ms));
    }

    /// Whether `key`, found absent by an operation called at `call_ms`, was seen expired.
    fn expired(&self, key: &str, call_ms: u64) -> bool {
        self.last_write
            .get(key)
            .is_some_and(|&(at, acked)| at != 0 && acked < call_ms && at <= call_ms)
    }
}

impl fmt::Display for MixStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} completed, {} of unknown outcome; {} keys seen expired; transactions: {} \
             applied, {} aborted by WATCH",
            self.completed(),
            self.unknown,
            self.expired_seen,
            self.committed,
            self.aborted
        )?;
        for (k, n) in &self.ops {
            writeln!(f, "  {k:<22} {n}")?;
        }
        Ok(())
    }
}

/// What the mix needs of the run: its random numbers and its clock.
pub struct MixEnv<'a> {
    /// A number in `0..n` from the simulation's generator (so a seed replays).
    pub rand: &'a dyn Fn(u64) -> u64,
    /// The virtual time in whole milliseconds (the clock expiry is measured by).
    pub now_ms: &'a dyn Fn() -> u64,
    /// Keys for single commands.
    pub keys: &'a [String],
    /// Groups of keys sharing a hash tag, for transactions (and single commands too).
    pub groups: &'a [Vec<String>],
}

impl MixEnv<'_> {
    fn pick<'b, T>(&self, items: &'b [T]) -> &'b T {
        &items[(self.rand)(items.len() as u64) as usize]
    }

    /// An absolute expiry near now: mostly ahead (up to 400 ms, a few dozen operations of
    /// a client), sometimes just past (the command then deletes the key).
    fn expiry(&self) -> u64 {
        ((self.now_ms)() + (self.rand)(440))
            .saturating_sub(40)
            .max(1)
    }

    fn key(&self) -> String {
        if (self.rand)(3) == 0 {
            let group: &Vec<String> = self.pick(self.groups);
            self.pick(group).clone()
        } else {
            self.pick(self.keys).clone()
        }
    }

    /// A command on `key` for a transaction, or alone.
    fn command(&self, key: String, value: &str) -> RedisCmd {
        let value = value.to_owned();
        match (self.rand)(12) {
            0..=1 => RedisCmd::Get { key },
            2..=3 => RedisCmd::Set {
                key,
                value,
                cond: SetCond::Always,
                px_at: Some(self.expiry()),
            },
            4..=5 => {
                let px_at = ((self.rand)(2) == 0).then(|| self.expiry());
                let cond = SetCond::IfAbsent;
                RedisCmd::Set {
                    key,
                    value,
                    cond,
                    px_at,
                }
            }
            6..=7 => {
                let px_at = ((self.rand)(2) == 0).then(|| self.expiry());
                let cond = SetCond::IfPresent;
                RedisCmd::Set {
                    key,
                    value,
                    cond,
                    px_at,
                }
            }
            8 => RedisCmd::Persist { key },
            9 => RedisCmd::PExpireAt {
                key,
                at: self.expiry(),
            },
            10 => RedisCmd::Append { key, value },
            _ => RedisCmd::Del { key },
        }
    }
}

/// One Redis operation of the mix, or a transaction (a quarter of the time; half of those
/// watched): returns whether it completed (false: it gave up).
pub async fn redis_step(
    ck: &impl MixClient,
    env: &MixEnv<'_>,
    value: &str,
    limit: Option<Duration>,
    stats: &RefCell<MixStats>,
) -> bool {
    if (env.rand)(4) != 0 {
        let cmd = env.command(env.key(), value);
        let call_ms = (env.now_ms)();
        let reply = ck.redis(RedisOp::Cmd(cmd.clone()), limit).await;
        return note_cmd(&mut stats.borrow_mut(), &cmd, reply.as_ref(), call_ms, env);
    }
    let group = env.pick(env.groups);
    let n = 2 + (env.rand)(2) as usize;
    let cmds: Vec<RedisCmd> = (0..n)
        .map(|_| env.command(env.pick(group).clone(), value))
        .collect();
    let mut watch = Vec::new();
    if (env.rand)(2) == 0 {
        let keys = group.clone();
        let versions = RedisOp::Versions { keys: keys.clone() };
        match ck.redis(versions, limit).await {
            Some(RedisReply::Versions(v)) => {
                stats.borrow_mut().count("VERSIONS".to_owned());
                watch = keys.into_iter().zip(v).collect();
            }
            _ => {
                stats.borrow_mut().unknown += 1;
                return false;
            }
        }
    }
    let watched = !watch.is_empty();
    let call_ms = (env.now_ms)();
    let reply = ck
        .redis(
            RedisOp::Multi {
                watch,
                cmds: cmds.clone(),
            },
            limit,
        )
        .await;
    let mut s = stats.borrow_mut();
    let kind = if watched { "WATCH+MULTI" } else { "MULTI" };
    match reply {
        None => {
            s.unknown += 1;
            false
        }
        Some(RedisReply::Aborted) => {
            s.aborted += 1;
            s.count(format!("{kind} -> aborted"));
            true
        }
        Some(RedisReply::Array(replies)) => {
            s.committed += 1;
            s.count(format!("{kind} -> applied"));
            for (c, r) in cmds.iter().zip(&replies) {
                note_cmd(&mut s, c, Some(r), call_ms, env);
            }
            true
        }
        Some(other) => panic!("a transaction answered {other:?}"),
    }
}

/// Counts a command's outcome (`None`: unknown); whether it completed.
fn note_cmd(
    s: &mut MixStats,
    cmd: &RedisCmd,
    reply: Option<&RedisReply>,
    call_ms: u64,
    env: &MixEnv<'_>,
) -> bool {
    let Some(reply) = reply else {
        s.unknown += 1;
        return false;
    };
    let key = cmd.key();
    let now = (env.now_ms)();
    let absent = matches!(
        (cmd, reply),
        (RedisCmd::Get { .. }, RedisReply::Bulk(None))
            | (
                RedisCmd::Set {
                    cond: SetCond::IfAbsent,
                    ..
                },
                RedisReply::Ok
            )
            | (
                RedisCmd::Set {
                    cond: SetCond::IfPresent,
                    ..
                },
                RedisReply::Nil
            )
            | (
                RedisCmd::PExpireAt { .. } | RedisCmd::Del { .. },
                RedisReply::Int(0)
            )
    );
    if absent && s.expired(key, call_ms) {
        s.expired_seen += 1;
    }
    let (kind, wrote) = match (cmd, reply) {
        (RedisCmd::Get { .. }, RedisReply::Bulk(v)) => (
            format!("GET -> {}", if v.is_some() { "value" } else { "nil" }),
            None,
        ),
        (RedisCmd::Set { cond, px_at, .. }, r) => {
            let c = match cond {
                SetCond::Always => "",
                SetCond::IfAbsent => " NX",
                SetCond::IfPresent => " XX",
            };
            let p = if px_at.is_some() { " PXAT" } else { "" };
            let ok = *r == RedisReply::Ok;
            let kind = format!("SET{c}{p} -> {}", if ok { "OK" } else { "nil" });
            (kind, ok.then_some(px_at.unwrap_or(0)))
        }
        (RedisCmd::Persist { .. }, RedisReply::Int(n)) => {
            (format!("PERSIST -> {n}"), (*n == 1).then_some(0))
        }
        (RedisCmd::PExpireAt { at, .. }, RedisReply::Int(n)) => {
            (format!("PEXPIREAT -> {n}"), (*n == 1).then_some(*at))
        }
        (RedisCmd::Append { .. }, _) => ("APPEND".to_owned(), None),
        (RedisCmd::Del { .. }, RedisReply::Int(n)) => (format!("DEL -> {n}"), Some(0)),
        (c, r) => panic!("{c:?} answered {r:?}"),
    };
    s.count(kind);
    if let Some(at) = wrote {
        s.wrote(key, at, now);
    }
    true
}

/// Notes a labs' put or delete acknowledged: it leaves the key without expiry.
pub fn note_lab_write(stats: &RefCell<MixStats>, key: &str, now_ms: u64) {
    stats.borrow_mut().wrote(key, 0, now_ms);
}

/// Notes a labs' read that found `key` empty, called at `call_ms`.
pub fn note_lab_read(stats: &RefCell<MixStats>, key: &str, value: &str, call_ms: u64) {
    let mut s = stats.borrow_mut();
    if value.is_empty() && s.expired(key, call_ms) {
        s.expired_seen += 1;
    }
    s.count("get (labs)".to_owned());
}
