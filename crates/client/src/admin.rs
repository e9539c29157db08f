//! What operators' tools and the router ask of a running group: the statuses of many nodes
//! at once, what they say together about the group (its newest membership, every member's
//! address, its leader), and admin requests (membership changes, leader transfer) to the
//! leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_rsm::{AdminError, AdminOp, AdminReply, AdminRequest, Msg};
use serde::de::DeserializeOwned;
use serde::Serialize;

use flotilla_id::NodeId;
use flotilla_transport::frame::{Frame, NodeStatus, MAX_FRAME};
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{connect_authenticated, fetch_status};
use flotilla_transport::Secret;

use crate::client::random_node_id;
use crate::ClientError;

/// Asks every address in `addrs` for its status at once; each answer (or why there is none)
/// in the order of `addrs`.
pub async fn survey<M>(
    addrs: &[String],
    secret: &Secret,
    tls: Option<Arc<PeerTls>>,
    limit: Duration,
) -> Vec<Result<NodeStatus, ClientError>>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let asks: Vec<_> = (addrs.iter())
        .map(|a| {
            let (a, secret, tls) = (a.clone(), secret.clone(), tls.clone());
            tokio::spawn(async move {
                // A fresh id per connection: a replica answers an id's messages on the latest
                // connection from it, so sharing one with a live client would divert its replies.
                let ask = fetch_status::<M>(&a, &secret, random_node_id(), tls.as_deref());
                match tokio::time::timeout(limit, ask).await {
                    Ok(r) => Ok(r?),
                    Err(_) => Err(ClientError::Timeout(limit)),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(asks.len());
    for a in asks {
        out.push(a.await.unwrap_or_else(|e| Err(e.into())));
    }
    out
}

/// What the nodes that answered say about their group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The leader of the highest term any node says it leads, if one answered.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The membership: the leader's, else the newest (highest index) any node holds.
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Log index of the entry that set it, and whether its holder knows it committed.
    pub membership_index: u64,
    pub committed: bool,
    /// Every member's address, as far as known: where it answered, else what the others say.
    pub addrs: BTreeMap<NodeId, String>,
}

impl ClusterView {
    /// The view from the statuses in `answers` (each with the address it came from); `None`
    /// if there are none.
    pub fn of(answers: &[(String, NodeStatus)]) -> Option<ClusterView> {
        let leader = (answers.iter().map(|(_, s)| s))
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term);
        let newest = (answers.iter().map(|(_, s)| s)).max_by_key(|s| s.membership_index)?;
        let holder = leader.unwrap_or(newest);
        let mut addrs = BTreeMap::new();
        // Older views first, so newer ones and the addresses nodes answered at win.
        let mut by_age: Vec<&NodeStatus> = answers.iter().map(|(_, s)| s).collect();
        by_age.sort_by_key(|s| s.membership_index);
        for s in by_age.into_iter().chain([holder]) {
            addrs.extend(s.addrs.clone());
        }
        for (addr, s) in answers {
            addrs.insert(s.id, addr.clone());
        }
        let members = |id: &NodeId| holder.voters.contains(id) || holder.learners.contains(id);
        addrs.retain(|id, _| members(id));
        Some(ClusterView {
            leader: leader.map(|s| s.id),
            term: answers.iter().map(|(_, s)| s.term).max().unwrap_or(0),
            voters: holder.voters.clone(),
            learners: holder.learners.clone(),
            membership_index: holder.membership_index,
            committed: holder.membership_committed(),
            addrs,
        })
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }
}

/// Sends one admin request to the replica at `addr` and waits up to `limit` for its answer.
/// `C` and `R` are the service's command and reply types (its `Msg<C, R>`).
pub async fn admin_request<C, R>(
    addr: &str,
    secret: &Secret,
    tls: Option<&PeerTls>,
    op: AdminOp,
    limit: Duration,
) -> Result<Result<AdminReply, AdminError>, ClientError>
where
    C: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let id = random_node_id().get();
    let ask = async {
        // A fresh node id: the replica answers on the latest connection from that id.
        let mut s = connect_authenticated::<Msg<C, R>>(addr, secret, random_node_id(), tls).await?;
        let req: Frame<Msg<C, R>> = Frame::Msgs(vec![Msg::Admin(AdminRequest { id, op })]);
        flotilla_wire::write_frame(&mut s, &req).await?;
        loop {
            match flotilla_wire::read_frame::<_, Frame<Msg<C, R>>>(&mut s, MAX_FRAME).await? {
                Frame::Msgs(msgs) => {
                    for m in msgs {
                        if let Msg::AdminResponse(r) = m {
                            if r.id == id {
                                return Ok(r.result);
                            }
                        }
                    }
                }
                _ => {
                    return Err(ClientError::Unexpected {
                        peer: addr.to_owned(),
                        answer: "a frame other than messages, to an admin request".into(),
                    })
                }
            }
        }
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, role: &str, term: u64, index: u64, voters: &[u64]) -> NodeStatus {
        NodeStatus {
            id: NodeId::new(id),
            role: role.into(),
            term,
            commit_index: 100,
            membership_index: index,
            voters: voters.iter().copied().map(NodeId::new).collect(),
            addrs: voters
                .iter()
                .map(|&v| (NodeId::new(v), format!("seen-by-{id}:{v}")))
                .collect(),
            ..NodeStatus::default()
        }
    }

    /// The leader's membership wins over a newer one elsewhere; a member's address is where
    /// it answered; members of older memberships are left out.
    #[test]
    fn the_view_takes_the_leaders_membership_and_answered_addresses() {
        let answers = vec![
            ("a0".to_owned(), status(0, "follower", 3, 5, &[0, 1, 2])),
            ("a1".to_owned(), status(1, "leader", 3, 9, &[0, 1, 3])),
            ("a3".to_owned(), status(3, "follower", 2, 12, &[0, 1, 3, 4])),
        ];
        let n = NodeId::new;
        let v = ClusterView::of(&answers).unwrap();
        assert_eq!((v.leader, v.term), (Some(n(1)), 3));
        assert_eq!(
            (v.voters.clone(), v.membership_index),
            (vec![n(0), n(1), n(3)], 9)
        );
        assert!(v.committed);
        let addrs: Vec<(NodeId, &str)> = v.addrs.iter().map(|(&k, a)| (k, a.as_str())).collect();
        assert_eq!(addrs, vec![(n(0), "a0"), (n(1), "a1"), (n(3), "a3")]);
        assert!(ClusterView::of(&[]).is_none());
    }
}
