//! Network fault model and statistics, with the labs' numbers as defaults.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How messages travel. Defaults follow labrpc (see LABS.md §3).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Latency of every message in reliable mode: uniform in this range.
    pub reliable_latency: (Duration, Duration),
    /// Unreliable mode: each message is delayed uniformly up to this much…
    pub unreliable_max_delay: Duration,
    /// …and dropped with this probability (labrpc drops 10% of requests and 10% of replies).
    pub unreliable_drop: f64,
    /// Long reordering: this share of replies is held back…
    pub reorder_share: f64,
    /// …for a fixed delay plus a random one of up to `reorder_max_extra`.
    pub reorder_base: Duration,
    pub reorder_max_extra: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            reliable_latency: (Duration::from_micros(500), Duration::from_millis(3)),
            unreliable_max_delay: Duration::from_millis(26),
            unreliable_drop: 0.1,
            reorder_share: 2.0 / 3.0,
            reorder_base: Duration::from_millis(200),
            reorder_max_extra: Duration::from_millis(2000),
        }
    }
}

/// What happens to one message at send time.
pub(crate) enum Fate {
    Drop,
    DeliverAfter(Duration),
}

impl NetConfig {
    pub(crate) fn fate(
        &self,
        rng: &mut ChaCha8Rng,
        reliable: bool,
        long_reordering: bool,
        reply: bool,
    ) -> Fate {
        let mut delay = if reliable {
            let (lo, hi) = self.reliable_latency;
            Duration::from_micros(rng.gen_range(lo.as_micros() as u64..=hi.as_micros() as u64))
        } else {
            if rng.gen_bool(self.unreliable_drop) {
                return Fate::Drop;
            }
            Duration::from_micros(rng.gen_range(0..=self.unreliable_max_delay.as_micros() as u64))
        };
        if long_reordering && reply && rng.gen_bool(self.reorder_share) {
            // labrpc: 200 ms + rand(1 + rand(2000)) ms, skewed towards short extra delays.
            let inner = rng.gen_range(0..=self.reorder_max_extra.as_millis() as u64);
            delay += self.reorder_base + Duration::from_millis(rng.gen_range(0..=inner));
        }
        Fate::DeliverAfter(delay)
    }
}

/// Counters tests use to bound traffic.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests sent (counted on send, whether or not they arrive), as labrpc counts RPCs.
    pub rpcs_sent: u64,
    /// Requests delivered to each node (labrpc's per-server `GetCount`).
    pub rpcs_received: Vec<u64>,
    /// Bytes of requests sent plus bytes of replies delivered (labrpc's `GetTotalBytes`).
    pub bytes: u64,
    /// Every message sent, requests and replies.
    pub messages_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
}
