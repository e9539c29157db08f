//! The Redis-model operations of the random suites ([`flotilla_check::RedisOp`]) as the
//! KV service's commands, and its replies as the model compares them. Shared by the KV
//! tester and the sharded one.

use flotilla_check::{RedisCmd, RedisOp, RedisReply, SetCond};
use flotilla_kv::{Arg, KvCommand, KvReply};
use flotilla_resp::Value;

/// One command's arguments, name first.
fn args(cmd: &RedisCmd) -> Vec<Arg> {
    let mut a: Vec<Arg> = match cmd {
        RedisCmd::Get { key } => vec!["GET".into(), key.as_str().into()],
        RedisCmd::Set { key, value, .. } => {
            vec!["SET".into(), key.as_str().into(), value.as_str().into()]
        }
        RedisCmd::Append { key, value } => {
            vec!["APPEND".into(), key.as_str().into(), value.as_str().into()]
        }
        RedisCmd::Del { key } => vec!["DEL".into(), key.as_str().into()],
        RedisCmd::Persist { key } => vec!["PERSIST".into(), key.as_str().into()],
        RedisCmd::PExpireAt { key, at } => vec![
            "PEXPIREAT".into(),
            key.as_str().into(),
            at.to_string().as_str().into(),
        ],
    };
    if let RedisCmd::Set { cond, px_at, .. } = cmd {
        match cond {
            SetCond::Always => {}
            SetCond::IfAbsent => a.push("NX".into()),
            SetCond::IfPresent => a.push("XX".into()),
        }
        if let Some(at) = px_at {
            a.push("PXAT".into());
            a.push(at.to_string().as_str().into());
        }
    }
    a
}

/// The command that runs `op`.
pub fn command_of(op: &RedisOp) -> KvCommand {
    match op {
        RedisOp::Cmd(c) => KvCommand::Redis {
            args: args(c),
            route: None,
        },
        RedisOp::Multi { watch, cmds } => KvCommand::Multi {
            watch: (watch.iter())
                .map(|(k, v)| (Arg::from(k.as_str()), *v))
                .collect(),
            cmds: cmds.iter().map(args).collect(),
        },
        RedisOp::Versions { keys } => KvCommand::Versions {
            keys: keys.iter().map(|k| Arg::from(k.as_str())).collect(),
        },
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One command's reply. Panics on a reply the command cannot give (an error among them: the
/// suites send only well-formed commands on keys of one shard).
fn cmd_reply(cmd: &RedisCmd, v: &Value) -> RedisReply {
    match (cmd, v) {
        (RedisCmd::Get { .. }, Value::Bulk(b)) => RedisReply::Bulk(Some(text(b))),
        (RedisCmd::Get { .. }, Value::Null) => RedisReply::Bulk(None),
        (RedisCmd::Set { .. }, Value::Simple(s)) if s == "OK" => RedisReply::Ok,
        (RedisCmd::Set { .. }, Value::Null) => RedisReply::Nil,
        (
            RedisCmd::Append { .. }
            | RedisCmd::Del { .. }
            | RedisCmd::Persist { .. }
            | RedisCmd::PExpireAt { .. },
            Value::Integer(n),
        ) => RedisReply::Int(*n),
        _ => panic!("{cmd:?} answered {v:?}"),
    }
}

/// The reply of `op` as the model compares it (see [`cmd_reply`] for what panics).
pub fn reply_of(op: &RedisOp, reply: &KvReply) -> RedisReply {
    match (op, reply) {
        (RedisOp::Cmd(c), KvReply::Redis(v)) => cmd_reply(c, v),
        (RedisOp::Multi { .. }, KvReply::Redis(Value::NullArray)) => RedisReply::Aborted,
        (RedisOp::Multi { cmds, .. }, KvReply::Redis(Value::Array(items)))
            if items.len() == cmds.len() =>
        {
            RedisReply::Array(
                cmds.iter()
                    .zip(items)
                    .map(|(c, v)| cmd_reply(c, v))
                    .collect(),
            )
        }
        (RedisOp::Versions { keys }, KvReply::Versions(v)) if v.len() == keys.len() => {
            RedisReply::Versions(v.clone())
        }
        _ => panic!("{op:?} answered {reply:?}"),
    }
}
