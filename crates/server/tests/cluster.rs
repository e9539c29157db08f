//! Three replicas on loopback TCP, driven by the same Replica the simulator runs: clients'
//! operations are applied once, in order, across the loss of the leader and its restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::admin::admin_request;
use flotilla_client::GroupClient;
use flotilla_host::driver::{Durable, DurableError, MemoryDurable};
use flotilla_node::Save;
use flotilla_raft::NodeId;
use flotilla_raft::{MembershipChange, MemorySpool, SnapshotSpool, SnapshotWriter};
use flotilla_rsm::{AdminError, AdminOp, AdminReply, Msg};
use flotilla_server::server::{run_replica, Recovered, ServerConfig, Timers};
use flotilla_transport::tls::{PeerTls, TlsFiles};
use flotilla_transport::transport::fetch_status;
use flotilla_transport::Secret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod common;
use common::Sum;

/// Storage that outlives the replica using it, as a disk would; counts the snapshots built
/// in its spool.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemoryDurable>>, Arc<AtomicUsize>);

impl Durable for Shared {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        self.0.lock().unwrap().stage(save)
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        Ok(())
    }
    fn snapshot_spool(&self) -> Arc<dyn SnapshotSpool> {
        Arc::new(Counting(self.1.clone()))
    }
}

/// The memory spool, counting the snapshots started in it.
#[derive(Debug)]
struct Counting(Arc<AtomicUsize>);

impl SnapshotSpool for Counting {
    fn create(&self, size_hint: u64) -> std::io::Result<Box<dyn SnapshotWriter>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        MemorySpool.create(size_hint)
    }
}

/// `n` listeners on loopback ports and their addresses.
async fn bind(n: usize) -> (Vec<TcpListener>, Vec<String>) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    (listeners, peers)
}

fn secret() -> Secret {
    Secret::new("test-cluster-secret-0123").unwrap()
}

async fn start(
    id: u64,
    listener: TcpListener,
    peers: Vec<String>,
    disk: Shared,
) -> oneshot::Sender<()> {
    start_tls(id, listener, peers, disk, None).await
}

async fn start_tls(
    id: u64,
    listener: TcpListener,
    peers: Vec<String>,
    disk: Shared,
    tls: Option<Arc<PeerTls>>,
) -> oneshot::Sender<()> {
    launch(id, listener, peers, false, disk, tls).await
}

async fn launch(
    id: u64,
    listener: TcpListener,
    peers: Vec<String>,
    join: bool,
    disk: Shared,
    tls: Option<Arc<PeerTls>>,
) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let recovered = {
        let d = disk.0.lock().unwrap();
        Recovered {
            state: d.state.clone(),
            snapshot: d.snapshot.clone().into(),
        }
    };
    let cfg = ServerConfig {
        id: NodeId::new(id),
        peers,
        join,
        secret: secret(),
        max_raft_state: Some(2000),
        sessions: flotilla_rsm::SessionLimits::default(),
        metrics: None,
        tls,
        timers: Timers::default(),
        read_mode: flotilla_raft::ReadMode::ReadIndex,
    };
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        run_replica(cfg, Sum::default(), disk, recovered, listener, shutdown)
            .await
            .unwrap();
    });
    stop
}

async fn leader(peers: &[String]) -> Option<u64> {
    for a in peers {
        if let Ok(s) = fetch_status::<Msg<u64, u64>>(a, &secret(), NodeId::new(1 << 40), None).await
        {
            if s.role == "leader" {
                return Some(s.id.get());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_tcp_survive_the_loss_and_restart_of_the_leader() {
    let (listeners, peers) = bind(3).await;
    let disks: Vec<Shared> = (0..3).map(|_| Shared::default()).collect();
    let mut stops = Vec::new();
    for (id, l) in listeners.into_iter().enumerate() {
        stops.push(Some(
            start(id as u64, l, peers.clone(), disks[id].clone()).await,
        ));
    }
    let clients: Arc<GroupClient<u64, u64>> = GroupClient::connect(&peers, secret());
    let ck = clients.new_clerk().await;
    let limit = Duration::from_secs(20);
    for i in 1..=50u64 {
        let total = tokio::time::timeout(limit, clients.call(ck, 1))
            .await
            .unwrap();
        assert_eq!(total, Some(Ok(i)));
    }
    let l = leader(&peers).await.expect("a leader after 50 operations");
    stops[l as usize].take().unwrap().send(()).unwrap();
    for i in 51..=100u64 {
        let total = tokio::time::timeout(limit, clients.call(ck, 1))
            .await
            .unwrap();
        assert_eq!(total, Some(Ok(i)), "after the leader {l} stopped");
    }
    // Restart the old leader from its storage; it catches up and the service goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relisten = TcpListener::bind(&peers[l as usize]).await.unwrap();
    stops[l as usize] = Some(start(l, relisten, peers.clone(), disks[l as usize].clone()).await);
    for i in 101..=150u64 {
        let total = tokio::time::timeout(limit, clients.call(ck, 1))
            .await
            .unwrap();
        assert_eq!(total, Some(Ok(i)));
    }
    let status =
        fetch_status::<Msg<u64, u64>>(&peers[l as usize], &secret(), NodeId::new(1 << 40), None)
            .await
            .unwrap();
    assert_eq!(status.id, NodeId::new(l));
    // Snapshots keep the persisted state bounded (max_raft_state 2000).
    for d in &disks {
        assert!(d.0.lock().unwrap().state.len() < 16_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_secret_gets_nothing_done() {
    let (mut listeners, peers) = bind(1).await;
    let l = listeners.pop().unwrap();
    let _stop = start(0, l, peers.clone(), Shared::default()).await;
    let wrong = Secret::new("not-the-cluster-secret!").unwrap();
    let bad: Arc<GroupClient<u64, u64>> = GroupClient::connect(&peers, wrong.clone());
    let ck = bad.new_clerk().await;
    let r = tokio::time::timeout(Duration::from_secs(2), bad.call(ck, 1)).await;
    assert!(
        r.is_err(),
        "an unauthenticated client's operation completed"
    );
    assert!(
        fetch_status::<Msg<u64, u64>>(&peers[0], &wrong, NodeId::new(7), None)
            .await
            .is_err()
    );
    let good: Arc<GroupClient<u64, u64>> = GroupClient::connect(&peers, secret());
    let ck = good.new_clerk().await;
    let r = tokio::time::timeout(Duration::from_secs(10), good.call(ck, 5)).await;
    assert_eq!(
        r.unwrap(),
        Some(Ok(5)),
        "the wrong client's operation must not have applied"
    );
}

/// A CA and, signed by it, one certificate for every node (named "flotilla"), as PEM files.
fn make_pki(dir: &std::path::Path, tag: &str) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["flotilla".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join(format!("{tag}-node.pem")),
        key: dir.join(format!("{tag}-node.key")),
        ca: dir.join(format!("{tag}-ca.pem")),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.ca, ca.pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = PeerTls::load(&make_pki(dir.path(), "cluster"), "flotilla").unwrap();
    let (listeners, peers) = bind(3).await;
    let mut stops = Vec::new();
    for (id, l) in listeners.into_iter().enumerate() {
        let disk = Shared::default();
        stops.push(start_tls(id as u64, l, peers.clone(), disk, Some(tls.clone())).await);
    }
    let good: Arc<GroupClient<u64, u64>> =
        GroupClient::connect_with(&peers, secret(), Some(tls.clone()));
    let ck = good.new_clerk().await;
    for i in 1..=20u64 {
        let r = tokio::time::timeout(Duration::from_secs(20), good.call(ck, 1)).await;
        assert_eq!(r.unwrap(), Some(Ok(i)));
    }
    // Plain TCP, and TLS with a certificate from another CA, are both turned away.
    let plain: Arc<GroupClient<u64, u64>> = GroupClient::connect(&peers, secret());
    let ck = plain.new_clerk().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(2), plain.call(ck, 1))
            .await
            .is_err()
    );
    let other = PeerTls::load(&make_pki(dir.path(), "other"), "flotilla").unwrap();
    assert!(
        fetch_status::<Msg<u64, u64>>(&peers[0], &secret(), NodeId::new(9), Some(&other))
            .await
            .is_err()
    );
    let st = fetch_status::<Msg<u64, u64>>(&peers[0], &secret(), NodeId::new(9), Some(&tls))
        .await
        .unwrap();
    assert_eq!(st.commit_index, st.applied_index);
}

/// Sends `op` to the leader among `peers` (ids are positions) until it is carried out,
/// retrying while there is no leader or the leader is busy (a change in progress, a learner
/// catching up). A change is answered once committed; a calm group never loses one.
async fn admin(peers: &[String], op: AdminOp) -> AdminReply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{op:?} not done in 20 s"
        );
        if let Some(l) = leader(peers).await {
            let addr = &peers[l as usize];
            let limit = Duration::from_secs(5);
            match admin_request::<u64, u64>(addr, &secret(), None, op.clone(), limit).await {
                Ok(Ok(reply)) => return reply,
                Ok(Err(AdminError::Busy(_) | AdminError::NotLeader { .. })) | Err(_) => {}
                Ok(Err(e)) => panic!("{op:?} failed: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_all(clients: &GroupClient<u64, u64>, ck: flotilla_rsm::ClientId, from: u64, to: u64) {
    for i in from..=to {
        let r = tokio::time::timeout(Duration::from_secs(20), clients.call(ck, 1)).await;
        assert_eq!(r.unwrap(), Some(Ok(i)));
    }
}

/// Membership change over TCP, as `flotilla ctl` does it: a replica that boots with no voters
/// and knows no address is added and promoted (catching up from a snapshot), leadership moves
/// to it, removing the leader is refused in words, a founding replica is removed; every change
/// is answered once committed, and the clients follow the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_replica_is_added_takes_the_lead_and_clients_follow() {
    let (listeners, peers) = bind(4).await;
    let mut listeners = listeners.into_iter();
    let founders = peers[..3].to_vec();
    let mut stops = Vec::new();
    for id in 0..3 {
        let l = listeners.next().unwrap();
        stops.push(start(id, l, founders.clone(), Shared::default()).await);
    }
    let l = listeners.next().unwrap();
    let joiner = Shared::default();
    stops.push(launch(3, l, Vec::new(), true, joiner.clone(), None).await);
    let clients: Arc<GroupClient<u64, u64>> = GroupClient::connect(&founders, secret());
    let ck = clients.new_clerk().await;
    // Past max_raft_state (2000 bytes, ~17 a command): the log from index 1 is gone, so the
    // learner can only catch up from a snapshot.
    add_all(&clients, ck, 1, 300).await;

    let add = MembershipChange::AddLearner {
        id: NodeId::new(3),
        addr: peers[3].clone(),
    };
    let AdminReply::Changed { membership, .. } = admin(&peers, AdminOp::Change(add)).await else {
        panic!("a change answered as a transfer")
    };
    assert!(membership.is_learner(NodeId::new(3)) && membership.voters.len() == 3);
    let promote = AdminOp::Change(MembershipChange::Promote { id: NodeId::new(3) });
    let AdminReply::Changed { membership, .. } = admin(&peers, promote).await else {
        panic!("a change answered as a transfer")
    };
    assert!(membership.is_voter(NodeId::new(3)));
    let joined = fetch_status::<Msg<u64, u64>>(&peers[3], &secret(), NodeId::new(1 << 40), None)
        .await
        .unwrap();
    assert_eq!((joined.member.as_str(), joined.voters.len()), ("voter", 4));
    assert!(
        joined.snapshot_index > 0,
        "node 3 caught up without a snapshot"
    );
    // The server gave the storage's spool to the core: the snapshot was built there (a
    // deployed replica's spool writes it to a file in its data directory).
    assert!(
        joiner.1.load(Ordering::SeqCst) > 0,
        "the snapshot did not arrive through the storage's spool"
    );

    let l = leader(&peers).await.expect("a leader");
    let remove_leader = AdminOp::Change(MembershipChange::Remove { id: NodeId::new(l) });
    let r = admin_request::<u64, u64>(&peers[l as usize], &secret(), None, remove_leader, limit())
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(AdminError::Refused(why)) if why.contains("transfer leadership first")),
        "{r:?}"
    );
    assert_eq!(
        admin(&peers, AdminOp::TransferLeader { to: NodeId::new(3) }).await,
        AdminReply::TransferStarted
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while leader(&peers).await != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 3 did not take over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Node 3 knows no founding replica's address: it leads over the connections they opened.
    add_all(&clients, ck, 301, 350).await;

    admin(
        &peers,
        AdminOp::Change(MembershipChange::Remove { id: NodeId::new(0) }),
    )
    .await;
    stops.remove(0).send(()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while clients.servers() != [1, 2, 3].map(NodeId::new) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            clients.servers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    add_all(&clients, ck, 351, 400).await;
}

fn limit() -> Duration {
    Duration::from_secs(5)
}
