//! Word count and inverted index, with the lab's exact semantics: a word is a maximal run of
//! Unicode letters (Go's `unicode.IsLetter`: general categories Lu, Ll, Lt, Lm, Lo).

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use unicode_general_category::{get_general_category, GeneralCategory as G};

use super::App;

fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// The words of `text`, in order: maximal runs of letters.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        // Skip non-letters, then take letters. ASCII bytes are checked without decoding.
        let start = loop {
            if pos >= bytes.len() {
                return None;
            }
            let (is_l, len) = letter_at(text, bytes, pos);
            if is_l {
                break pos;
            }
            pos += len;
        };
        loop {
            if pos >= bytes.len() {
                break;
            }
            let (is_l, len) = letter_at(text, bytes, pos);
            if !is_l {
                break;
            }
            pos += len;
        }
        Some(&text[start..pos])
    })
}

/// Whether the char at byte `pos` is a letter, and its UTF-8 length.
#[inline]
fn letter_at(text: &str, bytes: &[u8], pos: usize) -> (bool, usize) {
    let b = bytes[pos];
    if b < 0x80 {
        return (b.is_ascii_alphabetic(), 1);
    }
    let c = text[pos..]
        .chars()
        .next()
        .expect("pos is on a char boundary");
    (is_letter(c), c.len_utf8())
}

/// How often each word occurs in `text`: the tokenize + count step of `wc`, and the per-core
/// ceiling `flotilla mr bench` measures. FxHash, because SipHash's DoS resistance buys nothing
/// for counting one's own input and costs a third of the time.
pub fn count_words(text: &str) -> FxHashMap<&str, u64> {
    let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
    for w in words(text) {
        *counts.entry(w).or_insert(0) += 1;
    }
    counts
}

/// `wc`: the count of each word over all inputs. The map side counts within its file (an
/// in-mapper combiner) and reduce sums, which gives the lab's output with far less data.
pub struct WordCount;

impl App for WordCount {
    fn map(&self, _filename: &str, contents: &str, emit: &mut dyn FnMut(String, String)) {
        for (w, n) in count_words(contents) {
            emit(w.to_string(), n.to_string());
        }
    }

    fn reduce(&self, key: &str, values: Vec<String>) -> String {
        let total: u64 = values
            .iter()
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("wc: value {v:?} for {key:?} is not a count"))
            })
            .sum();
        total.to_string()
    }
}

/// `indexer`: for each word, how many documents contain it and which, as `"N d1,d2,..."`.
pub struct Indexer;

impl App for Indexer {
    fn map(&self, filename: &str, contents: &str, emit: &mut dyn FnMut(String, String)) {
        let distinct: BTreeSet<&str> = words(contents).collect();
        for w in distinct {
            emit(w.to_string(), filename.to_string());
        }
    }

    fn reduce(&self, _key: &str, mut values: Vec<String>) -> String {
        values.sort();
        format!("{} {}", values.len(), values.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_maximal_letter_runs_including_unicode() {
        let got: Vec<&str> = words("Hello, wörld! it's 42x straße—ǅemal ٣ 日本語 Ⅻ ʰi").collect();
        // Ⅻ is a letter-number (Nl), ٣ a digit: neither is a letter. ʰ is a modifier letter (Lm).
        assert_eq!(
            got,
            vec![
                "Hello",
                "wörld",
                "it",
                "s",
                "x",
                "straße",
                "ǅemal",
                "日本語",
                "ʰi"
            ]
        );
        assert_eq!(words("").count(), 0);
        assert_eq!(words("123 ... ").count(), 0);
    }

    #[test]
    fn combining_marks_split_words_as_in_go() {
        // U+0301 COMBINING ACUTE ACCENT is Mn, not a letter: Go splits "e\u{301}t" into e, t.
        let got: Vec<&str> = words("caf\u{301}e").collect();
        assert_eq!(got, vec!["caf", "e"]);
    }

    #[test]
    fn wc_map_counts_and_reduce_sums() {
        let mut out = Vec::new();
        WordCount.map("f", "a b a", &mut |k, v| out.push((k, v)));
        out.sort();
        assert_eq!(
            out,
            vec![("a".into(), "2".into()), ("b".into(), "1".into())]
        );
        assert_eq!(WordCount.reduce("a", vec!["2".into(), "5".into()]), "7");
    }

    #[test]
    fn indexer_lists_sorted_documents_once() {
        let mut out = Vec::new();
        Indexer.map("doc2", "x y x", &mut |k, v| out.push((k, v)));
        assert_eq!(
            out,
            vec![("x".into(), "doc2".into()), ("y".into(), "doc2".into())]
        );
        assert_eq!(
            Indexer.reduce("x", vec!["doc2".into(), "doc1".into()]),
            "2 doc1,doc2"
        );
    }
}
