//! `flotilla-lab scenario`: the lab scenarios on the deterministic simulator, by name and seed.

use std::time::Instant;

#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// Scenario names (e.g. TestFigure8Unreliable3C, TestUnreliable2, TestSnapshotRPC4B); none
    /// runs them all. `list` lists them.
    names: Vec<String>,
    /// Run exactly this seed (replays a failure).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many consecutive seeds, from 1.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
}

pub fn run(args: ScenarioArgs) -> Result<(), String> {
    let ScenarioArgs { names, seed, seeds } = args;
    let scenarios: Vec<_> = flotilla_scenarios::all_scenarios().collect();
    if names.iter().any(|n| n == "list") {
        for (name, _) in &scenarios {
            println!("{name}");
        }
        return Ok(());
    }
    for n in &names {
        if !scenarios
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(n))
        {
            return Err(format!(
                "unknown scenario {n:?}; `flotilla-lab scenario list` lists them"
            ));
        }
    }
    let chosen: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| names.is_empty() || names.iter().any(|n| name.eq_ignore_ascii_case(n)))
        .collect();
    let seed_list: Vec<u64> = match seed {
        Some(s) => vec![s],
        None => (1..=seeds).collect(),
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in chosen {
        for &s in &seed_list {
            let t0 = Instant::now();
            let outcome = std::panic::catch_unwind(|| scenario(s));
            match outcome {
                Ok(hash) => {
                    passed += 1;
                    println!(
                        "ok     {name} seed {s} ({:.0} ms, trace {hash:016x})",
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                }
                Err(_) => {
                    failed += 1;
                    println!(
                        "FAILED {name} seed {s}; replay: flotilla-lab scenario {name} --seed {s}"
                    );
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        Err(format!("{failed} scenario run(s) failed"))
    } else {
        Ok(())
    }
}
