//! What the engine's tests share: running a command line on a store, and building replies.

use flotilla_resp::Value;
use flotilla_rsm::{ApplyCtx, StateMachine};

use crate::command::{Arg, KvCommand, KvReply};
use crate::store::Kv;

/// The replicated clock (ms), and entry index, that [`run`] applies at.
pub const NOW: u64 = 1000;

/// A command line's words (split on spaces) as arguments.
pub fn args(line: &str) -> Vec<Arg> {
    line.split(' ').map(Arg::from).collect()
}

/// The apply context of an entry at time `now` (ms) and index `now`.
pub fn ctx(now: u64) -> ApplyCtx {
    ApplyCtx {
        now_ms: now,
        index: now,
        ..ApplyCtx::zero()
    }
}

/// Applies `args` as one entry at replicated time `now` (ms), entry index `index`.
pub fn call(kv: &mut Kv, args: Vec<Arg>, now: u64, index: u64) -> Value {
    let ctx = ApplyCtx {
        now_ms: now,
        index,
        ..ApplyCtx::zero()
    };
    match kv.apply(KvCommand::Redis { args, route: None }, &ctx) {
        KvReply::Redis(v) => v,
        other => panic!("{other:?}"),
    }
}

/// Runs `line` at time `now` (ms), entry index `index`.
pub fn at_index(kv: &mut Kv, now: u64, index: u64, line: &str) -> Value {
    call(kv, args(line), now, index)
}

/// Runs `line` at time `now` (ms), as the entry of index `now`.
pub fn at(kv: &mut Kv, now: u64, line: &str) -> Value {
    at_index(kv, now, now, line)
}

/// Runs `line` at [`NOW`].
pub fn run(kv: &mut Kv, line: &str) -> Value {
    at(kv, NOW, line)
}

pub fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

pub fn err(s: &str) -> Value {
    Value::Error(s.to_owned())
}

pub fn int(n: i64) -> Value {
    Value::Integer(n)
}
