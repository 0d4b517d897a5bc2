//! The command line of `enroll`. Also compiled by `build.rs`, which renders
//! the man pages and shell completions from it: it uses nothing but clap
//! and `crate::paths`.

use crate::paths::CLIENT_CONFIG;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Enroll this workstation into BackupPC backups over SSH.
///
/// Creates the local backup user, allows it to run only `rsync --server`
/// through sudo, asks the backup server (with the register key, checking
/// the server's pinned host key) to register this machine, and installs
/// the key the server answers, bound to rsyncsend. Safe to re-run: it
/// repairs what is missing and changes nothing otherwise.
///
/// The server, its pinned host keys and the register key come from the
/// site bundle an administrator builds with `enroll bundle`.
#[derive(Parser, Debug)]
#[command(
    name = "enroll",
    version = option_env!("BACKUPPC_ENROLL_LONG_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    after_help = "Examples:
  enroll                          # asks who the main user is
  enroll --logon jdupont --yes    # unattended
  enroll --token 7f3k...          # a server that enrolls with tokens
  enroll --dry-run                # show the plan, change nothing
  enroll --check                  # intact here, and still listed by the server?
  enroll --logon cmartin --yes --reassign   # the machine changes hands
  enroll --uninstall --remove-user

On an enrolled machine the question proposes the logon it is enrolled
for. Enrolling it for another logon asks for confirmation; with --yes
it is refused unless --reassign is given (the server may still refuse:
it re-assigns a host only where its administrator allows it).

Exit status:
  0  enrolled, or nothing to do
  1  local error: not root, a missing program, a bad config, a bad
     logon, a re-assignment not confirmed; with --check: the local
     enrollment is incomplete (run enroll to repair it)
  2  the server could not be reached, failed or answered badly
  3  the server refused the enrollment; on a re-run or with --check:
     the server no longer backs this host up with the key installed
     here (revoked, forgotten, another key; the message says what to do)
  4  the enrollment waits for the administrator's approval
     (run enroll again once approved)
  With --json, stdout is always one JSON object, an error too:
  {\"error\": \"...\", \"exit_code\": N}

Files:
  /etc/backuppc-enroll/client.toml        the server and the backup policy
  /etc/backuppc-enroll/server_host_keys   the server's pinned host keys
  /etc/backuppc-enroll/register-key       the register key (0600, root)
  /var/lib/backuppc-enroll/client-state.json   what the last enrollment set up"
)]
pub struct Cli {
    /// Client config file.
    #[arg(long, value_name = "FILE", default_value = CLIENT_CONFIG, global = true)]
    pub config: PathBuf,
    /// Logon of the workstation's main user (skips the question).
    #[arg(long)]
    pub logon: Option<String>,
    /// Do not ask: accept the proposed logon (on an enrolled machine, the
    /// logon it is enrolled for).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Enroll a machine already enrolled for another logon for the one
    /// given with --logon (needed with --yes; without it enroll asks).
    #[arg(long)]
    pub reassign: bool,
    /// Print the result as JSON on stdout, errors included (progress goes
    /// to stderr).
    #[arg(long)]
    pub json: bool,
    /// Check the enrollment: on this machine (backup user, sudoers drop-in,
    /// key line, rsyncsend), then ask the server whether it still lists
    /// this host with the key installed here (a status query, which never
    /// enrolls); change nothing.
    #[arg(long, conflicts_with_all = ["uninstall", "rekey", "dry_run", "token", "reassign"])]
    pub check: bool,
    /// With --check: check this machine only, contact no server.
    #[arg(long, requires = "check")]
    pub offline: bool,
    /// Show what would be done, change nothing, contact no server.
    #[arg(long)]
    pub dry_run: bool,
    /// Enrollment token from the backup administrator (servers in token mode).
    #[arg(long)]
    pub token: Option<String>,
    /// Enroll again even when this machine is already enrolled (new key).
    #[arg(long)]
    pub rekey: bool,
    /// Remove the key line, sudoers drop-in and state of this toolkit.
    #[arg(long)]
    pub uninstall: bool,
    /// With --uninstall: also delete the backup user and its home.
    #[arg(long, requires = "uninstall")]
    pub remove_user: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a site bundle: the client config, the server's pinned host
    /// keys and the register key, in one .tar.gz to unpack on workstations.
    ///
    /// Run it once, as the backup administrator, on any machine that has the
    /// register key. The archive holds /etc/backuppc-enroll/client.toml
    /// (0644), server_host_keys (0644) and register-key (0600), all owned by
    /// root; it is written with mode 0600 because it carries a private key.
    #[command(after_help = "Examples:
  # on the backup server: the register key and the sshd host key
  ssh-keygen -t ed25519 -N '' -C 'backuppc-enroll register key' -f register-key
  forced-command install-register-key register-key.pub
  enroll bundle --server backup.example.org --register-key register-key \\
      --host-key /etc/ssh/ssh_host_ed25519_key.pub -o site.tar.gz

  # keys read from the network instead (check the fingerprints it prints)
  ssh-keyscan -t ed25519 backup.example.org > server-keys
  enroll bundle --server backup.example.org --register-key register-key --host-key server-keys

  # on each workstation, as root, once the client package is installed
  tar -xpzf site.tar.gz -C / && enroll")]
    Bundle(BundleArgs),
    /// Take declared dumps now, as the backup server's `run-dumps` does
    /// before each backup (as root).
    ///
    /// Reads the declarations in the client config's `dumps_dir` (every
    /// file, each program and every folder above them must be root's alone), runs the
    /// named dump or all of them, and writes each one's status file beside
    /// it. One line per dump says what happened.
    #[command(after_help = "Examples:
  enroll dump mattermost      # one dump, by its name
  enroll dump --all           # every declared dump, in file-name order
  enroll dump --all --config /etc/backuppc-enroll/client.toml   # --config after the subcommand

Exit status:
  0  every dump taken
  1  a dump failed (the previous one is kept), the name is not declared,
     or the declarations are refused")]
    Dump(DumpArgs),
    /// List the declared dumps with the last status of each.
    #[command(after_help = "Examples:
  enroll dumps
  enroll dumps --json | jq -r '.[] | select(.status.ok != true) | .name'

Exit status:
  0  listed (whatever the dumps' statuses say)
  1  the declarations are refused")]
    Dumps {
        /// One JSON array: name, kind, output, on_failure and the status
        /// file's contents (null before the first run).
        #[arg(long)]
        json: bool,
    },
    /// List the jobs the backup server may run on this machine by name
    /// (`forced-command fleet job NAME`), as declared in the client
    /// config's `jobs_dir` (as root).
    ///
    /// Every declaration file, its folder and each program must be root's
    /// alone, or none of the jobs can run: the list then says why.
    #[command(after_help = "Examples:
  enroll jobs
  enroll jobs --json | jq -r '.[].name'

Exit status:
  0  listed
  1  the declarations are refused")]
    Jobs {
        /// One JSON array: name, argv, user, timeout, limits, result
        /// files and folder, and the file that declares each job.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The dump's name (its `name = …` in dumps.d).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every declared dump.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    /// Backup server host name or address, as workstations reach it.
    #[arg(long)]
    pub server: String,
    /// Server sshd port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Account the register key logs into on the server [default: backuppc].
    #[arg(long, value_name = "USER")]
    pub server_user: Option<String>,
    /// The private register key (OpenSSH format, without a passphrase).
    #[arg(long, value_name = "FILE")]
    pub register_key: PathBuf,
    /// The server's sshd host key: a .pub file, or ssh-keyscan output
    /// (every key in it is pinned). Repeat for several files.
    #[arg(long, value_name = "FILE", required = true)]
    pub host_key: Vec<PathBuf>,
    /// A client.toml to start from (shares, restore, backup_user…); the
    /// server, port, user and key paths are set over it. Default: the
    /// commented client.toml the package ships.
    #[arg(long, value_name = "FILE")]
    pub client_config: Option<PathBuf>,
    /// Where to write the bundle.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "backuppc-enroll-site.tar.gz")]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}
