//! Oversized requests get an error reply, on both servers, and change nothing; the servers
//! keep serving afterwards.

use flotilla_kv::{KvCommand, KvError, KvReply, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use std::rc::Rc;

use flotilla_sim::Process;
use flotilla_testkit::{run_seeds, KvTester};

fn oversized() -> [(KvCommand, &'static str); 3] {
    [
        (
            KvCommand::Put {
                key: b"k".to_vec(),
                value: vec![b'v'; MAX_VALUE_BYTES + 1].into(),
            },
            "value",
        ),
        (
            KvCommand::Append {
                key: b"k".to_vec(),
                value: vec![b'v'; MAX_VALUE_BYTES + 1].into(),
            },
            "value",
        ),
        (
            KvCommand::Get {
                key: vec![b'k'; MAX_KEY_BYTES + 1],
            },
            "key",
        ),
    ]
}

fn assert_refused(reply: &KvReply, what: &str) {
    match (reply, what) {
        (KvReply::Error(KvError::ValueTooLarge { .. }), "value")
        | (KvReply::Error(KvError::KeyTooLarge { .. }), "key") => {}
        other => panic!("expected a too-large {what} error, got {other:?}"),
    }
}

/// Puts a small value, sends every oversized request (each must be refused), and checks the
/// small value is untouched and the history linearizable.
fn refuses_oversized<Srv>(t: Rc<KvTester<Srv>>)
where
    Srv: Process<Msg = flotilla_kv::KvMsg> + 'static,
{
    let t2 = t.clone();
    t.svc.run(async move {
        let ck = t2.make_client();
        ck.put("k", "small").await;
        for (cmd, what) in oversized() {
            let reply = t2.svc.call(ck.id, cmd).await;
            assert_refused(&reply, what);
        }
        assert_eq!(ck.get("k").await, "small");
    });
    t.check_linearizable();
}

#[test]
fn test_oversized_requests_are_refused_by_the_replicated_service() {
    let name = "test_oversized_requests_are_refused_by_the_replicated_service";
    run_seeds("kv_bad_input", name, |seed| {
        refuses_oversized(KvTester::kvraft(
            "OversizedKvraft",
            seed,
            3,
            false,
            Some(1000),
        ));
    });
}

#[test]
fn test_oversized_requests_are_refused_by_the_single_node_server() {
    let name = "test_oversized_requests_are_refused_by_the_single_node_server";
    run_seeds("kv_bad_input", name, |seed| {
        refuses_oversized(KvTester::kvsrv("OversizedKvsrv", seed, false));
    });
}
