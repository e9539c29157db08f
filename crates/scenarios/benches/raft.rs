//! `cargo bench -p flotilla-scenarios --bench raft`: prints the Raft figures (nothing asserted).
//! `FLOTILLA_BENCH_SEEDS=K` times the suite over K seeds (default 1).

fn main() {
    let seeds = std::env::var("FLOTILLA_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    flotilla_scenarios::bench::print_raft_report(seeds);
}
