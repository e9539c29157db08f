//! The commands Flotilla understands, as typed values.

use crate::Protocol;

/// One parsed request. Keys and values are binary-safe byte strings. Parsing checks syntax,
/// arity and number formats, the way Redis does before running a command; what a command
/// means (and whether the router supports, say, `SET ... NX`) is the router's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A key/value command (`GET`, `SET`, `EXPIRE`, `SCAN` …: every command whose spec has no
    /// parser), passed on as its arguments (the name first) for the service's engine to parse
    /// and run, as Redis parses a command's options when it runs it. `name` is the spec's.
    Data {
        name: &'static str,
        args: Vec<Vec<u8>>,
    },
    /// `CONFIG SET parameter value [parameter value ...]`.
    ConfigSet { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// `FUNCTION FLUSH [ASYNC|SYNC]`.
    FunctionFlush,
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key [key ...]`.
    Watch { keys: Vec<Vec<u8>> },
    /// `UNWATCH`.
    Unwatch,
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
    /// `TIME`: the server's clock, as seconds and microseconds.
    Time,
    /// `LASTSAVE`: when the data was last known to be on disk.
    LastSave,
    /// `SAVE`.
    Save,
    /// `BGSAVE [SCHEDULE]`.
    BgSave,
    /// `SHUTDOWN [options]`: refused (the cluster is stopped by its process manager).
    Shutdown,
    /// `RESET`: the connection back to its state on connecting (RESP2, no name, no
    /// transaction, no watched keys, the default user).
    Reset,
    /// `DEBUG PROTOCOL type`: a reply of the RESP type named (Redis's clients and its test
    /// suite check their decoders with it); `kind` as sent.
    DebugProtocol { kind: Vec<u8> },
    /// `DEBUG subcommand ...` other than PROTOCOL: the subcommand as sent, and its arguments.
    DebugOther { sub: Vec<u8>, args: Vec<Vec<u8>> },
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

impl Command {
    /// The command's name as Redis reports it in errors and `COMMAND INFO`: lower case, with
    /// `|subcommand` for container commands (`client|setname`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Data { name, .. } => name,
            Command::ConfigSet { .. } => "config|set",
            Command::FunctionFlush => "function|flush",
            Command::Multi => "multi",
            Command::Exec => "exec",
            Command::Discard => "discard",
            Command::Watch { .. } => "watch",
            Command::Unwatch => "unwatch",
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
            Command::Time => "time",
            Command::LastSave => "lastsave",
            Command::Save => "save",
            Command::BgSave => "bgsave",
            Command::Shutdown => "shutdown",
            Command::Reset => "reset",
            Command::DebugProtocol { .. } | Command::DebugOther { .. } => "debug",
        }
    }

    /// The keys the command reads or writes, in argument order: what the router shards on.
    /// Empty for commands that touch no key (or all of them, like `FLUSHALL`).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Data { name, args } => match crate::parse::find_command(name.as_bytes()) {
                Some(spec) => (spec.key_positions(args).into_iter())
                    .map(|i| args[i].as_slice())
                    .collect(),
                None => Vec::new(),
            },
            Command::Watch { keys } => keys.iter().map(Vec::as_slice).collect(),
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
