//! The Redis-protocol front: speaks RESP2 (and RESP3 after `HELLO 3`) to clients and forwards
//! every key/value command to the replicated service through a clerk per connection.
//!
//! A connection's commands run in order, one at a time (its clerk has one operation
//! outstanding), and pipelined requests are answered in order with their replies written
//! together. Bad input never crashes the router: malformed requests and requests over the
//! limits are answered with an error and the connection is closed; unknown commands and wrong
//! arities get an error and the connection goes on.
//!
//! The router fronts either one replicated KV group ([`GroupClient`]) or a sharded Flotilla
//! ([`ShardClient`], with [`RouterConfig::sharded`]): there each connection's clerk maps every
//! key to its shard and the shard to its group by the controller's latest configuration, and
//! follows the shards as they move. Multi-key commands (MGET, MSET, DEL, EXISTS) are split by
//! group, the groups' parts run at once (each on a clerk of its own), and the replies are put
//! back in the order of the keys.
//!
//! ## Limits
//!
//! What a connection may make the router hold is bounded: with a password, a client that has
//! not authenticated may send only Redis's small requests (10 arguments of 16 KiB,
//! [`Limits::UNAUTHENTICATED`]); the bytes all connections hold of requests not yet answered
//! share one budget, [`RouterConfig::max_buffered_bytes`], past which reading pauses (see
//! `router/input.rs` for how every request still completes); replies are written as they pile
//! up, so a client that does not read them stops its pipeline instead of making them
//! accumulate; and a connection idle for [`RouterConfig::idle_timeout`] (neither sending nor
//! taking replies) is closed, as Redis's `timeout` does.

mod input;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use flotilla_kv::{KvCommand, KvError, KvReply, MAX_VALUE_BYTES};
use flotilla_resp::{
    ClientCommand, Command, CommandQuery, Decoder, Hello, Limits, Protocol, Value,
};
use flotilla_rsm::{ClientId, RsmError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use self::input::{Budget, Fill, Input};
use flotilla_client::{GroupClient, ShardClient};
use flotilla_transport::tls::BoxIo;
use flotilla_transport::Secret;

/// The router's settings.
#[derive(Clone)]
pub struct RouterConfig {
    /// Replicas of the (one) KV group to start from (taken to be in id order until one
    /// answers); the router then follows the group's membership.
    pub servers: Vec<String>,
    /// Talk only to `servers`, never to other members it learns of (see
    /// `GroupClient::connect_pinned`).
    pub pin_servers: bool,
    pub secret: Secret,
    /// Clients must `AUTH` with this password first, if set.
    pub password: Option<String>,
    /// Connections beyond this many are refused with an error.
    pub max_clients: usize,
    /// A command the service has not answered within this long gets an error (its outcome is
    /// then unknown: it may still be applied), rather than leaving the client hanging while,
    /// say, no majority of replicas is reachable.
    pub command_timeout: std::time::Duration,
    /// Where to count requests, errors and latency by command.
    pub metrics: Option<Arc<flotilla_host::metrics::Metrics>>,
    /// Mutual TLS towards the replicas, if configured.
    pub tls: Option<Arc<flotilla_transport::tls::PeerTls>>,
    /// TLS towards Redis clients, if configured.
    pub client_tls: Option<tokio_rustls::TlsAcceptor>,
    /// Front a sharded Flotilla instead of one group (`servers` is then unused).
    pub sharded: Option<ShardedRouting>,
    /// The bytes all connections together may hold of requests not yet answered (beyond a
    /// small allowance each), past which they stop reading until some are answered; also the
    /// largest request accepted. See [`DEFAULT_MAX_BUFFERED_BYTES`] and `router/input.rs`.
    pub max_buffered_bytes: usize,
    /// Close a connection whose client has sent nothing for this long (in the middle of a
    /// request too), or taken none of its replies, as Redis's `timeout`; `None` (Redis's
    /// `timeout 0`, the default): never. Time spent waiting for the cluster's answer, or for
    /// the buffer budget, is not idle.
    pub idle_timeout: Option<std::time::Duration>,
}

/// The default [`RouterConfig::max_buffered_bytes`]: 256 MiB, room for eight of the largest
/// values (32 MiB) arriving at once at full speed, or one `MSET` of seven.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;

/// Where a router finds a sharded Flotilla.
#[derive(Clone, Debug)]
pub struct ShardedRouting {
    /// The controller replicas' addresses.
    pub ctrlers: Vec<String>,
    /// Shards in the system (as the servers were started with).
    pub nshards: usize,
}

/// The service behind the router.
enum Backend {
    Group(Arc<GroupClient<KvCommand, KvReply>>),
    Sharded(Arc<ShardClient>),
}

impl Backend {
    async fn new_clerk(&self) -> ClientId {
        match self {
            Backend::Group(c) => c.new_clerk().await,
            Backend::Sharded(c) => c.new_clerk().await,
        }
    }

    async fn call(&self, clerk: ClientId, cmd: KvCommand) -> Option<KvReply> {
        match self {
            // A group out of disk space, or that forgot the clerk's session, answers like a
            // sharded one: with the KV error (`-ERR session expired: …` to the client).
            Backend::Group(c) => (c.call(clerk, cmd).await).map(|r| {
                r.unwrap_or_else(|e| match e {
                    RsmError::SessionExpired => KvReply::Error(KvError::SessionExpired),
                    _ => KvReply::Error(KvError::DiskFull),
                })
            }),
            Backend::Sharded(c) => c.call(clerk, cmd).await,
        }
    }

    fn abandon(&self, clerk: ClientId) {
        match self {
            Backend::Group(c) => c.abandon(clerk),
            Backend::Sharded(c) => c.abandon(clerk),
        }
    }
}

/// A running router's shared state.
pub struct Router {
    cfg: RouterConfig,
    kv: Backend,
    connections: AtomicUsize,
    next_id: AtomicU64,
    /// Clerks of closed connections, reused by new ones: every clerk that ever wrote keeps an
    /// entry in the service's exactly-once table, so reuse bounds the table by the most
    /// connections open at once instead of every connection ever made.
    idle_clerks: std::sync::Mutex<Vec<ClientId>>,
    /// The bytes of requests not yet answered that all connections share.
    budget: Budget,
}

/// Serves clients on `listener` until `shutdown` completes.
pub async fn run_router(
    cfg: RouterConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::NetError> {
    let kv = match &cfg.sharded {
        Some(s) => Backend::Sharded(
            ShardClient::connect(&s.ctrlers, s.nshards, cfg.secret.clone(), cfg.tls.clone())
                .map_err(|e| crate::NetError::Config(e.to_string()))?,
        ),
        None if cfg.pin_servers => Backend::Group(GroupClient::connect_pinned(
            &cfg.servers,
            cfg.secret.clone(),
            cfg.tls.clone(),
        )),
        None => Backend::Group(GroupClient::connect_with(
            &cfg.servers,
            cfg.secret.clone(),
            cfg.tls.clone(),
        )),
    };
    let router = Arc::new(Router {
        budget: Budget::new(cfg.max_buffered_bytes),
        cfg,
        kv,
        connections: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        idle_clerks: std::sync::Mutex::new(Vec::new()),
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let r = router.clone();
                    tokio::spawn(async move { r.serve(stream, addr.to_string()).await });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
    Ok(())
}

/// Replies of pipelined requests gathered before they are written: enough for one write to
/// carry many small replies, small enough that a client not reading costs little.
const REPLIES_BATCH: usize = 64 << 10;

/// Requests a router accepts: values up to the service's limit plus room for the command.
pub fn limits() -> Limits {
    Limits {
        max_bulk_len: MAX_VALUE_BYTES + 1024,
        ..Limits::default()
    }
}

/// One client connection's state.
struct Conn {
    id: u64,
    addr: String,
    proto: Protocol,
    authenticated: bool,
    name: Option<Vec<u8>>,
    /// Created on the first key/value command.
    clerk: Option<ClientId>,
    /// More clerks, for the groups' parts of a multi-key command that run alongside the
    /// first (sharded only); kept for the connection's next such command.
    extra: Vec<ClientId>,
}

/// Whether to keep the connection after a reply.
#[derive(PartialEq)]
enum After {
    Continue,
    Close,
}

impl Router {
    async fn serve(self: Arc<Self>, tcp: TcpStream, addr: String) {
        let _ = tcp.set_nodelay(true);
        let mut stream: BoxIo = match &self.cfg.client_tls {
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(s) => Box::new(s),
                Err(e) => {
                    tracing::info!(%addr, "TLS handshake failed: {e}");
                    return;
                }
            },
            None => Box::new(tcp),
        };
        let open = self.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if open > self.cfg.max_clients {
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            self.connections.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let mut conn = Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            addr,
            proto: Protocol::Resp2,
            authenticated: self.cfg.password.is_none(),
            name: None,
            clerk: None,
            extra: Vec::new(),
        };
        if let Err(e) = self.session(&mut stream, &mut conn).await {
            tracing::debug!(addr = %conn.addr, "connection ended: {e}");
        }
        // The session loop only ends between commands, so the clerks have nothing outstanding.
        let mut idle = self.idle_clerks.lock().expect("idle clerks lock");
        idle.extend(conn.clerk.take());
        idle.append(&mut conn.extra);
        drop(idle);
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// Reads requests, answers them in order; pipelined replies go out together, in writes of
    /// [`REPLIES_BATCH`] or so.
    async fn session(&self, stream: &mut BoxIo, conn: &mut Conn) -> std::io::Result<()> {
        let mut decoder = match conn.authenticated {
            true => Decoder::new(limits()),
            false => Decoder::before_auth(limits(), Limits::UNAUTHENTICATED),
        };
        let mut input = Input::new(&self.budget, conn.id);
        let mut out = Vec::new();
        loop {
            loop {
                match decoder.decode(input.unparsed()) {
                    Ok(Some((args, used))) => {
                        input.parsed(used);
                        let (reply, after) = self.request(conn, args).await;
                        input.answered(used);
                        if conn.authenticated {
                            // Between requests, so the next one is judged by the full limits.
                            decoder.authenticated();
                        }
                        flotilla_resp::encode(&reply, conn.proto, &mut out);
                        if after == After::Close {
                            return self.write_out(stream, &mut out).await;
                        }
                        if out.len() >= REPLIES_BATCH {
                            // Before running the next request: a client that pipelines requests
                            // and does not read the replies must not make them pile up here.
                            self.write_out(stream, &mut out).await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(addr = %conn.addr, "closing connection: {e}");
                        flotilla_resp::encode(&e.to_value(), conn.proto, &mut out);
                        return self.write_out(stream, &mut out).await;
                    }
                }
            }
            self.write_out(stream, &mut out).await?;
            match input.fill(stream, self.cfg.idle_timeout).await? {
                Fill::Data(_) => {}
                Fill::Closed => return Ok(()),
                Fill::Idle => {
                    // Redis closes an idle client without a word.
                    tracing::debug!(addr = %conn.addr, "closing idle connection");
                    return Ok(());
                }
                Fill::TooLarge(max) => {
                    tracing::info!(addr = %conn.addr, "closing connection: request over {max} bytes");
                    let e = Value::error(format!("ERR Protocol error: request larger than the router's max-buffered-bytes ({max} bytes)"));
                    flotilla_resp::encode(&e, conn.proto, &mut out);
                    return self.write_out(stream, &mut out).await;
                }
            }
        }
    }

    /// Writes `out` and empties it. With an idle timeout, a client that takes none of it for
    /// that long is idle too (Redis counts a successful write as interaction): the write fails
    /// with `TimedOut` and the connection closes, rather than holding its replies forever.
    async fn write_out(&self, stream: &mut BoxIo, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut written = 0;
        while written < out.len() {
            let write = stream.write(&out[written..]);
            let n = match self.cfg.idle_timeout {
                Some(limit) => tokio::time::timeout(limit, write).await.map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle: the client took no reply bytes within the timeout",
                    )
                })??,
                None => write.await?,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        out.clear();
        Ok(())
    }

    async fn request(&self, conn: &mut Conn, args: Vec<Vec<u8>>) -> (Value, After) {
        let started = std::time::Instant::now();
        let cmd = match Command::from_args(args) {
            Ok(c) => c,
            Err(e) => {
                self.observe("unknown", started, true);
                return (e.to_value(), After::Continue);
            }
        };
        let name = cmd.name();
        let (reply, after) = self.dispatch(conn, cmd).await;
        self.observe(name, started, matches!(reply, Value::Error(_)));
        (reply, after)
    }

    fn observe(&self, command: &str, started: std::time::Instant, error: bool) {
        if let Some(m) = &self.cfg.metrics {
            m.observe_command(command, started.elapsed(), error);
        }
    }

    async fn dispatch(&self, conn: &mut Conn, cmd: Command) -> (Value, After) {
        let allowed = matches!(
            cmd,
            Command::Auth { .. } | Command::Hello(_) | Command::Quit
        );
        if !conn.authenticated && !allowed {
            return (
                Value::error("NOAUTH Authentication required."),
                After::Continue,
            );
        }
        match cmd {
            Command::Quit => (Value::ok(), After::Close),
            c => (self.execute(conn, c).await, After::Continue),
        }
    }

    async fn execute(&self, conn: &mut Conn, cmd: Command) -> Value {
        match cmd {
            Command::Ping { message: None } => Value::simple("PONG"),
            Command::Ping { message: Some(m) } | Command::Echo { message: m } => Value::bulk(m),
            Command::Auth { username, password } => self.auth(conn, username, &password),
            Command::Hello(h) => self.hello(conn, h),
            Command::Select { db: 0 } => Value::ok(),
            Command::Select { .. } => Value::error("ERR DB index is out of range"),
            Command::Info { .. } => self.info(),
            Command::Command(q) => command_query(q),
            Command::Client(c) => client_command(conn, c),
            Command::ConfigGet { patterns } => config_get(&self.config_values(), &patterns),
            Command::DbSize | Command::FlushAll { .. } | Command::FlushDb { .. } => {
                Value::error(format!(
                    "ERR {} is not supported by flotilla",
                    cmd.name().to_uppercase()
                ))
            }
            kv => self.key_value(conn, kv).await,
        }
    }

    fn auth(&self, conn: &mut Conn, username: Option<Vec<u8>>, password: &[u8]) -> Value {
        let Some(expected) = &self.cfg.password else {
            return Value::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        };
        let user_ok = username.as_deref().is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(password, expected.as_bytes()) {
            conn.authenticated = true;
            Value::ok()
        } else {
            Value::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn hello(&self, conn: &mut Conn, h: Hello) -> Value {
        if let Some((user, pass)) = h.auth {
            let v = self.auth(conn, Some(user), &pass);
            if matches!(v, Value::Error(_)) {
                return v;
            }
        } else if !conn.authenticated {
            return Value::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if let Some(p) = h.protocol {
            conn.proto = p;
        }
        if let Some(n) = h.setname {
            conn.name = Some(n);
        }
        let field = |k: &str, v: Value| (Value::bulk(k), v);
        Value::Map(vec![
            field("server", Value::bulk("redis")),
            field("version", Value::bulk("7.0.0")),
            field("proto", Value::Integer(conn.proto.version())),
            field("id", Value::Integer(conn.id as i64)),
            field("mode", Value::bulk("standalone")),
            field("role", Value::bulk("master")),
            field("modules", Value::Array(Vec::new())),
        ])
    }

    /// The settings `CONFIG GET` reports: redis-benchmark asks for `save` and `appendonly`;
    /// `timeout` and `maxclients` are the router's own, in Redis's units.
    fn config_values(&self) -> Vec<(&'static str, String)> {
        let timeout = self.cfg.idle_timeout.map_or(0.0, |t| t.as_secs_f64());
        vec![
            ("save", String::new()),
            ("appendonly", "yes".into()),
            ("databases", "1".into()),
            ("timeout", format!("{timeout}")),
            ("maxclients", self.cfg.max_clients.to_string()),
        ]
    }

    fn info(&self) -> Value {
        let budget = self.budget.stats();
        let text = format!(
            "# Server\r\nredis_version:7.0.0\r\nflotilla_version:{}\r\nredis_mode:standalone\r\n\r\n# Clients\r\nconnected_clients:{}\r\nflotilla_buffered_bytes:{}\r\nflotilla_buffered_bytes_peak:{}\r\nflotilla_max_buffered_bytes:{}\r\nflotilla_buffer_waits:{}\r\n\r\n# Replication\r\nrole:master\r\n{}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.connections.load(Ordering::Relaxed),
            budget.used,
            budget.peak,
            budget.max,
            budget.waits,
            match &self.kv {
                Backend::Group(c) => format!("flotilla_replicas:{}", c.servers().len()),
                Backend::Sharded(c) => format!("flotilla_shards:{}", c.nshards()),
            }
        );
        Value::bulk(text)
    }

    /// A clerk for a connection: an idle one, else a new one.
    async fn clerk(&self) -> ClientId {
        let reused = self.idle_clerks.lock().expect("idle clerks lock").pop();
        match reused {
            Some(c) => c,
            None => self.kv.new_clerk().await,
        }
    }

    /// Runs one service operation on the connection's clerk.
    async fn call(&self, conn: &mut Conn, cmd: KvCommand) -> Result<KvReply, Value> {
        let clerk = match conn.clerk {
            Some(c) => c,
            None => {
                let c = self.clerk().await;
                conn.clerk = Some(c);
                c
            }
        };
        self.call_on(clerk, cmd).await
    }

    /// Runs operations on many keys, in the order given when they go to one group. With
    /// shards, the keys are split by the group the connection's clerk last saw holding them;
    /// each group's part runs on a clerk of its own, all at once, and the replies come back
    /// in the order of `cmds`. (A stale split costs only speed: every clerk finds each key's
    /// group itself.) The first error ends the command; parts already applied stay applied.
    async fn call_many(
        &self,
        conn: &mut Conn,
        cmds: Vec<KvCommand>,
    ) -> Result<Vec<KvReply>, Value> {
        let Backend::Sharded(shards) = &self.kv else {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                out.push(self.call(conn, c).await?);
            }
            return Ok(out);
        };
        let mut cmds = cmds.into_iter();
        let mut out = Vec::with_capacity(cmds.len());
        let Some(first) = cmds.next() else {
            return Ok(out);
        };
        // The first key goes alone: it gives a new clerk its first configuration.
        out.push(self.call(conn, first).await?);
        let main = conn
            .clerk
            .expect("the connection's clerk exists after a call");
        let config = shards.config_of(main).await.unwrap_or_default();
        let mut parts: Vec<(u64, Vec<(usize, KvCommand)>)> = Vec::new();
        for (i, c) in cmds.enumerate() {
            let gid = match config.shards.len() {
                0 => 0,
                n => config.shards[flotilla_shardkv::key_shard(c.key(), n)],
            };
            match parts.iter_mut().find(|(g, _)| *g == gid) {
                Some((_, p)) => p.push((i + 1, c)),
                None => parts.push((gid, vec![(i + 1, c)])),
            }
        }
        while conn.extra.len() + 1 < parts.len() {
            let c = self.clerk().await;
            conn.extra.push(c);
        }
        let clerks = std::iter::once(main).chain(conn.extra.iter().copied());
        let runs: Vec<_> = (parts.into_iter().zip(clerks))
            .map(|((_, part), clerk)| async move {
                let mut done = Vec::with_capacity(part.len());
                for (i, c) in part {
                    done.push((i, self.call_on(clerk, c).await?));
                }
                Ok::<_, Value>(done)
            })
            .collect();
        let mut replies: Vec<(usize, KvReply)> = Vec::new();
        for r in join_all(runs).await {
            replies.extend(r?);
        }
        replies.sort_by_key(|(i, _)| *i);
        out.extend(replies.into_iter().map(|(_, r)| r));
        Ok(out)
    }

    /// Runs one operation on `clerk`, within the command timeout.
    async fn call_on(&self, clerk: ClientId, cmd: KvCommand) -> Result<KvReply, Value> {
        let limit = self.cfg.command_timeout;
        match tokio::time::timeout(limit, self.kv.call(clerk, cmd)).await {
            Ok(Some(KvReply::Error(e))) => Err(kv_error(&e)),
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(Value::error(
                "ERR internal error: the connection's client is gone",
            )),
            Err(_) => {
                self.kv.abandon(clerk);
                Err(Value::error(format!(
                    "ERR no answer from the cluster within {} s (is a majority of replicas up?); the command may or may not have been applied",
                    limit.as_secs_f64()
                )))
            }
        }
    }

    async fn key_value(&self, conn: &mut Conn, cmd: Command) -> Value {
        match self.key_value_inner(conn, cmd).await {
            Ok(v) | Err(v) => v,
        }
    }

    async fn key_value_inner(&self, conn: &mut Conn, cmd: Command) -> Result<Value, Value> {
        let get = |key: Vec<u8>| KvCommand::Get { key };
        Ok(match cmd {
            Command::Get { key } => value_reply(self.call(conn, get(key)).await?),
            Command::Set {
                key,
                value,
                options,
            } => {
                if options != flotilla_resp::SetOptions::default() {
                    return Err(Value::error("ERR SET options (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL) are not supported by flotilla yet"));
                }
                self.call(
                    conn,
                    KvCommand::Put {
                        key,
                        value: value.into(),
                    },
                )
                .await?;
                Value::ok()
            }
            Command::Append { key, value } => {
                match self
                    .call(
                        conn,
                        KvCommand::Append {
                            key,
                            value: value.into(),
                        },
                    )
                    .await?
                {
                    KvReply::Len(n) => Value::Integer(n as i64),
                    other => unexpected(other),
                }
            }
            Command::Del { keys } => {
                let dels = keys.into_iter().map(|key| KvCommand::Delete { key });
                let replies = self.call_many(conn, dels.collect()).await?;
                let n = (replies.iter())
                    .filter(|r| matches!(r, KvReply::Deleted(true)))
                    .count();
                Value::Integer(n as i64)
            }
            Command::Exists { keys } => {
                let replies = self
                    .call_many(conn, keys.into_iter().map(get).collect())
                    .await?;
                let n = (replies.iter())
                    .filter(|r| matches!(r, KvReply::Value(Some(_))))
                    .count();
                Value::Integer(n as i64)
            }
            Command::MGet { keys } => {
                let replies = self
                    .call_many(conn, keys.into_iter().map(get).collect())
                    .await?;
                Value::Array(replies.into_iter().map(value_reply).collect())
            }
            Command::MSet { pairs } => {
                let puts = (pairs.into_iter()).map(|(key, value)| KvCommand::Put {
                    key,
                    value: value.into(),
                });
                self.call_many(conn, puts.collect()).await?;
                Value::ok()
            }
            Command::Incr { key } => self.incr(conn, key, 1).await?,
            Command::Decr { key } => self.incr(conn, key, -1).await?,
            Command::IncrBy { key, delta } => self.incr(conn, key, delta).await?,
            Command::DecrBy { key, delta } => match delta.checked_neg() {
                Some(by) => self.incr(conn, key, by).await?,
                None => return Err(Value::error("ERR decrement would overflow")),
            },
            other => Value::error(format!(
                "ERR '{}' is not supported by flotilla",
                other.name()
            )),
        })
    }

    async fn incr(&self, conn: &mut Conn, key: Vec<u8>, by: i64) -> Result<Value, Value> {
        match self.call(conn, KvCommand::Incr { key, by }).await? {
            KvReply::Int(n) => Ok(Value::Integer(n)),
            other => Ok(unexpected(other)),
        }
    }
}

/// Runs `futs` at once (on this task) and returns their outputs in order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *o = Some(v);
                }
            }
        }
        if out.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn value_reply(r: KvReply) -> Value {
    match r {
        KvReply::Value(Some(v)) => Value::Bulk(v),
        KvReply::Value(None) => Value::Null,
        other => unexpected(other),
    }
}

fn unexpected(r: KvReply) -> Value {
    Value::error(format!("ERR internal error: unexpected reply {r:?}"))
}

fn kv_error(e: &KvError) -> Value {
    Value::error(format!("ERR {e}"))
}

fn command_query(q: CommandQuery) -> Value {
    match q {
        CommandQuery::Count => Value::Integer(0),
        CommandQuery::List => Value::Array(Vec::new()),
        CommandQuery::Docs { .. } => Value::Map(Vec::new()),
        CommandQuery::Info { names } => {
            Value::Array(names.iter().map(|_| Value::NullArray).collect())
        }
    }
}

fn client_command(conn: &mut Conn, c: ClientCommand) -> Value {
    match c {
        ClientCommand::SetName { name } => {
            conn.name = Some(name);
            Value::ok()
        }
        ClientCommand::GetName => conn.name.clone().map_or(Value::Null, Value::Bulk),
        ClientCommand::Id => Value::Integer(conn.id as i64),
        ClientCommand::Info => Value::bulk(format!(
            "id={} addr={} name={} db=0 resp={}\n",
            conn.id,
            conn.addr,
            String::from_utf8_lossy(conn.name.as_deref().unwrap_or_default()),
            conn.proto.version()
        )),
        ClientCommand::SetInfo { .. } => Value::ok(),
    }
}

/// `CONFIG GET`: the `known` settings matching any of `patterns`, each once.
fn config_get(known: &[(&'static str, String)], patterns: &[Vec<u8>]) -> Value {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for p in patterns {
        for (k, v) in known {
            if glob_match(p, k.as_bytes()) && !pairs.iter().any(|(n, _)| n == k) {
                pairs.push((k, v));
            }
        }
    }
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::bulk(k), Value::bulk(v)))
            .collect(),
    )
}

/// `*` and `?` globbing, as CONFIG GET patterns use.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob_match(rest, text) || (!text.is_empty() && glob_match(pattern, &text[1..]))
        }
        (Some((b'?', rest)), Some((_, t))) => glob_match(rest, t),
        (Some((p, rest)), Some((c, t))) => p.eq_ignore_ascii_case(c) && glob_match(rest, t),
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patterns_glob() {
        assert!(glob_match(b"save", b"save"));
        assert!(glob_match(b"*", b"appendonly"));
        assert!(glob_match(b"APPEND*", b"appendonly"));
        assert!(!glob_match(b"save?", b"save"));
        let known = [("save", String::new()), ("appendonly", "yes".into())];
        let Value::Map(pairs) = config_get(&known, &[b"save".to_vec(), b"*only".to_vec()]) else {
            panic!("a map")
        };
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn passwords_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
