//! Paths against the shares: every path must lie inside a share by whole
//! components after symlinks are resolved, and a single-path invocation is
//! pinned (its folder opened and made the working directory) before exec.

use super::{refuse, short, Direction, Refusal, RsyncInvocation, RsyncPolicy};
use std::io;
use std::path::{Component, Path, PathBuf};

/// How paths are resolved (the real filesystem, or a table in tests).
pub trait Resolve {
    /// `realpath(3)` of an existing path.
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf>;

    /// Whether a failure to resolve means "not created yet" (the rest of
    /// the path is then taken as written). Only `ENOENT`: anything else
    /// (a folder that cannot be entered, a symlink loop, a file used as a
    /// folder) is a refusal, since rsync running as root would follow
    /// whatever is there.
    fn not_there_yet(&self, e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::NotFound
    }
}

/// The real filesystem, strict: what the root helper checks with.
pub struct RealFs;

impl Resolve for RealFs {
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(p)
    }
}

/// The real filesystem as the backup account sees it, for the first,
/// unprivileged check that gives early, clear refusals: a folder the
/// account may not enter is left for the root helper to resolve (it
/// re-checks every path with [`RealFs`] before anything runs as root).
/// Never the check that decides.
pub struct UnprivilegedFs;

impl Resolve for UnprivilegedFs {
    fn canonicalize(&self, p: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(p)
    }

    fn not_there_yet(&self, e: &io::Error) -> bool {
        matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied)
    }
}

/// Resolve the longest existing ancestor, then append the rest (which,
/// not existing, has no symlink to follow).
pub(super) fn resolve_loose(p: &Path, fs: &dyn Resolve) -> Result<PathBuf, Refusal> {
    let mut existing = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        match fs.canonicalize(&existing) {
            Ok(real) => {
                let mut out = real;
                for t in tail.iter().rev() {
                    out.push(t);
                }
                return Ok(out);
            }
            Err(e) if fs.not_there_yet(&e) => {}
            Err(e) => {
                return refuse(format!("cannot resolve {:?}: {e}", short(&existing.to_string_lossy())));
            }
        }
        let Some(name) = existing.file_name() else {
            return refuse("path cannot be resolved");
        };
        tail.push(name.to_os_string());
        if !existing.pop() {
            return refuse("path cannot be resolved");
        }
    }
}

/// Check that `raw` lies inside a share and return the path rsync gets:
/// symlinks of the existing part resolved, rsync's `/./` marker and a
/// trailing slash kept.
pub fn confine(raw: &str, policy: &RsyncPolicy, fs: &dyn Resolve) -> Result<String, Refusal> {
    if raw.is_empty() || raw.chars().any(|c| c.is_control()) {
        return refuse("empty path or control characters in a path");
    }
    if !raw.starts_with('/') {
        return refuse(format!("path {:?} is not absolute", short(raw)));
    }
    if Path::new(raw).components().any(|c| c == Component::ParentDir) {
        return refuse(format!("path {:?} has '..'", short(raw)));
    }
    let trailing = raw.len() > 1 && raw.ends_with('/');
    let (base, rel) = match raw.split_once("/./") {
        Some((b, r)) => (if b.is_empty() { "/" } else { b }, Some(r)),
        None => (raw, None),
    };
    let inside = |p: &Path| policy.shares.iter().any(|s| p.starts_with(s));
    let base_real = resolve_loose(Path::new(base), fs)?;
    if !inside(&base_real) {
        return refuse(format!("path {:?} is outside the shares", short(raw)));
    }
    let mut out = base_real.to_string_lossy().into_owned();
    if let Some(rel) = rel {
        let rel = rel.trim_matches('/');
        let full = resolve_loose(&base_real.join(rel), fs)?;
        if !inside(&full) {
            return refuse(format!("path {:?} leads outside the shares", short(raw)));
        }
        out = format!("{}/./{}", out.trim_end_matches('/'), rel);
    }
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// Where `rsyncsend` pins an invocation before exec: it opens `dir`,
/// checks that what it opened is still that canonical folder, makes it
/// the working directory, and gives rsync `arg`, relative to it. A folder
/// swapped for a symlink between the check and the exec cannot redirect
/// rsync: its working directory is the folder that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub dir: PathBuf,
    pub arg: String,
}

impl RsyncInvocation {
    /// The pin for a single-path invocation (BackupPC sends one share per
    /// rsync run); `None` for several paths, which keep absolute paths.
    pub fn pin(&self) -> Option<Pin> {
        let [path] = self.paths.as_slice() else {
            return None;
        };
        if self.direction == Direction::Receiver {
            // The receiver changes into its destination (following a
            // symlink there): pin the destination folder itself.
            let dir = if path == "/" { "/" } else { path.trim_end_matches('/') };
            return Some(Pin { dir: PathBuf::from(dir), arg: ".".into() });
        }
        if let Some((base, rel)) = path.split_once("/./") {
            return Some(Pin { dir: PathBuf::from(if base.is_empty() { "/" } else { base }), arg: format!("./{rel}") });
        }
        if path == "/" {
            return Some(Pin { dir: PathBuf::from("/"), arg: "./".into() });
        }
        let trailing = path.ends_with('/');
        let p = Path::new(path.trim_end_matches('/'));
        if trailing {
            return Some(Pin { dir: p.to_path_buf(), arg: "./".into() });
        }
        let parent = p.parent()?;
        let name = p.file_name()?.to_string_lossy().into_owned();
        Some(Pin { dir: parent.to_path_buf(), arg: name })
    }

    /// The invocation with its one path replaced by the pinned argument.
    pub fn pinned(&self, pin: &Pin) -> RsyncInvocation {
        RsyncInvocation { paths: vec![pin.arg.clone()], ..self.clone() }
    }
}
