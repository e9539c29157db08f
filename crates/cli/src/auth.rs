//! How a process proves it belongs to the cluster: the shared secret, and mutual TLS between
//! cluster processes. Every subcommand that talks to or runs a cluster process flattens these
//! arguments.

use std::path::PathBuf;

use clap::Args;
use flotilla_transport::tls::{PeerTls, TlsFiles};
use flotilla_transport::Secret;

/// Where the cluster secret comes from (the same for every process of a cluster).
#[derive(Args, Clone)]
pub struct SecretArgs {
    /// File holding the cluster secret (at least 16 characters). Default: the
    /// FLOTILLA_SECRET environment variable.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

impl SecretArgs {
    pub fn load(&self) -> Result<Secret, String> {
        let text = match &self.secret_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the secret file {}: {e}", p.display()))?,
            None => std::env::var("FLOTILLA_SECRET").map_err(|_| {
                "no cluster secret: pass --secret-file or set FLOTILLA_SECRET".to_owned()
            })?,
        };
        Secret::new(&text).map_err(|e| e.to_string())
    }
}

/// Mutual TLS between cluster processes (all three files, or none for plain TCP).
#[derive(Args, Clone)]
pub struct TlsArgs {
    /// This process's certificate (PEM), signed by --tls-ca, naming --tls-server-name.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// The DNS name every node certificate carries.
    #[arg(long, default_value = "flotilla")]
    pub tls_server_name: String,
}

impl TlsArgs {
    pub fn load(&self) -> Result<Option<std::sync::Arc<PeerTls>>, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                };
                PeerTls::load(&files, &self.tls_server_name)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }
}
