//! `rsyncsend`: the forced command of the backup server's key on a
//! workstation. Lets the server run only the rsync server invocations the
//! client policy allows, then execs rsync through `sudo -n`.

mod cli;

use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::log::Audit;
// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use backuppc_enroll::rsync::{self, Direction, Parsed, Pin, RealFs, RsyncInvocation, RsyncPolicy, StdinWithDeadline};
use backuppc_enroll::ssh::env::SshEnv;
use clap::Parser;
use cli::Cli;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = SshEnv::from_process();
    let audit = Audit::new(c"rsyncsend", None);
    let client = env.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    let refuse = |why: &str| {
        audit.event("refused", json!({ "client": client, "reason": why, "command": env.original_command }));
        eprintln!("rsyncsend: refused: {why}");
        ExitCode::from(1)
    };
    let cfg = match ClientConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return refuse(&e.to_string()),
    };
    let Some(cmd) = env.original_command.as_deref() else {
        return refuse("no command: this key only allows rsync for backups");
    };
    let policy = policy(&cfg, &cli.config);
    if cmd == "status" {
        let shares: Vec<String> = policy.shares.iter().map(|s| s.display().to_string()).collect();
        println!("rsyncsend {}", backuppc_enroll::LONG_VERSION);
        println!("shares: {}", shares.join(" "));
        println!("restore: {}\ndelete: {}", cfg.restore, cfg.delete);
        audit.event("status", json!({ "client": client }));
        return ExitCode::SUCCESS;
    }
    let invocation = match rsync::parse_command(cmd, &policy, &RealFs) {
        Ok(Parsed::Check) => {
            audit.event("check", json!({ "client": client }));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Ready(inv)) => inv,
        Ok(Parsed::NeedsProtectedArgs(partial)) => {
            let deadline = Instant::now() + Duration::from_secs(cfg.timeout.max(1));
            let args = match rsync::read_protected_args(&mut StdinWithDeadline { deadline }, deadline) {
                Ok(a) => a,
                Err(e) => return refuse(&e.0),
            };
            match partial.complete(&args, &policy, &RealFs) {
                Ok(inv) => inv,
                Err(e) => return refuse(&format!("{} (protected arguments {:?})", e.0, args)),
            }
        }
        Err(e) => return refuse(&e.0),
    };
    let invocation = match pin(&invocation) {
        Ok(inv) => inv,
        Err(e) => return refuse(&e),
    };
    let argv = invocation.argv(&cfg.sudo, &cfg.rsync);
    audit.event(
        "accepted",
        json!({ "client": client, "direction": format!("{:?}", invocation.direction), "argv": argv }),
    );
    let err = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .exec();
    refuse(&format!("cannot run {}: {err}", argv[0]))
}

/// Open the folder the checked path lives in (for a restore: the
/// destination itself, without following a symlink), verify that what was
/// opened is the canonical folder that was checked, and make it the
/// working directory (sudo keeps it), so rsync gets a path relative to a
/// folder that can no longer be swapped.
fn pin(inv: &RsyncInvocation) -> Result<RsyncInvocation, String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let Some(mut pin) = inv.pin() else { return Ok(inv.clone()) };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd = match open(&pin.dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A restore into a folder rsync will create: only under a folder
        // that nobody but root can change, so nobody can race rsync there.
        Err(nix::errno::Errno::ENOENT) if inv.direction == Direction::Receiver => {
            let name = pin.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let parent = pin.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
            let fd =
                open(&parent, flags, Mode::empty()).map_err(|e| format!("cannot open {}: {e}", parent.display()))?;
            let st = fstat(&fd).map_err(|e| e.to_string())?;
            if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
                return Err(format!(
                    "{} does not exist and its folder can be changed by others: create the destination first",
                    pin.dir.display()
                ));
            }
            pin = Pin { dir: parent, arg: format!("{name}/") };
            fd
        }
        Err(e) => return Err(format!("cannot open {}: {e}", pin.dir.display())),
    };
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot check the opened folder: {e}"))?;
    if opened != pin.dir {
        return Err(format!("{} changed while it was being checked", pin.dir.display()));
    }
    nix::unistd::fchdir(&fd).map_err(|e| format!("cannot enter {}: {e}", pin.dir.display()))?;
    Ok(inv.pinned(&pin))
}

fn policy(cfg: &ClientConfig, config_path: &std::path::Path) -> RsyncPolicy {
    let shares = cfg.shares.clone().unwrap_or_else(|| {
        backuppc_enroll::config::ClientState::load(&cfg.state_file).map(|s| s.shares).unwrap_or_default()
    });
    let canonical = |p: &str| std::fs::canonicalize(p).ok();
    // The backup user's real home (from the account), and the configured
    // one, in case they differ.
    let home = nix::unistd::User::from_name(&cfg.backup_user).ok().flatten().map(|u| u.dir);
    let mut protected = vec![cfg.backup_home().join(".ssh"), PathBuf::from("/etc/sudoers"), cfg.sudoers_dir.clone()];
    protected.extend(home.map(|h| h.join(".ssh")));
    if let Some(dir) = config_path.parent() {
        protected.push(dir.to_path_buf());
    }
    if let Some(dir) = cfg.state_file.parent() {
        protected.push(dir.to_path_buf());
    }
    RsyncPolicy {
        shares: shares.iter().filter_map(|s| canonical(s)).collect(),
        restore: cfg.restore,
        delete: cfg.delete,
        rsync_path: cfg.rsync.clone(),
        protected: protected.into_iter().map(|p| std::fs::canonicalize(&p).unwrap_or(p)).collect(),
        follow_links: cfg.follow_links,
        iconv: cfg.iconv,
    }
}
