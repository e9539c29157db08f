//! Lab 2's memory tests: the at-most-once server keeps only what at-most-once needs. Memory
//! must not grow with the number of operations, nor keep values already answered.
//!
//! The heap is measured by a counting global allocator (Go's `runtime.MemStats.HeapAlloc` in
//! the lab), so these tests live in their own test binary and take a lock: a test running
//! beside them would be counted too. As in Go, the figure includes the tester's own heap
//! (the simulator and the clerks), so the bounds are at least as strict as the lab's.

use std::alloc::System;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use flotilla_kv::KvServer;
use flotilla_testkit::{run_seeds, KvTester};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts every allocation of this test binary (the workspace forbids our own `unsafe`, so a
/// well-kept counting allocator does it).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Serialises the tests of this binary, so each one's heap is its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Bytes currently allocated.
fn heap() -> usize {
    let s = GLOBAL.stats();
    // stats_alloc folds reallocations into these two counters already.
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

/// A value of `n` pseudo-random letters.
fn rand_value(t: &KvTester<KvServer>, n: usize) -> String {
    (0..n)
        .map(|_| (b'a' + t.svc.rand(26) as u8) as char)
        .collect()
}

fn tester(name: &str, seed: u64, unreliable: bool) -> Rc<KvTester<KvServer>> {
    let t = KvTester::kvsrv(name, seed, unreliable);
    t.set_recording(false);
    t
}

/// Put 10 MiB, Get it from two clerks, Put "0": the heap is then under 10 MiB.
#[test]
fn test_mem_get_2() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_get_2", |seed| {
        const MEM: usize = 10;
        let t = tester("TestMemGet2", seed, true);
        let t2 = t.clone();
        t.svc.run(async move {
            let (ck0, ck1) = (t2.make_client(), t2.make_client());
            let v = rand_value(&t2, MEM * MIB);
            ck0.put("k", &v).await;
            assert_eq!(ck0.get("k").await.len(), v.len());
            assert_eq!(ck1.get("k").await.len(), v.len());
            drop(v);
            ck0.put("k", "0").await;
            let m = heap() / MIB;
            eprintln!("heap after the test: {} bytes", heap());
            assert!(m < MEM, "server using too much memory: {m} MiB");
        });
    });
}

/// Put 10 MiB, then another clerk Puts "": the old value is not kept.
#[test]
fn test_mem_put_2() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_put_2", |seed| {
        const MEM: usize = 10;
        let t = tester("TestMemPut2", seed, false);
        let t2 = t.clone();
        t.svc.run(async move {
            let (ck0, ck1) = (t2.make_client(), t2.make_client());
            let v = rand_value(&t2, MEM * MIB);
            ck0.put("k", &v).await;
            drop(v);
            ck1.put("k", "").await;
            let m = heap() / MIB;
            eprintln!("heap after the test: {} bytes", heap());
            assert!(m < MEM, "server using too much memory: {m} MiB");
        });
    });
}

/// Two clerks each append 10 MiB: the value (20 MiB) and the one remembered old value
/// (10 MiB) are all the server may hold.
#[test]
fn test_mem_append_2() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_append_2", |seed| {
        const MEM: usize = 10;
        let t = tester("TestMemAppend2", seed, false);
        let t2 = t.clone();
        t.svc.run(async move {
            let (ck0, ck1) = (t2.make_client(), t2.make_client());
            let v0 = rand_value(&t2, MEM * MIB);
            ck0.append("k", &v0).await;
            drop(v0);
            let v1 = rand_value(&t2, MEM * MIB);
            ck1.append("k", &v1).await;
            drop(v1);
            let m = heap() / MIB;
            eprintln!("heap after the test: {} bytes", heap());
            assert!(m <= 3 * MEM, "server using too much memory: {m} MiB");
        });
    });
}

/// 100 000 clerks Put 1000 bytes each: the heap grows by at most 200 bytes per client.
#[test]
fn test_mem_put_many_clients() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_put_many_clients", |seed| {
        const CLIENTS: usize = 100_000;
        const MEM: usize = 1000;
        let t = tester("TestMemPutManyClients", seed, false);
        let t2 = t.clone();
        t.svc.run_for(Duration::from_secs(3600), async move {
            let v = rand_value(&t2, MEM);
            let cks: Vec<_> = (0..CLIENTS).map(|_| t2.make_client()).collect();
            let m0 = heap();
            for ck in &cks {
                ck.put("k", &v).await;
            }
            let m1 = heap();
            let per_client = m1.saturating_sub(m0) as f64 / CLIENTS as f64;
            eprintln!("heap growth: {per_client:.1} bytes per client");
            assert!(
                m1 <= m0 + CLIENTS * 200,
                "server using too much memory: {m0} -> {m1} ({per_client:.1} bytes per client)"
            );
        });
    });
}

/// 100 000 clerks each Get once: reads leave no trace (under 10 bytes per client).
#[test]
fn test_mem_get_many_clients() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_get_many_clients", |seed| {
        const CLIENTS: usize = 100_000;
        let t = tester("TestMemGetManyClients", seed, false);
        let t2 = t.clone();
        t.svc.run_for(Duration::from_secs(3600), async move {
            let ck = t2.make_client();
            ck.put("k", "").await;
            let cks: Vec<_> = (0..CLIENTS).map(|_| t2.make_client()).collect();
            let m0 = heap();
            for ck in &cks {
                ck.get("k").await;
            }
            let m1 = heap();
            let per_client = m1.saturating_sub(m0) as f64 / CLIENTS as f64;
            eprintln!("heap growth: {per_client:.1} bytes per client");
            assert!(
                m1 < m0 + CLIENTS * 10,
                "server using too much memory: {m0} -> {m1} ({per_client:.1} bytes per client)"
            );
        });
    });
}

/// One clerk appends 1000 × 1000 bytes: the whole heap stays under 3 MiB, so no old value
/// is kept per append.
#[test]
fn test_mem_many_appends() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_seeds("kvsrv_mem", "test_mem_many_appends", |seed| {
        const N: usize = 1000;
        const MEM: usize = 1000;
        let t = tester("TestMemManyAppends", seed, false);
        let t2 = t.clone();
        t.svc.run(async move {
            let ck = t2.make_client();
            let v = rand_value(&t2, MEM);
            for _ in 0..N {
                ck.append("k", &v).await;
            }
            let m1 = heap();
            eprintln!("heap after the test: {m1} bytes");
            assert!(m1 < 3 * MIB, "server using too much memory: {m1} bytes");
        });
    });
}
