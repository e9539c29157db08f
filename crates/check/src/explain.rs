//! Why a history is not linearizable, in a form a person can read: the offending partition's
//! operations around the point where every linearization got stuck.

use std::fmt;

use crate::checker::DeadEnd;
use crate::model::{Model, Operation};

/// How many operations the explanation lists at most; the rest are counted.
const SHOWN_OPERATIONS: usize = 24;
/// How many operations of the prefix's linearization order are listed at most.
const SHOWN_PREFIX: usize = 10;

/// One operation of the offending partition, described by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationSummary {
    /// Its index in the checked history (in a JSON Lines file: line number − 1).
    pub index: usize,
    /// Who issued it.
    pub client: u64,
    /// When it was called, in ns.
    pub call: u64,
    /// When it returned, in ns; `None` if its outcome is unknown.
    pub ret: Option<u64>,
    /// The model's description of input and output, values truncated to 40 characters.
    pub description: String,
}

/// Why a history is not linearizable: its smallest offending partition and the longest
/// linearizable prefix of it that the search found (porcupine's "partial linearization").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Which partition (in [`Model::partition`]'s order) is offending.
    pub partition: usize,
    /// How many partitions the history has.
    pub partitions: usize,
    /// The partition's operations, in call order.
    pub operations: Vec<OperationSummary>,
    /// The longest linearizable prefix found: indices into `operations`, in linearization order.
    pub prefix: Vec<usize>,
    /// The model's description of the state after the prefix.
    pub state: String,
    /// Index into `operations` of the first operation that could not be linearized after the
    /// prefix: it must take effect before it returns, and no pending operation could go next.
    pub blocked: usize,
    /// Whether `blocked` itself is legal after the prefix (then every way on from it failed
    /// later); usually false, e.g. a read of a value the state does not hold.
    pub blocked_legal: bool,
}

impl Explanation {
    /// Builds the explanation of partition `indices` (positions into `history`), whose search
    /// ended at `dead_end`; `(partition, partitions)` locate it for the reader.
    pub(crate) fn new<M: Model>(
        model: &M,
        history: &[Operation<M::Input, M::Output>],
        indices: &[usize],
        dead_end: &DeadEnd,
        (partition, partitions): (usize, usize),
    ) -> Self {
        let mut by_call: Vec<usize> = (0..indices.len()).collect();
        by_call.sort_by_key(|&pos| (history[indices[pos]].call, pos));
        let mut rank = vec![0; indices.len()];
        for (r, &pos) in by_call.iter().enumerate() {
            rank[pos] = r;
        }
        let operations = by_call
            .iter()
            .map(|&pos| summarize(model, history, indices[pos]))
            .collect();
        let mut state = model.init();
        for &pos in &dead_end.prefix {
            let op = &history[indices[pos]];
            state = model
                .step(&state, &op.input, &op.output)
                .expect("every step of a linearized prefix is legal");
        }
        let blocked = &history[indices[dead_end.blocked]];
        Explanation {
            partition,
            partitions,
            operations,
            prefix: dead_end.prefix.iter().map(|&pos| rank[pos]).collect(),
            state: model.describe_state(&state),
            blocked: rank[dead_end.blocked],
            blocked_legal: model
                .step(&state, &blocked.input, &blocked.output)
                .is_some(),
        }
    }

    /// The first operation and last operation to list, so the listing centres on `blocked`.
    fn window(&self) -> (usize, usize) {
        let n = self.operations.len();
        if n <= SHOWN_OPERATIONS {
            return (0, n);
        }
        let start = self
            .blocked
            .saturating_sub(SHOWN_OPERATIONS / 2)
            .min(n - SHOWN_OPERATIONS);
        (start, start + SHOWN_OPERATIONS)
    }

    fn write_prefix_order(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prefix order:")?;
        let skipped = self.prefix.len().saturating_sub(SHOWN_PREFIX);
        if skipped > 0 {
            write!(f, " … {skipped} earlier →")?;
        }
        for (i, &r) in self.prefix[skipped..].iter().enumerate() {
            let arrow = if i == 0 { "" } else { " →" };
            write!(f, "{arrow} #{}", self.operations[r].index)?;
        }
        if self.prefix.is_empty() {
            write!(f, " (empty: not even a first operation fits)")?;
        }
        writeln!(f)
    }
}

fn summarize<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    index: usize,
) -> OperationSummary {
    let op = &history[index];
    OperationSummary {
        index,
        client: op.client,
        call: op.call,
        ret: op.ret,
        description: model.describe_operation(&op.input, &op.output),
    }
}

impl fmt::Display for OperationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or_else(|| "?".to_owned(), |t| t.to_string());
        write!(
            f,
            "#{} client {} [{}, {}] {}",
            self.index, self.client, self.call, ret, self.description
        )
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.operations.len();
        writeln!(
            f,
            "not linearizable: partition {} of {} (the smallest offending one), {n} operations",
            self.partition + 1,
            self.partitions
        )?;
        writeln!(
            f,
            "longest linearizable prefix: {} of {n} operations, reaching state {}",
            self.prefix.len(),
            self.state
        )?;
        self.write_prefix_order(f)?;
        let why = if self.blocked_legal {
            "legal there, but every way on from it fails"
        } else {
            "illegal in that state"
        };
        writeln!(
            f,
            "then could not linearize {} ({why})",
            self.operations[self.blocked]
        )?;
        let mut position = vec![None; n];
        for (i, &r) in self.prefix.iter().enumerate() {
            position[r] = Some(i + 1);
        }
        writeln!(
            f,
            "operations in call order (times in ns; Ln = n-th in the prefix):"
        )?;
        let (start, end) = self.window();
        if start > 0 {
            writeln!(f, "  … {start} earlier")?;
        }
        for (r, op) in self.operations.iter().enumerate().take(end).skip(start) {
            let mark = match position[r] {
                Some(p) => format!("  L{p}"),
                None if r == self.blocked => "  <- could not linearize".to_owned(),
                None => String::new(),
            };
            writeln!(f, "  {op}{mark}")?;
        }
        if end < n {
            writeln!(f, "  … {} later", n - end)?;
        }
        Ok(())
    }
}
