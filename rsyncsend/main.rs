//! `rsyncsend`: the forced command of the backup server's key on a
//! workstation. Lets the server run only the rsync server invocations the
//! client policy allows: it checks them as the backup account (for clear,
//! early refusals), then runs its own `exec-rsync` as root through
//! `sudo -n`, which checks again where the privilege is and execs rsync
//! confined to the shares (helper.rs).

mod cli;
mod dumps;
mod helper;
mod jobs;
mod rotate;

use backuppc_enroll::config::ClientConfig;
use backuppc_enroll::log::Audit;
// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use backuppc_enroll::rsync::{self, Parsed, RsyncPolicy, StdinWithDeadline, UnprivilegedFs};
use backuppc_enroll::sandbox::Mode;
use backuppc_enroll::ssh::env::SshEnv;
use clap::Parser;
use cli::{Cli, Command};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ExecRsync { words }) = cli.command {
        return helper::exec_rsync(&cli.config, &words);
    }
    if let Some(Command::RunDumps) = cli.command {
        return dumps::run_dumps(&cli.config);
    }
    if let Some(Command::RunJob) = cli.command {
        return jobs::run_job(&cli.config);
    }
    if let Some(Command::RotateKey) = cli.command {
        return rotate::helper(&cli.config);
    }
    let env = SshEnv::from_process();
    let audit = Audit::new(c"rsyncsend", None);
    let client = env.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    let refuse = |why: &str| {
        audit.event("refused", json!({ "client": client, "reason": why, "command": env.original_command }));
        eprintln!("rsyncsend: refused: {why}");
        ExitCode::from(1)
    };
    let config = match std::path::absolute(&cli.config) {
        Ok(p) => p,
        Err(e) => return refuse(&format!("config path {}: {e}", cli.config.display())),
    };
    let cfg = match ClientConfig::load(&config) {
        Ok(c) => c,
        Err(e) => return refuse(&e.to_string()),
    };
    let Some(cmd) = env.original_command.as_deref() else {
        return refuse("no command: this key only allows rsync for backups");
    };
    if let Some(argv) = dumps::trigger(cmd, &cfg, &config) {
        return match argv {
            Ok(argv) => refuse(&exec_clean(&argv)),
            Err(why) => refuse(&why),
        };
    }
    if let Some(asked) = jobs::request(cmd, &cfg, &config, &audit, &client) {
        return asked.unwrap_or_else(|why| refuse(&why));
    }
    if let Some(ran) = rotate::trigger(cmd, &cfg, &config, &audit, &client) {
        return ran.unwrap_or_else(|why| refuse(&why));
    }
    let policy = policy(&cfg, &config);
    if cmd == "status" {
        let shares: Vec<String> = policy.shares.iter().map(|s| s.display().to_string()).collect();
        println!("rsyncsend {}", backuppc_enroll::LONG_VERSION);
        println!("shares: {}", shares.join(" "));
        println!("restore: {}\ndelete: {}", cfg.restore, cfg.delete);
        println!("confinement: {}", Mode::from_abi(backuppc_enroll::sys::landlock_abi()).describe());
        println!("rsync: {}", rsync_version(&cfg.rsync));
        println!(
            "accepts: {} {} {}",
            backuppc_enroll::dumps::TRIGGER,
            backuppc_enroll::jobs::VERB,
            backuppc_enroll::fleet::rotate::VERB
        );
        audit.event("status", json!({ "client": client }));
        return ExitCode::SUCCESS;
    }
    // As the backup account: a folder it may not enter is left for the
    // root helper, which resolves every path again as root.
    let fs = UnprivilegedFs;
    let invocation = match rsync::parse_command(cmd, &policy, &fs) {
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
            match partial.complete(&args, &policy, &fs) {
                Ok(inv) => inv,
                Err(e) => return refuse(&format!("{} (protected arguments {:?})", e.0, args)),
            }
        }
        Err(e) => return refuse(&e.0),
    };
    let mut argv = root_helper(&cfg, &config, "exec-rsync");
    argv.push("--".into());
    argv.extend(invocation.words(&cfg.rsync));
    audit.event(
        "checked",
        json!({ "client": client, "direction": format!("{:?}", invocation.direction), "argv": argv }),
    );
    refuse(&exec_clean(&argv))
}

/// The first line of `rsync --version` (`rsync  version 3.2.7  protocol
/// version 31`), or why there is none.
fn rsync_version(rsync: &str) -> String {
    let out = std::process::Command::new(rsync)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default()
        }
        Ok(o) => format!("{rsync} --version exited {}", o.status),
        Err(e) => format!("cannot run {rsync}: {e}"),
    }
}

/// `sudo -n -- rsyncsend --config CONFIG VERB`: the start of every call
/// of the root helper, as the sudoers drop-in names it.
pub fn root_helper(cfg: &ClientConfig, config: &std::path::Path, verb: &str) -> Vec<String> {
    vec![
        cfg.sudo.clone(),
        "-n".into(),
        "--".into(),
        cfg.rsyncsend.display().to_string(),
        "--config".into(),
        config.display().to_string(),
        verb.into(),
    ]
}

/// Exec `argv` with a cleared environment (only a fixed PATH); returns
/// only on failure, with the reason.
fn exec_clean(argv: &[String]) -> String {
    let err = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .exec();
    format!("cannot run {}: {err}", argv[0])
}

/// The policy of `cfg`: shares canonical (as the running account resolves
/// them), the folders a restore may never write into.
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
