//! One async client over any process of clerks: the process runs on the host's driver loop,
//! its messages go over a [`Transport`], and each call waits for the reply to the operation
//! it started ([`Waiters`]).

use std::sync::{Arc, Mutex};

use flotilla_host::driver::{self, MemoryDurable, Outputs, ProcessHandle};
use flotilla_host::TICK;
use flotilla_id::{alloc, NodeId};
use flotilla_node::{Ctx, Process};
use flotilla_rsm::ClientId;
use flotilla_transport::transport::{Deliver, Transport};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::waiters::Waiters;

/// A sans-I/O process of many clerks, each one sequential client of a service, that a
/// [`Client`] can drive: a replicated group's clerks (`flotilla_rsm::ClerkHost`) or the
/// sharded system's (`flotilla_shardkv::ShardClientHost`).
pub trait ClerkProcess:
    Process<Msg: Serialize + DeserializeOwned + Send + Sync + 'static, Event: Send + 'static>
    + Send
    + 'static
{
    /// What a call asks of the service, and what it answers.
    type Command: Send + 'static;
    type Reply: Send + 'static;
    /// Whom the clerks talk to, as the client learns it: a group's voters; `()` for clerks
    /// that find their servers themselves.
    type Servers: Clone + PartialEq + Send + 'static;
    /// What the client keeps for this process beside the calls' waiters: the variant's own
    /// state, reached from [`ClerkProcess::finished`] (the sharded client's controller calls).
    type Extra: Send + Sync + 'static;

    /// Adds a clerk talking to `servers`; returns its id.
    fn add_clerk(&mut self, servers: &Self::Servers) -> ClientId;
    /// Points every clerk at `servers`.
    fn set_servers(&mut self, servers: &Self::Servers);
    /// Whether clerk `client` exists and has no operation outstanding.
    fn is_idle(&self, client: ClientId) -> bool;
    /// Starts `cmd` on idle clerk `client`; returns the operation's sequence number, which the
    /// event that finishes it carries.
    fn start(
        &mut self,
        client: ClientId,
        cmd: Self::Command,
        ctx: &mut Ctx<Self::Msg, Self::Event>,
    ) -> u64;
    /// Gives up on clerk `client`'s outstanding operation (its outcome stays unknown).
    fn abandon(&mut self, client: ClientId);
    /// Forgets clerk `client`.
    fn remove_clerk(&mut self, client: ClientId);
    /// The event as a finished operation `(client, seq, reply)` of [`ClerkProcess::start`];
    /// `None` for an event the variant handles itself, in `extra`.
    fn finished(event: Self::Event, extra: &Self::Extra) -> Option<(ClientId, u64, Self::Reply)>;
}

/// What the caller-facing side shares with the driver task.
pub(crate) struct Shared<P: ClerkProcess> {
    /// Calls of [`Client::call`] waiting for their operation.
    pub(crate) calls: Waiters<P::Reply>,
    /// Whom clerks talk to now; read on the driver task (see [`Client::point_at`]).
    pub(crate) servers: Mutex<P::Servers>,
    pub(crate) extra: P::Extra,
}

/// Clerks of one service with an async API, for whoever serves end users (the
/// Redis-protocol router, tests, tools): [`crate::GroupClient`] for a replicated group,
/// [`crate::ShardClient`] for the sharded system.
pub struct Client<P: ClerkProcess> {
    pub(crate) host: ProcessHandle<P>,
    pub(crate) shared: Arc<Shared<P>>,
    pub(crate) transport: Arc<Transport<P::Msg>>,
    /// Tasks the variant runs beside the process (a group client's membership follower),
    /// aborted on drop.
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl<P: ClerkProcess> Client<P> {
    /// Runs `process` on a driver loop of the current tokio runtime, named `name` in logs, its
    /// messages over `transport` (which starts dialing its peers), its clerks talking to
    /// `servers`.
    pub(crate) fn spawn(
        name: &str,
        process: P,
        transport: Arc<Transport<P::Msg>>,
        servers: P::Servers,
        extra: P::Extra,
    ) -> Self {
        let shared = Arc::new(Shared {
            calls: Waiters::default(),
            servers: Mutex::new(servers),
            extra,
        });
        let (t, s) = (transport.clone(), shared.clone());
        let outputs = Outputs {
            send: Box::new(move |to, m| t.send(to, m)),
            event: Box::new(move |e| {
                if let Some((client, seq, reply)) = P::finished(e, &s.extra) {
                    s.calls.answer(client, seq, reply);
                }
            }),
        };
        let (host, _join) = driver::spawn(name, process, MemoryDurable::default(), TICK, outputs);
        let h = host.clone();
        let deliver: Deliver<P::Msg> = Arc::new(move |from, m| h.deliver(from, m));
        transport.dial_peers(deliver);
        Client {
            host,
            shared,
            transport,
            tasks: Vec::new(),
        }
    }

    /// A new clerk (one sequential client).
    pub async fn new_clerk(&self) -> ClientId {
        let shared = self.shared.clone();
        self.with(move |h| h.add_clerk(&shared.servers.lock().expect("servers lock")))
            .await
            .expect("the clerk host runs as long as its handle")
    }

    /// Runs `cmd` on clerk `client` until the service answers (retrying across servers).
    /// `None` if there is no such clerk or it already has an operation outstanding (each
    /// clerk is one sequential client).
    pub async fn call(&self, client: ClientId, cmd: P::Command) -> Option<P::Reply> {
        self.run(calls::<P>, client, move |h, ctx| {
            h.is_idle(client).then(|| h.start(client, cmd, ctx))
        })
        .await
    }

    /// Gives up on clerk `client`'s outstanding operation: its outcome stays unknown (it may
    /// still be applied), and the clerk's next operation gets a new sequence number.
    pub fn abandon(&self, client: ClientId) {
        self.shared.calls.cancel(client);
        self.host.call(move |h, _| h.abandon(client));
    }

    /// Forgets clerk `client` (its user went away).
    pub fn remove_clerk(&self, client: ClientId) {
        self.shared.calls.cancel(client);
        self.host.call(move |h, _| h.remove_clerk(client));
    }

    /// The transport, e.g. to stop it or to see which servers it dials.
    pub fn transport(&self) -> &Arc<Transport<P::Msg>> {
        &self.transport
    }

    /// Runs `f` on the process, on its driver task; `None` if the process stopped.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut P) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.host.call(move |h, _| {
            let _ = tx.send(f(h));
        });
        rx.await.ok()
    }

    /// Starts an operation of clerk `client` with `start` (on the driver task; `None` if it
    /// cannot start) and waits for its reply among `waiters(shared)`. `None` if it did not
    /// start, or the call was abandoned or replaced meanwhile (see [`Waiters`]).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        waiters: fn(&Shared<P>) -> &Waiters<R>,
        client: ClientId,
        start: impl FnOnce(&mut P, &mut Ctx<P::Msg, P::Event>) -> Option<u64> + Send + 'static,
    ) -> Option<R> {
        let (token, rx) = waiters(&self.shared).wait(client);
        let shared = self.shared.clone();
        self.host.call(move |h, ctx| match start(h, ctx) {
            Some(seq) => waiters(&shared).started(client, token, seq),
            None => waiters(&shared).cancel_token(client, token),
        });
        rx.await.ok()
    }

    /// Points every clerk, and every clerk added from now on, at `servers`.
    pub(crate) fn point_at(host: &ProcessHandle<P>, shared: &Arc<Shared<P>>, servers: P::Servers) {
        let mut now = shared.servers.lock().expect("servers lock");
        if *now == servers {
            return;
        }
        *now = servers;
        drop(now);
        // Read again on the driver task: a clerk added there before this runs got the old
        // servers and is re-pointed here; one added after reads the new ones.
        let shared = shared.clone();
        host.call(move |h, _| h.set_servers(&shared.servers.lock().expect("servers lock")));
    }
}

/// A random node id for a client connection ([`alloc::client_node_id`]): a fresh one per
/// client, and per one-off status or admin connection.
pub(crate) fn random_node_id() -> NodeId {
    alloc::client_node_id(&mut rand::thread_rng())
}

/// The waiters of [`Client::call`].
fn calls<P: ClerkProcess>(s: &Shared<P>) -> &Waiters<P::Reply> {
    &s.calls
}

impl<P: ClerkProcess> Drop for Client<P> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.host.stop();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::task::Poll;

    use super::*;

    /// Polls `f` once: `Some` if it finished.
    pub(crate) async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// Waits until the clerk host has handled every input queued before this call.
    pub(crate) async fn settle<P: ClerkProcess>(c: &Client<P>) {
        c.with(|_| ()).await.expect("the clerk host runs");
    }
}
