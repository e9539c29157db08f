//! What a router's connections may hold of their clients' input: each connection's buffer of
//! received bytes ([`Input`]), and the budget of bytes all connections share ([`Budget`]).
//!
//! # The budget
//!
//! A request is buffered whole before it runs (a `SET` of a 32 MiB value holds 32 MiB), so
//! without a bound N connections can make the router hold N times the largest request: 32
//! connections each sending a 32 MiB bulk without its end took it past 1.1 GB (issue 15, item
//! 9). Bytes a connection holds count against one budget all connections share,
//! `RouterConfig::max_buffered_bytes`:
//!
//! * A connection's first [`OWN_BYTES`] are its own: small commands (`AUTH`, `PING`, `GET`,
//!   `INFO`) never wait on the budget, and a connection between requests holds none of it.
//!   `max_clients` bounds these, as it bounds every other per-connection cost.
//! * Beyond those, a connection reads only bytes the budget grants it, at most [`READ_CHUNK`]
//!   per read: taken before the read, the unused part given back after it. When the budget is
//!   spent, reading pauses: the connection waits, its client's bytes back up into the socket
//!   buffers and then its sends block (TCP's own back-pressure). No connection is dropped and
//!   no byte is lost; the connection goes on when another gives bytes back.
//! * A request's bytes are given back when it has been answered (they are still held while
//!   it runs: its arguments are copies of them).
//!
//! ## Progress
//!
//! Requests are buffered whole, so if every connection held part of a request with the budget
//! spent, none could finish: a deadlock. To rule it out, one connection at a time may read
//! past the budget: the first to find it spent while holding part of a request (a connection
//! asking the budget for bytes always does: its own bytes are used up and every complete
//! request it held has been answered). It keeps that right until its request has been
//! answered or it closes; its request then completes as soon as its client sends the rest, its
//! bytes go back, and the waiting connections go on, within the budget or the next of them
//! past it. So every client that sends its whole request gets it answered.
//!
//! The cost of that rule: what is held may exceed the budget by one request. A request may not
//! be larger than the budget ([`Budget::max_request`]; a larger one is refused and its
//! connection closed), so connections hold at most twice the budget plus [`OWN_BYTES`] +
//! [`READ_CHUNK`] each, whatever their clients send.
//!
//! A client that stops sending in the middle of a request keeps what it holds (and, if it is
//! the one past the budget, keeps other large requests waiting) until it sends more, closes,
//! or the idle `timeout` closes it: memory stays bounded, but like a client that holds many
//! connections open, it can slow others. A password keeps strangers to 10 arguments of 16 KiB.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use flotilla_transport::tls::BoxIo;

/// Bytes a connection may hold without asking the budget: room for any small command, and the
/// size of the buffer every connection starts with.
pub const OWN_BYTES: usize = 16 << 10;

/// The most bytes one read asks the budget for: large enough that a 32 MiB value takes a few
/// hundred reads, small enough that one grant is a small part of any sensible budget.
pub const READ_CHUNK: usize = 64 << 10;

/// The bytes all of a router's connections may hold beyond their own [`OWN_BYTES`].
pub struct Budget {
    /// Bytes that may be granted at once, but for the one connection allowed past it.
    max: usize,
    state: Mutex<BudgetState>,
    /// Woken when bytes are given back or the right to go past the budget is released.
    freed: Notify,
}

/// The budget's counters, under its lock.
#[derive(Default)]
struct BudgetState {
    /// Bytes granted and not yet given back.
    used: usize,
    /// The connection that may read past the budget until its request is answered.
    past: Option<u64>,
    /// The highest `used` so far (INFO reports it; tests check the bound with it).
    peak: usize,
    /// Reads that had to wait for the budget.
    waits: u64,
}

/// What INFO reports of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// The budget (`--max-buffered-bytes`).
    pub max: usize,
    /// Bytes granted now.
    pub used: usize,
    /// The most bytes granted at any time.
    pub peak: usize,
    /// How many times a connection's reading paused because the budget was spent.
    pub waits: u64,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Budget {
        Budget {
            max,
            state: Mutex::new(BudgetState::default()),
            freed: Notify::new(),
        }
    }

    /// The largest request a connection may send: the budget (but never less than what a
    /// connection holds of its own). Bounding it bounds what the connection past the budget
    /// adds.
    pub fn max_request(&self) -> usize {
        self.max.max(OWN_BYTES)
    }

    pub fn stats(&self) -> BudgetStats {
        let s = self.state.lock().expect("budget lock");
        BudgetStats {
            max: self.max,
            used: s.used,
            peak: s.peak,
            waits: s.waits,
        }
    }

    /// Up to `want` (> 0) bytes for connection `conn`, which holds part of a request; waits
    /// while the budget is spent and another connection is past it.
    async fn grant(&self, conn: u64, want: usize) -> usize {
        let mut waited = false;
        loop {
            // Registered before the check, so that bytes given back between the check and
            // the wait still wake this connection.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(granted) = self.try_grant(conn, want, &mut waited) {
                return granted;
            }
            freed.await;
        }
    }

    fn try_grant(&self, conn: u64, want: usize, waited: &mut bool) -> Option<usize> {
        let mut s = self.state.lock().expect("budget lock");
        let room = self.max.saturating_sub(s.used);
        let granted = if room > 0 {
            room.min(want)
        } else if s.past.is_none_or(|p| p == conn) {
            // See "Progress" in the module's doc: one connection at a time goes past.
            s.past = Some(conn);
            want
        } else {
            if !*waited {
                s.waits += 1;
                *waited = true;
            }
            return None;
        };
        s.used += granted;
        s.peak = s.peak.max(s.used);
        Some(granted)
    }

    /// Connection `conn` gives back `bytes`; `answered`: a request of its has been answered
    /// (or it closed), which ends its right to be past the budget.
    fn give_back(&self, conn: u64, bytes: usize, answered: bool) {
        let mut s = self.state.lock().expect("budget lock");
        s.used -= bytes;
        let left_past = answered && s.past == Some(conn);
        if left_past {
            s.past = None;
        }
        drop(s);
        if bytes > 0 || left_past {
            self.freed.notify_waiters();
        }
    }
}

/// How a [`Input::fill`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// This many bytes arrived.
    Data(usize),
    /// The client closed its side.
    Closed,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The request being received is larger than [`Budget::max_request`].
    TooLarge(usize),
}

/// One connection's received bytes, and its account with the [`Budget`].
///
/// The session decodes requests from [`Input::unparsed`], reports each one's bytes with
/// [`Input::parsed`] when decoded and [`Input::answered`] once answered, and calls
/// [`Input::fill`] when it needs more bytes. Dropping the `Input` gives everything back.
pub struct Input<'a> {
    budget: &'a Budget,
    /// The connection's id, which names it to the budget.
    conn: u64,
    /// Received bytes; those before `start` belong to requests already decoded.
    buf: Vec<u8>,
    /// Where the bytes not yet decoded begin; `buf` drops what is before it at the next fill.
    start: usize,
    /// Bytes of requests not yet answered: the bytes not yet decoded, plus those of a request
    /// decoded and still running.
    held: usize,
    /// The part of `held` granted by the budget; the rest, at most [`OWN_BYTES`], is the
    /// connection's own.
    granted: usize,
}

impl<'a> Input<'a> {
    pub fn new(budget: &'a Budget, conn: u64) -> Input<'a> {
        Input {
            budget,
            conn,
            buf: Vec::with_capacity(OWN_BYTES),
            start: 0,
            held: 0,
            granted: 0,
        }
    }

    /// The received bytes not yet decoded.
    pub fn unparsed(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// A request of `bytes` bytes was decoded from the start of [`Input::unparsed`].
    pub fn parsed(&mut self, bytes: usize) {
        self.start += bytes;
    }

    /// The request of `bytes` bytes decoded earlier has been answered: its bytes go back,
    /// those granted by the budget first (so others can go on).
    pub fn answered(&mut self, bytes: usize) {
        let back = self.granted.min(bytes);
        self.held -= bytes;
        self.granted -= back;
        self.budget.give_back(self.conn, back, true);
    }

    /// Reads more of the client's bytes, waiting first while the budget is spent, and for at
    /// most `idle` (if set) for the client to send anything. Call it only once every complete
    /// request in [`Input::unparsed`] has been answered.
    pub async fn fill(
        &mut self,
        stream: &mut BoxIo,
        idle: Option<Duration>,
    ) -> std::io::Result<Fill> {
        self.compact();
        let max_request = self.budget.max_request();
        if self.held >= max_request {
            return Ok(Fill::TooLarge(max_request));
        }
        let room = max_request - self.held;
        let own = self.held - self.granted;
        let (want, granted) = if own < OWN_BYTES {
            ((OWN_BYTES - own).min(room), 0)
        } else {
            let g = self.budget.grant(self.conn, READ_CHUNK.min(room)).await;
            (g, g)
        };
        self.buf.reserve(want);
        let mut limited = (&mut *stream).take(want as u64);
        let read = limited.read_buf(&mut self.buf);
        let read = match idle {
            Some(limit) => tokio::time::timeout(limit, read).await.ok(),
            None => Some(read.await),
        };
        let n = match &read {
            Some(Ok(n)) => *n,
            _ => 0,
        };
        self.held += n;
        if granted > 0 {
            self.granted += n;
            self.budget.give_back(self.conn, granted - n, false);
        }
        Ok(match read {
            None => Fill::Idle,
            Some(Err(e)) => return Err(e),
            Some(Ok(0)) => Fill::Closed,
            Some(Ok(n)) => Fill::Data(n),
        })
    }

    /// Drops the bytes of decoded requests, and the buffer's capacity once it is far larger
    /// than what it holds: a connection that once received a large value must not keep the
    /// memory for it (resident: the pages were written) while it sends small commands.
    fn compact(&mut self) {
        self.buf.drain(..self.start);
        self.start = 0;
        let keep = self.buf.len().max(OWN_BYTES);
        if self.buf.capacity() > 4 * keep {
            self.buf.shrink_to(keep);
        }
    }
}

impl Drop for Input<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.conn, self.granted, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_stay_within_the_budget_but_for_one_connection() {
        let budget = Budget::new(100);
        let mut waited = false;
        assert_eq!(budget.try_grant(1, 60, &mut waited), Some(60));
        assert_eq!(
            budget.try_grant(2, 60, &mut waited),
            Some(40),
            "what is left"
        );
        // Spent: connection 3 goes past, connection 4 waits.
        assert_eq!(budget.try_grant(3, 60, &mut waited), Some(60));
        assert_eq!(budget.try_grant(4, 60, &mut waited), None);
        assert!(waited);
        assert_eq!(budget.try_grant(3, 60, &mut waited), Some(60), "still past");
        // Bytes given back mid-request do not end the right to be past; an answer does.
        budget.give_back(3, 10, false);
        assert_eq!(budget.try_grant(4, 60, &mut waited), None);
        budget.give_back(3, 110, true);
        assert_eq!(budget.try_grant(4, 60, &mut waited), Some(60));
        let stats = budget.stats();
        assert_eq!((stats.used, stats.peak, stats.waits), (160, 220, 1));
    }

    #[tokio::test]
    async fn a_waiting_grant_goes_on_when_bytes_come_back() {
        let budget = std::sync::Arc::new(Budget::new(10));
        assert_eq!(budget.grant(1, 10).await, 10);
        assert_eq!(budget.grant(2, 5).await, 5, "past the budget");
        let b = budget.clone();
        let waiting = tokio::spawn(async move { b.grant(3, 8).await });
        while budget.stats().waits == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        budget.give_back(1, 10, true);
        assert_eq!(waiting.await.unwrap(), 5, "the room left under the budget");
    }
}
