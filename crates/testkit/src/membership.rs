//! Membership changes on a simulated replica group, made as an operator makes them: admin
//! requests ([`AdminOp`]) sent from the clerk host over the network to the server believed to
//! lead, following `NotLeader` hints, retried after refusals that pass (a change in progress,
//! a learner still catching up), after lost answers and after `Lost` (leadership changed
//! before the change committed). Whether a change is done is judged from the servers' state
//! (the tester sees every server), so a retried change that had in fact committed is not
//! proposed twice.
//!
//! The simulator's slots are fixed: "new machines" are slots that boot joining
//! ([`crate::KvTester::kvraft_members`]), "removed machines" slots that are no longer members.

use std::rc::Rc;
use std::time::Duration;

use flotilla_node::NodeId;
use flotilla_raft::{Membership, MembershipChange};
use flotilla_rsm::{AdminError, AdminOp, AdminReply, Replica, StateMachine};

use crate::service::ServiceTester;

/// A simulated group of replicas of `S` with its clerk host.
pub type Group<S> =
    ServiceTester<Replica<S>, <S as StateMachine>::Command, <S as StateMachine>::Reply>;

/// How long one admin request may go unanswered before the operator asks again.
pub const ADMIN_LIMIT: Duration = Duration::from_secs(1);
/// The operator's pause after a refusal, a lost answer or an unknown leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The live server leading in the highest term, if any.
pub fn leader<S: StateMachine + 'static>(g: &Group<S>) -> Option<NodeId> {
    (0..g.n())
        .map(NodeId::from_index)
        .filter_map(|s| {
            g.with_server(s, |r| (r.raft().is_leader(), r.raft().term()))
                .filter(|&(leads, _)| leads)
                .map(|(_, term)| (term, s))
        })
        .max()
        .map(|(_, s)| s)
}

/// Server `i`'s membership in use, or `None` if it is down.
pub fn membership_of<S: StateMachine + 'static>(g: &Group<S>, i: NodeId) -> Option<Membership> {
    g.with_server(i, |r| r.raft().membership().clone())
}

/// The membership the leader has committed (its membership in use, once that entry is
/// committed), or `None` without a leader or while a change is in progress.
pub fn committed_membership<S: StateMachine + 'static>(g: &Group<S>) -> Option<Membership> {
    let l = leader(g)?;
    g.with_server(l, |r| {
        let raft = r.raft();
        (raft.membership_index() <= raft.commit_index()).then(|| raft.membership().clone())
    })?
}

/// Whether `m` shows `change` done.
pub fn reflects(m: &Membership, change: &MembershipChange) -> bool {
    match change {
        MembershipChange::AddLearner { id, .. } => m.contains(*id),
        MembershipChange::Promote { id } => m.is_voter(*id),
        MembershipChange::Remove { id } => !m.contains(*id),
    }
}

/// One admin request to server `to`, as [`ServiceTester::admin`] with [`ADMIN_LIMIT`].
pub async fn ask<S: StateMachine + 'static>(
    g: &Rc<Group<S>>,
    to: NodeId,
    op: AdminOp,
) -> Option<Result<AdminReply, AdminError>> {
    g.admin(to, op, ADMIN_LIMIT).await
}

/// Makes `change` as an operator would (module docs) and returns the membership once the
/// change is committed. Panics if it is not done within `deadline`, naming the last answer.
pub async fn change<S: StateMachine + 'static>(
    g: &Rc<Group<S>>,
    change: MembershipChange,
    deadline: Duration,
) -> Membership {
    let t0 = g.now();
    let mut to = leader(g).unwrap_or(NodeId::new(0));
    let mut last = String::from("nothing yet");
    loop {
        if let Some(m) = committed_membership(g).filter(|m| reflects(m, &change)) {
            return m;
        }
        assert!(
            g.now() - t0 < deadline,
            "membership change {change:?} not done within {deadline:?}; last answer: {last}"
        );
        match ask(g, to, AdminOp::Change(change.clone())).await {
            Some(Ok(AdminReply::Changed { membership, .. })) => return membership,
            Some(Ok(other)) => panic!("a membership change answered {other:?}"),
            Some(Err(AdminError::NotLeader { hint })) => {
                last = format!("server {to}: not the leader (hint {hint:?})");
                to = match hint {
                    Some(h) if h < NodeId::from_index(g.n()) && h != to => h,
                    _ => {
                        g.sleep(RETRY_PAUSE).await;
                        NodeId::from_index((to.index() + 1) % g.n())
                    }
                };
            }
            Some(Err(e)) => {
                last = format!("server {to}: {e}");
                g.sleep(RETRY_PAUSE).await;
            }
            None => {
                last = format!("server {to}: no answer within {ADMIN_LIMIT:?}");
                to = leader(g).unwrap_or(NodeId::from_index((to.index() + 1) % g.n()));
            }
        }
    }
}

/// Hands leadership to voter `to` (thesis §3.10) through admin requests to the leader, and
/// waits until `to` leads. Panics if it does not within `deadline`.
pub async fn transfer<S: StateMachine + 'static>(g: &Rc<Group<S>>, to: NodeId, deadline: Duration) {
    let t0 = g.now();
    let mut last = String::from("nothing yet");
    while leader(g) != Some(to) {
        assert!(
            g.now() - t0 < deadline,
            "leadership not handed to {to} within {deadline:?}; last answer: {last}"
        );
        let Some(l) = leader(g) else {
            g.sleep(RETRY_PAUSE).await;
            continue;
        };
        last = format!("{:?}", ask(g, l, AdminOp::TransferLeader { to }).await);
        // The transfer completes within a few round trips, or is abandoned after an
        // election timeout; look again after a while either way.
        for _ in 0..20 {
            if leader(g) == Some(to) {
                return;
            }
            g.sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Removes member `id`; if it leads, first hands leadership to another voter (a leader does
/// not remove itself). Returns the membership once the removal is committed.
pub async fn remove<S: StateMachine + 'static>(
    g: &Rc<Group<S>>,
    id: NodeId,
    deadline: Duration,
) -> Membership {
    if leader(g) == Some(id) {
        let m = membership_of(g, id).expect("the leader is alive");
        let to = (m.voters.iter().copied())
            .find(|&v| v != id)
            .expect("a leader to remove has another voter to hand over to");
        transfer(g, to, deadline).await;
    }
    let change = MembershipChange::Remove { id };
    self::change(g, change, deadline).await
}

/// Waits until every live member of the leader's membership has committed everything the
/// leader has, and holds the leader's membership; returns it. Panics past `deadline`.
pub async fn settled<S: StateMachine + 'static>(
    g: &Rc<Group<S>>,
    deadline: Duration,
) -> Membership {
    let t0 = g.now();
    loop {
        if let Some(m) = settled_now(g) {
            return m;
        }
        assert!(
            g.now() - t0 < deadline,
            "the group did not settle on one membership within {deadline:?}: {}",
            describe(g)
        );
        g.sleep(Duration::from_millis(10)).await;
    }
}

fn settled_now<S: StateMachine + 'static>(g: &Group<S>) -> Option<Membership> {
    let m = committed_membership(g)?;
    let l = leader(g)?;
    let commit = g.with_server(l, |r| r.raft().commit_index())?;
    let all = m.members().into_iter().all(|id| {
        g.with_server(id, |r| {
            r.raft().commit_index() >= commit && r.raft().membership() == &m
        })
        .unwrap_or(true)
    });
    all.then_some(m)
}

/// Every server's view: role, term, commit index and membership, for failure messages.
pub fn describe<S: StateMachine + 'static>(g: &Group<S>) -> String {
    let mut out = String::new();
    for s in 0..g.n() {
        let line = g.with_server(NodeId::from_index(s), |r| {
            let raft = r.raft();
            let m = raft.membership();
            format!(
                "\n  server {s}: {:?} term {} commit {} membership@{} voters {:?} learners {:?}",
                raft.role(),
                raft.term(),
                raft.commit_index(),
                raft.membership_index(),
                m.voters,
                m.learners
            )
        });
        out += &line.unwrap_or_else(|| format!("\n  server {s}: down"));
    }
    out
}
