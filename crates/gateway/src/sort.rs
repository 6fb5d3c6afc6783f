//! SORT and SORT_RO as Redis 7.0 runs them: a list's, set's or sorted set's
//! elements ordered as numbers (or, ALPHA, as bytes), by themselves or by
//! the keys a BY pattern names, cut by LIMIT, answered as themselves or as
//! what GET patterns name, or stored as a list (STORE).
//!
//! The key is read whole in one unit; the keys BY and GET name are read in
//! a second unit together with the key again, and the sort starts over if
//! the key changed in between. STORE writes its list in a unit that applies
//! only if the key still reads the same.

use bytes::Bytes;
use squall_store::lattice::Kind;
use squall_store::{Keyspace, Op, OpResult, Reply, ZBy, ZRange};
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::resp::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: Bytes,
    by: Option<Bytes>,
    limit: (i64, i64),
    gets: Vec<Bytes>,
    desc: bool,
    alpha: bool,
    pub store: Option<Bytes>,
}

/// SORT (`readonly`: SORT_RO, which has no STORE) key [BY pattern] [LIMIT
/// offset count] [GET pattern ...] [ASC | DESC] [ALPHA] [STORE destination].
pub fn parse(args: &[Bytes], readonly: bool) -> Result<Sort, Frame> {
    let mut sort = Sort {
        key: args[1].clone(),
        by: None,
        limit: (0, -1),
        gets: Vec::new(),
        desc: false,
        alpha: false,
        store: None,
    };
    let mut i = 2;
    while i < args.len() {
        let left = args.len() - i - 1;
        let word = args[i].to_ascii_uppercase();
        match word.as_slice() {
            b"ASC" => sort.desc = false,
            b"DESC" => sort.desc = true,
            b"ALPHA" => sort.alpha = true,
            b"LIMIT" if left >= 2 => {
                sort.limit = (crate::commands::int(&args[i + 1])?, crate::commands::int(&args[i + 2])?);
                i += 2;
            }
            b"STORE" if left >= 1 && !readonly => {
                sort.store = Some(args[i + 1].clone());
                i += 1;
            }
            b"BY" if left >= 1 => {
                sort.by = Some(args[i + 1].clone());
                i += 1;
            }
            b"GET" if left >= 1 => {
                sort.gets.push(args[i + 1].clone());
                i += 1;
            }
            _ => return Err(Frame::err("syntax error")),
        }
        i += 1;
    }
    Ok(sort)
}

/// What a pattern names for an element: the key (the element in place of
/// the first `*`), and a hash field after `->`; `None` for a pattern
/// without `*`.
fn named(pattern: &[u8], element: &[u8]) -> Option<(Bytes, Option<Bytes>)> {
    let star = pattern.iter().position(|&c| c == b'*')?;
    let rest = &pattern[star + 1..];
    let (post, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(at) if at + 2 < rest.len() => (&rest[..at], Some(Bytes::copy_from_slice(&rest[at + 2..]))),
        _ => (rest, None),
    };
    let key = [&pattern[..star], element, post].concat();
    Some((Bytes::from(key), field))
}

/// The elements of what a snapshot read of the key gave, in their own
/// order, and the key's type; `Err` for a key of another type.
pub fn elements(
    ns: &Bytes,
    key: &Bytes,
    read: &OpResult,
    now: u64,
    node: squall_store::lattice::NodeId,
) -> Result<(Option<Kind>, Vec<Bytes>), Frame> {
    let entry = match read {
        Ok(Reply::Entry(entry)) => entry,
        Ok(_) => return Ok((None, Vec::new())),
        Err(e) => return Err(crate::commands::op_error(*e)),
    };
    let mut ks = Keyspace::new(node);
    ks.put(ns, key, squall_store::lattice::Entry::clone(entry));
    let kind = match ks.read(ns, key, &Op::Type, now) {
        Ok(Reply::Type(kind)) => kind,
        _ => None,
    };
    let op = match kind {
        None => return Ok((None, Vec::new())),
        Some(Kind::List) => Op::LRange(0, -1),
        Some(Kind::Set) => Op::SMembers,
        Some(Kind::ZSet) => Op::ZRange(ZRange { by: ZBy::Index(0, -1), rev: false, limit: None, scores: false }),
        Some(_) => return Err(crate::commands::op_error(squall_store::OpError::WrongType)),
    };
    match ks.read(ns, key, &op, now) {
        Ok(Reply::List(items)) => Ok((kind, items)),
        _ => Ok((kind, Vec::new())),
    }
}

/// The plan of a sort over `elements`: which elements, in which order,
/// once the named keys are known.
pub struct Plan {
    sort: Sort,
    kind: Option<Kind>,
    elements: Vec<Bytes>,
    sorting: bool,
    /// Each (key, field) to read, once.
    reads: Vec<(Bytes, Option<Bytes>)>,
    index: HashMap<(Bytes, Option<Bytes>), usize>,
}

impl Plan {
    pub fn new(mut sort: Sort, kind: Option<Kind>, elements: Vec<Bytes>) -> Plan {
        // BY without `*` means no sorting; a set then has no order of its
        // own to keep, and one being stored is sorted ALPHA (as in Redis).
        let mut sorting = sort.by.as_ref().is_none_or(|p| p.contains(&b'*'));
        if !sorting && kind == Some(Kind::Set) && sort.store.is_some() {
            (sorting, sort.alpha, sort.by) = (true, true, None);
        }
        let mut plan = Plan { sort, kind, elements, sorting, reads: Vec::new(), index: HashMap::new() };
        let mut patterns: Vec<Bytes> = plan.sort.gets.clone();
        if plan.sorting {
            patterns.extend(plan.sort.by.clone());
        }
        for p in patterns.iter().filter(|p| p.as_ref() != b"#") {
            for e in &plan.elements {
                if let Some(named) = named(p, e)
                    && !plan.index.contains_key(&named)
                {
                    plan.index.insert(named.clone(), plan.reads.len());
                    plan.reads.push(named);
                }
            }
        }
        plan
    }

    /// The reads of the keys the patterns name (a string, or a hash's field).
    pub fn reads(&self) -> Vec<(Bytes, Op)> {
        self.reads.iter().map(|(k, f)| (k.clone(), f.as_ref().map_or(Op::Get, |f| Op::HGet(f.clone())))).collect()
    }

    /// The rows of the answer, from what [`Plan::reads`] read: each
    /// element, or what each GET pattern names for it (`None`: nothing).
    pub fn rows(self, read: &[OpResult]) -> Result<Vec<Option<Bytes>>, Frame> {
        let look = |pattern: &[u8], e: &Bytes| -> Option<Bytes> {
            if pattern == b"#" {
                return Some(e.clone());
            }
            let i = *self.index.get(&named(pattern, e)?)?;
            match &read[i] {
                Ok(Reply::Bytes(b)) => Some(b.clone()),
                _ => None,
            }
        };
        let sort = &self.sort;
        let n = self.elements.len() as i64;
        // LIMIT as Redis clamps it.
        let start = sort.limit.0.clamp(0, n);
        let count = sort.limit.1.clamp(-1, n);
        let (mut start, mut end) = (start, if count < 0 { n - 1 } else { start + count - 1 });
        if start >= n {
            (start, end) = (n - 1, n - 2);
        }
        end = end.min(n - 1);
        let mut order: Vec<usize> = (0..self.elements.len()).collect();
        if self.sorting {
            let by = sort.by.as_deref();
            let keys: Vec<Option<Bytes>> =
                self.elements.iter().map(|e| by.map_or(Some(e.clone()), |p| look(p, e))).collect();
            let mut scores = vec![0.0; keys.len()];
            if !sort.alpha {
                for (s, k) in scores.iter_mut().zip(&keys) {
                    if let Some(k) = k {
                        *s = score(k).ok_or_else(|| Frame::err("One or more scores can't be converted into double"))?;
                    }
                }
            }
            let els = &self.elements;
            order.sort_by(|&a, &b| {
                let cmp = if sort.alpha {
                    keys[a].cmp(&keys[b])
                } else {
                    scores[a].partial_cmp(&scores[b]).unwrap_or(Ordering::Equal).then_with(|| els[a].cmp(&els[b]))
                };
                if sort.desc { cmp.reverse() } else { cmp }
            });
        } else if sort.desc && matches!(self.kind, Some(Kind::List | Kind::ZSet)) {
            // Unsorted, a list or a sorted set keeps its order, from its end with DESC.
            order.reverse();
        }
        let picked = if start <= end { &order[start as usize..=end as usize] } else { &[][..] };
        let mut rows = Vec::with_capacity(picked.len() * sort.gets.len().max(1));
        for &i in picked {
            let e = &self.elements[i];
            if sort.gets.is_empty() {
                rows.push(Some(e.clone()));
            }
            rows.extend(sort.gets.iter().map(|g| look(g, e)));
        }
        Ok(rows)
    }
}

/// An element (or what BY names) as a number, as Redis's `strtod` reads
/// it: leading spaces allowed, nothing after, not NaN, not out of range.
fn score(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if s.is_empty() {
        return Some(0.0);
    }
    let (sign, digits) = match s.as_bytes()[0] {
        b'-' => (-1.0, &s[1..]),
        b'+' => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| sign * v as f64);
    }
    let f: f64 = s.parse().ok()?;
    let infinite_text = digits.eq_ignore_ascii_case("inf") || digits.eq_ignore_ascii_case("infinity");
    (!f.is_nan() && (f.is_finite() || infinite_text)).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_keys_and_fields_as_redis_does() {
        assert_eq!(named(b"w_*", b"3"), Some((Bytes::from("w_3"), None)));
        assert_eq!(named(b"h_*->f", b"3"), Some((Bytes::from("h_3"), Some(Bytes::from("f")))));
        assert_eq!(named(b"h_*->", b"3"), Some((Bytes::from("h_3->"), None)));
        assert_eq!(named(b"a*b*", b"x"), Some((Bytes::from("axb*"), None)));
        assert_eq!(named(b"nostar", b"x"), None);
    }

    #[test]
    fn scores_read_as_strtod_reads_them() {
        assert_eq!(score(b" 1.5"), Some(1.5));
        assert_eq!(score(b""), Some(0.0));
        assert_eq!(score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(score(b"0x10"), Some(16.0));
        assert_eq!(score(b"1e400"), None);
        assert_eq!(score(b"nan"), None);
        assert_eq!(score(b"1 "), None);
        assert_eq!(score(b"abc"), None);
    }
}
