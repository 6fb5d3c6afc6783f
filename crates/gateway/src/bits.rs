//! The bitmap commands, GETBIT, SETBIT, BITCOUNT, BITPOS and BITOP, over
//! strings as Redis keeps them: bit 0 is the highest bit of the first byte,
//! and a key that is not there reads as no bits at all.
//!
//! GETBIT, BITCOUNT and BITPOS read the string whole (as GETRANGE does) and
//! answer from it here; SETBIT is the store's [`Op::SetBit`], applied by
//! the key's owner; BITOP reads its sources in one unit and replaces its
//! destination only if they still read the same (see `Conn::store_combined`).
//!
//! Errors come in Redis 7.0's order: an offset or a bit that is no number
//! before the key is looked at; BITCOUNT's and BITPOS's range after (a key
//! that is not there answers 0 or -1 whatever its range says).

use bytes::Bytes;
use squall_store::{MAX_STRING, Op, OpError, OpResult, Reply, SetExpiry};

use crate::resp::Frame;

/// What GETBIT, BITCOUNT and BITPOS ask of a string's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// GETBIT: the bit at this offset (0 past the end).
    Get(u64),
    /// BITCOUNT: how many bits of the span are set.
    Count(Span),
    /// BITPOS: where the first bit equal to `bit` is in the span. With no
    /// end given, the string counts as followed by clear bits.
    Pos { bit: bool, span: Span, end_given: bool },
    /// Arguments Redis refuses only once it has seen a string there; a
    /// key that is not there answers `absent`.
    Refused { absent: i64, error: Refusal },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotInteger,
    Syntax,
}

/// Bytes (or, `bits`, bits) from `start` to `end`, both included,
/// negative ones counting from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: i64,
    end: i64,
    bits: bool,
}

const WHOLE: Span = Span { start: 0, end: -1, bits: false };

/// BITOP's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

fn error(text: &str) -> Frame {
    Frame::err(text)
}

/// GETBIT's and SETBIT's offset: a bit inside the longest string.
fn offset(arg: &Bytes) -> Result<u64, Frame> {
    squall_store::parse_int(arg)
        .filter(|&n| n >= 0 && ((n >> 3) as u64) < MAX_STRING as u64)
        .map(|n| n as u64)
        .ok_or_else(|| error("bit offset is not an integer or out of range"))
}

/// GETBIT key offset.
pub fn getbit(args: &[Bytes]) -> Result<Query, Frame> {
    offset(&args[2]).map(Query::Get)
}

/// SETBIT key offset value.
pub fn setbit(args: &[Bytes]) -> Result<Op, Frame> {
    let offset = offset(&args[2])?;
    let on = match squall_store::parse_int(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(error("bit is not an integer or out of range")),
    };
    Ok(Op::SetBit { offset, on })
}

/// BITCOUNT key [start end [BYTE | BIT]].
pub fn bitcount(args: &[Bytes]) -> Query {
    let refused = |error| Query::Refused { absent: 0, error };
    match args.len() {
        2 => Query::Count(WHOLE),
        4 | 5 => {
            let (Some(start), Some(end)) = (squall_store::parse_int(&args[2]), squall_store::parse_int(&args[3]))
            else {
                return refused(Refusal::NotInteger);
            };
            match unit(args.get(4)) {
                Some(bits) => Query::Count(Span { start, end, bits }),
                None => refused(Refusal::Syntax),
            }
        }
        _ => refused(Refusal::Syntax),
    }
}

/// BITPOS key bit [start [end [BYTE | BIT]]].
pub fn bitpos(args: &[Bytes]) -> Result<Query, Frame> {
    let bit = match crate::commands::int(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(error("The bit argument must be 1 or 0.")),
    };
    let refused = |error| Ok(Query::Refused { absent: if bit { -1 } else { 0 }, error });
    if args.len() == 3 {
        return Ok(Query::Pos { bit, span: WHOLE, end_given: false });
    }
    if args.len() > 6 {
        return refused(Refusal::Syntax);
    }
    // Redis reads the start, then the unit, then the end.
    let Some(start) = squall_store::parse_int(&args[3]) else { return refused(Refusal::NotInteger) };
    let Some(bits) = unit(args.get(5)) else { return refused(Refusal::Syntax) };
    let end = match args.get(4) {
        None => -1,
        Some(a) => match squall_store::parse_int(a) {
            Some(end) => end,
            None => return refused(Refusal::NotInteger),
        },
    };
    Ok(Query::Pos { bit, span: Span { start, end, bits }, end_given: args.len() > 4 })
}

/// BYTE or BIT (none: BYTE): whether the span counts bits; `None` for another word.
fn unit(arg: Option<&Bytes>) -> Option<bool> {
    match arg {
        None => Some(false),
        Some(a) if a.eq_ignore_ascii_case(b"BIT") => Some(true),
        Some(a) if a.eq_ignore_ascii_case(b"BYTE") => Some(false),
        Some(_) => None,
    }
}

/// BITOP operation destkey key [key ...]: the operation and its sources.
pub fn bitop(args: &[Bytes]) -> Result<(BitOp, Bytes, Vec<Bytes>), Frame> {
    let name = &args[1];
    let op = [(b"AND".as_slice(), BitOp::And), (b"OR", BitOp::Or), (b"XOR", BitOp::Xor), (b"NOT", BitOp::Not)]
        .into_iter()
        .find(|(word, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, op)| op)
        .ok_or_else(|| error("syntax error"))?;
    if op == BitOp::Not && args.len() != 4 {
        return Err(error("BITOP NOT must be called with a single source key."));
    }
    Ok((op, args[2].clone(), args[3..].to_vec()))
}

/// The answer to `query` of what a read of the string gave.
pub fn answer(query: Query, reply: Reply) -> Frame {
    let b = match reply {
        Reply::Bytes(b) => Some(b),
        _ => None,
    };
    let n = match (query, b) {
        (Query::Refused { absent, .. }, None) => absent,
        (Query::Refused { error: Refusal::NotInteger, .. }, Some(_)) => {
            return error("value is not an integer or out of range");
        }
        (Query::Refused { error: Refusal::Syntax, .. }, Some(_)) => return error("syntax error"),
        (Query::Get(_) | Query::Count(_), None) => 0,
        (Query::Pos { bit, .. }, None) => {
            if bit {
                -1
            } else {
                0
            }
        }
        (Query::Get(offset), Some(b)) => {
            let byte = b.get((offset >> 3) as usize).copied().unwrap_or(0);
            i64::from(byte & (0x80 >> (offset & 7)) != 0)
        }
        (Query::Count(span), Some(b)) => bits_of(span, b.len()).map_or(0, |(first, last)| count(&b, first, last)),
        (Query::Pos { bit, span, end_given }, Some(b)) => match bits_of(span, b.len()) {
            None => -1,
            Some((first, last)) => match position(&b, bit, first, last) {
                Some(at) => at as i64,
                // Past the string every bit is clear, unless the span ends it.
                None if !bit && !end_given => last as i64 + 1,
                None => -1,
            },
        },
    };
    Frame::Integer(n)
}

/// The span as the first and last bit it covers in a string of `len`
/// bytes (`None`: no bit).
fn bits_of(span: Span, len: usize) -> Option<(u64, u64)> {
    let total = if span.bits { len as i64 * 8 } else { len as i64 };
    let at = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (at(span.start), at(span.end).min(total - 1));
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if span.bits { (start, end) } else { (start * 8, end * 8 + 7) })
}

/// Which bits of byte `i` lie from `first` to `last` (string-wide bit numbers).
fn mask(i: usize, first: u64, last: u64) -> u8 {
    let mut m = 0xFF;
    if i as u64 == first / 8 {
        m &= 0xFF >> (first % 8);
    }
    if i as u64 == last / 8 {
        m &= 0xFF << (7 - last % 8);
    }
    m
}

/// How many bits from `first` to `last` are set.
fn count(b: &[u8], first: u64, last: u64) -> i64 {
    let (a, z) = ((first / 8) as usize, (last / 8) as usize);
    let end = |i: usize| (b[i] & mask(i, first, last)).count_ones();
    let ends = if a == z { end(a) } else { end(a) + end(z) };
    let inner = if z > a + 1 { &b[a + 1..z] } else { &[][..] };
    let mut chunks = inner.chunks_exact(8);
    let mut n = u64::from(ends);
    for c in &mut chunks {
        n += u64::from(u64::from_ne_bytes(c.try_into().expect("8 bytes")).count_ones());
    }
    n += chunks.remainder().iter().map(|x| u64::from(x.count_ones())).sum::<u64>();
    n as i64
}

/// The first bit from `first` to `last` that is `bit`.
fn position(b: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let (a, z) = ((first / 8) as usize, (last / 8) as usize);
    for (i, &byte) in b.iter().enumerate().take(z + 1).skip(a) {
        // Looking for a clear bit is looking for a set one in the complement.
        let byte = if bit { byte } else { !byte } & mask(i, first, last);
        if byte != 0 {
            return Some(i as u64 * 8 + u64::from(byte.leading_zeros()));
        }
    }
    None
}

/// BITOP's result over what reading each source gave (nothing there reads
/// as an empty string): how long it is, and the write that makes it
/// (none for an empty result: the destination is removed).
pub fn combine(results: Vec<OpResult>, op: BitOp) -> Result<(i64, Option<Op>), OpError> {
    let mut sources = Vec::with_capacity(results.len());
    for r in results {
        match r? {
            Reply::Bytes(b) => sources.push(b),
            _ => sources.push(Bytes::new()),
        }
    }
    let len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    if len == 0 {
        return Ok((0, None));
    }
    let mut out = vec![0u8; len];
    out[..sources[0].len()].copy_from_slice(&sources[0]);
    match op {
        BitOp::Not => out.iter_mut().for_each(|x| *x = !*x),
        BitOp::And => {
            for s in &sources[1..] {
                out.iter_mut().enumerate().for_each(|(i, x)| *x &= s.get(i).copied().unwrap_or(0));
            }
        }
        BitOp::Or | BitOp::Xor => {
            for s in &sources[1..] {
                for (x, y) in out.iter_mut().zip(s.iter()) {
                    *x = if op == BitOp::Or { *x | y } else { *x ^ y };
                }
            }
        }
    }
    Ok((len as i64, Some(Op::Set { value: Bytes::from(out), expiry: SetExpiry::None, get: false })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_pos(b: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
        (first..=last).find(|&i| ((b[(i / 8) as usize] >> (7 - i % 8)) & 1 == 1) == bit)
    }

    fn naive_count(b: &[u8], first: u64, last: u64) -> i64 {
        (first..=last).filter(|&i| (b[(i / 8) as usize] >> (7 - i % 8)) & 1 == 1).count() as i64
    }

    #[test]
    fn counts_and_positions_agree_with_a_bit_by_bit_reading() {
        let strings: [&[u8]; 5] =
            [b"\xff\xf0\x00", b"foobar", b"\x00\x00\x01", b"\xff", b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x11\x22\x33"];
        for b in strings {
            let bits = b.len() as u64 * 8;
            for first in 0..bits {
                for last in first..bits {
                    assert_eq!(count(b, first, last), naive_count(b, first, last), "{b:?} {first} {last}");
                    for bit in [false, true] {
                        assert_eq!(
                            position(b, bit, first, last),
                            naive_pos(b, bit, first, last),
                            "{b:?} {bit} {first} {last}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn spans_clamp_as_redis_does() {
        assert_eq!(bits_of(WHOLE, 0), None);
        assert_eq!(bits_of(WHOLE, 2), Some((0, 15)));
        assert_eq!(bits_of(Span { start: -100, end: -1, bits: true }, 6), Some((0, 47)));
        assert_eq!(bits_of(Span { start: 1, end: 100, bits: false }, 3), Some((8, 23)));
        assert_eq!(bits_of(Span { start: 2, end: 1, bits: false }, 3), None);
        assert_eq!(bits_of(Span { start: i64::MIN, end: i64::MAX, bits: true }, 1), Some((0, 7)));
    }
}
