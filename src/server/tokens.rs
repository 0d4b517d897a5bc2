//! Enrollment tokens for `mode = "token"`: created by an admin, handed to a
//! workstation (`enroll --token T`), checked by `forced-command`. Only a
//! SHA-256 of each token is stored; a token may be limited in uses, time,
//! logon and host, and revoked.

use crate::store::atomic::{self, Ownership};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Short public name (the first 12 hex digits of the hash), for lists.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// Uses left; `None` for unlimited.
    pub uses_left: Option<u32>,
    /// Expiry, seconds since the epoch; `None` for never.
    pub expires_at: Option<u64>,
    pub logon: Option<String>,
    pub host: Option<String>,
    pub created_at: u64,
    pub revoked: bool,
    /// The requests that used the token: the same request again (a retry
    /// after a lost answer) is let through without counting another use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<TokenUse>,
}

/// What an enrollment request that used a token asked for: the host, the
/// logon and the workstation's host keys (SHA-256 fingerprints, sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUse {
    pub host: String,
    pub logon: String,
    pub host_keys: Vec<String>,
}

impl TokenUse {
    pub fn new(host: &str, logon: &str, mut host_keys: Vec<String>) -> TokenUse {
        host_keys.sort();
        host_keys.dedup();
        TokenUse { host: host.to_string(), logon: logon.to_string(), host_keys }
    }
}

/// A token that passed [`TokenStore::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub index: usize,
    /// The same request already used it: no further use is counted.
    pub repeat: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStore {
    pub version: u32,
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("this server enrolls only with a token: run enroll --token TOKEN with the token the backup administrator gave you")]
    Missing,
    #[error("the enrollment token is not valid: check it, or ask the backup administrator for a new one")]
    Unknown,
    #[error("the enrollment token was revoked: ask the backup administrator for a new one")]
    Revoked,
    #[error("the enrollment token has expired: ask the backup administrator for a new one")]
    Expired,
    #[error("the enrollment token has been used up: ask the backup administrator for a new one")]
    UsedUp,
    #[error("the enrollment token is not for this logon")]
    WrongLogon,
    #[error("the enrollment token is not for this host")]
    WrongHost,
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: 32 characters of `[a-z0-9]` (about 165 bits).
pub fn generate() -> String {
    use ssh_key::rand_core::{OsRng, RngCore};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let b = (OsRng.next_u32() & 0xff) as u8;
        // Reject the top of the range to keep the choice uniform.
        if (b as usize) < 252 {
            out.push(ALPHABET[b as usize % 36] as char);
        }
    }
    out
}

/// `24h`, `90m`, `7d`, `3600s` or plain seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl TokenStore {
    pub fn load(path: &Path) -> io::Result<TokenStore> {
        let raw = atomic::read_or_empty(path)?;
        if raw.is_empty() {
            return Ok(TokenStore { version: 1, tokens: Vec::new() });
        }
        serde_json::from_slice(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn save(&self, path: &Path, own: Ownership) -> io::Result<()> {
        atomic::write(path, &self.render(), Ownership::of_existing_or(path, own))
    }

    /// Stage the store's new contents in `batch` (see [`atomic::Batch`]).
    pub fn stage(&self, batch: &mut atomic::Batch, path: &Path, own: Ownership) -> io::Result<()> {
        batch.add(path, &self.render(), Ownership::of_existing_or(path, own))
    }

    fn render(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("tokens serialise");
        text.push('\n');
        text.into_bytes()
    }

    /// Add a token; returns the token itself (shown once) and its id.
    pub fn create(
        &mut self,
        uses: Option<u32>,
        ttl: Option<u64>,
        logon: Option<String>,
        host: Option<String>,
        now: u64,
    ) -> (String, String) {
        let token = generate();
        let h = hash(&token);
        let id = h[..12].to_string();
        self.tokens.push(Token {
            id: id.clone(),
            hash: h,
            uses_left: uses,
            expires_at: ttl.map(|t| now + t),
            logon,
            host,
            created_at: now,
            revoked: false,
            used_by: Vec::new(),
        });
        (token, id)
    }

    /// Check `token` for `request`. With `retry` (the request asks for
    /// nothing a finished enrollment did not get: a lost answer again, or
    /// no new key beside one the workstation installed), a request that
    /// already used the token (same host, logon and host keys) passes even
    /// when the token has no use left. A revoked or expired token passes
    /// for nobody.
    pub fn check(
        &self,
        token: Option<&str>,
        request: &TokenUse,
        retry: bool,
        now: u64,
    ) -> Result<Accepted, TokenRefusal> {
        self.check_hashed(token.map(hash).as_deref(), request, retry, now)
    }

    /// [`TokenStore::check`] of a token known only by its [`hash`].
    pub fn check_hashed(
        &self,
        token_hash: Option<&str>,
        request: &TokenUse,
        retry: bool,
        now: u64,
    ) -> Result<Accepted, TokenRefusal> {
        let h = token_hash.ok_or(TokenRefusal::Missing)?;
        let index = self.tokens.iter().position(|t| t.hash == h).ok_or(TokenRefusal::Unknown)?;
        let t = &self.tokens[index];
        if t.revoked {
            return Err(TokenRefusal::Revoked);
        }
        if t.expires_at.is_some_and(|e| now >= e) {
            return Err(TokenRefusal::Expired);
        }
        if t.logon.as_deref().is_some_and(|l| l != request.logon) {
            return Err(TokenRefusal::WrongLogon);
        }
        if t.host.as_deref().is_some_and(|x| x != request.host) {
            return Err(TokenRefusal::WrongHost);
        }
        let repeat = retry && t.used_by.contains(request);
        if t.uses_left == Some(0) && !repeat {
            return Err(TokenRefusal::UsedUp);
        }
        Ok(Accepted { index, repeat })
    }

    /// Count one use of an accepted token by `request` (none for a repeat).
    pub fn consume(&mut self, accepted: Accepted, request: TokenUse) {
        if accepted.repeat {
            return;
        }
        let t = &mut self.tokens[accepted.index];
        if let Some(n) = t.uses_left.as_mut() {
            *n = n.saturating_sub(1);
        }
        t.used_by.push(request);
    }

    /// Revoke by id (or id prefix of at least 6 characters).
    pub fn revoke(&mut self, id: &str) -> bool {
        let matches: Vec<usize> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| id.len() >= 6 && t.id.starts_with(id))
            .map(|(i, _)| i)
            .collect();
        if matches.len() != 1 {
            return false;
        }
        self.tokens[matches[0]].revoked = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn lifecycle() {
        let mut s = TokenStore::default();
        let (once, id) = s.create(Some(1), Some(3600), None, None, 1000);
        let (any, _) = s.create(None, None, Some("cmartin".into()), Some("dormeur".into()), 1000);
        assert_eq!(once.len(), 32);
        assert!(!serde_json::to_string(&s).unwrap().contains(&once), "only the hash is stored");
        let req = |logon: &str, host: &str| TokenUse::new(host, logon, vec!["SHA256:a".into()]);
        let ok = |index| Ok(Accepted { index, repeat: false });
        let rows: &[(Option<&str>, &str, &str, u64, Result<Accepted, TokenRefusal>, &str)] = &[
            (None, "x", "h", 1000, Err(TokenRefusal::Missing), "no token"),
            (Some("nope"), "x", "h", 1000, Err(TokenRefusal::Unknown), "unknown"),
            (Some(&once), "x", "h", 1000, ok(0), "valid"),
            (Some(&once), "x", "h", 4600, Err(TokenRefusal::Expired), "expired"),
            (Some(&any), "jdupont", "dormeur", 1000, Err(TokenRefusal::WrongLogon), "logon bound"),
            (Some(&any), "cmartin", "other", 1000, Err(TokenRefusal::WrongHost), "host bound"),
            (Some(&any), "cmartin", "dormeur", 9_999_999, ok(1), "unlimited, no expiry"),
        ];
        for (t, logon, host, now, want, why) in rows {
            assert_eq!(&s.check(*t, &req(logon, host), true, *now), want, "{why}");
        }
        let first = s.check(Some(&once), &req("x", "h"), true, 1000).unwrap();
        s.consume(first, req("x", "h"));
        assert_eq!(s.tokens[0].uses_left, Some(0));
        // After the single use: only the same request gets through again.
        let rows: &[(TokenUse, u64, Result<Accepted, TokenRefusal>, &str)] = &[
            (req("x", "h"), 1000, Ok(Accepted { index: 0, repeat: true }), "the same request retried"),
            (
                TokenUse::new("h", "x", vec!["SHA256:a".into(), "SHA256:a".into()]),
                1000,
                Ok(Accepted { index: 0, repeat: true }),
                "host keys compared as a set",
            ),
            (req("x", "other"), 1000, Err(TokenRefusal::UsedUp), "another host"),
            (req("y", "h"), 1000, Err(TokenRefusal::UsedUp), "another logon"),
            (TokenUse::new("h", "x", vec!["SHA256:b".into()]), 1000, Err(TokenRefusal::UsedUp), "other host keys"),
            (TokenUse::new("h", "x", vec![]), 1000, Err(TokenRefusal::UsedUp), "no host keys"),
            (req("x", "h"), 4600, Err(TokenRefusal::Expired), "a retry after expiry"),
        ];
        for (r, now, want, why) in rows {
            assert_eq!(&s.check(Some(&once), r, true, *now), want, "{why}");
        }
        assert_eq!(
            s.check(Some(&once), &req("x", "h"), false, 1000),
            Err(TokenRefusal::UsedUp),
            "the same host asking for a new key is a new use"
        );
        let again = s.check(Some(&once), &req("x", "h"), true, 1000).unwrap();
        s.consume(again, req("x", "h"));
        assert_eq!(s.tokens[0].used_by.len(), 1, "a repeat records nothing more");
        assert!(s.revoke(&id[..8]));
        assert_eq!(s.check(Some(&once), &req("x", "h"), true, 1000), Err(TokenRefusal::Revoked), "revoked: no retry");
        assert!(!s.revoke("abc"), "prefix too short");
        // Multi-use: a repeat does not count, a new request does.
        let (twice, _) = s.create(Some(2), None, None, None, 1000);
        for (r, left) in [(req("x", "a"), 1), (req("x", "a"), 1), (req("x", "b"), 0)] {
            let a = s.check(Some(&twice), &r, true, 1000).unwrap();
            s.consume(a, r);
            assert_eq!(s.tokens[2].uses_left, Some(left));
        }
        let old = r#"{"version":1,"tokens":[{"id":"i","hash":"h","uses_left":1,"expires_at":null,"logon":null,"host":null,"created_at":1,"revoked":false}]}"#;
        assert!(serde_json::from_str::<TokenStore>(old).unwrap().tokens[0].used_by.is_empty(), "older stores load");
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("24h", Some(86_400)),
            ("90m", Some(5400)),
            ("7d", Some(604_800)),
            ("30", Some(30)),
            ("1w", None),
            ("h", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s}");
        }
    }
}
