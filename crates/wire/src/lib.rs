//! # flotilla-wire: framing for every Flotilla connection
//!
//! A frame is `[len: u32 LE][crc32c(payload): u32 LE][payload]`, where the payload is a value
//! encoded with postcard. The length is checked against a limit *before* anything is allocated,
//! and the checksum before anything is decoded, so a malformed or hostile peer gets a typed
//! error, never a panic or an unbounded allocation.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default upper bound of one frame's payload.
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame checksum mismatch (corrupt data on the wire)")]
    Checksum,
    #[error("malformed frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("value cannot be encoded: {0}")]
    Encode(postcard::Error),
}

/// The payload bytes `value` encodes to, computed without encoding it (nothing is allocated),
/// so a writer can decide what fits in a frame before building it.
pub fn payload_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, WireError> {
    postcard::experimental::serialized_size(value).map_err(WireError::Encode)
}

/// Encodes `value` as one frame (header included) whose payload is at most `max` bytes. A
/// larger one is refused before its payload is built: a frame the receiver would refuse
/// (and drop the connection for) is never made.
pub fn encode_bounded<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Vec<u8>, WireError> {
    // The header's length field is 32 bits: nothing longer can be framed at all.
    let max = max.min(u32::MAX as usize);
    let len = payload_len(value)?;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut out = Vec::with_capacity(8 + len);
    out.extend_from_slice(&[0u8; 8]);
    postcard::to_io(value, &mut out).map_err(WireError::Encode)?;
    debug_assert_eq!(
        out.len() - 8,
        len,
        "postcard's size pass and encoding disagree"
    );
    let len = (out.len() - 8) as u32;
    let crc = crc32c::crc32c(&out[8..]);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Encodes `value` as one frame (header included).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let payload = postcard::to_allocvec(value).expect("encoding into a Vec cannot fail");
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes one whole frame produced by [`encode`].
pub fn decode<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, WireError> {
    if frame.len() < 8 {
        return Err(WireError::Decode(postcard::Error::DeserializeUnexpectedEnd));
    }
    let len = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let payload = &frame[8..];
    if payload.len() != len {
        return Err(WireError::Decode(postcard::Error::DeserializeUnexpectedEnd));
    }
    check_and_decode(frame[4..8].try_into().expect("4 bytes"), payload)
}

fn check_and_decode<T: DeserializeOwned>(crc: [u8; 4], payload: &[u8]) -> Result<T, WireError> {
    if crc32c::crc32c(payload) != u32::from_le_bytes(crc) {
        return Err(WireError::Checksum);
    }
    Ok(postcard::from_bytes(payload)?)
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), WireError> {
    w.write_all(&encode(value)).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame of at most `max` payload bytes.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<T, WireError> {
    let mut header = [0u8; 8];
    r.read_exact(&mut header).await?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    check_and_decode(header[4..8].try_into().expect("4 bytes"), &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Hello { name: String, n: u64 },
        Bye,
    }

    #[test]
    fn bounded_encoding_matches_encode_and_refuses_oversized_values() {
        let m = Msg::Hello {
            name: "x".repeat(100),
            n: 7,
        };
        let len = payload_len(&m).unwrap();
        assert_eq!(encode(&m).len(), 8 + len);
        assert_eq!(encode_bounded(&m, len).unwrap(), encode(&m));
        assert!(matches!(
            encode_bounded(&m, len - 1),
            Err(WireError::TooLarge { len: l, max }) if l == len && max == len - 1
        ));
    }

    #[test]
    fn round_trip() {
        let m = Msg::Hello {
            name: "é".into(),
            n: 1 << 40,
        };
        assert_eq!(decode::<Msg>(&encode(&m), DEFAULT_MAX_FRAME).unwrap(), m);
    }

    #[test]
    fn corruption_is_detected() {
        let mut f = encode(&Msg::Hello {
            name: "abc".into(),
            n: 3,
        });
        let last = f.len() - 1;
        f[last] ^= 0x40;
        assert!(matches!(
            decode::<Msg>(&f, DEFAULT_MAX_FRAME),
            Err(WireError::Checksum)
        ));
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let f = encode(&Msg::Bye);
        assert!(matches!(
            decode::<Msg>(&f, 0),
            Err(WireError::TooLarge { .. })
        ));
        assert!(decode::<Msg>(&f[..f.len() - 1], DEFAULT_MAX_FRAME).is_err());
        assert!(decode::<Msg>(&[1, 2, 3], DEFAULT_MAX_FRAME).is_err());
        // A valid checksum over garbage must still be a decode error, not a panic.
        let garbage = [0xFFu8; 5];
        let mut g = (garbage.len() as u32).to_le_bytes().to_vec();
        g.extend_from_slice(&crc32c::crc32c(&garbage).to_le_bytes());
        g.extend_from_slice(&garbage);
        assert!(matches!(
            decode::<Msg>(&g, DEFAULT_MAX_FRAME),
            Err(WireError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn frames_over_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for n in 0..3 {
                write_frame(
                    &mut a,
                    &Msg::Hello {
                        name: "x".repeat(100),
                        n,
                    },
                )
                .await
                .unwrap();
            }
        });
        for n in 0..3 {
            let m: Msg = read_frame(&mut b, DEFAULT_MAX_FRAME).await.unwrap();
            assert_eq!(
                m,
                Msg::Hello {
                    name: "x".repeat(100),
                    n
                }
            );
        }
        writer.await.unwrap();
        let huge = (u32::MAX).to_le_bytes();
        let (mut c, mut d) = tokio::io::duplex(64);
        c.write_all(&huge).await.unwrap();
        c.write_all(&[0; 4]).await.unwrap();
        assert!(matches!(
            read_frame::<_, Msg>(&mut d, 1024).await,
            Err(WireError::TooLarge { .. })
        ));
    }
}
