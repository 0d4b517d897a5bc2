//! `forced-command-fleet`: what `forced-command fleet` execs. The fleet's
//! SSH client (`ssh2`, and with it OpenSSL) lives in this program of its
//! own so that `forced-command`, which sshd starts for every enrollment,
//! links no libssl: loading and binding it would about double its
//! start-up. It takes `forced-command`'s own command line.

mod cli;
mod fleet;
mod fleet_html;
mod fleet_job;
mod fleet_rotate;
// forced-command's own: the fleet uses only where it keeps the per-host
// files, not its writers.
#[allow(dead_code)]
mod server;

// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.admin {
        Some(cli::Admin::Fleet(op)) => fleet::run(op, &cli.config),
        _ => {
            eprintln!(
                "forced-command-fleet: run it as `forced-command fleet OPERATION` (see forced-command fleet --help)"
            );
            ExitCode::from(backuppc_enroll::fleet::report::EXIT_ERROR)
        }
    }
}
