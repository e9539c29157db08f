//! The router's limits on loopback sockets (issue 15, item 9), in front of a one-replica KV
//! group: the bytes all connections hold share a budget past which reading pauses, and still
//! every request completes with the right reply; a client that has not authenticated cannot
//! declare a large bulk; a request over the budget is refused; an idle connection is closed.

mod common;

use common::Client;

use std::time::Duration;

use common::{start, Settings, PATIENCE};
use flotilla_resp::{decode_value, Limits, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next reply; fails the test if none comes.
    async fn reply(&mut self) -> Value {
        let limits = Limits::default();
        loop {
            if let Some((v, n)) = decode_value(&self.buf, &limits).unwrap() {
                self.buf.drain(..n);
                return v;
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

    /// Sends a command and returns its reply.
    async fn call(&mut self, args: &[&[u8]]) -> Value {
        self.send(&command(args)).await;
        self.reply().await
    }

    /// Whether the router closes the connection (with nothing more to read) within `PATIENCE`.
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut rest));
        match read.await {
            Ok(Ok(_)) => rest.is_empty(),
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Err(_) => false,
        }
    }

    /// INFO's `name:value` field, as a number.
    async fn info(&mut self, name: &str) -> usize {
        let Value::Bulk(text) = self.call(&[b"INFO"]).await else {
            panic!("INFO is a bulk string")
        };
        let text = String::from_utf8(text).unwrap();
        let line = (text.lines())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in INFO:\n{text}"));
        line.trim().parse().unwrap()
    }
}

/// A request in the multibulk form.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend_from_slice(a);
        out.extend(b"\r\n");
    }
    out
}

fn value_of(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_pauses_reading_and_every_request_still_completes() {
    const MAX: usize = 1 << 20;
    const CLIENTS: usize = 8;
    const VALUE: usize = 512 << 10;
    // Each client first sends all but the end of a SET of VALUE bytes: together far more than
    // the budget, so the router stops reading with every connection holding part of a
    // request. None could finish if each waited for room under the budget.
    const FIRST: usize = VALUE - (64 << 10);
    let port = start(Settings {
        max_buffered_bytes: MAX,
        ..Settings::default()
    })
    .await;
    let (go, wait) = watch::channel(false);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut wait = wait.clone();
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(port).await;
            let key = format!("k{i}");
            let set = command(&[b"SET", key.as_bytes(), &value_of(i, VALUE)]);
            let cut = set.len() - (VALUE - FIRST) - 2;
            c.send(&set[..cut]).await;
            wait.wait_for(|&go| go).await.unwrap();
            c.send(&set[cut..]).await;
            assert_eq!(c.reply().await, Value::simple("OK"), "SET {key}");
            let got = c.call(&[b"GET", key.as_bytes()]).await;
            assert!(got == Value::Bulk(value_of(i, VALUE)), "GET {key}");
        }));
    }
    // Small commands are not held up by the budget: INFO answers while reading is paused.
    let mut watcher = Client::connect(port).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while watcher.info("flotilla_buffer_waits").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reading never paused although {} bytes were sent past a budget of {MAX}",
            CLIENTS * FIRST
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    go.send(true).unwrap();
    for c in clients {
        tokio::time::timeout(PATIENCE, c)
            .await
            .expect("every request completes (no deadlock)")
            .unwrap();
    }
    // One connection at a time may go past the budget, by at most its request and a read.
    let peak = watcher.info("flotilla_buffered_bytes_peak").await;
    let request = command(&[b"SET", b"k0", &value_of(0, VALUE)]).len();
    assert!(
        (MAX..=MAX + request + (64 << 10)).contains(&peak),
        "peak {peak}"
    );
    assert_eq!(watcher.info("flotilla_buffered_bytes").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_budget_is_refused() {
    let port = start(Settings {
        max_buffered_bytes: 64 << 10,
        ..Settings::default()
    })
    .await;
    let mut c = Client::connect(port).await;
    // Exactly as much as the router reads before it refuses: bytes left unread when it closes
    // would make the kernel reset the connection, which may discard the error reply.
    c.send(&command(&[b"SET", b"k", &[b'v'; 100 << 10]])[..64 << 10])
        .await;
    let Value::Error(e) = c.reply().await else {
        panic!("an error")
    };
    assert!(
        e.starts_with("ERR Protocol error: request larger than"),
        "{e}"
    );
    assert!(c.closed().await);
    // Under the budget all is well.
    let mut c = Client::connect(port).await;
    let value = value_of(1, 60 << 10);
    assert_eq!(c.call(&[b"SET", b"k", &value]).await, Value::simple("OK"));
    assert!(c.call(&[b"GET", b"k"]).await == Value::Bulk(value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_auth_a_large_bulk_is_refused_at_its_header() {
    let port = start(Settings {
        password: Some("pw"),
        ..Settings::default()
    })
    .await;
    // The attack of issue 15 (9): a 32 MiB bulk declared, its bytes never sent.
    let mut c = Client::connect(port).await;
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$33554432\r\n").await;
    assert_eq!(
        c.reply().await,
        Value::error("ERR Protocol error: unauthenticated bulk length")
    );
    assert!(c.closed().await);
    let mut c = Client::connect(port).await;
    c.send(b"*11\r\n").await;
    assert_eq!(
        c.reply().await,
        Value::error("ERR Protocol error: unauthenticated multibulk length")
    );
    assert!(c.closed().await);
    // A wrong password is just wrong; AUTH lifts the limits for the very next request.
    let mut c = Client::connect(port).await;
    let value = value_of(2, 100 << 10);
    let mut pipeline = command(&[b"AUTH", b"nope"]);
    pipeline.extend(command(&[b"AUTH", b"pw"]));
    pipeline.extend(command(&[b"SET", b"k", &value]));
    pipeline.extend(command(&[b"GET", b"k"]));
    c.send(&pipeline).await;
    let Value::Error(e) = c.reply().await else {
        panic!("an error")
    };
    assert!(e.starts_with("WRONGPASS"), "{e}");
    assert_eq!(c.reply().await, Value::simple("OK"));
    assert_eq!(c.reply().await, Value::simple("OK"));
    assert!(c.reply().await == Value::Bulk(value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_timeout() {
    let port = start(Settings {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Settings::default()
    })
    .await;
    // Open before: a command right after connecting is answered.
    let mut c = Client::connect(port).await;
    assert_eq!(c.call(&[b"PING"]).await, Value::simple("PONG"));
    assert!(c.closed().await, "an idle connection is closed");
    // In the middle of a request too (a client that stalls holds bytes).
    let mut c = Client::connect(port).await;
    let timeout = c.call(&[b"CONFIG", b"GET", b"timeout"]).await;
    assert_eq!(
        timeout,
        Value::Array(vec![Value::bulk("timeout"), Value::bulk("1")])
    );
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\nabc").await;
    assert!(c.closed().await, "a stalled request is closed");
    // Without a timeout (the default), CONFIG GET says 0, as Redis does (RESP2: a flat array).
    let port = start(Settings::default()).await;
    let mut c = Client::connect(port).await;
    assert_eq!(
        c.call(&[b"CONFIG", b"GET", b"timeout"]).await,
        Value::Array(vec![Value::bulk("timeout"), Value::bulk("0")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_replies_is_closed_before_they_pile_up() {
    let port = start(Settings {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Settings::default()
    })
    .await;
    let mut watcher = Client::connect(port).await;
    let big = value_of(3, 1 << 20);
    assert_eq!(
        watcher.call(&[b"SET", b"big", &big]).await,
        Value::simple("OK")
    );
    // 64 MiB of replies, far more than the sockets' buffers take, then an INCR; never read.
    let mut pipeline = command(&[b"GET", b"big"]).repeat(64);
    pipeline.extend(command(&[b"INCR", b"n"]));
    let mut reader = Client::connect(port).await;
    reader.send(&pipeline).await;
    // The router writes replies as they come, so it stops at a full socket (holding one reply
    // at most, not 64) and the idle timeout closes the connection before the INCR runs.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while watcher.info("connected_clients").await > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a client that reads nothing stays connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(watcher.call(&[b"GET", b"n"]).await, Value::Null);
    drop(reader);
}
