//! Commands on the server: INFO, CONFIG GET, COMMAND, and those not supported yet (DBSIZE,
//! FLUSHALL, FLUSHDB). Next: CONFIG SET.
//!
//! INFO's fields carry Redis's names where the router has the figure, so that tools reading
//! them (`redis-cli --stat` reads `db<n>:keys`, `used_memory`, `connected_clients`,
//! `blocked_clients`, `total_commands_processed`, `total_connections_received`,
//! `bgsave_in_progress`, `aof_rewrite_in_progress`, `loading`) show true numbers. Two are
//! stand-ins, said here because the field names cannot say it: `used_memory` is the router
//! process's resident memory (the data lives in the replicas, which the router does not
//! measure), and the keyspace section has no `db0` line, since the router cannot count keys
//! without asking every group (Redis, too, omits a database without keys). The CPU section is
//! empty: the process's CPU times need `getrusage`, which the router (no unsafe code) lacks.

use std::sync::atomic::Ordering;

use flotilla_resp::{CommandQuery, CommandSpec, Value, COMMANDS};

use super::Reply;
use crate::listener::Router;

/// INFO's sections in Redis's order; all of them are in Redis's default set.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

/// `INFO [section …]`: the sections asked for (any case; `default`, `all` and `everything`
/// mean all of them; none means `default`), in Redis's order; only unknown names give an
/// empty string, as Redis answers.
pub(super) fn info(r: &Router, asked: &[Vec<u8>]) -> Reply {
    let wanted = |name: &str| {
        asked.is_empty()
            || asked.iter().any(|a| {
                a.eq_ignore_ascii_case(name.as_bytes())
                    || ["default", "all", "everything"]
                        .iter()
                        .any(|all| a.eq_ignore_ascii_case(all.as_bytes()))
            })
    };
    let sections: Vec<String> = (SECTIONS.iter())
        .filter(|name| wanted(name))
        .map(|name| section(r, name))
        .collect();
    Ok(Value::bulk(sections.join("\r\n")))
}

/// One INFO section: its `# Title` line and `name:value` lines, each ending in CRLF.
fn section(r: &Router, name: &str) -> String {
    let title = match name {
        "cpu" => "CPU".to_owned(),
        _ => name[..1].to_ascii_uppercase() + &name[1..],
    };
    let fields: Vec<(&str, String)> = match name {
        "server" => {
            let uptime = r.started.elapsed().as_secs();
            vec![
                ("redis_version", "7.0.0".into()),
                ("flotilla_version", env!("CARGO_PKG_VERSION").into()),
                ("redis_mode", "standalone".into()),
                ("arch_bits", usize::BITS.to_string()),
                ("process_id", std::process::id().to_string()),
                ("uptime_in_seconds", uptime.to_string()),
                ("uptime_in_days", (uptime / 86_400).to_string()),
            ]
        }
        "clients" => {
            let budget = r.budget.stats();
            vec![
                (
                    "connected_clients",
                    r.connections.load(Ordering::Relaxed).to_string(),
                ),
                ("maxclients", r.cfg.max_clients.to_string()),
                // No command blocks (no BLPOP, no WAIT).
                ("blocked_clients", "0".into()),
                ("flotilla_buffered_bytes", budget.used.to_string()),
                ("flotilla_buffered_bytes_peak", budget.peak.to_string()),
                ("flotilla_max_buffered_bytes", budget.max.to_string()),
                ("flotilla_buffer_waits", budget.waits.to_string()),
            ]
        }
        // `used_memory` first: redis-cli finds a field by the first occurrence of its name.
        "memory" => match resident_bytes() {
            Some(rss) => vec![
                ("used_memory", rss.to_string()),
                ("used_memory_rss", rss.to_string()),
                ("maxmemory", "0".into()),
                ("maxmemory_policy", "noeviction".into()),
            ],
            None => vec![
                ("maxmemory", "0".into()),
                ("maxmemory_policy", "noeviction".into()),
            ],
        },
        // The router loads nothing and forks nothing; the replicas' durability is a log,
        // which CONFIG GET reports as `appendonly yes`.
        "persistence" => vec![
            ("loading", "0".into()),
            ("async_loading", "0".into()),
            ("rdb_bgsave_in_progress", "0".into()),
            ("aof_enabled", "1".into()),
            ("aof_rewrite_in_progress", "0".into()),
        ],
        "stats" => vec![
            (
                "total_connections_received",
                r.connections_received.load(Ordering::Relaxed).to_string(),
            ),
            (
                "total_commands_processed",
                r.commands_processed.load(Ordering::Relaxed).to_string(),
            ),
        ],
        "replication" => {
            return format!("# Replication\r\nrole:master\r\n{}\r\n", r.kv.info_line())
        }
        _ => Vec::new(),
    };
    let mut text = format!("# {title}\r\n");
    for (k, v) in fields {
        text.push_str(&format!("{k}:{v}\r\n"));
    }
    text
}

/// The router process's resident memory in bytes (`VmRSS` of /proc/self/status), where there
/// is one to read.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// `CONFIG GET parameter [parameter …]`.
pub(super) fn config_get(r: &Router, patterns: &[Vec<u8>]) -> Reply {
    Ok(matching(&config_values(r), patterns))
}

/// Redis's settings of its in-memory encodings (when a small hash stops being a listpack …):
/// Flotilla has one encoding, so they change nothing, but CONFIG SET takes them (clients
/// and Redis's tests set them) and CONFIG GET reports what was set, with Redis's defaults.
pub(crate) const ENCODING_SETTINGS: &[(&str, &str)] = &[
    ("hash-max-listpack-entries", "128"),
    ("hash-max-listpack-value", "64"),
    ("hash-max-ziplist-entries", "128"),
    ("hash-max-ziplist-value", "64"),
    ("list-max-listpack-size", "-2"),
    ("list-max-ziplist-size", "-2"),
    ("list-compress-depth", "0"),
    ("set-max-intset-entries", "512"),
    ("set-max-listpack-entries", "128"),
    ("set-max-listpack-value", "64"),
    ("zset-max-listpack-entries", "128"),
    ("zset-max-listpack-value", "64"),
    ("zset-max-ziplist-entries", "128"),
    ("zset-max-ziplist-value", "64"),
];

/// `CONFIG SET parameter value [parameter value …]`: all or nothing, as Redis does. Only the
/// encoding settings may be set (kept per router, no effect); any other is refused in
/// Redis's words: the router's own settings come from its command line.
pub(super) fn config_set(r: &Router, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Reply {
    let mut changes = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
        let Some((known, _)) = ENCODING_SETTINGS.iter().find(|(n, _)| *n == name) else {
            return Err(Value::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        if flotilla_resp::parse_i64(&value).is_none() {
            return Err(Value::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
            )));
        }
        changes.push((*known, String::from_utf8_lossy(&value).into_owned()));
    }
    let mut set = r.encoding_settings.lock().expect("settings lock");
    for (name, value) in changes {
        set.insert(name, value);
    }
    Ok(Value::ok())
}

/// The settings `CONFIG GET` reports: redis-benchmark asks for `save` and `appendonly`,
/// redis-cli for `databases`;
/// `timeout` and `maxclients` are the router's own, in Redis's units.
fn config_values(r: &Router) -> Vec<(&'static str, String)> {
    let timeout = r.cfg.idle_timeout.map_or(0.0, |t| t.as_secs_f64());
    let set = r.encoding_settings.lock().expect("settings lock");
    let encodings = ENCODING_SETTINGS.iter().map(|(n, default)| {
        (
            *n,
            set.get(n).cloned().unwrap_or_else(|| (*default).to_owned()),
        )
    });
    let mut values: Vec<(&'static str, String)> = encodings.collect();
    values.extend([
        ("save", String::new()),
        ("appendonly", "yes".into()),
        ("databases", "1".into()),
        ("timeout", format!("{timeout}")),
        ("maxclients", r.cfg.max_clients.to_string()),
        // The router evicts nothing and sets no memory limit: Redis's defaults, true here.
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
    ]);
    values
}

/// `COMMAND [COUNT | DOCS | INFO]`, from the parser's table less the commands the router
/// answers "not supported": Redis 7's shapes, with the table's name, arity, flags, key
/// range and docs (summary, since, group); ACL categories, tips and key specs are empty.
pub(super) fn command(q: CommandQuery) -> Reply {
    Ok(match q {
        CommandQuery::Count => Value::Integer(supported().count() as i64),
        CommandQuery::List => Value::Array(supported().map(command_info).collect()),
        CommandQuery::Info { names } if names.is_empty() => {
            Value::Array(supported().map(command_info).collect())
        }
        CommandQuery::Info { names } => Value::Array(
            (names.iter())
                .map(|n| find(n).map_or(Value::Null, command_info))
                .collect(),
        ),
        CommandQuery::Docs { names } if names.is_empty() => Value::Map(
            supported()
                .map(|s| (Value::bulk(s.name), docs(s)))
                .collect(),
        ),
        CommandQuery::Docs { names } => Value::Map(
            (names.iter())
                .filter_map(|n| find(n))
                .map(|s| (Value::bulk(s.name), docs(s)))
                .collect(),
        ),
    })
}

/// The top-level commands the router runs.
fn supported() -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter()
}

/// The supported command named `name` (`get`, or `client|setname` for a subcommand), in any
/// case, as Redis's `lookupCommandBySds` finds it.
fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut words = name.splitn(2, |&b| b == b'|');
    let top = words.next()?;
    let spec = supported().find(|s| s.name.as_bytes().eq_ignore_ascii_case(top))?;
    match words.next() {
        None => Some(spec),
        Some(_) => (spec.subcommands.iter()).find(|s| s.name.as_bytes().eq_ignore_ascii_case(name)),
    }
}

/// A command's `COMMAND INFO` entry: name, arity, flags, first key, last key, step, ACL
/// categories, tips, key specs, subcommands.
fn command_info(spec: &CommandSpec) -> Value {
    let (first, last, step) = spec.keys;
    let subcommands = if spec.subcommands.is_empty() {
        Value::Set(Vec::new())
    } else {
        Value::Array(spec.subcommands.iter().map(command_info).collect())
    };
    Value::Array(vec![
        Value::bulk(spec.name),
        Value::Integer(spec.arity.into()),
        Value::Set(spec.flags.iter().map(|f| Value::simple(*f)).collect()),
        Value::Integer(first.into()),
        Value::Integer(last.into()),
        Value::Integer(step.into()),
        Value::Set(Vec::new()),
        Value::Set(Vec::new()),
        Value::Set(Vec::new()),
        subcommands,
    ])
}

/// A command's `COMMAND DOCS` map: summary, since, group, and its subcommands' docs (redis-cli
/// builds its help from these, and needs the first three of every entry).
fn docs(spec: &CommandSpec) -> Value {
    let mut doc = vec![
        (Value::bulk("summary"), Value::bulk(spec.summary)),
        (Value::bulk("since"), Value::bulk(spec.since)),
        (Value::bulk("group"), Value::bulk(spec.group)),
    ];
    if !spec.subcommands.is_empty() {
        let subs = (spec.subcommands.iter()).map(|s| (Value::bulk(s.name), docs(s)));
        doc.push((Value::bulk("subcommands"), Value::Map(subs.collect())));
    }
    Value::Map(doc)
}

/// The `known` settings matching any of `patterns`, each once, in the order of `patterns`.
fn matching(known: &[(&'static str, String)], patterns: &[Vec<u8>]) -> Value {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for p in patterns {
        for (k, v) in known {
            if glob_match(p, k.as_bytes()) && !pairs.iter().any(|(n, _)| n == k) {
                pairs.push((k, v));
            }
        }
    }
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::bulk(k), Value::bulk(v)))
            .collect(),
    )
}

/// `*` and `?` globbing, as CONFIG GET patterns use.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob_match(rest, text) || (!text.is_empty() && glob_match(pattern, &text[1..]))
        }
        (Some((b'?', rest)), Some((_, t))) => glob_match(rest, t),
        (Some((p, rest)), Some((c, t))) => p.eq_ignore_ascii_case(c) && glob_match(rest, t),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patterns_glob() {
        assert!(glob_match(b"save", b"save"));
        assert!(glob_match(b"*", b"appendonly"));
        assert!(glob_match(b"APPEND*", b"appendonly"));
        assert!(!glob_match(b"save?", b"save"));
        let known = [("save", String::new()), ("appendonly", "yes".into())];
        let Value::Map(pairs) = matching(&known, &[b"save".to_vec(), b"*only".to_vec()]) else {
            panic!("a map")
        };
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn a_setting_matched_twice_is_reported_once() {
        let known = [("save", String::new()), ("timeout", "0".into())];
        let got = matching(&known, &[b"t*".to_vec(), b"*".to_vec()]);
        let want = Value::Map(vec![
            (Value::bulk("timeout"), Value::bulk("0")),
            (Value::bulk("save"), Value::bulk("")),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn command_reports_the_table() {
        let count = COMMANDS.len();
        assert_eq!(
            command(CommandQuery::Count),
            Ok(Value::Integer(count as i64))
        );
        let names = vec![b"GET".to_vec(), b"nosuch".to_vec(), b"client|ID".to_vec()];
        let Ok(Value::Array(infos)) = command(CommandQuery::Info { names }) else {
            panic!("an array")
        };
        assert_eq!(infos[0], command_info(&COMMANDS[0]));
        assert_eq!(infos[1], Value::Null, "not a command, so not listed");
        let Value::Array(id) = &infos[2] else {
            panic!("client|id is listed")
        };
        assert_eq!(id[0], Value::bulk("client|id"));
    }
}
