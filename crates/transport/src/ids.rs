//! Node ids on the wire: how a process names itself in the handshake, and how a dialer knows
//! which id should answer at an address.
//!
//! They live here, below both the servers and the clients, because they are the transport's
//! own terms: its address book is keyed by them, the handshake checks that the node answering
//! at an address has the id the dialer expects, and a replica answers an id's messages on the
//! latest connection from it. Three ranges keep the kinds of node apart:
//!
//! * a replicated group's replicas: small ids chosen by the operator (a founding replica's is
//!   its position in the peer list), below 2³²;
//! * clients (routers, tools, one-off status and admin connections): random in
//!   `[2^32, 2^62)` ([`random_node_id`]), so that clients of different processes and
//!   incarnations never share an id (nor an exactly-once session keyed on it);
//! * servers of the sharded system: a hash of the advertised address in `[2^62, 2^63)`
//!   ([`node_id`]). Such a server must reach servers of groups it learns of only from a
//!   controller configuration, which names them by address, so every process derives the
//!   same id from the same address with no table to share. Two addresses hashing to one id
//!   are refused at start-up ([`node_ids`]); across groups the chance is about n²/2⁶³ for
//!   n servers.

use std::sync::Arc;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::transport::Transport;

/// A random node id for a client connection, outside the range of replica ids (module docs).
pub fn random_node_id() -> u64 {
    rand::thread_rng().gen_range(1 << 32..1 << 62)
}

/// The node id of the sharded-system server advertised at `addr` (module docs): FNV-1a of
/// the address, in `[2^62, 2^63)`.
pub fn node_id(addr: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in addr.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (1 << 62) | (h >> 2)
}

/// Two servers that would share a node id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("servers {first} and {second} have the same node id (the same address twice?)")]
pub struct SameNodeId {
    pub first: String,
    pub second: String,
}

/// Node ids of `addrs`, refusing duplicates (the same address twice, or a hash collision).
pub fn node_ids(addrs: &[String]) -> Result<Vec<u64>, SameNodeId> {
    let ids: Vec<u64> = addrs.iter().map(|a| node_id(a)).collect();
    for (i, id) in ids.iter().enumerate() {
        if let Some(j) = ids[..i].iter().position(|x| x == id) {
            return Err(SameNodeId {
                first: addrs[j].clone(),
                second: addrs[i].clone(),
            });
        }
    }
    Ok(ids)
}

/// Names nodes by address ([`node_id`]) and adds each one `transport` does not yet know to its
/// address book on first use ([`Transport::add_peer`]): a shard server dials another group's
/// servers when it first pulls from or notifies them, and a router a group's servers when a
/// key first maps there. Holds the transport weakly (the transport delivers to the process
/// that holds this), and must be called inside the runtime, after the transport's
/// `dial_peers`.
pub fn dialing<M>(transport: &Arc<Transport<M>>) -> impl Fn(&str) -> u64 + Send + Sync + 'static
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let t = Arc::downgrade(transport);
    move |name: &str| {
        let id = node_id(name);
        if let Some(t) = t.upgrade() {
            t.add_peer(id, name);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_above_client_ids_and_duplicates_are_refused() {
        let a = node_id("127.0.0.1:7101");
        assert_eq!(a, node_id("127.0.0.1:7101"));
        assert_ne!(a, node_id("127.0.0.1:7102"));
        for addr in ["127.0.0.1:7101", "10.0.0.7:7104", "", "host.example:1"] {
            let id = node_id(addr);
            assert!((1 << 62..1 << 63).contains(&id), "{addr}: {id}");
        }
        for _ in 0..1000 {
            let id = random_node_id();
            assert!((1 << 32..1 << 62).contains(&id), "{id}");
        }
        let addrs = vec!["a:1".to_owned(), "b:1".to_owned(), "a:1".to_owned()];
        let e = node_ids(&addrs).unwrap_err();
        assert_eq!((e.first.as_str(), e.second.as_str()), ("a:1", "a:1"));
        assert!(e.to_string().contains("a:1 and a:1"), "{e}");
        assert_eq!(node_ids(&addrs[..2]).unwrap().len(), 2);
    }
}
