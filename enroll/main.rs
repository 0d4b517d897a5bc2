//! `enroll`: run as root on a workstation to enroll it into BackupPC
//! backups. Sets up the backup user, calls the server with the register
//! key, installs the key it answers bound to `rsyncsend`.

mod local;
mod logon;
mod run;

use backuppc_enroll::config::CLIENT_CONFIG;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Enroll this workstation into BackupPC backups over SSH.
///
/// Creates the local backup user, allows it to run only `rsync --server`
/// through sudo, asks the backup server (with the register key, checking
/// the server's pinned host key) to register this machine, and installs
/// the key the server answers, bound to rsyncsend. Safe to re-run: it
/// repairs what is missing and changes nothing otherwise.
///
/// Examples:
///   enroll                          # asks who the main user is
///   enroll --logon jdupont --yes    # unattended
///   enroll --token 7f3k…            # a server that enrolls with tokens
///   enroll --dry-run                # show the plan, change nothing
///   enroll --uninstall --remove-user
///
/// Exit status: 0 enrolled (or nothing to do); 1 local error (not root,
/// missing program, bad config); 2 the server could not be reached, failed
/// or answered badly; 3 the server refused the enrollment; 4 the
/// enrollment waits for the administrator's approval (run enroll again
/// once approved).
#[derive(Parser, Debug)]
#[command(version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Client config file.
    #[arg(long, default_value = CLIENT_CONFIG)]
    pub config: PathBuf,
    /// Logon of the workstation's main user (skips the question).
    #[arg(long)]
    pub logon: Option<String>,
    /// Do not ask: accept the proposed logon.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the result as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run::main(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enroll: error: {e:#}");
            ExitCode::from(run::exit_code(&e))
        }
    }
}
