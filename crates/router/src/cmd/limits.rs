//! The settings that refuse commands before they run, as Redis's `processCommand` does:
//!
//! * `maxmemory` (CONFIG SET): while the router's used memory (INFO's `used_memory`, the
//!   router process's resident memory) is above it, commands that may grow memory (Redis's
//!   `denyoom` flag) are refused with OOM; reads and deletes still run. Flotilla evicts
//!   nothing (`maxmemory-policy noeviction`). The replicas' memory is not counted here.
//! * `min-replicas-to-write N`: a write is acknowledged once a majority of its group holds it,
//!   so `floor(size / 2)` copies besides the leader's are promised for every acknowledged
//!   write. A write is refused with NOREPLICAS when N asks for more than that promise, in the
//!   smallest group, so a setting is either always kept or refused, never silently weaker.
//!
//! Inside MULTI the check runs when a command is queued (a refusal fails the transaction) and
//! again at EXEC over the queued commands' flags, where a refusal discards the transaction
//! (`EXECABORT Transaction discarded because of: OOM …`), as in Redis.

use std::sync::atomic::Ordering;

use flotilla_resp::{CommandSpec, Value};

use crate::conn::Conn;
use crate::listener::Router;

/// Redis's reply to a command refused for `maxmemory`.
const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
/// Redis's reply to a write refused for `min-replicas-to-write`.
const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// The refusal of a command with these flags now, if any.
pub(super) async fn refusal(r: &Router, conn: &Conn, flags: &[&str]) -> Option<Value> {
    let max = r.maxmemory.load(Ordering::Relaxed);
    if max > 0
        && flags.contains(&"denyoom")
        && super::server::used_memory().is_some_and(|u| u > max)
    {
        return Some(Value::error(OOM));
    }
    let min_replicas = r.min_replicas_to_write.load(Ordering::Relaxed);
    if min_replicas > 0 && flags.contains(&"write") {
        let promised = r.kv.smallest_group(conn.clerk).await.map_or(0, |n| n / 2);
        if min_replicas > promised as u64 {
            return Some(Value::error(NOREPLICAS));
        }
    }
    None
}

/// The flags of a data command, by its spec (a subcommand's, for a container).
pub(super) fn flags_of(args: &[Vec<u8>]) -> &'static [&'static str] {
    flotilla_resp::command_spec(args).map_or(&[], |s: &CommandSpec| s.flags)
}

/// Redis's reading of a memory setting: a number with an optional unit (`b`, `k`/`kb`,
/// `m`/`mb`, `g`/`gb`, any case; `k` is 1000, `kb` 1024), as its `memtoull` does.
pub(super) fn parse_memory(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_read_as_redis_reads_them() {
        assert_eq!(parse_memory(b"0"), Some(0));
        assert_eq!(parse_memory(b"1"), Some(1));
        assert_eq!(parse_memory(b"100mb"), Some(100 << 20));
        assert_eq!(parse_memory(b"2GB"), Some(2 << 30));
        assert_eq!(parse_memory(b"3k"), Some(3000));
        assert_eq!(parse_memory(b"bla"), None);
        assert_eq!(parse_memory(b"-1"), None);
        assert_eq!(parse_memory(b"1tb"), None);
        assert_eq!(parse_memory(b"99999999999999999999gb"), None);
    }
}
