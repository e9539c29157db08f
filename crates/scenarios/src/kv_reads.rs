//! Reads outside the Raft log, on the simulated KV service: ReadIndex (Ongaro's thesis §6.4)
//! and lease reads (§6.4.1).
//!
//! Each scenario cuts the leader off (wholly, or from one follower only) while a reader that
//! can reach only that leader keeps reading and a writer keeps writing through the rest, then
//! reports what the old leader answered, when a newer leader appeared, whether a read lease
//! ever overlapped a newer leader ([`flotilla_testkit::ReadLeaseWatch`]), and the linearizability checker's
//! verdict. A [`ReadSetup`] picks the read mode and the election features, or breaks the
//! reads on purpose ([`Sabotage`]), so tests show the scenarios tell right from wrong.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use flotilla_check::CheckResult;
use flotilla_kv::KvReplica;
use flotilla_raft::{Config, ReadMode, Sabotage};
use flotilla_sim::NodeId;
use flotilla_testkit::KvTester;

type Tester = Rc<KvTester<KvReplica>>;

/// How the replicas serve reads and elect leaders in a scenario.
#[derive(Clone, Copy, Debug)]
pub struct ReadSetup {
    pub mode: ReadMode,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Breaks the reads on purpose (test-only).
    pub sabotage: Option<Sabotage>,
}

impl ReadSetup {
    /// As a service runs ([`Config::for_service`]: pre-vote and check-quorum on), reading by
    /// `mode`.
    pub const fn service(mode: ReadMode) -> Self {
        ReadSetup {
            mode,
            pre_vote: true,
            check_quorum: true,
            sabotage: None,
        }
    }

    /// The paper's elections (no pre-vote, no check-quorum), reading by `mode`: a cut-off
    /// leader then goes on leading, so nothing but the read protocol stops it answering.
    pub const fn bare(mode: ReadMode) -> Self {
        ReadSetup {
            mode,
            pre_vote: false,
            check_quorum: false,
            sabotage: None,
        }
    }

    /// [`ReadSetup::bare`], broken on purpose.
    pub const fn broken(mode: ReadMode, sabotage: Sabotage) -> Self {
        ReadSetup {
            sabotage: Some(sabotage),
            ..ReadSetup::bare(mode)
        }
    }

    fn apply(self, cfg: &mut Config) {
        cfg.read_mode = self.mode;
        cfg.pre_vote = self.pre_vote;
        cfg.check_quorum = self.check_quorum;
        cfg.sabotage = self.sabotage;
    }
}

/// What a read scenario saw. Times are from the moment the leader was cut off.
#[derive(Debug)]
pub struct ReadOutcome {
    /// The checker's verdict on the whole history.
    pub verdict: CheckResult,
    /// Reads issued after the cut that the old leader answered.
    pub served_after_cut: usize,
    /// When the old leader answered the last of them.
    pub last_served: Option<Duration>,
    /// When another server first led a newer term than the old leader's.
    pub new_leader: Option<Duration>,
    /// Simulator steps after which a server held a read lease while another led a newer term.
    pub lease_overlaps: usize,
    /// The first such overlap, described.
    pub first_overlap: Option<String>,
}

/// How long the leader stays cut off.
pub const CUT_FOR: Duration = Duration::from_secs(3);
/// A read's deadline: a reader pinned to a leader that cannot confirm reads gives up.
const READ_LIMIT: Duration = Duration::from_millis(300);
/// A write's deadline (writes may have nobody to commit them).
const WRITE_LIMIT: Duration = Duration::from_millis(500);

/// Where the scenario cuts the leader off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// From every other server.
    Whole,
    /// From one follower only; the other followers still hear it, and the cut-off follower
    /// still reaches them.
    OneFollower,
}

/// Five servers; the leader is cut off from all the others for [`CUT_FOR`]. A reader that can
/// reach only the old leader reads every 5 ms (each read gives up after 300 ms); a writer that
/// reaches every server writes a new value every 10 ms. With ReadIndex the old leader answers
/// no read issued after the cut (it cannot get a round answered); with a lease it answers only
/// while its lease lasts, which ends before the majority can elect a new leader.
pub fn partitioned_leader_reads(seed: u64, setup: ReadSetup) -> ReadOutcome {
    run(seed, 5, setup, Cut::Whole)
}

/// Three servers; the leader loses its link to one follower only, for [`CUT_FOR`]. The
/// reader reaches only the leader; the writer only the two followers. With check-quorum's
/// stickiness (and pre-vote) the other follower, in the leader's lease, ignores the cut-off
/// one's campaign, so the leader stays the only one. Without them the cut-off follower is
/// elected while the old leader's read lease still lasts (until its next round meets the new
/// term), and a lease read there misses the new leader's writes.
pub fn lease_follower_cut_from_leader(seed: u64, setup: ReadSetup) -> ReadOutcome {
    run(seed, 3, setup, Cut::OneFollower)
}

fn run(seed: u64, n: usize, setup: ReadSetup, cut: Cut) -> ReadOutcome {
    let name = format!("KvReads{cut:?}");
    let t = KvTester::kvraft_with(&name, seed, n, false, None, move |cfg| setup.apply(cfg));
    let watch = t.watch_read_leases();
    let t2 = t.clone();
    let (served_after_cut, last_served, new_leader) = t.svc.run(async move {
        let t = t2;
        let setup_writer = t.make_client();
        setup_writer.put("x", "0").await;
        t.svc.sleep(Duration::from_millis(500)).await;
        let leader = t.leader().expect("a leader answered the first put");
        let term = t
            .svc
            .with_server(leader, |r| r.raft().term())
            .expect("alive");
        let others: Vec<NodeId> = (0..n)
            .map(NodeId::from_index)
            .filter(|&s| s != leader)
            .collect();
        let writer = match cut {
            Cut::Whole => {
                t.svc.partition(&[vec![leader], others.clone()]);
                t.make_client()
            }
            Cut::OneFollower => {
                t.svc.sim.borrow_mut().set_link(leader, others[0], false);
                t.make_client_to(others.clone())
            }
        };
        let cut_at = t.svc.now();
        let new_leader = Rc::new(Cell::new(None));
        let watcher = t.svc.rt.spawn(watch_for_new_leader(
            t.clone(),
            leader,
            term,
            cut_at,
            new_leader.clone(),
        ));
        let served = Rc::new(RefCell::new((0usize, None)));
        let reader = t
            .svc
            .rt
            .spawn(read_at(t.clone(), leader, cut_at, served.clone()));
        let mut i = 1;
        while t.svc.now() - cut_at < CUT_FOR {
            let v = i.to_string();
            writer.try_put("x", &v, Some(WRITE_LIMIT)).await;
            i += 1;
            t.svc.sleep(Duration::from_millis(10)).await;
        }
        reader.await;
        watcher.await;
        t.svc.heal();
        let (count, last) = *served.borrow();
        (count, last, new_leader.get())
    });
    ReadOutcome {
        verdict: t.verdict(),
        served_after_cut,
        last_served,
        new_leader,
        lease_overlaps: watch.overlaps(),
        first_overlap: watch.first_overlap(),
    }
}

/// Reads "x" at `leader` only, until [`CUT_FOR`] after `cut_at`, counting the reads issued
/// after the cut that it answered, and when it answered the last.
async fn read_at(
    t: Tester,
    leader: NodeId,
    cut_at: Duration,
    served: Rc<RefCell<(usize, Option<Duration>)>>,
) {
    let reader = t.make_client_to(vec![leader]);
    while t.svc.now() - cut_at < CUT_FOR {
        let call = t.svc.now();
        if reader.try_get("x", Some(READ_LIMIT)).await.is_some() && call >= cut_at {
            let mut s = served.borrow_mut();
            s.0 += 1;
            s.1 = Some(t.svc.now() - cut_at);
        }
        t.svc.sleep(Duration::from_millis(5)).await;
    }
}

/// Polls every millisecond until [`CUT_FOR`] after `cut_at`; records when a server other than
/// `old` first leads a term newer than `term`.
async fn watch_for_new_leader(
    t: Tester,
    old: NodeId,
    term: u64,
    cut_at: Duration,
    seen: Rc<Cell<Option<Duration>>>,
) {
    while t.svc.now() - cut_at < CUT_FOR && seen.get().is_none() {
        let newer = (0..t.svc.n())
            .map(NodeId::from_index)
            .filter(|&s| s != old)
            .any(|s| {
                t.svc
                    .with_server(s, |r| r.raft().is_leader() && r.raft().term() > term)
                    .unwrap_or(false)
            });
        if newer {
            seen.set(Some(t.svc.now() - cut_at));
        }
        t.svc.sleep(Duration::from_millis(1)).await;
    }
}
