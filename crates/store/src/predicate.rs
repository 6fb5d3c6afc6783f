//! Predicates over values, for finding the first time something held
//! ([`crate::Handle::find`]).
//!
//! ```text
//! pred    := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | "(" pred ")" | atom
//! atom    := KEY                         the key is there
//!          | KEY OP LITERAL              a register or counter compared
//!          | KEY "has" LITERAL           a set holds the member
//!          | KEY "[" LITERAL "]"         a hash has the field
//!          | KEY "[" LITERAL "]" OP LITERAL   a hash field compared
//! OP      := == | != | < | <= | > | >=
//! KEY, LITERAL := a bare word (letters, digits and : _ - . / @ + *) or a
//!          "quoted string" (\" and \\ inside); a bare KEY ending in * is
//!          every key with that prefix, and the atom holds if it holds for one
//! ```
//!
//! Comparisons are numeric when both sides read as numbers, else bytewise;
//! an atom on a key that is not there, or of another type, does not hold.
//! Keywords (`and`, `or`, `not`, `has`) are case-insensitive.

use bytes::Bytes;
use squall_lattice::{Entry, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Or(Vec<Pred>),
    And(Vec<Pred>),
    Not(Box<Pred>),
    Atom(Atom),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    pub key: KeyPattern,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyPattern {
    Exact(Bytes),
    Prefix(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Exists,
    Compare(CmpOp, Bytes),
    Has(Bytes),
    Field(Bytes, Option<(CmpOp, Bytes)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(CmpOp),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let eq = chars.peek() == Some(&'=');
                if eq {
                    chars.next();
                }
                out.push(Token::Op(match (c, eq) {
                    ('=', true) => CmpOp::Eq,
                    ('!', true) => CmpOp::Ne,
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    ('>', true) => CmpOp::Ge,
                    _ => return Err(format!("'{c}' is not an operator: use == != < <= > >=")),
                }));
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("a quoted string is not closed".into()),
                        Some('"') => break,
                        Some('\\') => s.push(chars.next().ok_or("a quoted string ends in \\")?),
                        Some(c) => s.push(c),
                    }
                }
                out.push(Token::Quoted(s));
            }
            c if c.is_alphanumeric() || ":_-./@+*".contains(c) => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || ":_-./@+*".contains(c) {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(s));
            }
            c => return Err(format!("unexpected '{c}'")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Pred, String> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Pred::Or(parts) })
    }

    fn and(&mut self) -> Result<Pred, String> {
        let mut parts = vec![self.not()?];
        while self.keyword("and") {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Pred::And(parts) })
    }

    fn not(&mut self) -> Result<Pred, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Pred::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let p = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err("a '(' is not closed".into());
            }
            return Ok(p);
        }
        self.atom()
    }

    fn literal(&mut self, what: &str) -> Result<Bytes, String> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => Ok(Bytes::from(w)),
            other => Err(format!("expected {what}, found {}", describe(other.as_ref()))),
        }
    }

    fn atom(&mut self) -> Result<Pred, String> {
        let key = match self.next() {
            Some(Token::Word(w)) if w.len() > 1 && w.ends_with('*') => {
                KeyPattern::Prefix(Bytes::from(w[..w.len() - 1].to_string()))
            }
            Some(Token::Word(w)) if w == "*" => KeyPattern::Prefix(Bytes::new()),
            Some(Token::Word(w) | Token::Quoted(w)) => KeyPattern::Exact(Bytes::from(w)),
            other => return Err(format!("expected a key, found {}", describe(other.as_ref()))),
        };
        let test = if self.keyword("has") {
            self.at += 1;
            Test::Has(self.literal("a member after 'has'")?)
        } else if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            let field = self.literal("a field name")?;
            if self.next() != Some(Token::CloseBracket) {
                return Err("a '[' is not closed".into());
            }
            let cmp = match self.peek() {
                Some(Token::Op(op)) => {
                    let op = *op;
                    self.at += 1;
                    Some((op, self.literal("a value to compare with")?))
                }
                _ => None,
            };
            Test::Field(field, cmp)
        } else if let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            self.at += 1;
            Test::Compare(op, self.literal("a value to compare with")?)
        } else {
            Test::Exists
        };
        Ok(Pred::Atom(Atom { key, test }))
    }
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "the end".into(),
        Some(Token::Word(w)) => format!("'{w}'"),
        Some(Token::Quoted(w)) => format!("\"{w}\""),
        Some(Token::Op(_)) => "an operator".into(),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::OpenBracket) => "'['".into(),
        Some(Token::CloseBracket) => "']'".into(),
    }
}

/// Reads a predicate (the grammar is in the module's docs).
pub fn parse(text: &str) -> Result<Pred, String> {
    let mut p = Parser { tokens: tokens(text)?, at: 0 };
    if p.tokens.is_empty() {
        return Err("the predicate is empty".into());
    }
    let pred = p.or()?;
    match p.peek() {
        None => Ok(pred),
        Some(t) => Err(format!("unexpected {} after a whole predicate", describe(Some(t)))),
    }
}

fn compare(value: &[u8], op: CmpOp, with: &[u8]) -> bool {
    let number = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| s.trim().parse::<f64>().ok());
    let ord = match (number(value), number(with)) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(value.cmp(with)),
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

impl Test {
    fn holds(&self, e: &Entry) -> bool {
        match (self, &e.value) {
            (Test::Exists, Value::Tombstone) => false,
            (Test::Exists, _) => true,
            (Test::Compare(op, with), Value::Register(v)) => compare(v, *op, with),
            (Test::Compare(op, with), Value::Counter(c)) => compare(c.value().to_string().as_bytes(), *op, with),
            (Test::Compare(op, with), Value::Max(m)) => compare(m.0.to_string().as_bytes(), *op, with),
            (Test::Has(m), Value::Set(s)) => s.get(m.as_ref()).is_some_and(|r| r.value),
            (Test::Field(f, cmp), Value::Map(m)) => match (m.get(f.as_ref()).and_then(|r| r.value.as_ref()), cmp) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some((op, with))) => compare(v, *op, with),
            },
            _ => false,
        }
    }
}

impl Pred {
    /// Whether it holds over `state` (every key it names, with prefixes
    /// expanded, as they are then; a key absent from `state` is not there).
    pub fn holds(&self, state: &BTreeMap<Bytes, Entry>) -> bool {
        match self {
            Pred::Or(ps) => ps.iter().any(|p| p.holds(state)),
            Pred::And(ps) => ps.iter().all(|p| p.holds(state)),
            Pred::Not(p) => !p.holds(state),
            Pred::Atom(Atom { key: KeyPattern::Exact(k), test }) => state.get(k).is_some_and(|e| test.holds(e)),
            Pred::Atom(Atom { key: KeyPattern::Prefix(p), test }) => {
                state.range(p.clone()..).take_while(|(k, _)| k.starts_with(p)).any(|(_, e)| test.holds(e))
            }
        }
    }

    /// The keys and prefixes it names.
    pub fn keys(&self) -> Vec<&KeyPattern> {
        match self {
            Pred::Or(ps) | Pred::And(ps) => ps.iter().flat_map(Pred::keys).collect(),
            Pred::Not(p) => p.keys(),
            Pred::Atom(a) => vec![&a.key],
        }
    }
}

impl KeyPattern {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeyPattern::Exact(k) => k == key,
            KeyPattern::Prefix(p) => key.starts_with(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_lattice::{Lww, Members, PnCounter, Stamp};

    fn state() -> BTreeMap<Bytes, Entry> {
        let s = Stamp::ZERO;
        let mut counter = PnCounter::default();
        counter.add(s, 42);
        let mut members = Members::default();
        members.assign(Bytes::from("bob"), Lww::new(s, true));
        let mut fields = squall_lattice::Fields::default();
        fields.assign(Bytes::from("status"), Lww::new(s, Some(Bytes::from("failed"))));
        BTreeMap::from([
            (Bytes::from("n"), Entry::new(s, Value::Counter(counter))),
            (Bytes::from("name"), Entry::new(s, Value::Register(Bytes::from("zed")))),
            (Bytes::from("users"), Entry::new(s, Value::Set(members))),
            (Bytes::from("job:7"), Entry::new(s, Value::Map(fields))),
        ])
    }

    fn holds(text: &str) -> bool {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).holds(&state())
    }

    #[test]
    fn predicates_read_values_as_numbers_or_bytes() {
        assert!(holds("n > 41 and n <= 42"));
        assert!(holds("n == 42.0"));
        assert!(!holds("n > 100"));
        assert!(holds("name > abc"));
        assert!(holds("name == \"zed\""));
        assert!(holds("users has bob and not users has alice"));
        assert!(holds("job:7[status] == failed"));
        assert!(holds("job:* [status]"));
        assert!(holds("JOB:8 or (n != 1 AND NOT missing)"));
        assert!(!holds("missing == 1 or missing"));
        assert!(!holds("users > 1"), "a set is not compared");
        assert!(holds("* has bob"));
    }

    #[test]
    fn bad_predicates_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("n >", "expected a value"),
            ("(n > 1", "not closed"),
            ("n = 1", "not an operator"),
            ("n > 1 n", "after a whole predicate"),
            ("\"open", "not closed"),
            ("a[f", "not closed"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
