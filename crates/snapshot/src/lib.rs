//! The bytes of a snapshot, wherever they live: shared by the Raft core, the processes
//! that drive it and the storage that keeps it.
//!
//! A snapshot may be gigabytes, and the core never needs all of it at once: a leader reads
//! it one chunk at a time to send it, a follower appends chunks as they arrive. So the core
//! holds a snapshot as a [`SnapshotData`]: bytes in memory (the simulator, tests, small
//! services) or a [`SnapshotSource`] a driver provides (a file on disk, read with positioned
//! reads, so a replica's memory holds its state once, not its state and a copy of it). It
//! builds a snapshot that arrives in chunks through a [`SnapshotSpool`] the driver gives it:
//! memory by default ([`MemorySpool`]), temporary files for a deployed node, which its
//! storage then installs by renaming rather than copying.
//!
//! These are the Raft core's only seam to storage. A source is immutable: the same offset reads
//! the same bytes for as long as any [`SnapshotData`] refers to it. With in-memory
//! snapshots and the memory spool the core stays a pure function of its inputs; a source or
//! spool that fails (a disk error) only delays a transfer, which the core retries as it
//! would after a lost message.

use std::any::Any;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;

/// Immutable snapshot bytes kept outside memory (a file), read in pieces.
pub trait SnapshotSource: Send + Sync + fmt::Debug + Any {
    /// The snapshot's length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset` (`offset + buf.len() <= len()`).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// For a driver to recognise a source of its own (a spool file it can rename into
    /// place instead of copying).
    fn as_any(&self) -> &dyn Any;
}

/// A snapshot's bytes: shared, cheap to clone, read whole ([`SnapshotData::reader`]) or in
/// chunks ([`SnapshotData::chunk`]).
#[derive(Clone)]
pub struct SnapshotData(Repr);

#[derive(Clone)]
enum Repr {
    Memory(Bytes),
    Source(Arc<dyn SnapshotSource>),
}

impl SnapshotData {
    /// A snapshot kept by `source`.
    pub fn from_source(source: Arc<dyn SnapshotSource>) -> Self {
        SnapshotData(Repr::Source(source))
    }

    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Memory(b) => b.len() as u64,
            Repr::Source(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `len` bytes at `offset`: a shared view for a snapshot in memory, a read for one in
    /// a source. A range past the end is an `InvalidInput` error.
    pub fn chunk(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&end| end <= self.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "snapshot range {offset}+{len} past its end at {}",
                        self.len()
                    ),
                )
            })?;
        match &self.0 {
            Repr::Memory(b) => Ok(b.slice(offset as usize..end as usize)),
            Repr::Source(_) if len == 0 => Ok(Bytes::new()),
            Repr::Source(s) => {
                let mut buf = vec![0; len];
                s.read_exact_at(&mut buf, offset)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Reads the snapshot from its first byte.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            data: self.clone(),
            pos: 0,
        }
    }

    /// The bytes, if the snapshot is in memory.
    pub fn in_memory(&self) -> Option<&Bytes> {
        match &self.0 {
            Repr::Memory(b) => Some(b),
            Repr::Source(_) => None,
        }
    }

    /// The source, if the snapshot is kept by one.
    pub fn source(&self) -> Option<&Arc<dyn SnapshotSource>> {
        match &self.0 {
            Repr::Memory(_) => None,
            Repr::Source(s) => Some(s),
        }
    }

    /// All the bytes in memory: shared if they are there already, read otherwise. For small
    /// snapshots and tests; a large one is better read with [`SnapshotData::reader`].
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match &self.0 {
            Repr::Memory(b) => Ok(b.clone()),
            Repr::Source(s) => {
                let len = usize::try_from(s.len()).map_err(io::Error::other)?;
                self.chunk(0, len)
            }
        }
    }
}

impl Default for SnapshotData {
    fn default() -> Self {
        SnapshotData(Repr::Memory(Bytes::new()))
    }
}

impl From<Bytes> for SnapshotData {
    fn from(b: Bytes) -> Self {
        SnapshotData(Repr::Memory(b))
    }
}

impl From<Vec<u8>> for SnapshotData {
    fn from(v: Vec<u8>) -> Self {
        SnapshotData(Repr::Memory(Bytes::from(v)))
    }
}

impl From<&'static [u8]> for SnapshotData {
    fn from(s: &'static [u8]) -> Self {
        SnapshotData(Repr::Memory(Bytes::from_static(s)))
    }
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Memory(b) => write!(f, "SnapshotData(memory, {} bytes)", b.len()),
            Repr::Source(s) => write!(f, "SnapshotData({s:?})"),
        }
    }
}

/// Two snapshots in memory are equal if their bytes are; two kept by sources if they are the
/// same source (comparing would mean reading them); one of each never.
impl PartialEq for SnapshotData {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Memory(a), Repr::Memory(b)) => a == b,
            (Repr::Source(a), Repr::Source(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for SnapshotData {}

/// Reads a [`SnapshotData`] in order ([`SnapshotData::reader`]).
#[derive(Debug)]
pub struct SnapshotReader {
    data: SnapshotData,
    pos: u64,
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.data.len() - self.pos;
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        match &self.data.0 {
            Repr::Memory(b) => {
                let start = self.pos as usize;
                buf[..n].copy_from_slice(&b[start..start + n]);
            }
            Repr::Source(s) => s.read_exact_at(&mut buf[..n], self.pos)?,
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where snapshots being built are written: memory, or a driver's temporary files.
pub trait SnapshotSpool: Send + Sync + fmt::Debug {
    /// Starts a snapshot expected to be `size_hint` bytes long (exact when it is known, as
    /// for one arriving from a leader; 0 when not).
    fn create(&self, size_hint: u64) -> io::Result<Box<dyn SnapshotWriter>>;
}

/// A snapshot being written ([`SnapshotSpool::create`]).
pub trait SnapshotWriter: Write + Send {
    /// Ends the snapshot: its bytes are complete (and, for a file, durable) and readable as
    /// one [`SnapshotData`]. Dropping a writer without finishing discards what it wrote.
    fn finish(self: Box<Self>) -> io::Result<SnapshotData>;
}

/// The spool that keeps snapshots in memory (the core's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemorySpool;

impl SnapshotSpool for MemorySpool {
    fn create(&self, size_hint: u64) -> io::Result<Box<dyn SnapshotWriter>> {
        let mut buf = Vec::new();
        // A hint from a leader's message is untrusted: reserve only what memory allows.
        let reserved = usize::try_from(size_hint)
            .ok()
            .is_some_and(|n| buf.try_reserve_exact(n).is_ok());
        if !reserved {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot reserve {size_hint} bytes for a snapshot"),
            ));
        }
        Ok(Box::new(MemoryWriter(buf)))
    }
}

struct MemoryWriter(Vec<u8>);

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SnapshotWriter for MemoryWriter {
    fn finish(self: Box<Self>) -> io::Result<SnapshotData> {
        // A buffer filled to its reserved capacity converts without a copy.
        Ok(SnapshotData::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that serves a fixed buffer through positioned reads, as a file would.
    #[derive(Debug)]
    struct Fixed(Vec<u8>);

    impl SnapshotSource for Fixed {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            buf.copy_from_slice(&self.0[o..o + buf.len()]);
            Ok(())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn chunks_and_readers_see_the_same_bytes_in_memory_and_in_a_source() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for data in [
            SnapshotData::from(bytes.clone()),
            SnapshotData::from_source(Arc::new(Fixed(bytes.clone()))),
        ] {
            assert_eq!(data.len(), 10_000);
            assert_eq!(&data.chunk(9_000, 1_000).unwrap()[..], &bytes[9_000..]);
            assert_eq!(&data.chunk(10_000, 0).unwrap()[..], b"");
            assert!(data.chunk(9_001, 1_000).is_err());
            assert!(data.chunk(u64::MAX, 2).is_err());
            let mut all = Vec::new();
            data.reader().read_to_end(&mut all).unwrap();
            assert_eq!(all, bytes);
            assert_eq!(&data.to_bytes().unwrap()[..], &bytes[..]);
        }
    }

    #[test]
    fn a_memory_chunk_is_a_view_not_a_copy() {
        let data = SnapshotData::from(vec![7u8; 4096]);
        let chunk = data.chunk(1024, 1024).unwrap();
        let base = data.in_memory().unwrap().as_ptr() as usize;
        assert_eq!(chunk.as_ptr() as usize, base + 1024);
    }

    #[test]
    fn the_memory_spool_gives_back_what_was_written_and_refuses_absurd_sizes() {
        let mut w = MemorySpool.create(5).unwrap();
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo").unwrap();
        assert_eq!(w.finish().unwrap(), SnapshotData::from(b"hello".to_vec()));
        assert!(MemorySpool.create(u64::MAX).is_err());
    }
}
