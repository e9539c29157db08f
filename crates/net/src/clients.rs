//! The client side on TCP: many clerks in one [`ClerkHost`], driven by the driver loop, with
//! an async call API for whoever serves end users (the Redis-protocol router, tests, tools).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use flotilla_rsm::{ClerkConfig, ClerkEvent, ClerkHost, ClientId, Msg};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::driver::{self, MemoryDurable, Outputs, ProcessHandle};
use crate::server::TICK;
use crate::transport::{Deliver, Transport, TransportConfig};
use crate::Secret;

type Waiting<R> = Arc<Mutex<HashMap<ClientId, oneshot::Sender<R>>>>;

/// Clerks talking to one replicated service.
pub struct Clients<C, R>
where
    C: Clone + Debug + Send + 'static,
    R: Send + 'static,
{
    host: ProcessHandle<ClerkHost<C, R>>,
    waiting: Waiting<R>,
    servers: Vec<usize>,
    transport: Arc<Transport<Msg<C, R>>>,
}

impl<C, R> Clients<C, R>
where
    C: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Connects to the service whose replicas listen at `servers` (by replica id). Must run
    /// inside a tokio runtime. The client's node id and clerk ids are random, so that clients
    /// of different processes and incarnations never share an exactly-once session.
    pub fn connect(servers: &[String], secret: Secret) -> Arc<Self> {
        Self::connect_with(servers, secret, None)
    }

    /// As [`Clients::connect`], over mutual TLS if `tls` is given.
    pub fn connect_with(
        servers: &[String],
        secret: Secret,
        tls: Option<Arc<crate::tls::PeerTls>>,
    ) -> Arc<Self> {
        let mut rng = rand::thread_rng();
        let me: u64 = rng.gen_range(1 << 32..1 << 62);
        let peers: BTreeMap<u64, String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64, a.clone()))
            .collect();
        let transport = Transport::new(TransportConfig {
            me,
            secret,
            peers,
            tls,
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
        Arc::new(Clients {
            host: handle,
            waiting,
            servers: (0..servers.len()).collect(),
            transport,
        })
    }

    /// A new clerk (one sequential client).
    pub async fn new_clerk(&self) -> ClientId {
        let (tx, rx) = oneshot::channel();
        let servers = self.servers.clone();
        self.host.call(move |h, _| {
            let _ = tx.send(h.add_clerk(servers));
        });
        rx.await.expect("the clerk host runs as long as its handle")
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
        self.host.call(move |h, _| h.remove_clerk(client));
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
        self.host.stop();
    }
}
