//! `flotilla server`: one replica of the replicated KV service, of the shard controller or of
//! a shard group, as a process.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use flotilla_kv::Kv;
use flotilla_raft::ReadMode;
use flotilla_server::server::{run_replica, ServerConfig, Timers};
use flotilla_server::sharded::{run_shard_server, ShardRole, ShardServerSettings};
use flotilla_shardctrler::DEFAULT_SHARDS;
use tokio::net::TcpListener;

use crate::auth::{SecretArgs, TlsArgs};
use crate::process::{runtime, shutdown_signal};
use crate::units::{parse_duration, parse_size};

fn parse_read_mode(s: &str) -> Result<ReadMode, String> {
    match s {
        "read-index" => Ok(ReadMode::ReadIndex),
        "lease" => Ok(ReadMode::Lease),
        "log" => Ok(ReadMode::Log),
        _ => Err(format!(
            "unknown read mode {s:?}: use read-index, lease or log"
        )),
    }
}

/// What a `flotilla server` process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A replica of the (single-group) replicated KV service.
    Kv,
    /// A replica of the shard controller of a sharded deployment.
    Ctrler,
    /// A replica of shard group --gid of a sharded deployment.
    Shard,
}

/// `flotilla server`: runs one replica.
#[derive(Args)]
#[command(
    after_help = "Sharded deployment: run three `--role ctrler` replicas (the shard \
controller) and groups of `--role shard --gid N --ctrlers C1,C2,C3` replicas, every one with \
--peers listing its own group's addresses and --id its position there; then \
`flotilla ctl join N ADDR,ADDR,ADDR` hands group N shards, and `flotilla router --ctrlers \
C1,C2,C3` serves them. Every process of one deployment needs the same --shards."
)]
pub struct ServerArgs {
    /// What to run: a replica of the replicated KV service (`kv`), of the shard controller
    /// (`ctrler`), or of a shard group (`shard`, with --gid and --ctrlers).
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// The shard group this replica belongs to (--role shard; not 0).
    #[arg(long)]
    gid: Option<u64>,
    /// The shard controller's replicas, comma-separated (--role shard).
    #[arg(long, value_delimiter = ',')]
    ctrlers: Vec<String>,
    /// Shards of a sharded deployment (--role ctrler and shard; default 10); every process
    /// of the deployment must be given the same number.
    #[arg(long)]
    shards: Option<usize>,
    /// A TOML file with any of the settings below (same names, with underscores: `id`,
    /// `peers` as a list, `data_dir`, `max_raft_state` as "8MiB", `secret_file`, `tls_cert`, …);
    /// flags given as well override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This replica's id. A founding replica's is its position (from 0) in --peers; a joining
    /// replica's (--join) is any id the group has never used, e.g. the next after its highest.
    #[arg(long, required_unless_present = "config")]
    id: Option<u64>,
    /// The founding replicas' addresses, this one's included, comma-separated, in id order.
    /// They are the group's first membership; later members' addresses travel with the
    /// membership in the log, so the list need not change when members are added or removed.
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["config", "join"])]
    peers: Vec<String>,
    /// Address to listen on (default: this replica's entry in --peers).
    #[arg(long)]
    listen: Option<String>,
    /// Join a running group instead of founding one: start with a new, empty --data-dir,
    /// listening on --listen (or this id's entry in --peers), and wait, never campaigning,
    /// until `flotilla ctl add-node ID ADDR` adds it (ADDR: where the others reach it). It
    /// learns the membership and the members' addresses from the leader; --peers is optional.
    /// Keep the flag when restarting it: it is ignored once the data directory holds a
    /// membership.
    #[arg(long)]
    join: bool,
    /// Directory for the write-ahead log and snapshots (created if missing).
    #[arg(long, required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// Snapshot when the Raft state on disk reaches this size (default 64MiB: a snapshot costs the whole state, so it is taken rarely; restart replays at most this much log).
    #[arg(long, value_parser = parse_size)]
    max_raft_state: Option<u64>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long)]
    metrics: Option<String>,
    /// How often the leader sends heartbeats (default 50ms).
    #[arg(long, value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// Start an election after hearing from no leader for a random time between this and twice
    /// this; with check-quorum, a leader cut off from a majority this long steps down
    /// (default 300ms; at least three heartbeats).
    #[arg(long, value_parser = parse_duration)]
    election_timeout: Option<Duration>,
    /// How reads are served: `read-index` (default; one heartbeat round confirms leadership for
    /// a batch of reads), `lease` (no round while the leader's lease lasts: 50 ms shorter than
    /// the election timeout, assuming clocks drift less than that over one timeout), or `log`
    /// (every read is a log entry, written and fsynced).
    #[arg(long, value_parser = parse_read_mode)]
    read_mode: Option<ReadMode>,
    /// Forget a client's exactly-once session after it wrote nothing for this long, by the
    /// leaders' clocks stamped into the log (default 1h: far beyond any client's retries; a
    /// client that comes back later gets "session expired" for a command it was retrying).
    #[arg(long, value_parser = parse_duration)]
    session_idle: Option<Duration>,
    /// Keep at most this many sessions (per shard on a shard group), forgetting the least
    /// recently active first (default 100000).
    #[arg(long)]
    max_sessions: Option<u64>,
    #[command(flatten)]
    secret: SecretArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// `flotilla server --config FILE`: the same settings as the flags.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    role: Option<Role>,
    gid: Option<u64>,
    #[serde(default)]
    ctrlers: Vec<String>,
    shards: Option<usize>,
    id: Option<u64>,
    #[serde(default)]
    peers: Vec<String>,
    listen: Option<String>,
    join: Option<bool>,
    data_dir: Option<PathBuf>,
    max_raft_state: Option<String>,
    metrics: Option<String>,
    heartbeat: Option<String>,
    election_timeout: Option<String>,
    read_mode: Option<String>,
    session_idle: Option<String>,
    max_sessions: Option<u64>,
    secret_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_server_name: Option<String>,
}

impl ServerArgs {
    /// Fills what the flags left out from the config file, if any.
    fn resolve(mut self) -> Result<Self, String> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        let f: ServerFile = toml::from_str(&text)
            .map_err(|e| format!("bad config file {}: {e}", path.display()))?;
        self.id = self.id.or(f.id);
        self.role = self.role.or(f.role);
        self.gid = self.gid.or(f.gid);
        if self.ctrlers.is_empty() {
            self.ctrlers = f.ctrlers;
        }
        self.shards = self.shards.or(f.shards);
        if self.peers.is_empty() {
            self.peers = f.peers;
        }
        self.listen = self.listen.or(f.listen);
        self.join = self.join || f.join.unwrap_or(false);
        self.data_dir = self.data_dir.or(f.data_dir);
        if self.max_raft_state.is_none() {
            self.max_raft_state = f.max_raft_state.as_deref().map(parse_size).transpose()?;
        }
        self.metrics = self.metrics.or(f.metrics);
        if self.heartbeat.is_none() {
            self.heartbeat = f.heartbeat.as_deref().map(parse_duration).transpose()?;
        }
        if self.read_mode.is_none() {
            self.read_mode = f.read_mode.as_deref().map(parse_read_mode).transpose()?;
        }
        if self.session_idle.is_none() {
            self.session_idle = f.session_idle.as_deref().map(parse_duration).transpose()?;
        }
        self.max_sessions = self.max_sessions.or(f.max_sessions);
        if self.election_timeout.is_none() {
            self.election_timeout = f
                .election_timeout
                .as_deref()
                .map(parse_duration)
                .transpose()?;
        }
        self.secret.secret_file = self.secret.secret_file.or(f.secret_file);
        self.tls.tls_cert = self.tls.tls_cert.or(f.tls_cert);
        self.tls.tls_key = self.tls.tls_key.or(f.tls_key);
        self.tls.tls_ca = self.tls.tls_ca.or(f.tls_ca);
        if let Some(n) = f.tls_server_name {
            self.tls.tls_server_name = n;
        }
        Ok(self)
    }
}

impl ServerArgs {
    /// `--session-idle` and `--max-sessions`, defaults filled in.
    fn session_limits(&self) -> Result<flotilla_rsm::SessionLimits, String> {
        let mut limits = flotilla_rsm::SessionLimits::default();
        if let Some(idle) = self.session_idle {
            limits.idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        }
        if let Some(max) = self.max_sessions {
            if max == 0 {
                return Err("--max-sessions must be at least 1".into());
            }
            limits.max_sessions = max;
        }
        Ok(limits)
    }
}

pub fn server(args: ServerArgs) -> Result<(), String> {
    let args = args.resolve()?;
    let id = args
        .id
        .ok_or("no replica id: give --id or `id` in the config file")?;
    if args.peers.is_empty() && !args.join {
        return Err(
            "no peers: give --peers or `peers` in the config file (or --join to join a running \
             group)"
                .into(),
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .ok_or("no data directory: give --data-dir or `data_dir` in the config file")?;
    let max_raft_state = args.max_raft_state.unwrap_or(64 << 20);
    let defaults = Timers::default();
    let timers = Timers {
        heartbeat: args.heartbeat.unwrap_or(defaults.heartbeat),
        election_timeout: args.election_timeout.unwrap_or(defaults.election_timeout),
    };
    timers.validate().map_err(|e| e.to_string())?;
    let secret = args.secret.load()?;
    let me = id as usize;
    if me >= args.peers.len() && !args.join {
        return Err(format!(
            "replica id {id} is not a position in the peers ({} replicas); to add a replica \
             to a running group, start it with --join",
            args.peers.len()
        ));
    }
    let listen = match (&args.listen, args.peers.get(me)) {
        (Some(l), _) => l.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(format!(
                "replica {id} has no address to listen on: give --listen (or --peers with an \
                 entry at position {id})"
            ))
        }
    };
    let role = args.role.unwrap_or(Role::Kv);
    if role != Role::Kv {
        return sharded_server(args, role, timers, data_dir, listen);
    }
    let id = flotilla_id::alloc::replica_node_id(id).map_err(|e| e.to_string())?;
    if args.gid.is_some() || !args.ctrlers.is_empty() || args.shards.is_some() {
        return Err("--gid, --ctrlers and --shards are for --role shard or ctrler".into());
    }
    let (storage, recovered) = crate::storage::open(&data_dir)?;
    let cfg = ServerConfig {
        id,
        peers: args.peers.clone(),
        join: args.join,
        secret,
        max_raft_state: Some(max_raft_state as usize),
        sessions: args.session_limits()?,
        metrics: args.metrics.clone(),
        tls: args.tls.load()?,
        timers,
        read_mode: args.read_mode.unwrap_or(ReadMode::ReadIndex),
    };
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let join = cfg.join;
        tracing::info!(id = cfg.id.get(), %listen, join, data = %data_dir.display(), "replica starting");
        run_replica(
            cfg,
            Kv::default(),
            storage,
            recovered,
            listener,
            shutdown_signal(),
        )
        .await
        .map_err(|e| format!("replica {me} stopped: {e}"))
    })
}

/// `flotilla server --role ctrler|shard`: one replica of a sharded deployment.
fn sharded_server(
    args: ServerArgs,
    role: Role,
    timers: Timers,
    data_dir: PathBuf,
    listen: String,
) -> Result<(), String> {
    if args.join {
        return Err(
            "--join is for --role kv: a sharded deployment grows by joining new groups \
             (`flotilla ctl join`)"
                .into(),
        );
    }
    let id = args.id.expect("checked by the caller") as usize;
    let role = match role {
        Role::Ctrler => {
            if args.gid.is_some() || !args.ctrlers.is_empty() {
                return Err("--gid and --ctrlers are for --role shard".into());
            }
            ShardRole::Ctrler
        }
        _ => {
            let gid = args
                .gid
                .ok_or("--role shard needs --gid N (the group's id, not 0)")?;
            if gid == 0 {
                return Err("--gid 0 is reserved (it means \"no group\")".into());
            }
            if args.ctrlers.is_empty() {
                return Err(
                    "--role shard needs --ctrlers ADDR,ADDR,ADDR (the shard controller)".into(),
                );
            }
            ShardRole::Group {
                gid,
                ctrlers: args.ctrlers.clone(),
            }
        }
    };
    let cfg = ShardServerSettings {
        role,
        peers: args.peers.clone(),
        index: id,
        nshards: args.shards.unwrap_or(DEFAULT_SHARDS),
        secret: args.secret.load()?,
        max_raft_state: Some(args.max_raft_state.unwrap_or(64 << 20) as usize),
        sessions: args.session_limits()?,
        metrics: args.metrics.clone(),
        tls: args.tls.load()?,
        timers,
        read_mode: args.read_mode.unwrap_or(ReadMode::ReadIndex),
    };
    let (storage, recovered) = crate::storage::open(&data_dir)?;
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        tracing::info!(role = ?cfg.role, index = id, %listen, data = %data_dir.display(), "sharded server starting");
        run_shard_server(cfg, storage, recovered, listener, shutdown_signal())
            .await
            .map_err(|e| format!("server {id} stopped: {e}"))
    })
}
