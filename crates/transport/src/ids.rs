//! Naming nodes by address and dialing them on first use.
//!
//! The id rules themselves (replicas', clients', sharded servers' from their addresses) are
//! `flotilla_id::alloc`'s; this module adds what needs a transport, for both the sharded
//! servers and the clients: a resolver that adds a named node to the address book.

use std::sync::Arc;

use flotilla_id::alloc::server_node_id;
use flotilla_id::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::transport::Transport;

/// Names nodes by address ([`server_node_id`]) and adds each one `transport` does not yet know
/// to its address book on first use ([`Transport::add_peer`]): a shard server dials another
/// group's servers when it first pulls from or notifies them, and a router a group's servers
/// when a key first maps there. Holds the transport weakly (the transport delivers to the
/// process that holds this), and must be called inside the runtime, after the transport's
/// `dial_peers`.
pub fn dialing<M>(transport: &Arc<Transport<M>>) -> impl Fn(&str) -> NodeId + Send + Sync + 'static
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let t = Arc::downgrade(transport);
    move |name: &str| {
        let id = server_node_id(name);
        if let Some(t) = t.upgrade() {
            t.add_peer(id, name);
        }
        id
    }
}
