//! The client side on TCP: many clerks in one [`ClerkHost`], driven by the driver loop, with
//! an async call API for whoever serves end users (the Redis-protocol router, tests, tools).
//!
//! The clients follow the group's membership: every [`REFRESH`] they ask the replicas they
//! know for their status, dial members added since (a leader on a new node is reachable),
//! drop removed ones, and point every clerk at the current voters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_rsm::{ClerkConfig, ClerkEvent, ClerkHost, ClientId, Msg};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::admin::{survey, ClusterView};
use crate::driver::{self, MemoryDurable, Outputs, ProcessHandle};
use crate::server::TICK;
use crate::tls::PeerTls;
use crate::transport::{Deliver, Transport, TransportConfig};
use crate::Secret;

/// How often clients ask the replicas for the membership. A member added since is reachable
/// within this long; it cannot lead before it is promoted, a separate committed change later.
pub const REFRESH: Duration = Duration::from_millis(500);

/// A random node id for a client connection, outside the range of replica ids.
pub fn random_node_id() -> u64 {
    rand::thread_rng().gen_range(1 << 32..1 << 62)
}

type Waiting<R> = Arc<Mutex<HashMap<ClientId, oneshot::Sender<R>>>>;

/// Which servers the clerks talk to, shared with the calls run on the clerk host (which
/// read it there, so a clerk added while the membership changes still ends up current).
#[derive(Default)]
struct Roster {
    /// The group's voters with a known address (by replica id).
    servers: Vec<usize>,
    /// Every clerk, to re-point them when `servers` changes.
    clerks: BTreeSet<ClientId>,
}

/// Clerks talking to one replicated service.
pub struct Clients<C, R>
where
    C: Clone + Debug + Send + 'static,
    R: Send + 'static,
{
    host: ProcessHandle<ClerkHost<C, R>>,
    waiting: Waiting<R>,
    roster: Arc<Mutex<Roster>>,
    transport: Arc<Transport<Msg<C, R>>>,
    /// The task following the membership (aborted on drop).
    follow: tokio::task::JoinHandle<()>,
}

impl<C, R> Clients<C, R>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Connects to the service whose replicas listen at `servers`. Must run inside a tokio
    /// runtime. Until a replica has answered a status request, `servers` are taken to be in id
    /// order; from then on the clients follow the membership (module docs). The client's node
    /// id and clerk ids are random, so that clients of different processes and incarnations
    /// never share an exactly-once session.
    pub fn connect(servers: &[String], secret: Secret) -> Arc<Self> {
        Self::connect_with(servers, secret, None)
    }

    /// As [`Clients::connect`], over mutual TLS if `tls` is given.
    pub fn connect_with(
        servers: &[String],
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
    ) -> Arc<Self> {
        Self::start(servers, secret, tls, false)
    }

    /// As [`Clients::connect_with`], but talking only to the replicas at `servers` (learning
    /// their ids from them), never to other members: a client meant to see only part of the
    /// group, as in partition tests.
    pub fn connect_pinned(
        servers: &[String],
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
    ) -> Arc<Self> {
        Self::start(servers, secret, tls, true)
    }

    fn start(
        servers: &[String],
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
        pinned: bool,
    ) -> Arc<Self> {
        let mut rng = rand::thread_rng();
        let me = random_node_id();
        let peers: BTreeMap<u64, String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64, a.clone()))
            .collect();
        let transport = Transport::new(TransportConfig {
            me,
            secret: secret.clone(),
            peers,
            tls: tls.clone(),
        });
        let waiting: Waiting<R> = Arc::new(Mutex::new(HashMap::new()));
        let (t, w) = (transport.clone(), waiting.clone());
        let outputs = Outputs {
            send: Box::new(move |to, m| t.send(to as u64, m)),
            event: Box::new(move |e: ClerkEvent<R>| {
                if let Some(tx) = w.lock().expect("waiting lock").remove(&e.client) {
                    let _ = tx.send(e.reply);
                }
            }),
        };
        let host = ClerkHost::new(rng.gen_range(1..1 << 62), ClerkConfig::default());
        let (handle, _join) =
            driver::spawn("clerks", host, MemoryDurable::default(), TICK, outputs);
        let h = handle.clone();
        let deliver: Deliver<Msg<C, R>> = Arc::new(move |from, m| h.deliver(from as usize, m));
        transport.dial_peers(deliver);
        let roster = Arc::new(Mutex::new(Roster {
            servers: (0..servers.len()).collect(),
            clerks: BTreeSet::new(),
        }));
        let follower = Follower {
            seeds: servers.to_vec(),
            pinned,
            secret,
            tls,
            transport: transport.clone(),
            roster: roster.clone(),
            host: handle.clone(),
        };
        Arc::new(Clients {
            host: handle,
            waiting,
            roster,
            transport,
            follow: tokio::spawn(follower.run()),
        })
    }

    /// A new clerk (one sequential client).
    pub async fn new_clerk(&self) -> ClientId {
        let (tx, rx) = oneshot::channel();
        let roster = self.roster.clone();
        self.host.call(move |h, _| {
            let mut roster = roster.lock().expect("roster lock");
            let id = h.add_clerk(roster.servers.clone());
            roster.clerks.insert(id);
            let _ = tx.send(id);
        });
        rx.await.expect("the clerk host runs as long as its handle")
    }

    /// The replica ids clerks talk to now (the group's voters, once learned).
    pub fn servers(&self) -> Vec<usize> {
        self.roster.lock().expect("roster lock").servers.clone()
    }

    /// Runs `cmd` on clerk `client` until the service answers (retrying across leaders).
    /// `None` if there is no such clerk or it already has an operation outstanding (each
    /// clerk is one sequential client).
    pub async fn call(&self, client: ClientId, cmd: C) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("waiting lock")
            .insert(client, tx);
        let waiting = self.waiting.clone();
        self.host.call(move |h, ctx| {
            if h.clerk(client).is_some_and(|c| !c.is_busy()) {
                h.start(client, cmd, ctx);
            } else {
                waiting.lock().expect("waiting lock").remove(&client);
            }
        });
        rx.await.ok()
    }

    /// Gives up on clerk `client`'s outstanding operation: its outcome stays unknown (it may
    /// still be applied), and the clerk's next operation gets a new sequence number.
    pub fn abandon(&self, client: ClientId) {
        self.waiting.lock().expect("waiting lock").remove(&client);
        self.host.call(move |h, _| h.abandon(client));
    }

    /// Forgets clerk `client` (its user went away).
    pub fn remove_clerk(&self, client: ClientId) {
        self.waiting.lock().expect("waiting lock").remove(&client);
        let roster = self.roster.clone();
        self.host.call(move |h, _| {
            roster.lock().expect("roster lock").clerks.remove(&client);
            h.remove_clerk(client);
        });
    }

    /// The transport, e.g. to stop it.
    pub fn transport(&self) -> &Arc<Transport<Msg<C, R>>> {
        &self.transport
    }
}

impl<C, R> Drop for Clients<C, R>
where
    C: Clone + Debug + Send + 'static,
    R: Send + 'static,
{
    fn drop(&mut self) {
        self.follow.abort();
        self.host.stop();
    }
}

/// Follows the group's membership for a [`Clients`] (module docs).
struct Follower<C, R>
where
    C: Clone + Debug + Send + 'static,
    R: Send + 'static,
{
    /// The addresses the clients were given: asked every round, so that the clients find the
    /// group again even if every member they had learned of went away.
    seeds: Vec<String>,
    /// Talk only to the seeds (`Clients::connect_pinned`).
    pinned: bool,
    secret: Secret,
    tls: Option<Arc<PeerTls>>,
    transport: Arc<Transport<Msg<C, R>>>,
    roster: Arc<Mutex<Roster>>,
    host: ProcessHandle<ClerkHost<C, R>>,
}

impl<C, R> Follower<C, R>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn run(self) {
        loop {
            self.refresh().await;
            tokio::time::sleep(REFRESH).await;
        }
    }

    /// One round: ask the seeds and known members, then adopt what they say.
    async fn refresh(&self) {
        let book = self.transport.peers();
        let mut ask: Vec<String> = self.seeds.clone();
        for a in book.values() {
            if !ask.contains(a) {
                ask.push(a.clone());
            }
        }
        let answers = survey::<Msg<C, R>>(&ask, &self.secret, self.tls.clone(), REFRESH).await;
        let heard: Vec<(String, crate::NodeStatus)> = (ask.into_iter().zip(answers))
            .filter_map(|(a, r)| r.ok().map(|s| (a, s)))
            .collect();
        let Some(view) = ClusterView::of(&heard) else {
            return;
        };
        let mut next = view.addrs;
        if self.pinned {
            next.retain(|_, a| self.seeds.contains(a));
        }
        let servers: Vec<usize> = (view.voters.iter())
            .filter(|v| next.contains_key(v))
            .map(|&v| v as usize)
            .collect();
        if next != book {
            tracing::info!(members = ?next, "following the group's membership");
            self.transport.set_peers(next);
        }
        let mut roster = self.roster.lock().expect("roster lock");
        if servers.is_empty() || servers == roster.servers {
            return;
        }
        roster.servers = servers;
        drop(roster);
        let roster = self.roster.clone();
        self.host.call(move |h, _| {
            let roster = roster.lock().expect("roster lock");
            for &c in &roster.clerks {
                h.set_servers(c, roster.servers.clone());
            }
        });
    }
}
