//! `flotilla ctl add-node / promote / remove-node / transfer-leader`: membership changes on a
//! running group, one replica at a time (Raft's single-server changes).
//!
//! Every command finds the leader itself, from the replicas' statuses, and judges success by
//! the membership the group reports rather than by one answer: a change whose answer was lost
//! (the leader changed, a connection broke) is found done, or is proposed again, so running a
//! command twice does no harm. What a leader refuses only for now (a change in progress, a
//! learner still catching up, a new leader's first commit, a leader transfer) is retried until
//! `--timeout`; any other refusal ends the command with the leader's reason and a non-zero
//! exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use flotilla_client::admin::{admin_request, survey, ClusterView};
use flotilla_kv::{KvCommand, KvMsg, KvReply};
use flotilla_raft::MembershipChange;
use flotilla_raft::NodeId;
use flotilla_rsm::{AdminError, AdminOp, AdminReply};
use flotilla_transport::NodeStatus;

use super::group::{describe, Cluster, ClusterArgs};
use crate::process::runtime;
use crate::units::parse_duration;

/// Pause between two looks at the group while waiting.
const POLL: Duration = Duration::from_millis(50);
/// How long one replica may take to answer a status request.
const STATUS_WAIT: Duration = Duration::from_secs(1);
/// How long one admin request may wait for its answer (a change answers once committed).
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// How long a started leader transfer may take before it is asked for again (the leader
/// abandons one after an election timeout, 300–600 ms by default).
const TRANSFER_WAIT: Duration = Duration::from_secs(3);
/// Waiting messages repeat at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct AddNodeArgs {
    /// The new replica's id (the --id it was started with).
    id: NodeId,
    /// Where the other replicas reach it (host:port).
    addr: String,
    /// Leave it a learner (it gets the log but neither votes nor counts toward commits).
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
pub struct NodeArgs {
    /// The replica's id.
    id: NodeId,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct CommonArgs {
    /// Give up (exit non-zero) if not done within this long. Catching a learner up on a large
    /// data set takes longer: raise it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn add_node(a: AddNodeArgs) -> Result<(), String> {
    let id = flotilla_id::alloc::replica_node_id(a.id.get()).map_err(|e| e.to_string())?;
    let mut admin = Admin::new(&a.common)?;
    let addr = a.addr.clone();
    runtime()?.block_on(async move {
        let started = Instant::now();
        let (view, _, _) = admin.leader_view().await?;
        if view.is_voter(id) {
            println!("node {id} is already a voter");
            return Ok(());
        }
        let add = MembershipChange::AddLearner {
            id,
            addr: addr.clone(),
        };
        let index = admin.change(add, |v| is_member(v, id)).await?;
        println!(
            "node {id} ({addr}) is a learner: membership at log index {index} ({:.2} s)",
            started.elapsed().as_secs_f64()
        );
        if !a.learner {
            let caught_up = Instant::now();
            let index = admin
                .change(MembershipChange::Promote { id }, |v| v.is_voter(id))
                .await?;
            println!(
                "node {id} caught up and is a voter: membership at log index {index} (catching up took {:.2} s)",
                caught_up.elapsed().as_secs_f64()
            );
        }
        admin.print_membership().await;
        Ok(())
    })
}

pub fn promote(a: NodeArgs) -> Result<(), String> {
    let mut admin = Admin::new(&a.common)?;
    let id = a.id;
    runtime()?.block_on(async move {
        let started = Instant::now();
        let (view, _, _) = admin.leader_view().await?;
        if !is_member(&view, id) {
            return Err(format!(
                "node {id} is not a member: add it with `flotilla ctl add-node {id} ADDR`"
            ));
        }
        let index = admin
            .change(MembershipChange::Promote { id }, |v| v.is_voter(id))
            .await?;
        println!(
            "node {id} is a voter: membership at log index {index} ({:.2} s)",
            started.elapsed().as_secs_f64()
        );
        admin.print_membership().await;
        Ok(())
    })
}

pub fn remove_node(a: NodeArgs) -> Result<(), String> {
    let mut admin = Admin::new(&a.common)?;
    let id = a.id;
    runtime()?.block_on(async move {
        let started = Instant::now();
        loop {
            let (view, leader, _) = admin.leader_view().await?;
            if !is_member(&view, id) && view.committed {
                println!("node {id} is not a member");
                break;
            }
            if leader == id {
                // A leader cannot remove itself (it would go on leading a group it is not
                // in): another voter takes over first.
                let to = admin.transfer_target(&view, id)?;
                println!("node {id} leads: handing leadership to node {to} first");
                admin.transfer(to).await?;
                continue;
            }
            match admin
                .change(MembershipChange::Remove { id }, |v| !is_member(v, id))
                .await
            {
                Ok(index) => {
                    println!(
                        "node {id} is removed: membership at log index {index} ({:.2} s); stop its process",
                        started.elapsed().as_secs_f64()
                    );
                    break;
                }
                Err(ChangeError::TargetLeads) => continue,
                Err(ChangeError::Failed(e)) => return Err(e),
            }
        }
        admin.print_membership().await;
        Ok(())
    })
}

pub fn transfer_leader(a: NodeArgs) -> Result<(), String> {
    let mut admin = Admin::new(&a.common)?;
    let to = a.id;
    runtime()?.block_on(async move {
        let started = Instant::now();
        admin.transfer(to).await?;
        println!("node {to} leads ({:.2} s)", started.elapsed().as_secs_f64());
        Ok(())
    })
}

/// Whether `id` is a voter or learner of the group's membership.
fn is_member(v: &ClusterView, id: NodeId) -> bool {
    v.is_voter(id) || v.is_learner(id)
}

/// What one admin request came to.
enum Attempt {
    Done(AdminReply),
    /// Not done, for now (not the leader any more, a change in progress, …): why.
    Retry(String),
    /// The leader will not do it as asked: why.
    Refused(String),
}

/// Why a membership change did not go through.
enum ChangeError {
    /// The change removes the leader (which must hand over first).
    TargetLeads,
    Failed(String),
}

impl From<ChangeError> for String {
    fn from(e: ChangeError) -> String {
        match e {
            ChangeError::TargetLeads => {
                "the node to remove leads the group: transfer leadership first".to_owned()
            }
            ChangeError::Failed(why) => why,
        }
    }
}

/// An operator's session with one group.
struct Admin {
    cluster: Cluster,
    /// Members' addresses learned so far; asked along with the seeds.
    book: BTreeMap<NodeId, String>,
    /// The statuses of the latest look at the group.
    heard: Vec<(String, NodeStatus)>,
    timeout: Duration,
    deadline: Instant,
    /// The latest waiting message and when it was printed.
    said: Option<(String, Instant)>,
}

impl Admin {
    fn new(c: &CommonArgs) -> Result<Self, String> {
        Ok(Admin {
            cluster: c.cluster.load()?,
            book: BTreeMap::new(),
            heard: Vec::new(),
            timeout: c.timeout,
            deadline: Instant::now() + c.timeout,
            said: None,
        })
    }

    /// What the replicas say now; `None` if none answers.
    async fn view(&mut self) -> Option<ClusterView> {
        let mut ask = self.cluster.seeds.clone();
        for a in self.book.values() {
            if !ask.contains(a) {
                ask.push(a.clone());
            }
        }
        let c = &self.cluster;
        let answers = survey::<KvMsg>(&ask, &c.secret, c.tls.clone(), STATUS_WAIT).await;
        self.heard = (ask.into_iter().zip(answers))
            .filter_map(|(a, r)| r.ok().map(|s| (a, s)))
            .collect();
        let view = ClusterView::of(&self.heard)?;
        self.book.extend(view.addrs.clone());
        Some(view)
    }

    /// The group's view once a leader (and its address) is known, with both.
    async fn leader_view(&mut self) -> Result<(ClusterView, NodeId, String), String> {
        loop {
            let why = match self.view().await {
                None => "no replica answers".to_owned(),
                Some(v) => match v.leader.and_then(|l| v.addrs.get(&l).cloned()) {
                    Some(addr) => {
                        let l = v.leader.expect("a leader with an address");
                        return Ok((v, l, addr));
                    }
                    None => "no replica leads: an election may be under way, or a majority \
                             of the voters is down"
                        .to_owned(),
                },
            };
            self.wait(&why).await?;
        }
    }

    /// Fails once past the deadline (saying `why` it waited), else pauses and tells the
    /// operator what it waits for (now and then).
    async fn wait(&mut self, why: &str) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            return Err(format!("gave up after {:?}: {why}", self.timeout));
        }
        // Once per kind of reason (the text before its figures) every PROGRESS_EVERY, so a
        // learner's progress shows without a line per retry.
        let kind = |s: &str| s.split('(').next().unwrap_or(s).to_owned();
        let recent = (self.said.as_ref())
            .is_some_and(|(s, at)| kind(s) == kind(why) && at.elapsed() < PROGRESS_EVERY);
        if !recent {
            eprintln!("  waiting: {why}");
            self.said = Some((why.to_owned(), Instant::now()));
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }

    async fn attempt(&self, addr: &str, op: AdminOp) -> Attempt {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let limit = REQUEST_WAIT.min(left).max(Duration::from_millis(200));
        let c = &self.cluster;
        let r = admin_request::<KvCommand, KvReply>(addr, &c.secret, c.tls.as_deref(), op, limit);
        match r.await {
            Ok(Ok(reply)) => Attempt::Done(reply),
            Ok(Err(AdminError::Refused(why))) => Attempt::Refused(why),
            Ok(Err(e)) => Attempt::Retry(e.to_string()),
            Err(e) => Attempt::Retry(format!("asking the leader at {addr}: {e}")),
        }
    }

    /// Makes `change` and returns the log index of the membership that has it, once the
    /// group's committed membership satisfies `done`.
    async fn change(
        &mut self,
        change: MembershipChange,
        done: impl Fn(&ClusterView) -> bool,
    ) -> Result<u64, ChangeError> {
        let removes =
            |leader: NodeId| matches!(change, MembershipChange::Remove { id } if id == leader);
        loop {
            let (view, leader, addr) = self.leader_view().await.map_err(ChangeError::Failed)?;
            let why = if done(&view) {
                if view.committed {
                    return Ok(view.membership_index);
                }
                "the change to commit".to_owned()
            } else if removes(leader) {
                return Err(ChangeError::TargetLeads);
            } else {
                match self.attempt(&addr, AdminOp::Change(change.clone())).await {
                    Attempt::Done(AdminReply::Changed { index, .. }) => return Ok(index),
                    Attempt::Done(other) => {
                        return Err(ChangeError::Failed(format!(
                            "the leader answered a membership change with {other:?}"
                        )))
                    }
                    Attempt::Refused(why) => {
                        // The group may have made the change meanwhile, or its leader moved.
                        if let Some(v) = self.view().await {
                            if done(&v) && v.committed {
                                return Ok(v.membership_index);
                            }
                            if v.leader.is_some_and(removes) {
                                return Err(ChangeError::TargetLeads);
                            }
                        }
                        return Err(ChangeError::Failed(format!("the leader refused: {why}")));
                    }
                    Attempt::Retry(why) => why,
                }
            };
            self.wait(&why).await.map_err(ChangeError::Failed)?;
        }
    }

    /// Hands leadership to voter `to` and waits until it leads.
    async fn transfer(&mut self, to: NodeId) -> Result<(), String> {
        loop {
            let (view, leader, addr) = self.leader_view().await?;
            if leader == to {
                return Ok(());
            }
            if !view.is_voter(to) {
                return Err(format!(
                    "node {to} is not a voter (voters: {})",
                    describe(&view.voters, &view.addrs)
                ));
            }
            let why = match self.attempt(&addr, AdminOp::TransferLeader { to }).await {
                Attempt::Done(AdminReply::TransferStarted) => {
                    if self.await_leader(to).await {
                        return Ok(());
                    }
                    format!("node {to} did not take over within {TRANSFER_WAIT:?}; asking again")
                }
                Attempt::Done(other) => {
                    return Err(format!("the leader answered a transfer with {other:?}"))
                }
                Attempt::Refused(why) => return Err(format!("the leader refused: {why}")),
                Attempt::Retry(why) => why,
            };
            self.wait(&why).await?;
        }
    }

    /// Whether `to` is seen leading within [`TRANSFER_WAIT`] (or the deadline).
    async fn await_leader(&mut self, to: NodeId) -> bool {
        let until = (Instant::now() + TRANSFER_WAIT).min(self.deadline);
        while Instant::now() < until {
            if self.view().await.is_some_and(|v| v.leader == Some(to)) {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }

    /// The voter to hand leadership to before removing `leaving`: of the others that answer,
    /// the one that has applied the most (the quickest to catch up), the lowest id on a tie.
    fn transfer_target(&self, view: &ClusterView, leaving: NodeId) -> Result<NodeId, String> {
        (self.heard.iter().map(|(_, s)| s))
            .filter(|s| s.id != leaving && view.is_voter(s.id))
            .max_by_key(|s| (s.applied_index, std::cmp::Reverse(s.id)))
            .map(|s| s.id)
            .ok_or_else(|| {
                format!(
                    "node {leaving} leads and no other voter answers, so leadership cannot be \
                     handed over (voters: {})",
                    describe(&view.voters, &view.addrs)
                )
            })
    }

    async fn print_membership(&mut self) {
        if let Some(v) = self.view().await {
            println!("voters:   {}", describe(&v.voters, &v.addrs));
            println!("learners: {}", describe(&v.learners, &v.addrs));
        }
    }
}
