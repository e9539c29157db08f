//! Inline requests: one line of space-separated words, as typed in `telnet` or `nc`.

use crate::RespError;

/// Splits one inline request line (without its newline) into arguments the way Redis's
/// `sdssplitargs` does, so that what works against Redis by hand works here:
///
/// * words are separated by spaces, tabs, CR or LF (runs of them count once);
/// * `"..."` quotes a word and understands `\n \r \t \b \a \\ \"` and `\xHH`;
/// * `'...'` quotes a word literally, except `\'`;
/// * a closing quote must be followed by a space or the end of the line.
///
/// An empty or blank line yields no arguments; Redis ignores such lines. A NUL byte ends the
/// line, because `sdssplitargs` reads it as a C string.
pub(crate) fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p == line.len() {
            return Ok(args);
        }
        let (word, next) = match line[p] {
            b'"' => double_quoted(line, p + 1)?,
            b'\'' => single_quoted(line, p + 1)?,
            _ => bare(line, p)?,
        };
        args.push(word);
        p = next;
    }
}

/// C's `isspace`, which `sdssplitargs` uses to skip between words.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// An unquoted word starting at `p`. A quote inside it opens a quoted part that finishes the
/// same word (`a"b c"` is one word `ab c`), as in `sdssplitargs`.
fn bare(line: &[u8], mut p: usize) -> Result<(Vec<u8>, usize), RespError> {
    let start = p;
    while p < line.len() && !matches!(line[p], b' ' | b'\n' | b'\r' | b'\t' | b'"' | b'\'') {
        p += 1;
    }
    let mut word = line[start..p].to_vec();
    let quoted = match line.get(p) {
        Some(b'"') => double_quoted(line, p + 1)?,
        Some(b'\'') => single_quoted(line, p + 1)?,
        _ => return Ok((word, p)),
    };
    word.extend_from_slice(&quoted.0);
    Ok((word, quoted.1))
}

/// The body of a `"..."` word starting just after the opening quote; returns the word and the
/// position after the closing quote.
fn double_quoted(line: &[u8], mut p: usize) -> Result<(Vec<u8>, usize), RespError> {
    let mut word = Vec::new();
    loop {
        let &c = line.get(p).ok_or(RespError::UnbalancedQuotes)?;
        match (c, line.get(p + 1).copied()) {
            (b'\\', Some(b'x')) if hex_pair(line, p + 2).is_some() => {
                word.push(hex_pair(line, p + 2).unwrap_or_default());
                p += 4;
            }
            (b'\\', Some(e)) => {
                word.push(match e {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                p += 2;
            }
            (b'"', next) => return closed(next, p + 1).map(|end| (word, end)),
            _ => {
                word.push(c);
                p += 1;
            }
        }
    }
}

/// The body of a `'...'` word starting just after the opening quote.
fn single_quoted(line: &[u8], mut p: usize) -> Result<(Vec<u8>, usize), RespError> {
    let mut word = Vec::new();
    loop {
        let &c = line.get(p).ok_or(RespError::UnbalancedQuotes)?;
        match (c, line.get(p + 1).copied()) {
            (b'\\', Some(b'\'')) => {
                word.push(b'\'');
                p += 2;
            }
            (b'\'', next) => return closed(next, p + 1).map(|end| (word, end)),
            _ => {
                word.push(c);
                p += 1;
            }
        }
    }
}

/// A closing quote must end the word: `"a"b` is an error in Redis, not `ab`.
fn closed(next: Option<u8>, end: usize) -> Result<usize, RespError> {
    match next {
        Some(b) if !is_space(b) => Err(RespError::UnbalancedQuotes),
        _ => Ok(end),
    }
}

fn hex_pair(line: &[u8], p: usize) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    let hi = digit(*line.get(p)?)?;
    let lo = digit(*line.get(p + 1)?)?;
    u8::try_from(hi * 16 + lo).ok()
}
