//! The sharded cluster's shard-move measurement: about 1 MB written into one shard through the
//! router (keys sharing a hash tag, so `key_shard` says which shard), then `flotilla ctl move
//! SHARD GID --wait` timed, back and forth between two groups, each move followed by a read
//! through the router that must return the value written.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::ShardMove;
use crate::BenchError;

/// The hash tag every key of the moved shard shares.
pub const MOVE_TAG: &str = "bench-move";
/// Keys written into the shard, and the size of each value: 100 × 10 KiB ≈ 1 MB.
pub const MOVE_KEYS: u32 = 100;
pub const MOVE_VALUE_SIZE: usize = 10 * 1024;
/// How many times the shard is moved (back and forth).
pub const MOVES: usize = 3;
/// How long one `ctl move --wait` may take.
const MOVE_TIMEOUT: &str = "60s";

/// The key of the `i`th value: `{bench-move}:i`.
pub fn move_key(i: u32) -> String {
    format!("{{{MOVE_TAG}}}:{i}")
}

/// The `i`th value: `MOVE_VALUE_SIZE` letters, different for every key.
pub fn move_value(i: u32) -> Vec<u8> {
    (0..MOVE_VALUE_SIZE)
        .map(|j| b'a' + ((i as usize * 7 + j) % 26) as u8)
        .collect()
}

/// The shard all the move keys are in.
pub fn move_shard(nshards: usize) -> usize {
    flotilla_shardkv::key_shard(move_key(0).as_bytes(), nshards)
}

/// A minimal Redis-protocol connection: SET and GET of binary values.
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// `127.0.0.1:port`, for errors.
    addr: String,
}

impl Resp {
    pub fn connect(port: u16) -> Result<Self, BenchError> {
        let addr = format!("127.0.0.1:{port}");
        let failed = |action, source| BenchError::Connection {
            action,
            addr: addr.clone(),
            source,
        };
        let s =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| failed("cannot connect to", e))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| failed("cannot set a read timeout on", e))?;
        let writer = s
            .try_clone()
            .map_err(|e| failed("cannot share the connection to", e))?;
        Ok(Self {
            reader: BufReader::new(s),
            writer,
            addr,
        })
    }

    fn failed(&self, action: &'static str, source: std::io::Error) -> BenchError {
        BenchError::Connection {
            action,
            addr: self.addr.clone(),
            source,
        }
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<(), BenchError> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&req)
            .map_err(|e| self.failed("cannot send to the router at", e))
    }

    /// One reply: a simple string or a bulk string (`None`: nil); an error reply is an error.
    fn reply(&mut self) -> Result<Option<Vec<u8>>, BenchError> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| self.failed("no answer from the router at", e))?;
        let line = line.trim_end();
        let bad = |problem: &str| BenchError::parse("the router's reply", problem, line);
        match line.as_bytes().first() {
            Some(b'+') => Ok(Some(line.as_bytes()[1..].to_vec())),
            Some(b'-') => Err(BenchError::ErrorReply { reply: line.into() }),
            Some(b'$') => {
                let n: i64 = line[1..].parse().map_err(|_| bad("bad bulk length"))?;
                if n < 0 {
                    return Ok(None);
                }
                let mut buf = vec![0; n as usize + 2];
                self.reader
                    .read_exact(&mut buf)
                    .map_err(|e| self.failed("short bulk reply from", e))?;
                buf.truncate(n as usize);
                Ok(Some(buf))
            }
            _ => Err(bad("unexpected reply")),
        }
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), BenchError> {
        self.send(&[b"SET", key.as_bytes(), value])?;
        match self.reply()? {
            Some(ok) if ok == b"OK" => Ok(()),
            other => Err(BenchError::UnexpectedReply {
                request: format!("SET {key}"),
                reply: format!("{other:?}"),
            }),
        }
    }

    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, BenchError> {
        self.send(&[b"GET", key.as_bytes()])?;
        self.reply()
    }
}

/// Writes the move keys through the router on `port`; returns the value bytes written.
pub fn fill_shard(port: u16) -> Result<u64, BenchError> {
    let mut c = Resp::connect(port)?;
    for i in 0..MOVE_KEYS {
        c.set(&move_key(i), &move_value(i))?;
    }
    Ok(u64::from(MOVE_KEYS) * MOVE_VALUE_SIZE as u64)
}

/// Reads key `i` back through the router and checks its value.
pub fn check_key(port: u16, i: u32) -> Result<(), BenchError> {
    let key = move_key(i);
    match Resp::connect(port)?.get(&key)? {
        Some(v) if v == move_value(i) => Ok(()),
        found => Err(BenchError::ValueLost {
            key,
            found: found.map(|v| v.len()),
        }),
    }
}

/// The latest configuration as `ctl query --json` prints it: (shard owners, group ids).
pub fn query(bin: &Path, data: &Path) -> Result<(Vec<u64>, Vec<u64>), BenchError> {
    const WHAT: &str = "ctl query --json";
    let out = Command::new(bin)
        .args(["ctl", "query", "--json", "--dir"])
        .arg(data)
        .output()
        .map_err(|source| BenchError::Run {
            command: format!("{} ctl query", bin.display()),
            hint: "",
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::Failed {
            command: "ctl query".into(),
            status: Some(out.status),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|source| BenchError::Json {
            what: format!("what {WHAT} printed"),
            source,
        })?;
    let shards = (v["shards"].as_array())
        .ok_or_else(|| BenchError::parse(WHAT, "no shards", ""))?
        .iter()
        .map(|g| {
            g.as_u64().ok_or_else(|| {
                BenchError::parse(WHAT, "a shard's owner is not a number", g.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let groups = (v["groups"].as_object())
        .ok_or_else(|| BenchError::parse(WHAT, "no groups", ""))?
        .keys()
        .map(|g| {
            g.parse()
                .map_err(|_| BenchError::parse(WHAT, "a group id is not a number", g.as_str()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((shards, groups))
}

/// Moves `shard` to another group `MOVES` times (back and forth), timing each `ctl move
/// --wait` and reading a key back through the router on `port` after each.
pub fn time_moves(
    bin: &Path,
    data: &Path,
    port: u16,
    shard: usize,
) -> Result<Vec<ShardMove>, BenchError> {
    let mut moves = Vec::new();
    for m in 0..MOVES {
        let (owners, groups) = query(bin, data)?;
        let from = *owners.get(shard).ok_or(BenchError::NoShard { shard })?;
        let to = *groups
            .iter()
            .find(|&&g| g != from)
            .ok_or(BenchError::SingleGroup)?;
        let started = Instant::now();
        let out = Command::new(bin)
            .args(["ctl", "move", &shard.to_string(), &to.to_string()])
            .args(["--wait", "--timeout", MOVE_TIMEOUT, "--dir"])
            .arg(data)
            .output()
            .map_err(|source| BenchError::Run {
                command: format!("{} ctl move", bin.display()),
                hint: "",
                source,
            })?;
        let seconds = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("settled") {
            return Err(BenchError::Failed {
                command: format!("ctl move {shard} {to}"),
                // Exit status 0 without "settled": the output says what happened.
                status: (!out.status.success()).then_some(out.status),
                output: format!(
                    "{}{}",
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        check_key(port, (m as u32 * 37) % MOVE_KEYS)?;
        eprintln!("  shard {shard}: group {from} → group {to} in {seconds:.3} s; value read back");
        moves.push(ShardMove { from, to, seconds });
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_keys_share_one_shard_and_values_differ() {
        for nshards in [1, 10, 16] {
            let s = move_shard(nshards);
            assert!((0..MOVE_KEYS)
                .all(|i| { flotilla_shardkv::key_shard(move_key(i).as_bytes(), nshards) == s }));
        }
        assert_eq!(move_key(3), "{bench-move}:3");
        assert_eq!(move_value(1).len(), MOVE_VALUE_SIZE);
        assert_ne!(move_value(1), move_value(2));
        assert_eq!(u64::from(MOVE_KEYS) * MOVE_VALUE_SIZE as u64, 1_024_000);
    }

    /// A one-connection router on loopback that answers every request with `reply`.
    fn fake_router(reply: &'static [u8]) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            // Answer once the request has arrived (any bytes of it), then wait for the close.
            if s.read(&mut buf).unwrap_or(0) > 0 {
                let _ = s.write_all(reply);
            }
            let _ = s.read(&mut buf);
        });
        port
    }

    #[test]
    fn an_error_reply_is_kept_as_the_router_sent_it() {
        let port = fake_router(b"-ERR the shard is moving\r\n");
        let e = Resp::connect(port).unwrap().set("k", b"v").unwrap_err();
        assert!(
            matches!(&e, BenchError::ErrorReply { reply } if reply == "-ERR the shard is moving"),
            "{e:?}"
        );
    }

    #[test]
    fn a_bad_bulk_length_is_a_parse_error_with_the_line() {
        let port = fake_router(b"$12x\r\n");
        let e = Resp::connect(port).unwrap().get("k").unwrap_err();
        match &e {
            BenchError::Parse {
                what,
                problem,
                text,
            } => {
                assert_eq!(what, "the router's reply");
                assert_eq!(problem, "bad bulk length");
                assert_eq!(text, "$12x");
            }
            other => panic!("not a parse error: {other:?}"),
        }
    }

    #[test]
    fn a_set_answered_with_other_than_ok_is_an_unexpected_reply() {
        let port = fake_router(b"+QUEUED\r\n");
        let e = Resp::connect(port).unwrap().set("k", b"v").unwrap_err();
        assert!(
            matches!(&e, BenchError::UnexpectedReply { request, .. } if request == "SET k"),
            "{e:?}"
        );
    }

    #[test]
    fn a_wrong_value_after_a_move_is_value_lost() {
        let port = fake_router(b"$3\r\nabc\r\n");
        let e = check_key(port, 0).unwrap_err();
        assert!(
            matches!(&e, BenchError::ValueLost { key, found: Some(3) } if *key == move_key(0)),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "GET {bench-move}:0 returned 3 bytes that are not the value written after the move"
        );
    }

    #[test]
    fn nothing_listening_is_a_connection_error_naming_the_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = Resp::connect(port).err().expect("nothing listens");
        match &e {
            BenchError::Connection { addr, source, .. } => {
                assert_eq!(addr, &format!("127.0.0.1:{port}"));
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("not a connection error: {other:?}"),
        }
    }

    #[test]
    fn a_missing_flotilla_binary_cannot_run_ctl_query() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("no-flotilla");
        let e = query(&bin, dir.path()).unwrap_err();
        assert!(
            matches!(&e, BenchError::Run { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
    }

    /// A `flotilla` whose `ctl query --json` prints something else than JSON, or fails.
    #[test]
    fn ctl_query_printing_no_json_is_a_json_error() {
        let bin = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/old-flotilla"
        ));
        let dir = tempfile::tempdir().unwrap();
        let e = query(bin, dir.path()).unwrap_err();
        assert!(matches!(&e, BenchError::Json { .. }), "{e:?}");
        // And when it fails: its stderr and status are kept.
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let e = query(bin, dir.path()).unwrap_err();
        match &e {
            BenchError::Failed {
                status: Some(s),
                output,
                ..
            } => {
                assert_eq!(s.code(), Some(4));
                assert_eq!(output, "no controller");
            }
            other => panic!("not Failed: {other:?}"),
        }
    }
}
