//! Protocol errors: the input is not RESP, or breaks a [`Limits`](crate::Limits) bound.

use std::fmt;

use crate::Value;

/// Why a request (or reply) could not be decoded. Every variant is fatal to the connection:
/// after one, the stream position is unknown, so the caller replies with [`RespError::to_value`]
/// and closes, as Redis does. The messages mirror Redis's (`Protocol error: ...`) where Redis has
/// one, and say the limit in plain words where Flotilla's limits differ from Redis's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A multibulk request's argument did not start with `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(Byte),
    /// `*<count>` was not an integer as Redis reads one, or above what Redis itself accepts.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<len>` was not a non-negative integer as Redis reads one, or above what Redis itself
    /// accepts (512 MiB).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A length line (`*...` or `$...`) went on for too long without CRLF.
    #[error("Protocol error: too big {0} count string")]
    LengthLineTooLong(&'static str),
    /// `*<count>` above [`Limits::max_array_len`](crate::Limits::max_array_len).
    #[error("Protocol error: multibulk length {len} exceeds the limit of {max} arguments")]
    TooManyArguments { len: i64, max: usize },
    /// `$<len>` above [`Limits::max_bulk_len`](crate::Limits::max_bulk_len).
    #[error("Protocol error: bulk length {len} exceeds the limit of {max} bytes")]
    BulkTooLong { len: i64, max: usize },
    /// `*<count>` above the limit for a client that has not authenticated
    /// ([`Limits::UNAUTHENTICATED`](crate::Limits::UNAUTHENTICATED)); Redis's words.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength { len: i64, max: usize },
    /// `$<len>` above the limit for a client that has not authenticated; Redis's words.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength { len: i64, max: usize },
    /// An inline request longer than [`Limits::max_inline_len`](crate::Limits::max_inline_len)
    /// without a newline.
    #[error("Protocol error: too big inline request (no newline within {max} bytes)")]
    InlineTooLong { max: usize },
    /// An inline request with an unclosed quote, or a closing quote not followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A line or bulk payload not followed by `\r\n`.
    #[error("Protocol error: expected CRLF after {0}")]
    MissingCrlf(&'static str),
    /// Reply decoding: a type byte that is not RESP2 or RESP3.
    #[error("Protocol error: unknown reply type '{0}'")]
    UnknownType(Byte),
    /// Reply decoding: a malformed scalar (`:abc`, `#x`, `,1.2.3`, non-UTF-8 simple string).
    #[error("Protocol error: invalid {0}")]
    Invalid(&'static str),
    /// Reply decoding: aggregates nested deeper than the decoder recurses.
    #[error("Protocol error: reply nested deeper than {0} levels")]
    TooDeep(usize),
}

impl RespError {
    /// The error reply to send before closing the connection: `-ERR Protocol error: ...`.
    pub fn to_value(&self) -> Value {
        Value::Error(format!("ERR {self}"))
    }
}

/// One input byte in an error message: printable ASCII as itself, anything else escaped
/// (`\x00`, `\r`), so the message is readable and fits on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Byte(pub u8);

impl fmt::Display for Byte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::ascii::escape_default(self.0))
    }
}
