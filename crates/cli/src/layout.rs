//! `cluster.json`: where the processes of a cluster started by `flotilla up` listen. `up`
//! writes it; `ctl` reads it to find a cluster in its data directory (`--dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotilla_shardctrler::Gid;
use serde::{Deserialize, Serialize};

/// Where a cluster's processes listen, as `cluster.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    /// The single group's replicas; the controller's, when sharded.
    pub servers: Vec<String>,
    pub router: String,
    /// A sharded cluster's controller and groups (absent for a single group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharded: Option<ShardedLayout>,
}

/// Where a sharded cluster's servers listen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardedLayout {
    pub ctrlers: Vec<String>,
    /// The groups `up` starts and joins, by group id.
    pub groups: BTreeMap<Gid, Vec<String>>,
    pub shards: usize,
}

impl Layout {
    fn path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// Whether `dir` holds a layout (a cluster `up` started before).
    pub fn exists(dir: &Path) -> bool {
        Self::path(dir).exists()
    }

    pub fn secret_file(&self, dir: &Path) -> PathBuf {
        dir.join("secret")
    }

    pub fn read(dir: &Path) -> Result<Self, String> {
        let p = Self::path(dir);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "cannot read {} ({e}); is there a cluster started by `flotilla up` in {}?",
                p.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{} is malformed: {e}", p.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("a layout serialises");
        // All or nothing and fsynced: `up` refuses to start on a malformed layout, so a power
        // loss must never leave a partial or empty one.
        flotilla_storage::durable::write_file(&Self::path(dir), text.as_bytes(), 0o644)
            .map_err(|e| format!("cannot write the cluster layout: {e}"))
    }
}
