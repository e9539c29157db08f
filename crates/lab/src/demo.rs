//! `flotilla-lab demo`: a simulated Raft cluster under faults, narrated once per virtual second.
//! Safety properties are checked after every simulator step; the run ends by healing the
//! cluster and proving it commits on every node.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_id::NodeId;
use flotilla_testkit::{RaftTester, SafetyChecker};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of Raft peers.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seed: the same seed replays the same run exactly.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual seconds of faults and load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

pub fn run(args: DemoArgs) -> Result<(), String> {
    if !(1..=15).contains(&args.nodes) {
        return Err(format!(
            "--nodes must be between 1 and 15, not {}",
            args.nodes
        ));
    }
    if args.seconds > 3600 {
        return Err(format!(
            "--seconds must be at most 3600, not {}",
            args.seconds
        ));
    }
    let wall = Instant::now();
    let outcome = std::panic::catch_unwind(|| demo(args.nodes, args.seed, args.seconds));
    match outcome {
        Ok(committed) => {
            println!(
                "done: {committed} entries committed, safety checked after every step, {:.2} s of wall time",
                wall.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(_) => Err(format!(
            "the demo failed (seed {}); rerun with --seed {} to replay it",
            args.seed, args.seed
        )),
    }
}

fn demo(n: usize, seed: u64, seconds: u64) -> usize {
    let t = RaftTester::new(n, false, true, seed);
    let checker = Rc::new(RefCell::new(SafetyChecker::new()));
    let ch = checker.clone();
    t.set_step_check(Box::new(move |sim| ch.borrow_mut().check(sim)));
    println!("{n} Raft peers on a simulated network, seed {seed}; faults change every second");
    let c = t.clone();
    let committed = checker.clone();
    t.run(async move {
        let stop = Rc::new(Cell::new(false));
        let (c2, stop2) = (c.clone(), stop.clone());
        let load = c.rt.spawn(async move {
            while !stop2.get() {
                for i in 0..c2.n() {
                    c2.start(NodeId::from_index(i), c2.rand_cmd());
                }
                c2.sleep(Duration::from_millis(20)).await;
            }
        });
        for _ in 0..seconds {
            let what = fault(&c, n);
            c.sleep(Duration::from_secs(1)).await;
            println!(
                "{}  {what}",
                status(&c, n, committed.borrow().committed_len())
            );
        }
        c.set_unreliable(false);
        c.heal_all();
        stop.set(true);
        load.await;
        let index = c.one(c.rand_cmd(), n, true).await;
        println!(
            "{}  healed: index {index} committed on all {n} peers",
            status(&c, n, committed.borrow().committed_len())
        );
    });
    let total = checker.borrow().committed_len();
    total
}

/// Injects one fault and describes it.
fn fault(c: &RaftTester, n: usize) -> String {
    let leader = (0..n).find(|&i| {
        c.get_state(NodeId::from_index(i)).is_some_and(|(_, l)| l)
            && c.is_connected(NodeId::from_index(i))
    });
    let i = c.rand(n as u64) as usize;
    match (c.rand(6), leader) {
        (0, Some(l)) => {
            c.crash1(NodeId::from_index(l));
            format!("crashed leader {l}")
        }
        (1, Some(l)) => {
            c.disconnect(NodeId::from_index(l));
            format!("cut leader {l} off")
        }
        (2, _) => {
            let on = c.rand(2) == 0;
            c.set_unreliable(on);
            format!(
                "network {}",
                if on {
                    "unreliable (10% loss, 0-26 ms delay)"
                } else {
                    "reliable"
                }
            )
        }
        _ => {
            c.revive(NodeId::from_index(i));
            format!("peer {i} up and connected")
        }
    }
}

fn status(c: &RaftTester, n: usize, committed: usize) -> String {
    let peers: Vec<String> = (0..n)
        .map(|i| {
            match (
                c.get_state(NodeId::from_index(i)),
                c.is_connected(NodeId::from_index(i)),
            ) {
                (None, _) => "down".to_string(),
                (Some((term, lead)), conn) => {
                    format!(
                        "{}{term}{}",
                        if lead { "L" } else { "t" },
                        if conn { "" } else { "/cut" }
                    )
                }
            }
        })
        .collect();
    format!(
        "t={:5.1}s committed={committed:5} msgs={:6} [{}]",
        c.rt.now().as_secs_f64(),
        c.sim.borrow().stats().messages_sent,
        peers.join(" ")
    )
}
