//! The coordinator's bookkeeping as a deterministic state machine: no I/O, and time is passed
//! in, so every scheduling rule is unit-tested exactly.
//!
//! Invariants:
//! 1. A reduce task is handed out only when every map task is done (reducers need all buckets).
//! 2. A task running longer than `task_timeout` is handed out again; the first completion wins
//!    and later ones are ignored, so re-execution is harmless (outputs are written atomically).
//! 3. A done map task whose holder becomes unreachable goes back to idle, with every other map
//!    task that holder held: its output is gone and must be recomputed.
//! 4. A worker silent for `worker_timeout` (no heartbeat) is dead, as the paper's master
//!    decides by pinging: its running task is re-issued at once and its finished map output is
//!    recomputed, without waiting for the task timeout or for a reducer to fail. A worker that
//!    is alive but stalled keeps heartbeating, so only the task timeout re-issues its task.
//! 5. The job is done exactly when every reduce task's output has been written.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::protocol::Task;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// As the user named it: what `map` receives.
    pub name: String,
    /// Absolute path on the coordinator's machine.
    pub path: String,
    pub size: u64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub app: String,
    pub inputs: Vec<InputFile>,
    pub n_reduce: u32,
    /// A task not finished within this is handed to another worker (the lab's 10 s).
    pub task_timeout: Duration,
    /// A worker not heard from within this is considered dead.
    pub worker_timeout: Duration,
    /// Distinguishes this job from others on the same address (workers' stores check it).
    pub job_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Idle,
    /// Handed to the worker serving at `worker` (its data address, which names it).
    Running {
        since: Duration,
        worker: u64,
    },
    Done,
}

#[derive(Debug, Clone)]
struct MapTask {
    state: TaskState,
    /// Where its output lives, once done.
    holder: Option<String>,
}

/// What the coordinator answers a worker asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Task(Task),
    Wait,
    Exit,
}

/// Counters for progress displays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub maps_done: usize,
    pub maps_total: usize,
    pub reduces_done: usize,
    pub reduces_total: usize,
    pub input_bytes_done: u64,
    pub input_bytes_total: u64,
    /// Map tasks handed out, re-issues included.
    pub map_assignments: u64,
    pub reduce_assignments: u64,
    /// Map tasks re-run because their output was lost.
    pub maps_lost: u64,
}

#[derive(Debug)]
pub struct Coordinator {
    spec: JobSpec,
    maps: Vec<MapTask>,
    reduces: Vec<TaskState>,
    /// Live workers: id → (data address, last time heard from).
    workers: BTreeMap<u64, (String, Duration)>,
    /// Workers declared dead; later messages from them are ignored.
    dead: BTreeSet<u64>,
    map_assignments: u64,
    reduce_assignments: u64,
    maps_lost: u64,
}

impl Coordinator {
    pub fn new(spec: JobSpec) -> Self {
        let maps = vec![
            MapTask {
                state: TaskState::Idle,
                holder: None
            };
            spec.inputs.len()
        ];
        let reduces = vec![TaskState::Idle; spec.n_reduce as usize];
        Coordinator {
            spec,
            maps,
            reduces,
            workers: BTreeMap::new(),
            dead: BTreeSet::new(),
            map_assignments: 0,
            reduce_assignments: 0,
            maps_lost: 0,
        }
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Worker `worker`, serving its map output at `addr`, is alive at `now`. Also expires
    /// workers silent for longer than the worker timeout.
    pub fn heartbeat(&mut self, worker: u64, addr: &str, now: Duration) {
        self.expire(now);
        if !self.dead.contains(&worker) {
            self.workers.insert(worker, (addr.to_string(), now));
        }
    }

    /// Declares silent workers dead: their running tasks go back to idle at once, and so do
    /// their finished map tasks (their output is gone) unless the job no longer needs them.
    pub fn expire(&mut self, now: Duration) {
        let timeout = self.spec.worker_timeout;
        let silent: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, (_, seen))| now.saturating_sub(*seen) > timeout)
            .map(|(&w, _)| w)
            .collect();
        for w in silent {
            let (addr, _) = self.workers.remove(&w).expect("listed above");
            tracing::info!(worker = w, %addr, "worker silent for over {timeout:?}: declared dead");
            self.dead.insert(w);
            for t in self
                .maps
                .iter_mut()
                .map(|m| &mut m.state)
                .chain(self.reduces.iter_mut())
            {
                if matches!(t, TaskState::Running { worker, .. } if *worker == w) {
                    *t = TaskState::Idle;
                }
            }
            if !self.is_done() {
                self.lose_output_of(&addr);
            }
        }
    }

    /// Picks work for worker `worker` (serving at `addr`) asking at time `now`.
    pub fn assign(&mut self, worker: u64, addr: &str, now: Duration) -> Assignment {
        self.heartbeat(worker, addr, now);
        if self.is_done() {
            return Assignment::Exit;
        }
        if self.dead.contains(&worker) {
            // Declared dead while merely slow or cut off: its output is written off, so it
            // must not take new work under the same identity.
            return Assignment::Exit;
        }
        let timeout = self.spec.task_timeout;
        if let Some(m) = pick(self.maps.iter().map(|t| t.state), now, timeout) {
            if self.maps[m].state != TaskState::Idle {
                tracing::info!(map = m, worker, "map task timed out; handing it out again");
            }
            self.maps[m].state = TaskState::Running { since: now, worker };
            self.map_assignments += 1;
            tracing::debug!(map = m, worker, ?now, "assigned map task");
            let input = &self.spec.inputs[m];
            return Assignment::Task(Task::Map {
                map: m as u32,
                app: self.spec.app.clone(),
                name: input.name.clone(),
                path: input.path.clone(),
                size: input.size,
                n_reduce: self.spec.n_reduce,
            });
        }
        if self.maps.iter().any(|t| t.state != TaskState::Done) {
            return Assignment::Wait;
        }
        if let Some(r) = pick(self.reduces.iter().copied(), now, timeout) {
            if self.reduces[r] != TaskState::Idle {
                tracing::info!(
                    reduce = r,
                    worker,
                    "reduce task timed out; handing it out again"
                );
            }
            self.reduces[r] = TaskState::Running { since: now, worker };
            self.reduce_assignments += 1;
            tracing::debug!(reduce = r, worker, ?now, "assigned reduce task");
            let sources = self
                .maps
                .iter()
                .enumerate()
                .map(|(m, t)| {
                    (
                        m as u32,
                        t.holder.clone().expect("a done map task has a holder"),
                    )
                })
                .collect();
            return Assignment::Task(Task::Reduce {
                reduce: r as u32,
                app: self.spec.app.clone(),
                sources,
            });
        }
        Assignment::Wait
    }

    /// Map task `map` finished on `worker`; its output is served at `holder`. Ignored if the
    /// task is already done or the worker was declared dead.
    pub fn map_done(&mut self, worker: u64, map: u32, holder: String) {
        if self.dead.contains(&worker) {
            return;
        }
        if let Some(t) = self.maps.get_mut(map as usize) {
            if t.state != TaskState::Done {
                t.state = TaskState::Done;
                t.holder = Some(holder);
            }
        }
    }

    /// Worker `worker`'s store already holds `maps`' output (a dead predecessor on its host
    /// computed it). That output is complete (invariant of the store), so those map tasks are
    /// done and served at `holder`, even if another worker was asked to redo them.
    pub fn recovered(&mut self, worker: u64, holder: &str, maps: &[u32], now: Duration) {
        self.heartbeat(worker, holder, now);
        if self.dead.contains(&worker) {
            return;
        }
        for &m in maps {
            if let Some(t) = self.maps.get_mut(m as usize) {
                t.state = TaskState::Done;
                t.holder = Some(holder.to_string());
            }
        }
    }

    /// True if reduce task `reduce` still needs its output written (the first completion).
    pub fn reduce_needs_output(&self, reduce: u32) -> bool {
        self.reduces
            .get(reduce as usize)
            .is_some_and(|s| *s != TaskState::Done)
    }

    /// Reduce task `reduce`'s output has been durably written.
    pub fn reduce_done(&mut self, reduce: u32) {
        if let Some(s) = self.reduces.get_mut(reduce as usize) {
            *s = TaskState::Done;
        }
    }

    /// A reducer could not fetch map output from `holders` and gave up reduce task `reduce`:
    /// everything those holders held is recomputed, and the reduce task is handed out again.
    pub fn map_output_lost(&mut self, reduce: u32, holders: &[String]) {
        for h in holders {
            self.lose_output_of(h);
        }
        if let Some(s) = self.reduces.get_mut(reduce as usize) {
            if matches!(s, TaskState::Running { .. }) {
                *s = TaskState::Idle;
            }
        }
    }

    fn lose_output_of(&mut self, holder: &str) {
        for (m, t) in self.maps.iter_mut().enumerate() {
            if t.state == TaskState::Done && t.holder.as_deref() == Some(holder) {
                tracing::info!(map = m, %holder, "map output lost; the task will run again");
                t.state = TaskState::Idle;
                t.holder = None;
                self.maps_lost += 1;
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.reduces.iter().all(|s| *s == TaskState::Done)
    }

    pub fn progress(&self) -> Progress {
        let done_maps = self
            .maps
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Done);
        Progress {
            maps_done: self
                .maps
                .iter()
                .filter(|t| t.state == TaskState::Done)
                .count(),
            maps_total: self.maps.len(),
            reduces_done: self
                .reduces
                .iter()
                .filter(|s| **s == TaskState::Done)
                .count(),
            reduces_total: self.reduces.len(),
            input_bytes_done: done_maps.map(|(m, _)| self.spec.inputs[m].size).sum(),
            input_bytes_total: self.spec.inputs.iter().map(|i| i.size).sum(),
            map_assignments: self.map_assignments,
            reduce_assignments: self.reduce_assignments,
            maps_lost: self.maps_lost,
        }
    }
}

/// The first idle task, else the first one running past `timeout`.
fn pick(
    states: impl Iterator<Item = TaskState> + Clone,
    now: Duration,
    timeout: Duration,
) -> Option<usize> {
    states.clone().position(|s| s == TaskState::Idle).or_else(|| {
        states.into_iter().position(|s| matches!(s, TaskState::Running { since, .. } if now.saturating_sub(since) >= timeout))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(maps: usize, reduces: u32) -> Coordinator {
        let inputs = (0..maps)
            .map(|i| InputFile {
                name: format!("in-{i}"),
                path: format!("/d/in-{i}"),
                size: 100,
            })
            .collect();
        Coordinator::new(JobSpec {
            app: "wc".into(),
            inputs,
            n_reduce: reduces,
            task_timeout: Duration::from_secs(10),
            worker_timeout: Duration::from_secs(3),
            job_id: 42,
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn map_id(a: &Assignment) -> u32 {
        match a {
            Assignment::Task(Task::Map { map, .. }) => *map,
            other => panic!("expected a map task, got {other:?}"),
        }
    }

    #[test]
    fn maps_first_then_reduces_then_exit() {
        let mut c = job(2, 2);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 0);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 1);
        assert_eq!(
            c.assign(1, "w1", secs(1)),
            Assignment::Wait,
            "no reduce before every map is done"
        );
        c.map_done(1, 0, "w1".into());
        assert_eq!(c.assign(1, "w1", secs(1)), Assignment::Wait);
        c.map_done(1, 1, "w2".into());
        let Assignment::Task(Task::Reduce {
            reduce: 0, sources, ..
        }) = c.assign(1, "w1", secs(2))
        else {
            panic!("expected reduce 0")
        };
        assert_eq!(sources, vec![(0, "w1".to_string()), (1, "w2".to_string())]);
        assert!(matches!(
            c.assign(1, "w1", secs(2)),
            Assignment::Task(Task::Reduce { reduce: 1, .. })
        ));
        assert!(c.reduce_needs_output(0));
        c.reduce_done(0);
        assert!(
            !c.reduce_needs_output(0),
            "a second completion must not rewrite the output"
        );
        c.reduce_done(1);
        assert!(c.is_done());
        assert_eq!(c.assign(1, "w1", secs(3)), Assignment::Exit);
    }

    #[test]
    fn a_task_is_reissued_only_after_the_timeout() {
        let mut c = job(1, 1);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 0);
        for t in 1..=10 {
            c.heartbeat(1, "w1", secs(t)); // stalled, but alive
        }
        assert_eq!(c.assign(2, "w2", secs(9)), Assignment::Wait);
        assert_eq!(
            map_id(&c.assign(2, "w2", secs(10))),
            0,
            "10 s without completion: hand it out again"
        );
        c.map_done(2, 0, "w2".into());
        c.map_done(1, 0, "w1".into());
        let Assignment::Task(Task::Reduce { sources, .. }) = c.assign(2, "w2", secs(11)) else {
            panic!()
        };
        assert_eq!(
            sources,
            vec![(0, "w2".to_string())],
            "the first completion wins"
        );
        assert_eq!(c.progress().map_assignments, 2);
    }

    #[test]
    fn lost_map_output_is_recomputed_before_reducing_again() {
        let mut c = job(3, 1);
        for _ in 0..3 {
            c.assign(1, "w1", secs(0));
        }
        c.map_done(1, 0, "a".into());
        c.map_done(1, 1, "b".into());
        c.map_done(1, 2, "a".into());
        assert!(matches!(
            c.assign(1, "w1", secs(1)),
            Assignment::Task(Task::Reduce { .. })
        ));
        c.map_output_lost(0, &["a".to_string()]);
        // Both of a's map tasks run again; the reduce waits for them.
        assert_eq!(map_id(&c.assign(1, "w1", secs(2))), 0);
        assert_eq!(map_id(&c.assign(1, "w1", secs(2))), 2);
        assert_eq!(c.assign(1, "w1", secs(2)), Assignment::Wait);
        c.map_done(1, 0, "c".into());
        c.map_done(1, 2, "c".into());
        let Assignment::Task(Task::Reduce {
            reduce: 0, sources, ..
        }) = c.assign(1, "w1", secs(3))
        else {
            panic!()
        };
        assert_eq!(
            sources,
            vec![(0, "c".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(c.progress().maps_lost, 2);
    }

    /// A worker that stops heartbeating is dead: its running task is re-issued before the task
    /// timeout, its finished map output is recomputed, and its late reports are ignored.
    #[test]
    fn a_silent_worker_is_declared_dead() {
        let mut c = job(2, 1);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 0);
        c.map_done(1, 0, "w1".into());
        assert_eq!(map_id(&c.assign(1, "w1", secs(1))), 1);
        // Worker 2 keeps asking; worker 1 falls silent after t=1.
        assert_eq!(
            c.assign(2, "w2", secs(3)),
            Assignment::Wait,
            "3 s is not yet past the worker timeout"
        );
        let a = c.assign(2, "w2", secs(5));
        assert_eq!(map_id(&a), 0, "w1 is dead: its finished map 0 runs again");
        assert_eq!(
            map_id(&c.assign(2, "w2", secs(5))),
            1,
            "and its running map 1, long before the 10 s task timeout"
        );
        c.map_done(1, 1, "w1".into());
        assert_eq!(
            c.progress().maps_done,
            0,
            "a dead worker's report is ignored"
        );
        assert_eq!(
            c.assign(1, "w1", secs(6)),
            Assignment::Exit,
            "a worker declared dead gets no new work"
        );
        assert_eq!(c.progress().maps_lost, 1);
    }

    /// A stalled worker that still heartbeats keeps its task until the task timeout.
    #[test]
    fn a_stalled_but_living_worker_keeps_its_task_until_the_timeout() {
        let mut c = job(1, 1);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 0);
        for t in 1..10 {
            c.heartbeat(1, "w1", secs(t));
            assert_eq!(c.assign(2, "w2", secs(t)), Assignment::Wait);
        }
        c.heartbeat(1, "w1", secs(10));
        assert_eq!(map_id(&c.assign(2, "w2", secs(10))), 0);
    }

    /// A restarted worker that recovers a dead predecessor's map output makes those tasks done
    /// again, served at its own address, without recomputing them.
    #[test]
    fn recovered_output_counts_as_done() {
        let mut c = job(2, 1);
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 0);
        c.map_done(1, 0, "w1".into());
        assert_eq!(map_id(&c.assign(1, "w1", secs(0))), 1);
        // w1 dies; its successor on the same host recovers map 0 before w1 is even expired.
        c.recovered(2, "w2", &[0], secs(1));
        c.map_done(2, 1, "w2".into());
        let Assignment::Task(Task::Reduce { sources, .. }) = c.assign(2, "w2", secs(2)) else {
            panic!()
        };
        assert_eq!(sources, vec![(0, "w2".to_string()), (1, "w2".to_string())]);
        c.heartbeat(2, "w2", secs(5));
        assert_eq!(
            c.progress().maps_done,
            2,
            "expiring w1 loses nothing: it holds no output any more"
        );
    }

    #[test]
    fn out_of_range_reports_are_ignored() {
        let mut c = job(1, 1);
        c.map_done(1, 7, "x".into());
        c.reduce_done(9);
        assert!(!c.reduce_needs_output(9));
        assert_eq!(c.progress().maps_done, 0);
    }
}
