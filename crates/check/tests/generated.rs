//! Property tests: generated histories (linearizable by construction) check Ok, a corrupted
//! read makes them Illegal, and on tiny arbitrary histories the checker agrees with a
//! brute-force search over all orders.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_check::{
    check_kv, random_kv_history, random_kv_history_with, CheckResult, KvGenConfig, KvInput,
    KvModel, KvOp, KvOperation, KvOutput, Model, Operation,
};
use proptest::prelude::*;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));

/// Up to `max_ops` operations, up to `max_unknown` percent of unknown outcome. Proving a
/// history illegal means exploring every way its unknown writes could have taken effect,
/// which grows exponentially with their number: the corrupted-read test keeps it small.
fn config(max_ops: usize, max_unknown: u32) -> impl Strategy<Value = (u64, KvGenConfig)> {
    (
        any::<u64>(),
        1..max_ops,
        1..10usize,
        1..5usize,
        0..=max_unknown,
    )
        .prop_map(|(seed, ops, clients, keys, unknown_percent)| {
            (
                seed,
                KvGenConfig {
                    ops,
                    clients,
                    keys,
                    unknown_percent,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_histories_are_linearizable((seed, config) in config(300, 15)) {
        let history = random_kv_history_with(seed, &config);
        prop_assert_eq!(history.len(), config.ops);
        let result = check_kv(&history, TIMEOUT);
        prop_assert!(result.is_ok(), "seed {} {:?}: {}", seed, config, result);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_illegal(
        (seed, config) in prop_oneof![config(200, 1), config(60, 15)],
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = random_kv_history_with(seed, &config);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].input.op == KvOp::Get && history[i].ret.is_some())
            .collect();
        prop_assume!(!reads.is_empty());
        history[reads[pick.index(reads.len())]].output = KvOutput::value("never written");
        let result = check_kv(&history, TIMEOUT);
        prop_assert!(result.is_illegal(), "seed {} {:?}: {}", seed, config, result);
    }

    #[test]
    fn checker_agrees_with_brute_force(history in prop::collection::vec(tiny_operation(), 1..7)) {
        let expected = brute_force(&history);
        let result = check_kv(&history, TIMEOUT);
        prop_assert_eq!(result.is_ok(), expected, "{:#?}\n{}", history, result);
        prop_assert_ne!(result, CheckResult::Unknown);
    }
}

#[test]
fn generator_is_deterministic_and_concurrent() {
    let a = random_kv_history(42, 500, 5, 3);
    assert_eq!(a, random_kv_history(42, 500, 5, 3));
    assert_ne!(a, random_kv_history(43, 500, 5, 3));
    let overlapping = a
        .windows(2)
        .filter(|w| w[1].call <= w[0].ret.unwrap_or(u64::MAX))
        .count();
    assert!(
        overlapping > 100,
        "only {overlapping} overlapping neighbours"
    );
}

/// An arbitrary operation on one of two keys with values from a small alphabet, so that
/// coincidences (and so both verdicts) are common.
fn tiny_operation() -> impl Strategy<Value = KvOperation> {
    let key = prop::sample::select(vec!["x", "y"]);
    let value = prop::sample::select(vec!["a", "b"]);
    let read = prop::sample::select(vec!["", "a", "b", "ab", "ba", "aa"]);
    let input = (0..4u8, key, value).prop_map(|(op, key, value)| match op {
        0 => KvInput::get(key),
        1 => KvInput::put(key, value),
        2 => KvInput::append(key, value),
        _ => KvInput::delete(key),
    });
    (input, 0..3u8, read, 0..20u64, 0..10u64, 0..10u8).prop_map(
        |(input, out, read, call, len, u)| {
            let output = match (input.op, out) {
                _ if u == 0 => KvOutput::Unknown,
                (KvOp::Get, _) | (KvOp::Append, 0) => KvOutput::value(read),
                _ => KvOutput::Done,
            };
            let ret = (output != KvOutput::Unknown).then_some(call + len);
            Operation {
                client: 0,
                input,
                call,
                output,
                ret,
            }
        },
    )
}

/// Linearizable iff some order of the operations, respecting real time, explains every
/// output. An unknown outcome may be left out entirely (the same as putting it last).
fn brute_force(history: &[KvOperation]) -> bool {
    let mut used = vec![false; history.len()];
    search(history, &mut used, &BTreeMap::new())
}

fn search(history: &[KvOperation], used: &mut [bool], state: &BTreeMap<String, String>) -> bool {
    let pending_known = (0..history.len()).any(|i| !used[i] && history[i].ret.is_some());
    if !pending_known {
        return true;
    }
    for i in 0..history.len() {
        let op = &history[i];
        // Every unused operation that returned before `op` was called must come first.
        let blocked =
            (0..history.len()).any(|j| !used[j] && history[j].ret.is_some_and(|r| r < op.call));
        if used[i] || blocked {
            continue;
        }
        let key_state = state.get(&op.input.key).cloned().unwrap_or_default();
        let Some(next) = KvModel.step(&key_state, &op.input, &op.output) else {
            continue;
        };
        let mut state = state.clone();
        state.insert(op.input.key.clone(), next);
        used[i] = true;
        let found = search(history, used, &state);
        used[i] = false;
        if found {
            return true;
        }
    }
    false
}
