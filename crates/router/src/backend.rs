//! The service behind the router: one replicated KV group, or a sharded Flotilla. The only
//! file that knows the client types (`GroupClient`, `ShardClient`); everything else asks a
//! [`Backend`] for clerks and runs commands on them.

use std::sync::Arc;
use std::time::Duration;

use flotilla_client::admin::{survey, ClusterView};
use flotilla_client::{ClientError, GroupClient, ShardClient};
use flotilla_kv::{KvCommand, KvError, KvMsg, KvReply};
use flotilla_rsm::{ClientId, RsmError};
use flotilla_shardkv::ShardMsg;
use flotilla_transport::NodeStatus;

use crate::{RouterConfig, RouterError};

/// The service behind the router.
pub(crate) enum Backend {
    Group(Arc<GroupClient<KvCommand, KvReply>>),
    Sharded(Arc<ShardClient>),
}

/// Which group holds each key, as a sharded clerk last saw the configuration: what splits a
/// multi-key command by group.
#[derive(Default)]
pub(crate) struct Placement {
    /// Shard `i`'s group; empty before the clerk's first configuration (every key in group 0).
    groups: Vec<u64>,
}

impl Placement {
    /// The group `key` is in.
    pub(crate) fn group(&self, key: &[u8]) -> u64 {
        match self.groups.len() {
            0 => 0,
            n => self.groups[flotilla_shardkv::key_shard(key, n)],
        }
    }
}

impl Backend {
    /// The clients `cfg` asks for; must run inside a tokio runtime.
    pub(crate) fn connect(cfg: &RouterConfig) -> Result<Backend, RouterError> {
        Ok(match &cfg.sharded {
            Some(s) => Backend::Sharded(ShardClient::connect(
                &s.ctrlers,
                s.nshards,
                cfg.secret.clone(),
                cfg.tls.clone(),
            )?),
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
        })
    }

    pub(crate) async fn new_clerk(&self) -> ClientId {
        match self {
            Backend::Group(c) => c.new_clerk().await,
            Backend::Sharded(c) => c.new_clerk().await,
        }
    }

    pub(crate) async fn call(&self, clerk: ClientId, cmd: KvCommand) -> Option<KvReply> {
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

    pub(crate) fn abandon(&self, clerk: ClientId) {
        match self {
            Backend::Group(c) => c.abandon(clerk),
            Backend::Sharded(c) => c.abandon(clerk),
        }
    }

    /// Whether keys may be in different groups (then multi-key commands split by group).
    pub(crate) fn sharded(&self) -> bool {
        matches!(self, Backend::Sharded(_))
    }

    /// Where `clerk` believes the keys are (one group, for a group's clients).
    pub(crate) async fn placement(&self, clerk: ClientId) -> Placement {
        match self {
            Backend::Group(_) => Placement::default(),
            Backend::Sharded(c) => Placement {
                groups: c.config_of(clerk).await.unwrap_or_default().shards,
            },
        }
    }

    /// The fewest servers a group has: of the one group, or of the groups of the
    /// configuration `clerk` last saw (the controller's latest without a clerk); `None` when
    /// it cannot be learnt now.
    pub(crate) async fn smallest_group(&self, clerk: Option<ClientId>) -> Option<usize> {
        match self {
            Backend::Group(c) => Some(c.servers().len()),
            Backend::Sharded(c) => {
                let config = match clerk {
                    Some(clerk) => c.config_of(clerk).await,
                    None => None,
                };
                let config = match config {
                    Some(config) if !config.groups.is_empty() => config,
                    _ => c.query(None, DESCRIBE_WAIT).await.ok()?,
                };
                config.groups.values().map(Vec::len).min()
            }
        }
    }

    /// How many shards, for a sharded cluster.
    pub(crate) fn nshards(&self) -> Option<usize> {
        match self {
            Backend::Group(_) => None,
            Backend::Sharded(c) => Some(c.nshards()),
        }
    }

    /// INFO's line on the service: how many replicas, or shards, are behind the router.
    pub(crate) fn info_line(&self) -> (&'static str, String) {
        match self {
            Backend::Group(c) => ("flotilla_replicas", c.servers().len().to_string()),
            Backend::Sharded(c) => ("flotilla_shards", c.nshards().to_string()),
        }
    }
}

/// How long INFO's `flotilla` section waits for the servers' statuses and the controller's
/// configuration: a server that does not answer by then is reported as not answering.
const DESCRIBE_WAIT: Duration = Duration::from_secs(1);

impl Backend {
    /// INFO's `flotilla` section: the service's groups (the controller's too, sharded), each
    /// with its leader's address (`none` while it has none that answers), the highest term
    /// its servers report, its voters, and how many of its servers answered; sharded, also
    /// the configuration's number and each group's shards. Asked of the servers themselves
    /// (status requests, as `flotilla ctl status` does), so it is the groups' state now.
    pub(crate) async fn describe(&self, cfg: &RouterConfig) -> Vec<(String, String)> {
        let mut out = vec![(
            "flotilla_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )];
        let tls = cfg.tls.clone();
        match self {
            Backend::Group(_) => {
                let answers = survey::<KvMsg>(&cfg.servers, &cfg.secret, tls, DESCRIBE_WAIT).await;
                out.push(("backend".into(), "group".into()));
                out.push(("groups".into(), "1".into()));
                out.push(("group0".into(), group_line(&cfg.servers, answers)));
            }
            Backend::Sharded(c) => {
                out.push(("backend".into(), "sharded".into()));
                out.push(("shards".into(), c.nshards().to_string()));
                let ctrlers = cfg
                    .sharded
                    .as_ref()
                    .map(|s| s.ctrlers.clone())
                    .unwrap_or_default();
                let config = c.query(None, DESCRIBE_WAIT).await;
                let groups: Vec<(u64, Vec<String>)> = match &config {
                    Ok(config) => config.groups.iter().map(|(g, s)| (*g, s.clone())).collect(),
                    Err(_) => Vec::new(),
                };
                // Every server at once: the controller's first, then each group's.
                let mut addrs = ctrlers.clone();
                for (_, servers) in &groups {
                    addrs.extend(servers.iter().cloned());
                }
                let mut answers = survey::<ShardMsg>(&addrs, &cfg.secret, tls, DESCRIBE_WAIT)
                    .await
                    .into_iter();
                match &config {
                    Ok(config) => {
                        out.push(("config".into(), config.num.to_string()));
                        out.push(("groups".into(), config.groups.len().to_string()));
                    }
                    Err(e) => out.push(("config_error".into(), e.to_string())),
                }
                let ctrl: Vec<_> = answers.by_ref().take(ctrlers.len()).collect();
                out.push(("ctrl".into(), group_line(&ctrlers, ctrl)));
                for (g, servers) in &groups {
                    let mine: Vec<_> = answers.by_ref().take(servers.len()).collect();
                    let owned = config
                        .as_ref()
                        .map_or(0, |c| c.shards.iter().filter(|o| *o == g).count());
                    let line = format!("{},shards={owned}", group_line(servers, mine));
                    out.push((format!("group{g}"), line));
                }
            }
        }
        out
    }
}

/// One group's line: `leader=ADDR|none,term=T,voters=N,answered=K/M`.
fn group_line(servers: &[String], answers: Vec<Result<NodeStatus, ClientError>>) -> String {
    let heard: Vec<(String, NodeStatus)> = (servers.iter().zip(answers))
        .filter_map(|(a, r)| r.ok().map(|s| (a.clone(), s)))
        .collect();
    let view = ClusterView::of(&heard).unwrap_or_default();
    let leader = (view.leader)
        .and_then(|l| view.addrs.get(&l).cloned())
        .unwrap_or_else(|| "none".into());
    format!(
        "leader={leader},term={},voters={},answered={}/{}",
        view.term,
        view.voters.len(),
        heard.len(),
        servers.len()
    )
}

/// A key in shard `shard` of `nshards`: what routes a keyless command (`DBSIZE` …) to that
/// shard. A hash tag, so that the key is found in a few tries and never collides with a
/// user's key in meaning (it is only routed on, never stored).
pub(crate) fn route_key(shard: usize, nshards: usize) -> Vec<u8> {
    (0u64..)
        .map(|i| format!("{{flotilla-shard-{i}}}").into_bytes())
        .find(|k| flotilla_shardkv::key_shard(k, nshards) == shard)
        .expect("some key hashes to every shard")
}
