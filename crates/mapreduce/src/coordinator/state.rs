//! The coordinator's bookkeeping as a deterministic state machine: no I/O, and time is passed
//! in, so every scheduling rule is unit-tested exactly.
//!
//! Invariants:
//! 1. A reduce task is handed out only when every map task is done (reducers need all buckets).
//! 2. A task running longer than `task_timeout` is handed out again; the first completion wins
//!    and later ones are ignored, so re-execution is harmless (outputs are written atomically).
//! 3. A done map task whose holder becomes unreachable goes back to idle, with every other map
//!    task that holder held: its output is gone and must be recomputed.
//! 4. The job is done exactly when every reduce task's output has been written.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Idle,
    Running { since: Duration },
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
            map_assignments: 0,
            reduce_assignments: 0,
            maps_lost: 0,
        }
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Picks work for a worker asking at time `now`.
    pub fn assign(&mut self, now: Duration) -> Assignment {
        if self.is_done() {
            return Assignment::Exit;
        }
        let timeout = self.spec.task_timeout;
        if let Some(m) = pick(self.maps.iter().map(|t| t.state), now, timeout) {
            self.maps[m].state = TaskState::Running { since: now };
            self.map_assignments += 1;
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
            self.reduces[r] = TaskState::Running { since: now };
            self.reduce_assignments += 1;
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

    /// Map task `map` finished; its output is served at `holder`. Ignored if already done.
    pub fn map_done(&mut self, map: u32, holder: String) {
        if let Some(t) = self.maps.get_mut(map as usize) {
            if t.state != TaskState::Done {
                t.state = TaskState::Done;
                t.holder = Some(holder);
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

    /// A reducer could not fetch `maps`' output from `holder` and gave up reduce task `reduce`:
    /// everything `holder` held is recomputed, and the reduce task is handed out again.
    pub fn map_output_lost(&mut self, reduce: u32, maps: &[u32], holder: &str) {
        for t in &mut self.maps {
            if t.state == TaskState::Done && t.holder.as_deref() == Some(holder) {
                t.state = TaskState::Idle;
                t.holder = None;
                self.maps_lost += 1;
            }
        }
        let _ = maps; // Named for logs; the holder decides what is lost.
        if let Some(s) = self.reduces.get_mut(reduce as usize) {
            if matches!(s, TaskState::Running { .. }) {
                *s = TaskState::Idle;
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
        states.into_iter().position(|s| matches!(s, TaskState::Running { since } if now.saturating_sub(since) >= timeout))
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
        assert_eq!(map_id(&c.assign(secs(0))), 0);
        assert_eq!(map_id(&c.assign(secs(0))), 1);
        assert_eq!(
            c.assign(secs(1)),
            Assignment::Wait,
            "no reduce before every map is done"
        );
        c.map_done(0, "w1".into());
        assert_eq!(c.assign(secs(1)), Assignment::Wait);
        c.map_done(1, "w2".into());
        let Assignment::Task(Task::Reduce {
            reduce: 0, sources, ..
        }) = c.assign(secs(2))
        else {
            panic!("expected reduce 0")
        };
        assert_eq!(sources, vec![(0, "w1".to_string()), (1, "w2".to_string())]);
        assert!(matches!(
            c.assign(secs(2)),
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
        assert_eq!(c.assign(secs(3)), Assignment::Exit);
    }

    #[test]
    fn a_task_is_reissued_only_after_the_timeout() {
        let mut c = job(1, 1);
        assert_eq!(map_id(&c.assign(secs(0))), 0);
        assert_eq!(c.assign(secs(9)), Assignment::Wait);
        assert_eq!(
            map_id(&c.assign(secs(10))),
            0,
            "10 s without completion: hand it out again"
        );
        c.map_done(0, "late".into());
        c.map_done(0, "later".into());
        let Assignment::Task(Task::Reduce { sources, .. }) = c.assign(secs(11)) else {
            panic!()
        };
        assert_eq!(
            sources,
            vec![(0, "late".to_string())],
            "the first completion wins"
        );
        assert_eq!(c.progress().map_assignments, 2);
    }

    #[test]
    fn lost_map_output_is_recomputed_before_reducing_again() {
        let mut c = job(3, 1);
        for _ in 0..3 {
            c.assign(secs(0));
        }
        c.map_done(0, "a".into());
        c.map_done(1, "b".into());
        c.map_done(2, "a".into());
        assert!(matches!(
            c.assign(secs(1)),
            Assignment::Task(Task::Reduce { .. })
        ));
        c.map_output_lost(0, &[0], "a");
        // Both of a's map tasks run again; the reduce waits for them.
        assert_eq!(map_id(&c.assign(secs(2))), 0);
        assert_eq!(map_id(&c.assign(secs(2))), 2);
        assert_eq!(c.assign(secs(2)), Assignment::Wait);
        c.map_done(0, "c".into());
        c.map_done(2, "c".into());
        let Assignment::Task(Task::Reduce {
            reduce: 0, sources, ..
        }) = c.assign(secs(3))
        else {
            panic!()
        };
        assert_eq!(
            sources,
            vec![(0, "c".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(c.progress().maps_lost, 2);
    }

    #[test]
    fn out_of_range_reports_are_ignored() {
        let mut c = job(1, 1);
        c.map_done(7, "x".into());
        c.reduce_done(9);
        assert!(!c.reduce_needs_output(9));
        assert_eq!(c.progress().maps_done, 0);
    }
}
