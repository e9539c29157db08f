//! The controller's replicated state: every configuration so far, changed by Join, Leave and
//! Move and read by Query. Run under `flotilla_rsm::Replica` like the KV service, so it gets
//! the same log, exactly-once table, snapshots and ReadIndex reads.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_rsm::{ApplyCtx, SnapshotError, StateMachine};
use serde::{Deserialize, Serialize};

use crate::config::{rebalance, Gid, ShardConfig, DEFAULT_SHARDS};

/// What clerks ask the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlCommand {
    /// New groups and their servers; the shards are rebalanced over all groups.
    Join(BTreeMap<Gid, Vec<String>>),
    /// Groups leave; their shards are spread over the rest.
    Leave(Vec<Gid>),
    /// Shard `shard` goes to group `gid` (no rebalancing; a later Join or Leave may move it).
    Move { shard: usize, gid: Gid },
    /// Configuration `num`, or the latest for `None` or a number not reached yet (as the lab).
    Query(Option<u64>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlReply {
    /// A Join, Leave or Move took effect; the latest configuration is now `num` (unchanged if
    /// the command changed nothing).
    Done {
        num: u64,
    },
    Config(ShardConfig),
    Err(CtrlError),
}

/// A command the controller refuses, without changing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CtrlError {
    #[error("gid 0 is reserved (it means \"no group\")")]
    ZeroGid,
    #[error("group {0} has already joined")]
    AlreadyJoined(Gid),
    #[error("group {0} has no servers")]
    NoServers(Gid),
    #[error("group {0} is not in the configuration")]
    UnknownGroup(Gid),
    #[error("shard {shard} does not exist (there are {shards})")]
    NoSuchShard { shard: usize, shards: usize },
    #[error("nothing to do: the command names no group")]
    Empty,
}

/// Every configuration, oldest first (index = number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctrler {
    configs: Vec<ShardConfig>,
}

impl Ctrler {
    /// A controller of `nshards` shards (the labs use [`DEFAULT_SHARDS`]).
    pub fn new(nshards: usize) -> Self {
        Ctrler {
            configs: vec![ShardConfig::initial(nshards)],
        }
    }

    pub fn latest(&self) -> &ShardConfig {
        self.configs.last().expect("configuration 0 always exists")
    }

    fn query(&self, num: Option<u64>) -> &ShardConfig {
        match num {
            Some(n) if (n as usize) < self.configs.len() => &self.configs[n as usize],
            _ => self.latest(),
        }
    }

    /// Checks a change against the latest configuration.
    fn check(&self, cmd: &CtrlCommand) -> Result<(), CtrlError> {
        let latest = self.latest();
        match cmd {
            CtrlCommand::Join(groups) => {
                if groups.is_empty() {
                    return Err(CtrlError::Empty);
                }
                for (&g, servers) in groups {
                    if g == 0 {
                        return Err(CtrlError::ZeroGid);
                    }
                    if latest.groups.contains_key(&g) {
                        return Err(CtrlError::AlreadyJoined(g));
                    }
                    if servers.is_empty() {
                        return Err(CtrlError::NoServers(g));
                    }
                }
            }
            CtrlCommand::Leave(gids) => {
                if gids.is_empty() {
                    return Err(CtrlError::Empty);
                }
                if let Some(&g) = gids.iter().find(|g| !latest.groups.contains_key(g)) {
                    return Err(CtrlError::UnknownGroup(g));
                }
            }
            CtrlCommand::Move { shard, gid } => {
                if *shard >= latest.shards.len() {
                    return Err(CtrlError::NoSuchShard {
                        shard: *shard,
                        shards: latest.shards.len(),
                    });
                }
                if !latest.groups.contains_key(gid) {
                    return Err(CtrlError::UnknownGroup(*gid));
                }
            }
            CtrlCommand::Query(_) => {}
        }
        Ok(())
    }

    /// Appends `next` as the next configuration if it differs from the latest.
    fn push(&mut self, mut next: ShardConfig) -> u64 {
        let latest = self.latest();
        if next.shards == latest.shards && next.groups == latest.groups {
            return latest.num;
        }
        next.num = latest.num + 1;
        self.configs.push(next);
        self.latest().num
    }
}

impl Default for Ctrler {
    fn default() -> Self {
        Ctrler::new(DEFAULT_SHARDS)
    }
}

impl StateMachine for Ctrler {
    type Command = CtrlCommand;
    type Reply = CtrlReply;

    fn apply(&mut self, cmd: CtrlCommand, _at: &ApplyCtx) -> CtrlReply {
        if let Err(e) = self.check(&cmd) {
            return CtrlReply::Err(e);
        }
        let mut next = self.latest().clone();
        match cmd {
            CtrlCommand::Query(num) => return CtrlReply::Config(self.query(num).clone()),
            CtrlCommand::Join(groups) => {
                next.groups.extend(groups);
                let live: BTreeSet<Gid> = next.groups.keys().copied().collect();
                next.shards = rebalance(&next.shards, &live);
            }
            CtrlCommand::Leave(gids) => {
                for g in &gids {
                    next.groups.remove(g);
                }
                let live: BTreeSet<Gid> = next.groups.keys().copied().collect();
                next.shards = rebalance(&next.shards, &live);
            }
            CtrlCommand::Move { shard, gid } => next.shards[shard] = gid,
        }
        CtrlReply::Done {
            num: self.push(next),
        }
    }

    fn is_read_only(cmd: &CtrlCommand) -> bool {
        matches!(cmd, CtrlCommand::Query(_))
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.configs).expect("encoding into a Vec cannot fail")
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        if data.is_empty() {
            let nshards = self.configs[0].shards.len();
            *self = Ctrler::new(nshards);
            return Ok(());
        }
        let configs: Vec<ShardConfig> =
            postcard::from_bytes(data).map_err(|e| SnapshotError(e.to_string()))?;
        if configs.is_empty() {
            return Err(SnapshotError("no configuration 0".to_owned()));
        }
        self.configs = configs;
        Ok(())
    }
}
