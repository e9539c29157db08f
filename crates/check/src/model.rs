//! The sequential specification a history is checked against, and the operations of a history.

use std::hash::Hash;

/// One completed (or abandoned) operation of a history, as a client saw it.
///
/// The interval `[call, ret]` is closed, as in porcupine: two operations whose intervals only
/// touch (`a.ret == b.call`) are concurrent. That is the only sound reading when timestamps come
/// from a clock that can return the same value twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who issued the operation. Only used in explanations: the checker derives the real-time
    /// order from the timestamps alone.
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was issued, in nanoseconds (any monotonic origin).
    pub call: u64,
    /// What came back. When `ret` is `None` this must be an output the model accepts from any
    /// state (see [`Model::output_is_unknown`]).
    pub output: O,
    /// When the reply arrived, in nanoseconds; `None` when the outcome is unknown (the client
    /// gave up). Such an operation may take effect at any point after its call, or never: the
    /// checker gives it a return time of +infinity, so it can always be linearized last, which
    /// is the same as never having happened.
    pub ret: Option<u64>,
}

/// A sequential specification: the state machine every linearizable history must be explainable by.
///
/// # Correctness
///
/// - `step` is a pure function of its arguments: the checker calls it many times on the same
///   state while it backtracks, and caches `(linearized set, state)` pairs, so two states that
///   compare equal must behave identically from then on.
/// - `partition` must be sound (P-compositionality, Herlihy & Wing): the whole history is
///   linearizable if and only if every part is. Per-key partitioning is sound for a key/value
///   store because operations on different keys commute.
/// - If [`Model::output_is_unknown`] says an output is unknown, `step` must accept it from every
///   state (returning the state the operation *would* produce if it took effect).
pub trait Model {
    /// The state of the specification. `Hash + Eq` for the checker's memo cache.
    type State: Clone + Eq + Hash;
    /// An operation's arguments.
    type Input;
    /// An operation's result.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Bytes a copy of `state` holds, for the checker's memory budget (its memo keeps a copy
    /// of every state explored). The default counts the value itself; states that own heap
    /// data (a key/value model's string) add it.
    fn state_bytes(&self, _state: &Self::State) -> usize {
        std::mem::size_of::<Self::State>()
    }

    /// The state after applying `input` in `state`, if that can produce `output`; `None` if the
    /// step is illegal (the output could not have come from this state).
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Splits a history into independent sub-histories, as lists of indices into `history`.
    /// The default keeps it whole.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..history.len()).collect()]
    }

    /// Whether `output` stands for "outcome unknown". The checker then treats the operation's
    /// return time as +infinity even if `ret` is set: an operation whose effect is unknown may
    /// still take effect after the client stopped waiting for it.
    fn output_is_unknown(&self, _output: &Self::Output) -> bool {
        false
    }

    /// How an operation takes part in the search's look-ahead (see [`Lookahead`]). The
    /// default, [`Lookahead::Neutral`] for everything, turns the look-ahead off.
    fn lookahead(&self, _input: &Self::Input, _output: &Self::Output) -> Lookahead {
        Lookahead::Neutral
    }

    /// For an operation whose [`Model::lookahead`] is [`Lookahead::Observe`]: whether a state
    /// it could be linearized in is reachable from `state` by steps of [`Lookahead::Neutral`]
    /// operations alone. Returning `true` is always sound; `false` must be certain.
    fn may_reach(
        &self,
        _state: &Self::State,
        _input: &Self::Input,
        _output: &Self::Output,
    ) -> bool {
        true
    }

    /// A short human-readable form of an operation, e.g. `get("x") -> "1"`.
    fn describe_operation(&self, input: &Self::Input, output: &Self::Output) -> String;

    /// A short human-readable form of a state.
    fn describe_state(&self, state: &Self::State) -> String;
}

/// Cuts `text` to at most `max` characters, keeping its head and tail around a `…`, so that
/// explanations stay readable when values are long. The tail is kept because appends put
/// what differs between two long values at their end.
pub fn truncate(text: &str, max: usize) -> String {
    let len = text.chars().count();
    if len <= max {
        return text.to_owned();
    }
    let kept = max.saturating_sub(1);
    let head: String = text.chars().take(kept - kept / 2).collect();
    let tail: String = text.chars().skip(len - kept / 2).collect();
    format!("{head}…{tail}")
}

/// `text` quoted and truncated to 40 characters, the form every model uses for values.
pub fn quote(text: &str) -> String {
    format!("{:?}", truncate(text, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_text_and_marks_cuts() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "ab…f");
        assert_eq!(truncate("abcdefg", 5), "ab…fg");
        assert_eq!(truncate("ééééé", 3), "é…é");
        assert_eq!(truncate(&"x".repeat(100), 40).chars().count(), 40);
        assert_eq!(quote("x"), "\"x\"");
    }
}

/// An operation's part in the search's look-ahead, which prunes states from which the
/// operations not yet linearized cannot all be linearized.
///
/// While no [`Lookahead::Reset`] operation is left to linearize, every later state is reached
/// from the current one by `Neutral` and `Observe` steps; so each `Observe` operation left
/// must find its state reachable ([`Model::may_reach`]), or the search backs off at once.
/// For a key/value store with appends this turns an exponential search (every order of
/// unobserved concurrent appends is a different state) into a direct one: a state that is not
/// a prefix of a value read later is dropped as soon as it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookahead {
    /// Changes the state only in ways `may_reach` accounts for (e.g. an append), or not at all.
    Neutral,
    /// Can change the state arbitrarily (e.g. a put or delete, or one of unknown outcome).
    Reset,
    /// Constrains the state it is linearized in (e.g. a get with a known result).
    Observe,
}
