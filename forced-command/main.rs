//! `forced-command`: run by sshd for the register key on the backup
//! server to check an enrollment request and register the host in
//! BackupPC; run by an admin for the subcommands that manage enrollments.

mod admin;
mod notify;
mod serve;
mod server;

use backuppc_enroll::config::SERVER_CONFIG;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Enrollment handler for the BackupPC register key, and its admin tool.
///
/// Without a subcommand it serves one enrollment, as sshd runs it through
/// `command="forced-command --config …"` in the backuppc account's
/// authorized_keys: it reads SSH_ORIGINAL_COMMAND (`OS:logon`, for example
/// `linux:jdupont`) and an optional hello block on stdin, registers the
/// host in BackupPC and answers `success` with `key:` and `url:` lines, or
/// a message.
///
/// Exit status when serving: 0 enrolled; 1 refused; 2 server-side failure;
/// 3 waiting for approval. Admin subcommands: 0 done, 1 failed.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Server config file.
    #[arg(long, default_value = SERVER_CONFIG, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    admin: Option<admin::Admin>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.admin {
        None => serve::run(&cli.config),
        Some(cmd) => match admin::run(cmd, &cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("forced-command: error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
