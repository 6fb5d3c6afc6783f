//! The changes a shard makes, encoded for the log and snapshots, and read
//! back. A buffer of records is what a shard hands the writer once per
//! wake-up, and what a snapshot dump step returns.
//!
//! ```text
//! [tag: u8][ns len: u8][ns][key len: u32 LE][key] then
//!   0 header:  [len: u32 LE][postcard Header]
//!   1 element: [element len: u32 LE][element][len: u32 LE][postcard Element]
//!   2 removed
//! ```
//!
//! Records hold whole states (a key's header, a member's register), so
//! replaying them in the order they were written, from any point at or
//! before a snapshot began, ends in the state that was live.

use crate::Error;
use crate::keyspace::{Changes, Element, Header, Record};
use bytes::Bytes;
use serde::Serialize;
use squall_lattice::Stamp;

const HEADER: u8 = 0;
const ELEMENT: u8 = 1;
const REMOVED: u8 = 2;

/// Encoded records, back to back.
#[derive(Debug, Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    count: usize,
}

impl Records {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn key(&mut self, tag: u8, ns: &[u8], key: &[u8]) {
        self.count += 1;
        self.buf.reserve(1 + 1 + ns.len() + 4 + key.len() + 32);
        self.buf.push(tag);
        self.buf.push(ns.len() as u8);
        self.buf.extend_from_slice(ns);
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
    }

    fn value<T: Serialize>(&mut self, v: &T) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        // Serializing plain data into a Vec cannot fail.
        self.buf = postcard::to_extend(v, std::mem::take(&mut self.buf)).unwrap_or_default();
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

impl Changes for Records {
    fn header(&mut self, ns: &[u8], key: &[u8], header: &Header<'_>) {
        self.key(HEADER, ns, key);
        self.value(header);
    }

    // The epoch is not written: replay follows the log's order, where the
    // element's header came first.
    fn element(&mut self, ns: &[u8], key: &[u8], _epoch: Stamp, element: &[u8], state: &Element) {
        self.key(ELEMENT, ns, key);
        self.buf.extend_from_slice(&(element.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(element);
        self.value(state);
    }

    fn removed(&mut self, ns: &[u8], key: &[u8]) {
        self.key(REMOVED, ns, key);
    }
}

fn corrupt() -> Error {
    Error::Corrupt("a log record does not decode".into())
}

struct Reader<'a> {
    buf: &'a [u8],
    base: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(corrupt)?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<usize, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// The next `n` bytes as a slice of the shared buffer (no copy).
    fn bytes(&mut self, n: usize) -> Result<Bytes, Error> {
        let start = self.at;
        self.take(n)?;
        Ok(self.base.slice(start..start + n))
    }

    fn value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        let n = self.u32()?;
        postcard::from_bytes(self.take(n)?).map_err(|_| corrupt())
    }
}

/// Decodes a buffer of records, calling `f` with each in order. Keys,
/// members and fields are copied out: what the keyspace keeps must not pin
/// the buffer.
pub(crate) fn decode(buf: &Bytes, mut f: impl FnMut(Record)) -> Result<usize, Error> {
    let mut r = Reader { buf, base: buf, at: 0 };
    let mut n = 0;
    while r.at < buf.len() {
        let tag = r.take(1)?[0];
        let ns_len = r.take(1)?[0] as usize;
        let ns = r.bytes(ns_len)?;
        let key_len = r.u32()?;
        let key = r.bytes(key_len)?;
        let record = match tag {
            HEADER => Record::Header { ns, key, header: r.value()? },
            ELEMENT => {
                let len = r.u32()?;
                let element = Bytes::copy_from_slice(r.take(len)?);
                Record::Element { ns, key, element, state: r.value()? }
            }
            REMOVED => Record::Removed { ns, key },
            _ => return Err(corrupt()),
        };
        f(record);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::HeaderBody;
    use squall_lattice::{Lww, Timestamp};

    #[test]
    fn records_decode_back_in_order() {
        let s = Stamp::new(Timestamp(9), 3);
        let header = Header { epoch: s, expiry: Some(Lww::new(s, Some(5))), body: HeaderBody::Set };
        let mut r = Records::default();
        r.header(b"ns", b"k", &header);
        r.element(b"ns", b"k", s, b"m", &Element::Member(Lww::new(s, true)));
        r.removed(b"other", b"gone");
        // A header borrowed from a slot reads back as an owned one.
        let reg = Header { epoch: s, expiry: None, body: HeaderBody::Register(std::borrow::Cow::Borrowed(b"value")) };
        r.header(b"ns", b"r", &reg);
        assert_eq!(r.len(), 4);
        let buf = Bytes::from(r.into_bytes());
        let mut got = Vec::new();
        assert_eq!(decode(&buf, |rec| got.push(rec)).unwrap(), 4);
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert_eq!(
            got,
            vec![
                Record::Header { ns: b("ns"), key: b("k"), header },
                Record::Element {
                    ns: b("ns"),
                    key: b("k"),
                    element: b("m"),
                    state: Element::Member(Lww::new(s, true))
                },
                Record::Removed { ns: b("other"), key: b("gone") },
                Record::Header {
                    ns: b("ns"),
                    key: b("r"),
                    header: Header { body: HeaderBody::Register(b"value".to_vec().into()), ..reg.clone() },
                },
            ]
        );
        assert!(decode(&buf.slice(..buf.len() - 1), |_| {}).is_err());
    }
}
