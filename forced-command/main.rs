//! `forced-command`: run by sshd for the register key on the backup
//! server to check an enrollment request and register the host in
//! BackupPC; run by an admin for the subcommands that manage enrollments.

mod admin;
mod cli;
mod fleet_exec;
mod group;
mod notify;
mod serve;
mod server;
mod sshd_dropin;
mod status;
mod verify;

// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use clap::Parser;
use cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.admin {
        None => serve::run(&cli.config),
        Some(cli::Admin::Verify { hosts, max_age, json, top_dir, bin_dir }) => verify::run(
            &cli.config,
            &verify::Args { hosts: &hosts, max_age_hours: max_age, json, top_dir: &top_dir, bin_dir: &bin_dir },
        ),
        Some(cli::Admin::Fleet(_)) => fleet_exec::run(),
        Some(cmd) => match admin::run_at_a_shell(cmd, &cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("forced-command: error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
