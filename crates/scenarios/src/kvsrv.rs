//! The 6.5840 (2024) kvsrv lab: one key/value server with at-most-once semantics, where
//! Append returns the value it replaced (LABS.md §1a). Every history is checked for
//! linearizability, the Appends' returned old values included.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use flotilla_kv::KvServer;
use flotilla_testkit::KvTester;

use crate::kv_common::{append_value, check_client_appends, check_concurrent_appends, in_history};

type Tester = Rc<KvTester<KvServer>>;

/// The lab's `GenericTest(nclients, unreliable, randomkeys=false)`: 3 rounds of 1 s in which
/// each client appends to or reads its own key; Gets must see exactly the client's appends;
/// each Append's old value must hold the client's previous append and not the new one; after
/// each round every append is present once and in order; the history is linearizable.
fn generic(name: &'static str, seed: u64, clients: usize, unreliable: bool) -> u64 {
    let t = KvTester::kvsrv(name, seed, unreliable);
    let script = generic_script(t.clone(), clients);
    t.svc.run(script);
    t.finish()
}

async fn generic_script(t: Tester, clients: usize) {
    let ck = t.make_client();
    for _round in 0..3 {
        let done = Rc::new(Cell::new(false));
        let handles: Vec<_> = (0..clients)
            .map(|cli| t.svc.rt.spawn(client_loop(t.clone(), cli, done.clone())))
            .collect();
        t.svc.sleep(Duration::from_secs(1)).await;
        done.set(true);
        for (cli, h) in handles.into_iter().enumerate() {
            let j = h.await;
            let v = ck.get(&cli.to_string()).await;
            check_client_appends(cli, &v, j);
        }
    }
}

async fn client_loop(t: Tester, cli: usize, done: Rc<Cell<bool>>) -> usize {
    let ck = t.make_client();
    let key = cli.to_string();
    let mut last = String::new();
    let mut j = 0;
    ck.put(&key, "").await;
    while !done.get() {
        let nv = append_value(cli, j);
        if t.svc.rand(1000) < 500 {
            let old = ck
                .append(&key, &nv)
                .await
                .expect("the single-node server returns the old value");
            if j > 0 {
                let prev = append_value(cli, j - 1);
                assert!(
                    in_history(&prev, &old),
                    "old {prev:?} not in return {old:?}"
                );
            }
            assert!(
                !in_history(&nv, &old),
                "new value {nv:?} in returned values {old:?}"
            );
            last.push_str(&nv);
            j += 1;
        } else {
            let v = ck.get(&key).await;
            assert_eq!(v, last, "get wrong value, key {key}");
        }
    }
    j
}

/// The lab's `TestBasic2`: one client, reliable network.
pub fn basic_2(seed: u64) -> u64 {
    generic("TestBasic2", seed, 1, false)
}

/// The lab's `TestConcurrent2`: 5 clients, reliable network.
pub fn concurrent_2(seed: u64) -> u64 {
    generic("TestConcurrent2", seed, 5, false)
}

/// The lab's `TestUnreliable2`: 5 clients; 10% of requests and of replies are lost, so
/// retries must be filtered.
pub fn unreliable_2(seed: u64) -> u64 {
    generic("TestUnreliable2", seed, 5, true)
}

/// The lab's `TestUnreliableOneKey2`: 5 clients × 10 appends to one key on an unreliable
/// network. No Append's old value contains its own new value; the final value holds every
/// element once, in each client's order.
pub fn unreliable_one_key_2(seed: u64) -> u64 {
    const CLIENTS: usize = 5;
    const UPTO: usize = 10;
    let t = KvTester::kvsrv("TestUnreliableOneKey2", seed, true);
    let t2 = t.clone();
    t.svc.run(async move {
        let ck = t2.make_client();
        ck.put("k", "").await;
        let handles: Vec<_> = (0..CLIENTS)
            .map(|me| {
                let t = t2.clone();
                t2.svc.rt.spawn(async move {
                    let ck = t.make_client();
                    for n in 0..UPTO {
                        let nv = append_value(me, n);
                        let old = ck.append("k", &nv).await.expect("old value returned");
                        assert!(
                            !in_history(&nv, &old),
                            "new value {nv:?} in returned {old:?}"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.await;
        }
        let v = ck.get("k").await;
        check_concurrent_appends(&v, &[UPTO; CLIENTS]);
    });
    t.finish()
}
