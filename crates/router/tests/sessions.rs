//! Sessions that expire, end to end on loopback sockets (issue 16): a one-replica KV group
//! that keeps one session, a router in front of it, two Redis connections (one clerk each).

mod common;

use common::Client;

use common::{Settings, PATIENCE};
use flotilla_resp::{decode_value, Limits, Value};
use flotilla_rsm::SessionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Client {
    async fn call(&mut self, args: &[&[u8]]) -> Value {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).bytes());
            out.extend_from_slice(a);
            out.extend(b"\r\n");
        }
        self.stream.write_all(&out).await.unwrap();
        loop {
            if let Some((v, n)) = decode_value(&self.buf, &Limits::default()).unwrap() {
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
}

/// A connection whose session the group forgot (evicted: the group keeps one and another
/// connection wrote since) gets a clear `-ERR session expired …` for its next write, which is
/// not applied; its write after that starts a new session and is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_session_gets_a_clear_error_and_then_a_new_session() {
    let port = start(1).await;
    let (mut a, mut b) = (Client::connect(port).await, Client::connect(port).await);
    assert_eq!(a.call(&[b"SET", b"k", b"1"]).await, Value::ok());
    assert_eq!(b.call(&[b"SET", b"other", b"2"]).await, Value::ok());
    let refused = a.call(&[b"SET", b"k", b"3"]).await;
    assert_eq!(
        refused,
        Value::error("ERR session expired: the command may or may not have been applied")
    );
    assert_eq!(a.call(&[b"GET", b"k"]).await, Value::bulk("1"));
    assert_eq!(a.call(&[b"SET", b"k", b"4"]).await, Value::ok());
    assert_eq!(b.call(&[b"GET", b"k"]).await, Value::bulk("4"));
}

/// A one-replica KV group keeping at most `max_sessions` (idle for an hour), and a router;
/// returns the router's port.
async fn start(max_sessions: u64) -> u16 {
    let sessions = SessionLimits {
        idle_ms: 3_600_000,
        max_sessions,
    };
    common::start(Settings {
        sessions,
        ..Settings::default()
    })
    .await
}
