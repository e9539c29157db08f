//! Driving `redis-benchmark` and reading what it prints.
//!
//! With `--csv`, redis-benchmark 7 prints a header and one row per test:
//! `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
//! "p99_latency_ms","max_latency_ms"`. Its normal output has, per test, a `====== SET ======`
//! section ending in a "throughput summary" and a "latency summary (msec)" table. Both are
//! read by column name, so a reordering or an added column does not break them.

use std::process::Command;
use std::time::Instant;

use crate::cpu::CpuMeter;
use crate::stats::OpStats;
use crate::BenchError;

/// What [`parse_csv`] reads, for its errors.
const CSV: &str = "redis-benchmark's CSV";

/// One test (SET or GET) as redis-benchmark reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct TestResult {
    pub test: String,
    pub stats: OpStats,
}

/// Reads redis-benchmark's `--csv` output.
pub fn parse_csv(text: &str) -> Result<Vec<TestResult>, BenchError> {
    let mut lines = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| l.starts_with('"'));
    let header = lines
        .next()
        .ok_or_else(|| BenchError::parse(CSV, "no header line", text))?;
    let cols = split_csv(header);
    let col = |name: &str| {
        cols.iter()
            .position(|c| c == name)
            .ok_or_else(|| BenchError::parse(CSV, format!("no {name:?} column"), header))
    };
    let (test, rps, p50, p99) = (
        col("test")?,
        col("rps")?,
        col("p50_latency_ms")?,
        col("p99_latency_ms")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let row = split_csv(line);
        let num = |i: usize| -> Result<f64, BenchError> {
            row.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| {
                BenchError::parse(CSV, format!("column {} is not a number", cols[i]), line)
            })
        };
        let name = row
            .get(test)
            .ok_or_else(|| BenchError::parse(CSV, "a row has no test name", line))?
            .clone();
        let stats = OpStats {
            ops_per_sec: num(rps)?,
            p50_ms: num(p50)?,
            p99_ms: num(p99)?,
        };
        out.push(TestResult { test: name, stats });
    }
    Ok(out)
}

fn split_csv(line: &str) -> Vec<String> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .collect()
}

/// Reads redis-benchmark's normal (human) output.
pub fn parse_plain(text: &str) -> Result<Vec<TestResult>, BenchError> {
    let lines: Vec<&str> = text.split(['\r', '\n']).map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .strip_prefix("======")
            .and_then(|l| l.strip_suffix("======"))
        else {
            continue;
        };
        let name = name.trim().to_string();
        let section = &lines[i + 1..];
        let end = section
            .iter()
            .position(|l| l.starts_with("======"))
            .unwrap_or(section.len());
        let stats = parse_plain_section(&name, &section[..end])?;
        out.push(TestResult { test: name, stats });
    }
    if out.is_empty() {
        return Err(BenchError::parse(
            "redis-benchmark's output",
            "no test section",
            text,
        ));
    }
    Ok(out)
}

/// The figures of test `name`'s section, `lines`.
fn parse_plain_section(name: &str, lines: &[&str]) -> Result<OpStats, BenchError> {
    let what = format!("redis-benchmark's {name} section");
    let bad = |problem: String, text: &str| BenchError::parse(&what, problem, text);
    let rps = lines
        .iter()
        .find_map(|l| l.strip_prefix("throughput summary:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| bad("no throughput summary".into(), ""))?;
    let at = lines
        .iter()
        .position(|l| l.starts_with("latency summary"))
        .ok_or_else(|| bad("no latency summary".into(), ""))?;
    let header = lines
        .get(at + 1)
        .ok_or_else(|| bad("no latency header".into(), ""))?;
    let names: Vec<&str> = header.split_whitespace().collect();
    let row = lines
        .get(at + 2)
        .ok_or_else(|| bad("no latency values".into(), ""))?;
    let values: Vec<f64> = row
        .split_whitespace()
        .map(|v| {
            v.parse()
                .map_err(|_| bad(format!("latency value {v:?} is not a number"), row))
        })
        .collect::<Result<_, _>>()?;
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i).copied())
            .ok_or_else(|| bad(format!("no {name} in the latency summary"), header))
    };
    Ok(OpStats {
        ops_per_sec: rps,
        p50_ms: get("p50")?,
        p99_ms: get("p99")?,
    })
}

/// What one redis-benchmark run of a single test should do.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub port: u16,
    /// "set" or "get".
    pub test: String,
    pub clients: u32,
    pub requests: u64,
    pub value_size: u32,
    /// Keys are drawn from this many (redis-benchmark `-r`); 0 uses one key.
    pub keyspace: u64,
}

impl RunSpec {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-t".into(),
            self.test.clone(),
            "-d".into(),
            self.value_size.to_string(),
            "-c".into(),
            self.clients.to_string(),
            "-n".into(),
            self.requests.to_string(),
        ];
        if self.keyspace > 0 {
            a.extend(["-r".into(), self.keyspace.to_string()]);
        }
        a.push("--csv".into());
        a
    }
}

/// A measured run: redis-benchmark's figures plus the CPU the server processes used.
#[derive(Clone, Debug)]
pub struct Measured {
    pub stats: OpStats,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
}

/// Runs redis-benchmark for one test and measures the CPU of `meter`'s processes meanwhile.
pub fn run(spec: &RunSpec, meter: &CpuMeter) -> Result<Measured, BenchError> {
    let before = meter.sample();
    let start = Instant::now();
    let out = Command::new("redis-benchmark")
        .args(spec.args())
        .output()
        .map_err(|source| BenchError::Run {
            command: "redis-benchmark".into(),
            hint: " (is redis-tools installed?)",
            source,
        })?;
    let wall_seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = meter.seconds_between(&before, &meter.sample());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(BenchError::Failed {
            command: format!("redis-benchmark {}", spec.args().join(" ")),
            status: Some(out.status),
            output: format!("{}{}", stderr.trim(), stdout.trim()),
        });
    }
    let results = parse_csv(&stdout).or_else(|_| parse_plain(&stdout))?;
    let want = spec.test.to_ascii_uppercase();
    let found = results
        .into_iter()
        .find(|r| r.test.eq_ignore_ascii_case(&want))
        .ok_or_else(|| {
            BenchError::parse(
                "redis-benchmark's output",
                format!("no {want} result"),
                stdout.trim(),
            )
        })?;
    Ok(Measured {
        stats: found.stats,
        cpu_seconds,
        wall_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured here: redis-benchmark 7.0.15 against redis-server 7.0.15 with appendfsync
    // always, `-t set,get -d 100 -c 16 -n 2000 --csv` and (plain) `-c 4 -n 2000`.
    const CSV: &str = include_str!("../tests/fixtures/redis-benchmark-7.0.15.csv");
    const PLAIN: &str = include_str!("../tests/fixtures/redis-benchmark-7.0.15.txt");

    #[test]
    fn reads_the_csv_output() {
        let r = parse_csv(CSV).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].test, "SET");
        assert_eq!(r[0].stats.ops_per_sec, 29850.75);
        assert_eq!(r[0].stats.p50_ms, 0.463);
        assert_eq!(r[0].stats.p99_ms, 0.903);
        assert_eq!(r[1].test, "GET");
        assert_eq!(r[1].stats.ops_per_sec, 54054.05);
        assert_eq!(r[1].stats.p99_ms, 0.311);
    }

    #[test]
    fn reads_csv_columns_by_name_in_any_order() {
        let text = "\"p99_latency_ms\",\"test\",\"p50_latency_ms\",\"rps\"\r\n\
                    \"2.5\",\"SET\",\"1.0\",\"1000.5\"\n";
        let r = parse_csv(text).unwrap();
        assert_eq!(r[0].test, "SET");
        assert_eq!(
            r[0].stats,
            OpStats {
                ops_per_sec: 1000.5,
                p50_ms: 1.0,
                p99_ms: 2.5
            }
        );
    }

    #[test]
    fn csv_errors_are_plain_words() {
        let e = parse_csv("").unwrap_err();
        assert!(
            matches!(&e, BenchError::Parse { problem, .. } if problem == "no header line"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "cannot read redis-benchmark's CSV: no header line"
        );
        let e = parse_csv("\"test\",\"rps\"\n\"SET\",\"1\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read redis-benchmark's CSV: no \"p50_latency_ms\" column: \"test\",\"rps\""
        );
    }

    /// A malformed row is a parse error that carries the row, and names the column.
    #[test]
    fn a_malformed_csv_row_is_a_parse_error_with_the_row() {
        let row = "\"SET\",\"x\",\"1\",\"2\"";
        let text = format!("\"test\",\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n{row}\n");
        match parse_csv(&text).unwrap_err() {
            BenchError::Parse {
                what,
                problem,
                text,
            } => {
                assert_eq!(what, "redis-benchmark's CSV");
                assert_eq!(problem, "column rps is not a number");
                assert_eq!(text, row);
            }
            other => panic!("not a parse error: {other:?}"),
        }
    }

    /// A section whose latency table holds a word names the section and shows the row.
    #[test]
    fn a_malformed_latency_row_is_a_parse_error_naming_the_section() {
        let text = "====== GET ======\nthroughput summary: 100.0 requests per second\n\
                    latency summary (msec):\n avg min p50 p95 p99 max\n 0.1 0.1 oops 0.2 0.3 0.4\n";
        let e = parse_plain(text).unwrap_err();
        match &e {
            BenchError::Parse { what, text, .. } => {
                assert_eq!(what, "redis-benchmark's GET section");
                assert_eq!(text, "0.1 0.1 oops 0.2 0.3 0.4");
            }
            other => panic!("not a parse error: {other:?}"),
        }
        assert!(e.to_string().contains("\"oops\" is not a number"), "{e}");
    }

    #[test]
    fn reads_the_plain_output_with_progress_lines() {
        let r = parse_plain(PLAIN).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].test, "SET");
        assert_eq!(r[0].stats.ops_per_sec, 9756.10);
        assert_eq!(r[0].stats.p50_ms, 0.407);
        assert_eq!(r[0].stats.p99_ms, 0.527);
        assert_eq!(r[1].test, "GET");
        assert_eq!(r[1].stats.ops_per_sec, 74074.07);
        assert_eq!(r[1].stats.p50_ms, 0.039);
        assert_eq!(r[1].stats.p99_ms, 0.079);
    }

    #[test]
    fn plain_output_without_tests_is_an_error() {
        assert!(parse_plain("Could not connect to Redis at 127.0.0.1:1").is_err());
        assert!(parse_plain("====== SET ======\n  10 requests completed\n").is_err());
    }

    #[test]
    fn arguments_bind_to_loopback_and_ask_for_csv() {
        let spec = RunSpec {
            port: 6391,
            test: "set".into(),
            clients: 16,
            requests: 1000,
            value_size: 100,
            keyspace: 0,
        };
        let a = spec.args().join(" ");
        assert_eq!(a, "-h 127.0.0.1 -p 6391 -t set -d 100 -c 16 -n 1000 --csv");
        let with_keys = RunSpec {
            keyspace: 5000,
            ..spec
        };
        assert!(with_keys.args().join(" ").contains("-r 5000 --csv"));
    }
}
