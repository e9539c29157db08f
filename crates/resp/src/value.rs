//! Reply values and their encoding in RESP2 or RESP3.

/// Which protocol a connection speaks. Every connection starts in RESP2; `HELLO 3` switches it
/// to RESP3 (and `HELLO 2` back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: the only types are simple string, error, integer, bulk string and array.
    #[default]
    Resp2,
    /// RESP3: adds null, map, set, double, boolean, big number, verbatim string and push.
    Resp3,
}

impl Protocol {
    /// The protocol for a `HELLO` version number, if Redis knows it (2 or 3).
    pub fn from_version(version: i64) -> Option<Protocol> {
        match version {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => None,
        }
    }

    /// The version number `HELLO` reports (`proto` field).
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply (or, for a client, a request) in RESP. The RESP3-only variants are rendered in their
/// RESP2 form on a RESP2 connection (see [`encode`]), so the router can build one value and
/// send it to either kind of client.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Value {
    /// `+OK`. Must not contain CR or LF; [`encode`] replaces them with spaces, as Redis does,
    /// so that a reply echoing user input cannot break the framing.
    Simple(String),
    /// `-ERR message`: the first word is the error code (`ERR`, `WRONGTYPE`, `NOPROTO`...).
    /// CR and LF are replaced as for [`Value::Simple`].
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`: binary-safe.
    Bulk(Vec<u8>),
    /// A missing value, e.g. `GET` of an absent key: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*2\r\n...`.
    Array(Vec<Value>),
    /// RESP3 `%`; in RESP2 a flat array `k1 v1 k2 v2 ...`.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~`; in RESP2 an array.
    Set(Vec<Value>),
    /// RESP3 `,1.5`; in RESP2 a bulk string (`"1.5"`, `"inf"`, `"nan"`).
    Double(f64),
    /// RESP3 `#t`/`#f`; in RESP2 the integer 1 or 0.
    Boolean(bool),
    /// RESP3 `(12345678901234567890` (decimal digits, optional sign); in RESP2 a bulk string.
    BigNumber(String),
    /// RESP3 `=` with a three-letter format (`txt`, `mkd`); in RESP2 a bulk string of `text`.
    Verbatim { format: [u8; 3], text: Vec<u8> },
    /// RESP3 `>` out-of-band data (pub/sub messages); in RESP2 an array.
    Push(Vec<Value>),
    /// RESP3 `|`: attributes (data about the reply, as `key-popularity`) followed by the reply
    /// itself; in RESP2 only the reply, as Redis sends it.
    Attribute {
        attrs: Vec<(Value, Value)>,
        value: Box<Value>,
    },
    /// Pairs as Redis 7 replies them (ZRANGE … WITHSCORES, ZPOPMIN with a count, HRANDFIELD …
    /// WITHVALUES): RESP3 an array of two-element arrays, RESP2 one flat array `k1 v1 k2 v2`.
    /// (Last, so that the variants before it keep their serialized indices.)
    Pairs(Vec<(Value, Value)>),
    /// A map that Redis 7 sends as an array of `[key, value]` arrays in RESP2 (XREAD's
    /// streams): RESP3 `%`, RESP2 `*n` of `*2`.
    KeyedPairs(Vec<(Value, Value)>),
}

/// Equality as a reply's bytes compare: replies are compared in tests and in exactly-once
/// records, where a double is a value a command computed, never NaN (Redis replies "nan" only
/// as a bulk string), so `==` is reflexive on every reply that exists.
impl Eq for Value {}

impl Value {
    /// `+OK`.
    pub fn ok() -> Value {
        Value::Simple("OK".to_owned())
    }

    /// A simple string.
    pub fn simple(s: impl Into<String>) -> Value {
        Value::Simple(s.into())
    }

    /// An error; `message` should start with its code, e.g. `"ERR no such key"`.
    pub fn error(message: impl Into<String>) -> Value {
        Value::Error(message.into())
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(data.into())
    }

    /// An array of bulk strings: how requests are sent, and how e.g. `CONFIG GET` replies.
    pub fn bulk_array<I, B>(items: I) -> Value
    where
        I: IntoIterator<Item = B>,
        B: Into<Vec<u8>>,
    {
        Value::Array(items.into_iter().map(|b| Value::Bulk(b.into())).collect())
    }

    /// The value's encoding in `proto`, as a new buffer.
    pub fn to_bytes(&self, proto: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        encode(self, proto, &mut out);
        out
    }
}

/// Appends the encoding of `value` in `proto` to `out`.
///
/// On a RESP2 connection the RESP3-only types take the form Redis gives them: map → flat
/// array, set and push → array, null → `$-1` ([`Value::Null`]) or `*-1`
/// ([`Value::NullArray`]), boolean → integer, double, big number and verbatim string → bulk
/// string, attributes left out (only the reply they come with).
pub fn encode(value: &Value, proto: Protocol, out: &mut Vec<u8>) {
    let resp3 = proto == Protocol::Resp3;
    match value {
        Value::Simple(s) => line(out, b'+', s.as_bytes()),
        Value::Error(s) => line(out, b'-', s.as_bytes()),
        Value::Integer(n) => header(out, b':', *n),
        Value::Bulk(b) => bulk(out, b'$', b),
        Value::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Value::Null => out.extend_from_slice(b"$-1\r\n"),
        Value::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(items) => aggregate(out, b'*', items, proto),
        Value::Map(pairs) => map(out, pairs, proto),
        Value::Pairs(pairs) if resp3 => {
            header(out, b'*', len_i64(pairs.len()));
            for (k, v) in pairs {
                out.extend_from_slice(b"*2\r\n");
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Value::Pairs(pairs) => map(out, pairs, proto),
        Value::KeyedPairs(pairs) if resp3 => map(out, pairs, proto),
        Value::KeyedPairs(pairs) => {
            header(out, b'*', len_i64(pairs.len()));
            for (k, v) in pairs {
                out.extend_from_slice(b"*2\r\n");
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Value::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Value::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Value::Double(d) if resp3 => line(out, b',', format_double(*d).as_bytes()),
        Value::Double(d) => bulk(out, b'$', format_double(*d).as_bytes()),
        Value::Boolean(b) if resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::Boolean(b) => header(out, b':', i64::from(*b)),
        Value::BigNumber(n) if resp3 => line(out, b'(', n.as_bytes()),
        Value::BigNumber(n) => bulk(out, b'$', n.as_bytes()),
        Value::Verbatim { format, text } if resp3 => verbatim(out, format, text),
        Value::Verbatim { text, .. } => bulk(out, b'$', text),
        Value::Attribute { attrs, value } => {
            if resp3 {
                header(out, b'|', len_i64(attrs.len()));
                for (k, v) in attrs {
                    encode(k, proto, out);
                    encode(v, proto, out);
                }
            }
            encode(value, proto, out);
        }
    }
}

/// `<kind><text>\r\n`, with CR and LF in `text` turned into spaces (Redis does the same for
/// error messages, which may quote user input).
fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// `<kind><n>\r\n`: integers and the length line of bulks and aggregates.
fn header(out: &mut Vec<u8>, kind: u8, n: i64) {
    out.push(kind);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    header(out, kind, len_i64(data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn verbatim(out: &mut Vec<u8>, format: &[u8; 3], text: &[u8]) {
    header(out, b'=', len_i64(text.len() + 4));
    out.extend_from_slice(format);
    out.push(b':');
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, kind: u8, items: &[Value], proto: Protocol) {
    header(out, kind, len_i64(items.len()));
    for item in items {
        encode(item, proto, out);
    }
}

fn map(out: &mut Vec<u8>, pairs: &[(Value, Value)], proto: Protocol) {
    match proto {
        Protocol::Resp3 => header(out, b'%', len_i64(pairs.len())),
        Protocol::Resp2 => header(out, b'*', len_i64(pairs.len() * 2)),
    }
    for (k, v) in pairs {
        encode(k, proto, out);
        encode(v, proto, out);
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).expect("a length that fits in memory fits in i64")
}

/// Writes `n` in decimal without allocating: this runs once per reply and per bulk.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// Formats a double as Redis 7.0 replies one (`addReplyDouble`, also ZSCAN's `d2string`):
/// C's `%.17g` (17 significant digits, trailing zeros dropped, exponent form below 1e-4 and
/// from 1e17 with a signed two-digit exponent: `1.1000000000000001`, `1e+20`), and
/// `inf`/`-inf`/`nan`. Every output reads back as the same number.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if d == 0.0 {
        return "0".to_owned();
    }
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    // `%e` at precision 16 fixes the exponent `%g` chooses by (C's rule, P = 17).
    let sci = format!("{d:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.unsigned_abs())
    } else {
        trim(&format!("{d:.*}", (16 - exp) as usize)).to_owned()
    }
}
