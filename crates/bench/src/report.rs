//! The results of a run, the Markdown table, and the ratios the issue sets as targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::OpStats;

pub const FLOTILLA: &str = "Flotilla";
pub const REDIS: &str = "Redis";
pub const ETCD: &str = "etcd";

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

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    pub value_size: u32,
    pub systems: Vec<SystemResult>,
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
    s.push('\n');
    s.push_str("## Targets (as measured)\n\n");
    for line in targets(r) {
        let _ = writeln!(s, "- {line}");
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
        }
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
