//! Wake-ups for blocked clients (BLPOP …): a client waiting on keys registers a [`Waiter`]
//! under each of them; a write through this router to one of those keys wakes it, and it
//! runs its command again.
//!
//! A waiter registers before it runs its command, and a wake-up that comes before it waits is
//! kept (a `Notify` permit), so a write that lands between the command and the wait is never
//! missed. Writes through other routers are not seen here: a blocked client also retries on
//! a timer (`cmd/blocking.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The waiters of each key.
#[derive(Default)]
pub(crate) struct Wakeups {
    by_key: Mutex<HashMap<Vec<u8>, Vec<Weak<Notify>>>>,
    /// Waiters registered now (INFO's `blocked_clients`).
    waiters: std::sync::atomic::AtomicUsize,
}

/// One blocked client's registration; dropping it unregisters.
pub(crate) struct Waiter<'a> {
    wakeups: &'a Wakeups,
    keys: Vec<Vec<u8>>,
    notify: Arc<Notify>,
}

impl Wakeups {
    /// Registers a waiter on `keys`.
    pub(crate) fn register(&self, keys: Vec<Vec<u8>>) -> Waiter<'_> {
        let notify = Arc::new(Notify::new());
        (self.waiters).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut by_key = self.by_key.lock().expect("wakeups lock");
        for k in &keys {
            by_key
                .entry(k.clone())
                .or_default()
                .push(Arc::downgrade(&notify));
        }
        Waiter {
            wakeups: self,
            keys,
            notify,
        }
    }

    /// How many clients wait now.
    pub(crate) fn waiters(&self) -> usize {
        self.waiters.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether no client waits (so writes need not name their keys).
    pub(crate) fn is_idle(&self) -> bool {
        self.by_key.lock().expect("wakeups lock").is_empty()
    }

    /// Wakes every waiter on any of `keys`.
    pub(crate) fn wake<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let by_key = self.by_key.lock().expect("wakeups lock");
        if by_key.is_empty() {
            return;
        }
        for k in keys {
            for w in by_key.get(k).into_iter().flatten() {
                if let Some(n) = w.upgrade() {
                    n.notify_one();
                }
            }
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.by_key.lock().expect("wakeups lock").len()
    }
}

impl Waiter<'_> {
    /// Waits for a wake-up (at once if one came since the last wait or the registration).
    pub(crate) async fn woken(&self) {
        self.notify.notified().await
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        (self.wakeups.waiters).fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut by_key = self.wakeups.by_key.lock().expect("wakeups lock");
        for k in &self.keys {
            if let Some(list) = by_key.get_mut(k) {
                list.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), &*self.notify));
                if list.is_empty() {
                    by_key.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_before_the_wait_is_not_missed_and_waiters_unregister() {
        let w = Wakeups::default();
        let a = w.register(vec![b"k".to_vec(), b"j".to_vec()]);
        let b = w.register(vec![b"other".to_vec()]);
        w.wake([&b"k"[..]]);
        // Woken before waiting: the wait ends at once.
        a.woken().await;
        let unwoken = tokio::time::timeout(std::time::Duration::from_millis(20), b.woken()).await;
        assert!(unwoken.is_err(), "a write to another key wakes no one");
        drop(a);
        assert_eq!(w.keys(), 1);
        drop(b);
        assert_eq!(w.keys(), 0);
    }
}
