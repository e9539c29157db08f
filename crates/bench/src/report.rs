//! The results of a run, the Markdown table, and the ratios the issue sets as targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::OpStats;

pub const FLOTILLA: &str = "Flotilla";
pub const REDIS: &str = "Redis";
pub const ETCD: &str = "etcd";
/// The selection name (`--systems sharded`) of the sharded cluster at 1, 2 and 3 groups.
pub const SHARDED: &str = "sharded";

/// The report's name for a sharded cluster of `groups` groups: "Flotilla 2 groups".
pub fn sharded_name(groups: usize) -> String {
    format!(
        "Flotilla {groups} group{}",
        if groups == 1 { "" } else { "s" }
    )
}

/// One operation at one client count, with the CPU the servers spent on it.
#[derive(Clone, Debug, Serialize)]
pub struct OpPoint {
    #[serde(flatten)]
    pub stats: OpStats,
    /// Operations done in the measured run.
    pub ops: u64,
    /// CPU seconds the server processes used during the run (`None`: not measured).
    pub cpu_seconds: Option<f64>,
    /// CPU seconds the load generator itself used (only for the built-in etcd generator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_seconds: Option<f64>,
}

impl OpPoint {
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(self.cpu_seconds?, self.ops)
    }
}

fn per_op_us(cpu_seconds: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_seconds * 1e6 / ops as f64)
}

/// SET (etcd: put) and GET (etcd: range) at one client count.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub clients: u32,
    pub set: OpPoint,
    pub get: OpPoint,
}

impl Point {
    /// CPU µs per operation over SET and GET together.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.set.cpu_seconds? + self.get.cpu_seconds?;
        per_op_us(cpu, self.set.ops + self.get.ops)
    }
}

/// One system's sweep, or why it was skipped.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    pub name: String,
    /// How it was run (versions, durability settings).
    pub setup: String,
    pub points: Vec<Point>,
    pub skipped: Option<String>,
}

impl SystemResult {
    pub fn skipped(name: &str, setup: &str, why: String) -> Self {
        Self {
            name: name.into(),
            setup: setup.into(),
            points: Vec::new(),
            skipped: Some(why),
        }
    }

    pub fn at(&self, clients: u32) -> Option<&Point> {
        self.points.iter().find(|p| p.clients == clients)
    }
}

/// One `ctl move SHARD GID --wait`, timed from the command's start until every group
/// involved settled.
#[derive(Clone, Debug, Serialize)]
pub struct ShardMove {
    pub from: u64,
    pub to: u64,
    pub seconds: f64,
}

/// The shard-move measurement: a shard holding `bytes` moved back and forth between groups.
#[derive(Clone, Debug, Serialize)]
pub struct MoveResult {
    /// How it was run.
    pub setup: String,
    pub shard: usize,
    /// Value bytes written into the shard, over `keys` keys.
    pub bytes: u64,
    pub keys: u32,
    pub moves: Vec<ShardMove>,
    pub skipped: Option<String>,
}

impl MoveResult {
    pub fn skipped(setup: &str, why: String) -> Self {
        Self {
            setup: setup.into(),
            shard: 0,
            bytes: 0,
            keys: 0,
            moves: Vec::new(),
            skipped: Some(why),
        }
    }

    /// (min, median, max) of the moves' seconds; `None` without moves.
    pub fn summary(&self) -> Option<(f64, f64, f64)> {
        let mut t: Vec<f64> = self.moves.iter().map(|m| m.seconds).collect();
        if t.is_empty() {
            return None;
        }
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        };
        Some((t[0], median, t[n - 1]))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    pub value_size: u32,
    pub systems: Vec<SystemResult>,
    /// The shard-move measurement (`None`: the sharded system was not selected).
    pub shard_move: Option<MoveResult>,
}

impl Report {
    pub fn system(&self, name: &str) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.name == name)
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.decimals$}"))
}

/// The report as Markdown: a table of system × clients, how each system was run, and the
/// issue's targets as measured.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Key/value benchmark\n");
    let _ = writeln!(
        s,
        "{}; {}-byte values. Latencies in ms; CPU is the servers' user+system time.\n",
        r.machine, r.value_size
    );
    s.push_str(&table(r));
    s.push('\n');
    for sys in &r.systems {
        match &sys.skipped {
            Some(why) => {
                let _ = writeln!(s, "- **{}** skipped: {why}", sys.name);
            }
            None => {
                let _ = writeln!(s, "- **{}**: {}", sys.name, sys.setup);
            }
        }
    }
    if let Some(m) = &r.shard_move {
        match &m.skipped {
            Some(why) => {
                let _ = writeln!(s, "- **Shard move** skipped: {why}");
            }
            None => {
                let _ = writeln!(s, "- **Shard move**: {}", m.setup);
            }
        }
    }
    s.push('\n');
    s.push_str("## Targets (as measured)\n\n");
    for line in targets(r) {
        let _ = writeln!(s, "- {line}");
    }
    let notes = sharded_notes(r);
    if !notes.is_empty() {
        s.push_str("\n## Sharding (as measured)\n\n");
        for line in notes {
            let _ = writeln!(s, "- {line}");
        }
    }
    if let Some(m) = r.shard_move.as_ref().filter(|m| !m.moves.is_empty()) {
        s.push_str("\n| Move | From group | To group | Seconds |\n|--:|--:|--:|--:|\n");
        for (i, mv) in m.moves.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} |",
                i + 1,
                mv.from,
                mv.to,
                mv.seconds
            );
        }
    }
    s
}

/// The Markdown table alone: one row per system and client count.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "| System | Clients | SET ops/s | SET p50 | SET p99 | GET ops/s | GET p50 | GET p99 \
         | CPU µs/SET | CPU µs/GET | CPU µs/op |\n",
    );
    s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for sys in &r.systems {
        for p in &sys.points {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {} | {} | {} |",
                sys.name,
                p.clients,
                p.set.stats.ops_per_sec,
                p.set.stats.p50_ms,
                p.set.stats.p99_ms,
                p.get.stats.ops_per_sec,
                p.get.stats.p50_ms,
                p.get.stats.p99_ms,
                opt(p.set.cpu_us_per_op(), 1),
                opt(p.get.cpu_us_per_op(), 1),
                opt(p.cpu_us_per_op(), 1),
            );
        }
    }
    s
}

fn set_at<'a>(r: &'a Report, system: &str, clients: u32) -> Option<&'a OpPoint> {
    r.system(system)?.at(clients).map(|p| &p.set)
}

fn ratio_line(label: &str, num: Option<f64>, den: Option<f64>, target: f64) -> String {
    match (num, den) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => {
            let x = a / b;
            let verdict = if x >= target { "met" } else { "not met" };
            format!("{label}: {x:.2}× ({a:.0} / {b:.0} ops/s; target ≥ {target}×: {verdict})")
        }
        _ => format!("{label}: not measured (target ≥ {target}×)"),
    }
}

/// The targets, each as measured: a line per target, never an assertion.
pub fn targets(r: &Report) -> Vec<String> {
    let ops = |sys, c| set_at(r, sys, c).map(|o| o.stats.ops_per_sec);
    let p99 = |sys, c| set_at(r, sys, c).map(|o| o.stats.p99_ms);
    let mut lines = vec![
        ratio_line(
            "Flotilla SET@64 / etcd put@64",
            ops(FLOTILLA, 64),
            ops(ETCD, 64),
            5.0,
        ),
        ratio_line(
            "Flotilla SET@64 / Redis SET@64",
            ops(FLOTILLA, 64),
            ops(REDIS, 64),
            0.5,
        ),
    ];
    lines.push(match (p99(FLOTILLA, 64), p99(ETCD, 64)) {
        (Some(f), Some(e)) if f > 0.0 => format!(
            "p99 at 64 clients, SET/put: Flotilla {f:.2} ms vs etcd {e:.2} ms (etcd/Flotilla {:.2}×)",
            e / f
        ),
        _ => "p99 at 64 clients, Flotilla vs etcd: not measured".into(),
    });
    lines.push(ratio_line(
        "Flotilla SET@1 / etcd put@1",
        ops(FLOTILLA, 1),
        ops(ETCD, 1),
        1.5,
    ));
    lines.push(
        match set_at(r, FLOTILLA, 64).and_then(OpPoint::cpu_us_per_op) {
            Some(us) => {
                let verdict = if us <= 40.0 { "met" } else { "not met" };
                format!(
                    "Flotilla CPU per SET at 64 clients: {us:.1} µs (target ≤ 40 µs: {verdict})"
                )
            }
            None => "Flotilla CPU per SET at 64 clients: not measured (target ≤ 40 µs)".into(),
        },
    );
    lines
}

/// The sharded cluster's figures, as measured: SET@64 of 2 and 3 groups over 1 group, and
/// the shard-move times. Empty when the sharded system was not run.
pub fn sharded_notes(r: &Report) -> Vec<String> {
    let names: Vec<String> = (1..=3).map(sharded_name).collect();
    if r.shard_move.is_none() && !names.iter().any(|n| r.system(n).is_some()) {
        return Vec::new();
    }
    let ops = |g: usize| set_at(r, &names[g - 1], 64).map(|o| o.stats.ops_per_sec);
    let speedup = |g: usize| match (ops(g), ops(1)) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => {
            format!("{g} groups {:.2}× ({a:.0} / {b:.0} ops/s)", a / b)
        }
        _ => format!("{g} groups not measured"),
    };
    let mut lines = vec![format!(
        "Sharded speed-up, SET@64 over 1 group (uniform keys, through the router): {}, {}",
        speedup(2),
        speedup(3)
    )];
    lines.push(move_line(r.shard_move.as_ref()));
    lines
}

/// The shard-move times in one line (also the chart's note).
pub fn move_line(m: Option<&MoveResult>) -> String {
    let Some(m) = m else {
        return "Shard move: not measured".into();
    };
    if let Some(why) = &m.skipped {
        return format!("Shard move: not measured ({why})");
    }
    match m.summary() {
        Some((min, median, max)) => format!(
            "Shard move ({:.2} MB in shard {} over {} keys, `ctl move --wait`): min {min:.2} s, \
             median {median:.2} s, max {max:.2} s over {} moves",
            m.bytes as f64 / 1e6,
            m.shard,
            m.keys,
            m.moves.len()
        ),
        None => "Shard move: not measured (no move finished)".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn op(ops_per_sec: f64, p99_ms: f64, cpu: f64, ops: u64) -> OpPoint {
        OpPoint {
            stats: OpStats {
                ops_per_sec,
                p50_ms: p99_ms / 2.0,
                p99_ms,
            },
            ops,
            cpu_seconds: Some(cpu),
            client_cpu_seconds: None,
        }
    }

    pub(crate) fn sample_report() -> Report {
        let sys = |name: &str, k: f64| SystemResult {
            name: name.into(),
            setup: "test".into(),
            points: [1u32, 16, 64]
                .iter()
                .map(|&c| Point {
                    clients: c,
                    set: op(k * f64::from(c), 10.0 / k, 0.5, 20_000),
                    get: op(2.0 * k * f64::from(c), 5.0 / k, 0.25, 20_000),
                })
                .collect(),
            skipped: None,
        };
        Report {
            machine: "2 CPUs".into(),
            value_size: 100,
            systems: vec![sys(FLOTILLA, 600.0), sys(REDIS, 1000.0), sys(ETCD, 100.0)],
            shard_move: None,
        }
    }

    /// The sample report with sharded systems of 1, 2 and 3 groups and three moves.
    pub(crate) fn sharded_report() -> Report {
        let mut r = sample_report();
        for (g, k) in [(1, 400.0), (2, 700.0), (3, 600.0)] {
            let mut sys = r.systems[0].clone();
            sys.name = sharded_name(g);
            for p in &mut sys.points {
                p.set.stats.ops_per_sec = k * f64::from(p.clients);
            }
            r.systems.push(sys);
        }
        let mv = |from, to, seconds| ShardMove { from, to, seconds };
        r.shard_move = Some(MoveResult {
            setup: "test".into(),
            shard: 7,
            bytes: 1_024_000,
            keys: 100,
            moves: vec![mv(1, 2, 0.9), mv(2, 1, 0.3), mv(1, 2, 0.5)],
            skipped: None,
        });
        r
    }

    #[test]
    fn sharded_names_are_singular_for_one_group() {
        assert_eq!(sharded_name(1), "Flotilla 1 group");
        assert_eq!(sharded_name(3), "Flotilla 3 groups");
    }

    #[test]
    fn sharded_speedup_and_move_times_are_reported() {
        let r = sharded_report();
        let lines = sharded_notes(&r);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains("2 groups 1.75× (44800 / 25600 ops/s)")
                && lines[0].contains("3 groups 1.50× (38400 / 25600 ops/s)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("1.02 MB in shard 7 over 100 keys")
                && lines[1].contains("min 0.30 s, median 0.50 s, max 0.90 s over 3 moves"),
            "{}",
            lines[1]
        );
        let md = markdown(&r);
        assert!(md.contains("## Sharding (as measured)"), "{md}");
        assert!(md.contains("| Flotilla 2 groups | 64 | 44800 |"), "{md}");
        assert!(md.contains("| 2 | 2 | 1 | 0.300 |"), "{md}");
        // The older targets are unchanged.
        assert_eq!(targets(&r), targets(&sample_report()));
    }

    #[test]
    fn sharded_figures_missing_say_not_measured() {
        assert!(sharded_notes(&sample_report()).is_empty());
        assert!(!markdown(&sample_report()).contains("Sharding"));
        let mut r = sharded_report();
        r.systems.retain(|s| s.name != sharded_name(3));
        r.shard_move = Some(MoveResult::skipped("test", "port taken".into()));
        let lines = sharded_notes(&r);
        assert!(lines[0].contains("2 groups 1.75×"), "{}", lines[0]);
        assert!(lines[0].contains("3 groups not measured"), "{}", lines[0]);
        assert_eq!(lines[1], "Shard move: not measured (port taken)");
        assert!(markdown(&r).contains("**Shard move** skipped: port taken"));
        let even = MoveResult {
            moves: vec![
                ShardMove {
                    from: 1,
                    to: 2,
                    seconds: 1.0,
                },
                ShardMove {
                    from: 2,
                    to: 1,
                    seconds: 2.0,
                },
            ],
            ..MoveResult::skipped("test", String::new())
        };
        assert_eq!(even.summary(), Some((1.0, 1.5, 2.0)));
    }

    #[test]
    fn cpu_per_op_in_microseconds() {
        let p = op(1.0, 1.0, 0.5, 20_000);
        assert_eq!(p.cpu_us_per_op(), Some(25.0));
        let none = OpPoint {
            cpu_seconds: None,
            ..p.clone()
        };
        assert_eq!(none.cpu_us_per_op(), None);
        let pt = Point {
            clients: 1,
            set: p,
            get: op(1.0, 1.0, 0.25, 10_000),
        };
        assert_eq!(pt.cpu_us_per_op(), Some(25.0));
    }

    #[test]
    fn targets_are_reported_as_measured() {
        let lines = targets(&sample_report());
        assert_eq!(lines.len(), 5);
        assert!(
            lines[0].starts_with("Flotilla SET@64 / etcd put@64: 6.00×"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("met)"));
        assert!(lines[1].contains("0.60×"), "{}", lines[1]);
        assert!(lines[3].contains("6.00×"), "{}", lines[3]);
        assert!(
            lines[4].contains("25.0 µs") && lines[4].contains(": met"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn missing_systems_say_not_measured() {
        let mut r = sample_report();
        r.systems.retain(|s| s.name != FLOTILLA);
        r.systems
            .push(SystemResult::skipped(FLOTILLA, "", "not built".into()));
        assert!(targets(&r).iter().all(|l| l.contains("not measured")));
        let md = markdown(&r);
        assert!(md.contains("**Flotilla** skipped: not built"));
    }

    #[test]
    fn markdown_has_a_row_per_system_and_client_count() {
        let md = markdown(&sample_report());
        let rows = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| System"));
        assert_eq!(rows.count(), 9);
        assert!(md.contains("| Redis | 64 | 64000 |"), "{md}");
    }
}
