//! The single-node key/value server with at-most-once semantics (the 6.5840 `kvsrv` lab).

use flotilla_node::{Ctx, NodeId, Process};
use flotilla_rsm::{
    Applied, Msg, Response, RsmError, SessionLimits, Sessions, Stamp, StateMachine,
};

use crate::store::{AppendReply, Kv};
use crate::KvMsg;

/// One server, no replication: each request is applied on arrival, at most once per
/// `(client, seq)`. It keeps the data plus, per client that wrote, its last sequence number
/// and reply ([`Sessions`]): nothing grows with the number of operations, and reads leave no
/// trace. As in the lab, Append answers with the value it replaced.
pub struct KvServer {
    state: Sessions<Kv>,
}

impl Default for KvServer {
    fn default() -> Self {
        KvServer {
            state: Sessions::new(Kv::new(AppendReply::OldValue)),
        }
    }
}

impl KvServer {
    pub fn state(&self) -> &Sessions<Kv> {
        &self.state
    }
}

impl Process for KvServer {
    type Msg = KvMsg;
    type Event = ();

    fn on_tick(&mut self, _ctx: &mut Ctx<KvMsg, ()>) {}

    fn on_message(&mut self, from: NodeId, msg: KvMsg, ctx: &mut Ctx<KvMsg, ()>) {
        let Msg::Request(req) = msg else { return };
        let (client, seq) = (req.client, req.seq);
        // The lab's server forgets no client: nothing expires, so nothing is ever refused as
        // expired or unstamped.
        let stamp = Stamp {
            time_ms: u64::try_from(ctx.wall_clock().as_millis()).unwrap_or(u64::MAX),
            limits: SessionLimits::UNBOUNDED,
            index: 0,
        };
        let result = match <Kv as StateMachine>::validate(&req.cmd) {
            Err(refusal) => Ok(refusal),
            Ok(()) => match self.state.apply(req, stamp) {
                Applied::Fresh(r) | Applied::Duplicate(r) => Ok(r),
                Applied::Stale => Err(RsmError::Stale),
                Applied::Expired => Err(RsmError::SessionExpired),
                Applied::Unstamped => Err(RsmError::Unstamped),
            },
        };
        ctx.send(
            from,
            Msg::Response(Response {
                client,
                seq,
                now_ms: self.state.clock_ms(),
                result,
            }),
        );
    }

    fn is_reply(msg: &KvMsg) -> bool {
        msg.is_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{KvCommand, KvReply};
    use flotilla_rsm::Request;
    use std::time::Duration;

    const ID_9: NodeId = NodeId::new(9);

    fn call(s: &mut KvServer, client: u64, seq: u64, cmd: KvCommand) -> Result<KvReply, RsmError> {
        let mut ctx = Ctx::new(Duration::ZERO);
        s.on_message(
            NodeId::new(9),
            Msg::Request(Request {
                client,
                seq,
                after_ms: 1,
                cmd,
            }),
            &mut ctx,
        );
        let (_, mut sends, _) = ctx.into_parts();
        assert_eq!(sends.len(), 1);
        match sends.pop() {
            Some((ID_9, Msg::Response(r))) => {
                assert_eq!((r.client, r.seq), (client, seq));
                r.result
            }
            other => panic!("expected a response to 9, got {other:?}"),
        }
    }

    #[test]
    fn a_duplicate_append_takes_effect_once_and_gets_the_same_answer() {
        let mut s = KvServer::default();
        let app = KvCommand::Append {
            key: "k".into(),
            value: "a".into(),
        };
        assert_eq!(
            call(&mut s, 1, 1, app.clone()),
            Ok(KvReply::Value(Some(vec![])))
        );
        assert_eq!(
            call(&mut s, 1, 1, app.clone()),
            Ok(KvReply::Value(Some(vec![])))
        );
        assert_eq!(call(&mut s, 1, 0, app), Err(RsmError::Stale));
        assert_eq!(s.state().machine().get(b"k"), Some(&b"a"[..]));
    }

    #[test]
    fn an_oversized_value_is_refused() {
        let mut s = KvServer::default();
        let r = call(
            &mut s,
            1,
            1,
            KvCommand::Put {
                key: "k".into(),
                value: vec![0; crate::MAX_VALUE_BYTES + 1].into(),
            },
        );
        assert!(matches!(r, Ok(KvReply::Error(_))));
        assert_eq!(s.state().machine().get(b"k"), None);
    }
}
