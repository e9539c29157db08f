//! CPU time of a set of processes, from `/proc/<pid>/stat` (user + system time of all of a
//! process's threads), and finding processes: by pid list, by `pgrep -f` pattern, or as a
//! process tree.

use std::collections::BTreeSet;
use std::process::Command;

use crate::BenchError;

/// What [`parse_stat`] reads, for its errors.
const STAT_LINE: &str = "a /proc stat line";

/// User and system CPU time of one process, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticks {
    pub utime: u64,
    pub stime: u64,
}

impl Ticks {
    pub fn total(self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses a `/proc/<pid>/stat` line into its parent pid and CPU ticks. The command name (field
/// 2) is in parentheses and may itself hold spaces or parentheses, so fields are counted from
/// the last `)`: then state is field 3, ppid 4, utime 14 and stime 15 (proc(5)).
pub fn parse_stat(line: &str) -> Result<(u32, Ticks), BenchError> {
    let bad = |problem: String| BenchError::parse(STAT_LINE, problem, line);
    let close = line
        .rfind(')')
        .ok_or_else(|| bad("no command name".into()))?;
    let fields: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BenchError> {
        let s = fields
            .get(n - 3)
            .ok_or_else(|| bad(format!("no field {n}")))?;
        s.parse()
            .map_err(|_| bad(format!("field {n} is not a number ({s:?})")))
    };
    let ppid = u32::try_from(field(4)?).map_err(|_| bad("bad parent pid".into()))?;
    Ok((
        ppid,
        Ticks {
            utime: field(14)?,
            stime: field(15)?,
        },
    ))
}

fn read_stat(pid: u32) -> Option<(u32, Ticks)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).ok()
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be asked.
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Summed CPU seconds of processes, measured as a difference between two samples.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    pids: Vec<u32>,
    ticks_per_sec: u64,
}

/// One reading of a [`CpuMeter`]: ticks per pid (a process that has exited is left out).
#[derive(Clone, Debug, Default)]
pub struct CpuSample(Vec<(u32, u64)>);

impl CpuMeter {
    pub fn new(pids: Vec<u32>) -> Self {
        Self {
            pids,
            ticks_per_sec: clock_ticks_per_sec(),
        }
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn sample(&self) -> CpuSample {
        CpuSample(
            self.pids
                .iter()
                .filter_map(|&p| read_stat(p).map(|(_, t)| (p, t.total())))
                .collect(),
        )
    }

    /// CPU seconds used between two samples by the processes present in both.
    pub fn seconds_between(&self, before: &CpuSample, after: &CpuSample) -> f64 {
        ticks_between(before, after) as f64 / self.ticks_per_sec as f64
    }
}

fn ticks_between(before: &CpuSample, after: &CpuSample) -> u64 {
    after
        .0
        .iter()
        .filter_map(|&(pid, t)| {
            let (_, b) = before.0.iter().find(|(p, _)| *p == pid)?;
            Some(t.saturating_sub(*b))
        })
        .sum()
}

/// Pids whose full command line matches the extended regular expression `pattern`, as
/// `pgrep -f` finds them, this process left out (its own command line may match).
pub fn pgrep(pattern: &str) -> Result<Vec<u32>, BenchError> {
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .output()
        .map_err(|source| BenchError::Run {
            command: "pgrep".into(),
            hint: "",
            source,
        })?;
    // pgrep exits 1 when nothing matches: that is an empty list, not an error.
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(BenchError::Failed {
            command: format!("pgrep -f {pattern:?}"),
            status: Some(out.status),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|&p| p != std::process::id())
        .collect())
}

/// `root` and all its descendants that are running now.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = read_stat(pid) {
                parents.push((pid, ppid));
            }
        }
    }
    descendants(root, &parents)
}

/// `root` and the pids below it, given (pid, parent pid) pairs.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut found = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for &(pid, ppid) in parents {
            if found.contains(&ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            return found.into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A stat line with a command name holding spaces and a ')', as a process may set.
    const STAT: &str = "4242 (redis) server x) S 4200 4242 4200 0 -1 4194560 812 0 0 0 \
        1234 567 0 0 20 0 5 0 987654 123456789 2345 18446744073709551615 1 1 0 0 0 0 0 \
        4097 17642 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_ppid_utime_stime_past_a_tricky_name() {
        let (ppid, t) = parse_stat(STAT).unwrap();
        assert_eq!(ppid, 4200);
        assert_eq!(
            t,
            Ticks {
                utime: 1234,
                stime: 567
            }
        );
        assert_eq!(t.total(), 1801);
    }

    #[test]
    fn parses_a_real_line() {
        // `cat /proc/self/stat` on this machine, with utime and stime set to 3 and 2.
        let line = "20990 (cat) R 20988 20988 27805 0 -1 4194304 101 0 0 0 3 2 0 0 20 0 1 0 \
            446704 3133440 388 18446744073709551615 94834064498688 94834064518569 \
            140734390764352 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94834064534576 94834064536192 \
            94834265128960 140734390766305 140734390766325 140734390766325 140734390767595 0\n";
        let (ppid, t) = parse_stat(line).unwrap();
        assert_eq!(ppid, 20988);
        assert_eq!(t, Ticks { utime: 3, stime: 2 });
    }

    #[test]
    fn rejects_truncated_lines() {
        let e = parse_stat("12 (x) S 1 2 3").unwrap_err();
        assert!(
            matches!(&e, BenchError::Parse { problem, text, .. }
                if problem == "no field 14" && text == "12 (x) S 1 2 3"),
            "{e:?}"
        );
        let e = parse_stat("no parentheses").unwrap_err();
        assert!(
            matches!(&e, BenchError::Parse { problem, .. } if problem == "no command name"),
            "{e:?}"
        );
        let e = parse_stat("12 (x) S one 2 3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read a /proc stat line: field 4 is not a number (\"one\"): 12 (x) S one 2 3"
        );
    }

    #[test]
    fn reads_this_process() {
        let (_, t) = read_stat(std::process::id()).expect("own stat readable");
        // Burn a little CPU so the counter can only grow.
        let meter = CpuMeter::new(vec![std::process::id()]);
        let before = meter.sample();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = meter.sample();
        assert!(meter.seconds_between(&before, &after) >= 0.0);
        assert!(t.total() < u64::MAX);
    }

    #[test]
    fn differences_skip_processes_that_came_or_went() {
        let before = CpuSample(vec![(1, 100), (2, 50)]);
        let after = CpuSample(vec![(1, 130), (3, 999)]);
        assert_eq!(ticks_between(&before, &after), 30);
    }

    #[test]
    fn descendants_follow_the_tree() {
        let parents = [(10, 1), (11, 10), (12, 10), (13, 11), (20, 1), (21, 20)];
        assert_eq!(descendants(10, &parents), vec![10, 11, 12, 13]);
        assert_eq!(descendants(99, &parents), vec![99]);
    }

    #[test]
    fn clock_ticks_are_positive() {
        assert!(clock_ticks_per_sec() > 0);
    }
}
