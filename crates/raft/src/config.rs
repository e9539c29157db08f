//! Static configuration of one Raft peer. Times are counted in ticks; the driver decides how
//! long a tick is (Flotilla's drivers use 10 ms).

use crate::NodeId;

#[derive(Clone, Debug)]
pub struct Config {
    /// This peer's id; must appear in `voters`.
    pub id: NodeId,
    /// Every voting member, this peer included. All peers must be given the same set.
    pub voters: Vec<NodeId>,
    /// Lower bound of the randomised election timeout, in ticks.
    pub election_timeout_min_ticks: u32,
    /// Upper bound (inclusive) of the randomised election timeout, in ticks.
    pub election_timeout_max_ticks: u32,
    /// A leader sends AppendEntries to every follower this often, even with nothing new.
    pub heartbeat_ticks: u32,
    /// Upper bound of entry payload bytes in one AppendEntries (one entry is always allowed).
    pub max_append_bytes: usize,
    /// Seed for the election-timeout jitter. Give each peer (and each restart) its own.
    pub seed: u64,
    /// A new leader appends an entry of its own term with empty data (Raft §8), so that it
    /// commits everything before it at once and can serve reads through the log promptly,
    /// instead of waiting for the next client command. Services turn it on; the lab's Raft
    /// scenarios leave it off because their index assertions assume no such entry.
    ///
    /// With it on, an applied `Command` with empty data is that no-op: services must ignore
    /// it and never propose empty commands of their own.
    pub leader_noop: bool,
    /// How many AppendEntries a leader keeps in flight to a follower that is replicating
    /// normally. 1 (the labs' behaviour) sends new entries only after the previous message is
    /// answered; more lets replication overlap the follower's disk writes and the network.
    pub max_inflight_appends: u32,
}

impl Config {
    /// The defaults Flotilla uses with a 10 ms tick: elections after 300–600 ms of silence,
    /// heartbeats every 100 ms (10 per second per peer, the labs' ceiling).
    pub fn new(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Self {
        Config {
            id,
            voters,
            election_timeout_min_ticks: 30,
            election_timeout_max_ticks: 60,
            heartbeat_ticks: 10,
            max_append_bytes: 256 * 1024,
            seed,
            leader_noop: false,
            max_inflight_appends: 1,
        }
    }

    /// The settings for a peer under a replicated service: as [`Config::new`], with the
    /// leader no-op on and up to 16 AppendEntries in flight per follower.
    pub fn for_service(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Self {
        Config {
            leader_noop: true,
            max_inflight_appends: 16,
            ..Config::new(id, voters, seed)
        }
    }

    /// Checks the configuration is usable; a bad one is a programmer error.
    pub(crate) fn validate(&self) {
        assert!(
            self.voters.contains(&self.id),
            "raft config: id {} is not among voters {:?}",
            self.id,
            self.voters
        );
        assert!(
            self.election_timeout_min_ticks > self.heartbeat_ticks
                && self.election_timeout_max_ticks >= self.election_timeout_min_ticks,
            "raft config: need heartbeat_ticks < election_timeout_min_ticks <= election_timeout_max_ticks"
        );
        let mut v = self.voters.clone();
        v.sort_unstable();
        v.dedup();
        assert_eq!(
            v.len(),
            self.voters.len(),
            "raft config: duplicate voters {:?}",
            self.voters
        );
    }
}
