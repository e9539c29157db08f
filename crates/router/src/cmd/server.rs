//! Commands on the server: INFO, CONFIG GET, COMMAND, and those not supported yet (DBSIZE,
//! FLUSHALL, FLUSHDB). Next: CONFIG SET, COMMAND's real data, INFO's sections.

use std::sync::atomic::Ordering;

use flotilla_resp::{CommandQuery, Value};

use super::Reply;
use crate::listener::Router;

/// `INFO [section …]`: every section, whichever are asked for.
pub(super) fn info(r: &Router) -> Reply {
    let budget = r.budget.stats();
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\nflotilla_version:{}\r\nredis_mode:standalone\r\n\r\n# Clients\r\nconnected_clients:{}\r\nflotilla_buffered_bytes:{}\r\nflotilla_buffered_bytes_peak:{}\r\nflotilla_max_buffered_bytes:{}\r\nflotilla_buffer_waits:{}\r\n\r\n# Replication\r\nrole:master\r\n{}\r\n",
        env!("CARGO_PKG_VERSION"),
        r.connections.load(Ordering::Relaxed),
        budget.used,
        budget.peak,
        budget.max,
        budget.waits,
        r.kv.info_line(),
    );
    Ok(Value::bulk(text))
}

/// `CONFIG GET parameter [parameter …]`.
pub(super) fn config_get(r: &Router, patterns: &[Vec<u8>]) -> Reply {
    Ok(matching(&config_values(r), patterns))
}

/// The settings `CONFIG GET` reports: redis-benchmark asks for `save` and `appendonly`;
/// `timeout` and `maxclients` are the router's own, in Redis's units.
fn config_values(r: &Router) -> Vec<(&'static str, String)> {
    let timeout = r.cfg.idle_timeout.map_or(0.0, |t| t.as_secs_f64());
    vec![
        ("save", String::new()),
        ("appendonly", "yes".into()),
        ("databases", "1".into()),
        ("timeout", format!("{timeout}")),
        ("maxclients", r.cfg.max_clients.to_string()),
    ]
}

/// `COMMAND [COUNT | DOCS | INFO]`: no data on the commands yet (redis-cli asks for DOCS when
/// it starts, for hints, and does without them).
pub(super) fn command(q: CommandQuery) -> Reply {
    Ok(match q {
        CommandQuery::Count => Value::Integer(0),
        CommandQuery::List => Value::Array(Vec::new()),
        CommandQuery::Docs { .. } => Value::Map(Vec::new()),
        CommandQuery::Info { names } => {
            Value::Array(names.iter().map(|_| Value::NullArray).collect())
        }
    })
}

/// A command parsed but not supported: `name` as [`flotilla_resp::Command::name`] gives it.
pub(super) fn unsupported(name: &str) -> Reply {
    Err(Value::error(format!(
        "ERR {} is not supported by flotilla",
        name.to_uppercase()
    )))
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
    fn command_reports_no_data_and_unsupported_commands_say_so() {
        assert_eq!(command(CommandQuery::Count), Ok(Value::Integer(0)));
        let names = vec![b"get".to_vec(), b"set".to_vec()];
        assert_eq!(
            command(CommandQuery::Info { names }),
            Ok(Value::Array(vec![Value::NullArray, Value::NullArray]))
        );
        assert_eq!(
            unsupported("flushdb"),
            Err(Value::error("ERR FLUSHDB is not supported by flotilla"))
        );
    }
}
