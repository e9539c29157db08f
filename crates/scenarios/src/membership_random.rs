//! The randomized suites with membership changes: each seed draws a number of slots and of
//! founding voters (the other slots boot joining), and besides the faults and the load of
//! [`crate::raft_random`] / [`crate::kv_random`], an operator keeps changing the membership
//! at random: adding a non-member slot (a spare, or one removed earlier, with its old state)
//! as a learner, promoting a learner, removing a member (never the leader, so never the last
//! voter), and handing leadership to another voter. A refused change is simply drawn again
//! later (a change in progress, a learner behind, a new leader's term not yet committed).
//!
//! * Raft level: [`SafetyChecker`] (with its one-change-at-a-time check) after every step; at
//!   the end the network heals, slots that are members of no membership still in play are
//!   retired (crashed: without pre-vote a removed peer that never learned of its removal may
//!   keep deposing leaders, as the thesis §4.2.3 explains), and every member must commit a
//!   command and end with the same membership.
//! * KV level: changes go through admin requests over the network (unreliable too); the
//!   history must be linearizable, no read lease may overlap a newer leader, and at the end
//!   every member settles on one membership.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use flotilla_kv::KvReplica;
use flotilla_raft::{
    Config, Membership, MembershipChange, MembershipError, Raft, ReadMode, TransferError,
};
use flotilla_rsm::{AdminError, AdminOp, AdminReply};
use flotilla_sim::NodeId;
use flotilla_testkit::membership as ops;
use flotilla_testkit::raft_tester::RaftTester;
use flotilla_testkit::{KvTester, SafetyChecker};

use crate::kv_random::{check_raft_state_bound, client, heal_everything, read_every_key};
use crate::raft_random::{client_load, fault_rounds, snapshot_chunks, SYNC_LATENCY};

/// What the operator did in one run, by outcome.
#[derive(Debug, Default, Clone)]
pub struct OperatorStats {
    /// Changes accepted (proposed; a later fault may still undo them).
    pub accepted: usize,
    /// Changes refused, by reason.
    pub refused: BTreeMap<String, usize>,
    /// Leader transfers started.
    pub transfers: usize,
}

impl OperatorStats {
    fn refuse(&mut self, why: &str) {
        *self.refused.entry(why.to_owned()).or_insert(0) += 1;
    }
}

/// What one randomized membership run did, for reports.
#[derive(Debug, Clone)]
pub struct MembershipRunReport {
    pub trace_hash: u64,
    /// Slots, and founding voters among them.
    pub slots: usize,
    pub voters: usize,
    /// Raft level: entries committed; KV level: operations in the history.
    pub work: usize,
    /// Raft level: membership entries committed; KV level: changes the group answered as
    /// committed.
    pub changes: usize,
    pub faults: usize,
    pub ops: OperatorStats,
    /// Raft level: snapshots peers installed that spanned several chunks (0 at KV level).
    pub chunked_installs: usize,
}

/// The reason of a refusal, without its numbers.
fn reason(e: &MembershipError) -> &'static str {
    match e {
        MembershipError::NotLeader { .. } => "NotLeader",
        MembershipError::ChangeInProgress { .. } => "ChangeInProgress",
        MembershipError::TermNotCommitted => "TermNotCommitted",
        MembershipError::TransferInProgress { .. } => "TransferInProgress",
        MembershipError::AlreadyMember(_) => "AlreadyMember",
        MembershipError::NotAMember(_) => "NotAMember",
        MembershipError::NotALearner(_) => "NotALearner",
        MembershipError::LearnerBehind { .. } => "LearnerBehind",
        MembershipError::RemovesLeader => "RemovesLeader",
    }
}

/// The reason of a refused transfer, without its numbers.
fn transfer_reason(e: &TransferError) -> &'static str {
    match e {
        TransferError::NotLeader { .. } => "transfer: NotLeader",
        TransferError::ToSelf => "transfer: ToSelf",
        TransferError::NotAVoter(_) => "transfer: NotAVoter",
        TransferError::InProgress { .. } => "transfer: InProgress",
    }
}

/// One of `items` drawn by `rand` (a draw in `0..n`), or `None` if empty.
fn pick(items: Vec<NodeId>, rand: impl FnOnce(u64) -> u64) -> Option<NodeId> {
    (!items.is_empty()).then(|| items[rand(items.len() as u64) as usize])
}

/// What the operator does next, drawn against leader `l`'s membership `m` of `slots` slots.
enum Action {
    Change(MembershipChange),
    Transfer(NodeId),
}

fn draw_action(
    m: &Membership,
    l: NodeId,
    slots: usize,
    rand: &mut dyn FnMut(u64) -> u64,
) -> Option<Action> {
    let members: Vec<NodeId> = m.members().into_iter().collect();
    let learners: Vec<NodeId> = m.learners.iter().copied().collect();
    let voters: Vec<NodeId> = (m.voters.iter().copied()).filter(|&v| v != l).collect();
    let action = match rand(10) {
        0..=2 => {
            let outside = (0..slots)
                .map(NodeId::from_index)
                .filter(|s| !members.contains(s))
                .collect();
            let id = (pick(outside, &mut *rand)?).get();
            let addr = format!("sim-{id}");
            Action::Change(MembershipChange::AddLearner {
                id: NodeId::new(id),
                addr,
            })
        }
        3..=5 => {
            let id = (pick(learners, &mut *rand)?).get();
            Action::Change(MembershipChange::Promote {
                id: NodeId::new(id),
            })
        }
        6..=7 => {
            let others = members.into_iter().filter(|&s| s != l).collect();
            let id = (pick(others, &mut *rand)?).get();
            Action::Change(MembershipChange::Remove {
                id: NodeId::new(id),
            })
        }
        _ => Action::Transfer(pick(voters, &mut *rand)?),
    };
    Some(action)
}

// ----- Raft level -----

/// `FLOTILLA_TRACE_PEERS=1` prints every change of a peer's state (role, term, vote,
/// commit, log, membership) and every operator action, to follow a failing seed.
fn tracing() -> bool {
    std::env::var_os("FLOTILLA_TRACE_PEERS").is_some()
}

/// One line of a peer's state for the trace.
fn peer_line(r: &Raft) -> String {
    let (m, log) = (r.membership(), r.log());
    format!(
        "{:?}{} t{} voted {:?} commit {} last {}@t{} snap {} membership@{} V{:?} L{:?}",
        r.role(),
        if r.is_pre_candidate() { "(pre)" } else { "" },
        r.term(),
        r.voted_for(),
        r.commit_index(),
        log.last_index(),
        log.last_term(),
        log.snapshot_index(),
        r.membership_index(),
        m.voters,
        m.learners,
    )
}

/// A [`SafetyChecker`] after every step, and the trace when asked for.
fn check_every_step(t: &RaftTester, checker: Rc<RefCell<SafetyChecker>>) {
    let trace = tracing();
    let mut seen = vec![String::new(); t.n()];
    t.set_step_check(Box::new(move |sim| {
        for (i, last) in seen.iter_mut().enumerate().filter(|_| trace) {
            let now = sim
                .process(NodeId::from_index(i))
                .map_or("down".to_owned(), |p| peer_line(p.raft()));
            if *last != now {
                eprintln!("{:>10.3} peer {i}: {now}", sim.now().as_secs_f64());
                *last = now;
            }
        }
        checker.borrow_mut().check(sim)
    }));
}

/// A Raft cluster drawn from `seed`: as [`crate::raft_random`]'s (pipelining, snapshots, slow
/// disks, pre-vote, check-quorum), plus the slots, the founding voters and the leader no-op.
fn raft_cluster(seed: u64) -> (Rc<RaftTester>, usize, usize) {
    let probe = RaftTester::new(1, false, false, seed);
    let slots = [4usize, 5, 6, 7][probe.rand(4) as usize];
    let voters = [1usize, 2, 3, 3, 5][probe.rand(5) as usize].min(slots - 1);
    let snapshots = probe.rand(2) == 0;
    let window = [1, 4, 16][probe.rand(3) as usize];
    let slow_disk = probe.rand(2) == 0;
    let pre_vote = probe.rand(2) == 0;
    let check_quorum = probe.rand(2) == 0;
    let leader_noop = probe.rand(2) == 0;
    let (chunk, chunks_in_flight) = snapshot_chunks(&probe);
    drop(probe);
    let t = RaftTester::with_members(slots, voters, false, snapshots, seed, move |cfg| {
        cfg.max_inflight_appends = window;
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.leader_noop = leader_noop;
        cfg.snapshot_chunk_bytes = chunk;
        cfg.max_snapshot_inflight_bytes = chunks_in_flight * chunk;
    });
    if slow_disk {
        t.sim.borrow_mut().set_sync_latency(Some(SYNC_LATENCY));
    }
    (t, voters, chunk)
}

/// One randomized Raft run for `seed` with `rounds` fault rounds (as [`crate::raft_random`]),
/// membership changes and transfers drawn every 20–300 ms.
pub fn raft_membership_random(seed: u64, rounds: usize) -> MembershipRunReport {
    let (t, voters, chunk) = raft_cluster(seed);
    let slots = t.n();
    let checker = Rc::new(RefCell::new(SafetyChecker::new()));
    check_every_step(&t, checker.clone());
    let stats = Rc::new(RefCell::new(OperatorStats::default()));
    let (c, st) = (t.clone(), stats.clone());
    let faults = t.run(async move {
        let stop = Rc::new(Cell::new(false));
        let load = c.rt.spawn(client_load(c.clone(), stop.clone()));
        let op = c.rt.spawn(raft_operator(c.clone(), stop.clone(), st));
        let faults = fault_rounds(&c, slots, rounds).await;
        stop.set(true);
        load.await;
        op.await;
        // A command committed by the leader makes its membership committed in its own view.
        c.one(c.rand_cmd(), 1, true).await;
        retire_non_members(&c);
        let l = c.check_one_leader().await;
        let m = c.with_raft(l, |r| r.membership().clone()).expect("alive");
        c.one(c.rand_cmd(), m.members().len(), true).await;
        agree_on_membership(&c, &m).await;
        faults
    });
    let checker = checker.borrow();
    let ops = stats.borrow().clone();
    MembershipRunReport {
        trace_hash: t.trace_hash(),
        slots,
        voters,
        work: checker.committed_len(),
        changes: checker.committed_memberships(),
        faults,
        ops,
        chunked_installs: t.chunked_installs(chunk),
    }
}

/// Draws a membership change or a leader transfer for the current leader every 20–300 ms.
async fn raft_operator(c: Rc<RaftTester>, stop: Rc<Cell<bool>>, stats: Rc<RefCell<OperatorStats>>) {
    while !stop.get() {
        c.sleep(Duration::from_millis(20 + c.rand(280))).await;
        let Some(l) = c.leader_now() else { continue };
        let m = c
            .with_raft(l, |r| r.membership().clone())
            .expect("leader alive");
        let Some(action) = draw_action(&m, l, c.n(), &mut |n| c.rand(n)) else {
            continue;
        };
        let mut stats = stats.borrow_mut();
        if tracing() {
            let what = match &action {
                Action::Change(ch) => format!("{ch:?}"),
                Action::Transfer(to) => format!("transfer to {to}"),
            };
            eprintln!("{:>10.3} operator at {l}: {what}", c.rt.now().as_secs_f64());
        }
        match action {
            Action::Change(change) => match c.propose_membership(l, change) {
                Some(Ok(_)) => stats.accepted += 1,
                Some(Err(e)) => stats.refuse(reason(&e)),
                None => {}
            },
            Action::Transfer(to) => match c.transfer_leadership(l, to) {
                Some(Ok(())) => stats.transfers += 1,
                Some(Err(e)) => stats.refuse(transfer_reason(&e)),
                None => {}
            },
        }
    }
}

/// Crashes every slot that is a member of no membership still in play: neither of the
/// latest membership some peer knows to be committed, nor of any later one a peer holds.
fn retire_non_members(c: &RaftTester) {
    let views: Vec<(u64, bool, Membership)> = (0..c.n())
        .filter_map(|i| {
            c.with_raft(NodeId::from_index(i), |r| {
                let index = r.membership_index();
                (index, index <= r.commit_index(), r.membership().clone())
            })
        })
        .collect();
    let committed = (views.iter())
        .filter(|(_, committed, _)| *committed)
        .map(|(index, _, _)| *index)
        .max()
        .unwrap_or(0);
    let keep: BTreeSet<NodeId> = (views.iter())
        .filter(|(index, _, _)| *index >= committed)
        .flat_map(|(_, _, m)| m.members())
        .collect();
    for i in (0..c.n())
        .map(NodeId::from_index)
        .filter(|i| !keep.contains(i))
    {
        c.crash1(i);
    }
}

/// Waits (up to 2 s) until every member of `m` uses `m`.
async fn agree_on_membership(c: &RaftTester, m: &Membership) {
    let t0 = c.rt.now();
    loop {
        let views: Vec<(NodeId, Option<Membership>)> = (m.members().into_iter())
            .map(|i| (i, c.with_raft(i, |r| r.membership().clone())))
            .collect();
        if views.iter().all(|(_, v)| v.as_ref() == Some(m)) {
            return;
        }
        assert!(
            c.rt.now() - t0 < Duration::from_secs(2),
            "members disagree on the membership: leader's {m:?}, members' {views:?}"
        );
        c.sleep(Duration::from_millis(10)).await;
    }
}

// ----- KV level -----

type Tester = Rc<KvTester<KvReplica>>;

/// A KV group drawn from `seed`: as [`crate::kv_random`]'s (snapshots, clients, slow disks,
/// read mode), plus the slots and the founding voters. Returns it with the number of
/// founding voters, of clients, and its `max_raft_state`.
fn kv_group(seed: u64) -> (Tester, usize, usize, Option<usize>) {
    let probe = KvTester::kvsrv("probe", seed, false);
    let r = |n| probe.svc.rand(n);
    let slots = [4usize, 5, 6, 7][r(4) as usize];
    let voters = [1usize, 3, 3, 5][r(4) as usize].min(slots - 1);
    let max_raft_state = [None, Some(1000), Some(4000)][r(3) as usize];
    let clients = 3 + r(6) as usize;
    let slow_disk = r(2) == 0;
    let read_mode = [ReadMode::Log, ReadMode::ReadIndex, ReadMode::Lease][r(3) as usize];
    drop(probe);
    let modify = move |cfg: &mut Config| cfg.read_mode = read_mode;
    let name = "KvMembershipRandom";
    let t = KvTester::kvraft_members(name, seed, slots, voters, false, max_raft_state, modify);
    if slow_disk {
        t.svc.sim.borrow_mut().set_sync_latency(Some(SYNC_LATENCY));
    }
    (t, voters, clients, max_raft_state)
}

/// Prints every server's state every 500 ms (the trace, [`tracing`]).
async fn trace_group(t: Tester) {
    loop {
        let now = t.svc.now().as_secs_f64();
        eprintln!("{now:>10.3}{}", ops::describe(&t.svc));
        t.svc.sleep(Duration::from_millis(500)).await;
    }
}

/// One randomized KV run of `seconds` virtual seconds (as [`crate::kv_random`]), with
/// membership changes and transfers sent as admin requests every 100–800 ms.
pub fn kv_membership_random(seed: u64, seconds: u64) -> MembershipRunReport {
    let (t, voters, clients, max_raft_state) = kv_group(seed);
    let slots = t.svc.n();
    let leases = t.watch_read_leases();
    let stats = Rc::new(RefCell::new(OperatorStats::default()));
    let changes = Rc::new(Cell::new(0));
    let (t2, st, ch) = (t.clone(), stats.clone(), changes.clone());
    let faults = t
        .svc
        .run_for(Duration::from_secs(seconds + 120), async move {
            let t = t2;
            let stop = Rc::new(Cell::new(false));
            let load: Vec<_> = (0..clients)
                .map(|cli| t.svc.rt.spawn(client(t.clone(), cli, stop.clone())))
                .collect();
            let op = t.svc.rt.spawn(kv_operator(t.clone(), stop.clone(), st, ch));
            if tracing() {
                t.svc.rt.spawn(trace_group(t.clone()));
            }
            let faults = nemesis(&t, Duration::from_secs(seconds)).await;
            heal_everything(&t);
            stop.set(true);
            for h in load {
                h.await;
            }
            op.await;
            read_every_key(&t, clients).await;
            ops::settled(&t.svc, Duration::from_secs(30)).await;
            faults
        });
    check_raft_state_bound(&t, max_raft_state);
    t.check_linearizable();
    leases.check();
    let ops = stats.borrow().clone();
    MembershipRunReport {
        trace_hash: t.svc.trace_hash(),
        slots,
        voters,
        work: t.history_len(),
        changes: changes.get(),
        faults,
        ops,
        chunked_installs: 0,
    }
}

/// Every 100–800 ms, draws a change or a transfer against the leader's membership and sends
/// it once, to the leader or (one time in four, to exercise the hints) to a random server.
async fn kv_operator(
    t: Tester,
    stop: Rc<Cell<bool>>,
    stats: Rc<RefCell<OperatorStats>>,
    changes: Rc<Cell<usize>>,
) {
    let slots = t.svc.n();
    while !stop.get() {
        t.svc
            .sleep(Duration::from_millis(100 + t.svc.rand(700)))
            .await;
        let Some(l) = ops::leader(&t.svc) else {
            continue;
        };
        let m = ops::membership_of(&t.svc, l).expect("leader alive");
        let Some(action) = draw_action(&m, l, slots, &mut |n| t.svc.rand(n)) else {
            continue;
        };
        let to = if t.svc.rand(4) == 0 {
            NodeId::new(t.svc.rand(slots as u64))
        } else {
            l
        };
        let op = match action {
            Action::Change(change) => AdminOp::Change(change),
            Action::Transfer(v) => AdminOp::TransferLeader { to: v },
        };
        let trace = tracing();
        if trace {
            eprintln!(
                "{:>10.3} operator to {to}: {op:?}",
                t.svc.now().as_secs_f64()
            );
        }
        let answer = ops::ask(&t.svc, to, op).await;
        if trace {
            eprintln!("{:>10.3} operator: {answer:?}", t.svc.now().as_secs_f64());
        }
        let mut stats = stats.borrow_mut();
        match answer {
            Some(Ok(AdminReply::Changed { .. })) => {
                stats.accepted += 1;
                changes.set(changes.get() + 1);
            }
            Some(Ok(AdminReply::TransferStarted)) => stats.transfers += 1,
            Some(Err(AdminError::NotLeader { .. })) => stats.refuse("NotLeader"),
            Some(Err(AdminError::Lost)) => stats.refuse("Lost"),
            Some(Err(AdminError::Busy(_))) => stats.refuse("Busy"),
            Some(Err(AdminError::Refused(_))) => stats.refuse("Refused"),
            None => stats.refuse("no answer"),
        }
    }
}

/// Whether crashing `s` leaves a majority of voters alive in every live server's membership.
fn may_crash(t: &Tester, s: NodeId) -> bool {
    (0..t.svc.n())
        .filter_map(|i| ops::membership_of(&t.svc, NodeId::from_index(i)))
        .all(|m| {
            let alive = (m.voters.iter())
                .filter(|&&v| v != s && t.svc.is_alive(v))
                .count();
            m.voters.is_empty() || alive > m.voters.len() / 2
        })
}

/// As [`crate::kv_random`]'s nemesis over every slot, crashing a server only if every
/// membership keeps a live majority of voters.
async fn nemesis(t: &Tester, duration: Duration) -> usize {
    crate::kv_random::nemesis_with(t, duration, may_crash).await
}
