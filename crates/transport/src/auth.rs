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

/// The shortest cluster secret accepted, in bytes (after trimming whitespace).
pub const MIN_SECRET_LEN: usize = 16;

/// Why a text is refused as the cluster secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too short to resist guessing; `len` is the trimmed length.
    #[error("the cluster secret must be at least {min} characters (got {len})")]
    TooShort { len: usize, min: usize },
}

/// The cluster secret every process of one cluster shares.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its text; surrounding whitespace (a file's trailing newline) is ignored.
    pub fn new(text: &str) -> Result<Self, SecretError> {
        let t = text.trim();
        if t.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                len: t.len(),
                min: MIN_SECRET_LEN,
            });
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

/// Why a handshake (or the exchange right after it) failed; the peer is named by
/// [`TransportError::Handshake`].
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// No answer within [`HANDSHAKE_TIMEOUT`].
    #[error("timed out")]
    TimedOut,
    /// The peer refused us; `reason` is its own words.
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The peer sent another frame than the handshake's next one (not a Flotilla process,
    /// or a confused one); `expected` names the one due.
    #[error("unexpected frame instead of {expected}")]
    UnexpectedFrame { expected: &'static str },
    /// The peer's proof does not verify: it holds another cluster secret.
    #[error("the peer does not know the cluster secret")]
    WrongSecret,
    /// The dialer runs a build of another protocol version.
    #[error(
        "the dialer speaks protocol version {dialer} and this node version {ours}: \
         every process of a cluster must run the same Flotilla build"
    )]
    ProtocolVersion { dialer: u32, ours: u32 },
    /// The TLS handshake under ours failed (an untrusted certificate, a wrong server name,
    /// a peer without TLS).
    #[error("TLS: {0}")]
    Tls(std::io::Error),
}

pub(crate) fn refused(peer: &str, reason: HandshakeError) -> TransportError {
    TransportError::Handshake {
        peer: peer.to_owned(),
        reason,
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
        Err(_) => Err(refused(peer, HandshakeError::TimedOut)),
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
        Frame::Refused { reason } => return Err(refused(peer, HandshakeError::Refused { reason })),
        _ => {
            return Err(refused(
                peer,
                HandshakeError::UnexpectedFrame {
                    expected: "Welcome",
                },
            ))
        }
    };
    if !secret.verify(b"acceptor", &mine, &theirs, &[me.get(), id.get()], &proof) {
        return Err(refused(peer, HandshakeError::WrongSecret));
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
        _ => {
            return Err(refused(
                peer,
                HandshakeError::UnexpectedFrame { expected: "Hello" },
            ))
        }
    };
    if version != PROTOCOL_VERSION {
        let reason = HandshakeError::ProtocolVersion {
            dialer: version,
            ours: PROTOCOL_VERSION,
        };
        let _ = flotilla_wire::write_frame(
            s,
            &Frame::<M>::Refused {
                reason: reason.to_string(),
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
            let reason = HandshakeError::WrongSecret;
            let _ = flotilla_wire::write_frame(
                s,
                &Frame::<M>::Refused {
                    reason: reason.to_string(),
                },
            )
            .await;
            Err(refused(peer, reason))
        }
        _ => Err(refused(
            peer,
            HandshakeError::UnexpectedFrame { expected: "Auth" },
        )),
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
        assert!(matches!(
            acceptor.await.unwrap(),
            Err(TransportError::Handshake {
                reason: HandshakeError::ProtocolVersion { dialer, ours: PROTOCOL_VERSION },
                ..
            }) if dialer == PROTOCOL_VERSION - 1
        ));
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let t = Secret::new("0123456789abcdef-other!").unwrap();
        let (d, a) = pair(&t, &s).await;
        let d = d.unwrap_err();
        assert!(
            matches!(
                &d,
                TransportError::Handshake { peer, reason: HandshakeError::WrongSecret }
                    if peer == "acceptor"
            ),
            "{d:?}"
        );
        assert!(d.to_string().contains("does not know the cluster secret"));
        // The dialer hangs up before proving itself: the acceptor sees the connection end.
        assert!(a.is_err());
    }

    /// A dialer whose proof does not verify is refused, and told so.
    #[tokio::test]
    async fn an_acceptor_refuses_a_wrong_proof() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        let acceptor =
            tokio::spawn(
                async move { accept::<_, u8>(&mut y, &s, NodeId::new(7), "forger").await },
            );
        let hello: Frame<u8> = Frame::Hello {
            version: PROTOCOL_VERSION,
            from: NodeId::new(42),
            nonce: nonce(),
        };
        flotilla_wire::write_frame(&mut x, &hello).await.unwrap();
        let welcome: Frame<u8> = flotilla_wire::read_frame(&mut x, MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        assert!(matches!(welcome, Frame::Welcome { id, .. } if id == NodeId::new(7)));
        let forged: Frame<u8> = Frame::Auth { proof: [0; 32] };
        flotilla_wire::write_frame(&mut x, &forged).await.unwrap();
        let answer: Frame<u8> = flotilla_wire::read_frame(&mut x, MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        assert!(matches!(answer, Frame::Refused { .. }), "{answer:?}");
        assert!(matches!(
            acceptor.await.unwrap(),
            Err(TransportError::Handshake {
                reason: HandshakeError::WrongSecret,
                ..
            })
        ));
    }

    /// A dialer that opens with anything but Hello is refused, naming the frame expected.
    #[tokio::test]
    async fn a_first_frame_other_than_hello_is_refused() {
        let s = Secret::new("0123456789abcdef-secret").unwrap();
        let (mut x, mut y) = tokio::io::duplex(1 << 16);
        let acceptor =
            tokio::spawn(async move { accept::<_, u8>(&mut y, &s, NodeId::new(7), "odd").await });
        let wrong: Frame<u8> = Frame::StatusRequest;
        flotilla_wire::write_frame(&mut x, &wrong).await.unwrap();
        assert!(matches!(
            acceptor.await.unwrap(),
            Err(TransportError::Handshake {
                reason: HandshakeError::UnexpectedFrame { expected: "Hello" },
                ..
            })
        ));
    }

    #[test]
    fn short_secrets_are_rejected() {
        assert_eq!(
            Secret::new("  short\n").err(),
            Some(SecretError::TooShort { len: 5, min: 16 })
        );
        assert!(Secret::new(&"x".repeat(MIN_SECRET_LEN)).is_ok());
        assert_eq!(Secret::generate().len(), 48);
    }
}
