//! The `flotilla-lab` binary end to end: each subcommand moved out of `flotilla` still runs,
//! and reports failure through its exit status (scripts and CI rely on it).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla-lab");

fn lab(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("flotilla-lab runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn scenario_lists_runs_and_refuses_unknown_names() {
    let list = lab(&["scenario", "list"]);
    assert!(list.status.success());
    assert!(
        stdout(&list).lines().any(|l| l == "TestInitialElection3A"),
        "scenario list: {}",
        stdout(&list)
    );

    let run = lab(&["scenario", "TestInitialElection3A", "--seed", "3"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        stdout(&run).contains("ok     TestInitialElection3A seed 3"),
        "{}",
        stdout(&run)
    );
    assert!(
        stdout(&run).contains("1 passed, 0 failed"),
        "{}",
        stdout(&run)
    );

    let unknown = lab(&["scenario", "TestNoSuchThing"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown scenario"));
}

#[test]
fn check_tells_a_linearizable_history_from_one_that_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let put = r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10}"#;
    // A get that starts after the put returned must see its value.
    let good = dir.path().join("good.jsonl");
    let seen = r#"{"client":2,"op":"get","key":"k","value":"a","call":20,"return":30}"#;
    std::fs::write(&good, format!("{put}\n{seen}\n")).unwrap();
    let bad = dir.path().join("bad.jsonl");
    let stale = r#"{"client":2,"op":"get","key":"k","value":"","call":20,"return":30}"#;
    std::fs::write(&bad, format!("{put}\n{stale}\n")).unwrap();

    let ok = lab(&["check", good.to_str().unwrap()]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout(&ok).contains(": linearizable (2 operations"),
        "{}",
        stdout(&ok)
    );

    let not = lab(&["check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert!(!not.status.success());
    assert!(
        stdout(&not).contains("NOT linearizable"),
        "{}",
        stdout(&not)
    );
    assert!(
        String::from_utf8_lossy(&not.stderr).contains("1 of 2 histories are not linearizable"),
        "{not:?}"
    );
}

#[test]
fn demo_runs_a_short_simulation_and_heals() {
    let run = lab(&["demo", "--seconds", "2", "--seed", "7"]);
    assert!(run.status.success(), "{run:?}");
    let out = stdout(&run);
    assert!(out.contains("committed on all 5 peers"), "{out}");
    assert!(out.contains("safety checked after every step"), "{out}");
}
