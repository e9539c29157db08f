//! Connections: dialed to peers (reconnected with backoff), accepted from clients and peers.
//!
//! Each connection has one writer task that takes everything queued for it and writes it in
//! `Frame::Msgs` frames of up to 1 MiB, in order, so a burst of Raft messages to a peer costs
//! few writes, and no frame exceeds what a receiver accepts ([`MAX_FRAME`]). Queues are
//! bounded; a message for a full queue or a peer that is down is dropped, which Raft and the
//! clerks tolerate (they retransmit), and which keeps a dead peer from eating memory.
//!
//! The peers to dial (the address book) change at runtime ([`Transport::set_peers`]): a
//! replica follows its group's membership, a router the members it learns of. A node with no
//! address for a peer that dials *it* answers over that peer's connection, as it answers
//! clients: a joining node knows no one's address, but every member that added it dials it.
//! A dialer checks that the node answering at an address is the one it expects, so a machine
//! that took over a removed node's address is never taken for that node.

use flotilla_id::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::auth::{self, HandshakeError, Secret};
use crate::frame::{Frame, NodeStatus, MAX_FRAME};
use crate::tls::{BoxIo, PeerTls};

/// Payload bytes of queued messages batched into one frame. A message larger than this still
/// goes, alone in its frame, if it is within [`MAX_FRAME`]. Batching saves a syscall and a
/// header per message, which matters for small messages (heartbeats, client requests and
/// replies); past a few hundred KiB that saving is nil, while a larger frame only delays the
/// receiver (it decodes and delivers nothing of a frame before all of it has arrived) and
/// makes it allocate the whole frame at once. 1 MiB is four of Raft's default AppendEntries
/// batches (`max_append_bytes`, 256 KiB), and about a millisecond on a 10 Gbit/s link.
pub const BATCH_BYTES: usize = 1 << 20;

/// Messages queued per connection before new ones are dropped.
const QUEUE: usize = 8192;
/// Redial back-off, doubling from the minimum. The maximum stays well under the election
/// timeout (300 ms by default): when a partition heals, a leader must hear from its followers
/// again before check-quorum gives up on it, or a healed link costs a needless election.
/// (With 1 s, the network-partition test saw exactly that.) A failed dial on a LAN is cheap.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Sent data unacknowledged this long closes the connection (`TCP_USER_TIMEOUT`), so that it
/// is redialed. Without it, a connection caught in a partition (packets silently dropped)
/// stays open, its retransmissions backing off to seconds apart, and stays silent for seconds
/// after the partition heals: long enough for check-quorum to depose a leader whose
/// followers are all reachable again (the network-partition test saw it). Raft's heartbeats
/// keep data in flight, so a dead link is found within this bound.
const UNACKED_LIMIT: Duration = Duration::from_secs(1);

/// A dial whose TCP handshake has had no answer for this long starts a fresh one alongside
/// (a new SYN from a new port), and the first to answer wins. The kernel resends a SYN only
/// after 1 s: a handshake that lost its SYN or SYN-ACK (a partition healing one host at a
/// time drops the answer to a redial made in between, as the network-partition test saw)
/// would otherwise leave a healed link silent for a second, long enough for check-quorum to
/// depose a leader. The earlier attempts are kept, not aborted, so a link slower than this
/// (a round trip over 200 ms) still connects.
const DIAL_RETRY: Duration = Duration::from_millis(200);

/// A dial none of whose handshakes was answered within this long fails (a dialer then backs
/// off and dials again; a tool reports the node unreachable). It outlasts the kernel's first
/// SYN retransmission (1 s), so that one still counts.
const DIAL_LIMIT: Duration = Duration::from_secs(2);

/// How large the frames a connection's writer builds may be.
#[derive(Clone, Copy, Debug)]
struct FrameLimits {
    /// No frame's payload is larger: what every receiver accepts ([`MAX_FRAME`]).
    max_frame: usize,
    /// Messages are batched into one frame up to this many payload bytes.
    batch_bytes: usize,
}

impl FrameLimits {
    const DEFAULT: FrameLimits = FrameLimits {
        max_frame: MAX_FRAME,
        batch_bytes: BATCH_BYTES,
    };
}

/// Settings every Flotilla TCP connection gets.
fn tune(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(UNACKED_LIMIT))?;
    Ok(())
}

/// Who this transport is and whom it dials.
#[derive(Clone)]
pub struct TransportConfig {
    /// This process's node id, announced in every handshake.
    pub me: NodeId,
    pub secret: Secret,
    /// Peers to dial at first, by node id: messages to them go over our own connection to
    /// them. [`Transport::set_peers`] replaces them.
    pub peers: BTreeMap<NodeId, String>,
    /// Mutual TLS on every connection, if configured.
    pub tls: Option<Arc<PeerTls>>,
}

/// Hands a received message to the local process.
pub type Deliver<M> = Arc<dyn Fn(NodeId, M) + Send + Sync>;
/// Answers a status request (asynchronously: the process answers from its own thread).
pub type StatusSource = Arc<dyn Fn() -> tokio::sync::oneshot::Receiver<NodeStatus> + Send + Sync>;

type Queue<M> = mpsc::Sender<Frame<M>>;

/// One dialed peer.
struct Dialer<M> {
    addr: String,
    /// Its writer queue (also in `writers`, unless a newer one replaced it there).
    queue: Queue<M>,
    /// The task that dials and writes; aborting it closes the connection (see [`Reader`]).
    task: tokio::task::JoinHandle<()>,
}

/// The task reading a dialed connection, aborted when its dialer ends or is aborted, so a
/// dropped peer's connection closes in both directions.
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connections of one process.
pub struct Transport<M> {
    cfg: TransportConfig,
    /// Dialed peers, by id: the current address book. Locked before `writers` when both are.
    dialers: Mutex<BTreeMap<NodeId, Dialer<M>>>,
    /// Writer queues: one per dialed peer, one per accepted connection from a node that is
    /// not a dialed peer (a client, or a peer whose address this node does not know).
    writers: Mutex<HashMap<NodeId, Queue<M>>>,
    /// Where received messages go; set by [`Transport::dial_peers`], used by later dials.
    deliver: OnceLock<Deliver<M>>,
}

impl<M> Transport<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(cfg: TransportConfig) -> Arc<Self> {
        Arc::new(Transport {
            cfg,
            dialers: Mutex::new(BTreeMap::new()),
            writers: Mutex::new(HashMap::new()),
            deliver: OnceLock::new(),
        })
    }

    /// The peers dialed now, by id.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let dialers = self.dialers.lock().expect("dialers lock");
        dialers
            .iter()
            .map(|(&id, d)| (id, d.addr.clone()))
            .collect()
    }

    /// Queues `msg` for node `to`; dropped if there is no connection or its queue is full.
    pub fn send(&self, to: NodeId, msg: M) {
        let writers = self.writers.lock().expect("writers lock");
        if let Some(q) = writers.get(&to) {
            if q.try_send(Frame::Msgs(vec![msg])).is_err() {
                tracing::debug!(to = to.get(), "queue full or closed; message dropped");
            }
        }
    }

    /// Starts one dialer per configured peer and keeps `deliver` for the peers
    /// [`Transport::set_peers`] adds later. Must run inside a tokio runtime.
    pub fn dial_peers(self: &Arc<Self>, deliver: Deliver<M>) {
        if self.deliver.set(deliver).is_err() {
            panic!("node {}: dial_peers called twice", self.cfg.me);
        }
        self.set_peers(self.cfg.peers.clone());
    }

    /// Makes `peers` the address book: dials the new ones (and those whose address changed),
    /// drops the rest, closing their connections. Must run inside a tokio runtime, after
    /// [`Transport::dial_peers`].
    pub fn set_peers(self: &Arc<Self>, peers: BTreeMap<NodeId, String>) {
        let deliver = self
            .deliver
            .get()
            .unwrap_or_else(|| panic!("node {}: set_peers before dial_peers", self.cfg.me))
            .clone();
        let mut dialers = self.dialers.lock().expect("dialers lock");
        let mut writers = self.writers.lock().expect("writers lock");
        let stale: Vec<NodeId> = (dialers.iter())
            .filter(|&(id, d)| peers.get(id) != Some(&d.addr))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            let d = dialers.remove(&id).expect("a listed dialer");
            d.task.abort();
            if writers.get(&id).is_some_and(|q| q.same_channel(&d.queue)) {
                writers.remove(&id);
            }
            tracing::info!(peer = id.get(), addr = %d.addr, "no longer dialed");
        }
        for (&peer, addr) in &peers {
            self.dial_locked(&mut dialers, &mut writers, peer, addr, &deliver);
        }
    }

    /// Adds `peer` at `addr` to the address book, unless it is there already (at any
    /// address): a sharded deployment's servers dial the servers of other groups as the
    /// configurations name them, and never drop one (a group that left may still be asked
    /// for shards it holds). Must run inside a tokio runtime, after [`Transport::dial_peers`].
    pub fn add_peer(self: &Arc<Self>, peer: NodeId, addr: &str) {
        let deliver = self
            .deliver
            .get()
            .unwrap_or_else(|| panic!("node {}: add_peer before dial_peers", self.cfg.me))
            .clone();
        let mut dialers = self.dialers.lock().expect("dialers lock");
        let mut writers = self.writers.lock().expect("writers lock");
        self.dial_locked(&mut dialers, &mut writers, peer, addr, &deliver);
    }

    /// Starts dialing `peer` at `addr` unless it is dialed already (or is this node).
    fn dial_locked(
        self: &Arc<Self>,
        dialers: &mut BTreeMap<NodeId, Dialer<M>>,
        writers: &mut HashMap<NodeId, Queue<M>>,
        peer: NodeId,
        addr: &str,
        deliver: &Deliver<M>,
    ) {
        if peer == self.cfg.me || dialers.contains_key(&peer) {
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        writers.insert(peer, tx.clone());
        let me = self.clone();
        let (a, deliver) = (addr.to_owned(), deliver.clone());
        let task = tokio::spawn(async move { me.dialer(peer, a, rx, deliver).await });
        let d = Dialer {
            addr: addr.to_owned(),
            queue: tx,
            task,
        };
        dialers.insert(peer, d);
    }

    async fn dialer(
        self: Arc<Self>,
        peer: NodeId,
        addr: String,
        mut rx: mpsc::Receiver<Frame<M>>,
        deliver: Deliver<M>,
    ) {
        let mut backoff = BACKOFF_MIN;
        // The wrong node answering is worth one warning, not one per redial.
        let mut warned = false;
        loop {
            match self.connect(&addr).await {
                Ok((stream, id)) if id == peer => {
                    backoff = BACKOFF_MIN;
                    warned = false;
                    tracing::info!(peer = peer.get(), %addr, "connected");
                    let (r, w) = tokio::io::split(stream);
                    let _reader = Reader(tokio::spawn(read_loop(
                        r,
                        peer,
                        addr.clone(),
                        deliver.clone(),
                        None,
                    )));
                    write_loop(w, &mut rx, &addr, FrameLimits::DEFAULT).await;
                }
                Ok((_, id)) if !warned => {
                    warned = true;
                    tracing::warn!(
                        peer = peer.get(),
                        %addr,
                        "node {id} answers at {addr}, not node {peer} (did a new node take \
                         over the address?); not talking to it as {peer}"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = peer.get(), %addr, "cannot connect: {e}"),
            }
            // Whatever queued while the connection was down is stale; Raft resends.
            while rx.try_recv().is_ok() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self, addr: &str) -> Result<(BoxIo, NodeId), crate::TransportError> {
        connect_to::<M>(addr, &self.cfg.secret, self.cfg.me, self.cfg.tls.as_deref()).await
    }

    /// Accepts connections until the listener fails. A connection whose handshake fails is
    /// closed with a logged reason; so is one that sends a malformed or oversized frame.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        deliver: Deliver<M>,
        status: StatusSource,
    ) {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(BACKOFF_MIN).await;
                    continue;
                }
            };
            let me = self.clone();
            let (deliver, status) = (deliver.clone(), status.clone());
            tokio::spawn(async move {
                if let Err(e) = me.accepted(stream, addr.to_string(), deliver, status).await {
                    tracing::warn!(%addr, "connection closed: {e}");
                }
            });
        }
    }

    async fn accepted(
        self: Arc<Self>,
        tcp: TcpStream,
        addr: String,
        deliver: Deliver<M>,
        status: StatusSource,
    ) -> Result<(), crate::TransportError> {
        tune(&tcp)?;
        let mut stream: BoxIo = match &self.cfg.tls {
            Some(tls) => tls
                .accept(tcp)
                .await
                .map_err(|e| auth::refused(&addr, HandshakeError::Tls(e)))?,
            None => Box::new(tcp),
        };
        let from = auth::accept::<_, M>(&mut stream, &self.cfg.secret, self.cfg.me, &addr).await?;
        let (r, w) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        // Replies to a client go back on its own connection; dialed peers are answered over
        // ours. (The dialers lock is held so that a peer dialed from now on takes over.)
        {
            let dialers = self.dialers.lock().expect("dialers lock");
            if !dialers.contains_key(&from) {
                self.writers
                    .lock()
                    .expect("writers lock")
                    .insert(from, tx.clone());
            }
        }
        let writer =
            tokio::spawn(
                async move { write_loop(w, &mut rx, "client", FrameLimits::DEFAULT).await },
            );
        read_loop(r, from, addr, deliver, Some((status, tx.clone()))).await;
        let mut writers = self.writers.lock().expect("writers lock");
        if writers.get(&from).is_some_and(|q| q.same_channel(&tx)) {
            writers.remove(&from);
        }
        writer.abort();
        Ok(())
    }
}

/// Reads frames until the connection fails, delivering service messages and answering
/// status requests (on accepted connections).
async fn read_loop<R, M>(
    mut r: R,
    from: NodeId,
    addr: String,
    deliver: Deliver<M>,
    status: Option<(StatusSource, Queue<M>)>,
) where
    R: AsyncRead + Unpin,
    M: DeserializeOwned + Send + 'static,
{
    loop {
        let frame: Frame<M> = match flotilla_wire::read_frame(&mut r, MAX_FRAME).await {
            Ok(f) => f,
            Err(flotilla_wire::WireError::Io(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return
            }
            Err(e) => {
                tracing::warn!(from = from.get(), %addr, "closing connection: {e}");
                return;
            }
        };
        match frame {
            Frame::Msgs(msgs) => {
                for m in msgs {
                    deliver(from, m);
                }
            }
            Frame::StatusRequest => {
                if let Some((source, q)) = &status {
                    if let Ok(s) = source().await {
                        let _ = q.send(Frame::Status(s)).await;
                    }
                }
            }
            other => {
                let kind = std::mem::discriminant(&other);
                tracing::warn!(from = from.get(), %addr, "closing connection: unexpected frame {kind:?}");
                return;
            }
        }
    }
}

/// Bytes of a `Msgs` frame's payload besides its messages: the variant tag and the message
/// count, each a postcard varint (at most 5 and 10 bytes).
const MSGS_OVERHEAD: usize = 15;

/// Writes queued frames until the queue closes or a write fails, batching queued messages into
/// `Msgs` frames of at most `limits.batch_bytes` payload bytes, in order. A message that alone
/// would make a frame over `limits.max_frame` is not sent (logged): every receiver would refuse
/// the frame and drop the connection, only for the sender to redial and send it again. Raft
/// retransmits what it needs; the sources of large messages bound them below the cap (client
/// values by `MAX_VALUE_BYTES`, AppendEntries by `max_append_bytes`, Raft snapshots by
/// `snapshot_chunk_bytes`), except shard transfers, which travel whole until they are sent in
/// chunks.
async fn write_loop<W, M>(w: W, rx: &mut mpsc::Receiver<Frame<M>>, addr: &str, limits: FrameLimits)
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let mut w = BufWriter::new(w);
    let mut writer = Batcher {
        limits,
        batch: Vec::new(),
        bytes: 0,
        refused: Refused::default(),
    };
    while let Some(first) = rx.recv().await {
        // Everything queued goes out now, in frames cut by the budget, then one flush.
        let mut next = Some(first);
        while let Some(f) = next {
            if let Err(e) = writer.add(&mut w, f, addr).await {
                tracing::debug!(%addr, "write failed: {e}");
                return;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = writer.write_batch(&mut w, addr).await {
            tracing::debug!(%addr, "write failed: {e}");
            return;
        }
        if let Err(e) = w.flush().await {
            tracing::debug!(%addr, "write failed: {e}");
            return;
        }
    }
}

/// The messages of the frame being built by [`write_loop`].
struct Batcher<M> {
    limits: FrameLimits,
    batch: Vec<M>,
    /// Payload bytes of the messages in `batch`.
    bytes: usize,
    refused: Refused,
}

impl<M: Serialize> Batcher<M> {
    /// Adds `f`'s messages to the batch, writing the batch first whenever the next message
    /// would take it past the budget. Other frames are written at once, after the batch.
    async fn add<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        f: Frame<M>,
        addr: &str,
    ) -> std::io::Result<()> {
        let msgs = match f {
            Frame::Msgs(msgs) => msgs,
            other => {
                self.write_batch(w, addr).await?;
                match flotilla_wire::encode_bounded(&other, self.limits.max_frame) {
                    Ok(frame) => w.write_all(&frame).await?,
                    Err(e) => tracing::error!(%addr, "frame not sent: {e}"),
                }
                return Ok(());
            }
        };
        // A lone message may fill a frame; a batch stops at the budget (never past the cap).
        let budget = self.limits.batch_bytes.min(self.limits.max_frame);
        for m in msgs {
            let len = match flotilla_wire::payload_len(&m) {
                Ok(len) => len,
                Err(e) => {
                    tracing::error!(%addr, "message not sent: {e}");
                    continue;
                }
            };
            if len + MSGS_OVERHEAD > self.limits.max_frame {
                self.refused
                    .note(addr, len + MSGS_OVERHEAD, self.limits.max_frame);
                continue;
            }
            if !self.batch.is_empty() && self.bytes + len + MSGS_OVERHEAD > budget {
                self.write_batch(w, addr).await?;
            }
            self.bytes += len;
            self.batch.push(m);
        }
        Ok(())
    }

    /// Writes the batch as one `Msgs` frame (nothing if it is empty).
    async fn write_batch<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        addr: &str,
    ) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let frame = Frame::Msgs(std::mem::take(&mut self.batch));
        self.bytes = 0;
        match flotilla_wire::encode_bounded(&frame, self.limits.max_frame) {
            Ok(bytes) => w.write_all(&bytes).await,
            // Cannot happen (every message was measured against the cap, with the frame's
            // overhead); should it, the batch is lost as a dropped message is, not the link.
            Err(e) => {
                tracing::error!(%addr, "batch not sent: {e}");
                Ok(())
            }
        }
    }
}

/// Messages a writer refused as larger than the frame cap: logged as an error at the first,
/// then at most every [`REFUSED_LOG_EVERY`] with a count, since a sender may retry the same
/// oversized message again and again.
#[derive(Default)]
struct Refused {
    since_logged: u64,
    logged: Option<std::time::Instant>,
}

const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Refused {
    fn note(&mut self, addr: &str, len: usize, max: usize) {
        self.since_logged += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
            tracing::error!(
                %addr,
                len,
                max,
                refused = self.since_logged,
                "message not sent: a frame of {len} bytes would exceed the {max}-byte frame \
                 limit every receiver enforces ({} such messages since the last report)",
                self.since_logged
            );
            self.since_logged = 0;
            self.logged = Some(std::time::Instant::now());
        }
    }
}

/// Dials `addr` (over TLS if given) and proves knowledge of the secret as node `me`.
pub async fn connect_authenticated<M>(
    addr: &str,
    secret: &Secret,
    me: NodeId,
    tls: Option<&PeerTls>,
) -> Result<BoxIo, crate::TransportError>
where
    M: Serialize + DeserializeOwned,
{
    Ok(connect_to::<M>(addr, secret, me, tls).await?.0)
}

/// As [`connect_authenticated`], also returning the node id the acceptor gave.
pub async fn connect_to<M>(
    addr: &str,
    secret: &Secret,
    me: NodeId,
    tls: Option<&PeerTls>,
) -> Result<(BoxIo, NodeId), crate::TransportError>
where
    M: Serialize + DeserializeOwned,
{
    let tcp = dial_tcp(addr).await?;
    tune(&tcp)?;
    let mut s: BoxIo = match tls {
        Some(tls) => tls
            .connect(tcp)
            .await
            .map_err(|e| auth::refused(addr, HandshakeError::Tls(e)))?,
        None => Box::new(tcp),
    };
    let id = auth::dial::<_, M>(&mut s, secret, me, addr).await?;
    Ok((s, id))
}

/// Opens a TCP connection to `addr`: a new handshake every [`DIAL_RETRY`] while none has been
/// answered, the first answer deciding (a refusal fails the dial at once, as before), for at
/// most [`DIAL_LIMIT`]. Handshakes still pending when one wins are dropped.
async fn dial_tcp(addr: &str) -> std::io::Result<TcpStream> {
    // Resolved once: each attempt tries the same addresses in turn, as `connect(addr)` does.
    let addrs: Arc<[std::net::SocketAddr]> = tokio::net::lookup_host(addr).await?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        ));
    }
    let start = tokio::time::Instant::now();
    let deadline = start + DIAL_LIMIT;
    let mut next = start;
    // Dropping the set (on return, or when the dialer is aborted) aborts the other attempts.
    let mut attempts = tokio::task::JoinSet::new();
    loop {
        if tokio::time::Instant::now() >= next && next < deadline {
            let addrs = addrs.clone();
            attempts.spawn(async move { TcpStream::connect(&addrs[..]).await });
            next += DIAL_RETRY;
        }
        tokio::select! {
            biased;
            Some(done) = attempts.join_next() => {
                return done.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            }
            () = tokio::time::sleep_until(next.min(deadline)) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer from {addr} within {DIAL_LIMIT:?}"),
                    ));
                }
            }
        }
    }
}

/// Asks the node at `addr` for its status (what `flotilla ctl status` does).
pub async fn fetch_status<M>(
    addr: &str,
    secret: &Secret,
    me: NodeId,
    tls: Option<&PeerTls>,
) -> Result<NodeStatus, crate::TransportError>
where
    M: Serialize + DeserializeOwned,
{
    let mut s = connect_authenticated::<M>(addr, secret, me, tls).await?;
    flotilla_wire::write_frame(&mut s, &Frame::<M>::StatusRequest).await?;
    loop {
        match flotilla_wire::read_frame::<_, Frame<M>>(&mut s, MAX_FRAME).await? {
            Frame::Status(st) => return Ok(st),
            Frame::Msgs(_) => continue,
            _ => {
                let expected = "a status answer";
                let reason = HandshakeError::UnexpectedFrame { expected };
                return Err(auth::refused(addr, reason));
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Handshakes from this network namespace to `port` waiting for an answer (sockets in
    /// SYN_SENT, from `/proc/net/tcp`).
    fn handshakes_in_flight(port: u16) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let remote = format!(":{port:04X}");
        (table.lines().skip(1))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 3 && f[2].ends_with(&remote) && f[3] == "02")
            .count()
    }

    /// A peer whose SYN-ACK is lost (here: a listener whose accept queue is full drops the
    /// SYN) is not left to the kernel's SYN retransmission, 1 s later: the dialer starts fresh
    /// handshakes alongside, and once the peer answers, messages flow.
    #[tokio::test(flavor = "current_thread")]
    async fn an_unanswered_handshake_is_raced_by_fresh_ones() {
        use socket2::{Domain, Socket, Type};
        // Backlog 0: the accept queue holds one connection; the filler takes that place, so
        // the listener drops every SYN until something accepts.
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        sock.listen(0).unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        let filler = TcpStream::connect(addr).await.unwrap();

        let secret = Secret::new("transport-test-secret").unwrap();
        let cfg = |me, peers| TransportConfig {
            me,
            secret: secret.clone(),
            peers,
            tls: None,
        };
        let dialer = Transport::<u64>::new(cfg(
            NodeId::new(1),
            BTreeMap::from([(NodeId::new(2), addr.to_string())]),
        ));
        dialer.dial_peers(Arc::new(|_, _| {}));

        // Fresh handshakes, not one waiting for the kernel to resend its SYN.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while handshakes_in_flight(addr.port()) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "a handshake without an answer was not raced by a fresh one within 5 s \
                 ({} in flight)",
                handshakes_in_flight(addr.port())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Node 2 starts accepting: the queue empties and the next handshake gets through.
        let freed = std::time::Instant::now();
        drop(filler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let peer = Transport::<u64>::new(cfg(NodeId::new(2), BTreeMap::new()));
        let listener = TcpListener::from_std(sock.into()).unwrap();
        let status: StatusSource = Arc::new(|| tokio::sync::oneshot::channel().1);
        let deliver: Deliver<u64> = Arc::new(move |from, m| {
            let _ = tx.send((from, m));
        });
        tokio::spawn(peer.serve(listener, deliver, status));
        // Messages queued while the link is down are dropped: send until one arrives.
        let got = loop {
            dialer.send(NodeId::new(2), 7);
            match tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
                Ok(got) => break got,
                Err(_) => assert!(
                    freed.elapsed() < Duration::from_secs(10),
                    "no message within 10 s of the peer accepting"
                ),
            }
        };
        assert_eq!(got, Some((NodeId::new(1), 7)));
        eprintln!(
            "connected {:?} after the peer began accepting",
            freed.elapsed()
        );
    }

    /// Runs a writer with `limits` over an in-memory pipe, queues `queued`, and returns the
    /// frames the other end reads (each read with `limits.max_frame` as the receiver's cap,
    /// so a larger frame fails the read, as it would drop a real connection).
    async fn frames_written(
        limits: FrameLimits,
        queued: Vec<Frame<(u32, Vec<u8>)>>,
    ) -> Vec<Vec<(u32, Vec<u8>)>> {
        let (a, mut b) = tokio::io::duplex(64 << 10);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        for f in queued {
            tx.try_send(f).expect("queue has room");
        }
        drop(tx);
        let writer = tokio::spawn(async move { write_loop(a, &mut rx, "test", limits).await });
        let mut frames = Vec::new();
        loop {
            match flotilla_wire::read_frame::<_, Frame<(u32, Vec<u8>)>>(&mut b, limits.max_frame)
                .await
            {
                Ok(Frame::Msgs(m)) => frames.push(m),
                Ok(_) => panic!("unexpected frame"),
                Err(flotilla_wire::WireError::Io(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    break
                }
                Err(e) => panic!("the receiver refuses a frame: {e}"),
            }
        }
        writer.await.unwrap();
        frames
    }

    /// Queued messages that together are far past the frame cap all arrive, in order, in
    /// frames the receiver accepts. (The writer once merged the whole queue into one frame:
    /// a backlog of AppendEntries made frames of gigabytes, refused by every receiver.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_backlog_larger_than_the_cap_goes_in_frames_under_it() {
        let limits = FrameLimits {
            max_frame: 4096,
            batch_bytes: 4096,
        };
        // 200 messages of ~300 bytes (60 KB, 15 caps' worth), queued one by one and in
        // multi-message batches, as `Transport::send` and status answers queue them.
        let msg = |i: u32| (i, vec![(i % 100) as u8; 300]);
        let mut queued: Vec<_> = (0..100).map(|i| Frame::Msgs(vec![msg(i)])).collect();
        queued.push(Frame::Msgs((100..200).map(msg).collect()));
        let frames = frames_written(limits, queued).await;
        let got: Vec<_> = frames.concat();
        assert_eq!(got, (0..200).map(msg).collect::<Vec<_>>());
        assert!(frames.len() >= 15, "only {} frames", frames.len());
        assert!(frames.iter().all(|f| !f.is_empty()));
    }

    /// A message larger than the cap is refused by the writer (and logged); the messages
    /// around it still arrive, in order, on the same connection.
    #[tokio::test(flavor = "current_thread")]
    async fn a_message_larger_than_the_cap_is_not_sent_and_the_rest_are() {
        let limits = FrameLimits {
            max_frame: 4096,
            batch_bytes: 1024,
        };
        let small = |i: u32| (i, vec![1u8; 100]);
        let queued = vec![
            Frame::Msgs(vec![small(0), small(1)]),
            Frame::Msgs(vec![(2, vec![2u8; 5000])]),
            // Over the batch budget but within the cap: alone in its frame.
            Frame::Msgs(vec![(3, vec![3u8; 3000]), small(4)]),
        ];
        let frames = frames_written(limits, queued).await;
        let got: Vec<_> = frames.concat();
        assert_eq!(
            got,
            vec![small(0), small(1), (3, vec![3u8; 3000]), small(4)]
        );
    }
}
