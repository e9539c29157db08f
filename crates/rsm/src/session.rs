//! The exactly-once table and the replicated state it guards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::machine::{SnapshotError, StateMachine};
use crate::msg::{ClientId, Request};

/// The last answered operation of one client.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session<R> {
    seq: u64,
    reply: R,
}

/// What applying a request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<R> {
    /// Applied now (or a read executed now); here is its reply.
    Fresh(R),
    /// Already applied earlier: the remembered reply, and no second effect.
    Duplicate(R),
    /// Older than the client's latest operation: the client no longer waits for it.
    Stale,
}

impl<R> Applied<R> {
    pub fn reply(self) -> Option<R> {
        match self {
            Applied::Fresh(r) | Applied::Duplicate(r) => Some(r),
            Applied::Stale => None,
        }
    }
}

/// A [`StateMachine`] together with its exactly-once table. Both are replicated state: they
/// change only by [`Sessions::apply`] in log order, and both go into the snapshot.
///
/// Invariant: for every client, the table holds the highest `seq` applied for it and the reply
/// to exactly that operation. A clerk has one outstanding operation at a time and its `seq`
/// only grows, so that one reply is all a retry can ever ask for: memory is one entry per
/// writing client, whatever the number of operations.
#[derive(Debug)]
pub struct Sessions<S: StateMachine> {
    machine: S,
    /// BTreeMap, not HashMap: snapshots must encode the same on every replica and every run.
    table: BTreeMap<ClientId, Session<S::Reply>>,
}

/// Snapshot layout: the table, then the machine's own bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotParts<R> {
    table: Vec<(ClientId, u64, R)>,
    /// One byte string, not a sequence of numbers: it is the bulk of every snapshot.
    #[serde(with = "serde_bytes")]
    machine: Vec<u8>,
}

const SNAPSHOT_VERSION: u8 = 1;

impl<S: StateMachine> Sessions<S> {
    pub fn new(machine: S) -> Self {
        Sessions {
            machine,
            table: BTreeMap::new(),
        }
    }

    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Number of clients with a remembered reply.
    pub fn clients(&self) -> usize {
        self.table.len()
    }

    /// The remembered reply if `(client, seq)` was already applied, for answering a retry
    /// without a second trip through the log.
    pub fn answered(&self, client: ClientId, seq: u64) -> Option<&S::Reply> {
        self.table
            .get(&client)
            .filter(|s| s.seq == seq)
            .map(|s| &s.reply)
    }

    /// Applies `req` at most once.
    pub fn apply(&mut self, req: Request<S::Command>) -> Applied<S::Reply> {
        if S::is_read_only(&req.cmd) || !S::REPLICA_SESSIONS {
            return Applied::Fresh(self.machine.apply(req.cmd));
        }
        if let Some(s) = self.table.get(&req.client) {
            if req.seq == s.seq {
                return Applied::Duplicate(s.reply.clone());
            }
            if req.seq < s.seq {
                return Applied::Stale;
            }
        }
        let reply = self.machine.apply(req.cmd);
        self.table.insert(
            req.client,
            Session {
                seq: req.seq,
                reply: reply.clone(),
            },
        );
        Applied::Fresh(reply)
    }

    /// Executes a read-only command ([`StateMachine::is_read_only`]) on the current state,
    /// outside the log (a read confirmed by ReadIndex or a lease): as for reads applied from
    /// the log, nothing is recorded in the table and nothing changes.
    pub fn read(&mut self, cmd: S::Command) -> S::Reply {
        debug_assert!(
            S::is_read_only(&cmd),
            "a command that writes, read outside the log"
        );
        self.machine.apply(cmd)
    }

    /// The machine and the table, encoded.
    pub fn snapshot(&self) -> Vec<u8> {
        let parts = SnapshotParts {
            table: self
                .table
                .iter()
                .map(|(&c, s)| (c, s.seq, s.reply.clone()))
                .collect(),
            machine: self.machine.snapshot(),
        };
        let mut out = vec![SNAPSHOT_VERSION];
        out.extend(postcard::to_allocvec(&parts).expect("encoding into a Vec cannot fail"));
        out
    }

    /// Replaces machine and table with a snapshot's. An empty snapshot is the initial state.
    pub fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        let Some((&version, rest)) = data.split_first() else {
            self.table.clear();
            return self.machine.restore(&[]);
        };
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError(format!("unknown snapshot version {version}")));
        }
        let parts: SnapshotParts<S::Reply> =
            postcard::from_bytes(rest).map_err(|e| SnapshotError(e.to_string()))?;
        self.machine.restore(&parts.machine)?;
        self.table = parts
            .table
            .into_iter()
            .map(|(c, seq, reply)| (c, Session { seq, reply }))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter: `Some(n)` adds n and returns the new total; `None` reads it.
    #[derive(Debug, Default)]
    struct Counter(u64);

    impl StateMachine for Counter {
        type Command = Option<u64>;
        type Reply = u64;
        fn apply(&mut self, cmd: Option<u64>) -> u64 {
            self.0 += cmd.unwrap_or(0);
            self.0
        }
        fn is_read_only(cmd: &Option<u64>) -> bool {
            cmd.is_none()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
            self.0 = match data {
                [] => 0,
                b => u64::from_le_bytes(b.try_into().map_err(|_| SnapshotError("len".into()))?),
            };
            Ok(())
        }
    }

    fn req(client: ClientId, seq: u64, cmd: Option<u64>) -> Request<Option<u64>> {
        Request { client, seq, cmd }
    }

    #[test]
    fn a_retry_is_answered_from_the_table_without_a_second_effect() {
        let mut s = Sessions::new(Counter::default());
        assert_eq!(s.apply(req(7, 1, Some(5))), Applied::Fresh(5));
        assert_eq!(s.apply(req(7, 1, Some(5))), Applied::Duplicate(5));
        assert_eq!(s.apply(req(8, 1, Some(5))), Applied::Fresh(10));
        assert_eq!(s.apply(req(7, 2, Some(1))), Applied::Fresh(11));
        assert_eq!(s.apply(req(7, 1, Some(5))), Applied::Stale);
        assert_eq!(s.machine().0, 11);
        assert_eq!(s.answered(7, 2), Some(&11));
        assert_eq!(s.answered(7, 1), None);
    }

    #[test]
    fn reads_are_not_remembered() {
        let mut s = Sessions::new(Counter::default());
        for client in 0..100 {
            assert_eq!(s.apply(req(client, 1, None)), Applied::Fresh(0));
        }
        assert_eq!(s.clients(), 0);
    }

    #[test]
    fn snapshot_carries_the_table() {
        let mut s = Sessions::new(Counter::default());
        s.apply(req(1, 4, Some(3)));
        s.apply(req(2, 9, Some(4)));
        let snap = s.snapshot();
        let mut t = Sessions::new(Counter::default());
        t.restore(&snap).unwrap();
        assert_eq!(t.machine().0, 7);
        assert_eq!(t.apply(req(1, 4, Some(3))), Applied::Duplicate(3));
        assert_eq!(t.apply(req(2, 10, Some(1))), Applied::Fresh(8));
        assert!(t.restore(&[9, 9]).is_err());
        t.restore(&[]).unwrap();
        assert_eq!((t.machine().0, t.clients()), (0, 0));
    }
}
