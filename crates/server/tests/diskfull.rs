//! Three replicas on loopback TCP sharing one disk that fills up and empties again: clients
//! hear "disk full" at once instead of waiting for their timeout, no replica stops, and the
//! service resumes by itself with every acknowledged operation kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_client::GroupClient;
use flotilla_host::driver::{Durable, DurableError, MemoryDurable};
use flotilla_node::Save;
use flotilla_raft::NodeId;
use flotilla_rsm::RsmError;
use flotilla_server::server::{run_replica, Recovered, ServerConfig, Timers};
use flotilla_server::NetError;
use flotilla_transport::Secret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod common;
use common::Sum;

/// Storage in memory that refuses every write while `full` is set, as a full disk does
/// (a refused call changes nothing: `Durable`'s contract).
struct FillableDisk {
    mem: MemoryDurable,
    full: Arc<AtomicBool>,
}

impl FillableDisk {
    fn check(&self) -> Result<(), DurableError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(DurableError::DiskFull("No space left on device".into()));
        }
        Ok(())
    }
}

impl Durable for FillableDisk {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        self.check()?;
        self.mem.stage(save)
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        self.check()
    }
}

fn secret() -> Secret {
    Secret::new("test-cluster-secret-0123").unwrap()
}

type Replica = JoinHandle<Result<(), NetError>>;

async fn start(full: &Arc<AtomicBool>) -> (Vec<String>, Vec<Replica>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: Vec<String> = (listeners.iter())
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut replicas = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let cfg = ServerConfig {
            id: NodeId::from_index(id),
            peers: peers.clone(),
            join: false,
            secret: secret(),
            max_raft_state: Some(2000),
            sessions: flotilla_rsm::SessionLimits::default(),
            metrics: None,
            tls: None,
            timers: Timers::default(),
            read_mode: flotilla_raft::ReadMode::ReadIndex,
        };
        let disk = FillableDisk {
            mem: MemoryDurable::default(),
            full: full.clone(),
        };
        let recovered = Recovered {
            state: Vec::new(),
            snapshot: Default::default(),
        };
        let shutdown = std::future::pending();
        replicas.push(tokio::spawn(run_replica(
            cfg,
            Sum::default(),
            disk,
            recovered,
            listener,
            shutdown,
        )));
    }
    (peers, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_at_once_and_outlived() {
    let full = Arc::new(AtomicBool::new(false));
    let (peers, replicas) = start(&full).await;
    let clients: Arc<GroupClient<u64, u64>> = GroupClient::connect(&peers, secret());
    let ck = clients.new_clerk().await;
    // Well above anything below, as the router's command timeout is: a refusal must come
    // from the replicas, not from running out of time.
    let limit = Duration::from_secs(10);
    let call = |n| tokio::time::timeout(limit, clients.call(ck, n));
    for i in 1..=20u64 {
        assert_eq!(call(1).await.unwrap(), Some(Ok(i)));
    }

    full.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let r = call(1).await.expect("an answer, not the caller's timeout");
    println!(
        "first disk-full answer after {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(r, Some(Err(RsmError::DiskFull)));
    for _ in 0..5 {
        let r = call(1).await.expect("an answer, not the caller's timeout");
        assert_eq!(r, Some(Err(RsmError::DiskFull)));
    }
    for r in &replicas {
        assert!(!r.is_finished(), "a replica stopped on a full disk");
    }

    full.store(false, Ordering::SeqCst);
    let t = Instant::now();
    let total = loop {
        match call(1).await.expect("an answer") {
            Some(Ok(total)) => break total,
            Some(Err(RsmError::DiskFull)) => tokio::task::yield_now().await,
            other => panic!("unexpected {other:?}"),
        }
    };
    println!(
        "resumed {} ms after space came back",
        t.elapsed().as_millis()
    );
    // The 20 acknowledged additions are kept; of the 6 refused, any may have been applied
    // (their outcome is unknown), and this one was.
    assert!((21..=27).contains(&total), "total {total}");
    for r in &replicas {
        assert!(!r.is_finished(), "a replica stopped");
    }
}
