//! Callers waiting for their clerk's operation to finish, matched by `(client, seq)`.

use std::collections::HashMap;
use std::sync::Mutex;

use flotilla_rsm::ClientId;
use tokio::sync::oneshot;

/// Callers waiting for their clerk's operation to finish, matched by `(client, seq)`.
///
/// A clerk's reply is handed only to the call that started the operation it answers: after
/// a call is abandoned (a router's command timeout), the clerk's next call registers a new
/// waiter while a reply to the abandoned operation may already be on its way out of the
/// driver; that stale reply must not answer the new command.
///
/// Invariant: a waiter's `seq` is set only by the driver-task closure that started *its*
/// operation (checked by `token`), and replies are handed out on the driver task after the
/// batch that produced them, so a reply `(c, s)` reaches a waiter only if that waiter's call
/// started operation `s` of clerk `c`.
pub(crate) struct Waiters<R> {
    inner: Mutex<WaitersInner<R>>,
}

struct WaitersInner<R> {
    by_client: HashMap<ClientId, Waiter<R>>,
    /// Tells the waiters of one clerk apart (a new one per call).
    next_token: u64,
}

struct Waiter<R> {
    token: u64,
    /// The operation this call started; `None` until the driver has started it.
    seq: Option<u64>,
    tx: oneshot::Sender<R>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            inner: Mutex::new(WaitersInner {
                by_client: HashMap::new(),
                next_token: 0,
            }),
        }
    }
}

impl<R> Waiters<R> {
    /// Registers a call on clerk `client`, replacing any earlier one; returns the token its
    /// start must present to [`Waiters::started`], and where the reply will arrive.
    pub(crate) fn wait(&self, client: ClientId) -> (u64, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        let mut w = self.inner.lock().expect("waiters lock");
        w.next_token += 1;
        let token = w.next_token;
        w.by_client.insert(
            client,
            Waiter {
                token,
                seq: None,
                tx,
            },
        );
        (token, rx)
    }

    /// The call `token` started operation `seq` of clerk `client` (on the driver task).
    pub(crate) fn started(&self, client: ClientId, token: u64, seq: u64) {
        let mut w = self.inner.lock().expect("waiters lock");
        if let Some(waiter) = w.by_client.get_mut(&client) {
            if waiter.token == token {
                waiter.seq = Some(seq);
            }
        }
    }

    /// Forgets the call `token` on clerk `client` (its operation could not start).
    pub(crate) fn cancel_token(&self, client: ClientId, token: u64) {
        let mut w = self.inner.lock().expect("waiters lock");
        if w.by_client.get(&client).is_some_and(|x| x.token == token) {
            w.by_client.remove(&client);
        }
    }

    /// Forgets whatever call waits on clerk `client` (abandoned, or the clerk removed).
    pub(crate) fn cancel(&self, client: ClientId) {
        self.inner
            .lock()
            .expect("waiters lock")
            .by_client
            .remove(&client);
    }

    /// Hands `reply`, the answer to operation `seq` of clerk `client`, to the call that
    /// started that operation; drops it if no such call waits (abandoned: stale).
    pub(crate) fn answer(&self, client: ClientId, seq: u64, reply: R) {
        let mut w = self.inner.lock().expect("waiters lock");
        if w.by_client.get(&client).is_some_and(|x| x.seq == Some(seq)) {
            let waiter = w.by_client.remove(&client).expect("just found");
            let _ = waiter.tx.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariant on its own: a reply reaches only the call that started its operation,
    /// and a late start or cancellation of a replaced call touches nothing.
    #[test]
    fn a_reply_reaches_only_the_call_that_started_its_operation() {
        let w: Waiters<&str> = Waiters::default();
        let (first, mut rx1) = w.wait(7);
        w.started(7, first, 1);
        w.cancel(7); // abandoned
        let (second, mut rx2) = w.wait(7);
        w.answer(7, 1, "to the abandoned call");
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
        w.started(7, first, 2); // a stale start of the replaced call
        w.answer(7, 2, "before the second call started");
        assert!(rx2.try_recv().is_err(), "not started by the second call");
        w.cancel_token(7, first); // nor does a stale cancellation drop the second call
        w.started(7, second, 2);
        w.answer(7, 2, "to the second call");
        assert_eq!(rx2.try_recv(), Ok("to the second call"));
        w.answer(7, 2, "a duplicate");
        let (_, mut rx3) = w.wait(8);
        w.answer(7, 3, "another clerk's");
        assert!(rx3.try_recv().is_err());
    }
}
