//! The commands Flotilla understands, as typed values.

use crate::Protocol;

/// One parsed request. Keys and values are binary-safe byte strings. Parsing checks syntax,
/// arity and number formats, the way Redis does before running a command; what a command
/// means (and whether the router supports, say, `SET ... NX`) is the router's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `GET key`.
    Get { key: Vec<u8> },
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`.
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        options: SetOptions,
    },
    /// `APPEND key value`.
    Append { key: Vec<u8>, value: Vec<u8> },
    /// `DEL key [key ...]`.
    Del { keys: Vec<Vec<u8>> },
    /// `EXISTS key [key ...]` (a key named twice counts twice, in Redis).
    Exists { keys: Vec<Vec<u8>> },
    /// `MGET key [key ...]`.
    MGet { keys: Vec<Vec<u8>> },
    /// `MSET key value [key value ...]`.
    MSet { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// `INCR key`.
    Incr { key: Vec<u8> },
    /// `INCRBY key delta`.
    IncrBy { key: Vec<u8>, delta: i64 },
    /// `DECR key`.
    Decr { key: Vec<u8> },
    /// `DECRBY key delta`; `delta` is never `i64::MIN`, whose negation overflows (Redis's
    /// "decrement would overflow" is reported by the parser).
    DecrBy { key: Vec<u8>, delta: i64 },
    /// `PING [message]`: replies `+PONG`, or the message as a bulk string.
    Ping { message: Option<Vec<u8>> },
    /// `ECHO message`.
    Echo { message: Vec<u8> },
    /// `INFO [section ...]`.
    Info { sections: Vec<Vec<u8>> },
    /// `AUTH [username] password`.
    Auth {
        username: Option<Vec<u8>>,
        password: Vec<u8>,
    },
    /// `QUIT`: reply `+OK`, then close.
    Quit,
    /// `SELECT db` (range not checked here).
    Select { db: i64 },
    /// `COMMAND [COUNT | DOCS [name ...] | INFO [name ...]]`.
    Command(CommandQuery),
    /// `CLIENT SETNAME | GETNAME | ID | INFO | SETINFO`.
    Client(ClientCommand),
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    Hello(Hello),
    /// `CONFIG GET parameter [parameter ...]` (glob patterns).
    ConfigGet { patterns: Vec<Vec<u8>> },
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHALL [ASYNC|SYNC]`.
    FlushAll { mode: FlushMode },
    /// `FLUSHDB [ASYNC|SYNC]`.
    FlushDb { mode: FlushMode },
}

/// The options of `SET`. Redis's rules for combining them are enforced by the parser: at most
/// one of NX/XX, at most one expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// `NX` or `XX`: set only if the key is absent / present.
    pub condition: Option<SetCondition>,
    /// `GET`: reply with the old value (or null) instead of `+OK`.
    pub get: bool,
    /// `EX`, `PX`, `EXAT`, `PXAT` or `KEEPTTL`; `None` means the key loses any TTL.
    pub expiry: Option<Expiry>,
}

/// `SET`'s condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// `SET`'s expiry. Every number is positive, and `Seconds`/`UnixSeconds` fit in i64
/// milliseconds (Redis's "invalid expire time" otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `EX seconds`.
    Seconds(u64),
    /// `PX milliseconds`.
    Millis(u64),
    /// `EXAT unix-time-seconds`.
    UnixSeconds(u64),
    /// `PXAT unix-time-milliseconds`.
    UnixMillis(u64),
    /// `KEEPTTL`: keep the key's current time to live.
    KeepTtl,
}

/// `COMMAND` and its subcommands; redis-cli sends `COMMAND DOCS` when it starts, for hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: details of every command.
    List,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND DOCS [name ...]` (none: all commands).
    Docs { names: Vec<Vec<u8>> },
    /// `COMMAND INFO [name ...]` (none: all commands).
    Info { names: Vec<Vec<u8>> },
}

/// `CLIENT` subcommands that client libraries send on connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT SETNAME name` (empty clears it; spaces and control characters are rejected).
    SetName { name: Vec<u8> },
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`: redis-py and redis-rs send both on connecting.
    SetInfo { attr: ClientAttr, value: Vec<u8> },
}

/// What `CLIENT SETINFO` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAttr {
    /// `LIB-NAME`: the client library, e.g. `redis-py`.
    LibName,
    /// `LIB-VER`: its version.
    LibVer,
}

/// `HELLO [protover [AUTH username password] [SETNAME name]]`: switches protocol, and may
/// authenticate and name the connection in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The protocol asked for; `None` keeps the current one (and just reports).
    pub protocol: Option<Protocol>,
    /// `AUTH username password`.
    pub auth: Option<(Vec<u8>, Vec<u8>)>,
    /// `SETNAME name`.
    pub setname: Option<Vec<u8>>,
}

/// `FLUSHALL`/`FLUSHDB`'s mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// No argument: the server's default (`lazyfree-lazy-user-flush`).
    #[default]
    Default,
    /// `SYNC`.
    Sync,
    /// `ASYNC`.
    Async,
}

impl Command {
    /// The command's name as Redis reports it in errors and `COMMAND INFO`: lower case, with
    /// `|subcommand` for container commands (`client|setname`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Append { .. } => "append",
            Command::Del { .. } => "del",
            Command::Exists { .. } => "exists",
            Command::MGet { .. } => "mget",
            Command::MSet { .. } => "mset",
            Command::Incr { .. } => "incr",
            Command::IncrBy { .. } => "incrby",
            Command::Decr { .. } => "decr",
            Command::DecrBy { .. } => "decrby",
            Command::Ping { .. } => "ping",
            Command::Echo { .. } => "echo",
            Command::Info { .. } => "info",
            Command::Auth { .. } => "auth",
            Command::Quit => "quit",
            Command::Select { .. } => "select",
            Command::Command(q) => q.name(),
            Command::Client(c) => c.name(),
            Command::Hello(_) => "hello",
            Command::ConfigGet { .. } => "config|get",
            Command::DbSize => "dbsize",
            Command::FlushAll { .. } => "flushall",
            Command::FlushDb { .. } => "flushdb",
        }
    }

    /// The keys the command reads or writes, in argument order: what the router shards on.
    /// Empty for commands that touch no key (or all of them, like `FLUSHALL`).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::Append { key, .. }
            | Command::Incr { key }
            | Command::IncrBy { key, .. }
            | Command::Decr { key }
            | Command::DecrBy { key, .. } => vec![key],
            Command::Del { keys } | Command::Exists { keys } | Command::MGet { keys } => {
                keys.iter().map(Vec::as_slice).collect()
            }
            Command::MSet { pairs } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
            _ => Vec::new(),
        }
    }
}

impl CommandQuery {
    fn name(&self) -> &'static str {
        match self {
            CommandQuery::List => "command",
            CommandQuery::Count => "command|count",
            CommandQuery::Docs { .. } => "command|docs",
            CommandQuery::Info { .. } => "command|info",
        }
    }
}

impl ClientCommand {
    fn name(&self) -> &'static str {
        match self {
            ClientCommand::SetName { .. } => "client|setname",
            ClientCommand::GetName => "client|getname",
            ClientCommand::Id => "client|id",
            ClientCommand::Info => "client|info",
            ClientCommand::SetInfo { .. } => "client|setinfo",
        }
    }
}
