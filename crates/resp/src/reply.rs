//! Decoding replies (any RESP2/RESP3 value): for clients, tests and tools, not the server's
//! hot path.

use crate::decoder::length_line;
use crate::num::parse_i64;
use crate::{Byte, Limits, RespError, Value};

/// How deeply aggregates may nest in a decoded reply. Decoding recurses once per level, so
/// input like `*1\r\n*1\r\n...` must not be able to exhaust the stack; Redis's own replies
/// nest a handful of levels at most.
pub const MAX_REPLY_DEPTH: usize = 128;

/// Decodes one value of any RESP2 or RESP3 type at the start of `buf`: `Ok(Some((value, n)))`
/// when it is complete (it used `n` bytes), `Ok(None)` when more input is needed.
///
/// Unlike [`Decoder`](crate::Decoder) this keeps no state and re-reads a partial value from the
/// start on each call, which is fine for replies of ordinary size. Lengths are checked against
/// `limits` (maps count `max_array_len` pairs). `$-1` decodes to [`Value::Null`], `*-1` to
/// [`Value::NullArray`], RESP3 `_` to [`Value::Null`] and a RESP3 blob error (`!`) to
/// [`Value::Error`]. Attributes (`|`) decode with the reply that follows them, as one
/// [`Value::Attribute`].
pub fn decode_value(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    ReplyParser { buf, limits }.value(0, 0)
}

struct ReplyParser<'a> {
    buf: &'a [u8],
    limits: &'a Limits,
}

impl ReplyParser<'_> {
    fn value(&self, at: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
        let Some(&kind) = self.buf.get(at) else {
            return Ok(None);
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.scalar(kind, at + 1),
            b'$' | b'=' | b'!' => self.blob(kind, at + 1),
            b'*' | b'%' | b'~' | b'>' | b'|' => self.aggregate(kind, at + 1, depth),
            other => Err(RespError::UnknownType(Byte(other))),
        }
    }

    /// A one-line value: its text runs up to the first CR, which must start a CRLF.
    fn scalar(&self, kind: u8, at: usize) -> Result<Option<(Value, usize)>, RespError> {
        let rest = &self.buf[at.min(self.buf.len())..];
        let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
            return Ok(None);
        };
        match rest.get(cr + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(RespError::MissingCrlf("line")),
        }
        let value = scalar_value(kind, &rest[..cr])?;
        Ok(Some((value, at + cr + 2)))
    }

    /// A length-prefixed string: bulk (`$`), verbatim (`=`) or blob error (`!`).
    fn blob(&self, kind: u8, at: usize) -> Result<Option<(Value, usize)>, RespError> {
        let Some((line, start)) = length_line(self.buf, at, "bulk")? else {
            return Ok(None);
        };
        if kind == b'$' && line == b"-1" {
            return Ok(Some((Value::Null, start)));
        }
        let len = parse_i64(line)
            .filter(|&len| len >= 0)
            .ok_or(RespError::InvalidBulkLength)?;
        let max = self.limits.max_bulk_len;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or(RespError::BulkTooLong { len, max })?;
        let end = start.saturating_add(len);
        if self.buf.len() < end.saturating_add(2) {
            return Ok(None);
        }
        if &self.buf[end..end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf("bulk data"));
        }
        let data = self.buf[start..end].to_vec();
        Ok(Some((blob_value(kind, data)?, end + 2)))
    }

    /// An array (`*`), map (`%`), set (`~`), push (`>`), or attributes (`|`) with the reply
    /// after them.
    fn aggregate(
        &self,
        kind: u8,
        at: usize,
        depth: usize,
    ) -> Result<Option<(Value, usize)>, RespError> {
        let Some((line, mut next)) = length_line(self.buf, at, "mbulk")? else {
            return Ok(None);
        };
        if kind == b'*' && line == b"-1" {
            return Ok(Some((Value::NullArray, next)));
        }
        if depth >= MAX_REPLY_DEPTH {
            return Err(RespError::TooDeep(MAX_REPLY_DEPTH));
        }
        let count = parse_i64(line)
            .filter(|&n| n >= 0)
            .ok_or(RespError::InvalidMultibulkLength)?;
        let max = self.limits.max_array_len;
        let count = usize::try_from(count)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(RespError::TooManyArguments { len: count, max })?;
        let items_count = if kind == b'%' || kind == b'|' {
            count * 2
        } else {
            count
        };
        let mut items = Vec::with_capacity(items_count.min(1024));
        for _ in 0..items_count {
            let Some((item, after)) = self.value(next, depth + 1)? else {
                return Ok(None);
            };
            items.push(item);
            next = after;
        }
        if kind == b'|' {
            let Some((value, after)) = self.value(next, depth + 1)? else {
                return Ok(None);
            };
            let (attrs, value) = (pairs(items), Box::new(value));
            return Ok(Some((Value::Attribute { attrs, value }, after)));
        }
        Ok(Some((aggregate_value(kind, items), next)))
    }
}

fn scalar_value(kind: u8, text: &[u8]) -> Result<Value, RespError> {
    let utf8 = |what| {
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| RespError::Invalid(what))
    };
    Ok(match kind {
        b'+' => Value::Simple(utf8("simple string")?),
        b'-' => Value::Error(utf8("error")?),
        b':' => Value::Integer(parse_i64(text).ok_or(RespError::Invalid("integer"))?),
        b'_' if text.is_empty() => Value::Null,
        b'_' => return Err(RespError::Invalid("null")),
        b',' => Value::Double(
            utf8("double")?
                .parse()
                .map_err(|_| RespError::Invalid("double"))?,
        ),
        b'#' => match text {
            b"t" => Value::Boolean(true),
            b"f" => Value::Boolean(false),
            _ => return Err(RespError::Invalid("boolean")),
        },
        _ => {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(RespError::Invalid("big number"));
            }
            Value::BigNumber(utf8("big number")?)
        }
    })
}

fn blob_value(kind: u8, data: Vec<u8>) -> Result<Value, RespError> {
    Ok(match kind {
        b'$' => Value::Bulk(data),
        b'!' => Value::Error(String::from_utf8(data).map_err(|_| RespError::Invalid("error"))?),
        _ => match data.get(..4) {
            Some([a, b, c, b':']) => Value::Verbatim {
                format: [*a, *b, *c],
                text: data[4..].to_vec(),
            },
            _ => return Err(RespError::Invalid("verbatim string")),
        },
    })
}

fn aggregate_value(kind: u8, items: Vec<Value>) -> Value {
    match kind {
        b'*' => Value::Array(items),
        b'~' => Value::Set(items),
        b'>' => Value::Push(items),
        _ => Value::Map(pairs(items)),
    }
}

/// `k1 v1 k2 v2 …` as pairs.
fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        pairs.push((k, v));
    }
    pairs
}
