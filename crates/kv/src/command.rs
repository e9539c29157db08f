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
}

impl KvCommand {
    pub fn key(&self) -> &[u8] {
        match self {
            KvCommand::Get { key }
            | KvCommand::Put { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Incr { key, .. } => key,
        }
    }

    /// The size limits, checked before a command is proposed.
    pub fn validate(&self) -> Result<(), KvError> {
        let key = self.key().len();
        if key > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLarge {
                len: key,
                max: MAX_KEY_BYTES,
            });
        }
        if let KvCommand::Put { value, .. } | KvCommand::Append { value, .. } = self {
            if value.len() > MAX_VALUE_BYTES {
                return Err(KvError::ValueTooLarge {
                    len: value.len(),
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
