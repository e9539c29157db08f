//! Decoding throughput: pipelined `SET key:<n> <value>` requests, as redis-benchmark sends them
//! with `-P 16`, parsed into commands. Run with `cargo bench -p flotilla-resp`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flotilla_resp::{Command, Decoder, Limits, Protocol, Value};

fn pipeline(requests: usize, value_len: usize) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    let mut buf = Vec::new();
    for i in 0..requests {
        let key = format!("key:{i:012}").into_bytes();
        let args = [b"SET".to_vec(), key, value.clone()];
        buf.extend_from_slice(&Value::bulk_array(args).to_bytes(Protocol::Resp2));
    }
    buf
}

/// Decodes and parses all of `buf`, `chunk` bytes at a time (how much one socket read gives).
fn decode(buf: &[u8], chunk: usize) -> usize {
    let mut decoder = Decoder::new(Limits::default());
    let (mut start, mut end, mut count) = (0, 0, 0);
    while start < buf.len() {
        match decoder.decode(&buf[start..end]).expect("valid") {
            Some((args, used)) => {
                black_box(Command::from_args(args).expect("SET"));
                start += used;
                count += 1;
            }
            None => end = (end + chunk).min(buf.len()),
        }
    }
    count
}

fn measure(name: &str, value_len: usize, chunk: usize) {
    let requests = (64 << 20) / (value_len + 40);
    let buf = pipeline(requests, value_len);
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_millis(500) || rounds == 0 {
        assert_eq!(decode(&buf, chunk), requests);
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = (buf.len() * rounds) as f64 / 1e6;
    let rps = (requests * rounds) as f64 / secs;
    println!(
        "{name:<28} {:>8.0} MB/s {:>12.0} requests/s",
        mb / secs,
        rps
    );
}

fn main() {
    measure("SET, 3-byte values, 16 KiB", 3, 16 << 10);
    measure("SET, 100-byte values, 16 KiB", 100, 16 << 10);
    measure("SET, 4 KiB values, 16 KiB", 4096, 16 << 10);
    measure("SET, 1 MiB values, 64 KiB", 1 << 20, 64 << 10);
}
