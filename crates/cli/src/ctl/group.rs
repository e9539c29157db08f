//! The group a `ctl` command talks to: where to find its replicas, and the credentials; and
//! how a membership reads in words.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use flotilla_raft::NodeId;
use flotilla_transport::tls::PeerTls;
use flotilla_transport::Secret;

use crate::auth::{SecretArgs, TlsArgs};
use crate::layout::Layout;

/// Which group a `ctl` command talks to, and how.
#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Addresses of some of the group's replicas, comma-separated (the founding ones in id
    /// order will do); the other members are found from their statuses. Default: read from
    /// --dir's cluster file.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// A `flotilla up` data directory: servers and secret are read from it.
    #[arg(long, default_value = "flotilla-data")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// A group to talk to: where to start, and the credentials.
pub struct Cluster {
    pub seeds: Vec<String>,
    pub secret: Secret,
    pub tls: Option<Arc<PeerTls>>,
}

impl ClusterArgs {
    pub fn load(&self) -> Result<Cluster, String> {
        let (seeds, secret) = resolve_cluster(self.servers.clone(), &self.dir, &self.secret)?;
        Ok(Cluster {
            seeds,
            secret,
            tls: self.tls.load()?,
        })
    }
}

/// Servers and secret from flags, or from a `flotilla up` directory.
fn resolve_cluster(
    servers: Vec<String>,
    dir: &Path,
    secret: &SecretArgs,
) -> Result<(Vec<String>, Secret), String> {
    if !servers.is_empty() {
        return Ok((servers, secret.load()?));
    }
    let layout = Layout::read(dir)?;
    let secret = match secret.secret_file {
        Some(_) => secret.load()?,
        None => SecretArgs {
            secret_file: Some(layout.secret_file(dir)),
        }
        .load()?,
    };
    Ok((layout.servers, secret))
}

/// `ids` with their addresses, in words: "0 at host:port, 2 at …", or "none".
pub fn describe(ids: &[NodeId], addrs: &BTreeMap<NodeId, String>) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    let each: Vec<String> = (ids.iter())
        .map(|id| match addrs.get(id) {
            Some(a) => format!("{id} at {a}"),
            None => format!("{id} (address unknown)"),
        })
        .collect();
    each.join(", ")
}
