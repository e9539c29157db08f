//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP):
//! the engine runs each as Redis runs it inside MULTI — it pops if there is something, else
//! answers as on a timeout — and the router makes the client wait: while the answer is the
//! timeout's, it waits for a write to one of the keys (through this router: `wakeups.rs`),
//! or [`RETRY`] at most, and runs the command again, until the timeout.
//!
//! A client that closes its connection while blocked stops waiting (`session.rs` watches the
//! socket). XREAD and XREADGROUP with BLOCK answer at once (what `$` means would move
//! between retries).

use std::time::{Duration, Instant};

use flotilla_resp::{find_command, Value};

use super::Reply;
use crate::conn::Conn;
use crate::listener::Router;

/// The longest a blocked client waits before running its command again when no write
/// through this router woke it: what bounds the delay for writes made through another router.
const RETRY: Duration = Duration::from_millis(100);

/// Whether `args` name a command the router makes wait.
pub(crate) fn blocks(args: &[Vec<u8>]) -> bool {
    args.first().and_then(|n| find_command(n)).is_some_and(|s| {
        s.flags.contains(&"blocking") && timeout_index(s.name, args.len()).is_some()
    })
}

/// Where the timeout argument is: second for the `*MPOP` commands, last for the others;
/// `None` for the stream reads (answered at once).
fn timeout_index(name: &str, nargs: usize) -> Option<usize> {
    match name {
        "blmpop" | "bzmpop" => Some(1),
        "xread" | "xreadgroup" => None,
        _ => nargs.checked_sub(1),
    }
}

/// The timeout in seconds, as Redis reads it; `None`: forever (0). A timeout Redis refuses
/// is the engine's to refuse (the first run answers the error).
fn timeout(arg: &[u8]) -> Option<Duration> {
    let secs: f64 = std::str::from_utf8(arg).ok()?.parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}

/// Runs a blocking command until it pops something or its timeout passes.
pub(super) async fn run(r: &Router, conn: &mut Conn, name: &str, args: Vec<Vec<u8>>) -> Reply {
    let spec = find_command(name.as_bytes()).expect("a parsed command has a spec");
    let deadline = timeout_index(name, args.len())
        .and_then(|i| timeout(&args[i]))
        .map(|t| Instant::now() + t);
    let keys: Vec<Vec<u8>> = (spec.key_positions(&args).into_iter())
        .map(|i| args[i].clone())
        .collect();
    // The keys popped from: BLMOVE's and BRPOPLPUSH's destination is no reason to run.
    let sources = match name {
        "blmove" | "brpoplpush" => &keys[..keys.len().min(1)],
        _ => &keys[..],
    };
    let mut probe = vec![b"exists".to_vec()];
    probe.extend(sources.iter().cloned());
    let waiter = r.wakeups.register(keys.clone());
    let mut first = true;
    // The engine's answer on a timeout (a null, or a null array, by command).
    let mut timed_out = Value::NullArray;
    loop {
        // After the first run (which checks the arguments), a retry runs the pop, a write
        // that takes a log entry, only if a source key exists: a read finds out, so that
        // clients blocked on empty lists cost reads, not writes.
        let worth_running = first
            || !matches!(
                super::data::run(r, conn, "exists", probe.clone()).await,
                Ok(Value::Integer(0))
            );
        first = false;
        if worth_running {
            let reply = super::data::run(r, conn, name, args.clone()).await?;
            if !matches!(reply, Value::Null | Value::NullArray) {
                return Ok(reply);
            }
            timed_out = reply;
        }
        let reply = timed_out.clone();
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(RETRY),
                _ => return Ok(reply),
            },
            None => RETRY,
        };
        let _ = tokio::time::timeout(wait, waiter.woken()).await;
    }
}
