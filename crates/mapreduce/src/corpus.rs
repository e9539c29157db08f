//! A seeded generator of English-like text, so tests and demos need nothing beside the repo.
//!
//! Words follow a Zipf law (frequency ∝ 1/rank^1.07, as natural language roughly does): the
//! top ranks are real English function words, the rest pseudo-words built from syllables, about
//! 2% with accented letters. Sentences of 4–24 words start with a capital and end in `.`, `!` or
//! `?`, with commas, semicolons and occasional quotes; lines wrap near 72 columns and paragraphs
//! are separated by blank lines. The same seed always gives the same bytes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::MrError;

const COMMON: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "that", "he", "was", "it", "his", "is", "with", "as", "i",
    "had", "for", "at", "by", "on", "not", "be", "from", "but", "she", "her", "you", "which", "or",
    "all", "they", "were", "my", "this", "one", "so", "said", "have", "there", "an", "him", "me",
    "we", "no", "what", "would", "when", "been", "if", "are", "who", "out", "their", "up", "them",
    "then", "into", "more", "could", "will", "little", "some", "man", "time", "upon",
];
const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w", "th", "st", "br",
    "ch", "sh", "gr", "",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee", "oo"];
const CODAS: &[&str] = &["", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "rt", "m"];
const ACCENTED: &[&str] = &["é", "è", "ü", "ö", "ä", "ß", "ñ", "ç", "å"];

/// A generator of text in one vocabulary.
pub struct Corpus {
    vocab: Vec<String>,
    /// Cumulative Zipf weights, for sampling by binary search.
    cdf: Vec<f64>,
    rng: ChaCha8Rng,
}

impl Corpus {
    pub fn new(seed: u64, vocab_size: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vocab: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
        let mut seen: std::collections::BTreeSet<String> = vocab.iter().cloned().collect();
        while vocab.len() < vocab_size.max(COMMON.len()) {
            let w = pseudo_word(&mut rng);
            if seen.insert(w.clone()) {
                vocab.push(w);
            }
        }
        let mut total = 0.0;
        let cdf = (1..=vocab.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.07);
                total
            })
            .collect();
        Corpus { vocab, cdf, rng }
    }

    fn word(&mut self) -> &str {
        let u = self.rng.gen::<f64>() * self.cdf[self.cdf.len() - 1];
        let i = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.vocab.len() - 1);
        &self.vocab[i]
    }

    /// Writes about `bytes` bytes of text (whole lines) to `out`.
    pub fn write_text(&mut self, out: &mut impl Write, bytes: u64) -> std::io::Result<()> {
        let mut written = 0u64;
        let mut line = String::with_capacity(96);
        let mut lines_in_paragraph = 0;
        let mut paragraph_len = self.rng.gen_range(4..13);
        while written < bytes {
            let sentence = self.sentence();
            for token in sentence.split(' ') {
                if !line.is_empty() && line.len() + 1 + token.len() > 72 {
                    line.push('\n');
                    out.write_all(line.as_bytes())?;
                    written += line.len() as u64;
                    line.clear();
                    lines_in_paragraph += 1;
                    if lines_in_paragraph == paragraph_len {
                        out.write_all(b"\n")?;
                        written += 1;
                        lines_in_paragraph = 0;
                        paragraph_len = self.rng.gen_range(4..13);
                    }
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(token);
            }
        }
        if !line.is_empty() {
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    fn sentence(&mut self) -> String {
        let n = self.rng.gen_range(4..25);
        let quoted = self.rng.gen_bool(0.08);
        let mut s = String::new();
        if quoted {
            s.push('"');
        }
        for i in 0..n {
            let w = self.word().to_string();
            if i == 0 {
                let mut cs = w.chars();
                if let Some(c) = cs.next() {
                    s.extend(c.to_uppercase());
                    s.push_str(cs.as_str());
                }
            } else {
                s.push(' ');
                s.push_str(&w);
            }
            if i + 1 < n {
                match self.rng.gen_range(0..100) {
                    0..=7 => s.push(','),
                    8 => s.push(';'),
                    _ => {}
                }
            }
        }
        s.push(match self.rng.gen_range(0..10) {
            0 => '!',
            1 => '?',
            _ => '.',
        });
        if quoted {
            s.push('"');
        }
        s
    }
}

fn pseudo_word(rng: &mut ChaCha8Rng) -> String {
    let syllables = rng.gen_range(1..4);
    let mut w = String::new();
    for _ in 0..syllables {
        w.push_str(ONSETS[rng.gen_range(0..ONSETS.len())]);
        if rng.gen_bool(0.02) {
            w.push_str(ACCENTED[rng.gen_range(0..ACCENTED.len())]);
        } else {
            w.push_str(VOWELS[rng.gen_range(0..VOWELS.len())]);
        }
        w.push_str(CODAS[rng.gen_range(0..CODAS.len())]);
    }
    w
}

/// Writes `files` files of about `bytes_per_file` bytes each into `dir`, named
/// `<prefix>-NN.txt`; returns their paths. File k uses seed `seed + k` over one shared
/// vocabulary, so files differ but share words, as books do.
pub fn generate(
    dir: &Path,
    prefix: &str,
    files: usize,
    bytes_per_file: u64,
    seed: u64,
) -> Result<Vec<PathBuf>, MrError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| MrError::io(format!("cannot create {}", dir.display()), e))?;
    let base = Corpus::new(seed, 30_000);
    let mut paths = Vec::new();
    for k in 0..files {
        let path = dir.join(format!("{prefix}-{k:02}.txt"));
        let mut gen = Corpus {
            vocab: base.vocab.clone(),
            cdf: base.cdf.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64 + 1)),
        };
        let f = std::fs::File::create(&path)
            .map_err(|e| MrError::io(format!("cannot create {}", path.display()), e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        gen.write_text(&mut w, bytes_per_file)
            .and_then(|_| w.flush())
            .map_err(|e| MrError::io(format!("cannot write {}", path.display()), e))?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::words;

    fn text(seed: u64, bytes: u64) -> String {
        let mut out = Vec::new();
        Corpus::new(seed, 5000).write_text(&mut out, bytes).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn same_seed_same_text_and_size_is_respected() {
        assert_eq!(text(3, 10_000), text(3, 10_000));
        assert_ne!(text(3, 10_000), text(4, 10_000));
        let t = text(3, 50_000);
        assert!((50_000..50_200).contains(&t.len()), "{} bytes", t.len());
        assert!(t.lines().all(|l| l.len() <= 100), "lines wrap");
        assert!(t.contains("\n\n"), "paragraphs");
    }

    #[test]
    fn word_frequencies_are_zipf_like() {
        let t = text(5, 400_000);
        let mut counts = std::collections::HashMap::new();
        for w in words(&t) {
            *counts.entry(w.to_lowercase()).or_insert(0u64) += 1;
        }
        let mut freq: Vec<u64> = counts.values().copied().collect();
        freq.sort_unstable_by(|a, b| b.cmp(a));
        // Rank 1 is about 10× rank 10 and 100× rank 100 under Zipf (s ≈ 1).
        let (r1, r10, r100) = (freq[0] as f64, freq[9] as f64, freq[99] as f64);
        assert!((5.0..20.0).contains(&(r1 / r10)), "r1/r10 = {}", r1 / r10);
        assert!(
            (40.0..250.0).contains(&(r1 / r100)),
            "r1/r100 = {}",
            r1 / r100
        );
        assert!(counts.keys().any(|w| !w.is_ascii()), "some accented words");
    }
}
