//! JSON Lines history files: round trip, typed errors with line numbers, the test hook.

use flotilla_check::{
    parse_jsonl, read_jsonl, to_jsonl, write_history_if_requested, write_jsonl, HistoryError,
    KvHistory, KvInput, KvOperation, KvOutput, LineError, Operation, UnwritableError,
    HISTORY_DIR_ENV,
};

fn sample() -> Vec<KvOperation> {
    let op = |client, input, call, output, ret| Operation {
        client,
        input,
        call,
        output,
        ret,
    };
    vec![
        op(0, KvInput::put("x", "1"), 0, KvOutput::Done, Some(100)),
        op(1, KvInput::get("x"), 50, KvOutput::value("1"), Some(120)),
        op(2, KvInput::append("x", "2"), 60, KvOutput::Unknown, None),
        op(
            3,
            KvInput::append("x", "3"),
            130,
            KvOutput::value("12"),
            Some(150),
        ),
        op(
            3,
            KvInput::append("y\"\n", "é…"),
            160,
            KvOutput::Done,
            Some(170),
        ),
        op(4, KvInput::delete("x"), 200, KvOutput::Done, Some(210)),
        op(5, KvInput::get("x"), 220, KvOutput::Unknown, None),
    ]
}

#[test]
fn round_trip_through_text_and_file() {
    let history = sample();
    let text = to_jsonl(&history).unwrap();
    assert_eq!(text.lines().count(), history.len());
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"client":0,"op":"put","key":"x","value":"1","call":0,"return":100}"#
    );
    assert!(text.contains(r#""value":"3","call":130,"return":150,"old":"12"}"#));
    assert!(
        text.contains(r#"{"client":5,"op":"get","key":"x","value":"","call":220,"return":null}"#)
    );
    assert_eq!(parse_jsonl(&text).unwrap(), history);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    write_jsonl(&path, &history).unwrap();
    assert_eq!(read_jsonl(&path).unwrap(), history);
}

#[test]
fn recorder_normalizes_unknown_outcomes_so_they_round_trip() {
    let mut history = KvHistory::new();
    history.push(Operation {
        client: 0,
        input: KvInput::put("x", "1"),
        call: 0,
        output: KvOutput::Done,
        ret: None,
    });
    assert_eq!(history.operations()[0].output, KvOutput::Unknown);
    let text = to_jsonl(history.operations()).unwrap();
    assert_eq!(parse_jsonl(&text).unwrap(), history.operations());
}

fn line_error(text: &str) -> (usize, LineError) {
    match parse_jsonl(text) {
        Err(HistoryError::Line { line, problem }) => (line, problem),
        other => panic!("expected a line error, got {other:?}"),
    }
}

/// A bad line, a test of the variant it must produce, and words its message must hold.
type BadLine = (&'static str, fn(&LineError) -> bool, &'static str);

#[test]
fn bad_lines_are_typed_errors_naming_the_line() {
    let good = r#"{"client":0,"op":"put","key":"x","value":"1","call":0,"return":1}"#;
    let cases: [BadLine; 6] = [
        (
            r#"{"client":0,"op":"put""#,
            |e| matches!(e, LineError::Json(_)),
            "EOF",
        ),
        (
            r#"{"client":0,"op":"cas","key":"x","value":"1","call":0,"return":1}"#,
            |e| matches!(e, LineError::UnknownOp { op } if op == "cas"),
            "unknown op \"cas\"",
        ),
        (
            r#"{"client":0,"op":"put","key":"x","value":"1","call":0}"#,
            |e| matches!(e, LineError::MissingReturn),
            "missing field `return`",
        ),
        (
            r#"{"client":0,"op":"put","key":"x","value":"1","call":9,"return":1}"#,
            |e| matches!(e, LineError::ReturnBeforeCall { ret: 1, call: 9 }),
            "before its call",
        ),
        (
            r#"{"client":0,"op":"get","key":"x","value":"1","call":0,"return":1,"old":""}"#,
            |e| matches!(e, LineError::MisplacedOld),
            "`old`",
        ),
        (
            r#"{"client":-1,"op":"get","key":"x","value":"1","call":0,"return":1}"#,
            |e| matches!(e, LineError::Json(_)),
            "invalid value",
        ),
    ];
    for (bad, is_expected, words) in cases {
        let (line, problem) = line_error(&format!("{good}\n\n{bad}\n"));
        assert_eq!(line, 3, "{bad}");
        assert!(is_expected(&problem), "{bad}: {problem:?}");
        assert!(problem.to_string().contains(words), "{bad}: {problem}");
    }
    let missing = read_jsonl("/nonexistent/flotilla/h.jsonl").unwrap_err();
    assert!(matches!(missing, HistoryError::Io { .. }), "{missing}");
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/flotilla/h.jsonl: "),
        "{missing}"
    );
}

#[test]
fn get_without_a_value_cannot_be_written() {
    let bad = Operation {
        client: 0,
        input: KvInput::get("x"),
        call: 0,
        output: KvOutput::Done,
        ret: Some(1),
    };
    let err = to_jsonl(&[bad]).unwrap_err();
    assert!(
        matches!(
            err,
            HistoryError::Unwritable {
                index: 0,
                problem: UnwritableError::GetWithoutValue
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "operation 0: a get that returned no value");
}

/// The only test in this binary that touches the environment variable.
#[test]
fn history_is_written_only_when_requested() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("histories");
    std::env::remove_var(HISTORY_DIR_ENV);
    assert_eq!(write_history_if_requested("kv::basic", 7, &sample()), None);
    std::env::set_var(HISTORY_DIR_ENV, &target);
    let path = write_history_if_requested("kv::basic", 7, &sample());
    std::env::remove_var(HISTORY_DIR_ENV);
    assert_eq!(path, Some(target.join("kv__basic-seed7.jsonl")));
    assert_eq!(read_jsonl(path.unwrap()).unwrap(), sample());
}
