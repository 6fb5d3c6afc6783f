//! The keyspace's laws: the deltas of committed units, merged as lattices
//! in any order, give the state the keyspace holds; and what its operations
//! mean.

use super::*;
use proptest::prelude::*;
use squall_lattice::{Lattice, Timestamp};
use std::collections::BTreeMap;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ns() -> Bytes {
    b("default")
}

/// Collects one unit's changes as lattice deltas, one per key: the unit's
/// last word on each part it touched.
#[derive(Default)]
struct Deltas {
    stamp: Stamp,
    keys: BTreeMap<Bytes, Entry>,
}

impl Changes for Deltas {
    fn header(&mut self, _: &[u8], key: &[u8], header: &Header<'_>) {
        let fresh = header.clone().into_entry();
        match self.keys.get_mut(key) {
            Some(e) if e.epoch == header.epoch && !matches!(e.value, Value::Tombstone) => {
                e.expiry = fresh.expiry;
                if !matches!(fresh.value, Value::Set(_) | Value::Map(_) | Value::List(_) | Value::ZSet(_)) {
                    e.value = fresh.value;
                }
            }
            _ => {
                self.keys.insert(copy(key), fresh);
            }
        }
    }

    fn element(&mut self, _: &[u8], key: &[u8], epoch: Stamp, element: &[u8], state: StateRef<'_>) {
        let e = self.keys.entry(copy(key)).or_insert_with(|| {
            let value = match state {
                StateRef::Member(_) => Value::Set(Members::default()),
                StateRef::Field(_) => Value::Map(Fields::default()),
                StateRef::Item(_) => Value::List(Items::default()),
                StateRef::Score(_) => Value::ZSet(ZSet::default()),
            };
            Entry::new(epoch, value)
        });
        match (&mut e.value, state) {
            (Value::Set(m), StateRef::Member(r)) => {
                m.assign(copy(element), r.clone());
            }
            (Value::Map(m), StateRef::Field(r)) => {
                m.assign(copy(element), r.clone());
            }
            (Value::List(items), StateRef::Item(r)) => {
                items.assign(Place::decode(element).expect("a place"), r.clone());
            }
            (Value::ZSet(z), StateRef::Score(r)) => {
                z.assign(copy(element), r.clone());
            }
            _ => panic!("an element of another type"),
        }
    }

    fn removed(&mut self, _: &[u8], key: &[u8]) {
        self.keys.insert(copy(key), Entry::new(self.stamp, Value::Tombstone));
    }
}

/// What a reader sees of a merged entry: tombstones (of the key, of a
/// member, of a field) are absence.
fn observed(e: &Entry) -> Option<Entry> {
    let mut e = e.clone();
    match &mut e.value {
        Value::Tombstone => return None,
        Value::Set(m) => {
            let gone: Vec<Bytes> = m.iter().filter(|(_, r)| !r.value).map(|(k, _)| k.clone()).collect();
            for k in &gone {
                m.prune(k);
            }
            if m.is_empty() {
                return None;
            }
        }
        Value::Map(m) => {
            let gone: Vec<Bytes> = m.iter().filter(|(_, r)| r.value.is_none()).map(|(k, _)| k.clone()).collect();
            for k in &gone {
                m.prune(k);
            }
            if m.is_empty() {
                return None;
            }
        }
        Value::ZSet(z) => {
            let gone: Vec<Bytes> = z.registers().filter(|(_, r)| r.value.is_none()).map(|(m, _)| m.clone()).collect();
            for m in &gone {
                z.prune(m);
            }
            if z.is_empty() {
                return None;
            }
        }
        Value::List(items) => {
            let gone: Vec<Place> = items.iter().filter(|(_, r)| r.value.is_none()).map(|(p, _)| *p).collect();
            for p in &gone {
                items.prune(p);
            }
            if items.is_empty() {
                return None;
            }
        }
        _ => {}
    }
    Some(e)
}

fn op() -> impl Strategy<Value = (u8, Op)> {
    let key = 0u8..4;
    let member = prop::sample::select(vec!["a", "b", "c"]).prop_map(b);
    let members = prop::collection::vec(member.clone(), 1..3);
    prop_oneof![
        (key.clone(), prop::sample::select(vec!["x", "y", "7"]))
            .prop_map(|(k, v)| (k, Op::Set { value: b(v), expiry: SetExpiry::None, get: false })),
        (key.clone(), any::<bool>()).prop_map(|(k, keep)| (
            k,
            Op::Set { value: b("z"), expiry: if keep { SetExpiry::Keep } else { SetExpiry::At(1 << 40) }, get: false }
        )),
        key.clone().prop_map(|k| (k, Op::Del)),
        (key.clone(), -3i64..3).prop_map(|(k, d)| (k, Op::IncrBy(d))),
        (key.clone(), members.clone()).prop_map(|(k, m)| (k, Op::SAdd(m))),
        (key.clone(), members.clone()).prop_map(|(k, m)| (k, Op::SRem(m))),
        (key.clone(), members.clone())
            .prop_map(|(k, m)| (k, Op::HSet(m.into_iter().map(|f| (f.clone(), f)).collect()))),
        (key.clone(), members.clone()).prop_map(|(k, m)| (k, Op::HDel(m))),
        (key.clone(), any::<bool>(), members.clone())
            .prop_map(|(k, head, items)| (k, Op::Push { head, items, existing: false })),
        (key.clone(), any::<bool>(), prop::option::of(0u64..3))
            .prop_map(|(k, head, count)| (k, Op::Pop { head, count })),
        (key.clone(), -3i64..3).prop_map(|(k, i)| (k, Op::LSet(i, b("set")))),
        (key.clone(), any::<bool>(), member.clone(), member.clone())
            .prop_map(|(k, before, pivot, item)| (k, Op::LInsert { before, pivot, item })),
        (key.clone(), -2i64..2, member.clone()).prop_map(|(k, c, v)| (k, Op::LRem(c, v))),
        (key.clone(), -3i64..3, -3i64..3).prop_map(|(k, a, z)| (k, Op::LTrim(a, z))),
        (key.clone(), prop::collection::vec((-2i8..3, member.clone()), 1..3), any::<(bool, bool, bool)>()).prop_map(
            |(k, pairs, (xx, gt, ch))| {
                let pairs = pairs.into_iter().map(|(s, m)| (f64::from(s), m)).collect();
                (k, Op::ZAdd { pairs, opts: ZAddOpts { xx, gt, ch, ..ZAddOpts::default() } })
            }
        ),
        (key.clone(), -2i8..3, member.clone()).prop_map(|(k, s, m)| (
            k,
            Op::ZAdd { pairs: vec![(f64::from(s), m)], opts: ZAddOpts { incr: true, ..ZAddOpts::default() } }
        )),
        (key.clone(), members.clone()).prop_map(|(k, m)| (k, Op::ZRem(m))),
        (key.clone(), any::<bool>(), prop::option::of(0u64..3))
            .prop_map(|(k, max, count)| (k, Op::ZPop { max, count })),
        (key.clone(), 1u64..5).prop_map(|(k, t)| (k, Op::ExpireAt((1 << 40) + t))),
        key.prop_map(|k| (k, Op::Persist)),
    ]
}

fn units() -> impl Strategy<Value = Vec<Vec<(u8, Op)>>> {
    prop::collection::vec(prop::collection::vec(op(), 1..4), 1..12)
}

proptest! {
    #[test]
    fn committed_units_merged_in_any_order_give_the_live_state(
        units in units(),
        orders in prop::collection::vec(any::<u64>(), 3),
    ) {
        let node = 7;
        let mut live = Keyspace::new(node);
        let mut deltas = Vec::new();
        for (i, unit) in units.iter().enumerate() {
            // One stamp per unit, later units later.
            let stamp = Stamp::new(Timestamp::new(1000 + i as u64, 0), node);
            let mut d = Deltas { stamp, keys: BTreeMap::new() };
            for (k, op) in unit {
                let _ = live.apply_with(&ns(), format!("k{k}").as_bytes(), op.clone(), stamp, 0, &mut d, None);
            }
            deltas.push(d.keys);
        }
        let mut states = Vec::new();
        for seed in orders {
            // A shuffle from the seed.
            let mut order: Vec<usize> = (0..deltas.len()).collect();
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut merged: BTreeMap<Bytes, Entry> = BTreeMap::new();
            for i in order {
                for (k, e) in &deltas[i] {
                    match merged.get_mut(k) {
                        Some(m) => m.merge(e.clone()),
                        None => { merged.insert(k.clone(), e.clone()); }
                    }
                }
            }
            states.push(merged);
        }
        for s in &states[1..] {
            prop_assert_eq!(s, &states[0]);
        }
        for k in 0u8..4 {
            let key = format!("k{k}");
            let seen = states[0].get(key.as_bytes()).and_then(observed);
            prop_assert_eq!(live.snapshot(b"default", key.as_bytes(), 0), seen, "key {}", key);
        }
    }
}

#[test]
fn a_field_named_twice_keeps_its_last_value_and_counts_once() {
    let mut ks = Keyspace::new(1);
    let s = Stamp::new(Timestamp(5), 1);
    let pairs = vec![(b("f"), b("1")), (b("g"), b("x")), (b("f"), b("2"))];
    assert_eq!(ks.apply(&ns(), b"h", Op::HSet(pairs), s, 0), Ok(Reply::Int(2)));
    assert_eq!(ks.read(b"default", b"h", &Op::HGet(b("f")), 0), Ok(Reply::Bytes(b("2"))));
    assert_eq!(ks.read(b"default", b"h", &Op::HLen, 0), Ok(Reply::Int(2)));
}

#[test]
fn the_last_member_or_field_to_go_takes_the_key_with_it() {
    let mut ks = Keyspace::new(1);
    let s = Stamp::new(Timestamp(5), 1);
    ks.apply(&ns(), b"s", Op::SAdd(vec![b("a"), b("b")]), s, 0).unwrap();
    assert_eq!(ks.apply(&ns(), b"s", Op::SRem(vec![b("a"), b("a"), b("zz")]), s, 0), Ok(Reply::Int(1)));
    assert_eq!(ks.apply(&ns(), b"s", Op::SRem(vec![b("b")]), s, 0), Ok(Reply::Int(1)));
    assert_eq!(ks.read(b"default", b"s", &Op::Exists, 0), Ok(Reply::Int(0)));
    assert_eq!(ks.keys(), 0);
    ks.apply(&ns(), b"h", Op::HSet(vec![(b("f"), b("v"))]), s, 0).unwrap();
    assert_eq!(ks.apply(&ns(), b"h", Op::HDel(vec![b("f")]), s, 0), Ok(Reply::Int(1)));
    assert_eq!(ks.read(b"default", b"h", &Op::Type, 0), Ok(Reply::Type(None)));
    assert_eq!(ks.bytes(), 0);
}

#[test]
fn removing_elements_from_the_wrong_type_changes_nothing_and_counts_nothing() {
    let mut ks = Keyspace::new(1);
    let s = Stamp::new(Timestamp(5), 1);
    let set = Op::Set { value: b("v"), expiry: SetExpiry::None, get: false };
    ks.apply(&ns(), b"str", set, s, 0).unwrap();
    ks.apply(&ns(), b"n", Op::IncrBy(3), s, 0).unwrap();
    ks.apply(&ns(), b"s", Op::SAdd(vec![b("a")]), s, 0).unwrap();
    let before = ks.bytes();
    for key in [&b"str"[..], b"n", b"s"] {
        assert_eq!(ks.apply(&ns(), key, Op::HDel(vec![b("a")]), s, 0), Err(OpError::WrongType));
    }
    for key in [&b"str"[..], b"n"] {
        assert_eq!(ks.apply(&ns(), key, Op::SRem(vec![b("a")]), s, 0), Err(OpError::WrongType));
    }
    assert_eq!(ks.bytes(), before);
    // Dropping the string and the counter gives back what they took.
    let mut set_only = Keyspace::new(1);
    set_only.apply(&ns(), b"s", Op::SAdd(vec![b("a")]), s, 0).unwrap();
    ks.apply(&ns(), b"str", Op::Del, s, 0).unwrap();
    ks.apply(&ns(), b"n", Op::Del, s, 0).unwrap();
    assert_eq!(ks.bytes(), set_only.bytes());
}

#[test]
fn expired_keys_read_as_missing_and_go_when_written_or_reaped() {
    let mut ks = Keyspace::new(1);
    let s = Stamp::new(Timestamp(5), 1);
    let set = |v: &str, at| Op::Set { value: b(v), expiry: SetExpiry::At(at), get: false };
    ks.apply(&ns(), b"a", set("1", 100), s, 0).unwrap();
    ks.apply(&ns(), b"b", set("2", 100), s, 0).unwrap();
    assert_eq!(ks.read(b"default", b"a", &Op::Get, 99), Ok(Reply::Bytes(b("1"))));
    assert_eq!(ks.read(b"default", b"a", &Op::Get, 100), Ok(Reply::Nil));
    // A write sees no old value.
    assert_eq!(ks.apply(&ns(), b"a", Op::IncrBy(1), s, 100), Ok(Reply::Int(1)));
    let mut gone = Deltas::default();
    assert_eq!(ks.reap(150, 10, &mut gone, |_, _, _| {}, |_, _| false), 1);
    assert_eq!(gone.keys.keys().collect::<Vec<_>>(), vec![&b("b")]);
    assert_eq!(ks.keys(), 1);
}

#[test]
fn a_scan_pages_through_every_key_and_filters_by_pattern_and_type() {
    let mut ks = Keyspace::new(1);
    let s = Stamp::new(Timestamp(5), 1);
    for i in 0..3_000 {
        let key = format!("user:{i}");
        ks.apply(&ns(), key.as_bytes(), Op::Set { value: b("v"), expiry: SetExpiry::None, get: false }, s, 0).unwrap();
    }
    ks.apply(&ns(), b"tags", Op::SAdd(vec![b("x")]), s, 0).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut from = 0;
    loop {
        let page = ks.scan(b"default", from, 10, Some(b"user:*"), None, 0);
        assert!(page.keys.len() <= super::table::PART_MAX);
        seen.extend(page.keys);
        match page.next {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), 3_000);
    let sets = ks.scan(b"default", 0, 10_000, None, Some("set"), 0);
    assert_eq!(sets.keys, vec![b("tags")]);
}

#[test]
fn random_picks_are_distinct_live_members_and_reach_them_all() {
    let stamp = Stamp::new(Timestamp::new(1, 0), 1);
    let mut set = Members::default();
    for i in 0..1000u32 {
        set.assign(Bytes::from(i.to_string()), Lww::new(stamp, true));
    }
    // Buckets at random: distinct members, all of them reached.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5000 {
        let p = super::pick(&set, 4);
        assert_eq!(p.iter().collect::<std::collections::HashSet<_>>().len(), 4, "{p:?}");
        seen.extend(p);
    }
    assert!(seen.len() > 950, "{} of 1000 reached", seen.len());
    // Most removed: the table gives its room back, picks still find members.
    for i in 0..990u32 {
        set.prune(i.to_string().as_bytes());
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let p = super::pick(&set, 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{p:?}");
        for m in p {
            assert!(m.as_ref() >= b"990".as_slice(), "{m:?} was removed");
            seen.insert(m);
        }
    }
    assert_eq!(seen.len(), 10);
    // More than there are: all of them.
    assert_eq!(super::pick(&set, 50).len(), 10);
}

/// Counts the elements a dump step writes, into deltas.
struct Step<'a> {
    deltas: &'a mut Deltas,
    elements: usize,
}

impl Changes for Step<'_> {
    fn header(&mut self, ns: &[u8], key: &[u8], header: &Header<'_>) {
        self.deltas.header(ns, key, header);
    }
    fn element(&mut self, ns: &[u8], key: &[u8], epoch: Stamp, element: &[u8], state: StateRef<'_>) {
        self.elements += 1;
        self.deltas.element(ns, key, epoch, element, state);
    }
    fn removed(&mut self, ns: &[u8], key: &[u8]) {
        self.deltas.removed(ns, key);
    }
}

#[test]
fn a_dump_writes_big_keys_in_slices_and_with_the_writes_between_gives_the_live_state() {
    let node = 3;
    let mut ks = Keyspace::new(node);
    let mut time = 100u64;
    let mut stamp = || {
        time += 1;
        Stamp::new(Timestamp::new(time, 0), node)
    };
    let names = |from: usize, n: usize| (from..from + n).map(|i| b(&format!("m{i}"))).collect::<Vec<_>>();
    let big = 3 * DUMP_ELEMENTS;
    ks.apply(&ns(), b"s", Op::SAdd(names(0, big)), stamp(), 0).unwrap();
    let fields = names(0, big).into_iter().map(|f| (f.clone(), f)).collect();
    ks.apply(&ns(), b"h", Op::HSet(fields), stamp(), 0).unwrap();
    let pairs = names(0, big).into_iter().enumerate().map(|(i, m)| (i as f64, m)).collect();
    ks.apply(&ns(), b"z", Op::ZAdd { pairs, opts: ZAddOpts::default() }, stamp(), 0).unwrap();
    ks.apply(&ns(), b"l", Op::Push { head: false, items: names(0, big), existing: false }, stamp(), 0).unwrap();
    for i in 0..600 {
        let set = Op::Set { value: b("v"), expiry: SetExpiry::None, get: false };
        ks.apply(&ns(), format!("k{i}").as_bytes(), set, stamp(), 0).unwrap();
    }

    let mut snap = Deltas::default();
    let mut after: Vec<BTreeMap<Bytes, Entry>> = Vec::new();
    let mut cursor = DumpCursor::default();
    let mut steps = 0;
    let mut shrunk = std::collections::HashSet::new();
    loop {
        let mut step = Step { deltas: &mut snap, elements: 0 };
        let next = ks.dump(&cursor, 256, &mut step);
        assert!(step.elements <= DUMP_ELEMENTS + 256, "step {steps} wrote {} elements", step.elements);
        steps += 1;
        let Some(next) = next else { break };
        cursor = next;
        // Writes between steps: the set grows (its table moves its
        // entries), the hash loses fields, the list gains and loses items,
        // the sorted set changes scores, a key is made anew.
        let writes = [
            (b("s"), Op::SAdd(names(big + steps * 2000, 2000))),
            (b("h"), Op::HDel(names(big + steps, 1))),
            (b("l"), Op::Push { head: true, items: names(steps, 1), existing: false }),
            (b("l"), Op::Pop { head: false, count: Some(3) }),
            (b("z"), Op::ZAdd { pairs: vec![(-1.0, b(&format!("m{steps}")))], opts: ZAddOpts::default() }),
            (b("k7"), Op::Del),
            (b("k7"), Op::SAdd(names(0, 2))),
        ];
        // A table caught in the middle of its walk loses most of its
        // entries at once, and shrinks.
        let mut writes = writes.to_vec();
        if let Some(PartKey { key, at: ElementAt::Bucket { next, .. }, .. }) = cursor.pending.front()
            && *next > 0
            && shrunk.insert(key.clone())
        {
            let most = names(0, big - big / 10);
            let op = match key.as_ref() {
                b"s" => Op::SRem(most),
                b"h" => Op::HDel(most),
                _ => Op::ZRem(most),
            };
            writes.push((key.clone(), op));
        }
        for (key, op) in writes {
            let s = stamp();
            let mut d = Deltas { stamp: s, keys: BTreeMap::new() };
            ks.apply_with(&ns(), &key, op, s, 0, &mut d, None).unwrap();
            after.push(d.keys);
        }
    }
    assert!(steps >= 5, "the big keys were written in slices ({steps} steps)");
    assert!(!shrunk.is_empty(), "a table shrank under its walk");

    let mut merged = snap.keys;
    for d in after {
        for (k, e) in d {
            match merged.get_mut(&k) {
                Some(m) => m.merge(e),
                None => {
                    merged.insert(k, e);
                }
            }
        }
    }
    let keys: Vec<Bytes> = merged.keys().cloned().collect();
    assert_eq!(keys.len(), 604);
    for key in keys {
        let seen = merged.get(&key).and_then(observed);
        assert_eq!(ks.snapshot(b"default", &key, 0), seen, "key {key:?}");
    }
}
