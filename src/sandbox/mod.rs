//! What the kernel confines root rsync to: the Landlock rules of one
//! checked invocation, as a plain value (which path, with which access).
//! A backup may read beneath the paths it names, a restore may read and
//! write beneath its destination, and rsync may load itself and its
//! libraries; nothing else on the filesystem can be opened, and no TCP
//! socket bound or connected.
//!
//! Nothing here opens a file or applies a rule: `rsyncsend`'s root helper
//! opens each path (checking it is the one planned) and hands the rules to
//! the kernel. Keep this module free of I/O beyond the [`Resolve`] trait.

use crate::rsync::{Direction, Refusal, Resolve, RsyncInvocation, RsyncPolicy};
use landlock::{Access as _, AccessFs, BitFlags, ABI};
use std::io;
use std::path::{Path, PathBuf};

/// The Landlock ABI whose rights are granted (tested on a kernel with ABI
/// 7): a kernel without some of them enforces what it knows.
pub const TESTED_ABI: ABI = ABI::V7;

/// The Landlock ABI whose rights are handled (denied unless granted): the
/// newest the `landlock` crate knows, so a kernel that can restrict more
/// (connecting to a named socket, for one) does.
pub const HANDLED_ABI: ABI = ABI::V10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read files and list folders beneath (a backup's paths).
    Read,
    /// Everything a restore does beneath its destination: read, create,
    /// write, truncate, remove, rename, symlinks, fifos and sockets. Not
    /// device nodes (a device file restored as root would open the raw
    /// disk to whoever owns it) and not execute.
    ReadWrite,
    /// Map and run programs and libraries beneath (read and execute).
    ReadExecute,
    /// Read the one file (system files rsync opens at start).
    ReadFile,
}

/// One rule: `path` with `access` beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: Access,
    /// The invocation's own paths: the helper opens them without following
    /// a symlink and checks that what it opened is `path`, or refuses.
    /// System paths may be missing (`/lib64` on some systems) and may be
    /// symlinks (`/lib` → `usr/lib`).
    pub checked: bool,
}

/// Folders of the shared libraries rsync and the dynamic loader map.
pub const LIBRARY_DIRS: &[&str] = &["/usr/lib", "/lib", "/lib64", "/usr/lib64"];

/// System files rsync opens at start, read-only, each world-readable on
/// a standard system:
/// - `/etc/ld.so.cache`: the dynamic loader's library index;
/// - `/dev/urandom`: rsync's random names for temporary files;
/// - `/etc/nsswitch.conf`, `/etc/passwd`, `/etc/group`: user and group
///   names, for transfers without `--numeric-ids`.
pub const SYSTEM_FILES: &[&str] =
    &["/etc/ld.so.cache", "/dev/urandom", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group"];

/// The rules for `inv`, whose paths were checked against `policy`:
/// - a backup (sender): [`Access::Read`] beneath each path, resolved
///   (after rsync's `/./` marker too); a path that does not exist gets no
///   rule, so nothing created there later is readable;
/// - a restore (receiver): [`Access::ReadWrite`] beneath the destination,
///   which must exist (the helper creates it first);
/// - rsync itself (`rsync`, resolved) read and execute, the library
///   folders read and execute, [`SYSTEM_FILES`] read.
///
/// Every path is re-checked against the shares (and, for a restore, the
/// protected folders): a plan never grants anything outside them.
pub fn plan(inv: &RsyncInvocation, policy: &RsyncPolicy, rsync: &Path, fs: &dyn Resolve) -> Result<Vec<Rule>, Refusal> {
    let inside = |p: &Path| policy.shares.iter().any(|s| p.starts_with(s));
    let mut rules = Vec::new();
    for raw in &inv.paths {
        // The path rsync opens: components drop the `/./` marker and a
        // trailing slash (`..` was refused by the check).
        let full: PathBuf = Path::new(raw).components().collect();
        let real = match fs.canonicalize(&full) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound && inv.direction == Direction::Sender => continue,
            Err(e) => return Err(Refusal(format!("cannot resolve {}: {e}", full.display()))),
        };
        if !inside(&real) {
            return Err(Refusal(format!("{} leads outside the shares", full.display())));
        }
        let access = match inv.direction {
            Direction::Sender => Access::Read,
            Direction::Receiver => {
                if let Some(bad) = policy.protected.iter().find(|p| p.starts_with(&real) || real.starts_with(p)) {
                    return Err(Refusal(format!("a restore may not write into or above {}", bad.display())));
                }
                Access::ReadWrite
            }
        };
        if !rules.iter().any(|r: &Rule| r.path == real) {
            rules.push(Rule { path: real, access, checked: true });
        }
    }
    let rsync = fs.canonicalize(rsync).map_err(|e| Refusal(format!("cannot resolve {}: {e}", rsync.display())))?;
    rules.push(Rule { path: rsync, access: Access::ReadExecute, checked: false });
    for d in LIBRARY_DIRS {
        rules.push(Rule { path: d.into(), access: Access::ReadExecute, checked: false });
    }
    for f in SYSTEM_FILES {
        rules.push(Rule { path: f.into(), access: Access::ReadFile, checked: false });
    }
    Ok(rules)
}

/// The Landlock rights of `access` on a folder or (`dir = false`) a file,
/// within what [`TESTED_ABI`] knows.
pub fn rights(access: Access, dir: bool) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(TESTED_ABI);
    let set = match access {
        Access::Read => AccessFs::ReadFile | AccessFs::ReadDir,
        Access::ReadWrite => all & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::IoctlDev),
        Access::ReadExecute => AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute,
        Access::ReadFile => AccessFs::ReadFile.into(),
    };
    if dir {
        set
    } else {
        set & AccessFs::from_file(TESTED_ABI)
    }
}

/// How root rsync is confined on this machine, as `rsyncsend status`
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Landlock rules for every invocation (the kernel's ABI version).
    Landlock(u32),
    /// No Landlock: only pinning, and invocations that cannot be pinned
    /// (rsync's `/./` marker, several paths) are refused.
    PinOnly(String),
}

impl Mode {
    /// From the kernel's answer to the ABI version query.
    pub fn from_abi(abi: Result<u32, nix::errno::Errno>) -> Mode {
        match abi {
            Ok(v) if v >= 1 => Mode::Landlock(v),
            Ok(v) => Mode::PinOnly(format!("Landlock ABI {v} is unknown")),
            Err(nix::errno::Errno::EOPNOTSUPP) => {
                Mode::PinOnly("Landlock is built into this kernel but not enabled (add landlock to lsm=)".into())
            }
            Err(nix::errno::Errno::ENOSYS) => {
                Mode::PinOnly("this kernel has no Landlock (Linux >= 5.13 needed)".into())
            }
            Err(e) => Mode::PinOnly(format!("Landlock cannot be queried: {e}")),
        }
    }

    /// The `confinement:` line of `rsyncsend status`.
    pub fn describe(&self) -> String {
        match self {
            Mode::Landlock(v) => format!("landlock (ABI {v})"),
            Mode::PinOnly(why) => format!("none ({why}; single-path invocations are pinned, others refused)"),
        }
    }
}

/// Without Landlock, what cannot be pinned is refused: several paths, and
/// the part after rsync's `/./` marker (rsync resolves it itself, after
/// the check).
pub fn pin_only_allows(inv: &RsyncInvocation) -> Result<(), Refusal> {
    if inv.paths.len() != 1 {
        return Err(Refusal(
            "several paths in one invocation need Landlock, which this kernel does not enforce: name one path per run"
                .into(),
        ));
    }
    if inv.paths[0].contains("/./") {
        return Err(Refusal(
            "rsync's /./ marker needs Landlock, which this kernel does not enforce: name the share without it".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Paths that exist resolve to themselves, `links` to their target,
    /// `denied` give EACCES, the rest ENOENT.
    struct Fs {
        links: HashMap<&'static str, &'static str>,
        exists: Vec<&'static str>,
        denied: Vec<&'static str>,
    }

    impl Resolve for Fs {
        fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
            let s = p.to_string_lossy();
            if let Some(t) = self.links.get(s.as_ref()) {
                return Ok(PathBuf::from(t));
            }
            if self.denied.iter().any(|d| s.starts_with(d)) {
                return Err(io::ErrorKind::PermissionDenied.into());
            }
            if self.exists.contains(&s.as_ref()) {
                Ok(p.to_path_buf())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        }
    }

    fn fs() -> Fs {
        Fs {
            links: HashMap::from([
                ("/home/jd/out", "/etc"),
                ("/home/jd/in", "/home/jd/docs"),
                ("/usr/bin/rsync", "/usr/bin/rsync"),
            ]),
            exists: vec!["/home", "/home/jd", "/home/jd/docs", "/home/jd/file", "/srv/r", "/root"],
            denied: vec!["/home/locked"],
        }
    }

    fn policy() -> RsyncPolicy {
        RsyncPolicy {
            shares: vec!["/home".into(), "/srv/r".into(), "/root".into()],
            restore: true,
            delete: false,
            rsync_path: "/usr/bin/rsync".into(),
            protected: vec!["/home/jd/.ssh".into()],
            follow_links: false,
            iconv: false,
        }
    }

    fn inv(direction: Direction, paths: &[&str]) -> RsyncInvocation {
        RsyncInvocation {
            direction,
            short: "l".into(),
            caps: None,
            long: vec![],
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn own(rules: &[Rule]) -> Vec<(String, Access)> {
        rules.iter().filter(|r| r.checked).map(|r| (r.path.display().to_string(), r.access)).collect()
    }

    #[test]
    fn rules_of_an_invocation() {
        use Direction::*;
        type Row<'a> = (Direction, &'a [&'a str], &'a [(&'a str, Access)], &'a str);
        let rows: &[Row] = &[
            (Sender, &["/home/jd/"], &[("/home/jd", Access::Read)], "a share's contents"),
            (Sender, &["/home/./jd/docs/"], &[("/home/jd/docs", Access::Read)], "after the /./ marker, resolved"),
            (Sender, &["/home/./jd/in/"], &[("/home/jd/docs", Access::Read)], "a symlink inside the share"),
            (Sender, &["/home/jd/file"], &[("/home/jd/file", Access::Read)], "one file"),
            (Sender, &["/home/jd", "/srv/r/"], &[("/home/jd", Access::Read), ("/srv/r", Access::Read)], "two paths"),
            (Sender, &["/home/jd/", "/home/jd/"], &[("/home/jd", Access::Read)], "a path named twice: one rule"),
            (Sender, &["/home/jd/new/"], &[], "missing: no rule, nothing created later is readable"),
            (Sender, &["/root/"], &[("/root", Access::Read)], "a root-only share"),
            (Receiver, &["/srv/r"], &[("/srv/r", Access::ReadWrite)], "a restore's destination"),
        ];
        for (dir, paths, want, why) in rows {
            let rules = plan(&inv(*dir, paths), &policy(), Path::new("/usr/bin/rsync"), &fs()).unwrap();
            let want: Vec<(String, Access)> = want.iter().map(|(p, a)| (p.to_string(), *a)).collect();
            assert_eq!(own(&rules), want, "{why}");
            assert!(rules.iter().any(|r| r.path == Path::new("/usr/bin/rsync") && r.access == Access::ReadExecute));
            assert!(
                rules.iter().all(|r| r.checked || r.access != Access::ReadWrite),
                "{why}: only the destination is writable"
            );
        }
    }

    #[test]
    fn refusals() {
        use Direction::*;
        let rows: &[(Direction, &[&str], &str)] = &[
            (Sender, &["/home/./jd/out/"], "a symlink after /./ leading out"),
            (Sender, &["/home/locked/x/"], "a folder root cannot resolve is not taken as missing"),
            (Receiver, &["/home/jd/new"], "a restore destination must exist"),
            (Receiver, &["/home"], "a restore above a protected folder"),
        ];
        for (dir, paths, why) in rows {
            assert!(plan(&inv(*dir, paths), &policy(), Path::new("/usr/bin/rsync"), &fs()).is_err(), "{why}");
        }
    }

    #[test]
    fn rights_per_access() {
        let rw = rights(Access::ReadWrite, true);
        assert!(rw.contains(AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::Refer));
        assert!(!rw.intersects(AccessFs::Execute | AccessFs::MakeBlock | AccessFs::MakeChar), "no devices, no exec");
        assert_eq!(rights(Access::Read, true), AccessFs::ReadFile | AccessFs::ReadDir);
        assert_eq!(rights(Access::Read, false), AccessFs::ReadFile, "a file gets file rights only");
        assert_eq!(rights(Access::ReadExecute, false), AccessFs::ReadFile | AccessFs::Execute);
        for a in [Access::Read, Access::ReadWrite, Access::ReadExecute, Access::ReadFile] {
            assert!(!rights(a, false).contains(AccessFs::ReadDir), "{a:?}");
        }
    }

    #[test]
    fn modes() {
        use nix::errno::Errno;
        assert_eq!(Mode::from_abi(Ok(7)).describe(), "landlock (ABI 7)");
        assert!(matches!(Mode::from_abi(Err(Errno::ENOSYS)), Mode::PinOnly(_)));
        assert!(Mode::from_abi(Err(Errno::EOPNOTSUPP)).describe().starts_with("none (Landlock is built"));
        assert!(pin_only_allows(&inv(Direction::Sender, &["/home/jd/"])).is_ok());
        assert!(pin_only_allows(&inv(Direction::Sender, &["/home/./jd/"])).is_err(), "/./ needs Landlock");
        assert!(pin_only_allows(&inv(Direction::Sender, &["/home/a", "/home/b"])).is_err(), "two paths need Landlock");
    }
}
