//! `enroll`: run as root on a workstation to enroll it into BackupPC
//! backups. Sets up the backup user, calls the server with the register
//! key, installs the key it answers bound to `rsyncsend`.

mod bundle;
mod cli;
mod local;
mod logon;
mod run;

// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use clap::Parser;
pub use cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(cli::Command::Bundle(args)) => bundle::run(args),
        None => run::main(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enroll: error: {e:#}");
            ExitCode::from(run::exit_code(&e))
        }
    }
}
