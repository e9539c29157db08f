//! The Raft core as a simulated process for the labs' Raft tester: the shared
//! [`RaftPeer`] glue, with committed entries reported to the tester as events.

use flotilla_node::{Ctx, NodeId, Process};
use flotilla_raft::{
    Apply, Config, MembershipChange, MembershipError, Message, ProposeError, Raft, TransferError,
};
use flotilla_rsm::RaftPeer;
use flotilla_sim::Persister;

/// One Raft peer in the simulator. Peers are numbered 0..n; the peer's Raft id is its node id.
pub struct RaftServer {
    peer: RaftPeer,
    /// Test-only breakage: every message may leave before the save it depends on (votes and
    /// acknowledgements included), to prove that the slow-disk simulation catches it.
    early_everything: bool,
}

impl RaftServer {
    /// Starts peer `id` of `n` from what its persister holds.
    pub fn new(id: NodeId, n: usize, persister: &Persister, seed: u64) -> Self {
        Self::with_window(id, n, persister, seed, 1)
    }

    /// As [`RaftServer::new`], with `window` AppendEntries in flight per follower.
    pub fn with_window(
        id: NodeId,
        n: usize,
        persister: &Persister,
        seed: u64,
        window: u32,
    ) -> Self {
        Self::with_config(id, n, persister, seed, &|cfg: &mut Config| {
            cfg.max_inflight_appends = window
        })
    }

    /// As [`RaftServer::new`], with the labs' [`Config::new`] changed by `modify` (which must
    /// leave `id`, `voters` and `seed` alone).
    pub fn with_config(
        id: NodeId,
        n: usize,
        persister: &Persister,
        seed: u64,
        modify: &dyn Fn(&mut Config),
    ) -> Self {
        Self::with_voters(
            id,
            (0..n).map(NodeId::from_index).collect(),
            persister,
            seed,
            modify,
        )
    }

    /// As [`RaftServer::with_config`], booting with `voters` as the cluster's configuration
    /// ([`Config::voters`]): empty for a peer that joins a running cluster and waits for a
    /// leader to add it.
    pub fn with_voters(
        id: NodeId,
        voters: Vec<NodeId>,
        persister: &Persister,
        seed: u64,
        modify: &dyn Fn(&mut Config),
    ) -> Self {
        let mut cfg = Config::new(id, voters, seed);
        modify(&mut cfg);
        let peer =
            RaftPeer::restore(cfg, persister.state(), persister.snapshot()).unwrap_or_else(|e| {
                panic!("raft {id}: cannot restart from its own persisted state: {e}")
            });
        RaftServer {
            peer,
            early_everything: false,
        }
    }

    /// Breaks the peer on purpose: it sends votes and acknowledgements before what they
    /// promise is durable (see [`Process::may_send_before_save`]). Only for tests that show
    /// the checks catch it.
    pub fn send_everything_before_save(mut self) -> Self {
        self.early_everything = true;
        self
    }

    pub fn raft(&self) -> &Raft {
        self.peer.raft()
    }

    /// The labs' `Start(command)`: `(index, term)` if this peer is the leader.
    pub fn start(
        &mut self,
        command: Vec<u8>,
        ctx: &mut Ctx<Message, Apply>,
    ) -> Result<(u64, u64), ProposeError> {
        let r = self.peer.raft_mut().propose(command);
        self.flush(ctx);
        r
    }

    /// Starts a leader transfer to peer `to` ([`Raft::transfer_leadership`]).
    pub fn transfer_leadership(
        &mut self,
        to: NodeId,
        ctx: &mut Ctx<Message, Apply>,
    ) -> Result<(), TransferError> {
        let r = self.peer.raft_mut().transfer_leadership(to);
        self.flush(ctx);
        r
    }

    /// Proposes a membership change ([`Raft::propose_membership`]).
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
        ctx: &mut Ctx<Message, Apply>,
    ) -> Result<(u64, u64), MembershipError> {
        let r = self.peer.raft_mut().propose_membership(change);
        self.flush(ctx);
        r
    }

    /// The labs' `Snapshot(index, snapshot)`.
    pub fn snapshot(&mut self, index: u64, data: Vec<u8>, ctx: &mut Ctx<Message, Apply>) {
        self.peer.raft_mut().snapshot(index, data);
        self.flush(ctx);
    }

    fn flush(&mut self, ctx: &mut Ctx<Message, Apply>) {
        for a in self.peer.flush(ctx, |m| m).applies {
            ctx.emit(a);
        }
    }
}

impl Process for RaftServer {
    type Msg = Message;
    type Event = Apply;

    fn on_tick(&mut self, ctx: &mut Ctx<Message, Apply>) {
        self.peer.raft_mut().tick();
        self.flush(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, ctx: &mut Ctx<Message, Apply>) {
        self.peer.raft_mut().step(from, msg);
        self.flush(ctx);
    }

    fn is_reply(msg: &Message) -> bool {
        msg.is_reply()
    }

    fn may_send_before_save(&self, msg: &Message) -> bool {
        self.early_everything || self.raft().may_send_early(msg)
    }
}
