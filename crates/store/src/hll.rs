//! HyperLogLog as Redis keeps it: a string of 16,384 six-bit registers
//! behind a 16-byte header ("HYLL", the encoding, a cached count), an
//! element's register and run length from MurmurHash64A, and the count from
//! the registers by Ertl's estimator (arXiv:1702.01284), as Redis 7 counts.
//! The same elements therefore give the same registers, and the same
//! count, as on Redis.
//!
//! Registers merge by their maximum, which makes a HyperLogLog a lattice;
//! PFADD and PFMERGE still rewrite the string at the key's owner, because
//! the key may hold any string and must be checked first.
//!
//! Strings are read in both of Redis's encodings (dense, and sparse: runs
//! of registers) and written dense (Redis writes small ones sparse, so a
//! GET or STRLEN of one differs; a Redis reading Squall's reads it).

use crate::op::OpError;

/// Registers (2^14), and the bits of a hash that pick one.
const P: u32 = 14;
pub const REGISTERS: usize = 1 << P;
/// Bits of the hash left for the run (Redis's `HLL_Q`).
const Q: u32 = 64 - P;
const HEADER: usize = 16;
/// A dense string's length: the header and 6 bits per register.
pub const DENSE_LEN: usize = HEADER + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;

/// One byte per register.
#[derive(Clone)]
pub struct Registers(Box<[u8; REGISTERS]>);

impl Default for Registers {
    fn default() -> Self {
        Registers(Box::new([0; REGISTERS]))
    }
}

impl Registers {
    /// The registers a HyperLogLog string holds. Not one (too short, no
    /// magic, an unknown encoding, a dense one of the wrong length):
    /// [`OpError::NotHll`]; a sparse one whose runs do not add up:
    /// [`OpError::BadHll`].
    pub fn read(s: &[u8]) -> Result<Registers, OpError> {
        if s.len() < HEADER || &s[..4] != b"HYLL" || s[4] > SPARSE || (s[4] == DENSE && s.len() != DENSE_LEN) {
            return Err(OpError::NotHll);
        }
        let mut r = Registers::default();
        let body = &s[HEADER..];
        if s[4] == DENSE {
            for (i, reg) in r.0.iter_mut().enumerate() {
                let (byte, shift) = (i * 6 / 8, (i * 6) % 8);
                let pair = u16::from(body[byte]) | (u16::from(*body.get(byte + 1).unwrap_or(&0)) << 8);
                *reg = ((pair >> shift) & 63) as u8;
            }
            return Ok(r);
        }
        let mut at = 0usize;
        let mut p = 0usize;
        while p < body.len() {
            let op = body[p];
            let (run, value) = match op >> 6 {
                0 => (usize::from(op & 0x3f) + 1, 0),
                1 => {
                    let next = *body.get(p + 1).ok_or(OpError::BadHll)?;
                    p += 1;
                    (((usize::from(op & 0x3f) << 8) | usize::from(next)) + 1, 0)
                }
                _ => (usize::from(op & 3) + 1, ((op >> 2) & 0x1f) + 1),
            };
            p += 1;
            let end = at.checked_add(run).filter(|&e| e <= REGISTERS).ok_or(OpError::BadHll)?;
            r.0[at..end].fill(value);
            at = end;
        }
        if at != REGISTERS {
            return Err(OpError::BadHll);
        }
        Ok(r)
    }

    /// The count a HyperLogLog string has cached, if it is valid.
    pub fn cached(s: &[u8]) -> Option<u64> {
        let card: [u8; 8] = s.get(8..16)?.try_into().ok()?;
        (card[7] & 0x80 == 0).then(|| u64::from_le_bytes(card))
    }

    /// The dense string of these registers, its cached count marked invalid.
    pub fn dense(&self) -> Vec<u8> {
        let mut s = vec![0u8; DENSE_LEN];
        s[..4].copy_from_slice(b"HYLL");
        s[4] = DENSE;
        s[15] = 0x80;
        let body = &mut s[HEADER..];
        for (i, &v) in self.0.iter().enumerate() {
            let (byte, shift) = (i * 6 / 8, (i * 6) % 8);
            let bits = u16::from(v) << shift;
            body[byte] |= bits as u8;
            if let Some(b) = body.get_mut(byte + 1) {
                *b |= (bits >> 8) as u8;
            }
        }
        s
    }

    /// Adds an element; true if a register grew.
    pub fn add(&mut self, element: &[u8]) -> bool {
        let hash = murmur64a(element, 0xadc8_3b19);
        let index = (hash & (REGISTERS as u64 - 1)) as usize;
        // The run of zeros after the index bits, plus one; the bit set at
        // Q bounds it (as in Redis).
        let run = ((hash >> P) | (1 << Q)).trailing_zeros() as u8 + 1;
        if run > self.0[index] {
            self.0[index] = run;
            return true;
        }
        false
    }

    /// Each register the larger of its own and `other`'s.
    pub fn merge(&mut self, other: &Registers) {
        for (a, &b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = (*a).max(b);
        }
    }

    /// The raw registers, one byte each (what PFMERGE carries to the owner).
    pub fn raw(&self) -> &[u8] {
        &self.0[..]
    }

    /// Registers from their raw bytes (`None` unless exactly [`REGISTERS`]
    /// of at most 51 each).
    pub fn from_raw(raw: &[u8]) -> Option<Registers> {
        let regs: [u8; REGISTERS] = raw.try_into().ok()?;
        regs.iter().all(|&r| u32::from(r) <= Q + 1).then(|| Registers(Box::new(regs)))
    }

    /// The estimated number of distinct elements added.
    pub fn count(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; 64];
        for &r in self.0.iter() {
            histogram[usize::from(r)] += 1;
        }
        let q = Q as usize;
        let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
        for j in (1..=q).rev() {
            z += f64::from(histogram[j]);
            z *= 0.5;
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        // 0.5 / ln 2, as Redis's HLL_ALPHA_INF.
        (0.721_347_520_444_481_7 * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// MurmurHash64A, as Redis's hyperloglog.c has it (little-endian words).
fn murmur64a(data: &[u8], seed: u32) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = u64::from(seed) ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_strings_read_back_and_counts_are_close() {
        let mut r = Registers::default();
        assert_eq!(r.count(), 0);
        for i in 0..100_000u32 {
            r.add(format!("element:{i}").as_bytes());
        }
        let n = r.count() as f64;
        assert!((n - 100_000.0).abs() / 100_000.0 < 0.02, "{n}");
        let s = r.dense();
        assert_eq!(s.len(), DENSE_LEN);
        assert_eq!(Registers::cached(&s), None);
        let back = Registers::read(&s).unwrap();
        assert_eq!(back.raw(), r.raw());
        assert_eq!(Registers::from_raw(r.raw()).unwrap().count(), r.count());
    }

    #[test]
    fn sparse_strings_read_and_bad_ones_are_refused() {
        // Redis's sparse string after PFADD k a: XZERO runs around one VAL.
        let mut r = Registers::default();
        assert!(r.add(b"a"));
        assert!(!r.add(b"a"));
        let (index, value) = r.raw().iter().enumerate().find(|(_, v)| **v > 0).map(|(i, v)| (i, *v)).unwrap();
        let mut s = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80".to_vec();
        let zeros = |s: &mut Vec<u8>, n: usize| {
            if n > 0 {
                s.push(0x40 | ((n - 1) >> 8) as u8);
                s.push(((n - 1) & 0xff) as u8);
            }
        };
        zeros(&mut s, index);
        s.push(0x80 | ((value - 1) << 2));
        zeros(&mut s, REGISTERS - index - 1);
        assert_eq!(Registers::read(&s).unwrap().raw(), r.raw());
        assert_eq!(Registers::read(&s[..s.len() - 2]).err(), Some(OpError::BadHll));
        assert_eq!(Registers::read(b"HYLL").err(), Some(OpError::NotHll));
        assert_eq!(Registers::read(&r.dense()[..DENSE_LEN - 1]).err(), Some(OpError::NotHll));
        assert_eq!(Registers::read(b"not a hyperloglog at all").err(), Some(OpError::NotHll));
    }
}
