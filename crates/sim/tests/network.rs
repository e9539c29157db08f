//! The simulated network behaves as labrpc does: these pin the fault model down.

use std::time::Duration;

use flotilla_sim::{Ctx, NodeId, Process, Sim};
use serde::{Deserialize, Serialize};

/// Echo server: answers every `Ping(k)` with `Pong(k)`; records what it received.
#[derive(Default)]
struct Echo {
    got: Vec<(NodeId, Msg)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Ping(u32),
    Pong(u32),
}

impl Process for Echo {
    type Msg = Msg;
    type Event = (NodeId, Msg);
    fn on_tick(&mut self, _: &mut Ctx<Msg, Self::Event>) {}
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Msg, Self::Event>) {
        self.got.push((from, msg.clone()));
        ctx.emit((from, msg.clone()));
        if let Msg::Ping(k) = msg {
            ctx.send(from, Msg::Pong(k));
            ctx.save(k.to_le_bytes().to_vec(), None);
        }
    }
    fn is_reply(msg: &Msg) -> bool {
        matches!(msg, Msg::Pong(_))
    }
}

fn sim(n: usize, seed: u64) -> Sim<Echo> {
    Sim::new(
        n,
        seed,
        Duration::from_millis(10),
        Box::new(|_, _, _| Echo::default()),
    )
}

fn ping(s: &mut Sim<Echo>, from: NodeId, to: NodeId, k: u32) {
    s.with_process(from, |_, ctx| ctx.send(to, Msg::Ping(k)))
        .expect("sender alive");
}

fn run_for(s: &mut Sim<Echo>, d: Duration) {
    let end = s.now() + d;
    while s.next_event_time().is_some_and(|t| t <= end) {
        s.step();
    }
}

fn pongs_at(s: &Sim<Echo>, i: NodeId) -> usize {
    s.process(i)
        .unwrap()
        .got
        .iter()
        .filter(|(_, m)| matches!(m, Msg::Pong(_)))
        .count()
}

#[test]
fn reliable_network_delivers_everything_and_counts_rpcs() {
    let mut s = sim(2, 1);
    for k in 0..100 {
        ping(&mut s, NodeId::new(0), NodeId::new(1), k);
    }
    run_for(&mut s, Duration::from_secs(1));
    assert_eq!(pongs_at(&s, NodeId::new(0)), 100);
    assert_eq!(s.stats().rpcs_sent, 100, "replies are not RPCs");
    assert_eq!(s.stats().rpcs_received, vec![0, 100]);
    // Latency jitter may reorder pings; the persister holds what the last handled one saved.
    let last = match s.process(NodeId::new(1)).unwrap().got.last() {
        Some((_, Msg::Ping(k))) => *k,
        other => panic!("unexpected last message {other:?}"),
    };
    assert_eq!(
        s.persister(NodeId::new(1)).state(),
        &last.to_le_bytes(),
        "the handler's save is applied"
    );
}

#[test]
fn unreliable_network_drops_about_a_tenth_each_way() {
    let mut s = sim(2, 2);
    s.set_reliable(false);
    for k in 0..10_000 {
        ping(&mut s, NodeId::new(0), NodeId::new(1), k);
    }
    run_for(&mut s, Duration::from_secs(1));
    let delivered = s.stats().rpcs_received[1];
    let replies = pongs_at(&s, NodeId::new(0));
    // 10% of requests dropped, then 10% of replies: about 9000 and 8100.
    assert!(
        (8800..9200).contains(&delivered),
        "{delivered} requests delivered"
    );
    assert!(
        (7800..8400).contains(&replies),
        "{replies} replies delivered"
    );
}

#[test]
fn disconnect_and_partition_cut_links_both_ways() {
    let mut s = sim(3, 3);
    s.disconnect(NodeId::new(2));
    ping(&mut s, NodeId::new(0), NodeId::new(2), 1);
    ping(&mut s, NodeId::new(2), NodeId::new(0), 2);
    s.partition(&[vec![NodeId::new(0)], vec![NodeId::new(1), NodeId::new(2)]]);
    ping(&mut s, NodeId::new(0), NodeId::new(1), 3);
    ping(&mut s, NodeId::new(1), NodeId::new(2), 4);
    run_for(&mut s, Duration::from_secs(1));
    assert!(
        s.process(NodeId::new(2))
            .unwrap()
            .got
            .iter()
            .all(|(f, _)| *f == NodeId::new(1)),
        "only 1 may reach 2"
    );
    assert_eq!(pongs_at(&s, NodeId::new(1)), 1);
    assert_eq!(pongs_at(&s, NodeId::new(0)), 0);
}

#[test]
fn crash_loses_volatile_state_and_in_flight_messages_but_keeps_persister() {
    let mut s = sim(2, 4);
    ping(&mut s, NodeId::new(0), NodeId::new(1), 7);
    run_for(&mut s, Duration::from_secs(1));
    ping(&mut s, NodeId::new(0), NodeId::new(1), 8);
    s.crash(NodeId::new(1));
    s.restart(NodeId::new(1));
    run_for(&mut s, Duration::from_secs(1));
    assert!(
        s.process(NodeId::new(1)).unwrap().got.is_empty(),
        "the message to the old incarnation is lost"
    );
    assert_eq!(s.persister(NodeId::new(1)).state(), &7u32.to_le_bytes());
}

#[test]
fn long_reordering_delays_replies_by_up_to_seconds() {
    let mut s = sim(2, 5);
    s.set_long_reordering(true);
    for k in 0..300 {
        ping(&mut s, NodeId::new(0), NodeId::new(1), k);
    }
    run_for(&mut s, Duration::from_millis(100));
    let early = pongs_at(&s, NodeId::new(0));
    run_for(&mut s, Duration::from_secs(3));
    // About a third of replies are not held back.
    assert!((60..140).contains(&early), "{early} replies arrived early");
    assert_eq!(pongs_at(&s, NodeId::new(0)), 300);
    let order: Vec<u32> = s
        .process(NodeId::new(0))
        .unwrap()
        .got
        .iter()
        .map(|(_, m)| match m {
            Msg::Pong(k) | Msg::Ping(k) => *k,
        })
        .collect();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "replies were reordered"
    );
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut s = sim(3, seed);
        s.set_reliable(false);
        for k in 0..50 {
            ping(
                &mut s,
                NodeId::from_index((k % 3) as usize),
                NodeId::from_index(((k + 1) % 3) as usize),
                k,
            );
        }
        run_for(&mut s, Duration::from_secs(1));
        s.trace_hash()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

/// Service-time mode: a busy node takes messages one at a time, `per_message` apart; other
/// nodes are unaffected.
#[test]
fn a_busy_node_handles_messages_one_service_time_apart() {
    let mut s = sim(3, 5);
    let per = Duration::from_millis(2);
    s.set_service_time(&[NodeId::new(1)], Some(per));
    for k in 0..5 {
        ping(&mut s, NodeId::new(0), NodeId::new(1), k);
    }
    ping(&mut s, NodeId::new(0), NodeId::new(2), 99);
    let mut handled: Vec<(NodeId, Msg, Duration)> = Vec::new();
    while handled
        .iter()
        .filter(|(n, ..)| *n != NodeId::new(0))
        .count()
        < 6
    {
        assert!(s.step(), "events left");
        for (node, (_, m)) in s.drain_events() {
            handled.push((node, m, s.now()));
        }
    }
    let at_1: Vec<_> = handled
        .iter()
        .filter(|(n, ..)| *n == NodeId::new(1))
        .collect();
    let mut got: Vec<Msg> = at_1.iter().map(|(_, m, _)| m.clone()).collect();
    got.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(got, (0..5).map(Msg::Ping).collect::<Vec<_>>());
    for w in at_1.windows(2) {
        assert!(w[1].2 >= w[0].2 + per, "handled {:?} then {:?}", w[0], w[1]);
    }
    // The reliable network's latency is at most 3 ms: without a service time all five would
    // be handled within it.
    assert!(at_1[4].2 >= at_1[0].2 + 4 * per);
    let at_2 = handled.iter().find(|(n, ..)| *n == NodeId::new(2)).unwrap();
    assert!(
        at_2.2 <= Duration::from_millis(3),
        "node 2 has no service time"
    );
}
