//! `enroll`: run as root on a workstation to enroll it into BackupPC
//! backups. Sets up the backup user, calls the server with the register
//! key, installs the key it answers bound to `rsyncsend`.

mod bundle;
mod cli;
mod dumps;
mod jobs;
mod local;
mod logon;
mod run;
mod shares;

// As `crate::paths` for cli.rs, which build.rs compiles too.
use backuppc_enroll::paths;
use clap::Parser;
pub use cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --json promises JSON on stdout, a mistyped command line too.
            let help = matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
            if !help && std::env::args().any(|a| a == "--json") {
                let message = e.render().to_string();
                eprint!("{message}");
                println!("{}", serde_json::json!({ "error": message.trim(), "exit_code": e.exit_code() }));
                return ExitCode::from(e.exit_code() as u8);
            }
            e.exit()
        }
    };
    let result = match &cli.command {
        Some(cli::Command::Bundle(args)) => bundle::run(args),
        Some(cli::Command::Dump(args)) => dumps::dump(&cli.config, args),
        Some(cli::Command::Dumps { json }) => dumps::list(&cli.config, *json),
        Some(cli::Command::Jobs { json }) => jobs::list(&cli.config, *json),
        None => run::main(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = run::exit_code(&e);
            // Whatever the error carries (a server's words among them)
            // reaches the terminal with its control and format characters
            // escaped.
            let message = backuppc_enroll::names::display_text(&format!("{e:#}"));
            eprintln!("enroll: error: {message}");
            if cli.json && e.downcast_ref::<run::ReportedAsJson>().is_none() {
                println!("{}", serde_json::json!({ "error": message, "exit_code": code }));
            }
            ExitCode::from(code)
        }
    }
}
