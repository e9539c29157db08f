//! # flotilla-resp: the Redis protocol, without I/O
//!
//! What Flotilla's router needs to speak to `redis-cli`, `redis-benchmark` and the Redis client
//! libraries: a request decoder, a reply encoder and a typed command parser. Nothing here reads
//! or writes a socket; bytes go in and values come out, so every path can be unit-tested and
//! fuzzed, and the router owns buffering, timeouts and back-pressure.
//!
//! ```
//! use flotilla_resp::{encode, Command, Decoder, Limits, Protocol, Value};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let mut buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n".to_vec();
//! let mut replies = Vec::new();
//! while let Some((args, used)) = decoder.decode(&buf).expect("valid RESP") {
//!     buf.drain(..used);
//!     let reply = match Command::from_args(args) {
//!         Ok(Command::Data { name: "get", .. }) => Value::Null,
//!         Ok(Command::Ping { message: None }) => Value::simple("PONG"),
//!         Ok(_) => Value::ok(),
//!         Err(e) => e.to_value(),
//!     };
//!     encode(&reply, Protocol::Resp2, &mut replies);
//! }
//! assert_eq!(replies, b"$-1\r\n+PONG\r\n");
//! ```
//!
//! ## Requests
//!
//! [`Decoder`] turns a byte stream into argument vectors. It accepts the multibulk form that
//! client libraries send (`*<n>\r\n` then `n` × `$<len>\r\n<bytes>\r\n`) and inline commands
//! (`SET k "a b"\r\n`, split with Redis's quoting rules) as typed into `telnet`; pipelined
//! requests are decoded one per call; partial input returns `Ok(None)` and is resumed where it
//! stopped, so a request arriving in pieces costs O(its size) in total.
//!
//! [`Command::from_args`] turns arguments into a [`Command`]: `GET`, `SET` (with
//! `NX`/`XX`/`GET`/`EX`/`PX`/`EXAT`/`PXAT`/`KEEPTTL`), `APPEND`, `DEL`, `EXISTS`, `MGET`,
//! `MSET`, `INCR`, `INCRBY`, `DECR`, `DECRBY`, `PING`, `ECHO`, `INFO`, `AUTH`, `QUIT`,
//! `SELECT`, `COMMAND [COUNT|DOCS|INFO]`, `CLIENT SETNAME|GETNAME|ID|INFO|SETINFO`, `HELLO`,
//! `CONFIG GET`, `DBSIZE`, `FLUSHALL`, `FLUSHDB`. Names are case-insensitive; arity, syntax
//! and number errors carry Redis's exact wording ([`CommandError`]).
//!
//! ## Replies: RESP2 and RESP3
//!
//! A connection speaks RESP2 until `HELLO 3`. Build one [`Value`] and [`encode`] it with the
//! connection's [`Protocol`]: in RESP2 the RESP3-only types take the shape Redis gives them
//! (map → flat array, set/push → array, null → `$-1` or `*-1`, boolean → `:1`/`:0`, double,
//! big number and verbatim string → bulk string). [`decode_value`] reads any reply back, for
//! clients and tests.
//!
//! ## Limits
//!
//! [`Limits`] bounds a bulk string (`max_bulk_len`, default 512 MiB as in Redis), the number of
//! arguments (`max_array_len`, default 2^20) and an inline line (`max_inline_len`, 64 KiB).
//! They are checked when a length is read, before any memory is reserved for it; a length line
//! itself may not exceed 32 bytes. A server with a password gives clients that have not
//! authenticated Redis's smaller [`Limits::UNAUTHENTICATED`] (10 arguments of 16 KiB) through
//! [`Decoder::before_auth`], and lifts them with [`Decoder::authenticated`].
//!
//! ## The caller's contract
//!
//! * After a [`RespError`] the stream position is lost: send [`RespError::to_value`] and close
//!   the connection (Redis does the same). A [`CommandError`] is not fatal: reply with
//!   [`CommandError::to_value`] and carry on.
//! * Reply exactly once per decoded request, in request order, even when requests are
//!   pipelined or served out of order internally: clients match replies by position.
//! * Keep unconsumed bytes and pass them all to the next `decode` call, dropping only what a
//!   request reported as used (see [`Decoder`]); bound the buffer and close a connection that
//!   exceeds it.

mod command;
mod command_error;
mod decoder;
mod error;
mod families;
mod inline;
mod num;
mod parse;
mod reply;
mod value;

pub use command::{
    ClientAttr, ClientCommand, Command, CommandQuery, Expiry, Hello, SetCondition, SetOptions,
};
pub use command_error::CommandError;
pub use decoder::{Decoder, Limits, Request};
pub use error::{Byte, RespError};
pub use num::parse_i64;
pub use parse::{
    all_commands, command_spec, find_command, CommandSpec, CLIENT, COMMAND, CONFIG, FUNCTION,
    MEMORY, OBJECT,
};
pub use reply::{decode_value, MAX_REPLY_DEPTH};
pub use value::{encode, format_double, Protocol, Value};
