//! Deliberately broken KV servers, to prove that the testers and the linearizability checker
//! catch what they are meant to catch. Never used outside tests.

use flotilla_kv::{AppendReply, Kv, KvCommand, KvMsg, KvReplica};
use flotilla_node::{Ctx, NodeId, Process};
use flotilla_rsm::{ApplyCtx, Msg, Response, StateMachine};

/// A single-node server without the exactly-once table: every copy of a request is applied,
/// so a retried Append (its first reply was lost) is appended twice.
#[derive(Default)]
pub struct NoDedupServer {
    kv: Option<Kv>,
}

impl Process for NoDedupServer {
    type Msg = KvMsg;
    type Event = ();

    fn on_tick(&mut self, _ctx: &mut Ctx<KvMsg, ()>) {}

    fn on_message(&mut self, from: NodeId, msg: KvMsg, ctx: &mut Ctx<KvMsg, ()>) {
        let Msg::Request(req) = msg else { return };
        let kv = self
            .kv
            .get_or_insert_with(|| Kv::new(AppendReply::OldValue));
        let reply = kv.apply(req.cmd, &ApplyCtx::zero());
        ctx.send(
            from,
            Msg::Response(Response {
                client: req.client,
                seq: req.seq,
                now_ms: 0,
                result: Ok(reply),
            }),
        );
    }

    fn is_reply(msg: &KvMsg) -> bool {
        msg.is_reply()
    }
}

/// A replicated server that answers Gets at once from its own applied state, leader or not,
/// without going through the log: a follower (or a deposed leader) serves stale reads.
pub struct LocalReadReplica {
    pub inner: KvReplica,
}

impl Process for LocalReadReplica {
    type Msg = KvMsg;
    type Event = ();

    fn on_tick(&mut self, ctx: &mut Ctx<KvMsg, ()>) {
        self.inner.on_tick(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: KvMsg, ctx: &mut Ctx<KvMsg, ()>) {
        if let Msg::Request(req) = &msg {
            if let KvCommand::Get { key } = &req.cmd {
                let value = self.inner.state().machine().get(key).map(<[u8]>::to_vec);
                ctx.send(
                    from,
                    Msg::Response(Response {
                        client: req.client,
                        seq: req.seq,
                        now_ms: 0,
                        result: Ok(flotilla_kv::KvReply::Value(value)),
                    }),
                );
                return;
            }
        }
        self.inner.on_message(from, msg, ctx);
    }

    fn is_reply(msg: &KvMsg) -> bool {
        msg.is_reply()
    }
}

/// A replica that answers clients before its save is durable even when it is the only voter,
/// so its commits rest on nothing durable: a crash inside the sync forgets an acknowledged
/// write. (The correct replica sends answers early only when a commit needs another voter's
/// acknowledgement: `Raft::commit_needs_peer_ack`.)
pub struct EarlyReplyReplica {
    pub inner: KvReplica,
}

impl Process for EarlyReplyReplica {
    type Msg = KvMsg;
    type Event = ();

    fn on_tick(&mut self, ctx: &mut Ctx<KvMsg, ()>) {
        self.inner.on_tick(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: KvMsg, ctx: &mut Ctx<KvMsg, ()>) {
        self.inner.on_message(from, msg, ctx);
    }

    fn is_reply(msg: &KvMsg) -> bool {
        msg.is_reply()
    }

    fn may_send_before_save(&self, msg: &KvMsg) -> bool {
        matches!(msg, Msg::Response(_)) || self.inner.may_send_before_save(msg)
    }
}
