//! Lab 3A: leader election.

use flotilla_raft::NodeId;
use flotilla_testkit::raft_tester::{RaftTester, ELECTION_TIMEOUT};
use std::time::Duration;

/// TestInitialElection3A: 3 peers elect a leader; after 50 ms all terms agree and are ≥ 1;
/// after 2·ET of quiet a leader still exists (a term change is only a warning, as in the lab).
pub fn initial_election(seed: u64) -> u64 {
    let t = RaftTester::new(3, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.check_one_leader().await;
        c.sleep(Duration::from_millis(50)).await;
        let term1 = c.check_terms();
        assert!(term1 >= 1, "term is {term1}, but should be at least 1");
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let term2 = c.check_terms();
        if term1 != term2 {
            eprintln!("warning: term changed even though there were no failures");
        }
        c.check_one_leader().await;
    });
    t.trace_hash()
}

/// TestReElection3A: a new leader after the leader is disconnected; the old leader rejoining
/// does not disturb it; no leader without a quorum; a leader once a quorum returns.
pub fn re_election(seed: u64) -> u64 {
    let n = 3;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        let leader1 = c.check_one_leader().await;
        c.disconnect(leader1);
        c.check_one_leader().await;
        c.connect(leader1);
        let leader2 = c.check_one_leader().await;
        c.disconnect(leader2);
        c.disconnect(NodeId::from_index((leader2.index() + 1) % n));
        c.sleep(2 * ELECTION_TIMEOUT).await;
        c.check_no_leader();
        c.connect(NodeId::from_index((leader2.index() + 1) % n));
        c.check_one_leader().await;
        c.connect(leader2);
        c.check_one_leader().await;
    });
    t.trace_hash()
}

/// TestManyElections3A: 7 peers; 9 rounds each disconnecting 3 random peers (possibly the
/// same one twice); a leader must be found every round.
pub fn many_elections(seed: u64) -> u64 {
    let n = 7;
    let t = RaftTester::new(n, false, false, seed);
    let c = t.clone();
    t.run(async move {
        c.check_one_leader().await;
        for _ in 1..10 {
            let picks: Vec<usize> = (0..3).map(|_| c.rand(n as u64) as usize).collect();
            for &i in &picks {
                c.disconnect(NodeId::from_index(i));
            }
            // Either the current leader survived or 4+ peers elect a new one.
            c.check_one_leader().await;
            for &i in &picks {
                c.connect(NodeId::from_index(i));
            }
        }
        c.check_one_leader().await;
    });
    t.trace_hash()
}
