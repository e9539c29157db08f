//! Hand-made histories with known verdicts: the key/value model, unknown outcomes, explanations,
//! the time limit.

use std::time::{Duration, Instant};

use flotilla_check::{
    check_kv, check_operations, CheckResult, KvHistory, KvInput, KvOperation, KvOutput, Operation,
    RegisterInput, RegisterModel, RegisterOutput,
};

fn op(client: u64, input: KvInput, call: u64, output: KvOutput, ret: Option<u64>) -> KvOperation {
    Operation {
        client,
        input,
        call,
        output,
        ret,
    }
}

fn done(client: u64, input: KvInput, call: u64, ret: u64) -> KvOperation {
    op(client, input, call, KvOutput::Done, Some(ret))
}

fn get(client: u64, key: &str, read: &str, call: u64, ret: u64) -> KvOperation {
    op(
        client,
        KvInput::get(key),
        call,
        KvOutput::value(read),
        Some(ret),
    )
}

fn unknown(client: u64, input: KvInput, call: u64) -> KvOperation {
    op(client, input, call, KvOutput::Unknown, None)
}

fn check(history: &[KvOperation]) -> CheckResult {
    check_kv(history, Some(Duration::from_secs(10)))
}

#[test]
fn empty_history_and_missing_key_read_as_empty() {
    assert_eq!(check(&[]), CheckResult::Ok);
    assert_eq!(check(&[get(0, "x", "", 0, 10)]), CheckResult::Ok);
    assert!(check(&[get(0, "x", "1", 0, 10)]).is_illegal());
}

/// 6.824 2017 quiz 2, VII (porcupine's TestRegisterModel): reads concurrent with a put may see
/// either value, in either order...
#[test]
fn concurrent_reads_may_see_old_or_new_value() {
    let history = [
        done(0, KvInput::put("x", "100"), 0, 100),
        get(1, "x", "100", 25, 75),
        get(2, "x", "", 30, 60),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
}

/// ...but once a read returned the new value, a later read must not see the old one.
#[test]
fn stale_read_is_illegal() {
    let history = [
        done(0, KvInput::put("x", "200"), 0, 100),
        get(1, "x", "200", 10, 30),
        get(2, "x", "", 40, 90),
    ];
    assert!(check(&history).is_illegal());
}

/// Intervals are closed: operations that only touch are concurrent (porcupine's TestZeroDuration).
#[test]
fn touching_and_zero_length_intervals_are_concurrent() {
    let history = [
        done(0, KvInput::put("x", "1"), 0, 100),
        get(1, "x", "1", 25, 75),
        get(2, "x", "", 30, 30),
        get(3, "x", "", 30, 30),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
    let history = [
        done(0, KvInput::put("x", "1"), 0, 10),
        get(1, "x", "", 10, 20),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
    let history = [
        done(0, KvInput::put("x", "1"), 0, 10),
        get(1, "x", "", 11, 20),
    ];
    assert!(check(&history).is_illegal());
}

#[test]
fn unknown_put_that_is_later_observed_is_linearizable() {
    let history = [
        unknown(0, KvInput::put("x", "1"), 0),
        get(1, "x", "1", 50, 60),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
}

#[test]
fn unknown_put_that_is_never_observed_is_linearizable() {
    let history = [
        unknown(0, KvInput::put("x", "1"), 0),
        get(1, "x", "", 50, 60),
        get(1, "x", "", 70, 80),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
}

/// An unknown put may take effect late, long after the client gave up...
#[test]
fn unknown_put_may_take_effect_after_later_operations() {
    let history = [
        unknown(0, KvInput::put("x", "1"), 0),
        done(0, KvInput::put("x", "2"), 100, 110),
        get(1, "x", "2", 120, 130),
        get(1, "x", "1", 140, 150),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
}

/// ...but not before its call, and once seen it stays seen.
#[test]
fn unknown_put_cannot_act_before_its_call_or_be_undone() {
    let early = [
        get(1, "x", "1", 0, 10),
        unknown(0, KvInput::put("x", "1"), 20),
    ];
    assert!(check(&early).is_illegal());
    let undone = [
        unknown(0, KvInput::put("x", "1"), 0),
        get(1, "x", "1", 10, 20),
        get(1, "x", "", 30, 40),
    ];
    assert!(check(&undone).is_illegal());
}

/// An unknown get constrains nothing, even with a return time.
#[test]
fn unknown_get_constrains_nothing() {
    let history = [
        done(0, KvInput::put("x", "1"), 0, 10),
        unknown(1, KvInput::get("x"), 20),
        op(2, KvInput::get("x"), 30, KvOutput::Unknown, Some(40)),
    ];
    assert_eq!(check(&history), CheckResult::Ok);
}

/// An unknown append that the recorder never completed may or may not have happened.
#[test]
fn recorder_leaves_uncompleted_operations_unknown() {
    let mut history = KvHistory::new();
    let lost = history.invoke(0, KvInput::append("x", "a"), 0);
    let _never_completed = history.invoke(1, KvInput::append("x", "b"), 5);
    let read = history.invoke(2, KvInput::get("x"), 100);
    history.complete(read, KvOutput::value("b"), 110);
    history.complete(lost, KvOutput::Unknown, 120);
    assert_eq!(history.operations()[0].ret, None);
    assert_eq!(history.check(None), CheckResult::Ok);
}

#[test]
fn append_applied_twice_is_illegal() {
    let once = [
        done(0, KvInput::append("x", "a"), 0, 10),
        get(1, "x", "aa", 20, 30),
    ];
    assert!(check(&once).is_illegal());
    let twice = [
        done(0, KvInput::append("x", "a"), 0, 10),
        done(1, KvInput::append("x", "a"), 0, 10),
        get(1, "x", "aa", 20, 30),
    ];
    assert_eq!(check(&twice), CheckResult::Ok);
}

#[test]
fn get_of_deleted_value_is_illegal() {
    let mut history = vec![
        done(0, KvInput::put("x", "1"), 0, 10),
        done(0, KvInput::delete("x"), 20, 30),
        get(1, "x", "1", 40, 50),
    ];
    assert!(check(&history).is_illegal());
    history[2] = get(1, "x", "", 40, 50);
    assert_eq!(check(&history), CheckResult::Ok);
}

/// 6.5840 kvsrv's Append returns the old value, which pins where the append took effect.
#[test]
fn append_returning_old_value_must_match_state_before_it() {
    let append = |client, value: &str, old: &str, call, ret| {
        op(
            client,
            KvInput::append("x", value),
            call,
            KvOutput::value(old),
            Some(ret),
        )
    };
    let ok = [
        done(0, KvInput::put("x", "a"), 0, 10),
        append(0, "b", "a", 20, 30),
    ];
    assert_eq!(check(&ok), CheckResult::Ok);
    let wrong_old = [ok[0].clone(), ok[1].clone(), append(1, "c", "a", 40, 50)];
    assert!(check(&wrong_old).is_illegal());
    // Two concurrent appends: the old values fix their order, so the final value is "xy".
    let concurrent = [append(0, "x", "", 0, 100), append(1, "y", "x", 0, 100)];
    let mut history = concurrent.to_vec();
    history.push(get(2, "x", "xy", 200, 210));
    assert_eq!(check(&history), CheckResult::Ok);
    history[2] = get(2, "x", "yx", 200, 210);
    assert!(check(&history).is_illegal());
}

#[test]
fn keys_are_independent_and_the_explanation_names_the_smallest_bad_key() {
    let mut history = vec![
        done(0, KvInput::put("a", "1"), 0, 10),
        get(1, "a", "1", 20, 30),
        done(0, KvInput::put("b", "1"), 0, 10),
        get(1, "b", "2", 20, 30),
    ];
    for i in 0..5 {
        history.push(get(2, "c", "", 100 + i, 101 + i));
        history.push(get(2, "c", "oops", 200 + i, 201 + i));
    }
    let result = check(&history);
    let explanation = result.explanation().expect("illegal");
    assert_eq!((explanation.partition, explanation.partitions), (1, 3));
    assert_eq!(explanation.operations.len(), 2);
    assert_eq!(explanation.prefix, [0]);
    assert_eq!(explanation.operations[explanation.blocked].index, 3);
    assert!(!explanation.blocked_legal);
    assert_eq!(explanation.state, "\"1\"");
}

#[test]
fn explanation_is_short_and_names_the_blocked_operation() {
    let long = "v".repeat(500);
    let mut history = vec![done(0, KvInput::put("x", &long), 0, 10)];
    for i in 0..200 {
        history.push(get(i % 7, "x", &long, 20 + 10 * i, 25 + 10 * i));
    }
    history.push(get(3, "x", "stale", 5000, 5010));
    let text = check(&history).to_string();
    println!("{text}");
    assert!(
        text.starts_with("not linearizable: partition 1 of 1"),
        "{text}"
    );
    assert!(
        text.contains("longest linearizable prefix: 201 of 202 operations"),
        "{text}"
    );
    assert!(
        text.contains("could not linearize #201 client 3 [5000, 5010] get(\"x\") -> \"stale\""),
        "{text}"
    );
    assert!(text.lines().count() <= 40, "{} lines", text.lines().count());
    assert!(text.lines().all(|l| l.chars().count() <= 160), "{text}");
}

/// Many concurrent appends of distinct values and a concurrent put, then a read no order can
/// produce: while the put is not placed, the look-ahead cannot prune, so the search must try
/// every order of appends, which takes ages; the time limit must stop it.
#[test]
fn pathological_history_with_tiny_timeout_is_unknown() {
    let mut history: Vec<_> = (0..20)
        .map(|i| done(i, KvInput::append("x", format!("{i},")), 0, 1000))
        .collect();
    history.push(done(98, KvInput::put("x", "p"), 0, 3000));
    history.push(get(99, "x", "impossible", 2000, 2001));
    let start = Instant::now();
    let result = check_kv(&history, Some(Duration::from_millis(20)));
    assert_eq!(result, CheckResult::Unknown);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        result.to_string(),
        "unknown: the search ran out of time or memory budget"
    );
}

/// The look-ahead: many concurrent appends observed only by a final read are checked at
/// once (the plain search tries every order), both when the read is possible and when not.
#[test]
fn unobserved_concurrent_appends_are_checked_fast() {
    let mut history: Vec<_> = (0..20)
        .map(|i| done(i, KvInput::append("x", format!("{i},")), 0, 1000))
        .collect();
    let reversed: String = (0..20).rev().map(|i| format!("{i},")).collect();
    history.push(get(99, "x", &reversed, 2000, 2001));
    let start = Instant::now();
    assert_eq!(
        check_kv(&history, Some(Duration::from_secs(10))),
        CheckResult::Ok
    );
    let last = history.len() - 1;
    history[last] = get(99, "x", &reversed.replacen("3,", "", 1), 2000, 2001);
    assert!(check_kv(&history, Some(Duration::from_secs(10))).is_illegal());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn register_model_checks_porcupine_quiz_example() {
    let reg = |client, input, call, output, ret| Operation {
        client,
        input,
        call,
        output,
        ret: Some(ret),
    };
    let history = [
        reg(0, RegisterInput::Write(100), 0, RegisterOutput::Done, 100),
        reg(
            1,
            RegisterInput::Read,
            25,
            RegisterOutput::Value(Some(100)),
            75,
        ),
        reg(2, RegisterInput::Read, 30, RegisterOutput::Value(None), 60),
    ];
    assert_eq!(
        check_operations(&RegisterModel, &history, None),
        CheckResult::Ok
    );
    let history = [
        reg(0, RegisterInput::Write(200), 0, RegisterOutput::Done, 100),
        reg(
            1,
            RegisterInput::Read,
            10,
            RegisterOutput::Value(Some(200)),
            30,
        ),
        reg(2, RegisterInput::Read, 40, RegisterOutput::Value(None), 90),
    ];
    assert!(check_operations(&RegisterModel, &history, None).is_illegal());
}

#[test]
#[should_panic(expected = "returns at 5 ns, before its call at 10 ns")]
fn operation_returning_before_its_call_is_a_programmer_error() {
    check(&[get(0, "x", "", 10, 5)]);
}

/// The memo's budget counts bytes: with long values every explored state is large, so a
/// hopeless search on one key gives up (`Unknown`) after a gigabyte of states, not after
/// millions of them (4 million states of ~250 KB each, the budget when it counted entries,
/// would be a terabyte: the OOM killer ended a test that way).
#[test]
fn a_search_over_long_values_stops_at_the_memory_budget() {
    let big = |i: usize| format!("{i}:{}", "v".repeat(16 << 10));
    let mut history: Vec<_> = (0..32)
        .map(|i| done(i as u64, KvInput::append("x", big(i)), 0, 1000))
        .collect();
    history.push(done(98, KvInput::put("x", "p"), 0, 3000));
    history.push(get(99, "x", "impossible", 2000, 2001));
    let start = Instant::now();
    // No time limit: only the memory budget can end this search early.
    let result = check_kv(&history, None);
    assert_eq!(result, CheckResult::Unknown);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}
