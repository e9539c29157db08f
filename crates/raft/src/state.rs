//! What Raft must keep across a crash (Figure 2's "persistent state", plus the snapshot point)
//! and its byte encoding. The snapshot's data is stored beside it, not inside it.

use serde::{Deserialize, Serialize};

use crate::log::RaftLog;
use crate::NodeId;

/// Term and vote: must be durable before any message that depends on them is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<NodeId>,
}

/// Everything Raft persists except the snapshot data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentState {
    pub hard_state: HardState,
    pub log: RaftLog,
}

/// The one encoder of persisted state (version byte, then postcard of the fields in
/// [`PersistentState`]'s order), taking borrowed parts so a live peer need not clone its log.
pub(crate) fn encode_parts(hard_state: &HardState, log: &RaftLog) -> Vec<u8> {
    #[derive(Serialize)]
    struct View<'a> {
        hard_state: &'a HardState,
        log: &'a RaftLog,
    }
    let mut out = vec![FORMAT_VERSION];
    out.extend(
        postcard::to_allocvec(&View { hard_state, log }).expect("encoding into a Vec cannot fail"),
    );
    out
}

/// Decoding persisted state failed: the bytes were not written by [`PersistentState::encode`].
#[derive(Debug, thiserror::Error)]
#[error("corrupt raft state: {0}")]
pub struct DecodeError(#[from] postcard::Error);

const FORMAT_VERSION: u8 = 1;

impl PersistentState {
    /// Encodes as one version byte followed by postcard (varint) fields, so an empty log
    /// costs a handful of bytes and the 3D size bound measures the log itself.
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(&self.hard_state, &self.log)
    }

    /// Decodes bytes from [`PersistentState::encode`]; empty input is the initial state.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Ok(PersistentState::default()),
            Some((&FORMAT_VERSION, rest)) => {
                let state: PersistentState = postcard::from_bytes(rest)?;
                Ok(state)
            }
            Some(_) => Err(DecodeError(postcard::Error::DeserializeBadEncoding)),
        }
    }
}
