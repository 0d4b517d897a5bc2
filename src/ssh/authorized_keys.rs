//! The backup user's `authorized_keys`: the line that binds the server's
//! key to `rsyncsend`, and the edit that replaces this server's previous
//! line while keeping every other line byte for byte.

use std::fmt;

/// The key line installed for one backup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// `from=` pattern, if the server said where backups come from.
    pub from: Option<String>,
    /// Absolute path of `rsyncsend`.
    pub rsyncsend: String,
    /// Client config `rsyncsend` reads.
    pub config: String,
    /// Bare `algorithm base64`.
    pub key: String,
    /// Server name, used in the tag that finds this line again.
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLineError {
    #[error("{0} may not contain quotes, backslashes, spaces or control characters: {1:?}")]
    Unsafe(&'static str, String),
}

/// Comment that marks the lines this toolkit installs for `server`.
pub fn tag(server: &str) -> String {
    format!("backuppc-enroll@{server}")
}

impl KeyLine {
    pub fn new(
        from: Option<String>,
        rsyncsend: &str,
        config: &str,
        key: &str,
        server: &str,
    ) -> Result<KeyLine, KeyLineError> {
        for (what, v) in [("rsyncsend path", rsyncsend), ("config path", config), ("server name", server)] {
            if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_whitespace() || c.is_control()) {
                return Err(KeyLineError::Unsafe(what, v.to_string()));
            }
        }
        if let Some(f) = &from {
            crate::protocol::answer::check_from(f).map_err(|_| KeyLineError::Unsafe("from pattern", f.clone()))?;
        }
        Ok(KeyLine { from, rsyncsend: rsyncsend.into(), config: config.into(), key: key.into(), server: server.into() })
    }
}

impl fmt::Display for KeyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("restrict")?;
        if let Some(from) = &self.from {
            write!(f, ",from=\"{from}\"")?;
        }
        write!(f, ",command=\"{} --config {}\" {} {}", self.rsyncsend, self.config, self.key, tag(&self.server))
    }
}

/// Lines of `existing` that carry this server's tag.
pub fn tagged_lines<'a>(existing: &'a str, server: &str) -> Vec<&'a str> {
    let suffix = format!(" {}", tag(server));
    existing.lines().filter(|l| l.trim_end().ends_with(&suffix)).collect()
}

/// `existing` without this server's lines, then `line` appended (when
/// given). Every other line is kept byte for byte.
pub fn replace(existing: &str, server: &str, line: Option<&KeyLine>) -> String {
    let suffix = format!(" {}", tag(server));
    let mut out = String::with_capacity(existing.len() + 256);
    for l in existing.split_inclusive('\n') {
        if !l.trim_end().ends_with(&suffix) {
            out.push_str(l);
        }
    }
    if let Some(line) = line {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXfUe5JdCKc8iOkdOKMLJ3K9ygWNIOCzIUtfmOh7i6q";

    fn line(server: &str) -> KeyLine {
        KeyLine::new(
            Some("10.0.0.1".into()),
            "/usr/lib/backuppc-enroll/rsyncsend",
            "/etc/backuppc-enroll/client.toml",
            KEY,
            server,
        )
        .unwrap()
    }

    #[test]
    fn snapshot() {
        assert_eq!(
            line("dugong").to_string(),
            format!("restrict,from=\"10.0.0.1\",command=\"/usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml\" {KEY} backuppc-enroll@dugong")
        );
        let mut no_from = line("dugong");
        no_from.from = None;
        assert!(no_from.to_string().starts_with("restrict,command=\""));
    }

    #[test]
    fn refuses_unsafe_parts() {
        let rows: &[(&str, &str, &str, Option<&str>, &str)] = &[
            ("/x\"y", "/c", "s", None, "quote in rsyncsend path"),
            ("/x", "/c y", "s", None, "space in config path"),
            ("/x", "/c", "s\n", None, "newline in server"),
            ("/x", "/c", "s", Some("a\",command=\"sh"), "from escapes the quotes"),
        ];
        for (rs, cfg, server, from, why) in rows {
            assert!(KeyLine::new(from.map(String::from), rs, cfg, KEY, server).is_err(), "{why}");
        }
    }

    #[test]
    fn replace_keeps_other_lines() {
        let other = "ssh-ed25519 AAAAother admin@laptop\n# a comment\n";
        let old = line("dugong").to_string();
        let other_server = line("walrus").to_string();
        let existing = format!("{other}{old}\n{other_server}\n");
        let new = {
            let mut l = line("dugong");
            l.from = Some("10.0.0.2".into());
            l
        };
        let out = replace(&existing, "dugong", Some(&new));
        assert_eq!(out, format!("{other}{other_server}\n{new}\n"));
        assert_eq!(tagged_lines(&out, "dugong").len(), 1);
        assert_eq!(replace(&out, "dugong", Some(&new)), out, "idempotent");
        assert_eq!(replace(&out, "dugong", None), format!("{other}{other_server}\n"), "removal");
        assert_eq!(replace("no newline at end", "dugong", Some(&new)), format!("no newline at end\n{new}\n"));
    }
}
