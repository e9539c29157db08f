//! The client of the sharded system: shard clerks (key → shard → group) and a controller
//! clerk in one [`ShardClientHost`], sharing one node id and one set of connections; what
//! the router and `flotilla ctl` use.
//!
//! Servers are named by address and dialed on first use (`flotilla_transport::ids`): the
//! controller's from the start, a group's when a key first maps there.

use std::sync::Arc;
use std::time::Duration;

use flotilla_id::alloc;
use flotilla_kv::{KvCommand, KvReply};
use flotilla_node::{Ctx, NodeId};
use flotilla_rsm::{ClerkConfig, ClerkHost, ClientId, RsmError};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, ShardConfig};
use flotilla_shardkv::{
    ClientEvent, Resolver, ShardClerkConfig, ShardClerkHost, ShardClientHost, ShardMsg,
};
use flotilla_transport::ids::dialing;
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{Transport, TransportConfig};
use flotilla_transport::Secret;

use crate::client::{random_node_id, ClerkProcess, Client, Shared};
use crate::waiters::Waiters;
use crate::ClientError;

/// The client of a sharded Flotilla.
pub type ShardClient = Client<ShardClientHost>;

/// What a [`ShardClient`] keeps beside its shard clerks' calls: the controller's.
pub struct ShardExtra {
    /// Calls waiting on the controller clerk.
    ctrl: Waiters<Result<CtrlReply, RsmError>>,
    /// The controller clerk, created on first use; one controller call at a time.
    ctrl_clerk: tokio::sync::Mutex<Option<ClientId>>,
    nshards: usize,
}

/// [`Client::call`] runs shard clerks; the controller clerk's calls are
/// [`Client::ctrl`]'s.
impl ClerkProcess for ShardClientHost {
    type Command = KvCommand;
    /// A shard clerk retries until a group answers, so a call ends only with the
    /// service's reply.
    type Reply = KvReply;
    /// Shard clerks find their groups in the controller's configurations.
    type Servers = ();
    type Extra = ShardExtra;

    fn add_clerk(&mut self, _: &()) -> ClientId {
        self.shard.add_clerk()
    }

    fn set_servers(&mut self, _: &()) {}

    fn is_idle(&self, client: ClientId) -> bool {
        self.shard.clerk(client).is_some_and(|c| !c.is_busy())
    }

    fn start(
        &mut self,
        client: ClientId,
        cmd: KvCommand,
        ctx: &mut Ctx<ShardMsg, ClientEvent>,
    ) -> u64 {
        ctx.scoped(
            |m| m,
            ClientEvent::Kv,
            |inner| self.shard.start(client, cmd, inner),
        )
    }

    fn abandon(&mut self, client: ClientId) {
        self.shard.abandon(client);
    }

    fn remove_clerk(&mut self, client: ClientId) {
        self.shard.remove_clerk(client);
    }

    fn finished(e: ClientEvent, extra: &ShardExtra) -> Option<(ClientId, u64, KvReply)> {
        match e {
            ClientEvent::Kv(e) => Some((e.client, e.seq, e.reply)),
            ClientEvent::Ctrl(e) => {
                extra.ctrl.answer(e.client, e.seq, e.reply);
                None
            }
        }
    }
}

/// The waiters of [`Client::ctrl`].
fn ctrl_calls(s: &Shared<ShardClientHost>) -> &Waiters<Result<CtrlReply, RsmError>> {
    &s.extra.ctrl
}

impl Client<ShardClientHost> {
    /// The client of the sharded system whose controller replicas listen at `ctrlers`, with
    /// `nshards` shards. Must run inside a tokio runtime. Node and clerk ids are random (see
    /// [`crate::GroupClient::connect`]).
    pub fn connect(
        ctrlers: &[String],
        nshards: usize,
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
    ) -> Result<Arc<Self>, ClientError> {
        if nshards == 0 {
            return Err(ClientError::Config(
                "the number of shards must be at least 1",
            ));
        }
        let ids = alloc::server_node_ids(ctrlers)?;
        let transport = Transport::new(TransportConfig {
            me: random_node_id(),
            secret,
            peers: ids.iter().copied().zip(ctrlers.iter().cloned()).collect(),
            tls,
        });
        let ctrl_nodes: Vec<NodeId> = ids.clone();
        let dial = dialing(&transport);
        let resolve: Resolver = Arc::new(move |name: &str| Some(dial(name)));
        // Shard clerks' and the controller clerk's ids in ranges of their own: one id space
        // on the controller, whose sessions both kinds of clerk open.
        let mut rng = rand::thread_rng();
        let host = ShardClientHost::new(
            ShardClerkHost::new(
                alloc::shard_clerk_base(&mut rng),
                ctrl_nodes.clone(),
                resolve,
                nshards,
                ShardClerkConfig::default(),
            ),
            ClerkHost::new(alloc::ctrl_clerk_base(&mut rng), ClerkConfig::default()),
            ctrl_nodes,
        );
        let extra = ShardExtra {
            ctrl: Waiters::default(),
            ctrl_clerk: tokio::sync::Mutex::new(None),
            nshards,
        };
        Ok(Arc::new(Client::spawn(
            "shard-clerks",
            host,
            transport,
            (),
            extra,
        )))
    }

    pub fn nshards(&self) -> usize {
        self.shared.extra.nshards
    }

    /// The latest configuration shard clerk `client` knows (configuration 0 before its first
    /// operation).
    pub async fn config_of(&self, client: ClientId) -> Option<ShardConfig> {
        self.with(move |h| h.shard.clerk(client).map(|c| c.config().clone()))
            .await
            .flatten()
    }

    /// Runs `cmd` on the controller, waiting at most `limit`. On
    /// [`ClientError::Timeout`] a Join, Leave or Move may still take effect.
    pub async fn ctrl(&self, cmd: CtrlCommand, limit: Duration) -> Result<CtrlReply, ClientError> {
        let mut slot = self.shared.extra.ctrl_clerk.lock().await;
        let client = match *slot {
            Some(c) => c,
            None => {
                let c = (self.with(|h| h.add_ctrl_clerk()).await).ok_or(ClientError::Stopped)?;
                *slot = Some(c);
                c
            }
        };
        let reply = self.run(ctrl_calls, client, move |h, ctx| {
            Some(ctx.scoped(ShardMsg::Ctrl, ClientEvent::Ctrl, |inner| {
                h.ctrl.start(client, cmd, inner)
            }))
        });
        match tokio::time::timeout(limit, reply).await {
            Ok(Some(r)) => Ok(r?),
            Ok(None) => Err(ClientError::Stopped),
            Err(_) => {
                self.shared.extra.ctrl.cancel(client);
                self.host.call(move |h, _| h.ctrl.abandon(client));
                Err(ClientError::Timeout(limit))
            }
        }
    }

    /// Configuration `num` of the controller, or its latest for `None`.
    pub async fn query(
        &self,
        num: Option<u64>,
        limit: Duration,
    ) -> Result<ShardConfig, ClientError> {
        match self.ctrl(CtrlCommand::Query(num), limit).await? {
            CtrlReply::Config(c) => Ok(c),
            CtrlReply::Err(e) => Err(e.into()),
            other => Err(ClientError::Unexpected {
                peer: "the controller".into(),
                answer: format!("{other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_id::alloc::server_node_id as node_id;
    use flotilla_rsm::{Msg, Response};
    use flotilla_shardkv::ShardReply;

    use super::*;
    use crate::client::tests::{poll_once, settle};

    fn value(v: &str) -> KvReply {
        KvReply::Value(Some(v.as_bytes().to_vec()))
    }

    fn secret() -> Secret {
        Secret::new("a test secret, 16+ chars").expect("secret")
    }

    /// Issue 15, item 5, for the sharded client: reply n is queued in the driver, the caller
    /// gives up on n, the clerk's next call registers before the driver hands reply n out;
    /// reply n must not answer call n+1. Exact on a current-thread runtime (nothing runs until
    /// the test awaits); the test plays the controller and the group.
    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_to_an_abandoned_call_does_not_answer_the_next() {
        let (ctrler, group) = ("127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned());
        let clients = ShardClient::connect(std::slice::from_ref(&ctrler), 2, secret(), None)
            .expect("clients");
        let ck = clients.new_clerk().await;
        let get = || KvCommand::Get { key: b"k".to_vec() };
        let from_group = |seq: u64, reply: KvReply| {
            let m = ShardMsg::Group(Msg::Response(Response {
                client: ck,
                seq,
                now_ms: 0,
                result: Ok(ShardReply::Kv(reply)),
            }));
            (node_id(&group), m)
        };
        let mut first = std::pin::pin!(clients.call(ck, get()));
        assert!(poll_once(&mut first).await.is_none());
        settle(&clients).await; // the clerk asked the controller
        let config = ShardConfig {
            num: 1,
            shards: vec![1, 1],
            groups: BTreeMap::from([(1, vec![group.clone()])]),
        };
        let m = ShardMsg::Ctrl(Msg::Response(Response {
            client: ck,
            seq: 1,
            now_ms: 0,
            result: Ok(CtrlReply::Config(config)),
        }));
        clients.host.deliver(node_id(&ctrler), m);
        settle(&clients).await; // operation 1 went to group 1
        let (from, m) = from_group(1, value("first"));
        clients.host.deliver(from, m);
        clients.abandon(ck); // the command timed out just as its reply came in
        let mut second = std::pin::pin!(clients.call(ck, get()));
        assert!(poll_once(&mut second).await.is_none());
        settle(&clients).await; // reply 1 handled, operation 2 sent
        assert_eq!(
            poll_once(&mut second).await,
            None,
            "the second call must not receive the first's reply"
        );
        let (from, m) = from_group(2, value("second"));
        clients.host.deliver(from, m);
        assert_eq!(second.await, Some(value("second")));
    }

    /// A controller call gets the controller's answer through the variant's own waiters, a
    /// refusal is typed, and a controller that does not answer is a timeout.
    #[tokio::test(flavor = "current_thread")]
    async fn controller_calls_are_answered_refused_or_timed_out() {
        let ctrler = "127.0.0.1:1".to_owned();
        let clients = ShardClient::connect(std::slice::from_ref(&ctrler), 2, secret(), None)
            .expect("clients");
        let limit = Duration::from_secs(60);
        let mut query = std::pin::pin!(clients.query(None, limit));
        assert!(poll_once(&mut query).await.is_none());
        settle(&clients).await; // the controller clerk was created
        assert!(poll_once(&mut query).await.is_none());
        settle(&clients).await; // and sent its query
        let ck = (clients.with(|h| h.ctrl.clerk_ids().next()).await)
            .flatten()
            .expect("the controller clerk");
        let respond = |seq: u64, reply: CtrlReply| {
            ShardMsg::Ctrl(Msg::Response(Response {
                client: ck,
                seq,
                now_ms: 0,
                result: Ok(reply),
            }))
        };
        let config = ShardConfig {
            num: 3,
            shards: vec![0, 0],
            groups: BTreeMap::new(),
        };
        let from = node_id(&ctrler);
        clients
            .host
            .deliver(from, respond(1, CtrlReply::Config(config.clone())));
        assert_eq!(query.await.expect("answered"), config);

        let mut old = std::pin::pin!(clients.query(Some(1), limit));
        assert!(poll_once(&mut old).await.is_none());
        settle(&clients).await;
        let refusal = flotilla_shardctrler::CtrlError::ZeroGid;
        clients
            .host
            .deliver(from, respond(2, CtrlReply::Err(refusal.clone())));
        match old.await {
            Err(ClientError::Refused(e)) => assert_eq!(e, refusal),
            other => panic!("expected a refusal, got {other:?}"),
        }

        let short = Duration::from_millis(1);
        match clients.ctrl(CtrlCommand::Query(None), short).await {
            Err(ClientError::Timeout(d)) => assert_eq!(d, short),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_shards_or_one_address_twice_is_refused() {
        let a = "127.0.0.1:1".to_owned();
        let none = ShardClient::connect(std::slice::from_ref(&a), 0, secret(), None);
        assert!(matches!(none, Err(ClientError::Config(_))));
        let twice = ShardClient::connect(&[a.clone(), a], 1, secret(), None);
        assert!(matches!(twice, Err(ClientError::SameNodeId(_))));
    }
}
