//! Reading and writing snapshots as streams: a state of gigabytes is encoded straight into
//! the spool's writer and decoded record by record from the snapshot's reader, never held
//! as one more buffer beside the state.
//!
//! Snapshots keep their postcard layout (the bytes are those `postcard::to_allocvec` of
//! the same values gives), so a snapshot written by a build that encoded into one buffer
//! restores in one that streams, and back.
//!
//! Nothing read from a stream decides an allocation on its own: [`Decoder::decode`] parses
//! what it has buffered and reads more only when the value goes on past it, so a length
//! that promises more than the stream holds ends in an error once the stream ends, after at
//! most twice the bytes actually present were buffered; [`Decoder::bytes`] reserves at most
//! [`RESERVE_CAP`] before the bytes arrive.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::machine::SnapshotError;

/// Bytes read ahead at a time.
const CHUNK: usize = 64 * 1024;

/// The most [`Decoder::bytes`] reserves for a byte string before its bytes arrive: a length
/// read from a corrupt stream costs at most this much before the stream runs out.
pub const RESERVE_CAP: usize = 64 << 20;

/// Reads a snapshot stream: postcard values ([`Decoder::decode`]), varints, byte strings,
/// and, through [`Read`], whatever follows (a machine's own bytes after the replica's
/// header).
pub struct Decoder<R> {
    inner: R,
    /// Bytes read from `inner` and not yet consumed: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// `inner` returned end of stream.
    eof: bool,
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R) -> Self {
        Decoder {
            inner,
            buf: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads until at least `want` bytes are buffered or the stream ends.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        if self.buffered().len() >= want || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let missing = want - self.buf.len();
        // `read_to_end` grows the buffer as bytes arrive, not by what was asked for.
        let got = (&mut self.inner)
            .take(missing as u64)
            .read_to_end(&mut self.buf)?;
        if got < missing {
            self.eof = true;
        }
        Ok(())
    }

    /// Whether the stream has nothing left.
    pub fn at_end(&mut self) -> io::Result<bool> {
        self.fill(1)?;
        Ok(self.buffered().is_empty())
    }

    /// The next postcard-encoded value.
    pub fn decode<T: DeserializeOwned>(&mut self) -> Result<T, SnapshotError> {
        loop {
            match postcard::take_from_bytes::<T>(self.buffered()) {
                Ok((value, rest)) => {
                    self.pos = self.buf.len() - rest.len();
                    return Ok(value);
                }
                // Postcard reads exactly what a value needs, so a value cut short by the end
                // of the buffer fails only this way: read more and parse again (doubling, so
                // a value of n bytes costs O(n) parsing in all).
                Err(postcard::Error::DeserializeUnexpectedEnd) if !self.eof => {
                    let want = (self.buffered().len() * 2).max(CHUNK);
                    self.fill(want).map_err(read_error)?;
                }
                Err(e) => return Err(SnapshotError(format!("cannot decode it: {e}"))),
            }
        }
    }

    /// The next varint (postcard's encoding of integers and lengths).
    pub fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut n = 0u64;
        for i in 0..10 {
            self.fill(1).map_err(read_error)?;
            let Some(&byte) = self.buffered().first() else {
                return Err(truncated());
            };
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                break;
            }
            n |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(SnapshotError("a varint longer than 64 bits".to_owned()))
    }

    /// The next byte string: a varint length, then the bytes.
    pub fn byte_string(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let len = self.varint()?;
        self.bytes(len)
    }

    /// The next `len` bytes, in a buffer of exactly that size (reserved up to
    /// [`RESERVE_CAP`] ahead of their arrival, grown as they arrive beyond).
    pub fn bytes(&mut self, len: u64) -> Result<Vec<u8>, SnapshotError> {
        let want = usize::try_from(len).map_err(|_| truncated())?;
        let mut out = Vec::with_capacity(want.min(RESERVE_CAP));
        let have = self.buffered().len().min(want);
        out.extend_from_slice(&self.buffered()[..have]);
        self.pos += have;
        if out.len() < want {
            let rest = (want - out.len()) as u64;
            (&mut self.inner)
                .take(rest)
                .read_to_end(&mut out)
                .map_err(read_error)?;
        }
        if out.len() < want {
            return Err(truncated());
        }
        if out.capacity() > out.len() {
            out.shrink_to_fit();
        }
        Ok(out)
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffered().is_empty() {
            // Large reads go straight through (a machine's values), small ones read ahead.
            if out.len() >= CHUNK || self.eof {
                return self.inner.read(out);
            }
            self.fill(CHUNK)?;
        }
        let n = self.buffered().len().min(out.len());
        out[..n].copy_from_slice(&self.buffered()[..n]);
        self.pos += n;
        Ok(n)
    }
}

fn truncated() -> SnapshotError {
    SnapshotError("it ends early".to_owned())
}

fn read_error(e: io::Error) -> SnapshotError {
    SnapshotError(format!("cannot read it: {e}"))
}

/// Writes `n` as a varint (postcard's encoding of integers and lengths).
pub fn write_varint(out: &mut dyn Write, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = byte;
            return out.write_all(&buf[..=i]);
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

/// Bytes of the varint encoding of `n`: 7 bits a byte.
pub fn varint_len(n: u64) -> u64 {
    u64::from((u64::BITS - (n | 1).leading_zeros()).div_ceil(7))
}

/// Writes `value` postcard-encoded (a small value: it is encoded in memory first).
pub fn write_value<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    let bytes = postcard::to_allocvec(value).map_err(io::Error::other)?;
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes a call, so values straddle every boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(3);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn varints_and_values_read_back_as_postcard_wrote_them() {
        let values: Vec<u64> = vec![0, 1, 127, 128, 16_383, 16_384, u64::MAX / 3, u64::MAX];
        let mut out = Vec::new();
        for &v in &values {
            write_varint(&mut out, v).unwrap();
            assert_eq!(
                postcard::to_allocvec(&v).unwrap().len() as u64,
                varint_len(v)
            );
        }
        write_value(&mut out, &("text".to_owned(), vec![7u64; 100_000])).unwrap();
        out.extend_from_slice(b"tail");
        let mut d = Decoder::new(Trickle(&out));
        for &v in &values {
            assert_eq!(d.varint().unwrap(), v);
        }
        let (s, v): (String, Vec<u64>) = d.decode().unwrap();
        assert_eq!((s.as_str(), v.len()), ("text", 100_000));
        let mut tail = Vec::new();
        d.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, b"tail");
        assert!(d.at_end().unwrap());
    }

    /// A length far beyond what the stream holds is an error, found without reserving it.
    #[test]
    fn lengths_past_the_end_are_errors_not_allocations() {
        let mut out = Vec::new();
        write_varint(&mut out, u64::MAX).unwrap();
        out.extend_from_slice(b"abc");
        assert!(Decoder::new(&out[..]).byte_string().is_err());
        let mut out = Vec::new();
        write_varint(&mut out, 1 << 40).unwrap();
        assert!(Decoder::new(&out[..]).decode::<Vec<u8>>().is_err());
        assert!(Decoder::new(&[0xff; 11][..]).varint().is_err());
        assert!(Decoder::new(&[][..]).varint().is_err());
    }
}
