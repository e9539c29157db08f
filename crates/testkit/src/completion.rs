//! Calls in flight in a tester, by key (a clerk's id, an admin request's id): the answer
//! once the tester sees it among the simulation's events, and the script task waiting for
//! it. Shared by every tester, whatever the service.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Poll, Waker};

struct Slot<R> {
    reply: Option<R>,
    waker: Option<Waker>,
}

/// Invariant: a key has a slot from [`Completions::expect`] until [`Completions::wait`]
/// returns; answers to keys without one (a call given up on) are dropped.
pub(crate) struct Completions<K, R> {
    slots: RefCell<BTreeMap<K, Slot<R>>>,
}

impl<K, R> Default for Completions<K, R> {
    fn default() -> Self {
        Completions {
            slots: RefCell::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Copy + std::fmt::Debug, R> Completions<K, R> {
    /// Makes room for the answer to a call about to start (replacing an older slot).
    pub fn expect(&self, key: K) {
        let slot = Slot {
            reply: None,
            waker: None,
        };
        self.slots.borrow_mut().insert(key, slot);
    }

    /// Hands `reply` to the call waiting on `key`, if any, and wakes it.
    pub fn answer(&self, key: K, reply: R) {
        if let Some(s) = self.slots.borrow_mut().get_mut(&key) {
            s.reply = Some(reply);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    /// Waits for the answer to `key`; with a `timer`, gives up (`None`) once it completes
    /// first. Either way the slot is gone afterwards.
    pub async fn wait(&self, key: K, timer: Option<impl Future<Output = ()>>) -> Option<R> {
        let mut timer = timer.map(Box::pin);
        let got = std::future::poll_fn(|cx| {
            let mut slots = self.slots.borrow_mut();
            let slot = slots
                .get_mut(&key)
                .unwrap_or_else(|| panic!("no call in flight for {key:?}"));
            if let Some(r) = slot.reply.take() {
                return Poll::Ready(Some(r));
            }
            if let Some(t) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        self.slots.borrow_mut().remove(&key);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Context;

    fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn an_answer_completes_its_call_and_only_its_call() {
        let c: Completions<u64, &str> = Completions::default();
        c.expect(1);
        c.answer(2, "not yours");
        let mut w = Box::pin(c.wait(1, None::<std::future::Pending<()>>));
        assert!(poll(w.as_mut()).is_pending());
        c.answer(1, "yours");
        assert_eq!(poll(w.as_mut()), Poll::Ready(Some("yours")));
    }

    #[test]
    fn a_timer_that_fires_first_gives_up_and_drops_the_slot() {
        let c: Completions<u64, &str> = Completions::default();
        c.expect(1);
        let got = poll(std::pin::pin!(c.wait(1, Some(std::future::ready(())))));
        assert_eq!(got, Poll::Ready(None));
        // A late answer finds no slot and is dropped.
        c.answer(1, "late");
        assert!(c.slots.borrow().is_empty());
    }
}
