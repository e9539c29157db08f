//! What several of this crate's integration tests share.

use flotilla_rsm::{ApplyCtx, SnapshotError, StateMachine};

/// A sum: commands add, replies are the new total.
#[derive(Debug, Default)]
pub struct Sum(pub u64);

impl StateMachine for Sum {
    type Command = u64;
    type Reply = u64;
    fn apply(&mut self, cmd: u64, _at: &ApplyCtx) -> u64 {
        self.0 += cmd;
        self.0
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
