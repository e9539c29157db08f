//! What the processes of a sharded Flotilla send each other: one type, so one transport (the
//! simulator's network or TCP) carries the controller's traffic, each group's, and shards
//! moving between groups.

use serde::{Deserialize, Serialize};

use flotilla_rsm::Msg;
use flotilla_shardctrler::{CtrlCommand, CtrlReply};

use crate::machine::{PullCursor, ShardCommand, ShardPage, ShardReply};

/// The controller's messages: its replicas' Raft traffic, and clerks' (clients', routers',
/// shard groups') queries and changes.
pub type CtrlMsg = Msg<CtrlCommand, CtrlReply>;
/// A shard group's messages: its replicas' Raft traffic, clients' operations.
pub type GroupMsg = Msg<ShardCommand, ShardReply>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardMsg {
    Ctrl(CtrlMsg),
    Group(GroupMsg),
    /// A new owner asks the previous owner for the page of `shard` (which configuration
    /// `num` moved) right after `from`, of at most `max_bytes` of items.
    Pull {
        num: u64,
        shard: usize,
        from: PullCursor,
        max_bytes: u64,
    },
    /// That page, if the previous owner froze the shard at `num` and still holds it (`None`
    /// before it reaches `num`, and after it deleted the shard).
    PullReply {
        num: u64,
        shard: usize,
        page: Option<ShardPage>,
    },
    /// A new owner has installed `shards` (moved by configuration `num`): the previous owner
    /// may delete its copies.
    Delete {
        num: u64,
        shards: Vec<usize>,
    },
    /// The previous owner no longer holds any of `shards`.
    Deleted {
        num: u64,
        shards: Vec<usize>,
    },
}

impl ShardMsg {
    pub fn is_reply(&self) -> bool {
        match self {
            ShardMsg::Ctrl(m) => m.is_reply(),
            ShardMsg::Group(m) => m.is_reply(),
            ShardMsg::Pull { .. } | ShardMsg::Delete { .. } => false,
            ShardMsg::PullReply { .. } | ShardMsg::Deleted { .. } => true,
        }
    }
}
