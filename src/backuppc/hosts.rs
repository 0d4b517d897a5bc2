//! BackupPC's `$ConfDir/hosts` file: reading it the way BackupPC does and
//! adding, updating or removing one host's line while every other line,
//! comment and blank stays byte for byte. [`HostsFile`] writes it the way
//! BackupPC's own `TextFileWrite` does, made crash-safe: under an flock on
//! `$ConfDir/LOCK`, through `hosts.new` (re-read and compared), keeping
//! `hosts.old`, renamed into place with the old owner and mode.

use crate::store::atomic::{self, Lock, Ownership};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// BackupPC's stock header line.
pub const HEADER: &str = "host        dhcp    user      moreUsers     # <--- do not edit this line\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub dhcp: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    #[error("host {host} is already registered in BackupPC for logon {user}")]
    HeldBy { host: String, user: String },
}

/// The data part of a line as BackupPC sees it, if the line is a row
/// (or the header): comments cut, trailing blanks cut, starting in
/// column 0 with a name character and at least two fields.
fn row(line: &str) -> Option<Vec<&str>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let data = line.split('#').next().unwrap_or("").trim_end();
    let first = data.chars().next()?;
    if !(first.is_ascii_alphanumeric() || matches!(first, '_' | '.' | '\\' | '-')) {
        return None;
    }
    let fields: Vec<&str> = data.split_whitespace().collect();
    (fields.len() >= 2).then_some(fields)
}

/// Host rows with their line index (the header is skipped).
pub fn entries(content: &str) -> Vec<(usize, HostEntry)> {
    let mut header_seen = false;
    let mut out = Vec::new();
    for (i, line) in content.split_inclusive('\n').enumerate() {
        let Some(f) = row(line) else { continue };
        if !header_seen {
            header_seen = true;
            continue;
        }
        out.push((
            i,
            HostEntry {
                host: f[0].to_string(),
                dhcp: f[1].to_string(),
                user: f.get(2).map(|s| s.to_string()).unwrap_or_default(),
            },
        ));
    }
    out
}

pub fn find(content: &str, host: &str) -> Option<HostEntry> {
    entries(content).into_iter().map(|(_, e)| e).find(|e| e.host.eq_ignore_ascii_case(host))
}

fn new_line(host: &str, user: &str) -> String {
    format!("{host}\t0\t{user}\n")
}

/// The file with `host` registered to `user`, or `None` when it already is.
/// A host held by another user is refused unless `reassign`.
pub fn upsert(content: &str, host: &str, user: &str, reassign: bool) -> Result<Option<String>, HostsError> {
    let found = entries(content).into_iter().find(|(_, e)| e.host.eq_ignore_ascii_case(host));
    match found {
        Some((_, e)) if e.user == user => Ok(None),
        Some((_, e)) if !reassign => Err(HostsError::HeldBy { host: e.host, user: e.user }),
        Some((idx, _)) => Ok(Some(
            content
                .split_inclusive('\n')
                .enumerate()
                .map(|(i, l)| if i == idx { new_line(host, user) } else { l.to_string() })
                .collect(),
        )),
        None => {
            let mut out = String::with_capacity(content.len() + 64);
            let has_header = content.split_inclusive('\n').any(|l| row(l).is_some());
            if !has_header {
                out.push_str(HEADER);
            }
            out.push_str(content);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&new_line(host, user));
            Ok(Some(out))
        }
    }
}

/// The file without `host`'s row, or `None` when it has none.
pub fn remove(content: &str, host: &str) -> Option<String> {
    let idx: Vec<usize> =
        entries(content).into_iter().filter(|(_, e)| e.host.eq_ignore_ascii_case(host)).map(|(i, _)| i).collect();
    if idx.is_empty() {
        return None;
    }
    Some(content.split_inclusive('\n').enumerate().filter(|(i, _)| !idx.contains(i)).map(|(_, l)| l).collect())
}

/// BackupPC's hosts file in a config folder.
pub struct HostsFile {
    conf_dir: PathBuf,
    /// Ownership used when the file does not exist yet.
    default_owner: Ownership,
}

impl HostsFile {
    pub fn new(conf_dir: &Path, default_owner: Ownership) -> HostsFile {
        HostsFile { conf_dir: conf_dir.to_path_buf(), default_owner }
    }

    pub fn path(&self) -> PathBuf {
        self.conf_dir.join("hosts")
    }

    /// Register `host` for `user`. Returns whether the file changed.
    pub fn register(&self, host: &str, user: &str, reassign: bool) -> Result<bool, HostsWriteError> {
        let (changed, mut outcomes) = self.register_all(&[(host, user, reassign)])?;
        match outcomes.pop() {
            Some(Err(e)) => Err(HostsWriteError::Policy(e)),
            _ => Ok(changed),
        }
    }

    /// Register each `(host, user, reassign)` in one write of the file:
    /// each one's refusal (as [`upsert`]'s) leaves the others registered.
    /// Returns whether the file changed, and each entry's outcome.
    #[allow(clippy::type_complexity)]
    pub fn register_all(
        &self,
        entries: &[(&str, &str, bool)],
    ) -> Result<(bool, Vec<Result<(), HostsError>>), HostsWriteError> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let written = self.edit(|c| {
            let mut content = c.to_string();
            let mut changed = false;
            for (host, user, reassign) in entries {
                match upsert(&content, host, user, *reassign) {
                    Ok(Some(new)) => {
                        content = new;
                        changed = true;
                        outcomes.push(Ok(()));
                    }
                    Ok(None) => outcomes.push(Ok(())),
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            Ok(changed.then_some(content))
        })?;
        Ok((written, outcomes))
    }

    /// Remove `host`. Returns whether the file changed.
    pub fn unregister(&self, host: &str) -> Result<bool, HostsWriteError> {
        self.edit(|c| Ok(remove(c, host)))
    }

    /// The hosts file's modification time, to the nanosecond.
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.path()).and_then(|m| m.modified()).ok()
    }

    /// Move the hosts file's modification time one whole second past
    /// itself, contents untouched, under BackupPC's lock: a daemon that
    /// read the file's time after a replacement it did not read then sees
    /// a change, and reads the file on its next reload.
    pub fn touch_past(&self) -> io::Result<()> {
        use std::time::{Duration, UNIX_EPOCH};
        let _lock = Lock::exclusive(&self.conf_dir.join("LOCK"))?;
        let f = fs::OpenOptions::new().write(true).open(self.path())?;
        let secs = f.metadata()?.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs + 1))
    }

    pub fn read(&self) -> io::Result<String> {
        let _lock = Lock::exclusive(&self.conf_dir.join("LOCK"))?;
        Ok(String::from_utf8_lossy(&atomic::read_or_empty(&self.path())?).into_owned())
    }

    fn edit(
        &self,
        change: impl FnOnce(&str) -> Result<Option<String>, HostsWriteError>,
    ) -> Result<bool, HostsWriteError> {
        let _lock = Lock::exclusive(&self.conf_dir.join("LOCK"))?;
        let path = self.path();
        let raw = atomic::read_or_empty(&path)?;
        let content = String::from_utf8(raw).map_err(|_| HostsWriteError::NotText(path.clone()))?;
        let Some(new) = change(&content)? else {
            return Ok(false);
        };
        let own = Ownership::of_existing_or(&path, self.default_owner);
        let staged = self.conf_dir.join("hosts.new");
        // A hosts.new left by a crash is stale: we hold the lock.
        let _ = fs::remove_file(&staged);
        // A failed staging (disk full) leaves no hosts.new behind.
        let staging = atomic::write_new(&staged, new.as_bytes(), own)
            .and_then(|()| bump_mtime_past(&staged, &path))
            .and_then(|()| fs::read(&staged));
        match staging {
            Ok(back) if back == new.as_bytes() => {}
            Ok(_) => {
                let _ = fs::remove_file(&staged);
                return Err(HostsWriteError::Verify(staged));
            }
            Err(e) => {
                let _ = fs::remove_file(&staged);
                return Err(e.into());
            }
        }
        if path.exists() {
            // hosts.old is replaced atomically too: link, then rename.
            let old_tmp = self.conf_dir.join(".hosts.old.tmp");
            let _ = fs::remove_file(&old_tmp);
            fs::hard_link(&path, &old_tmp)?;
            fs::rename(&old_tmp, self.conf_dir.join("hosts.old"))?;
            // After a writer killed between its two renames, hosts.old and
            // hosts are one file: rename(2) between two links of one file
            // does nothing and leaves the temporary link behind.
            let _ = fs::remove_file(&old_tmp);
        }
        fs::rename(&staged, &path)?;
        atomic::sync_dir(&self.conf_dir)?;
        Ok(true)
    }
}

/// BackupPC's daemon re-reads `hosts` on reload only when its mtime, in
/// whole seconds, changed. A change in the same second as the previous one
/// would go unseen, so the new file gets a later second than the old.
fn bump_mtime_past(new: &Path, old: &Path) -> io::Result<()> {
    use std::time::{Duration, UNIX_EPOCH};
    let Ok(old_m) = fs::metadata(old).and_then(|m| m.modified()) else { return Ok(()) };
    let f = fs::OpenOptions::new().write(true).open(new)?;
    let new_m = f.metadata()?.modified()?;
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if secs(new_m) <= secs(old_m) {
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs(old_m) + 1))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum HostsWriteError {
    #[error(transparent)]
    Policy(HostsError),
    #[error("{0} is not text")]
    NotText(PathBuf),
    #[error("{0} did not read back as written (disk full?)")]
    Verify(PathBuf),
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = "#============\n# hosts file\n#============\nhost        dhcp    user      moreUsers     # <--- do not edit this line\n#farside    0       craig     jill,jeff\nlocalhost   0       backuppc\n";

    #[test]
    fn reads_like_backuppc() {
        let e = entries(STOCK);
        assert_eq!(e.len(), 1, "commented host and header are not rows");
        assert_eq!(e[0].1, HostEntry { host: "localhost".into(), dhcp: "0".into(), user: "backuppc".into() });
        let odd = "host dhcp user\n  indented 0 x\nlonely\nA 0 u # trailing comment\n";
        let e = entries(odd);
        assert_eq!(e.len(), 1, "indented and one-field lines are ignored: {e:?}");
        assert_eq!(e[0].1.host, "A");
        assert!(find(odd, "a").is_some(), "case-insensitive like BackupPC's lc()");
    }

    #[test]
    fn upsert_table() {
        let added = upsert(STOCK, "dormeur", "cmartin", false).unwrap().unwrap();
        assert_eq!(added, format!("{STOCK}dormeur\t0\tcmartin\n"), "appended, rest byte for byte");
        assert_eq!(upsert(&added, "dormeur", "cmartin", false).unwrap(), None, "same logon: unchanged");
        assert_eq!(
            upsert(&added, "DORMEUR", "jdupont", false),
            Err(HostsError::HeldBy { host: "dormeur".into(), user: "cmartin".into() }),
            "another logon refused"
        );
        let moved = upsert(&added, "dormeur", "jdupont", true).unwrap().unwrap();
        assert_eq!(moved, format!("{STOCK}dormeur\t0\tjdupont\n"), "reassigned in place");
        assert_eq!(
            upsert("", "a", "u", false).unwrap().unwrap(),
            format!("{HEADER}a\t0\tu\n"),
            "empty file gets header"
        );
        assert_eq!(
            upsert("host dhcp user", "a", "u", false).unwrap().unwrap(),
            "host dhcp user\na\t0\tu\n",
            "missing final newline"
        );
    }

    #[test]
    fn remove_keeps_the_rest() {
        let with = format!("{STOCK}dormeur\t0\tcmartin\nzed 0 z\n");
        assert_eq!(remove(&with, "dormeur").unwrap(), format!("{STOCK}zed 0 z\n"));
        assert_eq!(remove(STOCK, "dormeur"), None);
    }

    #[test]
    fn file_write_keeps_old_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        fs::write(&p, STOCK).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let me = Ownership { uid: nix::unistd::getuid().as_raw(), gid: nix::unistd::getgid().as_raw(), mode: 0o644 };
        let hf = HostsFile::new(d.path(), me);
        let before = fs::metadata(&p).unwrap().modified().unwrap();
        assert!(hf.register("dormeur", "cmartin", false).unwrap());
        let after = fs::metadata(&p).unwrap().modified().unwrap();
        let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(secs(after) > secs(before), "BackupPC sees a new whole-second mtime");
        assert!(!hf.register("dormeur", "cmartin", false).unwrap());
        assert_eq!(fs::read_to_string(d.path().join("hosts.old")).unwrap(), STOCK);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!d.path().join("hosts.new").exists());
        assert!(matches!(hf.register("dormeur", "x", false), Err(HostsWriteError::Policy(_))));
        assert!(hf.unregister("dormeur").unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), STOCK);
    }
}
