//! The command line of `forced-command`. Also compiled by `build.rs`, which
//! renders the man pages and shell completions from it: it uses nothing but
//! clap and `crate::paths`.

use crate::paths::SERVER_CONFIG;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Enrollment handler for the BackupPC register key, and its admin tool.
///
/// Without a subcommand it serves one enrollment, as sshd runs it through
/// `command="forced-command --config …"` in the backuppc account's
/// authorized_keys: it reads SSH_ORIGINAL_COMMAND (`OS:logon`, for example
/// `linux:jdupont`) and an optional hello block on stdin, registers the
/// host in BackupPC and answers `success` with `key:` and `url:` lines, or
/// a message. It writes nothing on stderr while serving: it logs to syslog.
#[derive(Parser)]
#[command(
    name = "forced-command",
    version = option_env!("BACKUPPC_ENROLL_LONG_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    disable_help_subcommand = true,
    after_help = "Examples:
  forced-command check-config     # after installing or editing server.toml
  forced-command install-register-key /root/backuppc-enroll-site/register-key.pub
  forced-command list
  forced-command revoke dormeur.example.org

Exit status:
  serving an enrollment: 0 enrolled; 1 refused; 2 server-side failure
  (a file it cannot write, the logon directory not answering: the detail is
  in the audit log and syslog, not in the answer); 3 waiting for approval
  admin subcommands: 0 done; 1 failed

Files:
  /etc/backuppc-enroll/server.toml          the configuration
  /var/lib/backuppc-enroll/registry.json    the hosts enrolled here
  /var/lib/backuppc-enroll/tokens.json      enrollment tokens, hashed"
)]
pub struct Cli {
    /// Server config file.
    #[arg(long, value_name = "FILE", default_value = SERVER_CONFIG, global = true)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub admin: Option<Admin>,
}

#[derive(Subcommand, Debug)]
pub enum Admin {
    /// List the hosts this server enrolled (enrolled, pending, denied, revoked).
    #[command(after_help = "Examples:
  forced-command list
  forced-command list --json | jq -r '.[] | select(.state == \"pending\") | .host'")]
    List {
        /// One JSON array of registry entries.
        #[arg(long)]
        json: bool,
    },
    /// Show one host: its registry entry and the files written for it.
    #[command(after_help = "Example:
  forced-command show dormeur.example.org")]
    Show { host: String },
    /// Revoke a host: remove its key pair, hosts line, per-host config and
    /// known_hosts lines (its backups stay), reload BackupPC. The host may
    /// not enroll again until `clear`. Only files this toolkit wrote (or
    /// was handed with `adopt`) are removed.
    #[command(after_help = "Example:
  forced-command revoke dormeur.example.org")]
    Revoke { host: String },
    /// Hand a host set up by hand over to this toolkit: its next enrollment
    /// may rewrite its hosts line (whatever logon it names), pc/HOST.pl and
    /// known_hosts lines, and `revoke` may remove them. Without it the
    /// toolkit never touches a host it did not write.
    #[command(after_help = "Example:
  forced-command adopt localhost      # Debian's stock `localhost 0 backuppc` host")]
    Adopt { host: String },
    /// Forget a revoked or denied host so that it may enroll again.
    #[command(after_help = "Example:
  forced-command clear dormeur.example.org")]
    Clear { host: String },
    /// List the enrollments waiting for approval (mode = "approve"), with
    /// the fingerprints of the host keys each one sent: an approval covers
    /// those keys only.
    #[command(after_help = "Example:
  forced-command pending")]
    Pending,
    /// Approve a pending enrollment; the workstation then runs enroll again.
    /// A request with other host keys (or logon, or OS) is not covered and
    /// waits anew.
    #[command(after_help = "Example:
  forced-command approve dormeur.example.org")]
    Approve { host: String },
    /// Deny a pending enrollment; the host is refused until `clear`.
    #[command(after_help = "Example:
  forced-command deny dormeur.example.org")]
    Deny { host: String },
    /// Enrollment tokens (mode = "token").
    #[command(
        subcommand,
        disable_help_subcommand = true,
        after_help = "Examples:
  forced-command token create --uses 1 --expires 24h --logon jdupont
  forced-command token list
  forced-command token revoke 3f9a1c"
    )]
    Token(TokenCmd),
    /// Operations over the enrolled hosts, from this server, with each
    /// host's per-host key and pinned host key (what BackupPC uses): in
    /// parallel, each host bounded by timeouts, reported host by host.
    #[command(
        subcommand,
        disable_help_subcommand = true,
        after_help = "Examples:
  forced-command fleet check
  forced-command fleet status --hosts @/var/lib/backuppc-enroll/fleet.retry --json

Exit status:
  0  every host succeeded; 1 the run could not start; 2 some hosts
  unreachable, the others fine; 3 some hosts failed"
    )]
    Fleet(FleetCmd),
    /// Check the config, BackupPC's folder, permissions and the logon
    /// directory, and print the authorized_keys line for the register key.
    #[command(after_help = "Examples:
  forced-command check-config
  forced-command check-config --register-key /root/backuppc-enroll-site/register-key.pub

Exit status:
  0  everything is usable (warnings may be printed)
  1  something is wrong")]
    CheckConfig {
        /// Public register key to print the authorized_keys line with.
        #[arg(long, value_name = "FILE")]
        register_key: Option<PathBuf>,
    },
    /// Install the register key's line in the BackupPC account's
    /// authorized_keys (idempotent: an earlier register key line is replaced).
    #[command(after_help = "Example:
  forced-command install-register-key /root/backuppc-enroll-site/register-key.pub")]
    InstallRegisterKey {
        /// The public register key (OpenSSH format).
        #[arg(value_name = "PUBKEY")]
        pubkey: PathBuf,
        /// Default: ~backuppc/.ssh/authorized_keys.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
    },
    /// The ForceCommand deployment: write an sshd_config.d drop-in whose
    /// `Match User` block makes sshd run forced-command for every key of the
    /// account (no tty, agent or forwarding, public keys only), checked
    /// with `sshd -t` before it is moved into place.
    #[command(after_help = "Examples:
  forced-command install-sshd-dropin                  # for the BackupPC account
  forced-command install-sshd-dropin --user bpcenroll # an account of its own
  forced-command install-sshd-dropin --remove")]
    InstallSshdDropin {
        /// The account (default: backuppc_user of server.toml).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config.d/backuppc-enroll.conf")]
        dropin: PathBuf,
        /// sshd's main config, which the drop-in is checked with.
        #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
        sshd_config: PathBuf,
        #[arg(long, value_name = "FILE", default_value = "/usr/sbin/sshd")]
        sshd: PathBuf,
        /// Remove the drop-in (only one this command wrote).
        #[arg(long)]
        remove: bool,
    },
    /// Check the hosts' backups from BackupPC's own files: the age, type
    /// and errors of the last finished backup (the host's `backups`
    /// file), and every dump status file inside it (through BackupPC's
    /// library and BackupPC_tarCreate, run as the BackupPC account).
    #[command(after_help = "Examples:
  forced-command verify                       # every enrolled host
  forced-command verify dormeur.example.org --max-age 48
  forced-command verify --json | jq -r '.[] | select(.healthy | not) | .host'

Exit status:
  0  every host is healthy
  1  a host has no recent finished backup, a backup with errors, a later
     backup that did not finish, or a dump whose status says it failed
  2  the check itself failed (config, registry)")]
    Verify {
        /// Hosts to check (default: every host enrolled or adopted here).
        hosts: Vec<String>,
        /// Hours after which the last finished backup is too old.
        #[arg(long, value_name = "HOURS", default_value_t = 26)]
        max_age: u64,
        /// One JSON array of reports.
        #[arg(long)]
        json: bool,
        /// BackupPC's TopDir (holds pc/HOST/backups).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/backuppc")]
        top_dir: PathBuf,
        /// BackupPC's programs (its Perl library is in ../lib).
        #[arg(long, value_name = "DIR", default_value = "/usr/share/backuppc/bin")]
        bin_dir: PathBuf,
    },
}

/// The exit statuses of `fleet`, for every operation's --help.
macro_rules! fleet_exit {
    () => {
        "Outcomes: ok, refused, timeout, unreachable, auth-failed, host-key-mismatch,
no-pinned-key, failed, not-set-up, unknown-host, unsupported.

Exit status:
  0  every host succeeded
  1  the run could not start (config, registry, arguments, not root or
     the BackupPC account)
  2  some hosts could not be reached (refused, timeout, unreachable) and
     every host reached succeeded
  3  some hosts failed (auth-failed, host-key-mismatch, no-pinned-key,
     failed, not-set-up, unknown-host, unsupported), whether or not
     others were unreachable

Files:
  fleet.retry beside the registry   the hosts that did not succeed, for
                                    --hosts @FILE"
    };
}

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// Check every host: its per-host key opens a session, its host key is
    /// the pinned one, and its rsyncsend answers (`true`).
    #[command(after_help = concat!(
        "Examples:
  forced-command fleet check
  forced-command fleet check --hosts dormeur.example.org,grincheux.example.org
  forced-command fleet check --hosts @/var/lib/backuppc-enroll/fleet.retry
  forced-command fleet check --json | jq -r 'select(.outcome? and .outcome != \"ok\") | .host'

",
        fleet_exit!()
    ))]
    Check(FleetArgs),
    /// Gather what each host's rsyncsend reports (version, shares,
    /// restore and delete policy, confinement, rsync version), identical
    /// answers folded together.
    #[command(after_help = concat!(
        "Examples:
  forced-command fleet status
  forced-command fleet status --hosts @hosts.txt --parallel 64 --json

",
        fleet_exit!()
    ))]
    Status(FleetArgs),
    /// What each host's rsyncsend reports, joined with BackupPC's own view
    /// of it (the last finished backup from its `backups` file: age, type,
    /// transfer errors), hosts whose backups are stale or failing, or that
    /// do not answer, first.
    #[command(after_help = concat!(
        "Examples:
  forced-command fleet report
  forced-command fleet report --max-age 48 --json | jq -r 'select(.healthy == false) | .host'
  forced-command fleet report --html /var/www/html/backup-fleet.html
  forced-command fleet report --mail-to backup-admins@example.org

A host counts as failed (exit status 3) when its backups are stale or
failing, even when it answers.

",
        fleet_exit!()
    ))]
    Report(ReportArgs),
    /// Run a job the workstations declared (by its name) on every host and
    /// collect what comes back: exit status, output, result files.
    ///
    /// Each workstation's root declares its jobs (jobs.d/*.toml: argv,
    /// account, timeout, limits, result files or folder); this server can
    /// only name one. Each run gets a folder DIR/RUN-ID with one folder per
    /// host (outcome.json; status.json, stdout, stderr and results/ when
    /// the host answered), and DIR/RUN-ID.tar.gz of it. The answers are
    /// checked as hostile input: anything but plain regular files within
    /// the limits refuses the host's whole answer. A host whose rsyncsend
    /// does not offer jobs fails with a line saying so.
    #[command(after_help = concat!(
        "Examples:
  forced-command fleet job inventory
  forced-command fleet job inventory --out /srv/fleet-jobs --timeout 600 --json
  forced-command fleet job inventory --hosts @/var/lib/backuppc-enroll/fleet.retry

A host fails (exit status 3) when its job fails (non-zero exit, killed at
its timeout), when it refuses the name, or when its answer is refused.
Give --timeout more than the job's own timeout on the workstations.

",
        fleet_exit!()
    ))]
    Job(JobArgs),
    /// Replace each host's per-host key, with no moment at which backups
    /// fail and no key that can run a shell.
    ///
    /// A new key is made (kept as HOST.key.next until the end), added on
    /// the workstation beside the present one (`rotate-key add`
    /// over the present key), proved by a session of its own, made
    /// BackupPC's key (HOST.key, the present one kept as HOST.key.prev
    /// and offered second, pc/HOST.pl, the registry), and only then are
    /// the workstation's other lines of this server retired (`rotate-key
    /// retire` over the new key) and HOST.key.prev removed.
    ///
    /// A run cut off at any point leaves each host with a key that works;
    /// running it again finishes the rotation where it stopped. A host
    /// whose rsyncsend (or sudoers drop-in) is older than rotation is
    /// reported `unsupported` and left as it was.
    #[command(after_help = concat!(
        "Examples:
  forced-command fleet rotate-key --hosts dormeur.example.org
  forced-command fleet rotate-key --parallel 16 --json
  forced-command fleet rotate-key --hosts @/var/lib/backuppc-enroll/fleet.retry   # finish what stopped

",
        fleet_exit!()
    ))]
    RotateKey(FleetArgs),
}

/// `fleet job`'s own options.
#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job's name, as the workstations declare it.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where each run's folder and .tar.gz go (default: jobs/ beside the
    /// registry). Run by root, the job run goes on as the BackupPC
    /// account, which must be able to write there.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The most bytes read of one host's answer (more fails the host).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_answer: u64,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `fleet report`'s own options.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Hours after which a host's last finished backup is stale.
    #[arg(long, value_name = "HOURS", default_value_t = 26)]
    pub max_age: u64,
    /// BackupPC's TopDir (holds pc/HOST/backups).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/backuppc")]
    pub top_dir: PathBuf,
    /// Also write the report as one self-contained HTML page to FILE: the
    /// hosts by outcome, a plot of each host's last-backup age against
    /// --max-age (worst first, hosts never reached too), each host's
    /// details a click away. It has no script and loads nothing, so it can
    /// be opened anywhere or mailed. Written atomically, mode 0644 less
    /// the umask. If it cannot be written, the report is still printed and
    /// the exit status is 1.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also mail the report to ADDRESS (user@domain or a local user; a
    /// comma-separated list, or the option repeated) through the local
    /// mail server's /usr/sbin/sendmail: the table as text, the HTML page
    /// attached. If it cannot be sent, the report is still printed and
    /// the exit status is 1.
    #[arg(long, value_name = "ADDRESS", value_delimiter = ',')]
    pub mail_to: Vec<String>,
}

/// What every fleet operation takes.
#[derive(Args, Debug)]
pub struct FleetArgs {
    /// The hosts: `a,b,c`, or `@FILE` with one name a line (`#` comments;
    /// a retry file reads back). Default: every enrolled host.
    #[arg(long, value_name = "HOSTS|@FILE")]
    pub hosts: Option<String>,
    /// Hosts worked on at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallel: u16,
    /// Seconds for the TCP connection and the SSH key exchange of a host.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds)]
    pub connect_timeout: f64,
    /// Seconds for everything done with one host.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = seconds)]
    pub timeout: f64,
    /// One JSON object a line per host as it finishes, then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Where to write the names of the hosts that did not succeed
    /// (default: fleet.retry beside the registry).
    #[arg(long, value_name = "FILE")]
    pub retry_file: Option<PathBuf>,
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 86400")),
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once and stored only hashed.
    #[command(after_help = "Examples:
  forced-command token create --uses 1 --expires 24h --logon jdupont
  forced-command token create --uses 50 --expires 7d   # a room of new machines")]
    Create {
        /// Number of enrollments it allows (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Lifetime: 90m, 24h, 7d (default: no expiry).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Only for this logon.
        #[arg(long)]
        logon: Option<String>,
        /// Only for this host name.
        #[arg(long)]
        host: Option<String>,
    },
    /// List tokens (ids, uses left, expiry; never the tokens).
    #[command(after_help = "Example:
  forced-command token list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (or an id prefix of 6+ characters).
    #[command(after_help = "Example:
  forced-command token revoke 3f9a1c")]
    Revoke { id: String },
}
