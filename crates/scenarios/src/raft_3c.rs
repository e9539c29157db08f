//! Lab 3C: persistence, Figure 8, unreliable networks and churn.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use flotilla_raft::NodeId;
use flotilla_testkit::raft_tester::{as_int, int_cmd, RaftTester, ELECTION_TIMEOUT};

/// TestPersist13C: state survives restarting all peers, the leader, and a follower.
pub fn persist1(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(11), n, true).await;
        // Crash and re-start all.
        for i in 0..n {
            c.start1(NodeId::from_index(i));
        }
        for i in 0..n {
            c.disconnect(NodeId::from_index(i));
            c.connect(NodeId::from_index(i));
        }
        c.one(int_cmd(12), n, true).await;
        let leader1 = c.check_one_leader().await;
        c.disconnect(leader1);
        c.start1(leader1);
        c.connect(leader1);
        c.one(int_cmd(13), n, true).await;
        let leader2 = c.check_one_leader().await;
        c.disconnect(leader2);
        c.one(int_cmd(14), n - 1, true).await;
        c.start1(leader2);
        c.connect(leader2);
        c.wait(4, n, None).await; // wait for leader2 to join before killing i3
        let i3 = NodeId::from_index((c.check_one_leader().await.index() + 1) % n);
        c.disconnect(i3);
        c.one(int_cmd(15), n - 1, true).await;
        c.start1(i3);
        c.connect(i3);
        c.one(int_cmd(16), n, true).await;
    });
    t.trace_hash()
}

/// TestPersist23C: 5 peers, 5 rounds of partial crashes and restarts, with commits between.
pub fn persist2(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        let mut index = 1;
        for _ in 0..5 {
            c.one(int_cmd(10 + index), n, true).await;
            index += 1;
            let leader1 = c.check_one_leader().await;
            c.disconnect(NodeId::from_index((leader1.index() + 1) % n));
            c.disconnect(NodeId::from_index((leader1.index() + 2) % n));
            c.one(int_cmd(10 + index), n - 2, true).await;
            index += 1;
            c.disconnect(leader1);
            c.disconnect(NodeId::from_index((leader1.index() + 3) % n));
            c.disconnect(NodeId::from_index((leader1.index() + 4) % n));
            c.start1(NodeId::from_index((leader1.index() + 1) % n));
            c.start1(NodeId::from_index((leader1.index() + 2) % n));
            c.connect(NodeId::from_index((leader1.index() + 1) % n));
            c.connect(NodeId::from_index((leader1.index() + 2) % n));
            c.sleep(ELECTION_TIMEOUT).await;
            c.start1(NodeId::from_index((leader1.index() + 3) % n));
            c.connect(NodeId::from_index((leader1.index() + 3) % n));
            c.one(int_cmd(10 + index), n - 2, true).await;
            index += 1;
            c.connect(NodeId::from_index((leader1.index() + 4) % n));
            c.connect(leader1);
        }
        c.one(int_cmd(1000), n, true).await;
    });
    t.trace_hash()
}

/// TestPersist33C: a partitioned peer that crashed and restarted rejoins correctly.
pub fn persist3(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(101), 3, true).await;
        let leader = c.check_one_leader().await;
        c.disconnect(NodeId::from_index((leader.index() + 2) % n));
        c.one(int_cmd(102), 2, true).await;
        c.crash1(leader);
        c.crash1(NodeId::from_index((leader.index() + 1) % n));
        c.connect(NodeId::from_index((leader.index() + 2) % n));
        c.start1(leader);
        c.connect(leader);
        c.one(int_cmd(103), 2, true).await;
        c.start1(NodeId::from_index((leader.index() + 1) % n));
        c.connect(NodeId::from_index((leader.index() + 1) % n));
        c.one(int_cmd(104), n, true).await;
    });
    t.trace_hash()
}

/// Sleeps 0–500 ms one time in ten, otherwise 0–12 ms (the Figure 8 tests' pacing).
async fn figure8_pause(c: &RaftTester) {
    let ms = if c.rand(1000) < 100 {
        c.rand(ELECTION_TIMEOUT.as_millis() as u64 / 2)
    } else {
        c.rand(13)
    };
    c.sleep(Duration::from_millis(ms)).await;
}

/// TestFigure83C: 1000 iterations of Start on every live peer, a short pause, and a crash of
/// the leader, restarting a random peer when fewer than 3 are up. Finally all 5 up and one()
/// commits on all within 10 s.
pub fn figure8(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(c.rand_cmd(), 1, true).await;
        let mut nup = n;
        for _ in 0..1000 {
            let mut leader = None;
            for i in 0..n {
                if let Some((_, _, true)) = c.start(NodeId::from_index(i), c.rand_cmd()) {
                    leader = Some(i);
                }
            }
            figure8_pause(&c).await;
            if let Some(l) = leader {
                c.crash1(NodeId::from_index(l));
                nup -= 1;
            }
            if nup < 3 {
                let s = c.rand(n as u64) as usize;
                if !c.is_alive(NodeId::from_index(s)) {
                    c.start1(NodeId::from_index(s));
                    c.connect(NodeId::from_index(s));
                    nup += 1;
                }
            }
        }
        for i in 0..n {
            if !c.is_alive(NodeId::from_index(i)) {
                c.start1(NodeId::from_index(i));
                c.connect(NodeId::from_index(i));
            }
        }
        c.one(c.rand_cmd(), n, true).await;
    });
    t.trace_hash()
}

/// TestUnreliableAgree3C: on an unreliable network, 49 rounds of 5 concurrent one() calls
/// plus one more; then, reliable again, one(100) reaches all 5.
pub fn unreliable_agree(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, true, false, seed);
    let c = t.clone();
    t.run(async move {
        let mut handles = Vec::new();
        for iters in 1..50u64 {
            for j in 0..4u64 {
                let c2 = c.clone();
                handles.push(c.rt.spawn(async move {
                    c2.one(int_cmd(100 * iters + j), 1, true).await;
                }));
            }
            c.one(int_cmd(iters), 1, true).await;
        }
        c.set_unreliable(false);
        for h in handles {
            h.await;
        }
        c.one(int_cmd(100), n, true).await;
    });
    t.trace_hash()
}

/// TestFigure8Unreliable3C: 1000 iterations on an unreliable network (long reordering from
/// iteration 200); the leader is disconnected half the time, peers reconnected to keep 3 up.
pub fn figure8_unreliable(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, true, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(c.rand(10000)), 1, true).await;
        let mut nup = n;
        for iters in 0..1000 {
            if iters == 200 {
                c.set_long_reordering(true);
            }
            let mut leader = None;
            for i in 0..n {
                if let Some((_, _, true)) = c.start(NodeId::from_index(i), int_cmd(c.rand(10000))) {
                    if c.is_connected(NodeId::from_index(i)) {
                        leader = Some(i);
                    }
                }
            }
            figure8_pause(&c).await;
            if let Some(l) = leader {
                if c.rand(1000) < ELECTION_TIMEOUT.as_millis() as u64 / 2 {
                    c.disconnect(NodeId::from_index(l));
                    nup -= 1;
                }
            }
            if nup < 3 {
                let s = c.rand(n as u64) as usize;
                if !c.is_connected(NodeId::from_index(s)) {
                    c.connect(NodeId::from_index(s));
                    nup += 1;
                }
            }
        }
        for i in 0..n {
            if !c.is_connected(NodeId::from_index(i)) {
                c.connect(NodeId::from_index(i));
            }
        }
        c.one(int_cmd(c.rand(10000)), n, true).await;
    });
    t.trace_hash()
}

/// One churn client: keeps Starting random values on every live peer and records those it
/// sees committed, until told to stop.
async fn churn_client(c: Rc<RaftTester>, me: u64, stop: Rc<Cell<bool>>) -> Vec<u64> {
    let mut seen = Vec::new();
    while !stop.get() {
        let x = c.rand(1 << 62);
        let mut index = None;
        for i in 0..c.n() {
            if let Some((index1, _, true)) = c.start(NodeId::from_index(i), int_cmd(x)) {
                index = Some(index1);
            }
        }
        match index {
            Some(index) => {
                // Maybe the leader commits our value, maybe not; don't wait forever.
                for to in [10, 20, 50, 100, 200] {
                    let (nd, cmd) = c.n_committed(index);
                    if nd > 0 {
                        let v = as_int(&cmd.expect("nd > 0")).expect("wrong command type");
                        if v == x {
                            seen.push(x);
                        }
                        break;
                    }
                    c.sleep(Duration::from_millis(to)).await;
                }
            }
            None => c.sleep(Duration::from_millis(79 + me * 17)).await,
        }
    }
    seen
}

/// The labs' internalChurn: 20 rounds, every 0.7·ET, of random disconnects (20%),
/// restart+connect (50%) and crashes (20%) while 3 clients Start on every peer. Every value a
/// client saw committed must be in the final log on all peers.
fn churn(seed: u64, unreliable: bool) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, unreliable, false, seed);
    let c = t.clone();
    t.run(async move {
        let stop = Rc::new(Cell::new(false));
        let clients: Vec<_> = (0..3)
            .map(|me| c.rt.spawn(churn_client(c.clone(), me, stop.clone())))
            .collect();
        for _ in 0..20 {
            if c.rand(1000) < 200 {
                c.disconnect(NodeId::from_index(c.rand(n as u64) as usize));
            }
            if c.rand(1000) < 500 {
                let i = c.rand(n as u64) as usize;
                c.revive(NodeId::from_index(i));
            }
            if c.rand(1000) < 200 {
                let i = c.rand(n as u64) as usize;
                if c.is_alive(NodeId::from_index(i)) {
                    c.crash1(NodeId::from_index(i));
                }
            }
            // Smaller than the election timeout, but not hugely smaller.
            c.sleep(ELECTION_TIMEOUT * 7 / 10).await;
        }
        c.sleep(ELECTION_TIMEOUT).await;
        c.set_unreliable(false);
        c.heal_all();
        stop.set(true);
        let mut values = Vec::new();
        for h in clients {
            values.extend(h.await);
        }
        c.sleep(ELECTION_TIMEOUT).await;
        let last_index = c.one(c.rand_cmd(), n, true).await;
        let mut really = Vec::new();
        for index in 1..=last_index {
            let v = c.wait(index, n, None).await.expect("no term bound");
            really.push(as_int(&v).expect("not an int"));
        }
        for v in values {
            assert!(really.contains(&v), "didn't find a value");
        }
    });
    t.trace_hash()
}

/// TestReliableChurn3C.
pub fn reliable_churn(seed: u64) -> u64 {
    churn(seed, false)
}

/// TestUnreliableChurn3C.
pub fn unreliable_churn(seed: u64) -> u64 {
    churn(seed, true)
}
