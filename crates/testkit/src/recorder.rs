//! The history a KV tester's clients record, and its end-of-run linearizability check:
//! shared by the KV tester and the sharded one.
//!
//! Operations of the labs' kinds go into a [`KvHistory`], checked by the labs' model. Once a
//! client records a Redis-model operation (expiry, conditional SET, transactions; see
//! [`Recorder::record_redis`]), the whole history is checked by [`RedisModel`] instead, the
//! labs' operations converted: their results depend on when they took effect.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use flotilla_check::{
    check_redis, redis_op_of_kv, CheckResult, KvHistory, KvInput, KvOutput, Operation, RedisModel,
    RedisOperation,
};

/// How long the final linearizability check may take before it answers "unknown" (which
/// passes, as in the labs, after saying so).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Recorder {
    history: RefCell<KvHistory>,
    /// The last timestamp handed out, so that timestamps strictly increase in recording
    /// order: a reply recorded before a later call is then ordered before it even when both
    /// happen at the same virtual microsecond.
    last_stamp: Cell<u64>,
    /// The most any timestamp handed out exceeds the virtual time it stands for (the cost of
    /// making them strictly increase): a call's time is at least its stamp minus this.
    max_drift_ns: Cell<u64>,
    /// Redis-model operations, each with its window in whole milliseconds of virtual time
    /// (the clock expiry is measured by in the simulator).
    redis: RefCell<Vec<RedisOperation>>,
    /// The model the Redis-model history is checked by (see
    /// [`RedisModel::reads_run_ahead`]).
    redis_model: Cell<RedisModel>,
    /// Off for the memory tests, which must not count the history's copies of values.
    recording: Cell<bool>,
    name: String,
    seed: u64,
}

impl Recorder {
    pub fn new(name: &str, seed: u64) -> Self {
        Recorder {
            history: RefCell::new(KvHistory::new()),
            last_stamp: Cell::new(0),
            max_drift_ns: Cell::new(0),
            redis: RefCell::new(Vec::new()),
            redis_model: Cell::new(RedisModel::strict()),
            recording: Cell::new(true),
            name: name.to_owned(),
            seed,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A timestamp for a call or a return at virtual time `now`.
    pub fn stamp(&self, now: Duration) -> u64 {
        let now = now.as_nanos() as u64;
        let t = now.max(self.last_stamp.get() + 1);
        self.last_stamp.set(t);
        self.max_drift_ns.set(self.max_drift_ns.get().max(t - now));
        t
    }

    /// The millisecond of virtual time `now` falls in, as the replicated clock (and so
    /// expiry) counts it: servers read their clock in whole milliseconds, rounded down.
    pub fn ms(now: Duration) -> u64 {
        now.as_millis() as u64
    }

    /// Adds a Redis-model operation to the history, unless recording is off.
    pub fn record_redis(&self, op: RedisOperation) {
        if self.recording.get() {
            self.redis.borrow_mut().push(op);
        }
    }

    /// Sets the model a history with Redis-model operations is checked by.
    pub fn set_redis_model(&self, model: RedisModel) {
        self.redis_model.set(model);
    }

    pub fn redis_model(&self) -> RedisModel {
        self.redis_model.get()
    }

    /// Whether the history holds Redis-model operations (and is checked by their model).
    fn timed(&self) -> bool {
        !self.redis.borrow().is_empty()
    }

    /// The whole history as Redis-model operations: the labs' ones converted, each window
    /// widened to whole milliseconds (a call stamped at `c` happened at `c - drift` or later).
    pub fn redis_history(&self) -> Vec<RedisOperation> {
        let drift = self.max_drift_ns.get();
        let ms = |ns: u64| ns / 1_000_000;
        let mut ops: Vec<RedisOperation> = (self.history.borrow().operations().iter())
            .map(|op| redis_op_of_kv(op, ms(op.call.saturating_sub(drift)), op.ret.map(ms)))
            .collect();
        ops.extend(self.redis.borrow().iter().cloned());
        ops
    }

    pub fn set_recording(&self, on: bool) {
        self.recording.set(on);
    }

    /// Adds `op` to the history, unless recording is off.
    pub fn record(&self, op: Operation<KvInput, KvOutput>) {
        if self.recording.get() {
            self.history.borrow_mut().push(op);
        }
    }

    pub fn len(&self) -> usize {
        self.history.borrow().len() + self.redis.borrow().len()
    }

    pub fn history(&self) -> KvHistory {
        self.history.borrow().clone()
    }

    pub fn verdict(&self) -> CheckResult {
        if self.timed() {
            check_redis(
                self.redis_model.get(),
                &self.redis_history(),
                Some(CHECK_TIMEOUT),
            )
        } else {
            self.history.borrow().check(Some(CHECK_TIMEOUT))
        }
    }

    /// With `FLOTILLA_HISTORY_DIR` set, writes the whole history as the Redis model reads
    /// it, one operation a line in call order, to `<name>-seed<seed>.redis.txt` there (the
    /// JSON Lines format knows only the labs' operations).
    fn write_redis_history(&self) {
        let Some(dir) = std::env::var_os(flotilla_check::HISTORY_DIR_ENV) else {
            return;
        };
        let mut ops = self.redis_history();
        ops.sort_by_key(|op| op.call);
        let mut text = String::new();
        for op in &ops {
            let d = flotilla_check::Model::describe_operation(
                &self.redis_model.get(),
                &op.input,
                &op.output,
            );
            text.push_str(&format!("client {} {d}\n", op.client));
        }
        let dir = std::path::PathBuf::from(dir);
        let path = dir.join(format!("{}-seed{}.redis.txt", self.name, self.seed));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
            Ok(()) => eprintln!("{}: history written to {}", self.name, path.display()),
            Err(e) => eprintln!("{}: could not write {}: {e}", self.name, path.display()),
        }
    }

    /// Writes the history if `FLOTILLA_HISTORY_DIR` is set, checks it, and panics with the
    /// checker's explanation if it is not linearizable. An "unknown" verdict (the time limit
    /// ran out) passes with a note, as in the labs. `now` is the virtual time, for the
    /// `FLOTILLA_VERBOSE` line.
    pub fn check_linearizable(&self, now: Duration) {
        let history = self.history.borrow();
        if let Some(path) =
            flotilla_check::write_history_if_requested(&self.name, self.seed, history.operations())
        {
            eprintln!("{}: history written to {}", self.name, path.display());
        }
        drop(history);
        if self.timed() {
            self.write_redis_history();
        }
        let started = std::time::Instant::now();
        let verdict = self.verdict();
        if std::env::var_os("FLOTILLA_VERBOSE").is_some() {
            eprintln!(
                "  ... Passed --  {:5.1}  {:6} ops  (checked in {:.3} s)  {}",
                now.as_secs_f64(),
                self.len(),
                started.elapsed().as_secs_f64(),
                self.name,
            );
        }
        match verdict {
            CheckResult::Ok => {}
            CheckResult::Unknown => eprintln!(
                "{} (seed {}): linearizability check timed out on {} operations; not failing",
                self.name,
                self.seed,
                self.len()
            ),
            illegal => panic!(
                "{} (seed {}): history of {} operations is not linearizable:\n{illegal}",
                self.name,
                self.seed,
                self.len()
            ),
        }
    }
}
