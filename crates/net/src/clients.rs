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

use flotilla_id::alloc;
use flotilla_raft::NodeId;
use flotilla_rsm::{ClerkConfig, ClerkEvent, ClerkHost, ClientId, Msg, RsmError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::admin::{survey, ClusterView};
use crate::server::TICK;
use flotilla_host::driver::{self, MemoryDurable, Outputs, ProcessHandle};
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{Deliver, Transport, TransportConfig};
use flotilla_transport::Secret;

/// How often clients ask the replicas for the membership. A member added since is reachable
/// within this long; it cannot lead before it is promoted, a separate committed change later.
pub const REFRESH: Duration = Duration::from_millis(500);

/// A random node id for a client connection, outside the range of replica ids
/// ([`alloc::client_node_id`]).
pub fn random_node_id() -> NodeId {
    alloc::client_node_id(&mut rand::thread_rng())
}

/// Callers waiting for their clerk's operation to finish, matched by `(client, seq)`.
///
/// A clerk's reply is handed only to the call that started the operation it answers: after
/// a call is abandoned (a router's command timeout), the clerk's next call registers a new
/// waiter while a reply to the abandoned operation may already be on its way out of the
/// driver; that stale reply must not answer the new command.
///
/// Invariant: a waiter's `seq` is set only by the driver-task closure that started *its*
/// operation (checked by `token`), and replies are handed out on the driver task after the
/// batch that produced them, so a reply `(c, s)` reaches a waiter only if that waiter's call
/// started operation `s` of clerk `c`.
pub(crate) struct Waiters<R> {
    inner: Mutex<WaitersInner<R>>,
}

struct WaitersInner<R> {
    by_client: HashMap<ClientId, Waiter<R>>,
    /// Tells the waiters of one clerk apart (a new one per call).
    next_token: u64,
}

struct Waiter<R> {
    token: u64,
    /// The operation this call started; `None` until the driver has started it.
    seq: Option<u64>,
    tx: oneshot::Sender<R>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            inner: Mutex::new(WaitersInner {
                by_client: HashMap::new(),
                next_token: 0,
            }),
        }
    }
}

impl<R> Waiters<R> {
    /// Registers a call on clerk `client`, replacing any earlier one; returns the token its
    /// start must present to [`Waiters::started`], and where the reply will arrive.
    pub(crate) fn wait(&self, client: ClientId) -> (u64, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        let mut w = self.inner.lock().expect("waiters lock");
        w.next_token += 1;
        let token = w.next_token;
        w.by_client.insert(
            client,
            Waiter {
                token,
                seq: None,
                tx,
            },
        );
        (token, rx)
    }

    /// The call `token` started operation `seq` of clerk `client` (on the driver task).
    pub(crate) fn started(&self, client: ClientId, token: u64, seq: u64) {
        let mut w = self.inner.lock().expect("waiters lock");
        if let Some(waiter) = w.by_client.get_mut(&client) {
            if waiter.token == token {
                waiter.seq = Some(seq);
            }
        }
    }

    /// Forgets the call `token` on clerk `client` (its operation could not start).
    pub(crate) fn cancel_token(&self, client: ClientId, token: u64) {
        let mut w = self.inner.lock().expect("waiters lock");
        if w.by_client.get(&client).is_some_and(|x| x.token == token) {
            w.by_client.remove(&client);
        }
    }

    /// Forgets whatever call waits on clerk `client` (abandoned, or the clerk removed).
    pub(crate) fn cancel(&self, client: ClientId) {
        self.inner
            .lock()
            .expect("waiters lock")
            .by_client
            .remove(&client);
    }

    /// Hands `reply`, the answer to operation `seq` of clerk `client`, to the call that
    /// started that operation; drops it if no such call waits (abandoned: stale).
    pub(crate) fn answer(&self, client: ClientId, seq: u64, reply: R) {
        let mut w = self.inner.lock().expect("waiters lock");
        if w.by_client.get(&client).is_some_and(|x| x.seq == Some(seq)) {
            let waiter = w.by_client.remove(&client).expect("just found");
            let _ = waiter.tx.send(reply);
        }
    }
}

/// Which servers the clerks talk to, shared with the calls run on the clerk host (which
/// read it there, so a clerk added while the membership changes still ends up current).
#[derive(Default)]
struct Roster {
    /// The group's voters with a known address (by replica id).
    servers: Vec<NodeId>,
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
    waiting: Arc<Waiters<Result<R, RsmError>>>,
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
        let peers: BTreeMap<NodeId, String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| (NodeId::from_index(i), a.clone()))
            .collect();
        let transport = Transport::new(TransportConfig {
            me,
            secret: secret.clone(),
            peers,
            tls: tls.clone(),
        });
        let waiting: Arc<Waiters<Result<R, RsmError>>> = Arc::default();
        let (t, w) = (transport.clone(), waiting.clone());
        let outputs = Outputs {
            send: Box::new(move |to, m| t.send(to, m)),
            event: Box::new(move |e: ClerkEvent<R>| w.answer(e.client, e.seq, e.reply)),
        };
        let host = ClerkHost::new(alloc::group_clerk_base(&mut rng), ClerkConfig::default());
        let (handle, _join) =
            driver::spawn("clerks", host, MemoryDurable::default(), TICK, outputs);
        let h = handle.clone();
        let deliver: Deliver<Msg<C, R>> = Arc::new(move |from, m| h.deliver(from, m));
        transport.dial_peers(deliver);
        let roster = Arc::new(Mutex::new(Roster {
            servers: (0..servers.len()).map(NodeId::from_index).collect(),
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
    pub fn servers(&self) -> Vec<NodeId> {
        self.roster.lock().expect("roster lock").servers.clone()
    }

    /// Runs `cmd` on clerk `client` until the service answers (retrying across leaders), or
    /// reports why it cannot ([`RsmError::DiskFull`]: the command's outcome is then unknown).
    /// `None` if there is no such clerk or it already has an operation outstanding (each
    /// clerk is one sequential client).
    pub async fn call(&self, client: ClientId, cmd: C) -> Option<Result<R, RsmError>> {
        let (token, rx) = self.waiting.wait(client);
        let waiting = self.waiting.clone();
        self.host.call(move |h, ctx| {
            if h.clerk(client).is_some_and(|c| !c.is_busy()) {
                let seq = h.start(client, cmd, ctx);
                waiting.started(client, token, seq);
            } else {
                waiting.cancel_token(client, token);
            }
        });
        rx.await.ok()
    }

    /// Gives up on clerk `client`'s outstanding operation: its outcome stays unknown (it may
    /// still be applied), and the clerk's next operation gets a new sequence number.
    pub fn abandon(&self, client: ClientId) {
        self.waiting.cancel(client);
        self.host.call(move |h, _| h.abandon(client));
    }

    /// Forgets clerk `client` (its user went away).
    pub fn remove_clerk(&self, client: ClientId) {
        self.waiting.cancel(client);
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
        let heard: Vec<(String, flotilla_transport::NodeStatus)> = (ask.into_iter().zip(answers))
            .filter_map(|(a, r)| r.ok().map(|s| (a, s)))
            .collect();
        let Some(view) = ClusterView::of(&heard) else {
            return;
        };
        let mut next = view.addrs;
        if self.pinned {
            next.retain(|_, a| self.seeds.contains(a));
        }
        let servers: Vec<NodeId> = (view.voters.iter())
            .filter(|v| next.contains_key(v))
            .copied()
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    use flotilla_rsm::Response;

    use super::*;

    /// Polls `f` once: `Some` if it finished.
    async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// Waits until the clerk host has handled every input queued before this call.
    async fn settle<C, R>(c: &Clients<C, R>)
    where
        C: Clone + Debug + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        c.host.call(move |_, _| {
            let _ = tx.send(());
        });
        rx.await.expect("the clerk host runs");
    }

    fn answer(seq: u64, reply: &str) -> Msg<String, String> {
        Msg::Response(Response {
            client: 0, // set by the caller
            seq,
            now_ms: 0,
            result: Ok(reply.to_owned()),
        })
    }

    /// Issue 15, item 5: reply n is queued in the driver, the caller gives up on n, and the
    /// clerk's next call n+1 registers its waiter before the driver hands reply n out. Reply n
    /// must not answer call n+1. On a current-thread runtime nothing runs until the test
    /// awaits, so the interleaving is exact.
    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_to_an_abandoned_call_does_not_answer_the_next() {
        // Nobody listens there: the test plays the server by delivering the answers itself.
        let clients: Arc<Clients<String, String>> = Clients::connect(
            &["127.0.0.1:1".to_owned()],
            Secret::new("a test secret, 16+ chars").expect("secret"),
        );
        let ck = clients.new_clerk().await;
        let with_client = |m: Msg<String, String>| match m {
            Msg::Response(mut r) => {
                r.client = ck;
                Msg::Response(r)
            }
            other => other,
        };
        let mut first = pin!(clients.call(ck, "first".to_owned()));
        assert!(
            poll_once(&mut first).await.is_none(),
            "no server answered yet"
        );
        settle(&clients).await; // operation 1 has started
        clients
            .host
            .deliver(NodeId::new(0), with_client(answer(1, "reply to first")));
        clients.abandon(ck); // the command timed out just as its reply came in
        let mut second = pin!(clients.call(ck, "second".to_owned()));
        assert!(poll_once(&mut second).await.is_none());
        settle(&clients).await; // reply 1 handled, operation 2 started
        assert_eq!(
            poll_once(&mut second).await,
            None,
            "the second call must not receive the first's reply"
        );
        clients
            .host
            .deliver(NodeId::new(0), with_client(answer(2, "reply to second")));
        assert_eq!(second.await, Some(Ok("reply to second".to_owned())));
    }
}
