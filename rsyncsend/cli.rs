//! The command line of `rsyncsend`. Also compiled by `build.rs`, which
//! renders the man page from it: it uses nothing but clap and
//! `crate::paths`.

use crate::paths::CLIENT_CONFIG;
use clap::Parser;
use std::path::PathBuf;

/// Restricted command for the backup server's key: allows only the rsync
/// invocations of a BackupPC backup (and restores when enabled).
///
/// Run by sshd through `command="rsyncsend --config …"` on the key line
/// enroll installs; it reads SSH_ORIGINAL_COMMAND, checks every option and
/// path against the client policy, and execs rsync through `sudo -n`.
/// `true` is a connectivity check; `status` prints the version and policy.
/// Refusals are one line on stderr and a syslog entry.
#[derive(Parser)]
#[command(
    name = "rsyncsend",
    version = option_env!("BACKUPPC_ENROLL_LONG_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    after_help = "Examples:
  # what the backup server runs, through the key line's command=
  ssh -i KEY bckpciuem@workstation status
  ssh -i KEY bckpciuem@workstation rsync --server --sender -slogDtpre.iLsfxC . /home/

Exit status:
  rsync's own when rsync runs; 0 for `true` and `status`;
  1 when the command is refused or the config is unusable"
)]
pub struct Cli {
    /// Client config file.
    #[arg(long, value_name = "FILE", default_value = CLIENT_CONFIG)]
    pub config: PathBuf,
}
