//! The two rules that make single-server membership changes safe (Ongaro's thesis §4.1 and
//! its 2015 correction), each broken on purpose ([`Sabotage`]) in a deterministic Raft-level
//! script that turns the breakage into a safety violation, which [`SafetyChecker`] reports;
//! the same script with the rule kept must run safely. Peers use the labs' Raft with pre-vote
//! on (so peers cut off alone do not inflate terms), on a reliable network.
//!
//! * One change at a time: two promotions in flight let a leader commit with a majority of a
//!   membership two voters away from the last committed one, while the old membership's
//!   majority elects another leader: two logs commit different entries at one index.
//! * A new leader changes the membership only after committing an entry of its own term:
//!   otherwise a change it commits can be overwritten by the leader of an older, uncommitted
//!   membership whose majority does not overlap it (the raft-dev scenario of July 2015).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use flotilla_raft::{Config, MembershipChange, MembershipError, Sabotage};
use flotilla_sim::NodeId;
use flotilla_testkit::raft_tester::{int_cmd, RaftTester};
use flotilla_testkit::SafetyChecker;

/// What a broken-rule script saw.
#[derive(Clone, Debug)]
pub struct BrokenOutcome {
    /// Why the core refused the change that breaks the rule (`None`: it accepted it).
    pub refused: Option<MembershipError>,
    /// The first violation the checks reported (the panic's message), if any.
    pub violation: Option<String>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

/// `slots` peers, `0..voters` founding, checked by a [`SafetyChecker`] after every step
/// (with its one-change-at-a-time check as `single_change` says).
fn tester(
    (slots, voters): (usize, usize),
    seed: u64,
    single_change: bool,
    modify: impl Fn(&mut Config) + 'static,
) -> Rc<RaftTester> {
    let t = RaftTester::with_members(slots, voters, false, false, seed, move |cfg| {
        cfg.pre_vote = true;
        modify(cfg);
    });
    let checker = Rc::new(RefCell::new(SafetyChecker::new()));
    checker.borrow_mut().single_change = single_change;
    t.set_step_check(Box::new(move |sim| checker.borrow_mut().check(sim)));
    t
}

/// Runs `script` on `t`, turning a panic (a check that failed) into the outcome's violation.
fn run_script(
    t: &Rc<RaftTester>,
    script: impl std::future::Future<Output = ()> + 'static,
) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| t.run(script)))
        .err()
        .map(panic_message)
}

/// Waits (polling every `every`, up to `limit`) until `cond` holds; panics with `what` if not.
async fn wait_until(
    c: &RaftTester,
    every: Duration,
    limit: Duration,
    what: &str,
    cond: impl Fn() -> bool,
) {
    let t0 = c.rt.now();
    while !cond() {
        assert!(c.rt.now() - t0 < limit, "{what}: not within {limit:?}");
        c.sleep(every).await;
    }
}

/// Leader `l` adds `id` as a learner (retrying while a change or its term is not yet
/// committed) and commits it.
async fn add_learner(c: &RaftTester, l: NodeId, id: NodeId) {
    let change = MembershipChange::AddLearner {
        id,
        addr: String::new(),
    };
    let t0 = c.rt.now();
    let index = loop {
        match c
            .propose_membership(l, change.clone())
            .expect("leader alive")
        {
            Ok((index, _)) => break index,
            Err(e) => {
                assert!(c.rt.now() - t0 < Duration::from_secs(2), "adding {id}: {e}");
                c.sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let committed = || c.with_raft(l, |r| r.commit_index() >= index) == Some(true);
    let limit = Duration::from_secs(2);
    wait_until(
        c,
        Duration::from_millis(10),
        limit,
        "the learner's entry commits",
        committed,
    )
    .await;
}

/// Two concurrent promotions. Voters {0,1,2} with learners {3,4}, all caught up; the
/// leader `a` is partitioned with the learners from the two other voters. `a` promotes 3 and
/// at once 4: the rule refuses the second (`ChangeInProgress`); broken, `a` then uses
/// voters {0,1,2,3,4} and commits with `a`, 3 and 4, while the other two, a majority of
/// {0,1,2}, elect a leader and commit other entries at the same indices. Both sides are given
/// commands for 3 s; then the partition heals and every peer must commit a command and end
/// with the same membership. With `single_change` the checker's one-change-at-a-time check is
/// on and reports the second promotion itself; without it, the divergence is reported.
pub fn concurrent_promotions(seed: u64, sabotage: bool, single_change: bool) -> BrokenOutcome {
    let s = sabotage.then_some(Sabotage::ConcurrentMembershipChanges);
    let t = tester((5, 3), seed, single_change, move |cfg| {
        cfg.check_quorum = true;
        cfg.sabotage = s;
    });
    let refused = Rc::new(RefCell::new(None));
    let (c, r) = (t.clone(), refused.clone());
    let violation = run_script(&t, async move {
        c.one(int_cmd(1), 3, true).await;
        let a = c.check_one_leader().await;
        let others: Vec<NodeId> = (0..3).map(NodeId::from_index).filter(|&i| i != a).collect();
        for id in [3, 4] {
            add_learner(&c, a, NodeId::new(id)).await;
        }
        c.one(int_cmd(2), 5, true).await;
        c.partition(&[vec![a, NodeId::new(3), NodeId::new(4)], others.clone()]);
        let first = c.propose_membership(a, MembershipChange::Promote { id: NodeId::new(3) });
        assert!(
            matches!(first, Some(Ok(_))),
            "the first promotion: {first:?}"
        );
        let second = c.propose_membership(a, MembershipChange::Promote { id: NodeId::new(4) });
        *r.borrow_mut() = second.expect("alive").err();
        for k in 0..60u64 {
            for p in [a, others[0], others[1]] {
                if c.get_state(p).is_some_and(|(_, leads)| leads) {
                    c.start(p, int_cmd(1000 + 10 * k + p.get()));
                }
            }
            c.sleep(Duration::from_millis(50)).await;
        }
        c.heal_all();
        c.one(int_cmd(3), 5, true).await;
        let same = || {
            let m0 = c.with_raft(NodeId::new(0), |r| r.membership().clone());
            (1..5).all(|i| c.with_raft(NodeId::new(i), |r| r.membership().clone()) == m0)
        };
        let limit = Duration::from_secs(2);
        wait_until(&c, Duration::from_millis(10), limit, "one membership", same).await;
    });
    let refused = refused.borrow().clone();
    BrokenOutcome { refused, violation }
}

/// Polls every 100 µs (up to 10 s) until one peer of `group` (three voters of four, the
/// fourth crashed) has the votes of the other two in its term, and returns it with one of
/// them. Its entries reach its voters only after their replies reach it (≥ 0.5 ms later).
async fn two_votes(c: &RaftTester, group: &[NodeId]) -> (NodeId, NodeId) {
    let t0 = c.rt.now();
    loop {
        for &q in group {
            let Some(term) = c.with_raft(q, |r| r.term()) else {
                continue;
            };
            let voters: Vec<NodeId> = group.iter().copied().filter(|&u| u != q).collect();
            let granted = voters.iter().all(|&u| {
                c.with_raft(u, |r| r.term() == term && r.voted_for() == Some(q)) == Some(true)
            });
            if granted {
                assert_eq!(c.get_state(q), Some((term, false)), "{q} already leads");
                return (q, voters[0]);
            }
        }
        assert!(
            c.rt.now() - t0 < Duration::from_secs(10),
            "no peer of {group:?} got two votes"
        );
        c.sleep(Duration::from_micros(100)).await;
    }
}

/// A new leader's change before its term is committed (the raft-dev scenario of July 2015,
/// with learners). Voters {S1..S4} (slots 0–3; S1, called `a`, is whichever the peers
/// elect first) with learners S5 and S6 (slots 4 and 5), the leader no-op on:
///
/// 1. `a`, cut off with S5 only, promotes S5 (membership C5 = {S1..S5}); the entry reaches
///    S5 alone; `a` crashes and S5 is isolated.
/// 2. S2, S3, S4 elect a leader `q`; the moment both others have voted for it, one (`p`)
///    crashes, before `q`'s entries can reach it.
/// 3. `q` promotes S6 (C6 = {S1..S4, S6}). The rule refuses (`TermNotCommitted`: its no-op
///    needs 3 of {S1..S4}, and only `q` and the third voter are up). Broken, `q` commits its
///    no-op and C6 with itself, the third voter and S6: a majority of C6.
/// 4. `a` and `p` restart, connected with S5 only: `a` or S5 is elected with a majority of
///    C5 (`a`, `p`, S5; `p` holds nothing of `q`'s term). Broken, that leader lacks the
///    committed entries of step 3: the checker reports it. Kept, nothing of `q`'s term was
///    committed, and after healing every peer commits a command.
pub fn change_before_term_commit(seed: u64, sabotage: bool) -> BrokenOutcome {
    let s = sabotage.then_some(Sabotage::MembershipChangeBeforeTermCommit);
    let t = tester((6, 4), seed, true, move |cfg| {
        cfg.leader_noop = true;
        cfg.sabotage = s;
    });
    let refused = Rc::new(RefCell::new(None));
    let (c, r) = (t.clone(), refused.clone());
    let violation = run_script(&t, async move {
        let (s5, s6) = (NodeId::new(4), NodeId::new(5));
        let ms = Duration::from_millis;
        c.one(int_cmd(1), 4, true).await;
        let a = c.check_one_leader().await;
        for id in [s5, s6] {
            add_learner(&c, a, id).await;
        }
        c.one(int_cmd(2), 6, true).await;
        // 1. C5 reaches S5 only.
        let bcd: Vec<NodeId> = (0..4).map(NodeId::from_index).filter(|&i| i != a).collect();
        let rest: Vec<NodeId> = bcd.iter().copied().chain([s6]).collect();
        c.partition(&[vec![a, s5], rest.clone()]);
        let promote = MembershipChange::Promote { id: s5 };
        let (k, _) = (c.propose_membership(a, promote).expect("alive"))
            .expect("the leader promotes its caught-up learner");
        let at_s5 = || c.with_raft(s5, |r| r.log().last_index() >= k) == Some(true);
        wait_until(&c, ms(1), ms(500), "C5 reaches S5", at_s5).await;
        c.crash1(a);
        c.partition(&[vec![s5], rest.clone()]);
        // 2. q is elected; p voted for it but holds none of its entries.
        let (q, p) = two_votes(&c, &bcd).await;
        // Crashed but not cut off: its vote, already sent, still reaches q.
        c.sim.borrow_mut().crash(p);
        let leads = || c.get_state(q).is_some_and(|(_, l)| l);
        wait_until(&c, ms(1), ms(500), "q leads", leads).await;
        // 3. q promotes S6 at once, retrying while S6's progress is unknown.
        let promote = MembershipChange::Promote { id: s6 };
        let t0 = c.rt.now();
        let accepted = loop {
            match c.propose_membership(q, promote.clone()).expect("alive") {
                Ok((index, _)) => break Some(index),
                Err(e) if c.rt.now() - t0 > ms(1000) => {
                    *r.borrow_mut() = Some(e);
                    break None;
                }
                Err(_) => c.sleep(ms(5)).await,
            }
        };
        if let Some(index) = accepted {
            let committed = || c.with_raft(q, |r| r.commit_index() >= index) == Some(true);
            wait_until(&c, ms(5), ms(2000), "C6 commits", committed).await;
        }
        // 4. a and p return, with S5 only.
        c.start1(a);
        c.start1(p);
        c.partition(&[
            vec![a, p, s5],
            rest.iter().copied().filter(|&i| i != p).collect(),
        ]);
        let c5_leads = || {
            [a, s5]
                .iter()
                .any(|&i| c.get_state(i).is_some_and(|(_, l)| l))
        };
        wait_until(&c, ms(10), ms(10_000), "a leader of C5", c5_leads).await;
        c.heal_all();
        c.one(int_cmd(3), 6, true).await;
    });
    let refused = refused.borrow().clone();
    BrokenOutcome { refused, violation }
}
