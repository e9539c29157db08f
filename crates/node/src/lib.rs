//! # flotilla-node: the one trait every Flotilla server and clerk implements
//!
//! A [`Process`] is a deterministic state machine. Its inputs are a periodic tick and messages
//! from other processes (plus whatever direct requests its owner makes, e.g. `start` on a Raft
//! server); its outputs go into a [`Ctx`]: messages to send, bytes to persist, and events for
//! its owner (applied commands, replies to clients). The simulator (`flotilla-sim`) drives it
//! in virtual time; a TCP/disk driver will drive the very same type for real.
//!
//! ## Correctness contract for drivers
//! After each input, a driver must make [`Ctx`]'s save durable **before** transmitting any of
//! its sends: a sent message may depend on the saved state (a vote, an acknowledged entry).
//! The one exception is a message for which [`Process::may_send_before_save`] is true.

use std::time::Duration;

/// Identifies a process (a server or a clerk) within one cluster: an index from 0.
pub type NodeId = usize;

/// A deterministic, I/O-free server or client.
pub trait Process {
    /// What processes send each other.
    type Msg;
    /// What the process reports to its owner (applied commands, client replies, …).
    type Event;

    /// One unit of time has passed (the driver fixes the tick length).
    fn on_tick(&mut self, ctx: &mut Ctx<Self::Msg, Self::Event>);

    /// A tick that passed while the driver could not run the process (it stalled, in a slow
    /// fsync say). The driver feeds every such tick, then the inputs that queued during the
    /// stall, then one [`Process::on_tick`]. The process's clocks must advance as on
    /// `on_tick` (a lease must not outlast real time), but it may leave acting on what fell
    /// due to that `on_tick`, which sees the queued inputs first: a leader whose followers
    /// answered during the stall is not deposed for not having heard them. Default:
    /// `on_tick`.
    fn on_missed_tick(&mut self, ctx: &mut Ctx<Self::Msg, Self::Event>) {
        self.on_tick(ctx);
    }

    /// A message from `from` arrived.
    fn on_message(&mut self, from: NodeId, msg: Self::Msg, ctx: &mut Ctx<Self::Msg, Self::Event>);

    /// True if `msg` answers an earlier request. Drivers use it for statistics (RPC counts
    /// count requests) and for fault injection that targets replies.
    fn is_reply(_msg: &Self::Msg) -> bool {
        false
    }

    /// True if `msg` may be sent before the save of the input that produced it is durable
    /// (the exception to the contract above; see `flotilla_raft::Message::may_precede_persist`
    /// for the cases and the condition they place on drivers). Drivers that persist at once
    /// may ignore it.
    fn may_send_before_save(&self, _msg: &Self::Msg) -> bool {
        false
    }

    /// The answer to `msg`, sent back to its sender instead of feeding `msg` to the process,
    /// while the driver cannot feed it anything (`why`). Drivers call it for every message
    /// that arrives meanwhile. A process answers the requests whose senders should hear why
    /// (a client's command: "the disk is full, try elsewhere") and returns `None` for the
    /// rest, which the driver drops as a lossy network would (Raft's traffic is retried).
    /// The answer must not depend on state the process has not yet made durable.
    fn refuse(&self, _msg: &Self::Msg, _why: Refusal) -> Option<Self::Msg> {
        None
    }
}

/// Why a driver refuses a process's inputs for now (see [`Process::refuse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The process's storage has no space left: its latest saves wait to be written, and
    /// nothing can be fed to it until they are (every input may depend on them).
    DiskFull,
}

/// A write to stable storage: the state, and optionally a new snapshot (`None` keeps the
/// stored one). Both parts change atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Save {
    pub state: Vec<u8>,
    pub snapshot: Option<Vec<u8>>,
    /// `state` is appended to the stored state instead of replacing it (an incremental
    /// write, as a write-ahead log does). Never set together with a snapshot.
    pub append: bool,
}

/// The outputs of one input, collected for the driver.
#[derive(Debug)]
pub struct Ctx<M, E> {
    now: Duration,
    /// Time comparable across processes (see [`Ctx::wall_clock`]).
    wall: Duration,
    sends: Vec<(NodeId, M)>,
    save: Option<Save>,
    events: Vec<E>,
}

impl<M, E> Ctx<M, E> {
    /// A context whose wall clock is `now` too: right for the simulator, where every
    /// process shares one virtual clock. Real drivers add [`Ctx::with_wall_clock`].
    pub fn new(now: Duration) -> Self {
        Ctx {
            now,
            wall: now,
            sends: Vec::new(),
            save: None,
            events: Vec::new(),
        }
    }

    /// The driver's clock (virtual in the simulator). Processes should prefer counting ticks.
    /// Monotonic, but its origin is the driver's start: not comparable across processes.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Sets the wall clock (time since the UNIX epoch, read from the host's clock).
    pub fn with_wall_clock(mut self, since_epoch: Duration) -> Self {
        self.wall = since_epoch;
        self
    }

    /// A clock comparable across processes: the host's time since the UNIX epoch in a real
    /// driver, the shared virtual time in the simulator. Unlike [`Ctx::now`] it may jump
    /// (an operator or NTP setting the host's clock); a replicated service that stamps it
    /// into its log must make what it derives from it monotonic itself (`flotilla_rsm`
    /// does), and must not base safety on it.
    pub fn wall_clock(&self) -> Duration {
        self.wall
    }

    /// An empty context for an inner process (a replica inside a shard group's server),
    /// with the same clocks.
    pub fn child<N, F>(&self) -> Ctx<N, F> {
        Ctx::new(self.now).with_wall_clock(self.wall)
    }

    pub fn send(&mut self, to: NodeId, msg: M) {
        self.sends.push((to, msg));
    }

    /// Persists `state` (and `snapshot` if given). A later save in the same input replaces an
    /// earlier one, but keeps the earlier snapshot if the later one has none.
    pub fn save(&mut self, state: Vec<u8>, snapshot: Option<Vec<u8>>) {
        let snapshot = snapshot.or_else(|| self.save.take().and_then(|s| s.snapshot));
        self.save = Some(Save {
            state,
            snapshot,
            append: false,
        });
    }

    /// Appends `bytes` to the persisted state (after any earlier save of this input).
    pub fn append_state(&mut self, bytes: &[u8]) {
        match &mut self.save {
            Some(s) => s.state.extend_from_slice(bytes),
            None => {
                self.save = Some(Save {
                    state: bytes.to_vec(),
                    snapshot: None,
                    append: true,
                })
            }
        }
    }

    pub fn emit(&mut self, event: E) {
        self.events.push(event);
    }

    /// Replays these outputs (an inner process's, run with a context of its own) into
    /// `outer`, mapping messages and events into the outer process's types: the save first,
    /// then the sends and events in order.
    pub fn forward_into<N, F>(
        self,
        outer: &mut Ctx<N, F>,
        msg: impl Fn(M) -> N,
        event: impl Fn(E) -> F,
    ) {
        match self.save {
            Some(s) if s.append => outer.append_state(&s.state),
            Some(s) => outer.save(s.state, s.snapshot),
            None => {}
        }
        for (to, m) in self.sends {
            outer.send(to, msg(m));
        }
        for e in self.events {
            outer.emit(event(e));
        }
    }

    /// The collected outputs, in the order the driver must act on them: save, sends, events.
    pub fn into_parts(self) -> (Option<Save>, Vec<(NodeId, M)>, Vec<E>) {
        (self.save, self.sends, self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_save_keeps_an_earlier_snapshot() {
        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.save(vec![1], Some(vec![9]));
        ctx.save(vec![2], None);
        let (save, _, _) = ctx.into_parts();
        assert_eq!(
            save,
            Some(Save {
                state: vec![2],
                snapshot: Some(vec![9]),
                append: false,
            })
        );
    }

    #[test]
    fn appends_extend_the_save_of_the_same_input() {
        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.append_state(&[1]);
        ctx.append_state(&[2]);
        let (save, _, _) = ctx.into_parts();
        assert_eq!(
            save.as_ref().map(|s| (&s.state[..], s.append)),
            Some((&[1, 2][..], true))
        );
        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.save(vec![7], None);
        ctx.append_state(&[8]);
        let (save, _, _) = ctx.into_parts();
        assert_eq!(save.map(|s| (s.state, s.append)), Some((vec![7, 8], false)));
    }
}
