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

use crate::BenchError;

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
pub fn install_signal_handler() -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "the signal thread's runtime",
            source,
        })?;
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
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, BenchError> {
        let file = std::fs::File::create(log).map_err(|e| BenchError::io("create", log, e))?;
        let err = file
            .try_clone()
            .map_err(|e| BenchError::io("open", log, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| BenchError::Start {
                name: name.into(),
                program: cmd.get_program().to_string_lossy().into_owned(),
                source,
            })?;
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
    pub fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Exited {
                name: self.name.clone(),
                status,
                log: self.log.clone(),
                tail: log_tail(&self.log, 15),
            }),
            Err(source) => Err(BenchError::Check {
                name: self.name.clone(),
                source,
            }),
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
pub fn ensure_port_free(port: u16) -> Result<(), BenchError> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|source| BenchError::PortTaken { port, source })
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
pub fn wait_resp_ready(svc: &mut Service, port: u16, timeout: Duration) -> Result<(), BenchError> {
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
    Err(BenchError::NotReady {
        what: format!("{} on port {port}", svc.name),
        within: timeout,
        last,
        log: Some(svc.log.clone()),
    })
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
        assert!(e.to_string().contains("broken config"), "{e}");
        match e {
            BenchError::Exited {
                name,
                status,
                log,
                tail,
            } => {
                assert_eq!(name, "sh");
                assert_eq!(status.code(), Some(3));
                assert_eq!(log, dir.path().join("sh.log"));
                assert_eq!(tail, "broken config");
            }
            other => panic!("not Exited: {other:?}"),
        }
    }

    /// A program that does not exist: the error names it and keeps the OS error.
    #[test]
    fn a_missing_binary_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-flotilla");
        let mut cmd = Command::new(&missing);
        let e = Service::start("flotilla up", &mut cmd, &dir.path().join("up.log"))
            .err()
            .expect("a missing binary cannot start");
        match &e {
            BenchError::Start {
                name,
                program,
                source,
            } => {
                assert_eq!(name, "flotilla up");
                assert_eq!(program, &missing.display().to_string());
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("not Start: {other:?}"),
        }
        assert!(
            e.to_string().starts_with("cannot start flotilla up ("),
            "{e}"
        );
    }

    /// A log that cannot be created (its directory is missing) is an I/O error on that path.
    #[test]
    fn an_unwritable_log_is_an_io_error_on_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("missing-dir").join("x.log");
        let e = Service::start("sleep", &mut Command::new("sleep"), &log)
            .err()
            .expect("no log, no start");
        assert!(
            matches!(&e, BenchError::Io { action: "create", path, .. } if *path == log),
            "{e:?}"
        );
    }

    /// `--port` naming a port already in use is refused before anything starts.
    #[test]
    fn a_taken_port_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = ensure_port_free(port).unwrap_err();
        assert!(
            matches!(&e, BenchError::PortTaken { port: p, .. } if *p == port),
            "{e:?}"
        );
        drop(l);
    }

    /// A server that exits before it answers: waiting stops with Exited, not a timeout.
    #[test]
    fn waiting_on_a_server_that_exits_reports_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo no config; exit 2"]);
        let mut svc = Service::start("fake-server", &mut cmd, &dir.path().join("f.log")).unwrap();
        let e = wait_resp_ready(&mut svc, port, Duration::from_secs(30)).unwrap_err();
        assert!(
            matches!(&e, BenchError::Exited { name, .. } if name == "fake-server"),
            "{e:?}"
        );
    }
}
