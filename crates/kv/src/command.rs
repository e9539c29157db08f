//! The KV service's operations and answers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Longest value accepted in one Put or Append, in bytes (a whole value may grow past it by
/// appends).
pub const MAX_VALUE_BYTES: usize = 32 * 1024 * 1024;

/// A client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// The key's value, or `None` if it has none.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets the key's value. Applied from a log entry, `value` is a view of the entry's
    /// buffer ([`flotilla_rsm::shared_bytes`]), which the store keeps as the value: the log
    /// and the store share one copy. Encoded as the byte string a `Vec<u8>` was.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "flotilla_rsm::shared_bytes")]
        value: Bytes,
    },
    /// Appends to the key's value (a missing key counts as empty).
    Append {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "flotilla_rsm::shared_bytes")]
        value: Bytes,
    },
    /// Removes the key.
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Adds `by` to the key's value read as a decimal 64-bit integer (a missing key is 0), as
    /// Redis's INCRBY does, atomically.
    Incr {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        by: i64,
    },
    /// A Redis command as its arguments, name first ([`crate::engine`] parses and runs it
    /// when it is applied, as Redis does; a syntax error is its reply). Every key it names is
    /// in one shard. `route`: the key whose shard a keyless command (`DBSIZE`, `SCAN`,
    /// `FLUSHALL` …) runs on in a sharded cluster, which runs it once per shard.
    Redis {
        args: Vec<Arg>,
        #[serde(with = "opt_bytes")]
        route: Option<Vec<u8>>,
    },
    /// `MULTI … EXEC`: the commands run one after another in one entry, nothing between them;
    /// none runs if a watched key's version differs from the one given (`(key, version)`,
    /// version 0 for a key that did not exist). Every key is in one shard.
    Multi {
        watch: Vec<(Arg, u64)>,
        cmds: Vec<Vec<Arg>>,
    },
    /// The keys' versions (0: absent), for `WATCH`.
    Versions { keys: Vec<Arg> },
    /// Removes keys past their expiry (up to a bound): proposed by the leader of its own
    /// ([`flotilla_rsm::StateMachine::housekeeping`]), Redis's active expiry, so that an idle
    /// store does not keep expired keys. Harmless to apply twice.
    SweepExpired,
}

/// One argument of a Redis command: applied from a log entry it is a view of the entry's
/// buffer (as [`KvCommand::Put`]'s value), so a large `SET` value is held once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Arg(#[serde(with = "flotilla_rsm::shared_bytes")] pub Bytes);

impl AsRef<[u8]> for Arg {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Arg {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg(Bytes::from(v))
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg(Bytes::copy_from_slice(v.as_bytes()))
    }
}

/// The key arguments of a Redis command (its spec's key range), in order.
pub fn command_keys(args: &[Arg]) -> impl Iterator<Item = &[u8]> {
    let spec = flotilla_resp::command_spec(args);
    let positions: Vec<usize> = spec.map(|s| s.key_positions(args)).unwrap_or_default();
    positions.into_iter().map(move |i| args[i].as_slice())
}

impl KvCommand {
    /// The key that places the command in a shard: its (first) key, a keyless command's
    /// route; empty for a keyless command without one.
    pub fn key(&self) -> &[u8] {
        match self {
            KvCommand::Get { key }
            | KvCommand::Put { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Incr { key, .. } => key,
            KvCommand::Redis { args, route } => match route {
                Some(r) => r,
                None => command_keys(args).next().unwrap_or(&[]),
            },
            KvCommand::Multi { .. } | KvCommand::Versions { .. } => {
                self.keys().next().unwrap_or(&[])
            }
            KvCommand::SweepExpired => &[],
        }
    }

    /// Every key the command names (a keyless command's route), in order, repeats kept.
    pub fn keys(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            KvCommand::Redis { args, route: None } => Box::new(command_keys(args)),
            KvCommand::Multi { watch, cmds } => Box::new(
                (watch.iter().map(|(k, _)| k.as_slice()))
                    .chain(cmds.iter().flat_map(|c| command_keys(c))),
            ),
            KvCommand::Versions { keys } => Box::new(keys.iter().map(Arg::as_slice)),
            KvCommand::SweepExpired => Box::new(std::iter::empty()),
            _ => Box::new(std::iter::once(self.key())),
        }
    }

    /// Whether the command only reads, so that it may be served outside the log.
    pub fn is_read_only(&self) -> bool {
        match self {
            KvCommand::Get { .. } | KvCommand::Versions { .. } => true,
            KvCommand::Redis { args, .. } => {
                flotilla_resp::command_spec(args).is_some_and(|s| s.is_read_only())
            }
            _ => false,
        }
    }

    /// The size limits, checked before a command is proposed.
    pub fn validate(&self) -> Result<(), KvError> {
        for key in self.keys() {
            if key.len() > MAX_KEY_BYTES {
                return Err(KvError::KeyTooLarge {
                    len: key.len(),
                    max: MAX_KEY_BYTES,
                });
            }
        }
        let values: Box<dyn Iterator<Item = usize>> = match self {
            KvCommand::Put { value, .. } | KvCommand::Append { value, .. } => {
                Box::new(std::iter::once(value.len()))
            }
            KvCommand::Redis { args, .. } => Box::new(args.iter().map(|a| a.0.len())),
            KvCommand::Multi { cmds, .. } => Box::new(cmds.iter().flatten().map(|a| a.0.len())),
            _ => Box::new(std::iter::empty()),
        };
        for len in values {
            if len > MAX_VALUE_BYTES {
                return Err(KvError::ValueTooLarge {
                    len,
                    max: MAX_VALUE_BYTES,
                });
            }
        }
        Ok(())
    }
}

/// A command was refused; nothing changed (except after `DiskFull`, see there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// The servers of the key's group (or the controller) cannot write their logs for want
    /// of disk space. Reported by clerks, never by the state machine; the outcome of the
    /// command is unknown (an earlier copy may have reached a leader before it stalled).
    #[error("disk full: the replicas cannot write their logs (no space left on device); the command may or may not have been applied")]
    DiskFull,
    /// The client's session expired (idle longer than the service's limit, or evicted when
    /// its table was full) and the command could not be told from a retry of one applied
    /// before it expired: not applied now, but an earlier copy may have been. Reported by
    /// clerks; the clerk's next command starts a new session.
    #[error("session expired: the command may or may not have been applied")]
    SessionExpired,
    #[error("key of {len} bytes is longer than the limit of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes is longer than the limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    #[error("increment or decrement would overflow")]
    Overflow,
}

/// Byte strings as one length-prefixed run (decoded into an exactly sized buffer) rather than
/// a sequence of numbers: a 10 MiB value must cost 10 MiB, not a doubling-grown 16.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(serde_bytes::Bytes::new).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(serde_bytes::ByteBuf::into_vec))
    }
}

/// The answer to a [`KvCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// Get: the value, `None` for a missing key. Append on the single-node server: the
    /// value before the append.
    Value(#[serde(with = "opt_bytes")] Option<Vec<u8>>),
    /// Put done.
    Done,
    /// Append done: the value's new length in bytes.
    Len(u64),
    /// Delete done: whether the key existed.
    Deleted(bool),
    /// Incr done: the new value.
    Int(i64),
    Error(KvError),
    /// A Redis command's (or transaction's) reply, errors included, in Redis's words.
    Redis(flotilla_resp::Value),
    /// The keys' versions, for `WATCH`.
    Versions(Vec<u64>),
}

impl KvReply {
    /// The value of a Get (or of the single-node server's Append), a missing key read as
    /// empty as the labs do; `None` for other replies.
    pub fn value_or_empty(&self) -> Option<&[u8]> {
        match self {
            KvReply::Value(v) => Some(v.as_deref().unwrap_or(&[])),
            _ => None,
        }
    }
}
