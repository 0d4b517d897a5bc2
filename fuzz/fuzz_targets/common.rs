//! A filesystem table shared by the rsync fuzz targets: everything under
//! /home exists and is itself, /home/link leads to /etc.

use backuppc_enroll::rsync::{Resolve, RsyncPolicy};
use std::io;
use std::path::{Path, PathBuf};

pub struct Table;

impl Resolve for Table {
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
        let s = p.to_string_lossy();
        if let Some(rest) = s.strip_prefix("/home/link") {
            return Ok(PathBuf::from(format!("/etc{rest}")));
        }
        if s == "/" || s == "/home" || s.starts_with("/home/") || s == "/etc" || s.starts_with("/etc/") {
            Ok(p.to_path_buf())
        } else {
            Err(io::ErrorKind::NotFound.into())
        }
    }
}

pub fn policy() -> RsyncPolicy {
    RsyncPolicy {
        shares: vec!["/home".into()],
        restore: true,
        delete: true,
        rsync_path: "/usr/bin/rsync".into(),
        protected: vec!["/home/bk/.ssh".into()],
        follow_links: false,
        iconv: false,
    }
}

/// Whatever was accepted stays inside /home.
pub fn assert_inside(paths: &[String]) {
    for p in paths {
        let base = p.split("/./").next().unwrap_or(p);
        assert!(Path::new(base).starts_with("/home"), "{p} escaped the share");
        assert!(!Path::new(p).components().any(|c| c == std::path::Component::ParentDir), "{p} has ..");
    }
}
