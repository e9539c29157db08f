//! The search for a linearization: Wing & Gong's algorithm with Lowe's memoisation, as in
//! porcupine's `checker.go`, over one partition at a time.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use std::collections::hash_map::Entry;
use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHasher};

use crate::entries::{Bitset, Entries, SetKey};
use crate::explain::Explanation;
use crate::model::{Lookahead, Model, Operation};

/// How many search steps run between two looks at the clock: often enough to stop within
/// about a millisecond of the deadline, rarely enough that the look costs nothing.
const DEADLINE_CHECK_INTERVAL: u64 = 4096;

/// How many bytes the memo of one partition may hold (its `(linearized set, state)` pairs,
/// counted with [`Model::state_bytes`]) before the search gives up with `Unknown`. A budget in
/// bytes, not pairs: a key/value state is the key's whole value, so a key appended to
/// thousands of times has states of tens of kilobytes, and 4 million of those (the former
/// budget, in pairs) was 24 GB when the OOM killer ended a test. No history of porcupine's
/// test suite needs more than 200 000 pairs of a few dozen bytes.
pub(crate) const CACHE_BYTES_MAX: usize = 1 << 30;

/// A memo entry's bytes besides its state and set: the hash map's slot and key, the bucket.
const PAIR_OVERHEAD: usize = 48;

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable; the explanation is about its smallest offending partition.
    Illegal(Box<Explanation>),
    /// No verdict: the time limit ran out, or a partition's search outgrew its memory budget
    /// (1 GiB of explored configurations), before any partition was found illegal.
    Unknown,
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history was found not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal(_))
    }

    /// The explanation of an illegal history.
    pub fn explanation(&self) -> Option<&Explanation> {
        match self {
            CheckResult::Illegal(explanation) => Some(explanation),
            _ => None,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::Illegal(explanation) => write!(f, "{explanation}"),
            CheckResult::Unknown => {
                write!(f, "unknown: the search ran out of time or memory budget")
            }
        }
    }
}

/// Checks whether `history` is linearizable with respect to `model`.
///
/// Each partition of [`Model::partition`] is checked on its own, smallest first; the first
/// illegal one ends the check, so the explanation is about the smallest offending partition.
/// With a `timeout`, the answer is [`CheckResult::Unknown`] if it runs out before a verdict;
/// so it is if one partition's search outgrows its memory budget, timeout or not.
///
/// # Panics
///
/// If an operation returns before its call (a bug in whoever recorded the history), or if
/// `partition` returns an index out of range.
pub fn check_operations<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    timeout: Option<Duration>,
) -> CheckResult {
    for (i, op) in history.iter().enumerate() {
        if let Some(ret) = op.ret {
            assert!(
                ret >= op.call,
                "operation {i} of client {} returns at {ret} ns, before its call at {} ns",
                op.client,
                op.call
            );
        }
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut partitions = model.partition(history);
    let count = partitions.len();
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&p| partitions[p].len());
    let mut timed_out = false;
    for p in order {
        let mut ops = std::mem::take(&mut partitions[p]);
        // Numbered in call order, the linearized set stays compact (see `Bitset`).
        ops.sort_by_key(|&i| (history[i].call, i));
        match check_partition(model, history, &ops, deadline, true) {
            Verdict::Ok => {}
            Verdict::Unknown => timed_out = true,
            Verdict::Illegal(dead_end) => {
                // The look-ahead prunes orders before they fail, so its longest prefix can be
                // short. The plain search, if it ends soon, finds the prefix a reader expects.
                let soon = Instant::now() + EXPLANATION_SEARCH_TIME;
                let dead_end = match check_partition(model, history, &ops, Some(soon), false) {
                    Verdict::Illegal(plain) => plain,
                    _ => dead_end,
                };
                let explanation = Explanation::new(model, history, &ops, &dead_end, (p, count));
                return CheckResult::Illegal(Box::new(explanation));
            }
        }
    }
    if timed_out {
        CheckResult::Unknown
    } else {
        CheckResult::Ok
    }
}

/// The longest linearizable prefix the search found in an illegal partition.
#[derive(Debug, Clone)]
pub(crate) struct DeadEnd {
    /// Positions in the partition, in linearization order.
    pub(crate) prefix: Vec<usize>,
    /// The operation whose return was reached with none of the pending operations linearizable.
    pub(crate) blocked: usize,
}

enum Verdict {
    Ok,
    Illegal(DeadEnd),
    Unknown,
}

/// The search's memo: every `(linearized set, state)` pair already explored. Keyed by a hash,
/// as porcupine does, so that a hit costs no clone; collisions go to an overflow list.
struct Cache<S> {
    entries: FxHashMap<u64, Bucket<S>>,
    len: usize,
    /// Approximate bytes held: states as the model counts them, plus each pair's overhead.
    bytes: usize,
}

/// The pairs whose hash is the same: almost always one, which then costs no extra allocation.
enum Bucket<S> {
    One(SetKey, S),
    Many(Vec<(SetKey, S)>),
}

impl<S: Clone + Eq + Hash> Cache<S> {
    fn new() -> Self {
        Cache {
            entries: FxHashMap::default(),
            len: 0,
            bytes: 0,
        }
    }

    /// Records the pair; false if it was already there. `state_bytes` is what the state
    /// holds, for the budget.
    fn insert(&mut self, linearized: &mut Bitset, state: &S, state_bytes: usize) -> bool {
        let mut hasher = FxHasher::default();
        hasher.write_u64(linearized.hash());
        state.hash(&mut hasher);
        let key = match self.entries.entry(hasher.finish()) {
            Entry::Vacant(slot) => {
                let key = linearized.key();
                let bytes = key.bytes();
                slot.insert(Bucket::One(key, state.clone()));
                bytes
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Bucket::One(l, s) if s == state && linearized.matches(l) => return false,
                Bucket::Many(pairs)
                    if pairs
                        .iter()
                        .any(|(l, s)| s == state && linearized.matches(l)) =>
                {
                    return false
                }
                Bucket::Many(pairs) => {
                    let key = linearized.key();
                    let bytes = key.bytes();
                    pairs.push((key, state.clone()));
                    bytes
                }
                Bucket::One(..) => {
                    let Bucket::One(l, s) = slot.insert(Bucket::Many(Vec::new())) else {
                        unreachable!("matched One above")
                    };
                    let key = linearized.key();
                    let bytes = key.bytes();
                    slot.insert(Bucket::Many(vec![(l, s), (key, state.clone())]));
                    bytes
                }
            },
        };
        self.len += 1;
        self.bytes += state_bytes + key + PAIR_OVERHEAD;
        true
    }
}

/// The search's mutable state for one partition.
struct Search<'a, M: Model> {
    model: &'a M,
    /// The partition's operations.
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    entries: Entries,
    linearized: Bitset,
    cache: Cache<M::State>,
    /// The linearization so far: call entries lifted, with the state before each.
    calls: Vec<(usize, M::State)>,
    state: M::State,
    /// The longest prefix that got stuck so far.
    longest: Option<DeadEnd>,
    /// Each operation's part in the look-ahead.
    kinds: Vec<Lookahead>,
    /// `Reset` operations not linearized yet.
    resets_left: usize,
    /// `Observe` operations not linearized yet, in call order.
    observers_left: BTreeSet<usize>,
}

/// How many of the earliest observations left the look-ahead checks a new state against:
/// the earliest ones are the likeliest to reject a wrong order soon.
const LOOKAHEAD_OBSERVERS: usize = 2;

/// How long an illegal partition may be searched again without the look-ahead, for a longer
/// (clearer) linearizable prefix in the explanation.
const EXPLANATION_SEARCH_TIME: Duration = Duration::from_secs(1);

fn check_partition<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    indices: &[usize],
    deadline: Option<Instant>,
    lookahead: bool,
) -> Verdict {
    let ops: Vec<_> = indices.iter().map(|&i| &history[i]).collect();
    let times: Vec<_> = ops
        .iter()
        .map(|op| {
            let unknown = op.ret.is_none() || model.output_is_unknown(&op.output);
            (op.call, if unknown { None } else { op.ret })
        })
        .collect();
    let kinds: Vec<Lookahead> = ops
        .iter()
        .map(|op| {
            if lookahead {
                model.lookahead(&op.input, &op.output)
            } else {
                Lookahead::Neutral
            }
        })
        .collect();
    let resets_left = kinds.iter().filter(|&&k| k == Lookahead::Reset).count();
    let observers_left = (0..kinds.len())
        .filter(|&i| kinds[i] == Lookahead::Observe)
        .collect();
    let mut search = Search {
        kinds,
        resets_left,
        observers_left,
        model,
        entries: Entries::new(&times),
        linearized: Bitset::new(ops.len()),
        cache: Cache::new(),
        calls: Vec::new(),
        state: model.init(),
        longest: None,
        ops,
    };
    search.run(deadline)
}

impl<M: Model> Search<'_, M> {
    /// Depth-first search in entry order: linearize the first call whose step is legal and
    /// leads somewhere new; on reaching a return, no pending operation can go next, so undo
    /// the last choice and try the call after it.
    fn run(&mut self, deadline: Option<Instant>) -> Verdict {
        let mut steps: u64 = 0;
        let Some(mut node) = self.entries.first() else {
            return Verdict::Ok;
        };
        loop {
            steps += 1;
            if steps.is_multiple_of(DEADLINE_CHECK_INTERVAL) && self.out_of_budget(deadline) {
                return Verdict::Unknown;
            }
            let next = if self.entries.is_call(node) {
                self.try_call(node)
            } else {
                self.note_dead_end(node);
                if self.calls.is_empty() {
                    let longest = self.longest.take().expect("a dead end was just noted");
                    return Verdict::Illegal(longest);
                }
                Some(self.backtrack())
            };
            match next {
                Some(n) => node = n,
                None => return Verdict::Ok,
            }
        }
    }

    /// Whether the search must give up: the deadline passed, or the memo outgrew its budget
    /// (a search that would exhaust memory must end in `Unknown`, not in the OOM killer).
    fn out_of_budget(&self, deadline: Option<Instant>) -> bool {
        self.cache.bytes > CACHE_BYTES_MAX || deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Tries to linearize the call at `node`; returns the entry to look at next, or `None`
    /// when everything is linearized.
    fn try_call(&mut self, node: usize) -> Option<usize> {
        let op = self.entries.op(node);
        let operation = self.ops[op];
        let Some(state) = self
            .model
            .step(&self.state, &operation.input, &operation.output)
        else {
            return Some(self.entries.next(node));
        };
        self.take_lookahead(op);
        if !self.viable(&state) {
            self.restore_lookahead(op);
            return Some(self.entries.next(node));
        }
        self.linearized.set(op);
        let state_bytes = self.model.state_bytes(&state);
        if !self.cache.insert(&mut self.linearized, &state, state_bytes) {
            // Explored before from an equivalent point: it leads nowhere new.
            self.linearized.clear(op);
            self.restore_lookahead(op);
            return Some(self.entries.next(node));
        }
        let before = std::mem::replace(&mut self.state, state);
        self.calls.push((node, before));
        self.entries.lift(node);
        self.entries.first()
    }

    /// Undoes the last linearized operation; returns the entry after its call.
    fn backtrack(&mut self) -> usize {
        let (node, state) = self.calls.pop().expect("backtrack with an empty stack");
        self.state = state;
        let op = self.entries.op(node);
        self.linearized.clear(op);
        self.restore_lookahead(op);
        self.entries.unlift(node);
        self.entries.next(node)
    }

    /// Marks `op` linearized in the look-ahead's books.
    fn take_lookahead(&mut self, op: usize) {
        match self.kinds[op] {
            Lookahead::Reset => self.resets_left -= 1,
            Lookahead::Observe => {
                self.observers_left.remove(&op);
            }
            Lookahead::Neutral => {}
        }
    }

    /// Undoes [`Search::take_lookahead`].
    fn restore_lookahead(&mut self, op: usize) {
        match self.kinds[op] {
            Lookahead::Reset => self.resets_left += 1,
            Lookahead::Observe => {
                self.observers_left.insert(op);
            }
            Lookahead::Neutral => {}
        }
    }

    /// Whether the operations left can still be linearized after reaching `state`, as far as
    /// the look-ahead can tell (see [`Lookahead`]).
    fn viable(&self, state: &M::State) -> bool {
        if self.resets_left > 0 {
            return true;
        }
        self.observers_left
            .iter()
            .take(LOOKAHEAD_OBSERVERS)
            .all(|&o| {
                let op = self.ops[o];
                self.model.may_reach(state, &op.input, &op.output)
            })
    }

    /// Remembers the longest prefix that got stuck, for the explanation. Only strictly longer
    /// prefixes are copied, so this costs at most one copy per length.
    fn note_dead_end(&mut self, return_node: usize) {
        if self
            .longest
            .as_ref()
            .is_some_and(|l| l.prefix.len() >= self.calls.len())
        {
            return;
        }
        self.longest = Some(DeadEnd {
            prefix: self
                .calls
                .iter()
                .map(|(n, _)| self.entries.op(*n))
                .collect(),
            blocked: self.entries.op(return_node),
        });
    }
}
