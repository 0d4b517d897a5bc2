//! The server's registry of enrollments: one JSON document, replaced
//! atomically under a lock, so it survives crashes and concurrent
//! enrollments.

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
    pub hosts: BTreeMap<String, Enrollment>,
}

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
            return Ok(Registry { version: 1, hosts: BTreeMap::new() });
        }
        serde_json::from_slice(&raw).map_err(|e| RegistryError::Corrupt(path.to_path_buf(), e))
    }

    pub fn save(&self, path: &Path, own: Ownership) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("registry serialises");
        text.push('\n');
        atomic::write(path, text.as_bytes(), Ownership::of_existing_or(path, own))
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
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(Registry::load(&p), Err(RegistryError::Corrupt(..))));
    }
}
