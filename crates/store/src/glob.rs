//! Redis-style glob matching for KEYS and SCAN MATCH: `*`, `?`, `[abc]`,
//! `[^a-z]`, and `\` to escape. Iterative with one backtrack point, so a
//! hostile pattern cannot make it exponential.

pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, s[i])
                        && matched
                    {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[open] == '['`.
/// Returns whether it matched and the index after the class.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut p = open + 1;
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(p)? {
            b']' => break,
            b'\\' => {
                p += 1;
                if *pattern.get(p)? == c {
                    matched = true;
                }
                p += 1;
            }
            &lo if pattern.get(p + 1) == Some(&b'-') && pattern.get(p + 2).is_some_and(|&h| h != b']') => {
                let hi = pattern[p + 2];
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                if (lo..=hi).contains(&c) {
                    matched = true;
                }
                p += 3;
            }
            &x => {
                if x == c {
                    matched = true;
                }
                p += 1;
            }
        }
    }
    Some((matched != negate, p + 1))
}

/// A pattern matching exactly the keys that start with `prefix` (its special characters escaped).
pub fn prefix_pattern(prefix: &[u8]) -> bytes::Bytes {
    let mut p = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            p.push(b'\\');
        }
        p.push(b);
    }
    p.push(b'*');
    p.into()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_like_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "abc"),
            ("a*", "abc"),
            ("*c", "abc"),
            ("a?c", "abc"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("user:*:name", "user:42:name"),
            ("a\\*", "a*"),
            ("*a*b*", "xxaxxbxx"),
        ];
        let no: &[(&str, &str)] = &[
            ("a*", "bac"),
            ("a?c", "ac"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*", "ab"),
            ("abc", "abcd"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes()), "{p} should match {s}");
        }
        for (p, s) in no {
            assert!(!matches(p.as_bytes(), s.as_bytes()), "{p} should not match {s}");
        }
    }

    #[test]
    fn a_pathological_pattern_is_fast() {
        let p = "*a".repeat(50) + "b";
        let s = "a".repeat(10_000);
        assert!(!matches(p.as_bytes(), s.as_bytes()));
    }

    #[test]
    fn an_unclosed_class_matches_nothing_and_does_not_panic() {
        assert!(!matches(b"[abc", b"a"));
        assert!(!matches(b"[", b"a"));
        assert!(!matches(b"[\\", b"a"));
    }
}
