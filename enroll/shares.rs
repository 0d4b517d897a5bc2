//! The server's `share:` lines, resolved on this machine as rsyncsend will
//! resolve them (realpath, as root) before they are accepted: a share that
//! is the whole disk under another spelling (`/proc/self/root`, a symlink
//! to `/`) or a kernel filesystem is refused.

use backuppc_enroll::names;
use std::path::{Component, Path, PathBuf};

/// Kernel filesystems: their files are processes, devices and the kernel's
/// own state, and `/proc/*/root` leads back to the whole disk.
const KERNEL_TREES: &[&str] = &["/proc", "/sys", "/dev"];

/// Why `share`, resolving to `resolved` here, is not backed up; `None`
/// when it may be.
pub fn refusal(share: &str, resolved: &Path) -> Option<String> {
    let shown = names::quoted(share);
    if resolved == Path::new("/") {
        let how = if share == "/" { String::new() } else { " on this machine".to_string() };
        return Some(format!("share {shown} resolves to /{how}: that is the whole disk, not a share"));
    }
    for tree in KERNEL_TREES {
        for (path, what) in [(Path::new(share), "is"), (resolved, "resolves to a path")] {
            if path.starts_with(tree) {
                return Some(format!(
                    "share {shown} {what} under {tree}, a kernel filesystem (resolved: {}), not files to back up",
                    names::quoted(&resolved.to_string_lossy())
                ));
            }
        }
    }
    None
}

/// `realpath(3)` of the longest existing ancestor of `p`, with the rest
/// appended (which, not existing, has no symlink to follow): what
/// rsyncsend's confinement does. Shares have no `..` (the answer's parser
/// refuses them).
pub fn resolve(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return normalise(&out);
        }
        match existing.file_name() {
            Some(name) => tail.push(name.to_os_string()),
            None => return normalise(p),
        }
        if !existing.pop() {
            return normalise(p);
        }
    }
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The first share of `shares` refused, with why.
pub fn check(shares: &[String]) -> Result<(), String> {
    for s in shares {
        if let Some(why) = refusal(s, &resolve(Path::new(s))) {
            return Err(why);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let rows: &[(&str, &str, bool, &str)] = &[
            ("/home", "/home", true, "plain"),
            ("/srv/data", "/data", true, "a symlink elsewhere"),
            ("/", "/", false, "root"),
            ("/proc/self/root", "/", false, "the whole disk through /proc"),
            ("/proc/1/root", "/", false, "init's root"),
            ("/proc/thread-self/root/etc", "/etc", false, "under /proc even when it resolves elsewhere"),
            ("/srv/all", "/", false, "symlink to /"),
            ("/srv/kernel", "/sys/kernel", false, "symlink into /sys"),
            ("/dev/sda", "/dev/sda", false, "a device"),
            ("/devices", "/devices", true, "a name that only starts like /dev"),
            ("/processes", "/processes", true, "a name that only starts like /proc"),
        ];
        for (share, resolved, ok, why) in rows {
            assert_eq!(refusal(share, Path::new(resolved)).is_none(), *ok, "{why}: {share}");
        }
        let why = refusal("/proc/self/root", Path::new("/")).unwrap();
        assert!(why.contains("resolves to / on this machine: that is the whole disk"), "{why}");
    }

    #[test]
    fn resolved_as_rsyncsend_does() {
        let d = tempfile::tempdir().unwrap();
        let root_link = d.path().join("all");
        std::os::unix::fs::symlink("/", &root_link).unwrap();
        assert_eq!(resolve(&root_link), Path::new("/"));
        assert_eq!(resolve(Path::new("/proc/self/root")), Path::new("/"), "as root, /proc/self/root is /");
        assert_eq!(resolve(&root_link.join("missing")), Path::new("/missing"), "missing part appended");
        let real = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(resolve(&d.path().join("not/yet")), real.join("not/yet"));
        assert!(check(&["/home".into(), root_link.to_string_lossy().into_owned()]).is_err());
    }
}
