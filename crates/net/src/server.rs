//! One replica of a replicated service, on TCP: recovered from its storage, talking to its
//! peers through an authenticated [`Transport`], driven by the [`crate::driver`] loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_raft::{Config, ReadMode, Role};
use flotilla_rsm::{MsgOf, Replica, ReplicaConfig, StateMachine};
use rand::Rng;
use tokio::net::TcpListener;

use crate::driver::{self, BatchStats, Durable, Outputs};
use crate::frame::NodeStatus;
use crate::metrics::Metrics;
use crate::transport::{Deliver, StatusSource, Transport, TransportConfig};
use crate::{NetError, Secret};

/// The driver's tick, which the Raft timeouts in `Config::for_service` assume (10 ms).
pub const TICK: Duration = Duration::from_millis(10);

/// What one replica needs to know.
#[derive(Clone)]
pub struct ServerConfig {
    /// This replica's id: its index in `peers`.
    pub id: u64,
    /// Every replica's address, by id (this one's included).
    pub peers: Vec<String>,
    pub secret: Secret,
    /// Snapshot once the persisted Raft state reaches this many bytes.
    pub max_raft_state: Option<usize>,
    /// Serve Prometheus metrics here, if set.
    pub metrics: Option<String>,
    /// Mutual TLS between cluster processes, if configured.
    pub tls: Option<Arc<crate::tls::PeerTls>>,
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

impl Timers {
    /// Checks the timers work together; the error says which rule they break.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat < TICK {
            return Err(format!(
                "the heartbeat interval ({:?}) must be at least one tick ({TICK:?})",
                self.heartbeat
            ));
        }
        if self.election_timeout < 3 * self.heartbeat {
            return Err(format!(
                "the election timeout ({:?}) must be at least three heartbeat intervals ({:?}): \
                 otherwise a follower gives up on a live leader after a single late heartbeat",
                self.election_timeout, self.heartbeat
            ));
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
    pub snapshot: Vec<u8>,
}

/// The status `flotilla ctl status` shows, read from a running replica.
pub fn status_of<S: StateMachine>(r: &Replica<S>) -> NodeStatus {
    let raft = r.raft();
    NodeStatus {
        id: raft.id(),
        pid: std::process::id(),
        role: match raft.role() {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
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
        snapshot_bytes: raft.snapshot_data().len() as u64,
        metrics: None,
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
    let n = cfg.peers.len() as u64;
    let mut raft = Config::for_service(cfg.id, (0..n).collect(), rand::thread_rng().gen());
    cfg.timers.apply(&mut raft);
    raft.read_mode = cfg.read_mode;
    raft.check().map_err(NetError::Config)?;
    let rcfg = ReplicaConfig {
        raft,
        max_raft_state: cfg.max_raft_state,
    };
    let replica = Replica::restore(rcfg, machine, &recovered.state, &recovered.snapshot)
        .map_err(|e| NetError::Storage(format!("cannot restart from the stored state: {e}")))?;
    let peers: BTreeMap<u64, String> = (0..n)
        .filter(|&p| p != cfg.id)
        .map(|p| (p, cfg.peers[p as usize].clone()))
        .collect();
    let transport: Arc<Transport<MsgOf<S>>> = Transport::new(TransportConfig {
        me: cfg.id,
        secret: cfg.secret.clone(),
        peers,
        tls: cfg.tls.clone(),
    });
    let t = transport.clone();
    let outputs = Outputs {
        send: Box::new(move |to, m| t.send(to as u64, m)),
        event: Box::new(|()| {}),
    };
    let name = format!("replica-{}", cfg.id);
    let metrics = match &cfg.metrics {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            let m = Metrics::replica();
            tokio::spawn(crate::metrics::serve(l, m.clone()));
            Some(m)
        }
        None => None,
    };
    let observe = metrics.map(|m| -> driver::Observer<Replica<S>> {
        Box::new(move |r: &Replica<S>, b: &BatchStats| {
            let raft = r.raft();
            m.term.set(raft.term() as i64);
            m.commit_index.set(raft.commit_index() as i64);
            m.applied_index.set(r.applied() as i64);
            m.is_leader.set(i64::from(raft.is_leader()));
            if let Some(d) = b.sync {
                m.fsync_seconds.observe(d.as_secs_f64());
                m.batch_saves.observe(b.saves as f64);
            }
        })
    });
    let (handle, join) = driver::spawn_observed(&name, replica, durable, TICK, outputs, observe);
    let h = handle.clone();
    let deliver: Deliver<MsgOf<S>> = Arc::new(move |from, m| h.deliver(from as usize, m));
    let h = handle.clone();
    let metrics_addr = cfg.metrics.clone();
    let status: StatusSource = Arc::new(move || {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let metrics = metrics_addr.clone();
        h.call(move |r: &mut Replica<S>, _| {
            let mut s = status_of(r);
            s.metrics = metrics;
            let _ = tx.send(s);
        });
        rx
    });
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
        Ok(r) => r,
        Err(e) => Err(NetError::Storage(format!("the replica task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_become_ticks_and_bad_ones_are_refused() {
        let mut cfg = Config::for_service(0, vec![0, 1, 2], 7);
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
        assert!(too_fast.validate().unwrap_err().contains("one tick"));
        let too_short = Timers {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(250),
        };
        assert!(too_short
            .validate()
            .unwrap_err()
            .contains("three heartbeat"));
    }
}
