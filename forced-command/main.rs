//! `forced-command`: run by sshd for the register key on the backup
//! server. Checks an enrollment request and registers the host in BackupPC.

mod serve;

use backuppc_enroll::config::SERVER_CONFIG;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Enrollment handler for the BackupPC register key.
///
/// Run by sshd through `command="forced-command --config …"` in the
/// backuppc account's authorized_keys. Reads SSH_ORIGINAL_COMMAND
/// (`OS:logon`, for example `linux:jdupont`) and an optional hello block
/// on stdin, registers the host in BackupPC and answers `success` with
/// `key:` and `url:` lines, or a message.
///
/// Exit status: 0 enrolled; 1 request refused; 2 server-side failure
/// (config, files, permissions).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Server config file.
    #[arg(long, default_value = SERVER_CONFIG)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    serve::run(&cli.config)
}
