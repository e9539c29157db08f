//! One file's writes that are not yet durable, kept in memory over its backing file.
//!
//! The backing file holds exactly what a disk would have after a power loss: the contents and
//! size as of the file's last fsync (or as created). Everything written since lives here, in
//! whole 4 KiB page images, and reads see it. `sync` writes it into the backing file;
//! `crash` forgets it, or, torn, writes a random subset of the pages first.
//!
//! Invariants (checked by the tests below):
//! 1. The file's contents as seen by a reader are: for each byte below `size`, the cached
//!    page's byte if its page is cached, else the backing file's byte if it is below
//!    `low_water`, else zero.
//! 2. `low_water` ≤ the backing file's length when the cache was made: it is the smallest
//!    size the file had since then, so backing bytes at or above it were cut off by a
//!    truncation and must read as zeros if the file grew again.
//! 3. A cached page's bytes at or past `size` are zero (a truncation zeroes them), so growing
//!    the file again reads zeros there, as it must.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit a torn crash keeps or loses: a page, as a disk writes back page-cache pages.
pub const PAGE: u64 = 4096;

/// A deterministic random source for torn crashes (SplitMix64: tiny, seedable, and good
/// enough to pick pages; the crate needs no other randomness).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// What a torn crash did to one file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Unsynced pages written to the backing file.
    pub kept: u64,
    /// Unsynced pages forgotten.
    pub lost: u64,
}

/// The unsynced state of one file (see the module docs for its invariants).
#[derive(Debug)]
pub struct FileCache {
    /// The backing file, open for reading and writing (kept so the cache can be synced or
    /// torn even after every handle is closed or the name unlinked).
    file: File,
    /// The size a reader sees.
    size: u64,
    /// Backing bytes at or above this offset are hidden (invariant 2).
    low_water: u64,
    /// Page index → the page's current contents.
    pages: BTreeMap<u64, Box<[u8]>>,
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break, // past the backing file's end: the rest stays zero
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl FileCache {
    /// A cache over `file`, which is its backing file as of now (its last durable state).
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileCache {
            file,
            size: len,
            low_water: len,
            pages: BTreeMap::new(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Unsynced pages held.
    pub fn dirty_pages(&self) -> usize {
        self.pages.len()
    }

    /// Up to `len` bytes at `offset`, as a reader sees them (invariant 1).
    pub fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = self.size.min(offset.saturating_add(len));
        let mut buf = vec![0u8; (end - offset) as usize];
        if offset < self.low_water {
            let visible = (self.low_water.min(end) - offset) as usize;
            read_full_at(&self.file, &mut buf[..visible], offset)?;
        }
        for (&p, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = p * PAGE;
            let from = start.max(offset);
            let to = (start + PAGE).min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&page[(from - start) as usize..(to - start) as usize]);
        }
        Ok(buf)
    }

    /// Writes `data` at `offset` into the cache (nothing reaches the backing file).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        for p in offset / PAGE..=(end - 1) / PAGE {
            let start = p * PAGE;
            if !self.pages.contains_key(&p) {
                let mut image = vec![0u8; PAGE as usize];
                let current = self.read(start, PAGE)?;
                image[..current.len()].copy_from_slice(&current);
                self.pages.insert(p, image.into_boxed_slice());
            }
            let page = self.pages.get_mut(&p).expect("inserted above");
            let from = start.max(offset);
            let to = (start + PAGE).min(end);
            page[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size to `len` (truncating or growing with zeros), in the cache only.
    pub fn set_len(&mut self, len: u64) {
        if len < self.size {
            self.pages.retain(|&p, _| p * PAGE < len);
            if !len.is_multiple_of(PAGE) {
                if let Some(page) = self.pages.get_mut(&(len / PAGE)) {
                    page[(len % PAGE) as usize..].fill(0); // invariant 3
                }
            }
            self.low_water = self.low_water.min(len);
        }
        self.size = len;
    }

    /// Makes everything durable: the backing file gets the cached contents and size, and is
    /// fsynced. The cache is empty afterwards.
    pub fn sync(&mut self) -> io::Result<()> {
        let all: Vec<u64> = self.pages.keys().copied().collect();
        self.apply(true, self.size, &all)?;
        self.file.sync_all()?;
        let len = self.size;
        self.pages.clear();
        self.low_water = len;
        Ok(())
    }

    /// A torn power loss: each unsynced page survives or not (a fair coin each), the size
    /// reaches the disk or not, a pending truncation reaches it or not. What the backing file
    /// is left holding is what a disk without ordering guarantees can hold.
    pub fn tear(self, rng: &mut SplitMix64) -> io::Result<Torn> {
        let keep_cut = rng.coin();
        let backing = self.file.metadata()?.len();
        let after_cut = if keep_cut { self.low_water } else { backing };
        let size = if rng.coin() { self.size } else { after_cut };
        let mut torn = Torn::default();
        let mut kept = Vec::new();
        for &p in self.pages.keys() {
            if rng.coin() {
                kept.push(p);
                torn.kept += 1;
            } else {
                torn.lost += 1;
            }
        }
        self.apply(keep_cut, size, &kept)?;
        Ok(torn)
    }

    /// Writes `pages` (clipped to `size`) into the backing file, cutting it to `low_water`
    /// first if `cut`, and leaves it `size` long.
    fn apply(&self, cut: bool, size: u64, pages: &[u64]) -> io::Result<()> {
        if cut && self.file.metadata()?.len() > self.low_water {
            self.file.set_len(self.low_water)?;
        }
        for p in pages {
            let start = p * PAGE;
            if start >= size {
                continue;
            }
            let n = (size - start).min(PAGE) as usize;
            self.file.write_all_at(&self.pages[p][..n], start)?;
        }
        if self.file.metadata()?.len() != size {
            self.file.set_len(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn backing(content: &[u8]) -> (tempfile::NamedTempFile, FileCache) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(f.path())
            .unwrap();
        (f, FileCache::new(file).unwrap())
    }

    fn on_disk(f: &tempfile::NamedTempFile) -> Vec<u8> {
        std::fs::read(f.path()).unwrap()
    }

    #[test]
    fn reads_see_unsynced_writes_and_the_backing_file_does_not() {
        let (f, mut c) = backing(b"hello world");
        c.write(6, b"there, friend").unwrap();
        assert_eq!(c.read(0, 100).unwrap(), b"hello there, friend");
        assert_eq!(on_disk(&f), b"hello world");
        c.sync().unwrap();
        assert_eq!(on_disk(&f), b"hello there, friend");
        assert_eq!(c.dirty_pages(), 0);
    }

    #[test]
    fn truncate_then_grow_reads_zeros_not_the_old_bytes() {
        let (f, mut c) = backing(&[7u8; 10_000]);
        c.write(100, b"x").unwrap(); // page 0 cached
        c.set_len(50);
        c.set_len(9000);
        let got = c.read(0, 20_000).unwrap();
        assert_eq!(got.len(), 9000);
        assert!(got[..50].iter().all(|&b| b == 7));
        assert!(
            got[50..].iter().all(|&b| b == 0),
            "old bytes showed through"
        );
        c.sync().unwrap();
        assert_eq!(on_disk(&f), got);
    }

    #[test]
    fn writes_across_pages_and_past_the_end() {
        let (f, mut c) = backing(b"abc");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        c.write(5000, &data).unwrap();
        let got = c.read(0, 20_000).unwrap();
        assert_eq!(got.len(), 15_000);
        assert_eq!(&got[..3], b"abc");
        assert!(got[3..5000].iter().all(|&b| b == 0));
        assert_eq!(&got[5000..], &data[..]);
        assert_eq!(c.read(6000, 10).unwrap(), &data[1000..1010]);
        c.sync().unwrap();
        assert_eq!(on_disk(&f), got);
    }

    #[test]
    fn torn_keeps_a_subset_of_whole_pages() {
        let base = vec![1u8; 8 * PAGE as usize];
        for seed in 0..20 {
            let (f, mut c) = backing(&base);
            c.write(0, &vec![2u8; 8 * PAGE as usize]).unwrap();
            let torn = c.tear(&mut SplitMix64::new(seed)).unwrap();
            assert_eq!(torn.kept + torn.lost, 8);
            let disk = on_disk(&f);
            assert_eq!(disk.len(), base.len());
            let mut kept = 0;
            for page in disk.chunks(PAGE as usize) {
                assert!(
                    page.iter().all(|&b| b == 1) || page.iter().all(|&b| b == 2),
                    "seed {seed}: a page mixes old and new bytes"
                );
                kept += u64::from(page[0] == 2);
            }
            assert_eq!(kept, torn.kept, "seed {seed}");
        }
    }
}
