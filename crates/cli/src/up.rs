//! `flotilla up`: a local sharded KV cluster (a shard controller of N replicas and `--groups`
//! shard groups of N, two by default, joined) or, with `--single`, one replicated KV group of N, and a
//! Redis-protocol router, all as processes on loopback, with everything under one data
//! directory. Running it again restarts the same cluster from the data it left (the
//! directory's `cluster.json` decides which kind). Ctrl-C stops every process cleanly.
//!
//! The directory holds `cluster.json` (addresses), `secret` (the cluster secret, mode 0600),
//! one directory per replica with its write-ahead log and snapshots (`node-<i>/` for a single
//! group; `ctrler-<i>/`, `group-<g>-<i>/` when sharded) and one log file per process.

/// `println!` that never panics: `up` runs for days, and its output may go to a closed pipe
/// or a log file on a full disk; a supervisor that panicked there would leave its cluster
/// unsupervised.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that never panics (see `say!`).
macro_rules! say_err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use flotilla_shardctrler::Gid;
use tokio::process::{Child, Command};

use crate::auth::SecretArgs;
use crate::layout::{Layout, ShardedLayout};
use crate::process::{runtime, shutdown_signal};
use crate::words;

#[derive(Args)]
pub struct UpArgs {
    /// Data directory (created if missing; reused, with its data, if it exists).
    #[arg(long, default_value = "flotilla-data")]
    dir: PathBuf,
    /// Port of the Redis-protocol router.
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// Replicas listen on this port and the ones after it.
    #[arg(long, default_value_t = 7101)]
    base_port: u16,
    /// Number of replicas (of the controller and of each shard group, when sharded).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// One replicated KV group (the replicas on --base-port and after) instead of a sharded
    /// cluster. Sharded, the controller listens on --base-port and after, group 1 on the next
    /// --replicas ports, group 2 on the ones after, and so on.
    #[arg(long, conflicts_with = "groups")]
    single: bool,
    /// Shard groups of a new sharded cluster (1 to 9), joined on first start. An existing
    /// data directory keeps the groups it has.
    #[arg(long, default_value_t = 2)]
    groups: usize,
    /// Shards of a new sharded cluster.
    #[arg(long, default_value_t = flotilla_shardctrler::DEFAULT_SHARDS)]
    shards: usize,
    /// Address every process binds to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Password clients must give with AUTH (default: none).
    #[arg(long)]
    password: Option<String>,
    /// Passed to every server: forget a client's exactly-once session after it wrote nothing
    /// for this long (default 1h; `flotilla server --session-idle`).
    #[arg(long, value_parser = crate::units::parse_duration)]
    session_idle: Option<Duration>,
    /// Passed to every server: keep at most this many sessions, per shard on a shard group
    /// (default 100000; `flotilla server --max-sessions`).
    #[arg(long)]
    max_sessions: Option<u64>,
}

impl UpArgs {
    /// The session flags to hand every server, those given.
    fn session_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(idle) = self.session_idle {
            flags.extend(["--session-idle".into(), format!("{}ms", idle.as_millis())]);
        }
        if let Some(max) = self.max_sessions {
            flags.extend(["--max-sessions".into(), max.to_string()]);
        }
        flags
    }
}

/// The layout to run: the directory's own if it has one, else a new one from the flags.
fn layout(args: &UpArgs) -> Result<(Layout, bool), String> {
    if Layout::exists(&args.dir) {
        return Ok((Layout::read(&args.dir)?, true));
    }
    if args.replicas == 0 || args.replicas > 9 {
        return Err("--replicas must be between 1 and 9".into());
    }
    let addrs = |from: usize| -> Vec<String> {
        (0..args.replicas)
            .map(|i| format!("{}:{}", args.host, args.base_port as usize + from + i))
            .collect()
    };
    let router = format!("{}:{}", args.host, args.port);
    if args.single {
        let servers = addrs(0);
        return Ok((
            Layout {
                servers,
                router,
                sharded: None,
            },
            false,
        ));
    }
    if args.shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    if args.groups == 0 || args.groups > 9 {
        return Err("--groups must be between 1 and 9".into());
    }
    let last_port = args.base_port as usize + (args.groups + 1) * args.replicas - 1;
    if last_port > usize::from(u16::MAX) {
        return Err(format!(
            "--base-port {} leaves no room for {} groups of {} replicas",
            args.base_port, args.groups, args.replicas
        ));
    }
    let ctrlers = addrs(0);
    let groups = (1..=args.groups as Gid).map(|g| (g, addrs(g as usize * args.replicas)));
    let sharded = ShardedLayout {
        ctrlers: ctrlers.clone(),
        groups: groups.collect(),
        shards: args.shards,
    };
    Ok((
        Layout {
            servers: ctrlers,
            router,
            sharded: Some(sharded),
        },
        false,
    ))
}

fn ensure_secret(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    // Readable by its owner only from the first byte, and durable before any process that
    // reads it starts.
    let secret = flotilla_transport::Secret::generate() + "\n";
    flotilla_storage::durable::write_file(path, secret.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write the cluster secret: {e}"))
}

/// One supervised process: what to run and where its output goes.
struct Proc {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // Own process group: a terminal's Ctrl-C reaches `up` only, which stops the children
        // in order (router first, so clients see a clean close).
        cmd.process_group(0);
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.name))?,
        );
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

pub fn up(args: UpArgs) -> Result<(), String> {
    flotilla_storage::durable::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create the cluster directory: {e}"))?;
    let (layout, existing) = layout(&args)?;
    let secret = layout.secret_file(&args.dir);
    ensure_secret(&secret)?;
    layout.write(&args.dir)?;
    let mut procs = processes(&args, &layout, &secret);
    runtime()?.block_on(async move {
        // Handlers first: a Ctrl-C while the processes start must still stop them cleanly.
        let stop = shutdown_signal();
        tokio::pin!(stop);
        for p in procs.iter_mut() {
            p.spawn()?;
        }
        tokio::select! {
            () = announce(&args, &layout, existing) => supervise(&mut procs, stop).await,
            () = &mut stop => {}
        }
        // Router first, then the replicas.
        for p in procs.iter_mut().rev() {
            p.stop().await;
        }
        say!(
            "flotilla: stopped; the data stays in {}",
            args.dir.display()
        );
        Ok(())
    })
}

/// What a process of the cluster is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// A replica of the single group.
    Replica,
    /// A replica of the shard controller.
    Ctrler,
    /// A replica of shard group `gid`.
    Shard { gid: Gid },
    /// The Redis-protocol router.
    Router,
}

/// One row of the table of processes `up` runs.
struct Entry {
    role: Role,
    /// How messages name it.
    name: String,
    /// Its data directory and log file (`<file>/`, `<file>.log`) under the cluster's.
    file: String,
    /// A replica's group (its peers' addresses) and its place in it.
    peers: Vec<String>,
    index: usize,
}

/// Every process of the cluster, in start order: the replicas (the controller's, then each
/// group's, when sharded), then the router. They are stopped in reverse: the router first,
/// so that clients see a clean close.
fn table(layout: &Layout) -> Vec<Entry> {
    let replicas = |role: Role, peers: &[String], file: &dyn Fn(usize) -> String| {
        (0..peers.len())
            .map(|i| Entry {
                role: role.clone(),
                name: match role {
                    Role::Replica => format!("replica {i}"),
                    _ => file(i),
                },
                file: file(i),
                peers: peers.to_vec(),
                index: i,
            })
            .collect::<Vec<_>>()
    };
    let mut rows = match &layout.sharded {
        None => replicas(Role::Replica, &layout.servers, &|i| format!("node-{i}")),
        Some(sharded) => {
            let mut rows = replicas(Role::Ctrler, &sharded.ctrlers, &|i| format!("ctrler-{i}"));
            for (&gid, peers) in &sharded.groups {
                rows.extend(replicas(Role::Shard { gid }, peers, &|i| {
                    format!("group-{gid}-{i}")
                }));
            }
            rows
        }
    };
    rows.push(Entry {
        role: Role::Router,
        name: "router".into(),
        file: "router".into(),
        peers: Vec::new(),
        index: 0,
    });
    rows
}

impl Entry {
    /// The `flotilla` subcommand and flags that run this process.
    fn command(&self, args: &UpArgs, layout: &Layout, secret: &str) -> Vec<String> {
        let sharded = layout.sharded.as_ref();
        let mut a: Vec<String> = match &self.role {
            Role::Router => return self.router_command(args, layout, secret),
            Role::Replica => vec!["server".into()],
            Role::Ctrler => vec!["server".into(), "--role".into(), "ctrler".into()],
            Role::Shard { gid } => vec![
                "server".into(),
                "--role".into(),
                "shard".into(),
                "--gid".into(),
                gid.to_string(),
                "--ctrlers".into(),
                sharded.map(|s| s.ctrlers.join(",")).unwrap_or_default(),
            ],
        };
        a.extend([
            "--id".into(),
            self.index.to_string(),
            "--peers".into(),
            self.peers.join(","),
        ]);
        if let Some(s) = sharded {
            a.extend(["--shards".into(), s.shards.to_string()]);
        }
        a.extend([
            "--data-dir".into(),
            args.dir.join(&self.file).display().to_string(),
            "--secret-file".into(),
            secret.into(),
            "--metrics".into(),
            metrics_addr(&self.peers[self.index], 100),
        ]);
        a.extend(args.session_flags());
        a
    }

    fn router_command(&self, args: &UpArgs, layout: &Layout, secret: &str) -> Vec<String> {
        let mut a: Vec<String> = vec!["router".into()];
        match &layout.sharded {
            None => a.extend(["--servers".into(), layout.servers.join(",")]),
            Some(s) => a.extend([
                "--ctrlers".into(),
                s.ctrlers.join(","),
                "--shards".into(),
                s.shards.to_string(),
            ]),
        }
        a.extend([
            "--listen".into(),
            layout.router.clone(),
            "--secret-file".into(),
            secret.into(),
            "--metrics".into(),
            metrics_addr(&layout.router, 1),
        ]);
        if let Some(p) = &args.password {
            a.extend(["--password".into(), p.clone()]);
        }
        a
    }
}

/// The supervised processes of [`table`].
fn processes(args: &UpArgs, layout: &Layout, secret: &Path) -> Vec<Proc> {
    let secret = secret.display().to_string();
    table(layout)
        .into_iter()
        .map(|e| Proc {
            args: e.command(args, layout, &secret),
            log: args.dir.join(format!("{}.log", e.file)),
            name: e.name,
            child: None,
        })
        .collect()
}

/// Hands a new sharded cluster's groups to the controller, once: a controller that has any
/// configuration beyond the first has been given groups already (by an earlier `up`, or by
/// an operator since, whose changes a restart must not undo).
async fn join_groups(dir: &Path, layout: &Layout, sharded: &ShardedLayout) -> Result<(), String> {
    let secret = SecretArgs {
        secret_file: Some(layout.secret_file(dir)),
    }
    .load()?;
    let clients =
        flotilla_client::ShardClient::connect(&sharded.ctrlers, sharded.shards, secret, None)
            .map_err(words::controller)?;
    let limit = Duration::from_secs(30);
    let latest = clients
        .query(None, limit)
        .await
        .map_err(words::controller)?;
    if latest.num > 0 {
        return Ok(());
    }
    let join = flotilla_shardctrler::CtrlCommand::Join(sharded.groups.clone());
    match clients.ctrl(join, limit).await.map_err(words::controller)? {
        flotilla_shardctrler::CtrlReply::Done { .. } => Ok(()),
        other => Err(format!(
            "the controller refused to join the groups: {other:?}"
        )),
    }
}

/// The metrics address of a process listening at `addr`: the same host, `offset` ports up.
fn metrics_addr(addr: &str, offset: u16) -> String {
    match addr.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) => format!("{host}:{}", p.wrapping_add(offset)),
            Err(_) => format!("{host}:0"),
        },
        None => format!("{addr}:0"),
    }
}

async fn announce(args: &UpArgs, layout: &Layout, existing: bool) {
    // Wait (briefly) until the router accepts connections, so "up" means up.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&layout.router).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = args.dir.display();
    let port = layout.router.rsplit(':').next().unwrap_or("6380");
    let how = if existing { "restarted" } else { "started" };
    if let Some(sharded) = &layout.sharded {
        if let Err(e) = join_groups(&args.dir, layout, sharded).await {
            say_err!("flotilla: cannot hand the groups to the controller: {e}");
        }
        say!(
            "flotilla: {how} a sharded cluster ({} shards): controller ({}), {}, and a \
             Redis-protocol router on {}",
            sharded.shards,
            sharded.ctrlers.join(", "),
            (sharded.groups.iter())
                .map(|(g, s)| format!("group {g} ({})", s.join(", ")))
                .collect::<Vec<_>>()
                .join(", "),
            layout.router
        );
        say!("  connect:  redis-cli -p {port}");
        say!("  shards:   flotilla ctl shards --dir {dir}");
        say!("  groups:   flotilla ctl join GID ADDR,ADDR,ADDR / ctl leave GID --dir {dir}");
        say!("  logs:     {dir}/ctrler-*.log, {dir}/group-*.log, {dir}/router.log");
    } else {
        say!(
            "flotilla: {how} {} replicas ({}) and a Redis-protocol router on {}",
            layout.servers.len(),
            layout.servers.join(", "),
            layout.router
        );
        say!("  connect:  redis-cli -p {port}");
        say!("  status:   flotilla ctl status --dir {dir}");
        say!("  logs:     {dir}/node-*.log, {dir}/router.log");
    }
    say!(
        "  metrics:  http://{}/metrics (router), replicas' in `ctl status`",
        metrics_addr(&layout.router, 1)
    );
    say!("  Ctrl-C stops everything; `flotilla up --dir {dir}` restarts it with its data.");
}

/// Restarts a process that exits on its own (after a second), until `stop` completes.
async fn supervise(
    procs: &mut [Proc],
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    loop {
        tokio::select! {
            () = stop.as_mut() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for p in procs.iter_mut() {
            let exited = match p.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                say_err!(
                    "flotilla: {} exited ({status}); restarting it in 1 s (see {})",
                    p.name,
                    p.log.display()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = p.spawn() {
                    say_err!("flotilla: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    fn args(extra: &[&str]) -> UpArgs {
        let dir = std::env::temp_dir().join("flotilla-up-layout-test-does-not-exist");
        let mut argv = vec!["up", "--dir", dir.to_str().unwrap()];
        argv.extend(extra);
        Cli::try_parse_from(argv).unwrap().up
    }

    #[test]
    fn groups_take_the_ports_after_the_controller() {
        let (l, existing) = layout(&args(&["--groups", "3", "--base-port", "7000"])).unwrap();
        assert!(!existing);
        let sharded = l.sharded.unwrap();
        assert_eq!(sharded.ctrlers[0], "127.0.0.1:7000");
        assert_eq!(sharded.groups.len(), 3);
        assert_eq!(sharded.groups[&1][0], "127.0.0.1:7003");
        assert_eq!(sharded.groups[&3][2], "127.0.0.1:7011");
        let (l, _) = layout(&args(&[])).unwrap();
        assert_eq!(l.sharded.unwrap().groups.len(), 2);
    }

    /// Every process `up` starts, by name, with its command line and log file: the table
    /// both layouts are run from (the exact flags `server` and `router` are given).
    fn commands(extra: &[&str]) -> Vec<(String, String, String)> {
        let a = args(extra);
        let (l, _) = layout(&a).unwrap();
        let secret = a.dir.join("secret");
        processes(&a, &l, &secret)
            .into_iter()
            .map(|p| {
                let dir = a.dir.display().to_string();
                let strip = |s: &str| s.replace(&dir, "D");
                (
                    p.name,
                    strip(&p.args.join(" ")),
                    strip(&p.log.display().to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn a_single_group_runs_its_replicas_then_the_router() {
        let c = commands(&[
            "--single",
            "--replicas",
            "2",
            "--password",
            "pw",
            "--max-sessions",
            "5",
        ]);
        let s = |i: usize| {
            format!(
                "server --id {i} --peers 127.0.0.1:7101,127.0.0.1:7102 --data-dir D/node-{i} \
                 --secret-file D/secret --metrics 127.0.0.1:{} --max-sessions 5",
                7201 + i
            )
        };
        assert_eq!(
            c,
            vec![
                ("replica 0".into(), s(0), "D/node-0.log".into()),
                ("replica 1".into(), s(1), "D/node-1.log".into()),
                (
                    "router".into(),
                    "router --servers 127.0.0.1:7101,127.0.0.1:7102 --listen 127.0.0.1:6380 \
                     --secret-file D/secret --metrics 127.0.0.1:6381 --password pw"
                        .into(),
                    "D/router.log".into()
                ),
            ]
        );
    }

    #[test]
    fn a_sharded_cluster_runs_the_controller_the_groups_then_the_router() {
        let c = commands(&[
            "--replicas",
            "1",
            "--groups",
            "2",
            "--shards",
            "4",
            "--session-idle",
            "2s",
        ]);
        let names: Vec<&str> = c.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["ctrler-0", "group-1-0", "group-2-0", "router"]);
        assert_eq!(
            c[0].1,
            "server --role ctrler --id 0 --peers 127.0.0.1:7101 --shards 4 --data-dir D/ctrler-0 \
             --secret-file D/secret --metrics 127.0.0.1:7201 --session-idle 2000ms"
        );
        assert_eq!(
            c[2].1,
            "server --role shard --gid 2 --ctrlers 127.0.0.1:7101 --id 0 --peers 127.0.0.1:7103 \
             --shards 4 --data-dir D/group-2-0 --secret-file D/secret --metrics 127.0.0.1:7203 \
             --session-idle 2000ms"
        );
        assert_eq!(c[2].2, "D/group-2-0.log");
        assert_eq!(
            c[3].1,
            "router --ctrlers 127.0.0.1:7101 --shards 4 --listen 127.0.0.1:6380 \
             --secret-file D/secret --metrics 127.0.0.1:6381"
        );
    }

    #[test]
    fn group_counts_out_of_range_are_refused() {
        assert!(layout(&args(&["--groups", "0"])).is_err());
        assert!(layout(&args(&["--groups", "10"])).is_err());
        assert!(layout(&args(&["--groups", "9", "--base-port", "65530"])).is_err());
        assert!(Cli::try_parse_from(["up", "--single", "--groups", "2"]).is_err());
        let (l, _) = layout(&args(&["--single"])).unwrap();
        assert!(l.sharded.is_none());
    }
}
