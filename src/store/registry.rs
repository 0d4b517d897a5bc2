//! The server's registry of enrollments: one JSON document, replaced
//! atomically under a lock, so it survives crashes and concurrent
//! enrollments.
//!
//! It keeps two things apart. `hosts` says what this toolkit wrote (or was
//! given by the admin) in BackupPC's files, host by host: only a host
//! whose entry is `enrolling`, `enrolled` or `adopted` may have its hosts
//! line, `pc/HOST.pl` and known_hosts lines rewritten or removed; anything
//! else there is the admin's. `requests` holds requests waiting for an
//! admin (`pending`, `approved`, `denied`), so a request never overwrites
//! the record of a live host.

use crate::store::atomic::{self, Lock, Ownership};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub host: String,
    pub logon: String,
    pub os: String,
    pub address: String,
    pub key_fingerprint: String,
    pub host_key_fingerprints: Vec<String>,
    pub enrolled_at: String,
    pub state: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub version: u32,
    /// What the toolkit wrote for each host (states `enrolling`,
    /// `enrolled`, `adopted`, `revoked`).
    pub hosts: BTreeMap<String, Enrollment>,
    /// Requests for an admin's decision (states `pending`, `approved`,
    /// `denied`), by host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Enrollment>,
}

/// States of a `hosts` entry under which the toolkit owns the host's files:
/// `enrolling` (written before the first file, so a crash midway still
/// leaves the files the toolkit's), `enrolled`, and `adopted` (handed over
/// by the admin with `forced-command adopt`).
pub const OWNING_STATES: &[&str] = &["enrolling", "enrolled", "adopted"];

/// States that belong in `requests`, not `hosts`.
pub const REQUEST_STATES: &[&str] = &["pending", "approved", "denied"];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {0} is not valid JSON: {1}")]
    Corrupt(PathBuf, serde_json::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let raw = atomic::read_or_empty(path)?;
        if raw.is_empty() {
            return Ok(Registry { version: 1, ..Registry::default() });
        }
        let mut reg: Registry =
            serde_json::from_slice(&raw).map_err(|e| RegistryError::Corrupt(path.to_path_buf(), e))?;
        // Registries written before `requests` existed kept requests in
        // `hosts`; they wrote no file for them.
        let moved: Vec<String> = reg
            .hosts
            .iter()
            .filter(|(_, e)| REQUEST_STATES.contains(&e.state.as_str()))
            .map(|(h, _)| h.clone())
            .collect();
        for host in moved {
            if let Some(e) = reg.hosts.remove(&host) {
                reg.requests.insert(host, e);
            }
        }
        Ok(reg)
    }

    /// Whether the toolkit owns `host`'s files in BackupPC (see
    /// [`OWNING_STATES`]): never for a host it has no entry for.
    pub fn owns(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|e| OWNING_STATES.contains(&e.state.as_str()))
    }

    pub fn save(&self, path: &Path, own: Ownership) -> io::Result<()> {
        atomic::write(path, &self.render(), Ownership::of_existing_or(path, own))
    }

    /// Stage the registry's new contents in `batch` (see [`atomic::Batch`]).
    pub fn stage(&self, batch: &mut atomic::Batch, path: &Path, own: Ownership) -> io::Result<()> {
        batch.add(path, &self.render(), Ownership::of_existing_or(path, own))
    }

    fn render(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("registry serialises");
        text.push('\n');
        text.into_bytes()
    }
}

/// The lock that serialises every change to the server's files.
pub fn lock(registry: &Path) -> io::Result<Lock> {
    let mut p = registry.as_os_str().to_owned();
    p.push(".lock");
    Lock::exclusive(Path::new(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, state: &str) -> Enrollment {
        Enrollment {
            host: host.into(),
            logon: "l".into(),
            os: "linux".into(),
            address: "127.0.0.1".into(),
            key_fingerprint: String::new(),
            host_key_fingerprints: vec![],
            enrolled_at: "2026-01-01T00:00:00Z".into(),
            state: state.into(),
        }
    }

    #[test]
    fn ownership_by_state() {
        let rows: &[(&str, bool, &str)] = &[
            ("enrolling", true, "written before the first file"),
            ("enrolled", true, "the toolkit wrote its files"),
            ("adopted", true, "the admin handed it over"),
            ("revoked", false, "its files were removed; what is there now is the admin's"),
        ];
        for (state, owns, why) in rows {
            let mut r = Registry::default();
            r.hosts.insert("h".into(), entry("h", state));
            assert_eq!(r.owns("h"), *owns, "{why}");
        }
    }

    #[test]
    fn old_registries_move_requests_out_of_hosts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        let mut old = Registry::default();
        for (h, state) in [("a", "pending"), ("b", "approved"), ("c", "denied"), ("d", "enrolled")] {
            old.hosts.insert(h.into(), entry(h, state));
        }
        std::fs::write(&p, serde_json::to_string(&old).unwrap()).unwrap();
        let r = Registry::load(&p).unwrap();
        assert_eq!(r.hosts.keys().collect::<Vec<_>>(), ["d"]);
        assert_eq!(r.requests.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(!r.owns("a") && !r.owns("b"), "a request wrote no file");
    }

    #[test]
    fn round_trip_and_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        let mut r = Registry::load(&p).unwrap();
        assert!(r.hosts.is_empty());
        r.hosts.insert(
            "h".into(),
            Enrollment {
                host: "h".into(),
                logon: "l".into(),
                os: "linux".into(),
                address: "127.0.0.1".into(),
                key_fingerprint: "SHA256:x".into(),
                host_key_fingerprints: vec![],
                enrolled_at: "2026-01-01T00:00:00Z".into(),
                state: "enrolled".into(),
            },
        );
        let own = Ownership { uid: nix::unistd::getuid().as_raw(), gid: nix::unistd::getgid().as_raw(), mode: 0o640 };
        r.save(&p, own).unwrap();
        assert_eq!(Registry::load(&p).unwrap(), r);
        assert!(r.owns("h"), "an enrolled host's files are the toolkit's");
        assert!(!r.owns("other"), "a host without an entry is the admin's");
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(Registry::load(&p), Err(RegistryError::Corrupt(..))));
    }
}
