//! The etcd load generator, on the `etcd-client` crate: `clients` concurrent tasks, each
//! with its own client (its own connections), first putting `requests` distinct keys with
//! values of `value_size` bytes, then getting them back (linearizable reads, etcd's default),
//! with each operation's latency recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::cpu::CpuMeter;
use crate::report::{OpPoint, Point};
use crate::stats::Samples;
use crate::BenchError;

#[derive(Clone, Debug)]
pub struct EtcdLoad {
    /// `http://127.0.0.1:2379` and the like.
    pub endpoints: Vec<String>,
    pub requests: u64,
    pub value_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10))
}

async fn connect(endpoints: &[String]) -> Result<Client, BenchError> {
    Client::connect(endpoints, Some(options()))
        .await
        .map_err(|source| BenchError::Etcd {
            what: format!("cannot connect to etcd at {}", endpoints.join(",")),
            source,
        })
}

/// Waits until the cluster accepts a put (so it has a leader), for at most `timeout`.
pub async fn wait_healthy(endpoints: &[String], timeout: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match connect(endpoints).await {
            Ok(mut c) => match c.put("flotilla-bench/health", "ok", None).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(BenchError::NotReady {
        what: format!("etcd at {}", endpoints.join(",")),
        within: timeout,
        last,
        log: None,
    })
}

/// One task's share of a phase: takes key numbers from `next` until `n` are done.
async fn worker(
    mut client: Client,
    op: Op,
    prefix: Arc<str>,
    value: Arc<Vec<u8>>,
    next: Arc<AtomicU64>,
    n: u64,
) -> Result<Samples, BenchError> {
    let mut samples = Samples::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(samples);
        }
        let key = format!("{prefix}{i:08}");
        let start = Instant::now();
        let result = match op {
            Op::Put => client
                .put(key.as_bytes(), value.as_slice(), None)
                .await
                .map(drop),
            Op::Get => match client.get(key.as_bytes(), None).await {
                Ok(r) if r.kvs().is_empty() => return Err(BenchError::EtcdNotFound { key }),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
        };
        result.map_err(|source| BenchError::Etcd {
            what: format!("{op:?} {key} failed"),
            source,
        })?;
        samples.record(start.elapsed());
    }
}

/// Runs one phase with the given clients; returns the measured figures.
async fn phase(
    clients: &[Client],
    op: Op,
    load: &EtcdLoad,
    prefix: &str,
    meter: Option<&CpuMeter>,
) -> Result<OpPoint, BenchError> {
    let prefix: Arc<str> = prefix.into();
    let value = Arc::new(vec![b'x'; load.value_size]);
    let next = Arc::new(AtomicU64::new(0));
    let me = CpuMeter::new(vec![std::process::id()]);
    let me_before = me.sample();
    let before = meter.map(CpuMeter::sample);
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let w = worker(
                c.clone(),
                op,
                prefix.clone(),
                value.clone(),
                next.clone(),
                load.requests,
            );
            tokio::spawn(w)
        })
        .collect();
    let mut all = Samples::with_capacity(load.requests as usize);
    for t in tasks {
        all.merge(t.await.map_err(BenchError::Task)??);
    }
    let elapsed = start.elapsed();
    let cpu_seconds = match (meter, before) {
        (Some(m), Some(b)) => Some(m.seconds_between(&b, &m.sample())),
        _ => None,
    };
    let client_cpu_seconds = Some(me.seconds_between(&me_before, &me.sample()));
    let ops = all.len() as u64;
    Ok(OpPoint {
        stats: all.summarize(elapsed),
        ops,
        cpu_seconds,
        client_cpu_seconds,
    })
}

/// Puts then gets `load.requests` keys with `clients` concurrent clients.
pub async fn run_point(
    load: &EtcdLoad,
    clients: u32,
    meter: Option<&CpuMeter>,
) -> Result<Point, BenchError> {
    let mut conns = Vec::new();
    for _ in 0..clients.max(1) {
        let mut c = connect(&load.endpoints).await?;
        // Open the connections before timing anything.
        c.get("flotilla-bench/health", None)
            .await
            .map_err(|source| BenchError::Etcd {
                what: "etcd warm-up get failed".into(),
                source,
            })?;
        conns.push(c);
    }
    let prefix = format!("flotilla-bench/c{clients}/");
    let set = phase(&conns, Op::Put, load, &prefix, meter).await?;
    let get = phase(&conns, Op::Get, load, &prefix, meter).await?;
    Ok(Point { clients, set, get })
}
