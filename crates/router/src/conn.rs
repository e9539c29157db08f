//! What the router knows of one client connection: the state its commands read and change.
//!
//! State a command family keeps per connection is a field here (as `CLIENT SETNAME` keeps
//! `name`); a `MULTI`'s queue of commands and a `WATCH`'s keys would be too.

use flotilla_resp::Protocol;
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
        }
    }
}

/// Whether to keep the connection after a reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Close,
}
