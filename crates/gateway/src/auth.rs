//! Credentials: one secret for the node, asked of HTTP clients as a bearer
//! token and of Redis-protocol clients as the `default` user's password.

/// Whether `given` is `expected`, in time that depends on their lengths
/// only, not on where they first differ.
pub(crate) fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// Whether an `Authorization` header's value carries `token` as a bearer token.
pub(crate) fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else { return false };
    // The scheme is case-insensitive (RFC 7235).
    let (scheme, given) = value.split_at(value.len().min(7));
    scheme.eq_ignore_ascii_case(b"bearer ") && same_secret(token.as_bytes(), given.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_matches() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b""));
        assert!(bearer_matches(Some(b"Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some(b"BEARER s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bear"), "s3cret"));
        assert!(!bearer_matches(Some(b"Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bearer nope"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
