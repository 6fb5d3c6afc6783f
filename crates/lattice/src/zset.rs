//! The sorted set: a map of member → last-writer-wins score (a removed
//! member holds `None`), with the members also kept in score order for
//! ranges and ranks. The order is derived: it is not part of the lattice,
//! equality or the serialized form.

use crate::{LMap, Lattice, Lww};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A score: a float with a total order (`-inf` < ... < `inf`; NaN is never
/// stored, the commands refuse it).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Score(pub f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // -0.0 and 0.0 are one score, as in Redis.
        let norm = |f: f64| if f == 0.0 { 0.0 } else { f };
        norm(self.0).total_cmp(&norm(other.0))
    }
}

/// A member's register.
pub type ScoreReg = Lww<Option<Score>>;

/// A sorted set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(Bytes, ScoreReg)>", into = "Vec<(Bytes, ScoreReg)>")]
pub struct ZSet {
    scores: LMap<Bytes, ScoreReg>,
    /// The members with a score, by (score, member): Redis's order.
    order: BTreeSet<(Score, Bytes)>,
}

impl PartialEq for ZSet {
    fn eq(&self, other: &Self) -> bool {
        self.scores == other.scores
    }
}

impl Eq for ZSet {}

impl From<Vec<(Bytes, ScoreReg)>> for ZSet {
    fn from(v: Vec<(Bytes, ScoreReg)>) -> Self {
        let mut z = ZSet::default();
        for (m, r) in v {
            z.merge_member(m, r);
        }
        z
    }
}

impl From<ZSet> for Vec<(Bytes, ScoreReg)> {
    fn from(z: ZSet) -> Self {
        z.scores.into_iter().collect()
    }
}

impl ZSet {
    /// Members held (the node that holds a set prunes removed ones at once).
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The member's register.
    pub fn get(&self, member: &[u8]) -> Option<&ScoreReg> {
        self.scores.get(member)
    }

    /// The member's score, if it has one.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).and_then(|r| r.value).map(|s| s.0)
    }

    /// Every register, in no order.
    pub fn registers(&self) -> impl Iterator<Item = (&Bytes, &ScoreReg)> {
        self.scores.iter()
    }

    /// The registers in buckets `from` on, `budget` at most (see
    /// [`LMap::walk_buckets`]); `layout` says when a walk must start again.
    pub fn walk_registers(&self, from: usize, budget: usize, visit: impl FnMut(&Bytes, &ScoreReg)) -> Option<usize> {
        self.scores.walk_buckets(from, budget, visit)
    }

    /// The registers, as a map.
    pub fn registers_map(&self) -> &LMap<Bytes, ScoreReg> {
        &self.scores
    }

    /// See [`LMap::layout`].
    pub fn layout(&self) -> u32 {
        self.scores.layout()
    }

    /// The scored members, lowest first (ties by member bytes).
    pub fn ordered(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    /// Members scored from `min` on, lowest first.
    pub fn from_score(&self, min: f64) -> impl Iterator<Item = (&Bytes, f64)> {
        self.order.range((Score(min), Bytes::new())..).map(|(s, m)| (m, s.0))
    }

    /// Members scored up to `max`, highest first.
    pub fn down_from_score(&self, max: f64) -> impl Iterator<Item = (&Bytes, f64)> {
        use std::ops::Bound;
        let below = self.order.range((Bound::Unbounded, Bound::Excluded((Score(max), Bytes::new()))));
        // The members at exactly `max` come first (highest member first).
        let at: Vec<(&Bytes, f64)> = self
            .order
            .range((Score(max), Bytes::new())..)
            .take_while(|(s, _)| *s == Score(max))
            .map(|(s, m)| (m, s.0))
            .collect();
        at.into_iter().rev().chain(below.rev().map(|(s, m)| (m, s.0)))
    }

    /// Puts `r` as `member`'s register, whatever it was; returns the old one.
    pub fn assign(&mut self, member: Bytes, r: ScoreReg) -> Option<ScoreReg> {
        let new = r.value;
        let (old, kept) = self.scores.assign_keyed(member, r);
        reorder(&mut self.order, kept, old.as_ref().and_then(|o| o.value), new);
        old
    }

    /// [`ZSet::assign`] for a member given borrowed: copied only if it is
    /// new (the order shares the map's copy).
    pub fn assign_borrowed(&mut self, member: &[u8], r: ScoreReg) -> Option<ScoreReg> {
        let new = r.value;
        let (old, kept) = self.scores.assign_borrowed_keyed(member, Bytes::copy_from_slice, r);
        reorder(&mut self.order, kept, old.as_ref().and_then(|o| o.value), new);
        old
    }

    /// Drops `member` altogether (its register too).
    pub fn prune(&mut self, member: &[u8]) -> Option<ScoreReg> {
        let (member, old) = self.scores.remove_entry(member)?;
        if let Some(s) = old.value {
            self.order.remove(&(s, member));
        }
        Some(old)
    }

    /// Takes the old score out of the order, unless it is the new one too.
    fn unorder(&mut self, member: &Bytes, old: Option<&ScoreReg>) {
        let new = self.scores.get(member).and_then(|r| r.value);
        if let Some(old) = old.and_then(|o| o.value)
            && Some(old) != new
        {
            self.order.remove(&(old, member.clone()));
        }
    }

    /// Joins `r` into `member`'s register.
    pub fn merge_member(&mut self, member: Bytes, r: ScoreReg) {
        let old = self.scores.get(&member).cloned();
        let mut joined = old.clone().unwrap_or_else(|| r.clone());
        joined.merge(r);
        if let Some(s) = joined.value {
            self.order.insert((s, member.clone()));
        }
        self.scores.assign(member.clone(), joined);
        self.unorder(&member, old.as_ref());
    }
}

/// Moves `member` in `order` from score `was` to `new` (the order changes
/// only if the score does), sharing the map's copy of the member.
fn reorder(order: &mut BTreeSet<(Score, Bytes)>, member: &Bytes, was: Option<Score>, new: Option<Score>) {
    if was != new {
        if let Some(s) = was {
            order.remove(&(s, member.clone()));
        }
        if let Some(s) = new {
            order.insert((s, member.clone()));
        }
    }
}

impl Lattice for ZSet {
    fn merge(&mut self, other: Self) {
        for (m, r) in other.scores {
            self.merge_member(m, r);
        }
    }
}

/// A score as Redis 7.0 writes it (`%.17g`): `1`, `1.5`,
/// `0.10000000000000001`, `1e+20`, `inf`, `-inf`.
pub fn format_score(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // 17 significant digits, then %g's choice of form.
    let sci = format!("{f:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("an exponent");
    let exp: i32 = exp.parse().expect("a number");
    let trim = |s: &str| -> String {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim(&format!("{f:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_read_as_redis_writes_them() {
        for (f, s) in [
            (0.1, "0.10000000000000001"),
            (1.0, "1"),
            (1.5, "1.5"),
            (3.0, "3"),
            (1e20, "1e+20"),
            (1.0 + 0.1, "1.1000000000000001"),
            (-2.5, "-2.5"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (123456789.0, "123456789"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(format_score(f), s, "{f}");
        }
    }

    #[test]
    fn the_order_follows_the_registers() {
        let st = |t| crate::Stamp::new(crate::Timestamp(t), 1);
        let mut z = ZSet::default();
        z.assign(Bytes::from_static(b"a"), Lww::new(st(1), Some(Score(2.0))));
        z.assign(Bytes::from_static(b"b"), Lww::new(st(1), Some(Score(1.0))));
        z.assign(Bytes::from_static(b"a"), Lww::new(st(2), Some(Score(0.5))));
        let order: Vec<(&[u8], f64)> = z.ordered().map(|(m, s)| (m.as_ref(), s)).collect();
        assert_eq!(order, [(&b"a"[..], 0.5), (&b"b"[..], 1.0)]);
        z.merge_member(Bytes::from_static(b"b"), Lww::new(st(3), None));
        assert_eq!(z.ordered().count(), 1);
        z.merge_member(Bytes::from_static(b"a"), Lww::new(st(1), Some(Score(9.0))));
        assert_eq!(z.score(b"a"), Some(0.5), "an older write loses");
        z.prune(b"a");
        assert_eq!(z.ordered().count(), 0);
    }
}
