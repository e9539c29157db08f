//! Command parsing: every command, case-insensitivity, and Redis's exact error wording.

use flotilla_resp::{
    ClientAttr, ClientCommand, Command, CommandError, CommandQuery, Expiry, Hello, Protocol,
    SetCondition, SetOptions,
};

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

fn parse(line: &str) -> Command {
    Command::parse(&args(line)).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn err(line: &str) -> String {
    match Command::parse(&args(line)) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
    }
}

/// `SET`'s options in `line` (`SET k v …`).
fn set(line: &str) -> SetOptions {
    SetOptions::parse(&args(line)[3..]).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn set_err(line: &str) -> String {
    match SetOptions::parse(&args(line)[3..]) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("{line:?} parsed as {o:?}"),
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Key/value commands are passed on whole, for the engine to parse: only the name (found in
/// any case) and the arity are checked here.
#[test]
fn key_value_commands_pass_as_their_arguments() {
    for line in [
        "GET k",
        "append k v",
        "DEL a b",
        "exists a a",
        "MGET a",
        "MSET a 1 b 2",
        "INCR n",
        "INCRBY n -5",
        "SET k v NX BOGUS",
        "EXPIRE k 10 GT",
        "SCAN 0 MATCH * COUNT 5",
        "DBSIZE",
        "FLUSHALL later",
    ] {
        let name = line.split(' ').next().unwrap().to_lowercase();
        let Command::Data { name: got, args: a } = parse(line) else {
            panic!("{line}: not a data command")
        };
        assert_eq!(got, name, "{line}");
        assert_eq!(a, args(line), "{line}");
    }
}

#[test]
fn names_are_case_insensitive() {
    for name in ["get", "GET", "Get", "gEt"] {
        assert_eq!(parse(&format!("{name} k")).name(), "get");
    }
    assert_eq!(
        parse("client SetName me"),
        Command::Client(ClientCommand::SetName { name: b("me") })
    );
    assert_eq!(set("set k v nx Get"), set("SET k v NX GET"));
}

#[test]
fn plain_set_and_its_options() {
    assert_eq!(set("SET k v"), SetOptions::default());
    let cases = [
        ("SET k v NX", Some(SetCondition::IfAbsent), false, None),
        ("SET k v XX GET", Some(SetCondition::IfPresent), true, None),
        ("SET k v NX GET", Some(SetCondition::IfAbsent), true, None),
        ("SET k v EX 10", None, false, Some(Expiry::Seconds(10))),
        (
            "SET k v PX 10 NX",
            Some(SetCondition::IfAbsent),
            false,
            Some(Expiry::Millis(10)),
        ),
        (
            "SET k v EXAT 1700000000",
            None,
            false,
            Some(Expiry::UnixSeconds(1_700_000_000)),
        ),
        ("SET k v PXAT 5", None, false, Some(Expiry::UnixMillis(5))),
        ("SET k v KEEPTTL", None, false, Some(Expiry::KeepTtl)),
        ("SET k v EX 1 EX 2", None, false, Some(Expiry::Seconds(2))),
        ("SET k v NX NX", Some(SetCondition::IfAbsent), false, None),
    ];
    for (line, condition, get, expiry) in cases {
        assert_eq!(
            set(line),
            SetOptions {
                condition,
                get,
                expiry
            },
            "{line}"
        );
    }
}

#[test]
fn set_option_errors_match_redis() {
    for line in [
        "SET k v NX XX",
        "SET k v XX NX",
        "SET k v EX 1 PX 2",
        "SET k v EX 1 KEEPTTL",
        "SET k v KEEPTTL PX 1",
        "SET k v EX",
        "SET k v BOGUS",
        "SET k v EX x NX XX",
    ] {
        assert_eq!(set_err(line), "ERR syntax error", "{line}");
    }
    assert_eq!(
        set_err("SET k v EX x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        set_err("SET k v PX 1.5"),
        "ERR value is not an integer or out of range"
    );
    for line in [
        "SET k v EX 0",
        "SET k v PX -1",
        "SET k v EX 9223372036854776",
    ] {
        assert_eq!(
            set_err(line),
            "ERR invalid expire time in 'set' command",
            "{line}"
        );
    }
}

#[test]
fn number_errors_match_redis() {
    assert_eq!(
        err("SELECT one"),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn connection_commands() {
    assert_eq!(parse("PING"), Command::Ping { message: None });
    assert_eq!(
        parse("PING hi"),
        Command::Ping {
            message: Some(b("hi"))
        }
    );
    assert_eq!(parse("ECHO hi"), Command::Echo { message: b("hi") });
    assert_eq!(
        parse("AUTH pw"),
        Command::Auth {
            username: None,
            password: b("pw")
        }
    );
    assert_eq!(
        parse("AUTH me pw"),
        Command::Auth {
            username: Some(b("me")),
            password: b("pw")
        }
    );
    assert_eq!(err("AUTH a b c"), "ERR syntax error");
    assert_eq!(parse("QUIT"), Command::Quit);
    assert_eq!(parse("SELECT 0"), Command::Select { db: 0 });
    assert_eq!(parse("INFO"), Command::Info { sections: vec![] });
    assert_eq!(
        parse("INFO server keyspace"),
        Command::Info {
            sections: vec![b("server"), b("keyspace")]
        }
    );
}

#[test]
fn what_clients_send_on_connecting() {
    // redis-cli
    assert_eq!(
        parse("COMMAND DOCS"),
        Command::Command(CommandQuery::Docs { names: vec![] })
    );
    assert_eq!(parse("COMMAND"), Command::Command(CommandQuery::List));
    assert_eq!(
        parse("command count"),
        Command::Command(CommandQuery::Count)
    );
    assert_eq!(
        parse("COMMAND INFO get set"),
        Command::Command(CommandQuery::Info {
            names: vec![b("get"), b("set")]
        })
    );
    // redis-benchmark
    assert_eq!(
        parse("CONFIG GET save"),
        Command::ConfigGet {
            patterns: vec![b("save")]
        }
    );
    assert_eq!(
        parse("config get appendonly"),
        Command::ConfigGet {
            patterns: vec![b("appendonly")]
        }
    );
    // redis-py, redis-rs
    assert_eq!(
        parse("CLIENT SETINFO LIB-NAME redis-py"),
        Command::Client(ClientCommand::SetInfo {
            attr: ClientAttr::LibName,
            value: b("redis-py")
        })
    );
    assert_eq!(
        parse("CLIENT SETINFO lib-ver 5.0.1"),
        Command::Client(ClientCommand::SetInfo {
            attr: ClientAttr::LibVer,
            value: b("5.0.1")
        })
    );
    assert_eq!(
        parse("CLIENT GETNAME"),
        Command::Client(ClientCommand::GetName)
    );
    assert_eq!(parse("CLIENT ID"), Command::Client(ClientCommand::Id));
    assert_eq!(parse("CLIENT INFO"), Command::Client(ClientCommand::Info));
}

#[test]
fn hello() {
    assert_eq!(parse("HELLO"), Command::Hello(Hello::default()));
    assert_eq!(
        parse("HELLO 3"),
        Command::Hello(Hello {
            protocol: Some(Protocol::Resp3),
            ..Hello::default()
        })
    );
    assert_eq!(
        parse("hello 2 auth default secret setname app"),
        Command::Hello(Hello {
            protocol: Some(Protocol::Resp2),
            auth: Some((b("default"), b("secret"))),
            setname: Some(b("app")),
        })
    );
    assert_eq!(
        err("HELLO three"),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(err("HELLO 4"), "NOPROTO unsupported protocol version");
    assert_eq!(err("HELLO 1 BOGUS"), "NOPROTO unsupported protocol version");
    assert_eq!(
        err("HELLO 3 BOGUS"),
        "ERR Syntax error in HELLO option 'BOGUS'"
    );
    assert_eq!(
        err("HELLO 3 AUTH onlyuser"),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(
        err("HELLO 3 SETNAME"),
        "ERR Syntax error in HELLO option 'SETNAME'"
    );
}

#[test]
fn client_names_must_be_printable_without_spaces() {
    let bad = vec![b("CLIENT"), b("SETNAME"), b("two words")];
    assert_eq!(
        Command::parse(&bad).unwrap_err().to_string(),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    let bad = vec![b("CLIENT"), b("SETINFO"), b("lib-name"), b("a\nb")];
    assert_eq!(
        Command::parse(&bad).unwrap_err().to_string(),
        "ERR lib-name cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        err("CLIENT SETINFO LIB-COLOUR red"),
        "ERR Unrecognized option 'LIB-COLOUR'"
    );
    assert_eq!(
        parse("CLIENT SETNAME x"),
        Command::Client(ClientCommand::SetName { name: b("x") })
    );
}

#[test]
fn arity_errors_use_redis_wording() {
    for (line, name) in [
        ("GET", "get"),
        ("get a b", "get"),
        ("SET k", "set"),
        ("MSET a", "mset"),
        ("DEL", "del"),
        ("INCRBY n", "incrby"),
        ("PING a b", "ping"),
        ("ECHO", "echo"),
        ("AUTH", "auth"),
        ("DBSIZE x", "dbsize"),
        ("CLIENT", "client"),
        ("CLIENT SETNAME", "client|setname"),
        ("CLIENT ID x", "client|id"),
        ("COMMAND COUNT x", "command|count"),
        ("CONFIG GET", "config|get"),
        ("CONFIG", "config"),
    ] {
        assert_eq!(
            err(line),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{line}"
        );
    }
}

#[test]
fn unknown_commands_use_redis_wording() {
    assert_eq!(
        err("foo a b"),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err("FOO"),
        "ERR unknown command 'FOO', with args beginning with: "
    );
    let long = format!("foo {} b", "x".repeat(200));
    assert_eq!(
        err(&long),
        format!(
            "ERR unknown command 'foo', with args beginning with: '{}' ",
            "x".repeat(128)
        )
    );
    assert_eq!(
        err("CLIENT KILL x"),
        "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
    );
    assert_eq!(
        err("config rewrite a b"),
        "ERR unknown subcommand 'rewrite'. Try CONFIG HELP."
    );
    assert_eq!(Command::parse(&[]), Err(CommandError::Empty));
}

#[test]
fn errors_render_as_resp_errors() {
    let e = Command::parse(&args("get")).unwrap_err();
    assert_eq!(
        e.to_value().to_bytes(Protocol::Resp2),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
}

#[test]
fn from_args_moves_binary_values() {
    let value = vec![0u8, 255, b'\r', b'\n'];
    let cmd = Command::from_args(vec![b("SET"), b("k"), value.clone()]).unwrap();
    assert_eq!(
        cmd,
        Command::Data {
            name: "set",
            args: vec![b("SET"), b("k"), value]
        }
    );
}

#[test]
fn keys_are_what_the_router_shards_on() {
    assert_eq!(parse("GET k").keys(), vec![&b"k"[..]]);
    assert_eq!(parse("SET k v EX 5").keys(), vec![&b"k"[..]]);
    assert_eq!(parse("MSET a 1 b 2").keys(), vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(parse("DEL a b").keys(), vec![&b"a"[..], &b"b"[..]]);
    assert!(parse("PING").keys().is_empty());
    assert!(parse("FLUSHALL").keys().is_empty());
}

#[test]
fn every_command_in_the_table_parses_at_its_arity() {
    for spec in flotilla_resp::all_commands() {
        let n = spec.arity.unsigned_abs() as usize;
        // Numbers satisfy every argument type; subcommands need a real one.
        let mut args: Vec<Vec<u8>> = vec![b(spec.name); 1];
        match spec.name {
            "client" => args.extend([b("ID")]),
            "config" => args.extend([b("GET"), b("save")]),
            "function" => args.extend([b("FLUSH")]),
            "memory" => args.extend([b("USAGE"), b("k")]),
            "object" => args.extend([b("ENCODING"), b("k")]),
            "xinfo" => args.extend([b("STREAM"), b("k")]),
            "xgroup" => args.extend([b("HELP")]),
            "hello" | "flushall" | "flushdb" => {}
            _ => args.extend(std::iter::repeat_n(b("2"), n - 1)),
        }
        let cmd = Command::from_args(args).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(
            cmd.name().starts_with(spec.name),
            "{} parsed as {}",
            spec.name,
            cmd.name()
        );
    }
}
