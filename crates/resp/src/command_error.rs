//! Why a well-formed request is not a valid command. Unlike a [`RespError`](crate::RespError),
//! these leave the connection usable: reply with [`CommandError::to_value`] and go on.

use crate::Value;

/// How many bytes of a command name or its arguments an "unknown command" error quotes;
/// Redis's limit, so a huge bogus argument does not become a huge error reply.
const QUOTE_MAX: usize = 128;

/// A request that parsed as RESP but is not a command Flotilla accepts. `Display` is the exact
/// error text Redis sends (error code first), so clients that match on messages keep working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No arguments at all (the decoder never yields this; a hand-built request can).
    #[error("ERR empty command")]
    Empty,
    /// A command name Flotilla does not know (or does not implement).
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    Unknown {
        /// The name as sent, at most 128 bytes.
        name: String,
        /// The first arguments, each quoted and followed by a space, as Redis prints them.
        args: String,
    },
    /// A subcommand the container command (`CLIENT`, `COMMAND`, `CONFIG`) does not have.
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, sub: String },
    /// Too few or too many arguments; holds the lower-case name (`get`, `client|setname`).
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// An option that is unknown, repeated in a conflicting way or missing its value.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that had to be an integer (`INCRBY k x`, `SELECT x`, `SET k v EX x`).
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An expiry of zero, negative, or too large to express in milliseconds.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    /// `DECRBY key -9223372036854775808`.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// `HELLO x`.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    /// `HELLO 4`: note the code is `NOPROTO`, which clients check to fall back to RESP2.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// `HELLO 3 BOGUS`.
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    /// `CLIENT SETINFO BOGUS x`.
    #[error("ERR Unrecognized option '{0}'")]
    UnrecognizedOption(String),
    /// A client name or library attribute with spaces or control characters; holds what is
    /// being named (`Client names`, `lib-name`).
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    BadName(String),
}

impl CommandError {
    /// The error reply: `-ERR ...` (or `-NOPROTO ...`).
    pub fn to_value(&self) -> Value {
        Value::Error(self.to_string())
    }

    /// The "unknown command" error for `args` (name first), quoting as Redis does: the name,
    /// then arguments while the quoted text is under 128 bytes, each cut to what fits.
    pub(crate) fn unknown(args: &[Vec<u8>]) -> CommandError {
        let name = args.first().map_or(&[][..], Vec::as_slice);
        let mut quoted = String::new();
        for arg in args.iter().skip(1) {
            if quoted.len() >= QUOTE_MAX {
                break;
            }
            let room = QUOTE_MAX - quoted.len();
            quoted.push('\'');
            quoted.push_str(&lossy(&arg[..arg.len().min(room)]));
            quoted.push_str("' ");
        }
        CommandError::Unknown {
            name: lossy(&name[..name.len().min(QUOTE_MAX)]),
            args: quoted,
        }
    }

    /// The "unknown subcommand" error: `command` is upper-cased as in Redis's `Try CLIENT HELP.`
    pub(crate) fn unknown_subcommand(command: &str, sub: &[u8]) -> CommandError {
        CommandError::UnknownSubcommand {
            command: command.to_ascii_uppercase(),
            sub: lossy(&sub[..sub.len().min(QUOTE_MAX)]),
        }
    }
}

/// User bytes quoted in an error: invalid UTF-8 shown as U+FFFD. CR/LF are left to the encoder,
/// which turns them into spaces so the reply stays one line.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
