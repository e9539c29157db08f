//! A [`FaultHook`] for tests: logs every write, fsync and create, and fails the n-th one
//! matching a rule with a chosen OS error.

use std::io;
use std::sync::{Arc, Mutex};

use flotilla_storage::{FaultHook, Faults, FileOp, StorageOptions};

pub const ENOSPC: i32 = 28;
pub const EDQUOT: i32 = 122;
pub const EIO: i32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Create,
    Write,
    Sync,
}

/// One operation the storage performed (or tried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: Kind,
    /// The file's name (not its directory).
    pub name: String,
    pub offset: u64,
    pub len: u64,
    /// Whether the hook failed it.
    pub failed: bool,
}

/// Fails operations of `kind` on files whose name contains `name`: lets `skip` of them
/// pass, then fails `times` of them with OS error `errno`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub kind: Kind,
    pub name: String,
    pub skip: usize,
    pub times: usize,
    pub errno: i32,
}

#[derive(Default)]
pub struct Hook {
    pub log: Mutex<Vec<Seen>>,
    rule: Mutex<Option<Rule>>,
}

impl Hook {
    pub fn new() -> Arc<Hook> {
        Arc::new(Hook::default())
    }

    pub fn fail(&self, rule: Rule) {
        *self.rule.lock().unwrap() = Some(rule);
    }

    /// Whether the rule has failed every operation it was to fail.
    pub fn spent(&self) -> bool {
        self.rule
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|r| r.times == 0)
    }

    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut self.log.lock().unwrap())
    }
}

impl FaultHook for Hook {
    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        let (kind, path, offset, len) = match op {
            FileOp::Create { path } => (Kind::Create, path, 0, 0),
            FileOp::Write { path, offset, len } => (Kind::Write, path, offset, len),
            FileOp::Sync { path, .. } => (Kind::Sync, path, 0, 0),
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut failed = None;
        if let Some(rule) = self.rule.lock().unwrap().as_mut() {
            if rule.kind == kind && name.contains(&rule.name) && rule.times > 0 {
                if rule.skip > 0 {
                    rule.skip -= 1;
                } else {
                    rule.times -= 1;
                    failed = Some(rule.errno);
                }
            }
        }
        self.log.lock().unwrap().push(Seen {
            kind,
            name,
            offset,
            len,
            failed: failed.is_some(),
        });
        match failed {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

/// Options with `hook` installed.
pub fn with_hook(mut opts: StorageOptions, hook: &Arc<Hook>) -> StorageOptions {
    opts.faults = Faults::new(hook.clone());
    opts
}
