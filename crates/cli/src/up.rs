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

fn processes(args: &UpArgs, layout: &Layout, secret: &Path) -> Vec<Proc> {
    if let Some(sharded) = &layout.sharded {
        return sharded_processes(args, layout, sharded, secret);
    }
    let secret = secret.display().to_string();
    let peers = layout.servers.join(",");
    let mut procs: Vec<Proc> = (0..layout.servers.len())
        .map(|i| Proc {
            name: format!("replica {i}"),
            args: vec![
                "server".into(),
                "--id".into(),
                i.to_string(),
                "--peers".into(),
                peers.clone(),
                "--data-dir".into(),
                args.dir.join(format!("node-{i}")).display().to_string(),
                "--secret-file".into(),
                secret.clone(),
                "--metrics".into(),
                metrics_addr(&layout.servers[i], 100),
            ]
            .into_iter()
            .chain(args.session_flags())
            .collect(),
            log: args.dir.join(format!("node-{i}.log")),
            child: None,
        })
        .collect();
    let mut router = vec![
        "router".into(),
        "--servers".into(),
        peers,
        "--listen".into(),
        layout.router.clone(),
        "--secret-file".into(),
        secret,
        "--metrics".into(),
        metrics_addr(&layout.router, 1),
    ];
    if let Some(p) = &args.password {
        router.extend(["--password".into(), p.clone()]);
    }
    procs.push(Proc {
        name: "router".into(),
        args: router,
        log: args.dir.join("router.log"),
        child: None,
    });
    procs
}

/// The controller's replicas, each group's, then the router.
fn sharded_processes(
    args: &UpArgs,
    layout: &Layout,
    sharded: &ShardedLayout,
    secret: &Path,
) -> Vec<Proc> {
    let secret = secret.display().to_string();
    let ctrlers = sharded.ctrlers.join(",");
    let shards = sharded.shards.to_string();
    let server = |name: String, role: Vec<String>, peers: &[String], i: usize| -> Proc {
        let mut a: Vec<String> = vec!["server".into()];
        a.extend(role);
        a.extend([
            "--id".into(),
            i.to_string(),
            "--peers".into(),
            peers.join(","),
            "--shards".into(),
            shards.clone(),
            "--data-dir".into(),
            args.dir.join(&name).display().to_string(),
            "--secret-file".into(),
            secret.clone(),
            "--metrics".into(),
            metrics_addr(&peers[i], 100),
        ]);
        a.extend(args.session_flags());
        Proc {
            log: args.dir.join(format!("{name}.log")),
            name,
            args: a,
            child: None,
        }
    };
    let mut procs = Vec::new();
    for i in 0..sharded.ctrlers.len() {
        let role = vec!["--role".into(), "ctrler".into()];
        procs.push(server(format!("ctrler-{i}"), role, &sharded.ctrlers, i));
    }
    for (g, peers) in &sharded.groups {
        for i in 0..peers.len() {
            let role = vec![
                "--role".into(),
                "shard".into(),
                "--gid".into(),
                g.to_string(),
                "--ctrlers".into(),
                ctrlers.clone(),
            ];
            procs.push(server(format!("group-{g}-{i}"), role, peers, i));
        }
    }
    let mut router = vec![
        "router".into(),
        "--ctrlers".into(),
        ctrlers,
        "--shards".into(),
        shards,
        "--listen".into(),
        layout.router.clone(),
        "--secret-file".into(),
        secret,
        "--metrics".into(),
        metrics_addr(&layout.router, 1),
    ];
    if let Some(p) = &args.password {
        router.extend(["--password".into(), p.clone()]);
    }
    procs.push(Proc {
        name: "router".into(),
        args: router,
        log: args.dir.join("router.log"),
        child: None,
    });
    procs
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
