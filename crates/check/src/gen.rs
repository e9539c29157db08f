//! Seeded random key/value histories that are linearizable by construction, and the
//! checker's benchmark.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::kv::{check_kv, KvInput, KvOp, KvOperation, KvOutput};
use crate::model::Operation;

/// What [`random_kv_history_with`] generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvGenConfig {
    /// Operations in all.
    pub ops: usize,
    /// Concurrent clients (each runs its operations one after another).
    pub clients: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Percentage of operations whose outcome is recorded as unknown; half of those take
    /// effect, half never do.
    pub unknown_percent: u32,
}

/// A client's operation before its result is known.
struct Planned {
    client: u64,
    /// The key's number: the generated key is `k<slot>`.
    slot: usize,
    input: KvInput,
    call: u64,
    /// When it takes effect, strictly inside `[call, ret]`.
    effect: u64,
    ret: u64,
    /// Outcome recorded as unknown.
    unknown: bool,
    /// An unknown operation that never takes effect.
    lost: bool,
    /// An append that returns the old value.
    returns_old: bool,
}

/// A history of `ops` operations by `clients` clients over `keys` keys, linearizable by
/// construction and the same for the same arguments. No unknown outcomes.
pub fn random_kv_history(seed: u64, ops: usize, clients: usize, keys: usize) -> Vec<KvOperation> {
    random_kv_history_with(
        seed,
        &KvGenConfig {
            ops,
            clients,
            keys,
            unknown_percent: 0,
        },
    )
}

/// A history as [`random_kv_history`], with the given share of unknown outcomes.
///
/// Each client issues operations one after another with random gaps and durations; each
/// operation takes effect at a random instant inside its interval, and outputs come from
/// applying the operations to a sequential store in the order of those instants, so that
/// order is a linearization.
pub fn random_kv_history_with(seed: u64, config: &KvGenConfig) -> Vec<KvOperation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut planned = plan(&mut rng, config);
    planned.sort_by_key(|p| (p.effect, p.client));
    let mut store: Vec<String> = vec![String::new(); config.keys.max(1)];
    let mut history: Vec<KvOperation> = planned.into_iter().map(|p| apply(&mut store, p)).collect();
    history.sort_by_key(|op| (op.call, op.client));
    history
}

fn plan(rng: &mut ChaCha8Rng, config: &KvGenConfig) -> Vec<Planned> {
    let clients = config.clients.max(1);
    let mut clock = vec![0u64; clients];
    (0..config.ops)
        .map(|i| {
            let client = i % clients;
            let call = clock[client] + rng.gen_range(0..1_000);
            let effect = call + rng.gen_range(1..5_000);
            let ret = effect + rng.gen_range(1..5_000);
            clock[client] = ret + 1;
            let unknown = rng.gen_range(0..100) < config.unknown_percent;
            let (slot, input) = random_input(rng, config.keys.max(1), client, i);
            Planned {
                client: client as u64,
                slot,
                input,
                call,
                effect,
                ret,
                unknown,
                lost: unknown && rng.gen_bool(0.5),
                returns_old: rng.gen_bool(0.5),
            }
        })
        .collect()
}

/// A random request on key `k<slot>`, and `slot`.
fn random_input(rng: &mut ChaCha8Rng, keys: usize, client: usize, i: usize) -> (usize, KvInput) {
    let slot = rng.gen_range(0..keys);
    let key = format!("k{slot}");
    // Each value is written once, so a wrong read is unlikely to match by accident.
    let value = format!("{client}.{i};");
    let input = match rng.gen_range(0..10) {
        0..=3 => KvInput::get(key),
        4..=5 => KvInput::put(key, value),
        6..=8 => KvInput::append(key, value),
        _ => KvInput::delete(key),
    };
    (slot, input)
}

/// Applies `p` to the sequential store (unless it is lost) and records what it returned.
fn apply(store: &mut [String], p: Planned) -> KvOperation {
    let before = &store[p.slot];
    let (after, output) = match p.input.op {
        KvOp::Get => (before.clone(), KvOutput::Value(before.clone())),
        KvOp::Put => (p.input.value.clone(), KvOutput::Done),
        KvOp::Append => {
            let old = if p.returns_old {
                KvOutput::Value(before.clone())
            } else {
                KvOutput::Done
            };
            (format!("{before}{}", p.input.value), old)
        }
        KvOp::Delete => (String::new(), KvOutput::Done),
    };
    if !p.lost {
        store[p.slot] = after;
    }
    let (output, ret) = if p.unknown {
        (KvOutput::Unknown, None)
    } else {
        (output, Some(p.ret))
    };
    Operation {
        client: p.client,
        input: p.input,
        call: p.call,
        output,
        ret,
    }
}

/// The benchmark's workloads: (label, operations, clients, keys).
/// The cost grows steeply with the number of operations concurrent on one key: at about 15
/// (e.g. 20 clients on 1 key, 30 on 3) a search of these histories no longer ends in a minute.
const BENCH_WORKLOADS: [(&str, usize, usize, usize); 4] = [
    ("10k ops, 10 clients, 10 keys", 10_000, 10, 10),
    ("10k ops, 50 clients, 10 keys", 10_000, 50, 10),
    ("10k ops, 20 clients, 4 keys", 10_000, 20, 4),
    ("10k ops, 10 clients, 1 key", 10_000, 10, 1),
];

/// Times the checker on generated 10 000-operation histories (best of three runs each) and
/// reports one line per workload, for `flotilla-lab bench kv` and `cargo bench -p flotilla-check`.
pub fn bench_report() -> String {
    let mut report = String::from("linearizability checker (flotilla-check), best of 3:\n");
    for (label, ops, clients, keys) in BENCH_WORKLOADS {
        let history = random_kv_history(1, ops, clients, keys);
        let mut best = Duration::MAX;
        let mut verdict = String::new();
        for _ in 0..3 {
            let start = Instant::now();
            let result = check_kv(&history, Some(Duration::from_secs(60)));
            best = best.min(start.elapsed());
            verdict = if result.is_ok() {
                "ok".into()
            } else {
                format!("UNEXPECTED: {result}")
            };
        }
        let per_op = best.as_nanos() / ops.max(1) as u128;
        report += &format!(
            "  {label:<30} {:>9.1} ms  ({per_op} ns/op)  {verdict}\n",
            best.as_secs_f64() * 1e3
        );
    }
    report
}
