//! TLS with rustls, when certificates are configured.
//!
//! Between cluster processes (replicas, routers, `ctl`) TLS is mutual: each side presents a
//! certificate signed by the cluster's CA and checks the other's, and the dialer checks that
//! the acceptor's certificate names `server_name` (default `flotilla`; put it in every
//! node's certificate as a DNS subject alternative name). The cluster-secret handshake still
//! runs inside TLS. Towards Redis clients, the router can serve TLS with a certificate of its
//! own and no client certificates (clients authenticate with AUTH).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A byte stream: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// The files of one process's TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This process's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs every cluster member's certificate (PEM).
    pub ca: PathBuf,
}

/// Mutual TLS between cluster processes.
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    server_name: ServerName<'static>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store
            .add(c)
            .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

impl PeerTls {
    /// Loads the identity in `files`; `server_name` is the name every node certificate carries.
    pub fn load(files: &TlsFiles, server_name: &str) -> Result<Arc<Self>, String> {
        let (chain, roots) = (certs(&files.cert)?, roots(&files.ca)?);
        let tls_err = |e: rustls::Error| format!("TLS configuration: {e}");
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key(&files.key)?)
            .map_err(tls_err)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key(&files.key)?)
            .map_err(tls_err)?;
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("bad TLS server name {server_name:?}: {e}"))?;
        Ok(Arc::new(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            server_name,
        }))
    }

    pub async fn connect(&self, tcp: tokio::net::TcpStream) -> std::io::Result<BoxIo> {
        Ok(Box::new(
            self.connector
                .connect(self.server_name.clone(), tcp)
                .await?,
        ))
    }

    pub async fn accept(&self, tcp: tokio::net::TcpStream) -> std::io::Result<BoxIo> {
        Ok(Box::new(self.acceptor.accept(tcp).await?))
    }
}

/// Server-side TLS for Redis clients (no client certificates).
pub fn client_acceptor(cert: &Path, key_path: &Path) -> Result<TlsAcceptor, String> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
