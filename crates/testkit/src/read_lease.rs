//! The read-lease safety property, checked after every simulator step: while a peer holds a
//! read lease (`Raft::has_read_lease`, [`flotilla_raft::ReadMode::Lease`]) in some term, no
//! peer leads in a newer term. This is what makes lease reads linearizable (Ongaro's thesis
//! §6.4.1): a leader answering from its lease must still be the only leader. It is stronger
//! than the linearizability check, which needs an unlucky write and read to notice.

use std::cell::RefCell;
use std::collections::BTreeMap;

use flotilla_node::NodeId;

/// What one live peer looked like after its latest step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub term: u64,
    pub leader: bool,
    pub lease: bool,
}

/// The latest view of every live peer, and the first overlap seen.
#[derive(Debug, Default)]
pub struct ReadLeaseWatch {
    peers: RefCell<BTreeMap<NodeId, PeerView>>,
    /// Steps after which a lease and a newer leader overlapped.
    overlaps: RefCell<usize>,
    first: RefCell<Option<String>>,
}

impl ReadLeaseWatch {
    /// Records peer `i`'s view after a step, and checks it against the others'.
    pub fn observe(&self, i: NodeId, view: PeerView) {
        let mut peers = self.peers.borrow_mut();
        peers.insert(i, view);
        let holder = peers.iter().find(|(_, v)| v.lease);
        let Some((&h, hv)) = holder else { return };
        let newer = peers.iter().find(|(_, v)| v.leader && v.term > hv.term);
        if let Some((&l, lv)) = newer {
            *self.overlaps.borrow_mut() += 1;
            let mut first = self.first.borrow_mut();
            if first.is_none() {
                *first = Some(format!(
                    "peer {h} holds a read lease in term {} while peer {l} leads term {}",
                    hv.term, lv.term
                ));
            }
        }
    }

    /// Peer `i` crashed: it answers nothing until it restarts, as a follower.
    pub fn forget(&self, i: NodeId) {
        self.peers.borrow_mut().remove(&i);
    }

    /// How many steps ended with a lease and a newer leader at once.
    pub fn overlaps(&self) -> usize {
        *self.overlaps.borrow()
    }

    /// The first overlap, described.
    pub fn first_overlap(&self) -> Option<String> {
        self.first.borrow().clone()
    }

    /// Panics with the first overlap, if any.
    pub fn check(&self) {
        if let Some(first) = self.first_overlap() {
            panic!(
                "read lease safety: {first} ({} steps in all)",
                self.overlaps()
            );
        }
    }
}
