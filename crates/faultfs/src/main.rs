//! `faultfs mount BACKING MOUNTPOINT --control SOCKET`: serve a faultfs until told to stop;
//! `faultfs ctl --control SOCKET crash|torn SEED|unmount`: the power loss, from a shell.
//!
//! The control socket speaks one line per request (`crash`, `torn <seed>`, `unmount`) and
//! answers one line (`ok …` or `error …`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faultfs::{CrashMode, Mount, Options};

#[derive(Parser)]
#[command(about = "A FUSE file system that forgets unsynced writes at a simulated power loss")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount BACKING on MOUNTPOINT and serve it (in the foreground) until `ctl unmount`.
    Mount {
        backing: PathBuf,
        mountpoint: PathBuf,
        /// The control socket to create.
        #[arg(long)]
        control: PathBuf,
        /// A crash also removes names created since their directory's last fsync.
        #[arg(long)]
        strict_names: bool,
    },
    /// Send a request to a running faultfs.
    Ctl {
        #[arg(long)]
        control: PathBuf,
        #[command(subcommand)]
        request: Request,
    },
}

#[derive(Subcommand)]
enum Request {
    /// Power loss: every unsynced write lost.
    Crash,
    /// Power loss keeping a random (seeded) subset of the unsynced pages.
    Torn { seed: u64 },
    /// Unmount and exit.
    Unmount,
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Mount {
            backing,
            mountpoint,
            control,
            strict_names,
        } => serve(backing, mountpoint, control, strict_names),
        Cmd::Ctl { control, request } => ctl(control, request),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why `mount` or `ctl` failed; `main` prints it as the one line of the failure.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The control socket could not be created (a missing directory, a path too long).
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] faultfs::Error),
    /// No faultfs serves this control socket.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The request or its answer was cut off (the server stopped half-way).
    #[error("control socket {}: {source}", path.display())]
    Exchange {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server answered with an error line (printed as received).
    #[error("{answer}")]
    Refused { answer: String },
}

fn serve(
    backing: PathBuf,
    mountpoint: PathBuf,
    control: PathBuf,
    strict_names: bool,
) -> Result<(), CliError> {
    let _ = std::fs::remove_file(&control);
    let listener = UnixListener::bind(&control).map_err(|source| CliError::Listen {
        path: control.clone(),
        source,
    })?;
    let mount = Mount::new(&backing, &mountpoint, Options { strict_names })?;
    eprintln!(
        "faultfs: {} on {}, control {}",
        backing.display(),
        mountpoint.display(),
        control.display()
    );
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        // A client that sends garbage or hangs up gets an error line, never stops the server.
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (answer, stop) = match words.as_slice() {
            ["crash"] => (crash(&mount, CrashMode::Drop), false),
            ["torn", seed] => match seed.parse() {
                Ok(seed) => (crash(&mount, CrashMode::Torn { seed }), false),
                Err(_) => (format!("error bad seed {seed:?}"), false),
            },
            ["unmount"] => ("ok unmounting".to_owned(), true),
            _ => (format!("error unknown request {:?}", line.trim()), false),
        };
        let _ = writeln!(&conn, "{}", answer.replace('\n', "; "));
        if stop {
            break;
        }
    }
    let _ = std::fs::remove_file(&control);
    drop(mount);
    Ok(())
}

fn crash(mount: &Mount, mode: CrashMode) -> String {
    match mount.crash(mode) {
        Ok(report) => format!("ok {report}"),
        Err(e) => format!("error {e}"),
    }
}

fn ctl(control: PathBuf, request: Request) -> Result<(), CliError> {
    let line = match request {
        Request::Crash => "crash".to_owned(),
        Request::Torn { seed } => format!("torn {seed}"),
        Request::Unmount => "unmount".to_owned(),
    };
    let mut conn = UnixStream::connect(&control).map_err(|source| CliError::Connect {
        path: control.clone(),
        source,
    })?;
    let exchange = |source| CliError::Exchange {
        path: control.clone(),
        source,
    };
    writeln!(conn, "{line}").map_err(exchange)?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(exchange)?;
    println!("{}", answer.trim());
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(CliError::Refused {
            answer: answer.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ctl` with no faultfs behind the socket names the socket.
    #[test]
    fn ctl_without_a_server_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let err = ctl(control.clone(), Request::Crash).unwrap_err();
        assert!(
            matches!(&err, CliError::Connect { path, .. } if *path == control),
            "{err:?}"
        );
    }

    /// An `error …` answer fails the command, carrying the server's words.
    #[test]
    fn an_error_answer_fails_ctl() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let listener = UnixListener::bind(&control).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            writeln!(&conn, "error bad seed \"x\"").unwrap();
            line
        });
        let err = ctl(control, Request::Torn { seed: 7 }).unwrap_err();
        assert_eq!(server.join().unwrap(), "torn 7\n");
        assert!(
            matches!(&err, CliError::Refused { answer } if answer == "error bad seed \"x\""),
            "{err:?}"
        );
    }

    /// A control socket that cannot be created fails the mount before anything is mounted.
    #[test]
    fn serve_reports_an_unusable_control_path() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("no-such-dir").join("control");
        let err = serve(dir.path().into(), dir.path().into(), control.clone(), false).unwrap_err();
        assert!(
            matches!(&err, CliError::Listen { path, .. } if *path == control),
            "{err:?}"
        );
    }
}
