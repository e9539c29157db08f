//! The key/value store model (get / put / append / delete, as in the 6.5840 labs), its
//! operation types, and a recorder for test code.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checker::{check_operations, CheckResult};
use crate::model::{quote, Lookahead, Model, Operation};

/// A key/value store operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Read a key; a missing key reads as "".
    Get,
    /// Set a key's value.
    Put,
    /// Append to a key's value (a missing key counts as "").
    Append,
    /// Remove a key: afterwards it reads as "".
    Delete,
}

impl KvOp {
    /// The lower-case name used in JSON Lines files.
    pub fn name(self) -> &'static str {
        match self {
            KvOp::Get => "get",
            KvOp::Put => "put",
            KvOp::Append => "append",
            KvOp::Delete => "delete",
        }
    }
}

/// A key/value store request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvInput {
    /// What to do.
    pub op: KvOp,
    /// Which key.
    pub key: String,
    /// The argument of put / append; "" for get and delete.
    pub value: String,
}

impl KvInput {
    /// `get(key)`.
    pub fn get(key: impl Into<String>) -> Self {
        KvInput {
            op: KvOp::Get,
            key: key.into(),
            value: String::new(),
        }
    }

    /// `put(key, value)`.
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput {
            op: KvOp::Put,
            key: key.into(),
            value: value.into(),
        }
    }

    /// `append(key, value)`.
    pub fn append(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput {
            op: KvOp::Append,
            key: key.into(),
            value: value.into(),
        }
    }

    /// `delete(key)`.
    pub fn delete(key: impl Into<String>) -> Self {
        KvInput {
            op: KvOp::Delete,
            key: key.into(),
            value: String::new(),
        }
    }
}

/// What a key/value store request returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The outcome is unknown (the client gave up): the request may have taken effect at any
    /// time after its call, or never. Accepted from every state.
    Unknown,
    /// The request completed with nothing to check: a put, a delete, or an append that does
    /// not return the old value. (A get must return a value: `Done` makes it illegal.)
    Done,
    /// What a get read, or the old value an append returned (6.5840's kvsrv `Append`).
    Value(String),
}

impl KvOutput {
    /// `Value(value)`.
    pub fn value(value: impl Into<String>) -> Self {
        KvOutput::Value(value.into())
    }
}

/// A key/value operation in a history.
pub type KvOperation = Operation<KvInput, KvOutput>;

/// The sequential specification of a key/value store, partitioned per key, so its state is
/// one key's value ("" when absent, like porcupine's kv model).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> String {
        String::new()
    }

    fn state_bytes(&self, state: &String) -> usize {
        std::mem::size_of::<String>() + state.capacity()
    }

    fn step(&self, state: &String, input: &KvInput, output: &KvOutput) -> Option<String> {
        match (input.op, output) {
            (KvOp::Get, KvOutput::Unknown) => Some(state.clone()),
            (KvOp::Get, KvOutput::Value(read)) => (read == state).then(|| state.clone()),
            (KvOp::Get, KvOutput::Done) => None,
            (KvOp::Put, _) => Some(input.value.clone()),
            (KvOp::Append, KvOutput::Value(old)) if old != state => None,
            (KvOp::Append, _) => Some(format!("{state}{}", input.value)),
            (KvOp::Delete, _) => Some(String::new()),
        }
    }

    /// One partition per key, in key order (a `BTreeMap`: explanations are reproducible).
    /// Gets of unknown outcome are left out: they constrain nothing and change nothing, but
    /// kept they would double the search space each, for they never return.
    fn partition(&self, history: &[KvOperation]) -> Vec<Vec<usize>> {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            if op.input.op == KvOp::Get && op.output == KvOutput::Unknown {
                continue;
            }
            by_key.entry(op.input.key.as_str()).or_default().push(i);
        }
        by_key.into_values().collect()
    }

    fn output_is_unknown(&self, output: &KvOutput) -> bool {
        *output == KvOutput::Unknown
    }

    /// Appends only extend a value; puts and deletes replace it; a known get result or an
    /// append's known old value is an observation of the value at that point.
    fn lookahead(&self, input: &KvInput, output: &KvOutput) -> Lookahead {
        match (input.op, output) {
            (KvOp::Put | KvOp::Delete, _) => Lookahead::Reset,
            (KvOp::Get | KvOp::Append, KvOutput::Value(_)) => Lookahead::Observe,
            _ => Lookahead::Neutral,
        }
    }

    /// With appends alone, later values extend the current one.
    fn may_reach(&self, state: &String, _input: &KvInput, output: &KvOutput) -> bool {
        match output {
            KvOutput::Value(v) => v.starts_with(state.as_str()),
            _ => true,
        }
    }

    fn describe_operation(&self, input: &KvInput, output: &KvOutput) -> String {
        let key = quote(&input.key);
        let returned = match output {
            KvOutput::Unknown => " -> ? (outcome unknown)".to_owned(),
            KvOutput::Done => String::new(),
            KvOutput::Value(v) => format!(" -> {}", quote(v)),
        };
        match input.op {
            KvOp::Get | KvOp::Delete => format!("{}({key}){returned}", input.op.name()),
            KvOp::Put | KvOp::Append => {
                format!(
                    "{}({key}, {}){returned}",
                    input.op.name(),
                    quote(&input.value)
                )
            }
        }
    }

    fn describe_state(&self, state: &String) -> String {
        quote(state)
    }
}

/// Checks a key/value history, each key on its own (see [`check_operations`]).
pub fn check_kv(history: &[KvOperation], timeout: Option<Duration>) -> CheckResult {
    check_operations(&KvModel, history, timeout)
}

/// Names an operation begun with [`KvHistory::invoke`] so it can be completed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOp(usize);

/// A recorder of a key/value history, for test code.
///
/// Either [`KvHistory::push`] whole operations, or [`KvHistory::invoke`] one when the client
/// sends it and [`KvHistory::complete`] it when the reply arrives; one never completed keeps an
/// unknown outcome, which is what a client that gave up knows about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvHistory {
    ops: Vec<KvOperation>,
}

impl KvHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a whole operation. An unknown output and a missing return time mean the same
    /// (the outcome is unknown), so each implies the other here.
    pub fn push(&mut self, mut op: KvOperation) {
        if op.output == KvOutput::Unknown || op.ret.is_none() {
            op.output = KvOutput::Unknown;
            op.ret = None;
        }
        self.ops.push(op);
    }

    /// Records that `client` called `input` at `call` ns; its outcome is unknown until completed.
    pub fn invoke(&mut self, client: u64, input: KvInput, call: u64) -> PendingOp {
        self.ops.push(Operation {
            client,
            input,
            call,
            output: KvOutput::Unknown,
            ret: None,
        });
        PendingOp(self.ops.len() - 1)
    }

    /// Records that the operation `pending` returned `output` at `ret` ns.
    ///
    /// # Panics
    ///
    /// If `pending` is not from this history.
    pub fn complete(&mut self, pending: PendingOp, output: KvOutput, ret: u64) {
        let op = &mut self.ops[pending.0];
        op.ret = (output != KvOutput::Unknown).then_some(ret);
        op.output = output;
    }

    /// The operations recorded so far, in recording order.
    pub fn operations(&self) -> &[KvOperation] {
        &self.ops
    }

    /// The operations, by value.
    pub fn into_operations(self) -> Vec<KvOperation> {
        self.ops
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks the history (see [`check_kv`]).
    pub fn check(&self, timeout: Option<Duration>) -> CheckResult {
        check_kv(&self.ops, timeout)
    }
}

impl From<Vec<KvOperation>> for KvHistory {
    fn from(ops: Vec<KvOperation>) -> Self {
        let mut history = KvHistory::new();
        for op in ops {
            history.push(op);
        }
        history
    }
}

impl AsRef<[KvOperation]> for KvHistory {
    fn as_ref(&self) -> &[KvOperation] {
        &self.ops
    }
}
