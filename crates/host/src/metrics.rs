//! Prometheus metrics of one process, served over HTTP (`GET /metrics`, text format).
//!
//! Replicas export Raft's term, commit and applied indexes and leadership, and the storage's
//! fsync latency and group-commit batch size; routers export requests, errors and latency
//! by command. Updating a metric is an atomic operation; nothing here blocks the hot path.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Label set of per-command metrics.
pub type CommandLabels = Vec<(String, String)>;
type HistogramFamily = Family<CommandLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(50e-6, 2.0, 16))
}

/// Every metric a Flotilla process may export (each process registers what it uses).
pub struct Metrics {
    registry: Registry,
    pub term: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub is_leader: Gauge,
    /// Sessions in the replica's exactly-once table (bounded by `--max-sessions`).
    pub sessions: Gauge,
    /// Bytes of the replica's latest snapshot.
    pub snapshot_bytes: Gauge,
    /// 1 while the replica waits for disk space (its writes failed with "no space left").
    pub disk_full: Gauge,
    pub fsync_seconds: Histogram,
    pub batch_saves: Histogram,
    pub requests: Family<CommandLabels, Counter>,
    pub errors: Family<CommandLabels, Counter>,
    pub request_seconds: HistogramFamily,
}

impl Metrics {
    /// Metrics of a replica.
    pub fn replica() -> Arc<Self> {
        let mut m = Self::empty();
        let r = &mut m.registry;
        r.register("flotilla_raft_term", "Current Raft term", m.term.clone());
        r.register(
            "flotilla_raft_commit_index",
            "Highest committed log index",
            m.commit_index.clone(),
        );
        r.register(
            "flotilla_raft_applied_index",
            "Highest log index applied to the state machine",
            m.applied_index.clone(),
        );
        r.register(
            "flotilla_raft_is_leader",
            "1 if this replica leads",
            m.is_leader.clone(),
        );
        r.register(
            "flotilla_sessions",
            "Sessions in the exactly-once table",
            m.sessions.clone(),
        );
        r.register(
            "flotilla_snapshot_bytes",
            "Bytes of the latest snapshot",
            m.snapshot_bytes.clone(),
        );
        r.register(
            "flotilla_storage_disk_full",
            "1 while the replica's disk is full: it answers nothing until its writes succeed",
            m.disk_full.clone(),
        );
        r.register(
            "flotilla_storage_fsync_seconds",
            "Latency of one group-commit sync",
            m.fsync_seconds.clone(),
        );
        r.register(
            "flotilla_storage_batch_saves",
            "Saves made durable by one sync (group commit batch size)",
            m.batch_saves.clone(),
        );
        Arc::new(m)
    }

    /// Metrics of a router.
    pub fn router() -> Arc<Self> {
        let mut m = Self::empty();
        let r = &mut m.registry;
        r.register(
            "flotilla_router_requests",
            "Commands received, by command",
            m.requests.clone(),
        );
        r.register(
            "flotilla_router_errors",
            "Commands answered with an error, by command",
            m.errors.clone(),
        );
        r.register(
            "flotilla_router_request_seconds",
            "Command latency, by command",
            m.request_seconds.clone(),
        );
        Arc::new(m)
    }

    fn empty() -> Self {
        Metrics {
            registry: Registry::default(),
            term: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            is_leader: Gauge::default(),
            sessions: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            disk_full: Gauge::default(),
            fsync_seconds: latency_histogram(),
            batch_saves: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            requests: Family::default(),
            errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
        }
    }

    /// Records one command the router answered.
    pub fn observe_command(&self, command: &str, took: Duration, error: bool) {
        let labels = vec![("command".to_owned(), command.to_owned())];
        self.requests.get_or_create(&labels).inc();
        if error {
            self.errors.get_or_create(&labels).inc();
        }
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            // Read the request head (bounded); the answer does not depend on it.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = m.render();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::router();
        m.observe_command("set", Duration::from_millis(2), false);
        m.observe_command("set", Duration::from_millis(3), true);
        let text = m.render();
        assert!(
            text.contains("flotilla_router_requests_total{command=\"set\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_router_errors_total{command=\"set\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_router_request_seconds_count{command=\"set\"} 2"),
            "{text}"
        );
        let r = Metrics::replica();
        r.term.set(7);
        r.disk_full.set(1);
        let text = r.render();
        assert!(text.contains("flotilla_raft_term 7"), "{text}");
        assert!(text.contains("flotilla_storage_disk_full 1"), "{text}");
    }
}
