//! The client of one replicated group: many clerks in one [`ClerkHost`].
//!
//! It follows the group's membership: every [`REFRESH`] it asks the replicas it knows for
//! their status, dials members added since (a leader on a new node is reachable), drops
//! removed ones, and points every clerk at the current voters.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use flotilla_host::driver::ProcessHandle;
use flotilla_id::alloc;
use flotilla_node::{Ctx, NodeId};
use flotilla_rsm::{ClerkConfig, ClerkEvent, ClerkHost, ClientId, Msg, RsmError};
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{Transport, TransportConfig};
use flotilla_transport::Secret;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::admin::{survey, ClusterView};
use crate::client::{random_node_id, ClerkProcess, Client, Shared};

/// How often the client asks the replicas for the membership. A member added since is
/// reachable within this long; it cannot lead before it is promoted, a separate committed
/// change later.
pub const REFRESH: Duration = Duration::from_millis(500);

/// The client of one replicated service whose commands are `C` and replies `R`.
pub type GroupClient<C, R> = Client<ClerkHost<C, R>>;

/// A group's clerks talk to its voters (by replica id), which the client follows.
impl<C, R> ClerkProcess for ClerkHost<C, R>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Command = C;
    /// The reply, or why the service could not give one ([`RsmError::DiskFull`]: the
    /// command's outcome is then unknown).
    type Reply = Result<R, RsmError>;
    type Servers = Vec<NodeId>;
    type Extra = ();

    fn add_clerk(&mut self, servers: &Vec<NodeId>) -> ClientId {
        ClerkHost::add_clerk(self, servers.clone())
    }

    fn set_servers(&mut self, servers: &Vec<NodeId>) {
        let ids: Vec<ClientId> = self.clerk_ids().collect();
        for id in ids {
            ClerkHost::set_servers(self, id, servers.clone());
        }
    }

    fn is_idle(&self, client: ClientId) -> bool {
        self.clerk(client).is_some_and(|c| !c.is_busy())
    }

    fn start(&mut self, client: ClientId, cmd: C, ctx: &mut Ctx<Msg<C, R>, ClerkEvent<R>>) -> u64 {
        ClerkHost::start(self, client, cmd, ctx)
    }

    fn abandon(&mut self, client: ClientId) {
        ClerkHost::abandon(self, client)
    }

    fn remove_clerk(&mut self, client: ClientId) {
        ClerkHost::remove_clerk(self, client)
    }

    fn finished(e: ClerkEvent<R>, _: &()) -> Option<(ClientId, u64, Result<R, RsmError>)> {
        Some((e.client, e.seq, e.reply))
    }
}

impl<C, R> Client<ClerkHost<C, R>>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Connects to the service whose replicas listen at `servers`. Must run inside a tokio
    /// runtime. Until a replica has answered a status request, `servers` are taken to be in id
    /// order; from then on the client follows the membership (module docs). The client's node
    /// id and clerk ids are random, so that clients of different processes and incarnations
    /// never share an exactly-once session.
    pub fn connect(servers: &[String], secret: Secret) -> Arc<Self> {
        Self::connect_with(servers, secret, None)
    }

    /// As [`Client::connect`], over mutual TLS if `tls` is given.
    pub fn connect_with(
        servers: &[String],
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
    ) -> Arc<Self> {
        Self::start(servers, secret, tls, false)
    }

    /// As [`Client::connect_with`], but talking only to the replicas at `servers` (learning
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
        let peers: BTreeMap<NodeId, String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| (NodeId::from_index(i), a.clone()))
            .collect();
        let transport = Transport::new(TransportConfig {
            me: random_node_id(),
            secret: secret.clone(),
            peers,
            tls: tls.clone(),
        });
        // Random, so that no two clients share a session.
        let first = alloc::group_clerk_base(&mut rand::thread_rng());
        let host = ClerkHost::new(first, ClerkConfig::default());
        let ids = (0..servers.len()).map(NodeId::from_index).collect();
        let mut client = Client::spawn("clerks", host, transport, ids, ());
        let follower = Follower {
            seeds: servers.to_vec(),
            pinned,
            secret,
            tls,
            transport: client.transport.clone(),
            shared: client.shared.clone(),
            host: client.host.clone(),
        };
        client.tasks.push(tokio::spawn(follower.run()));
        Arc::new(client)
    }

    /// The replica ids clerks talk to now (the group's voters, once learned).
    pub fn servers(&self) -> Vec<NodeId> {
        self.shared.servers.lock().expect("servers lock").clone()
    }
}

/// Follows the group's membership for a [`GroupClient`] (module docs).
struct Follower<C, R>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The addresses the client was given: asked every round, so that it finds the group
    /// again even if every member it had learned of went away.
    seeds: Vec<String>,
    /// Talk only to the seeds (`Client::connect_pinned`).
    pinned: bool,
    secret: Secret,
    tls: Option<Arc<PeerTls>>,
    transport: Arc<Transport<Msg<C, R>>>,
    shared: Arc<Shared<ClerkHost<C, R>>>,
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
        if !servers.is_empty() {
            Client::point_at(&self.host, &self.shared, servers);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use flotilla_rsm::Response;

    use super::*;
    use crate::client::tests::{poll_once, settle};

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
        let clients: Arc<GroupClient<String, String>> = GroupClient::connect(
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

    /// New servers reach the clerks there are and the ones added later; a removed clerk is
    /// gone, and a call on it returns `None`.
    #[tokio::test(flavor = "current_thread")]
    async fn pointing_at_new_servers_reaches_every_clerk() {
        let clients: Arc<GroupClient<String, String>> = GroupClient::connect(
            &["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()],
            Secret::new("a test secret, 16+ chars").expect("secret"),
        );
        let old = clients.new_clerk().await;
        let gone = clients.new_clerk().await;
        let n = NodeId::new;
        assert_eq!(clients.servers(), vec![n(0), n(1)]);
        Client::point_at(&clients.host, &clients.shared, vec![n(1), n(5)]);
        let new = clients.new_clerk().await;
        clients.remove_clerk(gone);
        let seen = clients
            .with(move |h| {
                (
                    h.clerk(old).map(|c| c.leader()),
                    h.clerk(new).map(|c| c.leader()),
                    h.clerk(gone).is_some(),
                )
            })
            .await
            .expect("the clerk host runs");
        assert_eq!(seen, (Some(n(1)), Some(n(1)), false));
        assert_eq!(clients.servers(), vec![n(1), n(5)]);
        assert_eq!(clients.call(gone, "x".to_owned()).await, None);
    }
}
