//! Namespaces are tenants: each has its own keys, functions, DAGs and jobs.
//!
//! The registry names a function (or a DAG) of the default namespace by its
//! bare name, as before namespaces, and one of any other namespace `ns` as
//! `ns/name`: a bare name cannot hold a `/`, so the two never meet. A
//! function's store namespace is its own, and the functions it calls are
//! looked up in it: nothing a guest names can reach another tenant.

use crate::Error;

/// The namespace that plain Redis clients (database 0) and `/v1/...` without
/// a namespace use.
pub const DEFAULT: &str = "default";

/// Names the node keeps for itself.
const RESERVED: &[&str] = &["sys"];

/// A namespace name: 1 to 64 letters, digits, `-` and `_`, not a reserved one.
pub fn check_namespace(ns: &str) -> Result<(), Error> {
    if !is_word(ns) {
        return Err(Error::BadRequest(format!("bad namespace {ns:?}: use 1 to 64 letters, digits, '-' or '_'")));
    }
    if RESERVED.contains(&ns) {
        return Err(Error::BadRequest(format!("the namespace {ns:?} is reserved for the node")));
    }
    Ok(())
}

/// 1 to 64 letters, digits, `-` and `_` (names of namespaces, functions, users).
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The registry's name for `name` in namespace `ns`.
pub fn qualify(ns: &str, name: &str) -> String {
    if ns == DEFAULT { name.to_string() } else { format!("{ns}/{name}") }
}

/// The namespace of a registry name.
pub fn namespace_of(qualified: &str) -> &str {
    qualified.split_once('/').map_or(DEFAULT, |(ns, _)| ns)
}

/// The name within its namespace of a registry name.
pub fn bare_name(qualified: &str) -> &str {
    qualified.split_once('/').map_or(qualified, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_back() {
        for (ns, name, q) in [("default", "f", "f"), ("acme", "f", "acme/f")] {
            assert_eq!(qualify(ns, name), q);
            assert_eq!((namespace_of(q), bare_name(q)), (ns, name));
        }
        assert!(check_namespace("acme-1_x").is_ok());
        for bad in ["", "sys", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
