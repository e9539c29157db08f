//! The Raft core as a simulated process: the glue every driver writes once.

use flotilla_node::{Ctx, NodeId, Process};
use flotilla_raft::{Apply, Config, Message, ProposeError, Raft};
use flotilla_sim::Persister;

/// One Raft peer in the simulator. Peers are numbered 0..n; the peer's Raft id is its node id.
pub struct RaftServer {
    raft: Raft,
}

impl RaftServer {
    /// Starts peer `id` of `n` from what its persister holds.
    pub fn new(id: NodeId, n: usize, persister: &Persister, seed: u64) -> Self {
        let cfg = Config::new(id as u64, (0..n as u64).collect(), seed);
        let raft = Raft::restore_from_bytes(cfg, persister.state(), persister.snapshot().to_vec())
            .unwrap_or_else(|e| {
                panic!("raft {id}: cannot restart from its own persisted state: {e}")
            });
        RaftServer { raft }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The labs' `Start(command)`: `(index, term)` if this peer is the leader.
    pub fn start(
        &mut self,
        command: Vec<u8>,
        ctx: &mut Ctx<Message, Apply>,
    ) -> Result<(u64, u64), ProposeError> {
        let r = self.raft.propose(command);
        self.flush(ctx);
        r
    }

    /// The labs' `Snapshot(index, snapshot)`.
    pub fn snapshot(&mut self, index: u64, data: Vec<u8>, ctx: &mut Ctx<Message, Apply>) {
        self.raft.snapshot(index, data);
        self.flush(ctx);
    }

    /// Acts on the core's `Ready` in the order it requires: persist, then send, then apply.
    fn flush(&mut self, ctx: &mut Ctx<Message, Apply>) {
        let ready = self.raft.ready();
        if ready.must_persist() {
            ctx.save(self.raft.encode_state(), ready.snapshot.map(|s| s.data));
        }
        for m in ready.messages {
            ctx.send(m.to as NodeId, m.msg);
        }
        for a in ready.applies {
            ctx.emit(a);
        }
    }
}

impl Process for RaftServer {
    type Msg = Message;
    type Event = Apply;

    fn on_tick(&mut self, ctx: &mut Ctx<Message, Apply>) {
        self.raft.tick();
        self.flush(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, ctx: &mut Ctx<Message, Apply>) {
        self.raft.step(from as u64, msg);
        self.flush(ctx);
    }

    fn is_reply(msg: &Message) -> bool {
        msg.is_reply()
    }
}
