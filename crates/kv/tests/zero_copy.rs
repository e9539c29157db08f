//! A value put through the log is held once: the store keeps a view of the log entry's
//! buffer, not a copy of it (issue 16: a replica's memory must stay near its state's size,
//! and the log may hold as many bytes as the state between snapshots).

use std::time::Duration;

use flotilla_kv::{Kv, KvCommand, KvReply};
use flotilla_node::{Ctx, Process, Save};
use flotilla_raft::NodeId;
use flotilla_raft::{Config, SnapshotData};
use flotilla_rsm::{Msg, Replica, ReplicaConfig, Request};

type M = Msg<KvCommand, KvReply>;
type Disk = (Vec<u8>, SnapshotData);

/// Runs one input on `r` and applies its save to `disk`.
fn input(r: &mut Replica<Kv>, disk: &mut Disk, f: impl FnOnce(&mut Replica<Kv>, &mut Ctx<M, ()>)) {
    let mut ctx = Ctx::new(Duration::ZERO).with_wall_clock(Duration::from_millis(1));
    f(r, &mut ctx);
    let (save, _, _) = ctx.into_parts();
    if let Some(Save {
        state,
        snapshot,
        append,
        ..
    }) = save
    {
        if append {
            disk.0.extend(state);
        } else {
            disk.0 = state;
        }
        if let Some(s) = snapshot {
            disk.1 = s;
        }
    }
}

/// A lone replica restored from `disk` and elected.
fn solo_leader(disk: &mut Disk) -> Replica<Kv> {
    let cfg = ReplicaConfig {
        raft: Config::for_service(NodeId::new(0), vec![NodeId::new(0)], 1),
        max_raft_state: None,
        sessions: flotilla_rsm::SessionLimits::default(),
        snapshot_scales_with_state: false,
    };
    let mut r = Replica::restore(cfg, Kv::default(), &disk.0, disk.1.clone()).expect("restores");
    for _ in 0..100 {
        input(&mut r, disk, |r, ctx| r.on_tick(ctx));
    }
    assert!(r.raft().is_leader());
    r
}

fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr_range(), part.as_ptr_range());
    w.start <= p.start && p.end <= w.end
}

/// The value of an applied Put lies inside its log entry's buffer, on the leader that
/// proposed it and after a restart that recovered the entry from the persisted bytes (where
/// the entry is a buffer of its own, not a view of those bytes).
#[test]
fn a_put_value_is_a_view_of_its_log_entry() {
    let mut disk = Disk::default();
    let mut r = solo_leader(&mut disk);
    let value = vec![7u8; 10_000];
    let put = Msg::Request(Request {
        client: 1,
        seq: 1,
        after_ms: 1,
        cmd: KvCommand::Put {
            key: b"k".to_vec(),
            value: value.clone().into(),
        },
    });
    input(&mut r, &mut disk, |r, ctx| {
        r.on_message(NodeId::new(9), put, ctx)
    });
    let at = r.raft().log().last_index();
    let entry = r.raft().log().entry(at).expect("the put's entry is held");
    let stored = r.state().machine().get(b"k").expect("the put was applied");
    assert_eq!(stored, &value[..]);
    assert!(
        within(&entry.data[..], stored),
        "the value is a view of the entry"
    );

    let r = solo_leader(&mut disk);
    let entry = r.raft().log().entry(at).expect("recovered");
    let stored = r.state().machine().get(b"k").expect("re-applied");
    assert_eq!(stored, &value[..]);
    assert!(
        within(&entry.data[..], stored),
        "a view of the recovered entry"
    );
    assert!(
        !within(&disk.0, &entry.data[..]),
        "the entry owns its bytes"
    );
}
