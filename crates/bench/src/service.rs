//! Server processes started for a benchmark: spawned with their output in a log file, waited
//! for, and always stopped again — when dropped, on error paths, and on Ctrl-C or SIGTERM (a
//! signal thread stops everything that is registered, then exits).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pids of every running service and of the processes found below it, for the signal thread.
static RUNNING: Mutex<Vec<(u32, Vec<u32>)>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<(u32, Vec<u32>)>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rfind(')')
                .map(|i| stat[i + 1..].trim_start().as_bytes()[0]),
            Some(b'Z')
        ),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

/// SIGTERM to the roots, up to `grace` for everything to go, then SIGKILL to what is left.
fn stop_pids(roots: &[u32], all: &[u32], grace: Duration) {
    for &p in roots {
        signal(p, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && all.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in all.iter().filter(|&&p| alive(p)) {
        signal(p, Signal::SIGKILL);
    }
}

/// Stops every registered service on SIGINT or SIGTERM, then exits with status 130.
pub fn install_signal_handler() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the signal thread's runtime: {e}"))?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("flotilla-bench: interrupted; stopping the servers it started");
        let running = registry().clone();
        let roots: Vec<u32> = running.iter().map(|(r, _)| *r).collect();
        let all: Vec<u32> = running
            .iter()
            .flat_map(|(r, t)| t.iter().chain([r]))
            .copied()
            .collect();
        stop_pids(&roots, &all, Duration::from_secs(10));
        std::process::exit(130);
    });
    Ok(())
}

/// A started server process.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    grace: Duration,
    stop_signal: Signal,
}

impl Service {
    /// Starts `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, String> {
        let file = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        registry().push((child.id(), Vec::new()));
        Ok(Self {
            name: name.into(),
            child,
            log: log.into(),
            grace: Duration::from_secs(20),
            stop_signal: Signal::SIGTERM,
        })
    }

    /// Stops it with `sig` rather than SIGTERM. (SIGINT is ignored by processes started in
    /// the background by a shell unless they handle it, hence SIGTERM by default.)
    pub fn with_stop_signal(mut self, sig: Signal) -> Self {
        self.stop_signal = sig;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Records the processes found below this one, so that they are killed too if need be.
    pub fn set_tree(&mut self, pids: &[u32]) {
        let me = self.pid();
        if let Some(entry) = registry().iter_mut().find(|(r, _)| *r == me) {
            entry.1 = pids.to_vec();
        }
    }

    /// An error if the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 15)
            )),
            Err(e) => Err(format!("cannot check on {}: {e}", self.name)),
        }
    }

    /// The stop signal, then SIGKILL to it and its recorded descendants after the grace
    /// period.
    pub fn stop(&mut self) {
        let me = self.pid();
        let tree = {
            let mut reg = registry();
            let tree = reg
                .iter()
                .find(|(r, _)| *r == me)
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            reg.retain(|(r, _)| *r != me);
            tree
        };
        if self.child.try_wait().ok().flatten().is_none() {
            signal(me, self.stop_signal);
            // Reap the child while waiting, or it would linger as a zombie and look alive.
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // The tree may outlive the root (its own process groups): make sure it is gone.
        stop_pids(&[], &tree, Duration::from_secs(5));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An error unless nothing listens on 127.0.0.1:`port`.
pub fn ensure_port_free(port: u16) -> Result<(), String> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| format!("port {port} on 127.0.0.1 is taken ({e}); stop what uses it"))
}

/// Sends one RESP command and reads one reply line.
fn resp_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
}

/// Waits until a Redis-protocol server on `port` answers PING with PONG and accepts a SET.
pub fn wait_resp_ready(svc: &mut Service, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        svc.check_running()?;
        let ping = resp_command(port, &["PING"]);
        if matches!(&ping, Ok(r) if r == "+PONG") {
            match resp_command(port, &["SET", "flotilla-bench:probe", "ok"]) {
                Ok(r) if r == "+OK" => return Ok(()),
                Ok(r) => last = format!("SET answered {r:?}"),
                Err(e) => last = format!("SET failed: {e}"),
            }
        } else {
            last = match ping {
                Ok(r) => format!("PING answered {r:?}"),
                Err(e) => format!("PING failed: {e}"),
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{} on port {port} was not ready within {} s ({last})",
        svc.name,
        timeout.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_process_is_stopped_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let svc = Service::start("sleep", &mut cmd, &dir.path().join("sleep.log")).unwrap();
        let pid = svc.pid();
        assert!(alive(pid));
        drop(svc);
        assert!(!alive(pid));
        assert!(registry().iter().all(|(r, _)| *r != pid));
    }

    #[test]
    fn an_exited_process_reports_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo broken config; exit 3"]);
        let mut svc = Service::start("sh", &mut cmd, &dir.path().join("sh.log")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let e = svc.check_running().unwrap_err();
        assert!(e.contains("broken config"), "{e}");
    }
}
