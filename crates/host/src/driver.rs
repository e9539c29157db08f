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
//!
//! A full disk is not fatal. When staging or syncing fails with [`DurableError::DiskFull`]
//! the loop holds the batch's outputs (nothing that depends on the unwritten saves leaves),
//! stops feeding the process (no ticks, no messages: each could depend on those saves),
//! retries the failed write with backoff ([`FULL_RETRY_MIN`] doubling to [`FULL_RETRY_MAX`]),
//! and meanwhile answers what arrives through [`Process::refuse`] (a client hears "disk full"
//! at once and tries another replica; Raft traffic is dropped, as a lossy network would).
//! For Raft this is a very slow fsync: peers elect another leader if need be. Once the write
//! succeeds the batch completes as usual, and the ticks missed meanwhile are fed then.
//!
//! A snapshot the process took of its own state ([`Save::local_tail`]) is not written on
//! the loop: the storage writes it on a thread of its own while the loop keeps syncing
//! appends (1 GiB blocked the loop 3.5 s otherwise), and switches to it in a later sync, or
//! in [`Durable::poll`], which the loop calls after each batch that had nothing to sync.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use flotilla_node::{Ctx, NodeId, Process, Refusal, Save};

// The storage interface is `flotilla-node`'s, below both this driver and `flotilla-storage`,
// which implements it for disk; re-exported here for the driver's users.
pub use flotilla_node::durable::{Durable, DurableError, MemoryDurable};

use crate::HostError;

/// The tick Flotilla's processes run with: the Raft timeouts of `Config::for_service` and the
/// clerks' retry timers count in ticks of this length (10 ms).
pub const TICK: Duration = Duration::from_millis(10);

/// Most inputs handled between two syncs: bounds the latency a large backlog adds.
const MAX_BATCH: usize = 4096;

/// Most missed ticks fed after a stall: more than any Raft timer (10 s at 10 ms ticks).
const MAX_CATCH_UP: u32 = 1000;

/// First wait before retrying a write that failed for lack of space.
pub const FULL_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries: space that comes back is used within about this long.
pub const FULL_RETRY_MAX: Duration = Duration::from_secs(1);

/// A loop waking this late for a tick logs that it stalled: two thirds of the minimum election
/// timeout (300 ms by default), so every stall that can cost an election is in the log.
const STALL_WARNING: Duration = Duration::from_millis(200);

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
    /// How long the sync took, if there was one (waiting for disk space included).
    pub sync: Option<Duration>,
    /// The batch waits for disk space. The observer is called once with this set as a
    /// disk-full episode begins, and as usual (unset) when the batch is durable at last.
    pub disk_full: bool,
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
) -> (ProcessHandle<P>, JoinHandle<Result<(), HostError>>)
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
) -> (ProcessHandle<P>, JoinHandle<Result<(), HostError>>)
where
    P: Process + Send + 'static,
    P::Msg: Send + 'static,
    P::Event: Send + 'static,
    D: Durable + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    // Weak: the loop ends when every handle is dropped, offloaded work in flight or not.
    let weak = tx.downgrade();
    let name = name.to_owned();
    let handle = tokio::spawn(async move {
        let r = run(process, durable, tick, (rx, weak), outputs, observe).await;
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
    /// A save whose `stage` failed for lack of space, to stage again before the sync. While
    /// it is set the process is fed nothing (any input may depend on it).
    unstaged: Option<Save>,
}

impl<M, E> Pending<M, E> {
    fn new() -> Self {
        Pending {
            early: Vec::new(),
            sends: Vec::new(),
            events: Vec::new(),
            saves: 0,
            unstaged: None,
        }
    }

    /// The process may not be fed: a save of this batch waits for disk space.
    fn stalled(&self) -> bool {
        self.unstaged.is_some()
    }
}

async fn run<P, D: Durable>(
    mut process: P,
    mut durable: D,
    tick: Duration,
    (mut rx, inputs_tx): (
        mpsc::UnboundedReceiver<Input<P>>,
        mpsc::WeakUnboundedSender<Input<P>>,
    ),
    mut outputs: Outputs<P::Msg, P::Event>,
    mut observe: Option<Observer<P>>,
) -> Result<(), HostError>
where
    P: Process + Send + 'static,
    P::Msg: Send + 'static,
    P::Event: Send + 'static,
{
    process.allow_offload();
    let start = Instant::now();
    let mut next_tick = start + tick;
    // Calls that arrived while the disk was full, fed first in the next batch.
    let mut deferred: Vec<Input<P>> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut deferred);
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
        let mut pending = Pending::new();
        let now = Instant::now();
        // The host's clock, for what processes stamp into replicated state (a replica's
        // session expiry): read once per batch, as `now` is. A clock before the epoch reads
        // as the epoch (the replicated clock only moves forward anyway).
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // The first tick due: if a save waits for disk space the ticks not fed are due again
        // after it (see `fed_ticks`).
        let first_due = next_tick;
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
        let mut due = 0;
        while now >= next_tick && due < MAX_CATCH_UP {
            next_tick += tick;
            due += 1;
        }
        if now >= next_tick {
            next_tick = now + tick;
        }
        // After a stall, what arrived meanwhile is handled before the process acts on its
        // timers: a leader whose followers answered must not be deposed by check-quorum for
        // not having read their answers. The ticks go in as missed ticks (clocks advance,
        // timers wait; `Process::on_missed_tick`), then the inputs, then one acting tick,
        // fed up to a tick early (`next_tick` moves on for it). Invariants: an input is
        // handled with the process's clock less than one tick behind real time, as without
        // a stall, so no lease outlasts real time; the early tick makes the clock run ahead
        // by less than a tick until the next one is due, which only ends a follower's
        // promise not to vote sooner, by less than the lease's drift margin; and a lease
        // counts from when its round was *sent*, so an answer handled after the missed
        // ticks lengthens no lease. The loop first yields once so that the network tasks,
        // which the stall held up too on this runtime's one thread, hand over what they
        // have read.
        let stalled = due > 1;
        // Ticks fed this batch. None is fed while a save waits for disk space; those not fed
        // are fed after it, with the wait's (`next_tick` is put back): clocks must not lose
        // the time a full disk took.
        let mut fed_ticks = 0;
        if stalled {
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(_) => break,
                }
            }
            for _ in 0..due {
                if pending.stalled() {
                    break;
                }
                let mut ctx = Ctx::new(now - start).with_wall_clock(wall);
                process.on_missed_tick(&mut ctx);
                collect(&process, ctx, &mut durable, &mut pending)?;
                fed_ticks += 1;
            }
            next_tick += tick;
        } else if due == 1 {
            let mut ctx = Ctx::new(now - start).with_wall_clock(wall);
            process.on_tick(&mut ctx);
            collect(&process, ctx, &mut durable, &mut pending)?;
            fed_ticks += 1;
        }
        let inputs = batch.len();
        let mut stop = false;
        for input in batch {
            if pending.stalled() {
                stop |= refuse(&process, input, &mut outputs, &mut deferred);
                continue;
            }
            let mut ctx = Ctx::new(now - start).with_wall_clock(wall);
            match input {
                Input::Msg { from, msg } => process.on_message(from, msg, &mut ctx),
                Input::Call(f) => f(&mut process, &mut ctx),
                Input::Stop => stop = true,
            }
            collect(&process, ctx, &mut durable, &mut pending)?;
        }
        if stalled && !pending.stalled() {
            let mut ctx = Ctx::new(now - start).with_wall_clock(wall);
            process.on_tick(&mut ctx);
            collect(&process, ctx, &mut durable, &mut pending)?;
            fed_ticks += 1;
        }
        // Work the process handed off (encoding a snapshot of a large state, say) runs on the
        // blocking pool, so this loop goes on ticking and answering meanwhile; its
        // continuation comes back as a call, fed like any input.
        for job in process.take_offloaded() {
            let tx = inputs_tx.clone();
            tokio::task::spawn_blocking(move || {
                let continuation = job();
                if let Some(tx) = tx.upgrade() {
                    let _ = tx.send(Input::Call(continuation));
                }
            });
        }
        if pending.stalled() {
            next_tick = first_due + tick * fed_ticks;
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
        if pending.saves > 0 || pending.stalled() {
            let t = Instant::now();
            let stopped = make_durable(
                &mut process,
                &mut durable,
                &mut pending,
                &mut rx,
                &mut outputs,
                &mut deferred,
                (stop, &mut observe),
            )
            .await?;
            if stopped {
                return Ok(());
            }
            sync = Some(t.elapsed());
        } else if let Err(DurableError::Fatal(e)) = durable.poll() {
            return Err(HostError::Storage(e));
        }
        if let Some(o) = observe.as_mut() {
            let stats = BatchStats {
                inputs,
                saves: pending.saves,
                sync,
                disk_full: false,
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

/// Makes the batch's saves durable: stages the one left unstaged, then syncs. While the disk
/// is full it retries with backoff, answering what arrives meanwhile (see [`refuse`]). Returns
/// true if the loop must end without the batch (a `Stop`, already asked for in `stopping.0`
/// or arriving meanwhile, or every handle gone): its outputs are dropped, as a crash would.
async fn make_durable<P: Process, D: Durable>(
    // `&mut` although only read: a `&P` held across the awaits would need `P: Sync`.
    process: &mut P,
    durable: &mut D,
    pending: &mut Pending<P::Msg, P::Event>,
    rx: &mut mpsc::UnboundedReceiver<Input<P>>,
    outputs: &mut Outputs<P::Msg, P::Event>,
    deferred: &mut Vec<Input<P>>,
    (stopping, observe): (bool, &mut Option<Observer<P>>),
) -> Result<bool, HostError> {
    let mut backoff = FULL_RETRY_MIN;
    let mut full_since: Option<Instant> = None;
    loop {
        match write_batch(durable, pending) {
            Ok(()) => {
                if let Some(t) = full_since {
                    // Named again: the first report may not have reached a log kept on the
                    // full disk.
                    tracing::warn!(
                        waited_ms = t.elapsed().as_millis() as u64,
                        "disk full no more: space is back, writing and answering again"
                    );
                }
                return Ok(false);
            }
            Err(DurableError::Fatal(e)) => return Err(HostError::Storage(e)),
            Err(DurableError::DiskFull(e)) => {
                if stopping {
                    return Ok(true);
                }
                if full_since.is_none() {
                    // Once per episode: the retries below stay quiet.
                    tracing::error!(
                        "disk full: {e}; answering nothing until there is space again                          (retrying every {} ms at most)",
                        FULL_RETRY_MAX.as_millis()
                    );
                    full_since = Some(Instant::now());
                    if let Some(o) = observe.as_mut() {
                        let stats = BatchStats {
                            disk_full: true,
                            ..BatchStats::default()
                        };
                        o(&*process, &stats);
                    }
                }
            }
        }
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        backoff = (backoff * 2).min(FULL_RETRY_MAX);
        loop {
            tokio::select! {
                biased;
                input = rx.recv() => {
                    let stop = input.is_none_or(|i| refuse(&*process, i, outputs, deferred));
                    if stop {
                        return Ok(true);
                    }
                }
                () = &mut retry => break,
            }
        }
    }
}

/// One attempt at making the batch durable.
fn write_batch<D: Durable, M, E>(
    durable: &mut D,
    pending: &mut Pending<M, E>,
) -> Result<(), DurableError> {
    if let Some(save) = &pending.unstaged {
        durable.stage(save)?;
        pending.unstaged = None;
        pending.saves += 1;
    }
    durable.sync()
}

/// Handles an input that arrives while the process cannot be fed: a message gets the
/// process's refusal, if any (else it is dropped); a call waits for the next batch. Returns
/// true for `Stop`.
fn refuse<P: Process>(
    process: &P,
    input: Input<P>,
    outputs: &mut Outputs<P::Msg, P::Event>,
    deferred: &mut Vec<Input<P>>,
) -> bool {
    match input {
        Input::Msg { from, msg } => {
            if let Some(answer) = process.refuse(&msg, Refusal::DiskFull) {
                (outputs.send)(from, answer);
            }
            false
        }
        Input::Call(f) => {
            deferred.push(Input::Call(f));
            false
        }
        Input::Stop => true,
    }
}

/// Takes one input's outputs into the batch. A save that cannot be staged for lack of space
/// is kept in `pending.unstaged`, which stops the feeding of further inputs.
fn collect<P: Process, D: Durable>(
    process: &P,
    ctx: Ctx<P::Msg, P::Event>,
    durable: &mut D,
    pending: &mut Pending<P::Msg, P::Event>,
) -> Result<(), HostError> {
    let (save, sends, events) = ctx.into_parts();
    if let Some(save) = save {
        match durable.stage(&save) {
            Ok(()) => pending.saves += 1,
            Err(DurableError::DiskFull(_)) => pending.unstaged = Some(save),
            Err(DurableError::Fatal(e)) => return Err(HostError::Storage(e)),
        }
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
    use std::collections::BTreeMap;

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use flotilla_node::Save;

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

    /// A Raft peer as a process, for driver tests: it emits whether it leads, and in which
    /// term, when asked.
    struct Peer(flotilla_rsm::RaftPeer);

    impl Peer {
        fn flush(&mut self, ctx: &mut Ctx<flotilla_raft::Message, (bool, u64)>) {
            self.0.flush(ctx, |m| m);
        }
    }

    impl Process for Peer {
        type Msg = flotilla_raft::Message;
        type Event = (bool, u64);
        fn on_tick(&mut self, ctx: &mut Ctx<Self::Msg, Self::Event>) {
            self.0.raft_mut().tick();
            self.flush(ctx);
        }
        fn on_missed_tick(&mut self, ctx: &mut Ctx<Self::Msg, Self::Event>) {
            self.0.raft_mut().tick_missed();
            self.flush(ctx);
        }
        fn on_message(
            &mut self,
            from: NodeId,
            msg: Self::Msg,
            ctx: &mut Ctx<Self::Msg, Self::Event>,
        ) {
            self.0.raft_mut().step(from, msg);
            self.flush(ctx);
        }
        fn is_reply(msg: &Self::Msg) -> bool {
            msg.is_reply()
        }
        fn may_send_before_save(&self, msg: &Self::Msg) -> bool {
            self.0.raft().may_send_early(msg)
        }
    }

    /// Storage whose next sync, once armed, takes `stall` (a slow fsync).
    struct Stalling {
        armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
        stall: Duration,
        /// Told when the stalled sync returns.
        done: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl Durable for Stalling {
        fn stage(&mut self, _save: &Save) -> Result<(), DurableError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), DurableError> {
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(self.stall);
                if let Some(tx) = self.done.take() {
                    let _ = tx.send(());
                }
            }
            Ok(())
        }
    }

    fn raft_cfg(id: u64) -> flotilla_raft::Config {
        flotilla_raft::Config::for_service(
            NodeId::new(id),
            vec![NodeId::new(1), NodeId::new(2), NodeId::new(3)],
            id,
        )
    }

    /// Issue 15, item 7: a leader's fsync stalls for 400 ms, longer than check-quorum's
    /// 300 ms window, while both followers answer at once (their answers queue during the
    /// stall). The answers are credited before check-quorum looks, so the leader stays.
    #[tokio::test(flavor = "current_thread")]
    async fn a_leader_whose_followers_answered_survives_a_stall() {
        use std::sync::{Arc, Mutex};
        use tokio::sync::oneshot;
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        // The followers answer inside the send hook, straight into the leader's inbox; they
        // never tick, so they never campaign. The hook gets the leader's handle once spawned.
        let inbox: Arc<Mutex<Option<ProcessHandle<Peer>>>> = Arc::default();
        let mut followers: BTreeMap<NodeId, flotilla_raft::Raft> = (2..=3)
            .map(|id| (NodeId::new(id), flotilla_raft::Raft::new(raft_cfg(id))))
            .collect();
        let hook = inbox.clone();
        let outputs = Outputs {
            send: Box::new(move |to, m| {
                let f = followers.get_mut(&to).expect("a follower");
                f.step(NodeId::new(1), m);
                let h = hook.lock().unwrap();
                for e in f.ready().messages {
                    h.as_ref().expect("spawned").deliver(to, e.msg);
                }
            }),
            event: Box::new(move |e| {
                let _ = ev_tx.send(e);
            }),
        };
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done_tx, done_rx) = oneshot::channel();
        let durable = Stalling {
            armed: armed.clone(),
            stall: Duration::from_millis(400),
            done: Some(done_tx),
        };
        let peer =
            Peer(flotilla_rsm::RaftPeer::restore(raft_cfg(1), &[], Default::default()).unwrap());
        let tick = Duration::from_millis(10);
        let (h, join) = spawn("leader", peer, durable, tick, outputs);
        *inbox.lock().unwrap() = Some(h.clone());
        let status = |h: &ProcessHandle<Peer>| {
            h.call(|p, ctx| ctx.emit((p.0.raft().is_leader(), p.0.raft().term())))
        };
        // Peer 1 is the only one whose election timer runs: it leads within 600 ms.
        let mut term = 0;
        for _ in 0..200 {
            status(&h);
            let (leads, t) = ev_rx.recv().await.expect("status");
            if leads {
                term = t;
                break;
            }
            tokio::time::sleep(tick).await;
        }
        assert!(term > 0, "peer 1 never led");
        // A proposal's save stalls the leader's loop for 400 ms, after its AppendEntries went
        // out early and both followers answered.
        armed.store(true, std::sync::atomic::Ordering::SeqCst);
        h.call(|p, ctx| {
            p.0.raft_mut()
                .propose(b"x".to_vec())
                .expect("the leader takes a proposal");
            p.flush(ctx);
        });
        done_rx.await.expect("the stall ended");
        status(&h);
        let after = ev_rx.recv().await.expect("status");
        h.stop();
        join.await.unwrap().unwrap();
        assert_eq!(
            after,
            (true, term),
            "the leader stepped down after a stall although its followers answered"
        );
    }

    /// A counter service: `Add` adds to the total, saves it and answers `Total` once saved.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum CMsg {
        Add(u64),
        Total(u64),
        /// What a replica with a full disk answers.
        Full,
        /// Peer traffic, which a full replica drops.
        Ping,
    }

    #[derive(Default)]
    struct Counter {
        total: u64,
        /// The disk, to tell whether an input is fed during an episode.
        disk: Arc<Disk>,
        /// Inputs fed after a write was refused and before space came back: there must be
        /// none (each may depend on the save that waits).
        fed_while_full: u64,
        /// Ticks fed, missed ones included.
        ticks: u64,
    }

    impl Counter {
        fn fed(&mut self) {
            let d = &self.disk;
            if d.full.load(Ordering::SeqCst) && *d.refused.lock().unwrap() > 0 {
                self.fed_while_full += 1;
            }
        }
    }

    impl Process for Counter {
        type Msg = CMsg;
        type Event = ();
        fn on_tick(&mut self, _ctx: &mut Ctx<CMsg, ()>) {
            self.fed();
            self.ticks += 1;
        }
        fn on_message(&mut self, from: NodeId, msg: CMsg, ctx: &mut Ctx<CMsg, ()>) {
            self.fed();
            if let CMsg::Add(n) = msg {
                self.total += n;
                ctx.append_state(&self.total.to_le_bytes());
                ctx.send(from, CMsg::Total(self.total));
            }
        }
        fn refuse(&self, msg: &CMsg, why: Refusal) -> Option<CMsg> {
            assert_eq!(why, Refusal::DiskFull);
            matches!(msg, CMsg::Add(_)).then_some(CMsg::Full)
        }
    }

    /// What the fake disk holds and does, shared with the test.
    #[derive(Default)]
    struct Disk {
        /// While set, `stage` (if `stage_fails`) or `sync` fail with disk full.
        full: AtomicBool,
        stage_fails: bool,
        staged: Mutex<Vec<u64>>,
        durable: Mutex<Vec<u64>>,
        /// Writes refused for lack of space so far.
        refused: Mutex<u32>,
        refusal: tokio::sync::Notify,
    }

    impl Disk {
        fn refuse(&self) -> Result<(), DurableError> {
            *self.refused.lock().unwrap() += 1;
            self.refusal.notify_one();
            Err(DurableError::DiskFull("no space left on device".into()))
        }
    }

    struct FakeDurable(Arc<Disk>);

    impl Durable for FakeDurable {
        fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
            if self.0.stage_fails && self.0.full.load(Ordering::SeqCst) {
                return self.0.refuse();
            }
            let total = u64::from_le_bytes(save.state[..8].try_into().unwrap());
            self.0.staged.lock().unwrap().push(total);
            Ok(())
        }
        fn sync(&mut self) -> Result<(), DurableError> {
            if self.0.full.load(Ordering::SeqCst) {
                return self.0.refuse();
            }
            let staged = std::mem::take(&mut *self.0.staged.lock().unwrap());
            self.0.durable.lock().unwrap().extend(staged);
            Ok(())
        }
    }

    /// A client's request during a disk-full episode is refused at once and never fed; the
    /// answer to the request whose save waits for space leaves only once it is durable; the
    /// process is fed nothing meanwhile and keeps its state; the observer hears of the
    /// episode. With `stage_fails` the save cannot even be staged, else only the sync fails.
    async fn disk_full_episode(stage_fails: bool) {
        let disk = Arc::new(Disk {
            stage_fails,
            ..Disk::default()
        });
        disk.full.store(true, Ordering::SeqCst);
        // Each send, with what was durable when it left.
        let (tx, mut sent) = mpsc::unbounded_channel();
        let d = disk.clone();
        let outputs = Outputs {
            send: Box::new(move |to, m| {
                let durable = d.durable.lock().unwrap().clone();
                let _ = tx.send((to, m, durable));
            }),
            event: Box::new(|()| {}),
        };
        let episodes = Arc::new(Mutex::new(Vec::new()));
        let e = episodes.clone();
        let observe: Observer<Counter> = Box::new(move |_, b: &BatchStats| {
            e.lock().unwrap().push(b.disk_full);
        });
        let counter = Counter {
            disk: disk.clone(),
            ..Counter::default()
        };
        let (h, join) = spawn_observed(
            "counter",
            counter,
            FakeDurable(disk.clone()),
            Duration::from_millis(10),
            outputs,
            Some(observe),
        );
        h.deliver(NodeId::new(1), CMsg::Add(5));
        disk.refusal.notified().await;
        // The episode has begun: the total (5) waits for space.
        let fed_while_full = {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A call waits for the episode's end.
            h.call(move |p, _| {
                let _ = tx.send((p.fed_while_full, p.total));
            });
            rx
        };
        h.deliver(NodeId::new(2), CMsg::Add(7));
        h.deliver(NodeId::new(3), CMsg::Ping);
        let (to, m, durable) = sent.recv().await.expect("a refusal");
        assert_eq!(
            (to, m),
            (NodeId::new(2), CMsg::Full),
            "the request is refused at once"
        );
        assert!(durable.is_empty());
        // Retried with backoff, and still nothing else sent.
        disk.refusal.notified().await;
        assert!(sent.try_recv().is_err(), "nothing leaves before the sync");
        assert_eq!(
            *episodes.lock().unwrap(),
            vec![true],
            "one episode reported"
        );
        disk.full.store(false, Ordering::SeqCst);
        let (to, m, durable) = sent.recv().await.expect("the held answer");
        assert_eq!((to, m), (NodeId::new(1), CMsg::Total(5)));
        assert_eq!(
            durable,
            vec![5],
            "the answer left after its save was durable"
        );
        assert_eq!(
            fed_while_full.await.unwrap(),
            (0, 5),
            "nothing fed meanwhile"
        );
        // The refused request was never applied; the state carried on from 5.
        h.deliver(NodeId::new(1), CMsg::Add(1));
        let (_, m, durable) = sent.recv().await.expect("the next answer");
        assert_eq!((m, durable), (CMsg::Total(6), vec![5, 6]));
        assert!(*disk.refused.lock().unwrap() >= 2);
        assert_eq!(episodes.lock().unwrap().first(), Some(&true));
        assert!(
            !episodes.lock().unwrap().last().unwrap(),
            "the episode ended"
        );
        h.stop();
        join.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_disk_at_sync_holds_the_batch_and_refuses_clients() {
        disk_full_episode(false).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_disk_at_stage_holds_the_batch_and_refuses_clients() {
        disk_full_episode(true).await;
    }

    /// A stop during an episode ends the loop without waiting for space.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stop_while_the_disk_is_full_ends_the_loop() {
        let disk = Arc::new(Disk::default());
        disk.full.store(true, Ordering::SeqCst);
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(|()| {}),
        };
        let tick = Duration::from_millis(10);
        let counter = Counter {
            disk: disk.clone(),
            ..Counter::default()
        };
        let (h, join) = spawn("c", counter, FakeDurable(disk.clone()), tick, outputs);
        h.deliver(NodeId::new(1), CMsg::Add(5));
        disk.refusal.notified().await;
        h.stop();
        join.await.unwrap().unwrap();
        assert!(disk.durable.lock().unwrap().is_empty());
    }

    /// Any other storage error stops the process.
    #[tokio::test(flavor = "current_thread")]
    async fn a_fatal_storage_error_stops_the_loop() {
        struct Broken;
        impl Durable for Broken {
            fn stage(&mut self, _: &Save) -> Result<(), DurableError> {
                Ok(())
            }
            fn sync(&mut self) -> Result<(), DurableError> {
                Err(DurableError::Fatal("I/O error".into()))
            }
        }
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(|()| {}),
        };
        let tick = Duration::from_millis(10);
        let (h, join) = spawn("c", Counter::default(), Broken, tick, outputs);
        h.deliver(NodeId::new(1), CMsg::Add(5));
        let r = join.await.unwrap();
        assert!(matches!(r, Err(HostError::Storage(e)) if e == "I/O error"));
    }

    /// The time a full disk took is fed as ticks once it is over (a leader's lease must not
    /// outlast real time because its clock stood still while it waited for space).
    #[tokio::test(flavor = "current_thread")]
    async fn the_ticks_of_a_disk_full_episode_are_fed_after_it() {
        let disk = Arc::new(Disk::default());
        disk.full.store(true, Ordering::SeqCst);
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(|()| {}),
        };
        let tick = Duration::from_millis(10);
        let counter = Counter {
            disk: disk.clone(),
            ..Counter::default()
        };
        let started = Instant::now();
        let (h, join) = spawn("c", counter, FakeDurable(disk.clone()), tick, outputs);
        h.deliver(NodeId::new(1), CMsg::Add(5));
        for _ in 0..3 {
            disk.refusal.notified().await; // retried at 100, then 300 ms
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        h.call(move |p, _| {
            let _ = tx.send((p.ticks, p.fed_while_full));
        });
        disk.full.store(false, Ordering::SeqCst);
        let full_for = started.elapsed();
        let (ticks, fed_while_full) = rx.await.unwrap();
        assert_eq!(fed_while_full, 0);
        // Every tick up to the end of the episode was fed before the call ran.
        let elapsed_ticks = (full_for.as_millis() / tick.as_millis()) as u64;
        assert!(
            ticks + 1 >= elapsed_ticks,
            "{ticks} ticks fed after a {full_for:?} episode"
        );
        h.stop();
        join.await.unwrap().unwrap();
    }

    /// A batch with nothing to sync polls the storage, so that a snapshot written in the
    /// background is switched to on an idle replica too (a batch that syncs leaves that to
    /// the sync).
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_without_saves_polls_the_storage() {
        #[derive(Clone, Default)]
        struct Polled(Arc<Mutex<(u32, u32)>>);
        impl Durable for Polled {
            fn stage(&mut self, _: &Save) -> Result<(), DurableError> {
                Ok(())
            }
            fn sync(&mut self) -> Result<(), DurableError> {
                self.0.lock().unwrap().0 += 1;
                Ok(())
            }
            fn poll(&mut self) -> Result<(), DurableError> {
                self.0.lock().unwrap().1 += 1;
                Ok(())
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(move |e| {
                let _ = tx.send(e);
            }),
        };
        let polled = Polled::default();
        let tick = Duration::from_millis(10);
        let (h, join) = spawn("ticks", Ticks(0), polled.clone(), tick, outputs);
        // Events leave after the batch's poll: once this one arrives, it has been made.
        h.call(|p, ctx| ctx.emit(p.0));
        rx.recv().await.expect("the event");
        let (syncs, polls) = *polled.0.lock().unwrap();
        assert_eq!(syncs, 0);
        assert!(polls >= 1);
        h.stop();
        join.await.unwrap().unwrap();
    }

    /// A fatal error from a poll (a snapshot write that failed in the background) stops
    /// the process, as a failed sync does.
    #[tokio::test(flavor = "current_thread")]
    async fn a_fatal_poll_error_stops_the_loop() {
        struct Broken;
        impl Durable for Broken {
            fn stage(&mut self, _: &Save) -> Result<(), DurableError> {
                Ok(())
            }
            fn sync(&mut self) -> Result<(), DurableError> {
                Ok(())
            }
            fn poll(&mut self) -> Result<(), DurableError> {
                Err(DurableError::Fatal("snapshot fsync failed".into()))
            }
        }
        let outputs = Outputs {
            send: Box::new(|_, _| {}),
            event: Box::new(|_| {}),
        };
        let (_h, join) = spawn("t", Ticks(0), Broken, Duration::from_millis(10), outputs);
        let r = join.await.unwrap();
        assert!(matches!(r, Err(HostError::Storage(e)) if e == "snapshot fsync failed"));
    }
}
