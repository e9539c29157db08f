//! Parsers for the history formats of porcupine's test data: Jepsen etcd logs (a register)
//! and EDN key/value histories. In both, time is the line number: each line is an event, and
//! only the order of events matters to linearizability.
//!
//! Jepsen's completion types mean: `:ok` done, `:fail` definitely not done (a failed
//! compare-and-set is a result, `false`; any other failed operation is dropped), `:info`
//! unknown. An invoke never completed before the end of the log is unknown too.

use std::collections::BTreeMap;

use crate::error::{HistoryError, LineError};
use crate::kv::{KvInput, KvOp, KvOperation, KvOutput};
use crate::model::Operation;
use crate::register::{RegisterInput, RegisterOperation, RegisterOutput};

/// How an event line ends an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    Ok,
    Fail,
    Info,
}

/// Builds a history from invoke and completion events, pairing them by process.
struct Pairing<I, O> {
    ops: Vec<Option<Operation<I, O>>>,
    /// Process → index in `ops` of its operation still awaiting completion.
    pending: BTreeMap<u64, usize>,
}

impl<I, O> Pairing<I, O> {
    fn new() -> Self {
        Pairing {
            ops: Vec::new(),
            pending: BTreeMap::new(),
        }
    }

    fn invoke(&mut self, process: u64, input: I, unknown: O, time: u64) -> Result<(), LineError> {
        if self.pending.contains_key(&process) {
            return Err(LineError::AlreadyPending { process });
        }
        self.pending.insert(process, self.ops.len());
        let op = Operation {
            client: process,
            input,
            call: time,
            output: unknown,
            ret: None,
        };
        self.ops.push(Some(op));
        Ok(())
    }

    /// The pending operation of `process`, which this event completes.
    fn complete(&mut self, process: u64) -> Result<&mut Option<Operation<I, O>>, LineError> {
        let index = (self.pending.remove(&process)).ok_or(LineError::NeverInvoked { process })?;
        Ok(&mut self.ops[index])
    }

    /// The history; operations still pending keep their unknown outcome.
    fn finish(self) -> Vec<Operation<I, O>> {
        self.ops.into_iter().flatten().collect()
    }
}

fn completion(word: &str) -> Option<Completion> {
    match word {
        ":ok" => Some(Completion::Ok),
        ":fail" => Some(Completion::Fail),
        ":info" => Some(Completion::Info),
        _ => None,
    }
}

/// Parses a Jepsen etcd log: lines like `INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]`.
/// Lines that are not `jepsen.util` events are skipped.
pub fn parse_jepsen_etcd(text: &str) -> Result<Vec<RegisterOperation>, HistoryError> {
    let mut pairing = Pairing::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["INFO", "jepsen.util", "-", process, kind, f, value @ ..] = words.as_slice() else {
            continue;
        };
        jepsen_event(&mut pairing, (process, kind, f), &value.join(" "), i as u64)
            .map_err(|m| HistoryError::line(i + 1, m))?;
    }
    Ok(pairing.finish())
}

fn jepsen_event(
    pairing: &mut Pairing<RegisterInput, RegisterOutput>,
    (process, kind, f): (&str, &str, &str),
    value: &str,
    time: u64,
) -> Result<(), LineError> {
    let process: u64 = process.parse().map_err(|_| LineError::BadProcess {
        process: process.into(),
    })?;
    if kind == ":invoke" {
        let input = match f {
            ":read" => RegisterInput::Read,
            ":write" => RegisterInput::Write(parse_int(value)?),
            ":cas" => cas_arguments(value)?,
            _ => return Err(LineError::UnknownOperation { f: f.into() }),
        };
        return pairing.invoke(process, input, RegisterOutput::Unknown, time);
    }
    let completion =
        completion(kind).ok_or_else(|| LineError::UnknownEventType { kind: kind.into() })?;
    let slot = pairing.complete(process)?;
    let Some(op) = slot else {
        unreachable!("pending operations are never dropped")
    };
    let output = match (completion, op.input) {
        (Completion::Info, _) => return Ok(()),
        (Completion::Ok, RegisterInput::Read) if f == ":read" => {
            RegisterOutput::Value(if value == "nil" {
                None
            } else {
                Some(parse_int(value)?)
            })
        }
        (Completion::Ok, RegisterInput::Write(_)) if f == ":write" => RegisterOutput::Done,
        (c, RegisterInput::Cas { .. }) if f == ":cas" => RegisterOutput::Cas(c == Completion::Ok),
        (Completion::Fail, RegisterInput::Read | RegisterInput::Write(_)) => {
            *slot = None; // it did not happen
            return Ok(());
        }
        _ => {
            return Err(LineError::CompletionMismatch {
                event: format!("{kind} {f}"),
                pending: format!("{:?}", op.input),
            })
        }
    };
    op.output = output;
    op.ret = Some(time);
    Ok(())
}

fn parse_int(text: &str) -> Result<i64, LineError> {
    text.parse()
        .map_err(|_| LineError::NotAnInteger { text: text.into() })
}

/// `[from to]`.
fn cas_arguments(text: &str) -> Result<RegisterInput, LineError> {
    let bad = || LineError::BadCasArguments { text: text.into() };
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(bad)?;
    match inner.split_whitespace().collect::<Vec<_>>().as_slice() {
        [from, to] => Ok(RegisterInput::Cas {
            from: parse_int(from)?,
            to: parse_int(to)?,
        }),
        _ => Err(bad()),
    }
}

/// A value in an EDN event map.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edn {
    Nil,
    Int(i64),
    Keyword(String),
    Str(String),
}

/// Parses an EDN key/value history: one map a line, like
/// `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`, with `:f` one of
/// `:get`, `:put`, `:append`, `:delete`. Blank lines are skipped.
pub fn parse_edn_kv(text: &str) -> Result<Vec<KvOperation>, HistoryError> {
    let mut pairing = Pairing::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        parse_edn_map(line)
            .and_then(|map| edn_event(&mut pairing, &map, i as u64))
            .map_err(|m| HistoryError::line(i + 1, m))?;
    }
    Ok(pairing.finish())
}

fn edn_event(
    pairing: &mut Pairing<KvInput, KvOutput>,
    map: &BTreeMap<String, Edn>,
    time: u64,
) -> Result<(), LineError> {
    let field = |key: &'static str| map.get(key).ok_or(LineError::MissingKey { key });
    let wrong = |key, expected, found: &Edn| LineError::WrongKind {
        key,
        expected,
        found: format!("{found:?}"),
    };
    let process = match field("process")? {
        Edn::Int(p) if *p >= 0 => *p as u64,
        other => return Err(wrong("process", "a non-negative integer", other)),
    };
    let kind = match field("type")? {
        Edn::Keyword(kind) => kind,
        other => return Err(wrong("type", "a keyword", other)),
    };
    let f = match field("f")? {
        Edn::Keyword(f) => f,
        other => return Err(wrong("f", "a keyword", other)),
    };
    let value = match map.get("value") {
        None | Some(Edn::Nil) => String::new(),
        Some(Edn::Str(s)) => s.clone(),
        Some(Edn::Int(n)) => n.to_string(),
        Some(other) => return Err(wrong("value", "a string or nil", other)),
    };
    if kind == "invoke" {
        let key = match field("key")? {
            Edn::Str(s) => s.clone(),
            Edn::Int(n) => n.to_string(),
            other => return Err(wrong("key", "a string", other)),
        };
        let op = kv_op(f)?;
        let value = if matches!(op, KvOp::Get | KvOp::Delete) {
            String::new()
        } else {
            value
        };
        return pairing.invoke(process, KvInput { op, key, value }, KvOutput::Unknown, time);
    }
    let completion =
        completion(&format!(":{kind}")).ok_or_else(|| LineError::UnknownEventType {
            kind: format!(":{kind}"),
        })?;
    let slot = pairing.complete(process)?;
    let Some(op) = slot else {
        unreachable!("pending operations are never dropped")
    };
    if kv_op(f)? != op.input.op {
        return Err(LineError::CompletionMismatch {
            event: format!(":{kind} :{f}"),
            pending: op.input.op.name().into(),
        });
    }
    match completion {
        Completion::Info => {}
        Completion::Fail => *slot = None, // it did not happen
        Completion::Ok => {
            op.output = if op.input.op == KvOp::Get {
                KvOutput::Value(value)
            } else {
                KvOutput::Done
            };
            op.ret = Some(time);
        }
    }
    Ok(())
}

fn kv_op(f: &str) -> Result<KvOp, LineError> {
    match f {
        "get" => Ok(KvOp::Get),
        "put" => Ok(KvOp::Put),
        "append" => Ok(KvOp::Append),
        "delete" => Ok(KvOp::Delete),
        _ => Err(LineError::UnknownOperation { f: format!(":{f}") }),
    }
}

/// Parses a flat EDN map of keyword keys: `{:k v, :k v}` (commas are whitespace in EDN).
fn parse_edn_map(line: &str) -> Result<BTreeMap<String, Edn>, LineError> {
    let inner = line
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or(LineError::NotAMap)?;
    let mut rest = inner;
    let mut map = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(map);
        }
        let (key, after) = edn_value(rest)?;
        let Edn::Keyword(key) = key else {
            return Err(LineError::KeyNotKeyword {
                key: format!("{key:?}"),
            });
        };
        let (value, after) = edn_value(after.trim_start())?;
        map.insert(key, value);
        rest = after;
    }
}

/// Reads one scalar at the start of `text`; returns it and the rest.
fn edn_value(text: &str) -> Result<(Edn, &str), LineError> {
    if let Some(body) = text.strip_prefix('"') {
        return edn_string(body);
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    let value = match word {
        "" => return Err(LineError::MissingValue),
        "nil" => Edn::Nil,
        _ if word.starts_with(':') => Edn::Keyword(word[1..].to_owned()),
        _ => Edn::Int(
            word.parse()
                .map_err(|_| LineError::UnsupportedValue { word: word.into() })?,
        ),
    };
    Ok((value, rest))
}

/// Reads a string body after its opening quote, with EDN's escapes.
fn edn_string(body: &str) -> Result<(Edn, &str), LineError> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Edn::Str(out), &body[i + 1..])),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(e @ ('"' | '\\')) => out.push(e),
                escape => return Err(LineError::UnsupportedEscape { escape }),
            },
            c => out.push(c),
        }
    }
    Err(LineError::UnterminatedString)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edn_map_reads_scalars_and_escapes() {
        let map = parse_edn_map(r#"{:process 3, :type :ok, :key "a \"b\"", :value nil}"#).unwrap();
        assert_eq!(map["process"], Edn::Int(3));
        assert_eq!(map["type"], Edn::Keyword("ok".into()));
        assert_eq!(map["key"], Edn::Str("a \"b\"".into()));
        assert_eq!(map["value"], Edn::Nil);
        assert!(matches!(
            parse_edn_map(r#"{:key "open}"#),
            Err(LineError::UnterminatedString)
        ));
    }

    /// Each malformed EDN line is refused with the variant naming its defect.
    #[test]
    fn edn_defects_are_named() {
        let defect = |line: &str| match parse_edn_kv(line) {
            Err(HistoryError::Line { line: 1, problem }) => problem,
            other => panic!("{line}: expected a line-1 error, got {other:?}"),
        };
        assert!(matches!(defect("[:process 0]"), LineError::NotAMap));
        assert!(matches!(
            defect("{3 4}"),
            LineError::KeyNotKeyword { key } if key == "Int(3)"
        ));
        assert!(matches!(defect("{:process}"), LineError::MissingValue));
        assert!(matches!(
            defect("{:process 1.5}"),
            LineError::UnsupportedValue { word } if word == "1.5"
        ));
        assert!(matches!(
            defect(r#"{:key "a\qb"}"#),
            LineError::UnsupportedEscape { escape: Some('q') }
        ));
        assert!(matches!(
            defect("{:type :invoke, :f :get}"),
            LineError::MissingKey { key: "process" }
        ));
        assert!(matches!(
            defect("{:process -1, :type :invoke, :f :get}"),
            LineError::WrongKind {
                key: "process",
                expected: "a non-negative integer",
                ..
            }
        ));
        assert!(matches!(
            defect(r#"{:process 0, :type "invoke", :f :get}"#),
            LineError::WrongKind { key: "type", .. }
        ));
        assert!(matches!(
            defect(r#"{:process 0, :type :invoke, :f :cas, :key "k"}"#),
            LineError::UnknownOperation { f } if f == ":cas"
        ));
        assert!(matches!(
            defect(r#"{:process 0, :type :done, :f :get, :key "k"}"#),
            LineError::UnknownEventType { kind } if kind == ":done"
        ));
        let twice = "{:process 0, :type :invoke, :f :get, :key \"k\"}\n\
                     {:process 0, :type :ok, :f :put, :key \"k\"}";
        match parse_edn_kv(twice) {
            Err(HistoryError::Line {
                line: 2,
                problem: LineError::CompletionMismatch { event, pending },
            }) => assert_eq!((event.as_str(), pending.as_str()), (":ok :put", "get")),
            other => panic!("expected a mismatch on line 2, got {other:?}"),
        }
    }

    /// Malformed Jepsen events are refused with the variant naming their defect.
    #[test]
    fn jepsen_defects_are_named() {
        let defect = |log: &str| match parse_jepsen_etcd(log) {
            Err(HistoryError::Line { problem, .. }) => problem,
            other => panic!("{log}: expected a line error, got {other:?}"),
        };
        assert!(matches!(
            defect("INFO  jepsen.util - x\t:invoke\t:read\tnil"),
            LineError::BadProcess { process } if process == "x"
        ));
        assert!(matches!(
            defect("INFO  jepsen.util - 0\t:invoke\t:write\tfour"),
            LineError::NotAnInteger { text } if text == "four"
        ));
        assert!(matches!(
            defect("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2 3]"),
            LineError::BadCasArguments { text } if text == "[1 2 3]"
        ));
        assert!(matches!(
            defect("INFO  jepsen.util - 0\t:invoke\t:swap\t1"),
            LineError::UnknownOperation { f } if f == ":swap"
        ));
        assert!(matches!(
            defect("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:invoke\t:read\tnil"),
            LineError::AlreadyPending { process: 0 }
        ));
        assert!(matches!(
            defect("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:done\t:read\t1"),
            LineError::UnknownEventType { kind } if kind == ":done"
        ));
    }

    #[test]
    fn jepsen_pairs_events_and_keeps_unknowns() {
        let log = "INFO  jepsen.util - 0\t:invoke\t:write\t4\n\
                   INFO  jepsen.util - 1\t:invoke\t:cas\t[4 2]\n\
                   INFO  jepsen.util - 0\t:info\t:write\t:timed-out\n\
                   INFO  jepsen.util - 1 :fail :cas [4 2]\n\
                   INFO  jepsen.util - 1\t:invoke\t:read\tnil\n";
        let ops = parse_jepsen_etcd(log).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].output, ops[0].ret), (RegisterOutput::Unknown, None));
        assert_eq!(
            (ops[1].output, ops[1].ret),
            (RegisterOutput::Cas(false), Some(3))
        );
        assert_eq!(ops[2].ret, None);
        let err = parse_jepsen_etcd("INFO  jepsen.util - 2\t:ok\t:read\t1\n").unwrap_err();
        assert!(matches!(
            err,
            HistoryError::Line {
                line: 1,
                problem: LineError::NeverInvoked { process: 2 }
            }
        ));
        assert_eq!(
            err.to_string(),
            "line 1: process 2 completes an operation it never invoked"
        );
    }
}
