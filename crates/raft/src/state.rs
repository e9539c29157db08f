//! What Raft must keep across a crash (Figure 2's "persistent state", plus the snapshot point)
//! and its byte encoding. The snapshot's data is stored beside it, not inside it.

use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::log::RaftLog;
use crate::message::Entry;
use crate::ready::LogWrite;
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

/// Decoding persisted state failed: the bytes were not written by [`PersistentState::encode`]
/// and [`encode_changes`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("corrupt raft state: {0}")]
    Format(#[from] postcard::Error),
    /// The decoded log breaks one of [`RaftLog`]'s invariants.
    #[error("corrupt raft state: {0}")]
    Log(#[from] LogError),
    /// An appended log write starts at `from`, which does not extend or overwrite the log
    /// decoded so far (snapshot at `snapshot_index`, last entry at `last_index`).
    #[error(
        "corrupt raft state: log write from {from} does not fit a log of \
         ({snapshot_index}, {last_index}]"
    )]
    LogWriteOutOfPlace {
        from: u64,
        snapshot_index: u64,
        last_index: u64,
    },
    /// The first byte names a format this build does not know (written by a newer one).
    #[error("corrupt raft state: unknown format version {0}")]
    UnknownVersion(u8),
}

/// An incremental change to persisted state, appended after the full state (see
/// [`encode_changes`]). Variants are numbered by position: new ones go at the end, so a
/// state written by an older build, base and records, still decodes.
#[derive(Serialize, Deserialize)]
enum Change {
    HardState(HardState),
    /// Format 1's log write: entries without a kind (all commands). Read, never written.
    LogV1 {
        from: u64,
        entries: Vec<EntryV1>,
    },
    /// Drop stored entries from `from` on, then append `entries` (a [`LogWrite`]).
    Log {
        from: u64,
        entries: Vec<Entry>,
    },
}

/// Format 1's entry (before membership entries existed): always a command.
#[derive(Serialize, Deserialize)]
struct EntryV1 {
    term: u64,
    data: Vec<u8>,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry::command(e.term, e.data)
    }
}

/// Format 1's full state: the log had no membership.
#[derive(Serialize, Deserialize)]
struct StateV1 {
    hard_state: HardState,
    snapshot_index: u64,
    snapshot_term: u64,
    entries: Vec<EntryV1>,
}

/// Encodes a `Ready`'s hard state and log write as records to append to the bytes already
/// persisted, so a driver that keeps one byte string per peer (the simulator's persister)
/// writes only what changed instead of re-encoding the whole log each time. A snapshot
/// cannot be expressed this way: persist [`PersistentState::encode`] in full then.
///
/// The stored bytes are then: the full state, followed by zero or more such records, which
/// [`PersistentState::decode`] replays in order.
pub fn encode_changes(hard_state: Option<&HardState>, log_write: Option<&LogWrite>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(h) = hard_state {
        out = postcard::to_extend(&Change::HardState(*h), out).expect("encoding into a Vec");
    }
    if let Some(w) = log_write {
        #[derive(Serialize)]
        enum ChangeRef<'a> {
            #[allow(dead_code)]
            HardState(HardState),
            #[allow(dead_code)]
            LogV1,
            Log {
                from: u64,
                entries: &'a [Entry],
            },
        }
        let c = ChangeRef::Log {
            from: w.from,
            entries: &w.entries,
        };
        out = postcard::to_extend(&c, out).expect("encoding into a Vec");
    }
    out
}

/// 2 added entry kinds and the snapshot's membership; 1 is still read (see [`Change`]).
const FORMAT_VERSION: u8 = 2;
const FORMAT_V1: u8 = 1;

impl PersistentState {
    /// Applies one appended record; a record that does not fit the log is corruption.
    fn replay(&mut self, change: Change) -> Result<(), DecodeError> {
        match change {
            Change::HardState(h) => self.hard_state = h,
            Change::LogV1 { from, entries } => {
                let entries = entries.into_iter().map(Entry::from).collect();
                return self.replay(Change::Log { from, entries });
            }
            Change::Log { from, entries } => {
                let (snap, last) = (self.log.snapshot_index(), self.log.last_index());
                if from <= snap || from > last + 1 {
                    return Err(DecodeError::LogWriteOutOfPlace {
                        from,
                        snapshot_index: snap,
                        last_index: last,
                    });
                }
                self.log.truncate_from(from);
                for e in entries {
                    self.log.append(e);
                }
            }
        }
        Ok(())
    }

    /// Encodes as one version byte followed by postcard (varint) fields, so an empty log
    /// costs a handful of bytes and the 3D size bound measures the log itself.
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(&self.hard_state, &self.log)
    }

    /// Decodes bytes from [`PersistentState::encode`]; empty input is the initial state.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Ok(PersistentState::default()),
            Some((&version @ (FORMAT_V1 | FORMAT_VERSION), rest)) => {
                let (mut state, mut rest) = if version == FORMAT_V1 {
                    let (v1, rest): (StateV1, _) = postcard::take_from_bytes(rest)?;
                    let entries = v1.entries.into_iter().map(Entry::from).collect();
                    let log = RaftLog::from_parts(v1.snapshot_index, v1.snapshot_term, entries);
                    let state = PersistentState {
                        hard_state: v1.hard_state,
                        log,
                    };
                    (state, rest)
                } else {
                    let (mut state, rest): (PersistentState, _) = postcard::take_from_bytes(rest)?;
                    state.log.reindex();
                    (state, rest)
                };
                while !rest.is_empty() {
                    let (change, tail): (Change, _) = postcard::take_from_bytes(rest)?;
                    state.replay(change)?;
                    rest = tail;
                }
                state.log.validate()?;
                Ok(state)
            }
            Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
        }
    }
}
