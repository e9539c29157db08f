//! The history a KV tester's clients record, and its end-of-run linearizability check:
//! shared by the KV tester and the sharded one.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use flotilla_check::{CheckResult, KvHistory, KvInput, KvOutput, Operation};

/// How long the final linearizability check may take before it answers "unknown" (which
/// passes, as in the labs, after saying so).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Recorder {
    history: RefCell<KvHistory>,
    /// The last timestamp handed out, so that timestamps strictly increase in recording
    /// order: a reply recorded before a later call is then ordered before it even when both
    /// happen at the same virtual microsecond.
    last_stamp: Cell<u64>,
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
        let t = (now.as_nanos() as u64).max(self.last_stamp.get() + 1);
        self.last_stamp.set(t);
        t
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
        self.history.borrow().len()
    }

    pub fn history(&self) -> KvHistory {
        self.history.borrow().clone()
    }

    pub fn verdict(&self) -> CheckResult {
        self.history.borrow().check(Some(CHECK_TIMEOUT))
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
        let started = std::time::Instant::now();
        let verdict = history.check(Some(CHECK_TIMEOUT));
        if std::env::var_os("FLOTILLA_VERBOSE").is_some() {
            eprintln!(
                "  ... Passed --  {:5.1}  {:6} ops  (checked in {:.3} s)  {}",
                now.as_secs_f64(),
                history.len(),
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
                history.len()
            ),
            illegal => panic!(
                "{} (seed {}): history of {} operations is not linearizable:\n{illegal}",
                self.name,
                self.seed,
                history.len()
            ),
        }
    }
}
