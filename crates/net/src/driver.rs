//! The event loop that runs one process for real: inputs from the network and the owner,
//! 10 ms ticks, durable saves with group commit, then sends.
//!
//! The loop is a task of the process's tokio runtime, which Flotilla's binaries run on one
//! thread: network tasks and the loop then hand each other messages without a single thread
//! switch or futex, which on small machines costs more than the work itself. The loop takes
//! every input already queued as one batch, feeds them in order, stages each input's save with
//! the storage, makes the whole batch durable with **one** sync, and only then hands the
//! batch's messages to the transport and its events to the owner. That is the order
//! `flotilla_node`'s contract demands (a vote or an acknowledgement never leaves before what it
//! promises is on disk), paid once per batch rather than once per message.
//!
//! Messages the process marks [`Process::may_send_before_save`] (a leader's AppendEntries, a
//! replica's answers to clients) go to the transport *before* the sync: the loop yields once so
//! the writer tasks put them on the wire, then blocks in the sync, so the followers write their
//! logs while the leader writes its own. (Running the sync on a blocking-pool thread instead
//! cost a thread hand-off per batch: 12% fewer SETs per second at 64 clients.) The loop feeds
//! nothing until the sync returns, which is the condition that makes the early sends safe: an
//! acknowledgement of an entry is always handled after the batch that appended it is durable,
//! so the leader never counts its own copy before it is on disk.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use flotilla_node::{Ctx, NodeId, Process, Save};

use crate::NetError;

/// Most inputs handled between two syncs: bounds the latency a large backlog adds.
const MAX_BATCH: usize = 4096;

/// Most missed ticks fed after a stall: more than any Raft timer (10 s at 10 ms ticks).
const MAX_CATCH_UP: u32 = 1000;

/// A loop waking this late for a tick logs that it stalled: two thirds of the minimum election
/// timeout (300 ms by default), so every stall that can cost an election is in the log.
const STALL_WARNING: Duration = Duration::from_millis(200);

/// Stable storage as the driver uses it.
///
/// # Correctness
/// After `sync` returns, everything staged before it must survive a crash.
pub trait Durable: Send {
    /// Records one input's save (appended or replacing; see [`Save`]). May buffer.
    fn stage(&mut self, save: &Save) -> Result<(), String>;
    /// Makes everything staged durable.
    fn sync(&mut self) -> Result<(), String>;
}

/// Storage in memory, for processes that persist nothing that matters (a router's clerks) and
/// for tests.
#[derive(Debug, Default)]
pub struct MemoryDurable {
    pub state: Vec<u8>,
    pub snapshot: Vec<u8>,
}

impl Durable for MemoryDurable {
    fn stage(&mut self, save: &Save) -> Result<(), String> {
        if save.append {
            self.state.extend_from_slice(&save.state);
        } else {
            self.state.clone_from(&save.state);
            if let Some(s) = &save.snapshot {
                self.snapshot.clone_from(s);
            }
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A closure run on the process in its thread, with its outputs handled like any input's.
pub type Call<P> =
    Box<dyn FnOnce(&mut P, &mut Ctx<<P as Process>::Msg, <P as Process>::Event>) + Send>;

/// An input for a running process.
pub enum Input<P: Process> {
    Msg { from: NodeId, msg: P::Msg },
    Call(Call<P>),
    Stop,
}

/// Where a running process's inputs go.
pub struct ProcessHandle<P: Process> {
    tx: mpsc::UnboundedSender<Input<P>>,
}

impl<P: Process> Clone for ProcessHandle<P> {
    fn clone(&self) -> Self {
        ProcessHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<P: Process> ProcessHandle<P> {
    /// A message from the network.
    pub fn deliver(&self, from: NodeId, msg: P::Msg) {
        let _ = self.tx.send(Input::Msg { from, msg });
    }
    /// Runs `f` on the process (e.g. to start a clerk's operation or read its status).
    pub fn call(&self, f: impl FnOnce(&mut P, &mut Ctx<P::Msg, P::Event>) + Send + 'static) {
        let _ = self.tx.send(Input::Call(Box::new(f)));
    }
    /// Ends the loop after the inputs queued before this one.
    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
    }
}

/// What the loop does with a process's outputs.
pub struct Outputs<M, E> {
    /// Sends a message (after the batch is durable).
    pub send: Box<dyn FnMut(NodeId, M) + Send>,
    /// Reports an event (after the batch is durable).
    pub event: Box<dyn FnMut(E) + Send>,
}

/// What one batch cost, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchStats {
    /// Inputs handled (ticks included).
    pub inputs: usize,
    /// Saves made durable by this batch's sync.
    pub saves: usize,
    /// How long the sync took, if there was one.
    pub sync: Option<Duration>,
}

/// Looks at the process after each batch (e.g. to export its state as metrics).
pub type Observer<P> = Box<dyn FnMut(&P, &BatchStats) + Send>;

/// Runs `process` as a task of the current tokio runtime, ticking every `tick`. `name` names
/// it in logs.
pub fn spawn<P, D>(
    name: &str,
    process: P,
    durable: D,
    tick: Duration,
    outputs: Outputs<P::Msg, P::Event>,
) -> (ProcessHandle<P>, JoinHandle<Result<(), NetError>>)
where
    P: Process + Send + 'static,
    P::Msg: Send + 'static,
    P::Event: Send + 'static,
    D: Durable + 'static,
{
    spawn_observed(name, process, durable, tick, outputs, None)
}

/// As [`spawn`], calling `observe` after every batch.
pub fn spawn_observed<P, D>(
    name: &str,
    process: P,
    durable: D,
    tick: Duration,
    outputs: Outputs<P::Msg, P::Event>,
    observe: Option<Observer<P>>,
) -> (ProcessHandle<P>, JoinHandle<Result<(), NetError>>)
where
    P: Process + Send + 'static,
    P::Msg: Send + 'static,
    P::Event: Send + 'static,
    D: Durable + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let name = name.to_owned();
    let handle = tokio::spawn(async move {
        let r = run(process, durable, tick, rx, outputs, observe).await;
        if let Err(e) = &r {
            tracing::error!(process = %name, "stopped: {e}");
        }
        r
    });
    (ProcessHandle { tx }, handle)
}

/// One batch's outputs: those held until the batch is durable, and the sends that need not be.
struct Pending<M, E> {
    early: Vec<(NodeId, M)>,
    sends: Vec<(NodeId, M)>,
    events: Vec<E>,
    saves: usize,
}

async fn run<P: Process, D: Durable>(
    mut process: P,
    mut durable: D,
    tick: Duration,
    mut rx: mpsc::UnboundedReceiver<Input<P>>,
    mut outputs: Outputs<P::Msg, P::Event>,
    mut observe: Option<Observer<P>>,
) -> Result<(), NetError> {
    let start = Instant::now();
    let mut next_tick = start + tick;
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            biased;
            input = rx.recv() => match input {
                Some(i) => batch.push(i),
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(next_tick.into()) => {}
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let mut pending = Pending {
            early: Vec::new(),
            sends: Vec::new(),
            events: Vec::new(),
            saves: 0,
        };
        let inputs = batch.len();
        let now = Instant::now();
        // Said, so that an election a stall caused (a loop this late may have let an election
        // timeout or check-quorum expire) can be told from one a fault caused.
        let late = now.saturating_duration_since(next_tick);
        if late >= STALL_WARNING {
            tracing::warn!("stalled: late_ms={}", late.as_millis());
        }
        // Every tick that has passed is fed, a stall's included: the process measures time
        // in ticks, and a leader's read lease must not outlast real time because the loop
        // stalled (in a slow fsync, say). Past MAX_CATCH_UP ticks every timer has fired
        // anyway, so the rest are skipped.
        let mut fed = 0;
        while now >= next_tick && fed < MAX_CATCH_UP {
            let mut ctx = Ctx::new(now - start);
            process.on_tick(&mut ctx);
            collect(&process, ctx, &mut durable, &mut pending)?;
            next_tick += tick;
            fed += 1;
        }
        if now >= next_tick {
            next_tick = now + tick;
        }
        let mut stop = false;
        for input in batch {
            let mut ctx = Ctx::new(now - start);
            match input {
                Input::Msg { from, msg } => process.on_message(from, msg, &mut ctx),
                Input::Call(f) => f(&mut process, &mut ctx),
                Input::Stop => stop = true,
            }
            collect(&process, ctx, &mut durable, &mut pending)?;
        }
        let early = !pending.early.is_empty();
        for (to, m) in pending.early.drain(..) {
            (outputs.send)(to, m);
        }
        if early {
            // Let the transport's writer tasks put the early messages on the wire before
            // this thread blocks in the sync.
            tokio::task::yield_now().await;
        }
        let mut sync = None;
        if pending.saves > 0 {
            let t = Instant::now();
            durable.sync().map_err(NetError::Storage)?;
            sync = Some(t.elapsed());
        }
        if let Some(o) = observe.as_mut() {
            let stats = BatchStats {
                inputs,
                saves: pending.saves,
                sync,
            };
            o(&process, &stats);
        }
        for (to, m) in pending.sends {
            (outputs.send)(to, m);
        }
        for e in pending.events {
            (outputs.event)(e);
        }
        if stop {
            return Ok(());
        }
    }
}

fn collect<P: Process, D: Durable>(
    process: &P,
    ctx: Ctx<P::Msg, P::Event>,
    durable: &mut D,
    pending: &mut Pending<P::Msg, P::Event>,
) -> Result<(), NetError> {
    let (save, sends, events) = ctx.into_parts();
    if let Some(save) = save {
        durable.stage(&save).map_err(NetError::Storage)?;
        pending.saves += 1;
    }
    for (to, m) in sends {
        if process.may_send_before_save(&m) {
            pending.early.push((to, m));
        } else {
            pending.sends.push((to, m));
        }
    }
    pending.events.extend(events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its ticks.
    struct Ticks(u32);

    impl Process for Ticks {
        type Msg = ();
        type Event = u32;
        fn on_tick(&mut self, _ctx: &mut Ctx<(), u32>) {
            self.0 += 1;
        }
        fn on_message(&mut self, _from: NodeId, _msg: (), _ctx: &mut Ctx<(), u32>) {}
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stall_is_counted_in_ticks() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(move |e| {
                let _ = tx.send(e);
            }),
        };
        let tick = Duration::from_millis(10);
        let (h, join) = spawn("ticks", Ticks(0), MemoryDurable::default(), tick, outputs);
        let started = Instant::now();
        // The loop's thread stalls for 300 ms, as in a slow fsync.
        h.call(|_, _| std::thread::sleep(Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.call(|p, ctx| ctx.emit(p.0));
        let ticks = rx.recv().await.expect("the count");
        let elapsed = started.elapsed();
        h.stop();
        join.await.unwrap().unwrap();
        // Skipping the stall's ticks would count about 6; every tick that passed is at least
        // 30 (a slower machine only adds ticks).
        assert!(
            ticks >= 30,
            "{ticks} ticks counted in {elapsed:?} with a 300 ms stall"
        );
    }
}
