//! Every rule that hands out a node id or a clerk id, in one place.
//!
//! Ids are never negotiated: each process derives or draws its own, and the ranges below keep
//! ids of different kinds from meeting.
//!
//! **Node ids** ([`NodeId`]), one space per deployment or simulation:
//!
//! | range            | who                                               | rule                        |
//! |------------------|---------------------------------------------------|-----------------------------|
//! | `[0, 2^32)`      | a replica of a single group (`flotilla up`, `flotilla server --role kv`): its position in the founding peers, or the id the operator gives a joining one; a simulator process: its index 0..n | [`NodeId::from_index`], the operator |
//! | `[2^32, 2^62)`   | a client host on TCP (router, `flotilla ctl`), random | [`client_node_id`]      |
//! | `[2^62, 2^63)`   | a server of the sharded system (controller or group replica): FNV-1a of its advertised address | [`server_node_id`], [`server_node_ids`] |
//! | `[2^63, 2^64)`   | unused                                            |                             |
//!
//! A sharded server must reach servers of groups it learns of only from a configuration,
//! which names them by address, and a dialer checks that the node answering at an address has
//! the id it expects; so every process derives the same id from the same address with no
//! table to share. Two addresses hashing to one id are refused where a list of them is known
//! ([`server_node_ids`]); across groups the chance is about n²/2⁶³ for n servers. Clients
//! draw at random from a range no server id is in.
//!
//! **Clerk ids** (`flotilla_rsm::ClientId`, a `u64`): the key of a clerk's exactly-once
//! session at the replicas it calls, so unique among the clients of one replicated service.
//!
//! | range                           | who                                              | rule                       |
//! |---------------------------------|--------------------------------------------------|----------------------------|
//! | `[1, 2^62)`                     | first clerk of a TCP client host of a single group (clerks count up from it) | [`group_clerk_base`] |
//! | `[1, 2^61)`                     | first shard clerk of a TCP client host of the sharded system | [`shard_clerk_base`] |
//! | `[2^61, 2^62)`                  | first controller clerk of that host                | [`ctrl_clerk_base`]        |
//! | `[2^62, 2^63)`                  | a shard group replica's own controller clerk       | [`server_ctrl_clerk`]      |
//! | `[0, 2^48 + 2^40)` (simulator)  | a simulated client host's clerks: from its seed; the sharded tester's controller clerks `2^40` above | [`sim_clerk_base`], [`sim_ctrl_clerk_base`] |
//!
//! The first two rows serve different services (a single group, or the sharded system), so
//! their overlap is harmless. A client host's clerks count up from the base by one per clerk:
//! a random base leaves billions of ids of room below the next range, and two hosts' clerk
//! ranges meet only if their bases fall within that many ids of each other (about one in 2^30
//! for two hosts). Shard servers' controller clerks sit above every client's, so a server and
//! a router never share a session at the controller.

use std::fmt;

use crate::NodeId;

/// The first id of clients' random node ids.
pub const CLIENT_NODE_IDS_START: u64 = 1 << 32;
/// The first id of sharded servers' hashed node ids (and the end of clients').
pub const SERVER_NODE_IDS_START: u64 = 1 << 62;
/// The end (exclusive) of sharded servers' node ids.
pub const SERVER_NODE_IDS_END: u64 = 1 << 63;
/// The end (exclusive) of shard clerks' bases and start of controller clerks'.
pub const CTRL_CLERK_IDS_START: u64 = 1 << 61;
/// The end (exclusive) of TCP client hosts' clerk bases; shard servers' controller clerks
/// start here.
pub const SERVER_CTRL_CLERK_IDS_START: u64 = 1 << 62;
/// How far above a simulated host's shard clerks its controller clerks start.
pub const SIM_CTRL_CLERK_OFFSET: u64 = 1 << 40;

/// The node id of the sharded-system server advertised at `addr`: FNV-1a of the address, in
/// `[2^62, 2^63)`. The same address gives the same id in every process and every version:
/// servers of one deployment compute each other's ids.
pub fn server_node_id(addr: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in addr.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    NodeId::new(SERVER_NODE_IDS_START | (h >> 2))
}

/// Two servers of one list given the same node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateNodeId {
    pub first: String,
    pub second: String,
    pub id: NodeId,
}

impl fmt::Display for DuplicateNodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "servers {} and {} have the same node id (the same address twice?)",
            self.first, self.second
        )
    }
}

impl std::error::Error for DuplicateNodeId {}

/// [`server_node_id`] of each of `addrs`, in order, refusing duplicates (the same address
/// twice, or two addresses hashing to one id).
pub fn server_node_ids(addrs: &[String]) -> Result<Vec<NodeId>, DuplicateNodeId> {
    let ids: Vec<NodeId> = addrs.iter().map(|a| server_node_id(a)).collect();
    for (i, id) in ids.iter().enumerate() {
        if let Some(j) = ids[..i].iter().position(|x| x == id) {
            return Err(DuplicateNodeId {
                first: addrs[j].clone(),
                second: addrs[i].clone(),
                id: *id,
            });
        }
    }
    Ok(ids)
}

/// An id an operator gave a replica of a single group, outside the replicas' range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaIdOutOfRange {
    pub id: u64,
}

impl fmt::Display for ReplicaIdOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica id {} is too large: a single group's replica ids are below {} (ids above \
             are clients')",
            self.id, CLIENT_NODE_IDS_START
        )
    }
}

impl std::error::Error for ReplicaIdOutOfRange {}

/// The node id of a single group's replica that an operator names (`flotilla server --id`,
/// `flotilla ctl add-node`): refused at or above `2^32`, where it could be a client's.
pub fn replica_node_id(id: u64) -> Result<NodeId, ReplicaIdOutOfRange> {
    if id < CLIENT_NODE_IDS_START {
        Ok(NodeId::new(id))
    } else {
        Err(ReplicaIdOutOfRange { id })
    }
}

/// A client host's node id on TCP: random in `[2^32, 2^62)`, above any single group's replica
/// ids and below every sharded server's.
#[cfg(feature = "rand")]
pub fn client_node_id(rng: &mut (impl rand::Rng + ?Sized)) -> NodeId {
    NodeId::new(rng.gen_range(CLIENT_NODE_IDS_START..SERVER_NODE_IDS_START))
}

/// The first clerk id of a TCP client host of a single group: random in `[1, 2^62)`.
#[cfg(feature = "rand")]
pub fn group_clerk_base(rng: &mut (impl rand::Rng + ?Sized)) -> u64 {
    rng.gen_range(1..SERVER_CTRL_CLERK_IDS_START)
}

/// The first shard clerk id of a TCP client host of the sharded system: random in
/// `[1, 2^61)`.
#[cfg(feature = "rand")]
pub fn shard_clerk_base(rng: &mut (impl rand::Rng + ?Sized)) -> u64 {
    rng.gen_range(1..CTRL_CLERK_IDS_START)
}

/// The first controller clerk id of a TCP client host of the sharded system: random in
/// `[2^61, 2^62)`.
#[cfg(feature = "rand")]
pub fn ctrl_clerk_base(rng: &mut (impl rand::Rng + ?Sized)) -> u64 {
    rng.gen_range(CTRL_CLERK_IDS_START..SERVER_CTRL_CLERK_IDS_START)
}

/// The id of the controller clerk of shard group `gid`'s replica `server`: in `[2^62, 2^63)`,
/// above every client's, and unique among the controller's clients.
///
/// A deployed server's node id is already in that range and unique in its deployment
/// ([`server_node_id`]), so it is its own clerk id. A simulated server's is a small index
/// (below 2^16), which the group id (below 2^46) is put above: `2^62 | gid << 16 | index`.
pub fn server_ctrl_clerk(gid: u64, server: NodeId) -> u64 {
    let id = server.get();
    if (SERVER_NODE_IDS_START..SERVER_NODE_IDS_END).contains(&id) {
        id
    } else {
        SERVER_CTRL_CLERK_IDS_START | (gid << 16) | id
    }
}

/// The first clerk id of a simulated client host whose process seed is `seed`: replayable
/// from the seed, distinct across hosts and runs, in `[0, 2^48)`.
pub fn sim_clerk_base(seed: u64) -> u64 {
    seed >> 16
}

/// The first controller clerk id of a simulated sharded client host: 2^40 above its shard
/// clerks' [`sim_clerk_base`].
pub fn sim_ctrl_clerk_base(seed: u64) -> u64 {
    sim_clerk_base(seed) + SIM_CTRL_CLERK_OFFSET
}

#[cfg(test)]
mod tests {
    #[test]
    fn operators_replica_ids_stay_below_clients() {
        assert_eq!(super::replica_node_id(0), Ok(super::NodeId::new(0)));
        let last = super::CLIENT_NODE_IDS_START - 1;
        assert_eq!(super::replica_node_id(last), Ok(super::NodeId::new(last)));
        let first_client = super::CLIENT_NODE_IDS_START;
        assert_eq!(
            super::replica_node_id(first_client),
            Err(super::ReplicaIdOutOfRange { id: first_client })
        );
        assert!(super::replica_node_id(u64::MAX).is_err());
    }

    use super::*;
    use rand::rngs::mock::StepRng;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::ops::Range;

    const NODE_RANGES: [(&str, Range<u64>); 3] = [
        ("single-group replicas, simulator", 0..CLIENT_NODE_IDS_START),
        ("clients", CLIENT_NODE_IDS_START..SERVER_NODE_IDS_START),
        (
            "sharded servers",
            SERVER_NODE_IDS_START..SERVER_NODE_IDS_END,
        ),
    ];

    fn disjoint(ranges: &[(&str, Range<u64>)]) {
        for (i, (a, ra)) in ranges.iter().enumerate() {
            assert!(!ra.is_empty(), "{a}: empty range");
            for (b, rb) in &ranges[i + 1..] {
                assert!(
                    ra.end <= rb.start || rb.end <= ra.start,
                    "{a} {ra:?} and {b} {rb:?} overlap"
                );
            }
        }
    }

    #[test]
    fn node_id_ranges_are_disjoint() {
        disjoint(&NODE_RANGES);
    }

    #[test]
    fn clerk_id_ranges_that_meet_one_service_are_disjoint() {
        let sim_end = sim_clerk_base(u64::MAX) + SIM_CTRL_CLERK_OFFSET + 1;
        // The sharded system's controller: routers' controller clerks, servers' own.
        disjoint(&[
            (
                "routers' ctrl clerks",
                CTRL_CLERK_IDS_START..SERVER_CTRL_CLERK_IDS_START,
            ),
            (
                "servers' ctrl clerks",
                SERVER_CTRL_CLERK_IDS_START..SERVER_NODE_IDS_END,
            ),
        ]);
        // The simulated controller: the tester's clerks, the simulated servers'.
        disjoint(&[
            ("simulated clerks", 0..sim_end),
            (
                "servers' ctrl clerks",
                SERVER_CTRL_CLERK_IDS_START..SERVER_NODE_IDS_END,
            ),
        ]);
        // A host's shard clerks and its controller clerks.
        disjoint(&[
            ("shard clerks", 1..CTRL_CLERK_IDS_START),
            (
                "ctrl clerks",
                CTRL_CLERK_IDS_START..SERVER_CTRL_CLERK_IDS_START,
            ),
        ]);
        assert!(sim_end < CTRL_CLERK_IDS_START);
    }

    #[cfg(feature = "rand")]
    #[test]
    fn random_ids_land_in_their_ranges_even_at_the_ends() {
        // An rng drawing 0 every time gets each range's first id.
        let mut zero = StepRng::new(0, 0);
        assert_eq!(client_node_id(&mut zero).get(), 1 << 32);
        assert_eq!(group_clerk_base(&mut zero), 1);
        assert_eq!(shard_clerk_base(&mut zero), 1);
        assert_eq!(ctrl_clerk_base(&mut zero), 1 << 61);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut lowest, mut highest) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let id = client_node_id(&mut rng).get();
            assert!(NODE_RANGES[1].1.contains(&id), "client node id {id:#x}");
            (lowest, highest) = (lowest.min(id), highest.max(id));
            let c = group_clerk_base(&mut rng);
            assert!((1..1 << 62).contains(&c), "group clerk {c:#x}");
            let c = shard_clerk_base(&mut rng);
            assert!((1..1 << 61).contains(&c), "shard clerk {c:#x}");
            let c = ctrl_clerk_base(&mut rng);
            assert!((1 << 61..1 << 62).contains(&c), "ctrl clerk {c:#x}");
        }
        // The draws spread over the whole range, not a corner of it.
        assert!(
            lowest < 1 << 56 && highest > (1 << 62) - (1 << 56),
            "{lowest:#x} {highest:#x}"
        );
    }

    #[test]
    fn server_ids_are_stable_and_in_range() {
        // Pinned: every process and every version must agree on a server's id.
        assert_eq!(
            server_node_id("").get(),
            (1 << 62) | (0xcbf2_9ce4_8422_2325 >> 2)
        );
        let a = server_node_id("10.0.0.7:7104");
        assert_eq!(a, server_node_id("10.0.0.7:7104"));
        assert_eq!(a.get(), (1 << 62) | (fnv1a(b"10.0.0.7:7104") >> 2));
        assert_ne!(a, server_node_id("10.0.0.7:7105"));
        for addr in ["", "a", "127.0.0.1:1", "[::1]:7001", &"x".repeat(300)] {
            let id = server_node_id(addr).get();
            assert!(NODE_RANGES[2].1.contains(&id), "{addr}: {id:#x}");
        }
    }

    /// FNV-1a written out again, so the test does not merely repeat the code under test.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(14_695_981_039_346_656_037, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
        })
    }

    #[test]
    fn duplicate_servers_are_refused() {
        let addrs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = server_node_ids(&addrs(&["h:1", "h:2", "h:3"])).unwrap();
        assert_eq!(
            ok,
            vec![
                server_node_id("h:1"),
                server_node_id("h:2"),
                server_node_id("h:3")
            ]
        );
        let err = server_node_ids(&addrs(&["h:1", "h:2", "h:1"])).unwrap_err();
        assert_eq!((err.first.as_str(), err.second.as_str()), ("h:1", "h:1"));
        assert_eq!(err.id, server_node_id("h:1"));
        assert!(err.to_string().contains("the same node id"), "{err}");
    }

    #[test]
    fn a_servers_ctrl_clerk_is_above_every_clients() {
        let range = SERVER_CTRL_CLERK_IDS_START..SERVER_NODE_IDS_END;
        // Deployed: the server's own node id.
        for addr in ["10.0.0.7:7104", "b:2"] {
            let me = server_node_id(addr);
            assert_eq!(server_ctrl_clerk(3, me), me.get());
        }
        for id in [SERVER_NODE_IDS_START, SERVER_NODE_IDS_END - 1] {
            assert_eq!(server_ctrl_clerk(1, NodeId::new(id)), id);
        }
        // Simulated: group and index, distinct for every (gid < 2^46, index < 2^16).
        assert_eq!(
            server_ctrl_clerk(100, NodeId::new(7)),
            (1 << 62) | (100 << 16) | 7
        );
        let mut seen = std::collections::BTreeSet::new();
        for gid in [0, 1, 100, 101, (1 << 46) - 1] {
            for i in [0, 1, 2, (1 << 16) - 1] {
                let c = server_ctrl_clerk(gid, NodeId::new(i));
                assert!(range.contains(&c), "gid {gid} index {i}: {c:#x}");
                assert!(seen.insert(c), "gid {gid} index {i}: {c:#x} twice");
            }
        }
    }

    #[test]
    fn simulated_clerks_are_below_every_tcp_controller_clerk() {
        for seed in [0, 1, 1 << 16, u64::MAX] {
            let (s, c) = (sim_clerk_base(seed), sim_ctrl_clerk_base(seed));
            assert!(s < 1 << 48 && c == s + (1 << 40), "seed {seed:#x}");
            assert!(c < CTRL_CLERK_IDS_START);
        }
        assert_eq!(sim_clerk_base(0x1234_5678_9abc_def0), 0x1234_5678_9abc);
    }
}
