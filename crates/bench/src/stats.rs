//! Latency samples and the figures the report shows for one operation at one client count.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Throughput and latency of one operation (SET or GET) at one client count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Completed operations per second, over the whole run.
    pub ops_per_sec: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency in milliseconds.
    pub p99_ms: f64,
}

/// Latencies recorded by a load generator, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            nanos: Vec::with_capacity(n),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.nanos
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// The figures for these samples, collected over `elapsed` of wall-clock time.
    pub fn summarize(mut self, elapsed: Duration) -> OpStats {
        self.nanos.sort_unstable();
        let secs = elapsed.as_secs_f64();
        let ops_per_sec = if secs > 0.0 {
            self.nanos.len() as f64 / secs
        } else {
            0.0
        };
        let ms = |q| percentile(&self.nanos, q).map_or(f64::NAN, |n| n as f64 / 1e6);
        OpStats {
            ops_per_sec,
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value such that at least a
/// fraction `q` of the values are at or below it. `None` for no values.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // 10 values: p99 is the largest, p50 the fifth.
        let w: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(percentile(&w, 0.99), Some(100));
        assert_eq!(percentile(&w, 0.50), Some(50));
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let mut s = Samples::with_capacity(4);
        for ms in [4u64, 1, 3, 2] {
            s.record(Duration::from_millis(ms));
        }
        let mut other = Samples::default();
        other.record(Duration::from_millis(100));
        s.merge(other);
        assert_eq!(s.len(), 5);
        let st = s.summarize(Duration::from_secs(2));
        assert_eq!(st.ops_per_sec, 2.5);
        assert_eq!(st.p50_ms, 3.0);
        assert_eq!(st.p99_ms, 100.0);
    }

    #[test]
    fn empty_summary_is_zero_throughput_and_no_latency() {
        let st = Samples::default().summarize(Duration::from_secs(1));
        assert_eq!(st.ops_per_sec, 0.0);
        assert!(st.p50_ms.is_nan());
    }
}
