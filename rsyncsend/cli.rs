//! The command line of `rsyncsend`. Also compiled by `build.rs`, which
//! renders the man page from it: it uses nothing but clap and
//! `crate::paths`.

use crate::paths::CLIENT_CONFIG;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Restricted command for the backup server's key: allows only the rsync
/// invocations of a BackupPC backup (and restores when enabled).
///
/// Run by sshd through `command="rsyncsend --config …"` on the key line
/// enroll installs; it reads SSH_ORIGINAL_COMMAND, checks every option and
/// path against the client policy, and runs its own `exec-rsync` as root
/// through `sudo -n`, which checks again and starts rsync confined to the
/// shares. `true` is a connectivity check; `status` prints the version,
/// the policy and how rsync is confined; `rotate-key add|retire KEY` lets
/// the server replace its own key (see the rotate-key subcommand).
/// Refusals are one line on stderr and a syslog entry.
#[derive(Parser)]
#[command(
    name = "rsyncsend",
    version = option_env!("BACKUPPC_ENROLL_LONG_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    disable_help_subcommand = true,
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

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check an rsync server invocation again, as root, and run rsync
    /// confined to the shares (Landlock).
    ///
    /// The only command the sudoers drop-in lets the backup account run as
    /// root, with the config path fixed there. It reads the config (which
    /// must be root-owned and writable by root only), checks the words
    /// after `--` with the same rules as the forced command, resolving
    /// paths as root, creates a restore's missing destination folders
    /// inside a share, pins the folder, restricts itself with Landlock to
    /// the invocation's paths, and execs rsync with a clean environment.
    #[command(after_help = "Examples:
  # what rsyncsend runs after its own check, through sudo
  sudo -n -- /usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml \\
    exec-rsync -- /usr/bin/rsync --server --sender -logDtprcxe.iLsfxCIvu --numeric-ids -- . /home/

Exit status:
  rsync's own when rsync runs; 1 when the invocation is refused")]
    ExecRsync {
        /// The rsync words: `rsync --server [--sender] OPTIONS -- . PATHS`.
        #[arg(last = true, required = true, value_name = "RSYNC WORDS")]
        words: Vec<String>,
    },
    /// Take the dumps declared in the client config's `dumps_dir`, as
    /// root, before a backup copies them.
    ///
    /// What the server's `run-dumps` (BackupPC's DumpPreUserCmd) leads
    /// to, through the one sudoers line that allows it without arguments:
    /// the server cannot choose which dump runs or how. Every declaration
    /// file, each program and every folder above them must be root's alone; each dump
    /// runs as its account, without environment or terminal, bounded in
    /// time and size, and lands atomically beside its status file. One
    /// line per dump on stderr names it and says what happened.
    #[command(after_help = "Examples:
  # what rsyncsend runs for the server's `run-dumps`, through sudo
  sudo -n -- /usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml run-dumps

Exit status:
  0  every dump succeeded, or failed with on_failure = \"continue\"
  1  a dump with on_failure = \"fail\" failed, or the declarations were refused")]
    RunDumps,
    /// Run one job declared in the client config's `jobs_dir`, as root,
    /// and send back its status, output and result files.
    ///
    /// What the server's `run-job NAME` (`forced-command fleet job NAME`)
    /// leads to, through the one sudoers line that allows it without
    /// arguments: the job's name comes on stdin, alone on its line, and is
    /// checked again here against the declarations, which (with their
    /// folder and each program) must be root's alone. The job runs as its
    /// account, without environment or terminal, bounded in time and
    /// output; its result files are read without following symlinks, only
    /// regular files its account owns, bounded in count and size. The
    /// answer on stdout is an uncompressed tar stream: status.json,
    /// stdout, stderr, and each result under results/ and its path.
    #[command(after_help = "Examples:
  # what rsyncsend runs for the server's `run-job inventory`, through sudo
  echo inventory | sudo -n -- /usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml run-job

Exit status:
  0  the answer was sent (the job's own exit status is in its status.json)
  1  the name or the declarations were refused: nothing ran")]
    RunJob,
    /// Add or retire a key of the backup server in the backup account's
    /// authorized_keys, as root (`forced-command fleet rotate-key`).
    ///
    /// What the server's `rotate-key add|retire ssh-ed25519 BASE64` leads
    /// to, through the one sudoers line that allows it without arguments:
    /// the request comes on stdin, as one line `add KEY` or `retire KEY`,
    /// and is checked again here: exactly one ed25519 public key in
    /// canonical base64, nothing else. `add` puts a line for the key after
    /// this server's lines, with the options of its present line
    /// (restrict, command=, from=); `retire` keeps only the key's line
    /// among this server's lines and records the key in the enrollment
    /// state. The file is rewritten atomically and every other line is
    /// kept byte for byte. A line without `restrict` and a forced command
    /// is never copied.
    #[command(after_help = "Examples:
  # what rsyncsend runs for the server's `rotate-key add ssh-ed25519 AAAA…`
  echo 'add ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI…' | sudo -n -- /usr/lib/backuppc-enroll/rsyncsend \\
    --config /etc/backuppc-enroll/client.toml rotate-key

Exit status:
  0  the key was added or the others retired (or already were)
  1  the request or authorized_keys was refused; nothing was changed")]
    RotateKey,
}
