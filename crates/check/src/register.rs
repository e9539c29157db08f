//! A single register with read / write / compare-and-set, the model of the Jepsen etcd logs.

use crate::model::{Model, Operation};

/// A register request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Set the value.
    Write(i64),
    /// Set the value to `to` if it is `from`.
    Cas {
        /// The value expected.
        from: i64,
        /// The value to set.
        to: i64,
    },
}

/// What a register request returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// The outcome is unknown (Jepsen's `:info`, or a timed-out read): accepted from every state.
    Unknown,
    /// A write completed.
    Done,
    /// What a read returned; `None` is nil, the value before the first write.
    Value(Option<i64>),
    /// Whether a compare-and-set succeeded (Jepsen's `:ok` / `:fail`).
    Cas(bool),
}

/// A register operation in a history.
pub type RegisterOperation = Operation<RegisterInput, RegisterOutput>;

/// The sequential specification of a register that starts out nil.
///
/// Mirrors porcupine's `etcdModel`: there the state is an `int` with `-1000000` standing for
/// nil; here it is an `Option<i64>`. A read of nil matches only the initial state, a
/// compare-and-set from nil always fails, a failed compare-and-set leaves the state alone, and
/// an operation of unknown outcome matches any state (a write or a matching cas then takes
/// effect; linearized last it is as if it never happened).
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: &RegisterOutput,
    ) -> Option<Option<i64>> {
        let unknown = *output == RegisterOutput::Unknown;
        match *input {
            RegisterInput::Read => {
                (unknown || *output == RegisterOutput::Value(*state)).then_some(*state)
            }
            RegisterInput::Write(value) => Some(Some(value)),
            RegisterInput::Cas { from, to } => {
                let matches = *state == Some(from);
                let legal = unknown || *output == RegisterOutput::Cas(matches);
                legal.then_some(if matches { Some(to) } else { *state })
            }
        }
    }

    /// One partition, without the reads of unknown outcome: they constrain nothing and change
    /// nothing, but kept they would double the search space each, for they never return.
    fn partition(&self, history: &[RegisterOperation]) -> Vec<Vec<usize>> {
        let unknown_read = |op: &RegisterOperation| {
            op.input == RegisterInput::Read && op.output == RegisterOutput::Unknown
        };
        vec![(0..history.len())
            .filter(|&i| !unknown_read(&history[i]))
            .collect()]
    }

    fn output_is_unknown(&self, output: &RegisterOutput) -> bool {
        *output == RegisterOutput::Unknown
    }

    fn describe_operation(&self, input: &RegisterInput, output: &RegisterOutput) -> String {
        let returned = match output {
            RegisterOutput::Unknown => " -> ? (outcome unknown)".to_owned(),
            RegisterOutput::Done => String::new(),
            RegisterOutput::Value(v) => format!(" -> {}", describe_value(*v)),
            RegisterOutput::Cas(true) => " -> ok".to_owned(),
            RegisterOutput::Cas(false) => " -> fail".to_owned(),
        };
        match input {
            RegisterInput::Read => format!("read(){returned}"),
            RegisterInput::Write(v) => format!("write({v}){returned}"),
            RegisterInput::Cas { from, to } => format!("cas({from}, {to}){returned}"),
        }
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        describe_value(*state)
    }
}

fn describe_value(value: Option<i64>) -> String {
    value.map_or_else(|| "nil".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_steps_follow_etcd_semantics() {
        let m = RegisterModel;
        let cas = RegisterInput::Cas { from: 1, to: 2 };
        assert_eq!(
            m.step(&None, &RegisterInput::Read, &RegisterOutput::Value(None)),
            Some(None)
        );
        assert_eq!(
            m.step(&Some(1), &RegisterInput::Read, &RegisterOutput::Value(None)),
            None
        );
        assert_eq!(
            m.step(&Some(1), &cas, &RegisterOutput::Cas(true)),
            Some(Some(2))
        );
        assert_eq!(m.step(&Some(1), &cas, &RegisterOutput::Cas(false)), None);
        assert_eq!(
            m.step(&Some(3), &cas, &RegisterOutput::Cas(false)),
            Some(Some(3))
        );
        assert_eq!(m.step(&None, &cas, &RegisterOutput::Cas(true)), None);
        assert_eq!(
            m.step(&Some(1), &cas, &RegisterOutput::Unknown),
            Some(Some(2))
        );
        assert_eq!(
            m.step(&Some(5), &RegisterInput::Write(7), &RegisterOutput::Unknown),
            Some(Some(7))
        );
    }
}
