//! What INFO's `commandstats`, `errorstats` and `latencystats` report: per command, its calls,
//! their time and their errors; per error code, how many replies carried it. Kept for the
//! router's life, as Redis keeps them for the server's (until `CONFIG RESETSTAT`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// The counts behind INFO's statistics sections. One lock for all: a command takes it once,
/// after its reply, for a few map updates.
#[derive(Default)]
pub(crate) struct Stats {
    /// By command name as Redis reports it (`get`, `client|setname`).
    commands: BTreeMap<&'static str, CommandStat>,
    /// By error code: the reply's first word (`ERR`, `WRONGTYPE`, `NOAUTH` …).
    errors: BTreeMap<String, u64>,
    /// Every error reply, including those of commands that were never recognised.
    pub(crate) error_replies: u64,
}

#[derive(Default)]
struct CommandStat {
    /// Calls that ran (a rejected call does not count), their total time in µs.
    calls: u64,
    usec: u64,
    /// Refused before running (wrong arity, not authenticated), as Redis's `rejected_calls`.
    rejected: u64,
    /// Ran and answered an error, as Redis's `failed_calls`.
    failed: u64,
    latency: Histogram,
}

/// How a command ended, for its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed,
    Rejected,
}

impl Stats {
    /// Counts one command's end. `error` is the error reply, if it was one; `command` is
    /// `None` for a request that named no known command (counted only as an error).
    pub(crate) fn record(
        &mut self,
        command: Option<&'static str>,
        outcome: Outcome,
        took: Duration,
        error: Option<&str>,
    ) {
        if let Some(e) = error {
            self.error_replies += 1;
            let code = e.split(' ').next().unwrap_or_default();
            *self.errors.entry(code.to_owned()).or_default() += 1;
        }
        let Some(name) = command else { return };
        let stat = self.commands.entry(name).or_default();
        match outcome {
            Outcome::Rejected => stat.rejected += 1,
            Outcome::Ok | Outcome::Failed => {
                let usec = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                stat.calls += 1;
                stat.usec = stat.usec.saturating_add(usec);
                stat.latency.record(usec);
                if outcome == Outcome::Failed {
                    stat.failed += 1;
                }
            }
        }
    }

    /// INFO's `commandstats` lines, Redis's format, commands in name order.
    pub(crate) fn command_lines(&self) -> String {
        let mut out = String::new();
        for (name, s) in &self.commands {
            let per_call = if s.calls == 0 {
                0.0
            } else {
                s.usec as f64 / s.calls as f64
            };
            let _ = write!(
                out,
                "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                s.calls, s.usec, s.rejected, s.failed
            );
        }
        out
    }

    /// INFO's `errorstats` lines.
    pub(crate) fn error_lines(&self) -> String {
        let mut out = String::new();
        for (code, n) in &self.errors {
            let _ = write!(out, "errorstat_{code}:count={n}\r\n");
        }
        out
    }

    /// INFO's `latencystats` lines: the 50th, 99th and 99.9th percentile of each command's
    /// latency in µs, as Redis reports them (commands that never ran have none).
    pub(crate) fn latency_lines(&self) -> String {
        let mut out = String::new();
        for (name, s) in self.commands.iter().filter(|(_, s)| s.calls > 0) {
            let [p50, p99, p999] = [50.0, 99.0, 99.9].map(|p| s.latency.percentile(p));
            let _ = write!(
                out,
                "latency_percentiles_usec_{name}:p50={p50:.3},p99={p99:.3},p99.9={p999:.3}\r\n"
            );
        }
        out
    }
}

/// Latencies in µs, each kept to its 8 most significant bits (within 1%, as Redis's HDR
/// histogram keeps 2 significant digits): a few hundred buckets at most, whatever the count.
#[derive(Default)]
struct Histogram {
    /// Bucket's lowest value → samples in it.
    buckets: BTreeMap<u64, u64>,
    count: u64,
}

/// Significant bits a bucket keeps.
const PRECISION_BITS: u32 = 8;

impl Histogram {
    fn record(&mut self, v: u64) {
        let shift = (u64::BITS - v.leading_zeros()).saturating_sub(PRECISION_BITS);
        *self.buckets.entry((v >> shift) << shift).or_default() += 1;
        self.count += 1;
    }

    /// The highest value of the bucket holding the `p`th percentile sample.
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (&low, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let shift = (u64::BITS - low.leading_zeros()).saturating_sub(PRECISION_BITS);
                return (low + (1u64 << shift) - 1) as f64;
            }
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_failures_rejections_and_error_codes() {
        let mut s = Stats::default();
        let ms = Duration::from_micros;
        s.record(Some("get"), Outcome::Ok, ms(4), None);
        s.record(
            Some("get"),
            Outcome::Failed,
            ms(2),
            Some("WRONGTYPE Operation"),
        );
        s.record(
            Some("get"),
            Outcome::Rejected,
            ms(1),
            Some("ERR wrong number"),
        );
        s.record(None, Outcome::Rejected, ms(1), Some("ERR unknown command"));
        assert_eq!(
            s.command_lines(),
            "cmdstat_get:calls=2,usec=6,usec_per_call=3.00,rejected_calls=1,failed_calls=1\r\n"
        );
        assert_eq!(
            s.error_lines(),
            "errorstat_ERR:count=2\r\nerrorstat_WRONGTYPE:count=1\r\n"
        );
        assert_eq!(s.error_replies, 3);
        assert_eq!(
            s.latency_lines(),
            "latency_percentiles_usec_get:p50=2.000,p99=4.000,p99.9=4.000\r\n"
        );
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        for (p, want) in [(50.0, 5_000.0), (99.0, 9_900.0), (99.9, 9_990.0)] {
            let got = h.percentile(p);
            assert!(got >= want && got <= want * 1.01, "p{p}: {got}");
        }
    }
}
