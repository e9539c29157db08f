//! The client side of the sharded system as one process: shard clerks (key → shard → group,
//! one per sequential client) and controller clerks (Join/Leave/Move/Query for operators'
//! tools), sharing one node id and one set of connections. The deployed clients
//! (`flotilla-client`'s `ShardClient`) and the simulator's shard tester both run it.

use flotilla_node::{Ctx, NodeId, Process};
use flotilla_rsm::{ClerkEvent, ClerkHost, Msg};
use flotilla_shardctrler::{CtrlCommand, CtrlReply};

use crate::{ShardClerkEvent, ShardClerkHost, ShardMsg};

/// Shard clerks and controller clerks in one process.
pub struct ShardClientHost {
    pub shard: ShardClerkHost,
    pub ctrl: ClerkHost<CtrlCommand, CtrlReply>,
    /// The controller's replicas, for controller clerks added with [`Self::add_ctrl_clerk`].
    pub ctrlers: Vec<NodeId>,
}

/// A finished operation of a [`ShardClientHost`]'s clerk.
#[derive(Debug)]
pub enum ClientEvent {
    Kv(ShardClerkEvent),
    Ctrl(ClerkEvent<CtrlReply>),
}

impl ShardClientHost {
    pub fn new(
        shard: ShardClerkHost,
        ctrl: ClerkHost<CtrlCommand, CtrlReply>,
        ctrlers: Vec<NodeId>,
    ) -> Self {
        ShardClientHost {
            shard,
            ctrl,
            ctrlers,
        }
    }

    /// A controller clerk talking to [`Self::ctrlers`].
    pub fn add_ctrl_clerk(&mut self) -> flotilla_rsm::ClientId {
        self.ctrl.add_clerk(self.ctrlers.clone())
    }
}

impl Process for ShardClientHost {
    type Msg = ShardMsg;
    type Event = ClientEvent;

    fn on_tick(&mut self, ctx: &mut Ctx<ShardMsg, ClientEvent>) {
        ctx.scoped(|m| m, ClientEvent::Kv, |inner| self.shard.on_tick(inner));
        ctx.scoped(ShardMsg::Ctrl, ClientEvent::Ctrl, |inner| {
            self.ctrl.on_tick(inner)
        });
    }

    /// A controller's response goes to the controller clerk it names; everything else
    /// (groups' responses, and the controller's answers to shard clerks' queries) to the
    /// shard clerks.
    fn on_message(&mut self, from: NodeId, msg: ShardMsg, ctx: &mut Ctx<ShardMsg, ClientEvent>) {
        match msg {
            ShardMsg::Ctrl(m @ Msg::Response(_)) if matches!(&m, Msg::Response(r) if self.ctrl.clerk(r.client).is_some()) =>
            {
                ctx.scoped(ShardMsg::Ctrl, ClientEvent::Ctrl, |inner| {
                    self.ctrl.on_message(from, m, inner)
                });
            }
            other => {
                ctx.scoped(
                    |m| m,
                    ClientEvent::Kv,
                    |inner| self.shard.on_message(from, other, inner),
                );
            }
        }
    }

    fn is_reply(msg: &ShardMsg) -> bool {
        msg.is_reply()
    }
}
