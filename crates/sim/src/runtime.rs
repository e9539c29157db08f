//! A single-threaded executor in virtual time for test scripts.
//!
//! Tasks are polled in the order they were woken (FIFO); timers fire in (deadline, creation)
//! order, before simulator events due at the same instant. Nothing depends on wall-clock time
//! or thread scheduling, so a script and the simulation it drives replay exactly.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Sim;
use flotilla_node::Process;

type Task = Pin<Box<dyn Future<Output = ()>>>;

struct Inner {
    now: Cell<Duration>,
    seq: Cell<u64>,
    timers: RefCell<BTreeMap<(Duration, u64), Waker>>,
    tasks: RefCell<Vec<Option<Task>>>,
    /// Task ids woken and not yet polled. A Mutex only because `Waker` must be `Sync`;
    /// there is one thread.
    ready: Arc<Mutex<VecDeque<usize>>>,
}

/// Handle to the executor: spawn tasks, sleep in virtual time, read the clock.
#[derive(Clone)]
pub struct Runtime {
    inner: Rc<Inner>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Self {
        Runtime {
            inner: Rc::new(Inner {
                now: Cell::new(Duration::ZERO),
                seq: Cell::new(0),
                timers: RefCell::new(BTreeMap::new()),
                tasks: RefCell::new(Vec::new()),
                ready: Arc::new(Mutex::new(VecDeque::new())),
            }),
        }
    }

    /// Virtual time.
    pub fn now(&self) -> Duration {
        self.inner.now.get()
    }

    /// Completes once virtual time has advanced by `d`.
    pub fn sleep(&self, d: Duration) -> Sleep {
        Sleep {
            rt: self.clone(),
            deadline: self.now() + d,
            registered: false,
        }
    }

    /// Runs `fut` concurrently with the caller; its result is collected by awaiting the handle.
    pub fn spawn<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> JoinHandle<T> {
        let slot: Rc<RefCell<JoinState<T>>> = Rc::new(RefCell::new(JoinState {
            value: None,
            waker: None,
        }));
        let out = slot.clone();
        let task: Task = Box::pin(async move {
            let v = fut.await;
            let mut s = out.borrow_mut();
            s.value = Some(v);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        let mut tasks = self.inner.tasks.borrow_mut();
        tasks.push(Some(task));
        self.inner
            .ready
            .lock()
            .expect("single thread")
            .push_back(tasks.len() - 1);
        JoinHandle { slot }
    }

    fn add_timer(&self, deadline: Duration, waker: Waker) {
        let seq = self.inner.seq.get() + 1;
        self.inner.seq.set(seq);
        self.inner
            .timers
            .borrow_mut()
            .insert((deadline, seq), waker);
    }

    fn next_timer(&self) -> Option<Duration> {
        self.inner.timers.borrow().keys().next().map(|&(t, _)| t)
    }

    /// Fires every timer due at `t`, in creation order.
    fn fire_timers(&self, t: Duration) {
        self.inner.now.set(t);
        loop {
            let due = {
                let mut timers = self.inner.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((&(d, _), _)) if d <= t => timers.pop_first().map(|(_, w)| w),
                    _ => None,
                }
            };
            match due {
                Some(w) => w.wake(),
                None => break,
            }
        }
    }

    /// Polls every woken task until none is runnable.
    fn run_ready(&self) {
        loop {
            let next = self.inner.ready.lock().expect("single thread").pop_front();
            let Some(id) = next else { break };
            let task = self.inner.tasks.borrow_mut()[id].take();
            let Some(mut task) = task else { continue };
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                ready: self.inner.ready.clone(),
            }));
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
            {
                self.inner.tasks.borrow_mut()[id] = Some(task);
            }
        }
    }
}

struct TaskWaker {
    id: usize,
    ready: Arc<Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.ready.lock().expect("single thread").push_back(self.id);
    }
}

/// Future returned by [`Runtime::sleep`].
pub struct Sleep {
    rt: Runtime,
    deadline: Duration,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.rt.now() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            self.rt.add_timer(self.deadline, cx.waker().clone());
        }
        Poll::Pending
    }
}

struct JoinState<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// Awaits a spawned task's result.
pub struct JoinHandle<T> {
    slot: Rc<RefCell<JoinState<T>>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.slot.borrow_mut();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs `main` to completion, interleaving its tasks with the simulation in virtual time.
/// `after_input` runs after every simulator event and every batch of task polls (testers drain
/// and check process events there). Panics if virtual time passes `limit`, like the labs'
/// 120-second test timeout.
pub fn block_on<P, T: 'static>(
    sim: &Rc<RefCell<Sim<P>>>,
    rt: &Runtime,
    limit: Duration,
    mut after_input: impl FnMut(),
    main: impl Future<Output = T> + 'static,
) -> T
where
    P: Process,
    P::Msg: Serialize + DeserializeOwned,
{
    rt.inner.now.set(sim.borrow().now());
    let mut handle = std::pin::pin!(rt.spawn(main));
    let noop = Waker::from(Arc::new(TaskWaker {
        id: usize::MAX,
        ready: Arc::new(Mutex::new(VecDeque::new())),
    }));
    loop {
        rt.run_ready();
        after_input();
        if let Poll::Ready(v) = handle.as_mut().poll(&mut Context::from_waker(&noop)) {
            return v;
        }
        let sim_next = sim.borrow().next_event_time();
        match (rt.next_timer(), sim_next) {
            (Some(t), s) if s.is_none_or(|s| t <= s) => {
                sim.borrow_mut().advance_to(t);
                rt.fire_timers(t);
            }
            (None, None) => panic!("deadlock: no runnable task, timer or simulator event"),
            _ => {
                sim.borrow_mut().step();
                rt.inner.now.set(sim.borrow().now());
                after_input();
            }
        }
        assert!(
            rt.now() <= limit,
            "test exceeded its virtual time limit of {limit:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_order_concurrent_tasks_by_virtual_time() {
        let rt = Runtime::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (rt2, log2) = (rt.clone(), log.clone());
        let main = async move {
            let mut handles = Vec::new();
            for (name, ms) in [("c", 30u64), ("a", 10), ("b", 20)] {
                let (rt3, log3) = (rt2.clone(), log2.clone());
                handles.push(rt2.spawn(async move {
                    rt3.sleep(Duration::from_millis(ms)).await;
                    log3.borrow_mut().push((name, rt3.now()));
                    ms
                }));
            }
            let mut total = 0;
            for h in handles {
                total += h.await;
            }
            total
        };
        let sim: Rc<RefCell<Sim<Idle>>> = Rc::new(RefCell::new(Sim::new(
            1,
            1,
            Duration::from_millis(100),
            Box::new(|_, _, _| Idle),
        )));
        let total = block_on(&sim, &rt, Duration::from_secs(1), || {}, main);
        assert_eq!(total, 60);
        let names: Vec<_> = log.borrow().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(log.borrow()[2].1, Duration::from_millis(30));
    }

    struct Idle;
    impl Process for Idle {
        type Msg = ();
        type Event = ();
        fn on_tick(&mut self, _: &mut flotilla_node::Ctx<(), ()>) {}
        fn on_message(
            &mut self,
            _: flotilla_node::NodeId,
            _: (),
            _: &mut flotilla_node::Ctx<(), ()>,
        ) {
        }
    }
}
