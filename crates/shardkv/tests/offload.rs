//! Issue 16: a shard group's replica encodes its snapshots off the event loop when its driver
//! allows, as a key/value group's does (before, `ShardServer` and `CtrlServer` kept the
//! default `Process::allow_offload`, so their replicas encoded on the loop).

use std::sync::Arc;
use std::time::Duration;

use flotilla_kv::KvCommand;
use flotilla_node::{Ctx, Offloaded, Process};
use flotilla_raft::NodeId;
use flotilla_raft::{Config, SnapshotData};
use flotilla_rsm::{Msg, ReplicaConfig, Request, SessionLimits};
use flotilla_shardctrler::CtrlCommand;
use flotilla_shardkv::{CtrlServer, ShardCommand, ShardMsg, ShardServer, ShardServerConfig};

fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], 1),
        max_raft_state: Some(400),
        snapshot_scales_with_state: false,
        sessions: SessionLimits::default(),
    }
}

fn ctx() -> Ctx<ShardMsg, ()> {
    Ctx::new(Duration::ZERO).with_wall_clock(Duration::from_millis(1_000))
}

/// Elects the lone replica, then feeds `msg(i)` for i = 1.. until the process hands off a
/// job or Raft takes a snapshot on the loop; returns the jobs and whether it did.
fn until_offloaded<P: Process<Msg = ShardMsg, Event = ()>>(
    p: &mut P,
    snapshot_index: impl Fn(&P) -> u64,
    msg: impl Fn(u64) -> ShardMsg,
) -> (Vec<Offloaded<P>>, bool) {
    for _ in 0..100 {
        p.on_tick(&mut ctx());
    }
    for i in 1..2_000 {
        p.on_message(NodeId::new(9), msg(i), &mut ctx());
        let jobs = p.take_offloaded();
        if !jobs.is_empty() || snapshot_index(p) > 0 {
            return (jobs, snapshot_index(p) > 0);
        }
    }
    panic!("no snapshot after 2 000 writes");
}

// `.into()`: the store's values are becoming shared buffers (`bytes::Bytes`).
#[allow(clippy::useless_conversion)]
fn shard_op(i: u64) -> ShardMsg {
    let cmd = ShardCommand::Op {
        client: 1,
        seq: i,
        after_ms: 1,
        op: KvCommand::Put {
            key: format!("k{i}").into_bytes(),
            value: vec![7; 20].into(),
        },
    };
    ShardMsg::Group(Msg::Request(Request {
        client: 1,
        seq: i,
        after_ms: 1,
        cmd,
    }))
}

fn shard_server() -> ShardServer {
    let cfg = ShardServerConfig::new(100, 4, replica_config(), vec![NodeId::new(5)]);
    let resolve = Arc::new(|_: &str| None);
    ShardServer::restore(cfg, resolve, &[], SnapshotData::default()).unwrap()
}

#[test]
fn a_shard_server_offloads_its_snapshots_when_allowed() {
    let mut s = shard_server();
    s.allow_offload();
    let index = |s: &ShardServer| s.raft().log().snapshot_index();
    let (mut jobs, on_loop) = until_offloaded(&mut s, index, shard_op);
    assert!(!on_loop, "no snapshot taken on the loop");
    assert_eq!(jobs.len(), 1);
    let applied = s.replica().applied();
    let continuation = (jobs.pop().unwrap())();
    continuation(&mut s, &mut ctx());
    assert_eq!(s.raft().log().snapshot_index(), applied);
    // Not allowed: encoded inline, nothing handed off.
    let mut s = shard_server();
    let (jobs, on_loop) = until_offloaded(&mut s, index, shard_op);
    assert!(on_loop && jobs.is_empty());
}

fn ctrl_join(i: u64) -> ShardMsg {
    let groups = [(i, vec![format!("server-{i}")])].into_iter().collect();
    ShardMsg::Ctrl(Msg::Request(Request {
        client: 1,
        seq: i,
        after_ms: 1,
        cmd: CtrlCommand::Join(groups),
    }))
}

#[test]
fn a_controller_server_offloads_its_snapshots_when_allowed() {
    let mut c = CtrlServer::restore(replica_config(), 4, &[], SnapshotData::default()).unwrap();
    c.allow_offload();
    let index = |c: &CtrlServer| c.raft().log().snapshot_index();
    let (mut jobs, on_loop) = until_offloaded(&mut c, index, ctrl_join);
    assert!(!on_loop, "no snapshot taken on the loop");
    assert_eq!(jobs.len(), 1);
    let applied = c.replica().applied();
    let continuation = (jobs.pop().unwrap())();
    continuation(&mut c, &mut ctx());
    assert_eq!(c.raft().log().snapshot_index(), applied);
}
