//! A linearizability checker in the manner of [porcupine](https://github.com/anishathalye/porcupine).
//!
//! # What it checks
//!
//! A *history* is a list of [`Operation`]s, each with a client, an input, an output and the
//! interval `[call, ret]` (nanoseconds) in which the client saw it happen. The history is
//! *linearizable* with respect to a sequential specification (a [`Model`]) if every operation
//! can be given an instant inside its interval such that applying the operations in the order
//! of those instants to the model produces exactly the recorded outputs. This is what the 6.5840
//! labs' key/value tests ask of a service, and what `check_kv` verifies.
//!
//! # The algorithm
//!
//! Wing & Gong's search with Lowe's memoisation, as in porcupine's `checker.go`:
//!
//! - The history is split by [`Model::partition`] into independent sub-histories (per key for a
//!   key/value store: P-compositionality), each checked on its own, smallest first.
//! - Each operation becomes a call entry and a return entry in a doubly linked list sorted by
//!   time (calls before returns at the same instant: intervals are closed).
//! - Depth-first search: walk the list; at a call entry, if the model accepts the operation in
//!   the current state, *linearize* it (lift its two entries out of the list, push it on a
//!   stack, restart from the head). Reaching a return entry means some operation must have
//!   taken effect already but none can: pop the last choice and try the next call.
//! - A cache of `(set of linearized operations, state)` pairs (a bitset and a model state)
//!   cuts every branch that reaches a configuration already explored. Operations are numbered
//!   in call order and the bitset's hash is kept up to date bit by bit, so the cache stores and
//!   hashes only the few words where linearized and pending operations mix, whatever the
//!   history's length.
//! - With a time limit the clock is read every 4096 steps; when it runs out the answer is
//!   [`CheckResult::Unknown`] rather than a hang. So it is, limit or not, when one partition's
//!   cache holds 1 GiB of explored configurations (states counted by their size, so a key
//!   whose value grows long reaches it sooner): better an answer than the OOM killer.
//!
//! The problem is NP-complete and the cost grows steeply with the number of operations
//! concurrent on one key, especially when proving a history *illegal*, which means exploring
//! every order: generated histories of 10 000 operations check in milliseconds with 10
//! clients over 10 keys, in about a second with 10 clients on one key, and not in a minute
//! with 20 clients on one key (see [`bench_report`]).
//!
//! On an illegal history the [`Explanation`] describes the smallest offending partition: its
//! operations in call order, the longest linearizable prefix found (porcupine's "partial
//! linearization"), the state it reaches, and the operation that could not go next.
//!
//! # Unknown outcomes
//!
//! A client that gives up on a request does not know whether it took effect, and it may still
//! take effect later. Such an operation has `ret: None` and an "unknown" output
//! ([`KvOutput::Unknown`], [`RegisterOutput::Unknown`]). As in porcupine, the checker gives it a
//! return time of +infinity and the model accepts any output for it: it may be linearized at
//! any point after its call, and linearizing it last is the same as it never happening. So an
//! unknown get constrains nothing, and an unknown put / append / delete may or may not have
//! taken effect. (The models leave unknown reads out of their partitions altogether: they
//! constrain nothing, and each one kept would double the search space.)
//!
//! # Models
//!
//! - [`KvModel`]: get / put / append / delete; a missing key reads as ""; an append may carry
//!   the old value it returned (6.5840's kvsrv), which must equal the value before it.
//! - [`RedisModel`]: Redis strings with absolute expiry (`SET … PXAT`, `PEXPIREAT`,
//!   `PERSIST`), conditional SET, transactions with WATCH, and the labs' operations; each
//!   operation carries the window of the clock in which it took effect, since whether a key
//!   has expired depends on when it is read.
//! - [`RegisterModel`]: read / write / compare-and-set on a register that starts out nil, for
//!   the Jepsen etcd logs ([`formats::parse_jepsen_etcd`]).
//!
//! # History files (JSON Lines)
//!
//! Key/value histories travel as JSON Lines ([`write_jsonl`], [`read_jsonl`]), one operation a
//! line:
//!
//! ```text
//! {"client":0,"op":"put","key":"x","value":"1","call":0,"return":100}
//! {"client":1,"op":"get","key":"x","value":"1","call":50,"return":120}
//! {"client":2,"op":"append","key":"x","value":"2","call":60,"return":null}
//! {"client":3,"op":"append","key":"x","value":"3","call":130,"return":150,"old":"12"}
//! ```
//!
//! `op` is `get`, `put`, `append` or `delete`; `value` is the argument, or for a get the value
//! it returned ("" if its outcome is unknown), "" for a delete; `old`, optional, is the old
//! value an append returned; `call` and `return` are nanoseconds, `"return": null` meaning the
//! outcome is unknown. Tests call [`write_history_if_requested`] to leave their history in
//! `$FLOTILLA_HISTORY_DIR` for inspection.
//!
//! # Example
//!
//! ```
//! use flotilla_check::{check_kv, CheckResult, KvHistory, KvInput, KvOutput};
//!
//! let mut history = KvHistory::new();
//! let put = history.invoke(0, KvInput::put("x", "1"), 0);
//! let get = history.invoke(1, KvInput::get("x"), 10);
//! history.complete(get, KvOutput::value("1"), 20); // concurrent with the put: fine
//! history.complete(put, KvOutput::Done, 30);
//! assert_eq!(check_kv(history.operations(), None), CheckResult::Ok);
//!
//! // A read after the put returned must see it.
//! let stale = history.invoke(2, KvInput::get("x"), 40);
//! history.complete(stale, KvOutput::value(""), 50);
//! let result = history.check(None);
//! assert!(result.is_illegal());
//! println!("{result}"); // the explanation
//! ```

mod checker;
mod entries;
mod error;
mod explain;
pub mod formats;
mod gen;
mod jsonl;
mod kv;
mod model;
mod redis;
mod register;

pub use checker::{check_operations, CheckResult};
pub use error::{HistoryError, LineError, UnwritableError};
pub use explain::{Explanation, OperationSummary};
pub use gen::{bench_report, random_kv_history, random_kv_history_with, KvGenConfig};
pub use jsonl::{
    parse_jsonl, read_jsonl, to_jsonl, write_history_if_requested, write_jsonl, HISTORY_DIR_ENV,
};
pub use kv::{check_kv, KvHistory, KvInput, KvModel, KvOp, KvOperation, KvOutput, PendingOp};
pub use model::{quote, truncate, Lookahead, Model, Operation};
pub use redis::{
    check_redis, redis_op_of_kv, RedisCmd, RedisInput, RedisModel, RedisOp, RedisOperation,
    RedisOutput, RedisReply, RedisState, SetCond,
};
pub use register::{RegisterInput, RegisterModel, RegisterOperation, RegisterOutput};
