//! From argument vectors to [`Command`]s: a table of names and arities, then one small parser
//! per command.

use crate::command::{
    ClientAttr, ClientCommand, Command, CommandQuery, Expiry, Hello, SetCondition, SetOptions,
};
use crate::command_error::lossy;
use crate::num::parse_i64;
use crate::{CommandError, Protocol};

/// Parses one command from its arguments. Every argument is owned by the request, so parsers
/// move them out (`take`) rather than copy: a `SET` value may be tens of MiB.
type Parser = fn(&mut [Vec<u8>]) -> Result<Command, CommandError>;

/// A command (or subcommand) the parser knows, with what Redis 7's `COMMAND INFO` and
/// `COMMAND DOCS` report of it: the one table both parsing and those replies read, so that
/// the commands a server accepts and the ones it describes cannot differ. The values are
/// Redis 7.0's own (its `src/commands/*.json`), so a client sees Flotilla's commands as
/// Redis describes them.
pub struct CommandSpec {
    /// Lower-case name, as in Redis's `COMMAND INFO` (`client|setname` for subcommands).
    pub name: &'static str,
    /// Redis's arity convention, counting the name (and subcommand): `n` means exactly `n`
    /// arguments, `-n` at least `n`.
    pub arity: i32,
    /// Redis's command flags as `COMMAND INFO` lists them (lower case, in Redis's order).
    pub flags: &'static [&'static str],
    /// The first key's argument index, the last's (negative: counted from the end) and the
    /// step between keys; `(0, 0, 0)` for a command without keys.
    pub keys: (i32, i32, i32),
    /// For a command whose keys are counted by an argument (`ZUNIONSTORE dst numkeys k…`,
    /// Redis's "movablekeys"): that argument's index, the keys following it; 0 otherwise.
    /// Keys of `keys` before that index are keys too (ZUNIONSTORE's destination).
    pub numkeys: usize,
    /// For a command whose keys follow a keyword (`XREAD … STREAMS k1 k2 id1 id2`, Redis's
    /// "keyword" key spec with a range limited to half the rest): the keyword and the
    /// argument index its search starts from; the arguments after it are keys, then as many
    /// IDs. `None` otherwise.
    pub keys_after: Option<(&'static str, usize)>,
    /// Redis's command group (`string`, `generic`, `connection`, `server`).
    pub group: &'static str,
    /// The Redis version that introduced the command.
    pub since: &'static str,
    /// One line on what the command does.
    pub summary: &'static str,
    /// A container command's subcommands (`CLIENT`'s `client|setname` …); empty otherwise.
    pub subcommands: &'static [CommandSpec],
    /// Turns arguments that passed the arity check into a command; `None` for a key/value
    /// command, which is passed on as its arguments ([`Command::Data`]) for the service's
    /// engine to parse and run, as Redis parses a command's options when it runs it.
    parse: Option<Parser>,
}

pub(crate) const fn spec(name: &'static str, arity: i32, parse: Parser) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: &[],
        keys: (0, 0, 0),
        numkeys: 0,
        keys_after: None,
        group: "",
        since: "",
        summary: "",
        subcommands: &[],
        parse: Some(parse),
    }
}

/// A key/value command: its arguments go to the service's engine as they are.
pub(crate) const fn data(name: &'static str, arity: i32) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: &[],
        keys: (0, 0, 0),
        numkeys: 0,
        keys_after: None,
        group: "",
        since: "",
        summary: "",
        subcommands: &[],
        parse: None,
    }
}

impl CommandSpec {
    pub(crate) const fn flags(self, flags: &'static [&'static str]) -> CommandSpec {
        CommandSpec { flags, ..self }
    }

    pub(crate) const fn keys(self, first: i32, last: i32, step: i32) -> CommandSpec {
        CommandSpec {
            keys: (first, last, step),
            ..self
        }
    }

    /// Keys counted by the argument at `index` (see [`CommandSpec::numkeys`]).
    #[allow(dead_code)] // until a family's table has such a command
    pub(crate) const fn numkeys(self, index: usize) -> CommandSpec {
        CommandSpec {
            numkeys: index,
            ..self
        }
    }

    /// Keys after `keyword`, searched from argument `from` (see [`CommandSpec::keys_after`]).
    pub(crate) const fn keys_after(self, keyword: &'static str, from: usize) -> CommandSpec {
        CommandSpec {
            keys_after: Some((keyword, from)),
            ..self
        }
    }

    pub(crate) const fn doc(
        self,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
    ) -> CommandSpec {
        CommandSpec {
            group,
            since,
            summary,
            ..self
        }
    }

    pub(crate) const fn subcommands(self, subcommands: &'static [CommandSpec]) -> CommandSpec {
        CommandSpec {
            subcommands,
            ..self
        }
    }
}

/// Flags shared by several commands.
pub(crate) const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
pub(crate) const READ_FAST: &[&str] = &["readonly", "fast"];
const INTROSPECT: &[&str] = &["loading", "stale"];
const CLIENT_SUB: &[&str] = &["noscript", "loading", "stale"];
const NO_AUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

/// The top-level commands, the most frequent first since lookup is a linear scan (which beats
/// hashing for two dozen short names): the strings, generic, keyspace, hash and server ones
/// here, the other data types' in `families/`; [`all_commands`] is every one.
const CORE: &[CommandSpec] = &[
    data("get", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Get the value of a key"),
    data("set", -3)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Set the string value of a key"),
    data("mget", -2)
        .flags(READ_FAST)
        .keys(1, -1, 1)
        .doc("string", "1.0.0", "Get the values of all the given keys"),
    data("mset", -3)
        .flags(&["write", "denyoom"])
        .keys(1, -1, 2)
        .doc("string", "1.0.1", "Set multiple keys to multiple values"),
    data("msetnx", -3)
        .flags(&["write", "denyoom"])
        .keys(1, -1, 2)
        .doc("string", "1.0.1", "Set multiple keys to multiple values, only if none of the keys exist"),
    data("setnx", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Set the value of a key, only if the key does not exist"),
    data("setex", 4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("string", "2.0.0", "Set the value and expiration of a key"),
    data("psetex", 4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("string", "2.6.0", "Set the value and expiration in milliseconds of a key"),
    data("getset", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Set the string value of a key and return its old value"),
    data("getdel", 2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("string", "6.2.0", "Get the value of a key and delete the key"),
    data("getex", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("string", "6.2.0", "Get the value of a key and optionally set its expiration"),
    data("append", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "2.0.0", "Append a value to a key"),
    data("strlen", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("string", "2.2.0", "Get the length of the value stored in a key"),
    data("setrange", 4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("string", "2.2.0", "Overwrite part of a string at key starting at the specified offset"),
    data("getrange", 4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("string", "2.4.0", "Get a substring of the string stored at a key"),
    data("substr", 4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Get a substring of the string stored at a key"),
    data("incr", 2)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Increment the integer value of a key by one"),
    data("incrby", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Increment the integer value of a key by the given amount"),
    data("decr", 2)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Decrement the integer value of a key by one"),
    data("decrby", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "Decrement the integer value of a key by the given number"),
    data("incrbyfloat", 3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("string", "2.6.0", "Increment the float value of a key by the given amount"),
    data("lcs", -3)
        .flags(&["readonly"])
        .keys(1, 2, 1)
        .doc("string", "7.0.0", "Find longest common substring"),
    data("del", -2)
        .flags(&["write"])
        .keys(1, -1, 1)
        .doc("generic", "1.0.0", "Delete a key"),
    data("unlink", -2)
        .flags(&["write", "fast"])
        .keys(1, -1, 1)
        .doc("generic", "4.0.0", "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking."),
    data("exists", -2)
        .flags(READ_FAST)
        .keys(1, -1, 1)
        .doc("generic", "1.0.0", "Determine if a key exists"),
    data("touch", -2)
        .flags(READ_FAST)
        .keys(1, -1, 1)
        .doc("generic", "3.2.1", "Alters the last access time of a key(s). Returns the number of existing keys specified."),
    data("type", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("generic", "1.0.0", "Determine the type stored at key"),
    data("rename", 3)
        .flags(&["write"])
        .keys(1, 2, 1)
        .doc("generic", "1.0.0", "Rename a key"),
    data("renamenx", 3)
        .flags(WRITE_FAST)
        .keys(1, 2, 1)
        .doc("generic", "1.0.0", "Rename a key, only if the new key does not exist"),
    data("copy", -3)
        .flags(&["write", "denyoom"])
        .keys(1, 2, 1)
        .doc("generic", "6.2.0", "Copy a key"),
    data("expire", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("generic", "1.0.0", "Set a key's time to live in seconds"),
    data("pexpire", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("generic", "2.6.0", "Set a key's time to live in milliseconds"),
    data("expireat", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("generic", "1.2.0", "Set the expiration for a key as a UNIX timestamp"),
    data("pexpireat", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("generic", "2.6.0", "Set the expiration for a key as a UNIX timestamp specified in milliseconds"),
    data("ttl", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("generic", "1.0.0", "Get the time to live for a key in seconds"),
    data("pttl", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("generic", "2.6.0", "Get the time to live for a key in milliseconds"),
    data("expiretime", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("generic", "7.0.0", "Get the expiration Unix timestamp for a key"),
    data("pexpiretime", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("generic", "7.0.0", "Get the expiration Unix timestamp for a key in milliseconds"),
    data("persist", 2)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("generic", "2.2.0", "Remove the expiration from a key"),
    data("keys", 2)
        .flags(&["readonly"])
        .doc("generic", "1.0.0", "Find all keys matching the given pattern"),
    data("scan", -2)
        .flags(&["readonly"])
        .doc("generic", "2.8.0", "Incrementally iterate the keys space"),
    data("randomkey", 1)
        .flags(&["readonly"])
        .doc("generic", "1.0.0", "Return a random key from the keyspace"),
    data("dbsize", 1)
        .flags(READ_FAST)
        .doc("server", "1.0.0", "Return the number of keys in the selected database"),
    data("flushall", -1)
        .flags(&["write"])
        .doc("server", "1.0.0", "Remove all keys from all databases"),
    data("flushdb", -1)
        .flags(&["write"])
        .doc("server", "1.0.0", "Remove all keys from the current database"),
    data("setbit", 4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("bitmap", "2.2.0", "Sets or clears the bit at offset in the string value stored at key"),
    data("getbit", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("bitmap", "2.2.0", "Returns the bit value at offset in the string value stored at key"),
    data("bitcount", -2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("bitmap", "2.6.0", "Count set bits in a string"),
    data("dump", 2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("generic", "2.6.0", "Return a serialized version of the value stored at the specified key."),
    data("restore", -4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("generic", "2.6.0", "Create a key using the provided serialized value, previously obtained using DUMP."),
    data("hset", -4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Set the string value of a hash field"),
    data("hmset", -4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Set multiple hash fields to multiple values"),
    data("hsetnx", 4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Set the value of a hash field, only if the field does not exist"),
    data("hget", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get the value of a hash field"),
    data("hmget", -3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get the values of all the given hash fields"),
    data("hdel", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Delete one or more hash fields"),
    data("hgetall", 2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get all the fields and values in a hash"),
    data("hkeys", 2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get all the fields in a hash"),
    data("hvals", 2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get all the values in a hash"),
    data("hlen", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Get the number of fields in a hash"),
    data("hexists", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Determine if a hash field exists"),
    data("hstrlen", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("hash", "3.2.0", "Get the length of the value of a hash field"),
    data("hincrby", 4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.0.0", "Increment the integer value of a hash field by the given number"),
    data("hincrbyfloat", 4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("hash", "2.6.0", "Increment the float value of a hash field by the given amount"),
    data("hscan", -3)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("hash", "2.8.0", "Incrementally iterate hash fields and associated values"),
    data("hrandfield", -2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("hash", "6.2.0", "Get one or multiple random fields from a hash"),
    spec("ping", -1, parse_ping)
        .flags(&["fast"])
        .doc("connection", "1.0.0", "Ping the server"),
    spec("echo", 2, |a| {
        Ok(Command::Echo {
            message: take(a, 1),
        })
    })
    .flags(&["loading", "stale", "fast"])
    .doc("connection", "1.0.0", "Echo the given string"),
    spec("info", -1, |a| {
        Ok(Command::Info {
            sections: rest(a, 1),
        })
    })
    .flags(INTROSPECT)
    .doc(
        "server",
        "1.0.0",
        "Get information and statistics about the server",
    ),
    spec("auth", -2, parse_auth).flags(NO_AUTH).doc(
        "connection",
        "1.0.0",
        "Authenticate to the server",
    ),
    spec("quit", -1, |_| Ok(Command::Quit)).flags(NO_AUTH).doc(
        "connection",
        "1.0.0",
        "Close the connection",
    ),
    spec("select", 2, |a| Ok(Command::Select { db: int(&a[1])? }))
        .flags(&["loading", "stale", "fast"])
        .doc(
            "connection",
            "1.0.0",
            "Change the selected database for the current connection",
        ),
    spec("command", -1, |_| Ok(Command::Command(CommandQuery::List)))
        .flags(INTROSPECT)
        .doc("server", "2.8.13", "Get array of Redis command details")
        .subcommands(COMMAND),
    spec("client", -2, container)
        .doc(
            "connection",
            "2.4.0",
            "A container for client connection commands",
        )
        .subcommands(CLIENT),
    spec("hello", -1, parse_hello).flags(NO_AUTH).doc(
        "connection",
        "6.0.0",
        "Handshake with Redis",
    ),
    spec("config", -2, container)
        .doc(
            "server",
            "2.0.0",
            "A container for server configuration commands",
        )
        .subcommands(CONFIG),
    spec("object", -2, container)
        .doc("generic", "2.2.3", "A container for object introspection commands")
        .subcommands(OBJECT),
    spec("memory", -2, container)
        .doc("server", "4.0.0", "A container for memory diagnostics commands")
        .subcommands(MEMORY),
    spec("function", -2, container)
        .doc("scripting", "7.0.0", "A container for function commands")
        .subcommands(FUNCTION),
    spec("multi", 1, |_| Ok(Command::Multi))
        .flags(&["noscript", "loading", "stale", "fast", "allow_busy"])
        .doc("transactions", "1.2.0", "Mark the start of a transaction block"),
    spec("exec", 1, |_| Ok(Command::Exec))
        .flags(&["noscript", "loading", "stale", "skip_slowlog"])
        .doc("transactions", "1.2.0", "Execute all commands issued after MULTI"),
    spec("discard", 1, |_| Ok(Command::Discard))
        .flags(&["noscript", "loading", "stale", "fast", "allow_busy"])
        .doc("transactions", "2.0.0", "Discard all commands issued after MULTI"),
    spec("watch", -2, |a| Ok(Command::Watch { keys: rest(a, 1) }))
        .flags(&["noscript", "loading", "stale", "fast", "allow_busy"])
        .keys(1, -1, 1)
        .doc(
            "transactions",
            "2.2.0",
            "Watch the given keys to determine execution of the MULTI/EXEC block",
        ),
    spec("unwatch", 1, |_| Ok(Command::Unwatch))
        .flags(&["noscript", "loading", "stale", "fast", "allow_busy"])
        .doc("transactions", "2.2.0", "Forget about all watched keys"),
    spec("time", 1, |_| Ok(Command::Time))
        .flags(&["loading", "stale", "fast"])
        .doc("server", "2.6.0", "Return the current server time"),
    spec("lastsave", 1, |_| Ok(Command::LastSave))
        .flags(&["loading", "stale", "fast"])
        .doc(
            "server",
            "1.0.0",
            "Get the UNIX time stamp of the last successful save to disk",
        ),
    spec("save", 1, |_| Ok(Command::Save))
        .flags(&["admin", "noscript", "no_async_loading", "no_multi"])
        .doc("server", "1.0.0", "Synchronously save the dataset to disk"),
    spec("bgsave", -1, |a| match a.len() {
        1 => Ok(Command::BgSave),
        2 if is(&a[1], "schedule") => Ok(Command::BgSave),
        _ => Err(CommandError::Syntax),
    })
    .flags(&["admin", "noscript", "no_async_loading"])
    .doc("server", "1.0.0", "Asynchronously save the dataset to disk"),
    spec("shutdown", -1, |_| Ok(Command::Shutdown))
        .flags(&[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "sentinel",
            "allow_busy",
        ])
        .doc("server", "1.0.0", "Synchronously save the dataset to disk and then shut down the server"),
    spec("reset", 1, |_| Ok(Command::Reset))
        .flags(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"])
        .doc("connection", "6.2.0", "Reset the connection"),
    spec("debug", -2, |a| {
        if a.len() == 3 && is(&a[1], "protocol") {
            Ok(Command::DebugProtocol { kind: take(a, 2) })
        } else {
            Ok(Command::DebugOther {
                sub: take(a, 1),
                args: rest(a, 2),
            })
        }
    })
    .flags(&["admin", "noscript", "loading", "stale"])
    .doc("server", "1.0.0", "A container for debugging commands"),
];

/// `CLIENT` subcommands (arity counts `CLIENT` and the subcommand).
pub const CLIENT: &[CommandSpec] = &[
    spec("client|setname", 3, |a| {
        let name = client_name(take(a, 2), "Client names")?;
        Ok(Command::Client(ClientCommand::SetName { name }))
    })
    .flags(CLIENT_SUB)
    .doc("connection", "2.6.9", "Set the current connection name"),
    spec("client|getname", 2, |_| {
        Ok(Command::Client(ClientCommand::GetName))
    })
    .flags(CLIENT_SUB)
    .doc("connection", "2.6.9", "Get the current connection name"),
    spec("client|id", 2, |_| Ok(Command::Client(ClientCommand::Id)))
        .flags(CLIENT_SUB)
        .doc(
            "connection",
            "5.0.0",
            "Returns the client ID for the current connection",
        ),
    spec("client|info", 2, |_| {
        Ok(Command::Client(ClientCommand::Info))
    })
    .flags(CLIENT_SUB)
    .doc(
        "connection",
        "6.2.0",
        "Returns information about the current client connection.",
    ),
    spec("client|setinfo", 4, parse_client_setinfo)
        .flags(CLIENT_SUB)
        .doc(
            "connection",
            "7.2.0",
            "Sets information specific to the client or connection.",
        ),
];

/// `COMMAND` subcommands; plain `COMMAND` is the container's own parser.
pub const COMMAND: &[CommandSpec] = &[
    spec("command|count", 2, |_| {
        Ok(Command::Command(CommandQuery::Count))
    })
    .flags(INTROSPECT)
    .doc("server", "2.8.13", "Get total number of Redis commands"),
    spec("command|docs", -2, |a| {
        let names = rest(a, 2);
        Ok(Command::Command(CommandQuery::Docs { names }))
    })
    .flags(INTROSPECT)
    .doc(
        "server",
        "7.0.0",
        "Get array of specific Redis command documentation",
    ),
    spec("command|info", -2, |a| {
        let names = rest(a, 2);
        Ok(Command::Command(CommandQuery::Info { names }))
    })
    .flags(INTROSPECT)
    .doc(
        "server",
        "2.8.13",
        "Get array of specific Redis command details, or all when no argument is given.",
    ),
];

/// `CONFIG` subcommands.
pub const CONFIG: &[CommandSpec] = &[
    spec("config|get", -3, |a| {
        Ok(Command::ConfigGet {
            patterns: rest(a, 2),
        })
    })
    .flags(&["admin", "noscript", "loading", "stale"])
    .doc(
        "server",
        "2.0.0",
        "Get the values of configuration parameters",
    ),
    spec("config|set", -4, |a| {
        if !a.len().is_multiple_of(2) {
            return Err(CommandError::WrongArity("config|set"));
        }
        let pairs = a[2..]
            .chunks_exact_mut(2)
            .map(|p| (std::mem::take(&mut p[0]), std::mem::take(&mut p[1])))
            .collect();
        Ok(Command::ConfigSet { pairs })
    })
    .flags(&["admin", "noscript", "loading", "stale"])
    .doc(
        "server",
        "2.0.0",
        "Set configuration parameters to the given values",
    ),
];

/// `OBJECT` subcommands.
pub const OBJECT: &[CommandSpec] = &[
    data("object|refcount", 3)
        .flags(&["readonly"])
        .keys(2, 2, 1)
        .doc(
            "generic",
            "2.2.3",
            "Get the number of references to the value of the key",
        ),
    data("object|encoding", 3)
        .flags(&["readonly"])
        .keys(2, 2, 1)
        .doc(
            "generic",
            "2.2.3",
            "Inspect the internal encoding of a Redis object",
        ),
];

/// `MEMORY` subcommands.
pub const MEMORY: &[CommandSpec] = &[data("memory|usage", -3)
    .flags(&["readonly"])
    .keys(2, 2, 1)
    .doc("server", "4.0.0", "Estimate the memory usage of a key")];

/// `FUNCTION` subcommands: only FLUSH (Flotilla has no functions; every test file of Redis's
/// suite starts with `FUNCTION FLUSH`).
pub const FUNCTION: &[CommandSpec] = &[spec("function|flush", -2, |a| match a.len() {
    2 => Ok(Command::FunctionFlush),
    3 if is(&a[2], "sync") || is(&a[2], "async") => Ok(Command::FunctionFlush),
    _ => Err(CommandError::Syntax),
})
.flags(&["write", "noscript"])
.doc("scripting", "7.0.0", "Deleting all functions")];

impl Command {
    /// Parses a request's arguments (name first, any case). Copies the arguments; the router
    /// should prefer [`Command::from_args`], which moves them.
    pub fn parse(args: &[Vec<u8>]) -> Result<Command, CommandError> {
        Command::from_args(args.to_vec())
    }

    /// Parses a request's arguments, moving keys and values out of `args`.
    pub fn from_args(mut args: Vec<Vec<u8>>) -> Result<Command, CommandError> {
        let name = args.first().ok_or(CommandError::Empty)?;
        let spec = top_level(name).ok_or_else(|| CommandError::unknown(&args))?;
        run(spec, &mut args)
    }
}

/// The spec in `table` whose name (after `prefix|`) is `name`, in any case.
fn lookup<'a>(table: &'a [CommandSpec], prefix: &str, name: &[u8]) -> Option<&'a CommandSpec> {
    table.iter().find(|spec| {
        let short = spec.name.strip_prefix(prefix).unwrap_or(spec.name);
        let short = short.strip_prefix('|').unwrap_or(short);
        short.as_bytes().eq_ignore_ascii_case(name)
    })
}

fn run(spec: &CommandSpec, args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Err(CommandError::WrongArity(spec.name));
    }
    if !spec.subcommands.is_empty() && args.len() > 1 {
        return sub(args, spec.name, spec.subcommands);
    }
    match spec.parse {
        Some(parse) => parse(args),
        None => Ok(Command::Data {
            name: spec.name,
            args: args.iter_mut().map(std::mem::take).collect(),
        }),
    }
}

/// The top-level commands by lower-case name: every request looks its name up (in the
/// router, and again in each replica that applies it), and the table has grown past the
/// size where a linear scan is cheap.
fn by_name() -> &'static std::collections::HashMap<&'static str, &'static CommandSpec> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<&str, &CommandSpec>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| all_commands().map(|s| (s.name, s)).collect())
}

/// The tables of top-level commands: the core one, then one per data type family.
const TABLES: &[&[CommandSpec]] = &[
    CORE,
    crate::families::lists::LISTS,
    crate::families::sets::SETS,
    crate::families::zsets::ZSETS,
    crate::families::streams::STREAMS,
];

/// Every top-level command (what `COMMAND` lists), in table order.
pub fn all_commands() -> impl Iterator<Item = &'static CommandSpec> + Clone {
    TABLES.iter().flat_map(|t| t.iter())
}

/// A top-level command's spec by name, in any case.
fn top_level(name: &[u8]) -> Option<&'static CommandSpec> {
    // Names are short ASCII words: lower-cased on the stack (a longer name is no command).
    let mut lower = [0u8; 24];
    let lower = lower.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    by_name().get(std::str::from_utf8(lower).ok()?).copied()
}

/// The spec of the top-level command `name` (any case), or of a subcommand given as
/// `container|sub` (`memory|usage`), as [`Command::name`] names it.
pub fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        None => top_level(name),
        Some(bar) => {
            let container = top_level(&name[..bar])?;
            lookup(container.subcommands, container.name, &name[bar + 1..])
        }
    }
}

/// The spec of the command a request's arguments name: the subcommand's for a container
/// command with one (`MEMORY USAGE k`), else the command's.
pub fn command_spec<A: AsRef<[u8]>>(args: &[A]) -> Option<&'static CommandSpec> {
    let spec = top_level(args.first()?.as_ref())?;
    match args.get(1) {
        Some(sub) if !spec.subcommands.is_empty() => {
            lookup(spec.subcommands, spec.name, sub.as_ref())
        }
        _ => Some(spec),
    }
}

impl CommandSpec {
    /// Whether the command only reads (Redis's `readonly` flag).
    pub fn is_read_only(&self) -> bool {
        self.flags.contains(&"readonly")
    }

    /// Whether the command's arguments go to the service's engine ([`Command::Data`]).
    pub fn is_data(&self) -> bool {
        self.parse.is_none()
    }

    /// Whether the command names keys (it is routed by them).
    pub fn has_keys(&self) -> bool {
        self.keys != (0, 0, 0) || self.numkeys != 0 || self.keys_after.is_some()
    }

    /// The positions of the key arguments among `args` (the name at 0), by the spec's key
    /// range: Redis's `(first, last, step)`, a negative last counted from the end; for a
    /// command with [`CommandSpec::numkeys`], the range's keys before the count's argument,
    /// then as many as it says (no more than there are arguments: a bad count is the
    /// engine's to refuse).
    pub fn key_positions<A: AsRef<[u8]>>(&self, args: &[A]) -> Vec<usize> {
        let nargs = args.len();
        if let Some((keyword, from)) = self.keys_after {
            // Redis's keyword search: the first match from `from` on; half the rest are keys
            // (an odd rest is the engine's to refuse).
            let found = (args.iter().enumerate().skip(from))
                .find(|(_, a)| a.as_ref().eq_ignore_ascii_case(keyword.as_bytes()));
            return found.map_or_else(Vec::new, |(at, _)| {
                let n = (nargs - at - 1) / 2;
                (at + 1..at + 1 + n).collect()
            });
        }
        let (first, last, step) = self.keys;
        let (first, n) = (i64::from(first), nargs as i64);
        let last = if last < 0 {
            n + i64::from(last)
        } else {
            i64::from(last)
        };
        let end = if first <= 0 {
            first
        } else {
            last.min(n - 1) + 1
        };
        let fixed = (first.max(0)..end.max(first.max(0)))
            .step_by(step.max(1) as usize)
            .map(|i| i as usize);
        if self.numkeys == 0 {
            return fixed.collect();
        }
        let mut keys: Vec<usize> = fixed.filter(|&i| i < self.numkeys).collect();
        let count = (args.get(self.numkeys))
            .and_then(|a| crate::parse_i64(a.as_ref()))
            .and_then(|c| usize::try_from(c).ok())
            .unwrap_or(0);
        let start = self.numkeys + 1;
        keys.extend(start..(start.saturating_add(count)).min(nargs));
        keys
    }
}

/// A container's parser, never called: its arity (at least 2) means a subcommand is always
/// named, and `run` goes to the subcommand's spec instead.
pub(crate) fn container(_: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    Err(CommandError::Syntax)
}

/// Dispatches a container command (`CLIENT SETNAME ...`) on its subcommand, `args[1]`.
fn sub(
    args: &mut [Vec<u8>],
    command: &str,
    table: &[CommandSpec],
) -> Result<Command, CommandError> {
    match lookup(table, command, &args[1]) {
        Some(spec) => run(spec, args),
        None => Err(CommandError::unknown_subcommand(command, &args[1])),
    }
}

/// Moves argument `i` out (the arity check guarantees it exists).
fn take(args: &mut [Vec<u8>], i: usize) -> Vec<u8> {
    std::mem::take(&mut args[i])
}

/// Moves arguments `from..` out.
fn rest(args: &mut [Vec<u8>], from: usize) -> Vec<Vec<u8>> {
    args[from..].iter_mut().map(std::mem::take).collect()
}

fn int(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn parse_ping(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    match args.len() {
        1 => Ok(Command::Ping { message: None }),
        2 => Ok(Command::Ping {
            message: Some(take(args, 1)),
        }),
        _ => Err(CommandError::WrongArity("ping")),
    }
}

fn parse_auth(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    match args.len() {
        2 => Ok(Command::Auth {
            username: None,
            password: take(args, 1),
        }),
        3 => Ok(Command::Auth {
            username: Some(take(args, 1)),
            password: take(args, 2),
        }),
        // Redis answers a syntax error here, not an arity error.
        _ => Err(CommandError::Syntax),
    }
}

fn parse_client_setinfo(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let attr = if is(&args[2], "lib-name") {
        ClientAttr::LibName
    } else if is(&args[2], "lib-ver") {
        ClientAttr::LibVer
    } else {
        return Err(CommandError::UnrecognizedOption(lossy(&args[2])));
    };
    let value = client_name(take(args, 3), &lossy(&args[2]))?;
    Ok(Command::Client(ClientCommand::SetInfo { attr, value }))
}

/// Client names and library attributes must be printable ASCII without spaces, because
/// `CLIENT LIST` prints them space-separated (Redis's `validateClientAttr`).
fn client_name(name: Vec<u8>, what: &str) -> Result<Vec<u8>, CommandError> {
    if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(name)
    } else {
        Err(CommandError::BadName(what.to_owned()))
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME name]]`, checked in Redis's order:
/// version format, version value, then options.
fn parse_hello(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let mut hello = Hello::default();
    if args.len() == 1 {
        return Ok(Command::Hello(hello));
    }
    let version = parse_i64(&args[1]).ok_or(CommandError::ProtocolVersionNotInteger)?;
    hello.protocol = Some(Protocol::from_version(version).ok_or(CommandError::NoProto)?);
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if is(&args[i], "auth") && more >= 2 {
            hello.auth = Some((take(args, i + 1), take(args, i + 2)));
            i += 3;
        } else if is(&args[i], "setname") && more >= 1 {
            hello.setname = Some(client_name(take(args, i + 1), "Client names")?);
            i += 2;
        } else {
            return Err(CommandError::HelloOption(lossy(&args[i])));
        }
    }
    Ok(Command::Hello(hello))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`, in Redis's order: first
/// the option words (any conflict is a syntax error), then the expiry number.
impl SetOptions {
    /// `SET`'s options: the arguments after the key and the value. Redis's rules: at most
    /// one of NX/XX and one expiry (the same unit may repeat, the last wins), KEEPTTL only
    /// without an expiry, every number an integer (else "not an integer") and positive, and
    /// seconds small enough in milliseconds (else "invalid expire time").
    pub fn parse<A: AsRef<[u8]>>(words: &[A]) -> Result<SetOptions, CommandError> {
        let mut options = SetOptions::default();
        let mut expiry: Option<(&str, usize)> = None;
        let mut keep_ttl = false;
        let mut i = 0;
        while i < words.len() {
            let word = words[i].as_ref();
            let has_value = i + 1 < words.len();
            if is(word, "nx") && options.condition != Some(SetCondition::IfPresent) {
                options.condition = Some(SetCondition::IfAbsent);
            } else if is(word, "xx") && options.condition != Some(SetCondition::IfAbsent) {
                options.condition = Some(SetCondition::IfPresent);
            } else if is(word, "get") {
                options.get = true;
            } else if is(word, "keepttl") && expiry.is_none() {
                keep_ttl = true;
            } else if let Some(unit) = expiry_unit(word).filter(|_| has_value && !keep_ttl) {
                if expiry.is_some_and(|(u, _)| u != unit) {
                    return Err(CommandError::Syntax);
                }
                expiry = Some((unit, i + 1));
                i += 1;
            } else {
                return Err(CommandError::Syntax);
            }
            i += 1;
        }
        options.expiry = match expiry {
            Some((unit, at)) => Some(set_expiry(unit, words[at].as_ref())?),
            None if keep_ttl => Some(Expiry::KeepTtl),
            None => None,
        };
        Ok(options)
    }
}

fn expiry_unit(word: &[u8]) -> Option<&'static str> {
    ["ex", "px", "exat", "pxat"]
        .into_iter()
        .find(|unit| is(word, unit))
}

/// The expiry number: an integer (else "not an integer"), positive and, for seconds, small
/// enough to convert to milliseconds (else "invalid expire time").
fn set_expiry(unit: &str, arg: &[u8]) -> Result<Expiry, CommandError> {
    let n = int(arg)?;
    let seconds = unit == "ex" || unit == "exat";
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(CommandError::InvalidExpireTime("set"));
    }
    let n = n.unsigned_abs();
    Ok(match unit {
        "ex" => Expiry::Seconds(n),
        "px" => Expiry::Millis(n),
        "exat" => Expiry::UnixSeconds(n),
        _ => Expiry::UnixMillis(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least request `spec` accepts: its name words, then as many arguments as its arity
    /// asks for (`1`, which every parser here takes, except `CLIENT SETINFO`'s attribute).
    fn least_request(spec: &CommandSpec) -> Vec<Vec<u8>> {
        let mut args: Vec<Vec<u8>> = spec.name.split('|').map(|w| w.into()).collect();
        while args.len() < spec.arity.unsigned_abs() as usize {
            args.push(b"1".to_vec());
        }
        if spec.name == "client|setinfo" {
            args[2] = b"lib-name".to_vec();
        }
        args
    }

    /// The table is what `COMMAND INFO` reports, so every entry (each subcommand too) must
    /// parse, by its own name and arity, to the command that carries its name; and a
    /// container's entry has no flags or keys of its own to report wrongly.
    #[test]
    fn every_spec_parses_to_the_command_of_its_name() {
        for spec in all_commands() {
            // CLIENT and CONFIG are nothing without a subcommand; plain COMMAND is a command.
            if spec.subcommands.is_empty() || spec.arity == -1 {
                let cmd = Command::from_args(least_request(spec))
                    .unwrap_or_else(|e| panic!("{}: {e:?}", spec.name));
                assert_eq!(cmd.name(), spec.name);
            }
            for sub in spec.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", spec.name)));
                let cmd = Command::from_args(least_request(sub))
                    .unwrap_or_else(|e| panic!("{}: {e:?}", sub.name));
                assert_eq!(cmd.name(), sub.name);
                assert!(sub.subcommands.is_empty(), "one level of subcommands");
            }
            assert!(!spec.group.is_empty() && !spec.summary.is_empty() && !spec.since.is_empty());
        }
    }

    #[test]
    fn counted_keys_follow_their_count() {
        fn args(s: &str) -> Vec<&[u8]> {
            s.split(' ').map(str::as_bytes).collect()
        }
        let zunionstore = data("zunionstore", -4).keys(1, 1, 1).numkeys(2);
        assert_eq!(
            zunionstore.key_positions(&args("zunionstore d 2 a b weights 1 2")),
            [1, 3, 4]
        );
        // A count past the arguments, or not a count, names only what is there.
        assert_eq!(
            zunionstore.key_positions(&args("zunionstore d 9 a b")),
            [1, 3, 4]
        );
        assert_eq!(zunionstore.key_positions(&args("zunionstore d x a")), [1]);
        let sintercard = data("sintercard", -3).keys(1, 1, 1).numkeys(1);
        assert_eq!(
            sintercard.key_positions(&args("sintercard 2 a b limit 3")),
            [2, 3]
        );
        assert!(sintercard.has_keys());
        let xread = data("xread", -4).keys_after("streams", 1);
        assert_eq!(
            xread.key_positions(&args("xread count 2 STREAMS a b 0 0")),
            [4, 5]
        );
        assert_eq!(xread.key_positions(&args("xread streams a b 0")), [2]);
        assert_eq!(xread.key_positions(&args("xread count 2")), [0usize; 0]);
        assert!(xread.has_keys());
        let mget = data("mget", -2).keys(1, -1, 1);
        assert_eq!(mget.key_positions(&args("mget a b c")), [1, 2, 3]);
    }

    /// Redis's key range: a command with keys starts at 1 and steps by at least 1; one
    /// without has none at all.
    #[test]
    fn key_ranges_are_redis_shaped() {
        for spec in all_commands()
            .chain(CLIENT)
            .chain(COMMAND)
            .chain(CONFIG)
            .chain(FUNCTION)
        {
            let (first, last, step) = spec.keys;
            assert!(
                (first, last, step) == (0, 0, 0) || (first == 1 && step >= 1 && last != 0),
                "{}",
                spec.name
            );
        }
    }
}
