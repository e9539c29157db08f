//! Static configuration of one Raft peer. Times are counted in ticks; the driver decides how
//! long a tick is (Flotilla's drivers use 10 ms).
//!
//! ## How the three timers relate
//! `heartbeat_ticks < election_timeout_min_ticks <= election_timeout_max_ticks` (checked).
//! * A leader sends every follower an AppendEntries every `heartbeat_ticks`.
//! * A follower that hears nothing from a leader for a random time in
//!   `election_timeout_min_ticks..=election_timeout_max_ticks` (drawn anew each time its timer
//!   restarts) starts an election, or with `pre_vote` a pre-vote round.
//! * `election_timeout_min_ticks` is also the *lease*: a follower that heard from its leader
//!   less than this long ago refuses pre-votes (and, with `check_quorum`, ignores requests
//!   for votes), and a `check_quorum` leader steps down once it has not heard from a majority
//!   for this long. The minimum, not the random timeout, because it is the one bound every
//!   peer agrees on: no follower campaigns sooner than that after hearing from its leader, so
//!   a leader cut off from the majority steps down at about the time the majority can first
//!   elect another. (About: ticks are not synchronised and a follower's last AppendEntries
//!   precedes its reply, so this is no basis for read leases; [`ReadMode::Lease`] uses a
//!   shorter lease, measured from when the leader *sent* what a majority answered.)
//!
//! The minimum should span several heartbeats (Flotilla uses 3): with check-quorum, a leader
//! that misses every reply of a majority over one minimum timeout steps down.
//!
//! ## Reads
//! [`Config::read_mode`] says how a service serves reads; see [`ReadMode`] and
//! [`crate::Raft::read_index`].

use crate::error::ConfigError;
use crate::NodeId;

#[derive(Clone, Debug)]
pub struct Config {
    /// This peer's id; must appear in `voters` unless `voters` is empty.
    pub id: NodeId,
    /// The boot configuration: every voting member, this peer included, used until the log
    /// or a snapshot holds a membership (see [`crate::Membership`]). Every founding peer must
    /// be given the same set. Empty for a peer that joins a running cluster: it waits,
    /// never campaigning, until a leader that added it sends it the log or a snapshot.
    pub voters: Vec<NodeId>,
    /// Lower bound of the randomised election timeout, in ticks.
    pub election_timeout_min_ticks: u32,
    /// Upper bound (inclusive) of the randomised election timeout, in ticks.
    pub election_timeout_max_ticks: u32,
    /// A leader sends AppendEntries to every follower this often, even with nothing new.
    pub heartbeat_ticks: u32,
    /// Upper bound of entry payload bytes in one AppendEntries (one entry is always allowed).
    pub max_append_bytes: usize,
    /// Bytes of AppendEntries payload a leader keeps in flight to one follower (besides the
    /// count `max_inflight_appends`). A new message takes at most what is left of it (but
    /// always one entry), so a slow follower holds at most this much, plus one entry, queued
    /// in the transport for it since its window last restarted (see `Raft::tick`).
    pub max_inflight_bytes: usize,
    /// Largest payload of one InstallSnapshot chunk ([`crate::Message::InstallSnapshot`]):
    /// a snapshot travels as a sequence of chunks of at most this many bytes.
    pub snapshot_chunk_bytes: usize,
    /// Bytes of snapshot chunks a leader keeps in flight to one follower (at least one chunk
    /// is always allowed). Chunks beyond it wait for acknowledgements.
    pub max_snapshot_inflight_bytes: usize,
    /// A leader refuses proposals ([`crate::ProposeError::Busy`]) while the data of its
    /// uncommitted log tail exceeds this (etcd's `MaxUncommittedEntriesSize`): when followers
    /// lag, clients are pushed back instead of the leader's memory growing. An entry is
    /// always admitted when the tail holds no data, so a large one still goes.
    pub max_uncommitted_bytes: usize,
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
    /// Pre-vote (Ongaro's thesis §9.6). When its election timer fires, a peer first asks every
    /// voter whether it *would* vote for it in the next term (`Message::PreVote`), without
    /// raising its term or voting; only with a majority of grants does it start a real
    /// election. A voter grants when the asker's log is at least as up to date as its own and
    /// it has not heard from a live leader within `election_timeout_min_ticks`. So a peer that
    /// was cut off and rejoins, or one that only lost its link to the leader, cannot raise the
    /// cluster's term and depose a working leader. All peers of a cluster should agree on it
    /// (a peer without it still answers pre-votes correctly).
    pub pre_vote: bool,
    /// Check-quorum (thesis §6.2) with leader stickiness (§4.2.3, etcd's `CheckQuorum`).
    /// A leader that has not received a reply of its term from a majority of voters (itself
    /// included) within the last `election_timeout_min_ticks` steps down to follower in the
    /// same term, checked every tick; so a leader cut off from the majority stops claiming
    /// leadership. And a peer that heard from a live leader within `election_timeout_min_ticks`
    /// (or is that leader) ignores requests for votes: it neither grants nor adopts their term,
    /// so a peer that lost only its link to the leader cannot depose it.
    pub check_quorum: bool,
    /// How the service above serves reads ([`ReadMode`]): through the log, by ReadIndex (the
    /// services' default) or, opt-in, by a leader lease. The core's part is
    /// [`crate::Raft::read_index`], which all three modes may call; the mode changes whether
    /// a lease may answer without a heartbeat round.
    pub read_mode: ReadMode,
    /// [`ReadMode::Lease`] only: how many ticks shorter than `election_timeout_min_ticks` the
    /// read lease is, to absorb clock drift between peers (see [`ReadMode::Lease`] for the
    /// bound it assumes). At least 1: ticks are discrete, so even perfectly synchronised
    /// clocks need one tick of margin. Must be below `election_timeout_min_ticks`.
    pub lease_drift_margin_ticks: u32,
    /// Test-only: breaks the core on purpose, to show that the scenarios catch the breakage.
    /// Exists only with the `sabotage` feature (which only the lab crates turn on) and in
    /// this crate's own tests: production builds can neither set it nor carry the broken
    /// branches (see `sabotaged!`).
    #[cfg(any(test, feature = "sabotage"))]
    #[doc(hidden)]
    pub sabotage: Option<Sabotage>,
}

/// How a replicated service answers read-only commands. Every mode is linearizable; they
/// differ in cost and in what they assume.
///
/// * `Log`: a read is proposed and committed like a write, and answered when applied (the
///   labs' way). Costs a log append, a replication round and an fsync per batch of reads.
/// * `ReadIndex` (Ongaro's thesis §6.4): the leader notes its commit index, confirms with one
///   heartbeat round that a majority still follows it (one round serves every read that
///   arrived since the previous round), and the service answers once it has applied that
///   index. No log write; one round trip. Assumes nothing about clocks.
/// * `Lease` (thesis §6.4.1): a leader that a majority answered recently answers at its commit
///   index at once, without a round; otherwise it falls back to ReadIndex. The lease lasts
///   `election_timeout_min_ticks - lease_drift_margin_ticks` ticks from the tick at which the
///   leader **sent** the latest heartbeat round a majority answered. It is safe because every
///   peer that answered restarted its election timer on receiving that round, after it was
///   sent, and (with [`Config::check_quorum`]'s stickiness and pre-vote's lease check) grants
///   no vote until `election_timeout_min_ticks` of *its own* ticks have passed; so no other
///   leader can be elected while the lease lasts, **provided the peers' ticks do not drift
///   apart by more than `lease_drift_margin_ticks - 1` ticks over one minimum election
///   timeout** (one of the margin's ticks absorbs that ticks are discrete). A stalled leader
///   whose driver skips the ticks it missed counts as drift: its ticks then fall behind real
///   time by the stall. A peer restarted in this mode also grants no vote for its first
///   `election_timeout_min_ticks` (it may have answered a round it no longer remembers).
///   Requires `check_quorum` (a validation error otherwise): without stickiness, a follower
///   that answered the round can vote for a candidate at once. Opt-in.
///
/// Every peer of a cluster should run the same mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    Log,
    ReadIndex,
    Lease,
}

/// Ways to break the core on purpose (see [`Config::sabotage`]). Test-only: exists only with
/// the `sabotage` feature and in this crate's tests.
#[cfg(any(test, feature = "sabotage"))]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// A `PreVote` with a higher term makes its receiver adopt that term, as a `RequestVote`
    /// would (the rule pre-vote must not follow).
    PreVoteBumpsTerm,
    /// Voters grant pre-votes on the log check alone, even while they hear from a live leader.
    PreVoteIgnoresLease,
    /// ReadIndex without its heartbeat round: a leader answers a read at its commit index as
    /// soon as its term's entry is committed, trusting that it still leads.
    ReadsWithoutRound,
    /// Lets [`ReadMode::Lease`] pass validation without `check_quorum` (so with followers
    /// that vote for a candidate while the leader's lease lasts).
    LeaseWithoutCheckQuorum,
    /// A leader transfer's election ([`crate::Message::TransferVote`]) is handled like an
    /// ordinary `RequestVote`: followers in the old leader's lease (and the old leader itself)
    /// ignore it under check-quorum, so the transfer never completes.
    TransferVoteNotForced,
    /// A leader accepts a membership change while the previous one is still uncommitted, so
    /// two changes can together move the majority by two voters.
    ConcurrentMembershipChanges,
    /// A new leader accepts a membership change before it has committed an entry of its own
    /// term (the single-server change bug the thesis's 2015 correction fixes).
    MembershipChangeBeforeTermCommit,
}

/// `sabotaged!(cfg, Variant)`: whether `cfg` (a [`Config`]) breaks the core in that way on
/// purpose. Without the `sabotage` feature (outside this crate's tests) it is the constant
/// `false` and names no [`Sabotage`], so the broken branches compile away.
macro_rules! sabotaged {
    ($cfg:expr, $which:ident) => {{
        #[cfg(any(test, feature = "sabotage"))]
        let on = $cfg.sabotage == Some($crate::Sabotage::$which);
        #[cfg(not(any(test, feature = "sabotage")))]
        let on = {
            let _ = &$cfg;
            false
        };
        on
    }};
}
pub(crate) use sabotaged;

/// The default [`Config::max_append_bytes`]. Transports check that an AppendEntries of this
/// many bytes plus one entry of the largest command fits in one of their frames.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 256 * 1024;

/// The default [`Config::snapshot_chunk_bytes`]: 1 MiB less 64 KiB. Transports cut their
/// batches at 1 MiB; a chunk plus its message's other fields (terms, indices, offsets and the
/// membership, whose addresses are the only part that grows: 64 KiB is room for hundreds of
/// members) then fits in one batch alone, so a chunk never needs a frame of its own beyond
/// the batch budget, and a heartbeat or an AppendEntries never waits behind more than one
/// chunk. Transports assert it.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: usize = (1 << 20) - (64 << 10);

/// The default [`Config::max_snapshot_inflight_bytes`]: four chunks, enough to keep a
/// loopback or LAN link busy while the follower appends what arrived.
pub const DEFAULT_MAX_SNAPSHOT_INFLIGHT_BYTES: usize = 4 * DEFAULT_SNAPSHOT_CHUNK_BYTES;

/// The default [`Config::max_inflight_bytes`]: 8 MiB per follower (32 full AppendEntries).
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 8 << 20;

/// The default [`Config::max_uncommitted_bytes`]: 64 MiB.
pub const DEFAULT_MAX_UNCOMMITTED_BYTES: usize = 64 << 20;

impl Config {
    /// The defaults Flotilla uses with a 10 ms tick: elections after 300–600 ms of silence,
    /// heartbeats every 100 ms (10 per second per peer, the labs' ceiling). This is the labs'
    /// Raft: pre-vote and check-quorum are off, so the lab scenarios see the paper's elections.
    pub fn new(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Self {
        Config {
            id,
            voters,
            election_timeout_min_ticks: 30,
            election_timeout_max_ticks: 60,
            heartbeat_ticks: 10,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            snapshot_chunk_bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES,
            max_snapshot_inflight_bytes: DEFAULT_MAX_SNAPSHOT_INFLIGHT_BYTES,
            max_uncommitted_bytes: DEFAULT_MAX_UNCOMMITTED_BYTES,
            seed,
            leader_noop: false,
            max_inflight_appends: 1,
            pre_vote: false,
            check_quorum: false,
            read_mode: ReadMode::Log,
            lease_drift_margin_ticks: 5,
            #[cfg(any(test, feature = "sabotage"))]
            sabotage: None,
        }
    }

    /// The settings for a peer under a replicated service: as [`Config::new`], with the
    /// leader no-op on, up to 16 AppendEntries in flight per follower, pre-vote and
    /// check-quorum on, and reads by [`ReadMode::ReadIndex`].
    pub fn for_service(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Self {
        Config {
            leader_noop: true,
            max_inflight_appends: 16,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            ..Config::new(id, voters, seed)
        }
    }

    /// The read lease in ticks ([`ReadMode::Lease`]): the minimum election timeout less the
    /// drift margin.
    pub fn lease_ticks(&self) -> u32 {
        self.election_timeout_min_ticks
            .saturating_sub(self.lease_drift_margin_ticks)
    }

    /// Whether the configuration is usable; the error names the rule it breaks. Drivers that
    /// build a configuration from user settings call it to report them;
    /// [`crate::Raft::new`] panics on an unusable one.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter {
                id: self.id,
                voters: self.voters.clone(),
            });
        }
        if !(self.election_timeout_min_ticks > self.heartbeat_ticks
            && self.election_timeout_max_ticks >= self.election_timeout_min_ticks)
        {
            return Err(ConfigError::Timers {
                heartbeat_ticks: self.heartbeat_ticks,
                election_timeout_min_ticks: self.election_timeout_min_ticks,
                election_timeout_max_ticks: self.election_timeout_max_ticks,
            });
        }
        let limits = [
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_inflight_bytes", self.max_inflight_bytes),
            (
                "max_snapshot_inflight_bytes",
                self.max_snapshot_inflight_bytes,
            ),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
        ];
        if let Some(&(setting, _)) = limits.iter().find(|(_, bytes)| *bytes == 0) {
            return Err(ConfigError::ZeroLimit { setting });
        }
        let mut v = self.voters.clone();
        v.sort_unstable();
        v.dedup();
        if v.len() != self.voters.len() {
            return Err(ConfigError::DuplicateVoters {
                voters: self.voters.clone(),
            });
        }
        if self.read_mode == ReadMode::Lease {
            let unchecked = sabotaged!(self, LeaseWithoutCheckQuorum);
            if !self.check_quorum && !unchecked {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            if self.lease_drift_margin_ticks == 0
                || self.lease_drift_margin_ticks >= self.election_timeout_min_ticks
            {
                return Err(ConfigError::LeaseDriftMargin {
                    lease_drift_margin_ticks: self.lease_drift_margin_ticks,
                    election_timeout_min_ticks: self.election_timeout_min_ticks,
                });
            }
        }
        Ok(())
    }

    /// Checks the configuration is usable; a bad one is a programmer error.
    pub(crate) fn validate(&self) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule of [`Config::check`] is reported as its own variant, carrying the values
    /// that break it.
    #[test]
    fn check_names_the_broken_rule() {
        let ids = |v: &[u64]| -> Vec<NodeId> { v.iter().map(|&i| NodeId::new(i)).collect() };
        let ok = Config::new(NodeId::new(1), ids(&[1, 2, 3]), 0);
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            Config::new(NodeId::new(4), ids(&[1, 2, 3]), 0).check(),
            Err(ConfigError::NotAVoter {
                id: NodeId::new(4),
                voters: ids(&[1, 2, 3])
            })
        );
        let slow_heartbeat = Config {
            heartbeat_ticks: 30,
            ..ok.clone()
        };
        assert_eq!(
            slow_heartbeat.check(),
            Err(ConfigError::Timers {
                heartbeat_ticks: 30,
                election_timeout_min_ticks: 30,
                election_timeout_max_ticks: 60
            })
        );
        let no_inflight = Config {
            max_inflight_bytes: 0,
            ..ok.clone()
        };
        assert_eq!(
            no_inflight.check(),
            Err(ConfigError::ZeroLimit {
                setting: "max_inflight_bytes"
            })
        );
        let twice = Config::new(NodeId::new(1), ids(&[1, 2, 2]), 0);
        assert_eq!(
            twice.check(),
            Err(ConfigError::DuplicateVoters {
                voters: ids(&[1, 2, 2])
            })
        );
    }
}
