//! Who may call what: the four roles, the token table and the rule that decides whether a
//! server enforces tokens at all. Pure: no tonic, no I/O.
//!
//! Tokens are kept only as SHA-256 digests. A presented token is hashed once; its digest's
//! first 8 bytes pick the candidates in a hash map, and each candidate's full digest is
//! compared in constant time (`subtle`). What the lookup's timing can reveal is a prefix of
//! the digest of the attacker's own guess, which says nothing about a configured token
//! (SHA-256 is preimage resistant).
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A role a token can hold. Roles do not imply one another: a token that should read spend
/// and write budgets holds `finance` and `admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// SelectProvider and the pricing and placement reads.
    Placement,
    /// Spend, ingest runs, budget reads, fleet reads and savings, the monthly report.
    Finance,
    /// ReportGpuUtilization (the node agent).
    Fleet,
    /// Budget writes, unavailability marks, Keep.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Placement, Role::Finance, Role::Fleet, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Placement => "placement",
            Role::Finance => "finance",
            Role::Fleet => "fleet",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "{} is not a role: expected placement, finance, fleet or admin",
                    crate::domain::quote::quote(s)
                )
            })
    }
}

/// A set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn with(self, r: Role) -> Roles {
        Roles(self.0 | r.bit())
    }
    pub fn has(self, r: Role) -> bool {
        self.0 & r.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                Role::ALL
                    .iter()
                    .filter(|r| self.has(**r))
                    .map(|r| r.as_str()),
            )
            .finish()
    }
}

/// An authenticated caller: the token's name (never the token) and its roles. Cheap to
/// clone (the name is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub roles: Roles,
}

/// One configured token, as the config states it.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub roles: Vec<String>,
}

/// A token entry that failed validation: which part (`name`, `sha256`, `roles`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenError {
    pub index: usize,
    pub field: &'static str,
    pub detail: String,
}

/// The first 8 bytes of a digest, already uniformly distributed: hashed as is.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    digest: [u8; 32],
    caller: Caller,
}

/// The configured tokens by digest.
#[derive(Default)]
pub struct TokenTable {
    by_prefix: HashMap<u64, Vec<Entry>, BuildHasherDefault<PrefixHasher>>,
    len: usize,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .by_prefix
            .values()
            .flatten()
            .map(|e| &*e.caller.name)
            .collect();
        f.debug_struct("TokenTable").field("names", &names).finish()
    }
}

/// The hex SHA-256 of `token` (what `[[auth.tokens]] sha256` holds).
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        out[i] = hex(pair[0])? << 4 | hex(pair[1])?;
    }
    Some(out)
}

fn prefix(d: &[u8; 32]) -> u64 {
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl TokenTable {
    /// Validates every entry: a name (unique, at most 64 bytes of letters, digits, `.`, `_`,
    /// `-`), a 64-hex-digit digest (unique), at least one known role.
    pub fn new(specs: &[TokenSpec]) -> Result<TokenTable, TokenError> {
        let mut t = TokenTable::default();
        let mut names: Vec<&str> = Vec::new();
        for (index, s) in specs.iter().enumerate() {
            let err = |field: &'static str, detail: String| TokenError {
                index,
                field,
                detail,
            };
            let name = s.name.trim();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(err(
                    "name",
                    format!(
                        "{} must be 1-64 letters, digits, '.', '_' or '-'",
                        crate::domain::quote::quote(name)
                    ),
                ));
            }
            if let Some(j) = names.iter().position(|n| *n == name) {
                return Err(err(
                    "name",
                    format!("{name:?} is already the name of tokens[{j}]"),
                ));
            }
            names.push(name);
            // The digest is not secret, but a malformed one is not echoed whole either.
            let digest = parse_hex_digest(&s.sha256).ok_or_else(|| {
                err(
                    "sha256",
                    format!(
                        "expected 64 hexadecimal digits (the SHA-256 of the token, e.g. `printf %s TOKEN | sha256sum`), got {} characters",
                        s.sha256.trim().chars().count()
                    ),
                )
            })?;
            if t.lookup(&digest).is_some() {
                return Err(err(
                    "sha256",
                    "the same token is configured twice (another entry has this digest)".into(),
                ));
            }
            let mut roles = Roles::default();
            for r in &s.roles {
                roles = roles.with(r.parse().map_err(|e| err("roles", e))?);
            }
            if roles.is_empty() {
                return Err(err(
                    "roles",
                    "at least one of placement, finance, fleet, admin".into(),
                ));
            }
            t.by_prefix.entry(prefix(&digest)).or_default().push(Entry {
                digest,
                caller: Caller {
                    name: Arc::from(name),
                    roles,
                },
            });
            t.len += 1;
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn lookup(&self, digest: &[u8; 32]) -> Option<&Caller> {
        let mut found = None;
        for e in self.by_prefix.get(&prefix(digest))? {
            if bool::from(e.digest.ct_eq(digest)) {
                found = Some(&e.caller);
            }
        }
        found
    }

    /// The caller whose token this is, or `None`. Hashes once; allocates nothing.
    pub fn authenticate(&self, token: &[u8]) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        self.lookup(&digest)
    }
}

/// The token of an `authorization` header value: `Bearer <token>` (the scheme in any case,
/// RFC 7235), else `None`. An empty token is none.
pub fn bearer(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if header.len() <= SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = header[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether a server checks tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Every call needs a token with the method's role.
    Enforced,
    /// Every call is open: `required = false` (development), or no token is configured and
    /// the server listens on loopback only (the quick start).
    Open { reason: OpenReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    NotRequired,
    LoopbackWithoutTokens,
}

/// `required` true with tokens: enforced. `required` false: open. `required` true without
/// tokens: open only when every listener is on loopback, else an error (a service reachable
/// from other machines never runs open by accident).
pub fn enforcement(
    required: bool,
    has_tokens: bool,
    loopback_only: bool,
) -> Result<Enforcement, &'static str> {
    match (required, has_tokens, loopback_only) {
        (false, _, _) => Ok(Enforcement::Open {
            reason: OpenReason::NotRequired,
        }),
        (true, true, _) => Ok(Enforcement::Enforced),
        (true, false, true) => Ok(Enforcement::Open {
            reason: OpenReason::LoopbackWithoutTokens,
        }),
        (true, false, false) => Err(
            "auth.required is true but no [[auth.tokens]] is configured, and the service listens beyond loopback: add tokens, or set auth.required = false (local development only)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, token: &str, roles: &[&str]) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            sha256: sha256_hex(token),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_token_is_found_by_its_digest_and_only_by_it() {
        let t = TokenTable::new(&[
            spec("airflow", "tok-a", &["placement"]),
            spec("ops", "tok-o", &["admin", "finance"]),
        ])
        .unwrap();
        assert_eq!(t.len(), 2);
        let a = t.authenticate(b"tok-a").unwrap();
        assert_eq!(&*a.name, "airflow");
        assert!(a.roles.has(Role::Placement) && !a.roles.has(Role::Admin));
        let o = t.authenticate(b"tok-o").unwrap();
        assert!(o.roles.has(Role::Admin) && o.roles.has(Role::Finance));
        assert!(!o.roles.has(Role::Placement), "admin implies nothing else");
        assert!(t.authenticate(b"tok-").is_none());
        assert!(t.authenticate(b"tok-a ").is_none());
        assert!(t.authenticate(b"").is_none());
        // The digest itself is not a token.
        assert!(t.authenticate(sha256_hex("tok-a").as_bytes()).is_none());
        let dbg = format!("{t:?}");
        assert!(dbg.contains("airflow") && !dbg.contains(&sha256_hex("tok-a")));
    }

    #[test]
    fn the_known_digest_of_test() {
        // `printf %s test | sha256sum`, the README's example.
        assert_eq!(
            sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let upper = TokenSpec {
            sha256: sha256_hex("test").to_uppercase(),
            ..spec("x", "", &["fleet"])
        };
        assert!(
            TokenTable::new(&[upper])
                .unwrap()
                .authenticate(b"test")
                .is_some()
        );
    }

    #[test]
    fn bad_entries_name_their_index_and_field() {
        let e = |specs: &[TokenSpec]| TokenTable::new(specs).unwrap_err();
        let mut bad = spec("a", "t", &["placement"]);
        bad.sha256 = "9f86d0".into();
        let err = e(&[spec("ok", "u", &["fleet"]), bad]);
        assert_eq!((err.index, err.field), (1, "sha256"));
        assert!(err.detail.contains("64 hexadecimal"), "{}", err.detail);
        let mut bad = spec("a", "t", &["placement"]);
        bad.sha256 = "z".repeat(64);
        assert_eq!(e(&[bad]).field, "sha256");
        assert_eq!(e(&[spec("a", "t", &["root"])]).field, "roles");
        assert!(e(&[spec("a", "t", &["root"])]).detail.contains("\"root\""));
        assert_eq!(e(&[spec("a", "t", &[])]).field, "roles");
        assert_eq!(e(&[spec("", "t", &["admin"])]).field, "name");
        assert_eq!(e(&[spec("a b", "t", &["admin"])]).field, "name");
        let dup = e(&[spec("a", "t", &["admin"]), spec("a", "u", &["admin"])]);
        assert_eq!((dup.index, dup.field), (1, "name"));
        let same = e(&[spec("a", "t", &["admin"]), spec("b", "t", &["fleet"])]);
        assert_eq!((same.index, same.field), (1, "sha256"));
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer    "), None);
        assert_eq!(bearer(b"Basic YWJj"), None);
        assert_eq!(bearer(b"abc"), None);
        assert_eq!(bearer(b""), None);
    }

    #[test]
    fn open_only_by_choice_or_on_loopback_without_tokens() {
        use Enforcement::*;
        assert_eq!(enforcement(true, true, false), Ok(Enforced));
        assert_eq!(enforcement(true, true, true), Ok(Enforced));
        assert_eq!(
            enforcement(true, false, true),
            Ok(Open {
                reason: OpenReason::LoopbackWithoutTokens
            })
        );
        assert!(
            enforcement(true, false, false)
                .unwrap_err()
                .contains("auth.required")
        );
        for (t, l) in [(true, true), (false, false), (true, false), (false, true)] {
            assert_eq!(
                enforcement(false, t, l),
                Ok(Open {
                    reason: OpenReason::NotRequired
                })
            );
        }
    }

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("Admin".parse::<Role>().is_err());
        let rs = Roles::default().with(Role::Fleet).with(Role::Admin);
        assert_eq!(format!("{rs:?}"), "[\"fleet\", \"admin\"]");
    }
}
