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

fn serve(
    backing: PathBuf,
    mountpoint: PathBuf,
    control: PathBuf,
    strict_names: bool,
) -> Result<(), String> {
    let _ = std::fs::remove_file(&control);
    let listener = UnixListener::bind(&control)
        .map_err(|e| format!("cannot listen on {}: {e}", control.display()))?;
    let mount =
        Mount::new(&backing, &mountpoint, Options { strict_names }).map_err(|e| e.to_string())?;
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

fn ctl(control: PathBuf, request: Request) -> Result<(), String> {
    let line = match request {
        Request::Crash => "crash".to_owned(),
        Request::Torn { seed } => format!("torn {seed}"),
        Request::Unmount => "unmount".to_owned(),
    };
    let mut conn = UnixStream::connect(&control)
        .map_err(|e| format!("cannot connect to {}: {e}", control.display()))?;
    writeln!(conn, "{line}").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    println!("{}", answer.trim());
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(answer.trim().to_owned())
    }
}
