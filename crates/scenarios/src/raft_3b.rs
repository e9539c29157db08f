//! Lab 3B: log replication.

use std::time::Duration;

use flotilla_raft::NodeId;
use flotilla_testkit::raft_tester::{as_int, int_cmd, RaftTester, ELECTION_TIMEOUT};

/// TestBasicAgree3B: nothing is committed before Start; commands land at indices 1, 2, 3.
pub fn basic_agree(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        for index in 1..=3u64 {
            let (nd, _) = c.n_committed(index);
            assert_eq!(nd, 0, "some have committed before Start()");
            let xindex = c.one(int_cmd(index * 100), n, false).await;
            assert_eq!(xindex, index, "got index {xindex} but expected {index}");
        }
    });
    t.trace_hash()
}

/// TestRPCBytes3B: ten 5000-byte commands cost at most 3·sent + 50,000 bytes of RPC, so each
/// entry crosses to each peer about once.
pub fn rpc_bytes(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(99), n, false).await;
        let bytes0 = c.bytes_total();
        let mut sent = 0u64;
        for index in 2..12u64 {
            let cmd: Vec<u8> = (0..5000).map(|_| b'a' + c.rand(26) as u8).collect();
            sent += cmd.len() as u64;
            let xindex = c.one(cmd, n, false).await;
            assert_eq!(xindex, index, "got index {xindex} but expected {index}");
        }
        let got = c.bytes_total() - bytes0;
        let expected = n as u64 * sent;
        assert!(
            got <= expected + 50_000,
            "too many RPC bytes; got {got}, expected {expected}"
        );
    });
    t.trace_hash()
}

/// TestFollowerFailure3B: commits continue with 2 of 3 after a follower leaves; with only the
/// leader left, Start(104) must not commit within 2·ET.
pub fn follower_failure(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(101), n, false).await;
        let leader1 = c.check_one_leader().await;
        c.disconnect(NodeId::from_index((leader1.index() + 1) % n));
        c.one(int_cmd(102), n - 1, false).await;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(int_cmd(103), n - 1, false).await;
        let leader2 = c.check_one_leader().await;
        c.disconnect(NodeId::from_index((leader2.index() + 1) % n));
        c.disconnect(NodeId::from_index((leader2.index() + 2) % n));
        let (index, _, ok) = c.start(leader2, int_cmd(104)).expect("leader is alive");
        assert!(ok, "leader rejected Start()");
        assert_eq!(index, 4, "expected index 4, got {index}");
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let (nd, _) = c.n_committed(index);
        assert_eq!(nd, 0, "{nd} committed but no majority");
    });
    t.trace_hash()
}

/// TestLeaderFailure3B: commits continue after the leader leaves, twice; once only one peer is
/// connected, nothing started anywhere commits within 2·ET.
pub fn leader_failure(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(101), n, false).await;
        let leader1 = c.check_one_leader().await;
        c.disconnect(leader1);
        c.one(int_cmd(102), n - 1, false).await;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(int_cmd(103), n - 1, false).await;
        let leader2 = c.check_one_leader().await;
        c.disconnect(leader2);
        for i in 0..n {
            c.start(NodeId::from_index(i), int_cmd(104));
        }
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let (nd, _) = c.n_committed(4);
        assert_eq!(nd, 0, "{nd} committed but no majority");
    });
    t.trace_hash()
}

/// TestFailAgree3B: commits with one follower disconnected, then with all three once it is back.
pub fn fail_agree(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(101), n, false).await;
        let leader = c.check_one_leader().await;
        c.disconnect(NodeId::from_index((leader.index() + 1) % n));
        c.one(int_cmd(102), n - 1, false).await;
        c.one(int_cmd(103), n - 1, false).await;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(int_cmd(104), n - 1, false).await;
        c.one(int_cmd(105), n - 1, false).await;
        c.connect(NodeId::from_index((leader.index() + 1) % n));
        c.one(int_cmd(106), n, true).await;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(int_cmd(107), n, true).await;
    });
    t.trace_hash()
}

/// TestFailNoAgree3B: 5 peers, 3 followers out: Start returns index 2 and it does not commit
/// within 2·ET. After repair the next index is 2 or 3 and one(1000) reaches all.
pub fn fail_no_agree(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(10), n, false).await;
        let leader = c.check_one_leader().await;
        for k in 1..=3 {
            c.disconnect(NodeId::from_index((leader.index() + k) % n));
        }
        let (index, _, ok) = c.start(leader, int_cmd(20)).expect("leader is alive");
        assert!(ok, "leader rejected Start()");
        assert_eq!(index, 2, "expected index 2, got {index}");
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let (nd, _) = c.n_committed(index);
        assert_eq!(nd, 0, "{nd} committed but no majority");
        for k in 1..=3 {
            c.connect(NodeId::from_index((leader.index() + k) % n));
        }
        // The disconnected majority may have chosen a leader from among their own ranks,
        // forgetting index 2.
        let leader2 = c.check_one_leader().await;
        let (index2, _, ok2) = c.start(leader2, int_cmd(30)).expect("leader is alive");
        assert!(ok2, "leader2 rejected Start()");
        assert!((2..=3).contains(&index2), "unexpected index {index2}");
        c.one(int_cmd(1000), n, true).await;
    });
    t.trace_hash()
}

/// TestConcurrentStarts3B: 5 Starts issued at once in one term all commit (up to 5 tries if
/// the term changes under the test).
pub fn concurrent_starts(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        for attempt in 0..5 {
            if attempt > 0 {
                c.sleep(Duration::from_secs(3)).await;
            }
            let leader = c.check_one_leader().await;
            let Some((_, term, true)) = c.start(leader, int_cmd(1)) else {
                continue;
            };
            let mut handles = Vec::new();
            for ii in 0..5u64 {
                let c2 = c.clone();
                handles.push(c.rt.spawn(async move {
                    match c2.start(leader, int_cmd(100 + ii)) {
                        Some((i, term1, true)) if term1 == term => Some(i),
                        _ => None,
                    }
                }));
            }
            let mut indices = Vec::new();
            for h in handles {
                indices.extend(h.await);
            }
            if (0..n).any(|j| {
                c.get_state(NodeId::from_index(j))
                    .is_some_and(|(tj, _)| tj != term)
            }) {
                continue; // term changed: try again
            }
            let mut cmds = Vec::new();
            let mut moved_on = false;
            for index in indices {
                match c.wait(index, n, Some(term)).await {
                    None => {
                        moved_on = true;
                        break;
                    }
                    Some(cmd) => cmds.push(as_int(&cmd).expect("integer command")),
                }
            }
            if moved_on {
                continue;
            }
            for ii in 0..5u64 {
                assert!(
                    cmds.contains(&(100 + ii)),
                    "cmd {} missing in {cmds:?}",
                    100 + ii
                );
            }
            return;
        }
        panic!("term changed too often");
    });
    t.trace_hash()
}

/// TestRejoin3B: a partitioned leader appends 3 entries nobody else has; the new leader
/// commits; the old leader rejoins and its conflicting entries are overwritten.
pub fn rejoin(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(int_cmd(101), n, true).await;
        let leader1 = c.check_one_leader().await;
        c.disconnect(leader1);
        for x in [102, 103, 104] {
            c.start(leader1, int_cmd(x));
        }
        c.one(int_cmd(103), 2, true).await;
        let leader2 = c.check_one_leader().await;
        c.disconnect(leader2);
        c.connect(leader1);
        c.one(int_cmd(104), 2, true).await;
        c.connect(leader2);
        c.one(int_cmd(105), n, true).await;
    });
    t.trace_hash()
}

/// TestBackup3B: 5 peers; two minorities each gather 50 uncommitted entries while majorities
/// commit 50 elsewhere, twice. The leader must back up over long conflicting logs quickly:
/// every one() has its usual 10 s.
pub fn backup(seed: u64) -> u64 {
    let n = 5;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.one(c.rand_cmd(), n, true).await;
        // Put the leader and one follower in a partition.
        let leader1 = c.check_one_leader().await;
        for k in 2..=4 {
            c.disconnect(NodeId::from_index((leader1.index() + k) % n));
        }
        // Submit lots of commands that won't commit.
        for _ in 0..50 {
            c.start(leader1, c.rand_cmd());
        }
        c.sleep(ELECTION_TIMEOUT / 2).await;
        c.disconnect(leader1);
        c.disconnect(NodeId::from_index((leader1.index() + 1) % n));
        // Allow the other partition to recover.
        for k in 2..=4 {
            c.connect(NodeId::from_index((leader1.index() + k) % n));
        }
        for _ in 0..50 {
            c.one(c.rand_cmd(), 3, true).await;
        }
        // Now another partitioned leader and one follower.
        let leader2 = c.check_one_leader().await;
        let mut other = NodeId::from_index((leader1.index() + 2) % n);
        if leader2 == other {
            other = NodeId::from_index((leader2.index() + 1) % n);
        }
        c.disconnect(other);
        // Lots more commands that won't commit.
        for _ in 0..50 {
            c.start(leader2, c.rand_cmd());
        }
        c.sleep(ELECTION_TIMEOUT / 2).await;
        // Bring the original leader back to life.
        for i in 0..n {
            c.disconnect(NodeId::from_index(i));
        }
        c.connect(leader1);
        c.connect(NodeId::from_index((leader1.index() + 1) % n));
        c.connect(other);
        for _ in 0..50 {
            c.one(c.rand_cmd(), 3, true).await;
        }
        for i in 0..n {
            c.connect(NodeId::from_index(i));
        }
        c.one(c.rand_cmd(), n, true).await;
    });
    t.trace_hash()
}

/// TestCount3B: electing a leader uses 1..=30 RPCs; 12 Starts (10 checked) use at most
/// (10+1+3)·3 = 42; one idle second uses at most 60 (heartbeats ≤ 10/s per peer).
pub fn count(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        let rpcs = || {
            (0..n)
                .map(|j| c.rpc_count(NodeId::from_index(j)))
                .sum::<u64>()
        };
        c.check_one_leader().await;
        let total1 = rpcs();
        assert!(
            (1..=30).contains(&total1),
            "too many or few RPCs ({total1}) to elect initial leader"
        );
        let mut total2 = 0;
        let mut success = false;
        'attempts: for attempt in 0..5 {
            if attempt > 0 {
                c.sleep(Duration::from_secs(3)).await;
            }
            let leader = c.check_one_leader().await;
            let total1 = rpcs();
            let iters = 10u64;
            let Some((starti, term, true)) = c.start(leader, int_cmd(1)) else {
                continue;
            };
            let mut cmds = Vec::new();
            for i in 1..iters + 2 {
                let x = c.rand(1 << 31);
                cmds.push(x);
                match c.start(leader, int_cmd(x)) {
                    Some((index1, term1, true)) if term1 == term => {
                        assert_eq!(starti + i, index1, "Start() failed");
                    }
                    _ => continue 'attempts,
                }
            }
            for i in 1..iters + 1 {
                match c.wait(starti + i, n, Some(term)).await {
                    None => continue 'attempts,
                    Some(cmd) => {
                        let expected = cmds[(i - 1) as usize];
                        assert_eq!(
                            as_int(&cmd),
                            Some(expected),
                            "wrong value committed for index {}",
                            starti + i
                        );
                    }
                }
            }
            if (0..n).any(|j| {
                c.get_state(NodeId::from_index(j))
                    .is_some_and(|(tj, _)| tj != term)
            }) {
                continue;
            }
            total2 = rpcs();
            let used = total2 - total1;
            assert!(
                used <= (iters + 1 + 3) * 3,
                "too many RPCs ({used}) for {iters} entries"
            );
            success = true;
            break;
        }
        assert!(success, "term changed too often");
        c.sleep(ELECTION_TIMEOUT).await;
        let total3 = rpcs();
        assert!(
            total3 - total2 <= 3 * 20,
            "too many RPCs ({}) for 1 second of idleness",
            total3 - total2
        );
    });
    t.trace_hash()
}
