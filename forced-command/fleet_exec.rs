//! `forced-command fleet`: exec `forced-command-fleet` (installed beside
//! this program) with the same command line, so that this program, which
//! sshd starts for every enrollment, never links the fleet's SSH client.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the fleet program is: beside this one.
fn fleet_program() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    Ok(me.with_file_name("forced-command-fleet"))
}

pub fn run() -> ExitCode {
    let program = match fleet_program() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("forced-command: fleet: {e}");
            return ExitCode::from(backuppc_enroll::fleet::report::EXIT_ERROR);
        }
    };
    let err = std::process::Command::new(&program).args(std::env::args_os().skip(1)).exec();
    eprintln!(
        "forced-command: fleet: cannot run {}: {err}; it is installed beside forced-command by the server package",
        program.display()
    );
    ExitCode::from(backuppc_enroll::fleet::report::EXIT_ERROR)
}
