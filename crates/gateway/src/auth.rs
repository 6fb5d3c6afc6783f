//! Who may do what: users in the style of Redis ACL, asked of HTTP clients
//! as bearer tokens and of Redis-protocol clients with `AUTH`.
//!
//! A user has a secret (its password, which is also its bearer token), the
//! namespaces it may use (or all of them) and whether it may deploy (put and
//! remove functions and DAGs). The node's own token, when set, is the
//! `default` user's secret, with every namespace and the right to deploy.
//! With no token and no users the node is open: everyone is `default`.
//!
//! The users can change while the node runs ([`Access::replace`], from a
//! reloaded users file): each check reads the current ones, and a
//! connection authenticated as a user that is gone, or that lost the
//! namespace it is in, is refused from its next command on.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The name of the user the node token belongs to (Redis's `default`).
pub const DEFAULT_USER: &str = "default";

/// A user as configured (`[[users]]` in squall.toml or the users file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    /// Its password (RESP `AUTH name password`) and bearer token (HTTP).
    pub password: String,
    /// Namespaces it may use; `"*"` is all of them.
    pub namespaces: Vec<String>,
    /// Whether it may deploy and remove functions and DAGs.
    #[serde(default)]
    pub deploy: bool,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the password.
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("namespaces", &self.namespaces)
            .field("deploy", &self.deploy)
            .finish_non_exhaustive()
    }
}

/// A user, as checks see it.
#[derive(Debug)]
pub struct User {
    pub name: String,
    secret: Secret,
    /// `None`: every namespace.
    namespaces: Option<Vec<String>>,
    pub deploy: bool,
}

/// A secret that is never printed.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

impl User {
    /// Whether the user may use namespace `ns`.
    pub fn may_use(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|list| list.iter().any(|n| n == ns))
    }

    /// Whether `other` (the same user, as configured before a reload) has
    /// the same secret: a connection logged in with an old one must log in again.
    pub fn same_secret_as(&self, other: &User) -> bool {
        self.secret.0 == other.secret.0
    }

    /// Whether the user may use every namespace (and so see the node's
    /// metrics, which name every tenant's functions).
    pub fn is_admin(&self) -> bool {
        self.namespaces.is_none()
    }

    /// The namespace a request that names none uses: the user's only one,
    /// or the default.
    pub fn home(&self) -> &str {
        match self.namespaces.as_deref() {
            Some([only]) => only,
            _ => squall_scheduler::namespace::DEFAULT,
        }
    }

    fn everything(name: &str, secret: Option<String>) -> User {
        User { name: name.to_string(), secret: Secret(secret.unwrap_or_default()), namespaces: None, deploy: true }
    }
}

/// The users in force.
#[derive(Debug)]
struct Users {
    by_name: HashMap<String, Arc<User>>,
}

/// The node's users, shared by both listeners.
#[derive(Debug)]
pub struct Access {
    /// No credentials at all: everyone is `default`, with every right.
    open: bool,
    users: RwLock<Arc<Users>>,
    /// Bumped by every [`Access::replace`]: connections re-check their user then.
    generation: AtomicU64,
    /// The node token's user (kept across replacements of the others).
    default: Option<Arc<User>>,
}

impl Access {
    /// Access for a node with `token` (the default user's secret) and
    /// `users`. The node is open (everyone is `default`) only when it has
    /// no credentials configured at all: not `closed` (a users file, even
    /// one empty for now, closes it), no token, no users.
    pub fn new(token: Option<&str>, users: Vec<UserSpec>, closed: bool) -> Result<Access, String> {
        let open = !closed && token.is_none() && users.is_empty();
        let default =
            (open || token.is_some()).then(|| Arc::new(User::everything(DEFAULT_USER, token.map(String::from))));
        let access = Access {
            open,
            users: RwLock::new(Arc::new(Users { by_name: HashMap::new() })),
            generation: AtomicU64::new(0),
            default,
        };
        access.replace(users)?;
        Ok(access)
    }

    /// Whether no credentials are asked for.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The user everyone is when the node is open.
    pub fn anonymous(&self) -> Option<Arc<User>> {
        if self.open { self.default.clone() } else { None }
    }

    /// Puts `specs` in force instead of the users before (the node token's
    /// user stays); refuses, changing nothing, a set with a bad entry.
    pub fn replace(&self, specs: Vec<UserSpec>) -> Result<usize, String> {
        let mut by_name = HashMap::new();
        for spec in specs {
            let UserSpec { name, password, namespaces, deploy } = spec;
            if !squall_scheduler::namespace::is_word(&name) {
                return Err(format!("bad user name {name:?}: use 1 to 64 letters, digits, '-' or '_'"));
            }
            if name == DEFAULT_USER && self.default.is_some() {
                return Err("the default user is the node token's (--token); give this user another name".into());
            }
            if password.len() < 8 {
                return Err(format!("user {name:?}: a password of at least 8 characters is needed"));
            }
            let namespaces = if namespaces.iter().any(|n| n == "*") {
                None
            } else {
                for ns in &namespaces {
                    squall_scheduler::check_namespace(ns).map_err(|e| format!("user {name:?}: {e}"))?;
                }
                if namespaces.is_empty() {
                    return Err(format!("user {name:?}: give the namespaces it may use (or \"*\")"));
                }
                Some(namespaces)
            };
            let user = User { name: name.clone(), secret: Secret(password), namespaces, deploy };
            if by_name.insert(name.clone(), Arc::new(user)).is_some() {
                return Err(format!("user {name:?} is given twice"));
            }
        }
        let n = by_name.len();
        *self.users.write().expect("users") = Arc::new(Users { by_name });
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(n)
    }

    /// Changes with every [`Access::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The user `name` as it is now, if it still exists.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        if name == DEFAULT_USER && self.default.is_some() {
            return self.default.clone();
        }
        self.users.read().expect("users").by_name.get(name).cloned()
    }

    /// The user whose secret `password` is: of `name` when given, else of
    /// the default user (Redis's `AUTH password`).
    pub fn login(&self, name: Option<&[u8]>, password: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name.unwrap_or(DEFAULT_USER.as_bytes())).ok()?;
        let user = self.user(name)?;
        same_secret(user.secret.0.as_bytes(), password).then_some(user)
    }

    /// The user an `Authorization: Bearer` header names by its secret.
    pub fn bearer(&self, header: Option<&[u8]>) -> Option<Arc<User>> {
        let given = bearer_token(header?)?;
        // Every secret is compared, so the time taken does not say which
        // user (or whether any) came close.
        let mut found = None;
        if let Some(d) = &self.default
            && same_secret(d.secret.0.as_bytes(), given)
        {
            found = Some(d.clone());
        }
        for user in self.users.read().expect("users").by_name.values() {
            if same_secret(user.secret.0.as_bytes(), given) {
                found = Some(user.clone());
            }
        }
        found
    }
}

/// Whether `given` is `expected`, in time that depends on their lengths
/// only, not on where they first differ.
pub(crate) fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() || expected.is_empty() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// The token of an `Authorization` header's value, if it is a bearer one.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    // The scheme is case-insensitive (RFC 7235).
    let (scheme, given) = value.split_at(value.len().min(7));
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| given.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, password: &str, namespaces: &[&str], deploy: bool) -> UserSpec {
        UserSpec {
            name: name.into(),
            password: password.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            deploy,
        }
    }

    #[test]
    fn only_the_same_secret_matches() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"", b""));
        let access = Access::new(Some("s3cret"), vec![], false).unwrap();
        let user = |h: &[u8]| access.bearer(Some(h)).map(|u| u.name.clone());
        assert_eq!(user(b"Bearer s3cret").as_deref(), Some("default"));
        assert_eq!(user(b"BEARER s3cret").as_deref(), Some("default"));
        for bad in [&b"Bear"[..], b"Basic s3cret", b"Bearer nope", b"Bearer "] {
            assert_eq!(user(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert!(access.bearer(None).is_none());
    }

    #[test]
    fn users_have_their_namespaces_and_rights() {
        let access = Access::new(
            None,
            vec![spec("alice", "alice-pass", &["acme"], false), spec("ops", "ops-pass-1", &["*"], true)],
            false,
        )
        .unwrap();
        assert!(!access.is_open() && access.anonymous().is_none());
        let alice = access.login(Some(b"alice"), b"alice-pass").unwrap();
        assert!(alice.may_use("acme") && !alice.may_use("default") && !alice.deploy && alice.home() == "acme");
        assert!(access.login(Some(b"alice"), b"ops-pass-1").is_none());
        assert!(access.login(None, b"alice-pass").is_none(), "no default user without a token");
        let ops = access.bearer(Some(b"Bearer ops-pass-1")).unwrap();
        assert!(ops.is_admin() && ops.deploy && ops.home() == "default");
        // A replacement takes effect at once; a bad one changes nothing.
        let before = access.generation();
        assert!(access.replace(vec![spec("bob", "short", &["x"], false)]).is_err());
        assert_eq!(access.generation(), before);
        access.replace(vec![spec("bob", "bob-pass-1", &["x"], false)]).unwrap();
        assert!(access.user("alice").is_none() && access.user("bob").is_some() && access.generation() > before);
        for bad in [vec![spec("a", "long-enough", &[], false)], vec![spec("a", "long-enough", &["sys"], false)]] {
            assert!(access.replace(bad).is_err());
        }
        // No credentials at all: everyone is the default user.
        let open = Access::new(None, vec![], false).unwrap();
        assert!(open.anonymous().is_some_and(|u| u.is_admin() && u.deploy));
        // A users file with no users yet closes the node all the same.
        let closed = Access::new(None, vec![], true).unwrap();
        assert!(!closed.is_open() && closed.anonymous().is_none() && closed.login(None, b"anything").is_none());
    }
}
