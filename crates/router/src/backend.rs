//! The service behind the router: one replicated KV group, or a sharded Flotilla. The only
//! file that knows the client types (`GroupClient`, `ShardClient`); everything else asks a
//! [`Backend`] for clerks and runs commands on them.

use std::sync::Arc;

use flotilla_client::{GroupClient, ShardClient};
use flotilla_kv::{KvCommand, KvError, KvReply};
use flotilla_rsm::{ClientId, RsmError};

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

    /// How many shards, for a sharded cluster.
    pub(crate) fn nshards(&self) -> Option<usize> {
        match self {
            Backend::Group(_) => None,
            Backend::Sharded(c) => Some(c.nshards()),
        }
    }

    /// INFO's line on the service: how many replicas, or shards, are behind the router.
    pub(crate) fn info_line(&self) -> String {
        match self {
            Backend::Group(c) => format!("flotilla_replicas:{}", c.servers().len()),
            Backend::Sharded(c) => format!("flotilla_shards:{}", c.nshards()),
        }
    }
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
