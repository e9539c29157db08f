//! The Redis engine: runs a Redis command, given as its arguments, on the store, when its log
//! entry is applied (or, for a read, when a read outside the log is answered). Replies and
//! errors are Redis's, word for word, so that clients and Redis's own test suite see Redis.
//!
//! Every replica applies the same entry to the same state at the same replicated clock
//! ([`ApplyCtx::now_ms`]), so a command is a deterministic function of them: no hidden
//! randomness (`RANDOMKEY` picks by the clock and the state), no local clock.
//!
//! One file per family, each with its table of handlers: `strings.rs` (GET, SET and its
//! options, SETNX …), `generic.rs` (DEL, EXISTS, TYPE, RENAME, COPY, the expiry commands),
//! `keyspace.rs` (KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHALL, FLUSHDB), `hash.rs` (HSET, HGET
//! … HSCAN, HRANDFIELD). A command in the
//! protocol crate's table without a handler here answers "unknown command" (the test
//! `every_data_command_has_a_handler` keeps the two in step).

mod bits;
mod dump;
mod generic;
mod glob;
mod hash;
mod keyspace;
mod lists;
mod sets;
mod streams;
mod strings;
mod zsets;

use flotilla_resp::{command_spec, Value};
use flotilla_rsm::ApplyCtx;

use crate::command::Arg;
use crate::store::Kv;

pub use glob::glob_match;
pub use keyspace::{parse_cursor, scan_hash, SCAN_CURSOR_BITS};

/// A command's view of the store while it runs.
pub(crate) struct Run<'a> {
    pub kv: &'a mut Kv,
    /// The replicated clock (ms since the UNIX epoch): what expiry is measured against.
    pub now: u64,
    /// The entry's index: what written keys' versions are raised to.
    pub index: u64,
    /// Whether the running command only reads (its draws need not agree across replicas).
    read_only: bool,
    /// Draws made so far by this entry's commands.
    draws: u64,
}

/// A small deterministic generator (splitmix64): what SPOP, SRANDMEMBER, HRANDFIELD … pick
/// with.
pub(crate) struct Draw(u64);

impl Draw {
    /// A number in `0..below` (`below > 0`).
    pub fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % below as u64) as usize
    }

    /// Positions of `n` distinct elements of a collection of `len`, drawn uniformly: a
    /// partial shuffle of the indices (`len` is the collection's size, never a client's count).
    pub fn distinct(&mut self, len: usize, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..len).collect();
        let take = n.min(len);
        for i in 0..take {
            let j = i + self.next(len - i);
            idx.swap(i, j);
        }
        idx.truncate(take);
        idx
    }

    /// Positions for Redis's random-pick count (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER): a
    /// count ≥ 0 picks that many distinct elements (at most `len`), a negative one picks its
    /// magnitude with repeats. `len > 0`; the caller bounds a negative count.
    pub fn picks(&mut self, len: usize, count: i64) -> Vec<usize> {
        match usize::try_from(count) {
            Ok(n) => self.distinct(len, n),
            Err(_) => (0..count.unsigned_abs()).map(|_| self.next(len)).collect(),
        }
    }
}

impl Run<'_> {
    /// A generator for a command on `key`. A write's draws are a function of the entry
    /// (index, clock, key, and how many draws its commands made before), so every replica
    /// picks the same (SPOP removes the same members everywhere). A read's also mix in a
    /// count of the reads this replica served: a read is answered by one replica and changes
    /// nothing, and two reads in the same millisecond should not pick alike (Redis's tests
    /// measure the spread of SRANDMEMBER over many calls).
    pub(crate) fn draw(&mut self, key: &[u8]) -> Draw {
        self.draws += 1;
        let mut seed = self.now ^ self.index.rotate_left(32) ^ scan_hash(key);
        seed ^= self.draws.wrapping_mul(0xd6e8_feb8_6659_fd93);
        if self.read_only {
            seed ^= self.kv.next_read_nonce().rotate_left(40);
        }
        Draw(seed)
    }
}

type Handler = fn(&mut Run, &[Arg]) -> Value;

const FAMILIES: &[&[(&str, Handler)]] = &[
    strings::HANDLERS,
    generic::HANDLERS,
    keyspace::HANDLERS,
    hash::HANDLERS,
    bits::HANDLERS,
    dump::HANDLERS,
    lists::HANDLERS,
    sets::HANDLERS,
    zsets::HANDLERS,
    streams::HANDLERS,
];

fn handler(name: &str) -> Option<Handler> {
    FAMILIES
        .iter()
        .flat_map(|f| f.iter())
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
}

/// Runs one command (name first) and returns its reply.
pub fn run(kv: &mut Kv, args: &[Arg], at: &ApplyCtx) -> Value {
    let mut run = Run {
        kv,
        now: at.now_ms,
        index: at.index,
        read_only: false,
        draws: 0,
    };
    run.command(args)
}

/// Runs a transaction: nothing if a watched key's version changed (a null array, as Redis's
/// EXEC answers), else every command in order, their replies in an array (a command's error
/// does not stop the ones after it, as in Redis).
pub fn multi(kv: &mut Kv, watch: &[(Arg, u64)], cmds: &[Vec<Arg>], at: &ApplyCtx) -> Value {
    let changed = (watch.iter())
        .any(|(k, v)| kv.live(k.as_slice(), at.now_ms).map_or(0, |s| s.version) != *v);
    if changed {
        return Value::NullArray;
    }
    let mut run = Run {
        kv,
        now: at.now_ms,
        index: at.index,
        read_only: false,
        draws: 0,
    };
    Value::Array(cmds.iter().map(|c| run.command(c)).collect())
}

impl Run<'_> {
    fn command(&mut self, args: &[Arg]) -> Value {
        let Some(spec) = command_spec(args) else {
            return Value::error("ERR unknown command");
        };
        let arity_ok = match usize::try_from(spec.arity) {
            Ok(exact) => args.len() == exact,
            Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
        };
        if !arity_ok {
            return wrong_arity(spec.name);
        }
        self.read_only = spec.is_read_only();
        match handler(spec.name) {
            Some(h) => h(self, args),
            None => Value::error(format!(
                "ERR unknown command '{}', with args beginning with: ",
                spec.name
            )),
        }
    }
}

pub(crate) fn wrong_arity(name: &str) -> Value {
    Value::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

pub(crate) fn wrong_type() -> Value {
    Value::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

pub(crate) fn syntax_error() -> Value {
    Value::error("ERR syntax error")
}

pub(crate) fn not_integer() -> Value {
    Value::error("ERR value is not an integer or out of range")
}

/// An argument read as Redis reads an integer.
pub(crate) fn int(arg: &Arg) -> Result<i64, Value> {
    flotilla_resp::parse_i64(arg.as_slice()).ok_or_else(not_integer)
}

pub(crate) fn is(arg: &Arg, word: &str) -> bool {
    arg.as_slice().eq_ignore_ascii_case(word.as_bytes())
}

/// The reply of a handler that may stop early with an error reply.
pub(crate) fn reply(r: Result<Value, Value>) -> Value {
    r.unwrap_or_else(|e| e)
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
