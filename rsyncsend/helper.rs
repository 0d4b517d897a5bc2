//! `rsyncsend exec-rsync`: the root helper, the one command the sudoers
//! drop-in allows. It trusts nothing the backup account gives it: it
//! reads a config only root can change, parses the words with the same
//! parser as the forced command, resolves every path as root (only a path
//! that does not exist is "not there yet"), creates a restore's missing
//! destination folders, pins the folder rsync starts in, restricts itself
//! with Landlock to the invocation's paths (sandbox::plan) and execs rsync
//! with a clean environment.

use backuppc_enroll::config::{ClientConfig, ClientState};
use backuppc_enroll::log::Audit;
use backuppc_enroll::rsync::{self, Direction, Pin, RealFs, RsyncInvocation, RsyncPolicy};
use backuppc_enroll::sandbox::{self, Mode, Rule};
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode as Perm};
use serde_json::json;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::process::ExitCode;

pub fn exec_rsync(config: &Path, words: &[String]) -> ExitCode {
    let audit = Audit::new(c"rsyncsend", None);
    let refuse = |why: &str| {
        audit.event("refused", json!({ "helper": "exec-rsync", "reason": why, "words": words }));
        eprintln!("rsyncsend: refused: {why}");
        ExitCode::from(1)
    };
    match prepare(config, words) {
        Ok((argv, mode, direction)) => {
            audit.event(
                "accepted",
                json!({ "helper": "exec-rsync", "direction": format!("{direction:?}"), "confinement": mode.describe(), "argv": argv }),
            );
            refuse(&super::exec_clean(&argv))
        }
        Err(why) => refuse(&why),
    }
}

/// Everything up to the exec: the argv to run, in a process that is
/// pinned and (with Landlock) confined.
fn prepare(config: &Path, words: &[String]) -> Result<(Vec<String>, Mode, Direction), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("exec-rsync must run as root, through sudo".into());
    }
    if !config.is_absolute() || config.components().any(|c| c == Component::ParentDir) {
        return Err(format!("config path {} must be absolute, without '..'", config.display()));
    }
    root_only(config)?;
    let mut cfg = ClientConfig::load(config).map_err(|e| e.to_string())?;
    if cfg.shares.is_none() {
        // The shares of the last enrollment, read once from a file checked
        // through the descriptor it is read from.
        let state = read_root_owned(&cfg.state_file)?;
        let state: ClientState = serde_json::from_slice(&state)
            .map_err(|e| format!("{} is not an enrollment state: {e}", cfg.state_file.display()))?;
        cfg.shares = Some(state.shares);
    }
    let policy = super::policy(&cfg, config);
    let inv = rsync::parse_words(words, &policy, &RealFs).map_err(|e| e.0)?;
    let mode = Mode::from_abi(backuppc_enroll::sys::landlock_abi());
    if let Mode::PinOnly(_) = mode {
        sandbox::pin_only_allows(&inv).map_err(|e| e.0)?;
    }
    if inv.direction == Direction::Receiver {
        make_destination(&inv.paths[0], &policy)?;
    }
    let inv = pin(&inv)?;
    if let Mode::Landlock(_) = mode {
        let rules = sandbox::plan(&inv.checked, &policy, Path::new(&cfg.rsync), &RealFs).map_err(|e| e.0)?;
        confine(&rules)?;
    }
    Ok((inv.run.words(&cfg.rsync), mode, inv.run.direction))
}

/// A file the root helper reads: it and its folder owned by root and
/// writable by nobody else, so the backup account cannot have written it.
fn root_only(path: &Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    for p in [path, dir] {
        let m = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 {
            return Err(format!(
                "{} must be owned by root and writable by root only (it is uid {}, mode {:o}): fix its owner and mode",
                p.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// The contents of a root-owned file that only root can write, opened
/// without following a symlink and checked through that descriptor.
///
/// Its folder should be root's alone too; on a server that enrolls itself
/// it is shared with the BackupPC account, which writes the registry
/// there (`/var/lib/backuppc-enroll`). Such a folder is accepted only
/// while the kernel protects hard links (`fs.protected_hardlinks = 1`):
/// then whoever else may write the folder can delete or replace the file,
/// but only by one of their own (refused here, by owner) or by a symlink
/// (not followed), never by a link to a root-owned file they could not
/// write.
pub(crate) fn read_root_owned(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let d = std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let shared = d.uid() != 0 || d.mode() & 0o022 != 0;
    if shared && !std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1") {
        root_only(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let m = f.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 || m.nlink() != 1 {
        return Err(format!(
            "{} must be a file owned by root and writable by root only (it is uid {}, mode {:o}): fix its owner and mode",
            path.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    let mut bytes = Vec::new();
    f.by_ref().take(1 << 20).read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// A checked invocation and the one rsync runs (its path made relative to
/// the pinned working directory).
struct Pinned {
    checked: RsyncInvocation,
    run: RsyncInvocation,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_CLOEXEC).union(OFlag::O_NOFOLLOW);

/// Open the folder the checked path lives in (for a restore: the
/// destination itself), verify that what was opened is the canonical
/// folder that was checked, and make it the working directory, so rsync
/// gets a path relative to a folder that can no longer be swapped. Several
/// paths keep their absolute paths (Landlock alone holds them).
fn pin(inv: &RsyncInvocation) -> Result<Pinned, String> {
    let Some(pin) = inv.pin() else {
        return Ok(Pinned { checked: inv.clone(), run: inv.clone() });
    };
    let fd = open(&pin.dir, DIR_FLAGS, Perm::empty()).map_err(|e| format!("cannot open {}: {e}", pin.dir.display()))?;
    same_path(&fd, &pin.dir)?;
    nix::unistd::fchdir(&fd).map_err(|e| format!("cannot enter {}: {e}", pin.dir.display()))?;
    Ok(Pinned { checked: inv.clone(), run: inv.pinned(&Pin { dir: pin.dir.clone(), arg: pin.arg }) })
}

/// Whether `fd` is `path` (no symlink swapped in since it was resolved).
fn same_path(fd: &OwnedFd, path: &Path) -> Result<(), String> {
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot check the opened {}: {e}", path.display()))?;
    if opened != path {
        return Err(format!("{} changed while it was being checked", path.display()));
    }
    Ok(())
}

/// A restore into a folder that does not exist yet: create the missing
/// folders (root-owned, 0700), but only inside a share and only when
/// every existing folder from the share down is root-owned and writable
/// by root only, so nobody else can swap one of them for a symlink.
fn make_destination(dest: &str, policy: &RsyncPolicy) -> Result<(), String> {
    let dest = Path::new(dest.trim_end_matches('/'));
    if std::fs::symlink_metadata(dest).is_ok() {
        return Ok(());
    }
    let share = policy
        .shares
        .iter()
        .filter(|s| dest.starts_with(s))
        .max_by_key(|s| s.as_os_str().len())
        .ok_or_else(|| format!("{} is outside the shares", dest.display()))?;
    let rel = dest.strip_prefix(share).map_err(|e| e.to_string())?;
    let mut fd = open(share.as_path(), DIR_FLAGS, Perm::empty())
        .map_err(|e| format!("cannot open the share {}: {e}", share.display()))?;
    same_path(&fd, share)?;
    let mut at = share.clone();
    for name in rel.components() {
        let Component::Normal(name) = name else {
            return Err(format!("{} is not a plain path", dest.display()));
        };
        let st = fstat(&fd).map_err(|e| format!("cannot check {}: {e}", at.display()))?;
        if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
            return Err(format!(
                "{} does not exist and {} can be changed by others than root: create the destination first",
                dest.display(),
                at.display()
            ));
        }
        fd = match openat(&fd, name, DIR_FLAGS, Perm::empty()) {
            Ok(next) => next,
            Err(nix::errno::Errno::ENOENT) => {
                mkdirat(&fd, name, Perm::from_bits_truncate(0o700))
                    .map_err(|e| format!("cannot create {}: {e}", at.join(name).display()))?;
                openat(&fd, name, DIR_FLAGS, Perm::empty())
                    .map_err(|e| format!("cannot open {}: {e}", at.join(name).display()))?
            }
            Err(e) => return Err(format!("cannot open {}: {e}", at.join(name).display())),
        };
        at.push(name);
    }
    Ok(())
}

/// Restrict this process (and the rsync it execs) to `rules`: the
/// filesystem rights of Landlock ABI 1 must be enforced, newer rights,
/// TCP bind/connect and the abstract-socket and signal scopes are
/// enforced where the kernel has them.
fn confine(rules: &[Rule]) -> Result<(), String> {
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, ABI,
    };
    let failed = |e: landlock::RulesetError| format!("cannot confine rsync with Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(failed)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(sandbox::HANDLED_ABI))
        .map_err(failed)?
        .handle_access(AccessNet::from_all(sandbox::HANDLED_ABI))
        .map_err(failed)?
        .scope(Scope::from_all(sandbox::HANDLED_ABI))
        .map_err(failed)?
        .create()
        .map_err(failed)?;
    for rule in rules {
        let flags = if rule.checked {
            OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
        } else {
            OFlag::O_PATH | OFlag::O_CLOEXEC
        };
        let fd = match open(rule.path.as_path(), flags, Perm::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) if !rule.checked => continue,
            Err(e) => return Err(format!("cannot open {}: {e}", rule.path.display())),
        };
        if rule.checked {
            same_path(&fd, &rule.path)?;
        }
        let st = fstat(&fd).map_err(|e| format!("cannot check {}: {e}", rule.path.display()))?;
        let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, sandbox::rights(rule.access, dir))).map_err(failed)?;
    }
    let status = ruleset.restrict_self().map_err(failed)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("cannot confine rsync: the kernel did not enforce the Landlock ruleset".into());
    }
    Ok(())
}
