//! A sweep: one measured point per client count, for a Redis-protocol server (through
//! redis-benchmark) or for etcd (through the built-in generator).

use crate::cpu::CpuMeter;
use crate::redisbench::{self, RunSpec};
use crate::report::{OpPoint, Point};
use crate::BenchError;

/// What every point of a sweep does.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub clients: Vec<u32>,
    /// Requests per operation and point at up to 16 clients; see [`SweepSpec::requests_for`].
    pub requests: u64,
    pub value_size: u32,
    /// redis-benchmark `-r`: keys drawn from this many (0: a single key).
    pub keyspace: u64,
}

impl SweepSpec {
    /// Requests for a point with `clients` clients: `requests`, scaled up in proportion above
    /// 16 clients, so that the busiest points also run for seconds rather than a fraction of
    /// one, and connection set-up and warm-up do not weigh on their figures.
    pub fn requests_for(&self, clients: u32) -> u64 {
        self.requests.max(self.requests * u64::from(clients) / 16)
    }
}

fn progress(label: &str, p: &Point) {
    let client = |o: &OpPoint| {
        o.client_cpu_seconds
            .filter(|_| o.ops > 0)
            .map_or(String::new(), |s| {
                format!(" (generator {:.0} µs CPU/op)", s * 1e6 / o.ops as f64)
            })
    };
    eprintln!(
        "  {label} {:>3} clients: SET {:>8.0} ops/s p99 {:.3} ms{} | GET {:>8.0} ops/s p99 {:.3} ms{}",
        p.clients,
        p.set.stats.ops_per_sec,
        p.set.stats.p99_ms,
        client(&p.set),
        p.get.stats.ops_per_sec,
        p.get.stats.p99_ms,
        client(&p.get),
    );
}

fn measured_point(m: redisbench::Measured, ops: u64, cpu: bool) -> OpPoint {
    OpPoint {
        stats: m.stats,
        ops,
        cpu_seconds: cpu.then_some(m.cpu_seconds),
        client_cpu_seconds: None,
    }
}

/// redis-benchmark SET then GET at each client count against 127.0.0.1:`port`.
pub fn redis(
    label: &str,
    port: u16,
    spec: &SweepSpec,
    meter: Option<&CpuMeter>,
) -> Result<Vec<Point>, BenchError> {
    let none = CpuMeter::new(Vec::new());
    let m = meter.unwrap_or(&none);
    let mut points = Vec::new();
    for &clients in &spec.clients {
        let run = |test: &str| {
            let rs = RunSpec {
                port,
                test: test.into(),
                clients,
                requests: spec.requests_for(clients),
                value_size: spec.value_size,
                keyspace: spec.keyspace,
            };
            let ops = rs.requests;
            redisbench::run(&rs, m).map(|r| measured_point(r, ops, meter.is_some()))
        };
        let set = run("set")?;
        let get = run("get")?;
        let p = Point { clients, set, get };
        progress(label, &p);
        points.push(p);
    }
    Ok(points)
}

/// The generator's put/get sweep against etcd at `endpoints`.
#[cfg(feature = "etcd")]
pub fn etcd(
    endpoints: &[String],
    spec: &SweepSpec,
    meter: Option<&CpuMeter>,
) -> Result<Vec<Point>, BenchError> {
    let load = |clients| crate::etcd::EtcdLoad {
        endpoints: endpoints.to_vec(),
        requests: spec.requests_for(clients),
        value_size: spec.value_size as usize,
    };
    // One thread for the load, as redis-benchmark uses one: both compete with the servers
    // for the same cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "the generator's runtime",
            source,
        })?;
    let mut points = Vec::new();
    for &clients in &spec.clients {
        let p = rt.block_on(crate::etcd::run_point(&load(clients), clients, meter))?;
        progress("etcd", &p);
        points.push(p);
    }
    Ok(points)
}

/// Without the `etcd` feature there is no generator: say how to get one.
#[cfg(not(feature = "etcd"))]
pub fn etcd(
    _endpoints: &[String],
    _spec: &SweepSpec,
    _meter: Option<&CpuMeter>,
) -> Result<Vec<Point>, BenchError> {
    Err(BenchError::NoEtcd)
}

/// Why the etcd generator is missing from this build.
pub const NO_ETCD: &str = "this flotilla-bench was built without the etcd generator; build it \
     with `cargo build --release -p flotilla-bench --features etcd` (needs protoc, from \
     Debian's protobuf-compiler package)";

/// Whether this build has the etcd generator.
pub const HAS_ETCD: bool = cfg!(feature = "etcd");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_points_get_proportionally_more_requests() {
        let spec = SweepSpec {
            clients: vec![1, 16, 64],
            requests: 20_000,
            value_size: 100,
            keyspace: 0,
        };
        let got: Vec<u64> = spec.clients.iter().map(|&c| spec.requests_for(c)).collect();
        assert_eq!(got, vec![20_000, 20_000, 80_000]);
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn without_the_feature_etcd_is_refused_with_how_to_build_it() {
        let spec = SweepSpec {
            clients: vec![1],
            requests: 1,
            value_size: 1,
            keyspace: 0,
        };
        let e = etcd(&["http://127.0.0.1:1".into()], &spec, None).unwrap_err();
        assert!(matches!(e, BenchError::NoEtcd), "{e:?}");
        assert!(e.to_string().contains("--features etcd"), "{e}");
    }
}
