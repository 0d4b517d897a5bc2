//! The host keys BackupPC's ssh accepts for a host: the lines of its
//! known_hosts file that name the host's alias (`HostKeyAlias`), as the
//! toolkit pins them, and `@revoked` lines, which ssh refuses whatever
//! else is pinned. A key not pinned is never accepted, not even once.
//!
//! Host fields are matched as the toolkit writes them: exact names (in a
//! comma-separated list, `!name` excluding), case-insensitive; hashed
//! entries and wildcard patterns pin nothing here.

use base64::Engine;

/// The keys pinned for one alias, and every revoked key of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    /// (algorithm, key blob) in file order.
    pub keys: Vec<(String, Vec<u8>)>,
    pub revoked: Vec<Vec<u8>>,
}

/// What the offered host key is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// Keys are pinned for the host, and this is not one of them.
    Mismatch,
    /// The key is listed `@revoked`.
    Revoked,
    /// No key is pinned for the host.
    NotPinned,
}

fn names_alias(hosts: &str, alias: &str) -> bool {
    let mut named = false;
    for h in hosts.split(',') {
        if let Some(negated) = h.strip_prefix('!') {
            if negated.eq_ignore_ascii_case(alias) {
                return false;
            }
        } else if h.eq_ignore_ascii_case(alias) {
            named = true;
        }
    }
    named
}

fn key_of<'a>(mut fields: impl Iterator<Item = &'a str>) -> Option<(String, Vec<u8>)> {
    let algo = fields.next()?;
    let blob = base64::engine::general_purpose::STANDARD.decode(fields.next()?).ok()?;
    Some((algo.to_string(), blob))
}

/// The keys `known_hosts` pins for `alias`.
pub fn pinned(known_hosts: &str, alias: &str) -> Pinned {
    let mut out = Pinned::default();
    for line in known_hosts.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        match first {
            "@revoked" => {
                // Revoked anywhere is refused here: a conservative reading
                // of "revoked for the hosts its patterns match".
                if let Some((_, blob)) = fields.next().and_then(|_| key_of(fields)) {
                    out.revoked.push(blob);
                }
            }
            m if m.starts_with('@') => {}
            hosts if names_alias(hosts, alias) => {
                if let Some(k) = key_of(fields) {
                    out.keys.push(k);
                }
            }
            _ => {}
        }
    }
    out
}

impl Pinned {
    /// The offered key (its SSH wire blob) against the pinned ones.
    pub fn check(&self, offered: &[u8]) -> Verdict {
        if self.revoked.iter().any(|r| r == offered) {
            Verdict::Revoked
        } else if self.keys.is_empty() {
            Verdict::NotPinned
        } else if self.keys.iter().any(|(_, k)| k == offered) {
            Verdict::Match
        } else {
            Verdict::Mismatch
        }
    }

    /// Host key algorithms to offer, in file order, so the host proves the
    /// key that is pinned rather than another of its keys.
    pub fn algorithms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (a, _) in &self.keys {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// SHA256 fingerprints of the pinned keys, for messages.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(_, b)| fingerprint(b)).collect()
    }
}

/// `SHA256:…` of a key blob, as ssh prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    match ssh_key::PublicKey::from_bytes(blob) {
        Ok(k) => format!("{} {}", k.algorithm(), crate::names::fingerprint(&k)),
        Err(_) => "an unreadable key".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJCa2C8gerPWjNJTOEsSFkgItNQmRNPf/GDPKR0Hl2rX";
    const B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICsy9S7c4zyPvysN1kOmdL5H8V5jZkrKyCUA2VAZ5fpu";

    fn blob(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    }

    #[test]
    fn table() {
        // (known_hosts, alias, offered, verdict, why)
        let rows: Vec<(String, &str, &str, Verdict, &str)> = vec![
            (format!("h ssh-ed25519 {A}\n"), "h", A, Verdict::Match, "the pinned key"),
            (format!("h ssh-ed25519 {A}\n"), "h", B, Verdict::Mismatch, "another key"),
            (format!("H ssh-ed25519 {A}\n"), "h", A, Verdict::Match, "names are case-insensitive"),
            (format!("x,h ssh-ed25519 {A}\n"), "h", A, Verdict::Match, "in a host list"),
            (
                format!("hh ssh-ed25519 {A}\nh.example ssh-ed25519 {A}\n"),
                "h",
                A,
                Verdict::NotPinned,
                "no partial names",
            ),
            (format!("h,!h ssh-ed25519 {A}\n"), "h", A, Verdict::NotPinned, "a negated name excludes"),
            (format!("# h ssh-ed25519 {A}\n"), "h", A, Verdict::NotPinned, "a comment pins nothing"),
            (
                format!("|1|c2FsdA==|aGFzaA== ssh-ed25519 {A}\n"),
                "h",
                A,
                Verdict::NotPinned,
                "hashed entries are not read",
            ),
            (format!("@cert-authority h ssh-ed25519 {A}\n"), "h", A, Verdict::NotPinned, "a CA pins no host key"),
            (format!("h ssh-ed25519 {A}\n@revoked * ssh-ed25519 {A}\n"), "h", A, Verdict::Revoked, "revoked wins"),
            (format!("h ssh-ed25519 {B}\nh ssh-ed25519 {A}\n"), "h", A, Verdict::Match, "any pinned key"),
            ("h ssh-ed25519 !!notbase64\n".into(), "h", A, Verdict::NotPinned, "a broken line pins nothing"),
            ("".into(), "h", A, Verdict::NotPinned, "an empty file"),
        ];
        for (kh, alias, offered, want, why) in rows {
            assert_eq!(pinned(&kh, alias).check(&blob(offered)), want, "{why}");
        }
    }

    #[test]
    fn algorithms_in_file_order_once() {
        let kh = format!("h ssh-ed25519 {A}\nh ecdsa-sha2-nistp256 {B}\nh ssh-ed25519 {B}\n");
        assert_eq!(pinned(&kh, "h").algorithms(), ["ssh-ed25519", "ecdsa-sha2-nistp256"]);
    }
}
