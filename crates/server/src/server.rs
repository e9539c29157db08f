//! One replica of a replicated service, on TCP: recovered from its storage, talking to its
//! peers through an authenticated [`Transport`], driven by the [`flotilla_host::driver`] loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_node::Process;
use flotilla_raft::{Config, Membership, NodeId, Raft, ReadMode, Role, SnapshotData};
use flotilla_rsm::{MsgOf, Replica, ReplicaConfig, StateMachine};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::NetError;
use flotilla_host::driver::{self, BatchStats, Durable, Outputs};
use flotilla_host::metrics::Metrics;
use flotilla_transport::frame::NodeStatus;
use flotilla_transport::transport::{Deliver, StatusSource, Transport, TransportConfig};
use flotilla_transport::Secret;

/// The driver's tick, which the Raft timeouts in `Config::for_service` assume (10 ms); the
/// host's, shared with the clients.
pub use flotilla_host::TICK;

/// A sync at least this long is logged: a third of the default election timeout, long
/// enough that followers may start to miss their leader.
const SLOW_SYNC: Duration = Duration::from_millis(100);

/// What one replica needs to know.
#[derive(Clone)]
pub struct ServerConfig {
    /// This replica's id: a founding replica's is its index in `peers`; a joining one's is any
    /// id the group has never used.
    pub id: NodeId,
    /// Addresses by id (the index): the founding replicas', this one's included. A founding
    /// replica boots a group of exactly these. After that, and for a joining replica, it is
    /// only an address book, which each member's address in the membership overrides.
    pub peers: Vec<String>,
    /// Join a running group instead of founding one: boot with no voters and wait, never
    /// campaigning, until a leader adds this replica (`flotilla ctl add-node`); the membership
    /// then comes from the leader's log or snapshot. Ignored once the replica's own storage
    /// holds a membership.
    pub join: bool,
    pub secret: Secret,
    /// Snapshot once the persisted Raft state reaches this many bytes.
    pub max_raft_state: Option<usize>,
    /// When clients' exactly-once sessions expire (`flotilla_rsm::SessionLimits`).
    pub sessions: flotilla_rsm::SessionLimits,
    /// Serve Prometheus metrics here, if set.
    pub metrics: Option<String>,
    /// Mutual TLS between cluster processes, if configured.
    pub tls: Option<Arc<flotilla_transport::tls::PeerTls>>,
    pub timers: Timers,
    /// How reads are served: `ReadIndex` (the default: a heartbeat round per batch of
    /// reads), `Lease` (no round while the leader's lease lasts; assumes bounded clock drift,
    /// see `flotilla_raft::ReadMode`) or `Log` (every read is a log entry).
    pub read_mode: ReadMode,
}

/// Raft's timers on a real replica. A follower that hears nothing from a leader for a random
/// time in `[election_timeout, 2 × election_timeout]` starts an election; a leader sends every
/// follower a heartbeat every `heartbeat` and, with check-quorum, steps down once it has not
/// heard from a majority for `election_timeout`. Both are rounded down to whole ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub heartbeat: Duration,
    pub election_timeout: Duration,
}

impl Default for Timers {
    /// For a LAN, where a round trip takes well under a millisecond and an fsync a few: a
    /// heartbeat every 50 ms, so a leader is missed only after six lost heartbeats in a row,
    /// and a failover (an election timeout plus one election) within about a second.
    fn default() -> Self {
        Timers {
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
        }
    }
}

/// Timers that cannot work together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimersError {
    #[error("the heartbeat interval ({heartbeat:?}) must be at least one tick ({TICK:?})")]
    HeartbeatBelowTick { heartbeat: Duration },
    #[error(
        "the election timeout ({election_timeout:?}) must be at least three heartbeat intervals \
         ({heartbeat:?}): otherwise a follower gives up on a live leader after a single late \
         heartbeat"
    )]
    ElectionTimeoutTooShort {
        election_timeout: Duration,
        heartbeat: Duration,
    },
}

impl Timers {
    /// Checks the timers work together; the error says which rule they break.
    pub fn validate(&self) -> Result<(), TimersError> {
        if self.heartbeat < TICK {
            return Err(TimersError::HeartbeatBelowTick {
                heartbeat: self.heartbeat,
            });
        }
        if self.election_timeout < 3 * self.heartbeat {
            return Err(TimersError::ElectionTimeoutTooShort {
                election_timeout: self.election_timeout,
                heartbeat: self.heartbeat,
            });
        }
        Ok(())
    }

    /// Sets `cfg`'s timer fields (in ticks of [`TICK`]).
    pub fn apply(&self, cfg: &mut Config) {
        let ticks = |d: Duration| (d.as_millis() / TICK.as_millis()) as u32;
        cfg.heartbeat_ticks = ticks(self.heartbeat);
        cfg.election_timeout_min_ticks = ticks(self.election_timeout);
        cfg.election_timeout_max_ticks = 2 * ticks(self.election_timeout);
    }
}

/// What a replica recovered from its storage.
pub struct Recovered {
    pub state: Vec<u8>,
    pub snapshot: SnapshotData,
}

/// Each member's address: the one the membership carries, else `boot`'s entry for its id
/// (members of the boot configuration have none in the membership). Members with neither are
/// left out.
pub fn member_addrs(m: &Membership, boot: &[String]) -> BTreeMap<NodeId, String> {
    (m.members().into_iter())
        .filter_map(|id| {
            let addr = m.addrs.get(&id).or_else(|| boot.get(id.index()));
            addr.map(|a| (id, a.clone()))
        })
        .collect()
}

/// Keeps a replica's transport dialing its group's members as the membership changes.
struct AddressBook {
    me: NodeId,
    /// `ServerConfig::peers`.
    boot: Vec<String>,
    /// The membership last seen committed. Its members stay dialed while a newer one is not
    /// committed, so a member being removed receives the entry that removes it (and stops
    /// campaigning), as the core intends.
    committed: Membership,
    /// The (membership index, committed) the book was last computed for.
    seen: Option<(u64, bool)>,
}

impl AddressBook {
    fn new(me: NodeId, boot: Vec<String>, raft: &Raft) -> Self {
        AddressBook {
            me,
            boot,
            committed: raft.membership().clone(),
            seen: None,
        }
    }

    /// The peers to dial, if they may have changed since the last call.
    fn update(&mut self, raft: &Raft) -> Option<BTreeMap<NodeId, String>> {
        let index = raft.membership_index();
        let key = (index, index <= raft.commit_index());
        if self.seen == Some(key) {
            return None;
        }
        self.seen = Some(key);
        if key.1 {
            self.committed = raft.membership().clone();
        }
        let mut book = member_addrs(&self.committed, &self.boot);
        book.extend(member_addrs(raft.membership(), &self.boot));
        book.remove(&self.me);
        Some(book)
    }
}

/// The status `flotilla ctl status` shows, read from a running replica whose boot address
/// book is `boot`.
pub fn status_of<S: StateMachine>(r: &Replica<S>, boot: &[String]) -> NodeStatus {
    let raft = r.raft();
    let m = raft.membership();
    let me = raft.id();
    let member = if m.is_voter(me) {
        "voter"
    } else if m.is_learner(me) {
        "learner"
    } else {
        "none"
    };
    NodeStatus {
        id: raft.id(),
        pid: std::process::id(),
        role: match raft.role() {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            // Asking for pre-votes: no leader heard from for an election timeout.
            Role::Follower if raft.is_pre_candidate() => "pre-candidate",
            Role::Follower => "follower",
        }
        .to_owned(),
        term: raft.term(),
        leader: raft.leader(),
        commit_index: raft.commit_index(),
        applied_index: r.applied(),
        last_log_index: raft.log().last_index(),
        snapshot_index: raft.log().snapshot_index(),
        state_bytes: r.raft_state_size() as u64,
        snapshot_bytes: raft.snapshot_data().len(),
        metrics: None,
        member: member.to_owned(),
        voters: m.voters.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
        addrs: member_addrs(m, boot),
        membership_index: raft.membership_index(),
        shard: None,
    }
}

/// Runs replica `cfg.id` of the service `machine` until `shutdown` completes or the replica's
/// storage fails. `listener` accepts peers and clients.
pub async fn run_replica<S, D>(
    cfg: ServerConfig,
    machine: S,
    durable: D,
    recovered: Recovered,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError>
where
    S: StateMachine + Send + 'static,
    S::Command: Send + Sync + 'static,
    S::Reply: Send + Sync + 'static,
    D: Durable + 'static,
{
    let voters = if cfg.join {
        Vec::new()
    } else {
        (0..cfg.peers.len()).map(NodeId::from_index).collect()
    };
    let raft = raft_config(cfg.id, voters, &cfg.timers, cfg.read_mode)?;
    let rcfg = ReplicaConfig {
        raft,
        max_raft_state: cfg.max_raft_state,
        sessions: cfg.sessions,
        snapshot_scales_with_state: true,
    };
    let mut replica = Replica::restore(rcfg, machine, &recovered.state, recovered.snapshot)
        .map_err(|e| NetError::Storage(format!("cannot restart from the stored state: {e}")))?;
    replica.set_snapshot_spool(durable.snapshot_spool());
    // Members' addresses come from the membership in use (from the log or snapshot, so a
    // restarted replica finds those added after it first started), else from `peers`.
    let mut book = AddressBook::new(cfg.id, cfg.peers.clone(), replica.raft());
    let peers = book.update(replica.raft()).expect("a first address book");
    if cfg.join && replica.raft().membership().members().is_empty() {
        tracing::info!(
            id = cfg.id.get(),
            "waiting for the group to add this replica"
        );
    }
    let transport: Arc<Transport<MsgOf<S>>> = Transport::new(TransportConfig {
        me: cfg.id,
        secret: cfg.secret.clone(),
        peers,
        tls: cfg.tls.clone(),
    });
    let metrics = serve_metrics(cfg.metrics.as_deref()).await?;
    // After each batch (before its messages leave): follow the membership, export metrics.
    let t = transport.clone();
    let mut watch = RaftWatch::new(metrics);
    let observe: driver::Observer<Replica<S>> = Box::new(move |r: &Replica<S>, b: &BatchStats| {
        if let Some(peers) = book.update(r.raft()) {
            t.set_peers(peers);
        }
        watch.observe(r.raft(), r.applied(), b);
        watch.observe_state(r.state().clients(), r.raft().snapshot_data().len() as usize);
    });
    let metrics_addr = cfg.metrics.clone();
    let boot = cfg.peers.clone();
    let status: StatusOf<Replica<S>> = Arc::new(move |r: &Replica<S>| {
        let mut s = status_of(r, &boot);
        s.metrics = metrics_addr.clone();
        s
    });
    let name = format!("replica-{}", cfg.id);
    host_process(
        &name, replica, durable, transport, observe, status, listener, shutdown,
    )
    .await
}

/// The Raft settings of a service replica: production features on, `timers` and `read_mode`
/// applied, checked.
pub fn raft_config(
    id: NodeId,
    voters: Vec<NodeId>,
    timers: &Timers,
    read_mode: ReadMode,
) -> Result<Config, NetError> {
    let mut raft = Config::for_service(id, voters, rand::thread_rng().gen());
    timers.apply(&mut raft);
    raft.read_mode = read_mode;
    raft.check().map_err(|e| NetError::Config(e.to_string()))?;
    Ok(raft)
}

/// Serves a replica's Prometheus metrics on `addr`, if given.
pub async fn serve_metrics(addr: Option<&str>) -> Result<Option<Arc<Metrics>>, NetError> {
    let Some(addr) = addr else { return Ok(None) };
    let l = TcpListener::bind(addr).await?;
    let m = Metrics::replica();
    tokio::spawn(flotilla_host::metrics::serve(l, m.clone()));
    Ok(Some(m))
}

/// What a Raft replica's driver does after each batch, whatever its service: log every change
/// of term, role or leader (what an operator reads a failover from) and slow syncs, and
/// export metrics.
pub struct RaftWatch {
    seen: Option<(u64, Role, Option<NodeId>)>,
    metrics: Option<Arc<Metrics>>,
}

impl RaftWatch {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        RaftWatch {
            seen: None,
            metrics,
        }
    }

    /// Exports the size of the replicated state's bookkeeping: sessions in the exactly-once
    /// table and the latest snapshot's bytes (both bounded by settings; issue 16).
    pub fn observe_state(&self, sessions: usize, snapshot_bytes: usize) {
        if let Some(m) = &self.metrics {
            m.sessions.set(i64::try_from(sessions).unwrap_or(i64::MAX));
            m.snapshot_bytes
                .set(i64::try_from(snapshot_bytes).unwrap_or(i64::MAX));
        }
    }

    pub fn observe(&mut self, raft: &Raft, applied: u64, b: &BatchStats) {
        if let Some(m) = &self.metrics {
            m.disk_full.set(i64::from(b.disk_full));
        }
        if b.disk_full {
            // The driver has logged it; the Raft state is not durable yet, so not reported.
            return;
        }
        let now = (raft.term(), raft.role(), raft.leader());
        if self.seen != Some(now) {
            self.seen = Some(now);
            tracing::info!(term = now.0, role = ?now.1, leader = ?now.2, "raft state");
        }
        if let Some(d) = b.sync.filter(|d| *d >= SLOW_SYNC) {
            tracing::warn!(
                took_ms = d.as_millis() as u64,
                saves = b.saves,
                "slow fsync: the replica answered nothing meanwhile"
            );
        }
        if let Some(m) = &self.metrics {
            m.term.set(raft.term() as i64);
            m.commit_index.set(raft.commit_index() as i64);
            m.applied_index.set(applied as i64);
            m.is_leader.set(i64::from(raft.is_leader()));
            if let Some(d) = b.sync {
                m.fsync_seconds.observe(d.as_secs_f64());
                m.batch_saves.observe(b.saves as f64);
            }
        }
    }
}

/// How a hosted process describes itself to `flotilla ctl` (read on its own thread).
pub type StatusOf<P> = Arc<dyn Fn(&P) -> NodeStatus + Send + Sync>;

/// Runs `process` (any Flotilla process: a KV replica, a shard controller or shard group
/// replica) on `transport` until `shutdown` completes or its storage fails: the driver loop
/// with `durable` and `observe`, peers dialed, `listener` accepting peers and clients, status
/// requests answered with `status`.
#[allow(clippy::too_many_arguments)]
pub async fn host_process<P, D>(
    name: &str,
    process: P,
    durable: D,
    transport: Arc<Transport<P::Msg>>,
    observe: driver::Observer<P>,
    status: StatusOf<P>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError>
where
    P: Process<Event = ()> + Send + 'static,
    P::Msg: Serialize + DeserializeOwned + Send + Sync + 'static,
    D: Durable + 'static,
{
    let t = transport.clone();
    let outputs = Outputs {
        send: Box::new(move |to, m| t.send(to, m)),
        event: Box::new(|()| {}),
    };
    let (handle, join) =
        driver::spawn_observed(name, process, durable, TICK, outputs, Some(observe));
    let h = handle.clone();
    let deliver: Deliver<P::Msg> = Arc::new(move |from, m| h.deliver(from, m));
    let h = handle.clone();
    let status: StatusSource = Arc::new(move || {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let status = status.clone();
        h.call(move |p: &mut P, _| {
            let _ = tx.send(status(p));
        });
        rx
    });
    // Before any await: the observer may change the peers (`set_peers`, `add_peer`), which
    // needs this, and nothing can change them before the first message arrives, which needs
    // `serve`.
    transport.dial_peers(deliver.clone());
    let server = tokio::spawn(transport.clone().serve(listener, deliver, status));
    tokio::pin!(join);
    let result = tokio::select! {
        () = shutdown => {
            handle.stop();
            (&mut join).await
        }
        r = &mut join => r,
    };
    server.abort();
    match result {
        Ok(r) => r.map_err(NetError::from),
        Err(e) => Err(NetError::Storage(format!("the process task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_become_ticks_and_bad_ones_are_refused() {
        let mut cfg = Config::for_service(
            NodeId::new(0),
            vec![NodeId::new(0), NodeId::new(1), NodeId::new(2)],
            7,
        );
        Timers::default().apply(&mut cfg);
        assert_eq!(
            (
                cfg.heartbeat_ticks,
                cfg.election_timeout_min_ticks,
                cfg.election_timeout_max_ticks
            ),
            (5, 30, 60)
        );
        assert!(Timers::default().validate().is_ok());
        let too_fast = Timers {
            heartbeat: Duration::from_millis(1),
            ..Timers::default()
        };
        let e = too_fast.validate().unwrap_err();
        assert!(matches!(e, TimersError::HeartbeatBelowTick { .. }));
        assert!(e.to_string().contains("one tick"), "{e}");
        let too_short = Timers {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(250),
        };
        let e = too_short.validate().unwrap_err();
        assert!(matches!(e, TimersError::ElectionTimeoutTooShort { .. }));
        assert!(e.to_string().contains("three heartbeat"), "{e}");
    }
}
