//! The command line of `dropbox`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Where a drop box's config lives unless `--config` says otherwise.
pub const DROPBOX_CONFIG: &str = "/etc/backuppc-enroll/dropbox.toml";

/// Drop box: an account a vendor pushes backup archives into with plain
/// scp or sftp, and nothing else.
///
/// Without a subcommand it serves, as the forced command of the vendor's
/// key (`restrict,command="dropbox --config …"`, installed by `setup`):
/// SSH_ORIGINAL_COMMAND decides between SFTP (sshd's `Subsystem sftp`
/// command), scp's legacy sink mode (`scp -t`), and a one-line refusal.
/// Each upload goes to a temporary file, is verified (gzip and tar read
/// to the end, a NAME.sha256 sidecar when sent) and moved into place
/// without ever replacing a file; a receipt is written beside it.
#[derive(Parser)]
#[command(
    name = "dropbox",
    version = option_env!("BACKUPPC_ENROLL_LONG_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    disable_help_subcommand = true,
    after_help = "Examples:
  # as root: the account, its folders and the vendor's key, in one command
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml setup --key vendor.pub --from 203.0.113.0/24
  # what the vendor runs
  scp jpro_instance-042-2026-03-01_02h-30-00.tar.gz jpro@backup.example.org:
  # daily, from the systemd timer
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml prune

Exit status:
  0 when served (every upload accepted) or done; 1 when refused, an
  upload was not kept, or a subcommand failed; 2 on a usage error"
)]
pub struct Cli {
    /// The drop box's config file.
    #[arg(long, value_name = "FILE", default_value = DROPBOX_CONFIG)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the account, its root-owned home, the box's folders and the
    /// vendor's key line (as root; running it again changes only what
    /// differs).
    #[command(after_help = "Examples:
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml setup --key vendor.pub
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml setup --key vendor.pub --from 203.0.113.0/24")]
    Setup {
        /// The vendor's public key (one OpenSSH line).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Addresses the vendor connects from (the key line's `from=`).
        #[arg(long, value_name = "PATTERN")]
        from: Option<String>,
    },
    /// Remove what setup made: the key line, and the account and its home
    /// when setup created them. Archives are kept unless asked.
    #[command(after_help = "Examples:
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml uninstall
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml uninstall --remove-archives")]
    Uninstall {
        /// Also delete the box's folder with every archive in it.
        #[arg(long)]
        remove_archives: bool,
    },
    /// Upload archives into a drop box (the vendor's side): each with its
    /// NAME.sha256 sidecar, the drop box's host key checked against a
    /// pinned known_hosts file.
    #[command(after_help = "Examples:
  # on the vendor's side, with the drop box's host key pinned
  dropbox push --to jpro@backup.example.org --key ~/.ssh/dropbox --known-hosts dropbox.known_hosts \\
      jpro_instance-042-2026-03-01_02h-30-00.tar.gz")]
    Push {
        /// The drop box's account and host.
        #[arg(long, value_name = "USER@HOST")]
        to: String,
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// The private key the drop box's key line names.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Pinned host keys of the drop box (OpenSSH known_hosts format).
        #[arg(long, value_name = "FILE")]
        known_hosts: PathBuf,
        /// Seconds for connecting and for each exchange.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Send no NAME.sha256 sidecar.
        #[arg(long)]
        no_sidecar: bool,
        /// The archives.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete archives the retention does not keep (by the time each was
    /// received, never by the date in its name).
    #[command(after_help = "Examples:
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml prune --dry-run
  dropbox --config /etc/backuppc-enroll/dropbox-jpro.toml prune      # what the systemd timer runs daily")]
    Prune {
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}
