//! One drop box's configuration (TOML; every key but `user` and `folder`
//! has a default). Sizes are a number of bytes or a string with a binary
//! suffix (`"50G"`, `"512M"`).

use regex::Regex;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// The vendor's example: `jpro_instance-007-2026-03-01_02h-30-00.tar.gz`.
pub const DEFAULT_PATTERN: &str =
    r"jpro_instance-[0-9]{3}-[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}h-[0-9]{2}-[0-9]{2}\.tar\.gz";

#[derive(Debug, thiserror::Error)]
pub enum DropboxConfigError {
    #[error("cannot read drop box config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("drop box config {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    user: String,
    folder: PathBuf,
    home: Option<PathBuf>,
    #[serde(default = "default_pattern")]
    name_pattern: String,
    #[serde(default = "default_max", deserialize_with = "size")]
    max_file_size: u64,
    #[serde(default = "default_keep_free", deserialize_with = "size")]
    keep_free: u64,
    #[serde(default, deserialize_with = "opt_size")]
    quota: Option<u64>,
    #[serde(default = "default_true")]
    sidecars: bool,
    #[serde(default = "default_idle")]
    idle_timeout: u64,
    #[serde(default = "default_session")]
    session_timeout: u64,
    #[serde(default)]
    audit_log: Option<PathBuf>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    retention: Retention,
    #[serde(default = "default_quarantine_days")]
    quarantine_days: u64,
    #[serde(default = "default_dropbox")]
    dropbox: PathBuf,
}

fn default_pattern() -> String {
    DEFAULT_PATTERN.into()
}
fn default_max() -> u64 {
    64 << 30
}
fn default_keep_free() -> u64 {
    1 << 30
}
fn default_true() -> bool {
    true
}
fn default_idle() -> u64 {
    300
}
/// A day: 64 GiB at 1 MB/s fits; a client trickling a byte now and then
/// holds a session no longer.
fn default_session() -> u64 {
    86400
}
fn default_quarantine_days() -> u64 {
    30
}
fn default_dropbox() -> PathBuf {
    "/usr/bin/dropbox".into()
}

/// How many archives `dropbox prune` keeps, by the time each was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// The newest N, whatever their age.
    pub keep_last: usize,
    /// The newest of each of the last N days (UTC) that have one.
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_last: 7, daily: 14, weekly: 8, monthly: 12 }
    }
}

/// A drop box, checked: the pattern compiled, the folders derived.
#[derive(Debug, Clone)]
pub struct DropboxConfig {
    /// The account the vendor's key logs into.
    pub user: String,
    /// Its home: root-owned, holds only `.ssh/authorized_keys`.
    pub home: PathBuf,
    /// Where accepted archives land.
    pub folder: PathBuf,
    pub name_pattern: Regex,
    pub name_pattern_text: String,
    pub max_file_size: u64,
    pub keep_free: u64,
    pub quota: Option<u64>,
    pub sidecars: bool,
    pub idle_timeout: u64,
    /// Seconds one session may last, however steadily the client sends.
    pub session_timeout: u64,
    pub audit_log: Option<PathBuf>,
    pub webhook: Option<String>,
    pub retention: Retention,
    /// How many days `dropbox prune` keeps a refused upload in
    /// `.quarantine` (counted in the space used until then).
    pub quarantine_days: u64,
    /// Where the `dropbox` binary is installed (named by the key line).
    pub dropbox: PathBuf,
}

impl DropboxConfig {
    pub fn load(path: &Path) -> Result<DropboxConfig, DropboxConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DropboxConfigError::Read { path: path.to_path_buf(), source })?;
        DropboxConfig::parse(&text).map_err(|message| DropboxConfigError::Invalid { path: path.to_path_buf(), message })
    }

    pub fn parse(text: &str) -> Result<DropboxConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        crate::names::user_name(&raw.user)?;
        for (what, p) in [("folder", Some(&raw.folder)), ("home", raw.home.as_ref()), ("dropbox", Some(&raw.dropbox))] {
            if let Some(p) = p {
                let s = p.to_str().ok_or(format!("{what} is not UTF-8"))?;
                crate::names::absolute_path(s).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        let name_pattern = Regex::new(&format!("^(?:{})$", raw.name_pattern))
            .map_err(|e| format!("name_pattern is not a regular expression: {e}"))?;
        if raw.max_file_size == 0 {
            return Err("max_file_size must be more than 0".into());
        }
        if raw.idle_timeout == 0 {
            return Err("idle_timeout must be at least 1 second".into());
        }
        if raw.session_timeout < raw.idle_timeout {
            return Err(format!(
                "session_timeout ({} s) must be at least idle_timeout ({} s)",
                raw.session_timeout, raw.idle_timeout
            ));
        }
        let home = raw.home.unwrap_or_else(|| PathBuf::from("/var/lib/backuppc-enroll/dropbox").join(&raw.user));
        Ok(DropboxConfig {
            user: raw.user,
            home,
            folder: raw.folder,
            name_pattern,
            name_pattern_text: raw.name_pattern,
            max_file_size: raw.max_file_size,
            keep_free: raw.keep_free,
            quota: raw.quota,
            sidecars: raw.sidecars,
            idle_timeout: raw.idle_timeout,
            session_timeout: raw.session_timeout,
            audit_log: raw.audit_log,
            webhook: raw.webhook,
            retention: raw.retention,
            quarantine_days: raw.quarantine_days,
            dropbox: raw.dropbox,
        })
    }

    /// Temporary files of uploads in progress (same file system as the box).
    pub fn incoming(&self) -> PathBuf {
        self.folder.join(".incoming")
    }
    /// Uploads that failed verification, kept for the admin to look at.
    pub fn quarantine(&self) -> PathBuf {
        self.folder.join(".quarantine")
    }
    /// One JSON receipt per accepted archive.
    pub fn receipts(&self) -> PathBuf {
        self.folder.join(".receipts")
    }
    /// What `dropbox setup` created, for `dropbox uninstall`.
    pub fn setup_record(&self) -> PathBuf {
        self.home.join(".dropbox-setup.json")
    }
}

/// `123`, `"123"`, `"64K"`, `"512M"`, `"50G"`, `"2T"` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.as_bytes().last() {
        Some(b'K' | b'k') => (&t[..t.len() - 1], 10),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 20),
        Some(b'G' | b'g') => (&t[..t.len() - 1], 30),
        Some(b'T' | b't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a size (a number of bytes, or with K, M, G or T)"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is too large"))?;
    n.checked_mul(1u64 << shift).ok_or(format!("{text:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Number(u64),
    Text(String),
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Number(n) => Ok(n),
        SizeValue::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let rows: &[(&str, Option<u64>, &str)] = &[
            ("0", Some(0), "zero"),
            ("4096", Some(4096), "plain bytes"),
            ("64K", Some(65536), "kibibytes"),
            ("2g", Some(2 << 30), "lower-case suffix"),
            ("16777215T", Some(16_777_215 << 40), "largest T that fits"),
            ("16777216T", None, "overflows u64"),
            ("99999999999999999999", None, "more than u64"),
            ("", None, "empty"),
            ("G", None, "suffix alone"),
            ("-1", None, "negative"),
            ("1.5G", None, "fraction"),
            ("1 G", None, "inner space"),
            ("1E", None, "unknown suffix"),
        ];
        for (text, want, why) in rows {
            assert_eq!(parse_size(text).ok(), *want, "{why}: {text:?}");
        }
    }

    #[test]
    fn parses_and_refuses() {
        let c = DropboxConfig::parse("user = \"jpro\"\nfolder = \"/srv/jpro\"\nmax_file_size = \"2G\"\nquota = 100\n")
            .unwrap();
        assert_eq!(c.max_file_size, 2 << 30);
        assert_eq!(c.quota, Some(100));
        assert_eq!(c.home, PathBuf::from("/var/lib/backuppc-enroll/dropbox/jpro"));
        assert_eq!((c.idle_timeout, c.session_timeout), (300, 86400), "a silent client 5 min, a session a day");
        assert!(c.name_pattern.is_match("jpro_instance-007-2026-03-01_02h-30-00.tar.gz"));
        assert!(!c.name_pattern.is_match("xjpro_instance-007-2026-03-01_02h-30-00.tar.gz"), "anchored start");
        assert!(!c.name_pattern.is_match("jpro_instance-007-2026-03-01_02h-30-00.tar.gz.sh"), "anchored end");
        let rows = [
            ("folder = \"/srv/x\"\n", "no user"),
            ("user = \"jpro\"\n", "no folder"),
            ("user = \"jpro\"\nfolder = \"srv\"\n", "relative folder"),
            ("user = \"j p\"\nfolder = \"/srv\"\n", "bad user name"),
            ("user = \"jpro\"\nfolder = \"/srv\"\nname_pattern = \"(\"\n", "bad regex"),
            ("user = \"jpro\"\nfolder = \"/srv\"\nmax_file_size = 0\n", "zero max"),
            ("user = \"jpro\"\nfolder = \"/srv\"\ntypo = 1\n", "unknown key"),
            ("user = \"jpro\"\nfolder = \"/srv\"\nidle_timeout = 0\n", "no idle wait"),
            ("user = \"jpro\"\nfolder = \"/srv\"\nsession_timeout = 60\n", "session shorter than the idle wait"),
        ];
        for (text, why) in rows {
            assert!(DropboxConfig::parse(text).is_err(), "{why}");
        }
        // A pattern with an alternation stays whole-string on both sides.
        let c = DropboxConfig::parse("user = \"j\"\nfolder = \"/s\"\nname_pattern = 'a\\.tgz|b\\.tgz'\n").unwrap();
        assert!(c.name_pattern.is_match("b.tgz"));
        assert!(!c.name_pattern.is_match("a.tgzX") && !c.name_pattern.is_match("Xb.tgz"));
    }
}
