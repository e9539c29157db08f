//! The labs' key/value tester on the simulator: KV clerks whose every operation is recorded
//! in a history, checked for linearizability at the end (and written as JSON Lines when
//! `FLOTILLA_HISTORY_DIR` is set).
//!
//! The same tester drives the single-node server ([`KvServer`]) and the Raft-replicated one
//! ([`KvReplica`]); [`KvTester::kvsrv`] and [`KvTester::kvraft`] build each.
//!
//! `FLOTILLA_READ_MODE=log|read-index|lease` makes [`KvTester::kvraft`]'s replicas serve
//! Gets through the log, by ReadIndex (the default, as services run) or by lease, so every
//! kvraft lab scenario can be run in each mode.

use std::rc::Rc;
use std::time::Duration;

use flotilla_check::{
    CheckResult, KvHistory, KvInput, KvOutput, Operation, RedisInput, RedisOp, RedisOutput,
    RedisReply,
};

use crate::recorder::Recorder;
use crate::redis_ops::{command_of, reply_of};
use flotilla_kv::{Kv, KvCommand, KvReplica, KvReply, KvServer};
use flotilla_node::{NodeId, Process};
use flotilla_raft::{Config, ReadMode};
use flotilla_rsm::{ClientId, Msg, ReplicaConfig};
use flotilla_sim::Persister;

use crate::read_lease::{PeerView, ReadLeaseWatch};

/// The snapshot chunk size of simulated KV replicas: small enough that most InstallSnapshots
/// span several chunks, large enough not to slow the scenarios much.
pub const KV_SNAPSHOT_CHUNK_BYTES: usize = 4096;
use crate::service::{ServiceTester, SimNode};

/// The KV message type.
type KvMsg = Msg<KvCommand, KvReply>;

pub use crate::recorder::CHECK_TIMEOUT;

/// A simulated KV service with recording clients.
pub struct KvTester<Srv: Process<Msg = KvMsg>> {
    pub svc: Rc<ServiceTester<Srv, KvCommand, KvReply>>,
    rec: Recorder,
}

impl KvTester<KvServer> {
    /// One at-most-once server (node 0), as the kvsrv lab's `make_config`.
    pub fn kvsrv(name: &str, seed: u64, unreliable: bool) -> Rc<Self> {
        let svc = ServiceTester::new(1, unreliable, seed, Box::new(|_, _, _| KvServer::default()));
        Self::wrap(svc, name, seed)
    }
}

/// The read mode `FLOTILLA_READ_MODE` asks the KV scenarios to run with (`log`, `read-index`
/// or `lease`); `None` when unset: the services' default ([`Config::for_service`]).
pub fn read_mode_from_env() -> Option<ReadMode> {
    let v = std::env::var("FLOTILLA_READ_MODE").ok()?;
    match v.trim() {
        "log" => Some(ReadMode::Log),
        "read-index" | "readindex" => Some(ReadMode::ReadIndex),
        "lease" => Some(ReadMode::Lease),
        other => panic!("FLOTILLA_READ_MODE={other:?}: expected log, read-index or lease"),
    }
}

impl KvTester<KvReplica> {
    /// `n` KV replicas; `max_raft_state` as the labs' maxraftstate (`None` for -1). Reads
    /// as `FLOTILLA_READ_MODE` says, by default as a service reads (ReadIndex).
    pub fn kvraft(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        max_raft_state: Option<usize>,
    ) -> Rc<Self> {
        let mode = read_mode_from_env();
        Self::kvraft_with(name, seed, n, unreliable, max_raft_state, move |cfg| {
            if let Some(m) = mode {
                cfg.read_mode = m;
            }
        })
    }

    /// As [`KvTester::kvraft`], each replica's [`Config::for_service`] changed by `modify`
    /// (which must leave `id`, `voters` and `seed` alone); the environment is not read.
    pub fn kvraft_with(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        max_raft_state: Option<usize>,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        Self::kvraft_members(name, seed, n, n, unreliable, max_raft_state, modify)
    }

    /// As [`KvTester::kvraft_with`], with `slots` servers of which only `0..voters` found the
    /// group (their boot configuration); the others boot joining ([`Config::voters`] empty)
    /// and wait for a leader to add them (see [`crate::membership`]). They model machines a
    /// membership change brings in later; clients know every slot.
    pub fn kvraft_members(
        name: &str,
        seed: u64,
        slots: usize,
        voters: usize,
        unreliable: bool,
        max_raft_state: Option<usize>,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        let sessions = flotilla_rsm::SessionLimits::default();
        Self::kvraft_build(
            name,
            seed,
            slots,
            voters,
            unreliable,
            max_raft_state,
            sessions,
            modify,
        )
    }

    /// `n` KV replicas (as [`KvTester::kvraft`], reads by ReadIndex) whose clients' sessions
    /// expire by `sessions`.
    pub fn kvraft_sessions(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        max_raft_state: Option<usize>,
        sessions: flotilla_rsm::SessionLimits,
    ) -> Rc<Self> {
        Self::kvraft_build(
            name,
            seed,
            n,
            n,
            unreliable,
            max_raft_state,
            sessions,
            |_| {},
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn kvraft_build(
        name: &str,
        seed: u64,
        slots: usize,
        voters: usize,
        unreliable: bool,
        max_raft_state: Option<usize>,
        sessions: flotilla_rsm::SessionLimits,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        assert!(
            (1..=slots).contains(&voters),
            "{voters} founding voters in {slots} slots"
        );
        let n = slots;
        let factory = Box::new(move |id: NodeId, p: &Persister, s: u64| {
            let boot = if id < NodeId::from_index(voters) {
                (0..voters).map(NodeId::from_index).collect()
            } else {
                Vec::new()
            };
            let mut raft = Config::for_service(id, boot, s);
            // Snapshots in several chunks, under the simulator's faults (the services' snapshots
            // are KiBs to MiBs: the Raft tester's 128-byte chunks would slow every run).
            raft.snapshot_chunk_bytes = KV_SNAPSHOT_CHUNK_BYTES;
            raft.max_snapshot_inflight_bytes = 4 * KV_SNAPSHOT_CHUNK_BYTES;
            modify(&mut raft);
            let cfg = ReplicaConfig {
                raft,
                max_raft_state,
                sessions,
                snapshot_scales_with_state: false,
            };
            KvReplica::restore(cfg, Kv::default(), p.state(), p.snapshot())
                .unwrap_or_else(|e| panic!("kv server {id}: cannot restart: {e}"))
        });
        Self::wrap(
            ServiceTester::replicas(n, unreliable, seed, factory),
            name,
            seed,
        )
    }

    /// Watches read leases from now on (see [`ReadLeaseWatch`]): after every step of a
    /// server, no server may hold a lease while another leads a newer term.
    pub fn watch_read_leases(&self) -> Rc<ReadLeaseWatch> {
        let watch = Rc::new(ReadLeaseWatch::default());
        let w = watch.clone();
        self.svc
            .sim
            .borrow_mut()
            .add_checker(Box::new(move |i, node| {
                if let SimNode::Server(r) = node {
                    let raft = r.raft();
                    let view = PeerView {
                        term: raft.term(),
                        leader: raft.is_leader(),
                        lease: raft.has_read_lease(),
                    };
                    w.observe(i, view);
                }
            }));
        let w = watch.clone();
        self.svc.on_crash(move |i| w.forget(i));
        watch
    }

    /// The live server that believes it leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        (0..self.svc.n())
            .map(NodeId::from_index)
            .filter_map(|s| {
                self.svc
                    .with_server(s, |r| (r.raft().is_leader(), r.raft().term()))
                    .filter(|&(leads, _)| leads)
                    .map(|(_, term)| (term, s))
            })
            .max()
            .map(|(_, s)| s)
    }
}

impl<Srv> KvTester<Srv>
where
    Srv: Process<Msg = KvMsg> + 'static,
{
    /// `n` servers of any kind (e.g. the deliberately broken ones in [`crate::broken`]).
    pub fn custom(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        factory: crate::service::ServerFactory<Srv>,
    ) -> Rc<Self> {
        Self::wrap(ServiceTester::new(n, unreliable, seed, factory), name, seed)
    }

    /// The checker's verdict on the history so far.
    pub fn verdict(&self) -> CheckResult {
        self.rec.verdict()
    }

    fn wrap(svc: Rc<ServiceTester<Srv, KvCommand, KvReply>>, name: &str, seed: u64) -> Rc<Self> {
        Rc::new(KvTester {
            svc,
            rec: Recorder::new(name, seed),
        })
    }

    /// A clerk that knows every server, in a random order (the labs shuffle clerks' ends so
    /// that none can assume server 0 leads).
    pub fn make_client(self: &Rc<Self>) -> KvClient<Srv> {
        self.make_client_to(self.svc.servers())
    }

    /// A clerk that can reach only `servers`, in a random order.
    pub fn make_client_to(self: &Rc<Self>, mut servers: Vec<NodeId>) -> KvClient<Srv> {
        for i in (1..servers.len()).rev() {
            let j = self.svc.rand(i as u64 + 1) as usize;
            servers.swap(i, j);
        }
        let id = self.svc.make_clerk(servers);
        KvClient {
            id,
            t: self.clone(),
        }
    }

    fn stamp(&self) -> u64 {
        self.rec.stamp(self.svc.now())
    }

    /// Stops (or resumes) recording operations in the history.
    pub fn set_recording(&self, on: bool) {
        self.rec.set_recording(on);
    }

    /// Sets the model a history with Redis-model operations is checked by (by default the
    /// strict one; see [`flotilla_check::RedisModel::reads_run_ahead`]).
    pub fn set_redis_model(&self, model: flotilla_check::RedisModel) {
        self.rec.set_redis_model(model);
    }

    /// The model a history with Redis-model operations is checked by.
    pub fn redis_model(&self) -> flotilla_check::RedisModel {
        self.rec.redis_model()
    }

    pub fn history_len(&self) -> usize {
        self.rec.len()
    }

    /// Writes the history if `FLOTILLA_HISTORY_DIR` is set, checks it, and panics with the
    /// checker's explanation if it is not linearizable. An "unknown" verdict (the time limit
    /// ran out) passes with a note, as in the labs.
    pub fn check_linearizable(&self) {
        self.rec.check_linearizable(self.svc.now());
    }

    /// The end of a scenario: [`KvTester::check_linearizable`], then the simulation's trace
    /// hash (which scenarios return so a seed's replay can be compared).
    pub fn finish(&self) -> u64 {
        self.check_linearizable();
        self.svc.trace_hash()
    }

    /// The recorded history so far (for tests of the checker against broken servers).
    pub fn history(&self) -> KvHistory {
        self.rec.history()
    }

    /// The whole history so far as the Redis model reads it (the labs' operations
    /// converted), for tests that tamper with a real history.
    pub fn redis_history(&self) -> Vec<flotilla_check::RedisOperation> {
        self.rec.redis_history()
    }
}

/// A KV client whose operations are recorded in its tester's history.
pub struct KvClient<Srv: Process<Msg = KvMsg>> {
    pub id: ClientId,
    t: Rc<KvTester<Srv>>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl<Srv> KvClient<Srv>
where
    Srv: Process<Msg = KvMsg> + 'static,
{
    /// Lets this clerk reach only `servers` from now on.
    pub fn connect(&self, servers: Vec<NodeId>) {
        self.t.svc.connect_clerk(self.id, servers);
    }

    /// Runs `cmd` until answered, recording it with the output `output` derives.
    async fn run(
        &self,
        input: KvInput,
        cmd: KvCommand,
        limit: Option<Duration>,
    ) -> Option<KvReply> {
        let call = self.t.stamp();
        let reply = match limit {
            None => Some(self.t.svc.call(self.id, cmd).await),
            Some(d) => self.t.svc.call_timeout(self.id, cmd, d).await,
        };
        let (output, ret) = match &reply {
            None => (KvOutput::Unknown, None),
            Some(r) => (output_of(&input, r), Some(self.t.stamp())),
        };
        self.t.rec.record(Operation {
            client: self.id,
            input,
            call,
            output,
            ret,
        });
        reply
    }

    /// The key's value ("" if none).
    pub async fn get(&self, key: &str) -> String {
        let r = self.try_get(key, None).await;
        r.expect("an operation without a time limit completes")
    }

    pub async fn put(&self, key: &str, value: &str) {
        self.try_put(key, value, None).await;
    }

    /// Appends; returns the old value if the server reports it (the single-node server does).
    pub async fn append(&self, key: &str, value: &str) -> Option<String> {
        let r = self.try_append(key, value, None).await;
        r.expect("an operation without a time limit completes")
    }

    /// Deletes; returns whether the key existed.
    pub async fn delete(&self, key: &str) -> bool {
        let r = self.try_delete(key, None).await;
        r.expect("an operation without a time limit completes")
    }

    /// Get with an optional time limit; `None` if it gave up (outcome unknown).
    pub async fn try_get(&self, key: &str, limit: Option<Duration>) -> Option<String> {
        let cmd = KvCommand::Get { key: key.into() };
        let r = self.run(KvInput::get(key), cmd, limit).await?;
        Some(text(
            r.value_or_empty()
                .unwrap_or_else(|| panic!("get({key}) answered {r:?}")),
        ))
    }

    /// Put with an optional time limit; `None` if it gave up.
    pub async fn try_put(&self, key: &str, value: &str, limit: Option<Duration>) -> Option<()> {
        let cmd = KvCommand::Put {
            key: key.into(),
            value: value.as_bytes().to_vec().into(),
        };
        let r = self.run(KvInput::put(key, value), cmd, limit).await?;
        assert_eq!(r, KvReply::Done, "put({key}) answered {r:?}");
        Some(())
    }

    /// Append with an optional time limit: `None` if it gave up, else the old value if the
    /// server reports one.
    pub async fn try_append(
        &self,
        key: &str,
        value: &str,
        limit: Option<Duration>,
    ) -> Option<Option<String>> {
        let cmd = KvCommand::Append {
            key: key.into(),
            value: value.as_bytes().to_vec().into(),
        };
        let r = self.run(KvInput::append(key, value), cmd, limit).await?;
        Some(match r {
            KvReply::Value(v) => Some(text(&v.unwrap_or_default())),
            KvReply::Len(_) => None,
            other => panic!("append({key}) answered {other:?}"),
        })
    }

    /// Runs a Redis-model operation (expiry, conditional SET, a transaction, a version read)
    /// with an optional time limit, recording it; its reply as the model compares it, `None`
    /// if it gave up (outcome unknown). Once one is recorded, the whole history is checked
    /// by [`flotilla_check::RedisModel`].
    pub async fn try_redis(&self, op: RedisOp, limit: Option<Duration>) -> Option<RedisReply> {
        let call = self.t.stamp();
        let call_ms = Recorder::ms(self.t.svc.now());
        let cmd = command_of(&op);
        let reply = match limit {
            None => Some(self.t.svc.call(self.id, cmd).await),
            Some(d) => self.t.svc.call_timeout(self.id, cmd, d).await,
        };
        let (output, ret) = match &reply {
            None => (RedisOutput::unknown(), None),
            Some(r) => {
                let output = RedisOutput {
                    ret_ms: Recorder::ms(self.t.svc.now()),
                    reply: reply_of(&op, r),
                };
                (output, Some(self.t.stamp()))
            }
        };
        let known = ret.map(|_| output.reply.clone());
        self.t.rec.record_redis(Operation {
            client: self.id,
            input: RedisInput { call_ms, op },
            call,
            output,
            ret,
        });
        known
    }

    /// Delete with an optional time limit.
    pub async fn try_delete(&self, key: &str, limit: Option<Duration>) -> Option<bool> {
        let cmd = KvCommand::Delete { key: key.into() };
        let r = self.run(KvInput::delete(key), cmd, limit).await?;
        match r {
            KvReply::Deleted(existed) => Some(existed),
            other => panic!("delete({key}) answered {other:?}"),
        }
    }
}

/// What the checker should know of a reply.
fn output_of(input: &KvInput, reply: &KvReply) -> KvOutput {
    match reply {
        // A Get's value, or the old value a kvsrv Append returned: both are checked.
        KvReply::Value(v) => KvOutput::value(text(v.as_deref().unwrap_or_default())),
        KvReply::Done | KvReply::Len(_) | KvReply::Deleted(_) | KvReply::Int(_) => KvOutput::Done,
        KvReply::Error(e) => panic!("{:?}({}) was refused: {e}", input.op, input.key),
        KvReply::Redis(_) | KvReply::Versions(_) => {
            panic!(
                "{:?}({}): a reply of another kind of command",
                input.op, input.key
            )
        }
    }
}
