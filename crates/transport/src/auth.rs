//! The connection handshake: mutual proof of the cluster secret.
//!
//! ```text
//! dialer   -> Hello   { version, from, nonce_d }
//! acceptor -> Welcome { id, nonce_a, proof_a = HMAC(secret, "acceptor" | nonce_d | nonce_a | from | id) }
//! dialer   -> Auth    { proof_d = HMAC(secret, "dialer"   | nonce_a | nonce_d | from) }
//! ```
//!
//! Each side checks the other's proof in constant time. Fresh random nonces on both sides mean
//! a recorded handshake cannot be replayed, and the secret never crosses the wire. (Traffic
//! after the handshake is not encrypted: TLS is a separate layer.) The acceptor names itself
//! (`id`), so a dialer that expects another node at that address finds out.
//!
//! A dialer of another protocol version is refused with both versions in words: every
//! process of a cluster must run the same build.

use flotilla_id::NodeId;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{Frame, MAX_HANDSHAKE_FRAME, PROTOCOL_VERSION};
use crate::TransportError;

/// A handshake that takes longer than this is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster secret every process of one cluster shares.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its text; surrounding whitespace (a file's trailing newline) is ignored.
    pub fn new(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() < 16 {
            return Err(format!(
                "the cluster secret must be at least 16 characters (got {})",
                t.len()
            ));
        }
        Ok(Secret(t.as_bytes().to_vec()))
    }

    /// A fresh random secret, as hex text.
    pub fn generate() -> String {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The proof of `role` over both nonces and the node ids in `ids`.
    fn proof(&self, role: &[u8], first: &[u8; 32], second: &[u8; 32], ids: &[u64]) -> [u8; 32] {
        self.mac(role, first, second, ids)
            .finalize()
            .into_bytes()
            .into()
    }

    fn verify(
        &self,
        role: &[u8],
        first: &[u8; 32],
        second: &[u8; 32],
        ids: &[u64],
        proof: &[u8; 32],
    ) -> bool {
        self.mac(role, first, second, ids)
            .verify_slice(proof)
            .is_ok()
    }

    fn mac(&self, role: &[u8], first: &[u8; 32], second: &[u8; 32], ids: &[u64]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(role);
        mac.update(first);
        mac.update(second);
        for id in ids {
            mac.update(&id.to_le_bytes());
        }
        mac
    }
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

fn refused(peer: &str, reason: impl Into<String>) -> TransportError {
    TransportError::Handshake {
        peer: peer.to_owned(),
        reason: reason.into(),
    }
}

async fn read<S, M>(s: &mut S, peer: &str) -> Result<Frame<M>, TransportError>
where
    S: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        flotilla_wire::read_frame(s, MAX_HANDSHAKE_FRAME),
    )
    .await
    {
        Ok(r) => Ok(r?),
        Err(_) => Err(refused(peer, "timed out")),
    }
}

/// The dialer's side: proves itself as node `me`, checks the acceptor's proof, and returns
/// the acceptor's node id.
pub async fn dial<S, M>(
    s: &mut S,
    secret: &Secret,
    me: NodeId,
    peer: &str,
) -> Result<NodeId, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Serialize + DeserializeOwned,
{
    let mine = nonce();
    let hello: Frame<M> = Frame::Hello {
        version: PROTOCOL_VERSION,
        from: me,
        nonce: mine,
    };
    flotilla_wire::write_frame(s, &hello).await?;
    let (id, theirs, proof) = match read::<S, M>(s, peer).await? {
        Frame::Welcome { id, nonce, proof } => (id, nonce, proof),
        Frame::Refused { reason } => return Err(refused(peer, format!("refused: {reason}"))),
        _ => return Err(refused(peer, "unexpected frame instead of Welcome")),
    };
    if !secret.verify(b"acceptor", &mine, &theirs, &[me.get(), id.get()], &proof) {
        return Err(refused(peer, "the peer does not know the cluster secret"));
    }
    let auth: Frame<M> = Frame::Auth {
        proof: secret.proof(b"dialer", &theirs, &mine, &[me.get()]),
    };
    flotilla_wire::write_frame(s, &auth).await?;
    Ok(id)
}

/// The acceptor's side (node `me`): returns the dialer's node id once it has proved itself.
pub async fn accept<S, M>(
    s: &mut S,
    secret: &Secret,
    me: NodeId,
    peer: &str,
) -> Result<NodeId, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Serialize + DeserializeOwned,
{
    let (version, from, theirs) = match read::<S, M>(s, peer).await? {
        Frame::Hello {
            version,
            from,
            nonce,
        } => (version, from, nonce),
        _ => return Err(refused(peer, "the first frame was not Hello")),
    };
    if version != PROTOCOL_VERSION {
        let reason = format!(
            "the dialer speaks protocol version {version} and this node version {PROTOCOL_VERSION}: \
             every process of a cluster must run the same Flotilla build"
        );
        let _ = flotilla_wire::write_frame(
            s,
            &Frame::<M>::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(refused(peer, reason));
    }
    let mine = nonce();
    let welcome: Frame<M> = Frame::Welcome {
        id: me,
        nonce: mine,
        proof: secret.proof(b"acceptor", &theirs, &mine, &[from.get(), me.get()]),
    };
    flotilla_wire::write_frame(s, &welcome).await?;
    match read::<S, M>(s, peer).await? {
        Frame::Auth { proof }
            if secret.verify(b"dialer", &mine, &theirs, &[from.get()], &proof) =>
        {
            Ok(from)
        }
        Frame::Auth { .. } => {
            let reason = "the peer does not know the cluster secret";
            let _ = flotilla_wire::write_frame(
                s,
                &Frame::<M>::Refused {
                    reason: reason.into(),
                },
            )
            .await;
            Err(refused(peer, reason))
        }
        _ => Err(refused(peer, "unexpected frame instead of Auth")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        a: &Secret,
        b: &Secret,
    ) -> (
        Result<NodeId, TransportError>,
        Result<NodeId, TransportError>,
    ) {
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        let (a, b) = (a.clone(), b.clone());
        let dialer =
            tokio::spawn(
                async move { dial::<_, u8>(&mut x, &a, NodeId::new(42), "acceptor").await },
            );
        let acceptor =
            tokio::spawn(
                async move { accept::<_, u8>(&mut y, &b, NodeId::new(7), "dialer").await },
            );
        (dialer.await.unwrap(), acceptor.await.unwrap())
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways_and_names_both_ends() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let (d, a) = pair(&s, &s).await;
        assert_eq!(
            d.unwrap(),
            NodeId::new(7),
            "the dialer learns the acceptor's id"
        );
        assert_eq!(a.unwrap(), NodeId::new(42));
    }

    /// A build of another protocol version (a Hello from it) is refused, in words, on both
    /// sides: a mixed-build cluster must not half-work.
    #[tokio::test]
    async fn another_protocol_version_is_refused_in_words() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        let b = s.clone();
        let acceptor =
            tokio::spawn(async move { accept::<_, u8>(&mut y, &b, NodeId::new(7), "old").await });
        let hello: Frame<u8> = Frame::Hello {
            version: PROTOCOL_VERSION - 1,
            from: NodeId::new(42),
            nonce: nonce(),
        };
        flotilla_wire::write_frame(&mut x, &hello).await.unwrap();
        let answer: Frame<u8> = flotilla_wire::read_frame(&mut x, MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let Frame::Refused { reason } = answer else {
            panic!("expected Refused, got {answer:?}")
        };
        let versions = format!(
            "protocol version {} and this node version {PROTOCOL_VERSION}",
            PROTOCOL_VERSION - 1
        );
        assert!(
            reason.contains(&versions) && reason.contains("same Flotilla build"),
            "{reason}"
        );
        assert!(acceptor.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let t = Secret::new("0123456789abcdef-other!").unwrap();
        let (d, a) = pair(&t, &s).await;
        assert!(d
            .unwrap_err()
            .to_string()
            .contains("does not know the cluster secret"));
        assert!(a.is_err());
    }

    #[test]
    fn short_secrets_are_rejected() {
        assert!(Secret::new("short").is_err());
        assert_eq!(Secret::generate().len(), 48);
    }
}
