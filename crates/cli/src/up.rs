//! `flotilla up`: a local replicated KV group of N server processes and a Redis-protocol
//! router, on loopback, with everything under one data directory. Running it again restarts
//! the same cluster from the data it left. Ctrl-C stops every process cleanly.
//!
//! The directory holds `cluster.json` (addresses), `secret` (the cluster secret, mode 0600),
//! `node-<i>/` (each replica's write-ahead log and snapshots) and one log file per process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::cluster::{runtime, shutdown_signal};

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
    /// Number of replicas.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Address every process binds to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Password clients must give with AUTH (default: none).
    #[arg(long)]
    password: Option<String>,
}

/// Where a cluster's processes listen, as `cluster.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    pub servers: Vec<String>,
    pub router: String,
}

impl Layout {
    fn path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    pub fn secret_file(&self, dir: &Path) -> PathBuf {
        dir.join("secret")
    }

    pub fn read(dir: &Path) -> Result<Self, String> {
        let p = Self::path(dir);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "cannot read {} ({e}); is there a cluster started by `flotilla up` in {}?",
                p.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{} is malformed: {e}", p.display()))
    }

    fn write(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("a layout serialises");
        std::fs::write(Self::path(dir), text).map_err(|e| format!("cannot write cluster.json: {e}"))
    }
}

/// The layout to run: the directory's own if it has one, else a new one from the flags.
fn layout(args: &UpArgs) -> Result<(Layout, bool), String> {
    if Layout::path(&args.dir).exists() {
        return Ok((Layout::read(&args.dir)?, true));
    }
    if args.replicas == 0 || args.replicas > 9 {
        return Err("--replicas must be between 1 and 9".into());
    }
    let servers = (0..args.replicas)
        .map(|i| format!("{}:{}", args.host, args.base_port as usize + i))
        .collect();
    Ok((
        Layout {
            servers,
            router: format!("{}:{}", args.host, args.port),
        },
        false,
    ))
}

fn ensure_secret(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, flotilla_net::Secret::generate() + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))
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
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
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
        println!(
            "flotilla: stopped; the data stays in {}",
            args.dir.display()
        );
        Ok(())
    })
}

fn processes(args: &UpArgs, layout: &Layout, secret: &Path) -> Vec<Proc> {
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
            ],
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
    println!(
        "flotilla: {} {} replicas ({}) and a Redis-protocol router on {}",
        if existing { "restarted" } else { "started" },
        layout.servers.len(),
        layout.servers.join(", "),
        layout.router
    );
    println!("  connect:  redis-cli -p {port}");
    println!("  status:   flotilla ctl status --dir {dir}");
    println!("  logs:     {dir}/node-*.log, {dir}/router.log");
    println!(
        "  metrics:  http://{}/metrics (router), replicas' in `ctl status`",
        metrics_addr(&layout.router, 1)
    );
    println!("  Ctrl-C stops everything; `flotilla up --dir {dir}` restarts it with its data.");
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
                eprintln!(
                    "flotilla: {} exited ({status}); restarting it in 1 s (see {})",
                    p.name,
                    p.log.display()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = p.spawn() {
                    eprintln!("flotilla: {e}");
                }
            }
        }
    }
}
