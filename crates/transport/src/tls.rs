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

/// Why a TLS identity could not be loaded. Each variant names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file could not be read or is no PEM (missing, unreadable, truncated).
    #[error("cannot read certificates from {}: {source}", path.display())]
    ReadCertificates {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM section of the certificate file does not decode.
    #[error("bad certificate in {}: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds PEM but no certificate (a key file given for a certificate, say).
    #[error("no certificate in {}", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file could not be read, or holds no private key.
    #[error("cannot read a private key from {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate of the CA file is not usable as a trust anchor.
    #[error("bad CA certificate in {}: {source}", path.display())]
    BadCaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    /// rustls refused the combination (a key that does not match its certificate, say).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("TLS configuration: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// `--tls-server-name` is not a DNS name or IP address.
    #[error("bad TLS server name {name:?}: {source}")]
    ServerName {
        name: String,
        source: rustls_pki_types::InvalidDnsNameError,
    },
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsConfigError::ReadCertificates {
            path: path.to_path_buf(),
            source,
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::BadCertificate {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsConfigError::ReadKey {
        path: path.to_path_buf(),
        source,
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store
            .add(c)
            .map_err(|source| TlsConfigError::BadCaCertificate {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(Arc::new(store))
}

impl PeerTls {
    /// Loads the identity in `files`; `server_name` is the name every node certificate carries.
    pub fn load(files: &TlsFiles, server_name: &str) -> Result<Arc<Self>, TlsConfigError> {
        let (chain, roots) = (certs(&files.cert)?, roots(&files.ca)?);
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key(&files.key)?)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key(&files.key)?)?;
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|source| {
            TlsConfigError::ServerName {
                name: server_name.to_owned(),
                source,
            }
        })?;
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
pub fn client_acceptor(cert: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsConfigError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, key(key_path)?)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PEM section of `label` whose body is `b64` (decodes, yet is no valid DER).
    fn pem(label: &str, b64: &str) -> String {
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    /// A CA and a node certificate naming `flotilla`, as the cluster's files.
    fn pki(dir: &Path) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["flotilla".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(&files.ca, ca.pem()).unwrap();
        files
    }

    /// Each defect of a file is reported as its own variant, naming that file.
    #[test]
    fn bad_files_are_named_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let undecodable = dir.path().join("undecodable.pem");
        std::fs::write(&undecodable, pem("CERTIFICATE", "!!not base64!!")).unwrap();
        let garbage_cert = dir.path().join("garbage-cert.pem");
        std::fs::write(&garbage_cert, pem("CERTIFICATE", "AAAA")).unwrap();
        let garbage_key = dir.path().join("garbage.key");
        std::fs::write(&garbage_key, pem("PRIVATE KEY", "AAAA")).unwrap();

        let err = client_acceptor(&missing, &garbage_key).err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::ReadCertificates { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = client_acceptor(&empty, &garbage_key).err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::NoCertificate { path } if *path == empty),
            "{err:?}"
        );
        let err = client_acceptor(&undecodable, &garbage_key).err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::BadCertificate { path, .. } if *path == undecodable),
            "{err:?}"
        );
        let err = client_acceptor(&garbage_cert, &missing).err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::ReadKey { path, .. } if *path == missing),
            "{err:?}"
        );
        let err = client_acceptor(&garbage_cert, &garbage_key).err().unwrap();
        assert!(matches!(err, TlsConfigError::Rustls(_)), "{err:?}");

        let good = pki(dir.path());
        let bad_ca = TlsFiles {
            ca: garbage_cert.clone(),
            ..good.clone()
        };
        let err = PeerTls::load(&bad_ca, "flotilla").err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::BadCaCertificate { path, .. } if *path == garbage_cert),
            "{err:?}"
        );
    }

    /// Good files load; a server name that is no DNS name is refused, naming it.
    #[test]
    fn the_server_name_must_be_a_dns_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = pki(dir.path());
        assert!(PeerTls::load(&files, "flotilla").is_ok());
        assert!(client_acceptor(&files.cert, &files.key).is_ok());
        let err = PeerTls::load(&files, "not a name!").err().unwrap();
        assert!(
            matches!(&err, TlsConfigError::ServerName { name, .. } if name == "not a name!"),
            "{err:?}"
        );
    }
}
