//! What the router knows of one client connection: the state its commands read and change.
//!
//! State a command family keeps per connection is a field here (as `CLIENT SETNAME` keeps
//! `name`, and `MULTI` its queue of commands).

use flotilla_resp::{Command, Protocol};
use flotilla_rsm::ClientId;

/// One client connection's state.
pub(crate) struct Conn {
    /// `CLIENT ID`; also names the connection to the buffer budget.
    pub(crate) id: u64,
    /// The client's address, for `CLIENT INFO` and logs.
    pub(crate) addr: String,
    /// RESP2 until `HELLO 3`: how replies are encoded.
    pub(crate) proto: Protocol,
    /// Whether commands other than AUTH, HELLO and QUIT may run (always, without a password).
    pub(crate) authenticated: bool,
    /// `CLIENT SETNAME`'s, or `HELLO … SETNAME`'s.
    pub(crate) name: Option<Vec<u8>>,
    /// Created on the first key/value command.
    pub(crate) clerk: Option<ClientId>,
    /// More clerks, for the groups' parts of a multi-key command that run alongside the
    /// first (sharded only); kept for the connection's next such command.
    pub(crate) extra: Vec<ClientId>,
    /// Open from `MULTI` to `EXEC` or `DISCARD`.
    pub(crate) tx: Option<Transaction>,
    /// `WATCH`ed keys with the versions they had then; cleared by EXEC, DISCARD, UNWATCH.
    pub(crate) watched: Vec<(Vec<u8>, u64)>,
}

/// A transaction being queued.
#[derive(Default)]
pub(crate) struct Transaction {
    pub(crate) queued: Vec<Command>,
    /// A command was refused while queueing: EXEC discards the transaction.
    pub(crate) failed: bool,
    /// The shard of the keys queued so far (sharded clusters).
    pub(crate) shard: Option<usize>,
}

impl Conn {
    /// A new connection, speaking RESP2, with no clerk yet; `authenticated` when the router
    /// has no password.
    pub(crate) fn new(id: u64, addr: String, authenticated: bool) -> Conn {
        Conn {
            id,
            addr,
            proto: Protocol::Resp2,
            authenticated,
            name: None,
            clerk: None,
            extra: Vec::new(),
            tx: None,
            watched: Vec::new(),
        }
    }
}

/// Whether to keep the connection after a reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Close,
}
