//! The Redis protocol (RESP2) wire layer: request parsing and reply encoding.
//!
//! This module owns the bytes-on-the-wire format of the Redis front door and
//! nothing else: it does no I/O, holds no per-connection state and knows no
//! command semantics. The connection loop reads into a [`BytesMut`], calls
//! [`parse_command`] until it returns `Ok(None)`, and writes replies built as
//! [`Frame`]s with [`Frame::encode`].
//!
//! Parsing follows Redis's own `processMultibulkBuffer` / `processInlineBuffer`
//! (`networking.c`) and `sdssplitargs` (`sds.c`), so clients and tools that
//! talk to Redis (including `redis-cli` and people typing into `telnet`) see
//! the same behaviour and the same `-ERR Protocol error: ...` texts. Where we
//! differ, we are stricter, so that every decision depends only on the bytes
//! seen so far (never on how they were split into reads) and untrusted input
//! never makes us buffer or allocate more than the configured [`Limits`]:
//!
//! - a `*`/`$` header line is rejected as soon as it holds a byte that cannot
//!   be part of a valid length, instead of after 64 KiB without a `\r`;
//! - `*<n>` with `n < -1` is an error (Redis treats any `n <= 0` as empty);
//! - the two bytes after a bulk payload must be `\r\n` (Redis skips them
//!   unchecked);
//! - an inline line longer than `max_inline_len` is refused even when its
//!   newline arrived in the same read (Redis only checks when it is missing);
//! - a NUL byte in an inline line is an ordinary byte (C's `strchr` and
//!   `sdssplitargs` would stop at it).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Longest digit string a valid `*`/`$` header can carry: `-9223372036854775808`.
const MAX_HEADER_DIGITS: usize = 20;

/// Limits applied before anything is allocated.
///
/// Every length the client declares is checked against these before it is
/// trusted, and nothing is sized from a declared length: memory only grows
/// with bytes that have actually arrived.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most arguments one multibulk (or inline) command may have.
    pub max_args: usize,
    /// Longest single bulk string argument, in bytes.
    pub max_bulk_len: usize,
    /// Longest inline command line, in bytes, not counting its line ending.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Redis accepts up to INT_MAX arguments; a million is far beyond any
            // real command (even a big MSET) and keeps the argv bounded.
            max_args: 1_048_576,
            max_bulk_len: 8 * 1024 * 1024,
            // Redis's PROTO_INLINE_MAX_SIZE.
            max_inline_len: 64 * 1024,
        }
    }
}

/// A malformed request. The caller sends `-ERR <Display text>` and closes the
/// connection, as Redis does: after a framing error the stream cannot be
/// resynchronised.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The `*<n>` line is not a valid count.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$<n>` line is not a valid, non-negative length.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk command does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", DisplayByte(*.0))]
    ExpectedBulk(u8),
    /// The two bytes after a bulk payload are not `\r\n`.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    UnterminatedBulk,
    /// An inline command line is longer than [`Limits::max_inline_len`].
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command has an unclosed quote, or a closing quote followed by
    /// something other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More arguments than [`Limits::max_args`].
    #[error("Protocol error: too many arguments (limit {limit})")]
    TooManyArgs {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A bulk string longer than [`Limits::max_bulk_len`].
    #[error("Protocol error: bulk string too long (limit {limit} bytes)")]
    BulkTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

/// Shows an offending byte in an error text. Redis prints it raw with `%c`;
/// we escape anything unprintable so the reply line stays one valid line.
struct DisplayByte(u8);

impl fmt::Display for DisplayByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

/// Parses one command from the front of `buf`.
///
/// - `Ok(Some(args))`: a complete command; its bytes are removed from `buf`.
///   Multibulk arguments are zero-copy slices of the received bytes; inline
///   arguments are too unless quoting forced an unescaped copy. An empty
///   command (a blank inline line, `*0` or a negative count) is `Ok(Some(vec![]))`, which
///   the caller ignores, as Redis does.
/// - `Ok(None)`: the command is incomplete and `buf` is untouched; read more
///   and call again. Re-parsing a partial multibulk command walks only its
///   headers (a few bytes per argument), never the payloads.
/// - `Err(_)`: the request is malformed; reply with the error and close.
///   `buf` is left untouched, but nothing after the error can be trusted.
///
/// The outcome depends only on the bytes in `buf`, never on how they were
/// split into reads. Stateless: a command that arrives over many reads is
/// walked again from its start each time; a connection uses a [`Parser`],
/// which resumes where it stopped.
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ParseError> {
    Parser::default().next(buf, limits)
}

/// A connection's parser: [`parse_command`] that remembers how far it got
/// into an incomplete multibulk command, so a command arriving over many
/// reads (a 60,000-member SADD) costs one pass over its headers, not one
/// per read.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    partial: Option<Partial>,
    /// Where the arguments checked so far lie in the buffer (start, length).
    spans: Vec<(usize, usize)>,
}

/// How much of an incomplete multibulk command has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partial {
    count: usize,
    /// Where the next argument's header starts.
    pos: usize,
    /// Arguments checked so far.
    seen: usize,
}

impl Parser {
    /// Like [`parse_command`], resuming an incomplete command. `buf` must
    /// be the same buffer, with more bytes appended, between calls.
    pub fn next(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ParseError> {
        let mut args = Vec::new();
        Ok(self.next_into(buf, limits, &mut args)?.then_some(args))
    }

    /// Like [`Parser::next`], into `args` (cleared first, its room kept for
    /// the next command: a connection allocates no list per command); true
    /// if a command was parsed.
    pub fn next_into(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ParseError> {
        // A huge command's room is not kept for the small ones after it.
        if args.capacity() > 1024 {
            *args = Vec::new();
        }
        args.clear();
        // Like Redis, the first byte of each request picks the format.
        let r = match buf.first() {
            None => Ok(false),
            Some(b'*') => self.multibulk(buf, limits, args),
            Some(_) => parse_inline(buf, limits).map(|got| got.map(|got| *args = got).is_some()),
        };
        if !matches!(r, Ok(false)) {
            self.partial = None;
            if self.spans.capacity() > 1024 {
                self.spans = Vec::new();
            }
            self.spans.clear();
        }
        r
    }

    /// Parses a `*<n>\r\n` followed by n × `$<len>\r\n<bytes>\r\n`.
    fn multibulk(&mut self, buf: &mut BytesMut, limits: &Limits, args: &mut Vec<Bytes>) -> Result<bool, ParseError> {
        // Validate and measure, noting where each argument lies, without
        // touching `buf`: an incomplete command costs no copy, and its
        // walk resumes where it stopped.
        let spans = &mut self.spans;
        let total = match walk_multibulk(buf, limits, self.partial, |start, len| spans.push((start, len)))? {
            Walk::Done { total } => total,
            Walk::Partial(p) => {
                self.partial = p;
                return Ok(false);
            }
        };
        // The frame is complete: its arguments are slices of it.
        let frame = buf.split_to(total).freeze();
        args.extend(self.spans.iter().map(|&(start, len)| frame.slice(start..start + len)));
        Ok(true)
    }
}

/// Where a walk over a multibulk command ended.
enum Walk {
    Done {
        total: usize,
    },
    /// Incomplete; how far it got (`None`: not even the count line).
    Partial(Option<Partial>),
}

/// Walks the multibulk command at the start of `buf` (from where `resume`
/// says an earlier walk stopped), calling `on_arg(start, len)` for each
/// argument's payload it passes. Returns the command's total length, or how
/// far it got if it is incomplete.
///
/// Every check is made as soon as the bytes it needs are present, so an error
/// is reported at the same point however the input was chunked.
fn walk_multibulk(
    buf: &[u8],
    limits: &Limits,
    resume: Option<Partial>,
    mut on_arg: impl FnMut(usize, usize),
) -> Result<Walk, ParseError> {
    let (count, mut pos, seen) = match resume {
        Some(p) => (p.count, p.pos, p.seen),
        None => {
            let Some((count, pos)) = read_header(buf, 0, ParseError::InvalidMultibulkLength)? else {
                return Ok(Walk::Partial(None));
            };
            (multibulk_count(count, limits)?, pos, 0)
        }
    };
    let partial = |pos, seen| Ok(Walk::Partial(Some(Partial { count, pos, seen })));
    for seen in seen..count {
        // Check the type byte before waiting for the rest of the line.
        match buf.get(pos) {
            None => return partial(pos, seen),
            Some(b'$') => {}
            Some(&other) => return Err(ParseError::ExpectedBulk(other)),
        }
        let Some((len, start)) = read_header(buf, pos, ParseError::InvalidBulkLength)? else {
            return partial(pos, seen);
        };
        let len = usize::try_from(len).map_err(|_| ParseError::InvalidBulkLength)?;
        if len > limits.max_bulk_len {
            return Err(ParseError::BulkTooLong { limit: limits.max_bulk_len });
        }
        // Only overflows if max_bulk_len is set near usize::MAX on a 32-bit
        // target; such a length can never be satisfied anyway.
        let end = start.checked_add(len).ok_or(ParseError::InvalidBulkLength)?;
        // Jump over the payload without looking at it, then check the CRLF
        // byte by byte so a wrong first byte fails before the second arrives.
        for (offset, expected) in [b'\r', b'\n'].into_iter().enumerate() {
            match buf.get(end + offset) {
                None => return partial(pos, seen),
                Some(&b) if b == expected => {}
                Some(_) => return Err(ParseError::UnterminatedBulk),
            }
        }
        on_arg(start, len);
        pos = end + 2;
    }
    Ok(Walk::Done { total: pos })
}

/// The argument count a `*<n>` line declares, checked.
fn multibulk_count(count: i64, limits: &Limits) -> Result<usize, ParseError> {
    let count = match count {
        // Zero or less: an empty command, ignored, as in Redis.
        n if n <= 0 => 0,
        // Redis caps the count at INT_MAX; we keep that bound so the error
        // text matches for absurd counts, then apply our own limit.
        n if (0..=i64::from(i32::MAX)).contains(&n) => {
            usize::try_from(n).map_err(|_| ParseError::InvalidMultibulkLength)?
        }
        _ => return Err(ParseError::InvalidMultibulkLength),
    };
    if count > limits.max_args {
        return Err(ParseError::TooManyArgs { limit: limits.max_args });
    }
    Ok(count)
}

/// Reads the `*<n>\r\n` or `$<n>\r\n` line whose type byte is at `pos`,
/// returning the number and the position just after the line.
///
/// A valid number is at most [`MAX_HEADER_DIGITS`] bytes of `-?[0-9]+`, so
/// the line is rejected (with `invalid`) at the first byte that rules it out.
/// That keeps the scan O(1) on every re-parse and means we never buffer a
/// long garbage line waiting for its `\r`.
fn read_header(buf: &[u8], pos: usize, invalid: ParseError) -> Result<Option<(i64, usize)>, ParseError> {
    let digits_start = pos + 1;
    let mut i = digits_start;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        if b == b'\r' {
            break;
        }
        let plausible = b.is_ascii_digit() || (b == b'-' && i == digits_start);
        if !plausible || i - digits_start >= MAX_HEADER_DIGITS {
            return Err(invalid);
        }
        i += 1;
    }
    match buf.get(i + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(invalid),
    }
    let value = squall_store::parse_int(&buf[digits_start..i]).ok_or(invalid)?;
    Ok(Some((value, i + 2)))
}

/// Parses an inline command: one line up to `\n` (an optional `\r` before it
/// is dropped), split into arguments like Redis's `sdssplitargs`.
fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ParseError> {
    // A line of max_inline_len bytes plus "\r\n" fits in this window; if no
    // newline is inside it, the line is too long whatever comes next. Bounding
    // the search also bounds the cost of re-scanning a partial line.
    let window = limits.max_inline_len.saturating_add(2);
    let Some(newline) = buf.iter().take(window).position(|&b| b == b'\n') else {
        return if buf.len() >= window { Err(ParseError::TooBigInline) } else { Ok(None) };
    };
    let line_len = if newline > 0 && buf[newline - 1] == b'\r' { newline - 1 } else { newline };
    if line_len > limits.max_inline_len {
        return Err(ParseError::TooBigInline);
    }
    // Split before consuming so an error leaves `buf` as it was.
    let tokens = split_args(&buf[..line_len], limits.max_args)?;
    let line = buf.split_to(newline + 1).freeze();
    Ok(Some(
        tokens
            .into_iter()
            .map(|token| match token {
                Token::Raw(start, end) => line.slice(start..end),
                Token::Unescaped(bytes) => Bytes::from(bytes),
            })
            .collect(),
    ))
}

/// One inline argument, found before the line is taken out of the buffer.
enum Token {
    /// Unquoted: the bytes `start..end` of the line, sliced without a copy.
    Raw(usize, usize),
    /// Quoted somewhere: the unescaped bytes.
    Unescaped(Vec<u8>),
}

/// Which quote an inline argument is inside, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// C's `isspace` in the "C" locale, which `sdssplitargs` uses between
/// arguments and after a closing quote.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: Option<u8>) -> Option<u8> {
    // `to_digit(16)` is at most 15, so the narrowing cannot truncate.
    b.and_then(|b| char::from(b).to_digit(16)).map(|v| v as u8)
}

/// Splits an inline line into arguments, a port of Redis's `sdssplitargs`:
/// arguments are separated by whitespace; `"..."` takes the escapes `\n \r
/// \t \b \a \xHH` and `\<any>` for that character; `'...'` takes only `\'`;
/// a quote may open mid-argument (`a"b c"` is `ab c`) but a closing quote
/// must be followed by whitespace or the end of the line.
fn split_args(line: &[u8], max_args: usize) -> Result<Vec<Token>, ParseError> {
    let at = |i: usize| line.get(i).copied();
    let mut tokens = Vec::new();
    let mut p = 0;
    loop {
        while at(p).is_some_and(is_space) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(tokens);
        }
        if tokens.len() == max_args {
            return Err(ParseError::TooManyArgs { limit: max_args });
        }

        let start = p;
        let mut quote = Quote::None;
        // Stays `None` while the argument is plain bytes of the line, so the
        // common unquoted case needs no copy.
        let mut unescaped: Option<Vec<u8>> = None;
        let raw_end = loop {
            let c = at(p);
            let mut done = false;
            match quote {
                Quote::None => match c {
                    None | Some(b' ' | b'\t' | b'\n' | b'\r') => done = true,
                    Some(q @ (b'"' | b'\'')) => {
                        unescaped.get_or_insert_with(|| line[start..p].to_vec());
                        quote = if q == b'"' { Quote::Double } else { Quote::Single };
                    }
                    Some(b) => {
                        if let Some(out) = unescaped.as_mut() {
                            out.push(b);
                        }
                    }
                },
                Quote::Double => {
                    let out = unescaped.get_or_insert_with(Vec::new);
                    match c {
                        None => return Err(ParseError::UnbalancedQuotes),
                        Some(b'\\') => {
                            if let (Some(b'x'), Some(hi), Some(lo)) =
                                (at(p + 1), hex_value(at(p + 2)), hex_value(at(p + 3)))
                            {
                                out.push(hi * 16 + lo);
                                p += 3;
                            } else if let Some(e) = at(p + 1) {
                                out.push(match e {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    other => other,
                                });
                                p += 1;
                            } else {
                                // A trailing backslash is kept; the missing
                                // closing quote is caught on the next byte.
                                out.push(b'\\');
                            }
                        }
                        Some(b'"') => {
                            if at(p + 1).is_some_and(|b| !is_space(b)) {
                                return Err(ParseError::UnbalancedQuotes);
                            }
                            done = true;
                        }
                        Some(b) => out.push(b),
                    }
                }
                Quote::Single => {
                    let out = unescaped.get_or_insert_with(Vec::new);
                    match c {
                        None => return Err(ParseError::UnbalancedQuotes),
                        Some(b'\\') if at(p + 1) == Some(b'\'') => {
                            out.push(b'\'');
                            p += 1;
                        }
                        Some(b'\'') => {
                            if at(p + 1).is_some_and(|b| !is_space(b)) {
                                return Err(ParseError::UnbalancedQuotes);
                            }
                            done = true;
                        }
                        Some(b) => out.push(b),
                    }
                }
            }
            let here = p;
            // As in C's `if (*p) p++`: step past the byte just handled (the
            // last byte of an escape), or stay put at the end of the line.
            if p < line.len() {
                p += 1;
            }
            if done {
                break here;
            }
        };
        tokens.push(match unescaped {
            Some(bytes) => Token::Unescaped(bytes),
            None => Token::Raw(start, raw_end),
        });
    }
}

/// A reply, encoded with [`Frame::encode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+<text>`: a status reply from a constant, such as `OK` or `PONG`.
    Simple(&'static str),
    /// `+<text>`: a status reply built at run time.
    SimpleOwned(String),
    /// `-<text>`: the full error text including its code, such as
    /// `ERR unknown command` or `WRONGTYPE Operation against a key ...`.
    Error(String),
    /// `:<n>`.
    Integer(i64),
    /// `$<len>` and the bytes: binary-safe.
    Bulk(Bytes),
    /// `$-1`: the null bulk string (a missing key).
    Nil,
    /// `*<n>` and the n frames.
    Array(Vec<Frame>),
    /// `*-1`: the null array.
    NilArray,
    /// Pairs: a RESP3 map (`%`), or a flat array of twice as many in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// A RESP3 set (`~`), or an array in RESP2.
    Set(Vec<Frame>),
    /// A RESP3 double (`,1.5`), or in RESP2 its text as a bulk string,
    /// written as Redis 7.0 writes scores.
    Double(f64),
    /// Members with their scores (ZRANGE WITHSCORES...): a flat array of
    /// member, score, member... in RESP2, an array of pairs in RESP3.
    Scored(Vec<(Bytes, f64)>),
    /// Pairs (HRANDFIELD WITHVALUES): a flat array in RESP2, an array of
    /// pairs in RESP3.
    Pairs(Vec<(Bytes, Bytes)>),
    /// A RESP3 push (`>`): what the server sends unasked (pub/sub
    /// messages, and the replies of subscribing); an array in RESP2.
    Push(Vec<Frame>),
}

const CRLF: &[u8] = b"\r\n";

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK")
    }

    /// An `ERR`-coded error: `-ERR <msg>`.
    pub fn err(msg: impl Into<String>) -> Frame {
        let msg = msg.into();
        let mut text = String::with_capacity(4 + msg.len());
        text.push_str("ERR ");
        text.push_str(&msg);
        Frame::Error(text)
    }

    /// Appends the RESP2 encoding of this frame to `out`.
    ///
    /// Simple strings and errors are single lines on the wire, so any `\r` or
    /// `\n` in their text is written as a space rather than letting it end the
    /// line early and desynchronise the client.
    /// Encodes the frame for a RESP2 client.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_as(out, false)
    }

    /// Encodes the frame for a client speaking RESP3 (`resp3`, after
    /// `HELLO 3`) or RESP2: maps, sets and nulls are where they differ.
    pub fn encode_as(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Frame::Simple(text) => put_line(out, b'+', text.as_bytes()),
            Frame::SimpleOwned(text) => put_line(out, b'+', text.as_bytes()),
            Frame::Error(text) => put_line(out, b'-', text.as_bytes()),
            Frame::Integer(n) => put_int_line(out, b':', *n),
            Frame::Bulk(bytes) => {
                out.reserve(bytes.len() + 24);
                put_len_line(out, b'$', bytes.len());
                out.put_slice(bytes);
                out.put_slice(CRLF);
            }
            Frame::Double(f) => {
                let text = squall_store::lattice::format_score(*f);
                if resp3 {
                    put_line(out, b',', text.as_bytes());
                } else {
                    Frame::Bulk(Bytes::from(text)).encode_as(out, false);
                }
            }
            Frame::Scored(pairs) => put_pairs(
                out,
                resp3,
                pairs.len(),
                pairs.iter().map(|(m, score)| (Frame::Bulk(m.clone()), Frame::Double(*score))),
            ),
            Frame::Pairs(pairs) => put_pairs(
                out,
                resp3,
                pairs.len(),
                pairs.iter().map(|(a, b)| (Frame::Bulk(a.clone()), Frame::Bulk(b.clone()))),
            ),
            Frame::Nil | Frame::NilArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::Nil => out.put_slice(b"$-1\r\n"),
            Frame::Array(items) => {
                put_len_line(out, b'*', items.len());
                for item in items {
                    item.encode_as(out, resp3);
                }
            }
            Frame::NilArray => out.put_slice(b"*-1\r\n"),
            Frame::Map(pairs) => {
                if resp3 {
                    put_len_line(out, b'%', pairs.len());
                } else {
                    put_len_line(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode_as(out, resp3);
                    v.encode_as(out, resp3);
                }
            }
            Frame::Set(items) | Frame::Push(items) => {
                let mark = match self {
                    Frame::Set(_) if resp3 => b'~',
                    Frame::Push(_) if resp3 => b'>',
                    _ => b'*',
                };
                put_len_line(out, mark, items.len());
                for item in items {
                    item.encode_as(out, resp3);
                }
            }
        }
    }
}

/// `n` pairs: flat in RESP2, each a two-element array in RESP3.
fn put_pairs(out: &mut BytesMut, resp3: bool, n: usize, pairs: impl Iterator<Item = (Frame, Frame)>) {
    put_len_line(out, b'*', if resp3 { n } else { n * 2 });
    for (a, b) in pairs {
        if resp3 {
            put_len_line(out, b'*', 2);
        }
        a.encode_as(out, resp3);
        b.encode_as(out, resp3);
    }
}

/// Writes `<prefix><text>\r\n`, turning CR and LF inside `text` into spaces.
fn put_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(text.iter().map(|&b| match b {
            b'\r' | b'\n' => b' ',
            b => b,
        }));
    } else {
        out.put_slice(text);
    }
    out.put_slice(CRLF);
}

/// Writes `<prefix><n>\r\n` for a signed integer.
fn put_int_line(out: &mut BytesMut, prefix: u8, n: i64) {
    out.put_u8(prefix);
    if n < 0 {
        out.put_u8(b'-');
    }
    put_u64(out, n.unsigned_abs());
    out.put_slice(CRLF);
}

/// Writes `<prefix><len>\r\n` for a length.
fn put_len_line(out: &mut BytesMut, prefix: u8, len: usize) {
    out.put_u8(prefix);
    // usize is at most 64 bits on every target Rust supports.
    put_u64(out, len as u64);
    out.put_slice(CRLF);
}

/// Writes `n` in decimal without going through `fmt` (which is slow for such
/// a hot path and would need a scratch `String`).
fn put_u64(out: &mut BytesMut, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is a single digit, so the narrowing cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peak single-allocation tracking for the hostile-input tests, so "no
    /// huge allocation from a declared length" is checked, not assumed.
    mod alloc_probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            // Const-initialised and destructor-free, so touching them from
            // inside the allocator can neither allocate nor recurse.
            static TRACKING: Cell<bool> = const { Cell::new(false) };
            static PEAK: Cell<usize> = const { Cell::new(0) };
        }

        struct Probe;

        fn note(size: usize) {
            // `try_with` because the allocator also runs during thread
            // teardown, after thread-locals may be gone.
            if TRACKING.try_with(Cell::get).unwrap_or(false) {
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(size)));
            }
        }

        // SAFETY: every call is forwarded unchanged to the system allocator;
        // the probe only records sizes in thread-locals that need no allocation.
        #[allow(unsafe_code)]
        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                // SAFETY: same contract as our caller's.
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                // SAFETY: same contract as our caller's.
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as our caller's.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size);
                // SAFETY: same contract as our caller's.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static GLOBAL: Probe = Probe;

        /// Runs `f` and returns the largest single allocation it made on this
        /// thread.
        pub(super) fn peak_alloc(f: impl FnOnce()) -> usize {
            PEAK.with(|peak| peak.set(0));
            TRACKING.with(|t| t.set(true));
            f();
            TRACKING.with(|t| t.set(false));
            PEAK.with(Cell::get)
        }
    }

    #[test]
    fn alloc_probe_sees_allocations() {
        let peak = alloc_probe::peak_alloc(|| {
            std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
        });
        assert!(peak >= 1 << 20, "probe saw only {peak} bytes");
    }

    fn args(items: &[&[u8]]) -> Vec<Bytes> {
        items.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    fn parse_all(input: &[u8], limits: &Limits) -> (Vec<Vec<Bytes>>, Result<(), ParseError>) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parse_command(&mut buf, limits) {
                Ok(Some(cmd)) => out.push(cmd),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// Feeds `input` in the given chunk sizes (cycled), parsing after every
    /// chunk, and checks the parser's contract at each call: `Some` consumes
    /// at least one byte, `None` leaves the buffer byte-for-byte unchanged.
    fn parse_chunked(
        input: &[u8],
        chunks: &mut dyn Iterator<Item = usize>,
        limits: &Limits,
    ) -> (Vec<Vec<Bytes>>, Result<(), ParseError>) {
        // A connection's parser, which resumes incomplete commands; what it
        // finds must not depend on the chunking (the tests compare it with
        // the stateless parse of the whole input).
        let mut parser = Parser::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        while fed < input.len() {
            let n = chunks.next().unwrap_or(1).clamp(1, input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
            loop {
                let before = buf.clone();
                match parser.next(&mut buf, limits) {
                    Ok(Some(cmd)) => {
                        assert!(buf.len() < before.len(), "Some without progress");
                        out.push(cmd);
                    }
                    Ok(None) => {
                        assert_eq!(buf, before, "None must leave the buffer untouched");
                        break;
                    }
                    Err(e) => {
                        assert_eq!(buf, before, "Err must leave the buffer untouched");
                        return (out, Err(e));
                    }
                }
            }
        }
        (out, Ok(()))
    }

    const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n\
        *2\r\n$3\r\nGET\r\n$3\r\nkey\r\n\
        PING\r\n\
        *0\r\n\
        \r\n\
        set \"a b\" 'c\\'d' \"\\x41\\n\"\n\
        *1\r\n$0\r\n\r\n\
        *-1\r\n\
        *2\r\n$4\r\nECHO\r\n$11\r\nhello\x00world\r\n";

    fn pipeline_expected() -> Vec<Vec<Bytes>> {
        vec![
            args(&[b"SET", b"key", b"va\r\nl"]),
            args(&[b"GET", b"key"]),
            args(&[b"PING"]),
            vec![],
            vec![],
            args(&[b"set", b"a b", b"c'd", b"A\n"]),
            args(&[b""]),
            vec![],
            args(&[b"ECHO", b"hello\x00world"]),
        ]
    }

    #[test]
    fn parses_a_simple_multibulk_command() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"[..]);
        let cmd = parse_command(&mut buf, &Limits::default()).unwrap();
        assert_eq!(cmd, Some(args(&[b"GET", b"foo"])));
        assert!(buf.is_empty());
        assert_eq!(parse_command(&mut buf, &Limits::default()), Ok(None));
    }

    #[test]
    fn multibulk_args_are_zero_copy() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let base = buf.as_ptr() as usize;
        let cmd = parse_command(&mut buf, &Limits::default()).unwrap().unwrap();
        // Pointers into the original allocation at the payload offsets.
        assert_eq!(cmd[0].as_ptr() as usize, base + 8);
        assert_eq!(cmd[1].as_ptr() as usize, base + 18);
    }

    #[test]
    fn parses_a_pipeline_in_one_buffer() {
        let (cmds, end) = parse_all(PIPELINE, &Limits::default());
        assert_eq!(end, Ok(()));
        assert_eq!(cmds, pipeline_expected());
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let limits = Limits::default();
        let whole = parse_all(PIPELINE, &limits);
        for split in 1..PIPELINE.len() {
            let mut chunks = [split, PIPELINE.len()].into_iter();
            assert_eq!(parse_chunked(PIPELINE, &mut chunks, &limits), whole, "split at {split}");
        }
        assert_eq!(parse_chunked(PIPELINE, &mut std::iter::repeat(1), &limits), whole, "byte by byte");
    }

    #[test]
    fn incomplete_frames_leave_the_buffer_untouched() {
        let limits = Limits::default();
        for prefix in [
            &b"*"[..],
            b"*2",
            b"*2\r",
            b"*2\r\n",
            b"*2\r\n$",
            b"*2\r\n$3\r\nGET",
            b"*2\r\n$3\r\nGET\r",
            b"*2\r\n$3\r\nGET\r\n$3\r\nfo",
            b"PING",
            b"PING\r",
            b"set \"unterminated",
        ] {
            let mut buf = BytesMut::from(prefix);
            assert_eq!(parse_command(&mut buf, &limits), Ok(None), "{prefix:?}");
            assert_eq!(&buf[..], prefix);
        }
    }

    #[test]
    fn empty_commands_are_consumed_and_empty() {
        for input in [&b"\r\n"[..], b"\n", b"*0\r\n", b"*-1\r\n", b"*-5\r\n", b"   \t \r\n"] {
            let mut buf = BytesMut::from(input);
            assert_eq!(parse_command(&mut buf, &Limits::default()), Ok(Some(vec![])), "{input:?}");
            assert!(buf.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn inline_commands_split_like_sdssplitargs() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"PING\r\n", &[b"PING"]),
            (b"PING\n", &[b"PING"]),
            (b"  set  k\tv  \r\n", &[b"set", b"k", b"v"]),
            (b"set k \"hello world\"\n", &[b"set", b"k", b"hello world"]),
            (b"set k 'hello world'\n", &[b"set", b"k", b"hello world"]),
            (b"echo \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n", &[b"echo", b"\n\r\t\x08\x07\\\"q"]),
            // `\x` without two hex digits is the generic escape: just `x`.
            (b"echo \"\\x41\\x7a\\xzz\"\n", &[b"echo", b"Azxzz"]),
            (b"echo \"\\xff\\x00\"\n", &[b"echo", b"\xff\x00"]),
            (b"echo 'it\\'s \\n raw'\n", &[b"echo", b"it's \\n raw"]),
            (b"echo \"\" ''\n", &[b"echo", b"", b""]),
            // A quote may open mid-argument.
            (b"echo ab\"c d\"\n", &[b"echo", b"abc d"]),
            // Backslashes and quotes are literal outside quotes.
            (b"echo a\\nb\n", &[b"echo", b"a\\nb"]),
            // A lone CR inside the line separates arguments.
            (b"a\rb\r\n", &[b"a", b"b"]),
            // Vertical tab and form feed are skipped between arguments but do
            // not end an unquoted one, as in Redis.
            (b"\x0ba\x0cb\n", &[b"a\x0cb"]),
            (b"\"a\"\t\"b\"\n", &[b"a", b"b"]),
            (b"$3\r\n", &[b"$3"]),
        ];
        for (input, expected) in cases {
            let mut buf = BytesMut::from(*input);
            assert_eq!(parse_command(&mut buf, &Limits::default()), Ok(Some(args(expected))), "{input:?}");
            assert!(buf.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn unquoted_inline_args_are_zero_copy() {
        let mut buf = BytesMut::from(&b"GET somekey\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let cmd = parse_command(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(cmd[1].as_ptr() as usize, base + 4);
    }

    #[test]
    fn unbalanced_quotes_are_errors() {
        for input in [
            &b"set k \"abc\n"[..],
            b"set k 'abc\n",
            b"set k \"abc\"def\n",
            b"set k 'abc'def\n",
            b"set k \"abc\\\"\n",
            b"set k \"abc\\\n",
        ] {
            let mut buf = BytesMut::from(input);
            assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::UnbalancedQuotes), "{input:?}");
            assert_eq!(&buf[..], input, "an error leaves the buffer as it was");
        }
    }

    #[test]
    fn dollar_first_is_inline_as_in_redis() {
        let (cmds, end) = parse_all(b"$3\r\nfoo\r\n", &Limits::default());
        assert_eq!(end, Ok(()));
        assert_eq!(cmds, vec![args(&[b"$3"]), args(&[b"foo"])]);
    }

    #[test]
    fn hostile_corpus_is_rejected_without_big_allocations() {
        use ParseError::*;
        let limits = Limits::default();
        let corpus: &[(&[u8], Option<ParseError>)] = &[
            (b"*99999999999999999999\r\n", Some(InvalidMultibulkLength)),
            (b"*9223372036854775807\r\n", Some(InvalidMultibulkLength)),
            (b"*2147483648\r\n", Some(InvalidMultibulkLength)),
            (b"*-0\r\n", Some(InvalidMultibulkLength)),
            (b"*01\r\n", Some(InvalidMultibulkLength)),
            (b"*+1\r\n", Some(InvalidMultibulkLength)),
            (b"* 1\r\n", Some(InvalidMultibulkLength)),
            (b"*\r\n", Some(InvalidMultibulkLength)),
            (b"*1\rX", Some(InvalidMultibulkLength)),
            (b"*1\n", Some(InvalidMultibulkLength)),
            (b"*2\r\n$-3\r\n", Some(InvalidBulkLength)),
            (b"*1\r\n$-1\r\n", Some(InvalidBulkLength)),
            (b"*1\r\n$9999999999\r\n", Some(BulkTooLong { limit: 8 << 20 })),
            (b"*1\r\n$8388609\r\n", Some(BulkTooLong { limit: 8 << 20 })),
            (b"*1\r\n$99999999999999999999999\r\n", Some(InvalidBulkLength)),
            (b"*1\r\n$3\r\nabcX\r\n", Some(UnterminatedBulk)),
            (b"*1\r\n$3\r\nabc\rX", Some(UnterminatedBulk)),
            (b"*1\r\nfoo\r\n", Some(ExpectedBulk(b'f'))),
            (b"*1\r\n\r\n", Some(ExpectedBulk(b'\r'))),
            (b"*3000000\r\n", Some(TooManyArgs { limit: 1_048_576 })),
            // Declared sizes far beyond what arrived: just wait for more.
            (b"*1048576\r\n", None),
            (b"*1\r\n$8388608\r\n", None),
            (b"*1048576\r\n$8388608\r\nabc", None),
        ];
        for (input, expected) in corpus {
            let mut buf = BytesMut::from(*input);
            let mut result = None;
            let peak = alloc_probe::peak_alloc(|| result = Some(parse_command(&mut buf, &limits)));
            let expected = match expected {
                Some(e) => Err(*e),
                None => Ok(None),
            };
            assert_eq!(result, Some(expected), "{:?}", String::from_utf8_lossy(input));
            assert!(peak <= 4096, "{input:?} allocated {peak} bytes at once");
            assert_eq!(&buf[..], *input, "buffer must be untouched");
        }
    }

    #[test]
    fn errors_are_found_at_the_first_bad_byte() {
        // A garbage header is refused long before Redis's 64 KiB, and with
        // no `\r` in sight.
        let mut buf = BytesMut::from(&b"*12345678901234567890123"[..]);
        assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::InvalidMultibulkLength));
        let mut buf = BytesMut::from(&b"*1\r\n$1x"[..]);
        assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::InvalidBulkLength));
        let mut buf = BytesMut::from(&b"*1\r\n:"[..]);
        assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::ExpectedBulk(b':')));
        let mut header = b"*".to_vec();
        header.extend(std::iter::repeat_n(b'1', 70 * 1024));
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::InvalidMultibulkLength));
    }

    #[test]
    fn inline_line_limit() {
        let limits = Limits { max_inline_len: 8, ..Limits::default() };
        let ok: &[&[u8]] = &[b"12345678\r\n", b"12345678\n", b"1234567\r\r\n"];
        for input in ok {
            let mut buf = BytesMut::from(*input);
            assert!(matches!(parse_command(&mut buf, &limits), Ok(Some(_))), "{input:?}");
        }
        // Over the limit whether or not the newline has arrived.
        let too_big: &[&[u8]] = &[b"123456789\n", b"123456789\r\n", b"1234567890", b"12345678\r\r"];
        for input in too_big {
            let mut buf = BytesMut::from(*input);
            assert_eq!(parse_command(&mut buf, &limits), Err(ParseError::TooBigInline), "{input:?}");
        }
        // Still possibly fine: wait.
        let mut buf = BytesMut::from(&b"12345678\r"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));

        // The default limit, with a realistic oversized line.
        let long = vec![b'a'; 64 * 1024 + 2];
        let mut buf = BytesMut::from(&long[..]);
        assert_eq!(parse_command(&mut buf, &Limits::default()), Err(ParseError::TooBigInline));
    }

    #[test]
    fn argument_and_bulk_limits() {
        let limits = Limits { max_args: 2, max_bulk_len: 3, max_inline_len: 64 };
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&[b"abc", b""]))));
        for (input, err) in [
            (&b"*3\r\n"[..], ParseError::TooManyArgs { limit: 2 }),
            (b"a b c\n", ParseError::TooManyArgs { limit: 2 }),
            (b"*1\r\n$4\r\n", ParseError::BulkTooLong { limit: 3 }),
        ] {
            let mut buf = BytesMut::from(input);
            assert_eq!(parse_command(&mut buf, &limits), Err(err), "{input:?}");
        }
        let mut buf = BytesMut::from(&b"a b\n"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&[b"a", b"b"]))));
    }

    #[test]
    fn error_texts_match_redis() {
        use ParseError::*;
        let cases = [
            (InvalidMultibulkLength, "Protocol error: invalid multibulk length"),
            (InvalidBulkLength, "Protocol error: invalid bulk length"),
            (ExpectedBulk(b'x'), "Protocol error: expected '$', got 'x'"),
            (ExpectedBulk(b'\r'), "Protocol error: expected '$', got '\\x0d'"),
            (TooBigInline, "Protocol error: too big inline request"),
            (UnbalancedQuotes, "Protocol error: unbalanced quotes in request"),
            (TooManyArgs { limit: 7 }, "Protocol error: too many arguments (limit 7)"),
            (BulkTooLong { limit: 9 }, "Protocol error: bulk string too long (limit 9 bytes)"),
            (UnterminatedBulk, "Protocol error: bulk string not terminated by CRLF"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }

    /// splitmix64: a tiny deterministic generator so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    #[test]
    fn random_input_never_panics_and_is_chunking_independent() {
        // Small limits so random input actually reaches them.
        let limits = Limits { max_args: 8, max_bulk_len: 16, max_inline_len: 32 };
        // Bytes that matter to the grammar, so random buffers get deep into it.
        const ALPHABET: &[u8] = b"*$\r\n\r\n0123456789-\"'\\x aZ\t\x00";
        let mut rng = Rng(0x5eed);
        let mut errors_seen = std::collections::HashSet::new();
        let mut commands_seen = 0;
        for case in 0..4000 {
            let len = rng.below(160);
            let input: Vec<u8> = match case % 3 {
                // Fully random bytes.
                0 => (0..len).map(|_| rng.next_u64() as u8).collect(),
                // Grammar-heavy bytes.
                1 => (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect(),
                // A valid pipeline with a few bytes flipped.
                _ => {
                    let mut v = PIPELINE.to_vec();
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(v.len());
                        v[i] = ALPHABET[rng.below(ALPHABET.len())];
                    }
                    v
                }
            };
            let whole = parse_all(&input, &limits);
            let chunk_sizes: Vec<usize> = (0..16).map(|_| 1 + rng.below(24)).collect();
            let chunked = parse_chunked(&input, &mut chunk_sizes.iter().copied().cycle(), &limits);
            assert_eq!(chunked, whole, "case {case}: {input:?}");
            if let Err(e) = whole.1 {
                errors_seen.insert(std::mem::discriminant(&e));
            }
            commands_seen += whole.0.len();
            // Limits hold for everything accepted.
            for cmd in &whole.0 {
                assert!(cmd.len() <= limits.max_args);
                assert!(cmd.iter().all(|a| a.len() <= limits.max_inline_len.max(limits.max_bulk_len)));
            }
        }
        // Guard against the generator drifting into testing nothing: it
        // currently reaches every ParseError variant and thousands of commands.
        assert_eq!(errors_seen.len(), 8, "error kinds reached");
        assert!(commands_seen > 1000, "only {commands_seen} commands parsed");
    }

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn encodes_each_frame_kind() {
        let cases: Vec<(Frame, &[u8])> = vec![
            (Frame::ok(), b"+OK\r\n"),
            (Frame::Simple("PONG"), b"+PONG\r\n"),
            (Frame::SimpleOwned("QUEUED".into()), b"+QUEUED\r\n"),
            (Frame::err("unknown command"), b"-ERR unknown command\r\n"),
            (Frame::Error("WRONGTYPE Operation against a key".into()), b"-WRONGTYPE Operation against a key\r\n"),
            (Frame::Integer(0), b":0\r\n"),
            (Frame::Integer(42), b":42\r\n"),
            (Frame::Integer(-7), b":-7\r\n"),
            (Frame::Integer(i64::MAX), b":9223372036854775807\r\n"),
            (Frame::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Frame::Bulk(Bytes::from_static(b"hi")), b"$2\r\nhi\r\n"),
            (Frame::Bulk(Bytes::new()), b"$0\r\n\r\n"),
            (Frame::Bulk(Bytes::from_static(b"a\r\nb")), b"$4\r\na\r\nb\r\n"),
            (Frame::Nil, b"$-1\r\n"),
            (Frame::NilArray, b"*-1\r\n"),
            (Frame::Array(vec![]), b"*0\r\n"),
            (
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Nil,
                    Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"x"))]),
                ]),
                b"*3\r\n:1\r\n$-1\r\n*1\r\n$1\r\nx\r\n",
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(encoded(&frame), wire, "{frame:?} -> {:?}", String::from_utf8_lossy(&encoded(&frame)));
        }
    }

    #[test]
    fn line_frames_cannot_break_the_line() {
        assert_eq!(encoded(&Frame::err("bad\r\n-injected")), b"-ERR bad  -injected\r\n");
        assert_eq!(encoded(&Frame::SimpleOwned("a\nb".into())), b"+a b\r\n");
        assert_eq!(encoded(&Frame::Simple("x\ry")), b"+x y\r\n");
    }

    #[test]
    fn encode_appends_and_round_trips_through_the_parser() {
        let mut out = BytesMut::from(&b"prefix"[..]);
        let request = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"SET")),
            Frame::Bulk(Bytes::from_static(b"k")),
            Frame::Bulk(Bytes::from_static(b"\r\n\x00binary")),
        ]);
        request.encode(&mut out);
        assert!(out.starts_with(b"prefix*3\r\n"));
        let mut wire = out.split_off(6);
        assert_eq!(parse_command(&mut wire, &Limits::default()), Ok(Some(args(&[b"SET", b"k", b"\r\n\x00binary"]))));
        assert!(wire.is_empty());
    }
}
