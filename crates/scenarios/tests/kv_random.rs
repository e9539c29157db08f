//! The randomized key/value suite: random faults and clients, each seed reading through the
//! log, by ReadIndex or by lease; every history checked for linearizability, and every step for
//! read leases overlapping a newer leader. `FLOTILLA_RANDOM_SEEDS=K` runs K seeds (default
//! 20); `FLOTILLA_SEED=N` replays one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use flotilla_check::{check_redis, RedisCmd, RedisModel, RedisOp, RedisOperation, RedisReply};
use flotilla_scenarios::kv_random::{kv_random, kv_random_history, KEYS, PROBE_VALUE, TX_KEYS};
use flotilla_scenarios::redis_mix::MixStats;
use flotilla_testkit::seeds::{run_seed_list, seeds_from_env_var};

#[test]
fn test_kv_random_linearizable() {
    let seeds = seeds_from_env_var("FLOTILLA_RANDOM_SEEDS", 20);
    let ops = Cell::new(0usize);
    let modes = RefCell::new(BTreeMap::new());
    let mix = RefCell::new(MixStats::default());
    run_seed_list("kv_random", "test_kv_random_linearizable", &seeds, |seed| {
        let report = kv_random(seed, 10);
        assert!(report.faults > 0, "seed {seed} injected no faults");
        ops.set(ops.get() + report.operations);
        mix.borrow_mut().add(&report.mix);
        *modes
            .borrow_mut()
            .entry(format!("{:?}", report.read_mode))
            .or_insert(0) += 1;
    });
    let per_run = ops.get() / seeds.len();
    assert!(per_run > 50, "only {per_run} operations per run on average");
    let modes = modes.into_inner();
    eprintln!("seeds per read mode: {modes:?}");
    let mix = mix.into_inner();
    eprintln!("{} seeds, the Redis mix: {mix}", seeds.len());
    // The new operations must exercise what they are there for: keys expiring under the
    // clients, conditions failing, WATCH aborting (each happens several times a run).
    if seeds.len() >= 20 {
        assert!(mix.expired_seen > 0, "no key was seen expired");
        assert!(mix.aborted > 0, "no transaction was aborted by WATCH");
        assert!(mix.committed > 0, "no transaction applied");
    }
    if seeds.len() >= 20 {
        assert_eq!(modes.len(), 3, "not every read mode was drawn: {modes:?}");
    }
}

/// The last completed Redis GET of `key` in `history`, by call time.
fn last_get(history: &mut [RedisOperation], key: &str) -> usize {
    (0..history.len())
        .filter(|&i| {
            let op = &history[i];
            matches!(&op.input.op, RedisOp::Cmd(RedisCmd::Get { key: k }) if k == key)
                && matches!(op.output.reply, RedisReply::Bulk(_))
        })
        .max_by_key(|&i| history[i].call)
        .expect("the probe read the key")
}

/// The checker fails real histories with one answer changed: the end-of-run probe's read of
/// a key whose PXAT passed 50 ms before it was sent, made to see the key; and its read of one
/// of a transaction's two writes, made to miss it (the transaction half applied).
#[test]
fn test_kv_random_tampered_histories_are_rejected() {
    // Seed 2 reads through the log, seed 5 by lease: both checked by the strict model.
    for seed in [2, 5] {
        let (history, model) = kv_random_history(seed, 2);
        let expected = RedisModel::strict();
        assert_eq!(model, expected, "seed {seed} drew another read mode");
        let verdict = check_redis(model, &history, None);
        assert!(verdict.is_ok(), "seed {seed}: {verdict}");

        let mut seen = history.clone();
        let i = last_get(&mut seen, KEYS[0]);
        assert_eq!(seen[i].output.reply, RedisReply::Bulk(None));
        seen[i].output.reply = RedisReply::Bulk(Some(PROBE_VALUE.to_owned()));
        assert!(
            check_redis(model, &seen, None).is_illegal(),
            "seed {seed}: a read of an expired key accepted"
        );

        let mut half = history;
        let i = last_get(&mut half, TX_KEYS[0][1]);
        assert_eq!(
            half[i].output.reply,
            RedisReply::Bulk(Some(format!("{PROBE_VALUE} {}", TX_KEYS[0][1])))
        );
        half[i].output.reply = RedisReply::Bulk(None);
        assert!(
            check_redis(model, &half, None).is_illegal(),
            "seed {seed}: a transaction applied half accepted"
        );
    }
}
