//! # flotilla-id: who is who
//!
//! [`NodeId`] names a process (a server or a client host) within one deployment or one
//! simulation; it is the id Raft, the `Process` drivers, the simulator and the transport
//! all use. [`alloc`] holds every rule that hands out node ids and clerk
//! ids, with the ranges in one table.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod alloc;

/// A process's identity: a Raft peer, a simulator process, a transport peer.
///
/// On the wire and on disk it is exactly a `u64` (`serde(transparent)`), and it prints as the
/// bare number with `{}` and `{:?}` alike, so logs, status pages and the simulator's traces
/// read (and hash) as they did when ids were plain integers. Which numbers mean what is
/// [`alloc`]'s table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(u64);

impl NodeId {
    pub const fn new(id: u64) -> Self {
        NodeId(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The simulator's process `i`, whose processes are numbered 0..n.
    pub const fn from_index(i: usize) -> Self {
        NodeId(i as u64)
    }

    /// This id as an index into the simulator's per-process arrays. Only for small ids (the
    /// simulator's 0..n, a group's founding replicas' positions): a deployed sharded
    /// server's or a client's id is far beyond any array, and on a 32-bit target it would be
    /// truncated.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for NodeId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(NodeId)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeId;

    #[test]
    fn prints_and_encodes_as_the_bare_number() {
        let id = NodeId::new(4_611_686_018_427_387_904);
        assert_eq!(
            format!("{id} {id:?} {:?}", Some(id)),
            "4611686018427387904 4611686018427387904 Some(4611686018427387904)"
        );
        assert_eq!(
            format!("{:>4?}|{:<3}|", NodeId::new(7), NodeId::new(7)),
            "   7|7  |"
        );
        for raw in [0u64, 1, 127, 128, 1 << 32, u64::MAX] {
            let id = NodeId::new(raw);
            assert_eq!(
                postcard::to_allocvec(&id).unwrap(),
                postcard::to_allocvec(&raw).unwrap()
            );
            // A usize id (the simulator's, before this type) encoded the same way too.
            if let Ok(small) = usize::try_from(raw) {
                assert_eq!(
                    postcard::to_allocvec(&id).unwrap(),
                    postcard::to_allocvec(&small).unwrap()
                );
            }
            let back: NodeId = postcard::from_bytes(&postcard::to_allocvec(&raw).unwrap()).unwrap();
            assert_eq!(back, id);
        }
        assert_eq!("42".parse::<NodeId>(), Ok(NodeId::new(42)));
        assert_eq!(NodeId::from_index(5).index(), 5);
        assert!(NodeId::new(1) < NodeId::new(2));
    }
}
