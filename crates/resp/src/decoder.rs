//! The incremental request decoder: bytes from a client in, argument vectors out.

use crate::inline::split_inline;
use crate::num::parse_i64;
use crate::{Byte, RespError};

/// Bounds on what one request may declare, checked before anything is allocated for it, so a
/// hostile or broken client gets an error instead of making the server reserve memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest bulk string (`$<len>`) accepted: one key or value, in bytes. Redis's
    /// `proto-max-bulk-len` defaults to 512 MiB.
    pub max_bulk_len: usize,
    /// The most arguments (`*<count>`) one request may have. Redis 7 allows `INT_MAX` (before
    /// 7.0, 1024 * 1024).
    pub max_array_len: usize,
    /// The longest inline request line, in bytes, and so how far the decoder looks for its
    /// newline. Redis's `PROTO_INLINE_MAX_SIZE` is 64 KiB.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_len: 512 << 20,
            max_array_len: 1 << 20,
            max_inline_len: 64 << 10,
        }
    }
}

impl Limits {
    /// What a client that has not yet authenticated may send, as Redis limits it (since 6.2.6,
    /// CVE-2021-32675): at most 10 arguments of at most 16 KiB each, enough for `AUTH`,
    /// `HELLO 3 AUTH user pass SETNAME name` and `QUIT`. Without these, anyone who can connect
    /// makes the server hold a whole declared bulk before it has checked a password. Inline
    /// requests keep Redis's 64 KiB (it does not lower that one either).
    pub const UNAUTHENTICATED: Limits = Limits {
        max_bulk_len: 16 << 10,
        max_array_len: 10,
        max_inline_len: 64 << 10,
    };
}

/// How many bytes a `*<count>` or `$<len>` line may take before its CRLF. Twenty digits and a
/// sign cover every i64; a longer line is garbage, and bounding it keeps each call's rescan of
/// a pending length line O(1).
const MAX_LENGTH_LINE: usize = 32;

/// The largest `*<count>` Redis itself accepts (`INT_MAX`). A count above it is answered in
/// Redis's words ("invalid multibulk length"), before Flotilla's own, tighter limits are
/// checked, as Redis checks it before its unauthenticated limit: a client sees Redis's reply
/// wherever Redis would refuse, and Flotilla's plain words only where its limits differ.
const REDIS_MAX_ARRAY_LEN: i64 = i32::MAX as i64;

/// The largest `$<len>` Redis accepts by default (`proto-max-bulk-len`, 512 MiB); above it,
/// "invalid bulk length" as Redis answers, as for [`REDIS_MAX_ARRAY_LEN`].
const REDIS_MAX_BULK_LEN: i64 = 512 << 20;

/// Arguments preallocated for a multibulk request, whatever its header claims: a header alone
/// must not make the server reserve `max_array_len` slots.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// Decodes requests from a client's byte stream: both the multibulk form every client library
/// sends (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`).
///
/// # Contract
///
/// The caller keeps a buffer of received, unconsumed bytes and calls [`Decoder::decode`] with
/// all of it:
///
/// * `Ok(Some((args, n)))`: one request; drop the first `n` bytes of the buffer, then call again
///   (more requests may already be there: pipelining). `args` is never empty.
/// * `Ok(None)`: the request is incomplete; read more, append, call again with the whole buffer.
///   The decoder remembers how far it got, so a request arriving in many pieces is scanned once
///   overall (O(n)), not from its start on every call. Between calls the caller may only append.
/// * `Err(e)`: the stream is not valid RESP or breaks a [`Limits`] bound. Send
///   [`RespError::to_value`] and close the connection; the decoder is not to be used again.
///
/// Empty requests (`*0\r\n`, `*-1\r\n`, blank inline lines) are skipped, as Redis does; their
/// bytes are included in the `n` of the next request. The decoder bounds each request, not the
/// buffer: the caller should close a connection whose buffer grows past
/// `max_bulk_len + max_inline_len` or so without yielding a request.
///
/// A decoder made with [`Decoder::before_auth`] enforces smaller limits until the caller says
/// the client has authenticated, and reports breaches of them in Redis's words
/// (`unauthenticated bulk length`).
#[derive(Debug, Clone)]
pub struct Decoder {
    /// The bounds every request is checked against now.
    limits: Limits,
    /// The bounds that replace `limits` once the client authenticates: `Some` exactly while
    /// the client has not (and `limits` are the smaller, unauthenticated ones).
    after_auth: Option<Limits>,
    /// Offset in the caller's buffer of the first byte not yet turned into an argument (or
    /// skipped): where the next call resumes.
    pos: usize,
    /// The arguments of the multibulk request in progress, or `None` between requests.
    args: Option<Vec<Vec<u8>>>,
    /// How many more arguments the multibulk request in progress declared.
    remaining: usize,
    /// For an inline request in progress: the offset up to which no newline was found, so the
    /// next call searches only the new bytes.
    inline_scanned: usize,
}

/// One decoded request and the number of buffer bytes it used.
pub type Request = (Vec<Vec<u8>>, usize);

impl Decoder {
    /// A decoder that enforces `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            after_auth: None,
            pos: 0,
            args: None,
            remaining: 0,
            inline_scanned: 0,
        }
    }

    /// A decoder for a client that must authenticate before anything else: it enforces
    /// `before` (usually [`Limits::UNAUTHENTICATED`]) until [`Decoder::authenticated`] is
    /// called, then `limits`.
    pub fn before_auth(limits: Limits, before: Limits) -> Decoder {
        Decoder {
            after_auth: Some(limits),
            ..Decoder::new(before)
        }
    }

    /// The client has authenticated: lengths read from now on are checked against the full
    /// limits. Call it between requests (after the request that authenticated was decoded and
    /// run, before decoding the next), so that a pipelined request after `AUTH` is judged by
    /// the limits of an authenticated client, as Redis judges it. Does nothing if the limits
    /// were never lowered.
    pub fn authenticated(&mut self) {
        if let Some(limits) = self.after_auth.take() {
            self.limits = limits;
        }
    }

    /// The limits this decoder enforces now.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the next request at the start of `buf`; see the [contract](Decoder#contract).
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than the part of it the previous call already decoded: the caller
    /// dropped bytes it had not been told were consumed.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<Request>, RespError> {
        assert!(
            buf.len() >= self.pos,
            "Decoder::decode: buffer shrank to {} bytes below the {} already decoded",
            buf.len(),
            self.pos
        );
        loop {
            if self.args.is_some() {
                return self.multibulk_args(buf);
            }
            let Some(&first) = buf.get(self.pos) else {
                return Ok(None);
            };
            let found = if first == b'*' {
                self.multibulk_header(buf)?
            } else {
                self.inline(buf)?
            };
            match found {
                Step::Pending => return Ok(None),
                Step::Skipped | Step::Started => continue,
                Step::Done(args) => return Ok(Some(self.finish(args))),
            }
        }
    }

    /// Reads `*<count>\r\n` at `pos` and starts collecting `count` arguments.
    fn multibulk_header(&mut self, buf: &[u8]) -> Result<Step, RespError> {
        let Some((line, next)) = length_line(buf, self.pos + 1, "mbulk")? else {
            return Ok(Step::Pending);
        };
        let count = parse_i64(line)
            .filter(|&count| count <= REDIS_MAX_ARRAY_LEN)
            .ok_or(RespError::InvalidMultibulkLength)?;
        self.pos = next;
        if count <= 0 {
            // Redis ignores `*0` and `*-1` requests rather than failing the connection.
            return Ok(Step::Skipped);
        }
        let max = self.limits.max_array_len;
        let count =
            usize::try_from(count)
                .ok()
                .filter(|&c| c <= max)
                .ok_or(match self.after_auth {
                    Some(_) => RespError::UnauthenticatedMultibulkLength { len: count, max },
                    None => RespError::TooManyArguments { len: count, max },
                })?;
        self.remaining = count;
        self.args = Some(Vec::with_capacity(count.min(MAX_PREALLOCATED_ARGS)));
        Ok(Step::Started)
    }

    /// Collects the remaining `$<len>\r\n<data>\r\n` arguments of the request in progress.
    fn multibulk_args(&mut self, buf: &[u8]) -> Result<Option<Request>, RespError> {
        while self.remaining > 0 {
            let Some((arg, next)) = self.bulk(buf)? else {
                return Ok(None);
            };
            self.args.get_or_insert_with(Vec::new).push(arg);
            self.pos = next;
            self.remaining -= 1;
        }
        let args = self.args.take().unwrap_or_default();
        Ok(Some(self.finish(args)))
    }

    /// One bulk argument at `pos`, once all of it has arrived. Its length line is re-read on
    /// each call while the payload is pending; that line is at most [`MAX_LENGTH_LINE`] bytes,
    /// and the payload itself is neither scanned nor copied until it is complete.
    fn bulk(&self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, RespError> {
        let Some(&first) = buf.get(self.pos) else {
            return Ok(None);
        };
        if first != b'$' {
            return Err(RespError::ExpectedBulk(Byte(first)));
        }
        let Some((line, start)) = length_line(buf, self.pos + 1, "bulk")? else {
            return Ok(None);
        };
        let len = parse_i64(line)
            .filter(|len| (0..=REDIS_MAX_BULK_LEN).contains(len))
            .ok_or(RespError::InvalidBulkLength)?;
        let max = self.limits.max_bulk_len;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or(match self.after_auth {
                Some(_) => RespError::UnauthenticatedBulkLength { len, max },
                None => RespError::BulkTooLong { len, max },
            })?;
        let end = start.saturating_add(len);
        if buf.len() < end.saturating_add(2) {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf("bulk data"));
        }
        Ok(Some((buf[start..end].to_vec(), end + 2)))
    }

    /// Reads an inline request line at `pos`, searching only bytes not searched before.
    fn inline(&mut self, buf: &[u8]) -> Result<Step, RespError> {
        let max = self.limits.max_inline_len;
        let from = self.inline_scanned.max(self.pos);
        // Look no further than the limit (plus the newline itself): a client that never sends
        // one is cut off after max_inline_len bytes, not when memory runs out.
        let until = buf
            .len()
            .min(self.pos.saturating_add(max).saturating_add(1));
        let Some(newline) = buf[from..until].iter().position(|&b| b == b'\n') else {
            if buf.len() - self.pos > max {
                return Err(RespError::InlineTooLong { max });
            }
            self.inline_scanned = buf.len();
            return Ok(Step::Pending);
        };
        let newline = from + newline;
        let line = &buf[self.pos..newline];
        // Redis accepts a bare LF as well as CRLF (telnet, `echo PING | nc`).
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = split_inline(line)?;
        self.pos = newline + 1;
        self.inline_scanned = 0;
        Ok(if args.is_empty() {
            Step::Skipped
        } else {
            Step::Done(args)
        })
    }

    /// Hands out a complete request and resets for the next one, which starts at offset 0 of
    /// the caller's buffer once it drops the bytes consumed.
    fn finish(&mut self, args: Vec<Vec<u8>>) -> Request {
        let consumed = self.pos;
        self.pos = 0;
        self.remaining = 0;
        self.inline_scanned = 0;
        self.args = None;
        (args, consumed)
    }
}

/// What one step of decoding achieved.
enum Step {
    /// More input is needed.
    Pending,
    /// An empty request was skipped; `pos` moved past it.
    Skipped,
    /// A multibulk header was read; its arguments follow.
    Started,
    /// A whole inline request.
    Done(Vec<Vec<u8>>),
}

/// The text of a length line starting at `at` (just after its `*` or `$`) and the offset after
/// its CRLF; `None` until the CRLF has arrived. `kind` names the line in errors.
pub(crate) fn length_line<'a>(
    buf: &'a [u8],
    at: usize,
    kind: &'static str,
) -> Result<Option<(&'a [u8], usize)>, RespError> {
    let window = &buf[at.min(buf.len())..buf.len().min(at + MAX_LENGTH_LINE + 2)];
    match window.iter().position(|&b| b == b'\r') {
        Some(cr) if cr + 1 == window.len() => Ok(None),
        Some(cr) if window[cr + 1] == b'\n' => Ok(Some((&window[..cr], at + cr + 2))),
        Some(_) => Err(RespError::MissingCrlf("length")),
        None if window.len() > MAX_LENGTH_LINE => Err(RespError::LengthLineTooLong(kind)),
        None => Ok(None),
    }
}
