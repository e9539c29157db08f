//! Pipelining (issue 19), end to end on loopback sockets: requests a client writes at once are
//! answered in order, byte for byte as when sent one at a time, with their effects in order;
//! runs of them go to the group as one entry (`cmd/pipeline.rs`), which INFO's
//! `flotilla_pipelined_batches` and `flotilla_pipelined_commands` count. On a single group
//! (`common`) and on a sharded cluster (a one-replica controller and two one-replica groups
//! sharing 10 shards, as `sharded.rs`).

mod common;
mod sharded_harness;

use common::{Client, Settings, PATIENCE};
use flotilla_resp::{decode_value, Limits, Value};
use sharded_harness::key_in;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as a client encodes it.
fn request(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

impl Client {
    /// Writes every request in one write; the bytes of their `requests.len()` replies.
    async fn pipeline(&mut self, requests: &[Vec<&str>]) -> Vec<u8> {
        let out: Vec<u8> = requests.iter().flat_map(|r| request(r)).collect();
        self.stream.write_all(&out).await.unwrap();
        self.replies(requests.len()).await
    }

    /// Sends the requests one at a time, each after the previous one's reply; the bytes of
    /// the replies.
    async fn one_by_one(&mut self, requests: &[Vec<&str>]) -> Vec<u8> {
        let mut got = Vec::new();
        for r in requests {
            self.stream.write_all(&request(r)).await.unwrap();
            got.extend(self.replies(1).await);
        }
        got
    }

    /// The bytes of the next `n` replies.
    async fn replies(&mut self, n: usize) -> Vec<u8> {
        let mut end = 0;
        for _ in 0..n {
            loop {
                let decoded = decode_value(&self.buf[end..], &Limits::default()).unwrap();
                if let Some((_, used)) = decoded {
                    end += used;
                    break;
                }
                let read = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf));
                match read.await {
                    Ok(Ok(0)) => panic!("the router closed the connection instead of replying"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("no reply: {e}"),
                    Err(_) => panic!("no reply within {PATIENCE:?}"),
                }
            }
        }
        self.buf.drain(..end).collect()
    }

    async fn call(&mut self, args: &[&str]) -> Value {
        let raw = self.pipeline(&[args.to_vec()]).await;
        decode_value(&raw, &Limits::default()).unwrap().unwrap().0
    }

    /// INFO's `flotilla_pipelined_batches` and `flotilla_pipelined_commands` (0 when absent,
    /// as before pipelining).
    async fn pipelined(&mut self) -> (u64, u64) {
        let Value::Bulk(info) = self.call(&["INFO", "stats"]).await else {
            panic!("INFO answered no text");
        };
        let info = String::from_utf8(info).unwrap();
        let field = |name: &str| {
            (info.lines())
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map_or(0, |v| v.parse().unwrap())
        };
        (
            field("flotilla_pipelined_batches"),
            field("flotilla_pipelined_commands"),
        )
    }
}

/// The replies of `n` INCRs of a new key: 1 … n.
fn counted(n: usize) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!(":{i}\r\n").into_bytes())
        .collect()
}

/// A mixed script whose keys start with `p`: writes, reads, errors of every kind, a
/// transaction, a blocking pop that finds its element.
fn mixed(p: &str) -> Vec<Vec<String>> {
    let (a, l, b) = (format!("{p}a"), format!("{p}l"), format!("{p}b"));
    let script: Vec<Vec<&str>> = vec![
        vec!["SET", &a, "1"],
        vec!["INCR", &a],
        vec!["GET", &a],
        vec!["LPUSH", &l, "x", "y"],
        vec!["PING"],
        vec!["NOSUCHCOMMAND", &a],
        vec!["INCR", &l],
        vec!["GET", &a, "extra"],
        vec!["SET", &b, "hello"],
        vec!["MULTI"],
        vec!["INCR", &a],
        vec!["APPEND", &b, " world"],
        vec!["EXEC"],
        vec!["GET", &b],
        vec!["BLPOP", &l, "0"],
        vec!["INCRBY", &a, "10"],
        vec!["LRANGE", &l, "0", "-1"],
        vec!["ECHO", "done"],
        vec!["DEL", &a, &b],
        vec!["GET", &a],
    ];
    (script.into_iter())
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .collect()
}

fn borrowed(script: &[Vec<String>]) -> Vec<Vec<&str>> {
    (script.iter())
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

/// A mixed pipeline written at once gets every reply in order, byte for byte the replies of
/// the same requests sent one at a time (on keys of their own), and the ones checked here
/// say so in Redis's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_pipeline_is_answered_as_one_request_at_a_time() {
    let mut c = Client::connect(common::start(Settings::default()).await).await;
    let (alone, piped) = (mixed("alone:"), mixed("piped:"));
    let expected = c.one_by_one(&borrowed(&alone)).await;
    let before = c.pipelined().await;
    let got = c.pipeline(&borrowed(&piped)).await;
    // SET … LPUSH, INCRBY LRANGE, DEL GET: three runs were batched.
    let after = c.pipelined().await;
    assert!(after.0 >= before.0 + 3, "{before:?} → {after:?}");
    let expected = String::from_utf8(expected)
        .unwrap()
        .replace("alone:", "piped:");
    let got = String::from_utf8(got).unwrap();
    assert_eq!(got, expected);
    assert!(
        got.starts_with(
            "+OK\r\n:2\r\n$1\r\n2\r\n:2\r\n+PONG\r\n-ERR unknown command 'NOSUCHCOMMAND'"
        ),
        "{got}"
    );
    assert!(
        got.contains("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        "{got}"
    );
    assert!(
        got.ends_with(":13\r\n*1\r\n$1\r\nx\r\n$4\r\ndone\r\n:2\r\n$-1\r\n"),
        "{got}"
    );
}

/// 100 INCRs of one key written at once answer 1 … 100, in order, and run in a few entries:
/// far fewer batches than commands. Before pipelining, every INCR was an entry of its own
/// (and INFO had no such counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_incrs_apply_in_order_as_a_few_entries() {
    let mut c = Client::connect(common::start(Settings::default()).await).await;
    let before = c.pipelined().await;
    let incrs = vec![vec!["INCR", "counter"]; 100];
    assert_eq!(c.pipeline(&incrs).await, counted(100));
    let after = c.pipelined().await;
    let (batches, commands) = (after.0 - before.0, after.1 - before.1);
    // One write of 2.5 KB is read at once but for a rare split by the socket: each split
    // costs at most one command run alone and one more batch.
    assert!(commands >= 90, "{commands} of 100 INCRs pipelined");
    assert!(batches <= 10, "{batches} batches for {commands} INCRs");
    // A read with no write before it is not batched (alone it is a ReadIndex read, cheaper
    // than an entry): reads only are answered in order too, one by one.
    let gets = vec![vec!["GET", "counter"]; 50];
    let got = c.pipeline(&gets).await;
    assert_eq!(got, b"$3\r\n100\r\n".repeat(50));
    assert_eq!(c.pipelined().await, after);
}

/// On a sharded cluster: a pipeline that moves between shards, with commands split by shard
/// (MSET, DEL), keyless ones (DBSIZE) and a cross-slot refusal, is answered as one request at
/// a time; each shard's run of commands is batched, and their effects are in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_pipeline_is_answered_as_one_request_at_a_time() {
    let mut c = Client::connect(sharded_harness::start().await).await;
    let script = |p: &str| -> Vec<Vec<String>> {
        let (a, b) = (key_in(2, &format!("{p}a")), key_in(7, &format!("{p}b")));
        let mut s: Vec<Vec<String>> = Vec::new();
        let mut add = |r: &[&str]| s.push(r.iter().map(|x| x.to_string()).collect());
        for _ in 0..20 {
            add(&["INCR", &a]);
        }
        for _ in 0..20 {
            add(&["INCR", &b]);
        }
        add(&["INCR", &a]);
        add(&["INCR", &b]);
        add(&["GET", &a]);
        add(&["LPUSH", &a, "x"]);
        add(&["MSET", &a, "5", &b, "6"]);
        add(&["INCR", &a]);
        add(&["RPUSH", &a, "x"]);
        add(&["RENAME", &a, &b]);
        add(&["DBSIZE"]);
        add(&["MULTI"]);
        add(&["INCR", &b]);
        add(&["EXEC"]);
        add(&["DEL", &a, &b]);
        add(&["GET", &b]);
        s
    };
    // The keys of each script are in the same shards; a key's name, given the prefix, is not
    // otherwise in the replies but for DBSIZE's count, equal in both (the first script's keys
    // are deleted at its end).
    let (alone, piped) = (script("alone:"), script("piped:"));
    let expected = c.one_by_one(&borrowed(&alone)).await;
    let before = c.pipelined().await;
    let got = c.pipeline(&borrowed(&piped)).await;
    let after = c.pipelined().await;
    assert_eq!(
        String::from_utf8(got.clone()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
    let mut start = counted(20);
    start.extend(counted(20));
    start.extend(b":21\r\n:21\r\n$2\r\n21\r\n-WRONGTYPE");
    assert!(got.starts_with(&start), "{}", String::from_utf8_lossy(&got));
    let (batches, commands) = (after.0 - before.0, after.1 - before.1);
    // 42 batched (20 + 20 + 2), less a few should the socket split the write.
    assert!(commands >= 30, "{commands} commands pipelined");
    assert!(batches <= 10, "{batches} batches for {commands} commands");
}
