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
//!
//! A driver that stores saves does so through [`Durable`] ([`durable`]): the storage interface
//! lives here, below both the drivers and the storages that implement it.

use std::time::Duration;

pub mod durable;

pub use bytes::Bytes;
pub use durable::{Durable, DurableError, MemoryDurable};
pub use flotilla_snapshot::SnapshotData;

/// Identifies a process (a server or a client host) within one cluster or simulation; which
/// numbers mean what is `flotilla_id::alloc`'s table. The same type as `flotilla_raft::NodeId`.
pub use flotilla_id::NodeId;

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

    /// The driver can run work off the process's thread ([`Process::take_offloaded`]); a
    /// process that is never told so does all its work inline. Drivers call it once, before
    /// the first input.
    fn allow_offload(&mut self) {}

    /// Work the process wants done off its thread, taken by the driver after each input: the
    /// driver runs each job (on a worker thread, or at once in the simulator) and feeds the
    /// continuation it returns to the process as its next input. A job must not depend on
    /// anything but what it captured (a consistent view taken when it was made), and the
    /// continuation must accept being fed after any number of other inputs — or never, if the
    /// process crashes first. Default: none.
    fn take_offloaded(&mut self) -> Vec<Offloaded<Self>>
    where
        Self: Sized,
    {
        Vec::new()
    }
}

/// An input a process gives itself when offloaded work completes (see
/// [`Process::take_offloaded`]).
pub type Continuation<P> =
    Box<dyn FnOnce(&mut P, &mut Ctx<<P as Process>::Msg, <P as Process>::Event>) + Send>;

/// Work run off the process's thread, returning what the process is fed when it is done.
pub type Offloaded<P> = Box<dyn FnOnce() -> Continuation<P> + Send>;

/// The offloaded work of an inner process, as the work of the outer process that wraps it:
/// each job runs as it would, and its continuation reaches the outer process through
/// `apply`, which feeds it to the inner one (and forwards what that outputs).
pub fn lift_offloaded<I, O, F>(jobs: Vec<Offloaded<I>>, apply: F) -> Vec<Offloaded<O>>
where
    I: Process + 'static,
    O: Process + 'static,
    F: Fn(&mut O, &mut Ctx<O::Msg, O::Event>, Continuation<I>) + Clone + Send + 'static,
{
    (jobs.into_iter())
        .map(|job| -> Offloaded<O> {
            let apply = apply.clone();
            Box::new(move || -> Continuation<O> {
                let then = job();
                Box::new(move |outer: &mut O, ctx: &mut Ctx<O::Msg, O::Event>| {
                    apply(outer, ctx, then)
                })
            })
        })
        .collect()
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
///
/// The snapshot is a [`SnapshotData`]: shared, not copied, on its way from the process to the
/// disk (a snapshot may be gigabytes; a copy on the driver's loop stalls it), and possibly
/// in a file of the storage's spool already, which the storage then installs by renaming.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Save {
    pub state: Vec<u8>,
    pub snapshot: Option<SnapshotData>,
    /// `state` is appended to the stored state instead of replacing it (an incremental
    /// write, as a write-ahead log does). Never set together with a snapshot.
    pub append: bool,
    /// Set only on a replacement carrying a snapshot the process took **of its own state**
    /// (log compaction, [`Ctx::save_local_snapshot`]): the bytes which, appended to the stored
    /// state, make it hold everything `state` does. The stored state so extended, with the
    /// stored snapshot, is then as good a recovery point as `state` with `snapshot`: the
    /// stored log still holds every entry the new snapshot covers. So a storage may append
    /// these bytes now (durable at the next sync, like any append) and write the snapshot
    /// later, in the background, switching to `state`, `snapshot` and the appends made
    /// meanwhile once the snapshot is durable. Storages that write at once may ignore it.
    ///
    /// `None` on every other save, which must be stored as it is before anything depending
    /// on it is sent: a snapshot installed from a leader may have discarded the log it
    /// replaces, so nothing older is a valid recovery point.
    pub local_tail: Option<Vec<u8>>,
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
    /// earlier one, but keeps the earlier snapshot if the later one has none. The save is a
    /// plain replacement (no [`Save::local_tail`]): use it for a snapshot installed from
    /// elsewhere.
    pub fn save(&mut self, state: Vec<u8>, snapshot: Option<SnapshotData>) {
        let snapshot = snapshot.or_else(|| self.save.take().and_then(|s| s.snapshot));
        self.save = Some(Save {
            state,
            snapshot,
            append: false,
            local_tail: None,
        });
    }

    /// Persists `state` with `snapshot`, a snapshot the process took of its own stored state
    /// (log compaction): the stored state, followed by what this input appended before this
    /// call, must hold every entry `snapshot` covers, and `state` must be that state
    /// compacted. The storage may then write the snapshot in the background (see
    /// [`Save::local_tail`]). After an earlier replacement in the same input there is no
    /// stored state to extend: the save is then a plain replacement, as [`Ctx::save`] makes.
    pub fn save_local_snapshot(&mut self, state: Vec<u8>, snapshot: SnapshotData) {
        let local_tail = match self.save.take() {
            None => Some(Vec::new()),
            Some(s) if s.append => Some(s.state),
            // A compaction of a compaction: the stored state plus the tail still holds it all.
            Some(s) => s.local_tail,
        };
        self.save = Some(Save {
            state,
            snapshot: Some(snapshot),
            append: false,
            local_tail,
        });
    }

    /// Appends `bytes` to the persisted state (after any earlier save of this input).
    pub fn append_state(&mut self, bytes: &[u8]) {
        match &mut self.save {
            Some(s) => {
                s.state.extend_from_slice(bytes);
                if let Some(tail) = &mut s.local_tail {
                    tail.extend_from_slice(bytes);
                }
            }
            None => {
                self.save = Some(Save {
                    state: bytes.to_vec(),
                    snapshot: None,
                    append: true,
                    local_tail: None,
                })
            }
        }
    }

    pub fn emit(&mut self, event: E) {
        self.events.push(event);
    }

    /// Runs `f` on a context of its own for an inner process (a replica inside a shard
    /// group's server, a clerk host inside a client), with the same clocks, and forwards
    /// its outputs into this one, messages and events mapped by `msg` and `event` (see
    /// [`Ctx::forward_into`]). Returns what `f` returns.
    pub fn scoped<N, F, T>(
        &mut self,
        msg: impl Fn(N) -> M,
        event: impl Fn(F) -> E,
        f: impl FnOnce(&mut Ctx<N, F>) -> T,
    ) -> T {
        let mut inner = self.child();
        let out = f(&mut inner);
        inner.forward_into(self, msg, event);
        out
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
            Some(Save {
                state,
                snapshot: Some(snapshot),
                local_tail: Some(tail),
                ..
            }) => {
                outer.append_state(&tail);
                outer.save_local_snapshot(state, snapshot);
            }
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
        ctx.save(vec![1], Some(Bytes::from_static(&[9]).into()));
        ctx.save(vec![2], None);
        let (save, _, _) = ctx.into_parts();
        assert_eq!(
            save,
            Some(Save {
                state: vec![2],
                snapshot: Some(Bytes::from_static(&[9]).into()),
                append: false,
                local_tail: None,
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

    /// A local snapshot records what the input appended before it as the tail to append to
    /// the stored state; appends after it extend both; a replacement before it (or a plain
    /// save after it) makes it a plain replacement.
    #[test]
    fn a_local_snapshot_carries_the_appends_of_its_input() {
        let snap = SnapshotData::from(Bytes::from_static(b"snap"));
        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.append_state(b"ab");
        ctx.save_local_snapshot(b"full".to_vec(), snap.clone());
        ctx.append_state(b"c");
        let (save, _, _) = ctx.into_parts();
        let save = save.unwrap();
        assert_eq!(save.state, b"fullc");
        assert_eq!(save.local_tail.as_deref(), Some(&b"abc"[..]));
        assert_eq!(save.snapshot, Some(snap.clone()));

        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.save_local_snapshot(b"full".to_vec(), snap.clone());
        let (save, _, _) = ctx.into_parts();
        assert_eq!(save.unwrap().local_tail, Some(Vec::new()));

        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.save(
            b"installed".to_vec(),
            Some(Bytes::from_static(b"other").into()),
        );
        ctx.save_local_snapshot(b"full".to_vec(), snap.clone());
        let (save, _, _) = ctx.into_parts();
        assert_eq!(save.unwrap().local_tail, None, "no stored state to extend");

        let mut ctx: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        ctx.save_local_snapshot(b"full".to_vec(), snap.clone());
        ctx.save(b"plain".to_vec(), None);
        let (save, _, _) = ctx.into_parts();
        let save = save.unwrap();
        assert_eq!((save.local_tail, save.snapshot), (None, Some(snap.clone())));

        // Forwarded from an inner context, the tail survives.
        let mut inner: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        inner.append_state(b"x");
        inner.save_local_snapshot(b"full".to_vec(), snap.clone());
        let mut outer: Ctx<(), ()> = Ctx::new(Duration::ZERO);
        outer.append_state(b"w");
        inner.forward_into(&mut outer, |m| m, |e| e);
        let (save, _, _) = outer.into_parts();
        let save = save.unwrap();
        assert_eq!(save.local_tail.as_deref(), Some(&b"wx"[..]));
        assert_eq!(save.state, b"full");
    }
}
