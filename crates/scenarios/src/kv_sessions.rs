//! Sessions that expire (issue 16, Raft thesis §6.3), in the simulator: many clients come and
//! go over virtual time, some pausing past the idle limit, more of them at once than the
//! table may keep, under the random suite's faults. Every replica's session table must stay
//! within the maximum at every check, sessions must actually be removed, and the history
//! (with operations refused as "session expired" counted as of unknown outcome, as the error
//! says) must stay linearizable: no expired session's retry is applied twice.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use flotilla_kv::KvReplica;
use flotilla_raft::NodeId;
use flotilla_rsm::SessionLimits;
use flotilla_testkit::KvTester;

use crate::kv_random::{heal_everything, nemesis_with, read_keys};

type Tester = Rc<KvTester<KvReplica>>;

/// Sessions idle this long are removed: a few clerk retry periods, so clients that pause or
/// are cut off by a partition lose theirs.
pub const IDLE_MS: u64 = 1_500;
/// At most this many sessions: fewer than the clients active at once.
pub const MAX_SESSIONS: u64 = 6;

/// The keys clients write. More than the random suite's three: refusals as expired leave
/// many appends of unknown outcome, and the checker's search grows exponentially with those
/// that overlap on one key; with three keys about 1% of seeds (11 of 1 000 from 8 800 000)
/// outran its time limit and passed unchecked.
const KEYS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];

/// What one run did, for reports.
#[derive(Debug, Clone, Copy)]
pub struct KvSessionsReport {
    pub trace_hash: u64,
    pub operations: usize,
    /// Clients (clerks) that ever ran.
    pub clients: u64,
    /// Operations that ended without an answer (timed out, or refused as expired).
    pub unknown: u64,
    /// The largest session table seen on any replica.
    pub max_table: usize,
    pub faults: usize,
}

/// One run of `seconds` virtual seconds.
pub fn kv_sessions(seed: u64, seconds: u64) -> KvSessionsReport {
    let (n, max_raft_state) = {
        let probe = KvTester::kvsrv("probe", seed, false);
        let n = [3usize, 5][probe.svc.rand(2) as usize];
        let mrs = [None, Some(2000)][probe.svc.rand(2) as usize];
        (n, mrs)
    };
    let limits = SessionLimits {
        idle_ms: IDLE_MS,
        max_sessions: MAX_SESSIONS,
    };
    let t = KvTester::kvraft_sessions("KvSessions", seed, n, false, max_raft_state, limits);
    let stats = Rc::new(Stats::default());
    let (t2, s2) = (t.clone(), stats.clone());
    let faults = t
        .svc
        .run_for(Duration::from_secs(seconds + 120), async move {
            let (t, stats) = (t2, s2);
            let stop = Rc::new(Cell::new(false));
            let mut tasks = Vec::new();
            for cli in 0..4 {
                let task = churn(t.clone(), cli, stop.clone(), stats.clone());
                tasks.push(t.svc.rt.spawn(task));
            }
            tasks.push(
                t.svc
                    .rt
                    .spawn(watch(t.clone(), stop.clone(), stats.clone())),
            );
            let n = t.svc.n();
            let majority = move |t: &Tester, _| {
                (0..n)
                    .filter(|&i| t.svc.is_alive(NodeId::from_index(i)))
                    .count()
                    > n / 2 + 1
            };
            let faults = nemesis_with(&t, Duration::from_secs(seconds), majority).await;
            heal_everything(&t);
            stop.set(true);
            for h in tasks {
                h.await;
            }
            read_keys(&t, 2, &KEYS).await;
            check_tables(&t, &stats);
            faults
        });
    t.check_linearizable();
    let removed = (0..t.svc.n())
        .filter_map(|s| {
            t.svc
                .with_server(NodeId::from_index(s), |r| r.state().expired_through_ms())
        })
        .any(|w| w.is_some());
    assert!(removed, "seed {seed}: no session was ever removed");
    let clients = stats.clients.get();
    assert!(
        clients > 2 * MAX_SESSIONS,
        "seed {seed}: only {clients} clients ran"
    );
    KvSessionsReport {
        trace_hash: t.svc.trace_hash(),
        operations: t.history_len(),
        clients,
        unknown: stats.unknown.get(),
        max_table: stats.max_table.get(),
        faults,
    }
}

#[derive(Default)]
struct Stats {
    clients: Cell<u64>,
    unknown: Cell<u64>,
    max_table: Cell<usize>,
}

/// Every replica's table is within the maximum.
fn check_tables(t: &Tester, stats: &Stats) {
    for s in 0..t.svc.n() {
        let Some(len) = t
            .svc
            .with_server(NodeId::from_index(s), |r| r.state().clients())
        else {
            continue;
        };
        stats.max_table.set(stats.max_table.get().max(len));
        assert!(
            len as u64 <= MAX_SESSIONS,
            "server {s} keeps {len} sessions, more than {MAX_SESSIONS}"
        );
    }
}

/// Checks the tables every 100 ms until `stop`.
async fn watch(t: Tester, stop: Rc<Cell<bool>>, stats: Rc<Stats>) {
    while !stop.get() {
        check_tables(&t, &stats);
        t.svc.sleep(Duration::from_millis(100)).await;
    }
}

/// A stream of short-lived clients: each does 1–6 operations, sometimes pausing past the
/// idle limit between two, then goes away for good (a router restart, a `ctl` call).
async fn churn(t: Tester, cli: usize, stop: Rc<Cell<bool>>, stats: Rc<Stats>) {
    let mut gen = 0;
    while !stop.get() {
        let ck = t.make_client();
        stats.clients.set(stats.clients.get() + 1);
        for j in 0..1 + t.svc.rand(6) {
            let key = KEYS[t.svc.rand(KEYS.len() as u64) as usize];
            let value = format!("{cli}.{gen}.{j} ");
            // Every operation has a limit: a refusal as expired ends it like a timeout.
            let limit = Some(Duration::from_millis(300 + t.svc.rand(3000)));
            let done = match t.svc.rand(10) {
                0..=2 => ck.try_get(key, limit).await.is_some(),
                3..=4 => ck.try_put(key, &value, limit).await.is_some(),
                _ => ck.try_append(key, &value, limit).await.is_some(),
            };
            if !done {
                stats.unknown.set(stats.unknown.get() + 1);
            }
            let pause = match t.svc.rand(5) {
                0 => IDLE_MS + t.svc.rand(IDLE_MS),
                _ => t.svc.rand(50),
            };
            t.svc.sleep(Duration::from_millis(pause)).await;
        }
        gen += 1;
    }
}
