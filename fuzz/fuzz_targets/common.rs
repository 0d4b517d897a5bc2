//! What the rsync fuzz targets share: the filesystem table of the
//! library's property tests (everything under /home exists and is itself,
//! /home/link leads to /etc), a policy with deletes allowed, and the check
//! that whatever was accepted stays inside the share.

pub use backuppc_enroll::rsync::fixture::Table;
use backuppc_enroll::rsync::RsyncPolicy;
use std::path::Path;

pub fn policy() -> RsyncPolicy {
    backuppc_enroll::rsync::fixture::policy(true)
}

/// Whatever was accepted stays inside /home.
pub fn assert_inside(paths: &[String]) {
    for p in paths {
        let base = p.split("/./").next().unwrap_or(p);
        assert!(Path::new(base).starts_with("/home"), "{p} escaped the share");
        assert!(!Path::new(p).components().any(|c| c == std::path::Component::ParentDir), "{p} has ..");
    }
}
